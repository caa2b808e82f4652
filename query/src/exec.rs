//! Stage 5: full evaluation against committed state (initial rows, one-off queries).
//!
//! A semijoin's result is π_returned(R ⋈ S) *with multiplicity*: a returned row appears
//! once per matching lookup row. Full evaluation drives from whichever side the plan
//! found more selective and probes the other through its join-column index.

use std::ops::Bound;

use tidings_engine::table::Table;
use tidings_engine::{CommittedState, Row, Value};

use crate::check::{Pred, Side, compare};
use crate::plan::{Access, Plan};

/// Whether `pred` holds for the returned row `r` and, in a join, the lookup row `s`.
pub fn holds(pred: &Pred, r: &[Value], s: Option<&[Value]>) -> bool {
    match pred {
        Pred::Const(b) => *b,
        Pred::And(v) => v.iter().all(|p| holds(p, r, s)),
        Pred::Or(v) => v.iter().any(|p| holds(p, r, s)),
        Pred::Cmp {
            side,
            col,
            op,
            value,
        } => {
            let row = match side {
                Side::Returned => r,
                Side::Lookup => match s {
                    Some(s) => s,
                    None => return false,
                },
            };
            compare(&row[col.idx()], *op, value)
        }
    }
}

/// The rows of `table` that `access` reads.
pub fn read<'a>(table: &'a Table, access: &'a Access) -> Box<dyn Iterator<Item = Row> + 'a> {
    match access {
        Access::Scan => Box::new(table.iter().map(|(_, r)| r)),
        Access::Index {
            index,
            prefix,
            lower,
            upper,
        } => Box::new(
            table
                .range(*index, prefix, lower.as_ref(), upper.as_ref())
                .filter_map(move |id| table.get(id)),
        ),
    }
}

/// Rows of `table` whose key in `index` starts with `key` (a join probe).
pub fn probe<'a>(table: &'a Table, index: usize, key: &Value) -> impl Iterator<Item = Row> + 'a {
    table
        .range(
            index,
            std::slice::from_ref(key),
            Bound::Unbounded,
            Bound::Unbounded,
        )
        .filter_map(move |id| table.get(id))
}

/// Evaluates `plan` in full on `state`, calling `emit` for each result row (with
/// multiplicity for semijoins). Event tables read as empty.
pub fn evaluate(plan: &Plan, state: &CommittedState, mut emit: impl FnMut(Row)) {
    let filter = plan.filter();
    let Some(returned) = state.table(plan.returned_table()) else {
        return;
    };
    let Some(join) = &plan.join else {
        for r in read(returned, &plan.returned_access) {
            if holds(filter, &r, None) {
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
            let key = &s[join.lookup_col.idx()];
            if key.is_null() {
                continue;
            }
            for r in probe(returned, join.returned_index, key) {
                if holds(filter, &r, Some(&s)) {
                    emit(r);
                }
            }
        }
    } else {
        for r in read(returned, &plan.returned_access) {
            let key = &r[join.returned_col.idx()];
            if key.is_null() {
                continue;
            }
            for s in probe(lookup, join.lookup_index, key) {
                if holds(filter, &r, Some(&s)) {
                    emit(r.clone());
                }
            }
        }
    }
}

/// Evaluates `plan` in full, collecting the rows.
pub fn evaluate_rows(plan: &Plan, state: &CommittedState) -> Vec<Row> {
    let mut out = Vec::new();
    evaluate(plan, state, |r| out.push(r));
    out
}
