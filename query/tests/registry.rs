//! Sharing and pruning in the query registry.

use proptest::prelude::*;
use tidings_engine::{
    AlgebraicType as T, Datastore, Identity, Row, Schema, TableId, TableSchema, Value, row,
};
use tidings_query::{Caller, Registry, compile, evaluate_delta};

const PLAYER: TableId = TableId(0);
const ITEM: TableId = TableId(1);

/// `player(id pk, zone)`, `item(id pk, owner -> player.id, kind)`.
fn schema() -> Schema {
    Schema::new([
        TableSchema::builder("player")
            .column("id", T::U64)
            .column("zone", T::U32)
            .primary_key("id")
            .index(&["zone"])
            .public()
            .build()
            .expect("player"),
        TableSchema::builder("item")
            .column("id", T::U64)
            .column("owner", T::U64)
            .column("kind", T::U8)
            .primary_key("id")
            .index(&["owner"])
            .public()
            .build()
            .expect("item"),
    ])
    .expect("schema")
}

fn caller() -> Caller {
    Caller {
        identity: Identity::from_u64(1),
        is_owner: false,
    }
}

fn plan(ds: &Datastore, sql: &str) -> tidings_query::Plan {
    let mut plans = compile(sql, &ds.schema(), 1, caller()).expect(sql);
    assert_eq!(plans.len(), 1);
    plans.remove(0)
}

#[test]
fn equal_queries_share_one_entry_whatever_their_spelling() {
    let ds = Datastore::in_memory(schema());
    let mut reg = Registry::new();
    let state = ds.read();
    let a = reg.register(
        plan(&ds, "SELECT * FROM player WHERE zone = 3 AND id > 5"),
        &state,
    );
    let b = reg.register(
        plan(
            &ds,
            "select *\n from player where id > 5 and ZONE = 3"
                .replace("ZONE", "zone")
                .as_str(),
        ),
        &state,
    );
    let c = reg.register(plan(&ds, "SELECT * FROM player WHERE zone = 4"), &state);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(reg.len(), 2);
    assert_eq!(reg.ref_count(a), 2);
    assert!(!reg.unregister(a), "one registration remains");
    assert!(reg.unregister(a), "the last registration removes it");
    assert_eq!(reg.len(), 1);
}

#[test]
fn identifiers_match_exactly() {
    let ds = Datastore::in_memory(schema());
    let err = compile("SELECT * FROM Player", &ds.schema(), 1, caller()).expect_err("case matters");
    assert_eq!(
        err.to_string(),
        "unknown table `Player` (line 1, column 15)"
    );
}

#[test]
fn ten_thousand_point_queries_and_a_one_row_commit_touch_exactly_one() {
    let ds = Datastore::in_memory(schema());
    let mut reg = Registry::new();
    {
        let state = ds.read();
        for id in 0..10_000u64 {
            reg.register(
                plan(&ds, &format!("SELECT * FROM player WHERE id = {id}")),
                &state,
            );
        }
    }
    assert_eq!(reg.len(), 10_000);
    let mut tx = ds.begin_mut_tx();
    tx.insert(PLAYER, row![4242u64, 1u32]).expect("insert");
    let commit = tx.commit().expect("commit");
    let tx_data = commit.tx_data.expect("TxData");
    let state = ds.read();
    let affected = reg.affected(&tx_data, &state);
    assert_eq!(affected.len(), 1);
    let p = reg.plan(affected[0]).expect("plan");
    assert_eq!(
        evaluate_delta(p, &state, &tx_data).inserts,
        vec![row![4242u64, 1u32]]
    );
}

#[test]
fn moving_a_column_value_wakes_queries_for_old_and_new_value() {
    let ds = Datastore::in_memory(schema());
    let mut tx = ds.begin_mut_tx();
    tx.insert(PLAYER, row![1u64, 1u32]).expect("insert");
    tx.commit().expect("commit");
    let mut reg = Registry::new();
    let (z1, z2, z3) = {
        let s = ds.read();
        (
            reg.register(plan(&ds, "SELECT * FROM player WHERE zone = 1"), &s),
            reg.register(plan(&ds, "SELECT * FROM player WHERE zone = 2"), &s),
            reg.register(plan(&ds, "SELECT * FROM player WHERE zone = 3"), &s),
        )
    };
    let mut tx = ds.begin_mut_tx();
    tx.update(PLAYER, row![1u64, 2u32]).expect("update");
    let tx_data = tx.commit().expect("commit").tx_data.expect("TxData");
    let affected = reg.affected(&tx_data, &ds.read());
    assert!(
        affected.contains(&z1) && affected.contains(&z2),
        "{affected:?}"
    );
    assert!(!affected.contains(&z3));
}

#[test]
fn join_edge_prunes_by_the_partner_rows_filter_value() {
    // item ⋉ player ON item.owner = player.id (unique) WHERE player.zone = const.
    let ds = Datastore::in_memory(schema());
    let mut tx = ds.begin_mut_tx();
    tx.insert(PLAYER, row![1u64, 10u32]).expect("p1");
    tx.insert(PLAYER, row![2u64, 20u32]).expect("p2");
    tx.commit().expect("commit");
    let mut reg = Registry::new();
    let (q10, q20) = {
        let s = ds.read();
        let q = |z: u32| {
            format!(
                "SELECT item.* FROM item JOIN player ON item.owner = player.id WHERE player.zone = {z}"
            )
        };
        (
            reg.register(plan(&ds, &q(10)), &s),
            reg.register(plan(&ds, &q(20)), &s),
        )
    };
    let mut tx = ds.begin_mut_tx();
    tx.insert(ITEM, row![100u64, 1u64, 0u8])
        .expect("item of player 1");
    let tx_data = tx.commit().expect("commit").tx_data.expect("TxData");
    assert_eq!(reg.affected(&tx_data, &ds.read()), vec![q10]);
    // Moving player 1 to zone 20 changes both queries' results.
    let mut tx = ds.begin_mut_tx();
    tx.update(PLAYER, row![1u64, 20u32]).expect("move");
    let tx_data = tx.commit().expect("commit").tx_data.expect("TxData");
    let mut both = vec![q10, q20];
    both.sort();
    assert_eq!(reg.affected(&tx_data, &ds.read()), both);
}

#[derive(Clone, Debug)]
enum Op {
    Player(u64, u32),
    Item(u64, u64, u8),
    DeletePlayer(u64),
    DeleteItem(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..6, 0u32..3).prop_map(|(i, z)| Op::Player(i, z)),
        (0u64..8, 0u64..6, 0u8..2).prop_map(|(i, o, k)| Op::Item(i, o, k)),
        (0u64..6).prop_map(Op::DeletePlayer),
        (0u64..8).prop_map(Op::DeleteItem),
    ]
}

fn apply(tx: &mut tidings_engine::MutTx, op: &Op) {
    let upsert = |tx: &mut tidings_engine::MutTx, t: TableId, r: Row| {
        if tx.update(t, r.clone()).is_err() {
            let _ = tx.insert(t, r);
        }
    };
    match op {
        Op::Player(i, z) => upsert(tx, PLAYER, row![*i, *z]),
        Op::Item(i, o, k) => upsert(tx, ITEM, row![*i, *o, *k]),
        Op::DeletePlayer(i) => {
            let _ = tx.delete_by(PLAYER, 0, &[Value::U64(*i)]);
        }
        Op::DeleteItem(i) => {
            let _ = tx.delete_by(ITEM, 0, &[Value::U64(*i)]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every query left out by pruning has an empty delta: deltas with pruning on equal
    /// deltas with pruning off.
    #[test]
    fn pruning_never_changes_deltas(txs in proptest::collection::vec(proptest::collection::vec(op(), 1..5), 1..12)) {
        let ds = Datastore::in_memory(schema());
        let mut queries = vec![
            "SELECT * FROM player".to_string(),
            "SELECT item.* FROM item JOIN player ON item.owner = player.id".to_string(),
            "SELECT player.* FROM item JOIN player ON item.owner = player.id WHERE item.kind = 1".to_string(),
        ];
        for v in 0..6 {
            queries.push(format!("SELECT * FROM player WHERE id = {v}"));
            queries.push(format!("SELECT * FROM item WHERE owner = {v} AND kind = 1"));
        }
        for z in 0..3 {
            queries.push(format!("SELECT * FROM player WHERE zone = {z} OR id = 1"));
            queries.push(format!("SELECT item.* FROM item JOIN player ON item.owner = player.id WHERE player.zone = {z}"));
            queries.push(format!("SELECT item.* FROM item JOIN player p ON item.owner = p.id WHERE p.zone = {z} AND item.kind = 0"));
        }
        let mut pruned = Registry::new();
        let mut full = Registry::new();
        full.set_pruning(false);
        {
            let s = ds.read();
            for q in &queries {
                pruned.register(plan(&ds, q), &s);
                full.register(plan(&ds, q), &s);
            }
        }
        for ops in txs {
            let mut tx = ds.begin_mut_tx();
            for op in &ops {
                apply(&mut tx, op);
            }
            let Some(tx_data) = tx.commit().expect("commit").tx_data else { continue };
            let state = ds.read();
            let on = pruned.affected(&tx_data, &state);
            let off = full.affected(&tx_data, &state);
            for id in pruned.ids() {
                let plan = pruned.plan(id).expect("plan");
                let delta = evaluate_delta(plan, &state, &tx_data);
                if !on.contains(&id) {
                    prop_assert!(delta.is_empty(), "pruned away a changed query: {:?} {:?}", plan.key(), delta);
                }
            }
            prop_assert!(on.len() <= off.len());
        }
    }
}
