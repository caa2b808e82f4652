//! Fan-out benchmark: one commit, N in-process subscribers.
//!
//! Run the full table with
//!
//! ```text
//! cargo run --release --example fanout                  # N = 1, 100, 1,000, 10,000
//! cargo run --release --example fanout -- --max-n 1000  # smaller N only
//! cargo run --release --example fanout -- --help
//! ```
//!
//! `benches/fanout.rs` runs a criterion subset of the same workload (it includes this file
//! as a module, so there is one workload definition).
//!
//! # Workload
//!
//! Three tables `(id u64 primary key, value u64)`: `feed` (100 rows), `item` (10,000 rows,
//! more if N is larger) and `side` (100 rows, subscribed by nobody). N subscribers connect
//! in process and subscribe either
//!
//! - to the *same query* `SELECT * FROM feed` (every commit reaches every subscriber), or
//! - to *point queries* `SELECT * FROM item WHERE id = i`, subscriber i to its own row
//!   (a commit of `rows` rows reaches at most `rows` subscribers).
//!
//! A commit is one reducer call updating 1 (or 100) rows.
//!
//! # What is measured
//!
//! Every latency starts at `t0`, a clock read inside the reducer, at the start of its
//! transaction (so commit, merge and evaluation are all inside the figure):
//!
//! - *delivery*: until the last affected session's queue has the update appended. With
//!   inboxes (the default, below) each inbox records when it was last appended to, and
//!   that is the figure. With own queues the benchmark thread watches the engine's
//!   `deliveries` counter (incremented by the hub after each append) while it waits for
//!   the call, spinning with `yield_now`; it competes with the consumers for the cores,
//!   so it can notice late.
//! - *end to end*: until the last affected subscriber has applied the update to its cache
//!   (`frame_tick` / `advance_one_message` returned and `last_offset()` moved). The
//!   subscribers are drained by a small pool of consumer threads (default 2), each the
//!   application thread of its share of them. By default each consumer has an
//!   [`tidings::Inbox`] and its subscribers are connected through it, so a commit is one
//!   item per consumer (`--delivery queues` gives every subscriber its own queue
//!   instead; `--delivery both` runs each latency and sustained row both ways). A
//!   consumer waits on its inbox and processes what came. With own queues, before each
//!   commit the pool is handed the list of subscribers the commit reaches; each consumer
//!   blocks on the queue of one of its pending subscribers, then sweeps the rest with
//!   `frame_tick`, so it sleeps on the queue's condition variable like a real client
//!   instead of spinning.
//! - *engine CPU per commit*: CPU time of the engine's threads (the actor system thread,
//!   the transaction actor, the arbiters with the hubs and the manager), from
//!   `/proc/self/task/*/schedstat`, divided by the commits. The benchmark thread and the
//!   consumer threads are not counted.
//! - *point queries, paired*: N = 1 and the largest N run side by side, their commits
//!   alternating, 3,000 each (`--paired-commits`), so that both see the same machine; the
//!   targets are the ratios of their delivery p50 and engine CPU per commit. One pairing's
//!   ratio moves by up to 1.5x from run to run (with where its threads and memory land),
//!   so the comparison is made in 3 rounds of fresh systems (`--paired-rounds`), each
//!   round's ratios are printed, and the targets read their median.
//! - *sustained*: K commits with 64 calls in flight; commits/s counts until the last
//!   call returned, deliveries/s until the `deliveries` counter reached K x (subscribers
//!   per commit), applied/s until every subscriber applied its last update.
//! - *memory per subscriber*: RSS growth of a fresh child process (this binary with
//!   `--memory-probe`) from connecting and subscribing N clients (snapshots applied),
//!   divided by N.
//! - *snapshot storm*: 2,048 clients subscribe at once to `SELECT * FROM item` over 10,000
//!   rows; time until every snapshot is applied, and the latency of reducer calls made
//!   by another thread during the storm (against a table nobody subscribes to).
//!
//! Baselines, in the same run and on the same machine:
//!
//! - *naive*: every commit, every one of the N subscriptions is re-evaluated in full with
//!   `evaluate_rows` against committed state, and each subscriber gets its rows through
//!   its own `std::sync::mpsc` channel (drained by the same number of consumer threads).
//! - *broadcast floor*: `tokio::sync::broadcast` of one shared payload to N tasks on a
//!   2-worker runtime; time from `send` to the last task woken.

#[path = "common/mod.rs"]
mod common;

use std::error::Error;
use std::ops::Range;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{cores_and_cpu, fmt_ns, fmt_rate, load_average, percentile, print_table};
use futures::StreamExt;
use parking_lot::{Condvar, Mutex};
use tidings::actors::module::encode_args;
use tidings::actors::queue::QueueLimits;
use tidings::engine::{Row, TableType, Value};
use tidings::query::{Caller, Plan, compile, evaluate_rows};
use tidings::{DbConnection, Identity, Inbox, Module, ReducerContext, Tidings, table};

/// Errors of the benchmark harness.
pub type BoxError = Box<dyn Error + Send + Sync>;
/// A harness result.
pub type Res<T> = Result<T, BoxError>;

/// Rows of `feed`, the table of the same-query workload.
pub const FEED_ROWS: u64 = 100;
/// Rows of `item` (at least): the point-query workload and the snapshot storm.
pub const ITEM_ROWS: u64 = 10_000;
/// Rows of `side`, the table nobody subscribes to.
pub const SIDE_ROWS: u64 = 100;
/// Calls in flight in the sustained runs.
pub const IN_FLIGHT: usize = 64;
/// Longest any single wait of the harness may take before it reports an error.
const WAIT_MAX: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// The module
// ---------------------------------------------------------------------------------------

#[table(name = "feed", public)]
#[derive(Clone, Debug)]
struct Feed {
    #[primary_key]
    id: u64,
    value: u64,
}

#[table(name = "item", public)]
#[derive(Clone, Debug)]
struct Item {
    #[primary_key]
    id: u64,
    value: u64,
}

#[table(name = "side", public)]
#[derive(Clone, Debug)]
struct Side {
    #[primary_key]
    id: u64,
    value: u64,
}

/// A monotonic clock shared by the reducers and the harness, in nanoseconds.
pub struct Clock {
    base: Instant,
    reducer_ns: AtomicU64,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Clock {
            base: Instant::now(),
            reducer_ns: AtomicU64::new(0),
        })
    }

    /// Nanoseconds since the clock started.
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn stamp(&self) {
        self.reducer_ns.store(self.now_ns(), Ordering::Release);
    }

    /// When the last `touch_*` reducer started.
    pub fn reducer_ns(&self) -> u64 {
        self.reducer_ns.load(Ordering::Acquire)
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn insert_rows<T: TableType>(
    ctx: &mut ReducerContext<'_>,
    ids: Range<u64>,
    make: impl Fn(u64) -> T,
) -> Result<(), String> {
    let mut t = ctx.db.table::<T>().map_err(err)?;
    for id in ids {
        t.insert(make(id)).map_err(err)?;
    }
    Ok(())
}

fn update_rows<T: TableType>(
    ctx: &mut ReducerContext<'_>,
    ids: Range<u64>,
    make: impl Fn(u64) -> T,
) -> Result<(), String> {
    let mut t = ctx.db.table::<T>().map_err(err)?;
    for id in ids {
        t.update(make(id)).map_err(err)?;
    }
    Ok(())
}

/// The benchmark module. `touch_*` reducers take `(first, count, value)`, set `value` on
/// rows `first..first + count`, and stamp `clock` when they start.
pub fn module(clock: Arc<Clock>) -> Module {
    let (c_feed, c_item, c_side) = (clock.clone(), clock.clone(), clock);
    Module::new()
        .table::<Feed>()
        .table::<Item>()
        .table::<Side>()
        .reducer(
            "fill",
            |ctx: &mut ReducerContext<'_>, (feed, item, side): (u64, u64, u64)| {
                insert_rows(ctx, 0..feed, |id| Feed { id, value: 0 })?;
                insert_rows(ctx, 0..item, |id| Item { id, value: 0 })?;
                insert_rows(ctx, 0..side, |id| Side { id, value: 0 })
            },
        )
        .reducer(
            "touch_feed",
            move |ctx: &mut ReducerContext<'_>, (first, count, value): (u64, u64, u64)| {
                c_feed.stamp();
                update_rows(ctx, first..first + count, |id| Feed { id, value })
            },
        )
        .reducer(
            "touch_item",
            move |ctx: &mut ReducerContext<'_>, (first, count, value): (u64, u64, u64)| {
                c_item.stamp();
                update_rows(ctx, first..first + count, |id| Item { id, value })
            },
        )
        .reducer(
            "touch_side",
            move |ctx: &mut ReducerContext<'_>, (first, count, value): (u64, u64, u64)| {
                c_side.stamp();
                update_rows(ctx, first..first + count, |id| Side { id, value })
            },
        )
}

/// What the N subscribers subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Everyone: `SELECT * FROM feed`.
    Same,
    /// Subscriber i: `SELECT * FROM item WHERE id = i`.
    Point,
}

impl Shape {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Same => "same query",
            Shape::Point => "point queries",
        }
    }

    fn query(self, i: usize) -> String {
        match self {
            Shape::Same => "SELECT * FROM feed".to_string(),
            Shape::Point => format!("SELECT * FROM item WHERE id = {i}"),
        }
    }

    fn reducer(self) -> &'static str {
        match self {
            Shape::Same => "touch_feed",
            Shape::Point => "touch_item",
        }
    }

    /// Commit `k` of `rows` rows with `n` subscribers: the first row it updates and the
    /// subscribers it reaches.
    fn commit_plan(self, n: usize, rows: u64, k: u64) -> (u64, Range<usize>) {
        match self {
            Shape::Same => (0, 0..n),
            Shape::Point => {
                let n64 = n as u64;
                let first = if n64 >= rows { (k * rows) % n64 } else { 0 };
                let last = (first + rows).min(n64);
                (first, first as usize..last as usize)
            }
        }
    }
}

/// Item rows for `n` point subscribers: room for every subscriber's row plus a 100-row
/// commit past the last one.
fn item_rows_for(n: usize) -> u64 {
    ITEM_ROWS.max(n as u64 + 100)
}

/// Starts Tidings in memory (2 arbiters, large queue bounds) with the tables filled;
/// returns it with the ids of the threads it started.
pub fn start_server(clock: &Arc<Clock>, item_rows: u64) -> Res<(Tidings, Vec<u32>)> {
    let before = engine_threads();
    let tidings = Tidings::builder(module(clock.clone()))
        .in_memory()
        .arbiters(2)
        .queue_limits(QueueLimits {
            messages_max: 1 << 17,
            bytes_max: 1 << 30,
        })
        .start()?;
    let threads = engine_threads()
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect();
    let r = tidings.call_blocking("fill", &(FEED_ROWS, item_rows, SIDE_ROWS))?;
    r.outcome.map_err(|e| format!("fill failed: {e:?}"))?;
    Ok((tidings, threads))
}

/// One commit's latencies, in nanoseconds from `t0`.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Until the last affected queue has the update.
    pub delivery_ns: u64,
    /// Until the last affected subscriber applied it.
    pub e2e_ns: u64,
}

/// A design under test: commits once and waits until every subscriber the commit
/// reaches has it.
pub trait Fanout {
    /// Commits once, touching `rows` rows; returns the commit's latencies.
    fn commit(&mut self, rows: u64) -> Res<Sample>;

    /// CPU time so far of this design's engine threads, ns (0: not measured).
    fn engine_cpu_ns(&self) -> u64 {
        0
    }
}

// ---------------------------------------------------------------------------------------
// Process measurements
// ---------------------------------------------------------------------------------------

/// Ids of this process's engine threads: the actor system's thread, the transaction
/// actor's (unnamed, so it inherits the system thread's name) and the arbiters'.
fn engine_threads() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("tidings-system") || c.starts_with("actix-rt"))
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// CPU time so far of `threads` (ids in this process), in nanoseconds; 0 for any that
/// `/proc` does not report.
pub fn cpu_ns(threads: &[u32]) -> u64 {
    threads
        .iter()
        .filter_map(|tid| {
            let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

// ---------------------------------------------------------------------------------------
// The consumer pool
// ---------------------------------------------------------------------------------------

/// What a round of the pool waits for: each listed subscriber reaching an offset (or, for
/// `until_subscribed`, its subscription applied).
struct Round {
    targets: Vec<(usize, u64)>,
    until_subscribed: bool,
}

struct PoolState {
    round_no: u64,
    round: Arc<Round>,
    stop: bool,
}

struct PoolShared {
    conns: Vec<DbConnection>,
    inboxes: Vec<Inbox>,
    subscribed: Arc<Vec<AtomicBool>>,
    consumers: usize,
    state: Mutex<PoolState>,
    start: Condvar,
    remaining: AtomicUsize,
    last_ns: AtomicU64,
    failed: AtomicBool,
    done: Mutex<bool>,
    done_cv: Condvar,
    clock: Arc<Clock>,
}

/// Consumer threads that drain the subscribers' queues.
struct Pool {
    shared: Arc<PoolShared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(clients: Clients, consumers: usize, clock: Arc<Clock>) -> Self {
        let Clients {
            conns,
            flags: subscribed,
            inboxes,
        } = clients;
        let consumers = consumers.max(1);
        let shared = Arc::new(PoolShared {
            conns,
            inboxes,
            subscribed,
            consumers,
            state: Mutex::new(PoolState {
                round_no: 0,
                round: Arc::new(Round {
                    targets: Vec::new(),
                    until_subscribed: false,
                }),
                stop: false,
            }),
            start: Condvar::new(),
            remaining: AtomicUsize::new(0),
            last_ns: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            clock,
        });
        let threads = (0..consumers)
            .map(|c| {
                let sh = shared.clone();
                std::thread::Builder::new()
                    .name("fanout-consumer".into())
                    .spawn(move || consume(&sh, c))
                    .expect("a consumer thread starts")
            })
            .collect();
        Pool { shared, threads }
    }

    fn conns(&self) -> &[DbConnection] {
        &self.shared.conns
    }

    /// Whether the subscribers are delivered through inboxes.
    fn has_inboxes(&self) -> bool {
        !self.shared.inboxes.is_empty()
    }

    /// When the last append to any of the consumers' inboxes happened (clock ns), for
    /// inbox delivery: the inbox records it as it appends, so it is exact, where polling
    /// the delivery counter from a thread that competes with the consumers for the cores
    /// notices it late.
    fn last_append_ns(&self) -> Option<u64> {
        let base = self.shared.clock.base;
        self.shared
            .inboxes
            .iter()
            .filter_map(|i| i.last_append())
            .map(|t| t.saturating_duration_since(base).as_nanos() as u64)
            .max()
    }

    /// Hands the consumers a round; returns at once.
    fn start(&self, round: Round) {
        let sh = &self.shared;
        sh.remaining.store(sh.consumers, Ordering::SeqCst);
        sh.last_ns.store(0, Ordering::SeqCst);
        *sh.done.lock() = false;
        let mut st = sh.state.lock();
        st.round_no += 1;
        st.round = Arc::new(round);
        drop(st);
        sh.start.notify_all();
    }

    /// Waits for the round; returns when its last subscriber was done (clock ns).
    fn wait(&self) -> Res<u64> {
        let sh = &self.shared;
        let deadline = Instant::now() + WAIT_MAX;
        let mut done = sh.done.lock();
        while !*done {
            if sh.done_cv.wait_until(&mut done, deadline).timed_out() {
                return Err("the consumers did not finish the round in time".into());
            }
        }
        drop(done);
        if sh.failed.swap(false, Ordering::SeqCst) {
            return Err("a consumer timed out waiting for a subscriber".into());
        }
        Ok(sh.last_ns.load(Ordering::SeqCst))
    }

    fn run(&self, round: Round) -> Res<u64> {
        self.start(round);
        self.wait()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.start.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn consume(sh: &PoolShared, me: usize) {
    let mut seen_round = 0;
    loop {
        let round = {
            let mut st = sh.state.lock();
            while !st.stop && st.round_no == seen_round {
                sh.start.wait(&mut st);
            }
            if st.stop {
                return;
            }
            seen_round = st.round_no;
            st.round.clone()
        };
        let mine: Vec<(usize, u64)> = round
            .targets
            .iter()
            .copied()
            .filter(|(i, _)| i % sh.consumers == me)
            .collect();
        match drain(sh, me, mine, round.until_subscribed) {
            Some(last) => {
                sh.last_ns.fetch_max(last, Ordering::SeqCst);
            }
            None => sh.failed.store(true, Ordering::SeqCst),
        }
        if sh.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            *sh.done.lock() = true;
            sh.done_cv.notify_all();
        }
    }
}

/// Processes the `pending` subscribers' messages until each is done; returns when the
/// last one was (clock ns), or `None` on timeout.
///
/// A consumer blocks (up to 1 ms) on the queue of its first pending subscriber before the
/// first sweep and whenever a sweep found messages for fewer than 1/16 of the pending
/// subscribers, so it sleeps rather than spins while the hubs are still appending.
fn drain(
    sh: &PoolShared,
    me: usize,
    mut pending: Vec<(usize, u64)>,
    until_subscribed: bool,
) -> Option<u64> {
    let deadline = Instant::now() + WAIT_MAX;
    let is_done = |i: usize, target: u64| {
        if until_subscribed {
            sh.subscribed[i].load(Ordering::Acquire)
        } else {
            sh.conns[i].last_offset() >= target
        }
    };
    let mut last = 0;
    if let Some(inbox) = sh.inboxes.get(me) {
        // One inbox holds all of this consumer's subscribers: wait on it, process what
        // came, and note who is done.
        while !pending.is_empty() {
            inbox.advance_one_message(Duration::from_millis(1));
            inbox.frame_tick();
            if Instant::now() > deadline {
                return None;
            }
            let now = sh.clock.now_ns();
            pending.retain(|&(i, target)| {
                if is_done(i, target) {
                    last = now;
                    false
                } else {
                    true
                }
            });
        }
        return Some(last);
    }
    let mut idle = true;
    while !pending.is_empty() {
        if idle {
            let (i, target) = pending[0];
            if !is_done(i, target) {
                sh.conns[i].advance_one_message(Duration::from_millis(1));
            }
            if Instant::now() > deadline {
                return None;
            }
        }
        let swept = pending.len();
        let mut processed = 0;
        pending.retain(|&(i, target)| {
            processed += sh.conns[i].frame_tick();
            if is_done(i, target) {
                last = sh.clock.now_ns();
                false
            } else {
                true
            }
        });
        idle = processed * 16 < swept;
    }
    Some(last)
}

// ---------------------------------------------------------------------------------------
// Tidings
// ---------------------------------------------------------------------------------------

/// Connects `n` clients; returns them with their "subscription applied" flags.
/// How the subscribers' updates reach the consumer threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// One inbox per consumer thread: a commit is one item per inbox.
    Inbox,
    /// Every subscriber has its own queue: a commit is one append per subscriber.
    Queues,
}

impl Delivery {
    /// For tables.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Inbox => "inbox",
            Delivery::Queues => "own queues",
        }
    }
}

/// Clients connected for a pool of `consumers` threads.
struct Clients {
    conns: Vec<DbConnection>,
    flags: Arc<Vec<AtomicBool>>,
    /// One per consumer thread, when delivered through inboxes; subscriber i is on
    /// inbox `i % consumers`, the one its consumer drains.
    inboxes: Vec<Inbox>,
}

fn connect_clients(tidings: &Tidings, n: usize, consumers: usize, delivery: Delivery) -> Clients {
    let inboxes: Vec<Inbox> = match delivery {
        Delivery::Inbox => (0..consumers.max(1)).map(|_| tidings.inbox()).collect(),
        Delivery::Queues => Vec::new(),
    };
    let conns = (0..n)
        .map(|i| match inboxes.get(i % consumers.max(1)) {
            Some(inbox) => inbox.connect(),
            None => tidings.connect(),
        })
        .collect();
    let flags = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    Clients {
        conns,
        flags,
        inboxes,
    }
}

/// Sends every client's subscription; each sets its flag once applied.
fn subscribe_all(
    conns: &[DbConnection],
    flags: &Arc<Vec<AtomicBool>>,
    query: impl Fn(usize) -> String,
) -> Res<()> {
    for (i, c) in conns.iter().enumerate() {
        let f = flags.clone();
        c.subscription_builder()
            .on_applied(move |_| f[i].store(true, Ordering::Release))
            .subscribe(&[query(i)])?;
    }
    Ok(())
}

/// Tidings with N subscribed in-process clients and a consumer pool.
pub struct Engine {
    /// The running instance.
    pub tidings: Tidings,
    /// The clock the reducers stamp.
    pub clock: Arc<Clock>,
    /// What the subscribers subscribe to.
    pub shape: Shape,
    /// Subscribers.
    pub n: usize,
    /// Time to connect, subscribe and apply every snapshot.
    pub setup: Duration,
    /// Hand the subscribers their updates only once the commit is delivered, so the hubs
    /// do not share the cores with them (then only `delivery_ns` is meaningful).
    pub idle_subscribers: bool,
    /// Point queries: update rows from 0 on every commit (one hot row and subscriber)
    /// instead of moving through all N rows.
    pub hot_rows: bool,
    threads: Vec<u32>,
    item_rows: u64,
    pool: Pool,
    next_value: u64,
}

/// A sustained run's figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sustained {
    /// Commits made.
    pub commits: u64,
    /// Commits per second, until the last call returned.
    pub commits_per_s: f64,
    /// Queue appends per second, until the last one.
    pub deliveries_per_s: f64,
    /// Subscriber updates applied per second, until the last one.
    pub applied_per_s: f64,
    /// Engine CPU per commit, ns.
    pub engine_cpu_per_commit_ns: f64,
    /// First call sent to last call returned.
    pub calls_time: Duration,
    /// Calls that failed.
    pub failed_calls: u64,
    /// Sessions dropped for falling behind (during the whole run).
    pub dropped: u64,
}

/// What the commits of a sustained run update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// Rows the subscribers watch (same query: feed row 0; point: row `k % n`).
    Matching,
    /// Item rows nobody watches (point shape only).
    NoMatch,
}

impl Engine {
    /// Starts Tidings, connects `n` clients subscribed per `shape`, and waits until every
    /// snapshot is applied.
    pub fn start(shape: Shape, n: usize, consumers: usize) -> Res<Self> {
        Self::start_with(shape, n, consumers, Delivery::Inbox)
    }

    /// [`Engine::start`] with the subscribers' updates delivered per `delivery`.
    pub fn start_with(shape: Shape, n: usize, consumers: usize, delivery: Delivery) -> Res<Self> {
        let clock = Clock::new();
        let item_rows = item_rows_for(n);
        let (tidings, threads) = start_server(&clock, item_rows)?;
        let t = Instant::now();
        let clients = connect_clients(&tidings, n, consumers, delivery);
        subscribe_all(&clients.conns, &clients.flags, |i| shape.query(i))?;
        let pool = Pool::new(clients, consumers, clock.clone());
        pool.run(Round {
            targets: (0..n).map(|i| (i, 0)).collect(),
            until_subscribed: true,
        })?;
        let setup = t.elapsed();
        Ok(Engine {
            tidings,
            clock,
            shape,
            n,
            setup,
            idle_subscribers: false,
            hot_rows: false,
            threads,
            item_rows,
            pool,
            next_value: 1,
        })
    }

    fn offset(&self) -> u64 {
        self.tidings.datastore().read().offset()
    }

    fn deliveries(&self) -> u64 {
        self.tidings.metrics().deliveries.load(Ordering::Relaxed)
    }

    /// Sessions dropped so far.
    pub fn dropped(&self) -> u64 {
        self.tidings.metrics().dropped_total()
    }

    /// `k` commits with `in_flight` calls outstanding, drained by the consumers meanwhile.
    pub fn sustained(&mut self, load: Load, k: u64, in_flight: usize) -> Res<Sustained> {
        let n = self.n;
        let before = self.offset();
        let (reducer, targets, expected): (&str, Vec<(usize, u64)>, u64) = match (self.shape, load)
        {
            (Shape::Same, Load::Matching) => (
                "touch_feed",
                (0..n).map(|i| (i, before + k)).collect(),
                k * n as u64,
            ),
            (Shape::Point, Load::Matching) => {
                let mut last = vec![0u64; n];
                for j in 0..k {
                    last[(j % n as u64) as usize] = before + 1 + j;
                }
                let t = last
                    .into_iter()
                    .enumerate()
                    .filter(|&(_, o)| o > 0)
                    .collect();
                ("touch_item", t, k)
            }
            (Shape::Same, Load::NoMatch) => ("touch_side", Vec::new(), 0),
            (Shape::Point, Load::NoMatch) => ("touch_item", Vec::new(), 0),
        };
        let n64 = n as u64;
        let spare = self.item_rows - n64;
        let shape = self.shape;
        let value0 = self.next_value;
        self.next_value += k;
        let row_of = move |j: u64| match (shape, load) {
            (Shape::Same, Load::Matching) => 0,
            (Shape::Point, Load::Matching) => j % n64,
            (Shape::Same, Load::NoMatch) => j % SIDE_ROWS,
            (Shape::Point, Load::NoMatch) => n64 + j % spare,
        };
        let d0 = self.deliveries();
        let cpu0 = self.engine_cpu_ns();
        self.pool.start(Round {
            targets,
            until_subscribed: false,
        });
        let t = Instant::now();
        let tidings = self.tidings.clone();
        let calls = futures::stream::iter(0..k)
            .map(move |j| {
                let tidings = tidings.clone();
                async move {
                    let args = encode_args(&(row_of(j), 1u64, value0 + j))?;
                    let r = tidings.call_raw(reducer, args, Identity::ZERO).await?;
                    r.outcome.map_err(|e| format!("{e:?}"))?;
                    Ok::<(), BoxError>(())
                }
            })
            .buffer_unordered(in_flight.max(1));
        let failed_calls = futures::executor::block_on(
            calls.fold(0u64, |f, r| async move { f + u64::from(r.is_err()) }),
        );
        let calls_done = t.elapsed();
        let deadline = Instant::now() + WAIT_MAX;
        while self.deliveries() < d0 + expected {
            if Instant::now() > deadline {
                return Err("deliveries did not reach their target".into());
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let mut delivered = t.elapsed();
        self.pool.wait()?;
        let applied = t.elapsed();
        if let Some(last) = self.pool.last_append_ns() {
            let start = t.saturating_duration_since(self.clock.base).as_nanos() as u64;
            delivered = Duration::from_nanos(last.saturating_sub(start));
        }
        let cpu = self.engine_cpu_ns().saturating_sub(cpu0);
        let per_s = |count: u64, d: Duration| count as f64 / d.as_secs_f64().max(1e-9);
        Ok(Sustained {
            commits: k,
            commits_per_s: per_s(k, calls_done),
            deliveries_per_s: per_s(expected, delivered),
            applied_per_s: per_s(expected, applied),
            engine_cpu_per_commit_ns: cpu as f64 / k.max(1) as f64,
            calls_time: calls_done,
            failed_calls,
            dropped: self.dropped(),
        })
    }
}

impl Fanout for Engine {
    fn engine_cpu_ns(&self) -> u64 {
        cpu_ns(&self.threads)
    }

    fn commit(&mut self, rows: u64) -> Res<Sample> {
        let k = self.next_value;
        self.next_value += 1;
        let (first, reached) = if self.hot_rows && self.shape == Shape::Point {
            (0, 0..(rows as usize).min(self.n))
        } else {
            self.shape.commit_plan(self.n, rows, k)
        };
        let target = self.offset() + 1;
        let expected = self.deliveries() + reached.len() as u64;
        let round = Round {
            targets: reached.map(|i| (i, target)).collect(),
            until_subscribed: false,
        };
        let mut round = if self.idle_subscribers {
            Some(round)
        } else {
            self.pool.start(round);
            None
        };
        let args = encode_args(&(first, rows, k))?;
        let mut call = pin!(
            self.tidings
                .call_raw(self.shape.reducer(), args, Identity::ZERO)
        );
        let mut cx = Context::from_waker(Waker::noop());
        let mut result = None;
        let mut delivered = None;
        let start = Instant::now();
        let deadline = start + WAIT_MAX;
        // Through inboxes, the inboxes time the delivery themselves: this thread only
        // waits for the call, asleep, and leaves the cores to the hubs and subscribers.
        if !self.idle_subscribers && self.pool.has_inboxes() {
            result = Some(futures::executor::block_on(call.as_mut()));
            delivered = Some(0);
        }
        // Otherwise poll the call and watch the delivery counter on this one thread:
        // spinning (with `yield_now`) for the first 300 µs, then every 20 µs so as to
        // leave the cores to the hubs and the subscribers.
        while result.is_none() || delivered.is_none() {
            if result.is_none()
                && let Poll::Ready(r) = call.as_mut().poll(&mut cx)
            {
                result = Some(r);
            }
            if delivered.is_none() && self.deliveries() >= expected {
                delivered = Some(self.clock.now_ns());
            }
            let now = Instant::now();
            if now > deadline {
                return Err("a commit was not delivered in time".into());
            }
            if now - start < Duration::from_micros(300) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        if let Some(round) = round.take() {
            self.pool.start(round);
        }
        let r = result.ok_or("no call result")??;
        r.outcome.map_err(|e| format!("touch failed: {e:?}"))?;
        if r.tx_offset != Some(target) {
            return Err(format!(
                "commit landed at {:?}, expected {target}: another writer?",
                r.tx_offset
            )
            .into());
        }
        let last = self.pool.wait()?;
        let t0 = self.clock.reducer_ns();
        let delivered = self.pool.last_append_ns().or(delivered).unwrap_or(0);
        // Polling may notice the last append late; no subscriber applies an update before
        // its queue has it, so the last apply bounds the delivery.
        let delivered = if self.idle_subscribers || last == 0 {
            delivered
        } else {
            delivered.min(last)
        };
        Ok(Sample {
            delivery_ns: delivered.saturating_sub(t0),
            e2e_ns: last.max(delivered).saturating_sub(t0),
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.tidings.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// Baseline: naive re-evaluation, one message per subscriber
// ---------------------------------------------------------------------------------------

struct NaiveShared {
    remaining: AtomicUsize,
    last_ns: AtomicU64,
    done: Mutex<bool>,
    done_cv: Condvar,
    clock: Arc<Clock>,
}

/// The naive design: re-evaluate all N subscriptions every commit and send each
/// subscriber its rows on its own channel.
pub struct Naive {
    tidings: Tidings,
    clock: Arc<Clock>,
    shape: Shape,
    n: usize,
    plans: Vec<Plan>,
    senders: Vec<mpsc::Sender<Vec<Row>>>,
    shared: Arc<NaiveShared>,
    threads: Vec<JoinHandle<()>>,
    next_value: u64,
}

impl Naive {
    /// Starts Tidings (no subscribers; it only commits) and compiles N plans.
    pub fn start(shape: Shape, n: usize, consumers: usize) -> Res<Self> {
        let clock = Clock::new();
        let (tidings, _) = start_server(&clock, item_rows_for(n))?;
        let plans = {
            let state = tidings.datastore().read();
            let caller = Caller {
                identity: Identity::ZERO,
                is_owner: false,
            };
            (0..n)
                .map(|i| {
                    compile(
                        &shape.query(i),
                        state.schema(),
                        state.schema_version(),
                        caller,
                    )?
                    .into_iter()
                    .next()
                    .ok_or_else(|| BoxError::from("a query compiled to no plan"))
                })
                .collect::<Res<Vec<Plan>>>()?
        };
        // Every consumer must own at least one receiver.
        let consumers = consumers.clamp(1, n.max(1));
        let shared = Arc::new(NaiveShared {
            remaining: AtomicUsize::new(0),
            last_ns: AtomicU64::new(0),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            clock: clock.clone(),
        });
        let mut senders = Vec::with_capacity(n);
        let mut receivers: Vec<Vec<mpsc::Receiver<Vec<Row>>>> =
            (0..consumers).map(|_| Vec::new()).collect();
        for i in 0..n {
            let (tx, rx) = mpsc::channel();
            senders.push(tx);
            receivers[i % consumers].push(rx);
        }
        let threads = receivers
            .into_iter()
            .map(|rxs| {
                let sh = shared.clone();
                std::thread::Builder::new()
                    .name("fanout-naive".into())
                    .spawn(move || naive_consume(&sh, &rxs))
                    .expect("a consumer thread starts")
            })
            .collect();
        Ok(Naive {
            tidings,
            clock,
            shape,
            n,
            plans,
            senders,
            shared,
            threads,
            next_value: 1,
        })
    }
}

fn naive_consume(sh: &NaiveShared, rxs: &[mpsc::Receiver<Vec<Row>>]) {
    loop {
        let mut last = 0;
        for rx in rxs {
            match rx.recv() {
                Ok(rows) => {
                    drop(std::hint::black_box(rows));
                    last = sh.clock.now_ns();
                }
                Err(_) => return,
            }
        }
        sh.last_ns.fetch_max(last, Ordering::SeqCst);
        if sh.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            *sh.done.lock() = true;
            sh.done_cv.notify_all();
        }
    }
}

impl Fanout for Naive {
    fn commit(&mut self, rows: u64) -> Res<Sample> {
        let k = self.next_value;
        self.next_value += 1;
        let (first, _) = self.shape.commit_plan(self.n, rows, k);
        let sh = &self.shared;
        sh.remaining.store(self.threads.len(), Ordering::SeqCst);
        sh.last_ns.store(0, Ordering::SeqCst);
        *sh.done.lock() = false;
        let r = self
            .tidings
            .call_blocking(self.shape.reducer(), &(first, rows, k))?;
        r.outcome.map_err(|e| format!("touch failed: {e:?}"))?;
        let t0 = self.clock.reducer_ns();
        let state = self.tidings.datastore().read();
        for (plan, tx) in self.plans.iter().zip(&self.senders) {
            tx.send(evaluate_rows(plan, &state))
                .map_err(|_| "a naive consumer is gone")?;
        }
        drop(state);
        let delivered = self.clock.now_ns();
        let deadline = Instant::now() + WAIT_MAX;
        let mut done = sh.done.lock();
        while !*done {
            if sh.done_cv.wait_until(&mut done, deadline).timed_out() {
                return Err("naive consumers did not finish in time".into());
            }
        }
        drop(done);
        let last = sh.last_ns.load(Ordering::SeqCst);
        Ok(Sample {
            delivery_ns: delivered.saturating_sub(t0),
            e2e_ns: last.max(delivered).saturating_sub(t0),
        })
    }
}

impl Drop for Naive {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.tidings.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// Baseline: tokio broadcast to N tasks (the floor)
// ---------------------------------------------------------------------------------------

struct CastShared {
    n: usize,
    count: AtomicUsize,
    last_ns: AtomicU64,
    done: Mutex<bool>,
    done_cv: Condvar,
    clock: Arc<Clock>,
}

/// `tokio::sync::broadcast` of one shared payload to N tasks on a 2-worker runtime.
pub struct Broadcast {
    runtime: Option<tokio::runtime::Runtime>,
    tx: Option<tokio::sync::broadcast::Sender<Arc<Vec<Row>>>>,
    shared: Arc<CastShared>,
    clock: Arc<Clock>,
}

impl Broadcast {
    /// Starts the runtime and N receiving tasks.
    pub fn start(n: usize) -> Res<Self> {
        let clock = Clock::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fanout-tokio")
            .build()?;
        let (tx, _) = tokio::sync::broadcast::channel::<Arc<Vec<Row>>>(16);
        let shared = Arc::new(CastShared {
            n,
            count: AtomicUsize::new(0),
            last_ns: AtomicU64::new(0),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            clock: clock.clone(),
        });
        for _ in 0..n {
            let mut rx = tx.subscribe();
            let sh = shared.clone();
            runtime.spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match rx.recv().await {
                        Ok(payload) => {
                            drop(std::hint::black_box(payload));
                            sh.last_ns.fetch_max(sh.clock.now_ns(), Ordering::SeqCst);
                            if sh.count.fetch_add(1, Ordering::SeqCst) + 1 == sh.n {
                                *sh.done.lock() = true;
                                sh.done_cv.notify_all();
                            }
                        }
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        Ok(Broadcast {
            runtime: Some(runtime),
            tx: Some(tx),
            shared,
            clock,
        })
    }
}

impl Fanout for Broadcast {
    fn commit(&mut self, rows: u64) -> Res<Sample> {
        let payload: Arc<Vec<Row>> = Arc::new(
            (0..rows)
                .map(|i| Row::new(vec![Value::U64(i), Value::U64(i)]))
                .collect(),
        );
        let sh = &self.shared;
        sh.count.store(0, Ordering::SeqCst);
        sh.last_ns.store(0, Ordering::SeqCst);
        *sh.done.lock() = false;
        let tx = self.tx.as_ref().ok_or("broadcast stopped")?;
        let t0 = self.clock.now_ns();
        tx.send(payload).map_err(|_| "no receivers")?;
        let deadline = Instant::now() + WAIT_MAX;
        let mut done = sh.done.lock();
        while !*done {
            if sh.done_cv.wait_until(&mut done, deadline).timed_out() {
                return Err("broadcast receivers did not all wake".into());
            }
        }
        drop(done);
        let last = sh.last_ns.load(Ordering::SeqCst).saturating_sub(t0);
        Ok(Sample {
            delivery_ns: last,
            e2e_ns: last,
        })
    }
}

impl Drop for Broadcast {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Latency statistics
// ---------------------------------------------------------------------------------------

/// Latency percentiles over a run of commits.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Commits measured.
    pub samples: usize,
    /// Delivery p50, ns.
    pub delivery_p50: u64,
    /// Delivery p99, ns.
    pub delivery_p99: u64,
    /// End-to-end p50, ns.
    pub e2e_p50: u64,
    /// End-to-end p99, ns.
    pub e2e_p99: u64,
    /// Engine CPU per commit, ns (Tidings only; 0 otherwise).
    pub engine_cpu_ns: u64,
}

/// Runs `warmup` unmeasured commits, then up to `commits` measured ones (at least
/// `min_commits`, and no more once `budget` has passed).
pub fn measure(
    f: &mut dyn Fanout,
    rows: u64,
    warmup: usize,
    min_commits: usize,
    commits: usize,
    budget: Duration,
) -> Res<Stats> {
    for _ in 0..warmup {
        f.commit(rows)?;
    }
    let cpu0 = f.engine_cpu_ns();
    let t = Instant::now();
    let mut samples = Vec::with_capacity(commits);
    while samples.len() < commits && (samples.len() < min_commits || t.elapsed() < budget) {
        samples.push(f.commit(rows)?);
    }
    let cpu = f.engine_cpu_ns().saturating_sub(cpu0);
    Ok(stats(&samples, cpu))
}

/// Like [`measure`] for two designs at once, alternating their commits so that both see
/// the same machine noise; for ratios.
pub fn measure_paired(
    a: &mut dyn Fanout,
    b: &mut dyn Fanout,
    rows: u64,
    commits: usize,
    budget: Duration,
) -> Res<(Stats, Stats)> {
    for _ in 0..10 {
        a.commit(rows)?;
        b.commit(rows)?;
    }
    let (cpu_a, cpu_b) = (a.engine_cpu_ns(), b.engine_cpu_ns());
    let t = Instant::now();
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    while sa.len() < commits && (sa.len() < 10 || t.elapsed() < budget) {
        sa.push(a.commit(rows)?);
        sb.push(b.commit(rows)?);
    }
    Ok((
        stats(&sa, a.engine_cpu_ns().saturating_sub(cpu_a)),
        stats(&sb, b.engine_cpu_ns().saturating_sub(cpu_b)),
    ))
}

fn stats(samples: &[Sample], cpu: u64) -> Stats {
    let mut d: Vec<u64> = samples.iter().map(|s| s.delivery_ns).collect();
    let mut e: Vec<u64> = samples.iter().map(|s| s.e2e_ns).collect();
    d.sort_unstable();
    e.sort_unstable();
    Stats {
        samples: samples.len(),
        delivery_p50: percentile(&d, 50.0),
        delivery_p99: percentile(&d, 99.0),
        e2e_p50: percentile(&e, 50.0),
        e2e_p99: percentile(&e, 99.0),
        engine_cpu_ns: cpu / samples.len().max(1) as u64,
    }
}

// ---------------------------------------------------------------------------------------
// Snapshot storm
// ---------------------------------------------------------------------------------------

/// What the snapshot storm measured.
#[derive(Clone, Debug, Default)]
pub struct Storm {
    /// Subscribers.
    pub subscribers: usize,
    /// Rows each snapshot holds.
    pub rows: u64,
    /// First subscribe sent to last snapshot appended to its queue.
    pub all_delivered: Duration,
    /// First subscribe sent to last snapshot applied.
    pub all_applied: Duration,
    /// Reducer call latency before the storm: (p50, p99, calls).
    pub calm: (u64, u64, usize),
    /// Reducer call latency during the storm: (p50, p99, max, calls).
    pub during: (u64, u64, u64, usize),
    /// RSS growth from the storm.
    pub rss_growth: u64,
}

/// `subscribers` clients subscribe at once to `SELECT * FROM item` (10,000 rows) while
/// another thread keeps calling a reducer on a table nobody subscribes to.
pub fn storm(subscribers: usize, consumers: usize) -> Res<Storm> {
    let clock = Clock::new();
    let (tidings, _) = start_server(&clock, ITEM_ROWS)?;
    let clients = connect_clients(&tidings, subscribers, consumers, Delivery::Inbox);
    let flags = clients.flags.clone();
    let pool = Pool::new(clients, consumers, clock.clone());
    std::thread::sleep(Duration::from_millis(100));
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (tidings, clock, stop) = (tidings.clone(), clock.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fanout-caller".into())
            .spawn(move || -> Res<Vec<(u64, u64)>> {
                let mut calls = Vec::new();
                let mut k = 0u64;
                while !stop.load(Ordering::Acquire) {
                    k += 1;
                    let start = clock.now_ns();
                    let r = tidings.call_blocking("touch_side", &(k % SIDE_ROWS, 1u64, k))?;
                    r.outcome.map_err(|e| format!("touch_side failed: {e:?}"))?;
                    calls.push((start, clock.now_ns() - start));
                }
                Ok(calls)
            })?
    };
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = rss_bytes();
    let watcher = {
        let (tidings, clock) = (tidings.clone(), clock.clone());
        let target = tidings.metrics().deliveries.load(Ordering::Relaxed) + subscribers as u64;
        std::thread::Builder::new()
            .name("fanout-watcher".into())
            .spawn(move || {
                let deadline = Instant::now() + WAIT_MAX;
                while tidings.metrics().deliveries.load(Ordering::Relaxed) < target
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                clock.now_ns()
            })?
    };
    let storm_start = clock.now_ns();
    subscribe_all(pool.conns(), &flags, |_| "SELECT * FROM item".to_string())?;
    let last = pool.run(Round {
        targets: (0..subscribers).map(|i| (i, 0)).collect(),
        until_subscribed: true,
    })?;
    let polled = watcher.join().map_err(|_| "the watcher thread panicked")?;
    // The inboxes stamp their appends; the watcher, competing with the consumers for the
    // cores, may notice the last one late.
    let delivered = pool.last_append_ns().map_or(polled, |at| at.min(polled));
    let rss_growth = rss_bytes().saturating_sub(rss0);
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Release);
    let calls = caller.join().map_err(|_| "the caller thread panicked")??;
    let mut calm: Vec<u64> = calls
        .iter()
        .filter(|(s, _)| *s < storm_start)
        .map(|(_, l)| *l)
        .collect();
    // A call overlapping the storm in any way counts as during it.
    let mut during: Vec<u64> = calls
        .iter()
        .filter(|(s, l)| s + l >= storm_start && *s <= last)
        .map(|(_, l)| *l)
        .collect();
    calm.sort_unstable();
    during.sort_unstable();
    drop(pool);
    tidings.shutdown();
    Ok(Storm {
        subscribers,
        rows: ITEM_ROWS,
        all_delivered: Duration::from_nanos(delivered.saturating_sub(storm_start)),
        all_applied: Duration::from_nanos(last.saturating_sub(storm_start)),
        calm: (percentile(&calm, 50.0), percentile(&calm, 99.0), calm.len()),
        during: (
            percentile(&during, 50.0),
            percentile(&during, 99.0),
            during.last().copied().unwrap_or(0),
            during.len(),
        ),
        rss_growth,
    })
}

// ---------------------------------------------------------------------------------------
// Memory probe (runs in a child process)
// ---------------------------------------------------------------------------------------

/// In this process: RSS growth from connecting `n` subscribers of `shape` (snapshots
/// applied).
fn memory_probe(shape: Shape, n: usize) -> Res<u64> {
    let clock = Clock::new();
    let (tidings, _) = start_server(&clock, item_rows_for(n))?;
    std::thread::sleep(Duration::from_millis(50));
    let rss0 = rss_bytes();
    let clients = connect_clients(&tidings, n, 2, Delivery::Inbox);
    subscribe_all(&clients.conns, &clients.flags, |i| shape.query(i))?;
    let pool = Pool::new(clients, 2, clock);
    pool.run(Round {
        targets: (0..n).map(|i| (i, 0)).collect(),
        until_subscribed: true,
    })?;
    std::thread::sleep(Duration::from_millis(50));
    let grown = rss_bytes().saturating_sub(rss0);
    drop(pool);
    tidings.shutdown();
    Ok(grown)
}

/// RSS growth per subscriber, measured in a fresh child process.
fn memory_per_subscriber(shape: Shape, n: usize) -> Res<f64> {
    let exe = std::env::current_exe()?;
    let arg = match shape {
        Shape::Same => "same",
        Shape::Point => "point",
    };
    let out = std::process::Command::new(exe)
        .args(["--memory-probe", arg, &n.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "memory probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rss_growth_bytes="))
        .ok_or("memory probe printed no figure")?
        .trim()
        .parse()?;
    Ok(bytes as f64 / n.max(1) as f64)
}

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

fn fmt_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

struct Options {
    max_n: usize,
    ns: Option<Vec<usize>>,
    shapes: Vec<Shape>,
    rows: Vec<u64>,
    baselines: bool,
    sustained: bool,
    consumers: usize,
    commits: usize,
    budget: Duration,
    /// Commits per system of the paired point-query comparison.
    paired_commits: usize,
    /// Fresh pairings of the paired comparison.
    paired_rounds: usize,
    storm_subscribers: usize,
    storm: bool,
    memory: bool,
    /// The first is the one the design targets are read from.
    delivery: Vec<Delivery>,
}

fn parse_args() -> Res<Option<Options>> {
    let mut o = Options {
        max_n: 10_000,
        ns: None,
        shapes: vec![Shape::Same, Shape::Point],
        rows: vec![1, 100],
        baselines: true,
        sustained: true,
        consumers: 2,
        commits: 200,
        budget: Duration::from_millis(2_000),
        // The paired ratios hold p50s of ~20 µs to within 1.2x. 200 commits of each system
        // span ~10 ms of a shared machine, and one preemption moved the ratio by 2x; a few
        // thousand span a second and repeat to within ~10%.
        paired_commits: 3_000,
        paired_rounds: 3,
        storm_subscribers: 2_048,
        storm: true,
        memory: true,
        delivery: vec![Delivery::Inbox],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let value = |i: usize| -> Res<&String> {
        args.get(i + 1)
            .ok_or_else(|| format!("{} needs a value", args[i]).into())
    };
    while i < args.len() {
        let mut step = 2;
        match args[i].as_str() {
            "--max-n" => o.max_n = value(i)?.parse()?,
            "--n" => {
                o.ns = Some(
                    value(i)?
                        .split(',')
                        .map(|v| v.trim().parse())
                        .collect::<Result<_, _>>()?,
                )
            }
            "--rows" => {
                o.rows = value(i)?
                    .split(',')
                    .map(|v| v.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--shape" => {
                o.shapes = match value(i)?.as_str() {
                    "same" => vec![Shape::Same],
                    "point" => vec![Shape::Point],
                    _ => vec![Shape::Same, Shape::Point],
                }
            }
            "--no-baselines" => {
                o.baselines = false;
                step = 1;
            }
            "--no-sustained" => {
                o.sustained = false;
                step = 1;
            }
            "--consumers" => o.consumers = value(i)?.parse()?,
            "--delivery" => {
                o.delivery = match value(i)?.as_str() {
                    "inbox" => vec![Delivery::Inbox],
                    "queues" => vec![Delivery::Queues],
                    "both" => vec![Delivery::Inbox, Delivery::Queues],
                    other => {
                        return Err(format!(
                            "--delivery takes inbox, queues or both, not `{other}`"
                        )
                        .into());
                    }
                }
            }
            "--commits" => o.commits = value(i)?.parse()?,
            "--budget-ms" => o.budget = Duration::from_millis(value(i)?.parse()?),
            "--paired-commits" => o.paired_commits = value(i)?.parse()?,
            "--paired-rounds" => o.paired_rounds = value(i)?.parse()?,
            "--storm-subscribers" => o.storm_subscribers = value(i)?.parse()?,
            "--no-storm" => {
                o.storm = false;
                step = 1;
            }
            "--no-memory" => {
                o.memory = false;
                step = 1;
            }
            "--memory-probe" => {
                let shape = match value(i)?.as_str() {
                    "same" => Shape::Same,
                    _ => Shape::Point,
                };
                let n: usize = args.get(i + 2).ok_or("--memory-probe SHAPE N")?.parse()?;
                println!("rss_growth_bytes={}", memory_probe(shape, n)?);
                return Ok(None);
            }
            "--help" | "-h" => {
                println!(
                    "fanout [--max-n N | --n N1,N2,..] [--shape same|point|both] \
                     [--rows R1,R2] [--consumers C] [--delivery inbox|queues|both] \
                     [--commits K] [--budget-ms MS] [--paired-commits K] [--paired-rounds R] \
                     [--storm-subscribers S] [--no-storm] [--no-memory] [--no-baselines] \
                     [--no-sustained]\n\
                     defaults: --max-n 10000 (N = 1, 100, 1000, 10000) --shape both \
                     --rows 1,100 --consumers 2 --delivery inbox --commits 200 --budget-ms 2000 \
                     --paired-commits 3000 --paired-rounds 3 --storm-subscribers 2048"
                );
                return Ok(None);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)").into()),
        }
        i += step;
    }
    Ok(Some(o))
}

fn machine_notes(o: &Options) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    println!(
        "machine: {}, Linux {kernel}; load average at start: {}",
        cores_and_cpu(),
        load_average()
    );
    println!(
        "setup: in-memory, 2 arbiters (hubs), {} consumer threads draining the subscribers, \
         t0 = reducer start; up to {} commits per row (at least 10, stops after {} ms); \
         p99 is nearest-rank, so with few commits it is close to the maximum",
        o.consumers,
        o.commits,
        o.budget.as_millis()
    );
    if cfg!(debug_assertions) {
        println!("WARNING: debug build; run with --release for meaningful figures");
    }
    println!();
}

/// Point queries at N = 1 and N = `n`, measured alternately, in rounds of fresh systems.
struct Paired {
    n: usize,
    rounds: Vec<PairedRound>,
    /// Sustained runs, on the last round's systems: (N = 1, N = `n`).
    sustained: (Sustained, Sustained),
}

/// One pairing of a fresh N = 1 system with a fresh N = `n` one.
struct PairedRound {
    one: Stats,
    big: Stats,
    /// N = `n`, every commit to row 0 (one hot subscriber), alternating with N = 1.
    hot: Stats,
}

impl Paired {
    /// The per-round ratios of `big` to `one` by `f`, and their median.
    fn ratios(&self, f: fn(&Stats) -> u64) -> (Vec<f64>, f64) {
        let mut r: Vec<f64> = self
            .rounds
            .iter()
            .map(|x| f(&x.big) as f64 / f(&x.one).max(1) as f64)
            .collect();
        let listed = r.clone();
        r.sort_by(f64::total_cmp);
        (listed, r.get(r.len() / 2).copied().unwrap_or(f64::NAN))
    }
}

/// Sustained runs taken as one.
fn combine(runs: &[Sustained]) -> Sustained {
    let commits: u64 = runs.iter().map(|r| r.commits).sum();
    let time: Duration = runs.iter().map(|r| r.calls_time).sum();
    let weighted = |f: fn(&Sustained) -> f64| {
        runs.iter().map(|r| f(r) * r.commits as f64).sum::<f64>() / commits.max(1) as f64
    };
    Sustained {
        commits,
        commits_per_s: commits as f64 / time.as_secs_f64().max(1e-9),
        deliveries_per_s: weighted(|r| r.deliveries_per_s),
        applied_per_s: weighted(|r| r.applied_per_s),
        engine_cpu_per_commit_ns: weighted(|r| r.engine_cpu_per_commit_ns),
        calls_time: time,
        failed_calls: runs.iter().map(|r| r.failed_calls).sum(),
        dropped: runs.iter().map(|r| r.dropped).max().unwrap_or(0),
    }
}

#[derive(Clone, Default)]
struct Pair {
    engine: Stats,
    idle: Stats,
    naive: Stats,
}

fn main() -> Res<()> {
    let Some(o) = parse_args()? else {
        return Ok(());
    };
    let run_start = Instant::now();
    machine_notes(&o);
    let ns: Vec<usize> = match &o.ns {
        Some(ns) => ns.clone(),
        None => [1, 100, 1_000, 10_000]
            .into_iter()
            .filter(|&n| n <= o.max_n)
            .collect(),
    };
    let max_n = ns.iter().copied().max().ok_or("no N to run")?;
    if o.rows.iter().any(|&r| r == 0 || r > FEED_ROWS) {
        return Err(format!("--rows must be within 1..={FEED_ROWS}").into());
    }

    // Broadcast floor, per N.
    let mut floor = Vec::new();
    for &n in ns.iter().filter(|_| o.baselines) {
        let mut b = Broadcast::start(n)?;
        floor.push((n, measure(&mut b, 1, 10, 10, o.commits, o.budget)?));
    }
    let floor_of = |n: usize| floor.iter().find(|(m, _)| *m == n).map(|(_, s)| s.clone());

    // Latency per shape, N, rows; sustained per shape and N.
    let mut lat: Vec<(Shape, Delivery, usize, u64, Pair)> = Vec::new();
    let mut sus: Vec<(Shape, Delivery, usize, Sustained, Duration)> = Vec::new();
    let mut no_match = None;
    let primary = o.delivery[0];
    for &shape in &o.shapes {
        for &n in &ns {
            for &delivery in &o.delivery {
                let mut e = Engine::start_with(shape, n, o.consumers, delivery)?;
                let mut results = Vec::new();
                for &rows in &o.rows {
                    let s = measure(&mut e, rows, 10, 10, o.commits, o.budget)?;
                    e.idle_subscribers = true;
                    let idle = measure(&mut e, rows, 3, 10, o.commits, o.budget / 2)?;
                    e.idle_subscribers = false;
                    results.push((rows, s, idle));
                }
                let k = match shape {
                    Shape::Same => (2_000_000 / n as u64).clamp(200, 20_000),
                    Shape::Point => 20_000,
                };
                if o.sustained {
                    let s = e.sustained(Load::Matching, k, IN_FLIGHT)?;
                    sus.push((shape, delivery, n, s, e.setup));
                    if shape == Shape::Point && n == 1_000.min(max_n) && delivery == primary {
                        no_match = Some((n, e.sustained(Load::NoMatch, 50_000, IN_FLIGHT)?));
                    }
                }
                drop(e);
                for (rows, s, idle) in results {
                    // The baseline does not depend on the delivery: run it once.
                    let naive = if o.baselines && delivery == primary {
                        let mut nv = Naive::start(shape, n, o.consumers)?;
                        measure(&mut nv, rows, 3, 10, o.commits, o.budget)?
                    } else {
                        Stats::default()
                    };
                    lat.push((
                        shape,
                        delivery,
                        n,
                        rows,
                        Pair {
                            engine: s,
                            idle,
                            naive,
                        },
                    ));
                }
            }
        }
    }

    let mut memory = Vec::new();
    if o.memory {
        for &shape in &o.shapes {
            for &n in ns.iter().filter(|&&n| n >= 1_000) {
                memory.push((shape, n, memory_per_subscriber(shape, n)?));
            }
        }
    }
    // Point queries, N = 1 against the largest N, both alive, commits alternating; in
    // rounds of fresh systems, since one pairing's ratio moves with where its threads and
    // memory landed more than with its sample size.
    let paired = if o.shapes.contains(&Shape::Point) && max_n > 1 {
        // Both systems' commits count toward the budget, and it must not cut the sample
        // short on a slow machine.
        let budget = o.budget.max(Duration::from_secs(10));
        let k = o.paired_commits;
        let mut rounds = Vec::new();
        let mut last = None;
        for _ in 0..o.paired_rounds.max(1) {
            drop(last.take());
            let mut one = Engine::start(Shape::Point, 1, o.consumers)?;
            let mut big = Engine::start(Shape::Point, max_n, o.consumers)?;
            let (lat_one, lat_big) = measure_paired(&mut one, &mut big, 1, k, budget)?;
            big.hot_rows = true;
            let (_, hot) = measure_paired(&mut one, &mut big, 1, k, budget)?;
            big.hot_rows = false;
            rounds.push(PairedRound {
                one: lat_one,
                big: lat_big,
                hot,
            });
            last = Some((one, big));
        }
        let (mut one, mut big) = last.ok_or("no paired round ran")?;
        let (mut sus_one, mut sus_big) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            sus_one.push(one.sustained(Load::Matching, 5_000, IN_FLIGHT)?);
            sus_big.push(big.sustained(Load::Matching, 5_000, IN_FLIGHT)?);
        }
        Some(Paired {
            n: max_n,
            rounds,
            sustained: (combine(&sus_one), combine(&sus_big)),
        })
    } else {
        None
    };
    let storm_result = if o.storm {
        Some(storm(o.storm_subscribers, o.consumers)?)
    } else {
        None
    };

    // ---- print ----
    println!("## Latency: one commit, t0 = reducer start");
    println!();
    let mut rows = Vec::new();
    for (shape, delivery, n, r, x) in &lat {
        let fl = floor_of(*n).unwrap_or_default();
        let ratio = if *shape == Shape::Same && fl.delivery_p99 > 0 {
            format!(
                "{:.2}x",
                x.engine.delivery_p99 as f64 / fl.delivery_p99 as f64
            )
        } else {
            "-".into()
        };
        rows.push(vec![
            format!("{} ({})", shape.name(), delivery.name()),
            r.to_string(),
            n.to_string(),
            x.engine.samples.to_string(),
            fmt_ns(x.engine.delivery_p50),
            fmt_ns(x.engine.delivery_p99),
            fmt_ns(x.idle.delivery_p50),
            fmt_ns(x.idle.delivery_p99),
            fmt_ns(x.engine.e2e_p50),
            fmt_ns(x.engine.e2e_p99),
            fmt_ns(x.engine.engine_cpu_ns),
            fmt_ns(x.naive.delivery_p50),
            fmt_ns(x.naive.delivery_p99),
            if *shape == Shape::Same {
                fmt_ns(fl.delivery_p99)
            } else {
                "-".into()
            },
            ratio,
        ]);
    }
    print_table(
        &[
            "subscribers",
            "rows",
            "N",
            "commits",
            "delivery p50",
            "delivery p99",
            "idle: delivery p50",
            "idle: delivery p99",
            "e2e p50",
            "e2e p99",
            "engine CPU/commit",
            "naive delivery p50",
            "naive delivery p99",
            "broadcast p99",
            "delivery p99 / broadcast p99",
        ],
        3,
        &rows,
    );
    println!();
    println!(
        "delivery: last affected queue appended while the consumers drain the queues on the \
         same cores; idle: the same with the consumers started only once the commit is \
         delivered (the hubs' own cost); e2e: last affected subscriber applied it. inbox: \
         the subscribers of each consumer thread share its inbox, and each inbox records its \
         last append; own queues: one queue per subscriber, delivery observed by polling, to \
         within ~20-70 µs once past 300 µs. naive: re-evaluate all N queries + one mpsc \
         message each. broadcast: tokio broadcast to N tasks on 2 workers, send -> last task \
         woken (p50 / p99 below)."
    );
    let mut frows = Vec::new();
    for (n, s) in &floor {
        frows.push(vec![
            "broadcast".into(),
            "-".into(),
            n.to_string(),
            s.samples.to_string(),
            fmt_ns(s.delivery_p50),
            fmt_ns(s.delivery_p99),
        ]);
    }
    println!();
    print_table(
        &[
            "floor",
            "rows",
            "N",
            "sends",
            "last woken p50",
            "last woken p99",
        ],
        3,
        &frows,
    );

    println!();
    println!("## Sustained: single-row commits, {IN_FLIGHT} calls in flight");
    println!();
    let mem_of = |shape: Shape, n: usize| {
        memory
            .iter()
            .find(|(s, m, _)| *s == shape && *m == n)
            .map_or("-".to_string(), |(_, _, b)| fmt_bytes(*b))
    };
    let mut srows = Vec::new();
    for (shape, delivery, n, s, setup) in &sus {
        srows.push(vec![
            format!("{} ({})", shape.name(), delivery.name()),
            "1".into(),
            n.to_string(),
            s.commits.to_string(),
            fmt_rate(s.commits_per_s),
            fmt_rate(s.deliveries_per_s),
            fmt_rate(s.applied_per_s),
            fmt_ns(s.engine_cpu_per_commit_ns as u64),
            format!("{}/{}", s.failed_calls, s.dropped),
            fmt_ns(setup.as_nanos() as u64),
            mem_of(*shape, *n),
        ]);
    }
    if let Some((n, s)) = &no_match {
        srows.push(vec![
            "point, no match".into(),
            "1".into(),
            n.to_string(),
            s.commits.to_string(),
            fmt_rate(s.commits_per_s),
            "-".into(),
            "-".into(),
            fmt_ns(s.engine_cpu_per_commit_ns as u64),
            format!("{}/{}", s.failed_calls, s.dropped),
            "-".into(),
            "-".into(),
        ]);
    }
    print_table(
        &[
            "subscribers",
            "rows",
            "N",
            "commits",
            "commits/s",
            "deliveries/s",
            "applied/s",
            "engine CPU/commit",
            "failed/dropped",
            "setup (subscribe N)",
            "RSS/subscriber",
        ],
        3,
        &srows,
    );
    println!();
    println!(
        "deliveries/s: queue appends until the last one; applied/s: until every subscriber \
         applied its last update; setup: connect + subscribe N at once until every \
         snapshot is applied; RSS/subscriber: fresh child process, snapshots applied."
    );

    if let Some(p) = &paired {
        println!();
        println!(
            "## Point queries, N = 1 vs N = {}: both running, commits alternating",
            p.n
        );
        println!();
        let mut prow = Vec::new();
        for (i, r) in p.rounds.iter().enumerate() {
            let round = (i + 1).to_string();
            let cells = |n: String, l: &Stats| {
                vec![
                    round.clone(),
                    n,
                    l.samples.to_string(),
                    fmt_ns(l.delivery_p50),
                    fmt_ns(l.delivery_p99),
                    fmt_ns(l.e2e_p50),
                    fmt_ns(l.engine_cpu_ns),
                ]
            };
            prow.push(cells("1".into(), &r.one));
            prow.push(cells(p.n.to_string(), &r.big));
            prow.push(cells(format!("{}, row 0 only", p.n), &r.hot));
        }
        print_table(
            &[
                "round",
                "N",
                "commits",
                "delivery p50",
                "delivery p99",
                "e2e p50",
                "engine CPU/commit",
            ],
            2,
            &prow,
        );
        println!();
        let (one_s, big_s) = &p.sustained;
        print_table(
            &["N", "sustained commits", "commits/s", "engine CPU/commit"],
            1,
            &[(1, one_s), (p.n, big_s)]
                .iter()
                .map(|(n, s)| {
                    vec![
                        n.to_string(),
                        s.commits.to_string(),
                        fmt_rate(s.commits_per_s),
                        fmt_ns(s.engine_cpu_per_commit_ns as u64),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        println!();
        println!(
            "\"row 0 only\": the same N subscribers, but every commit updates row 0, so the \
             same row, registry entry, session and queue stay in cache; against the plain \
             N = {} row this separates cost that grows with N from the cost of touching \
             cold data.",
            p.n
        );
    }

    if let Some(s) = &storm_result {
        println!();
        println!(
            "## Snapshot storm: {} subscribers subscribe at once to `SELECT * FROM item` ({} rows)",
            s.subscribers, s.rows
        );
        println!();
        println!(
            "all snapshots in their queues after {} (manager evaluation + hubs)",
            fmt_ns(s.all_delivered.as_nanos() as u64)
        );
        println!(
            "all snapshots applied after {} ({} rows delivered and cached, RSS +{})",
            fmt_ns(s.all_applied.as_nanos() as u64),
            s.subscribers as u64 * s.rows,
            fmt_bytes(s.rss_growth as f64)
        );
        println!(
            "reducer calls (other table) before the storm: p50 {}, p99 {} ({} calls)",
            fmt_ns(s.calm.0),
            fmt_ns(s.calm.1),
            s.calm.2
        );
        println!(
            "reducer calls during the storm:               p50 {}, p99 {}, max {} ({} calls)",
            fmt_ns(s.during.0),
            fmt_ns(s.during.1),
            fmt_ns(s.during.2),
            s.during.3,
        );
    }

    // ---- targets ----
    println!();
    println!("## Design targets (N = {max_n})");
    println!();
    let find = |shape: Shape, n: usize, rows: u64| {
        lat.iter()
            .find(|(s, d, m, r, _)| *s == shape && *d == primary && *m == n && *r == rows)
            .map(|(_, _, _, _, x)| x.clone())
    };
    let find_sus = |shape: Shape, n: usize| {
        sus.iter()
            .find(|(s, d, m, _, _)| *s == shape && *d == primary && *m == n)
            .map(|(_, _, _, s, _)| *s)
    };
    let mut checks: Vec<Vec<String>> = Vec::new();
    let mut check = |what: &str, target: &str, measured: String, met: bool| {
        checks.push(vec![
            what.to_string(),
            target.to_string(),
            measured,
            if met { "met" } else { "MISSED" }.to_string(),
        ]);
    };
    if let (Some(x), Some(fl)) = (find(Shape::Same, max_n, 1), floor_of(max_n)) {
        let d = x.engine.delivery_p99;
        check(
            "same query, 1 row: delivery p99",
            "<= 1 ms",
            fmt_ns(d),
            d <= 1_000_000,
        );
        let ratio = d as f64 / fl.delivery_p99.max(1) as f64;
        check(
            "same query, 1 row: delivery p99 / broadcast p99",
            "<= 0.25x",
            format!("{ratio:.2}x ({} / {})", fmt_ns(d), fmt_ns(fl.delivery_p99)),
            ratio <= 0.25,
        );
        check(
            "same query, 1 row: end-to-end p99",
            "< 5 ms",
            fmt_ns(x.engine.e2e_p99),
            x.engine.e2e_p99 < 5_000_000,
        );
    }
    if let Some(s) = find_sus(Shape::Same, max_n) {
        check(
            "same query: sustained deliveries/s",
            ">= 50 M/s",
            fmt_rate(s.deliveries_per_s),
            s.deliveries_per_s >= 50e6,
        );
    }
    if let Some(p) = &paired {
        let listed = |rs: &[f64]| {
            rs.iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (rs, r) = p.ratios(|s| s.delivery_p50);
        check(
            "point queries, 1 row: delivery p50 vs N = 1 (paired, median of rounds)",
            "<= 1.2x",
            format!("{r:.2}x (rounds: {})", listed(&rs)),
            r <= 1.2,
        );
        let (rs, r) = p.ratios(|s| s.engine_cpu_ns);
        check(
            "point queries, 1 row: engine CPU/commit vs N = 1 (paired, median of rounds)",
            "<= 1.2x",
            format!("{r:.2}x (rounds: {})", listed(&rs)),
            r <= 1.2,
        );
        let (one_s, big_s) = &p.sustained;
        let r = big_s.commits_per_s / one_s.commits_per_s.max(1e-9);
        check(
            "point queries: sustained commits/s vs N = 1 (paired)",
            ">= 0.6x",
            format!(
                "{r:.2}x ({} / {})",
                fmt_rate(big_s.commits_per_s),
                fmt_rate(one_s.commits_per_s)
            ),
            r >= 0.6,
        );
    }
    if let Some((n, s)) = &no_match {
        check(
            &format!("commits/s, {IN_FLIGHT} in flight, {n} subscribers not matching"),
            ">= 100 k/s",
            fmt_rate(s.commits_per_s),
            s.commits_per_s >= 100e3,
        );
    }
    print_table(&["target", "goal", "measured", "result"], 4, &checks);
    println!();
    println!(
        "whole run: {:.1} s; load average at end: {}",
        run_start.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(())
}
