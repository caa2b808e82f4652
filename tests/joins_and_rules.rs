//! Event tables behind joins and visibility rules, end to end.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use parking_lot::Mutex;
use tidings::{DbConnection, Identity, Tidings};

fn record_damage(conn: &DbConnection) -> Arc<Mutex<Vec<(Identity, u32)>>> {
    let seen: Arc<Mutex<Vec<(Identity, u32)>>> = Arc::default();
    let s = seen.clone();
    conn.table::<Damage>()
        .on_insert(move |_, d| s.lock().push((d.target, d.amount)));
    seen
}

/// Calls `deal` and waits until the caller has its result.
fn deal(conn: &DbConnection, hits: Vec<(Identity, u32)>) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    conn.reducer_then("deal", &hits, move |_, r| {
        r.expect("deal");
        d.store(true, Ordering::SeqCst);
    })
    .expect("call");
    wait_for(conn, "deal result", |_| done.load(Ordering::SeqCst));
}

#[test]
fn semijoin_returning_an_event_table_delivers_events_for_matching_partners() {
    let t = start();
    let (a, b) = (t.connect(), t.connect());
    for (c, name, zone) in [(&a, "a", 1u32), (&b, "b", 2u32)] {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        c.reducer_then("join", &(name, zone), move |_, r| {
            r.expect("join");
            d.store(true, Ordering::SeqCst);
        })
        .expect("join");
        wait_for(c, "joined", |_| done.load(Ordering::SeqCst));
    }
    let watcher = t.connect();
    let seen = record_damage(&watcher);
    subscribe_and_wait(
        &watcher,
        &[
            "SELECT damage.* FROM damage JOIN player ON damage.target = player.identity WHERE player.zone = 1",
        ],
    );
    deal(
        &a,
        vec![
            (a.identity(), 5),
            (b.identity(), 6),
            (Identity::from_u64(77), 7),
        ],
    );
    // A marker the watcher sees after the deal, so everything before it has arrived.
    deal(&a, vec![(a.identity(), 8)]);
    wait_for(&watcher, "events", |_| seen.lock().len() >= 2);
    assert_eq!(*seen.lock(), vec![(a.identity(), 5), (a.identity(), 8)]);
    assert_eq!(watcher.table::<Damage>().count(), 0);
    t.shutdown();
}

#[test]
fn event_table_as_lookup_side_is_rejected() {
    let t = start();
    let c = t.connect();
    let err: Arc<Mutex<Option<String>>> = Arc::default();
    let e = err.clone();
    c.subscription_builder()
        .on_error(move |_, m| *e.lock() = Some(m.to_string()))
        .subscribe(&["SELECT player.* FROM player JOIN damage ON player.identity = damage.target"])
        .expect("send");
    wait_for(&c, "rejection", |_| err.lock().is_some());
    assert!(
        err.lock().as_deref().is_some_and(|m| m
            .ends_with("Event tables cannot be used as the lookup table in subscription joins")),
        "{:?}",
        err.lock()
    );
    t.shutdown();
}

#[test]
fn visibility_rules_on_an_event_table_deliver_only_the_subscribers_own_events() {
    let module = module().rule("damage", "SELECT * FROM damage WHERE target = :sender");
    let t = Tidings::builder(module).arbiters(2).start().expect("start");
    let (a, b) = (t.connect(), t.connect());
    let (seen_a, seen_b) = (record_damage(&a), record_damage(&b));
    subscribe_and_wait(&a, &["SELECT * FROM damage"]);
    subscribe_and_wait(&b, &["SELECT * FROM damage"]);
    deal(
        &a,
        vec![
            (a.identity(), 1),
            (b.identity(), 2),
            (b.identity(), 3),
            (Identity::from_u64(5), 4),
        ],
    );
    deal(&a, vec![(b.identity(), 9)]);
    wait_for(&b, "b's events", |_| seen_b.lock().len() == 3);
    assert_eq!(
        *seen_a.lock(),
        vec![(a.identity(), 1)],
        "a sees only its own event"
    );
    assert_eq!(
        *seen_b.lock(),
        vec![(b.identity(), 2), (b.identity(), 3), (b.identity(), 9)],
        "b sees its own, and nobody else's"
    );
    t.shutdown();
}
