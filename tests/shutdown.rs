//! Graceful shutdown, in order: new requests are refused; the transaction in progress
//! finishes and is durable; calls queued behind it are answered with an error and never
//! run; every session receives what was queued for it and then ends with the reason (a
//! WebSocket with close code 1001); the data directory reopens with exactly the finished
//! transaction.

mod common;

use std::time::Duration;

use awc::ws::{CloseCode, Frame};
use common::gate::{Gate, module};
use common::wsv2::{call, next_frame, send};
use tidings::actors::server::Server;
use tidings::actors::server::token::TokenKey;
use tidings::actors::server::ws::WsLimits;
use tidings::actors::wire::v2::{self, OutcomeWire, ServerMessageWire};
use tidings::{Tidings, TidingsError};

/// MessagePack arguments `(text,)`.
fn text(t: &str) -> Vec<u8> {
    rmp_serde::to_vec(&(t,)).expect("args")
}

fn texts(tidings: &Tidings) -> Vec<String> {
    let ds = tidings.datastore();
    let table = ds.schema().table_id("message").expect("message");
    let mut out: Vec<String> = ds
        .read()
        .rows(table)
        .iter()
        .map(|r| r[3].to_string().trim_matches('"').to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn shutdown_finishes_the_running_call_answers_queued_ones_and_closes_sessions_with_a_reason() {
    static GATE: Gate = Gate::new();
    let dir = tempfile::tempdir().expect("dir");
    actix_rt::System::new().block_on(async {
        let tidings = Tidings::builder(module(&GATE))
            .data_dir(dir.path())
            .start()
            .expect("start");
        let server = Server::new(tidings.clone(), TokenKey::random().expect("key"), WsLimits::default());
        let (running, addrs) = server.bind("127.0.0.1:0").expect("bind");
        actix_rt::spawn(running);
        let (_, mut ws) = awc::Client::new()
            .ws(format!("ws://127.0.0.1:{}/subscribe", addrs[0].port()))
            .connect()
            .await
            .expect("connects");
        assert!(matches!(
            next_frame(&mut ws).await,
            Frame::Binary(b) if matches!(v2::decode_server(&b), Ok(ServerMessageWire::InitialConnection { .. }))
        ));
        let local = tidings.connect();
        common::subscribe_and_wait(&local, &["SELECT * FROM message"]);
        // An in-process client delivered through an application thread's inbox ends the
        // same way.
        let inbox = tidings.inbox();
        let on_inbox = inbox.connect();
        common::subscribe_and_wait(&on_inbox, &["SELECT * FROM message"]);

        GATE.set(false);
        send(&mut ws, call(1, "hold", text("held"))).await;
        send(&mut ws, call(2, "send_message", text("queued 1"))).await;
        send(&mut ws, call(3, "send_message", text("queued 2"))).await;
        // Wait until all three are in the transaction actor's hands (one running).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tidings.tx_queue_len() < 2 {
            assert!(std::time::Instant::now() < deadline, "calls never queued");
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }

        let stopping = tidings.clone();
        let shutdown = actix_rt::spawn(async move {
            stopping.shutdown_gracefully("the server is shutting down").await;
        });
        while !tidings.is_stopping() {
            actix_rt::task::yield_now().await;
        }
        match local.call("send_message", &("too late",)) {
            Err(TidingsError::Stopped) => {}
            other => panic!("a new request after shutdown began: {other:?}"),
        }
        GATE.set(true);
        shutdown.await.expect("shutdown completes");

        // The socket sees the held call's result, the two refusals, then the close.
        let mut results = Vec::new();
        let close = loop {
            match next_frame(&mut ws).await {
                Frame::Binary(b) => {
                    if let ServerMessageWire::ReducerResult {
                        request_id, outcome, ..
                    } = v2::decode_server(&b).expect("decodes")
                    {
                        results.push((request_id, outcome));
                    }
                }
                Frame::Close(reason) => break reason,
                other => panic!("unexpected frame {other:?}"),
            }
        };
        assert_eq!(results.len(), 3, "{results:?}");
        assert!(matches!(results[0], (1, OutcomeWire::Ok { .. })), "{:?}", results[0]);
        for (id, outcome) in &results[1..] {
            match outcome {
                OutcomeWire::InternalError(e) => {
                    assert!(e.contains("shutting down") && e.contains("not run"), "{id}: {e}")
                }
                other => panic!("queued call {id} got {other:?}"),
            }
        }
        let close = close.expect("a close reason");
        assert_eq!(close.code, CloseCode::Away);
        assert_eq!(close.description.as_deref(), Some("the server is shutting down"));

        // The in-process clients saw the held commit, then the end.
        for local in [&local, &on_inbox] {
            common::wait_for(local, "the disconnect", |c| c.disconnected().is_some());
            assert_eq!(
                local.disconnected().as_deref(),
                Some("the server is shutting down")
            );
            assert_eq!(local.count("message"), 1);
        }
        assert_eq!(inbox.connections(), 0, "the inbox forgot its ended connection");
        assert_eq!(texts(&tidings), vec!["held".to_string()]);
        tidings.shutdown();
    });

    // The finished transaction is durable; the refused ones never happened.
    let reopened = Tidings::builder(module(&GATE))
        .data_dir(dir.path())
        .start()
        .expect("reopen");
    assert_eq!(texts(&reopened), vec!["held".to_string()]);
    reopened.shutdown();
}
