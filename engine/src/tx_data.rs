//! TxData: what one commit changed.
//!
//! Per table, the rows the commit inserted and deleted. Rows sit behind `Arc<[Row]>` so
//! the subscription layer can share one commit's rows with every query and client without
//! copying. Updates appear as a delete plus an insert; clients pair them by primary key.
//! A large commit's rows also come packed in their stored encoding ([`PackedRows`]), for
//! readers that never need a decoded row: incremental evaluation, wire encoders, the
//! commitlog.

use std::sync::Arc;

use crate::packed::PackedRows;
use crate::row::Row;
use crate::schema::{ColId, TableId};
use crate::value::{Identity, Timestamp};

/// A commit offset. Dense, starting at 1; 0 means "before the first commit".
pub type TxOffset = u64;

/// One table's net change in one commit. A table with no net change does not appear.
#[derive(Clone, Debug, PartialEq)]
pub struct TableUpdate {
    /// The table.
    pub table_id: TableId,
    /// The table's name.
    pub table_name: Arc<str>,
    /// Whether it is an event table (then `deletes` is empty and `truncated` false).
    pub is_event: bool,
    /// Rows inserted, in order of first insertion; an updated row keeps its position.
    pub inserts: Arc<[Row]>,
    /// Committed rows deleted.
    pub deletes: Arc<[Row]>,
    /// `inserts` in their stored encoding, in the same order, when there are many of
    /// them ([`crate::datastore::PACK_ROWS_FROM`] by default).
    pub stored_inserts: Option<Arc<PackedRows>>,
    /// `deletes` in their stored encoding, likewise.
    pub stored_deletes: Option<Arc<PackedRows>>,
    /// The table is empty after the commit (`deletes` still lists every row).
    pub truncated: bool,
}

/// Who ran the transaction and why; recorded in the log, never needed for replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxMeta {
    /// The reducer that ran, if any.
    pub reducer: Option<Arc<str>>,
    /// The caller's identity ([`Identity::ZERO`] for the embedding application).
    pub caller: Identity,
}

/// Everything one commit changed.
#[derive(Clone, Debug, PartialEq)]
pub struct TxData {
    /// The commit offset.
    pub offset: TxOffset,
    /// Commit time; never decreases from one commit to the next.
    pub timestamp: Timestamp,
    /// Who and why.
    pub meta: TxMeta,
    /// Changed tables, in table id order.
    pub tables: Vec<TableUpdate>,
    /// Sequence high-water marks advanced since the previous commit: (table, column,
    /// next value). Replay restores sequences from these even when rows are skipped.
    pub sequences: Vec<(TableId, ColId, u64)>,
}

impl TxData {
    /// The update of `table`, if the commit changed it.
    pub fn table(&self, table: TableId) -> Option<&TableUpdate> {
        self.tables.iter().find(|t| t.table_id == table)
    }

    /// Total rows inserted and deleted across tables.
    pub fn row_count(&self) -> usize {
        self.tables
            .iter()
            .map(|t| t.inserts.len() + t.deletes.len())
            .sum()
    }
}
