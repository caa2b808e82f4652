//! Mutable transactions.
//!
//! Invariants between a transaction and committed state (per table):
//! - the *insert table* holds rows new in this transaction, fully indexed, and never a row
//!   identical to a committed row that is still visible;
//! - the *delete set* holds ids of committed rows deleted in this transaction;
//! - reads see committed rows minus the delete set, plus the insert table;
//! - no two visible rows share a key in a unique index.
//!
//! Hence insert-then-delete of a new row leaves nothing, delete-then-reinsert of a
//! committed row is an undelete, and updating a new row replaces it in place (it keeps its
//! position in TxData). Event tables are ordinary tables here; their committed table is
//! always empty, so their constraints only ever see this transaction's rows.
//!
//! The transaction holds the committed state's *upgradable* read lock: readers continue
//! while it runs, no other writer can begin, and commit upgrades it to merge.

use std::ops::Bound;
use std::sync::Arc;

use hashbrown::HashSet;
use parking_lot::RawRwLock;
use parking_lot::lock_api::ArcRwLockUpgradableReadGuard;
use slotmap::SecondaryMap;

use crate::codec;
use crate::datastore::{CommittedState, Datastore};
use crate::error::TxError;
use crate::row::Row;
use crate::schema::{TableId, TableSchema};
use crate::table::{RowId, Table};
use crate::tx_data::TxMeta;
use crate::value::Value;

/// One table's pending changes.
#[derive(Debug)]
pub(crate) struct TxTable {
    pub(crate) inserts: Table,
    /// Insert-table ids in first-insertion order; ids deleted since are stale and skipped.
    pub(crate) order: Vec<RowId>,
    pos: SecondaryMap<RowId, u32>,
    pub(crate) deletes: HashSet<RowId>,
    /// Delete-set ids in deletion order; ids undeleted since are skipped.
    pub(crate) delete_order: Vec<RowId>,
}

/// The error for a table id the schema does not have.
pub(crate) fn unknown(table: TableId) -> TxError {
    TxError::UnknownTable(format!("#{}", table.0))
}

impl TxTable {
    /// The transaction's side of `committed`.
    fn new(committed: &Table) -> Self {
        TxTable {
            inserts: Table::like(committed),
            order: Vec::new(),
            pos: SecondaryMap::new(),
            deletes: HashSet::new(),
            delete_order: Vec::new(),
        }
    }

    fn push(&mut self, row: &Row, bytes: Box<[u8]>) -> RowId {
        let id = self.inserts.insert_unchecked(row, bytes);
        self.pos.insert(id, self.order.len() as u32);
        self.order.push(id);
        id
    }

    fn remove_insert(&mut self, id: RowId) {
        self.inserts.delete(id);
        self.pos.remove(id);
    }

    /// Replaces insert `old` with `row`, keeping `old`'s position.
    fn replace(&mut self, old: RowId, row: &Row, bytes: Box<[u8]>) {
        let at = self.pos.remove(old);
        self.inserts.delete(old);
        let id = self.inserts.insert_unchecked(row, bytes);
        match at {
            Some(at) => {
                self.order[at as usize] = id;
                self.pos.insert(id, at);
            }
            None => {
                self.pos.insert(id, self.order.len() as u32);
                self.order.push(id);
            }
        }
    }

    fn delete_committed(&mut self, id: RowId) {
        if self.deletes.insert(id) {
            self.delete_order.push(id);
        }
    }

    fn undelete(&mut self, id: RowId) {
        self.deletes.remove(&id);
    }

    /// Live insert ids in TxData order.
    pub(crate) fn live_inserts(&self) -> impl Iterator<Item = RowId> + '_ {
        self.order.iter().copied().filter(|id| {
            self.pos
                .get(*id)
                .is_some_and(|&p| self.order[p as usize] == *id)
        })
    }

    /// Deleted committed ids in deletion order.
    pub(crate) fn live_deletes(&self) -> impl Iterator<Item = RowId> + '_ {
        let mut seen = HashSet::new();
        self.delete_order
            .iter()
            .copied()
            .filter(move |id| self.deletes.contains(id) && seen.insert(*id))
    }

    pub(crate) fn is_noop(&self) -> bool {
        self.deletes.is_empty() && self.inserts.is_empty()
    }
}

/// A mutable transaction. Dropping it without [`MutTx::commit`] rolls it back.
pub struct MutTx {
    pub(crate) ds: Datastore,
    pub(crate) committed: ArcRwLockUpgradableReadGuard<RawRwLock, CommittedState>,
    pub(crate) tables: Vec<Option<Box<TxTable>>>,
    pub(crate) meta: TxMeta,
}

impl MutTx {
    /// Committed state as this transaction started from it.
    pub fn committed(&self) -> &CommittedState {
        &self.committed
    }

    /// Records who runs this transaction and why (goes into TxData and the log).
    pub fn set_meta(&mut self, meta: TxMeta) {
        self.meta = meta;
    }

    /// The id of the table named `name`.
    pub fn table_id(&self, name: &str) -> Result<TableId, TxError> {
        self.committed
            .schema()
            .table_id(name)
            .ok_or_else(|| TxError::UnknownTable(name.into()))
    }

    /// The schema of `table`.
    pub fn table_schema(&self, table: TableId) -> Result<&Arc<TableSchema>, TxError> {
        Ok(self.committed_table(table)?.schema())
    }

    /// The position of the index of `table` over exactly `columns`.
    pub fn index_id(&self, table: TableId, columns: &[&str]) -> Result<usize, TxError> {
        let schema = self.table_schema(table)?;
        let cols = columns
            .iter()
            .map(|c| {
                schema.column_id(c).ok_or_else(|| TxError::UnknownColumn {
                    table: schema.name.clone(),
                    column: (*c).into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        schema
            .indexes
            .iter()
            .position(|i| i.columns == cols)
            .ok_or_else(|| TxError::NoUniqueIndex {
                table: schema.name.clone(),
                columns: columns.join(", "),
            })
    }

    fn committed_table(&self, table: TableId) -> Result<&Table, TxError> {
        self.committed.table(table).ok_or_else(|| unknown(table))
    }

    fn tx_table(&mut self, table: TableId) -> Result<&mut TxTable, TxError> {
        // Field by field, so the committed table can be lent while the slot is written.
        let committed = self.committed.table(table).ok_or_else(|| unknown(table))?;
        let slot = &mut self.tables[table.idx()];
        Ok(slot.get_or_insert_with(|| Box::new(TxTable::new(committed))))
    }

    fn tx_table_ref(&self, table: TableId) -> Option<&TxTable> {
        self.tables.get(table.idx()).and_then(|t| t.as_deref())
    }

    fn is_deleted(&self, table: TableId, id: RowId) -> bool {
        self.tx_table_ref(table)
            .is_some_and(|t| t.deletes.contains(&id))
    }

    /// Inserts `row`, drawing `auto_inc` values for zero columns; returns the row as stored.
    ///
    /// Inserting a row identical to a visible one is a no-op that returns it. Re-inserting
    /// a committed row this transaction deleted undeletes it.
    pub fn insert(&mut self, table: TableId, mut row: Row) -> Result<Row, TxError> {
        let schema = self.table_schema(table)?.clone();
        schema.check_row(&mut row)?;
        for &col in &schema.sequences {
            if row[col.idx()].is_zero_integer() {
                let v = self.ds.draw_sequence(self.committed.schema(), table, col)?;
                row.values_mut()[col.idx()] = v;
            }
        }
        let bytes = codec::row_bytes(&schema, &row);
        self.insert_checked(table, &schema, row, bytes, None)
    }

    /// The insert path after row checks; `replacing` is an insert-table row this insert
    /// replaces in place (an update), ignored by the unique checks.
    fn insert_checked(
        &mut self,
        table: TableId,
        schema: &Arc<TableSchema>,
        row: Row,
        bytes: Box<[u8]>,
        replacing: Option<RowId>,
    ) -> Result<Row, TxError> {
        if let Some(t) = self.tx_table_ref(table)
            && t.inserts.find_identical(&row, &bytes).is_some()
        {
            return Ok(row);
        }
        let committed = self.committed_table(table)?;
        let identical = committed.find_identical(&row, &bytes);
        if identical.is_some_and(|id| !self.is_deleted(table, id)) {
            return Ok(row);
        }
        for (i, idx) in schema.indexes.iter().enumerate().filter(|(_, i)| i.unique) {
            let key = row.project(&idx.columns);
            let clash_committed = committed
                .unique_lookup(i, &key)
                .is_some_and(|id| !self.is_deleted(table, id));
            let clash_tx = self
                .tx_table_ref(table)
                .and_then(|t| t.inserts.unique_lookup(i, &key))
                .is_some_and(|id| Some(id) != replacing);
            if clash_committed || clash_tx {
                return Err(TxError::unique(&schema.name, &idx.name, &key));
            }
        }
        let t = self.tx_table(table)?;
        match (identical, replacing) {
            // Re-inserting a row this transaction deleted: an undelete, not a new row.
            (Some(id), old) => {
                if let Some(old) = old {
                    t.remove_insert(old);
                }
                t.undelete(id);
            }
            (None, Some(old)) => t.replace(old, &row, bytes),
            (None, None) => {
                t.push(&row, bytes);
            }
        }
        Ok(row)
    }

    /// Deletes the row identical to `row`; returns whether one was visible.
    pub fn delete(&mut self, table: TableId, mut row: Row) -> Result<bool, TxError> {
        let schema = self.table_schema(table)?.clone();
        schema.check_row(&mut row)?;
        let bytes = codec::row_bytes(&schema, &row);
        if let Some(t) = self.tables[table.idx()].as_deref_mut()
            && let Some(id) = t.inserts.find_identical(&row, &bytes)
        {
            t.remove_insert(id);
            return Ok(true);
        }
        match self.committed_table(table)?.find_identical(&row, &bytes) {
            Some(id) if !self.is_deleted(table, id) => {
                self.tx_table(table)?.delete_committed(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Deletes every visible row whose key in index `index` starts with `prefix`.
    pub fn delete_by(
        &mut self,
        table: TableId,
        index: usize,
        prefix: &[Value],
    ) -> Result<usize, TxError> {
        let rows = self.seek(table, index, prefix)?;
        let n = rows.len();
        for row in rows {
            self.delete(table, row)?;
        }
        Ok(n)
    }

    /// Replaces the row with the same primary key by `row`.
    pub fn update(&mut self, table: TableId, row: Row) -> Result<Row, TxError> {
        let schema = self.table_schema(table)?.clone();
        let index = schema
            .primary_key
            .and_then(|pk| schema.unique_index_on(&[pk]))
            .ok_or_else(|| TxError::NoUniqueIndex {
                table: schema.name.clone(),
                columns: "primary key".into(),
            })?;
        self.update_by(table, index, row)
    }

    /// Replaces the row with the same key in unique index `index` by `row`.
    ///
    /// An update to an identical row is a no-op. Updating a row new in this transaction
    /// replaces it in place; updating a committed row deletes it and inserts `row`.
    pub fn update_by(
        &mut self,
        table: TableId,
        index: usize,
        mut row: Row,
    ) -> Result<Row, TxError> {
        let schema = self.table_schema(table)?.clone();
        let idx = schema
            .indexes
            .get(index)
            .filter(|i| i.unique)
            .ok_or_else(|| TxError::NoUniqueIndex {
                table: schema.name.clone(),
                columns: format!("index #{index}"),
            })?;
        schema.check_row(&mut row)?;
        let key = row.project(&idx.columns);
        let bytes = codec::row_bytes(&schema, &row);
        let not_found = || TxError::UpdateNotFound {
            table: schema.name.clone(),
            constraint: idx.name.clone(),
            value: crate::error::fmt_key(&key),
        };
        if let Some(old) = self
            .tx_table_ref(table)
            .and_then(|t| t.inserts.unique_lookup(index, &key))
        {
            if self
                .tx_table_ref(table)
                .and_then(|t| t.inserts.get_bytes(old))
                == Some(&bytes[..])
            {
                return Ok(row);
            }
            return self.insert_checked(table, &schema, row, bytes, Some(old));
        }
        let committed = self.committed_table(table)?;
        let old = committed
            .unique_lookup(index, &key)
            .filter(|id| !self.is_deleted(table, *id))
            .ok_or_else(not_found)?;
        if committed.get_bytes(old) == Some(&bytes[..]) {
            return Ok(row);
        }
        self.tx_table(table)?.delete_committed(old);
        match self.insert_checked(table, &schema, row, bytes, None) {
            Ok(row) => Ok(row),
            Err(e) => {
                self.tx_table(table)?.undelete(old);
                Err(e)
            }
        }
    }

    /// Every visible row of `table`: committed rows not deleted, then this transaction's.
    pub fn scan(&self, table: TableId) -> Result<Vec<Row>, TxError> {
        let committed = self.committed_table(table)?;
        let tx = self.tx_table_ref(table);
        let mut out: Vec<Row> = committed
            .iter()
            .filter(|(id, _)| !tx.is_some_and(|t| t.deletes.contains(id)))
            .map(|(_, r)| r)
            .collect();
        if let Some(t) = tx {
            out.extend(t.live_inserts().filter_map(|id| t.inserts.get(id)));
        }
        Ok(out)
    }

    /// Number of visible rows of `table`.
    pub fn count(&self, table: TableId) -> Result<usize, TxError> {
        let committed = self.committed_table(table)?.len();
        Ok(match self.tx_table_ref(table) {
            Some(t) => committed - t.deletes.len() + t.inserts.len(),
            None => committed,
        })
    }

    /// Visible rows whose key in index `index` starts with `prefix`.
    pub fn seek(
        &self,
        table: TableId,
        index: usize,
        prefix: &[Value],
    ) -> Result<Vec<Row>, TxError> {
        self.range(table, index, prefix, Bound::Unbounded, Bound::Unbounded)
    }

    /// Visible rows of index `index` matching `prefix`, next key column within the bounds.
    pub fn range(
        &self,
        table: TableId,
        index: usize,
        prefix: &[Value],
        lower: Bound<&Value>,
        upper: Bound<&Value>,
    ) -> Result<Vec<Row>, TxError> {
        let committed = self.committed_table(table)?;
        let bounded = !matches!((lower, upper), (Bound::Unbounded, Bound::Unbounded));
        committed.check_key(index, prefix, bounded)?;
        let tx = self.tx_table_ref(table);
        let mut out: Vec<Row> = committed
            .range(index, prefix, lower, upper)
            .filter(|id| !tx.is_some_and(|t| t.deletes.contains(id)))
            .filter_map(|id| committed.get(id))
            .collect();
        if let Some(t) = tx {
            out.extend(
                t.inserts
                    .range(index, prefix, lower, upper)
                    .filter_map(|id| t.inserts.get(id)),
            );
        }
        Ok(out)
    }

    /// The visible row whose key in unique index `index` is `key`.
    pub fn find(
        &self,
        table: TableId,
        index: usize,
        key: &[Value],
    ) -> Result<Option<Row>, TxError> {
        Ok(self.seek(table, index, key)?.into_iter().next())
    }
}
