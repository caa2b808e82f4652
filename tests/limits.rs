//! The per-connection in-flight limit: a connection with its most requests waiting in
//! the transaction actor's queue has further ones refused with a clear answer, other
//! connections are unaffected, and the count is released as requests are handled.
//!
//! A `hold` reducer blocks the transaction actor until the test opens a gate, so requests
//! pile up deterministically (no timing involved).

mod common;

use std::time::Duration;

use common::gate::{Gate, module};
use common::wsv2::{call, next, send};
use tidings::actors::server::Server;
use tidings::actors::server::token::TokenKey;
use tidings::actors::server::ws::WsLimits;
use tidings::actors::wire::v2::{OutcomeWire, ServerMessageWire};
use tidings::{Tidings, TidingsError};

#[test]
fn in_process_requests_past_the_limit_are_refused_and_the_count_is_released() {
    static GATE: Gate = Gate::new();
    let tidings = Tidings::builder(module(&GATE))
        .client_in_flight_max(2)
        .start()
        .expect("start");
    let greedy = tidings.connect();
    let other = tidings.connect();
    GATE.set(false);
    // One call runs (blocked in `hold`), one waits: two in flight.
    greedy.call("hold", &("held",)).expect("first accepted");
    let queued = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = queued.clone();
    greedy
        .reducer_then("send_message", &("queued",), move |_, r| {
            flag.store(r.is_ok(), std::sync::atomic::Ordering::SeqCst);
        })
        .expect("second accepted");
    match greedy.call("send_message", &("refused",)) {
        Err(TidingsError::TooManyInFlight(2)) => {}
        other => panic!("expected TooManyInFlight(2), got {other:?}"),
    }
    let refused = greedy
        .subscribe(&["SELECT * FROM message"])
        .err()
        .map(|e| e.to_string());
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("2 requests in flight")),
        "subscribe refused with a reason, got {refused:?}"
    );
    // Another connection has its own allowance.
    other
        .call("send_message", &("other",))
        .expect("other accepted");
    GATE.set(true);
    assert!(
        greedy.run_until(Duration::from_secs(20), |_| queued
            .load(std::sync::atomic::Ordering::SeqCst)),
        "the queued call committed"
    );
    // Once its calls are answered, the allowance is back.
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ok.clone();
    greedy
        .reducer_then("send_message", &("after",), move |_, r| {
            flag.store(r.is_ok(), std::sync::atomic::Ordering::SeqCst);
        })
        .expect("accepted again");
    assert!(
        greedy.run_until(Duration::from_secs(20), |_| ok
            .load(std::sync::atomic::Ordering::SeqCst)),
        "the later call committed"
    );
    let texts: Vec<String> = tidings
        .datastore()
        .read()
        .rows(
            tidings
                .datastore()
                .schema()
                .table_id("message")
                .expect("message"),
        )
        .iter()
        .map(|r| r[3].to_string())
        .collect();
    assert_eq!(
        texts.len(),
        4,
        "held, queued, other and after committed; refused did not: {texts:?}"
    );
    assert!(!texts.iter().any(|t| t.contains("refused")), "{texts:?}");
}

#[test]
fn over_websocket_a_refused_call_is_answered_as_a_call_naming_the_limit() {
    static GATE: Gate = Gate::new();
    actix_rt::System::new().block_on(async {
        let tidings = Tidings::builder(module(&GATE))
            .client_in_flight_max(2)
            .start()
            .expect("start");
        let server = Server::new(
            tidings.clone(),
            TokenKey::random().expect("key"),
            WsLimits::default(),
        );
        let (running, addrs) = server.bind("127.0.0.1:0").expect("bind");
        actix_rt::spawn(running);
        let (_, mut conn) = awc::Client::new()
            .ws(format!("ws://127.0.0.1:{}/subscribe", addrs[0].port()))
            .connect()
            .await
            .expect("connects");
        assert!(matches!(
            next(&mut conn).await,
            ServerMessageWire::InitialConnection { .. }
        ));
        let text = |t: &str| rmp_serde::to_vec(&(t,)).expect("args");
        GATE.set(false);
        send(&mut conn, call(1, "hold", text("held"))).await;
        send(&mut conn, call(2, "send_message", text("queued"))).await;
        send(&mut conn, call(3, "send_message", text("refused"))).await;
        // The refusal comes first: the other two are still waiting behind the gate.
        match next(&mut conn).await {
            ServerMessageWire::ReducerResult {
                request_id: 3,
                tx_offset: None,
                outcome: OutcomeWire::InternalError(e),
                ..
            } => assert!(e.contains("2 requests in flight"), "{e}"),
            other => panic!("expected the refusal of request 3, got {other:?}"),
        }
        GATE.set(true);
        let mut answered = Vec::new();
        while answered.len() < 2 {
            if let ServerMessageWire::ReducerResult {
                request_id,
                outcome,
                ..
            } = next(&mut conn).await
            {
                assert!(
                    matches!(outcome, OutcomeWire::Ok { .. }),
                    "{request_id}: {outcome:?}"
                );
                answered.push(request_id);
            }
        }
        assert_eq!(answered, vec![1, 2]);
        // The allowance is back.
        send(&mut conn, call(4, "send_message", text("after"))).await;
        loop {
            if let ServerMessageWire::ReducerResult {
                request_id,
                outcome,
                ..
            } = next(&mut conn).await
            {
                assert_eq!(request_id, 4);
                assert!(matches!(outcome, OutcomeWire::Ok { .. }), "{outcome:?}");
                break;
            }
        }
    });
}
