//! v1 compatibility on each v1 path: in process, over a WebSocket in v1 MessagePack, and
//! in v1 JSON, with the same assertions (v2 clients of a scenario use the same
//! transport). Event tables are refused by all three subscription paths, `SELECT * FROM *`
//! leaves them out, the caller's own transaction update answers its reducer call, and
//! one-off queries, single, multi and legacy sets behave alike on every path.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use parking_lot::Mutex;
use tidings::actors::messages::ReducerStatus;
use tidings::{Event, Identity, ReducerError, V1_EVENT_TABLE_ERROR};

/// Each of v1's three subscription paths, on each v1 path.
#[test]
fn v1_rejects_event_table() {
    on_each_v1_path(v1_rejects_event_table_on);
}

fn v1_rejects_event_table_on(h: &Harness) {
    let conn = h.connect_v1();
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
    assert_eq!(
        conn.subscription_errors().len(),
        3,
        "nothing else went wrong"
    );
}

/// On each v1 path, with v2 clients over the same transport (in process, then WebSocket).
#[test]
fn select_star_from_star() {
    on_each_v1_path(select_star_from_star_on);
}

fn select_star_from_star_on(h: &Harness) {
    let server_side = h.connect();
    let (ok, on_ok) = applied_flag();
    server_side
        .subscription_builder()
        .on_applied(on_ok)
        .subscribe(&["SELECT * FROM *"])
        .expect("subscribe");
    wait_for(&server_side, "applied", |_| ok.load(Ordering::SeqCst));

    let old = h.connect_v1();
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
    let msgs: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (conn, n) in [(&server_side, &msgs[0]), (&old, &msgs[1])] {
        let n = n.clone();
        conn.table::<Message>().on_insert(move |_, _| {
            n.fetch_add(1, Ordering::SeqCst);
        });
    }
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
    // Commits reach each client in order: once the marker is in, the deal was seen.
    server_side
        .call("send_message", &("marker",))
        .expect("marker");
    wait_for(&server_side, "marker", |_| {
        msgs[0].load(Ordering::SeqCst) == 1
    });
    wait_for(&old, "v1 marker", |_| msgs[1].load(Ordering::SeqCst) == 1);
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

/// v1 has no reducer result: the caller's own transaction update carries its call, with
/// its request id, and answers `reducer_then`; another v1 client sees the commit with the
/// call emptied, as a plain transaction.
#[test]
fn v1_caller_sees_its_reducer_event_and_others_an_emptied_one() {
    on_each_v1_path(v1_caller_sees_its_reducer_event_and_others_an_emptied_one_on);
}

fn v1_caller_sees_its_reducer_event_and_others_an_emptied_one_on(h: &Harness) {
    let caller = h.connect_v1();
    let other = h.connect_v1();
    type Seen = Arc<Mutex<Vec<(String, Event)>>>;
    let seen: Seen = Arc::default();
    for (name, conn) in [("caller", &caller), ("other", &other)] {
        let s = seen.clone();
        conn.table::<Message>().on_insert(move |ctx, m| {
            s.lock()
                .push((format!("{name}:{}", m.text), ctx.event.clone()))
        });
        subscribe_and_wait(conn, &["SELECT * FROM message"]);
    }
    type Answer = Arc<Mutex<Vec<(Event, Result<Vec<u8>, ReducerError>)>>>;
    let answers: Answer = Arc::default();
    let mut ids = Vec::new();
    for (reducer, text) in [("send_message", "hi"), ("fail_after_insert", "never")] {
        let a = answers.clone();
        ids.push(
            caller
                .reducer_then(reducer, &(text,), move |ctx, r| {
                    a.lock().push((ctx.event.clone(), r))
                })
                .expect("call"),
        );
    }
    // No arguments at all (JSON sends them as `[]`).
    let a = answers.clone();
    caller
        .reducer_then("noop", &(), move |ctx, r| {
            a.lock().push((ctx.event.clone(), r))
        })
        .expect("call");
    wait_for(&caller, "three results", |_| answers.lock().len() == 3);
    wait_for(&other, "the other client's insert", |_| {
        seen.lock().iter().any(|(who, _)| who == "other:hi")
    });

    let answers = answers.lock().clone();
    let (event, result) = &answers[0];
    assert!(
        matches!(event, Event::Reducer { request_id, reducer, status: ReducerStatus::Committed(_), .. }
            if *request_id == ids[0] && reducer == "send_message"),
        "the caller's own event, with its request id: {event:?}"
    );
    let value = result.as_ref().expect("send_message commits");
    rmp_serde::from_slice::<()>(value).expect("the reducer's unit return value");
    assert_eq!(
        answers[1],
        (
            Event::Reducer {
                request_id: ids[1],
                reducer: "fail_after_insert".into(),
                timestamp: match &answers[1].0 {
                    Event::Reducer { timestamp, .. } => *timestamp,
                    other => panic!("a reducer event: {other:?}"),
                },
                status: ReducerStatus::Failed("refused on purpose".into()),
            },
            Err(ReducerError::User("refused on purpose".into()))
        ),
        "the failed call's own error"
    );
    assert!(
        matches!(&answers[2], (Event::Reducer { reducer, .. }, Ok(_)) if reducer == "noop"),
        "{:?}",
        answers[2]
    );

    let seen = seen.lock().clone();
    assert_eq!(
        seen.len(),
        2,
        "one insert per client, none for the failed call: {seen:?}"
    );
    assert!(
        seen.iter().any(|(who, e)| who == "caller:hi"
            && matches!(e, Event::Reducer { request_id, .. } if *request_id == ids[0])),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(who, e)| who == "other:hi" && matches!(e, Event::Transaction { .. })),
        "the other client does not learn whose call it was: {seen:?}"
    );
}

/// One-off queries on each v1 path: decoded rows, and a bad query's error.
#[test]
fn v1_one_off_queries_return_rows_and_errors() {
    on_each_v1_path(v1_one_off_queries_return_rows_and_errors_on);
}

fn v1_one_off_queries_return_rows_and_errors_on(h: &Harness) {
    let writer = h.tidings.connect();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    writer
        .reducer_then("send_message", &("kept",), move |_, r| {
            r.expect("commits");
            d.store(true, Ordering::SeqCst);
        })
        .expect("call");
    wait_for(&writer, "the message", |_| done.load(Ordering::SeqCst));

    let conn = h.connect_v1();
    check_one_off_queries(&conn, writer.identity());
}

/// `SubscribeSingle`, `SubscribeMulti` and the legacy `Subscribe` on each v1 path: the
/// single and multi sets end with their own unsubscribe, and a legacy `Subscribe`
/// replaces the legacy set's rows (on_delete for the rows it no longer holds).
#[test]
fn v1_single_multi_and_legacy_sets() {
    on_each_v1_path(v1_single_multi_and_legacy_sets_on);
}

fn v1_single_multi_and_legacy_sets_on(h: &Harness) {
    let writer = h.tidings.connect();
    let done = Arc::new(AtomicUsize::new(0));
    for (reducer, args) in [
        ("send_message", ("m".to_string(), None)),
        ("join", ("ann".to_string(), Some(1u32))),
    ] {
        let d = done.clone();
        let then = move |_: &tidings::EventContext, r: Result<Vec<u8>, ReducerError>| {
            r.expect("commits");
            d.fetch_add(1, Ordering::SeqCst);
        };
        match args {
            (text, None) => writer.reducer_then(reducer, &(text,), then),
            (name, Some(zone)) => writer.reducer_then(reducer, &(name, zone), then),
        }
        .expect("call");
    }
    wait_for(&writer, "the seed rows", |_| {
        done.load(Ordering::SeqCst) == 2
    });

    let conn = h.connect_v1();
    let deleted: Arc<Mutex<Vec<(String, Event)>>> = Arc::default();
    let d = deleted.clone();
    conn.table::<Message>()
        .on_delete(move |ctx, m| d.lock().push((m.text.clone(), ctx.event.clone())));
    let applied = Arc::new(AtomicUsize::new(0));
    let on_applied = || {
        let a = applied.clone();
        move |_: &tidings::EventContext| {
            a.fetch_add(1, Ordering::SeqCst);
        }
    };
    conn.subscription_builder()
        .on_applied(on_applied())
        .subscribe_v1_legacy(&["SELECT * FROM message"])
        .expect("legacy");
    wait_for(&conn, "legacy applied", |_| {
        applied.load(Ordering::SeqCst) == 1
    });
    assert_eq!(conn.table::<Message>().count(), 1);

    conn.subscription_builder()
        .on_applied(on_applied())
        .subscribe_v1_legacy(&["SELECT * FROM player"])
        .expect("legacy replace");
    wait_for(&conn, "legacy replaced", |_| {
        applied.load(Ordering::SeqCst) == 2
    });
    assert_eq!(
        (
            conn.table::<Message>().count(),
            conn.table::<Player>().count()
        ),
        (0, 1),
        "the legacy set holds exactly the new query's rows"
    );
    assert_eq!(deleted.lock().len(), 1, "{:?}", deleted.lock());

    let single = conn
        .subscription_builder()
        .on_applied(on_applied())
        .subscribe_v1_single("SELECT * FROM message")
        .expect("single");
    let multi = conn
        .subscription_builder()
        .on_applied(on_applied())
        .subscribe(&[
            "SELECT * FROM message",
            "SELECT * FROM player WHERE zone = 1",
        ])
        .expect("multi");
    wait_for(&conn, "single and multi applied", |_| {
        applied.load(Ordering::SeqCst) == 4
    });
    assert_eq!(
        (
            conn.table::<Message>().count(),
            conn.table::<Player>().count()
        ),
        (1, 1)
    );
    let ended = Arc::new(AtomicUsize::new(0));
    for handle in [single, multi] {
        let e = ended.clone();
        handle
            .unsubscribe_then(move |ctx| {
                assert!(
                    matches!(ctx.event, Event::UnsubscribeApplied { .. }),
                    "{:?}",
                    ctx.event
                );
                e.fetch_add(1, Ordering::SeqCst);
            })
            .expect("unsubscribe");
    }
    wait_for(&conn, "both unsubscribed", |_| {
        ended.load(Ordering::SeqCst) == 2
    });
    assert_eq!(
        (
            conn.table::<Message>().count(),
            conn.table::<Player>().count()
        ),
        (0, 1),
        "the legacy set's player stays"
    );
    assert!(
        conn.subscription_errors().is_empty(),
        "{:?}",
        conn.subscription_errors()
    );
}
