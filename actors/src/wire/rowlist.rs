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
//! query; a session only wraps it in a small envelope. Rows read from the store are
//! transcoded from their stored bytes ([`write_stored_row`]) through the engine's column
//! reader, so this module holds the only copy of the wire layout and the engine's codec
//! the only copy of the stored one.

use rmp::encode;
use thiserror::Error;
use tidings_engine::codec::StoredRow;
use tidings_engine::{AlgebraicType, Identity, Row, TableSchema, Timestamp, Value, ValueRef};

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

// Always inlined: it runs for every value of every row, from two row writers (decoded
// and stored), and left out of line it costs a call per value.
#[inline(always)]
fn write_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    // Writing into a Vec cannot fail; the results are ignored for that reason.
    let _ = match v {
        ValueRef::Null => encode::write_nil(out).map_err(|_| ()),
        ValueRef::Bool(b) => encode::write_bool(out, b).map_err(|_| ()),
        ValueRef::U8(x) => write_uint(out, u64::from(x)),
        ValueRef::U16(x) => write_uint(out, u64::from(x)),
        ValueRef::U32(x) => write_uint(out, u64::from(x)),
        ValueRef::U64(x) => write_uint(out, x),
        ValueRef::Enum(t) => write_uint(out, u64::from(t)),
        ValueRef::I8(x) => write_sint(out, i64::from(x)),
        ValueRef::I16(x) => write_sint(out, i64::from(x)),
        ValueRef::I32(x) => write_sint(out, i64::from(x)),
        ValueRef::I64(x) => write_sint(out, x),
        ValueRef::Timestamp(t) => write_sint(out, t.0),
        ValueRef::F32(f) => encode::write_f32(out, f).map_err(|_| ()),
        ValueRef::F64(f) => encode::write_f64(out, f).map_err(|_| ()),
        ValueRef::U128(x) => encode::write_bin(out, &x.to_be_bytes()).map_err(|_| ()),
        ValueRef::I128(x) => encode::write_bin(out, &x.to_be_bytes()).map_err(|_| ()),
        ValueRef::Identity(id) => encode::write_bin(out, id).map_err(|_| ()),
        ValueRef::Bytes(b) => encode::write_bin(out, b).map_err(|_| ()),
        ValueRef::String(s) => encode::write_str(out, s).map_err(|_| ()),
    };
}

/// An unsigned integer in its smallest MessagePack form (rmp's choice, written inline:
/// this runs for most values of most rows).
#[inline]
fn write_uint(out: &mut Vec<u8>, v: u64) -> Result<(), ()> {
    if v < 128 {
        out.push(v as u8);
    } else if v < 1 << 8 {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v < 1 << 16 {
        let b = (v as u16).to_be_bytes();
        out.extend_from_slice(&[0xcd, b[0], b[1]]);
    } else if v < 1 << 32 {
        let b = (v as u32).to_be_bytes();
        out.extend_from_slice(&[0xce, b[0], b[1], b[2], b[3]]);
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
    Ok(())
}

/// A signed integer in its smallest MessagePack form: non-negative values as unsigned
/// (as rmp writes them), negative ones as a negative fixint or the narrowest signed int.
#[inline]
fn write_sint(out: &mut Vec<u8>, v: i64) -> Result<(), ()> {
    if v >= 0 {
        return write_uint(out, v as u64);
    }
    if v >= -32 {
        out.push(v as u8);
        return Ok(());
    }
    encode::write_sint(out, v).map(|_| ()).map_err(|_| ())
}

#[inline]
fn write_array_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else {
        let _ = encode::write_array_len(out, n as u32);
    }
}

/// Appends one row as a MessagePack array.
#[inline]
pub fn write_row(out: &mut Vec<u8>, row: &Row) {
    write_array_len(out, row.len());
    for v in row.iter() {
        write_value(out, v.into());
    }
}

/// Appends one stored row as a MessagePack array, transcoded from its stored bytes
/// without building a [`Row`]: the same bytes as [`write_row`] of the decoded row.
#[inline]
pub fn write_stored_row(out: &mut Vec<u8>, row: StoredRow<'_>) {
    let columns = row.columns();
    write_array_len(out, columns.len());
    for v in columns {
        write_value(out, v);
    }
}

/// Builds one row list row by row, in one buffer.
///
/// The body is written behind room for the largest `bin` header; [`RowListWriter::finish`]
/// writes the smallest header that fits and moves a short body down to meet it, so a large
/// list is never copied.
pub struct RowListWriter {
    out: Vec<u8>,
}

/// Bytes of a `bin 32` header.
const BIN32_HEADER: usize = 5;

impl Default for RowListWriter {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl RowListWriter {
    /// An empty list with room for about `rows` small rows.
    pub fn with_capacity(rows: usize) -> Self {
        let mut out = Vec::with_capacity(BIN32_HEADER + rows * 24);
        out.resize(BIN32_HEADER, 0);
        RowListWriter { out }
    }

    /// Appends a decoded row.
    pub fn push(&mut self, row: &Row) {
        write_row(&mut self.out, row);
    }

    /// Appends a stored row (see [`write_stored_row`]).
    #[inline]
    pub fn push_stored(&mut self, row: StoredRow<'_>) {
        write_stored_row(&mut self.out, row);
    }

    /// The finished row list (a MessagePack `bin`).
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.out;
        let len = out.len() - BIN32_HEADER;
        let mut header = Vec::with_capacity(BIN32_HEADER);
        let _ = encode::write_bin_len(&mut header, len as u32);
        let skip = BIN32_HEADER - header.len();
        out[skip..BIN32_HEADER].copy_from_slice(&header);
        if skip > 0 {
            out.drain(..skip);
        }
        out
    }
}

/// Encodes a query delta's rows as one row list, each row from the form
/// [`tidings_query::DeltaRows::iter_for_encoding`] picks: stored bytes transcoded, or
/// values written.
pub fn encode_delta(rows: &tidings_query::DeltaRows) -> Vec<u8> {
    let mut w = RowListWriter::with_capacity(rows.len());
    for r in rows.iter_for_encoding() {
        match r {
            tidings_query::DeltaRow::Stored(s) => w.push_stored(s),
            tidings_query::DeltaRow::Decoded(r) => w.push(r),
        }
    }
    w.finish()
}

/// Encodes `rows` as one row list (a MessagePack `bin`).
pub fn encode<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<u8> {
    let rows = rows.into_iter();
    let mut w = RowListWriter::with_capacity(rows.size_hint().0);
    for r in rows {
        w.push(r);
    }
    w.finish()
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

    /// Every column type, each also as an option.
    fn all_types() -> Vec<AlgebraicType> {
        use AlgebraicType as T;
        let e = T::Enum(EnumType {
            name: "k".into(),
            variants: Arc::from(vec![Arc::from("x"), Arc::from("y"), Arc::from("z")]),
        });
        let plain = vec![
            T::Bool,
            T::U8,
            T::U16,
            T::U32,
            T::U64,
            T::U128,
            T::I8,
            T::I16,
            T::I32,
            T::I64,
            T::I128,
            T::F32,
            T::F64,
            T::String,
            T::Bytes,
            T::Identity,
            T::Timestamp,
            e,
        ];
        let options = plain.iter().map(|t| T::Option(Box::new(t.clone())));
        plain.clone().into_iter().chain(options).collect()
    }

    fn value_of(ty: &AlgebraicType) -> proptest::prelude::BoxedStrategy<Value> {
        use AlgebraicType as T;
        use proptest::prelude::*;
        match ty {
            T::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            T::U8 => any::<u8>().prop_map(Value::U8).boxed(),
            T::U16 => any::<u16>().prop_map(Value::U16).boxed(),
            T::U32 => any::<u32>().prop_map(Value::U32).boxed(),
            T::U64 => any::<u64>().prop_map(Value::U64).boxed(),
            T::U128 => any::<u128>().prop_map(Value::U128).boxed(),
            T::I8 => any::<i8>().prop_map(Value::I8).boxed(),
            T::I16 => any::<i16>().prop_map(Value::I16).boxed(),
            T::I32 => any::<i32>().prop_map(Value::I32).boxed(),
            T::I64 => any::<i64>().prop_map(Value::I64).boxed(),
            T::I128 => any::<i128>().prop_map(Value::I128).boxed(),
            // NaN never reaches storage and -0.0 is normalized to 0.0 there.
            T::F32 => proptest::num::f32::NORMAL
                .prop_map(|f| Value::F32(f + 0.0))
                .boxed(),
            T::F64 => proptest::num::f64::NORMAL
                .prop_map(|f| Value::F64(f + 0.0))
                .boxed(),
            T::String => ".{0,40}".prop_map(Value::from).boxed(),
            T::Bytes => proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(Value::from)
                .boxed(),
            T::Identity => any::<[u8; 32]>()
                .prop_map(|b| Value::from(Identity(b)))
                .boxed(),
            T::Timestamp => any::<i64>()
                .prop_map(|t| Value::Timestamp(Timestamp(t)))
                .boxed(),
            T::Enum(_) => (0u8..3).prop_map(Value::Enum).boxed(),
            T::Option(inner) => proptest::option::of(value_of(inner))
                .prop_map(|v| v.unwrap_or(Value::Null))
                .boxed(),
        }
    }

    /// A schema of random column types and up to `max_rows` rows of it.
    fn table_and_rows(
        max_rows: usize,
    ) -> impl proptest::prelude::Strategy<Value = (TableSchema, Vec<Row>)> {
        use proptest::prelude::*;
        let types = all_types();
        proptest::collection::vec(0..types.len(), 1..20).prop_flat_map(move |picks| {
            let cols: Vec<AlgebraicType> = picks.iter().map(|i| types[*i].clone()).collect();
            let mut b = TableSchema::builder("t");
            for (i, ty) in cols.iter().enumerate() {
                b = b.column(&format!("c{i}"), ty.clone());
            }
            let schema = b.build().expect("schema");
            let row = cols
                .iter()
                .map(value_of)
                .collect::<Vec<_>>()
                .prop_map(Row::new);
            (Just(schema), proptest::collection::vec(row, 0..max_rows))
        })
    }

    proptest::proptest! {
        #[test]
        fn transcoding_stored_rows_equals_encoding_decoded_rows(
            (schema, rows) in table_and_rows(12),
        ) {
            let stored: Vec<Box<[u8]>> = rows
                .iter()
                .map(|r| tidings_engine::codec::row_bytes(&schema, r))
                .collect();
            let mut w = RowListWriter::default();
            for bytes in &stored {
                w.push_stored(StoredRow::new(&schema, bytes).expect("a stored row"));
            }
            let transcoded = w.finish();
            let decoded: Vec<Row> = stored
                .iter()
                .map(|b| StoredRow::new(&schema, b).expect("a stored row").decode())
                .collect();
            proptest::prop_assert_eq!(&decoded, &rows);
            proptest::prop_assert_eq!(&transcoded, &encode(&decoded));
            proptest::prop_assert_eq!(decode(&schema, &transcoded).expect("decodes"), rows);
        }
    }

    proptest::proptest! {
        /// A delta encodes to the same bytes whichever form its rows are written from:
        /// small commits from decoded rows, large ones (16 rows on) transcoded from the
        /// packed stored rows.
        #[test]
        fn delta_encoding_equals_encoding_its_decoded_rows(
            (schema, rows) in table_and_rows(40),
        ) {
            use tidings_query::{Caller, compile, evaluate_delta};
            let ds = tidings_engine::Datastore::in_memory(
                tidings_engine::Schema::new([schema]).expect("one table"),
            );
            let t = tidings_engine::TableId(0);
            let mut tx = ds.begin_mut_tx();
            let kept: Vec<Row> = rows.into_iter().filter_map(|r| tx.insert(t, r).ok()).collect();
            let inserted = tx.commit().expect("commit").tx_data;
            let mut tx = ds.begin_mut_tx();
            for r in kept {
                let _ = tx.delete(t, r);
            }
            let deleted = tx.commit().expect("commit").tx_data;
            let plan = {
                let state = ds.read();
                let owner = Caller { identity: tidings_engine::Identity::ZERO, is_owner: true };
                compile("SELECT * FROM t", state.schema(), state.schema_version(), owner)
                    .expect("compiles")
                    .pop()
                    .expect("one plan")
            };
            for tx in inserted.iter().chain(deleted.iter()) {
                let d = evaluate_delta(&plan, &ds.read(), tx);
                for rows in [&d.inserts, &d.deletes] {
                    proptest::prop_assert_eq!(encode_delta(rows), encode(rows.iter()));
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn integers_take_rmps_smallest_form(u: u64, i: i64, shift in 0u32..64) {
            let (u, i) = (u >> shift, i >> shift);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let _ = write_uint(&mut ours, u);
            encode::write_uint(&mut theirs, u).expect("vec");
            let _ = write_sint(&mut ours, i);
            encode::write_sint(&mut theirs, i).expect("vec");
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn list_headers_take_the_smallest_form() {
        let small = vec![row![1u64]; 3];
        assert_eq!(encode(&small)[0], 0xc4);
        let medium = vec![row![u64::MAX]; 100];
        assert_eq!(encode(&medium)[0], 0xc5);
        let large = vec![row![u64::MAX]; 10_000];
        let bytes = encode(&large);
        assert_eq!(bytes[0], 0xc6);
        assert_eq!(
            decode(
                &TableSchema::builder("t")
                    .column("a", AlgebraicType::U64)
                    .build()
                    .expect("schema"),
                &bytes
            )
            .expect("decodes"),
            large
        );
    }
}
