//! Application-thread inboxes: connections delivered through one shared inbox must see
//! exactly what the same connections see on queues of their own.
//!
//! The oracle is the own-queue path: every client of a random scenario is made twice,
//! once on an inbox and once with its own queue, with the same protocol and the same
//! query sets. After the same random commits (some called by the inbox clients, so
//! reducer results travel through the inbox too), each pair must hold the same cache and
//! must have run the same callbacks with the same rows at the same offsets, in the same
//! order.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use parking_lot::Mutex;
use proptest::prelude::*;
use tidings::actors::queue::QueueLimits;
use tidings::engine::Row;
use tidings::{ConnectOptions, DbConnection, Identity, Protocol, Tidings};

const QUERIES: [&str; 7] = [
    "SELECT * FROM message",
    "SELECT * FROM message WHERE id < 4",
    "SELECT * FROM player WHERE zone = 1",
    "SELECT * FROM player",
    "SELECT message.* FROM message JOIN player ON message.sender = player.identity WHERE player.zone = 1",
    "SELECT * FROM damage",
    "SELECT * FROM damage WHERE amount > 5",
];

/// One client: its protocol and its query sets (indexes into `QUERIES`).
#[derive(Clone, Debug)]
struct Client {
    v1: bool,
    sets: Vec<Vec<usize>>,
}

/// A commit: who calls (an inbox client, or the server as a fixed identity) and what.
#[derive(Clone, Debug)]
enum Op {
    Send {
        by: Option<usize>,
        text: u8,
    },
    Join {
        by: Option<usize>,
        zone: u32,
    },
    Move {
        by: Option<usize>,
        zone: u32,
    },
    Deal {
        by: Option<usize>,
        amounts: Vec<u32>,
    },
    Fail {
        by: Option<usize>,
    },
}

fn client() -> impl Strategy<Value = Client> {
    (
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(0..QUERIES.len(), 1..3), 1..3),
    )
        .prop_map(|(v1, sets)| Client { v1, sets })
}

fn op(clients: usize) -> impl Strategy<Value = Op> {
    // Calls by the server (`None`) reach every inbox client as a bare update, so an
    // inbox whose holders did not change gets its cached batch.
    let by = || prop::option::of(0..clients);
    prop_oneof![
        (by(), any::<u8>()).prop_map(|(by, text)| Op::Send { by, text }),
        (by(), 0..3u32).prop_map(|(by, zone)| Op::Join { by, zone }),
        (by(), 0..3u32).prop_map(|(by, zone)| Op::Move { by, zone }),
        (by(), prop::collection::vec(0..10u32, 1..4))
            .prop_map(|(by, amounts)| Op::Deal { by, amounts }),
        by().prop_map(|by| Op::Fail { by }),
    ]
}

/// What a connection's callbacks saw: (offset, callback, table, row).
type Seen = Arc<Mutex<Vec<(u64, &'static str, &'static str, String)>>>;

fn watch(conn: &DbConnection) -> Seen {
    let seen: Seen = Arc::default();
    macro_rules! log {
        ($table:ty, $name:literal) => {{
            let s = seen.clone();
            conn.table::<$table>().on_insert(move |ctx, r| {
                s.lock()
                    .push((ctx.conn.last_offset(), "insert", $name, format!("{r:?}")))
            });
            let s = seen.clone();
            conn.table::<$table>().on_delete(move |ctx, r| {
                s.lock()
                    .push((ctx.conn.last_offset(), "delete", $name, format!("{r:?}")))
            });
            let s = seen.clone();
            conn.table::<$table>().on_update(move |ctx, old, new| {
                s.lock().push((
                    ctx.conn.last_offset(),
                    "update",
                    $name,
                    format!("{old:?} -> {new:?}"),
                ))
            });
        }};
    }
    log!(Message, "message");
    log!(Player, "player");
    log!(Damage, "damage");
    seen
}

fn cache(conn: &DbConnection) -> Vec<(&'static str, Vec<Row>)> {
    ["message", "player", "damage"]
        .into_iter()
        .map(|t| {
            let mut rows = conn.rows(t);
            rows.sort();
            (t, rows)
        })
        .collect()
}

fn options(v1: bool, identity: Identity) -> ConnectOptions {
    ConnectOptions {
        identity: Some(identity),
        protocol: if v1 { Protocol::V1 } else { Protocol::V2 },
        ..ConnectOptions::default()
    }
}

/// Processes the inbox and the own-queue connections until `done` holds.
fn drive_both(inbox: &tidings::Inbox, alone: &[DbConnection], done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out driving the clients");
        inbox.advance_one_message(Duration::from_millis(1));
        for c in alone {
            c.frame_tick();
        }
    }
}

/// Calls `reducer` as inbox client `by` (recording its result) or as the server.
fn call<A: serde::Serialize>(
    t: &Tidings,
    by: Option<(usize, &DbConnection)>,
    results: &Arc<Mutex<Vec<(usize, bool)>>>,
    reducer: &str,
    args: &A,
) {
    match by {
        Some((i, conn)) => {
            let r = results.clone();
            conn.reducer_then(reducer, args, move |_, result| {
                r.lock().push((i, result.is_ok()))
            })
            .expect("call");
        }
        None => {
            futures::executor::block_on(t.call(reducer, args)).expect("server call");
        }
    }
}

fn run(clients: &[Client], ops: &[Op]) {
    let t = start();
    let inbox = t.inbox();
    // Client i is inbox[i] and alone[i]; inbox clients make the calls.
    let ids = |i: usize| Identity::from_u64(1_000 + i as u64);
    let on_inbox: Vec<DbConnection> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| inbox.connect_with(options(c.v1, ids(i))))
        .collect();
    let alone: Vec<DbConnection> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| t.connect_with(options(c.v1, Identity::from_u64(2_000 + i as u64))))
        .collect();
    let seen_inbox: Vec<Seen> = on_inbox.iter().map(watch).collect();
    let seen_alone: Vec<Seen> = alone.iter().map(watch).collect();

    // Every set is answered (applied, or rejected: v1 refuses event tables) before the
    // first commit, so both copies of a client start from the same snapshots.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut expected = 0;
    for (c, conns) in clients.iter().zip(on_inbox.iter().zip(&alone)) {
        for conn in [conns.0, conns.1] {
            for set in &c.sets {
                let queries: Vec<&str> = set.iter().map(|&q| QUERIES[q]).collect();
                let (a, b) = (answered.clone(), answered.clone());
                conn.subscription_builder()
                    .on_applied(move |_| {
                        a.fetch_add(1, Ordering::SeqCst);
                    })
                    .on_error(move |_, _| {
                        b.fetch_add(1, Ordering::SeqCst);
                    })
                    .subscribe(&queries)
                    .expect("subscribe");
                expected += 1;
            }
        }
    }
    let all = || answered.load(Ordering::SeqCst) == expected;
    drive_both(&inbox, &alone, all);

    let results = Arc::new(Mutex::new(Vec::new()));
    for op in ops {
        let conn = |by: Option<usize>| by.map(|i| (i, &on_inbox[i]));
        match op {
            Op::Send { by, text } => call(
                &t,
                conn(*by),
                &results,
                "send_message",
                &(format!("t{text}"),),
            ),
            Op::Join { by, zone } => call(
                &t,
                conn(*by),
                &results,
                "join",
                &(format!("p{by:?}"), *zone),
            ),
            Op::Move { by, zone } => call(&t, conn(*by), &results, "move", &(*zone,)),
            Op::Deal { by, amounts } => {
                let targets: Vec<(Identity, u32)> = amounts
                    .iter()
                    .enumerate()
                    .map(|(k, a)| (ids(k), *a))
                    .collect();
                call(&t, conn(*by), &results, "deal", &targets)
            }
            Op::Fail { by } => call(
                &t,
                conn(*by),
                &results,
                "fail_after_insert",
                &("no".to_string(),),
            ),
        }
    }
    // A barrier per connection: its result comes after every earlier commit's update.
    let barriers = Arc::new(AtomicUsize::new(0));
    for conn in on_inbox.iter().chain(&alone) {
        let b = barriers.clone();
        conn.reducer_then("noop", &(), move |_, _| {
            b.fetch_add(1, Ordering::SeqCst);
        })
        .expect("barrier");
    }
    let n = on_inbox.len() + alone.len();
    drive_both(&inbox, &alone, || barriers.load(Ordering::SeqCst) == n);
    let calls_by_inbox = ops
        .iter()
        .filter(|o| {
            matches!(
                o,
                Op::Send { by: Some(_), .. }
                    | Op::Join { by: Some(_), .. }
                    | Op::Move { by: Some(_), .. }
                    | Op::Deal { by: Some(_), .. }
                    | Op::Fail { by: Some(_) }
            )
        })
        .count();
    assert_eq!(
        results.lock().len(),
        calls_by_inbox,
        "every call made through the inbox got its own result"
    );
    for i in 0..clients.len() {
        assert_eq!(
            cache(&on_inbox[i]),
            cache(&alone[i]),
            "client {i} ({:?}): caches differ",
            clients[i]
        );
        assert_eq!(
            *seen_inbox[i].lock(),
            *seen_alone[i].lock(),
            "client {i} ({:?}): callbacks differ",
            clients[i]
        );
    }
    t.shutdown();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn inbox_clients_see_what_clients_with_their_own_queues_see(
        (clients, ops) in prop::collection::vec(client(), 1..5).prop_flat_map(|clients| {
            let n = clients.len();
            (Just(clients), prop::collection::vec(op(n), 1..20))
        })
    ) {
        run(&clients, &ops);
    }
}

/// Two connections of one inbox hold the same query with different shares: one in set
/// 1, the other in sets 1 and 2. A commit changing only that query, made by nobody on
/// the inbox, takes the hub's cached batch. Each must still get its own share: the
/// second connection's row must survive unsubscribing its set 1, as set 2 still holds it.
#[test]
fn a_cached_batch_gives_each_connection_its_own_share() {
    let t = start();
    let inbox = t.inbox();
    let (one, both) = (inbox.connect(), inbox.connect());
    let q = "SELECT * FROM message";
    // `one` subscribes first, so its share is the batch's first message.
    subscribe_and_wait(&one, &[q]);
    let first = both.subscribe(&[q]).expect("subscribe");
    subscribe_and_wait(&both, &[q]);
    futures::executor::block_on(t.call("send_message", &("hi".to_string(),)))
        .expect("call")
        .outcome
        .expect("committed");
    assert!(inbox.run_until(WAIT, |_| one.count("message") == 1
        && both.count("message") == 1));
    let gone = Arc::new(AtomicUsize::new(0));
    let g = gone.clone();
    first
        .unsubscribe_then(move |_| {
            g.fetch_add(1, Ordering::SeqCst);
        })
        .expect("unsubscribe");
    assert!(inbox.run_until(WAIT, |_| gone.load(Ordering::SeqCst) == 1));
    assert_eq!(both.count("message"), 1, "set 2 still holds the row");
    assert_eq!(one.count("message"), 1);
    t.shutdown();
}

#[test]
fn an_inbox_past_its_bound_drops_all_its_connections_and_nobody_else() {
    let t = start();
    let inbox = t.inbox_with(QueueLimits {
        messages_max: 8,
        bytes_max: usize::MAX,
    });
    let a = inbox.connect();
    let b = inbox.connect();
    let other = t.connect();
    for conn in [&a, &b, &other] {
        subscribe_and_wait(conn, &["SELECT * FROM message"]);
    }
    let sessions = t.metrics().sessions.load(Ordering::SeqCst);
    // Nobody drains the inbox: the commits pile up in it until it passes its bound.
    for i in 0..20 {
        futures::executor::block_on(t.call("send_message", &(format!("m{i}"),)))
            .expect("call")
            .outcome
            .expect("committed");
    }
    wait_for(&other, "the other client's rows", |c| {
        c.count("message") == 20
    });
    inbox.run_until(WAIT, |_| {
        a.disconnected().is_some() && b.disconnected().is_some()
    });
    for conn in [&a, &b] {
        let reason = conn.disconnected().expect("dropped");
        assert!(reason.contains("inbox bound passed"), "{reason}");
        // The backlog was released: not all 20 commits reached the cache.
        assert!(conn.count("message") < 20);
    }
    assert_eq!(inbox.connections(), 0);
    // The server forgot both sessions; the other client keeps working.
    let deadline = Instant::now() + WAIT;
    while t.metrics().sessions.load(Ordering::SeqCst) != sessions - 2 {
        assert!(
            Instant::now() < deadline,
            "the dropped sessions were not detached"
        );
        std::thread::yield_now();
    }
    futures::executor::block_on(t.call("send_message", &("after".to_string(),)))
        .expect("call")
        .outcome
        .expect("committed");
    wait_for(&other, "the row after the drop", |c| {
        c.count("message") == 21
    });
    assert!(other.disconnected().is_none());
    t.shutdown();
}

#[test]
fn one_commit_reaches_every_inbox_connection_in_one_item() {
    let t: Tidings = start();
    let inbox = t.inbox();
    let conns: Vec<DbConnection> = (0..50).map(|_| inbox.connect()).collect();
    let applied = Arc::new(AtomicUsize::new(0));
    for c in &conns {
        let a = applied.clone();
        c.subscription_builder()
            .on_applied(move |_| {
                a.fetch_add(1, Ordering::SeqCst);
            })
            .subscribe(&["SELECT * FROM message"])
            .expect("subscribe");
    }
    assert!(inbox.run_until(WAIT, |_| applied.load(Ordering::SeqCst) == 50));
    inbox.frame_tick();
    let d0 = t.metrics().deliveries.load(Ordering::SeqCst);
    futures::executor::block_on(t.call("send_message", &("hi".to_string(),)))
        .expect("call")
        .outcome
        .expect("committed");
    let deadline = Instant::now() + WAIT;
    while t.metrics().deliveries.load(Ordering::SeqCst) < d0 + 50 {
        assert!(Instant::now() < deadline, "not delivered");
        std::thread::yield_now();
    }
    assert_eq!(inbox.len(), 1, "one item for the whole commit");
    assert_eq!(inbox.frame_tick(), 50, "it reaches all 50 connections");
    assert!(conns.iter().all(|c| c.count("message") == 1));
    t.shutdown();
}
