//! Consistency under concurrency: writers commit from several threads while subscribers
//! join mid-stream. The oracle is the sequence of TxData the writers got back: folding it
//! gives the table's state at every offset. Every subscriber must see strictly increasing
//! offsets, all after its snapshot, and its cache after the update at offset k must equal
//! its query evaluated on the state at k.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use parking_lot::Mutex;
use tidings::engine::{Row, TxData};
use tidings::{Identity, Tidings};

const WRITERS: u64 = 3;
const CALLS: usize = 60;

struct Log {
    snapshot_offset: u64,
    /// (offset, sorted cache rows) after each applied update.
    states: Vec<(u64, Vec<Row>)>,
}

fn subscriber(t: Tidings, query: String, stop: Arc<AtomicBool>) -> Log {
    let conn = t.connect();
    let applied = Arc::new(Mutex::new(None));
    let a = applied.clone();
    conn.subscription_builder()
        .on_applied(move |ctx| *a.lock() = Some(ctx.conn.last_offset()))
        .subscribe(&[query.as_str()])
        .expect("subscribe");
    let mut log = Log {
        snapshot_offset: 0,
        states: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    let barrier_done = Arc::new(AtomicBool::new(false));
    let mut barrier_sent = false;
    while !barrier_done.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "subscriber `{query}` timed out");
        if stop.load(Ordering::SeqCst) && !barrier_sent {
            // Results come in order after every earlier commit's update: once this
            // call's result is in, every commit before it has been applied.
            let b = barrier_done.clone();
            conn.reducer_then("noop", &(), move |_, _| b.store(true, Ordering::SeqCst))
                .expect("barrier call");
            barrier_sent = true;
        }
        if !conn.advance_one_message(Duration::from_millis(20)) {
            continue;
        }
        if let Some(o) = applied.lock().take() {
            log.snapshot_offset = o;
            last = o;
            continue;
        }
        let now = conn.last_offset();
        if now != last {
            let mut rows: Vec<Row> = conn.rows("message");
            rows.sort();
            log.states.push((now, rows));
            last = now;
        }
    }
    conn.disconnect();
    log
}

#[test]
fn subscribers_joining_mid_stream_see_exactly_the_commits_after_their_snapshot() {
    let t = start();
    let stop = Arc::new(AtomicBool::new(false));
    let history: Arc<Mutex<Vec<Arc<TxData>>>> = Arc::default();
    let sender = |w: u64| Identity::from_u64(100 + w);
    let queries: Vec<String> = vec![
        "SELECT * FROM message".into(),
        format!(
            "SELECT * FROM message WHERE sender = X'{}'",
            sender(0).to_hex()
        ),
        format!(
            "SELECT * FROM message WHERE sender = X'{}' OR id < 20",
            sender(1).to_hex()
        ),
        "SELECT * FROM message WHERE id >= 40".into(),
    ];
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (t, history) = (t.clone(), history.clone());
            std::thread::spawn(move || {
                for j in 0..CALLS {
                    let args = tidings::actors::module::encode_args(&(format!("w{w}-{j}"),))
                        .expect("args");
                    let r =
                        futures::executor::block_on(t.call_raw("send_message", args, sender(w)))
                            .expect("call");
                    r.outcome.expect("reducer ok");
                    history.lock().push(r.tx_data.expect("a commit"));
                }
            })
        })
        .collect();
    // Subscribers join while the writers run.
    let mut subs = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        while history.lock().len() < i * 40 {
            std::thread::yield_now();
        }
        let (t, q, stop) = (t.clone(), q.clone(), stop.clone());
        subs.push((
            q.clone(),
            std::thread::spawn(move || subscriber(t, q, stop)),
        ));
    }
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::SeqCst);

    // The oracle: the message table after every offset.
    let mut history = history.lock().clone();
    history.sort_by_key(|tx| tx.offset);
    let offsets: Vec<u64> = history.iter().map(|tx| tx.offset).collect();
    assert_eq!(
        offsets,
        (1..=offsets.len() as u64).collect::<Vec<_>>(),
        "dense offsets"
    );
    let mut state: BTreeMap<Row, ()> = BTreeMap::new();
    let mut at: Vec<Vec<Row>> = vec![Vec::new()];
    for tx in &history {
        for u in &tx.tables {
            for r in u.deletes.iter() {
                state.remove(r);
            }
            for r in u.inserts.iter() {
                state.insert(r.clone(), ());
            }
        }
        at.push(state.keys().cloned().collect());
    }
    let schema = t.datastore().schema();
    for (q, handle) in subs {
        let log = handle.join().expect("subscriber thread");
        let plan = tidings::query::compile(
            &q,
            &schema,
            1,
            tidings::query::Caller {
                identity: Identity::ZERO,
                is_owner: true,
            },
        )
        .expect("compiles")
        .remove(0);
        let eval = |k: u64| -> Vec<Row> {
            let mut v: Vec<Row> = at[k as usize]
                .iter()
                .filter(|r| tidings::query::exec::holds(plan.filter(), r, None))
                .cloned()
                .collect();
            v.sort();
            v
        };
        let mut prev = log.snapshot_offset;
        for (k, rows) in &log.states {
            assert!(
                *k > prev,
                "`{q}`: offsets must strictly increase after the snapshot ({k} after {prev})"
            );
            assert_eq!(
                rows,
                &eval(*k),
                "`{q}`: cache after offset {k} differs from the query on the state at {k}"
            );
            prev = *k;
        }
        let last = log.states.last().map_or(log.snapshot_offset, |s| s.0);
        let final_rows = log
            .states
            .last()
            .map(|s| s.1.clone())
            .unwrap_or_else(|| eval(log.snapshot_offset));
        assert_eq!(
            final_rows,
            eval(*offsets.last().unwrap_or(&0)),
            "`{q}`: final cache (last update at {last})"
        );
    }
    t.shutdown();
}
