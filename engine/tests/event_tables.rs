//! Event tables in the datastore: rows live only inside the transaction that inserted them.

mod common;

use common::*;
use tidings_engine::{TxError, Value};

#[test]
fn test_event_table_insert_delete_noop() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    let row = tx.insert(DAMAGE, damage(0, 7, 10)).expect("insert");
    assert!(
        tx.delete(DAMAGE, row).expect("delete"),
        "the row was visible"
    );
    let commit = tx.commit().expect("commit");
    assert!(
        commit.tx_data.is_none(),
        "insert + delete of an event row must leave no TxData: {:?}",
        commit.tx_data
    );
    assert_eq!(ds.read().offset(), 0, "a no-op commit takes no offset");
    assert!(ds.read().rows(DAMAGE).is_empty());
}

#[test]
fn test_event_table_update_only_final_row() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    tx.insert(DAMAGE, damage(1, 7, 10)).expect("insert");
    tx.update(DAMAGE, damage(1, 7, 25)).expect("update");
    tx.update(DAMAGE, damage(1, 8, 30)).expect("second update");
    let commit = tx.commit().expect("commit");
    let tx_data = commit.tx_data.expect("event rows produce TxData");
    assert_eq!(inserts(&tx_data, DAMAGE), vec![damage(1, 8, 30)]);
    assert!(
        deletes(&tx_data, DAMAGE).is_empty(),
        "event tables never have deletes"
    );
    assert!(
        ds.read().rows(DAMAGE).is_empty(),
        "nothing merged into committed state"
    );
}

#[test]
fn test_event_table_insert_records_txdata_not_committed_state() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    tx.insert(DAMAGE, damage(0, 1, 5)).expect("insert");
    let commit = tx.commit().expect("commit");
    let tx_data = commit.tx_data.expect("TxData");
    let update = tx_data.table(DAMAGE).expect("damage updated");
    assert!(update.is_event);
    assert!(!update.truncated);
    assert_eq!(&*update.inserts, &[damage(1, 1, 5)]);
    assert_eq!(tx_data.offset, 1, "an event-only commit takes an offset");
    let read = ds.read();
    assert_eq!(read.offset(), 1);
    assert_eq!(read.table(DAMAGE).expect("table").len(), 0);
}

#[test]
fn event_rows_come_out_in_insertion_order_and_updates_keep_their_place() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    for target in [30, 10, 20] {
        tx.insert(DAMAGE, damage(0, target, 1)).expect("insert");
    }
    // Update the first row (id 1): it must stay first.
    tx.update(DAMAGE, damage(1, 31, 99)).expect("update");
    let tx_data = tx.commit().expect("commit").tx_data.expect("TxData");
    assert_eq!(
        inserts(&tx_data, DAMAGE),
        vec![damage(1, 31, 99), damage(2, 10, 1), damage(3, 20, 1)]
    );
}

#[test]
fn event_primary_key_is_enforced_within_a_transaction_and_fresh_in_the_next() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    tx.insert(DAMAGE, damage(5, 1, 1)).expect("insert");
    let err = tx
        .insert(DAMAGE, damage(5, 2, 1))
        .expect_err("duplicate pk");
    assert!(
        matches!(&err, TxError::UniqueViolation { table, constraint, value }
            if &**table == "damage" && &**constraint == "damage_id_pkey" && value == "5"),
        "{err}"
    );
    tx.commit().expect("commit");
    let mut tx = ds.begin_mut_tx();
    tx.insert(DAMAGE, damage(5, 1, 1))
        .expect("the same key is free again in the next transaction");
}

#[test]
fn event_unique_column_is_enforced_within_a_transaction_and_fresh_in_the_next() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    tx.insert(DAMAGE, damage(0, 9, 1)).expect("insert");
    let err = tx
        .insert(DAMAGE, damage(0, 9, 2))
        .expect_err("duplicate target");
    assert_eq!(
        err.to_string(),
        "insert into `damage` violates unique constraint `damage_target_key`: key 9 already exists"
    );
    tx.commit().expect("commit");
    let mut tx = ds.begin_mut_tx();
    tx.insert(DAMAGE, damage(0, 9, 1))
        .expect("fresh in the next transaction");
}

#[test]
fn event_index_sees_only_this_transactions_rows() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    tx.insert(DAMAGE, damage(0, 1, 50)).expect("insert");
    tx.insert(DAMAGE, damage(0, 2, 50)).expect("insert");
    let amount_idx = tx.index_id(DAMAGE, &["amount"]).expect("index");
    assert_eq!(
        tx.seek(DAMAGE, amount_idx, &[Value::U32(50)])
            .expect("seek")
            .len(),
        2
    );
    tx.commit().expect("commit");
    let mut tx = ds.begin_mut_tx();
    assert!(
        tx.seek(DAMAGE, amount_idx, &[Value::U32(50)])
            .expect("seek")
            .is_empty(),
        "last transaction's event rows are gone"
    );
    tx.insert(DAMAGE, damage(0, 3, 50)).expect("insert");
    assert_eq!(
        tx.seek(DAMAGE, amount_idx, &[Value::U32(50)])
            .expect("seek")
            .len(),
        1
    );
}

#[test]
fn event_auto_inc_keeps_counting_across_transactions() {
    let ds = ds();
    let mut ids = Vec::new();
    for target in [1, 2] {
        let mut tx = ds.begin_mut_tx();
        ids.push(tx.insert(DAMAGE, damage(0, target, 1)).expect("insert")[0].clone());
        tx.commit().expect("commit");
    }
    assert_eq!(ids, vec![Value::U64(1), Value::U64(2)]);
}

#[test]
fn identical_event_rows_in_one_transaction_are_one_row() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    tx.insert(DAMAGE, damage(4, 1, 1)).expect("insert");
    tx.insert(DAMAGE, damage(4, 1, 1))
        .expect("identical insert is a no-op");
    let tx_data = tx.commit().expect("commit").tx_data.expect("TxData");
    assert_eq!(inserts(&tx_data, DAMAGE).len(), 1);
}
