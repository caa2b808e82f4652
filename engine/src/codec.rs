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

use crate::error::DecodeError;
use crate::row::Row;
use crate::schema::TableSchema;
use crate::value::{AlgebraicType, Identity, Timestamp, Value};

/// The encoding of `row` as a fresh boxed buffer (the stored form).
pub fn row_bytes(schema: &TableSchema, row: &Row) -> Box<[u8]> {
    let mut out = Vec::with_capacity(row.len() * 8);
    encode_row(schema, row, &mut out);
    out.into_boxed_slice()
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    // A NULL is the 0x00 tag of its option column; the 0x01 tag of a present value is
    // written by `encode_row`, which knows the column type.
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.push(*b as u8),
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::Enum(x) => out.push(*x),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_bits().to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_bits().to_le_bytes()),
        Value::Timestamp(t) => out.extend_from_slice(&t.0.to_le_bytes()),
        Value::U128(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I128(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Identity(id) => out.extend_from_slice(&id.0),
        Value::String(s) => {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
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
        encode_value(v, out);
    }
}

/// Decodes one row of `schema` from the front of `bytes`, returning it and the bytes used.
pub fn decode_row(schema: &TableSchema, bytes: &[u8]) -> Result<(Row, usize), DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let mut values = Vec::with_capacity(schema.columns.len());
    for col in &schema.columns {
        values.push(r.value(&col.ty).map_err(|what| DecodeError {
            table: schema.name.clone(),
            column: col.name.clone(),
            position: r.pos,
            what,
        })?);
    }
    Ok((Row::new(values), r.pos))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or("input ends inside a value")?;
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn value(&mut self, ty: &AlgebraicType) -> Result<Value, &'static str> {
        use AlgebraicType as T;
        Ok(match ty {
            T::Bool => match self.arr::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err("bool byte is neither 0 nor 1"),
            },
            T::U8 => Value::U8(self.arr::<1>()?[0]),
            T::I8 => Value::I8(self.arr::<1>()?[0] as i8),
            T::Enum(e) => {
                let tag = self.arr::<1>()?[0];
                if tag as usize >= e.variants.len() {
                    return Err("enum tag out of range");
                }
                Value::Enum(tag)
            }
            T::U16 => Value::U16(u16::from_le_bytes(self.arr()?)),
            T::I16 => Value::I16(i16::from_le_bytes(self.arr()?)),
            T::U32 => Value::U32(u32::from_le_bytes(self.arr()?)),
            T::I32 => Value::I32(i32::from_le_bytes(self.arr()?)),
            T::F32 => {
                let f = f32::from_bits(u32::from_le_bytes(self.arr()?));
                if f.is_nan() {
                    return Err("f32 is NaN");
                }
                Value::F32(f)
            }
            T::U64 => Value::U64(u64::from_le_bytes(self.arr()?)),
            T::I64 => Value::I64(i64::from_le_bytes(self.arr()?)),
            T::F64 => {
                let f = f64::from_bits(u64::from_le_bytes(self.arr()?));
                if f.is_nan() {
                    return Err("f64 is NaN");
                }
                Value::F64(f)
            }
            T::Timestamp => Value::Timestamp(Timestamp(i64::from_le_bytes(self.arr()?))),
            T::U128 => Value::U128(u128::from_le_bytes(self.arr()?)),
            T::I128 => Value::I128(i128::from_le_bytes(self.arr()?)),
            T::Identity => Value::Identity(Box::new(Identity(self.arr()?))),
            T::String => {
                let len = u32::from_le_bytes(self.arr()?) as usize;
                let s = std::str::from_utf8(self.take(len)?).map_err(|_| "string is not UTF-8")?;
                Value::String(s.into())
            }
            T::Bytes => {
                let len = u32::from_le_bytes(self.arr()?) as usize;
                Value::Bytes(self.take(len)?.into())
            }
            T::Option(inner) => match self.arr::<1>()?[0] {
                0 => Value::Null,
                1 => self.value(inner)?,
                _ => return Err("option tag is neither 0 nor 1"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::EnumType;
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
            prop_assert_eq!(back, row);
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
