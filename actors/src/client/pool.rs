//! Rows shared between the caches of the connections one application thread drives.
//!
//! The server sends one update's rows to every client of a query as one `Arc<TableRows>`
//! (the same snapshot to every subscriber of a query at an offset, the same delta to
//! every subscriber at a commit). A cache that takes a row in used to copy it, so a
//! fan-out to N connections on one thread made N copies of every row: N allocations per
//! row while applying, N times the memory afterwards, and at the next update a cache
//! miss per connection to compare against its own copy. Through a pool, the connections
//! hold one `Arc<Row>` per row of the update instead, and the next update compares
//! against one row that is hot after the first connection.
//!
//! An update is recognised by its `Arc<TableRows>`, which the pool holds, so its address
//! identifies it while the pool has it. The pool lets go of an update once nothing else
//! holds it ([`RowPool::trim`]): no later message can carry it again, and the pool keeps
//! no memory alive that the messages and the caches would not.

use std::sync::Arc;

use hashbrown::HashMap;
use tidings_engine::Row;

use crate::messages::TableRows;

/// Shared copies of the rows of the updates an application thread is applying.
#[derive(Default)]
pub struct RowPool {
    /// Per update (by the address of its rows), the shared copies made so far, by
    /// position in its inserts.
    updates: HashMap<usize, Update>,
    /// Set for a pool that serves one connection alone: each row is copied as it is
    /// taken in, with none of the bookkeeping, which only pays for itself when other
    /// connections take the same rows.
    alone: bool,
}

struct Update {
    /// Held so that the address stays this update's.
    rows: Arc<TableRows>,
    shared: Vec<Option<Arc<Row>>>,
}

impl RowPool {
    /// The shared copies of the inserts of `rows`, by position, made so far; see
    /// [`shared_row`].
    pub(crate) fn update(&mut self, rows: &Arc<TableRows>) -> &mut [Option<Arc<Row>>] {
        if self.alone {
            return &mut [];
        }
        &mut self
            .updates
            .entry(Arc::as_ptr(rows).addr())
            .or_insert_with(|| Update {
                rows: rows.clone(),
                shared: vec![None; inserts(rows)],
            })
            .shared
    }

    /// A pool for one connection alone: rows are copied, not shared.
    pub fn alone() -> Self {
        RowPool {
            alone: true,
            ..RowPool::default()
        }
    }

    /// Lets go of the updates that only the pool still holds.
    pub fn trim(&mut self) {
        self.updates.retain(|_, u| Arc::strong_count(&u.rows) > 1);
    }

    /// The shared copies made of `rows` so far.
    #[cfg(test)]
    pub(crate) fn shared(&self, rows: &Arc<TableRows>) -> Vec<Arc<Row>> {
        self.updates
            .get(&Arc::as_ptr(rows).addr())
            .map(|u| u.shared.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

/// The shared copy of `row`, insert number `i` of an update whose copies are `slots`
/// (from [`RowPool::update`]), made on first request.
pub(crate) fn shared_row(slots: &mut [Option<Arc<Row>>], i: usize, row: &Row) -> Arc<Row> {
    match slots.get_mut(i) {
        Some(slot) => slot.get_or_insert_with(|| Arc::new(row.clone())).clone(),
        // A pool for one connection, or not one of the update's inserts: a copy.
        None => Arc::new(row.clone()),
    }
}

fn inserts(rows: &TableRows) -> usize {
    match rows {
        TableRows::Persistent { inserts, .. } => inserts.len(),
        TableRows::Event { .. } => 0,
    }
}
