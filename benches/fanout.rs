//! Fan-out, criterion subset: one single-row commit to N = 1 and 1,000 in-process
//! subscribers of the same query, delivered through one inbox per consumer thread and
//! through a queue per subscriber, against the `tokio::sync::broadcast` floor.
//!
//! The workload is the one of `examples/fanout.rs` (included below as a module), which
//! prints the full table (N up to 10,000, point queries, the naive baseline, sustained
//! throughput, memory and the snapshot storm):
//!
//! ```text
//! cargo run --release --example fanout
//! cargo bench --bench fanout
//! ```
//!
//! Each iteration is one commit; the time reported is that commit's latency from the
//! start of the reducer (`t0`) to the last subscriber applying it (`end_to_end`) or to
//! the last session queue having it (`delivery`); for the floor, from `send` to the last
//! receiving task woken.

// The example's `main` and report code are not used here.
#[allow(dead_code)]
#[path = "../examples/fanout.rs"]
mod fanout;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use fanout::{Broadcast, Delivery, Engine, Fanout, Sample, Shape};

/// Consumer threads draining the subscribers.
const CONSUMERS: usize = 2;

/// Sums `pick` of `iters` single-row commits.
fn run(f: &mut dyn Fanout, iters: u64, pick: fn(&Sample) -> u64) -> Duration {
    let mut total = 0u64;
    for _ in 0..iters {
        let s = f.commit(1).expect("the commit reaches every subscriber");
        total += pick(&s);
    }
    Duration::from_nanos(total)
}

fn same_query_one_row(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_same_query_1row");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    for n in [1usize, 1_000] {
        for (delivery, name) in [(Delivery::Inbox, "inbox"), (Delivery::Queues, "own_queues")] {
            let mut engine = Engine::start_with(Shape::Same, n, CONSUMERS, delivery)
                .expect("Tidings starts with N subscribers");
            g.bench_function(BenchmarkId::new(format!("{name}/delivery"), n), |b| {
                b.iter_custom(|iters| run(&mut engine, iters, |s| s.delivery_ns));
            });
            g.bench_function(BenchmarkId::new(format!("{name}/end_to_end"), n), |b| {
                b.iter_custom(|iters| run(&mut engine, iters, |s| s.e2e_ns));
            });
        }
        let mut floor = Broadcast::start(n).expect("the tokio runtime starts");
        g.bench_function(BenchmarkId::new("broadcast_floor", n), |b| {
            b.iter_custom(|iters| run(&mut floor, iters, |s| s.delivery_ns));
        });
    }
    g.finish();
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, minus an undocumented pub fn.
    let mut c = Criterion::default().configure_from_args();
    same_query_one_row(&mut c);
    c.final_summary();
}
