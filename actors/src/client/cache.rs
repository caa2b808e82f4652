//! The client cache: per table, rows with reference counts; per query set, the multiset
//! of rows it contributed.
//!
//! A row may be held by several query sets (or several times by one join query); its
//! reference count is the total, and the row is in the cache while the count is above
//! zero. Removing a query set (unsubscribe, or a set ended by an error) removes exactly
//! the rows it contributed.
//!
//! A transaction is applied inserts first, then deletes, and only the net 0 <-> 1
//! transitions become callbacks: a row that moves from one query set to another in one
//! transaction fires nothing. Deletes and inserts with the same primary key pair into
//! updates. Event rows never enter the cache: each distinct event row of a table fires
//! once per transaction, however many query sets delivered it.

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use tidings_engine::{Row, Schema, TableSchema};

use crate::messages::{QuerySetId, TableRows, TableUpdate};

/// What one applied message changed in one table, as callbacks will report it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TableChanges {
    /// Rows that entered the cache.
    pub inserts: Vec<Row>,
    /// Rows that left the cache.
    pub deletes: Vec<Row>,
    /// (old, new) pairs with the same primary key.
    pub updates: Vec<(Row, Row)>,
    /// Distinct event rows, in delivery order.
    pub events: Vec<Row>,
}

impl TableChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty()
            && self.deletes.is_empty()
            && self.updates.is_empty()
            && self.events.is_empty()
    }
}

#[derive(Debug)]
struct TableCache {
    schema: Arc<TableSchema>,
    rows: HashMap<Row, usize>,
}

/// Every table's cached rows.
#[derive(Debug, Default)]
pub struct ClientCache {
    tables: HashMap<Arc<str>, TableCache>,
    sets: HashMap<QuerySetId, HashMap<Arc<str>, HashMap<Row, usize>>>,
}

/// Rows in first-touch order, with the count each had before the message.
type Before = (Vec<Row>, HashMap<Row, usize>);
/// Distinct event rows in delivery order.
type Events = (Vec<Row>, HashSet<Row>);

/// Per table: what one message touched.
#[derive(Default)]
struct Touched {
    before: HashMap<Arc<str>, Before>,
    events: HashMap<Arc<str>, Events>,
}

impl ClientCache {
    /// A cache for the tables of `schema`.
    pub fn new(schema: &Schema) -> Self {
        let mut c = ClientCache::default();
        c.refresh_schema(schema);
        c
    }

    /// Learns tables added by a migration.
    pub fn refresh_schema(&mut self, schema: &Schema) {
        for t in schema.tables() {
            self.tables
                .entry(t.name.clone())
                .or_insert_with(|| TableCache {
                    schema: t.clone(),
                    rows: HashMap::new(),
                });
        }
    }

    /// Number of rows of `table` in the cache (0 for event tables, always).
    pub fn count(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, |t| t.rows.len())
    }

    /// The rows of `table` in the cache.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        self.tables
            .get(table)
            .map(|t| t.rows.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The schema of `table`, if known.
    pub fn schema(&self, table: &str) -> Option<&Arc<TableSchema>> {
        self.tables.get(table).map(|t| &t.schema)
    }

    fn touch(&mut self, touched: &mut Touched, table: &Arc<str>, row: &Row) {
        let now = self
            .tables
            .get(table)
            .and_then(|t| t.rows.get(row))
            .copied()
            .unwrap_or(0);
        let (order, before) = touched.before.entry(table.clone()).or_default();
        if !before.contains_key(row) {
            before.insert(row.clone(), now);
            order.push(row.clone());
        }
    }

    fn add(&mut self, qs: QuerySetId, table: &Arc<str>, row: &Row, n: isize) {
        if let Some(t) = self.tables.get_mut(table) {
            let c = t.rows.entry(row.clone()).or_insert(0);
            *c = c.saturating_add_signed(n);
            if *c == 0 {
                t.rows.remove(row);
            }
        }
        let set = self
            .sets
            .entry(qs)
            .or_default()
            .entry(table.clone())
            .or_default();
        let c = set.entry(row.clone()).or_insert(0);
        *c = c.saturating_add_signed(n);
        if *c == 0 {
            set.remove(row);
        }
    }

    /// Applies one message's updates: `(query set, table update)` pairs.
    pub fn apply<'a>(
        &mut self,
        updates: impl IntoIterator<Item = (QuerySetId, &'a TableUpdate)>,
    ) -> Vec<(Arc<str>, TableChanges)> {
        let mut touched = Touched::default();
        self.apply_into(&mut touched, updates);
        self.changes(touched)
    }

    fn apply_into<'a>(
        &mut self,
        touched: &mut Touched,
        updates: impl IntoIterator<Item = (QuerySetId, &'a TableUpdate)>,
    ) {
        let updates: Vec<(QuerySetId, &TableUpdate)> = updates.into_iter().collect();
        // Inserts first, so a row moving between query sets never drops to zero.
        for (qs, u) in &updates {
            match &*u.rows {
                TableRows::Persistent { inserts, .. } => {
                    for r in inserts {
                        self.touch(touched, &u.table, r);
                        self.add(*qs, &u.table, r, 1);
                    }
                }
                TableRows::Event { events } => {
                    let (order, seen) = touched.events.entry(u.table.clone()).or_default();
                    for e in events {
                        if seen.insert(e.clone()) {
                            order.push(e.clone());
                        }
                    }
                }
            }
        }
        for (qs, u) in &updates {
            if let TableRows::Persistent { deletes, .. } = &*u.rows {
                for r in deletes {
                    self.touch(touched, &u.table, r);
                    self.add(*qs, &u.table, r, -1);
                }
            }
        }
    }

    /// Removes every row query set `qs` contributed.
    pub fn remove_set(&mut self, qs: QuerySetId) -> Vec<(Arc<str>, TableChanges)> {
        let Some(set) = self.sets.remove(&qs) else {
            return Vec::new();
        };
        let mut touched = Touched::default();
        self.release(&mut touched, set);
        self.changes(touched)
    }

    /// Replaces the rows query set `qs` contributed by `tables`, a fresh snapshot of the
    /// same set (re-applied after a reconnect). Only the difference becomes callbacks: a
    /// row in both fires nothing, a row only in the old snapshot leaves, a new one enters.
    pub fn replace_set<'a>(
        &mut self,
        qs: QuerySetId,
        tables: impl IntoIterator<Item = &'a TableUpdate>,
    ) -> Vec<(Arc<str>, TableChanges)> {
        let old = self.sets.remove(&qs).unwrap_or_default();
        let mut touched = Touched::default();
        // The new rows go in before the old ones leave, as in `apply`.
        self.apply_into(&mut touched, tables.into_iter().map(|t| (qs, t)));
        self.release(&mut touched, old);
        self.changes(touched)
    }

    /// Takes a removed set's rows out of the table counts.
    fn release(&mut self, touched: &mut Touched, set: HashMap<Arc<str>, HashMap<Row, usize>>) {
        for (table, rows) in set {
            for (row, n) in rows {
                self.touch(touched, &table, &row);
                if let Some(t) = self.tables.get_mut(&table) {
                    let c = t.rows.entry(row.clone()).or_insert(0);
                    *c = c.saturating_sub(n);
                    if *c == 0 {
                        t.rows.remove(&row);
                    }
                }
            }
        }
    }

    fn changes(&self, touched: Touched) -> Vec<(Arc<str>, TableChanges)> {
        let mut out: Vec<(Arc<str>, TableChanges)> = Vec::new();
        for (table, (order, before)) in touched.before {
            let t = self.tables.get(&table);
            let now = |r: &Row| t.and_then(|t| t.rows.get(r)).copied().unwrap_or(0);
            let mut ch = TableChanges::default();
            for r in order {
                match (before[&r] > 0, now(&r) > 0) {
                    (false, true) => ch.inserts.push(r),
                    (true, false) => ch.deletes.push(r),
                    _ => {}
                }
            }
            if let Some(pk) = t.and_then(|t| t.schema.primary_key) {
                let mut by_pk: HashMap<_, usize> = ch
                    .deletes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r[pk.idx()].clone(), i))
                    .collect();
                let mut paired_deletes = HashSet::new();
                let mut inserts = Vec::new();
                for r in std::mem::take(&mut ch.inserts) {
                    match by_pk.remove(&r[pk.idx()]) {
                        Some(i) => {
                            paired_deletes.insert(i);
                            ch.updates.push((ch.deletes[i].clone(), r));
                        }
                        None => inserts.push(r),
                    }
                }
                ch.inserts = inserts;
                ch.deletes = std::mem::take(&mut ch.deletes)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !paired_deletes.contains(i))
                    .map(|(_, r)| r)
                    .collect();
            }
            if !ch.is_empty() {
                out.push((table, ch));
            }
        }
        for (table, (order, _)) in touched.events {
            match out.iter_mut().find(|(t, _)| *t == table) {
                Some((_, ch)) => ch.events = order,
                None => out.push((
                    table,
                    TableChanges {
                        events: order,
                        ..TableChanges::default()
                    },
                )),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_engine::{AlgebraicType as T, row};

    fn cache() -> ClientCache {
        let schema = Schema::new([
            TableSchema::builder("p")
                .column("id", T::U64)
                .column("v", T::U32)
                .primary_key("id")
                .build()
                .expect("p"),
            TableSchema::builder("e")
                .column("x", T::U32)
                .event()
                .build()
                .expect("e"),
        ])
        .expect("schema");
        ClientCache::new(&schema)
    }

    fn upd(table: &str, inserts: Vec<Row>, deletes: Vec<Row>) -> TableUpdate {
        TableUpdate::new(table.into(), TableRows::Persistent { inserts, deletes })
    }

    #[test]
    fn a_row_moving_between_query_sets_fires_nothing() {
        let mut c = cache();
        let a = upd("p", vec![row![1u64, 1u32]], vec![]);
        assert_eq!(c.apply([(1, &a)])[0].1.inserts.len(), 1);
        let del = upd("p", vec![], vec![row![1u64, 1u32]]);
        let ins = upd("p", vec![row![1u64, 1u32]], vec![]);
        assert!(c.apply([(1, &del), (2, &ins)]).is_empty());
        assert_eq!(c.count("p"), 1);
        assert_eq!(c.remove_set(2)[0].1.deletes, vec![row![1u64, 1u32]]);
        assert_eq!(c.count("p"), 0);
    }

    #[test]
    fn delete_and_insert_with_the_same_key_pair_into_an_update() {
        let mut c = cache();
        c.apply([(1, &upd("p", vec![row![1u64, 1u32]], vec![]))]);
        let ch = c.apply([(1, &upd("p", vec![row![1u64, 2u32]], vec![row![1u64, 1u32]]))]);
        assert_eq!(ch[0].1.updates, vec![(row![1u64, 1u32], row![1u64, 2u32])]);
        assert!(ch[0].1.inserts.is_empty() && ch[0].1.deletes.is_empty());
    }

    #[test]
    fn events_are_distinct_per_table_and_never_cached() {
        let mut c = cache();
        let ev = TableUpdate::new(
            "e".into(),
            TableRows::Event {
                events: vec![row![1u32], row![2u32]],
            },
        );
        let ev2 = TableUpdate::new(
            "e".into(),
            TableRows::Event {
                events: vec![row![2u32]],
            },
        );
        let ch = c.apply([(1, &ev), (2, &ev2)]);
        assert_eq!(ch[0].1.events, vec![row![1u32], row![2u32]]);
        assert_eq!(c.count("e"), 0);
    }

    #[test]
    fn replacing_a_set_fires_only_the_difference() {
        let mut c = cache();
        let first = upd(
            "p",
            vec![row![1u64, 1u32], row![2u64, 1u32], row![3u64, 1u32]],
            vec![],
        );
        c.apply([(1, &first)]);
        // Another set holds row 3 too: it must stay when set 1 no longer has it.
        c.apply([(2, &upd("p", vec![row![3u64, 1u32]], vec![]))]);
        let again = upd(
            "p",
            vec![row![1u64, 1u32], row![2u64, 5u32], row![4u64, 1u32]],
            vec![],
        );
        let ch = c.replace_set(1, [&again]);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].1.inserts, vec![row![4u64, 1u32]]);
        assert_eq!(ch[0].1.updates, vec![(row![2u64, 1u32], row![2u64, 5u32])]);
        assert!(ch[0].1.deletes.is_empty(), "row 3 is still held by set 2");
        assert_eq!(c.count("p"), 4, "no row duplicated");
        let gone = c.remove_set(1);
        assert_eq!(
            gone[0].1.deletes.len(),
            3,
            "set 1 holds exactly its new snapshot"
        );
        assert_eq!(c.rows("p"), vec![row![3u64, 1u32]]);
    }
}
