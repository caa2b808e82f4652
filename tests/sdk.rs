//! Client SDK behaviour: event dedup across query sets, updates, callback removal, slow
//! clients, and the handle's thread-safety.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use parking_lot::Mutex;
use tidings::actors::queue::QueueLimits;
use tidings::{ConnectOptions, DbConnection, Identity, Tidings};

fn call<A: serde::Serialize>(conn: &DbConnection, reducer: &str, args: &A) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    conn.reducer_then(reducer, args, move |_, r| {
        r.expect("reducer succeeds");
        d.store(true, Ordering::SeqCst);
    })
    .expect("call");
    wait_for(conn, reducer, |_| done.load(Ordering::SeqCst));
}

#[test]
fn one_on_insert_per_distinct_event_across_partners_and_overlapping_query_sets() {
    let t = start();
    // damage.target joins message.sender, and the target has sent 3 messages: 3 partners.
    let me = t.connect();
    for i in 0..3 {
        call(&me, "send_message", &(format!("m{i}"),));
    }
    let watcher = t.connect();
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let s = seen.clone();
    watcher.table::<Damage>().on_insert(move |ctx, d| {
        assert_eq!(ctx.conn.table::<Damage>().count(), 0);
        s.lock().push(d.amount);
    });
    let join = "SELECT damage.* FROM damage JOIN message ON damage.target = message.sender";
    subscribe_and_wait(&watcher, &[join]);
    subscribe_and_wait(&watcher, &[join, "SELECT * FROM damage WHERE amount > 0"]);
    call(
        &watcher,
        "deal",
        &vec![(me.identity(), 4u32), (Identity::from_u64(12345), 6u32)],
    );
    // The event for `me` matches 3 partners and is in 2 query sets (3 times in total);
    // the other event is in one set only. One callback each.
    let mut got = seen.lock().clone();
    got.sort();
    assert_eq!(got, vec![4, 6]);
    t.shutdown();
}

#[test]
fn updates_pair_by_primary_key_and_callbacks_can_be_removed() {
    let t = start();
    let conn = t.connect();
    subscribe_and_wait(&conn, &["SELECT * FROM player"]);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let players = conn.table::<Player>();
    let l = log.clone();
    let ins = players.on_insert(move |_, p| l.lock().push(format!("insert {}", p.name)));
    let l = log.clone();
    players.on_update(move |_, old, new| {
        l.lock()
            .push(format!("update {} {}->{}", new.name, old.zone, new.zone))
    });
    let l = log.clone();
    players.on_delete(move |_, p| l.lock().push(format!("delete {}", p.name)));
    call(&conn, "join", &("ann", 1u32));
    call(&conn, "move", &(5u32,));
    assert!(players.remove_callback(ins));
    assert!(!players.remove_callback(ins), "already removed");
    let other = t.connect_with(ConnectOptions {
        identity: Some(Identity::from_u64(77)),
        ..Default::default()
    });
    call(&other, "join", &("bo", 2u32));
    wait_for(&conn, "bo arrives", |c| c.table::<Player>().count() == 2);
    assert_eq!(
        *log.lock(),
        vec!["insert ann".to_string(), "update ann 1->5".to_string()],
        "an update is one on_update (no delete + insert), and the removed callback stays silent"
    );
    assert_eq!(
        conn.table::<Player>()
            .find("name", "bo".to_string())
            .map(|p| p.zone),
        Some(2)
    );
    t.shutdown();
}

/// A query listed twice in one set (directly, or also through `SELECT * FROM *`) holds
/// its rows once: a row in the snapshot leaves the cache when the row changes, as it
/// would with the query listed once. Checked both as the caller and as another client.
#[test]
fn a_query_listed_twice_in_one_set_counts_its_rows_once() {
    let t = start();
    let mover = t.connect();
    call(&mover, "join", &("ann".to_string(), 1u32));
    let watcher = t.connect();
    for conn in [&mover, &watcher] {
        subscribe_and_wait(
            conn,
            &[
                "SELECT * FROM player",
                "select * from player",
                "SELECT * FROM *",
            ],
        );
        assert_eq!(conn.count("player"), 1);
    }
    // An update: the old row leaves, the new one enters.
    call(&mover, "move", &(2u32,));
    wait_for(&watcher, "the move", |c| {
        c.table::<Player>().iter().first().map(|p| p.zone) == Some(2)
    });
    for conn in [&mover, &watcher] {
        let players = conn.table::<Player>().iter();
        assert_eq!(players.len(), 1, "{players:?}");
        assert_eq!(players[0].zone, 2);
    }
    t.shutdown();
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_nobody_else_notices() {
    let t = Tidings::builder(module())
        .arbiters(2)
        .start()
        .expect("start");
    let slow = t.connect_with(ConnectOptions {
        queue_limits: Some(QueueLimits {
            messages_max: 8,
            bytes_max: usize::MAX,
        }),
        ..Default::default()
    });
    let fast = t.connect();
    subscribe_and_wait(&slow, &["SELECT * FROM message"]);
    subscribe_and_wait(&fast, &["SELECT * FROM message"]);
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    fast.table::<Message>().on_insert(move |_, _| {
        g.fetch_add(1, Ordering::SeqCst);
    });
    // `slow` never processes its queue from here on.
    for i in 0..50 {
        call(&fast, "send_message", &(format!("m{i}"),));
    }
    assert_eq!(
        got.load(Ordering::SeqCst),
        50,
        "the fast client saw every commit"
    );
    assert!(t.metrics().dropped_total() >= 1);
    // The slow client's backlog was released: only the disconnect notice is left.
    slow.frame_tick();
    let reason = slow.disconnected().expect("slow client was dropped");
    assert!(reason.contains("not reading fast enough"), "{reason}");
    t.shutdown();
}

#[test]
fn the_handle_is_send_sync_and_clone() {
    fn assert_handle<T: Send + Sync + Clone + 'static>() {}
    assert_handle::<Tidings>();
    assert_handle::<DbConnection>();
    let t = start();
    let t2 = t.clone();
    let r = std::thread::spawn(move || t2.call_blocking("send_message", &("from another thread",)))
        .join()
        .expect("thread")
        .expect("call");
    assert!(r.outcome.is_ok());
    assert_eq!(r.tx_offset, Some(1));
    t.shutdown();
}

#[test]
fn a_subscribe_storm_evaluates_each_query_once_per_offset() {
    let t = start();
    let writer = t.connect();
    for i in 0..20 {
        call(&writer, "send_message", &(format!("m{i}"),));
    }
    let before = t.metrics().snapshots.load(Ordering::SeqCst);
    let clients: Vec<DbConnection> = (0..50).map(|_| t.connect()).collect();
    for c in &clients {
        c.subscribe(&["SELECT * FROM message"]).expect("subscribe");
    }
    for c in &clients {
        wait_for(c, "snapshot", |c| c.table::<Message>().count() == 20);
    }
    let evaluated = t.metrics().snapshots.load(Ordering::SeqCst) - before;
    assert_eq!(
        evaluated, 1,
        "50 subscribers at one offset share one snapshot"
    );
    t.shutdown();
}
