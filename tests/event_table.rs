//! Event tables end to end: callbacks, contexts, caches. Each scenario runs twice, with
//! the same assertions: in process, and over a real WebSocket through the same
//! `DbConnection` API.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use parking_lot::Mutex;
use tidings::{Event, Identity};

#[test]
fn event_table() {
    on_each_transport(event_table_on);
}

fn event_table_on(h: &Harness) {
    let caller = h.connect();
    let other = h.connect();
    let seen: Arc<Mutex<Vec<(String, Damage, usize)>>> = Arc::default();
    for (name, conn) in [("caller", &caller), ("other", &other)] {
        let seen = seen.clone();
        let applied = Arc::new(AtomicBool::new(false));
        let a = applied.clone();
        conn.subscription_builder()
            .on_applied(move |_| a.store(true, Ordering::SeqCst))
            .subscribe(&["SELECT * FROM damage"])
            .expect("subscribe");
        conn.table::<Damage>().on_insert(move |ctx, d| {
            let kind = match &ctx.event {
                Event::Reducer { reducer, .. } => format!("{name}:reducer:{reducer}"),
                Event::Transaction { .. } => format!("{name}:transaction"),
                other => format!("{name}:{other:?}"),
            };
            // The cache stays empty even inside the callback.
            let count =
                ctx.conn.table::<Damage>().count() + ctx.conn.table::<Damage>().iter().len();
            seen.lock().push((kind, d.clone(), count));
        });
        wait_for(conn, "subscription applied", |_| {
            applied.load(Ordering::SeqCst)
        });
    }
    let target = other.identity();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    caller
        .reducer_then("deal", &vec![(target, 7u32)], move |_, r| {
            r.expect("deal succeeds");
            d.store(true, Ordering::SeqCst);
        })
        .expect("call");
    wait_for(&caller, "caller's result", |_| done.load(Ordering::SeqCst));
    wait_for(&other, "other's event", |_| {
        seen.lock().iter().any(|s| s.0.starts_with("other"))
    });
    let seen = seen.lock().clone();
    let expected = Damage {
        id: 1,
        target,
        amount: 7,
    };
    assert!(
        seen.contains(&("caller:reducer:deal".into(), expected.clone(), 0)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("other:transaction".into(), expected, 0)),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 2, "one on_insert per client: {seen:?}");
    assert_eq!(caller.table::<Damage>().count(), 0);
    assert!(other.table::<Damage>().iter().is_empty());
}

#[test]
fn multiple_events() {
    on_each_transport(multiple_events_on);
}

fn multiple_events_on(h: &Harness) {
    let conn = h.connect();
    subscribe_and_wait(&conn, &["SELECT * FROM damage"]);
    let order: Arc<Mutex<Vec<u32>>> = Arc::default();
    let deletes = Arc::new(AtomicUsize::new(0));
    let o = order.clone();
    conn.table::<Damage>()
        .on_insert(move |_, d| o.lock().push(d.amount));
    let del = deletes.clone();
    conn.table::<Damage>().on_delete(move |_, _| {
        del.fetch_add(1, Ordering::SeqCst);
    });
    let who = Identity::from_u64(9);
    conn.call("deal", &vec![(who, 30u32), (who, 10), (who, 20)])
        .expect("call");
    wait_for(&conn, "three events", |_| order.lock().len() == 3);
    assert_eq!(
        *order.lock(),
        vec![30, 10, 20],
        "callbacks follow insert order"
    );
    assert_eq!(
        deletes.load(Ordering::SeqCst),
        3,
        "on_delete right after each on_insert"
    );
}

#[test]
fn events_dont_persist() {
    on_each_transport(events_dont_persist_on);
}

fn events_dont_persist_on(h: &Harness) {
    let conn = h.connect();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    conn.table::<Damage>().on_insert(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    subscribe_and_wait(&conn, &["SELECT * FROM damage"]);
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    conn.reducer_then("deal", &vec![(Identity::from_u64(1), 5u32)], move |_, _| {
        d.fetch_add(1, Ordering::SeqCst);
    })
    .expect("deal");
    let d = done.clone();
    conn.reducer_then("noop", &(), move |_, _| {
        d.fetch_add(1, Ordering::SeqCst);
    })
    .expect("noop");
    wait_for(&conn, "both results", |_| done.load(Ordering::SeqCst) == 2);
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the no-op reducer delivers no old event"
    );
    assert_eq!(conn.table::<Damage>().count(), 0);

    // A new subscriber receives no old events.
    let late = h.connect();
    let late_count = Arc::new(AtomicUsize::new(0));
    let lc = late_count.clone();
    late.table::<Damage>().on_insert(move |_, _| {
        lc.fetch_add(1, Ordering::SeqCst);
    });
    subscribe_and_wait(&late, &["SELECT * FROM damage"]);
    assert_eq!(late_count.load(Ordering::SeqCst), 0);
    assert_eq!(
        h.tidings
            .datastore()
            .read()
            .rows(tidings::engine::TableId(1))
            .len(),
        0,
        "no event row is in committed state"
    );
}
