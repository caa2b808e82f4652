//! The client cache: per table, rows with reference counts; per query set, the multiset
//! of rows it contributed.
//!
//! A row may be held by several query sets (or several times by one join query); its
//! reference count is the total, and the row is in the cache while the count is above
//! zero. Removing a query set (unsubscribe, or a set ended by an error) removes exactly
//! the rows it contributed.
//!
//! Each cached row carries its total count and its count per query set, so applying a
//! row is one lookup in its table whatever the number of query sets; removing a set walks
//! the tables it contributed to. Applying a message allocates little: every connection
//! of a fan-out applies the same message, so its cost is paid once per subscriber.
//!
//! A transaction is applied inserts first, then deletes, and only the net 0 <-> 1
//! transitions become callbacks: a row that moves from one query set to another in one
//! transaction fires nothing. Deletes and inserts with the same primary key pair into
//! updates. Event rows never enter the cache: each distinct event row of a table fires
//! once per transaction, however many query sets delivered it.

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use smallvec::SmallVec;
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

/// A cached row's reference counts: in all, and per query set holding it.
#[derive(Debug, Default)]
struct Held {
    total: usize,
    sets: SmallVec<[(QuerySetId, usize); 1]>,
}

#[derive(Debug)]
struct TableCache {
    name: Arc<str>,
    schema: Arc<TableSchema>,
    rows: HashMap<Row, Held>,
}

/// Every table's cached rows.
#[derive(Debug, Default)]
pub struct ClientCache {
    tables: Vec<TableCache>,
    by_name: HashMap<Arc<str>, usize>,
    /// Per query set, the tables (indices) it has contributed rows to.
    sets: HashMap<QuerySetId, SmallVec<[usize; 2]>>,
}

/// Past this many touched rows, first-touch checks use a hash set instead of a scan.
const SCAN_MAX: usize = 16;

/// What one message touched, in first-touch order.
#[derive(Default)]
struct Touched {
    /// (table, row, total count before the message).
    rows: Vec<(usize, Row, usize)>,
    /// Built once `rows` grows past [`SCAN_MAX`].
    seen: Option<HashSet<(usize, Row)>>,
    /// Per table (by name): distinct event rows in delivery order.
    events: Vec<(Arc<str>, Vec<Row>, HashSet<Row>)>,
}

impl Touched {
    /// Records `row` of `table` with its count before any change, unless already seen.
    fn touch(&mut self, table: usize, row: &Row, before: usize) {
        if self.rows.len() < SCAN_MAX {
            if self.rows.iter().any(|(t, r, _)| *t == table && r == row) {
                return;
            }
        } else {
            let seen = self
                .seen
                .get_or_insert_with(|| self.rows.iter().map(|(t, r, _)| (*t, r.clone())).collect());
            if !seen.insert((table, row.clone())) {
                return;
            }
        }
        self.rows.push((table, row.clone(), before));
    }
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
            if !self.by_name.contains_key(&t.name) {
                self.by_name.insert(t.name.clone(), self.tables.len());
                self.tables.push(TableCache {
                    name: t.name.clone(),
                    schema: t.clone(),
                    rows: HashMap::new(),
                });
            }
        }
    }

    fn table(&self, table: &str) -> Option<&TableCache> {
        self.by_name.get(table).map(|&i| &self.tables[i])
    }

    /// Number of rows of `table` in the cache (0 for event tables, always).
    pub fn count(&self, table: &str) -> usize {
        self.table(table).map_or(0, |t| t.rows.len())
    }

    /// The rows of `table` in the cache.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        self.table(table)
            .map(|t| t.rows.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The schema of `table`, if known.
    pub fn schema(&self, table: &str) -> Option<&Arc<TableSchema>> {
        self.table(table).map(|t| &t.schema)
    }

    /// Adds `n` (negative: removes) references of set `qs` to `row` of table `ti`.
    fn add(&mut self, touched: &mut Touched, qs: QuerySetId, ti: usize, row: &Row, n: isize) {
        let rows = &mut self.tables[ti].rows;
        let held = match rows.get_mut(row) {
            Some(h) => h,
            None if n > 0 => rows.entry(row.clone()).or_default(),
            // Removing what is not held changes nothing (the server never does it).
            None => {
                touched.touch(ti, row, 0);
                return;
            }
        };
        touched.touch(ti, row, held.total);
        held.total = held.total.saturating_add_signed(n);
        match held.sets.iter().position(|(s, _)| *s == qs) {
            Some(i) => {
                let c = &mut held.sets[i].1;
                *c = c.saturating_add_signed(n);
                if *c == 0 {
                    held.sets.swap_remove(i);
                }
            }
            None if n > 0 => held.sets.push((qs, n.unsigned_abs())),
            None => {}
        }
        if held.total == 0 {
            rows.remove(row);
        }
    }

    /// Notes that set `qs` holds rows of table `ti`.
    fn note_set_table(&mut self, qs: QuerySetId, ti: usize) {
        let tables = self.sets.entry(qs).or_default();
        if !tables.contains(&ti) {
            tables.push(ti);
        }
    }

    /// Applies one message's updates: `(query set, table update)` pairs.
    pub fn apply<'a>(
        &mut self,
        updates: impl IntoIterator<Item = (QuerySetId, &'a TableUpdate)>,
    ) -> Vec<(Arc<str>, TableChanges)> {
        let mut touched = Touched::default();
        let updates: SmallVec<[(QuerySetId, &TableUpdate); 2]> = updates.into_iter().collect();
        self.apply_into(&mut touched, &updates);
        self.changes(touched)
    }

    fn apply_into(&mut self, touched: &mut Touched, updates: &[(QuerySetId, &TableUpdate)]) {
        // Inserts first, so a row moving between query sets never drops to zero.
        for (qs, u) in updates {
            match &*u.rows {
                TableRows::Persistent { inserts, .. } => {
                    let Some(&ti) = self.by_name.get(&u.table) else {
                        continue;
                    };
                    if !inserts.is_empty() {
                        self.note_set_table(*qs, ti);
                    }
                    for r in inserts {
                        self.add(touched, *qs, ti, r, 1);
                    }
                }
                TableRows::Event { events } => {
                    let at = match touched.events.iter().position(|(t, _, _)| *t == u.table) {
                        Some(at) => at,
                        None => {
                            touched
                                .events
                                .push((u.table.clone(), Vec::new(), HashSet::new()));
                            touched.events.len() - 1
                        }
                    };
                    let (_, order, seen) = &mut touched.events[at];
                    for e in events {
                        if seen.insert(e.clone()) {
                            order.push(e.clone());
                        }
                    }
                }
            }
        }
        for (qs, u) in updates {
            if let TableRows::Persistent { deletes, .. } = &*u.rows {
                let Some(&ti) = self.by_name.get(&u.table) else {
                    continue;
                };
                for r in deletes {
                    self.add(touched, *qs, ti, r, -1);
                }
            }
        }
    }

    /// Takes every reference of set `qs` out of the per-set counts, leaving the totals:
    /// `(table, row, references)`.
    fn detach(&mut self, qs: QuerySetId) -> Vec<(usize, Row, usize)> {
        let mut out = Vec::new();
        for ti in self.sets.remove(&qs).unwrap_or_default() {
            for (row, held) in self.tables[ti].rows.iter_mut() {
                if let Some(i) = held.sets.iter().position(|(s, _)| *s == qs) {
                    out.push((ti, row.clone(), held.sets.swap_remove(i).1));
                }
            }
        }
        out
    }

    /// Removes every row query set `qs` contributed.
    pub fn remove_set(&mut self, qs: QuerySetId) -> Vec<(Arc<str>, TableChanges)> {
        let old = self.detach(qs);
        if old.is_empty() {
            return Vec::new();
        }
        let mut touched = Touched::default();
        self.release(&mut touched, old);
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
        let old = self.detach(qs);
        let mut touched = Touched::default();
        // The new rows go in before the old ones leave, as in `apply`.
        let updates: Vec<(QuerySetId, &TableUpdate)> =
            tables.into_iter().map(|t| (qs, t)).collect();
        self.apply_into(&mut touched, &updates);
        self.release(&mut touched, old);
        self.changes(touched)
    }

    /// Takes detached references out of the totals.
    fn release(&mut self, touched: &mut Touched, old: Vec<(usize, Row, usize)>) {
        for (ti, row, n) in old {
            let rows = &mut self.tables[ti].rows;
            let Some(held) = rows.get_mut(&row) else {
                continue;
            };
            touched.touch(ti, &row, held.total);
            held.total = held.total.saturating_sub(n);
            if held.total == 0 {
                rows.remove(&row);
            }
        }
    }

    fn changes(&self, touched: Touched) -> Vec<(Arc<str>, TableChanges)> {
        let mut out: Vec<(Arc<str>, TableChanges)> = Vec::new();
        let mut per_table: SmallVec<[(usize, TableChanges); 1]> = SmallVec::new();
        for (ti, row, before) in touched.rows {
            let now = self.tables[ti].rows.contains_key(&row);
            let ch = match per_table.iter().position(|(t, _)| *t == ti) {
                Some(i) => &mut per_table[i].1,
                None => {
                    per_table.push((ti, TableChanges::default()));
                    &mut per_table.last_mut().expect("just pushed").1
                }
            };
            match (before > 0, now) {
                (false, true) => ch.inserts.push(row),
                (true, false) => ch.deletes.push(row),
                _ => {}
            }
        }
        for (ti, mut ch) in per_table {
            let t = &self.tables[ti];
            if let Some(pk) = t.schema.primary_key
                && !ch.inserts.is_empty()
                && !ch.deletes.is_empty()
            {
                pair_updates(&mut ch, pk.idx());
            }
            if !ch.is_empty() {
                out.push((t.name.clone(), ch));
            }
        }
        for (table, order, _) in touched.events {
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

/// Pairs the deletes and inserts of `ch` with the same primary key (column `pk`) into
/// updates, in insert order; each key pairs at most once, with its last delete.
fn pair_updates(ch: &mut TableChanges, pk: usize) {
    let mut paired = vec![false; ch.deletes.len()];
    let mut inserts = Vec::new();
    let by_pk: Option<HashMap<_, usize>> = (ch.deletes.len() > SCAN_MAX).then(|| {
        ch.deletes
            .iter()
            .enumerate()
            .map(|(i, r)| (r[pk].clone(), i))
            .collect()
    });
    for r in std::mem::take(&mut ch.inserts) {
        let last = match &by_pk {
            Some(m) => m.get(&r[pk]).copied(),
            None => ch.deletes.iter().rposition(|d| d[pk] == r[pk]),
        };
        match last.filter(|&i| !paired[i]) {
            Some(i) => {
                paired[i] = true;
                ch.updates.push((ch.deletes[i].clone(), r));
            }
            None => inserts.push(r),
        }
    }
    ch.inserts = inserts;
    let mut i = 0;
    ch.deletes.retain(|_| {
        i += 1;
        !paired[i - 1]
    });
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

    #[test]
    fn removing_a_set_removes_exactly_its_references() {
        let mut c = cache();
        let r1 = row![1u64, 1u32];
        let r2 = row![2u64, 1u32];
        c.apply([(
            1,
            &upd("p", vec![r1.clone(), r1.clone(), r2.clone()], vec![]),
        )]);
        c.apply([(2, &upd("p", vec![r1.clone()], vec![]))]);
        let gone = c.remove_set(1);
        assert_eq!(gone[0].1.deletes, vec![r2], "r1 is still held by set 2");
        assert_eq!(c.rows("p"), vec![r1.clone()]);
        assert!(c.remove_set(1).is_empty(), "set 1 holds nothing any more");
        assert_eq!(c.remove_set(2)[0].1.deletes, vec![r1]);
        assert_eq!(c.count("p"), 0);
    }
}
