//! Typed access to tables: Rust types for columns and structs for rows.
//!
//! - [`SqlType`]: a Rust type that is one column type ([`AlgebraicType`]) and converts to
//!   and from a [`Value`].
//! - [`TableType`]: a struct that is one table's row; `#[table]` from `tidings-macros`
//!   derives it, together with [`CanBeLookupTable`] for non-event tables.
//! - [`SqlEnum`]: a C-like enum stored as a `u8` tag; `#[derive(SqlEnum)]` derives it and
//!   its [`SqlType`].
//! - [`HasCols`]: typed column handles ([`Col`], [`IndexedCol`]) for the query builder;
//!   `#[table]` generates them.
//!
//! Everything here is plain conversion; the engine itself only ever sees [`Row`]s and
//! [`TableSchema`]s.

use std::fmt;
use std::marker::PhantomData;

use thiserror::Error;

use crate::row::Row;
use crate::schema::{ColId, TableSchema};
use crate::value::{AlgebraicType, EnumType, Identity, Timestamp, Value};

/// A value that does not have the Rust type it is read into.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("expected a value of type {expected}, found {found}")]
pub struct ValueError {
    /// The column type the Rust type stands for.
    pub expected: AlgebraicType,
    /// What the value was instead (its kind, or the out-of-range enum tag).
    pub found: String,
}

impl ValueError {
    /// The error for `value` read as a `T`.
    pub fn mismatch<T: SqlType>(value: &Value) -> Self {
        ValueError {
            expected: T::sql_type(),
            found: value.kind_name().to_string(),
        }
    }
}

/// A Rust type that is one column type.
///
/// `Option<T>` is the nullable `T`: `None` is stored as [`Value::Null`] and `Some(x)` as
/// plain `x` (the convention of [`Value`]), so `Option<Option<T>>` cannot be told apart
/// from `Option<T>` and is rejected when the schema is built.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a column type",
    label = "no `SqlType` impl",
    note = "column types are bool, the integers, f32, f64, String, Vec<u8>, Identity, Timestamp, `#[derive(SqlEnum)]` enums, and `Option` of any of these"
)]
pub trait SqlType: Sized {
    /// The column type.
    fn sql_type() -> AlgebraicType;
    /// The value stored for `self`.
    fn into_value(self) -> Value;
    /// Reads a stored value back.
    fn from_value(v: Value) -> Result<Self, ValueError>;
}

/// Implements [`SqlType`] for types held by exactly one [`Value`] variant.
macro_rules! sql_type_plain {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl SqlType for $t {
            fn sql_type() -> AlgebraicType {
                AlgebraicType::$variant
            }
            fn into_value(self) -> Value {
                Value::$variant(self)
            }
            fn from_value(v: Value) -> Result<Self, ValueError> {
                match v {
                    Value::$variant(x) => Ok(x),
                    other => Err(ValueError::mismatch::<Self>(&other)),
                }
            }
        }
    )*};
}

sql_type_plain!(
    bool => Bool,
    u8 => U8,
    u16 => U16,
    u32 => U32,
    u64 => U64,
    u128 => U128,
    i8 => I8,
    i16 => I16,
    i32 => I32,
    i64 => I64,
    i128 => I128,
    f32 => F32,
    f64 => F64,
    Timestamp => Timestamp,
);

impl SqlType for String {
    fn sql_type() -> AlgebraicType {
        AlgebraicType::String
    }
    fn into_value(self) -> Value {
        Value::String(self.into_boxed_str())
    }
    fn from_value(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::String(s) => Ok(s.into_string()),
            other => Err(ValueError::mismatch::<Self>(&other)),
        }
    }
}

impl SqlType for Vec<u8> {
    fn sql_type() -> AlgebraicType {
        AlgebraicType::Bytes
    }
    fn into_value(self) -> Value {
        Value::Bytes(self.into_boxed_slice())
    }
    fn from_value(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Bytes(b) => Ok(b.into_vec()),
            other => Err(ValueError::mismatch::<Self>(&other)),
        }
    }
}

impl SqlType for Identity {
    fn sql_type() -> AlgebraicType {
        AlgebraicType::Identity
    }
    fn into_value(self) -> Value {
        Value::Identity(Box::new(self))
    }
    fn from_value(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Identity(id) => Ok(*id),
            other => Err(ValueError::mismatch::<Self>(&other)),
        }
    }
}

impl<T: SqlType> SqlType for Option<T> {
    fn sql_type() -> AlgebraicType {
        AlgebraicType::Option(Box::new(T::sql_type()))
    }
    fn into_value(self) -> Value {
        self.map_or(Value::Null, T::into_value)
    }
    fn from_value(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Null => Ok(None),
            // Report the nullable type, since that is what the column is.
            other => T::from_value(other).map(Some).map_err(|e| ValueError {
                expected: Self::sql_type(),
                found: e.found,
            }),
        }
    }
}

/// Integer column types: the only ones an `auto_inc` sequence can fill.
///
/// `#[table]` requires it of every `#[auto_inc]` field, so a sequence on a non-integer
/// column is a compile error at the field rather than a panic in [`TableType::schema`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an integer type, so it cannot be `#[auto_inc]`",
    label = "auto_inc needs one of u8..u128 or i8..i128"
)]
pub trait SqlInteger: SqlType {}

impl SqlInteger for u8 {}
impl SqlInteger for u16 {}
impl SqlInteger for u32 {}
impl SqlInteger for u64 {}
impl SqlInteger for u128 {}
impl SqlInteger for i8 {}
impl SqlInteger for i16 {}
impl SqlInteger for i32 {}
impl SqlInteger for i64 {}
impl SqlInteger for i128 {}

/// A C-like enum stored as a `u8` tag (its variant's position); `#[derive(SqlEnum)]`.
///
/// The derive also implements [`SqlType`] through [`enum_sql_type`], [`enum_into_value`]
/// and [`enum_from_value`]; a blanket `impl<E: SqlEnum> SqlType for E` would conflict with
/// the other impls here.
pub trait SqlEnum: Sized + Copy {
    /// The enum's name and its variant names in tag order.
    fn enum_type() -> EnumType;
    /// The variant's tag.
    fn tag(self) -> u8;
    /// The variant with tag `tag`, if there is one.
    fn from_tag(tag: u8) -> Option<Self>;
}

/// [`SqlType::sql_type`] of a [`SqlEnum`].
pub fn enum_sql_type<E: SqlEnum>() -> AlgebraicType {
    AlgebraicType::Enum(E::enum_type())
}

/// [`SqlType::into_value`] of a [`SqlEnum`].
pub fn enum_into_value<E: SqlEnum>(e: E) -> Value {
    Value::Enum(e.tag())
}

/// [`SqlType::from_value`] of a [`SqlEnum`].
pub fn enum_from_value<E: SqlEnum>(v: Value) -> Result<E, ValueError> {
    match v {
        Value::Enum(tag) => E::from_tag(tag).ok_or_else(|| ValueError {
            expected: enum_sql_type::<E>(),
            found: format!("enum tag {tag}, which has no variant"),
        }),
        other => Err(ValueError {
            expected: enum_sql_type::<E>(),
            found: other.kind_name().to_string(),
        }),
    }
}

/// A row that cannot be read into a table's struct.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FromRowError {
    /// The row has more or fewer values than the struct has fields.
    #[error("table `{table}` has {expected} columns but the row has {got} values")]
    Arity {
        /// The table.
        table: &'static str,
        /// Fields in the struct.
        expected: usize,
        /// Values in the row.
        got: usize,
    },
    /// The row ended before this column.
    #[error("the row of table `{table}` has no value for column `{column}`")]
    Missing {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// A value does not have its field's type.
    #[error("cannot read column `{table}.{column}`")]
    Column {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// What was wrong with the value.
        #[source]
        source: ValueError,
    },
}

/// A struct that is one table's row; derived by `#[table]`.
pub trait TableType: Sized {
    /// The table's name.
    const NAME: &'static str;
    /// Whether it is an event table.
    const IS_EVENT: bool;
    /// The table's schema.
    fn schema() -> TableSchema;
    /// The row for `self`, fields in column order.
    fn into_row(self) -> Row;
    /// Reads a row of the table.
    fn from_row(row: Row) -> Result<Self, FromRowError>;
}

/// A table that may be the lookup side of a semijoin: every table but an event table.
///
/// Event-table rows exist only inside the transaction that inserted them, so a
/// subscription filtered by one would match nothing later, and a view over one would be
/// empty; requiring this bound lets the query builder and views reject that at compile
/// time. `#[table]` implements it for non-event tables only.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the lookup side of a semijoin, nor be read by a view",
    label = "an event table, or not a `#[table]`",
    note = "event tables keep no rows, so they can neither be looked up nor back a view; only non-event `#[table]`s implement `CanBeLookupTable`"
)]
pub trait CanBeLookupTable: TableType {}

/// A typed handle on one column of table `T`, holding values of type `V`.
///
/// `#[table]` generates one per field (see [`HasCols`]); the query builder takes them to
/// build predicates, so comparing a column with a value of another type does not compile.
pub struct Col<T, V> {
    id: ColId,
    // `fn() -> _` keeps the handle `Send`, `Sync` and covariant whatever `T` and `V` are:
    // it never holds either.
    _marker: PhantomData<fn() -> (T, V)>,
}

impl<T, V> Col<T, V> {
    /// The handle on the column at `id`; `#[table]` calls this with the field's position.
    pub const fn new(id: ColId) -> Self {
        Col {
            id,
            _marker: PhantomData,
        }
    }

    /// The column's position in its table.
    pub const fn id(self) -> ColId {
        self.id
    }
}

// Written out because derives would require `T: Clone` and `V: Clone`, which a handle
// does not need.
impl<T, V> Clone for Col<T, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, V> Copy for Col<T, V> {}

impl<T, V> fmt::Debug for Col<T, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Col").field(&self.id).finish()
    }
}

/// A [`Col`] that a btree index starts with (primary key, `#[unique]`, `#[index(btree)]`,
/// or the first column of a multi-column index).
///
/// Semijoins only accept these for their join columns, because a join without an index
/// on each side cannot be maintained incrementally; asking for this type turns a missing
/// index into a compile error rather than a rejected subscription.
pub struct IndexedCol<T, V> {
    col: Col<T, V>,
}

impl<T, V> IndexedCol<T, V> {
    /// The handle on the indexed column at `id`; `#[table]` calls this for indexed fields.
    pub const fn new(id: ColId) -> Self {
        IndexedCol { col: Col::new(id) }
    }

    /// The column's position in its table.
    pub const fn id(self) -> ColId {
        self.col.id
    }

    /// The same column as a plain handle.
    pub const fn col(self) -> Col<T, V> {
        self.col
    }
}

impl<T, V> Clone for IndexedCol<T, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, V> Copy for IndexedCol<T, V> {}

impl<T, V> fmt::Debug for IndexedCol<T, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IndexedCol").field(&self.col.id).finish()
    }
}

/// What [`Col`] and [`IndexedCol`] share: code that only compares a column's values takes
/// any `Column`.
pub trait Column: Copy {
    /// The table the column belongs to.
    type Table: TableType;
    /// The Rust type of the column's values.
    type Value: SqlType;
    /// The column's position in its table.
    fn col_id(self) -> ColId;
}

impl<T: TableType, V: SqlType> Column for Col<T, V> {
    type Table = T;
    type Value = V;
    fn col_id(self) -> ColId {
        self.id
    }
}

impl<T: TableType, V: SqlType> Column for IndexedCol<T, V> {
    type Table = T;
    type Value = V;
    fn col_id(self) -> ColId {
        self.col.id
    }
}

/// A table whose columns have typed handles; `#[table]` implements it.
///
/// For `struct Message`, `#[table]` generates `MessageCols` with one public field per
/// column, named like the struct's field: an [`IndexedCol`] when an index starts with
/// the column, else a [`Col`].
pub trait HasCols: TableType {
    /// The struct of column handles.
    type Cols;
    /// The column handles.
    fn cols() -> Self::Cols;
}

/// Reads a row's values in column order into typed fields; used by `#[table]`'s
/// [`TableType::from_row`], and by hand-written ones.
#[derive(Debug)]
pub struct RowReader {
    table: &'static str,
    values: std::vec::IntoIter<Value>,
}

impl RowReader {
    /// A reader over `row`, which must have exactly `columns` values.
    pub fn new(table: &'static str, row: Row, columns: usize) -> Result<Self, FromRowError> {
        if row.len() != columns {
            return Err(FromRowError::Arity {
                table,
                expected: columns,
                got: row.len(),
            });
        }
        Ok(RowReader {
            table,
            values: row.into_values().into_vec().into_iter(),
        })
    }

    /// Reads the next value as a `T`; `column` names it in errors.
    pub fn read<T: SqlType>(&mut self, column: &'static str) -> Result<T, FromRowError> {
        let table = self.table;
        let value = self
            .values
            .next()
            .ok_or(FromRowError::Missing { table, column })?;
        T::from_value(value).map_err(|source| FromRowError::Column {
            table,
            column,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::fmt::Debug;
    use std::sync::Arc;

    use super::*;

    /// Checks that `x` survives a trip through its value and that the value fits the type.
    fn round_trip<T: SqlType + PartialEq + Debug + Clone>(x: T) {
        let v = x.clone().into_value();
        assert!(
            v.has_type(&T::sql_type()),
            "{v:?} does not fit {}",
            T::sql_type()
        );
        assert_eq!(T::from_value(v).expect("round trip"), x);
    }

    #[test]
    fn scalars_round_trip() {
        round_trip(true);
        round_trip(false);
        round_trip(u8::MAX);
        round_trip(u16::MAX);
        round_trip(u32::MAX);
        round_trip(u64::MAX);
        round_trip(u128::MAX);
        round_trip(i8::MIN);
        round_trip(i16::MIN);
        round_trip(i32::MIN);
        round_trip(i64::MIN);
        round_trip(i128::MIN);
        round_trip(1.5f32);
        round_trip(-2.25f64);
        round_trip(String::from("héllo"));
        round_trip(vec![0u8, 1, 255]);
        round_trip(Identity::from_u64(7));
        round_trip(Timestamp(-42));
    }

    #[test]
    fn scalar_types() {
        assert_eq!(bool::sql_type(), AlgebraicType::Bool);
        assert_eq!(u128::sql_type(), AlgebraicType::U128);
        assert_eq!(i8::sql_type(), AlgebraicType::I8);
        assert_eq!(f32::sql_type(), AlgebraicType::F32);
        assert_eq!(String::sql_type(), AlgebraicType::String);
        assert_eq!(<Vec<u8>>::sql_type(), AlgebraicType::Bytes);
        assert_eq!(Identity::sql_type(), AlgebraicType::Identity);
        assert_eq!(Timestamp::sql_type(), AlgebraicType::Timestamp);
    }

    #[test]
    fn values_follow_value_conventions() {
        assert_eq!(String::from("a").into_value(), Value::String("a".into()));
        assert_eq!(vec![1u8].into_value(), Value::Bytes(vec![1u8].into()));
        assert_eq!(
            Identity::ZERO.into_value(),
            Value::Identity(Box::new(Identity::ZERO))
        );
        assert_eq!(Some(3u32).into_value(), Value::U32(3));
        assert_eq!(None::<u32>.into_value(), Value::Null);
    }

    #[test]
    fn options_round_trip() {
        round_trip(Some(5u64));
        round_trip(None::<u64>);
        round_trip(Some(String::from("x")));
        round_trip(None::<Identity>);
        assert_eq!(
            <Option<i32>>::sql_type(),
            AlgebraicType::Option(Box::new(AlgebraicType::I32))
        );
    }

    #[test]
    fn wrong_kind_is_an_error() {
        let err = u64::from_value(Value::String("x".into())).expect_err("string is not u64");
        assert_eq!(err.expected, AlgebraicType::U64);
        assert_eq!(err.found, "string");
        assert!(u64::from_value(Value::Null).is_err());
        assert!(u64::from_value(Value::U32(1)).is_err());
        let err = <Option<u64>>::from_value(Value::Bool(true)).expect_err("bool is not u64");
        assert_eq!(
            err.to_string(),
            "expected a value of type option<u64>, found bool"
        );
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Color {
        Red,
        Green,
    }

    // Written out by hand so that the enum helpers are tested apart from the derive.
    impl SqlEnum for Color {
        fn enum_type() -> EnumType {
            EnumType {
                name: "Color".into(),
                variants: Arc::from(vec![Arc::<str>::from("Red"), Arc::from("Green")]),
            }
        }
        fn tag(self) -> u8 {
            self as u8
        }
        fn from_tag(tag: u8) -> Option<Self> {
            [Color::Red, Color::Green].get(usize::from(tag)).copied()
        }
    }

    impl SqlType for Color {
        fn sql_type() -> AlgebraicType {
            enum_sql_type::<Self>()
        }
        fn into_value(self) -> Value {
            enum_into_value(self)
        }
        fn from_value(v: Value) -> Result<Self, ValueError> {
            enum_from_value(v)
        }
    }

    #[test]
    fn enums_round_trip() {
        round_trip(Color::Red);
        round_trip(Color::Green);
        round_trip(Some(Color::Green));
        assert_eq!(Color::Green.into_value(), Value::Enum(1));
        let err = Color::from_value(Value::Enum(2)).expect_err("no third variant");
        assert_eq!(err.found, "enum tag 2, which has no variant");
        assert!(Color::from_value(Value::U8(0)).is_err());
    }

    /// Inside this crate the macros must name the engine as `crate`; this only compiles
    /// if they do.
    #[test]
    fn macros_expand_inside_the_engine() {
        #[derive(tidings_macros::SqlEnum, Clone, Copy, Debug, PartialEq)]
        enum Mood {
            Calm,
            Busy,
        }

        #[tidings_macros::table(name = "inner", public)]
        #[derive(Debug, PartialEq)]
        struct Inner {
            #[primary_key]
            id: u64,
            mood: Mood,
        }

        let schema = Inner::schema();
        assert_eq!(&*schema.name, "inner");
        let cols = Inner::cols();
        let id: IndexedCol<Inner, u64> = cols.id;
        let mood: Col<Inner, Mood> = cols.mood;
        assert_eq!((id.id(), mood.id()), (ColId(0), ColId(1)));
        assert_eq!(schema.columns[1].ty, enum_sql_type::<Mood>());
        let row = Inner {
            id: 1,
            mood: Mood::Busy,
        }
        .into_row();
        assert_eq!(
            Inner::from_row(row),
            Ok(Inner {
                id: 1,
                mood: Mood::Busy
            })
        );
    }

    #[test]
    fn row_reader_names_table_and_column() {
        let row = Row::new(vec![Value::U64(1), Value::Bool(true)]);
        let mut reader = RowReader::new("t", row, 2).expect("two values");
        assert_eq!(reader.read::<u64>("a"), Ok(1));
        let err = reader
            .read::<String>("b")
            .expect_err("bool is not a string");
        assert_eq!(err.to_string(), "cannot read column `t.b`");
        let source = err.source().map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("expected a value of type string, found bool")
        );
        assert!(matches!(
            reader.read::<u64>("c"),
            Err(FromRowError::Missing {
                table: "t",
                column: "c"
            })
        ));

        let err = RowReader::new("t", Row::new(vec![Value::U64(1)]), 2).expect_err("arity");
        assert_eq!(
            err,
            FromRowError::Arity {
                table: "t",
                expected: 2,
                got: 1
            }
        );
    }
}
