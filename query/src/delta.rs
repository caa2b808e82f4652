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
//! Event-returning queries have set semantics and no pre- or post-state: the delta is
//! `dE+ ⋉ S'`, each event row at most once however many partners match. Pushing events
//! through the bag formula would be wrong: an event whose partner is inserted in the same
//! commit would be cancelled by the `dR+·dS+` term.

use hashbrown::HashMap;
use tidings_engine::{CommittedState, Row, TxData, Value};

use crate::check::{Pred, Side};
use crate::exec::{holds, probe};
use crate::plan::Plan;
use crate::plan::conjuncts;

/// A query's change in one commit.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct QueryDelta {
    /// Rows entering the result (with multiplicity), or delivered events.
    pub inserts: Vec<Row>,
    /// Rows leaving the result (with multiplicity); always empty for event queries.
    pub deletes: Vec<Row>,
}

impl QueryDelta {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.deletes.is_empty()
    }
}

/// Net multiplicity per row, in order of first appearance (so output is deterministic).
#[derive(Default)]
struct Counts {
    at: HashMap<Row, usize>,
    rows: Vec<(Row, i64)>,
}

impl Counts {
    fn add(&mut self, row: &Row, n: i64) {
        match self.at.get(row) {
            Some(&i) => self.rows[i].1 += n,
            None => {
                self.at.insert(row.clone(), self.rows.len());
                self.rows.push((row.clone(), n));
            }
        }
    }

    fn into_delta(self) -> QueryDelta {
        let mut d = QueryDelta::default();
        for (row, n) in self.rows {
            let out = if n > 0 {
                &mut d.inserts
            } else {
                &mut d.deletes
            };
            for _ in 0..n.unsigned_abs() {
                out.push(row.clone());
            }
        }
        d
    }
}

/// The change of `plan`'s result made by the commit `tx`, given the post-state `state`.
///
/// `state` must be exactly the state right after `tx` (the commit gate guarantees this).
pub fn evaluate_delta(plan: &Plan, state: &CommittedState, tx: &TxData) -> QueryDelta {
    let filter = plan.filter();
    let returned = plan.returned_table();
    let empty: &[Row] = &[];
    let (r_ins, r_del) = tx
        .table(returned)
        .map_or((empty, empty), |u| (&u.inserts[..], &u.deletes[..]));
    let Some(join) = &plan.join else {
        return QueryDelta {
            inserts: r_ins
                .iter()
                .filter(|r| holds(filter, r, None))
                .cloned()
                .collect(),
            deletes: r_del
                .iter()
                .filter(|r| holds(filter, r, None))
                .cloned()
                .collect(),
        };
    };
    let (s_ins, s_del) = tx
        .table(join.lookup)
        .map_or((empty, empty), |u| (&u.inserts[..], &u.deletes[..]));
    let (Some(r_post), Some(s_post)) = (state.table(returned), state.table(join.lookup)) else {
        return QueryDelta::default();
    };
    let (rc, sc) = (join.returned_col.idx(), join.lookup_col.idx());
    // Conjuncts that read one side only are checked before probing: a changed row that
    // fails them cannot join into the result, so its probe would be wasted.
    let (r_only, s_only) = side_conjuncts(filter);
    let r_ok = |r: &Row| r_only.iter().all(|p| holds(p, r, None));
    let s_ok = |s: &Row| s_only.iter().all(|p| holds(p, &[], Some(s)));

    if plan.returns_event_table() {
        // dE+ ⋉ S', set semantics, TxData order.
        let inserts = r_ins
            .iter()
            .filter(|e| {
                let key = &e[rc];
                if !r_ok(e) {
                    return false;
                }
                !key.is_null()
                    && probe(s_post, join.lookup_index, key).any(|s| holds(filter, e, Some(&s)))
            })
            .cloned()
            .collect();
        return QueryDelta {
            inserts,
            deletes: Vec::new(),
        };
    }
    if r_ins.is_empty() && r_del.is_empty() && s_ins.is_empty() && s_del.is_empty() {
        return QueryDelta::default();
    }

    let mut counts = Counts::default();
    // Terms probing the post-state: R'·dS± and dR±·S'.
    let post_r = |ds: &[Row], sign: i64, counts: &mut Counts| {
        for s in ds {
            let key = &s[sc];
            if key.is_null() || !s_ok(s) {
                continue;
            }
            for r in probe(r_post, join.returned_index, key) {
                if holds(filter, &r, Some(s)) {
                    counts.add(&r, sign);
                }
            }
        }
    };
    post_r(s_ins, 1, &mut counts);
    post_r(s_del, -1, &mut counts);
    let post_s = |dr: &[Row], sign: i64, counts: &mut Counts| {
        for r in dr {
            let key = &r[rc];
            if key.is_null() || !r_ok(r) {
                continue;
            }
            for s in probe(s_post, join.lookup_index, key) {
                if holds(filter, r, Some(&s)) {
                    counts.add(r, sign);
                }
            }
        }
    };
    post_s(r_ins, 1, &mut counts);
    post_s(r_del, -1, &mut counts);
    // Delta-by-delta terms: dR+·dS- and dR-·dS+ add; dR+·dS+ and dR-·dS- subtract.
    let (s_ins_by, s_del_by) = (by_key(s_ins, sc), by_key(s_del, sc));
    let cross = |dr: &[Row], ds: &HashMap<&Value, Vec<&Row>>, sign: i64, counts: &mut Counts| {
        if ds.is_empty() {
            return;
        }
        for r in dr {
            for s in ds.get(&r[rc]).into_iter().flatten() {
                if holds(filter, r, Some(s)) {
                    counts.add(r, sign);
                }
            }
        }
    };
    cross(r_ins, &s_del_by, 1, &mut counts);
    cross(r_del, &s_ins_by, 1, &mut counts);
    cross(r_ins, &s_ins_by, -1, &mut counts);
    cross(r_del, &s_del_by, -1, &mut counts);
    counts.into_delta()
}

/// Delta rows grouped by their join-column value (NULLs never join).
fn by_key(rows: &[Row], col: usize) -> HashMap<&Value, Vec<&Row>> {
    let mut m: HashMap<&Value, Vec<&Row>> = HashMap::new();
    for s in rows.iter().filter(|s| !s[col].is_null()) {
        m.entry(&s[col]).or_default().push(s);
    }
    m
}

/// The top-level conjuncts of `filter` that read only the returned side, and those that
/// read only the lookup side.
fn side_conjuncts(filter: &Pred) -> (Vec<&Pred>, Vec<&Pred>) {
    let mut r = Vec::new();
    let mut s = Vec::new();
    for c in conjuncts(filter) {
        match only_side(c) {
            Some(Side::Returned) => r.push(c),
            Some(Side::Lookup) => s.push(c),
            None => {}
        }
    }
    (r, s)
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
