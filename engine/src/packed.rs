//! Packed rows: one commit's rows of one table in their stored encoding, back to back.
//!
//! TxData carries a large commit's inserts and deletes of a table twice (from
//! [`crate::PACK_ROWS_FROM`] rows): as decoded [`Row`]s, which clients and callbacks
//! want, and packed here. The packed form is what readers that never need a `Row` use:
//!
//! - incremental evaluation filters changed rows through [`StoredRow`] column reads;
//! - wire encoders transcode them without building values;
//! - the commitlog writes them with one copy.
//!
//! Why both forms: a commit's decoded rows are one heap allocation each, spread over the
//! heap and 32 bytes per value. Walking a thousand of them after the commit has pushed
//! them out of the cache costs a miss per row and column; the packed form of the same
//! rows is a few contiguous kilobytes that the prefetcher streams in. Copying the stored
//! bytes at commit costs less than one of those walks. A small commit is not packed: its
//! few rows are as near decoded, and packing would cost it several allocations.
//!
//! [`Row`]: crate::Row

use std::fmt;
use std::sync::Arc;

use crate::codec::StoredRow;
use crate::schema::TableSchema;

/// Rows of one table in their stored encoding ([`crate::codec`]), in TxData order.
#[derive(Clone)]
pub struct PackedRows {
    schema: Arc<TableSchema>,
    fixed: Arc<[u32]>,
    bytes: Vec<u8>,
    /// End offset of each row in `bytes`; row `i` starts where row `i - 1` ends.
    ends: Vec<usize>,
}

impl PackedRows {
    /// An empty list for rows of `schema`, with its [`crate::codec::fixed_offsets`].
    pub(crate) fn new(schema: Arc<TableSchema>, fixed: Arc<[u32]>) -> Self {
        PackedRows {
            schema,
            fixed,
            bytes: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Room for `rows` more rows of about `bytes_each` bytes.
    pub(crate) fn reserve(&mut self, rows: usize, bytes_each: usize) {
        self.ends.reserve_exact(rows);
        self.bytes.reserve_exact(rows * bytes_each);
    }

    /// Appends one stored row (checked when it was inserted).
    pub(crate) fn push(&mut self, stored: &[u8]) {
        self.bytes.extend_from_slice(stored);
        self.ends.push(self.bytes.len());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Row `i` as a column reader.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    #[inline]
    pub fn get(&self, i: usize) -> StoredRow<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        StoredRow::trusted(&self.schema, &self.fixed, &self.bytes[start..self.ends[i]])
    }

    /// The rows in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = StoredRow<'_>> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let row = StoredRow::trusted(&self.schema, &self.fixed, &self.bytes[start..end]);
            start = end;
            row
        })
    }

    /// All rows' encodings back to back (how the commitlog lays them out).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The rows' table schema.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }
}

impl PartialEq for PackedRows {
    /// Same table and bitwise the same rows (row identity is equality of the encoding).
    fn eq(&self, other: &Self) -> bool {
        self.schema.name == other.schema.name
            && self.ends == other.ends
            && self.bytes == other.bytes
    }
}

impl fmt::Debug for PackedRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedRows")
            .field("table", &self.schema.name)
            .field("rows", &self.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}
