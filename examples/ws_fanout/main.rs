//! WebSocket fan-out benchmark on loopback: one commit, N WebSocket clients.
//!
//! ```text
//! cargo run --release --example ws_fanout                          # N = 10, 100, 1,000
//! cargo run --release --example ws_fanout -- --clients 1000 --commits 400
//! cargo run --release --example ws_fanout -- --memory              # RSS per idle session
//! cargo run --release --example ws_fanout -- --stalled             # plus one stuck client
//! cargo run --release --example ws_fanout -- --help
//! ```
//!
//! # Workload
//!
//! Tidings serves the demo chat module ([`tidings::demo::chat_module`]) with the real
//! WebSocket server ([`tidings::actors::server::Server`], default limits, in memory). N
//! clients connect over v2 MessagePack and subscribe to the same query,
//! `SELECT * FROM message`. The benchmark thread calls `send_message(text)` in process,
//! one row per commit; every commit reaches all N clients as one `TransactionUpdate`.
//!
//! # What is measured
//!
//! - *latency*: from the commit to the last of the N clients having read the frame. The
//!   commit instant is taken on the caller's side, right after `call_blocking` returns
//!   (the transaction actor answers once the commit is merged); a second column starts
//!   the clock before the call instead, so it also holds the reducer and the commit.
//!   Commits are made one at a time; p50 and p99 over the measured commits.
//! - *sustained*: K commits back to back (each call waits for its reply, not for the
//!   clients); deliveries/s = K x N frames / (first call to last frame read).
//! - *bytes*: the frame every client reads, and from the server's `Metrics` per commit:
//!   `bytes_sent` (N copies of the frame) against `frames_encoded` and
//!   `frame_bytes_encoded` (one frame per hub, whatever N is).
//! - *memory* (`--memory`): RSS growth of a child process running only the server (this
//!   binary with `--serve`) while this process opens S idle sessions to it (default
//!   10,000; each has read its `InitialConnection`), divided by S; once connected only,
//!   once also subscribed. The child's RSS is read from `/proc/<pid>/status`, so the
//!   clients' own memory is not counted.
//! - *stalled* (`--stalled`): the latency again, right after, with one more subscriber
//!   that stops reading once subscribed; the N others' p50/p99 with it against without.
//!
//! # The floor
//!
//! In the same run, a bare actix-web WebSocket endpoint with no engine (`floor.rs`):
//! the same framework, one worker and one actix-web-actors session actor per connection
//! like the real server, and a broadcast of the same bytes (a real `TransactionUpdate`
//! frame captured from the Tidings run) to its N sessions, measured the same way from the
//! broadcast call. Tidings and the floor are measured in alternating blocks of commits,
//! so load from other processes hits both alike. The ratios are Tidings / floor.
//!
//! # Clients
//!
//! Raw TCP with a minimal WebSocket frame reader (`client.rs`), a few threads (default 2)
//! each running many connections on a single-threaded tokio runtime: a frame costs the
//! client one wake-up and one `read`, nothing is decoded after setup, and the client
//! side is identical for both servers. Both servers and the clients share the machine's
//! cores, so every figure includes the clients' reads.
//!
//! # Open files
//!
//! A run needs a descriptor per socket on both ends. If the soft limit is too low, the
//! example raises it to the hard limit with util-linux `prlimit` (the `rlimit` crate is
//! not in the offline registry, and the workspace forbids `unsafe`); if that is not
//! enough, it stops with a message naming `ulimit -n`.

pub mod client;
#[path = "../common/mod.rs"]
mod common;
pub mod floor;

use std::error::Error;
use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use client::{Clients, Setup, Tally};
use common::{cores_and_cpu, fmt_ns, fmt_rate, load_average, percentile, print_table};
use floor::Floor;
use tidings::actors::server::Server;
use tidings::actors::server::token::TokenKey;
use tidings::actors::server::ws::WsLimits;
use tidings::actors::wire::v2::{self, ServerMessageWire};
use tidings::{Tidings, demo};

/// Errors of the benchmark harness.
pub type BoxError = Box<dyn Error + Send + Sync>;
/// A harness result.
pub type Res<T> = Result<T, BoxError>;

/// Longest any single wait may take before the run reports an error.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// Commits per alternating block (Tidings, then the floor).
const BLOCK: usize = 10;
/// Unmeasured commits before the measured ones, per design and N.
const WARMUP: usize = 20;
/// The latency target at the largest N: Tidings p99 / floor p99.
const P99_RATIO_MAX: f64 = 1.3;
/// The memory target: RSS growth per idle session, KiB.
const KIB_PER_SESSION_MAX: f64 = 24.0;

struct Options {
    clients: Vec<usize>,
    commits: usize,
    sustained: Option<usize>,
    client_threads: usize,
    arbiters: Option<usize>,
    memory: bool,
    sessions: usize,
    serve: bool,
    stalled: bool,
}

fn parse_args() -> Res<Option<Options>> {
    let mut o = Options {
        clients: vec![10, 100, 1_000],
        commits: 200,
        sustained: None,
        client_threads: 2,
        arbiters: None,
        memory: false,
        sessions: 10_000,
        serve: false,
        stalled: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || -> Res<&String> {
            args.get(i + 1)
                .ok_or_else(|| format!("{} needs a value", args[i]).into())
        };
        let mut step = 2;
        match args[i].as_str() {
            "--clients" => {
                o.clients = value()?
                    .split(',')
                    .map(|n| n.trim().replace('_', "").parse())
                    .collect::<Result<_, _>>()?
            }
            "--commits" => o.commits = value()?.parse()?,
            "--sustained-commits" => o.sustained = Some(value()?.parse()?),
            "--client-threads" => o.client_threads = value()?.parse()?,
            "--arbiters" => o.arbiters = Some(value()?.parse()?),
            "--sessions" => o.sessions = value()?.parse()?,
            "--stalled" => {
                o.stalled = true;
                step = 1;
            }
            "--memory" => {
                o.memory = true;
                step = 1;
            }
            "--serve" => {
                o.serve = true;
                step = 1;
            }
            "--help" | "-h" => {
                println!(
                    "ws_fanout: WebSocket fan-out of one commit to N clients, Tidings against a bare actix-web floor\n\n\
                     --clients 10,100,1000     client counts to run (default 10,100,1000)\n\
                     --commits N               measured commits per design and client count (default 200)\n\
                     --sustained-commits K     commits in the sustained run (default 1,000,000 / N, 500..5,000)\n\
                     --client-threads T        client threads (default 2)\n\
                     --arbiters A              Tidings' pool arbiters, one hub each (default: one per core)\n\
                     --memory                  measure RSS per idle session instead (server in a child process)\n\
                     --sessions S              sessions for --memory (default 10,000)\n\
                     --stalled                 also measure latency with one more subscriber that never reads"
                );
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}; try --help").into()),
        }
        i += step;
    }
    o.commits = o.commits.max(BLOCK);
    Ok(Some(o))
}

fn main() -> Res<()> {
    let Some(o) = parse_args()? else {
        return Ok(());
    };
    if o.serve {
        return serve();
    }
    machine_notes();
    if o.memory {
        ensure_open_files(o.sessions as u64 + 256)?;
        return memory(&o);
    }
    let max_n = o.clients.iter().copied().max().unwrap_or(0) as u64;
    // Each side of each socket, both servers connected at once.
    ensure_open_files(4 * max_n + 256)?;
    fanout(&o)
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// Tidings with its WebSocket server, on an actix system of its own.
pub struct TidingsServer {
    /// The engine.
    pub tidings: Tidings,
    /// Where the server listens.
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    system: actix_rt::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TidingsServer {
    /// Starts the demo module and its server (`arbiters`: Tidings' default when `None`).
    pub fn start(arbiters: Option<usize>) -> Res<Self> {
        let (send, recv) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tidings-server".into())
            .spawn(move || {
                let sys = actix_rt::System::new();
                let ok = sys.block_on(async move {
                    let started = (|| -> Res<_> {
                        let mut builder = Tidings::builder(demo::chat_module());
                        if let Some(a) = arbiters {
                            builder = builder.arbiters(a);
                        }
                        let tidings = builder.start()?;
                        let server =
                            Server::new(tidings.clone(), TokenKey::random()?, WsLimits::default());
                        let (running, addrs) = server.bind("127.0.0.1:0")?;
                        Ok((tidings, addrs[0], running))
                    })();
                    match started {
                        Ok((tidings, addr, running)) => {
                            let (handle, system) = (running.handle(), actix_rt::System::current());
                            actix_rt::spawn(running);
                            send.send(Ok((tidings, addr, handle, system))).is_ok()
                        }
                        Err(e) => {
                            let _ = send.send(Err(e.to_string()));
                            false
                        }
                    }
                });
                if ok {
                    let _ = sys.run();
                }
            })?;
        let (tidings, addr, handle, system) = recv.recv()??;
        Ok(TidingsServer {
            tidings,
            addr,
            handle,
            system,
            thread: Some(thread),
        })
    }

    /// One `send_message` commit; returns when the transaction actor answered.
    pub fn commit(&self, k: usize) -> Res<()> {
        // Fixed width, so every commit's frame has the same size.
        let text = format!("ws_fanout commit {k:010}");
        let r = self.tidings.call_blocking("send_message", &(text,))?;
        r.outcome
            .map(|_| ())
            .map_err(|e| format!("send_message failed: {e:?}").into())
    }
}

impl Drop for TidingsServer {
    fn drop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        self.tidings.shutdown();
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `--serve`: the server alone, for `--memory`; prints its port, runs until stdin closes.
fn serve() -> Res<()> {
    let server = TidingsServer::start(None)?;
    println!("listening {}", server.addr.port());
    let mut sink = Vec::new();
    // The parent closes our stdin when it is done measuring.
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(server);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Fan-out
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Lat {
    p50: u64,
    p99: u64,
}

fn lat(mut v: Vec<u64>) -> Lat {
    v.sort_unstable();
    Lat {
        p50: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
    }
}

struct Run {
    n: usize,
    commits: usize,
    tidings: Lat,
    tidings_from_call: Lat,
    floor: Lat,
    sustained_commits: usize,
    commit_rate: f64,
    tidings_rate: f64,
    floor_rate: f64,
    frame_bytes: usize,
    /// Per measured commit: deliveries, bytes sent, frames encoded, frame bytes encoded.
    per_commit: [f64; 4],
    /// `--stalled`: the same measurement with one more subscriber that never reads, and
    /// whether its queue bound dropped it during the measured commits.
    stalled: Option<(Lat, bool)>,
}

fn fanout(o: &Options) -> Res<()> {
    let started = Instant::now();
    let server = TidingsServer::start(o.arbiters)?;
    let floor = Floor::start()?;
    let mut runs = Vec::new();
    for &n in &o.clients {
        runs.push(run_n(o, n, &server, &floor)?);
        eprintln!(
            "N = {n} done after {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    print_report(&runs);
    println!();
    println!(
        "whole run: {:.1} s; load average at end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(())
}

fn run_n(o: &Options, n: usize, server: &TidingsServer, floor: &Floor) -> Res<Run> {
    let metrics = server.tidings.metrics().clone();
    let t_tally = Tally::new();
    let mut t_clients = Clients::start(o.client_threads, &t_tally)?;
    t_clients.open(server.addr, Setup::Subscribed, n)?;
    t_tally.wait_ready(n, WAIT_MAX)?;
    let mut k = 0usize;
    let mut tidings_commit = |tally: &Tally| -> Res<(u64, u64)> {
        tally.arm(n as u64);
        let call = tally.now_ns();
        server.commit(k)?;
        k += 1;
        let committed = tally.now_ns();
        let done = tally.wait_done(WAIT_MAX)?;
        Ok((done.saturating_sub(committed), done - call))
    };
    for _ in 0..WARMUP {
        tidings_commit(&t_tally)?;
    }
    let frame = t_tally
        .sample()
        .ok_or("no TransactionUpdate frame was captured")?;
    match v2::decode_server(&frame)? {
        ServerMessageWire::TransactionUpdate(u) if u.query_sets.len() == 1 => {}
        other => return Err(format!("expected a TransactionUpdate, got {other:?}").into()),
    }
    let payload = Bytes::from(frame.clone());

    let f_tally = Tally::new();
    let mut f_clients = Clients::start(o.client_threads, &f_tally)?;
    f_clients.open(floor.addr, Setup::Floor, n)?;
    f_tally.wait_ready(n, WAIT_MAX)?;
    let sessions = floor.sessions();
    if sessions.len() != n {
        return Err(format!("the floor has {} sessions, expected {n}", sessions.len()).into());
    }
    let floor_commit = |tally: &Tally| -> Res<u64> {
        tally.arm(n as u64);
        let t0 = tally.now_ns();
        floor::broadcast(&sessions, &payload);
        Ok(tally.wait_done(WAIT_MAX)? - t0)
    };
    for _ in 0..WARMUP {
        floor_commit(&f_tally)?;
    }

    let (mut t_lat, mut t_call, mut f_lat) = (Vec::new(), Vec::new(), Vec::new());
    let counters = |m: &tidings::actors::metrics::Metrics| {
        [
            &m.deliveries,
            &m.bytes_sent,
            &m.frames_encoded,
            &m.frame_bytes_encoded,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    };
    let before = counters(&metrics);
    for _ in 0..o.commits / BLOCK {
        for _ in 0..BLOCK {
            let (from_commit, from_call) = tidings_commit(&t_tally)?;
            t_lat.push(from_commit);
            t_call.push(from_call);
        }
        for _ in 0..BLOCK {
            f_lat.push(floor_commit(&f_tally)?);
        }
    }
    let commits = t_lat.len();
    let after = counters(&metrics);
    let per_commit: [f64; 4] =
        std::array::from_fn(|i| (after[i] - before[i]) as f64 / commits as f64);

    let kk = o
        .sustained
        .unwrap_or((1_000_000 / n.max(1)).clamp(500, 5_000));
    let frames = (kk * n) as u64;
    t_tally.arm(frames);
    let t0 = t_tally.now_ns();
    for _ in 0..kk {
        server.commit(k)?;
        k += 1;
    }
    let commit_rate = kk as f64 / ((t_tally.now_ns() - t0) as f64 / 1e9);
    let tidings_rate = frames as f64 / ((t_tally.wait_done(WAIT_MAX)? - t0) as f64 / 1e9);
    f_tally.arm(frames);
    let t0 = f_tally.now_ns();
    for _ in 0..kk {
        floor::broadcast(&sessions, &payload);
    }
    let floor_rate = frames as f64 / ((f_tally.wait_done(WAIT_MAX)? - t0) as f64 / 1e9);

    let stalled = if o.stalled {
        let dropped = || -> u64 { metrics.dropped.lock().iter().map(|(_, c)| *c).sum() };
        let dropped_before = dropped();
        t_clients.open(server.addr, Setup::Stalled, 1)?;
        t_tally.wait_ready(n + 1, WAIT_MAX)?;
        let mut lat_stalled = Vec::new();
        for _ in 0..commits {
            t_tally.arm(n as u64);
            server.commit(k)?;
            k += 1;
            let committed = t_tally.now_ns();
            lat_stalled.push(t_tally.wait_done(WAIT_MAX)?.saturating_sub(committed));
        }
        Some((lat(lat_stalled), dropped() > dropped_before))
    } else {
        None
    };

    drop(t_clients);
    drop(f_clients);
    Ok(Run {
        stalled,
        n,
        commits,
        tidings: lat(t_lat),
        tidings_from_call: lat(t_call),
        floor: lat(f_lat),
        sustained_commits: kk,
        commit_rate,
        tidings_rate,
        floor_rate,
        frame_bytes: frame.len(),
        per_commit,
    })
}

fn print_report(runs: &[Run]) {
    println!("## Latency: one 1-row commit, commit -> last of N clients read the frame");
    println!();
    let ratio = |a: u64, b: u64| format!("{:.2}x", a as f64 / b.max(1) as f64);
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.n.to_string(),
                r.commits.to_string(),
                fmt_ns(r.tidings.p50),
                fmt_ns(r.tidings.p99),
                fmt_ns(r.floor.p50),
                fmt_ns(r.floor.p99),
                ratio(r.tidings.p50, r.floor.p50),
                ratio(r.tidings.p99, r.floor.p99),
                fmt_ns(r.tidings_from_call.p50),
                fmt_ns(r.tidings_from_call.p99),
            ]
        })
        .collect();
    print_table(
        &[
            "N",
            "commits",
            "Tidings p50",
            "Tidings p99",
            "floor p50",
            "floor p99",
            "p50 ratio",
            "p99 ratio",
            "Tidings p50 from call",
            "Tidings p99 from call",
        ],
        1,
        &rows,
    );
    println!();
    println!(
        "Tidings: from `call_blocking` returning (commit merged) to the last client's read; \
         \"from call\": from before the call (reducer + commit included). floor: from the \
         broadcast call to the last client's read. Ratios: Tidings / floor."
    );

    println!();
    println!("## Sustained: commits back to back");
    println!();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.n.to_string(),
                r.sustained_commits.to_string(),
                fmt_rate(r.commit_rate),
                fmt_rate(r.tidings_rate),
                fmt_rate(r.floor_rate),
                format!("{:.2}x", r.tidings_rate / r.floor_rate.max(1e-9)),
            ]
        })
        .collect();
    print_table(
        &[
            "N",
            "commits",
            "Tidings commits/s",
            "Tidings deliveries/s",
            "floor deliveries/s",
            "Tidings / floor",
        ],
        1,
        &rows,
    );
    println!();
    println!(
        "deliveries/s: K x N frames / (first call or broadcast -> last client's read). Tidings \
         commits/s: K / (first call -> last call returned); at small N the commit rate, not the \
         fan-out, bounds Tidings' deliveries/s, while the floor commits nothing."
    );

    println!();
    println!("## Bytes per commit");
    println!();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.n.to_string(),
                r.frame_bytes.to_string(),
                format!("{:.0}", r.per_commit[0]),
                format!("{:.0}", r.per_commit[1]),
                format!("{:.1}", r.per_commit[1] / r.n as f64),
                format!("{:.2}", r.per_commit[2]),
                format!("{:.0}", r.per_commit[3]),
            ]
        })
        .collect();
    print_table(
        &[
            "N",
            "frame bytes",
            "deliveries/commit",
            "bytes sent/commit",
            "bytes sent/commit/client",
            "frames encoded/commit",
            "bytes encoded/commit",
        ],
        1,
        &rows,
    );
    println!();
    println!(
        "From the server's metrics over the measured commits. bytes sent: what the sessions \
         wrote (N copies of the frame). frames/bytes encoded: the MessagePack encoding work. \
         Each hub (one per pool arbiter) hands its sessions one shared message, whose row \
         list is encoded once per commit (WireCache), and v2 sessions on the one HTTP worker \
         thread write one shared encoded frame per message: frames encoded per commit = \
         hubs, whatever N is."
    );

    let stalled: Vec<Vec<String>> = runs
        .iter()
        .filter_map(|r| {
            let (lat, dropped) = r.stalled.as_ref()?;
            Some(vec![
                r.n.to_string(),
                r.commits.to_string(),
                fmt_ns(r.tidings.p50),
                fmt_ns(lat.p50),
                fmt_ns(r.tidings.p99),
                fmt_ns(lat.p99),
                ratio(lat.p99, r.tidings.p99),
                if *dropped { "yes" } else { "not yet" }.to_string(),
            ])
        })
        .collect();
    if !stalled.is_empty() {
        println!();
        println!("## With one more subscriber that never reads (--stalled)");
        println!();
        print_table(
            &[
                "N",
                "commits",
                "p50 without",
                "p50 with",
                "p99 without",
                "p99 with",
                "p99 with / without",
                "stuck client dropped",
            ],
            1,
            &stalled,
        );
        println!();
        println!(
            "The N reading clients' latency, measured right after the table above, with a \
             stuck subscriber added: its socket stops reading after SubscribeApplied, so its \
             session's queue grows until the bound drops it (see tests/slow_client.rs); the \
             others must not notice."
        );
    }

    if let Some(r) = runs.iter().max_by_key(|r| r.n) {
        println!();
        let x = r.tidings.p99 as f64 / r.floor.p99.max(1) as f64;
        println!(
            "target: p99 at N = {} <= {P99_RATIO_MAX}x the floor: {x:.2}x ({} / {}): {}",
            r.n,
            fmt_ns(r.tidings.p99),
            fmt_ns(r.floor.p99),
            if x <= P99_RATIO_MAX { "met" } else { "MISSED" }
        );
    }
}

// ---------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------

/// Sessions open before the baseline reading, so one-time allocations are not counted.
const MEMORY_WARM_SESSIONS: usize = 16;

fn memory(o: &Options) -> Res<()> {
    println!("## Memory: RSS growth of the server process per idle WebSocket session");
    println!();
    let mut rows = Vec::new();
    let mut worst: f64 = 0.0;
    for setup in [Setup::Connected, Setup::Subscribed] {
        let (before, after) = memory_run(o, setup)?;
        let per = (after.saturating_sub(before)) as f64 / o.sessions as f64;
        worst = worst.max(per);
        rows.push(vec![
            match setup {
                Setup::Connected => "connected".to_string(),
                _ => "connected + subscribed to the same query".to_string(),
            },
            o.sessions.to_string(),
            format!("{:.1} MiB", before as f64 / 1024.0),
            format!("{:.1} MiB", after as f64 / 1024.0),
            format!("{per:.1} KiB"),
        ]);
    }
    print_table(
        &[
            "sessions",
            "count",
            "server RSS before",
            "server RSS after",
            "RSS growth / session",
        ],
        1,
        &rows,
    );
    println!();
    println!(
        "The server runs alone in a child process (this binary with --serve); {MEMORY_WARM_SESSIONS} \
         sessions are open before the first reading. A session counts once its client has \
         read InitialConnection (and SubscribeApplied when subscribed); the second reading \
         is taken 1 s later. All-in for the process: actix-web's connection and WebSocket \
         buffers, the session actor, Tidings' queue, hub and manager entries; the kernel's \
         socket buffers are not RSS and are not counted."
    );
    println!();
    println!(
        "target: <= {KIB_PER_SESSION_MAX} KiB per session: {worst:.1} KiB: {}",
        if worst <= KIB_PER_SESSION_MAX {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}

/// One child server: its RSS (KiB) with the warm-up sessions, then with `o.sessions` more.
fn memory_run(o: &Options, setup: Setup) -> Res<(u64, u64)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let result = (|| -> Res<(u64, u64)> {
        let out = child.stdout.take().ok_or("no stdout from the server")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| format!("unexpected line from the server: {line:?}"))?
            .parse()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let tally = Tally::new();
        let mut clients = Clients::start(o.client_threads, &tally)?;
        clients.open(addr, setup, MEMORY_WARM_SESSIONS)?;
        tally.wait_ready(MEMORY_WARM_SESSIONS, WAIT_MAX)?;
        settle();
        let before = rss_kib(pid)?;
        clients.open(addr, setup, o.sessions)?;
        tally.wait_ready(MEMORY_WARM_SESSIONS + o.sessions, WAIT_MAX * 4)?;
        settle();
        let after = rss_kib(pid)?;
        drop(clients);
        Ok((before, after))
    })();
    // Closing its stdin ends the server.
    drop(child.stdin.take());
    let _ = child.wait();
    result
}

/// Lets the server finish what the last reads triggered before RSS is read.
fn settle() {
    std::thread::sleep(Duration::from_secs(1));
}

/// Resident set size of process `pid`, KiB.
fn rss_kib(pid: u32) -> Res<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status").into())
}

// ---------------------------------------------------------------------------------------
// Process limits and reporting
// ---------------------------------------------------------------------------------------

/// The soft and hard open-file limits of this process (`u64::MAX`: unlimited).
fn open_files_limit() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut v = line["Max open files".len()..]
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(u64::MAX));
    Some((v.next()?, v.next()?))
}

/// Makes sure this process (and the children it starts) may open `need` files.
fn ensure_open_files(need: u64) -> Res<()> {
    let (soft, hard) = open_files_limit().ok_or("cannot read /proc/self/limits")?;
    if soft >= need {
        return Ok(());
    }
    if hard >= need {
        let hard_s = if hard == u64::MAX {
            "unlimited".to_string()
        } else {
            hard.to_string()
        };
        let _ = Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard_s}:{hard_s}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if open_files_limit().is_some_and(|(s, _)| s >= need) {
            eprintln!("raised the open-file soft limit from {soft} to {hard_s}");
            return Ok(());
        }
    }
    Err(format!(
        "this run needs {need} open files, the limit is {soft} (hard {hard}); raise it in \
         the shell that runs the example, e.g. `ulimit -n {need}`, or pass fewer --clients/--sessions"
    )
    .into())
}

fn machine_notes() {
    println!(
        "machine: {}; load average at start: {}",
        cores_and_cpu(),
        load_average()
    );
    println!();
}
