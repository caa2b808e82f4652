//! Keeps the examples in `docs/protocol.md` true: they are generated here from the real
//! encoder. Run with `UPDATE_PROTOCOL_DOC=1` to rewrite them after a protocol change.

use std::fmt::Write;

use tidings::actors::messages::{
    ConnectionId, QuerySetUpdate, ReducerOutcome, ServerMessage, TableRows, TableUpdate,
    TransactionUpdate,
};
use tidings::actors::wire::v2::{self, ClientMessageWire, Compression};
use tidings::engine::{Identity, Timestamp, row};

const BEGIN: &str = "<!-- BEGIN GENERATED EXAMPLES -->";
const END: &str = "<!-- END GENERATED EXAMPLES -->";

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

#[test]
fn protocol_doc_examples_match_the_encoder() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/protocol.md lacks the generated-examples markers");
    };
    let generated = generate();
    let current = &doc[b..e + END.len()];
    if std::env::var_os("UPDATE_PROTOCOL_DOC").is_some() {
        let updated = format!("{}{}{}", &doc[..b], generated, &doc[e + END.len()..]);
        std::fs::write(path, updated).expect("write");
        return;
    }
    assert!(
        current == generated,
        "docs/protocol.md examples are stale: run `UPDATE_PROTOCOL_DOC=1 cargo test --test protocol_doc`"
    );
}
