//! Query-crate benchmarks on the dataset of SpacetimeDB's subscription benchmark.
//!
//! Dataset, loaded once per bench binary into `Datastore::in_memory`, one transaction per
//! table:
//! - `footprint(entity_id u64, owner_entity_id u64, type enum{4})`, 1,000,000 rows,
//!   `entity_id = i`, `owner_entity_id = i % 1000`, `type = i % 4`; non-unique btree
//!   indexes on both `u64` columns;
//! - `location(entity_id u64, chunk_index u64, x i32, z i32, dimension u32)`, 1,000 chunks
//!   of 1,200 rows, `entity_id = chunk * 1200 + i`, `chunk_index = chunk`, `x = 0`,
//!   `z = entity_id`, `dimension = 0`; non-unique btree indexes on `entity_id`,
//!   `chunk_index` and `(x, z, dimension)`.
//!
//! Queries: `scan` (every footprint row), `semijoin` (footprint rows whose location lies in
//! chunk 5: 1,200 rows) and `multi` (one location row through the three-column index).
//!
//! Groups (run one with e.g. `cargo bench --bench query -- delta_per_commit`):
//! - `compile`: parse, check and plan of each query;
//! - `full_eval`: `exec::evaluate_stored` transcoding each result row from its stored
//!   bytes into one row list (`rowlist::RowListWriter::push_stored`), no `Row` built;
//! - `delta_per_commit`: after a commit inserting `k` footprint and `k` location rows with
//!   fresh entity ids, the time to find the affected queries (`Registry`, pruning off, all
//!   three queries registered), evaluate each with `evaluate_delta` and encode every
//!   non-empty delta with `rowlist::encode_delta` (`all3`), or one query's `evaluate_delta` plus encoding (`semijoin`,
//!   `multi`). `match`: the new location rows sit in chunk 5 at `(0, 10000, 0)`, so every
//!   query's result grows by `k`; `nomatch`: they sit in chunks no query reads;
//! - `reeval_per_commit`: the in-run baseline, full re-evaluation plus encoding of the same
//!   queries after the same commit (the naive approach);
//! - `scan_breakdown`: where the scan's time goes (memory walk touching every stored row,
//!   decode, evaluation into decoded rows without encoding, and the earlier route:
//!   decoded rows, then `rowlist::encode`), against `full_eval/scan`.
//!
//! In the two per-commit groups only the evaluation is timed (`iter_custom`): each
//! iteration commits its rows untimed and removes them again in a second untimed commit,
//! so the dataset keeps its size however many iterations criterion runs. Before each
//! timed section the allocator is settled (`settle_allocator`), so the delete phase's
//! deferred free-list work is not charged to the evaluation.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tidings::actors::wire::rowlist;
use tidings::engine::{
    AlgebraicType, Datastore, EnumType, Identity, Row, Schema, TableId, TableSchema, TxData, Value,
};
use tidings::query::{Caller, DeltaRows, Plan, Registry, compile, evaluate_delta, exec};

/// Rows of `footprint`.
const FOOTPRINT_ROWS: u64 = 1_000_000;
/// Distinct `owner_entity_id` values.
const OWNERS: u64 = 1_000;
/// Variants of the footprint `type` enum.
const TYPES: u64 = 4;
/// Chunks of `location`.
const CHUNKS: u64 = 1_000;
/// Rows per chunk of `location`.
const ROWS_PER_CHUNK: u64 = 1_200;
/// The first entity id the per-commit benches insert (above every loaded id).
const FRESH_IDS_FROM: u64 = 2_000_000;
/// The chunk the semijoin reads.
const JOIN_CHUNK: u64 = 5;
/// The `z` the multi-column query looks up.
const MULTI_Z: i32 = 10_000;

const SCAN: &str = "select * from footprint";
const SEMIJOIN: &str = "select f.* from footprint f join location l on f.entity_id = l.entity_id where l.chunk_index = 5";
const MULTI: &str = "select * from location WHERE x = 0 AND z = 10000 AND dimension = 0";

/// The three queries, in the order their plans sit in [`Fixture::plans`].
const QUERIES: [(&str, &str); 3] = [("scan", SCAN), ("semijoin", SEMIJOIN), ("multi", MULTI)];

fn schema() -> Schema {
    let kind = EnumType {
        name: "footprint_type".into(),
        variants: ["a", "b", "c", "d"].iter().map(|v| Arc::from(*v)).collect(),
    };
    let footprint = TableSchema::builder("footprint")
        .column("entity_id", AlgebraicType::U64)
        .column("owner_entity_id", AlgebraicType::U64)
        .column("type", AlgebraicType::Enum(kind))
        .index(&["entity_id"])
        .index(&["owner_entity_id"])
        .public()
        .build()
        .expect("footprint schema is valid");
    let location = TableSchema::builder("location")
        .column("entity_id", AlgebraicType::U64)
        .column("chunk_index", AlgebraicType::U64)
        .column("x", AlgebraicType::I32)
        .column("z", AlgebraicType::I32)
        .column("dimension", AlgebraicType::U32)
        .index(&["entity_id"])
        .index(&["chunk_index"])
        .index(&["x", "z", "dimension"])
        .public()
        .build()
        .expect("location schema is valid");
    Schema::new([footprint, location]).expect("table names are distinct")
}

fn footprint_row(id: u64) -> Row {
    Row::new(vec![
        Value::U64(id),
        Value::U64(id % OWNERS),
        Value::Enum((id % TYPES) as u8),
    ])
}

fn location_row(id: u64, chunk: u64, z: i32) -> Row {
    Row::new(vec![
        Value::U64(id),
        Value::U64(chunk),
        Value::I32(0),
        Value::I32(z),
        Value::U32(0),
    ])
}

/// The loaded datastore, the compiled plans and the next fresh entity id.
struct Fixture {
    ds: Datastore,
    footprint: TableId,
    location: TableId,
    /// Plans of [`QUERIES`], in that order.
    plans: Vec<Plan>,
    next_id: AtomicU64,
}

fn caller() -> Caller {
    Caller {
        identity: Identity::ZERO,
        is_owner: true,
    }
}

fn compile_one(sql: &str, schema: &Schema, version: u64) -> Plan {
    let mut plans = compile(sql, schema, version, caller()).expect("bench query compiles");
    assert_eq!(plans.len(), 1, "{sql} yields one plan");
    plans.pop().expect("one plan")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let started = Instant::now();
        let ds = Datastore::in_memory(schema());
        let mut tx = ds.begin_mut_tx();
        let footprint = tx.table_id("footprint").expect("footprint exists");
        let location = tx.table_id("location").expect("location exists");
        for id in 0..FOOTPRINT_ROWS {
            tx.insert(footprint, footprint_row(id)).expect("insert");
        }
        tx.commit().expect("commit footprint");
        let mut tx = ds.begin_mut_tx();
        for chunk in 0..CHUNKS {
            for i in 0..ROWS_PER_CHUNK {
                let id = chunk * ROWS_PER_CHUNK + i;
                tx.insert(location, location_row(id, chunk, id as i32))
                    .expect("insert");
            }
        }
        tx.commit().expect("commit location");
        let (schema, version) = {
            let state = ds.read();
            (state.schema().clone(), state.schema_version())
        };
        let plans = QUERIES
            .iter()
            .map(|(_, sql)| compile_one(sql, &schema, version))
            .collect();
        eprintln!(
            "dataset: {FOOTPRINT_ROWS} footprint + {} location rows loaded in {:.1?}",
            CHUNKS * ROWS_PER_CHUNK,
            started.elapsed()
        );
        let fx = Fixture {
            ds,
            footprint,
            location,
            plans,
            next_id: AtomicU64::new(FRESH_IDS_FROM),
        };
        fx.check_result_sizes();
        fx
    })
}

impl Fixture {
    fn plan(&self, name: &str) -> &Plan {
        let i = QUERIES
            .iter()
            .position(|(n, _)| *n == name)
            .expect("known query");
        &self.plans[i]
    }

    /// Guards against a dataset or planner change silently benchmarking something else.
    fn check_result_sizes(&self) {
        let state = self.ds.read();
        let sizes: Vec<usize> = self
            .plans
            .iter()
            .map(|p| exec::evaluate_rows(p, &state).len())
            .collect();
        assert_eq!(
            sizes,
            [FOOTPRINT_ROWS as usize, ROWS_PER_CHUNK as usize, 1],
            "result sizes of scan, semijoin, multi"
        );
    }

    /// Commits `k` footprint and `k` location rows sharing fresh entity ids; returns the
    /// commit's TxData and the rows, to delete them afterwards.
    fn commit_fresh(&self, k: u64, matching: bool) -> (Arc<TxData>, Vec<Row>, Vec<Row>) {
        let first = self.next_id.fetch_add(k, Ordering::Relaxed);
        let mut tx = self.ds.begin_mut_tx();
        let mut fp = Vec::with_capacity(k as usize);
        let mut loc = Vec::with_capacity(k as usize);
        for id in first..first + k {
            let l = if matching {
                location_row(id, JOIN_CHUNK, MULTI_Z)
            } else {
                location_row(id, 1_000_000 + id, id as i32)
            };
            fp.push(
                tx.insert(self.footprint, footprint_row(id))
                    .expect("insert"),
            );
            loc.push(tx.insert(self.location, l).expect("insert"));
        }
        let commit = tx.commit().expect("commit");
        (commit.tx_data.expect("the commit changed rows"), fp, loc)
    }

    /// Deletes rows [`Fixture::commit_fresh`] inserted, in one commit.
    fn delete(&self, fp: Vec<Row>, loc: Vec<Row>) {
        let mut tx = self.ds.begin_mut_tx();
        for r in fp {
            assert!(tx.delete(self.footprint, r).expect("delete"));
        }
        for r in loc {
            assert!(tx.delete(self.location, r).expect("delete"));
        }
        tx.commit().expect("commit");
    }
}

/// Full evaluation plus encoding of one query's result, transcoding stored rows.
fn eval_encode(plan: &Plan, state: &tidings::engine::CommittedState) -> Vec<u8> {
    let rows = exec::known_result_len(plan, state).unwrap_or(0);
    let mut list = rowlist::RowListWriter::with_capacity(rows);
    exec::evaluate_stored(plan, state, |r| list.push_stored(r));
    list.finish()
}

/// The earlier route to the same bytes: decoded rows, then encoded.
fn eval_decode_encode(plan: &Plan, state: &tidings::engine::CommittedState) -> Vec<u8> {
    rowlist::encode(&exec::evaluate_rows(plan, state))
}

fn compile_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    let schema = schema();
    for (name, sql) in QUERIES {
        g.bench_function(BenchmarkId::new(name, "parse+check+plan"), |b| {
            b.iter(|| compile(black_box(sql), &schema, 1, caller()).expect("compiles"));
        });
    }
    g.finish();
}

/// Per query: the bench parameters of its full evaluation and its anchor in ns.
fn full_eval_params() -> [(&'static str, String, f64); 3] {
    [
        (
            "scan",
            format!("footprint_rows={FOOTPRINT_ROWS},result={FOOTPRINT_ROWS},encode=rowlist"),
            25.6e6,
        ),
        (
            "semijoin",
            format!("chunk={JOIN_CHUNK},result={ROWS_PER_CHUNK},encode=rowlist"),
            114e3,
        ),
        (
            "multi",
            "index=(x,z,dimension),result=1,encode=rowlist".to_string(),
            200.0,
        ),
    ]
}

fn full_eval(c: &mut Criterion) {
    let fx = fixture();
    let mut g = c.benchmark_group("full_eval");
    for (name, p, _) in full_eval_params() {
        let plan = fx.plan(name);
        if name == "scan" {
            // Tens of milliseconds an iteration: ten flat samples, not the linear ramp.
            g.sampling_mode(SamplingMode::Flat);
        } else {
            g.sampling_mode(SamplingMode::Auto);
        }
        g.bench_function(BenchmarkId::new(name, p), |b| {
            let state = fx.ds.read();
            b.iter(|| eval_encode(plan, &state));
        });
    }
    g.finish();
}

/// Where the scan's time goes: the parts of the earlier route (decoded rows, then encoded)
/// against the memory floor.
fn scan_breakdown(c: &mut Criterion) {
    let fx = fixture();
    let mut g = c.benchmark_group("scan_breakdown");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(FOOTPRINT_ROWS));
    let plan = fx.plan("scan");
    let state = fx.ds.read();
    let table = state.table(fx.footprint).expect("footprint exists");
    assert_eq!(
        eval_decode_encode(plan, &state),
        eval_encode(plan, &state),
        "both routes write the same row list"
    );
    let p = format!("footprint_rows={FOOTPRINT_ROWS}");
    // Memory floor: read the first byte of every stored row (each its own allocation).
    g.bench_function(BenchmarkId::new("walk_stored_bytes", &p), |b| {
        b.iter(|| {
            table
                .stored_rows()
                .map(|r| r.bytes().first().map_or(0, |b| usize::from(*b)))
                .sum::<usize>()
        });
    });
    // Decode every row into a `Row` and drop it at once.
    g.bench_function(BenchmarkId::new("decode_and_drop", &p), |b| {
        b.iter(|| table.iter().count());
    });
    // `evaluate_rows` without the encoding.
    g.bench_function(BenchmarkId::new("evaluate_rows_only", &p), |b| {
        b.iter(|| exec::evaluate_rows(plan, &state));
    });
    // The earlier route: decoded rows, then encoded.
    g.bench_function(BenchmarkId::new("decode_then_encode", &p), |b| {
        b.iter(|| eval_decode_encode(plan, &state));
    });
    g.finish();
}

/// What a per-commit bench evaluates after each commit.
#[derive(Clone, Copy)]
enum Target {
    /// Every affected query, through the registry.
    All,
    /// One query.
    One(&'static str),
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::All => "all3",
            Target::One(n) => n,
        }
    }
}

/// Makes the allocator do now the work the untimed phases left it.
///
/// The delete phase frees a few thousand chunks of assorted sizes (the deleted rows, their
/// index entries, the delete's own TxData). glibc defers sorting freed chunks into its
/// bins until a request it cannot serve from a cache, so the first large allocation
/// after them (a delta's row list) would pay for the delete: about 20 µs at k = 1,000,
/// more than the delta itself. One large allocation here settles that debt outside the
/// timed section. Without it the k = 1,000 figures grow by that amount for every design.
fn settle_allocator() {
    black_box(Vec::<u8>::with_capacity(64 * 1024));
}

/// Runs `iters` iterations of commit (untimed), `timed` (timed), delete (untimed).
fn per_commit(
    fx: &Fixture,
    iters: u64,
    k: u64,
    matching: bool,
    mut timed: impl FnMut(&tidings::engine::CommittedState, &TxData),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (tx, fp, loc) = fx.commit_fresh(k, matching);
        settle_allocator();
        {
            let state = fx.ds.read();
            let start = Instant::now();
            timed(&state, &tx);
            total += start.elapsed();
        }
        fx.delete(fp, loc);
    }
    total
}

/// The row lists of a delta: one per non-empty side.
fn encode_delta(d: &tidings::query::QueryDelta) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let list = |rows: &DeltaRows| (!rows.is_empty()).then(|| rowlist::encode_delta(rows));
    (list(&d.inserts), list(&d.deletes))
}

fn delta_params(k: u64, matching: bool) -> String {
    let m = if matching { "match" } else { "nomatch" };
    format!("k={k},{m},pruning=off,encode=rowlist")
}

/// The (k, match, target) cases of both per-commit groups.
fn cases() -> Vec<(u64, bool, Target)> {
    let mut v = Vec::new();
    for k in [1, 1_000] {
        for matching in [true, false] {
            v.push((k, matching, Target::All));
        }
        v.push((k, true, Target::One("semijoin")));
        v.push((k, true, Target::One("multi")));
    }
    v
}

fn delta_per_commit(c: &mut Criterion) {
    let fx = fixture();
    let mut registry = Registry::new();
    registry.set_pruning(false);
    {
        let state = fx.ds.read();
        for p in &fx.plans {
            registry.register(p.clone(), &state);
        }
    }
    let mut g = c.benchmark_group("delta_per_commit");
    for (k, matching, target) in cases() {
        g.throughput(Throughput::Elements(2 * k));
        let id = BenchmarkId::new(target.name(), delta_params(k, matching));
        g.bench_function(id, |b| {
            b.iter_custom(|iters| match target {
                Target::All => per_commit(fx, iters, k, matching, |state, tx| {
                    let ids = registry.affected(tx, state);
                    assert_eq!(ids.len(), 3, "pruning off: every query is affected");
                    for id in ids {
                        let plan = registry.plan(id).expect("registered");
                        let d = evaluate_delta(plan, state, tx);
                        black_box(encode_delta(&d));
                    }
                }),
                Target::One(name) => {
                    let plan = fx.plan(name);
                    per_commit(fx, iters, k, matching, |state, tx| {
                        let d = evaluate_delta(plan, state, tx);
                        assert_eq!(d.inserts.len(), k as usize, "match: the result grows by k");
                        black_box(encode_delta(&d));
                    })
                }
            });
        });
    }
    g.finish();
}

fn reeval_per_commit(c: &mut Criterion) {
    let fx = fixture();
    let mut g = c.benchmark_group("reeval_per_commit");
    for (k, matching, target) in cases() {
        g.throughput(Throughput::Elements(2 * k));
        // Re-evaluating the scan takes tens of milliseconds: flat sampling keeps the run short.
        g.sampling_mode(match target {
            Target::All => SamplingMode::Flat,
            Target::One(_) => SamplingMode::Auto,
        });
        let id = BenchmarkId::new(target.name(), delta_params(k, matching));
        g.bench_function(id, |b| {
            b.iter_custom(|iters| match target {
                Target::All => per_commit(fx, iters, k, matching, |state, _| {
                    for plan in &fx.plans {
                        black_box(eval_encode(plan, state));
                    }
                }),
                Target::One(name) => {
                    let plan = fx.plan(name);
                    per_commit(fx, iters, k, matching, |state, _| {
                        black_box(eval_encode(plan, state));
                    })
                }
            });
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
}

// ---------------------------------------------------------------------------------------
// Summary table: criterion's own estimates of this run, against the anchors.

/// One line of the summary: a bench, its anchor and target, and its in-run baseline.
struct Line {
    group: &'static str,
    function: &'static str,
    param: String,
    anchor_ns: f64,
    /// `None` for what-if lines, which only show where the time goes.
    target_ns: Option<f64>,
    /// The in-run baseline as (group, function, param): for deltas the
    /// `reeval_per_commit` bench of the same case, for the scan breakdown the full scan.
    baseline: Option<(&'static str, &'static str, String)>,
}

fn summary_lines() -> Vec<Line> {
    let mut v = Vec::new();
    let mut at_anchor = |group, function, param: String, anchor_ns: f64| {
        v.push(Line {
            group,
            function,
            param,
            anchor_ns,
            target_ns: Some(anchor_ns),
            baseline: None,
        })
    };
    for (f, ns) in [
        ("scan", 3_400.0),
        ("semijoin", 12_500.0),
        ("multi", 10_400.0),
    ] {
        at_anchor("compile", f, "parse+check+plan".into(), ns);
    }
    for (f, p, ns) in full_eval_params() {
        at_anchor("full_eval", f, p, ns);
    }
    let deltas = [
        ("all3", 1, true, 2_000.0),
        ("all3", 1, false, 1_500.0),
        ("all3", 1_000, true, 1.03e6),
        ("all3", 1_000, false, 1.03e6),
        ("semijoin", 1, true, 990.0),
        ("semijoin", 1_000, true, 660e3),
        ("multi", 1, true, 290.0),
        ("multi", 1_000, true, 55e3),
    ];
    for (function, k, matching, anchor_ns) in deltas {
        v.push(Line {
            group: "delta_per_commit",
            function,
            param: delta_params(k, matching),
            anchor_ns,
            target_ns: Some(anchor_ns / 2.0),
            baseline: Some(("reeval_per_commit", function, delta_params(k, matching))),
        });
    }
    // What-if routes to the scan's result, against the scan's anchor and the real scan.
    let (scan, scan_param, scan_anchor) = full_eval_params()[0].clone();
    for function in [
        "walk_stored_bytes",
        "decode_and_drop",
        "evaluate_rows_only",
        "decode_then_encode",
    ] {
        v.push(Line {
            group: "scan_breakdown",
            function,
            param: format!("footprint_rows={FOOTPRINT_ROWS}"),
            anchor_ns: scan_anchor,
            target_ns: None,
            baseline: Some(("full_eval", scan, scan_param.clone())),
        });
    }
    v
}

fn criterion_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("criterion")
}

/// Criterion's typical time (slope, else mean) in ns, if the bench ran after `since`.
fn estimate_ns(group: &str, function: &str, param: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join(param)
        .join("new/estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None;
    }
    let json = std::fs::read_to_string(&path).ok()?;
    // `{"mean":{...,"point_estimate":x,...},...,"slope":null | {...}}`: the first
    // `point_estimate` after a key belongs to that key's object.
    let after = |key: &str| -> Option<f64> {
        let rest = &json[json.find(&format!("\"{key}\":{{"))?..];
        let rest = &rest[rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
        let end = rest.find([',', '}'])?;
        rest[..end].parse().ok()
    };
    after("slope").or_else(|| after("mean"))
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 0.01 {
        format!("{r:.2}")
    } else {
        format!("{r:.1e}")
    }
}

/// Prints the benches of this run that have an anchor, as a Markdown table.
fn print_summary(since: SystemTime) {
    let mut rows = Vec::new();
    for l in summary_lines() {
        let Some(ours) = estimate_ns(l.group, l.function, &l.param, since) else {
            continue;
        };
        let base = l
            .baseline
            .as_ref()
            .and_then(|(g, f, p)| estimate_ns(g, f, p, since).map(|ns| (*g, ns)));
        let target = l.target_ns.map_or("-".into(), |t| {
            let verdict = if ours <= t { "met" } else { "missed" };
            format!("{} {verdict}", fmt_ns(t))
        });
        rows.push(format!(
            "| {}/{}/{} | {} | {} | {} | {} | {} |",
            l.group,
            l.function,
            l.param,
            fmt_ns(ours),
            fmt_ns(l.anchor_ns),
            fmt_ratio(ours / l.anchor_ns),
            target,
            base.map_or("-".into(), |(g, b)| format!(
                "{g}: {} ({})",
                fmt_ns(b),
                fmt_ratio(ours / b)
            )),
        ));
    }
    if rows.is_empty() {
        return;
    }
    println!();
    println!("| bench | ours | anchor | ours/anchor | target | in-run baseline (ours/baseline) |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

fn main() {
    let started = SystemTime::now();
    // What `criterion_group!`/`criterion_main!` expand to, minus an undocumented pub fn.
    let mut c = config().configure_from_args();
    compile_group(&mut c);
    full_eval(&mut c);
    scan_breakdown(&mut c);
    delta_per_commit(&mut c);
    reeval_per_commit(&mut c);
    c.final_summary();
    print_summary(started);
}
