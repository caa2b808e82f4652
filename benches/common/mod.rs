//! Workloads shared by the engine benchmarks, behind one trait so that the engine and the
//! SQLite baseline run exactly the same sequence of operations.
//!
//! Two tables:
//! - `footprint(entity_id u64, owner_entity_id u64, type enum{4})` with non-unique btree
//!   indexes on both `u64` columns (bulk load, memory footprint);
//! - `kv(id u64 primary key, value u64)` (small transactions).
//!
//! SQLite stores integers as `i64`; every value used here fits.

// Each bench binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, params};
use tidings::engine::commitlog::{DurabilityPolicy, LogOptions};
use tidings::engine::{
    AlgebraicType, Commit, Datastore, EnumType, OpenOptions, Row, Schema, TableId, TableSchema,
    Value,
};

/// Rows in the bulk-load and memory workloads.
pub const FOOTPRINT_ROWS: u64 = 1_000_000;
/// Distinct owners in the footprint table (`owner_entity_id = i % OWNERS`).
pub const OWNERS: u64 = 1_000;
/// Variants of the footprint `type` enum (`type = i % TYPES`).
pub const TYPES: u64 = 4;

/// One storage backend running the benchmark workloads.
pub trait Store {
    /// What a commit hands back. Bulk-load benches return it from the timed routine so
    /// that dropping it (the engine's TxData) happens outside the measurement.
    type Commit;

    /// Inserts footprint rows `0..rows` in one transaction, commit included.
    fn load_footprint(&mut self, rows: u64) -> Self::Commit;

    /// Inserts `(id, value)` into `kv` as its own transaction.
    fn insert_kv(&mut self, id: u64, value: u64) -> Self::Commit;

    /// Sets `value` of the `kv` row `id` as its own transaction.
    fn update_kv(&mut self, id: u64, value: u64) -> Self::Commit;

    /// Blocks until `commit` is durable under the backend's policy.
    fn wait_durable(&mut self, commit: Self::Commit);
}

/// Inserts `kv` rows `first..first + n`, one transaction each, keeping at most `depth`
/// commits waiting for durability (the oldest is waited on when `depth` are pending),
/// then waits for all of them.
pub fn pipelined_inserts<S: Store>(store: &mut S, first: u64, n: u64, depth: usize) {
    let mut in_flight = VecDeque::with_capacity(depth);
    for id in first..first + n {
        if in_flight.len() >= depth
            && let Some(oldest) = in_flight.pop_front()
        {
            store.wait_durable(oldest);
        }
        in_flight.push_back(store.insert_kv(id, id));
    }
    while let Some(c) = in_flight.pop_front() {
        store.wait_durable(c);
    }
}

// ---------------------------------------------------------------------------------------
// Engine

/// The engine schema: `footprint` and `kv`.
pub fn engine_schema() -> Schema {
    let kind = EnumType {
        name: "footprint_type".into(),
        variants: Arc::from(vec![
            Arc::from("small"),
            Arc::from("medium"),
            Arc::from("large"),
            Arc::from("huge"),
        ]),
    };
    let footprint = TableSchema::builder("footprint")
        .column("entity_id", AlgebraicType::U64)
        .column("owner_entity_id", AlgebraicType::U64)
        .column("type", AlgebraicType::Enum(kind))
        .index(&["entity_id"])
        .index(&["owner_entity_id"])
        .build()
        .expect("footprint schema is valid");
    let kv = TableSchema::builder("kv")
        .column("id", AlgebraicType::U64)
        .column("value", AlgebraicType::U64)
        .primary_key("id")
        .build()
        .expect("kv schema is valid");
    Schema::new([footprint, kv]).expect("schema is valid")
}

/// A footprint row as the engine takes it.
pub fn footprint_row(i: u64) -> Row {
    let tag = u8::try_from(i % TYPES).expect("enum tag fits in u8");
    Row::new(vec![
        Value::U64(i),
        Value::U64(i % OWNERS),
        Value::Enum(tag),
    ])
}

/// The engine behind [`Store`].
pub struct EngineStore {
    /// The datastore.
    pub ds: Datastore,
    footprint: TableId,
    kv: TableId,
}

impl EngineStore {
    /// An in-memory datastore.
    pub fn in_memory() -> Self {
        Self::from_ds(Datastore::in_memory(engine_schema()))
    }

    /// A datastore on `dir` with the given durability policy.
    pub fn on_disk(dir: &Path, durability: DurabilityPolicy) -> Self {
        let opts = OpenOptions {
            log: LogOptions {
                durability,
                ..LogOptions::default()
            },
        };
        let ds = Datastore::open(dir, engine_schema(), opts).expect("datastore opens");
        Self::from_ds(ds)
    }

    fn from_ds(ds: Datastore) -> Self {
        let schema = ds.schema();
        let footprint = schema.table_id("footprint").expect("footprint table");
        let kv = schema.table_id("kv").expect("kv table");
        EngineStore { ds, footprint, kv }
    }

    /// Pre-fills `kv` with rows `0..rows` (value = id) in one transaction.
    pub fn fill_kv(&mut self, rows: u64) {
        let mut tx = self.ds.begin_mut_tx();
        for id in 0..rows {
            tx.insert(self.kv, Row::new(vec![Value::U64(id), Value::U64(id)]))
                .expect("insert kv");
        }
        tx.commit()
            .expect("commit")
            .wait_durable()
            .expect("durable");
    }
}

impl Store for EngineStore {
    type Commit = Commit;

    fn load_footprint(&mut self, rows: u64) -> Commit {
        let mut tx = self.ds.begin_mut_tx();
        for i in 0..rows {
            tx.insert(self.footprint, footprint_row(i))
                .expect("insert footprint");
        }
        tx.commit().expect("commit")
    }

    fn insert_kv(&mut self, id: u64, value: u64) -> Commit {
        let mut tx = self.ds.begin_mut_tx();
        tx.insert(self.kv, Row::new(vec![Value::U64(id), Value::U64(value)]))
            .expect("insert kv");
        tx.commit().expect("commit")
    }

    fn update_kv(&mut self, id: u64, value: u64) -> Commit {
        let mut tx = self.ds.begin_mut_tx();
        tx.update(self.kv, Row::new(vec![Value::U64(id), Value::U64(value)]))
            .expect("update kv");
        tx.commit().expect("commit")
    }

    fn wait_durable(&mut self, commit: Commit) {
        commit.wait_durable().expect("commit becomes durable");
    }
}

// ---------------------------------------------------------------------------------------
// SQLite

/// `u64` bench values as SQLite integers.
pub fn sql_int(v: u64) -> i64 {
    i64::try_from(v).expect("bench values fit in i64")
}

const SQLITE_SCHEMA: &str = "
    CREATE TABLE footprint(entity_id INTEGER, owner_entity_id INTEGER, type INTEGER);
    CREATE INDEX footprint_entity_id_idx ON footprint(entity_id);
    CREATE INDEX footprint_owner_entity_id_idx ON footprint(owner_entity_id);
    CREATE TABLE kv(id INTEGER PRIMARY KEY, value INTEGER);
";

/// SQLite (bundled) behind [`Store`].
///
/// Small transactions are single statements in autocommit mode: SQLite wraps each in its
/// own implicit BEGIN/COMMIT, its cheapest form of a one-statement transaction.
pub struct SqliteStore {
    /// The connection.
    pub conn: Connection,
}

impl SqliteStore {
    /// A fresh `:memory:` database with the bench schema.
    pub fn in_memory() -> Self {
        let conn = Connection::open_in_memory().expect("sqlite opens");
        Self::with_schema(conn)
    }

    /// A fresh database file `path` with the given pragmas (e.g. the WAL settings).
    pub fn on_disk(path: &Path, pragmas: &str) -> Self {
        let conn = Connection::open(path).expect("sqlite opens");
        conn.execute_batch(pragmas).expect("pragmas apply");
        Self::with_schema(conn)
    }

    fn with_schema(conn: Connection) -> Self {
        conn.execute_batch(SQLITE_SCHEMA).expect("sqlite schema");
        SqliteStore { conn }
    }

    /// Pre-fills `kv` with rows `0..rows` (value = id) in one transaction.
    pub fn fill_kv(&mut self, rows: u64) {
        let tx = self.conn.transaction().expect("begin");
        {
            let mut stmt = tx
                .prepare("INSERT INTO kv(id, value) VALUES (?1, ?2)")
                .expect("prepare");
            for id in 0..rows {
                stmt.execute(params![sql_int(id), sql_int(id)])
                    .expect("insert kv");
            }
        }
        tx.commit().expect("commit");
    }

    /// `PRAGMA page_count * page_size`: the database size in bytes.
    pub fn database_bytes(&self) -> u64 {
        let pragma = |name: &str| -> i64 {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .expect("pragma reads")
        };
        u64::try_from(pragma("page_count") * pragma("page_size")).expect("non-negative size")
    }
}

impl Store for SqliteStore {
    type Commit = ();

    fn load_footprint(&mut self, rows: u64) {
        let tx = self.conn.transaction().expect("begin");
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO footprint(entity_id, owner_entity_id, type) VALUES (?1, ?2, ?3)",
                )
                .expect("prepare");
            for i in 0..rows {
                stmt.execute(params![sql_int(i), sql_int(i % OWNERS), sql_int(i % TYPES)])
                    .expect("insert footprint");
            }
        }
        tx.commit().expect("commit");
    }

    fn insert_kv(&mut self, id: u64, value: u64) {
        self.conn
            .prepare_cached("INSERT INTO kv(id, value) VALUES (?1, ?2)")
            .expect("prepare")
            .execute(params![sql_int(id), sql_int(value)])
            .expect("insert kv");
    }

    fn update_kv(&mut self, id: u64, value: u64) {
        let changed = self
            .conn
            .prepare_cached("UPDATE kv SET value = ?2 WHERE id = ?1")
            .expect("prepare")
            .execute(params![sql_int(id), sql_int(value)])
            .expect("update kv");
        assert_eq!(changed, 1, "the updated row exists");
    }

    /// A SQLite commit has returned by the time `insert_kv` does.
    fn wait_durable(&mut self, (): ()) {}
}
