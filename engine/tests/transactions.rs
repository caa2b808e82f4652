//! Transaction semantics against committed state: set semantics, undelete, update,
//! constraint errors, offsets, sequences and the commit gate.

mod common;

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use tidings_engine::{RowError, TxError, Value, row};

fn seed(ds: &tidings_engine::Datastore) {
    let mut tx = ds.begin_mut_tx();
    tx.insert(PERSON, person(0, "ada", 36)).expect("insert");
    tx.insert(PERSON, person(0, "bob", 20)).expect("insert");
    tx.commit().expect("commit");
}

#[test]
fn insert_then_delete_of_new_row_leaves_nothing() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    let r = tx.insert(PERSON, person(0, "x", 1)).expect("insert");
    tx.delete(PERSON, r).expect("delete");
    assert!(tx.commit().expect("commit").tx_data.is_none());
}

#[test]
fn delete_then_reinsert_of_committed_row_is_an_undelete() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    assert!(tx.delete(PERSON, person(1, "ada", 36)).expect("delete"));
    assert_eq!(tx.count(PERSON).expect("count"), 1);
    tx.insert(PERSON, person(1, "ada", 36)).expect("reinsert");
    assert_eq!(tx.count(PERSON).expect("count"), 2);
    assert!(
        tx.commit().expect("commit").tx_data.is_none(),
        "no net change"
    );
    assert_eq!(ds.read().offset(), 1);
}

#[test]
fn inserting_an_identical_row_is_a_noop_that_reports_it() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    let got = tx
        .insert(PERSON, person(1, "ada", 36))
        .expect("identical insert");
    assert_eq!(got, person(1, "ada", 36));
    assert_eq!(tx.count(PERSON).expect("count"), 2);
    assert!(tx.commit().expect("commit").tx_data.is_none());
}

#[test]
fn update_of_committed_row_is_delete_plus_insert() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    tx.update(PERSON, person(2, "bob", 21)).expect("update");
    let tx_data = tx.commit().expect("commit").tx_data.expect("TxData");
    assert_eq!(inserts(&tx_data, PERSON), vec![person(2, "bob", 21)]);
    assert_eq!(deletes(&tx_data, PERSON), vec![person(2, "bob", 20)]);
    assert_eq!(tx_data.offset, 2);
}

#[test]
fn update_to_an_identical_row_is_a_noop() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    tx.update(PERSON, person(2, "bob", 20)).expect("update");
    assert!(tx.commit().expect("commit").tx_data.is_none());
}

#[test]
fn update_back_to_the_committed_row_cancels_out() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    tx.update(PERSON, person(2, "bob", 21)).expect("update");
    tx.update(PERSON, person(2, "bob", 20))
        .expect("update back");
    assert_eq!(tx.count(PERSON).expect("count"), 2);
    assert!(tx.commit().expect("commit").tx_data.is_none());
}

#[test]
fn update_of_missing_key_names_table_constraint_and_value() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    let err = tx
        .update(PERSON, person(9, "z", 1))
        .expect_err("no such row");
    assert_eq!(
        err.to_string(),
        "update of `person` found no row with person_id_pkey = 9"
    );
}

#[test]
fn unique_violation_against_committed_row_names_everything() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    let err = tx
        .insert(PERSON, person(0, "ada", 50))
        .expect_err("duplicate name");
    assert_eq!(
        err.to_string(),
        "insert into `person` violates unique constraint `person_name_key`: key \"ada\" already exists"
    );
    // The failed insert left the transaction usable and unchanged.
    assert_eq!(tx.count(PERSON).expect("count"), 2);
}

#[test]
fn a_deleted_key_can_be_reused_in_the_same_transaction() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    tx.delete(PERSON, person(1, "ada", 36)).expect("delete");
    tx.insert(PERSON, person(0, "ada", 37))
        .expect("name is free after the delete");
    let tx_data = tx.commit().expect("commit").tx_data.expect("TxData");
    assert_eq!(inserts(&tx_data, PERSON), vec![person(3, "ada", 37)]);
}

#[test]
fn bad_rows_get_typed_errors_naming_table_and_column() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    let arity = tx.insert(PERSON, row![1u64, "x"]).expect_err("arity");
    assert!(
        matches!(
            arity,
            TxError::Row(RowError::Arity {
                expected: 3,
                got: 2,
                ..
            })
        ),
        "{arity}"
    );
    let ty = tx.insert(PERSON, row![1u64, 5u8, 3u32]).expect_err("type");
    assert_eq!(
        ty.to_string(),
        "column `person.name` has type string, but the row gives a u8"
    );
    let unknown = tx.table_id("nope").expect_err("unknown table");
    assert_eq!(unknown.to_string(), "no table `nope`");
}

#[test]
fn nan_is_rejected() {
    let schema = tidings_engine::Schema::new([tidings_engine::TableSchema::builder("f")
        .column("x", tidings_engine::AlgebraicType::F64)
        .build()
        .expect("schema")])
    .expect("schema");
    let ds = tidings_engine::Datastore::in_memory(schema);
    let mut tx = ds.begin_mut_tx();
    let err = tx
        .insert(tidings_engine::TableId(0), row![f64::NAN])
        .expect_err("NaN");
    assert_eq!(err.to_string(), "column `f.x` cannot hold NaN");
    // -0.0 and 0.0 are one row.
    tx.insert(tidings_engine::TableId(0), row![0.0f64])
        .expect("zero");
    tx.insert(tidings_engine::TableId(0), row![-0.0f64])
        .expect("negative zero");
    assert_eq!(tx.count(tidings_engine::TableId(0)).expect("count"), 1);
}

#[test]
fn sequences_never_reuse_a_value_after_a_failed_transaction() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    tx.insert(PERSON, person(0, "a", 1)).expect("insert");
    tx.rollback();
    let mut tx = ds.begin_mut_tx();
    let r = tx.insert(PERSON, person(0, "b", 1)).expect("insert");
    assert_eq!(
        r[0],
        Value::U64(2),
        "value 1 was drawn by the rolled-back transaction"
    );
}

#[test]
fn offsets_are_dense_and_skip_noop_commits() {
    let ds = ds();
    let mut offsets = Vec::new();
    for i in 0..3u32 {
        let mut tx = ds.begin_mut_tx();
        if i != 1 {
            tx.insert(PERSON, person(0, &format!("p{i}"), i))
                .expect("insert");
        }
        offsets.push(tx.commit().expect("commit").offset());
    }
    assert_eq!(offsets, vec![Some(1), None, Some(2)]);
}

#[test]
fn commit_timestamps_never_decrease() {
    let ds = ds();
    let mut last = tidings_engine::Timestamp(i64::MIN);
    for i in 0..20u32 {
        let mut tx = ds.begin_mut_tx();
        tx.insert(PERSON, person(0, &format!("p{i}"), i))
            .expect("insert");
        let ts = tx
            .commit()
            .expect("commit")
            .tx_data
            .expect("TxData")
            .timestamp;
        assert!(ts >= last);
        last = ts;
    }
}

#[test]
fn deleting_every_row_sets_truncated() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    for r in tx.scan(PERSON).expect("scan") {
        tx.delete(PERSON, r).expect("delete");
    }
    let tx_data = tx.commit().expect("commit").tx_data.expect("TxData");
    let update = tx_data.table(PERSON).expect("person");
    assert!(update.truncated);
    assert_eq!(update.deletes.len(), 2, "deletes still lists every row");
}

#[test]
fn index_range_scans_see_committed_and_new_rows_minus_deletes() {
    let ds = ds();
    seed(&ds);
    let mut tx = ds.begin_mut_tx();
    tx.insert(PERSON, person(0, "cy", 30)).expect("insert");
    tx.delete(PERSON, person(1, "ada", 36)).expect("delete");
    let age = tx.index_id(PERSON, &["age"]).expect("age index");
    let mut got = tx
        .range(
            PERSON,
            age,
            &[],
            Bound::Included(&Value::U32(20)),
            Bound::Excluded(&Value::U32(40)),
        )
        .expect("range");
    got.sort();
    assert_eq!(got, vec![person(2, "bob", 20), person(3, "cy", 30)]);
    let err = tx
        .seek(PERSON, age, &[Value::String("x".into())])
        .expect_err("wrong key type");
    assert!(matches!(err, TxError::KeyMismatch { .. }), "{err}");
}

#[test]
fn no_reader_ever_observes_a_half_merged_commit() {
    // Each commit moves one unit between two rows so their sum stays 1000, and inserts one
    // log row: a reader that saw part of a commit would see a wrong sum or a row count
    // that does not match the offset.
    let schema = tidings_engine::Schema::new([
        tidings_engine::TableSchema::builder("acct")
            .column("id", tidings_engine::AlgebraicType::U8)
            .column("balance", tidings_engine::AlgebraicType::I64)
            .primary_key("id")
            .build()
            .expect("acct"),
        tidings_engine::TableSchema::builder("log")
            .column("n", tidings_engine::AlgebraicType::U64)
            .build()
            .expect("log"),
    ])
    .expect("schema");
    let ds = tidings_engine::Datastore::in_memory(schema);
    let (acct, log) = (tidings_engine::TableId(0), tidings_engine::TableId(1));
    let mut tx = ds.begin_mut_tx();
    tx.insert(acct, row![0u8, 1000i64]).expect("insert");
    tx.insert(acct, row![1u8, 0i64]).expect("insert");
    tx.commit().expect("commit");
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (ds, stop) = (ds.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut checks = 0u64;
                while !stop.load(Ordering::Relaxed) || checks == 0 {
                    let read = ds.read();
                    let sum: i64 = read
                        .rows(acct)
                        .iter()
                        .map(|r| match r[1] {
                            Value::I64(b) => b,
                            _ => unreachable!("balance is i64"),
                        })
                        .sum();
                    assert_eq!(sum, 1000, "at offset {}", read.offset());
                    let logged = read.table(log).expect("log").len() as u64;
                    assert_eq!(logged + 1, read.offset(), "log rows vs offset");
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    for n in 0..2000u64 {
        let mut tx = ds.begin_mut_tx();
        let rows = tx.scan(acct).expect("scan");
        for r in rows {
            let Value::I64(b) = r[1] else { unreachable!() };
            let delta = if r[0] == Value::U8(0) { -1 } else { 1 };
            tx.update(acct, row![r[0].clone(), b + delta])
                .expect("update");
        }
        tx.insert(log, row![n]).expect("log");
        tx.commit().expect("commit");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader panicked") > 0);
    }
}

#[test]
fn commit_gate_holds_the_next_merge_until_the_previous_offset_is_acknowledged() {
    let ds = ds();
    ds.enable_commit_gate();
    let mut tx = ds.begin_mut_tx();
    tx.insert(PERSON, person(0, "a", 1)).expect("insert");
    assert_eq!(tx.commit().expect("commit").offset(), Some(1));
    let writer = {
        let ds = ds.clone();
        std::thread::spawn(move || {
            let mut tx = ds.begin_mut_tx();
            tx.insert(PERSON, person(0, "b", 1)).expect("insert");
            tx.commit().expect("commit").offset()
        })
    };
    // The writer cannot merge offset 2 until offset 1 is acknowledged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ds.commit_waiting_at_gate() {
        assert!(
            std::time::Instant::now() < deadline,
            "writer never reached the gate"
        );
        std::thread::yield_now();
    }
    assert_eq!(
        ds.read().offset(),
        1,
        "offset 2 merged before offset 1 was acknowledged"
    );
    assert!(!writer.is_finished());
    ds.acknowledge_evaluated(1);
    assert_eq!(writer.join().expect("writer"), Some(2));
    assert_eq!(ds.read().offset(), 2);
}

/// Shrunk from the model test: the undelete path skipped the unique checks against rows
/// new in the transaction.
#[test]
fn reinserting_a_deleted_row_whose_key_a_new_row_took_is_a_unique_violation() {
    let ds = ds();
    let mut tx = ds.begin_mut_tx();
    tx.insert(PERSON, person(3, "a", 2)).expect("insert");
    tx.commit().expect("commit");
    let mut tx = ds.begin_mut_tx();
    tx.update(PERSON, person(3, "a", 0)).expect("update");
    let err = tx
        .insert(PERSON, person(3, "a", 2))
        .expect_err("pk 3 is taken by the update");
    assert!(matches!(err, TxError::UniqueViolation { .. }), "{err}");
    assert_eq!(tx.scan(PERSON).expect("scan"), vec![person(3, "a", 0)]);
}
