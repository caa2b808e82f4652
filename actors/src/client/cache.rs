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
//! of a fan-out applies the same message, so its cost is paid once per subscriber. For
//! the same reason the connections an application thread drives share the rows they
//! take in from one update (a [`RowPool`]), and a table with a primary key hashes its
//! rows by that key, so an update's two rows sit together.
//!
//! A transaction is applied inserts first, then deletes, and only the net 0 <-> 1
//! transitions become callbacks: a row that moves from one query set to another in one
//! transaction fires nothing. Deletes and inserts with the same primary key pair into
//! updates. Event rows never enter the cache: each distinct event row of a table fires
//! once per transaction, however many query sets delivered it.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use smallvec::SmallVec;
use tidings_engine::{Row, Schema, TableSchema};

use super::pool::{RowPool, shared_row};
use crate::messages::{QuerySetId, TableRows, TableUpdate};

/// What one applied message changed in one table, as callbacks will report it.
///
/// Rows are borrowed from the message where they came from it: a fan-out applies one
/// message to every subscriber, and copying each changed row per subscriber was most of
/// what applying it cost. Rows that leave because a query set was removed are owned.
///
/// The lists hold one row without allocating: a fan-out's message usually changes one
/// row, and every subscriber builds these.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TableChanges<'a> {
    /// Rows that entered the cache.
    pub inserts: SmallVec<[Cow<'a, Row>; 1]>,
    /// Rows that left the cache.
    pub deletes: SmallVec<[Cow<'a, Row>; 1]>,
    /// (old, new) pairs with the same primary key.
    pub updates: SmallVec<[(Cow<'a, Row>, Cow<'a, Row>); 1]>,
    /// Distinct event rows, in delivery order.
    pub events: Vec<&'a Row>,
}

/// One message's changes, per table, sorted by table name. A name is borrowed from the
/// message where it came from one: touching the shared name's reference count from
/// every application thread applying the same fan-out would bounce it between cores.
pub type Changes<'a> = SmallVec<[(Cow<'a, str>, TableChanges<'a>); 1]>;

impl TableChanges<'_> {
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
    /// The schema's name, shared with every other cache of the process: compared by
    /// pointer, never cloned while applying.
    name: Arc<str>,
    schema: Arc<TableSchema>,
    /// Rows with their counts, hashed by [`row_hash`]: a hash table rather than a
    /// map so that applying a row hashes it once for its lookup, its insertion or its
    /// removal (every subscriber of a fan-out pays this per row).
    rows: HashTable<(Arc<Row>, Held)>,
    hasher: DefaultHashBuilder,
    /// The primary-key column's position, when the table has one.
    pk: Option<usize>,
}

/// A row's hash in [`TableCache::rows`]: its primary key's (column `pk`) where the table
/// has one, else the whole row's.
///
/// An update deletes the old row and inserts the new one, and both share their primary
/// key, so hashing by it puts them in the same group of the table: applying an update
/// misses the cache once instead of twice, and the table is cold in every subscriber of
/// a fan-out. Equality is still on the whole row, so two rows with one key (the old and
/// the new one, for the moment a message is applied) stay distinct entries.
fn row_hash(hasher: &DefaultHashBuilder, pk: Option<usize>, row: &Row) -> u64 {
    match pk.and_then(|c| row.values().get(c)) {
        Some(key) => hasher.hash_one(key),
        None => hasher.hash_one(row),
    }
}

/// Every table's cached rows.
#[derive(Debug, Default)]
pub struct ClientCache {
    tables: Vec<TableCache>,
    by_name: HashMap<Arc<str>, usize>,
    /// Per query set, the tables (indices) it has contributed rows to.
    sets: HashMap<QuerySetId, SmallVec<[usize; 2]>>,
    /// The (set, table) pair last noted in `sets`.
    last_noted: Option<(QuerySetId, usize)>,
}

/// Past this many touched rows, first-touch checks use a hash table instead of a scan.
const SCAN_MAX: usize = 16;

/// One row a message touched: its counts before and after the message.
struct TouchedRow<'a> {
    table: usize,
    row: Cow<'a, Row>,
    hash: u64,
    before: usize,
    after: usize,
}

impl TouchedRow<'_> {
    /// The row's key in [`Touched::index`].
    fn key(&self) -> u64 {
        Self::key_of(self.table, self.hash)
    }

    fn key_of(table: usize, hash: u64) -> u64 {
        hash ^ table as u64
    }
}

/// What one message touched, in first-touch order.
#[derive(Default)]
struct Touched<'a> {
    rows: SmallVec<[TouchedRow<'a>; 2]>,
    /// Positions in `rows` by (table, row hash), built once `rows` grows past
    /// [`SCAN_MAX`].
    index: Option<HashTable<usize>>,
    /// Per table (by name): its distinct event rows, merged from every query's list.
    events: Vec<(&'a str, EventOrder<'a>)>,
    /// Per table index, its name as the message spells it.
    names: SmallVec<[(usize, &'a str); 2]>,
}

/// The distinct event rows of one table in one message, in an order consistent with
/// every list they came in.
///
/// Each query's event list follows the commit's insert order, but a client holding two
/// queries over one event table gets two lists, each a part of that order: `[2]` and
/// `[1, 2]`, say. Appending unseen rows list by list would fire 2 before 1. Instead the
/// lists' consecutive pairs are precedence edges and the rows are sorted topologically,
/// ties going to the row seen first: the result keeps every list's order, so it is the
/// insert order wherever some list relates two rows. One list (the usual case) is its
/// own order.
#[derive(Default)]
struct EventOrder<'a> {
    /// The distinct rows, by first appearance.
    rows: Vec<&'a Row>,
    seen: HashMap<&'a Row, usize>,
    /// Per row, the rows some list has right after it.
    next: Vec<SmallVec<[usize; 1]>>,
    /// Per row, how many edges lead to it.
    preceding: Vec<usize>,
    lists: usize,
}

impl<'a> EventOrder<'a> {
    /// Adds one query's list.
    fn add(&mut self, list: &'a [Row]) {
        self.lists += 1;
        let mut prev: Option<usize> = None;
        for e in list {
            let at = match self.seen.get(e) {
                Some(&at) => at,
                None => {
                    let at = self.rows.len();
                    self.rows.push(e);
                    self.next.push(SmallVec::new());
                    self.preceding.push(0);
                    self.seen.insert(e, at);
                    at
                }
            };
            if let Some(p) = prev
                && p != at
            {
                self.next[p].push(at);
                self.preceding[at] += 1;
            }
            prev = Some(at);
        }
    }

    /// The rows in order.
    fn into_order(mut self) -> Vec<&'a Row> {
        if self.lists <= 1 {
            return self.rows;
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
            (0..self.rows.len())
                .filter(|&i| self.preceding[i] == 0)
                .map(std::cmp::Reverse)
                .collect();
        let mut out = Vec::with_capacity(self.rows.len());
        let mut placed = vec![false; self.rows.len()];
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            out.push(self.rows[i]);
            placed[i] = true;
            for &n in &self.next[i] {
                self.preceding[n] -= 1;
                if self.preceding[n] == 0 {
                    ready.push(std::cmp::Reverse(n));
                }
            }
        }
        // Lists that contradict each other (a server bug) leave a cycle: its rows still
        // fire, in first-appearance order.
        if out.len() < self.rows.len() {
            out.extend(
                (0..self.rows.len())
                    .filter(|&i| !placed[i])
                    .map(|i| self.rows[i]),
            );
        }
        out
    }
}

/// An index of `rows` by (table, row hash), with room for `capacity`.
fn index_of(rows: &[TouchedRow<'_>], capacity: usize) -> HashTable<usize> {
    let key = |i: &usize| rows[*i].key();
    let mut index = HashTable::with_capacity(capacity.max(rows.len()));
    for i in 0..rows.len() {
        index.insert_unique(key(&i), i, key);
    }
    index
}

impl<'a> Touched<'a> {
    /// Makes room for `n` more rows at once, rather than growing (and rehashing the
    /// index) as they come: every subscriber of a fan-out touches the same rows.
    fn reserve(&mut self, n: usize) {
        self.rows.reserve(n);
        let total = self.rows.len() + n;
        if self.index.is_none() && total > SCAN_MAX {
            self.index = Some(index_of(&self.rows, total));
        }
    }

    /// The position of `row` of `table` (hashed `hash`), recorded with its count before
    /// any change when first touched.
    fn touch(&mut self, table: usize, row: Cow<'a, Row>, hash: u64, before: usize) -> usize {
        let key = TouchedRow::key_of(table, hash);
        let Touched { rows, index, .. } = self;
        let same = |t: &TouchedRow<'_>| t.hash == hash && t.table == table && *t.row == *row;
        match index {
            None => {
                if let Some(i) = rows.iter().position(same) {
                    return i;
                }
            }
            Some(index) => {
                if let Some(&i) = index.find(key, |&i| same(&rows[i])) {
                    return i;
                }
            }
        }
        let at = rows.len();
        rows.push(TouchedRow {
            table,
            row,
            hash,
            before,
            after: before,
        });
        let rehash = |i: &usize| rows[*i].key();
        match index {
            Some(index) => {
                index.insert_unique(key, at, rehash);
            }
            None if rows.len() > SCAN_MAX => *index = Some(index_of(rows, rows.len() * 2)),
            None => {}
        }
        at
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
                    rows: HashTable::new(),
                    hasher: DefaultHashBuilder::default(),
                    pk: t.primary_key.map(|c| usize::from(c.0)),
                });
            }
        }
    }

    fn table(&self, table: &str) -> Option<&TableCache> {
        self.by_name.get(table).map(|&i| &self.tables[i])
    }

    /// The index of the table an update names. In process, the update's name is the
    /// schema's own `Arc`, so a pointer comparison over the (few) tables finds it
    /// without hashing the name, which every subscriber of a fan-out would do per
    /// message; decoded names fall back to the map.
    fn index_of(&self, name: &Arc<str>) -> Option<usize> {
        const SCAN_TABLES: usize = 32;
        if self.tables.len() <= SCAN_TABLES
            && let Some(i) = self.tables.iter().position(|t| Arc::ptr_eq(&t.name, name))
        {
            return Some(i);
        }
        self.by_name.get(name).copied()
    }

    /// Number of rows of `table` in the cache (0 for event tables, always).
    pub fn count(&self, table: &str) -> usize {
        self.table(table).map_or(0, |t| t.rows.len())
    }

    /// The rows of `table` in the cache.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        self.table(table)
            .map(|t| t.rows.iter().map(|(r, _)| Row::clone(r)).collect())
            .unwrap_or_default()
    }

    /// The schema of `table`, if known.
    pub fn schema(&self, table: &str) -> Option<&Arc<TableSchema>> {
        self.table(table).map(|t| &t.schema)
    }

    /// Adds `n` (negative: removes) references of set `qs` to `row` of table `ti`.
    fn add<'a>(
        &mut self,
        touched: &mut Touched<'a>,
        qs: QuerySetId,
        ti: usize,
        row: &'a Row,
        n: isize,
        shared: impl FnOnce() -> Arc<Row>,
    ) {
        let TableCache {
            rows, hasher, pk, ..
        } = &mut self.tables[ti];
        let hash = row_hash(hasher, *pk, row);
        let entry = rows.entry(
            hash,
            |(r, _)| **r == *row,
            |(r, _)| row_hash(hasher, *pk, r),
        );
        let mut occupied = match entry {
            Entry::Occupied(o) => o,
            Entry::Vacant(v) if n > 0 => {
                let n = n.unsigned_abs();
                let at = touched.touch(ti, Cow::Borrowed(row), hash, 0);
                touched.rows[at].after = n;
                let held = Held {
                    total: n,
                    sets: smallvec::smallvec![(qs, n)],
                };
                v.insert((shared(), held));
                return;
            }
            // Removing what is not held changes nothing (the server never does it).
            Entry::Vacant(_) => {
                touched.touch(ti, Cow::Borrowed(row), hash, 0);
                return;
            }
        };
        let held = &mut occupied.get_mut().1;
        let at = touched.touch(ti, Cow::Borrowed(row), hash, held.total);
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
        touched.rows[at].after = held.total;
        if held.total == 0 {
            occupied.remove();
        }
    }

    /// Notes that set `qs` holds rows of table `ti`.
    fn note_set_table(&mut self, qs: QuerySetId, ti: usize) {
        // Usually the same pair as the last message's: skip the map (a cache miss per
        // subscriber of a fan-out).
        if self.last_noted == Some((qs, ti)) {
            return;
        }
        let tables = self.sets.entry(qs).or_default();
        if !tables.contains(&ti) {
            tables.push(ti);
        }
        self.last_noted = Some((qs, ti));
    }

    /// Applies one message's updates: `(query set, table update)` pairs.
    pub fn apply<'a>(
        &mut self,
        updates: impl IntoIterator<Item = (QuerySetId, &'a TableUpdate)>,
    ) -> Changes<'a> {
        self.apply_pooled(updates, &mut RowPool::alone())
    }

    /// [`ClientCache::apply`], sharing the rows it takes in through `pool` with the other
    /// caches applying the same message.
    pub fn apply_pooled<'a>(
        &mut self,
        updates: impl IntoIterator<Item = (QuerySetId, &'a TableUpdate)>,
        pool: &mut RowPool,
    ) -> Changes<'a> {
        let mut touched = Touched::default();
        let updates: SmallVec<[(QuerySetId, &TableUpdate); 2]> = updates.into_iter().collect();
        self.apply_into(&mut touched, pool, &updates);
        self.changes(touched)
    }

    fn apply_into<'a>(
        &mut self,
        touched: &mut Touched<'a>,
        pool: &mut RowPool,
        updates: &[(QuerySetId, &'a TableUpdate)],
    ) {
        // Event rows are never touched: they only fire.
        let persistent = updates
            .iter()
            .filter(|(_, u)| matches!(&*u.rows, TableRows::Persistent { .. }))
            .map(|(_, u)| u.rows.len());
        touched.reserve(persistent.sum());
        // Inserts first, so a row moving between query sets never drops to zero.
        for (qs, u) in updates {
            match &*u.rows {
                TableRows::Persistent { inserts, .. } => {
                    let Some(ti) = self.index_of(&u.table) else {
                        continue;
                    };
                    if !touched.names.iter().any(|(t, _)| *t == ti) {
                        touched.names.push((ti, &u.table));
                    }
                    if inserts.is_empty() {
                        continue;
                    }
                    self.note_set_table(*qs, ti);
                    let slots = pool.update(&u.rows);
                    for (i, r) in inserts.iter().enumerate() {
                        self.add(touched, *qs, ti, r, 1, || shared_row(slots, i, r));
                    }
                }
                TableRows::Event { events } => {
                    let at = match touched.events.iter().position(|(t, _)| **t == *u.table) {
                        Some(at) => at,
                        None => {
                            touched.events.push((&u.table, EventOrder::default()));
                            touched.events.len() - 1
                        }
                    };
                    touched.events[at].1.add(events);
                }
            }
        }
        for (qs, u) in updates {
            if let TableRows::Persistent { deletes, .. } = &*u.rows
                && !deletes.is_empty()
            {
                let Some(ti) = self.index_of(&u.table) else {
                    continue;
                };
                for r in deletes {
                    // A delete never takes a row in.
                    self.add(touched, *qs, ti, r, -1, || Arc::new(r.clone()));
                }
            }
        }
    }

    /// Takes every reference of set `qs` out of the per-set counts, leaving the totals:
    /// `(table, row, references)`.
    fn detach(&mut self, qs: QuerySetId) -> Vec<(usize, Arc<Row>, usize)> {
        self.last_noted = None;
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
    pub fn remove_set<'a>(&mut self, qs: QuerySetId) -> Changes<'a> {
        let old = self.detach(qs);
        if old.is_empty() {
            return Changes::new();
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
    ) -> Changes<'a> {
        let old = self.detach(qs);
        let mut touched = Touched::default();
        // The new rows go in before the old ones leave, as in `apply`.
        let updates: Vec<(QuerySetId, &TableUpdate)> =
            tables.into_iter().map(|t| (qs, t)).collect();
        self.apply_into(&mut touched, &mut RowPool::alone(), &updates);
        self.release(&mut touched, old);
        self.changes(touched)
    }

    /// Takes detached references out of the totals.
    fn release<'a>(&mut self, touched: &mut Touched<'a>, old: Vec<(usize, Arc<Row>, usize)>) {
        for (ti, row, n) in old {
            let table = &mut self.tables[ti];
            let hash = row_hash(&table.hasher, table.pk, &row);
            let Ok(mut occupied) = table.rows.find_entry(hash, |(r, _)| Arc::ptr_eq(r, &row))
            else {
                continue;
            };
            let held = &mut occupied.get_mut().1;
            let row = Arc::unwrap_or_clone(row);
            let at = touched.touch(ti, Cow::Owned(row), hash, held.total);
            held.total = held.total.saturating_sub(n);
            touched.rows[at].after = held.total;
            if held.total == 0 {
                occupied.remove();
            }
        }
    }

    fn changes<'a>(&self, touched: Touched<'a>) -> Changes<'a> {
        let mut out = Changes::new();
        let mut per_table: SmallVec<[(usize, TableChanges<'a>); 1]> = SmallVec::new();
        for TouchedRow {
            table: ti,
            row,
            before,
            after,
            ..
        } in touched.rows
        {
            let now = after > 0;
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
                let name = match touched.names.iter().find(|(i, _)| *i == ti) {
                    Some((_, name)) => Cow::Borrowed(*name),
                    None => Cow::Owned(t.name.to_string()),
                };
                out.push((name, ch));
            }
        }
        for (table, order) in touched.events {
            let order = order.into_order();
            match out.iter_mut().find(|(t, _)| *t == table) {
                Some((_, ch)) => ch.events = order,
                None => out.push((
                    Cow::Borrowed(table),
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
/// updates, in insert order; each key pairs at most once, with its last delete. Rows are
/// moved into the pairs, not copied.
fn pair_updates(ch: &mut TableChanges<'_>, pk: usize) {
    // The usual update (one row replaced) pairs without the bookkeeping below.
    if ch.inserts.len() == 1 && ch.deletes.len() == 1 {
        if ch.inserts[0][pk] == ch.deletes[0][pk]
            && let (Some(new), Some(old)) = (ch.inserts.pop(), ch.deletes.pop())
        {
            ch.updates.push((old, new));
        }
        return;
    }
    let mut paired = vec![false; ch.deletes.len()];
    let mut inserts = SmallVec::new();
    let mut pairs = Vec::new();
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
                pairs.push((i, r));
            }
            None => inserts.push(r),
        }
    }
    ch.inserts = inserts;
    let mut deletes: Vec<Option<Cow<'_, Row>>> = std::mem::take(&mut ch.deletes)
        .into_iter()
        .map(Some)
        .collect();
    for (i, r) in pairs {
        if let Some(old) = deletes[i].take() {
            ch.updates.push((old, r));
        }
    }
    ch.deletes = deletes.into_iter().flatten().collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_engine::{AlgebraicType as T, row};

    fn owned<R: std::ops::Deref<Target = Row>>(rows: &[R]) -> Vec<Row> {
        rows.iter().map(|r| (**r).clone()).collect()
    }

    fn owned_pairs(pairs: &[(Cow<'_, Row>, Cow<'_, Row>)]) -> Vec<(Row, Row)> {
        pairs
            .iter()
            .map(|(a, b)| ((**a).clone(), (**b).clone()))
            .collect()
    }

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

    /// Event rows of table `e`, as one query returns them.
    fn events(events: Vec<Row>) -> TableUpdate {
        TableUpdate::new("e".into(), TableRows::Event { events })
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
        assert_eq!(owned(&c.remove_set(2)[0].1.deletes), vec![row![1u64, 1u32]]);
        assert_eq!(c.count("p"), 0);
    }

    #[test]
    fn caches_applying_one_update_through_a_pool_share_its_rows() {
        let (mut a, mut b) = (cache(), cache());
        let many: Vec<Row> = (0..40u64).map(|k| row![k, 1u32]).collect();
        let first = upd("p", many.clone(), vec![]);
        let mut pool = RowPool::default();
        for c in [&mut a, &mut b] {
            assert_eq!(
                c.apply_pooled([(1, &first)], &mut pool)[0].1.inserts.len(),
                40
            );
        }
        let shared = pool.shared(&first.rows);
        assert_eq!(shared.len(), 40, "one shared copy per row, not per cache");
        for row in &shared {
            assert_eq!(
                Arc::strong_count(row),
                4,
                "held by the pool, both caches and this list"
            );
        }
        let old = shared[0].clone();
        drop(shared);
        // The update is still referenced (by `first`), so the pool keeps its rows.
        pool.trim();
        assert_eq!(pool.shared(&first.rows).len(), 40);
        drop(first);
        pool.trim();
        assert_eq!(
            Arc::strong_count(&old),
            3,
            "the pool let go of an update nobody holds"
        );
        // The next update changes row 0 in both caches.
        let next = upd("p", vec![row![0u64, 2u32]], vec![row![0u64, 1u32]]);
        for c in [&mut a, &mut b] {
            let ch = c.apply_pooled([(1, &next)], &mut pool);
            assert_eq!(
                owned_pairs(&ch[0].1.updates),
                vec![(row![0u64, 1u32], row![0u64, 2u32])]
            );
            assert_eq!(c.count("p"), 40);
        }
        assert_eq!(Arc::strong_count(&old), 1, "both caches let the old row go");
        // A pool for one connection alone keeps nothing.
        let mut alone = RowPool::alone();
        let third = upd("p", vec![row![41u64, 1u32]], vec![]);
        a.apply_pooled([(1, &third)], &mut alone);
        assert!(alone.shared(&third.rows).is_empty());
        assert_eq!(a.count("p"), 41);
        a.apply_pooled(
            [(1, &upd("p", vec![], vec![row![41u64, 1u32]]))],
            &mut alone,
        );
        let mut expected = many;
        expected[0] = row![0u64, 2u32];
        for c in [&a, &b] {
            let mut rows = c.rows("p");
            rows.sort();
            assert_eq!(rows, expected);
        }
    }

    #[test]
    fn delete_and_insert_with_the_same_key_pair_into_an_update() {
        let mut c = cache();
        c.apply([(1, &upd("p", vec![row![1u64, 1u32]], vec![]))]);
        let moved = upd("p", vec![row![1u64, 2u32]], vec![row![1u64, 1u32]]);
        let ch = c.apply([(1, &moved)]);
        assert_eq!(
            owned_pairs(&ch[0].1.updates),
            vec![(row![1u64, 1u32], row![1u64, 2u32])]
        );
        assert!(ch[0].1.inserts.is_empty() && ch[0].1.deletes.is_empty());
    }

    #[test]
    fn events_of_overlapping_queries_fire_in_insert_order() {
        let mut c = cache();
        // The commit inserted 1, 2, 3; one query returns [2], another [1, 2, 3].
        let some = events(vec![row![2u32]]);
        let all = events(vec![row![1u32], row![2u32], row![3u32]]);
        let ch = c.apply([(1, &some), (2, &all)]);
        assert_eq!(
            owned(&ch[0].1.events),
            vec![row![1u32], row![2u32], row![3u32]]
        );
    }

    proptest::proptest! {
        /// Lists that are each a part of one order merge into an order that keeps every
        /// list's order, with each row once.
        #[test]
        fn event_lists_merge_keeping_every_lists_order(
            (n, picks) in proptest::prelude::Strategy::prop_flat_map(1usize..30, |n| {
                (proptest::strategy::Just(n), proptest::collection::vec(proptest::collection::vec(proptest::bool::ANY, n), 1..5))
            })
        ) {
            let rows: Vec<Row> = (0..n as u32).map(|i| row![i]).collect();
            let lists: Vec<Vec<Row>> = picks
                .iter()
                .map(|keep| rows.iter().zip(keep).filter(|(_, k)| **k).map(|(r, _)| r.clone()).collect())
                .collect();
            let mut order = EventOrder::default();
            for l in &lists {
                order.add(l);
            }
            let out: Vec<Row> = order.into_order().into_iter().cloned().collect();
            let mut expected: Vec<Row> = lists.iter().flatten().cloned().collect();
            expected.sort();
            expected.dedup();
            let mut got = out.clone();
            got.sort();
            proptest::prop_assert_eq!(&got, &expected, "each row once");
            let at = |r: &Row| out.iter().position(|o| o == r);
            for l in &lists {
                for w in l.windows(2) {
                    proptest::prop_assert!(at(&w[0]) < at(&w[1]), "{:?} keeps its order in {:?}", l, out);
                }
            }
        }
    }

    #[test]
    fn events_are_distinct_per_table_and_never_cached() {
        let mut c = cache();
        let ev = events(vec![row![1u32], row![2u32]]);
        let ev2 = events(vec![row![2u32]]);
        let ch = c.apply([(1, &ev), (2, &ev2)]);
        assert_eq!(owned(&ch[0].1.events), vec![row![1u32], row![2u32]]);
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
        assert_eq!(owned(&ch[0].1.inserts), vec![row![4u64, 1u32]]);
        assert_eq!(
            owned_pairs(&ch[0].1.updates),
            vec![(row![2u64, 1u32], row![2u64, 5u32])]
        );
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
        assert_eq!(
            owned(&gone[0].1.deletes),
            vec![r2],
            "r1 is still held by set 2"
        );
        assert_eq!(c.rows("p"), vec![r1.clone()]);
        assert!(c.remove_set(1).is_empty(), "set 1 holds nothing any more");
        assert_eq!(owned(&c.remove_set(2)[0].1.deletes), vec![r1]);
        assert_eq!(c.count("p"), 0);
    }

    /// One query set's part of a message: rows to insert, and which held rows to delete
    /// (by position).
    type Part = (QuerySetId, Vec<(u64, u32)>, Vec<usize>);

    /// One operation of the model test.
    #[derive(Clone, Debug)]
    enum Op {
        Apply(Vec<Part>),
        Remove(QuerySetId),
        Replace(QuerySetId, Vec<(u64, u32)>),
    }

    fn op() -> impl proptest::prelude::Strategy<Value = Op> {
        use proptest::prelude::*;
        let rows = || proptest::collection::vec((0u64..4, 0u32..3), 0..5);
        prop_oneof![
            4 => proptest::collection::vec(
                (1u32..4, rows(), proptest::collection::vec(0usize..8, 0..4)),
                1..3
            )
            .prop_map(Op::Apply),
            1 => (1u32..4).prop_map(Op::Remove),
            1 => (1u32..4, rows()).prop_map(|(q, r)| Op::Replace(q, r)),
        ]
    }

    proptest::proptest! {
        /// The cache agrees with a model that keeps each query set's rows as a multiset:
        /// it holds exactly the rows some set holds, and each message's callbacks report
        /// exactly the rows that entered and left (updates pairing equal keys).
        #[test]
        fn cache_agrees_with_a_multiset_model(ops in proptest::collection::vec(op(), 1..40)) {
            use std::collections::{BTreeMap, BTreeSet};
            let mut c = cache();
            let mut model: BTreeMap<QuerySetId, Vec<Row>> = BTreeMap::new();
            let members = |m: &BTreeMap<QuerySetId, Vec<Row>>| -> BTreeSet<Row> {
                m.values().flatten().cloned().collect()
            };
            for op in ops {
                let before = members(&model);
                // The messages outlive the changes, which borrow their rows.
                let mut msgs = Vec::new();
                let changes = match op {
                    Op::Apply(parts) => {
                        let mut next = model.clone();
                        for (qs, ins, del) in parts {
                            let held = next.entry(qs).or_default();
                            let mut deletes = Vec::new();
                            for i in del {
                                if !held.is_empty() {
                                    deletes.push(held.remove(i % held.len()));
                                }
                            }
                            let inserts: Vec<Row> =
                                ins.iter().map(|(k, v)| row![*k, *v]).collect();
                            held.extend(inserts.iter().cloned());
                            msgs.push((qs, upd("p", inserts, deletes)));
                        }
                        model = next;
                        c.apply(msgs.iter().map(|(q, u)| (*q, u)))
                    }
                    Op::Remove(qs) => {
                        model.remove(&qs);
                        c.remove_set(qs)
                    }
                    Op::Replace(qs, rows) => {
                        let rows: Vec<Row> = rows.iter().map(|(k, v)| row![*k, *v]).collect();
                        model.insert(qs, rows.clone());
                        msgs.push((qs, upd("p", rows, vec![])));
                        c.replace_set(qs, msgs.iter().map(|(_, u)| u))
                    }
                };
                let after = members(&model);
                let mut cached = c.rows("p");
                cached.sort();
                proptest::prop_assert_eq!(&cached, &after.iter().cloned().collect::<Vec<_>>());
                proptest::prop_assert_eq!(c.count("p"), after.len());
                let (mut entered, mut left) = (BTreeSet::new(), BTreeSet::new());
                for (table, ch) in changes {
                    proptest::prop_assert_eq!(&*table, "p");
                    for (old, new) in &ch.updates {
                        proptest::prop_assert_eq!(&old[0], &new[0], "an update pairs equal keys");
                    }
                    entered.extend(ch.inserts.iter().chain(ch.updates.iter().map(|u| &u.1)).map(|r| (**r).clone()));
                    left.extend(ch.deletes.iter().chain(ch.updates.iter().map(|u| &u.0)).map(|r| (**r).clone()));
                }
                proptest::prop_assert_eq!(entered, after.difference(&before).cloned().collect::<BTreeSet<_>>());
                proptest::prop_assert_eq!(left, before.difference(&after).cloned().collect::<BTreeSet<_>>());
            }
        }
    }
}
