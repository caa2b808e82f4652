//! Protocol behaviour in process: v1 compatibility, `SELECT * FROM *`, reducer results,
//! request ids, and bad input answered to the offending client only.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use parking_lot::Mutex;
use tidings::{ConnectOptions, Identity, Protocol, ReducerError, V1_EVENT_TABLE_ERROR};

fn v1(t: &tidings::Tidings) -> tidings::DbConnection {
    t.connect_with(ConnectOptions {
        protocol: Protocol::V1,
        ..ConnectOptions::default()
    })
}

fn applied_flag() -> (
    Arc<AtomicBool>,
    impl FnOnce(&tidings::EventContext) + Send + 'static,
) {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    (flag, move |_: &tidings::EventContext| {
        f.store(true, Ordering::SeqCst)
    })
}

#[test]
fn v1_rejects_event_table() {
    let t = start();
    let conn = v1(&t);
    // A working legacy subscription first: it must stay in force.
    let (ok, on_ok) = applied_flag();
    conn.subscription_builder()
        .on_applied(on_ok)
        .subscribe_v1_legacy(&["SELECT * FROM message"])
        .expect("legacy subscribe");
    wait_for(&conn, "legacy applied", |_| ok.load(Ordering::SeqCst));

    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let push = |errors: &Arc<Mutex<Vec<String>>>| {
        let e = errors.clone();
        move |_: &tidings::EventContext, err: &str| e.lock().push(err.to_string())
    };
    conn.subscription_builder()
        .on_error(push(&errors))
        .subscribe_v1_single("SELECT * FROM damage")
        .expect("single");
    conn.subscription_builder()
        .on_error(push(&errors))
        .subscribe(&["SELECT * FROM player", "SELECT * FROM damage"])
        .expect("multi");
    conn.subscription_builder()
        .on_error(push(&errors))
        .subscribe_v1_legacy(&["SELECT * FROM damage"])
        .expect("legacy");
    wait_for(&conn, "three rejections", |_| errors.lock().len() == 3);
    assert!(
        errors.lock().iter().all(|e| e == V1_EVENT_TABLE_ERROR),
        "{:?}",
        errors.lock()
    );

    // The earlier legacy set still delivers.
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    conn.table::<Message>().on_insert(move |_, _| {
        g.fetch_add(1, Ordering::SeqCst);
    });
    conn.call("send_message", &("still here",)).expect("call");
    wait_for(&conn, "message after rejections", |_| {
        got.load(Ordering::SeqCst) == 1
    });
    assert_eq!(conn.table::<Message>().count(), 1);
    t.shutdown();
}

/// v2 clients over the harness's transport; the v1 client in process (the WebSocket
/// client speaks v2 only so far).
#[test]
fn select_star_from_star() {
    on_each_transport(select_star_from_star_on);
}

fn select_star_from_star_on(h: &Harness) {
    let t = &h.tidings;
    let server_side = h.connect();
    let (ok, on_ok) = applied_flag();
    server_side
        .subscription_builder()
        .on_applied(on_ok)
        .subscribe(&["SELECT * FROM *"])
        .expect("subscribe");
    wait_for(&server_side, "applied", |_| ok.load(Ordering::SeqCst));

    let old = v1(t);
    let (ok1, on_ok1) = applied_flag();
    old.subscription_builder()
        .on_applied(on_ok1)
        .subscribe_v1_legacy(&["SELECT * FROM *"])
        .expect("v1 star");
    wait_for(&old, "v1 applied", |_| ok1.load(Ordering::SeqCst));

    let named = h.connect();
    let (ok2, on_ok2) = applied_flag();
    named
        .subscription_builder()
        .on_applied(on_ok2)
        .subscribe_to_all_tables()
        .expect("all tables");
    wait_for(&named, "named applied", |_| ok2.load(Ordering::SeqCst));

    let events: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (conn, n) in [
        (&server_side, &events[0]),
        (&old, &events[1]),
        (&named, &events[2]),
    ] {
        let n = n.clone();
        conn.table::<Damage>().on_insert(move |_, _| {
            n.fetch_add(1, Ordering::SeqCst);
        });
    }
    let msgs = Arc::new(AtomicUsize::new(0));
    let m = msgs.clone();
    server_side.table::<Message>().on_insert(move |_, _| {
        m.fetch_add(1, Ordering::SeqCst);
    });
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    named
        .reducer_then("deal", &vec![(Identity::from_u64(3), 1u32)], move |_, r| {
            r.expect("deal");
            d.store(true, Ordering::SeqCst);
        })
        .expect("deal");
    wait_for(&named, "named gets the event", |_| {
        done.load(Ordering::SeqCst) && events[2].load(Ordering::SeqCst) == 1
    });
    server_side
        .call("send_message", &("marker",))
        .expect("marker");
    wait_for(&server_side, "marker", |_| msgs.load(Ordering::SeqCst) == 1);
    old.frame_tick();
    assert_eq!(
        events[0].load(Ordering::SeqCst),
        0,
        "SELECT * FROM * excludes event tables"
    );
    assert_eq!(
        events[1].load(Ordering::SeqCst),
        0,
        "v1 star excludes event tables"
    );
}

type Results = Arc<Mutex<Vec<Result<Vec<u8>, ReducerError>>>>;

#[test]
fn reducer_failure_changes_nothing_and_only_the_caller_hears() {
    let t = start();
    let caller = t.connect();
    let other = t.connect();
    let inserts = Arc::new(AtomicUsize::new(0));
    for c in [&caller, &other] {
        let n = inserts.clone();
        c.table::<Message>().on_insert(move |_, _| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        let (ok, on_ok) = applied_flag();
        c.subscription_builder()
            .on_applied(on_ok)
            .subscribe(&["SELECT * FROM message"])
            .expect("sub");
        wait_for(c, "applied", |_| ok.load(Ordering::SeqCst));
    }
    let results: Results = Arc::default();
    for reducer in ["fail_after_insert", "panic_after_insert", "no_such_reducer"] {
        let r = results.clone();
        caller
            .reducer_then(reducer, &("x",), move |_, res| r.lock().push(res))
            .expect("call");
    }
    let r = results.clone();
    caller
        .reducer_then("send_message", &(5u8, 6u8), move |_, res| {
            r.lock().push(res)
        })
        .expect("bad args");
    wait_for(&caller, "four results", |_| results.lock().len() == 4);
    let results = results.lock().clone();
    assert_eq!(
        results[0],
        Err(ReducerError::User("refused on purpose".into()))
    );
    assert!(
        matches!(&results[1], Err(ReducerError::Internal(m)) if m.contains("panicked: boom")),
        "{results:?}"
    );
    assert!(
        matches!(&results[2], Err(ReducerError::Internal(m)) if m == "no reducer named `no_such_reducer`"),
        "{results:?}"
    );
    assert!(
        matches!(&results[3], Err(ReducerError::Internal(m)) if m.contains("do not decode")),
        "{results:?}"
    );
    // The actor survived the panic and nothing was committed.
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    caller
        .reducer_then("send_message", &("ok",), move |_, r| {
            r.expect("works after a panic");
            d.store(true, Ordering::SeqCst);
        })
        .expect("call");
    wait_for(&caller, "recovery", |_| done.load(Ordering::SeqCst));
    wait_for(&other, "other sees only the good message", |_| {
        inserts.load(Ordering::SeqCst) == 2
    });
    assert_eq!(
        t.datastore().read().offset(),
        1,
        "failed reducers took no offset"
    );
    t.shutdown();
}

#[test]
fn concurrent_calls_each_get_their_own_result() {
    let t = start();
    let conn = t.connect();
    let results: Arc<Mutex<Vec<(u32, String)>>> = Arc::default();
    let mut ids = Vec::new();
    for i in 0..50u32 {
        let r = results.clone();
        let id = conn
            .reducer_then("send_message", &(format!("m{i}"),), move |ctx, res| {
                res.expect("ok");
                if let tidings::Event::Reducer { request_id, .. } = ctx.event {
                    r.lock().push((request_id, format!("m{i}")));
                }
            })
            .expect("call");
        ids.push(id);
    }
    wait_for(&conn, "fifty results", |_| results.lock().len() == 50);
    let mut got = results.lock().clone();
    got.sort();
    let mut want: Vec<(u32, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, format!("m{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want, "each callback saw its own request id");
    assert!(ids.iter().all(|id| *id != 0), "no request id is 0");
    t.shutdown();
}

#[test]
fn bad_requests_get_clear_errors_and_break_nothing() {
    let t = start();
    let bad = t.connect();
    let good = t.connect();
    let (ok, on_ok) = applied_flag();
    good.subscription_builder()
        .on_applied(on_ok)
        .subscribe(&["SELECT * FROM message"])
        .expect("sub");
    wait_for(&good, "good applied", |_| ok.load(Ordering::SeqCst));

    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    for q in [
        "SELECT * FROM nope",
        "SELECT * FROM message ORDER BY id",
        "SELECT x FROM message",
    ] {
        let e = errors.clone();
        bad.subscription_builder()
            .on_error(move |_, err| e.lock().push(err.to_string()))
            .subscribe(&[q])
            .expect("send");
    }
    bad.send(tidings::actors::messages::ClientMessage::Unsubscribe {
        request_id: 77,
        query_set_id: 999,
        send_dropped_rows: false,
    })
    .expect("send");
    let (ok2, on_ok2) = applied_flag();
    bad.subscription_builder()
        .on_applied(on_ok2)
        .subscribe(&["SELECT * FROM player"])
        .expect("sub");
    wait_for(&bad, "errors and the good subscribe", |c| {
        ok2.load(Ordering::SeqCst) && c.subscription_errors().len() == 4
    });
    let errs = bad.subscription_errors();
    assert!(errs[0].contains("unknown table `nope`"), "{errs:?}");
    assert!(errs[1].contains("ORDER BY is not supported"), "{errs:?}");
    assert!(errs[2].contains("column projection"), "{errs:?}");
    assert_eq!(errs[3], "unknown query set 999");
    // Double subscribe with the same id.
    bad.send(tidings::actors::messages::ClientMessage::Subscribe {
        request_id: 78,
        query_set_id: 4,
        queries: vec!["SELECT * FROM message".into()],
    })
    .expect("send");
    wait_for(&bad, "duplicate id error", |c| {
        c.subscription_errors().len() == 5
    });
    assert!(bad.subscription_errors()[4].contains("already subscribed"));
    assert!(
        good.subscription_errors().is_empty(),
        "nothing reached the other client"
    );
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    good.table::<Message>().on_insert(move |_, _| {
        g.fetch_add(1, Ordering::SeqCst);
    });
    bad.call("send_message", &("hi",)).expect("call");
    wait_for(&good, "the other client keeps receiving", |_| {
        got.load(Ordering::SeqCst) == 1
    });
    t.shutdown();
}
