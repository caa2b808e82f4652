//! The payload of a commitlog record: one commit, or one schema change.
//!
//! ```text
//! commit record                      schema record
//! +------+---------------------+     +------+---------------------+
//! | 0x01 | kind                |     | 0x02 | kind                |
//! | u64  | commit offset       |     | u64  | offset it follows   |
//! | i64  | timestamp (µs)      |     | ...  | schema, MessagePack |
//! | u8   | has reducer         |     +------+---------------------+
//! | str  | reducer (if any)    |
//! | [32] | caller identity     |     str   = u32 LE length + UTF-8
//! | u32  | sequence count      |     rows  = concatenated rows in the
//! | ...  | (u32 table, u16 col,|             canonical codec of the
//! |      |  u64 next) each     |             table's schema at this
//! | u32  | table count         |             record's offset
//! | ...  | per table: u32 id,  |
//! |      | u32 inserts, u32    |
//! |      | deletes, u32 bytes, |
//! |      | rows                |
//! +------+---------------------+
//! ```
//!
//! Each table's rows are prefixed by their byte length, so replay skips an event table's
//! rows without decoding them: they keep history, not state.

use thiserror::Error;

use crate::codec;
use crate::error::DecodeError;
use crate::row::Row;
use crate::schema::{ColId, Schema, TableId};
use crate::tx_data::{TxData, TxOffset};
use crate::value::{Identity, Timestamp};

const KIND_COMMIT: u8 = 1;
const KIND_SCHEMA: u8 = 2;

/// A record payload that cannot be decoded.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The payload ends early or has an unknown layout.
    #[error("malformed log record: {0}")]
    Malformed(&'static str),
    /// A table id the schema in force does not have.
    #[error("log record names table #{0}, which the schema in force does not have")]
    UnknownTable(u32),
    /// A row that does not decode with the schema in force.
    #[error(transparent)]
    Row(#[from] DecodeError),
    /// The schema of a schema record does not decode.
    #[error("schema record does not decode")]
    Schema(#[source] rmp_serde::decode::Error),
}

/// A decoded record.
#[derive(Debug)]
pub enum Record {
    /// A commit; event-table rows are left out.
    Commit(ReplayedCommit),
    /// A schema change taking effect after commit `offset`.
    Schema {
        /// The last commit before the change.
        offset: TxOffset,
        /// The new schema.
        schema: Schema,
    },
}

/// A commit as replay needs it.
#[derive(Debug)]
pub struct ReplayedCommit {
    /// Commit offset.
    pub offset: TxOffset,
    /// Commit time.
    pub timestamp: Timestamp,
    /// Sequence high-water marks.
    pub sequences: Vec<(TableId, ColId, u64)>,
    /// Per persistent table: inserts and deletes.
    pub tables: Vec<(TableId, Vec<Row>, Vec<Row>)>,
}

/// Encodes a commit.
pub fn encode_commit(schema: &Schema, tx: &TxData) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + tx.row_count() * 24);
    out.push(KIND_COMMIT);
    out.extend_from_slice(&tx.offset.to_le_bytes());
    out.extend_from_slice(&tx.timestamp.0.to_le_bytes());
    match &tx.meta.reducer {
        Some(r) => {
            out.push(1);
            put_str(&mut out, r);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&tx.meta.caller.0);
    out.extend_from_slice(&(tx.sequences.len() as u32).to_le_bytes());
    for (t, c, next) in &tx.sequences {
        out.extend_from_slice(&t.0.to_le_bytes());
        out.extend_from_slice(&c.0.to_le_bytes());
        out.extend_from_slice(&next.to_le_bytes());
    }
    out.extend_from_slice(&(tx.tables.len() as u32).to_le_bytes());
    for t in &tx.tables {
        let Some(ts) = schema.table(t.table_id) else {
            continue;
        };
        out.extend_from_slice(&t.table_id.0.to_le_bytes());
        out.extend_from_slice(&(t.inserts.len() as u32).to_le_bytes());
        out.extend_from_slice(&(t.deletes.len() as u32).to_le_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        // Packed rows are already in their stored encoding, which is the log's.
        for (packed, rows) in [
            (&t.stored_inserts, &t.inserts),
            (&t.stored_deletes, &t.deletes),
        ] {
            match packed {
                Some(p) => out.extend_from_slice(p.bytes()),
                None => rows.iter().for_each(|r| codec::encode_row(ts, r, &mut out)),
            }
        }
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
    out
}

/// Encodes a schema change taking effect after commit `offset`.
pub fn encode_schema(offset: TxOffset, schema: &Schema) -> Vec<u8> {
    let mut out = vec![KIND_SCHEMA];
    out.extend_from_slice(&offset.to_le_bytes());
    // Serializing plain owned data into a Vec cannot fail.
    out.extend(rmp_serde::to_vec(schema).unwrap_or_default());
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.b.len() < n {
            return Err(RecordError::Malformed("record ends early"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.arr::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
}

/// Decodes a record with `schema`, the schema in force at its offset.
pub fn decode(schema: &Schema, payload: &[u8]) -> Result<Record, RecordError> {
    let mut r = Reader { b: payload };
    match r.u8()? {
        KIND_SCHEMA => {
            let offset = r.u64()?;
            let schema = rmp_serde::from_slice(r.b).map_err(RecordError::Schema)?;
            Ok(Record::Schema { offset, schema })
        }
        KIND_COMMIT => decode_commit(schema, &mut r).map(Record::Commit),
        _ => Err(RecordError::Malformed("unknown record kind")),
    }
}

fn decode_commit(schema: &Schema, r: &mut Reader<'_>) -> Result<ReplayedCommit, RecordError> {
    let offset = r.u64()?;
    let timestamp = Timestamp(r.u64()? as i64);
    if r.u8()? == 1 {
        let len = r.u32()? as usize;
        r.take(len)?;
    }
    let _caller = Identity(r.arr()?);
    let n_seq = r.u32()?;
    let mut sequences = Vec::new();
    for _ in 0..n_seq {
        sequences.push((TableId(r.u32()?), ColId(r.u16()?), r.u64()?));
    }
    let n_tables = r.u32()?;
    let mut tables = Vec::new();
    for _ in 0..n_tables {
        let id = r.u32()?;
        let n_ins = r.u32()? as usize;
        let n_del = r.u32()? as usize;
        let len = r.u32()? as usize;
        let mut rows = r.take(len)?;
        let ts = schema
            .table(TableId(id))
            .ok_or(RecordError::UnknownTable(id))?;
        if ts.is_event {
            continue;
        }
        let mut decode_n = |n: usize| -> Result<Vec<Row>, RecordError> {
            let mut out = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let (row, used) = codec::decode_row(ts, rows)?;
                rows = &rows[used..];
                out.push(row);
            }
            Ok(out)
        };
        let inserts = decode_n(n_ins)?;
        let deletes = decode_n(n_del)?;
        if !rows.is_empty() {
            return Err(RecordError::Malformed("table payload longer than its rows"));
        }
        tables.push((TableId(id), inserts, deletes));
    }
    Ok(ReplayedCommit {
        offset,
        timestamp,
        sequences,
        tables,
    })
}
