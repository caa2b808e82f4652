//! Stage 5: full evaluation against committed state (initial rows, one-off queries).
//!
//! A semijoin's result is π_returned(R ⋈ S) *with multiplicity*: a returned row appears
//! once per matching lookup row. Full evaluation drives from whichever side the plan
//! found more selective and probes the other through its join-column index.
//!
//! Evaluation reads stored rows in place ([`StoredRow`]): predicates read the columns they
//! name, and the result rows are handed out as stored, so a caller that only re-encodes
//! them (a wire encoder) never builds a [`Row`]. [`evaluate`] decodes them for callers that
//! want values.

use std::ops::Bound;

use tidings_engine::codec::StoredRow;
use tidings_engine::table::{IndexRange, StoredRows, Table};
use tidings_engine::{CommittedState, Row, Value, ValueRef};

use crate::check::{Pred, Side, compare_ref};
use crate::plan::{Access, Plan};

/// A row whose columns a predicate can read: decoded values or a stored row.
pub trait Columns {
    /// The value of column `i`.
    fn column(&self, i: usize) -> ValueRef<'_>;
}

impl Columns for [Value] {
    #[inline]
    fn column(&self, i: usize) -> ValueRef<'_> {
        ValueRef::from(&self[i])
    }
}

impl Columns for Row {
    #[inline]
    fn column(&self, i: usize) -> ValueRef<'_> {
        ValueRef::from(&self[i])
    }
}

impl Columns for StoredRow<'_> {
    #[inline]
    fn column(&self, i: usize) -> ValueRef<'_> {
        StoredRow::column(self, i)
    }
}

/// No lookup row: what single-table predicates get.
pub const NO_LOOKUP: Option<&[Value]> = None;

/// Whether `pred` holds for the returned row `r` and, in a join, the lookup row `s`.
pub fn holds(pred: &Pred, r: &[Value], s: Option<&[Value]>) -> bool {
    holds_on(pred, r, s)
}

/// [`holds`] for rows of any form, decoded or stored.
pub fn holds_on<R, S>(pred: &Pred, r: &R, s: Option<&S>) -> bool
where
    R: Columns + ?Sized,
    S: Columns + ?Sized,
{
    match pred {
        Pred::Const(b) => *b,
        // Comparisons under AND/OR are evaluated in the loop, not through another call:
        // a conjunction of comparisons is the common filter and runs for every changed row.
        Pred::And(v) => v.iter().all(|p| match p {
            Pred::Cmp { .. } => cmp_holds(p, r, s),
            p => holds_on(p, r, s),
        }),
        Pred::Or(v) => v.iter().any(|p| match p {
            Pred::Cmp { .. } => cmp_holds(p, r, s),
            p => holds_on(p, r, s),
        }),
        Pred::Cmp { .. } => cmp_holds(pred, r, s),
    }
}

#[inline(always)]
fn cmp_holds<R, S>(pred: &Pred, r: &R, s: Option<&S>) -> bool
where
    R: Columns + ?Sized,
    S: Columns + ?Sized,
{
    let Pred::Cmp {
        side,
        col,
        op,
        value,
    } = pred
    else {
        return false;
    };
    let v = match side {
        Side::Returned => r.column(col.idx()),
        Side::Lookup => match s {
            Some(s) => s.column(col.idx()),
            None => return false,
        },
    };
    compare_ref(v, *op, value)
}

/// Stored rows of one table read by an [`Access`] or a join probe.
pub enum Read<'a> {
    /// Every row.
    Scan(StoredRows<'a>),
    /// The rows of an index range.
    Index(&'a Table, IndexRange<'a>),
}

impl<'a> Iterator for Read<'a> {
    type Item = StoredRow<'a>;

    #[inline]
    fn next(&mut self) -> Option<StoredRow<'a>> {
        match self {
            Read::Scan(rows) => rows.next(),
            Read::Index(table, ids) => ids.find_map(|id| table.stored(id)),
        }
    }
}

/// The rows of `table` that `access` reads.
pub fn read<'a>(table: &'a Table, access: &Access) -> Read<'a> {
    match access {
        Access::Scan => Read::Scan(table.stored_rows()),
        Access::Index {
            index,
            prefix,
            lower,
            upper,
        } => Read::Index(
            table,
            table.range(*index, prefix, lower.as_ref(), upper.as_ref()),
        ),
    }
}

/// Rows of `table` whose key in `index` starts with `key` (a join probe).
pub fn probe<'a>(table: &'a Table, index: usize, key: &Value) -> Read<'a> {
    Read::Index(
        table,
        table.range(
            index,
            std::slice::from_ref(key),
            Bound::Unbounded,
            Bound::Unbounded,
        ),
    )
}

/// The join key of a row: `None` for NULL, which joins nothing.
fn join_key(v: ValueRef<'_>) -> Option<Value> {
    (!v.is_null()).then(|| v.to_value())
}

/// Evaluates `plan` in full on `state`, calling `emit` with each result row as stored
/// (with multiplicity for semijoins). Event tables read as empty.
pub fn evaluate_stored<'s>(
    plan: &Plan,
    state: &'s CommittedState,
    mut emit: impl FnMut(StoredRow<'s>),
) {
    let filter = plan.filter();
    let Some(returned) = state.table(plan.returned_table()) else {
        return;
    };
    let Some(join) = &plan.join else {
        if let Pred::Const(true) = filter {
            read(returned, &plan.returned_access).for_each(emit);
            return;
        }
        for r in read(returned, &plan.returned_access) {
            if holds_on(filter, &r, NO_LOOKUP) {
                emit(r);
            }
        }
        return;
    };
    let Some(lookup) = state.table(join.lookup) else {
        return;
    };
    if join.drive_from_lookup {
        for s in read(lookup, &join.lookup_access) {
            let Some(key) = join_key(s.column(join.lookup_col.idx())) else {
                continue;
            };
            for r in probe(returned, join.returned_index, &key) {
                if holds_on(filter, &r, Some(&s)) {
                    emit(r);
                }
            }
        }
    } else {
        for r in read(returned, &plan.returned_access) {
            let Some(key) = join_key(r.column(join.returned_col.idx())) else {
                continue;
            };
            for s in probe(lookup, join.lookup_index, &key) {
                if holds_on(filter, &r, Some(&s)) {
                    emit(r);
                }
            }
        }
    }
}

/// The number of rows full evaluation yields, when known without evaluating: an
/// unfiltered read of a whole table. Lets encoders size their buffer once.
pub fn known_result_len(plan: &Plan, state: &CommittedState) -> Option<usize> {
    let whole_table = plan.join.is_none()
        && matches!(plan.returned_access, Access::Scan)
        && matches!(plan.filter(), Pred::Const(true));
    if !whole_table {
        return None;
    }
    Some(state.table(plan.returned_table()).map_or(0, Table::len))
}

/// Evaluates `plan` in full on `state`, calling `emit` for each result row (with
/// multiplicity for semijoins). Event tables read as empty.
pub fn evaluate(plan: &Plan, state: &CommittedState, mut emit: impl FnMut(Row)) {
    evaluate_stored(plan, state, |r| emit(r.decode()));
}

/// Evaluates `plan` in full, collecting the rows.
pub fn evaluate_rows(plan: &Plan, state: &CommittedState) -> Vec<Row> {
    let mut out = Vec::with_capacity(known_result_len(plan, state).unwrap_or(0));
    evaluate(plan, state, |r| out.push(r));
    out
}
