//! Keeps the examples in `docs/protocol.md` true: they are generated here from the real
//! encoders (v2, and v1 in both encodings). Run with `UPDATE_PROTOCOL_DOC=1` to rewrite
//! them after a protocol change.

use std::fmt::Write;

use tidings::actors::messages::{
    ConnectionId, QuerySetUpdate, ReducerEvent, ReducerOutcome, ReducerStatus, ServerMessage,
    TableRows, TableUpdate, TransactionUpdate, V1_EVENT_TABLE_ERROR,
};
use tidings::actors::wire::v1::{self, Encoding, LEGACY_QUERY_ID, Packed, SessionCodec};
use tidings::actors::wire::v2::{self, ClientMessageWire, Compression};
use tidings::engine::{Identity, Timestamp, row};

const BEGIN: &str = "<!-- BEGIN GENERATED EXAMPLES -->";
const END: &str = "<!-- END GENERATED EXAMPLES -->";
const BEGIN_V1: &str = "<!-- BEGIN GENERATED V1 EXAMPLES -->";
const END_V1: &str = "<!-- END GENERATED V1 EXAMPLES -->";

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// MessagePack as JSON for reading; `bin` values are shown as `"bin:<hex>"`.
fn json(v: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match v {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(*b),
        M::Integer(i) => i
            .as_u64()
            .map(J::from)
            .or_else(|| i.as_i64().map(J::from))
            .unwrap_or(J::Null),
        M::F32(f) => J::from(*f),
        M::F64(f) => J::from(*f),
        M::String(s) => J::String(s.as_str().unwrap_or("<not UTF-8>").to_string()),
        M::Binary(b) => J::String(format!(
            "bin:{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
        M::Array(a) => J::Array(a.iter().map(json).collect()),
        M::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map_or_else(|| k.to_string(), str::to_string),
                        json(v),
                    )
                })
                .collect(),
        ),
        M::Ext(t, b) => J::String(format!("ext{t}:{}", b.len())),
    }
}

fn section(out: &mut String, name: &str, bytes: &[u8]) {
    let value = rmpv::decode::read_value(&mut &bytes[1..]).expect("valid MessagePack");
    let json = json(&value);
    let _ = writeln!(out, "### {name}\n");
    let _ = writeln!(out, "```text\n{}\n```\n", hex(bytes));
    let _ = writeln!(
        out,
        "```json\n{}\n```\n",
        serde_json::to_string_pretty(&json).expect("json")
    );
}

fn rows(inserts: Vec<tidings::engine::Row>) -> TableUpdate {
    TableUpdate::new(
        "message".into(),
        TableRows::Persistent {
            inserts,
            deletes: vec![],
        },
    )
}

fn generate() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN}\n");
    let _ = writeln!(out, "## Client messages\n");
    let client = [
        (
            "Subscribe",
            ClientMessageWire::Subscribe {
                request_id: 1,
                query_set_id: 7,
                queries: vec!["SELECT * FROM message".into()],
            },
        ),
        (
            "Unsubscribe",
            ClientMessageWire::Unsubscribe {
                request_id: 2,
                query_set_id: 7,
                send_dropped_rows: false,
            },
        ),
        (
            "CallReducer",
            ClientMessageWire::CallReducer {
                request_id: 3,
                reducer: "send_message".into(),
                args: rmp_serde::to_vec(&("hi",)).expect("args"),
            },
        ),
        (
            "OneOffQuery",
            ClientMessageWire::OneOffQuery {
                request_id: 4,
                query: "SELECT * FROM user".into(),
            },
        ),
    ];
    for (name, m) in &client {
        section(&mut out, name, &v2::encode_client(m));
    }
    let _ = writeln!(out, "## Server messages\n");
    let sender = Identity::from_u64(1);
    let message = row![1u64, sender, Timestamp(1_700_000_000_000_000), "hi"];
    let update = TransactionUpdate {
        tx_offset: 12,
        timestamp: Timestamp(1_700_000_000_000_000),
        query_sets: vec![QuerySetUpdate {
            query_set_id: 7,
            tables: vec![rows(vec![message.clone()])],
        }],
        reducer_event: None,
    };
    let server = [
        (
            "InitialConnection",
            ServerMessage::InitialConnection {
                identity: sender,
                connection_id: ConnectionId(5),
                token: Some(format!("{}.{}", "00".repeat(31) + "01", "ab".repeat(32))),
            },
        ),
        (
            "SubscribeApplied",
            ServerMessage::SubscribeApplied {
                request_id: 1,
                query_set_id: 7,
                tx_offset: 11,
                tables: vec![rows(vec![message.clone()])],
            },
        ),
        (
            "UnsubscribeApplied",
            ServerMessage::UnsubscribeApplied {
                request_id: 2,
                query_set_id: 7,
                tx_offset: 12,
                tables: None,
            },
        ),
        (
            "SubscriptionError",
            ServerMessage::SubscriptionError {
                request_id: Some(1),
                query_set_id: Some(7),
                error: "query `SELECT * FROM nope`: unknown table `nope` (line 1, column 15)"
                    .into(),
            },
        ),
        (
            "TransactionUpdate",
            ServerMessage::TransactionUpdate(update.clone()),
        ),
        (
            "OneOffQueryResult",
            ServerMessage::OneOffQueryResult {
                request_id: 4,
                result: Ok(vec![("message".into(), vec![message])]),
            },
        ),
        (
            "ReducerResult",
            ServerMessage::ReducerResult {
                request_id: 3,
                tx_offset: Some(12),
                timestamp: Timestamp(1_700_000_000_000_000),
                outcome: ReducerOutcome::Ok {
                    value: rmp_serde::to_vec(&1u64).expect("value"),
                    update,
                },
            },
        ),
    ];
    for (name, m) in &server {
        section(
            &mut out,
            name,
            &v2::encode_server(m, Compression::None).expect("encodes"),
        );
    }
    let _ = write!(out, "{END}");
    out
}

fn v1_section(out: &mut String, name: &str, msgpack: &v1::Frame, json: &v1::Frame) {
    let (v1::Frame::Binary(bytes), v1::Frame::Text(text)) = (msgpack, json) else {
        panic!("MessagePack is binary, JSON is text");
    };
    let _ = writeln!(out, "#### {name}\n");
    let _ = writeln!(out, "`v1.msgpack.tidings`:\n");
    let _ = writeln!(out, "```text\n{}\n```\n", hex(bytes));
    let _ = writeln!(out, "`v1.json.tidings`:\n");
    let _ = writeln!(out, "```json\n{text}\n```\n");
}

fn v1_client_messages() -> Vec<(&'static str, v1::ClientMessageWire)> {
    use v1::ClientMessageWire as C;
    vec![
        (
            "Subscribe",
            C::Subscribe {
                request_id: 1,
                queries: vec!["SELECT * FROM message".into()],
            },
        ),
        (
            "SubscribeSingle",
            C::SubscribeSingle {
                request_id: 2,
                query_id: 7,
                query: "SELECT * FROM message".into(),
            },
        ),
        (
            "SubscribeMulti",
            C::SubscribeMulti {
                request_id: 3,
                query_id: 8,
                queries: vec!["SELECT * FROM user".into(), "SELECT * FROM message".into()],
            },
        ),
        (
            "Unsubscribe",
            C::Unsubscribe {
                request_id: 4,
                query_id: 7,
            },
        ),
        (
            "UnsubscribeMulti",
            C::UnsubscribeMulti {
                request_id: 5,
                query_id: 8,
            },
        ),
        (
            "CallReducer",
            C::CallReducer {
                request_id: 6,
                reducer: "send_message".into(),
                args: Packed(rmp_serde::to_vec(&("hi",)).expect("args").into()),
                flags: 0,
            },
        ),
        (
            "OneOffQuery",
            C::OneOffQuery {
                request_id: 9,
                query: "SELECT * FROM user".into(),
            },
        ),
    ]
}

fn generate_v1() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN_V1}\n");
    let _ = writeln!(out, "### v1 client messages\n");
    let client = v1_client_messages();
    for (name, m) in &client {
        v1_section(
            &mut out,
            name,
            &v1::encode_client(m, Encoding::MessagePack),
            &v1::encode_client(m, Encoding::Json),
        );
    }
    let _ = writeln!(out, "### v1 server messages\n");
    let sender = Identity::from_u64(1);
    let message = row![1u64, sender, Timestamp(1_700_000_000_000_000), "hi"];
    let set = |query_set_id, event| {
        ServerMessage::TransactionUpdate(TransactionUpdate {
            tx_offset: 12,
            timestamp: Timestamp(1_700_000_000_000_000),
            query_sets: vec![QuerySetUpdate {
                query_set_id,
                tables: vec![rows(vec![message.clone()])],
            }],
            reducer_event: Some(event),
        })
    };
    let server = [
        (
            "IdentityToken",
            ServerMessage::InitialConnection {
                identity: sender,
                connection_id: ConnectionId(5),
                token: Some(format!("{}.{}", "00".repeat(31) + "01", "ab".repeat(32))),
            },
        ),
        (
            "InitialSubscription",
            ServerMessage::SubscribeApplied {
                request_id: 1,
                query_set_id: LEGACY_QUERY_ID,
                tx_offset: 11,
                tables: vec![rows(vec![message.clone()])],
            },
        ),
        (
            "SubscribeApplied",
            ServerMessage::SubscribeApplied {
                request_id: 2,
                query_set_id: 7,
                tx_offset: 11,
                tables: vec![rows(vec![message.clone()])],
            },
        ),
        (
            "SubscribeMultiApplied",
            ServerMessage::SubscribeApplied {
                request_id: 3,
                query_set_id: 8,
                tx_offset: 11,
                tables: vec![rows(vec![message.clone()])],
            },
        ),
        (
            "UnsubscribeApplied",
            ServerMessage::UnsubscribeApplied {
                request_id: 4,
                query_set_id: 7,
                tx_offset: 12,
                tables: None,
            },
        ),
        (
            "UnsubscribeMultiApplied",
            ServerMessage::UnsubscribeApplied {
                request_id: 5,
                query_set_id: 8,
                tx_offset: 12,
                tables: None,
            },
        ),
        (
            "SubscriptionError",
            ServerMessage::SubscriptionError {
                request_id: Some(2),
                query_set_id: Some(7),
                error: V1_EVENT_TABLE_ERROR.into(),
            },
        ),
        (
            "TransactionUpdate (to the caller)",
            set(
                LEGACY_QUERY_ID,
                ReducerEvent {
                    request_id: 6,
                    reducer: "send_message".into(),
                    args: rmp_serde::to_vec(&("hi",)).expect("args"),
                    caller: sender,
                    status: ReducerStatus::Committed(rmp_serde::to_vec(&1u64).expect("value")),
                },
            ),
        ),
        (
            "TransactionUpdate (to everyone else)",
            set(
                7,
                ReducerEvent {
                    request_id: 0,
                    reducer: String::new(),
                    args: Vec::new(),
                    caller: Identity::ZERO,
                    status: ReducerStatus::Committed(Vec::new()),
                },
            ),
        ),
        (
            "TransactionUpdate (a failed call, to the caller)",
            ServerMessage::TransactionUpdate(TransactionUpdate {
                tx_offset: 0,
                timestamp: Timestamp(1_700_000_000_000_000),
                query_sets: vec![],
                reducer_event: Some(ReducerEvent {
                    request_id: 6,
                    reducer: "send_message".into(),
                    args: rmp_serde::to_vec(&(" ",)).expect("args"),
                    caller: sender,
                    status: ReducerStatus::Failed("messages must not be empty".into()),
                }),
            }),
        ),
        (
            "OneOffQueryResponse",
            ServerMessage::OneOffQueryResult {
                request_id: 9,
                result: Ok(vec![("message".into(), vec![message])]),
            },
        ),
    ];
    // The codecs have seen the requests, so each answer is named after its request.
    let mut codecs = [Encoding::MessagePack, Encoding::Json].map(|e| {
        let mut codec = SessionCodec::new(e, Compression::None);
        for (_, m) in &client {
            codec
                .decode(v1::encode_client(m, e).as_bytes())
                .expect("decodes");
        }
        codec
    });
    for (name, m) in &server {
        let [pack, json] = &mut codecs;
        v1_section(
            &mut out,
            name,
            &pack.encode(m).expect("encodes"),
            &json.encode(m).expect("encodes"),
        );
    }
    let _ = write!(out, "{END_V1}");
    out
}

/// Replaces (or, with `update`, rewrites) the region between `begin` and `end`.
fn check_region(doc: &mut String, begin: &str, end: &str, generated: &str, update: bool) {
    let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
        panic!("docs/protocol.md lacks the markers {begin} .. {end}");
    };
    let current = &doc[b..e + end.len()];
    if update {
        doc.replace_range(b..e + end.len(), generated);
        return;
    }
    assert!(
        current == generated,
        "docs/protocol.md examples are stale: run `UPDATE_PROTOCOL_DOC=1 cargo test --test protocol_doc`"
    );
}

#[test]
fn protocol_doc_examples_match_the_encoder() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md");
    let mut doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    let update = std::env::var_os("UPDATE_PROTOCOL_DOC").is_some();
    check_region(&mut doc, BEGIN, END, &generate(), update);
    check_region(&mut doc, BEGIN_V1, END_V1, &generate_v1(), update);
    if update {
        std::fs::write(path, doc).expect("write");
    }
}
