//! Event-table subscriptions, scenario by scenario.
//!
//! `s(id u64 pk, k u64 indexed, tag u8)` is persistent, `e(id u64 pk auto_inc, k u64
//! indexed, v u32)` is an event table, and `p(id u64 pk, owner u64)` has no index on
//! `owner`. An event query delivers each of a commit's event rows at most once, in TxData
//! order, when it passes the filter and (in a join) has a partner in the post-state.

use std::sync::Arc;

use tidings_engine::{
    AlgebraicType as T, Datastore, Identity, MutTx, Row, Schema, TableId, TableSchema, TxData,
    Value, row,
};
use tidings_query::{Caller, EVENT_LOOKUP_ERROR, Plan, compile, evaluate_delta, evaluate_rows};

const S: TableId = TableId(0);
const E: TableId = TableId(1);

const JOIN: &str = "SELECT e.* FROM e JOIN s ON e.k = s.k";
const JOIN_TAGGED: &str = "SELECT e.* FROM e JOIN s ON e.k = s.k WHERE s.tag = 1";

fn schema() -> Schema {
    Schema::new([
        TableSchema::builder("s")
            .column("id", T::U64)
            .column("k", T::U64)
            .column("tag", T::U8)
            .primary_key("id")
            .index(&["k"])
            .public()
            .build()
            .expect("s"),
        TableSchema::builder("e")
            .column("id", T::U64)
            .column("k", T::U64)
            .column("v", T::U32)
            .primary_key("id")
            .auto_inc("id")
            .index(&["k"])
            .public()
            .event()
            .build()
            .expect("e"),
        TableSchema::builder("p")
            .column("id", T::U64)
            .column("owner", T::U64)
            .primary_key("id")
            .public()
            .build()
            .expect("p"),
    ])
    .expect("schema")
}

fn caller() -> Caller {
    Caller {
        identity: Identity::from_u64(1),
        is_owner: false,
    }
}

fn plan(sql: &str) -> Plan {
    let mut plans = compile(sql, &schema(), 1, caller()).expect(sql);
    assert_eq!(plans.len(), 1, "{sql}");
    plans.remove(0)
}

fn compile_error(sql: &str) -> String {
    compile(sql, &schema(), 1, caller())
        .expect_err("the query must be rejected")
        .to_string()
}

/// Runs `f` in one transaction and commits; the commit must change something.
fn commit(ds: &Datastore, f: impl FnOnce(&mut MutTx)) -> Arc<TxData> {
    let mut tx = ds.begin_mut_tx();
    f(&mut tx);
    tx.commit()
        .expect("commit")
        .tx_data
        .expect("the commit changed something")
}

/// Inserts the event `(auto, k, v)` and returns it as stored.
fn event(tx: &mut MutTx, k: u64, v: u32) -> Row {
    tx.insert(E, row![0u64, k, v]).expect("insert event")
}

fn partner(tx: &mut MutTx, id: u64, k: u64, tag: u8) -> Row {
    tx.insert(S, row![id, k, tag]).expect("insert s")
}

/// The events `plan` delivers for commit `tx` (evaluated against the post-state).
fn delivered(ds: &Datastore, plan: &Plan, tx: &TxData) -> Vec<Row> {
    let state = ds.read();
    let delta = evaluate_delta(plan, &state, tx);
    assert!(delta.deletes.is_empty(), "an event query never deletes");
    delta.inserts.into_vec()
}

#[test]
fn an_event_with_three_matching_partners_is_delivered_once() {
    let ds = Datastore::in_memory(schema());
    commit(&ds, |tx| {
        partner(tx, 1, 5, 1);
        partner(tx, 2, 5, 1);
        partner(tx, 3, 5, 0);
        partner(tx, 4, 6, 1);
    });
    let mut ev = None;
    let tx = commit(&ds, |tx| ev = Some(event(tx, 5, 10)));
    let ev = ev.expect("inserted");
    // Three partners on k = 5, two of them with tag 1.
    assert_eq!(delivered(&ds, &plan(JOIN), &tx), vec![ev.clone()]);
    assert_eq!(delivered(&ds, &plan(JOIN_TAGGED), &tx), vec![ev]);
}

#[test]
fn an_event_whose_partner_is_inserted_in_the_same_transaction_is_delivered() {
    let ds = Datastore::in_memory(schema());
    // The partner first, then the event.
    let mut ev = None;
    let tx = commit(&ds, |tx| {
        partner(tx, 1, 7, 1);
        ev = Some(event(tx, 7, 1));
    });
    let ev = ev.expect("inserted");
    assert_eq!(delivered(&ds, &plan(JOIN), &tx), vec![ev.clone()]);
    assert_eq!(delivered(&ds, &plan(JOIN_TAGGED), &tx), vec![ev]);
    // The event first, then the partner.
    let mut ev = None;
    let tx = commit(&ds, |tx| {
        ev = Some(event(tx, 8, 2));
        partner(tx, 2, 8, 1);
    });
    let ev = ev.expect("inserted");
    assert_eq!(delivered(&ds, &plan(JOIN), &tx), vec![ev.clone()]);
    assert_eq!(delivered(&ds, &plan(JOIN_TAGGED), &tx), vec![ev]);
}

#[test]
fn an_event_whose_only_partner_is_deleted_in_the_same_transaction_is_not_delivered() {
    let ds = Datastore::in_memory(schema());
    commit(&ds, |tx| {
        partner(tx, 1, 8, 1);
    });
    let tx = commit(&ds, |tx| {
        event(tx, 8, 1);
        assert!(tx.delete(S, row![1u64, 8u64, 1u8]).expect("delete"));
    });
    assert_eq!(
        tx.table(E).map(|u| u.inserts.len()),
        Some(1),
        "the event is in TxData"
    );
    assert_eq!(delivered(&ds, &plan(JOIN), &tx), Vec::<Row>::new());
    assert_eq!(delivered(&ds, &plan(JOIN_TAGGED), &tx), Vec::<Row>::new());
}

#[test]
fn an_event_whose_partner_stops_matching_in_the_same_transaction_is_not_delivered() {
    let ds = Datastore::in_memory(schema());
    commit(&ds, |tx| {
        partner(tx, 1, 8, 1);
        partner(tx, 2, 9, 1);
    });
    // Partner 1 moves to another key, partner 2 loses its tag.
    let mut evs = Vec::new();
    let tx = commit(&ds, |tx| {
        evs.push(event(tx, 8, 1));
        evs.push(event(tx, 9, 2));
        tx.update(S, row![1u64, 3u64, 1u8]).expect("update");
        tx.update(S, row![2u64, 9u64, 0u8]).expect("update");
    });
    assert_eq!(delivered(&ds, &plan(JOIN), &tx), vec![evs[1].clone()]);
    assert_eq!(delivered(&ds, &plan(JOIN_TAGGED), &tx), Vec::<Row>::new());
    // Giving the tag back in the same transaction as the next event delivers it.
    let mut ev = None;
    let tx = commit(&ds, |tx| {
        ev = Some(event(tx, 9, 3));
        tx.update(S, row![2u64, 9u64, 1u8]).expect("update");
    });
    assert_eq!(
        delivered(&ds, &plan(JOIN_TAGGED), &tx),
        vec![ev.expect("inserted")]
    );
}

#[test]
fn changes_to_the_lookup_table_alone_deliver_no_events() {
    let ds = Datastore::in_memory(schema());
    let plans = [
        plan(JOIN),
        plan(JOIN_TAGGED),
        plan("SELECT * FROM e WHERE v > 5"),
    ];
    let txs = [
        commit(&ds, |tx| {
            partner(tx, 1, 5, 1);
            partner(tx, 2, 5, 1);
        }),
        commit(&ds, |tx| {
            tx.update(S, row![1u64, 6u64, 1u8]).expect("update");
        }),
        commit(&ds, |tx| {
            assert!(tx.delete(S, row![2u64, 5u64, 1u8]).expect("delete"));
            partner(tx, 3, 6, 0);
        }),
    ];
    for tx in &txs {
        assert!(tx.table(E).is_none(), "no event in this commit");
        for p in &plans {
            assert_eq!(delivered(&ds, p, tx), Vec::<Row>::new());
        }
    }
}

#[test]
fn events_are_delivered_in_txdata_order() {
    let ds = Datastore::in_memory(schema());
    commit(&ds, |tx| {
        partner(tx, 1, 1, 1);
        partner(tx, 2, 3, 0);
        partner(tx, 3, 3, 1);
    });
    let tx = commit(&ds, |tx| {
        for (k, v) in [
            (2u64, 10u32),
            (1, 11),
            (2, 12),
            (3, 13),
            (4, 14),
            (1, 15),
            (3, 16),
        ] {
            event(tx, k, v);
        }
    });
    let listed: Vec<Row> = tx.table(E).expect("events").inserts.to_vec();
    let vs = |rows: &[Row]| -> Vec<Value> { rows.iter().map(|r| r[2].clone()).collect() };
    assert_eq!(
        vs(&listed),
        vals([10, 11, 12, 13, 14, 15, 16]),
        "TxData lists events in insertion order"
    );
    let got = delivered(&ds, &plan(JOIN), &tx);
    assert_eq!(vs(&got), vals([11, 13, 15, 16]));
    // Exactly the listed rows, in their order.
    let expected: Vec<Row> = listed
        .iter()
        .filter(|r| matches!(r[1], Value::U64(1 | 3)))
        .cloned()
        .collect();
    assert_eq!(got, expected);
    let got = delivered(&ds, &plan(JOIN_TAGGED), &tx);
    assert_eq!(vs(&got), vals([11, 13, 15, 16]));
    let got = delivered(
        &ds,
        &plan("SELECT e.* FROM e JOIN s ON e.k = s.k WHERE s.tag = 1 AND e.v >= 13"),
        &tx,
    );
    assert_eq!(vs(&got), vals([13, 15, 16]));
}

#[test]
fn an_event_updated_in_its_transaction_keeps_its_place_in_the_delivery_order() {
    let ds = Datastore::in_memory(schema());
    commit(&ds, |tx| {
        partner(tx, 1, 1, 1);
    });
    let tx = commit(&ds, |tx| {
        let first = event(tx, 2, 10);
        event(tx, 1, 11);
        // The first event now matches; it stays ahead of the second.
        tx.update(E, row![first[0].clone(), 1u64, 12u32])
            .expect("update event");
    });
    let got: Vec<Value> = delivered(&ds, &plan(JOIN), &tx)
        .iter()
        .map(|r| r[2].clone())
        .collect();
    assert_eq!(got, vals([12, 11]));
}

fn vals<const N: usize>(v: [u32; N]) -> Vec<Value> {
    v.into_iter().map(Value::from).collect()
}

#[test]
fn a_single_table_event_query_delivers_exactly_that_commits_matching_events() {
    let ds = Datastore::in_memory(schema());
    let p = plan("SELECT * FROM e WHERE v > 5");
    let mut evs = Vec::new();
    let tx = commit(&ds, |tx| {
        for v in [3u32, 6, 10, 5] {
            evs.push(event(tx, 1, v));
        }
    });
    assert_eq!(
        delivered(&ds, &p, &tx),
        vec![evs[1].clone(), evs[2].clone()]
    );
    // Events are never stored: full evaluation sees none.
    assert_eq!(evaluate_rows(&p, &ds.read()), Vec::<Row>::new());
    // The next commit delivers only its own events: none of the earlier ones.
    let mut next = None;
    let tx = commit(&ds, |tx| {
        event(tx, 1, 1);
        next = Some(event(tx, 2, 7));
        partner(tx, 1, 1, 1);
    });
    assert_eq!(delivered(&ds, &p, &tx), vec![next.expect("inserted")]);
    let tx = commit(&ds, |tx| {
        event(tx, 1, 2);
    });
    assert_eq!(delivered(&ds, &p, &tx), Vec::<Row>::new());
    let tx = commit(&ds, |tx| {
        partner(tx, 2, 1, 1);
    });
    assert_eq!(delivered(&ds, &p, &tx), Vec::<Row>::new());
}

#[test]
fn an_event_table_as_the_lookup_side_is_rejected() {
    assert_eq!(
        EVENT_LOOKUP_ERROR,
        "Event tables cannot be used as the lookup table in subscription joins"
    );
    for sql in [
        "SELECT s.* FROM s JOIN e ON s.k = e.k",
        "SELECT s.* FROM e JOIN s ON e.k = s.k",
        "SELECT s.* FROM s JOIN e ON s.k = e.k WHERE e.v > 5",
        "SELECT a.* FROM e AS a JOIN e AS b ON a.k = b.k",
    ] {
        assert_eq!(
            compile_error(sql),
            "Event tables cannot be used as the lookup table in subscription joins",
            "{sql}"
        );
    }
}

#[test]
fn plans_report_whether_they_return_and_read_event_tables() {
    for (sql, returns, reads) in [
        (JOIN, true, true),
        (JOIN_TAGGED, true, true),
        ("SELECT e.* FROM s JOIN e ON s.k = e.k", true, true),
        ("SELECT * FROM e WHERE v > 5", true, true),
        ("SELECT * FROM e", true, true),
        ("SELECT * FROM s", false, false),
        ("SELECT s.* FROM s JOIN p ON s.id = p.id", false, false),
        (
            "SELECT a.* FROM s AS a JOIN s AS b ON a.k = b.k",
            false,
            false,
        ),
    ] {
        let p = plan(sql);
        assert_eq!(p.returns_event_table(), returns, "{sql}");
        assert_eq!(p.reads_from_event_table(), reads, "{sql}");
    }
}

#[test]
fn a_join_column_without_an_index_is_rejected() {
    for sql in [
        "SELECT p.* FROM p JOIN s ON p.owner = s.k",
        "SELECT s.* FROM s JOIN p ON s.k = p.owner",
        "SELECT s.* FROM p JOIN s ON s.k = p.owner",
        "SELECT e.* FROM e JOIN p ON e.k = p.owner",
    ] {
        assert_eq!(
            compile_error(sql),
            "Subscriptions require indexes on join columns: p.owner",
            "{sql}"
        );
    }
    assert_eq!(
        compile_error("SELECT s.* FROM s JOIN s AS t ON s.tag = t.tag"),
        "Subscriptions require indexes on join columns: s.tag"
    );
}
