//! Open, replay and migrate a data directory through the datastore.

mod common;

use std::path::Path;

use common::*;
use tidings_engine::commitlog::{Commitlog, LogOptions};
use tidings_engine::migrate::MigrationProblem;
use tidings_engine::record::{self, Record};
use tidings_engine::{
    AlgebraicType as T, Datastore, OpenError, OpenOptions, Schema, TableSchema, Value,
};

fn open(dir: &Path, schema: Schema) -> Result<Datastore, OpenError> {
    Datastore::open(dir, schema, OpenOptions::default())
}

fn commit_rows(ds: &Datastore, people: &[&str], targets: &[u64]) {
    let mut tx = ds.begin_mut_tx();
    for name in people {
        tx.insert(PERSON, person(0, name, 30))
            .expect("insert person");
    }
    for t in targets {
        tx.insert(DAMAGE, damage(0, *t, 5)).expect("insert damage");
    }
    tx.commit()
        .expect("commit")
        .wait_durable()
        .expect("durable");
}

/// The raw payloads of the log in `dir`.
fn payloads(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let log = Commitlog::open(
        &tidings_engine::datastore::log_dir(dir),
        LogOptions::default(),
        |_, p: &[u8]| {
            out.push(p.to_vec());
            Ok::<_, std::io::Error>(())
        },
    )
    .expect("log opens");
    log.close().expect("close");
    out
}

/// `schema()` with `damage` turned into a persistent table (to read event rows back).
fn schema_with_damage_event(is_event: bool) -> Schema {
    let tables = schema()
        .tables()
        .iter()
        .map(|t| {
            let mut t = (**t).clone();
            if &*t.name == "damage" {
                t.is_event = is_event;
            }
            t
        })
        .collect::<Vec<_>>();
    Schema::new(tables).expect("schema")
}

#[test]
fn test_event_table_replay_ignores_inserts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ds = open(dir.path(), schema()).expect("open");
        commit_rows(&ds, &["ada", "bob"], &[1, 2, 3]);
        commit_rows(&ds, &[], &[4]);
    }
    // The log really holds the event rows: read it with damage as a persistent table.
    let persistent = schema_with_damage_event(false);
    let logged_events: usize = payloads(dir.path())
        .iter()
        .filter_map(|p| match record::decode(&persistent, p).expect("decodes") {
            Record::Commit(c) => Some(c),
            Record::Schema { .. } => None,
        })
        .flat_map(|c| c.tables)
        .filter(|(t, _, _)| *t == DAMAGE)
        .map(|(_, ins, _)| ins.len())
        .sum();
    assert_eq!(logged_events, 4, "event inserts are in the log");

    let ds = open(dir.path(), schema()).expect("reopen");
    let read = ds.read();
    assert_eq!(read.offset(), 2);
    assert_eq!(read.rows(PERSON).len(), 2, "persistent rows replayed");
    assert!(
        read.rows(DAMAGE).is_empty(),
        "event rows never become state"
    );
}

#[test]
fn event_auto_inc_continues_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ds = open(dir.path(), schema()).expect("open");
        for target in [1, 2] {
            let mut tx = ds.begin_mut_tx();
            let row = tx.insert(DAMAGE, damage(0, target, 1)).expect("insert");
            assert_eq!(row[0], Value::U64(target));
            tx.commit()
                .expect("commit")
                .wait_durable()
                .expect("durable");
        }
    }
    let ds = open(dir.path(), schema()).expect("reopen");
    let mut tx = ds.begin_mut_tx();
    let row = tx.insert(DAMAGE, damage(0, 9, 1)).expect("insert");
    let Value::U64(id) = row[0] else {
        panic!("id is u64")
    };
    assert!(id >= 3, "sequence reused a value after reopen: {id}");
}

#[test]
fn sequence_values_drawn_by_a_failed_transaction_are_not_reused_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ds = open(dir.path(), schema()).expect("open");
        let mut tx = ds.begin_mut_tx();
        tx.insert(PERSON, person(0, "lost", 1))
            .expect("insert draws 1");
        tx.rollback();
        commit_rows(&ds, &["kept"], &[]);
    }
    let ds = open(dir.path(), schema()).expect("reopen");
    let mut tx = ds.begin_mut_tx();
    let row = tx.insert(PERSON, person(0, "next", 1)).expect("insert");
    assert_eq!(row[0], Value::U64(3));
}

#[test]
fn test_change_event_flag_rejected() {
    for (from, to) in [(false, true), (true, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let ds = open(dir.path(), schema_with_damage_event(from)).expect("open");
            commit_rows(&ds, &["ada"], &[]);
        }
        let err = open(dir.path(), schema_with_damage_event(to)).expect_err("flag change");
        let OpenError::Migration(m) = &err else {
            panic!("expected a migration error, got {err}")
        };
        assert_eq!(
            m.to_string(),
            "Changing the event flag of table damage requires a manual migration"
        );
        assert_eq!(
            m.problems,
            vec![MigrationProblem::ChangeEventFlag {
                table: "damage".into()
            }]
        );
        // Nothing was written: the old schema still opens with its data.
        let ds = open(dir.path(), schema_with_damage_event(from)).expect("old schema reopens");
        assert_eq!(ds.read().rows(PERSON).len(), 1);
    }
}

#[test]
fn test_same_event_flag_accepted() {
    for flag in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(open(dir.path(), schema_with_damage_event(flag)).expect("open"));
        let ds = open(dir.path(), schema_with_damage_event(flag)).expect("same flag reopens");
        assert!(ds.last_migration().is_empty());
    }
}

#[test]
fn event_table_columns_may_change_and_replay_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ds = open(dir.path(), schema()).expect("open");
        commit_rows(&ds, &["ada"], &[1, 2]);
    }
    let changed = Schema::new([
        (*schema().tables()[0]).clone(),
        TableSchema::builder("damage")
            .column("id", T::U64)
            .column("label", T::String)
            .primary_key("id")
            .auto_inc("id")
            .public()
            .event()
            .build()
            .expect("damage v2"),
    ])
    .expect("schema");
    {
        let ds = open(dir.path(), changed.clone()).expect("event table reschema");
        assert_eq!(ds.last_migration().ended_tables, vec!["damage".into()]);
        let mut tx = ds.begin_mut_tx();
        tx.insert(DAMAGE, tidings_engine::row![0u64, "burn"])
            .expect("new shape");
        tx.commit()
            .expect("commit")
            .wait_durable()
            .expect("durable");
    }
    // Replay decodes each record with the schema in force at its offset.
    let ds = open(dir.path(), changed).expect("replay across the schema change");
    assert_eq!(ds.read().rows(PERSON).len(), 1);
    assert_eq!(ds.read().offset(), 2);
}

#[test]
fn compatible_migration_adds_tables_indexes_and_changes_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ds = open(dir.path(), schema()).expect("open");
        commit_rows(&ds, &["ada", "bob"], &[]);
    }
    let person = TableSchema::builder("person")
        .column("id", T::U64)
        .column("name", T::String)
        .column("age", T::U32)
        .primary_key("id")
        .auto_inc("id")
        .unique(&["name"])
        .index(&["age"])
        .index(&["name", "age"])
        .build() // private now
        .expect("person v2");
    let extra = TableSchema::builder("note")
        .column("text", T::String)
        .build()
        .expect("note");
    let v2 = Schema::new([person, (*schema().tables()[1]).clone(), extra]).expect("v2");
    let ds = open(dir.path(), v2.clone()).expect("compatible migration");
    let report = ds.last_migration();
    assert_eq!(report.added_tables, vec!["note".into()]);
    assert_eq!(report.access_changed, vec!["person".into()]);
    assert_eq!(report.reindexed_tables, vec!["person".into()]);
    let mut tx = ds.begin_mut_tx();
    let by_name_age = tx.index_id(PERSON, &["name", "age"]).expect("new index");
    assert_eq!(
        tx.seek(PERSON, by_name_age, &[Value::from("bob")])
            .expect("seek")
            .len(),
        1,
        "the new index covers old rows"
    );
    tx.insert(tidings_engine::TableId(2), tidings_engine::row!["hi"])
        .expect("new table");
    tx.commit()
        .expect("commit")
        .wait_durable()
        .expect("durable");
    drop(ds);
    let ds = open(dir.path(), v2).expect("reopen after migration");
    assert_eq!(ds.read().rows(tidings_engine::TableId(2)).len(), 1);
    assert_eq!(ds.read().rows(PERSON).len(), 2);
}

#[test]
fn incompatible_migration_lists_every_problem_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), schema()).expect("open"));
    let person = TableSchema::builder("person")
        .column("id", T::U64)
        .column("name", T::Bytes)
        .build()
        .expect("person v2");
    let bad = Schema::new([person]).expect("schema");
    let err = open(dir.path(), bad).expect_err("incompatible");
    let OpenError::Migration(m) = err else {
        panic!("migration error expected")
    };
    assert_eq!(
        m.problems,
        vec![
            MigrationProblem::RemoveTable {
                table: "damage".into()
            },
            MigrationProblem::ChangeColumns {
                table: "person".into(),
                details: "column `name` changes type from string to bytes, column `age` removed"
                    .into()
            },
        ]
    );
    open(dir.path(), schema()).expect("the original schema still opens");
}

#[test]
fn a_new_unique_constraint_that_the_rows_break_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ds = open(dir.path(), schema()).expect("open");
        let mut tx = ds.begin_mut_tx();
        tx.insert(PERSON, person(0, "a", 7)).expect("insert");
        tx.insert(PERSON, person(0, "b", 7)).expect("insert");
        tx.commit()
            .expect("commit")
            .wait_durable()
            .expect("durable");
    }
    let tables: Vec<TableSchema> = schema()
        .tables()
        .iter()
        .map(|t| {
            let mut t = (**t).clone();
            if &*t.name == "person" {
                t.indexes.push(tidings_engine::IndexDef {
                    name: "person_age_key".into(),
                    columns: vec![tidings_engine::ColId(2)],
                    unique: true,
                });
            }
            t
        })
        .collect();
    let err = open(dir.path(), Schema::new(tables).expect("schema")).expect_err("dupes");
    assert_eq!(
        err.to_string(),
        "the schema does not fit the data directory: Unique constraint person_age_key of table person does not hold: key 7 appears more than once"
    );
}

#[test]
fn a_directory_of_other_files_is_not_a_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tidings_engine::datastore::log_dir(dir.path())).expect("mkdir");
    std::fs::write(
        tidings_engine::datastore::log_dir(dir.path()).join("notes.txt"),
        "mine",
    )
    .expect("write");
    let err = open(dir.path(), schema()).expect_err("foreign directory");
    assert!(err.to_string().contains("notes.txt"), "{err}");
}
