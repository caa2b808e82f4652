//! Consistency under concurrency: writers commit from several threads while subscribers
//! join mid-stream. The oracle is the sequence of TxData the writers got back: folding it
//! gives every persistent table's state at every offset. Every subscriber must see
//! strictly increasing offsets, all after its snapshot, and its cache after the update at
//! offset k must equal its query evaluated on the state at k (a semijoin by a nested loop
//! over the two tables, not by the engine). Every other subscriber thread drives two
//! connections through one application-thread inbox, so the batched delivery path is
//! held to the same oracle.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use parking_lot::Mutex;
use tidings::engine::{Row, TableId, TxData};
use tidings::{DbConnection, Identity, Tidings};

const WRITERS: u64 = 3;
const CALLS: usize = 60;

struct Log {
    snapshot_offset: u64,
    /// (offset, sorted cache rows) after each applied update.
    states: Vec<(u64, Vec<Row>)>,
}

/// Connections delivered through one application-thread inbox, per subscriber thread
/// that uses one; every other subscriber thread has one connection with its own queue.
const ON_INBOX: usize = 2;

/// One subscriber thread: one connection with its own queue or, `on_inbox`, several
/// connections on one inbox, each subscribed to `query`. One log per connection.
fn subscriber(
    t: Tidings,
    query: String,
    table: String,
    stop: Arc<AtomicBool>,
    on_inbox: bool,
) -> Vec<Log> {
    let conns: Vec<DbConnection> = if on_inbox {
        let inbox = t.inbox();
        (0..ON_INBOX).map(|_| inbox.connect()).collect()
    } else {
        vec![t.connect()]
    };
    let applied: Vec<Arc<Mutex<Option<u64>>>> = conns.iter().map(|_| Arc::default()).collect();
    for (conn, applied) in conns.iter().zip(&applied) {
        let a = applied.clone();
        conn.subscription_builder()
            .on_applied(move |ctx| *a.lock() = Some(ctx.conn.last_offset()))
            .subscribe(&[query.as_str()])
            .expect("subscribe");
    }
    let mut logs: Vec<Log> = conns
        .iter()
        .map(|_| Log {
            snapshot_offset: 0,
            states: Vec::new(),
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = vec![0; conns.len()];
    let barriers_done = Arc::new(AtomicUsize::new(0));
    let mut barrier_sent = false;
    while barriers_done.load(Ordering::SeqCst) < conns.len() {
        assert!(Instant::now() < deadline, "subscriber `{query}` timed out");
        if stop.load(Ordering::SeqCst) && !barrier_sent {
            // Results come in order after every earlier commit's update: once this
            // call's result is in, every commit before it has been applied.
            for conn in &conns {
                let b = barriers_done.clone();
                conn.reducer_then("noop", &(), move |_, _| {
                    b.fetch_add(1, Ordering::SeqCst);
                })
                .expect("barrier call");
            }
            barrier_sent = true;
        }
        // On an inbox, one item may carry an update for every connection of it, but at
        // most one per connection: each connection's state is still seen after each of
        // its updates.
        if !conns[0].advance_one_message(Duration::from_millis(20)) {
            continue;
        }
        for (i, conn) in conns.iter().enumerate() {
            if let Some(o) = applied[i].lock().take() {
                logs[i].snapshot_offset = o;
                last[i] = o;
                continue;
            }
            let now = conn.last_offset();
            if now != last[i] {
                let mut rows: Vec<Row> = conn.rows(&table);
                rows.sort();
                logs[i].states.push((now, rows));
                last[i] = now;
            }
        }
    }
    for conn in &conns {
        conn.disconnect();
    }
    logs
}

fn sender(w: u64) -> Identity {
    Identity::from_u64(100 + w)
}

/// One writer call: reducer, MessagePack arguments, caller.
type Call = (&'static str, Vec<u8>, Identity);

fn send_message(w: u64, j: usize) -> Call {
    let args = tidings::actors::module::encode_args(&(format!("w{w}-{j}"),)).expect("args");
    ("send_message", args, sender(w))
}

#[test]
fn subscribers_joining_mid_stream_see_exactly_the_commits_after_their_snapshot() {
    check(
        &[],
        send_message,
        vec![
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
        ],
    );
}

/// Point queries only: most commits change no registered query, so they never reach the
/// manager, while subscribers keep joining. Their snapshots and updates must stay exact.
#[test]
fn commits_that_change_no_query_stay_consistent_while_subscribers_join() {
    check(
        &[],
        send_message,
        vec![
            format!(
                "SELECT * FROM message WHERE sender = X'{}'",
                sender(0).to_hex()
            ),
            "SELECT * FROM message WHERE id = 7".into(),
            "SELECT * FROM message WHERE id = 150".into(),
            format!(
                "SELECT * FROM message WHERE sender = X'{}' AND id = 90",
                sender(1).to_hex()
            ),
        ],
    );
}

/// Semijoins read the post-state: messages and zone moves race, and each commit must be
/// evaluated against exactly its own post-state (evaluating against a later one, as a
/// manager running behind the commits would, fails this test). Writer 2 deals damage
/// into an event table nobody subscribes to, so commits that change nothing interleave.
#[test]
fn semijoins_see_each_commits_own_post_state() {
    let join = |w: u64| {
        let args =
            tidings::actors::module::encode_args(&(format!("p{w}"), (w % 2) as u32)).expect("args");
        ("join", args, sender(w))
    };
    let write = |w: u64, j: usize| -> Call {
        match (w, j % 2) {
            (2, _) => {
                let hits = vec![(sender(0), j as u32)];
                let args = tidings::actors::module::encode_args(&hits).expect("args");
                ("deal", args, sender(w))
            }
            (_, 0) => send_message(w, j),
            _ => {
                let zone = ((j / 2) as u32 + w as u32) % 3;
                let args = tidings::actors::module::encode_args(&(zone,)).expect("args");
                ("move", args, sender(w))
            }
        }
    };
    check(
        &[join(0), join(1), join(2)],
        write,
        vec![
            "SELECT message.* FROM message JOIN player ON message.sender = player.identity WHERE player.zone = 1".into(),
            "SELECT player.* FROM player JOIN message ON player.identity = message.sender WHERE message.id >= 30".into(),
            "SELECT * FROM player WHERE zone = 2".into(),
            "SELECT message.* FROM message JOIN player ON message.sender = player.identity WHERE player.zone = 0 AND message.id < 100".into(),
        ],
    );
}

/// Every persistent table's rows, by table.
type Tables = BTreeMap<TableId, BTreeSet<Row>>;

/// Runs `setup` calls, then `WRITERS` threads making `CALLS` calls each (`write(w, j)`),
/// while one subscriber per query joins after every 40 commits; each subscriber's log
/// must match the oracle.
fn check(setup: &[Call], write: fn(u64, usize) -> Call, queries: Vec<String>) {
    let t = start();
    let stop = Arc::new(AtomicBool::new(false));
    let history: Arc<Mutex<Vec<Arc<TxData>>>> = Arc::default();
    // A call that changed nothing (a move to the zone a player is in) has no commit.
    let call = |t: &Tidings, (reducer, args, caller): Call| -> Option<Arc<TxData>> {
        let r = futures::executor::block_on(t.call_raw(reducer, args, caller)).expect("call");
        r.outcome.unwrap_or_else(|e| panic!("{reducer}: {e:?}"));
        r.tx_data
    };
    for c in setup {
        history.lock().extend(call(&t, c.clone()));
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (t, history) = (t.clone(), history.clone());
            std::thread::spawn(move || {
                for j in 0..CALLS {
                    let tx = call(&t, write(w, j));
                    history.lock().extend(tx);
                }
            })
        })
        .collect();
    let schema = t.datastore().schema();
    let owner = tidings::query::Caller {
        identity: Identity::ZERO,
        is_owner: true,
    };
    let plans: Vec<_> = queries
        .iter()
        .map(|q| {
            tidings::query::compile(q, &schema, 1, owner)
                .expect("compiles")
                .remove(0)
        })
        .collect();
    // Subscribers join while the writers run.
    let mut subs = Vec::new();
    for (i, (q, plan)) in queries.iter().zip(&plans).enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while history.lock().len() < setup.len() + i * 40 {
            // A writer that failed never gets there; its panic is reported at the join.
            if Instant::now() > deadline || writers.iter().any(|w| w.is_finished()) {
                break;
            }
            std::thread::yield_now();
        }
        let table = plan.returned_table_name().to_string();
        let (t, q, stop) = (t.clone(), q.clone(), stop.clone());
        let on_inbox = i % 2 == 1;
        subs.push(std::thread::spawn(move || {
            subscriber(t, q, table, stop, on_inbox)
        }));
    }
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::SeqCst);

    // The oracle: every persistent table after every offset.
    let mut history = history.lock().clone();
    history.sort_by_key(|tx| tx.offset);
    let offsets: Vec<u64> = history.iter().map(|tx| tx.offset).collect();
    assert_eq!(
        offsets,
        (1..=offsets.len() as u64).collect::<Vec<_>>(),
        "dense offsets"
    );
    let mut state = Tables::new();
    let mut at: Vec<Tables> = vec![Tables::new()];
    for tx in &history {
        for u in tx.tables.iter().filter(|u| !u.is_event) {
            let rows = state.entry(u.table_id).or_default();
            for r in u.deletes.iter() {
                rows.remove(r);
            }
            rows.extend(u.inserts.iter().cloned());
        }
        at.push(state.clone());
    }
    for ((q, plan), handle) in queries.iter().zip(&plans).zip(subs) {
        let logs = handle.join().expect("subscriber thread");
        let eval = |k: u64| -> Vec<Row> {
            let tables = &at[k as usize];
            let rows_of = |t: TableId| tables.get(&t).into_iter().flatten();
            let mut v: Vec<Row> = rows_of(plan.returned_table())
                .filter(|r| match &plan.join {
                    None => tidings::query::exec::holds(plan.filter(), r, None),
                    Some(j) => rows_of(j.lookup).any(|s| {
                        r[j.returned_col.idx()] == s[j.lookup_col.idx()]
                            && tidings::query::exec::holds(plan.filter(), r, Some(s))
                    }),
                })
                .cloned()
                .collect();
            v.sort();
            v
        };
        for log in logs {
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
    }
    t.shutdown();
}
