//! Protocol behaviour in process: reducer results, request ids, and bad input answered to
//! the offending client only. v1 compatibility is in `protocol_v1.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use parking_lot::Mutex;
use tidings::ReducerError;

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
