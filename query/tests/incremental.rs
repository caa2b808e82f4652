//! Incremental evaluation agrees with full evaluation.
//!
//! For random schemas, random subscription queries and random transaction sequences, every
//! persistent query keeps a multiset: its full evaluation right after a seeding commit,
//! plus every delta since. After each commit that multiset must equal the query's full
//! evaluation of the current state, which in turn must equal a naive nested-loop
//! evaluation of the query's WHERE tree (so plan and index choices are checked too).
//!
//! Event-returning queries have no state: each commit's delta must be exactly the
//! commit's event rows that pass the filter (and have a partner in the post-state), in
//! TxData order, each at most once, and never any deletes.
//!
//! No delta may list a row both as inserted and deleted.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tidings_engine::{AlgebraicType as T, Datastore, Row, Schema, TableSchema, row};
use tidings_query::{Plan, QueryDelta, evaluate_delta, evaluate_rows};

struct Sub {
    query: Query,
    sql: String,
    plan: Plan,
    /// Initial rows plus every delta so far (persistent queries only).
    view: BTreeMap<Row, usize>,
}

fn apply_delta(
    view: &mut BTreeMap<Row, usize>,
    delta: &QueryDelta,
    sql: &str,
) -> Result<(), TestCaseError> {
    for r in &delta.deletes {
        let Some(n) = view.get_mut(r) else {
            return Err(TestCaseError::fail(format!(
                "{sql}: the delta deletes {r:?}, which the result does not hold"
            )));
        };
        *n -= 1;
        if *n == 0 {
            view.remove(r);
        }
    }
    for r in &delta.inserts {
        *view.entry(r.clone()).or_insert(0) += 1;
    }
    Ok(())
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let db = case.schema.build();
    let ds = Datastore::in_memory(db.schema());
    // Half the cases pack every change, so single-table deltas read the packed rows
    // (large commits only, by default) on these small commits too.
    if case.txs.len().is_multiple_of(2) {
        ds.set_pack_rows_from(1);
    }
    run_tx(&ds, &db, &case.seed);
    let schema = ds.schema();
    let mut subs = Vec::new();
    {
        let state = ds.read();
        for seed in &case.queries {
            let query = interpret(seed, &db);
            let sql = render(&query, &db, Dialect::Tidings);
            let plan = compile_one(&sql, &schema).map_err(TestCaseError::fail)?;
            let event = query.returns_event(&db);
            prop_assert_eq!(plan.returns_event_table(), event, "{}", sql);
            // The lookup side is never an event table, so only the returned side counts.
            prop_assert_eq!(plan.reads_from_event_table(), event, "{}", sql);
            let view = if event {
                // Event rows never reach committed state.
                prop_assert_eq!(evaluate_rows(&plan, &state), Vec::<Row>::new(), "{}", sql);
                BTreeMap::new()
            } else {
                let view = bag(evaluate_rows(&plan, &state));
                prop_assert_eq!(
                    &view,
                    &model_rows(&query, &state, &db),
                    "initial rows of {}",
                    sql
                );
                view
            };
            subs.push(Sub {
                query,
                sql,
                plan,
                view,
            });
        }
    }
    for (i, ops) in case.txs.iter().enumerate() {
        let (tx_data, events) = run_tx(&ds, &db, ops);
        let state = ds.read();
        for (t, rows) in &events.rows {
            let listed = tx_data
                .as_ref()
                .and_then(|tx| tx.table(db.tables[*t].id))
                .map(|u| u.inserts.to_vec())
                .unwrap_or_default();
            prop_assert_eq!(&listed, rows, "tx {}: TxData events of t{}", i, t);
        }
        for sub in &mut subs {
            let sql = &sub.sql;
            let delta = tx_data
                .as_ref()
                .map(|tx| evaluate_delta(&sub.plan, &state, tx))
                .unwrap_or_default();
            let inserted = bag(delta.inserts.iter().cloned());
            let deleted = bag(delta.deletes.iter().cloned());
            prop_assert!(
                inserted.keys().all(|r| !deleted.contains_key(r)),
                "tx {}: {}: a row is both inserted and deleted: {:?}",
                i,
                sql,
                delta
            );
            if sub.query.returns_event(&db) {
                let expected = tx_data
                    .as_ref()
                    .map(|tx| model_events(&sub.query, &state, tx, &db))
                    .unwrap_or_default();
                prop_assert_eq!(&delta.inserts, &expected, "tx {}: events of {}", i, sql);
                prop_assert!(
                    inserted.values().all(|&n| n == 1),
                    "tx {}: {}: an event delivered twice",
                    i,
                    sql
                );
                prop_assert!(delta.deletes.is_empty(), "tx {}: {}: event deletes", i, sql);
            } else {
                apply_delta(&mut sub.view, &delta, &format!("tx {i}: {sql}"))?;
                let full = bag(evaluate_rows(&sub.plan, &state));
                prop_assert_eq!(&sub.view, &full, "tx {}: incremental vs full: {}", i, sql);
                prop_assert_eq!(
                    &full,
                    &model_rows(&sub.query, &state, &db),
                    "tx {}: full vs model: {}",
                    i,
                    sql
                );
            }
        }
    }
    Ok(())
}

/// `t(id u64 pk, k u64 indexed, s string indexed)` with a few rows.
fn small_table() -> (Datastore, Schema) {
    let schema = Schema::new([TableSchema::builder("t")
        .column("id", T::U64)
        .column("k", T::U64)
        .column("s", T::String)
        .primary_key("id")
        .index(&["k"])
        .index(&["s"])
        .public()
        .build()
        .expect("t")])
    .expect("schema");
    let ds = Datastore::in_memory(schema.clone());
    let mut tx = ds.begin_mut_tx();
    for (id, k, s) in [(1u64, 1u64, "a"), (2, 1, "b"), (3, 5, "c"), (4, 9, "d")] {
        tx.insert(tidings_engine::TableId(0), row![id, k, s])
            .expect("insert");
    }
    tx.commit().expect("commit");
    (ds, schema)
}

/// Shrunk from `deltas_accumulate_to_the_full_result`: a conjunction of range comparisons
/// on an indexed column that no value satisfies made full evaluation panic inside the
/// btree (`range start is greater than range end`) instead of returning no rows.
#[test]
fn unsatisfiable_range_on_an_indexed_column_evaluates_to_nothing() {
    let (ds, schema) = small_table();
    let state = ds.read();
    for sql in [
        "SELECT * FROM t WHERE id > 3 AND id < 2",
        "SELECT * FROM t WHERE id > 3 AND id < 3",
        "SELECT * FROM t WHERE id >= 3 AND id < 3",
        "SELECT * FROM t WHERE id > 3 AND id <= 3",
        "SELECT * FROM t WHERE k > 5 AND k < 5",
        "SELECT * FROM t WHERE k > 9 AND k < 1",
        "SELECT * FROM t WHERE s > 'c' AND s < 'b'",
        "SELECT * FROM t WHERE s > 'c' AND s < 'c'",
    ] {
        let plan = compile_one(sql, &schema).expect("compiles");
        assert_eq!(evaluate_rows(&plan, &state), Vec::<Row>::new(), "{sql}");
    }
    // A satisfiable range on the same columns still finds its rows.
    let plan = compile_one("SELECT * FROM t WHERE k >= 5 AND k <= 5", &schema).expect("compiles");
    assert_eq!(evaluate_rows(&plan, &state), vec![row![3u64, 5u64, "c"]]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn deltas_accumulate_to_the_full_result(case in case_strategy(true)) {
        run_case(&case)?;
    }
}
