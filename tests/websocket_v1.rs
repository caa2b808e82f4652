//! Protocol v1 over a real loopback socket (port 0), in both encodings
//! (`v1.msgpack.tidings`, `v1.json.tidings`): handshake, the three subscribe paths,
//! reducer events for the caller only, event tables refused, JSON value formatting, and
//! malformed input answered without harm to anyone.

mod common;

use std::time::Duration;

use actix_web::web::Bytes;
use awc::ws::{Frame as WsFrame, Message};
use futures::{SinkExt, StreamExt};
use tidings::actors::server::token::TokenKey;
use tidings::actors::server::ws::WsLimits;
use tidings::actors::server::{SUPPORTED_PROTOCOLS, Server};
use tidings::actors::wire::json::rows_from_json;
use tidings::actors::wire::rowlist;
use tidings::actors::wire::v1::{
    self, ClientMessageWire, Encoding, LEGACY_QUERY_ID, Packed, Rows, ServerMessageWire,
    UpdateStatus,
};
use tidings::actors::wire::v2;
use tidings::engine::{Row, Value};
use tidings::{Identity, Module, ReducerContext, Tidings, V1_EVENT_TABLE_ERROR, demo, table};

type Conn = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

const BOTH: [Encoding; 2] = [Encoding::MessagePack, Encoding::Json];

async fn start(module: Module) -> (Tidings, String) {
    let tidings = Tidings::builder(module).start().expect("start");
    let key = TokenKey::random().expect("key");
    let server = Server::new(tidings.clone(), key, WsLimits::default());
    let (running, addrs) = server.bind("127.0.0.1:0").expect("bind");
    actix_rt::spawn(running);
    (tidings, format!("127.0.0.1:{}", addrs[0].port()))
}

/// A v1 client: its socket, its encoding, and what it last received as text.
struct Client {
    conn: Conn,
    encoding: Encoding,
    identity: Identity,
    last_text: String,
}

impl Client {
    async fn connect(addr: &str, encoding: Encoding) -> Client {
        let (resp, conn) = awc::Client::new()
            .ws(format!("ws://{addr}/subscribe"))
            .protocols([encoding.subprotocol()])
            .connect()
            .await
            .expect("connects");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|h| h.to_str().ok()),
            Some(encoding.subprotocol()),
            "the server echoes the chosen subprotocol"
        );
        let mut c = Client {
            conn,
            encoding,
            identity: Identity::ZERO,
            last_text: String::new(),
        };
        let ServerMessageWire::IdentityToken {
            identity, token, ..
        } = c.next().await
        else {
            panic!("IdentityToken first");
        };
        assert!(token.is_some_and(|t| !t.is_empty()), "a token");
        c.identity = Identity(identity.0.as_ref().try_into().expect("32 bytes"));
        c
    }

    async fn send(&mut self, msg: ClientMessageWire) {
        let frame = match v1::encode_client(&msg, self.encoding) {
            v1::Frame::Binary(b) => Message::Binary(Bytes::from(b)),
            v1::Frame::Text(t) => Message::Text(t.into()),
        };
        self.conn.send(frame).await.expect("send");
    }

    async fn send_raw(&mut self, msg: Message) {
        self.conn.send(msg).await.expect("send");
    }

    /// The next server message, skipping pings; fails after a deadline.
    async fn next(&mut self) -> ServerMessageWire<'static> {
        loop {
            let frame = deadline(self.conn.next())
                .await
                .expect("a frame in time")
                .expect("stream open")
                .expect("frame");
            match (frame, self.encoding) {
                (WsFrame::Binary(b), Encoding::MessagePack) => {
                    return v1::decode_server(&b, self.encoding).expect("decodes");
                }
                (WsFrame::Text(t), Encoding::Json) => {
                    self.last_text = String::from_utf8(t.to_vec()).expect("UTF-8");
                    return v1::decode_server(&t, self.encoding).expect("decodes");
                }
                (WsFrame::Ping(p), _) => self.conn.send(Message::Pong(p)).await.expect("pong"),
                (other, e) => panic!("unexpected frame {other:?} on {e:?}"),
            }
        }
    }

    async fn call(&mut self, request_id: u32, reducer: &str, args: serde_json::Value, flags: u8) {
        self.send(ClientMessageWire::CallReducer {
            request_id,
            reducer: reducer.into(),
            args: Packed(rmp_serde::to_vec(&args).expect("args").into()),
            flags,
        })
        .await;
    }

    /// The next message, which must be a subscription error; its text.
    async fn error(&mut self) -> (Option<u32>, String) {
        match self.next().await {
            ServerMessageWire::SubscriptionError {
                request_id, error, ..
            } => (request_id, error.into_owned()),
            other => panic!("expected a subscription error, got {other:?}"),
        }
    }
}

async fn deadline<F: std::future::Future>(f: F) -> Option<F::Output> {
    let sleep = actix_rt::time::sleep(Duration::from_secs(20));
    futures::pin_mut!(f);
    futures::pin_mut!(sleep);
    match futures::future::select(f, sleep).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}

fn rows(tidings: &Tidings, table: &str, list: &Rows<'_>) -> Vec<Row> {
    let schema = tidings.datastore().schema();
    let ts = schema
        .tables()
        .iter()
        .find(|t| &*t.name == table)
        .expect("table")
        .clone();
    match list {
        Rows::Packed(b) => {
            let body = v2::row_list_body(b).expect("body");
            let mut framed = Vec::new();
            let _ = rmp::encode::write_bin(&mut framed, &body);
            rowlist::decode(&ts, &framed).expect("rows decode")
        }
        Rows::Json(raw) => rows_from_json(&ts, raw.get()).expect("rows decode"),
    }
}

/// The (query id, table, inserted rows) of a database update.
fn inserted(tidings: &Tidings, update: &v1::DatabaseUpdate<'_>) -> Vec<(u32, String, Vec<Row>)> {
    update
        .tables
        .iter()
        .map(|t| {
            (
                t.query_id,
                t.table_name.to_string(),
                rows(tidings, &t.table_name, &t.inserts),
            )
        })
        .collect()
}

#[test]
fn subscribe_three_ways_call_and_receive_in_both_encodings() {
    actix_rt::System::new().block_on(async {
        for encoding in BOTH {
            let (tidings, addr) = start(demo::chat_module()).await;
            let mut a = Client::connect(&addr, encoding).await;
            let mut b = Client::connect(&addr, encoding).await;

            a.send(ClientMessageWire::Subscribe {
                request_id: 1,
                queries: vec!["SELECT * FROM message".into()],
            })
            .await;
            assert!(matches!(
                a.next().await,
                ServerMessageWire::InitialSubscription { request_id: 1, .. }
            ));
            b.send(ClientMessageWire::SubscribeSingle {
                request_id: 2,
                query_id: 10,
                query: "SELECT * FROM message".into(),
            })
            .await;
            assert!(matches!(
                b.next().await,
                ServerMessageWire::SubscribeApplied {
                    request_id: 2,
                    query_id: 10,
                    ..
                }
            ));
            b.send(ClientMessageWire::SubscribeMulti {
                request_id: 3,
                query_id: 11,
                queries: vec!["SELECT * FROM user".into(), "SELECT * FROM message".into()],
            })
            .await;
            assert!(matches!(
                b.next().await,
                ServerMessageWire::SubscribeMultiApplied {
                    request_id: 3,
                    query_id: 11,
                    ..
                }
            ));

            a.call(7, "send_message", serde_json::json!(["hello"]), 0)
                .await;
            let ServerMessageWire::TransactionUpdate {
                status,
                caller_identity,
                reducer_call,
                tx_offset: a_offset,
                database_update,
                ..
            } = a.next().await
            else {
                panic!("the caller's transaction update");
            };
            assert!(matches!(status, UpdateStatus::Committed(_)), "{status:?}");
            assert_eq!(caller_identity.0.as_ref(), &a.identity.0);
            assert_eq!(
                (reducer_call.reducer_name.as_ref(), reducer_call.request_id),
                ("send_message", 7)
            );
            assert_eq!(
                rmp_serde::from_slice::<(String,)>(&reducer_call.args.0).expect("args"),
                ("hello".to_string(),)
            );
            let mine = inserted(&tidings, &database_update);
            assert_eq!(mine.len(), 1);
            assert_eq!(
                (mine[0].0, mine[0].1.as_str()),
                (LEGACY_QUERY_ID, "message")
            );
            assert_eq!(mine[0].2[0][3], Value::String("hello".into()));

            let ServerMessageWire::TransactionUpdate {
                status,
                caller_identity,
                reducer_call,
                tx_offset: b_offset,
                database_update,
                ..
            } = b.next().await
            else {
                panic!("the other client's transaction update");
            };
            assert_eq!(a_offset, b_offset);
            assert_eq!(status, UpdateStatus::Committed(Packed::default()));
            assert_eq!(caller_identity.0.as_ref(), &[0u8; 32], "caller emptied");
            assert_eq!(
                (
                    reducer_call.reducer_name.as_ref(),
                    reducer_call.args.0.len(),
                    reducer_call.request_id
                ),
                ("", 0, 0),
                "name and args emptied"
            );
            let mut theirs: Vec<u32> = inserted(&tidings, &database_update)
                .into_iter()
                .map(|(q, t, r)| {
                    assert_eq!((t.as_str(), r.len()), ("message", 1));
                    q
                })
                .collect();
            theirs.sort_unstable();
            assert_eq!(theirs, [10, 11], "one entry per query id that saw the row");

            b.send(ClientMessageWire::Unsubscribe {
                request_id: 4,
                query_id: 10,
            })
            .await;
            assert!(matches!(
                b.next().await,
                ServerMessageWire::UnsubscribeApplied {
                    request_id: 4,
                    query_id: 10,
                    ..
                }
            ));
            b.send(ClientMessageWire::UnsubscribeMulti {
                request_id: 5,
                query_id: 11,
            })
            .await;
            assert!(matches!(
                b.next().await,
                ServerMessageWire::UnsubscribeMultiApplied {
                    request_id: 5,
                    query_id: 11,
                    ..
                }
            ));
            b.send(ClientMessageWire::OneOffQuery {
                request_id: 6,
                query: "SELECT * FROM message".into(),
            })
            .await;
            let ServerMessageWire::OneOffQueryResponse {
                request_id: 6,
                error: None,
                tables,
            } = b.next().await
            else {
                panic!("a one-off response");
            };
            assert_eq!(rows(&tidings, "message", &tables[0].rows).len(), 1);
            tidings.shutdown();
        }
    });
}

#[test]
fn v1_rejects_event_table() {
    actix_rt::System::new().block_on(async {
        for encoding in BOTH {
            let (tidings, addr) = start(demo::chat_module()).await;
            let mut c = Client::connect(&addr, encoding).await;
            c.send(ClientMessageWire::Subscribe {
                request_id: 1,
                queries: vec!["SELECT * FROM message".into()],
            })
            .await;
            assert!(matches!(
                c.next().await,
                ServerMessageWire::InitialSubscription { .. }
            ));
            c.send(ClientMessageWire::SubscribeSingle {
                request_id: 2,
                query_id: 1,
                query: "SELECT * FROM typing".into(),
            })
            .await;
            c.send(ClientMessageWire::SubscribeMulti {
                request_id: 3,
                query_id: 2,
                queries: vec!["SELECT * FROM user".into(), "SELECT * FROM typing".into()],
            })
            .await;
            c.send(ClientMessageWire::Subscribe {
                request_id: 4,
                queries: vec!["SELECT * FROM typing".into()],
            })
            .await;
            for expected in [2, 3, 4] {
                assert_eq!(
                    c.error().await,
                    (Some(expected), V1_EVENT_TABLE_ERROR.to_string()),
                    "{encoding:?}: path {expected}"
                );
            }
            // The first legacy set is still in force: a later commit arrives for it.
            let mut other = Client::connect(&addr, encoding).await;
            other
                .call(1, "send_message", serde_json::json!(["still here"]), 0)
                .await;
            assert!(matches!(
                other.next().await,
                ServerMessageWire::TransactionUpdate { .. }
            ));
            let ServerMessageWire::TransactionUpdate {
                database_update, ..
            } = c.next().await
            else {
                panic!("an update for the old set");
            };
            let got = inserted(&tidings, &database_update);
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].0, got[0].1.as_str()), (LEGACY_QUERY_ID, "message"));
            assert_eq!(got[0].2[0][3], Value::String("still here".into()));
            tidings.shutdown();
        }
    });
}

#[test]
fn select_star_from_star() {
    actix_rt::System::new().block_on(async {
        for encoding in BOTH {
            let (tidings, addr) = start(demo::chat_module()).await;
            let mut c = Client::connect(&addr, encoding).await;
            c.send(ClientMessageWire::SubscribeMulti {
                request_id: 1,
                query_id: 1,
                queries: vec!["SELECT * FROM *".into()],
            })
            .await;
            assert!(matches!(
                c.next().await,
                ServerMessageWire::SubscribeMultiApplied { request_id: 1, .. }
            ));
            // An event, then a message, from another client: only the message arrives.
            let mut other = Client::connect(&addr, encoding).await;
            other
                .call(1, "start_typing", serde_json::json!([]), 0)
                .await;
            let ServerMessageWire::TransactionUpdate { status, .. } = other.next().await else {
                panic!("the caller's update");
            };
            assert!(matches!(status, UpdateStatus::Committed(_)), "{status:?}");
            other
                .call(2, "send_message", serde_json::json!(["after the event"]), 0)
                .await;
            let ServerMessageWire::TransactionUpdate {
                database_update, ..
            } = c.next().await
            else {
                panic!("an update");
            };
            let got = inserted(&tidings, &database_update);
            assert_eq!(
                got.iter().map(|(_, t, _)| t.as_str()).collect::<Vec<_>>(),
                ["message"],
                "{encoding:?}: the event table is not part of a v1 FROM *"
            );
            assert_eq!(got[0].2[0][3], Value::String("after the event".into()));
            tidings.shutdown();
        }
    });
}

/// A table with values JSON numbers cannot hold.
#[table(name = "big", public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Big {
    /// Above 2^53 in the test.
    #[primary_key]
    pub id: u64,
    /// The caller.
    pub owner: Identity,
    /// `id << 64`.
    pub wide: u128,
}

fn big_module() -> Module {
    Module::new()
        .table::<Big>()
        .reducer("put", |ctx: &mut ReducerContext<'_>, (id,): (u64,)| {
            let owner = ctx.sender;
            ctx.db
                .table::<Big>()
                .map_err(|e| e.to_string())?
                .insert(Big {
                    id,
                    owner,
                    wide: u128::from(id) << 64,
                })
                .map_err(|e| e.to_string())?;
            Ok(())
        })
}

#[test]
fn v1_json_writes_wide_integers_as_decimal_strings_and_identities_as_hex() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr) = start(big_module()).await;
        let mut c = Client::connect(&addr, Encoding::Json).await;
        c.send(ClientMessageWire::SubscribeSingle {
            request_id: 1,
            query_id: 1,
            query: "SELECT * FROM big".into(),
        })
        .await;
        assert!(matches!(
            c.next().await,
            ServerMessageWire::SubscribeApplied { .. }
        ));
        let id = (1u64 << 53) + 1;
        // Written by hand, as a JSON client would: the argument as a plain JSON number.
        c.send_raw(Message::Text(
            format!(
                r#"{{"CallReducer":{{"request_id":2,"reducer":"put","args":[{id}],"flags":0}}}}"#
            )
            .into(),
        ))
        .await;
        let ServerMessageWire::TransactionUpdate {
            database_update, ..
        } = c.next().await
        else {
            panic!("an update");
        };
        let text = c.last_text.clone();
        let hex = c.identity.to_hex();
        let wide = u128::from(id) << 64;
        assert!(
            text.contains(&format!(r#"[["{id}","{hex}","{wide}"]]"#)),
            "u64 and u128 as decimal strings, the identity as hex: {text}"
        );
        assert!(
            text.contains(&format!(r#""caller_identity":"{hex}""#)),
            "{text}"
        );
        let got = inserted(&tidings, &database_update);
        assert_eq!(got[0].2[0][0], Value::U64(id), "exact above 2^53");
        tidings.shutdown();
    });
}

#[test]
fn no_success_notify_spares_the_caller_its_success_but_not_its_failure() {
    actix_rt::System::new().block_on(async {
        for encoding in BOTH {
            let (tidings, addr) = start(demo::chat_module()).await;
            let mut c = Client::connect(&addr, encoding).await;
            // Not subscribed to anything: a quiet success sends nothing, so the next
            // message is the answer to the request after it.
            c.call(1, "send_message", serde_json::json!(["quiet"]), 1)
                .await;
            c.send(ClientMessageWire::OneOffQuery {
                request_id: 2,
                query: "SELECT * FROM message".into(),
            })
            .await;
            assert!(
                matches!(
                    c.next().await,
                    ServerMessageWire::OneOffQueryResponse { request_id: 2, .. }
                ),
                "{encoding:?}: no notice of the quiet success"
            );
            c.call(3, "send_message", serde_json::json!([" "]), 1).await;
            let ServerMessageWire::TransactionUpdate {
                status,
                reducer_call,
                ..
            } = c.next().await
            else {
                panic!("the failure is reported");
            };
            assert_eq!(
                status,
                UpdateStatus::Failed("messages must not be empty".into())
            );
            assert_eq!(
                (reducer_call.reducer_name.as_ref(), reducer_call.request_id),
                ("send_message", 3)
            );
            // Subscribed: a quiet success arrives like anyone else's commit.
            c.send(ClientMessageWire::SubscribeSingle {
                request_id: 4,
                query_id: 1,
                query: "SELECT * FROM message".into(),
            })
            .await;
            assert!(matches!(
                c.next().await,
                ServerMessageWire::SubscribeApplied { .. }
            ));
            c.call(5, "send_message", serde_json::json!(["seen"]), 1)
                .await;
            let ServerMessageWire::TransactionUpdate {
                reducer_call,
                database_update,
                ..
            } = c.next().await
            else {
                panic!("the commit");
            };
            assert_eq!(reducer_call.reducer_name, "", "emptied like anyone else's");
            assert_eq!(inserted(&tidings, &database_update)[0].2.len(), 1);
            tidings.shutdown();
        }
    });
}

#[test]
fn malformed_input_and_wrong_frame_types_get_errors_and_everyone_keeps_working() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr) = start(demo::chat_module()).await;
        let mut json = Client::connect(&addr, Encoding::Json).await;
        let mut pack = Client::connect(&addr, Encoding::MessagePack).await;
        let mut bystander = Client::connect(&addr, Encoding::Json).await;
        bystander
            .send(ClientMessageWire::SubscribeSingle {
                request_id: 1,
                query_id: 1,
                query: "SELECT * FROM message".into(),
            })
            .await;
        assert!(matches!(
            bystander.next().await,
            ServerMessageWire::SubscribeApplied { .. }
        ));

        for bad in [
            "{not json",
            "[]",
            r#"{"Subscribe":{"request_id":"one","queries":[]}}"#,
            r#"{"Teleport":{}}"#,
            r#"{"SubscribeSingle":{"request_id":1,"query_id":4294967295,"query":"SELECT * FROM message"}}"#,
        ] {
            json.send_raw(Message::Text(bad.into())).await;
            let (request_id, error) = json.error().await;
            assert_eq!(request_id, None);
            assert!(error.starts_with("malformed message: "), "{bad}: {error}");
        }
        json.send_raw(Message::Binary(Bytes::from_static(&[0, 0x80])))
            .await;
        let (_, error) = json.error().await;
        assert_eq!(
            error,
            "malformed message: binary frames are not part of v1.json.tidings; send JSON in text frames"
        );
        pack.send_raw(Message::Text("{}".into())).await;
        let (_, error) = pack.error().await;
        assert_eq!(
            error,
            "malformed message: text frames are not part of v1.msgpack.tidings; send binary MessagePack"
        );
        pack.send_raw(Message::Binary(Bytes::from_static(&[0, 0xc1])))
            .await;
        let (_, error) = pack.error().await;
        assert!(error.starts_with("malformed message: "), "{error}");

        // Both offenders still work, and so does everyone else.
        json.call(1, "send_message", serde_json::json!(["json ok"]), 0)
            .await;
        assert!(matches!(
            json.next().await,
            ServerMessageWire::TransactionUpdate {
                status: UpdateStatus::Committed(_),
                ..
            }
        ));
        pack.call(1, "send_message", serde_json::json!(["msgpack ok"]), 0)
            .await;
        assert!(matches!(
            pack.next().await,
            ServerMessageWire::TransactionUpdate {
                status: UpdateStatus::Committed(_),
                ..
            }
        ));
        for text in ["json ok", "msgpack ok"] {
            let ServerMessageWire::TransactionUpdate {
                database_update, ..
            } = bystander.next().await
            else {
                panic!("the bystander's update");
            };
            assert_eq!(
                inserted(&tidings, &database_update)[0].2[0][3],
                Value::String(text.into())
            );
        }
        tidings.shutdown();
    });
}

#[test]
fn handshake_offers_all_three_subprotocols() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr) = start(demo::chat_module()).await;
        assert_eq!(
            SUPPORTED_PROTOCOLS,
            [
                "v2.msgpack.tidings",
                "v1.msgpack.tidings",
                "v1.json.tidings"
            ]
        );
        // Client::connect checks the echo for each v1 subprotocol.
        for encoding in BOTH {
            let _ = Client::connect(&addr, encoding).await;
        }
        // Asked for several, the server picks its preferred one and says so.
        let (resp, _conn) = awc::Client::new()
            .ws(format!("ws://{addr}/subscribe"))
            .protocols(["v1.json.tidings", "v2.msgpack.tidings"])
            .connect()
            .await
            .expect("connects");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|h| h.to_str().ok()),
            Some("v2.msgpack.tidings")
        );
        tidings.shutdown();
    });
}

/// xorshift64: a fixed, dependency-free stream of pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn printable(&mut self) -> char {
        char::from(b' ' + (self.next() % 95) as u8)
    }
}

#[test]
fn thousands_of_random_v1_frames_and_bad_utf8_never_stop_the_server() {
    actix_rt::System::new().block_on(async {
        let (tidings, addr) = start(demo::chat_module()).await;
        let mut json = Client::connect(&addr, Encoding::Json).await;
        let mut pack = Client::connect(&addr, Encoding::MessagePack).await;
        let valid =
            r#"{"SubscribeSingle":{"request_id":1,"query_id":1,"query":"SELECT * FROM message"}}"#;
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for i in 0..1_500u32 {
            let text: String = match i % 3 {
                // Random printable text.
                0 => (0..rng.next() % 64).map(|_| rng.printable()).collect(),
                // A valid request cut short.
                1 => valid[..(rng.next() as usize % valid.len())].to_string(),
                // A valid request with one character changed.
                _ => {
                    let at = rng.next() as usize % valid.len();
                    let mut t = valid.to_string();
                    t.replace_range(at..at + 1, &rng.printable().to_string());
                    t
                }
            };
            json.send_raw(Message::Text(text.clone().into())).await;
            // Exactly one answer per frame: an error, or (when a changed character still
            // leaves a valid request) that request's own answer.
            match json.next().await {
                ServerMessageWire::SubscriptionError { .. }
                | ServerMessageWire::SubscribeApplied { .. } => {}
                other => panic!("frame {i} {text:?}: unexpected answer {other:?}"),
            }
            let bytes: Vec<u8> = std::iter::once(0)
                .chain((0..rng.next() % 48).map(|_| rng.next() as u8))
                .collect();
            pack.send_raw(Message::Binary(Bytes::from(bytes.clone())))
                .await;
            match pack.next().await {
                ServerMessageWire::SubscriptionError { .. } => {}
                other => panic!("frame {i} {bytes:02x?}: unexpected answer {other:?}"),
            }
        }

        // A text frame that is not UTF-8 breaks the protocol: that connection is closed
        // with 1002, and only that one.
        let socket_addr: std::net::SocketAddr = addr.parse().expect("address");
        let broken = std::thread::spawn(move || {
            let mut s = common::raw::handshake(socket_addr, Some(v1::SUBPROTOCOL_JSON), None);
            common::raw::write_frame(&mut s, common::raw::OP_TEXT, &[b'{', 0xff, 0xfe, b'}']);
            loop {
                let (op, payload) = common::raw::read_frame(&mut s);
                if op == common::raw::OP_CLOSE {
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
            }
        });
        assert_eq!(broken.join().expect("close code"), 1002);

        // Everyone else still works, and so does a newcomer.
        let mut fresh = Client::connect(&addr, Encoding::Json).await;
        for (n, c) in [&mut json, &mut pack, &mut fresh].into_iter().enumerate() {
            c.call(
                900 + n as u32,
                "send_message",
                serde_json::json!(["after the storm"]),
                0,
            )
            .await;
            loop {
                if let ServerMessageWire::TransactionUpdate { status, .. } = c.next().await {
                    assert!(matches!(status, UpdateStatus::Committed(_)), "{status:?}");
                    break;
                }
            }
        }
        tidings.shutdown();
    });
}
