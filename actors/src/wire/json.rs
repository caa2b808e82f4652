//! Values and rows in JSON, as `v1.json.tidings` and `POST /sql` write them.
//!
//! JSON numbers lose precision above 2^53 in most clients, so every 64- and 128-bit
//! integer is a decimal string; bytes and identities are lowercase hex:
//!
//! ```text
//! bool               true / false      u8..u32, i8..i32   number
//! u64, i64           "decimal"         u128, i128         "decimal"
//! f32, f64           number (NaN, ±inf: null)
//! string             string            bytes              "hex"
//! identity           "hex" (64 digits) timestamp          "decimal" (µs since epoch, i64)
//! enum               number (u8 tag)   option NULL        null
//! ```
//!
//! A row is an array of its values in column order; a row list is an array of rows.
//! [`rows_json`] renders a row list once per query per commit (cached in
//! [`crate::messages::WireCache`]); [`rows_from_json`] reads one back against a schema.

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value as Json;
use serde_json::value::RawValue;
use thiserror::Error;
use tidings_engine::{AlgebraicType, Identity, Row, TableSchema, Timestamp, Value};

/// A JSON row list that does not read back against its schema.
#[derive(Debug, Error)]
pub enum JsonRowsError {
    /// Not an array of arrays.
    #[error("row list of `{table}` is not a JSON array of row arrays")]
    Shape {
        /// The table.
        table: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A value that does not fit its column.
    #[error("row list of `{table}`: row {row}, column {column}: {what}")]
    Value {
        /// The table.
        table: String,
        /// Row index within the list.
        row: usize,
        /// Column index within the row.
        column: usize,
        /// What was wrong.
        what: String,
    },
}

/// A value that serializes by the v1 JSON rules above (without building a JSON tree).
pub struct JsonValue<'a>(pub &'a Value);

/// Bytes as lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::U8(x) => s.serialize_u8(*x),
            Value::U16(x) => s.serialize_u16(*x),
            Value::U32(x) => s.serialize_u32(*x),
            Value::I8(x) => s.serialize_i8(*x),
            Value::I16(x) => s.serialize_i16(*x),
            Value::I32(x) => s.serialize_i32(*x),
            Value::U64(x) => s.collect_str(x),
            Value::I64(x) => s.collect_str(x),
            Value::U128(x) => s.collect_str(x),
            Value::I128(x) => s.collect_str(x),
            // serde_json writes non-finite floats as null.
            Value::F32(f) => s.serialize_f32(*f),
            Value::F64(f) => s.serialize_f64(*f),
            Value::String(x) => s.serialize_str(x),
            Value::Bytes(b) => s.serialize_str(&hex(b)),
            Value::Identity(id) => s.serialize_str(&id.to_hex()),
            Value::Timestamp(t) => s.collect_str(&t.0),
            Value::Enum(t) => s.serialize_u8(*t),
        }
    }
}

/// A value as a JSON tree, by the v1 JSON rules.
pub fn value_json(v: &Value) -> Json {
    // Only maps with non-string keys fail to convert, and a value has none.
    serde_json::to_value(JsonValue(v)).unwrap_or(Json::Null)
}

struct JsonRow<'a>(&'a Row);

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0.iter() {
            seq.serialize_element(&JsonValue(v))?;
        }
        seq.end()
    }
}

struct JsonRows<'a>(&'a [Row]);

impl Serialize for JsonRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(JsonRow))
    }
}

/// Renders `rows` as a JSON row list, ready to be embedded verbatim in any message.
pub fn rows_json(rows: &[Row]) -> Box<RawValue> {
    match serde_json::value::to_raw_value(&JsonRows(rows)) {
        Ok(raw) => raw,
        // Unreachable: plain values always serialize; an empty list keeps the message valid.
        Err(e) => {
            tracing::error!(error = %e, "a row list did not render as JSON");
            RawValue::from_string("[]".into()).unwrap_or_default()
        }
    }
}

/// Lowercase or uppercase hex to bytes; `None` when `s` is not hex.
pub fn bytes_from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A value of type `ty` from its v1 JSON form. Integers are also accepted as JSON
/// numbers, so hand-written input need not quote small 64-bit values.
pub fn value_from_json(ty: &AlgebraicType, j: &Json) -> Result<Value, String> {
    use AlgebraicType as T;
    if let T::Option(inner) = ty {
        return match j {
            Json::Null => Ok(Value::Null),
            other => value_from_json(inner, other),
        };
    }
    let int = || -> Result<i128, String> {
        match j {
            Json::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .ok_or_else(|| format!("{n} is not an integer")),
            Json::String(s) => s
                .parse::<i128>()
                .map_err(|_| format!("{s:?} is not a decimal integer")),
            other => Err(format!("expected an integer, found {other}")),
        }
    };
    Ok(match ty {
        T::Bool => Value::Bool(
            j.as_bool()
                .ok_or_else(|| format!("expected bool, found {j}"))?,
        ),
        T::U8 => Value::U8(fit(int()?, ty)?),
        T::U16 => Value::U16(fit(int()?, ty)?),
        T::U32 => Value::U32(fit(int()?, ty)?),
        T::U64 => Value::U64(fit(int()?, ty)?),
        T::I8 => Value::I8(fit(int()?, ty)?),
        T::I16 => Value::I16(fit(int()?, ty)?),
        T::I32 => Value::I32(fit(int()?, ty)?),
        T::I64 => Value::I64(fit(int()?, ty)?),
        T::U128 => match j {
            Json::String(s) => Value::U128(
                s.parse()
                    .map_err(|_| format!("{s:?} is not a u128 in decimal"))?,
            ),
            _ => Value::U128(fit(int()?, ty)?),
        },
        T::I128 => match j {
            Json::String(s) => Value::I128(
                s.parse()
                    .map_err(|_| format!("{s:?} is not an i128 in decimal"))?,
            ),
            _ => Value::I128(int()?),
        },
        T::Timestamp => Value::Timestamp(Timestamp(
            i64::try_from(int()?).map_err(|_| "timestamp out of range".to_string())?,
        )),
        T::Enum(e) => {
            let n = int()?;
            let tag = u8::try_from(n)
                .ok()
                .filter(|t| usize::from(*t) < e.variants.len());
            Value::Enum(tag.ok_or_else(|| format!("enum tag {n} has no variant in {}", e.name))?)
        }
        T::F32 => Value::F32(
            j.as_f64()
                .ok_or_else(|| format!("expected a number, found {j}"))? as f32,
        ),
        T::F64 => Value::F64(
            j.as_f64()
                .ok_or_else(|| format!("expected a number, found {j}"))?,
        ),
        T::String => Value::String(
            j.as_str()
                .ok_or_else(|| format!("expected a string, found {j}"))?
                .into(),
        ),
        T::Bytes => Value::Bytes(
            j.as_str()
                .and_then(bytes_from_hex)
                .ok_or_else(|| format!("expected a hex string, found {j}"))?
                .into(),
        ),
        T::Identity => {
            let b: [u8; 32] = j
                .as_str()
                .and_then(bytes_from_hex)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("expected 64 hex digits, found {j}"))?;
            Value::from(Identity(b))
        }
        T::Option(_) => unreachable!("handled above"),
    })
}

fn fit<N: TryFrom<i128>>(n: i128, ty: &AlgebraicType) -> Result<N, String> {
    N::try_from(n).map_err(|_| format!("{n} is out of range for {ty}"))
}

/// Reads a JSON row list of `schema`'s rows.
pub fn rows_from_json(schema: &TableSchema, json: &str) -> Result<Vec<Row>, JsonRowsError> {
    let rows: Vec<Vec<Json>> =
        serde_json::from_str(json).map_err(|source| JsonRowsError::Shape {
            table: schema.name.to_string(),
            source,
        })?;
    let err = |row, column, what: String| JsonRowsError::Value {
        table: schema.name.to_string(),
        row,
        column,
        what,
    };
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            if r.len() != schema.columns.len() {
                return Err(err(
                    i,
                    0,
                    format!(
                        "row has {} values, the table {} columns",
                        r.len(),
                        schema.columns.len()
                    ),
                ));
            }
            schema
                .columns
                .iter()
                .zip(r)
                .enumerate()
                .map(|(c, (col, j))| value_from_json(&col.ty, j).map_err(|e| err(i, c, e)))
                .collect::<Result<Vec<_>, _>>()
                .map(Row::new)
        })
        .collect()
}

/// A MessagePack value (reducer arguments, return values) as JSON: integers as numbers,
/// `bin` and `ext` as hex strings, empty input as null. Bytes that are not MessagePack
/// become one hex string, so a malformed value is still shown rather than lost.
pub fn msgpack_to_json(bytes: &[u8]) -> Json {
    if bytes.is_empty() {
        return Json::Null;
    }
    let mut rest = bytes;
    match rmpv::decode::read_value(&mut rest) {
        Ok(v) if rest.is_empty() => rmpv_json(&v),
        _ => Json::String(hex(bytes)),
    }
}

fn rmpv_json(v: &rmpv::Value) -> Json {
    use rmpv::Value as M;
    match v {
        M::Nil => Json::Null,
        M::Boolean(b) => Json::Bool(*b),
        M::Integer(i) => i
            .as_u64()
            .map(Json::from)
            .or_else(|| i.as_i64().map(Json::from))
            .unwrap_or(Json::Null),
        M::F32(f) => Json::from(*f),
        M::F64(f) => Json::from(*f),
        M::String(s) => Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        M::Binary(b) => Json::String(hex(b)),
        M::Array(a) => Json::Array(a.iter().map(rmpv_json).collect()),
        M::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = k.as_str().map_or_else(|| k.to_string(), str::to_string);
                    (key, rmpv_json(v))
                })
                .collect(),
        ),
        M::Ext(_, b) => Json::String(hex(b)),
    }
}

/// A JSON value as MessagePack (reducer arguments from a JSON client); null is empty.
pub fn json_to_msgpack(j: &Json) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    if j.is_null() {
        return Ok(Vec::new());
    }
    rmp_serde::to_vec(j)
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
            .column("h", AlgebraicType::Bytes)
            .column(
                "i",
                AlgebraicType::Enum(EnumType {
                    name: "k".into(),
                    variants: Arc::from(vec![Arc::from("x"), Arc::from("y")]),
                }),
            )
            .build()
            .expect("schema")
    }

    #[test]
    fn rows_render_by_the_v1_rules_and_read_back() {
        let big = (1u64 << 53) + 1;
        let rows = vec![
            row![
                big,
                -5i128,
                Some("hi"),
                Identity::from_u64(3),
                1.5f64,
                Timestamp(-7),
                -100i8,
                Value::Bytes(vec![0xde, 0xad].into()),
                Value::Enum(1)
            ],
            row![
                0u64,
                i128::MIN,
                None::<String>,
                Identity::ZERO,
                -0.25f64,
                Timestamp(0),
                0i8,
                Value::Bytes(Vec::new().into()),
                Value::Enum(0)
            ],
        ];
        let raw = rows_json(&rows);
        let text = raw.get();
        assert!(
            text.starts_with(&format!("[[\"{big}\",\"-5\",\"hi\",\"")),
            "{text}"
        );
        assert!(
            text.contains(&format!("\"{}\"", Identity::from_u64(3).to_hex())),
            "identity as hex: {text}"
        );
        assert!(text.contains(",\"-7\",-100,\"dead\",1]"), "{text}");
        assert_eq!(rows_from_json(&schema(), text).expect("reads back"), rows);
        for r in &rows {
            for v in r.iter() {
                assert_eq!(
                    serde_json::to_string(&value_json(v)).expect("json"),
                    serde_json::to_string(&JsonValue(v)).expect("json"),
                    "the tree and the streaming form agree"
                );
            }
        }
    }

    #[test]
    fn bad_json_rows_name_row_and_column() {
        let e = rows_from_json(&schema(), "[[1]]").expect_err("short row");
        assert!(matches!(e, JsonRowsError::Value { row: 0, .. }), "{e}");
        let e = rows_from_json(&schema(), "{}").expect_err("not an array");
        assert!(matches!(e, JsonRowsError::Shape { .. }), "{e}");
        let id = Identity::ZERO.to_hex();
        let e = rows_from_json(
            &schema(),
            &format!(r#"[["1","2",null,"{id}",1.0,"3",1,"zz",0]]"#),
        )
        .expect_err("bad hex");
        assert!(
            matches!(
                e,
                JsonRowsError::Value {
                    row: 0,
                    column: 7,
                    ..
                }
            ),
            "{e}"
        );
        let e = rows_from_json(
            &schema(),
            &format!(r#"[["1","2",null,"{id}",1.0,"3",300,"",0]]"#),
        )
        .expect_err("i8 range");
        assert!(e.to_string().contains("300 is out of range for i8"), "{e}");
    }

    #[test]
    fn msgpack_values_convert_both_ways() {
        let args = rmp_serde::to_vec(&("hi", u64::MAX, -3i32)).expect("args");
        let j = msgpack_to_json(&args);
        assert_eq!(j, serde_json::json!(["hi", u64::MAX, -3]));
        assert_eq!(json_to_msgpack(&j).expect("packs"), args);
        assert_eq!(msgpack_to_json(&[]), Json::Null);
        assert!(json_to_msgpack(&Json::Null).expect("packs").is_empty());
        assert_eq!(msgpack_to_json(&[0x92, 0x01]), Json::String("9201".into()));
        assert_eq!(msgpack_to_json(&[0x01, 0x02]), Json::String("0102".into()));
    }
}
