//! The query registry: sharing and pruning.
//!
//! *Sharing.* Every registered plan is keyed by its [`QueryKey`] (normalized query with
//! `:sender` bound, plus schema version). Registering an equal key returns the existing
//! [`QueryId`] and bumps its reference count, so a query that ten thousand clients share
//! is evaluated once per commit. Keys are compared in full by the hash map, so a hash
//! collision can never merge two different queries.
//!
//! *Pruning.* [`Registry::affected`] returns only the queries a commit can change:
//! - a single-table query with a top-level conjunct `col = const` (constants include a
//!   bound `:sender`) is indexed under `(table, col, const)` and looked up with the values
//!   of that column in the commit's inserted *and* deleted rows, so moving a row's column
//!   from 1 to 2 wakes the queries for 1 and for 2;
//! - a semijoin `R ⋉ S ON R.x = S.y WHERE S.c = const` whose lookup join column `S.y` is
//!   unique is a *join edge*: a change to S matters only if the changed S row has
//!   `c = const` (indexed like the above), and a change to an R row `r` only if the one
//!   S' row with `y = r.x` has `c = const`;
//! - anything else is indexed by every table it reads.
//!
//! Pruning never changes results; with pruning off every query reading a changed table is
//! returned (a property test checks both give the same deltas).

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use slotmap::{SlotMap, new_key_type};
use tidings_engine::{ColId, CommittedState, TableId, TxData, Value};

use crate::check::{Pred, Side, Source};
use crate::parse::ast::CmpOp;
use crate::plan::{Plan, QueryKey, conjuncts};

new_key_type! {
    /// A registered distinct query.
    pub struct QueryId;
}

/// How a query is found from a commit.
#[derive(Clone, Debug, PartialEq)]
enum Prune {
    /// Any change to these tables.
    Tables(Vec<TableId>),
    /// A changed row of `table` with `col = value`.
    Value(TableId, ColId, Value),
    /// A join edge: see the module doc.
    Edge(EdgeKey, Value),
}

/// A join edge's shape: returned table and join column, lookup table, unique join column
/// index, and the filtered lookup column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EdgeKey {
    returned: TableId,
    returned_col: ColId,
    lookup: TableId,
    lookup_index: usize,
    filter_col: ColId,
}

struct Entry {
    plan: Arc<Plan>,
    refs: usize,
    prune: Prune,
}

/// Distinct registered queries with their pruning indexes.
pub struct Registry {
    queries: SlotMap<QueryId, Entry>,
    by_key: HashMap<QueryKey, QueryId>,
    /// Every query by each table it reads (used when pruning is off).
    all_by_table: HashMap<TableId, Vec<QueryId>>,
    /// Queries that cannot be pruned below their tables.
    by_table: HashMap<TableId, Vec<QueryId>>,
    /// `(table, col) -> value -> queries`.
    by_value: HashMap<(TableId, ColId), HashMap<Value, Vec<QueryId>>>,
    /// Columns of each table that have value-pruned queries.
    value_cols: HashMap<TableId, Vec<ColId>>,
    /// Join edges: `edge -> lookup filter value -> queries`.
    edges: HashMap<EdgeKey, HashMap<Value, Vec<QueryId>>>,
    pruning: bool,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry with pruning on.
    pub fn new() -> Self {
        Registry {
            queries: SlotMap::with_key(),
            by_key: HashMap::new(),
            all_by_table: HashMap::new(),
            by_table: HashMap::new(),
            by_value: HashMap::new(),
            value_cols: HashMap::new(),
            edges: HashMap::new(),
            pruning: true,
        }
    }

    /// Turns pruning on or off (off: every query reading a changed table is affected).
    pub fn set_pruning(&mut self, on: bool) {
        self.pruning = on;
    }

    /// Number of distinct queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// Whether no query is registered.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// The plan of `id`.
    pub fn plan(&self, id: QueryId) -> Option<&Arc<Plan>> {
        self.queries.get(id).map(|e| &e.plan)
    }

    /// How many registrations share `id`.
    pub fn ref_count(&self, id: QueryId) -> usize {
        self.queries.get(id).map_or(0, |e| e.refs)
    }

    /// Every registered query.
    pub fn ids(&self) -> impl Iterator<Item = QueryId> + '_ {
        self.queries.keys()
    }

    /// Registers `plan`, sharing an existing equal query; returns its id.
    pub fn register(&mut self, plan: Plan, state: &CommittedState) -> QueryId {
        if let Some(&id) = self.by_key.get(plan.key()) {
            if let Some(e) = self.queries.get_mut(id) {
                e.refs += 1;
            }
            return id;
        }
        let prune = prune_of(&plan, state);
        let tables: Vec<TableId> = match plan.source() {
            Source::Table(t) => vec![*t],
            Source::Semijoin {
                returned, lookup, ..
            } if returned == lookup => vec![*returned],
            Source::Semijoin {
                returned, lookup, ..
            } => vec![*returned, *lookup],
        };
        let key = plan.key().clone();
        let id = self.queries.insert(Entry {
            plan: Arc::new(plan),
            refs: 1,
            prune: prune.clone(),
        });
        self.by_key.insert(key, id);
        for t in &tables {
            self.all_by_table.entry(*t).or_default().push(id);
        }
        match prune {
            Prune::Tables(ts) => {
                for t in ts {
                    self.by_table.entry(t).or_default().push(id);
                }
            }
            Prune::Value(t, c, v) => self.add_value(t, c, v, id),
            Prune::Edge(edge, v) => {
                self.add_value(edge.lookup, edge.filter_col, v.clone(), id);
                self.edges
                    .entry(edge)
                    .or_default()
                    .entry(v)
                    .or_default()
                    .push(id);
            }
        }
        id
    }

    fn add_value(&mut self, t: TableId, c: ColId, v: Value, id: QueryId) {
        let cols = self.value_cols.entry(t).or_default();
        if !cols.contains(&c) {
            cols.push(c);
        }
        self.by_value
            .entry((t, c))
            .or_default()
            .entry(v)
            .or_default()
            .push(id);
    }

    /// Drops one registration of `id`; the query goes when the last one does.
    /// Returns whether the query is gone.
    pub fn unregister(&mut self, id: QueryId) -> bool {
        let Some(e) = self.queries.get_mut(id) else {
            return false;
        };
        e.refs -= 1;
        if e.refs > 0 {
            return false;
        }
        let Some(e) = self.queries.remove(id) else {
            return false;
        };
        self.by_key.remove(e.plan.key());
        for list in self.all_by_table.values_mut() {
            remove_id(list, id);
        }
        match e.prune {
            Prune::Tables(ts) => {
                for t in ts {
                    if let Some(list) = self.by_table.get_mut(&t) {
                        remove_id(list, id);
                    }
                }
            }
            Prune::Value(t, c, v) => self.remove_value(t, c, &v, id),
            Prune::Edge(edge, v) => {
                self.remove_value(edge.lookup, edge.filter_col, &v, id);
                if let Some(m) = self.edges.get_mut(&edge) {
                    if let Some(list) = m.get_mut(&v) {
                        remove_id(list, id);
                        if list.is_empty() {
                            m.remove(&v);
                        }
                    }
                    if m.is_empty() {
                        self.edges.remove(&edge);
                    }
                }
            }
        }
        true
    }

    fn remove_value(&mut self, t: TableId, c: ColId, v: &Value, id: QueryId) {
        let Some(m) = self.by_value.get_mut(&(t, c)) else {
            return;
        };
        if let Some(list) = m.get_mut(v) {
            remove_id(list, id);
            if list.is_empty() {
                m.remove(v);
            }
        }
        if m.is_empty() {
            self.by_value.remove(&(t, c));
            if let Some(cols) = self.value_cols.get_mut(&t) {
                cols.retain(|x| *x != c);
            }
        }
    }

    /// The queries the commit `tx` can change, given the post-state `state`, each once.
    pub fn affected(&self, tx: &TxData, state: &CommittedState) -> Vec<QueryId> {
        let mut out: HashSet<QueryId> = HashSet::new();
        for update in &tx.tables {
            let t = update.table_id;
            if !self.pruning {
                out.extend(self.all_by_table.get(&t).into_iter().flatten().copied());
                continue;
            }
            out.extend(self.by_table.get(&t).into_iter().flatten().copied());
            let rows = update.inserts.iter().chain(update.deletes.iter());
            if let Some(cols) = self.value_cols.get(&t) {
                for row in rows.clone() {
                    for c in cols {
                        if let Some(ids) = self
                            .by_value
                            .get(&(t, *c))
                            .and_then(|m| m.get(&row[c.idx()]))
                        {
                            out.extend(ids.iter().copied());
                        }
                    }
                }
            }
            for (edge, by_val) in self.edges.iter().filter(|(e, _)| e.returned == t) {
                let Some(lookup) = state.table(edge.lookup) else {
                    continue;
                };
                for row in rows.clone() {
                    let key = &row[edge.returned_col.idx()];
                    if key.is_null() {
                        continue;
                    }
                    if let Some(s) = lookup
                        .unique_lookup(edge.lookup_index, std::slice::from_ref(key))
                        .and_then(|id| lookup.get(id))
                        && let Some(ids) = by_val.get(&s[edge.filter_col.idx()])
                    {
                        out.extend(ids.iter().copied());
                    }
                }
            }
        }
        let mut ids: Vec<QueryId> = out.into_iter().collect();
        ids.sort();
        ids
    }
}

fn remove_id(list: &mut Vec<QueryId>, id: QueryId) {
    if let Some(p) = list.iter().position(|x| *x == id) {
        list.swap_remove(p);
    }
}

/// The first top-level `col = const` conjunct on `side`, preferring unique columns.
fn eq_conjunct(pred: &Pred, side: Side, unique: impl Fn(ColId) -> bool) -> Option<(ColId, Value)> {
    let mut best: Option<(ColId, Value)> = None;
    for c in conjuncts(pred) {
        if let Pred::Cmp {
            side: s,
            col,
            op: CmpOp::Eq,
            value,
        } = c
            && *s == side
            && !value.is_null()
        {
            if unique(*col) {
                return Some((*col, value.clone()));
            }
            best.get_or_insert((*col, value.clone()));
        }
    }
    best
}

fn prune_of(plan: &Plan, state: &CommittedState) -> Prune {
    let schema = state.schema();
    let unique_in = |t: TableId| {
        let ts = schema.table(t).cloned();
        move |c: ColId| ts.as_ref().is_some_and(|ts| ts.is_unique_column(c))
    };
    match plan.source() {
        Source::Table(t) => match eq_conjunct(plan.filter(), Side::Returned, unique_in(*t)) {
            Some((c, v)) => Prune::Value(*t, c, v),
            None => Prune::Tables(vec![*t]),
        },
        Source::Semijoin {
            returned,
            lookup,
            returned_col,
            lookup_col,
        } => {
            let all = if returned == lookup {
                vec![*returned]
            } else {
                vec![*returned, *lookup]
            };
            if returned == lookup {
                return Prune::Tables(all);
            }
            let Some(ts) = schema.table(*lookup) else {
                return Prune::Tables(all);
            };
            let Some(lookup_index) = ts.unique_index_on(&[*lookup_col]) else {
                return Prune::Tables(all);
            };
            match eq_conjunct(plan.filter(), Side::Lookup, unique_in(*lookup)) {
                Some((filter_col, v)) => Prune::Edge(
                    EdgeKey {
                        returned: *returned,
                        returned_col: *returned_col,
                        lookup: *lookup,
                        lookup_index,
                        filter_col,
                    },
                    v,
                ),
                None => Prune::Tables(all),
            }
        }
    }
}
