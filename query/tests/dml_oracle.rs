//! `INSERT`, `UPDATE` and `DELETE` agree with SQLite.
//!
//! Random schemas and a seeding transaction as in `sqlite_oracle.rs`, then a random
//! sequence of statements. Each statement is rendered twice (Tidings literals, and
//! literals encoded for SQLite, see [`common::encode`]), run by Tidings in a transaction
//! of its own and by SQLite; both must report the same number of rows affected, or both
//! refuse it, and afterwards every table must hold the same multiset of rows. `WHERE`
//! clauses come from the same generator as the subscription tests, so they cover every
//! column type, NULL, `:sender` and nested AND/OR.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rusqlite::Connection;
use tidings_engine::{Datastore, Value};
use tidings_query::dml::{self, DmlError};

#[derive(Clone, Debug)]
enum StatementSeed {
    Delete(QuerySeed),
    Update {
        query: QuerySeed,
        col: u8,
        val: u8,
    },
    Insert {
        table: u8,
        id: u8,
        vals: [u8; VALUE_SEEDS],
        /// List the columns in reverse order rather than relying on schema order.
        listed: bool,
    },
}

fn statement_seed() -> impl Strategy<Value = StatementSeed> {
    prop_oneof![
        2 => query_seed().prop_map(StatementSeed::Delete),
        3 => (query_seed(), any::<u8>(), any::<u8>())
            .prop_map(|(query, col, val)| StatementSeed::Update { query, col, val }),
        2 => (any::<u8>(), any::<u8>(), any::<[u8; VALUE_SEEDS]>(), any::<bool>())
            .prop_map(|(table, id, vals, listed)| StatementSeed::Insert { table, id, vals, listed }),
    ]
}

/// `(tidings text, sqlite text)` of one statement.
fn render_statement(seed: &StatementSeed, db: &Db) -> (String, String) {
    let single_table = |q: &QuerySeed| {
        // No join (kind % 3 == 0) and no alias: DML names its table directly.
        let mut q = q.clone();
        q.kind = 0;
        q.flags &= !1;
        let query = interpret(&q, db);
        let where_part = |sql: String| {
            let at = sql.find(" WHERE ").or_else(|| sql.find(" where "));
            at.map(|i| sql[i..].to_string()).unwrap_or_default()
        };
        (
            query.returned,
            where_part(render(&query, db, Dialect::Tidings)),
            where_part(render(&query, db, Dialect::Sqlite)),
        )
    };
    match seed {
        StatementSeed::Delete(q) => {
            let (t, ours, theirs) = single_table(q);
            let name = &db.tables[t].name;
            (
                format!("DELETE FROM {name}{ours}"),
                format!("DELETE FROM {name}{theirs}"),
            )
        }
        StatementSeed::Update { query, col, val } => {
            let (t, ours, theirs) = single_table(query);
            let table = &db.tables[t];
            // Never the primary key: SQLite would check uniqueness row by row, Tidings per
            // statement, and that difference is deliberate.
            let c = &table.columns[1 + *col as usize % (table.columns.len() - 1)];
            let v = &c.values[*val as usize % c.values.len()];
            let lit = match v {
                Value::Null => Lit::Null,
                v => Lit::Val(v.clone()),
            };
            (
                format!(
                    "UPDATE {} SET {} = {}{ours}",
                    table.name,
                    c.name,
                    tidings_literal(&lit, &c.ty, false, false)
                ),
                format!(
                    "UPDATE {} SET {} = {}{theirs}",
                    table.name,
                    c.name,
                    enc_literal(&encode(v))
                ),
            )
        }
        StatementSeed::Insert {
            table,
            id,
            vals,
            listed,
        } => {
            let t = &db.tables[*table as usize % db.tables.len()];
            // Ids up to 64 so that some inserts clash with seeded rows.
            let row = make_row(t, u64::from(*id % 64), vals);
            let mut order: Vec<usize> = (0..t.columns.len()).collect();
            if *listed {
                order.reverse();
            }
            let names = order
                .iter()
                .map(|&i| t.columns[i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let ours = order
                .iter()
                .map(|&i| {
                    let lit = match &row[i] {
                        Value::Null => Lit::Null,
                        v => Lit::Val(v.clone()),
                    };
                    tidings_literal(&lit, &t.columns[i].ty, false, false)
                })
                .collect::<Vec<_>>()
                .join(", ");
            let theirs = order
                .iter()
                .map(|&i| enc_literal(&encode(&row[i])))
                .collect::<Vec<_>>()
                .join(", ");
            let cols = if *listed {
                format!(" ({names})")
            } else {
                String::new()
            };
            (
                format!("INSERT INTO {}{cols} VALUES ({ours})", t.name),
                format!("INSERT INTO {}{cols} VALUES ({theirs})", t.name),
            )
        }
    }
}

/// Runs one case; returns how many rows its statements changed in all.
fn run_case(
    schema: &SchemaSpec,
    seed: &[OpSeed],
    statements: &[StatementSeed],
) -> Result<usize, TestCaseError> {
    let mut changed = 0;
    let db = schema.build();
    let ds = Datastore::in_memory(db.schema());
    let conn = Connection::open_in_memory().expect("sqlite");
    create_tables(&conn, &db);
    let (tx, _) = run_tx(&ds, &db, seed);
    if let Some(tx) = &tx {
        mirror(&conn, &db, tx)?;
    }
    for (i, st) in statements.iter().enumerate() {
        let (ours, theirs) = render_statement(st, &db);
        let mut tx = ds.begin_mut_tx();
        let got = dml::compile(&ours, &ds.schema(), caller())
            .and_then(|d| dml::execute(&d, &mut tx).map_err(DmlError::from));
        let want = conn.execute(&theirs, []);
        match (&got, &want) {
            (Ok(n), Ok(m)) => {
                prop_assert_eq!(*n, *m, "step {}: rows affected by {}", i, ours);
                changed += n;
                tx.commit().expect("an in-memory commit succeeds");
            }
            (Err(DmlError::Tx(_)), Err(rusqlite::Error::SqliteFailure(f, _)))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                // Both refuse; the statement leaves no trace.
                drop(tx);
            }
            _ => {
                return Err(TestCaseError::fail(format!(
                    "step {i}: Tidings {got:?} for {ours}\nSQLite {want:?} for {theirs}"
                )));
            }
        }
        let state = ds.read();
        for t in &db.tables {
            let ours_rows = bag(state.rows(t.id).iter().map(|r| encode_row(r)));
            let theirs_rows = sqlite_rows(&conn, &format!("SELECT * FROM {}", t.name))?;
            prop_assert_eq!(
                ours_rows,
                theirs_rows,
                "step {}: contents of {} after {}",
                i,
                t.name,
                ours
            );
        }
    }
    Ok(changed)
}

#[test]
fn dml_matches_sqlite() {
    let changed = std::cell::Cell::new(0usize);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    });
    let strategy = (
        schema_strategy(false),
        prop::collection::vec(op_seed(), 6..=20),
        prop::collection::vec(statement_seed(), 1..=12),
    );
    let result = runner.run(&strategy, |(schema, seed, statements)| {
        changed.set(changed.get() + run_case(&schema, &seed, &statements)?);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Guards the generator: statements that never touch a row would prove nothing.
    assert!(
        changed.get() > 500,
        "only {} rows changed in 128 cases",
        changed.get()
    );
}

fn schema() -> tidings_engine::Schema {
    use tidings_engine::{AlgebraicType as T, Schema, TableSchema};
    Schema::new([
        TableSchema::builder("item")
            .column("id", T::U64)
            .column("name", T::String)
            .column("note", T::Option(Box::new(T::String)))
            .primary_key("id")
            .auto_inc("id")
            .unique(&["name"])
            .public()
            .build()
            .expect("item"),
        TableSchema::builder("ping")
            .column("n", T::U32)
            .public()
            .event()
            .build()
            .expect("ping"),
    ])
    .expect("schema")
}

fn check_error(sql: &str) -> String {
    match dml::compile(sql, &schema(), caller()) {
        Ok(d) => panic!("{sql} compiled to {d:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_problem_and_where() {
    for (sql, want) in [
        (
            "INSERT INTO nope VALUES (1)",
            "unknown table `nope` (line 1, column 13)",
        ),
        (
            "INSERT INTO item (id, nam) VALUES (1, 'a')",
            "unknown column `nam` in table `item`",
        ),
        (
            "INSERT INTO item (name, name) VALUES ('a', 'b')",
            "column `name` is named more than once",
        ),
        (
            "INSERT INTO item (id) VALUES (1)",
            "column `name` needs a value: it is neither auto_inc nor nullable",
        ),
        (
            "INSERT INTO item VALUES (1, 'a')",
            "row 1 has 2 values for 3 columns",
        ),
        (
            "INSERT INTO item (name) VALUES ('a'), ('b', 'c')",
            "row 2 has 2 values for 1 columns",
        ),
        (
            "INSERT INTO item (name) VALUES (NULL)",
            "column `name` is not nullable",
        ),
        (
            "INSERT INTO item (name) VALUES (12)",
            "the integer 12 is not a value of column `name` (string) (line 1, column 33)",
        ),
        (
            "INSERT INTO item (name) VALUES (name)",
            "a column reference as a value is not supported in INSERT, UPDATE or DELETE",
        ),
        (
            "INSERT INTO item (name) SELECT * FROM item",
            "INSERT .. SELECT is not supported in INSERT, UPDATE or DELETE",
        ),
        (
            "UPDATE item SET id = 1 - 2",
            "arithmetic is not supported in INSERT, UPDATE or DELETE",
        ),
        (
            "UPDATE item SET name = 'a' WHERE nope = 1",
            "unknown column `nope`",
        ),
        (
            "UPDATE ping SET n = 1",
            "`ping` is an event table: it holds no rows to update or delete",
        ),
        ("DELETE FROM ping", "`ping` is an event table"),
        ("DELETE item", "expected FROM, found `item`"),
        (
            "DELETE FROM item WHERE id = 1 ORDER BY id",
            "ORDER BY is not supported in INSERT, UPDATE or DELETE",
        ),
        (
            "MERGE INTO item",
            "expected INSERT, UPDATE or DELETE, found `MERGE`",
        ),
    ] {
        let got = check_error(sql);
        assert!(got.contains(want), "{sql}: got `{got}`, want `{want}`");
    }
}

#[test]
fn omitted_columns_take_their_sequence_or_null_and_statements_count_rows() {
    let ds = Datastore::in_memory(schema());
    let run = |sql: &str| {
        let mut tx = ds.begin_mut_tx();
        let d = dml::compile(sql, &ds.schema(), caller()).expect("compiles");
        let n = dml::execute(&d, &mut tx).expect("runs");
        tx.commit().expect("commit");
        n
    };
    assert_eq!(run("INSERT INTO item (name) VALUES ('a'), ('b')"), 2);
    let item = ds.schema().table_id("item").expect("item");
    let mut rows = ds.read().rows(item);
    rows.sort();
    assert_eq!(
        rows.iter().map(|r| r.values().to_vec()).collect::<Vec<_>>(),
        vec![
            vec![Value::U64(1), Value::String("a".into()), Value::Null],
            vec![Value::U64(2), Value::String("b".into()), Value::Null],
        ]
    );
    assert_eq!(run("UPDATE item SET name = 'c' WHERE name = 'a'"), 1);
    assert_eq!(run("UPDATE item SET note = 'x'"), 2);
    assert_eq!(run("DELETE FROM item WHERE note = 'x' AND name = 'c'"), 1);
    let rows = ds.read().rows(item);
    assert_eq!(
        rows.iter().map(|r| r.values().to_vec()).collect::<Vec<_>>(),
        vec![vec![
            Value::U64(2),
            Value::String("b".into()),
            Value::String("x".into())
        ]]
    );
    // Two replacements with one name: the whole statement is refused.
    run("INSERT INTO item (name) VALUES ('d')");
    let mut tx = ds.begin_mut_tx();
    let d = dml::compile("UPDATE item SET name = 'e'", &ds.schema(), caller()).expect("compiles");
    let err = dml::execute(&d, &mut tx).expect_err("two rows named e");
    assert!(err.to_string().contains("name"), "{err}");
    drop(tx);
    // Re-inserting an identical row is a duplicate key, as SQL has it.
    let d = dml::compile(
        "INSERT INTO item VALUES (2, 'b', 'x')",
        &ds.schema(),
        caller(),
    )
    .expect("compiles");
    let mut tx = ds.begin_mut_tx();
    let err = dml::execute(&d, &mut tx).expect_err("duplicate id");
    assert!(err.to_string().contains('2'), "{err}");
}
