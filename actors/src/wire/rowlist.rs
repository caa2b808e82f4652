//! Row lists: the wire form of a query's rows.
//!
//! A row list is a MessagePack `bin` holding the concatenated rows, each a MessagePack
//! array of plain values directed by the table's schema:
//!
//! ```text
//! bool           bool               u8..u64, i8..i64   int (smallest form)
//! u128, i128     bin 16, big-endian f32, f64           float 32 / float 64
//! string         str                bytes              bin
//! identity       bin 32             timestamp          int (µs since epoch, i64)
//! enum           int (u8 tag)       option NULL        nil
//! ```
//!
//! A row list is encoded once per query per commit and shared by every client of that
//! query; a session only wraps it in a small envelope.

use rmp::encode;
use thiserror::Error;
use tidings_engine::{AlgebraicType, Identity, Row, TableSchema, Timestamp, Value};

/// A row list that does not decode against its schema.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("row list of `{table}`: row {row}, column {column}: {what}")]
pub struct RowListError {
    /// The table.
    pub table: String,
    /// Row index within the list.
    pub row: usize,
    /// Column index within the row.
    pub column: usize,
    /// What was wrong.
    pub what: String,
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    // Writing into a Vec cannot fail; the results are ignored for that reason.
    let _ = match v {
        Value::Null => encode::write_nil(out).map_err(|_| ()),
        Value::Bool(b) => encode::write_bool(out, *b).map_err(|_| ()),
        Value::U8(x) => encode::write_uint(out, u64::from(*x))
            .map(|_| ())
            .map_err(|_| ()),
        Value::U16(x) => encode::write_uint(out, u64::from(*x))
            .map(|_| ())
            .map_err(|_| ()),
        Value::U32(x) => encode::write_uint(out, u64::from(*x))
            .map(|_| ())
            .map_err(|_| ()),
        Value::U64(x) => encode::write_uint(out, *x).map(|_| ()).map_err(|_| ()),
        Value::I8(x) => encode::write_sint(out, i64::from(*x))
            .map(|_| ())
            .map_err(|_| ()),
        Value::I16(x) => encode::write_sint(out, i64::from(*x))
            .map(|_| ())
            .map_err(|_| ()),
        Value::I32(x) => encode::write_sint(out, i64::from(*x))
            .map(|_| ())
            .map_err(|_| ()),
        Value::I64(x) => encode::write_sint(out, *x).map(|_| ()).map_err(|_| ()),
        Value::Timestamp(t) => encode::write_sint(out, t.0).map(|_| ()).map_err(|_| ()),
        Value::Enum(t) => encode::write_uint(out, u64::from(*t))
            .map(|_| ())
            .map_err(|_| ()),
        Value::F32(f) => encode::write_f32(out, *f).map_err(|_| ()),
        Value::F64(f) => encode::write_f64(out, *f).map_err(|_| ()),
        Value::U128(x) => encode::write_bin(out, &x.to_be_bytes()).map_err(|_| ()),
        Value::I128(x) => encode::write_bin(out, &x.to_be_bytes()).map_err(|_| ()),
        Value::Identity(id) => encode::write_bin(out, &id.0).map_err(|_| ()),
        Value::Bytes(b) => encode::write_bin(out, b).map_err(|_| ()),
        Value::String(s) => encode::write_str(out, s).map_err(|_| ()),
    };
}

/// Appends one row as a MessagePack array.
pub fn write_row(out: &mut Vec<u8>, row: &Row) {
    let _ = encode::write_array_len(out, row.len() as u32);
    for v in row.iter() {
        write_value(out, v);
    }
}

/// Encodes `rows` as one row list (a MessagePack `bin`).
pub fn encode(rows: &[Row]) -> Vec<u8> {
    let mut body = Vec::with_capacity(rows.len() * 24);
    for r in rows {
        write_row(&mut body, r);
    }
    let mut out = Vec::with_capacity(body.len() + 5);
    let _ = encode::write_bin_len(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let (&first, rest) = self.b.split_first().ok_or("input ends early")?;
        self.b = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!("needs {n} more bytes, {} left", self.b.len()));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn be(&mut self, n: usize) -> Result<u64, String> {
        let mut x = 0u64;
        for b in self.take(n)? {
            x = x << 8 | u64::from(*b);
        }
        Ok(x)
    }

    /// Any MessagePack integer, widened.
    fn int(&mut self) -> Result<i128, String> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => i128::from(m),
            0xe0..=0xff => i128::from(m as i8),
            0xcc => i128::from(self.be(1)?),
            0xcd => i128::from(self.be(2)?),
            0xce => i128::from(self.be(4)?),
            0xcf => i128::from(self.be(8)?),
            0xd0 => i128::from(self.be(1)? as u8 as i8),
            0xd1 => i128::from(self.be(2)? as u16 as i16),
            0xd2 => i128::from(self.be(4)? as u32 as i32),
            0xd3 => i128::from(self.be(8)? as i64),
            other => return Err(format!("expected an integer, found marker 0x{other:02x}")),
        })
    }

    fn len_of(
        &mut self,
        m: u8,
        fix: Option<(u8, u8)>,
        m8: u8,
        m16: u8,
        m32: u8,
    ) -> Result<Option<usize>, String> {
        if let Some((lo, hi)) = fix
            && (lo..=hi).contains(&m)
        {
            return Ok(Some(usize::from(m - lo)));
        }
        Ok(match m {
            x if x == m8 => Some(self.be(1)? as usize),
            x if x == m16 => Some(self.be(2)? as usize),
            x if x == m32 => Some(self.be(4)? as usize),
            _ => None,
        })
    }

    fn bin(&mut self) -> Result<&'a [u8], String> {
        let m = self.byte()?;
        let n = self
            .len_of(m, None, 0xc4, 0xc5, 0xc6)?
            .ok_or_else(|| format!("expected bin, found marker 0x{m:02x}"))?;
        self.take(n)
    }

    fn value(&mut self, ty: &AlgebraicType) -> Result<Value, String> {
        use AlgebraicType as T;
        if let T::Option(inner) = ty {
            if self.b.first() == Some(&0xc0) {
                self.byte()?;
                return Ok(Value::Null);
            }
            return self.value(inner);
        }
        let fit = |n: i128| Value::integer_of_type(ty, 0).map(|_| n);
        Ok(match ty {
            T::Bool => match self.byte()? {
                0xc2 => Value::Bool(false),
                0xc3 => Value::Bool(true),
                m => return Err(format!("expected bool, found marker 0x{m:02x}")),
            },
            T::U8 | T::U16 | T::U32 | T::U64 | T::I8 | T::I16 | T::I32 | T::I64 => {
                let n = self.int()?;
                fit(n).ok_or("not an integer column")?;
                let v = match ty {
                    T::U8 => u8::try_from(n).ok().map(Value::U8),
                    T::U16 => u16::try_from(n).ok().map(Value::U16),
                    T::U32 => u32::try_from(n).ok().map(Value::U32),
                    T::U64 => u64::try_from(n).ok().map(Value::U64),
                    T::I8 => i8::try_from(n).ok().map(Value::I8),
                    T::I16 => i16::try_from(n).ok().map(Value::I16),
                    T::I32 => i32::try_from(n).ok().map(Value::I32),
                    _ => i64::try_from(n).ok().map(Value::I64),
                };
                v.ok_or_else(|| format!("{n} is out of range for {ty}"))?
            }
            T::Timestamp => Value::Timestamp(Timestamp(
                i64::try_from(self.int()?).map_err(|_| "timestamp out of range".to_string())?,
            )),
            T::Enum(e) => {
                let n = self.int()?;
                let tag = u8::try_from(n)
                    .ok()
                    .filter(|t| usize::from(*t) < e.variants.len());
                Value::Enum(
                    tag.ok_or_else(|| format!("enum tag {n} has no variant in {}", e.name))?,
                )
            }
            T::F32 => match self.byte()? {
                0xca => Value::F32(f32::from_bits(self.be(4)? as u32)),
                m => return Err(format!("expected f32, found marker 0x{m:02x}")),
            },
            T::F64 => match self.byte()? {
                0xcb => Value::F64(f64::from_bits(self.be(8)?)),
                m => return Err(format!("expected f64, found marker 0x{m:02x}")),
            },
            T::U128 | T::I128 => {
                let b: [u8; 16] = self
                    .bin()?
                    .try_into()
                    .map_err(|_| "128-bit values are 16 bytes".to_string())?;
                if matches!(ty, T::U128) {
                    Value::U128(u128::from_be_bytes(b))
                } else {
                    Value::I128(i128::from_be_bytes(b))
                }
            }
            T::Identity => {
                let b: [u8; 32] = self
                    .bin()?
                    .try_into()
                    .map_err(|_| "identities are 32 bytes".to_string())?;
                Value::from(Identity(b))
            }
            T::Bytes => Value::Bytes(self.bin()?.into()),
            T::String => {
                let m = self.byte()?;
                let n = self
                    .len_of(m, Some((0xa0, 0xbf)), 0xd9, 0xda, 0xdb)?
                    .ok_or_else(|| format!("expected str, found marker 0x{m:02x}"))?;
                let s = std::str::from_utf8(self.take(n)?)
                    .map_err(|_| "string is not UTF-8".to_string())?;
                Value::String(s.into())
            }
            T::Option(_) => unreachable!("handled above"),
        })
    }
}

/// Decodes a row list of `schema`'s rows.
pub fn decode(schema: &TableSchema, bytes: &[u8]) -> Result<Vec<Row>, RowListError> {
    let err = |row, column, what: String| RowListError {
        table: schema.name.to_string(),
        row,
        column,
        what,
    };
    let mut r = Reader { b: bytes };
    let body = r.bin().map_err(|e| err(0, 0, e))?;
    if !r.b.is_empty() {
        return Err(err(0, 0, format!("{} bytes after the row list", r.b.len())));
    }
    decode_rows(schema, body)
}

/// Decodes the concatenated rows inside a row list (the `bin`'s payload) of `schema`.
pub fn decode_rows(schema: &TableSchema, body: &[u8]) -> Result<Vec<Row>, RowListError> {
    let err = |row, column, what: String| RowListError {
        table: schema.name.to_string(),
        row,
        column,
        what,
    };
    let mut r = Reader { b: body };
    let mut rows = Vec::new();
    while !r.b.is_empty() {
        let i = rows.len();
        let m = r.byte().map_err(|e| err(i, 0, e))?;
        let n = r
            .len_of(m, Some((0x90, 0x9f)), 0xff, 0xdc, 0xdd)
            .map_err(|e| err(i, 0, e))?
            .ok_or_else(|| {
                err(
                    i,
                    0,
                    format!("expected a row array, found marker 0x{m:02x}"),
                )
            })?;
        if n != schema.columns.len() {
            return Err(err(
                i,
                0,
                format!(
                    "row has {n} values, the table {} columns",
                    schema.columns.len()
                ),
            ));
        }
        let mut values = Vec::with_capacity(n);
        for (c, col) in schema.columns.iter().enumerate() {
            values.push(r.value(&col.ty).map_err(|e| err(i, c, e))?);
        }
        rows.push(Row::new(values));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tidings_engine::{EnumType, row};

    fn schema() -> TableSchema {
        TableSchema::builder("t")
            .column("a", AlgebraicType::U64)
            .column("b", AlgebraicType::I128)
            .column("c", AlgebraicType::Option(Box::new(AlgebraicType::String)))
            .column("d", AlgebraicType::Identity)
            .column("e", AlgebraicType::F64)
            .column("f", AlgebraicType::Timestamp)
            .column("g", AlgebraicType::I8)
            .column(
                "h",
                AlgebraicType::Enum(EnumType {
                    name: "k".into(),
                    variants: Arc::from(vec![Arc::from("x"), Arc::from("y")]),
                }),
            )
            .build()
            .expect("schema")
    }

    #[test]
    fn rows_round_trip() {
        let rows = vec![
            row![
                u64::MAX,
                -5i128,
                Some("hi"),
                Identity::from_u64(3),
                1.5f64,
                Timestamp(-7),
                -100i8,
                tidings_engine::Value::Enum(1)
            ],
            row![
                0u64,
                i128::MIN,
                None::<String>,
                Identity::ZERO,
                -0.0f64,
                Timestamp(0),
                0i8,
                tidings_engine::Value::Enum(0)
            ],
        ];
        let bytes = encode(&rows);
        assert_eq!(decode(&schema(), &bytes).expect("decodes"), rows);
    }

    #[test]
    fn malformed_lists_name_row_and_column() {
        let rows = vec![row![
            1u64,
            2i128,
            Some("x"),
            Identity::ZERO,
            1.0f64,
            Timestamp(1),
            1i8,
            tidings_engine::Value::Enum(0)
        ]];
        let mut bytes = encode(&rows);
        let last = bytes.len() - 1;
        bytes[last] = 9; // enum tag 9 does not exist
        let e = decode(&schema(), &bytes).expect_err("bad tag");
        assert_eq!((e.row, e.column), (0, 7));
        assert!(decode(&schema(), &bytes[..bytes.len() - 3]).is_err());
    }
}
