//! Large commits: single-table deltas read the packed rows through the byte filter.
//!
//! From 16 rows of one table in one commit on, TxData carries them packed and
//! incremental evaluation of a single-table query filters them in their stored encoding
//! (`ByteFilter`), where smaller commits and every other path filter decoded rows. The oracle is the decoded path
//! itself: the predicate evaluated on each of TxData's decoded rows, in order.
//!
//! `t(id u64 pk, a i32, b u8, c f64, g bool, e u32, s string, h i64)`: columns before `s`
//! have fixed offsets (equalities on all but the float become byte comparisons), `h`
//! comes after a string (read by walking). Small value domains make equalities hit.

use proptest::prelude::*;
use tidings_engine::{AlgebraicType as T, Datastore, Identity, Row, Schema, TableSchema, Value};
use tidings_query::exec::{NO_LOOKUP, holds_on};
use tidings_query::{Caller, compile, evaluate_delta};

fn schema() -> Schema {
    Schema::new([TableSchema::builder("t")
        .column("id", T::U64)
        .column("a", T::I32)
        .column("b", T::U8)
        .column("c", T::F64)
        .column("g", T::Bool)
        .column("e", T::U32)
        .column("s", T::String)
        .column("h", T::I64)
        .primary_key("id")
        .public()
        .build()
        .expect("t")])
    .expect("schema")
}

const FLOATS: [f64; 3] = [0.0, -0.0, 1.5];
const STRINGS: [&str; 2] = ["", "x"];

fn row(id: u64, v: (i32, u8, usize, bool, u32, usize, i64)) -> Row {
    Row::new(vec![
        Value::U64(id),
        Value::I32(v.0),
        Value::U8(v.1),
        Value::F64(FLOATS[v.2]),
        Value::Bool(v.3),
        Value::U32(v.4),
        Value::String(STRINGS[v.5].into()),
        Value::I64(v.6),
    ])
}

fn values() -> impl Strategy<Value = (i32, u8, usize, bool, u32, usize, i64)> {
    (
        -1i32..2,
        0u8..3,
        0usize..3,
        any::<bool>(),
        0u32..3,
        0usize..2,
        -1i64..2,
    )
}

/// One comparison as SQL text.
fn atom() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["=", "=", "=", "<>", "<", ">="]);
    (op, 0usize..7, -1i64..3).prop_map(|(op, col, k)| match col {
        0 => format!("a {op} {k}"),
        1 => format!("b {op} {}", k.max(0)),
        2 => format!(
            "c {op} {}",
            ["0.0", "-0.0", "1.5"][k.rem_euclid(3) as usize]
        ),
        3 => format!("g {op} {}", k > 0),
        4 => format!("e {op} {}", k.max(0)),
        5 => format!("s {op} '{}'", STRINGS[k.rem_euclid(2) as usize]),
        _ => format!("h {op} {k}"),
    })
}

/// A filter: a conjunction of atoms, sometimes OR-ed with another.
fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(atom(), 1..4),
        prop::option::of(atom()),
    )
        .prop_map(|(and, or)| {
            let and = and.join(" AND ");
            match or {
                Some(o) => format!("({and}) OR {o}"),
                None => and,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn packed_deltas_equal_the_decoded_filter(
        filter in filter(),
        inserted in prop::collection::vec(values(), 16..48),
        deleted in prop::collection::vec(any::<bool>(), 48),
    ) {
        let ds = Datastore::in_memory(schema());
        let sql = format!("SELECT * FROM t WHERE {filter}");
        let plan = {
            let state = ds.read();
            let owner = Caller { identity: Identity::ZERO, is_owner: true };
            let mut plans = compile(&sql, state.schema(), state.schema_version(), owner)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            prop_assert_eq!(plans.len(), 1);
            plans.pop().expect("one plan")
        };
        prop_assert!(plan.byte_filter().is_some(), "a single-table plan has a byte filter");
        let t = tidings_engine::TableId(0);

        // One commit inserting every row, then one deleting the chosen ones.
        let mut tx = ds.begin_mut_tx();
        let rows: Vec<Row> = inserted
            .iter()
            .enumerate()
            .map(|(i, v)| tx.insert(t, row(i as u64, *v)).expect("insert"))
            .collect();
        let first = tx.commit().expect("commit").tx_data.expect("rows were inserted");
        let mut tx = ds.begin_mut_tx();
        for (r, _) in rows.iter().zip(&deleted).filter(|(_, d)| **d) {
            prop_assert!(tx.delete(t, r.clone()).expect("delete"));
        }
        let second = tx.commit().expect("commit").tx_data;

        // A single-table delta reads no state, so both commits can be checked last.
        for tx in std::iter::once(&first).chain(second.as_ref()) {
            let update = tx.table(t).expect("the commit changed t");
            prop_assert_eq!(
                update.stored_inserts.is_some(),
                update.inserts.len() >= tidings_engine::PACK_ROWS_FROM
            );
            let state = ds.read();
            let delta = evaluate_delta(&plan, &state, tx);
            let want = |rows: &[Row]| -> Vec<Row> {
                rows.iter().filter(|r| holds_on(plan.filter(), *r, NO_LOOKUP)).cloned().collect()
            };
            prop_assert_eq!(delta.inserts.to_vec(), want(&update.inserts), "{} inserts", sql);
            prop_assert_eq!(delta.deletes.to_vec(), want(&update.deletes), "{} deletes", sql);
            drop(state);
        }
    }
}
