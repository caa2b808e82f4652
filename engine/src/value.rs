//! Column types and values.
//!
//! The set of column types is closed ([`AlgebraicType`]); a [`Value`] is one cell.
//! Two orders live here and must not be confused:
//! - [`Ord`] on `Value` is a *total* order used by indexes and sets. Values of one column
//!   always share a type, so cross-type order only has to be consistent, not meaningful.
//! - [`Value::sql_cmp`] is SQL comparison: anything compared with NULL is unknown
//!   (`None`), so `col = NULL` never matches.
//!
//! Floats: NaN is rejected when a row is checked against its schema, and `-0.0` is
//! normalized to `0.0` there, so numeric equality and bitwise (row identity) equality agree.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A 32-byte caller identity.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity(pub [u8; 32]);

impl Identity {
    /// The all-zero identity, used for the embedding application itself.
    pub const ZERO: Identity = Identity([0; 32]);

    /// An identity whose last 8 bytes are `n` big-endian; handy in tests and examples.
    pub fn from_u64(n: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[24..].copy_from_slice(&n.to_be_bytes());
        Identity(bytes)
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        crate::value::hex(&self.0)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.to_hex())
    }
}

/// Microseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Timestamp(micros)
    }
}

/// A C-like enum type: variant names in tag order (tag = index, at most 256 variants).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnumType {
    /// The enum's name, for messages and schema listings.
    pub name: Arc<str>,
    /// Variant names; a value's tag indexes this list.
    pub variants: Arc<[Arc<str>]>,
}

/// The closed set of column types.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlgebraicType {
    /// `bool`
    Bool,
    /// `u8`
    U8,
    /// `u16`
    U16,
    /// `u32`
    U32,
    /// `u64`
    U64,
    /// `u128`
    U128,
    /// `i8`
    I8,
    /// `i16`
    I16,
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `i128`
    I128,
    /// `f32`, never NaN
    F32,
    /// `f64`, never NaN
    F64,
    /// UTF-8 text
    String,
    /// Raw bytes
    Bytes,
    /// A 32-byte [`Identity`]
    Identity,
    /// A [`Timestamp`] (µs since epoch)
    Timestamp,
    /// A C-like enum stored as a `u8` tag
    Enum(EnumType),
    /// `Option<T>`: NULL or a value of the inner type
    Option(Box<AlgebraicType>),
}

impl AlgebraicType {
    /// Whether the type is one of the integer types.
    pub fn is_integer(&self) -> bool {
        use AlgebraicType::*;
        matches!(
            self,
            U8 | U16 | U32 | U64 | U128 | I8 | I16 | I32 | I64 | I128
        )
    }

    /// Whether the type is `f32` or `f64`.
    pub fn is_float(&self) -> bool {
        matches!(self, AlgebraicType::F32 | AlgebraicType::F64)
    }

    /// The type inside an `Option`, or the type itself.
    pub fn non_null(&self) -> &AlgebraicType {
        match self {
            AlgebraicType::Option(inner) => inner,
            other => other,
        }
    }
}

impl fmt::Display for AlgebraicType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AlgebraicType::*;
        let name = match self {
            Bool => "bool",
            U8 => "u8",
            U16 => "u16",
            U32 => "u32",
            U64 => "u64",
            U128 => "u128",
            I8 => "i8",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            I128 => "i128",
            F32 => "f32",
            F64 => "f64",
            String => "string",
            Bytes => "bytes",
            Identity => "identity",
            Timestamp => "timestamp",
            Enum(e) => return write!(f, "enum {}", e.name),
            Option(inner) => return write!(f, "option<{inner}>"),
        };
        f.write_str(name)
    }
}

/// One cell of a row.
///
/// `Null` only appears in `Option` columns; `Option(Some(x))` is stored as plain `x`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL, the `None` of an `Option` column.
    Null,
    /// `bool`
    Bool(bool),
    /// `u8`
    U8(u8),
    /// `u16`
    U16(u16),
    /// `u32`
    U32(u32),
    /// `u64`
    U64(u64),
    /// `u128`
    U128(u128),
    /// `i8`
    I8(i8),
    /// `i16`
    I16(i16),
    /// `i32`
    I32(i32),
    /// `i64`
    I64(i64),
    /// `i128`
    I128(i128),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// UTF-8 text
    String(Box<str>),
    /// Raw bytes
    Bytes(Box<[u8]>),
    /// A 32-byte identity; boxed so that `Value` stays 32 bytes.
    Identity(Box<Identity>),
    /// µs since epoch
    Timestamp(Timestamp),
    /// An enum tag
    Enum(u8),
}

impl Value {
    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// SQL comparison: `None` when either side is NULL (the comparison is unknown, so
    /// any predicate on it is false) or when the kinds differ.
    #[inline]
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        ValueRef::from(self).sql_cmp(&ValueRef::from(other))
    }

    /// Whether the value fits `ty` (NULL fits only `Option`).
    pub fn has_type(&self, ty: &AlgebraicType) -> bool {
        use AlgebraicType as T;
        match (self, ty) {
            (Value::Null, T::Option(_)) => true,
            (v, T::Option(inner)) => v.has_type(inner),
            (Value::Bool(_), T::Bool)
            | (Value::U8(_), T::U8)
            | (Value::U16(_), T::U16)
            | (Value::U32(_), T::U32)
            | (Value::U64(_), T::U64)
            | (Value::U128(_), T::U128)
            | (Value::I8(_), T::I8)
            | (Value::I16(_), T::I16)
            | (Value::I32(_), T::I32)
            | (Value::I64(_), T::I64)
            | (Value::I128(_), T::I128)
            | (Value::F32(_), T::F32)
            | (Value::F64(_), T::F64)
            | (Value::String(_), T::String)
            | (Value::Bytes(_), T::Bytes)
            | (Value::Identity(_), T::Identity)
            | (Value::Timestamp(_), T::Timestamp) => true,
            (Value::Enum(tag), T::Enum(e)) => (*tag as usize) < e.variants.len(),
            _ => false,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::U8(_) => "u8",
            Value::U16(_) => "u16",
            Value::U32(_) => "u32",
            Value::U64(_) => "u64",
            Value::U128(_) => "u128",
            Value::I8(_) => "i8",
            Value::I16(_) => "i16",
            Value::I32(_) => "i32",
            Value::I64(_) => "i64",
            Value::I128(_) => "i128",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Identity(_) => "identity",
            Value::Timestamp(_) => "timestamp",
            Value::Enum(_) => "enum",
        }
    }

    /// The value as `u64` when it is an unsigned integer that fits; used by sequences.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::U128(v) => u64::try_from(v).ok(),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            Value::I128(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// An integer value of type `ty` holding `n`, if `n` fits.
    pub fn integer_of_type(ty: &AlgebraicType, n: u64) -> Option<Value> {
        use AlgebraicType as T;
        Some(match ty {
            T::U8 => Value::U8(u8::try_from(n).ok()?),
            T::U16 => Value::U16(u16::try_from(n).ok()?),
            T::U32 => Value::U32(u32::try_from(n).ok()?),
            T::U64 => Value::U64(n),
            T::U128 => Value::U128(n.into()),
            T::I8 => Value::I8(i8::try_from(n).ok()?),
            T::I16 => Value::I16(i16::try_from(n).ok()?),
            T::I32 => Value::I32(i32::try_from(n).ok()?),
            T::I64 => Value::I64(i64::try_from(n).ok()?),
            T::I128 => Value::I128(n.into()),
            _ => return None,
        })
    }

    /// Whether the value is an integer zero (the "assign me a sequence value" marker).
    pub fn is_zero_integer(&self) -> bool {
        self.as_u64() == Some(0)
    }

    /// The key an integer index stores: the value mapped onto `u64` preserving order.
    ///
    /// `None` for kinds that do not fit in 64 bits (those use the general index).
    pub fn native_key(&self) -> Option<u64> {
        const FLIP: u64 = 1 << 63;
        Some(match *self {
            Value::Bool(b) => b as u64,
            Value::U8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::U64(v) => v,
            Value::I8(v) => (i64::from(v) as u64) ^ FLIP,
            Value::I16(v) => (i64::from(v) as u64) ^ FLIP,
            Value::I32(v) => (i64::from(v) as u64) ^ FLIP,
            Value::I64(v) => (v as u64) ^ FLIP,
            Value::Timestamp(t) => (t.0 as u64) ^ FLIP,
            Value::Enum(tag) => tag.into(),
            _ => return None,
        })
    }
}

/// One value borrowed from an encoded row (or from a [`Value`]): what readers of stored
/// bytes get without building a [`crate::Row`]. Its order and SQL comparison are those of
/// [`Value`], which delegates to it.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    /// SQL NULL.
    Null,
    /// `bool`
    Bool(bool),
    /// `u8`
    U8(u8),
    /// `u16`
    U16(u16),
    /// `u32`
    U32(u32),
    /// `u64`
    U64(u64),
    /// `u128`
    U128(u128),
    /// `i8`
    I8(i8),
    /// `i16`
    I16(i16),
    /// `i32`
    I32(i32),
    /// `i64`
    I64(i64),
    /// `i128`
    I128(i128),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// UTF-8 text
    String(&'a str),
    /// Raw bytes
    Bytes(&'a [u8]),
    /// An identity's 32 bytes
    Identity(&'a [u8; 32]),
    /// µs since epoch
    Timestamp(Timestamp),
    /// An enum tag
    Enum(u8),
}

impl ValueRef<'_> {
    /// The owned value.
    #[inline]
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::U8(x) => Value::U8(x),
            ValueRef::U16(x) => Value::U16(x),
            ValueRef::U32(x) => Value::U32(x),
            ValueRef::U64(x) => Value::U64(x),
            ValueRef::U128(x) => Value::U128(x),
            ValueRef::I8(x) => Value::I8(x),
            ValueRef::I16(x) => Value::I16(x),
            ValueRef::I32(x) => Value::I32(x),
            ValueRef::I64(x) => Value::I64(x),
            ValueRef::I128(x) => Value::I128(x),
            ValueRef::F32(x) => Value::F32(x),
            ValueRef::F64(x) => Value::F64(x),
            ValueRef::String(s) => Value::String(s.into()),
            ValueRef::Bytes(b) => Value::Bytes(b.into()),
            ValueRef::Identity(id) => Value::Identity(Box::new(Identity(*id))),
            ValueRef::Timestamp(t) => Value::Timestamp(t),
            ValueRef::Enum(t) => Value::Enum(t),
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    #[inline]
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::U8(x) => ValueRef::U8(*x),
            Value::U16(x) => ValueRef::U16(*x),
            Value::U32(x) => ValueRef::U32(*x),
            Value::U64(x) => ValueRef::U64(*x),
            Value::U128(x) => ValueRef::U128(*x),
            Value::I8(x) => ValueRef::I8(*x),
            Value::I16(x) => ValueRef::I16(*x),
            Value::I32(x) => ValueRef::I32(*x),
            Value::I64(x) => ValueRef::I64(*x),
            Value::I128(x) => ValueRef::I128(*x),
            Value::F32(x) => ValueRef::F32(*x),
            Value::F64(x) => ValueRef::F64(*x),
            Value::String(s) => ValueRef::String(s),
            Value::Bytes(b) => ValueRef::Bytes(b),
            Value::Identity(id) => ValueRef::Identity(&id.0),
            Value::Timestamp(t) => ValueRef::Timestamp(*t),
            Value::Enum(t) => ValueRef::Enum(*t),
        }
    }
}

impl ValueRef<'_> {
    /// Discriminant rank, so values of different kinds still have a total order.
    #[inline]
    fn rank(&self) -> u8 {
        match self {
            ValueRef::Null => 0,
            ValueRef::Bool(_) => 1,
            ValueRef::U8(_) => 2,
            ValueRef::U16(_) => 3,
            ValueRef::U32(_) => 4,
            ValueRef::U64(_) => 5,
            ValueRef::U128(_) => 6,
            ValueRef::I8(_) => 7,
            ValueRef::I16(_) => 8,
            ValueRef::I32(_) => 9,
            ValueRef::I64(_) => 10,
            ValueRef::I128(_) => 11,
            ValueRef::F32(_) => 12,
            ValueRef::F64(_) => 13,
            ValueRef::String(_) => 14,
            ValueRef::Bytes(_) => 15,
            ValueRef::Identity(_) => 16,
            ValueRef::Timestamp(_) => 17,
            ValueRef::Enum(_) => 18,
        }
    }

    /// Whether this is SQL NULL.
    #[inline]
    pub fn is_null(&self) -> bool {
        matches!(self, ValueRef::Null)
    }

    /// SQL comparison, as [`Value::sql_cmp`].
    #[inline]
    pub fn sql_cmp(&self, other: &ValueRef<'_>) -> Option<Ordering> {
        if self.is_null() || other.is_null() || self.rank() != other.rank() {
            return None;
        }
        Some(self.total_cmp(other))
    }

    /// The total order of [`Value`]'s `Ord`.
    #[inline]
    pub fn total_cmp(&self, other: &ValueRef<'_>) -> Ordering {
        use ValueRef::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Bool(a), Bool(b)) => a.cmp(b),
            (U8(a), U8(b)) => a.cmp(b),
            (U16(a), U16(b)) => a.cmp(b),
            (U32(a), U32(b)) => a.cmp(b),
            (U64(a), U64(b)) => a.cmp(b),
            (U128(a), U128(b)) => a.cmp(b),
            (I8(a), I8(b)) => a.cmp(b),
            (I16(a), I16(b)) => a.cmp(b),
            (I32(a), I32(b)) => a.cmp(b),
            (I64(a), I64(b)) => a.cmp(b),
            (I128(a), I128(b)) => a.cmp(b),
            // NaN never reaches storage, so total_cmp is numeric order here; -0.0 is
            // normalized at row check so it never meets 0.0.
            (F32(a), F32(b)) => a.total_cmp(b),
            (F64(a), F64(b)) => a.total_cmp(b),
            (String(a), String(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Identity(a), Identity(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (Enum(a), Enum(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl PartialEq for ValueRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.total_cmp(other) == Ordering::Equal
    }
}

impl PartialEq for Value {
    /// Equal exactly when [`Ord::cmp`] says so, without building the two [`ValueRef`]s:
    /// every cached row a client applies is compared this way, value by value.
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (U8(a), U8(b)) => a == b,
            (U16(a), U16(b)) => a == b,
            (U32(a), U32(b)) => a == b,
            (U64(a), U64(b)) => a == b,
            (U128(a), U128(b)) => a == b,
            (I8(a), I8(b)) => a == b,
            (I16(a), I16(b)) => a == b,
            (I32(a), I32(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            (I128(a), I128(b)) => a == b,
            // As in the order: bit-level total order, not IEEE equality.
            (F32(a), F32(b)) => a.total_cmp(b).is_eq(),
            (F64(a), F64(b)) => a.total_cmp(b).is_eq(),
            (String(a), String(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Identity(a), Identity(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (Enum(a), Enum(b)) => a == b,
            // Every kind has a rank of its own: values of two kinds are never equal.
            _ => false,
        }
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        ValueRef::from(self).total_cmp(&ValueRef::from(other))
    }
}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        use Value::*;
        state.write_u8(ValueRef::from(self).rank());
        match self {
            Null => {}
            Bool(v) => v.hash(state),
            U8(v) => v.hash(state),
            U16(v) => v.hash(state),
            U32(v) => v.hash(state),
            U64(v) => v.hash(state),
            U128(v) => v.hash(state),
            I8(v) => v.hash(state),
            I16(v) => v.hash(state),
            I32(v) => v.hash(state),
            I64(v) => v.hash(state),
            I128(v) => v.hash(state),
            F32(v) => v.to_bits().hash(state),
            F64(v) => v.to_bits().hash(state),
            String(v) => v.hash(state),
            Bytes(v) => v.hash(state),
            Identity(v) => v.hash(state),
            Timestamp(v) => v.hash(state),
            Enum(v) => v.hash(state),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Value::*;
        match self {
            Null => f.write_str("NULL"),
            Bool(v) => write!(f, "{v}"),
            U8(v) => write!(f, "{v}"),
            U16(v) => write!(f, "{v}"),
            U32(v) => write!(f, "{v}"),
            U64(v) => write!(f, "{v}"),
            U128(v) => write!(f, "{v}"),
            I8(v) => write!(f, "{v}"),
            I16(v) => write!(f, "{v}"),
            I32(v) => write!(f, "{v}"),
            I64(v) => write!(f, "{v}"),
            I128(v) => write!(f, "{v}"),
            F32(v) => write!(f, "{v}"),
            F64(v) => write!(f, "{v}"),
            String(v) => write!(f, "{v:?}"),
            Bytes(v) => write!(f, "0x{}", hex(v)),
            Identity(v) => write!(f, "0x{}", v.to_hex()),
            Timestamp(v) => write!(f, "{}µs", v.0),
            Enum(tag) => write!(f, "#{tag}"),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

macro_rules! from_prim {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::$v(v) }
        }
    )*};
}
from_prim!(bool => Bool, u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128, f32 => F32, f64 => F64,
    Timestamp => Timestamp);

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.into())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v.into_boxed_str())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v.into_boxed_slice())
    }
}

impl From<Identity> for Value {
    fn from(v: Identity) -> Self {
        Value::Identity(Box::new(v))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_stays_32_bytes() {
        assert_eq!(std::mem::size_of::<Value>(), 32);
    }

    #[test]
    fn comparison_with_null_is_unknown() {
        assert_eq!(Value::Null.sql_cmp(&Value::Null), None);
        assert_eq!(Value::U8(1).sql_cmp(&Value::Null), None);
        assert_eq!(Value::U8(1).sql_cmp(&Value::U8(2)), Some(Ordering::Less));
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        // Few distinct payloads per kind, so that equal pairs come up often.
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0u8..3).prop_map(Value::U8),
            (0u16..3).prop_map(Value::U16),
            (0u32..3).prop_map(Value::U32),
            (0u64..3).prop_map(Value::U64),
            (0u128..3).prop_map(Value::U128),
            (-1i8..2).prop_map(Value::I8),
            (-1i16..2).prop_map(Value::I16),
            (-1i32..2).prop_map(Value::I32),
            (-1i64..2).prop_map(Value::I64),
            (-1i128..2).prop_map(Value::I128),
            prop_oneof![Just(0.0f32), Just(1.5), Just(-2.0)].prop_map(Value::F32),
            prop_oneof![Just(0.0f64), Just(1.5), Just(-2.0)].prop_map(Value::F64),
            "[ab]{0,2}".prop_map(|s| Value::String(s.into())),
            proptest::collection::vec(0u8..2, 0..3).prop_map(|b| Value::Bytes(b.into())),
            (0u8..2).prop_map(|b| Value::Identity(Box::new(Identity([b; 32])))),
            (0i64..2).prop_map(|t| Value::Timestamp(Timestamp(t))),
            (0u8..3).prop_map(Value::Enum),
        ]
    }

    proptest::proptest! {
        /// `==` is the order's equality, for every pair of kinds.
        #[test]
        fn equality_agrees_with_the_order(a in any_value(), b in any_value()) {
            proptest::prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
            let same = a.clone();
            proptest::prop_assert!(a == same);
        }
    }

    #[test]
    fn native_key_preserves_signed_order() {
        let keys: Vec<u64> = [-5i64, -1, 0, 1, 7]
            .iter()
            .map(|v| Value::I64(*v).native_key().expect("i64 has a native key"))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    }
}
