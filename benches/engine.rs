//! Engine throughput against an in-run SQLite baseline (bundled, same indexes).
//!
//! - `bulk_load`: 1,000,000 footprint rows in one transaction, commit included;
//! - `small_tx_memory`: one-row insert / update-by-primary-key transactions in memory;
//! - `small_tx_durable`: one-row insert transactions on disk, pipelined up to 64 commits
//!   waiting for durability; SQLite in WAL mode commits synchronously.
//!
//! Run one group with e.g. `cargo bench --bench engine -- bulk_load`.

mod common;

use std::time::{Duration, Instant};

use common::{EngineStore, FOOTPRINT_ROWS, SqliteStore, Store, pipelined_inserts};
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use tidings::engine::commitlog::DurabilityPolicy;

/// Rows pre-filled in `kv` before the update benchmark.
const UPDATE_ROWS: u64 = 10_000;
/// Commits allowed to wait for durability at once in the pipelined benchmark.
const IN_FLIGHT: usize = 64;
/// A deeper pipeline, to show how much of the group-commit figure is the window.
const IN_FLIGHT_DEEP: usize = 1024;

fn bulk_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulk_load");
    // One iteration takes about a second: take the 10 samples of one iteration each
    // rather than criterion's linear ramp (which would need 55 iterations).
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(FOOTPRINT_ROWS));
    let params = format!("rows={FOOTPRINT_ROWS},btree=entity_id+owner_entity_id,one_tx");

    // The routine returns the store and its commit so that freeing a million rows (and
    // the engine's TxData) happens after the timer stops.
    g.bench_function(BenchmarkId::new("engine", &params), |b| {
        b.iter_batched(
            EngineStore::in_memory,
            |mut s| {
                let commit = s.load_footprint(FOOTPRINT_ROWS);
                (s, commit)
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function(BenchmarkId::new("sqlite_memory", &params), |b| {
        b.iter_batched(
            SqliteStore::in_memory,
            |mut s| {
                s.load_footprint(FOOTPRINT_ROWS);
                s
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

fn small_tx_memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("small_tx_memory");
    g.throughput(Throughput::Elements(1));

    fn insert<S: Store>(b: &mut criterion::Bencher<'_>, store: &mut S) {
        let mut id = 0u64;
        b.iter(|| {
            id += 1;
            store.insert_kv(id, id)
        });
    }
    fn update<S: Store>(b: &mut criterion::Bencher<'_>, store: &mut S) {
        // Starts at UPDATE_ROWS so that every update changes the row (value = id at fill).
        let mut n = UPDATE_ROWS;
        b.iter(|| {
            n += 1;
            store.update_kv(n % UPDATE_ROWS, n)
        });
    }

    let insert_params = "insert,rows=1,pk=u64";
    let update_params = format!("update_by_pk,rows=1,table_rows={UPDATE_ROWS}");
    g.bench_function(BenchmarkId::new("engine", insert_params), |b| {
        insert(b, &mut EngineStore::in_memory());
    });
    g.bench_function(BenchmarkId::new("sqlite_memory", insert_params), |b| {
        insert(b, &mut SqliteStore::in_memory());
    });
    g.bench_function(BenchmarkId::new("engine", &update_params), |b| {
        let mut s = EngineStore::in_memory();
        s.fill_kv(UPDATE_ROWS);
        update(b, &mut s);
    });
    g.bench_function(BenchmarkId::new("sqlite_memory", &update_params), |b| {
        let mut s = SqliteStore::in_memory();
        s.fill_kv(UPDATE_ROWS);
        update(b, &mut s);
    });
    g.finish();
}

/// Times `iters` one-row insert transactions, pipelined `depth` deep, into a store
/// that persists across calls (ids continue from the previous call).
///
/// One criterion iteration is one transaction, so the reported time is per transaction;
/// criterion's linear fit over samples of growing size removes the per-sample cost of
/// filling and draining the pipeline.
fn pipelined<S: Store>(b: &mut criterion::Bencher<'_>, store: &mut S, depth: usize) {
    let mut next = 0u64;
    b.iter_custom(|iters| {
        let start = Instant::now();
        pipelined_inserts(store, next, iters, depth);
        next += iters;
        start.elapsed()
    });
}

fn small_tx_durable(c: &mut Criterion) {
    let mut g = c.benchmark_group("small_tx_durable");
    g.throughput(Throughput::Elements(1));

    let group = DurabilityPolicy::Group {
        window: Duration::from_millis(2),
    };
    let runs = [
        ("group_2ms", group, IN_FLIGHT),
        ("every_commit", DurabilityPolicy::EveryCommit, IN_FLIGHT),
        ("group_2ms", group, IN_FLIGHT_DEEP),
    ];
    for (name, policy, depth) in runs {
        let params = format!("insert,rows=1,policy={name},in_flight={depth}");
        g.bench_function(BenchmarkId::new("engine", params), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut s = EngineStore::on_disk(dir.path(), policy);
            pipelined(b, &mut s, depth);
            drop(s);
        });
    }

    // SQLite commits synchronously (nothing to pipeline). WAL + synchronous=NORMAL is
    // its usual fast setting and does not fsync at commit; synchronous=FULL fsyncs the
    // WAL at every commit, the durability the engine's tickets promise.
    let sqlite = [
        (
            "wal_sync_normal",
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        ),
        (
            "wal_sync_full",
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        ),
    ];
    for (name, pragmas) in sqlite {
        let params = format!("insert,rows=1,{name}");
        g.bench_function(BenchmarkId::new("sqlite_file", params), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut s = SqliteStore::on_disk(&dir.path().join("bench.db"), pragmas);
            pipelined(b, &mut s, 1);
            drop(s);
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, minus an undocumented pub fn.
    let mut c = config().configure_from_args();
    bulk_load(&mut c);
    small_tx_memory(&mut c);
    small_tx_durable(&mut c);
    c.final_summary();
}
