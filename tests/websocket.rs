//! The WebSocket server over a real loopback socket (port 0): handshake rules, tokens,
//! subscriptions, reducer results, ordering against an in-process client, malformed input.

mod common;

use std::time::Duration;

use actix_web::web::Bytes;
use awc::ws::{Frame, Message};
use futures::{SinkExt, StreamExt};
use tidings::actors::server::token::TokenKey;
use tidings::actors::server::ws::WsLimits;
use tidings::actors::server::{SUPPORTED_PROTOCOLS, Server};
use tidings::actors::wire::rowlist;
use tidings::actors::wire::v2::{
    self, ClientMessageWire, OutcomeWire, RowsWire, ServerMessageWire,
};
use tidings::engine::Row;
use tidings::{Identity, Tidings, demo};

use common::wsv2::{Conn, FRAME_WAIT, next, next_binary, send};

async fn start() -> (Tidings, String, String) {
    let tidings = Tidings::builder(demo::chat_module())
        .start()
        .expect("start");
    let key = TokenKey::random().expect("key");
    let server = Server::new(tidings.clone(), key, WsLimits::default());
    let owner = server.owner_token();
    let (running, addrs) = server.bind("127.0.0.1:0").expect("bind");
    actix_rt::spawn(running);
    (tidings, format!("127.0.0.1:{}", addrs[0].port()), owner)
}

async fn connect(addr: &str, query: &str) -> Conn {
    let (_, conn) = awc::Client::new()
        .ws(format!("ws://{addr}/subscribe{query}"))
        .protocols(["v2.msgpack.tidings"])
        .connect()
        .await
        .expect("connects");
    conn
}

fn message_rows(tidings: &Tidings, list: &v2::RowList<'_>) -> Vec<Row> {
    let schema = tidings.datastore().schema();
    let table = schema
        .tables()
        .iter()
        .find(|t| &*t.name == "message")
        .expect("message table")
        .clone();
    let body = v2::row_list_body(&list.0).expect("body");
    let mut framed = Vec::new();
    let _ = rmp::encode::write_bin(&mut framed, &body);
    rowlist::decode(&table, &framed).expect("rows decode")
}

fn args<A: serde::Serialize>(a: &A) -> Vec<u8> {
    rmp_serde::to_vec(a).expect("args")
}

#[test]
fn subscribe_call_and_receive_over_a_real_socket() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr, _) = start().await;
        let mut a = connect(&addr, "").await;
        let ServerMessageWire::InitialConnection {
            identity, token, ..
        } = next(&mut a).await
        else {
            panic!("InitialConnection first");
        };
        let token = token.expect("a token").into_owned();
        send(
            &mut a,
            ClientMessageWire::Subscribe {
                request_id: 1,
                query_set_id: 10,
                queries: vec!["SELECT * FROM message".into()],
            },
        )
        .await;
        assert!(matches!(
            next(&mut a).await,
            ServerMessageWire::SubscribeApplied {
                request_id: 1,
                query_set_id: 10,
                ..
            }
        ));

        // A second WebSocket client and an in-process client watch the same table.
        let mut b = connect(&addr, "?compression=gzip").await;
        let _ = next(&mut b).await;
        send(
            &mut b,
            ClientMessageWire::Subscribe {
                request_id: 7,
                query_set_id: 1,
                queries: vec!["SELECT * FROM message".into()],
            },
        )
        .await;
        assert!(matches!(
            next(&mut b).await,
            ServerMessageWire::SubscribeApplied { .. }
        ));
        let local = tidings.connect();
        let applied = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ap = applied.clone();
        local
            .subscription_builder()
            .on_applied(move |_| ap.store(true, std::sync::atomic::Ordering::SeqCst))
            .subscribe(&["SELECT * FROM message"])
            .expect("local subscribe");
        assert!(local.run_until(Duration::from_secs(20), |_| {
            applied.load(std::sync::atomic::Ordering::SeqCst)
        }));

        for (i, text) in ["one", "two", "three"].iter().enumerate() {
            send(
                &mut a,
                ClientMessageWire::CallReducer {
                    request_id: 100 + i as u32,
                    reducer: "send_message".into(),
                    args: args(&(text,)),
                },
            )
            .await;
        }
        let mut a_offsets = Vec::new();
        for i in 0..3u32 {
            let ServerMessageWire::ReducerResult {
                request_id,
                tx_offset,
                outcome: OutcomeWire::Ok { update, .. },
                ..
            } = next(&mut a).await
            else {
                panic!("a reducer result");
            };
            assert_eq!(request_id, 100 + i, "results in request order");
            let RowsWire::Persistent { inserts, .. } = &update.query_sets[0].tables[0].rows else {
                panic!("persistent rows");
            };
            let rows = message_rows(&tidings, inserts);
            assert_eq!(rows.len(), 1);
            assert_eq!(
                rows[0][1],
                tidings::engine::Value::from(Identity(
                    identity.as_ref().try_into().expect("32 bytes")
                ))
            );
            a_offsets.push(tx_offset.expect("committed"));
        }
        let mut b_offsets = Vec::new();
        for _ in 0..3 {
            let ServerMessageWire::TransactionUpdate(u) = next(&mut b).await else {
                panic!("a bare transaction update for the other client");
            };
            b_offsets.push(u.tx_offset);
        }
        let mut local_offsets = Vec::new();
        let mut last = 0;
        assert!(local.run_until(Duration::from_secs(20), |c| {
            if c.last_offset() != last {
                last = c.last_offset();
                local_offsets.push(last);
            }
            local_offsets.len() == 3
        }));
        assert_eq!(
            a_offsets, b_offsets,
            "both sockets saw the same commits in the same order"
        );
        assert_eq!(a_offsets, local_offsets, "and so did the in-process client");

        // Reconnecting with the token restores the identity.
        let mut again = connect(&addr, &format!("?token={token}")).await;
        let ServerMessageWire::InitialConnection { identity: id2, .. } = next(&mut again).await
        else {
            panic!("InitialConnection");
        };
        assert_eq!(id2, identity);
        tidings.shutdown();
    });
}

#[test]
fn malformed_frames_get_errors_and_the_server_keeps_serving() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr, _) = start().await;
        let mut bad = connect(&addr, "").await;
        let _ = next(&mut bad).await;
        let mut good = connect(&addr, "").await;
        let _ = next(&mut good).await;
        let garbage: [&[u8]; 5] = [&[], &[9, 1], &[0, 0xc1, 0xc1], &[1, 2, 3], &[0, 0x92, 0x01]];
        for g in garbage {
            bad.send(Message::Binary(Bytes::copy_from_slice(g)))
                .await
                .expect("send");
            let ServerMessageWire::SubscriptionError { error, .. } = next(&mut bad).await else {
                panic!("an error for {g:?}");
            };
            assert!(error.starts_with("malformed message"), "{error}");
        }
        bad.send(Message::Text("hello".into())).await.expect("send");
        let ServerMessageWire::SubscriptionError { error, .. } = next(&mut bad).await else {
            panic!("an error for text");
        };
        assert!(error.contains("text frames"), "{error}");
        send(
            &mut bad,
            ClientMessageWire::Subscribe {
                request_id: 3,
                query_set_id: 1,
                queries: vec!["SELECT * FROM nope".into()],
            },
        )
        .await;
        let ServerMessageWire::SubscriptionError {
            request_id, error, ..
        } = next(&mut bad).await
        else {
            panic!("a subscription error");
        };
        assert_eq!(request_id, Some(3));
        assert!(error.contains("unknown table `nope`"), "{error}");
        // The other client is unaffected.
        send(
            &mut good,
            ClientMessageWire::CallReducer {
                request_id: 1,
                reducer: "send_message".into(),
                args: args(&("still fine",)),
            },
        )
        .await;
        assert!(matches!(
            next(&mut good).await,
            ServerMessageWire::ReducerResult {
                outcome: OutcomeWire::Ok { .. },
                ..
            }
        ));
        tidings.shutdown();
    });
}

#[test]
fn handshake_rejects_unknown_subprotocols_and_bad_tokens() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr, owner) = start().await;
        let res = awc::Client::new()
            .ws(format!("ws://{addr}/subscribe"))
            .protocols(["v9.carrier-pigeon"])
            .connect()
            .await;
        match res {
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 400),
            Err(other) => panic!("expected HTTP 400, got {other:?}"),
            Ok(_) => panic!("an unknown subprotocol must not upgrade"),
        }
        let mut resp = awc::Client::new()
            .get(format!("http://{addr}/subscribe"))
            .insert_header(("Sec-WebSocket-Protocol", "v9.carrier-pigeon"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 400);
        let body = resp.body().await.expect("body");
        let body = String::from_utf8_lossy(&body);
        for p in SUPPORTED_PROTOCOLS {
            assert!(body.contains(p), "the 400 lists the supported protocols: {body}");
        }
        let forged = format!("{}.{}", "ab".repeat(32), "cd".repeat(32));
        let res = awc::Client::new().ws(format!("ws://{addr}/subscribe?token={forged}")).connect().await;
        assert!(matches!(res, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 401));
        // No subprotocol header at all: v2 by default; the owner's token works.
        let (_, mut owner_conn) = awc::Client::new()
            .ws(format!("ws://{addr}/subscribe?token={owner}"))
            .connect()
            .await
            .expect("owner connects");
        assert!(matches!(next(&mut owner_conn).await, ServerMessageWire::InitialConnection { .. }));
        tidings.shutdown();
    });
}

/// A small deterministic generator, so a failing frame can be reproduced.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn thousands_of_random_and_truncated_frames_never_stop_the_server() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr, _) = start().await;
        let mut fuzz = connect(&addr, "").await;
        let _ = next(&mut fuzz).await;
        let valid = v2::encode_client(&ClientMessageWire::Subscribe {
            request_id: 1,
            query_set_id: 1,
            queries: vec!["SELECT * FROM message".into()],
        });
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..2_000u32 {
            let frame: Vec<u8> = match i % 4 {
                // Random bytes.
                0 => (0..(rng.next() % 64)).map(|_| rng.next() as u8).collect(),
                // A valid message cut short.
                1 => valid[..(rng.next() as usize % (valid.len() - 1))].to_vec(),
                // A bin/str/array header claiming a huge length.
                2 => vec![0, [0xc6, 0xdb, 0xdd][rng.next() as usize % 3], 0xff, 0xff, 0xff, 0xf0, 1, 2],
                // A valid map with a wrong field type.
                _ => {
                    let mut f = vec![0];
                    rmp_serde::encode::write_named(&mut f, &serde_json::json!({"Subscribe": {"request_id": "x", "query_set_id": 1, "queries": [1]}}))
                        .expect("encodes");
                    f
                }
            };
            fuzz.send(Message::Binary(Bytes::from(frame.clone()))).await.expect("send");
            match next(&mut fuzz).await {
                ServerMessageWire::SubscriptionError { error, .. } => {
                    assert!(error.starts_with("malformed message"), "frame {i} {frame:02x?}: {error}")
                }
                other => panic!("frame {i} {frame:02x?}: unexpected answer {other:?}"),
            }
        }
        // Still serving, this client and a new one.
        let mut fresh = connect(&addr, "").await;
        let _ = next(&mut fresh).await;
        for c in [&mut fuzz, &mut fresh] {
            send(
                c,
                ClientMessageWire::CallReducer {
                    request_id: 9,
                    reducer: "send_message".into(),
                    args: args(&("after the storm",)),
                },
            )
            .await;
            assert!(matches!(next(c).await, ServerMessageWire::ReducerResult { outcome: OutcomeWire::Ok { .. }, .. }));
        }
        tidings.shutdown();
    });
}

#[test]
fn an_oversized_message_closes_that_connection_only() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr, _) = start().await;
        let mut big = connect(&addr, "").await;
        let _ = next(&mut big).await;
        let mut other = connect(&addr, "").await;
        let _ = next(&mut other).await;
        let huge = vec![0u8; WsLimits::default().message_bytes_max + 1];
        big.send(Message::Binary(Bytes::from(huge)))
            .await
            .expect("send");
        let closed = loop {
            match actix_rt::time::timeout(FRAME_WAIT, big.next())
                .await
                .expect("an answer in time")
            {
                Some(Ok(Frame::Close(reason))) => break reason,
                Some(Ok(Frame::Ping(_))) => continue,
                None => break None,
                Some(Ok(f)) => panic!("expected a close, got {f:?}"),
                Some(Err(e)) => panic!("expected a close, got {e}"),
            }
        };
        if let Some(r) = closed {
            assert!(
                matches!(
                    r.code,
                    awc::ws::CloseCode::Size | awc::ws::CloseCode::Protocol
                ),
                "{r:?}"
            );
        }
        send(
            &mut other,
            ClientMessageWire::CallReducer {
                request_id: 1,
                reducer: "send_message".into(),
                args: args(&("unaffected",)),
            },
        )
        .await;
        assert!(matches!(
            next(&mut other).await,
            ServerMessageWire::ReducerResult {
                outcome: OutcomeWire::Ok { .. },
                ..
            }
        ));
        tidings.shutdown();
    });
}

#[test]
fn sessions_of_one_hub_share_one_encoded_frame_per_commit() {
    actix_rt::System::new().block_on(async {
        // One hub: every session gets the same shared message for the commit.
        let tidings = Tidings::builder(demo::chat_module())
            .arbiters(1)
            .start()
            .expect("start");
        let server = Server::new(
            tidings.clone(),
            TokenKey::random().expect("key"),
            WsLimits::default(),
        );
        let (running, addrs) = server.bind("127.0.0.1:0").expect("bind");
        actix_rt::spawn(running);
        let addr = format!("127.0.0.1:{}", addrs[0].port());
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut c = connect(&addr, "").await;
            let _ = next(&mut c).await;
            send(
                &mut c,
                ClientMessageWire::Subscribe {
                    request_id: 1,
                    query_set_id: 1,
                    queries: vec!["SELECT * FROM message".into()],
                },
            )
            .await;
            assert!(matches!(
                next(&mut c).await,
                ServerMessageWire::SubscribeApplied { .. }
            ));
            conns.push(c);
        }
        let m = tidings.metrics().clone();
        let counters = || {
            [&m.frames_encoded, &m.frame_bytes_encoded, &m.bytes_sent]
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        };
        let before = counters();
        tidings
            .call("send_message", &("shared",))
            .await
            .expect("call")
            .outcome
            .expect("committed");
        let mut frames = Vec::new();
        for c in &mut conns {
            frames.push(next_binary(c).await);
        }
        assert!(
            matches!(
                v2::decode_server(&frames[0]).expect("decodes"),
                ServerMessageWire::TransactionUpdate(_)
            ),
            "the commit arrives as a transaction update"
        );
        assert!(
            frames.iter().all(|f| *f == frames[0]),
            "every session reads the same bytes"
        );
        let after = counters();
        let len = frames[0].len() as u64;
        assert_eq!(
            after[0] - before[0],
            1,
            "one frame encoded for three sessions"
        );
        assert_eq!(after[1] - before[1], len, "its bytes encoded once");
        assert_eq!(after[2] - before[2], 3 * len, "and sent three times");
        tidings.shutdown();
    });
}
