//! The canonical binary encoding of rows, directed by the table schema.
//!
//! Committed rows are stored in this form, row identity is bitwise equality of it, and
//! the commitlog writes it. No type tags: the schema says what comes next.
//!
//! ```text
//! bool, u8, i8, enum tag    1 byte
//! u16/i16, u32/i32/f32      2 / 4 bytes little-endian (floats as IEEE bits)
//! u64/i64/f64, timestamp    8 bytes little-endian
//! u128/i128                 16 bytes little-endian
//! identity                  32 bytes
//! string, bytes             u32 LE length, then the bytes (strings are UTF-8)
//! option<T>                 0x00 for NULL, or 0x01 then T
//! ```
//!
//! [`StoredRow`] reads an encoded row column by column as [`ValueRef`]s, so that readers
//! of stored rows (query evaluation, wire encoders) need not build a [`Row`].

use crate::error::DecodeError;
use crate::row::Row;
use crate::schema::TableSchema;
use crate::value::{AlgebraicType, Timestamp, ValueRef};

/// The encoding of `row` as a fresh boxed buffer (the stored form).
pub fn row_bytes(schema: &TableSchema, row: &Row) -> Box<[u8]> {
    let mut out = Vec::with_capacity(row.len() * 8);
    encode_row(schema, row, &mut out);
    out.into_boxed_slice()
}

/// Appends the encoding of one present value (an option column's `0x01` tag is the
/// caller's; a NULL is written as the `0x00` tag alone).
pub fn encode_value(v: ValueRef<'_>, out: &mut Vec<u8>) {
    // A NULL is the 0x00 tag of its option column; the 0x01 tag of a present value is
    // written by `encode_row`, which knows the column type.
    match v {
        ValueRef::Null => out.push(0),
        ValueRef::Bool(b) => out.push(b as u8),
        ValueRef::U8(x) => out.push(x),
        ValueRef::I8(x) => out.push(x as u8),
        ValueRef::Enum(x) => out.push(x),
        ValueRef::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        ValueRef::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        ValueRef::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        ValueRef::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        ValueRef::F32(x) => out.extend_from_slice(&x.to_bits().to_le_bytes()),
        ValueRef::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        ValueRef::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        ValueRef::F64(x) => out.extend_from_slice(&x.to_bits().to_le_bytes()),
        ValueRef::Timestamp(t) => out.extend_from_slice(&t.0.to_le_bytes()),
        ValueRef::U128(x) => out.extend_from_slice(&x.to_le_bytes()),
        ValueRef::I128(x) => out.extend_from_slice(&x.to_le_bytes()),
        ValueRef::Identity(id) => out.extend_from_slice(id),
        ValueRef::String(s) => {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        ValueRef::Bytes(b) => {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Appends the encoding of `row` (already checked against `schema`) to `out`.
pub fn encode_row(schema: &TableSchema, row: &Row, out: &mut Vec<u8>) {
    for (v, col) in row.iter().zip(&schema.columns) {
        if let AlgebraicType::Option(_) = col.ty
            && !v.is_null()
        {
            out.push(1);
        }
        encode_value(v.into(), out);
    }
}

/// Decodes one row of `schema` from the front of `bytes`, returning it and the bytes used.
pub fn decode_row(schema: &TableSchema, bytes: &[u8]) -> Result<(Row, usize), DecodeError> {
    let mut r = Reader {
        bytes,
        pos: 0,
        checked: true,
    };
    let mut values = Vec::with_capacity(schema.columns.len());
    for col in &schema.columns {
        values.push(
            r.value_ref(&col.ty)
                .map(ValueRef::to_value)
                .map_err(|what| DecodeError {
                    table: schema.name.clone(),
                    column: col.name.clone(),
                    position: r.pos,
                    what,
                })?,
        );
    }
    Ok((Row::new(values), r.pos))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Whether to check values against their type (enum tag range, NaN, bool bytes).
    /// Stored rows were checked when encoded, and skipping this spares a stored-row
    /// reader, among others, a load from the schema for every enum value.
    checked: bool,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or("input ends inside a value")?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    // Inlined into the column loops of stored-row readers (the hot path of full
    // evaluation); options recurse through `option_ref`, which stays out of line.
    #[inline(always)]
    fn value_ref(&mut self, ty: &AlgebraicType) -> Result<ValueRef<'a>, &'static str> {
        use AlgebraicType as T;
        Ok(match ty {
            T::Bool => match self.arr::<1>()?[0] {
                0 => ValueRef::Bool(false),
                1 => ValueRef::Bool(true),
                _ if self.checked => return Err("bool byte is neither 0 nor 1"),
                _ => ValueRef::Bool(true),
            },
            T::U8 => ValueRef::U8(self.arr::<1>()?[0]),
            T::I8 => ValueRef::I8(self.arr::<1>()?[0] as i8),
            T::Enum(e) => {
                let tag = self.arr::<1>()?[0];
                if self.checked && tag as usize >= e.variants.len() {
                    return Err("enum tag out of range");
                }
                ValueRef::Enum(tag)
            }
            T::U16 => ValueRef::U16(u16::from_le_bytes(self.arr()?)),
            T::I16 => ValueRef::I16(i16::from_le_bytes(self.arr()?)),
            T::U32 => ValueRef::U32(u32::from_le_bytes(self.arr()?)),
            T::I32 => ValueRef::I32(i32::from_le_bytes(self.arr()?)),
            T::F32 => {
                let f = f32::from_bits(u32::from_le_bytes(self.arr()?));
                if self.checked && f.is_nan() {
                    return Err("f32 is NaN");
                }
                ValueRef::F32(f)
            }
            T::U64 => ValueRef::U64(u64::from_le_bytes(self.arr()?)),
            T::I64 => ValueRef::I64(i64::from_le_bytes(self.arr()?)),
            T::F64 => {
                let f = f64::from_bits(u64::from_le_bytes(self.arr()?));
                if self.checked && f.is_nan() {
                    return Err("f64 is NaN");
                }
                ValueRef::F64(f)
            }
            T::Timestamp => ValueRef::Timestamp(Timestamp(i64::from_le_bytes(self.arr()?))),
            T::U128 => ValueRef::U128(u128::from_le_bytes(self.arr()?)),
            T::I128 => ValueRef::I128(i128::from_le_bytes(self.arr()?)),
            T::Identity => {
                let s = self.take(32)?;
                ValueRef::Identity(s.try_into().map_err(|_| "identity is not 32 bytes")?)
            }
            T::String => {
                let len = u32::from_le_bytes(self.arr()?) as usize;
                let s = std::str::from_utf8(self.take(len)?).map_err(|_| "string is not UTF-8")?;
                ValueRef::String(s)
            }
            T::Bytes => {
                let len = u32::from_le_bytes(self.arr()?) as usize;
                ValueRef::Bytes(self.take(len)?)
            }
            T::Option(inner) => self.option_ref(inner)?,
        })
    }

    #[inline(never)]
    fn option_ref(&mut self, inner: &AlgebraicType) -> Result<ValueRef<'a>, &'static str> {
        match self.arr::<1>()?[0] {
            0 => Ok(ValueRef::Null),
            1 => self.value_ref(inner),
            _ if self.checked => Err("option tag is neither 0 nor 1"),
            _ => self.value_ref(inner),
        }
    }

    /// Steps over one value without checking it (stored rows were checked on insert).
    #[inline]
    fn skip(&mut self, ty: &AlgebraicType) -> Result<(), &'static str> {
        let n = match (fixed_width(ty), ty) {
            (Some(w), _) => w as usize,
            (None, AlgebraicType::Option(inner)) => {
                return match self.arr::<1>()?[0] {
                    0 => Ok(()),
                    _ => self.skip(inner),
                };
            }
            // A string or bytes: its length comes first.
            (None, _) => u32::from_le_bytes(self.arr()?) as usize,
        };
        self.take(n).map(|_| ())
    }
}

/// A row in its encoded form together with its schema: read column by column without
/// building a [`Row`].
///
/// Made by [`crate::table::Table`] for its stored rows (checked when inserted), or by
/// [`StoredRow::new`], which checks the bytes; its readers therefore never fail.
#[derive(Clone, Copy, Debug)]
pub struct StoredRow<'a> {
    schema: &'a TableSchema,
    bytes: &'a [u8],
    /// Offsets of the leading fixed-width columns ([`fixed_offsets`]), when the maker
    /// has them; empty otherwise. They turn a column read into one load instead of a
    /// walk over the columns before it.
    fixed: &'a [u32],
}

/// The width in bytes of every value of `ty`, when all have the same (the encoding's
/// table in the module doc).
pub fn fixed_width(ty: &AlgebraicType) -> Option<u32> {
    use AlgebraicType as T;
    Some(match ty {
        T::Bool | T::U8 | T::I8 | T::Enum(_) => 1,
        T::U16 | T::I16 => 2,
        T::U32 | T::I32 | T::F32 => 4,
        T::U64 | T::I64 | T::F64 | T::Timestamp => 8,
        T::U128 | T::I128 => 16,
        T::Identity => 32,
        T::String | T::Bytes | T::Option(_) => return None,
    })
}

/// The byte offset of each column of `schema` that only fixed-width columns precede:
/// entry `i` is where column `i` starts in every encoded row. A table whose columns are
/// all fixed-width (the common case for keys and coordinates) gets one entry per column.
///
/// Computed once per table (and per commit for TxData), so that [`StoredRow::column`]
/// reads a column with one load instead of stepping over the columns before it.
pub fn fixed_offsets(schema: &TableSchema) -> Box<[u32]> {
    let mut offsets = Vec::with_capacity(schema.columns.len());
    let mut at = 0u32;
    for col in &schema.columns {
        offsets.push(at);
        match fixed_width(&col.ty) {
            Some(w) => at += w,
            None => break,
        }
    }
    offsets.into_boxed_slice()
}

impl<'a> StoredRow<'a> {
    /// Checks that `bytes` is exactly one encoded row of `schema`.
    pub fn new(schema: &'a TableSchema, bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader {
            bytes,
            pos: 0,
            checked: true,
        };
        for col in &schema.columns {
            r.value_ref(&col.ty).map_err(|what| DecodeError {
                table: schema.name.clone(),
                column: col.name.clone(),
                position: r.pos,
                what,
            })?;
        }
        if r.pos != bytes.len() {
            return Err(DecodeError {
                table: schema.name.clone(),
                column: "".into(),
                position: r.pos,
                what: "bytes follow the last column",
            });
        }
        Ok(StoredRow {
            schema,
            bytes,
            fixed: &[],
        })
    }

    /// A row the caller knows to be a checked encoding of `schema` (a stored row), with
    /// the schema's [`fixed_offsets`] (or a prefix of them).
    #[inline]
    pub(crate) fn trusted(schema: &'a TableSchema, fixed: &'a [u32], bytes: &'a [u8]) -> Self {
        StoredRow {
            schema,
            bytes,
            fixed,
        }
    }

    /// The encoded bytes (row identity is their equality).
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The row's schema.
    pub fn schema(&self) -> &'a TableSchema {
        self.schema
    }

    /// The values in column order.
    #[inline]
    pub fn columns(&self) -> Columns<'a> {
        Columns {
            cols: self.schema.columns.iter(),
            r: Reader {
                bytes: self.bytes,
                pos: 0,
                checked: false,
            },
            table: &self.schema.name,
        }
    }

    /// The value of column `i`: one load when only fixed-width columns precede it,
    /// otherwise a walk over the columns from the last fixed offset.
    ///
    /// # Panics
    /// If `i` is not a column of the schema.
    #[inline]
    pub fn column(&self, i: usize) -> ValueRef<'a> {
        let (from, pos) = match self.fixed.get(i) {
            Some(&at) => (i, at as usize),
            None => match self.fixed.last() {
                Some(&at) => (self.fixed.len() - 1, at as usize),
                None => (0, 0),
            },
        };
        let mut r = Reader {
            bytes: self.bytes,
            pos,
            checked: false,
        };
        for col in &self.schema.columns[from..i] {
            if r.skip(&col.ty).is_err() {
                corrupt(&self.schema.name);
            }
        }
        r.value_ref(&self.schema.columns[i].ty)
            .unwrap_or_else(|_| corrupt(&self.schema.name))
    }

    /// The decoded row.
    pub fn decode(&self) -> Row {
        Row::new(self.columns().map(ValueRef::to_value).collect::<Vec<_>>())
    }
}

/// A checked row failed to decode: only memory corruption can do that.
#[cold]
fn corrupt(table: &str) -> ! {
    panic!("stored row of `{table}` does not decode")
}

/// The values of a [`StoredRow`], in column order.
pub struct Columns<'a> {
    cols: std::slice::Iter<'a, crate::schema::ColumnDef>,
    r: Reader<'a>,
    table: &'a str,
}

impl<'a> Iterator for Columns<'a> {
    type Item = ValueRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<ValueRef<'a>> {
        let col = self.cols.next()?;
        Some(
            self.r
                .value_ref(&col.ty)
                .unwrap_or_else(|_| corrupt(self.table)),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.cols.size_hint()
    }
}

impl ExactSizeIterator for Columns<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{EnumType, Identity, Value};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn all_types_schema() -> TableSchema {
        let e = EnumType {
            name: "kind".into(),
            variants: Arc::from(vec![Arc::from("a"), Arc::from("b")]),
        };
        TableSchema::builder("t")
            .column("b", AlgebraicType::Bool)
            .column("u", AlgebraicType::U128)
            .column("i", AlgebraicType::I16)
            .column("f", AlgebraicType::F64)
            .column("s", AlgebraicType::String)
            .column("o", AlgebraicType::Option(Box::new(AlgebraicType::Bytes)))
            .column("e", AlgebraicType::Enum(e))
            .column("id", AlgebraicType::Identity)
            .build()
            .expect("valid schema")
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(
            b: bool, u: u128, i: i16, f in -1e9f64..1e9, s in ".{0,12}",
            o in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..9)),
            e in 0u8..2, id: [u8; 32],
        ) {
            let schema = all_types_schema();
            let row = Row::new(vec![
                Value::Bool(b), Value::U128(u), Value::I16(i), Value::F64(f), Value::from(s),
                Value::from(o), Value::Enum(e), Value::from(Identity(id)),
            ]);
            let mut buf = Vec::new();
            encode_row(&schema, &row, &mut buf);
            let (back, used) = decode_row(&schema, &buf).expect("decodes");
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(&back, &row);
            let stored = StoredRow::new(&schema, &buf).expect("checks");
            prop_assert_eq!(stored.decode(), row.clone());
            for (i, v) in row.iter().enumerate() {
                prop_assert_eq!(stored.column(i), ValueRef::from(v));
            }
        }
    }

    #[test]
    fn truncated_input_names_column_and_position() {
        let schema = all_types_schema();
        let err = decode_row(&schema, &[1, 0, 0]).expect_err("too short");
        assert_eq!(&*err.column, "u");
        assert_eq!(err.what, "input ends inside a value");
    }
}
