//! WebSocket fan-out, criterion subset: one single-row commit to N = 100 loopback
//! WebSocket clients, Tidings against the bare actix-web floor.
//!
//! The workload is the one of `examples/ws_fanout/` (included below as a module), which
//! prints the full table (N = 10, 100, 1,000, sustained deliveries, bytes encoded per
//! commit, RSS per idle session):
//!
//! ```text
//! cargo run --release --example ws_fanout
//! cargo bench --bench ws_fanout
//! ```
//!
//! Each iteration is one commit (or one broadcast of a real frame, for the floor); the
//! time reported runs from `call_blocking` returning (from the broadcast call) to the
//! last client having read the frame.

// The example's `main` and report code are not used here.
#[allow(dead_code)]
#[path = "../examples/ws_fanout/main.rs"]
mod ws_fanout;

use std::time::Duration;

use actix_web::web::Bytes;
use criterion::{BenchmarkId, Criterion};
use ws_fanout::TidingsServer;
use ws_fanout::client::{Clients, Setup, Tally};
use ws_fanout::floor::{self, Floor};

/// Clients per design.
const N: usize = 100;
/// Client threads.
const CLIENT_THREADS: usize = 2;
/// Longest wait for one commit to reach every client.
const WAIT_MAX: Duration = Duration::from_secs(30);

fn ws_fanout_one_row(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_fanout_1row");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));

    let server = TidingsServer::start(None).expect("Tidings and its server start");
    let tally = Tally::new();
    let mut clients = Clients::start(CLIENT_THREADS, &tally).expect("client threads start");
    clients
        .open(server.addr, Setup::Subscribed, N)
        .expect("clients connect");
    tally
        .wait_ready(N, WAIT_MAX)
        .expect("every client subscribed");
    let mut k = 0;
    g.bench_function(BenchmarkId::new("tidings", N), |b| {
        b.iter_custom(|iters| {
            let mut total = 0;
            for _ in 0..iters {
                tally.arm(N as u64);
                server.commit(k).expect("send_message commits");
                k += 1;
                let committed = tally.now_ns();
                total += tally
                    .wait_done(WAIT_MAX)
                    .expect("every client reads the commit")
                    .saturating_sub(committed);
            }
            Duration::from_nanos(total)
        });
    });
    let payload = Bytes::from(tally.sample().expect("a frame was captured"));
    drop(clients);
    drop(server);

    let floor = Floor::start().expect("the floor starts");
    let tally = Tally::new();
    let mut clients = Clients::start(CLIENT_THREADS, &tally).expect("client threads start");
    clients
        .open(floor.addr, Setup::Floor, N)
        .expect("clients connect");
    tally
        .wait_ready(N, WAIT_MAX)
        .expect("every client connected");
    let sessions = floor.sessions();
    g.bench_function(BenchmarkId::new("floor", N), |b| {
        b.iter_custom(|iters| {
            let mut total = 0;
            for _ in 0..iters {
                tally.arm(N as u64);
                let t0 = tally.now_ns();
                floor::broadcast(&sessions, &payload);
                total += tally.wait_done(WAIT_MAX).expect("every client reads it") - t0;
            }
            Duration::from_nanos(total)
        });
    });
    g.finish();
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, minus an undocumented pub fn.
    let mut c = Criterion::default().configure_from_args();
    ws_fanout_one_row(&mut c);
    c.final_summary();
}
