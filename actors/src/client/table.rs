//! Typed access to one table of the client cache, and its callbacks.

use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;
use tidings_engine::{Row, SqlType, TableType};

use super::{DbConnection, EventContext, RowCallback, TableCallbacks, UpdateCallback};

/// Identifies a registered callback, for removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(pub u32);

/// The cache's view of the table of `T`. Row types are the table's own structs.
pub struct ClientTable<T> {
    conn: DbConnection,
    _t: PhantomData<fn() -> T>,
}

fn typed<T: TableType>(row: &Row) -> Option<T> {
    match T::from_row(row.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(table = T::NAME, error = %e, "row does not fit its struct; callback skipped");
            None
        }
    }
}

impl<T: TableType + 'static> ClientTable<T> {
    pub(crate) fn new(conn: DbConnection) -> Self {
        ClientTable {
            conn,
            _t: PhantomData,
        }
    }

    /// Rows in the cache (always 0 for an event table).
    pub fn count(&self) -> usize {
        self.conn.count(T::NAME)
    }

    /// The cached rows (always empty for an event table).
    pub fn iter(&self) -> Vec<T> {
        self.conn
            .rows(T::NAME)
            .iter()
            .filter_map(typed::<T>)
            .collect()
    }

    /// The cached row whose column `column` equals `value` (meant for unique columns).
    pub fn find<V: SqlType>(&self, column: &str, value: V) -> Option<T> {
        let value = value.into_value();
        let schema = T::schema();
        let col = schema.column_id(column)?;
        self.conn
            .rows(T::NAME)
            .iter()
            .find(|r| r[col.idx()] == value)
            .and_then(typed::<T>)
    }

    /// Runs `f` for every row entering the cache (every event row of an event table).
    pub fn on_insert(&self, f: impl FnMut(&EventContext, &T) + Send + 'static) -> CallbackId {
        self.add_row_callback(f, |c| &mut c.on_insert)
    }

    /// Runs `f` for every row leaving the cache (for an event table: right after its
    /// `on_insert`, since the row is gone at the end of its transaction).
    pub fn on_delete(&self, f: impl FnMut(&EventContext, &T) + Send + 'static) -> CallbackId {
        self.add_row_callback(f, |c| &mut c.on_delete)
    }

    fn add_row_callback(
        &self,
        mut f: impl FnMut(&EventContext, &T) + Send + 'static,
        list: impl FnOnce(&mut TableCallbacks) -> &mut Vec<(CallbackId, RowCallback)>,
    ) -> CallbackId {
        let id = self.conn.next_callback_id();
        let cb: RowCallback = Arc::new(Mutex::new(move |ctx: &EventContext, row: &Row| {
            if let Some(t) = typed::<T>(row) {
                f(ctx, &t);
            }
        }));
        list(self.conn.callbacks().entry(T::NAME.into()).or_default()).push((id, cb));
        id
    }

    /// Runs `f(old, new)` when a row is replaced by one with the same primary key (never
    /// for event tables).
    pub fn on_update(
        &self,
        mut f: impl FnMut(&EventContext, &T, &T) + Send + 'static,
    ) -> CallbackId {
        let id = self.conn.next_callback_id();
        let cb: UpdateCallback = Arc::new(Mutex::new(
            move |ctx: &EventContext, old: &Row, new: &Row| {
                if let (Some(o), Some(n)) = (typed::<T>(old), typed::<T>(new)) {
                    f(ctx, &o, &n);
                }
            },
        ));
        self.conn
            .callbacks()
            .entry(T::NAME.into())
            .or_default()
            .on_update
            .push((id, cb));
        id
    }

    /// Removes a callback registered on this table; whether it was there.
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        let mut cbs = self.conn.callbacks();
        let Some(c) = cbs.get_mut(T::NAME) else {
            return false;
        };
        let before = c.on_insert.len() + c.on_delete.len() + c.on_update.len();
        c.on_insert.retain(|(i, _)| *i != id);
        c.on_delete.retain(|(i, _)| *i != id);
        c.on_update.retain(|(i, _)| *i != id);
        before != c.on_insert.len() + c.on_delete.len() + c.on_update.len()
    }
}
