//! Incremental evaluation: a query's change from one commit's TxData and the post-state.
//!
//! Single table: filter the table's inserts and deletes.
//!
//! Semijoin `V = π_R(R ⋈ S)` with bag semantics. Write R, S for the pre-state, R', S' for
//! the post-state and dR±, dS± for the commit's inserts/deletes, so `R = R' − dR+ + dR−`.
//! Expanding `R'S' − RS` gives
//!
//! ```text
//! dV+ = R'·dS+  +  dR+·S'  +  dR+·dS-  +  dR-·dS+
//! dV- = R'·dS-  +  dR-·S'  +  dR+·dS+  +  dR-·dS-
//! ```
//!
//! Each term is a join of two bags: against the post-state through the join-column index
//! (terms with R' or S'), or between two deltas through a small hash table. Every row's
//! net multiplicity change is then emitted once, as inserts or as deletes, never both.
//!
//! A commit that deletes nothing from either table (the common case) needs no netting:
//! with dR- = dS- = ∅ the formula reduces to `dV+ = R·dS+ + dR+·S'` and `dV- = ∅`, where
//! `R = R' − dR+` (the returned rows a probe of R' finds, minus those this commit
//! inserted). Both terms only add, and they never produce the same row (one reads rows
//! older than the commit, the other the commit's own), so the rows go out as found.
//!
//! Event-returning queries have set semantics and no pre- or post-state: the delta is
//! `dE+ ⋉ S'`, each event row at most once however many partners match. Pushing events
//! through the bag formula would be wrong: an event whose partner is inserted in the same
//! commit would be cancelled by the `dR+·dS+` term.
//!
//! Rows of the commit are never copied: a delta refers to the TxData row lists (shared
//! `Arc`s) by position, and owns only the rows it read from the post-state.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{HashMap, HashTable};
use tidings_engine::codec::StoredRow;
use tidings_engine::{CommittedState, PackedRows, Row, TableUpdate, TxData, Value, ValueRef};

use crate::check::{Pred, Side};
use crate::exec::{Columns, NO_LOOKUP, holds_on, probe};
use crate::plan::Plan;
use crate::plan::conjuncts;

/// A query's change in one commit.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct QueryDelta {
    /// Rows entering the result (with multiplicity), or delivered events.
    pub inserts: DeltaRows,
    /// Rows leaving the result (with multiplicity); always empty for event queries.
    pub deletes: DeltaRows,
}

impl QueryDelta {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.deletes.is_empty()
    }
}

/// Where one row of a delta comes from.
#[derive(Clone, Debug)]
enum Pick {
    /// The returned table's TxData inserts, at this position.
    Inserted(u32),
    /// The returned table's TxData deletes, at this position.
    Deleted(u32),
    /// A row read from the post-state.
    Read(Row),
}

/// One side of a [`QueryDelta`]: rows in order, with multiplicity, shared with the
/// commit's TxData where they come from it.
#[derive(Clone, Debug, Default)]
pub struct DeltaRows {
    /// The returned table's TxData inserts, held only when a pick refers to them (an
    /// empty delta costs no reference count), with their packed form when the commit
    /// has one (a large commit: see `tidings_engine::PACK_ROWS_FROM`).
    inserted: Option<HeldList>,
    /// Its TxData deletes, likewise.
    deleted: Option<HeldList>,
    picks: Vec<Pick>,
}

/// A TxData row list as a [`DeltaRows`] holds it: decoded, and packed when large.
type HeldList = (Arc<[Row]>, Option<Arc<PackedRows>>);

/// One row of a delta in the form it is at hand: stored bytes for the commit's own rows,
/// a decoded row for rows read from the post-state.
#[derive(Clone, Copy, Debug)]
pub enum DeltaRow<'a> {
    /// A row of the commit's TxData, in its stored encoding.
    Stored(StoredRow<'a>),
    /// A row read from the post-state.
    Decoded(&'a Row),
}

impl DeltaRows {
    fn new(picks: Vec<Pick>, update: Option<&TableUpdate>) -> Self {
        let refers = |f: fn(&Pick) -> bool| picks.iter().any(f);
        let (inserted, deleted) = match update {
            Some(u) if !picks.is_empty() => (
                refers(|p| matches!(p, Pick::Inserted(_)))
                    .then(|| (u.inserts.clone(), u.stored_inserts.clone())),
                refers(|p| matches!(p, Pick::Deleted(_)))
                    .then(|| (u.deletes.clone(), u.stored_deletes.clone())),
            ),
            _ => (None, None),
        };
        DeltaRows {
            inserted,
            deleted,
            picks,
        }
    }

    /// The rows, in order, each in the form cheapest to encode: the commit's own rows as
    /// stored bytes when the commit packed them (a large commit, whose rows the filter
    /// has just streamed through the cache), decoded otherwise, like rows read from the
    /// post-state.
    pub fn iter_for_encoding(&self) -> impl ExactSizeIterator<Item = DeltaRow<'_>> + '_ {
        let inserted = self.inserted.as_ref().map(|(r, p)| (&**r, p.as_deref()));
        let deleted = self.deleted.as_ref().map(|(r, p)| (&**r, p.as_deref()));
        self.picks.iter().map(move |p| match p {
            Pick::Inserted(i) => for_encoding(inserted, *i),
            Pick::Deleted(i) => for_encoding(deleted, *i),
            Pick::Read(r) => DeltaRow::Decoded(r),
        })
    }

    fn lists(&self) -> (&[Row], &[Row]) {
        (
            self.inserted.as_ref().map_or(&[], |(r, _)| &**r),
            self.deleted.as_ref().map_or(&[], |(r, _)| &**r),
        )
    }

    fn row<'a>(inserted: &'a [Row], deleted: &'a [Row], pick: &'a Pick) -> &'a Row {
        match pick {
            Pick::Inserted(i) => &inserted[*i as usize],
            Pick::Deleted(i) => &deleted[*i as usize],
            Pick::Read(r) => r,
        }
    }

    /// Number of rows (with multiplicity).
    pub fn len(&self) -> usize {
        self.picks.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.picks.is_empty()
    }

    /// The rows, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Row> + '_ {
        let (inserted, deleted) = self.lists();
        self.picks
            .iter()
            .map(move |p| Self::row(inserted, deleted, p))
    }

    /// The rows, copied out of TxData where shared.
    pub fn into_vec(self) -> Vec<Row> {
        let lists = DeltaRows {
            picks: Vec::new(),
            ..self
        };
        let (ins, del) = lists.lists();
        self.picks
            .into_iter()
            .map(|p| match p {
                Pick::Read(r) => r,
                p => Self::row(ins, del, &p).clone(),
            })
            .collect()
    }

    /// The rows, copied.
    pub fn to_vec(&self) -> Vec<Row> {
        self.iter().cloned().collect()
    }
}

impl PartialEq for DeltaRows {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl PartialEq<Vec<Row>> for DeltaRows {
    fn eq(&self, other: &Vec<Row>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<'a> IntoIterator for &'a DeltaRows {
    type Item = &'a Row;
    type IntoIter = Box<dyn Iterator<Item = &'a Row> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Net multiplicity per row, in order of first appearance (so output is deterministic).
struct Counts<'t> {
    inserted: &'t [Row],
    deleted: &'t [Row],
    at: HashTable<usize>,
    rows: Vec<(Pick, i64)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl<'t> Counts<'t> {
    fn new(inserted: &'t [Row], deleted: &'t [Row]) -> Self {
        Counts {
            inserted,
            deleted,
            at: HashTable::new(),
            rows: Vec::new(),
            hasher: Default::default(),
        }
    }

    fn add(&mut self, pick: Pick, n: i64) {
        let (ins, del, rows, hasher) = (self.inserted, self.deleted, &self.rows, &self.hasher);
        let row = DeltaRows::row(ins, del, &pick);
        let hash = hasher.hash_one(row);
        let eq = |i: &usize| DeltaRows::row(ins, del, &rows[*i].0) == row;
        match self.at.find(hash, eq) {
            Some(&i) => self.rows[i].1 += n,
            None => {
                let i = rows.len();
                self.at.insert_unique(hash, i, |i| {
                    hasher.hash_one(DeltaRows::row(ins, del, &rows[*i].0))
                });
                self.rows.push((pick, n));
            }
        }
    }

    fn into_delta(self, update: Option<&TableUpdate>) -> QueryDelta {
        let (mut inserts, mut deletes) = (Vec::new(), Vec::new());
        for (pick, n) in self.rows {
            let out = if n > 0 { &mut inserts } else { &mut deletes };
            for _ in 0..n.unsigned_abs() {
                out.push(pick.clone());
            }
        }
        QueryDelta {
            inserts: DeltaRows::new(inserts, update),
            deletes: DeltaRows::new(deletes, update),
        }
    }
}

/// Row `i` of a TxData list (decoded and packed) in the form to encode it from.
fn for_encoding<'a>(list: Option<(&'a [Row], Option<&'a PackedRows>)>, i: u32) -> DeltaRow<'a> {
    // `DeltaRows::new` holds a list whenever a pick refers to it.
    match list.unwrap_or_else(|| missing()) {
        (_, Some(packed)) => DeltaRow::Stored(packed.get(i as usize)),
        (rows, None) => DeltaRow::Decoded(&rows[i as usize]),
    }
}

/// A pick refers to a TxData list its [`DeltaRows`] does not hold: `DeltaRows::new` holds
/// every list a pick refers to, so this is a bug here, never bad input.
#[cold]
fn missing() -> ! {
    unreachable!("a delta row refers to a TxData list the delta does not hold")
}

fn position(i: usize) -> u32 {
    // TxData of one commit is held in memory as a slice; more than 2^32 rows of one table
    // in one commit cannot be built on any machine this runs on.
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The join key of a row: `None` for NULL, which joins nothing.
fn join_key(v: ValueRef<'_>) -> Option<Value> {
    (!v.is_null()).then(|| v.to_value())
}

/// The change of `plan`'s result made by the commit `tx`, given the post-state `state`.
///
/// `state` must be exactly the state right after `tx`: evaluate before the next commit
/// merges (the transaction actor does so right after each merge).
pub fn evaluate_delta(plan: &Plan, state: &CommittedState, tx: &TxData) -> QueryDelta {
    let filter = plan.filter();
    let returned = plan.returned_table();
    let update = tx.table(returned);
    let (r_ins, r_del): (&[Row], &[Row]) = update.map_or((&[], &[]), |u| (&u.inserts, &u.deletes));
    let delta = |inserts: Vec<Pick>, deletes: Vec<Pick>| QueryDelta {
        inserts: DeltaRows::new(inserts, update),
        deletes: DeltaRows::new(deletes, update),
    };
    let Some(join) = &plan.join else {
        // A large commit's rows are filtered in their packed form (the engine packs only
        // those): a few contiguous kilobytes, read through the byte filter, where the
        // decoded rows are one allocation each (see `tidings_engine::packed`). A small
        // commit's are filtered decoded, and stay in cache for the encoder.
        let matching = |rows: &[Row],
                        packed: Option<&PackedRows>,
                        picks: &mut Vec<Pick>,
                        pick: fn(u32) -> Pick| {
            // The packed list first: a small commit has none, and should not pay a cache
            // miss to read the plan's byte filter.
            if let Some(packed) = packed
                && let Some(bytes) = plan.byte_filter()
            {
                // Sized for all rows at once rather than regrown.
                picks.reserve_exact(packed.len());
                for (i, r) in packed.iter().enumerate() {
                    if bytes.holds(&r) {
                        picks.push(pick(position(i)));
                    }
                }
                return;
            }
            for (i, r) in rows.iter().enumerate() {
                if holds_on(filter, r, NO_LOOKUP) {
                    picks.push(pick(position(i)));
                }
            }
        };
        let (mut inserts, mut deletes) = (Vec::new(), Vec::new());
        let (p_ins, p_del) = (
            update.and_then(|u| u.stored_inserts.as_deref()),
            update.and_then(|u| u.stored_deletes.as_deref()),
        );
        matching(r_ins, p_ins, &mut inserts, Pick::Inserted);
        matching(r_del, p_del, &mut deletes, Pick::Deleted);
        return delta(inserts, deletes);
    };
    let (s_ins, s_del): (&[Row], &[Row]) = tx
        .table(join.lookup)
        .map_or((&[], &[]), |u| (&u.inserts, &u.deletes));
    let (Some(r_post), Some(s_post)) = (state.table(returned), state.table(join.lookup)) else {
        return QueryDelta::default();
    };
    let (rc, sc) = (join.returned_col.idx(), join.lookup_col.idx());
    // Conjuncts that read one side only are checked before probing: a changed row that
    // fails them cannot join into the result, so its probe would be wasted.
    let only = |side| {
        conjuncts(filter)
            .iter()
            .filter(move |c| only_side(c) == Some(side))
    };
    let r_ok = |r: &Row| only(Side::Returned).all(|p| holds_on(p, r, NO_LOOKUP));
    let s_ok = |s: &Row| only(Side::Lookup).all(|p| holds_on(p, &[] as &[Value], Some(s)));

    if plan.returns_event_table() {
        // dE+ ⋉ S', set semantics, TxData order.
        let inserts = (r_ins.iter().enumerate())
            .filter(|(_, e)| {
                r_ok(e)
                    && join_key(e.column(rc)).is_some_and(|key| {
                        probe(s_post, join.lookup_index, &key)
                            .any(|s| holds_on(filter, *e, Some(&s)))
                    })
            })
            .map(|(i, _)| Pick::Inserted(position(i)))
            .collect();
        return delta(inserts, Vec::new());
    }
    if r_ins.is_empty() && r_del.is_empty() && s_ins.is_empty() && s_del.is_empty() {
        return QueryDelta::default();
    }

    // dR+·S' (every term's rows are dR+) and dR-·S': one pick per matching partner.
    let post_s = |dr: &[Row], r: usize| -> usize {
        let row = &dr[r];
        if !r_ok(row) {
            return 0;
        }
        join_key(row.column(rc)).map_or(0, |key| {
            probe(s_post, join.lookup_index, &key)
                .filter(|s| holds_on(filter, row, Some(s)))
                .count()
        })
    };
    // R'·dS±: the returned rows of the post-state each changed lookup row reaches.
    let post_r = |s: &Row, each: &mut dyn FnMut(StoredRow<'_>)| {
        if !s_ok(s) {
            return;
        }
        if let Some(key) = join_key(s.column(sc)) {
            for r in probe(r_post, join.returned_index, &key) {
                if holds_on(filter, &r, Some(s)) {
                    each(r);
                }
            }
        }
    };

    if r_del.is_empty() && s_del.is_empty() {
        // Insert-only commit: dV+ = R·dS+ + dR+·S' (see the module doc).
        let mut inserts = Vec::new();
        // Built on the first returned row a probe finds: most commits reach none.
        let mut r_ins_by: Option<KeyChains<'_>> = None;
        for s in s_ins {
            post_r(s, &mut |r| {
                let chains = r_ins_by.get_or_insert_with(|| KeyChains::new(r_ins, rc));
                let new_in_commit = chains
                    .rows_with(&r.column(rc).to_value())
                    .any(|n| same_row(&r, n));
                if !new_in_commit {
                    inserts.push(Pick::Read(r.decode()));
                }
            });
        }
        for i in 0..r_ins.len() {
            for _ in 0..post_s(r_ins, i) {
                inserts.push(Pick::Inserted(position(i)));
            }
        }
        return delta(inserts, Vec::new());
    }

    let mut counts = Counts::new(r_ins, r_del);
    for (ds, sign) in [(s_ins, 1), (s_del, -1)] {
        for s in ds {
            post_r(s, &mut |r| counts.add(Pick::Read(r.decode()), sign));
        }
    }
    for i in 0..r_ins.len() {
        for _ in 0..post_s(r_ins, i) {
            counts.add(Pick::Inserted(position(i)), 1);
        }
    }
    for i in 0..r_del.len() {
        for _ in 0..post_s(r_del, i) {
            counts.add(Pick::Deleted(position(i)), -1);
        }
    }
    // Delta-by-delta terms: dR+·dS- and dR-·dS+ add; dR+·dS+ and dR-·dS- subtract.
    let (s_ins_by, s_del_by) = (by_key(s_ins, sc), by_key(s_del, sc));
    let cross = |dr: &[Row],
                 pick: fn(u32) -> Pick,
                 ds: &HashMap<&Value, Vec<&Row>>,
                 sign: i64,
                 counts: &mut Counts<'_>| {
        if ds.is_empty() {
            return;
        }
        for (i, r) in dr.iter().enumerate() {
            for s in ds.get(&r[rc]).into_iter().flatten() {
                if holds_on(filter, r, Some(*s)) {
                    counts.add(pick(position(i)), sign);
                }
            }
        }
    };
    cross(r_ins, Pick::Inserted, &s_del_by, 1, &mut counts);
    cross(r_del, Pick::Deleted, &s_ins_by, 1, &mut counts);
    cross(r_ins, Pick::Inserted, &s_ins_by, -1, &mut counts);
    cross(r_del, Pick::Deleted, &s_del_by, -1, &mut counts);
    counts.into_delta(update)
}

/// Whether the stored row `r` is the decoded row `n` (row identity).
fn same_row(r: &StoredRow<'_>, n: &Row) -> bool {
    r.columns()
        .zip(n.iter())
        .all(|(a, b)| a == ValueRef::from(b))
}

/// Delta rows grouped by their join-column value, without an allocation per value: each
/// row links to the previous row of the same value.
struct KeyChains<'a> {
    rows: &'a [Row],
    last: HashMap<&'a Value, u32>,
    previous: Vec<u32>,
}

impl<'a> KeyChains<'a> {
    const END: u32 = u32::MAX;

    fn new(rows: &'a [Row], col: usize) -> Self {
        let mut last = HashMap::with_capacity(rows.len());
        let mut previous = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let prev = match r[col].is_null() {
                true => Self::END,
                false => last.insert(&r[col], position(i)).unwrap_or(Self::END),
            };
            previous.push(prev);
        }
        KeyChains {
            rows,
            last,
            previous,
        }
    }

    /// The rows whose value is `key`.
    fn rows_with(&self, key: &Value) -> impl Iterator<Item = &'a Row> + '_ {
        let first = self.last.get(key).copied();
        std::iter::successors(first, |i| {
            Some(self.previous[*i as usize]).filter(|p| *p != Self::END)
        })
        .map(|i| &self.rows[i as usize])
    }
}

/// Delta rows grouped by their join-column value (NULLs never join).
fn by_key(rows: &[Row], col: usize) -> HashMap<&Value, Vec<&Row>> {
    let mut m: HashMap<&Value, Vec<&Row>> = HashMap::new();
    for s in rows.iter().filter(|s| !s[col].is_null()) {
        m.entry(&s[col]).or_default().push(s);
    }
    m
}

/// The one side `p` reads, if it reads exactly one (constants read none: `None`).
fn only_side(p: &Pred) -> Option<Side> {
    match p {
        Pred::Const(_) => None,
        Pred::Cmp { side, .. } => Some(*side),
        Pred::And(v) | Pred::Or(v) => {
            let mut sides = v.iter().map(only_side);
            let first = sides.next()??;
            sides.all(|s| s == Some(first)).then_some(first)
        }
    }
}
