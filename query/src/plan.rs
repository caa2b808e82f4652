//! Stages 3 and 4: logical normalization and physical planning.
//!
//! The logical step normalizes the typed predicate (flatten, fold constants, sort and
//! dedup the children of AND/OR) so that queries that differ only in order, case or
//! whitespace get the same [`QueryKey`]. The physical step picks, per table, the btree
//! index whose column prefix the top-level equality conjuncts cover best (plus a range on
//! the next column), and for a semijoin the index on each join column and the side to
//! drive full evaluation from.
//!
//! Event-table rules live here: an event table may be returned by a semijoin but never be
//! its lookup side.

use std::ops::Bound;
use std::sync::Arc;

use thiserror::Error;
use tidings_engine::{ColId, Schema, TableId, TableSchema, Value};

use crate::bytefilter::ByteFilter;
use crate::check::{Pred, Side, Source, TypedQuery};
use crate::parse::ast::CmpOp;

/// Exactly the text users see when a join looks up an event table.
pub const EVENT_LOOKUP_ERROR: &str =
    "Event tables cannot be used as the lookup table in subscription joins";

/// A query that cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// The lookup side of a semijoin is an event table.
    #[error("Event tables cannot be used as the lookup table in subscription joins")]
    EventTableLookup,
    /// A join column without a btree index.
    #[error("Subscriptions require indexes on join columns: {table}.{column}")]
    MissingJoinIndex {
        /// The table.
        table: Arc<str>,
        /// The column.
        column: Arc<str>,
    },
}

/// How one table is read.
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// Every row.
    Scan,
    /// Rows of btree index `index` whose key starts with `prefix`, the next key column
    /// within the bounds.
    Index {
        /// Index position in the table schema.
        index: usize,
        /// Equality prefix.
        prefix: Vec<Value>,
        /// Lower bound on the next column.
        lower: Bound<Value>,
        /// Upper bound on the next column.
        upper: Bound<Value>,
    },
}

impl Access {
    /// How selective the access is: equality prefix length, twice, plus one for a range.
    fn score(&self) -> usize {
        match self {
            Access::Scan => 0,
            Access::Index {
                prefix,
                lower,
                upper,
                ..
            } => {
                prefix.len() * 2
                    + usize::from(!matches!(
                        (lower, upper),
                        (Bound::Unbounded, Bound::Unbounded)
                    ))
            }
        }
    }
}

/// The join part of a semijoin plan.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinPlan {
    /// The lookup table.
    pub lookup: TableId,
    /// Join column of the returned table.
    pub returned_col: ColId,
    /// Join column of the lookup table.
    pub lookup_col: ColId,
    /// A returned-table index starting with `returned_col` (probes R' in deltas).
    pub returned_index: usize,
    /// A lookup-table index starting with `lookup_col` (probes S').
    pub lookup_index: usize,
    /// How the lookup table is read when full evaluation drives from it.
    pub lookup_access: Access,
    /// Full evaluation iterates the lookup side and probes the returned side.
    pub drive_from_lookup: bool,
}

/// What identifies a query for sharing: its normalized form and the schema it was
/// compiled against. Two clients with the same key share one evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryKey {
    /// The normalized query (`:sender` already bound).
    pub query: TypedQuery,
    /// The schema version the plan was compiled against.
    pub schema_version: u64,
}

/// A compiled, executable query.
#[derive(Clone, Debug)]
pub struct Plan {
    key: QueryKey,
    returned_name: Arc<str>,
    returns_event: bool,
    reads_event: bool,
    /// How the returned table is read by full evaluation.
    pub returned_access: Access,
    /// The join, for semijoins.
    pub join: Option<JoinPlan>,
    /// The filter compiled against the stored row layout, for single-table queries.
    /// Boxed: only large commits read it, and the plan's other fields are read by every
    /// evaluation, from as few cache lines as possible.
    byte_filter: Option<Box<ByteFilter>>,
}

impl Plan {
    /// The sharing key.
    pub fn key(&self) -> &QueryKey {
        &self.key
    }

    /// The filter of a single-table query in its stored-bytes form.
    pub fn byte_filter(&self) -> Option<&ByteFilter> {
        self.byte_filter.as_deref()
    }

    /// The normalized predicate.
    pub fn filter(&self) -> &Pred {
        &self.key.query.filter
    }

    /// The source tables.
    pub fn source(&self) -> &Source {
        &self.key.query.source
    }

    /// The returned table.
    pub fn returned_table(&self) -> TableId {
        self.key.query.source.returned()
    }

    /// The returned table's name.
    pub fn returned_table_name(&self) -> &Arc<str> {
        &self.returned_name
    }

    /// Whether the rows returned are event rows (delivered once, never cached).
    pub fn returns_event_table(&self) -> bool {
        self.returns_event
    }

    /// Whether any table read is an event table.
    pub fn reads_from_event_table(&self) -> bool {
        self.reads_event
    }

    /// The schema version the plan was compiled against.
    pub fn schema_version(&self) -> u64 {
        self.key.schema_version
    }
}

/// Normalizes `pred`: flattened, constants folded, children sorted and deduplicated.
pub fn normalize(pred: Pred) -> Pred {
    match pred {
        Pred::And(children) => junction(children, true),
        Pred::Or(children) => junction(children, false),
        other => other,
    }
}

fn junction(children: Vec<Pred>, and: bool) -> Pred {
    let mut out = Vec::with_capacity(children.len());
    for c in children {
        match (normalize(c), and) {
            (Pred::Const(b), _) if b == and => {}
            (Pred::Const(b), _) => return Pred::Const(b),
            (Pred::And(inner), true) | (Pred::Or(inner), false) => out.extend(inner),
            (c, _) => out.push(c),
        }
    }
    out.sort();
    out.dedup();
    match out.len() {
        0 => Pred::Const(and),
        1 => out.pop().unwrap_or(Pred::Const(and)),
        _ if and => Pred::And(out),
        _ => Pred::Or(out),
    }
}

/// Plans a checked query against `schema` at `schema_version`.
pub fn plan(query: TypedQuery, schema: &Schema, schema_version: u64) -> Result<Plan, PlanError> {
    let query = TypedQuery {
        source: query.source,
        filter: normalize(query.filter),
    };
    let table = |id: TableId| schema.table(id).map(|t| &**t);
    let returned_id = query.source.returned();
    let returned = table(returned_id).ok_or(PlanError::MissingJoinIndex {
        table: "?".into(),
        column: "?".into(),
    })?;
    let returned_access = choose_access(returned, &query.filter, Side::Returned);
    let mut reads_event = returned.is_event;
    let join = match &query.source {
        Source::Table(_) => None,
        Source::Semijoin {
            lookup,
            returned_col,
            lookup_col,
            ..
        } => {
            let lookup_ts = table(*lookup).ok_or(PlanError::EventTableLookup)?;
            if lookup_ts.is_event {
                return Err(PlanError::EventTableLookup);
            }
            reads_event |= lookup_ts.is_event;
            let index_on = |ts: &TableSchema, col: ColId| {
                ts.index_starting_with(col)
                    .ok_or_else(|| PlanError::MissingJoinIndex {
                        table: ts.name.clone(),
                        column: ts.column(col).name.clone(),
                    })
            };
            let returned_index = index_on(returned, *returned_col)?;
            let lookup_index = index_on(lookup_ts, *lookup_col)?;
            let lookup_access = choose_access(lookup_ts, &query.filter, Side::Lookup);
            Some(JoinPlan {
                lookup: *lookup,
                returned_col: *returned_col,
                lookup_col: *lookup_col,
                returned_index,
                lookup_index,
                drive_from_lookup: lookup_access.score() > returned_access.score(),
                lookup_access,
            })
        }
    };
    let byte_filter = join
        .is_none()
        .then(|| Box::new(ByteFilter::compile(&query.filter, returned)));
    Ok(Plan {
        byte_filter,
        returned_name: returned.name.clone(),
        returns_event: returned.is_event,
        reads_event,
        returned_access,
        join,
        key: QueryKey {
            query,
            schema_version,
        },
    })
}

/// The top-level conjuncts of `pred`.
pub fn conjuncts(pred: &Pred) -> &[Pred] {
    match pred {
        Pred::And(v) => v,
        other => std::slice::from_ref(other),
    }
}

/// Picks the best index access for `side` from the top-level conjuncts of `pred`.
fn choose_access(ts: &TableSchema, pred: &Pred, side: Side) -> Access {
    let mut eq: Vec<(ColId, &Value)> = Vec::new();
    let mut ranges: Vec<(ColId, CmpOp, &Value)> = Vec::new();
    for c in conjuncts(pred) {
        if let Pred::Cmp {
            side: s,
            col,
            op,
            value,
        } = c
        {
            if *s != side || value.is_null() {
                continue;
            }
            match op {
                CmpOp::Eq => eq.push((*col, value)),
                CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => ranges.push((*col, *op, value)),
                CmpOp::Ne => {}
            }
        }
    }
    let mut best = Access::Scan;
    for (index, def) in ts.indexes.iter().enumerate() {
        let mut prefix = Vec::new();
        for col in &def.columns {
            match eq.iter().find(|(c, _)| c == col) {
                Some((_, v)) => prefix.push((*v).clone()),
                None => break,
            }
        }
        let (mut lower, mut upper) = (Bound::Unbounded, Bound::Unbounded);
        if let Some(next) = def.columns.get(prefix.len()) {
            for (_, op, v) in ranges.iter().filter(|(c, _, _)| c == next) {
                let v = (*v).clone();
                match op {
                    CmpOp::Gt => lower = tighter_lower(lower, Bound::Excluded(v)),
                    CmpOp::Ge => lower = tighter_lower(lower, Bound::Included(v)),
                    CmpOp::Lt => upper = tighter_upper(upper, Bound::Excluded(v)),
                    CmpOp::Le => upper = tighter_upper(upper, Bound::Included(v)),
                    _ => {}
                }
            }
            // Unsatisfiable bounds (`x > 5 AND x < 3`, `x > 5 AND x < 5`) would make the
            // btree range panic (start after end). The filter rejects every row anyway,
            // so read the prefix unbounded instead.
            if empty_range(&lower, &upper) {
                (lower, upper) = (Bound::Unbounded, Bound::Unbounded);
            }
        }
        let candidate = Access::Index {
            index,
            prefix,
            lower,
            upper,
        };
        if candidate.score() > best.score() {
            best = candidate;
        }
    }
    best
}

fn bound_value(b: &Bound<Value>) -> Option<&Value> {
    match b {
        Bound::Included(v) | Bound::Excluded(v) => Some(v),
        Bound::Unbounded => None,
    }
}

/// Whether the bounds are crossed, or meet at a value one of them excludes: no value lies
/// between them.
fn empty_range(lower: &Bound<Value>, upper: &Bound<Value>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) => {
            l >= u
        }
        _ => false,
    }
}

fn tighter_lower(a: Bound<Value>, b: Bound<Value>) -> Bound<Value> {
    match (bound_value(&a), bound_value(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) if y > x => b,
        (Some(x), Some(y)) if y == x && matches!(b, Bound::Excluded(_)) => b,
        _ => a,
    }
}

fn tighter_upper(a: Bound<Value>, b: Bound<Value>) -> Bound<Value> {
    match (bound_value(&a), bound_value(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) if y < x => b,
        (Some(x), Some(y)) if y == x && matches!(b, Bound::Excluded(_)) => b,
        _ => a,
    }
}
