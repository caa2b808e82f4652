//! Round trips of every v1 message in both encodings, and the codec's naming rules.

use std::sync::Arc;

use tidings_engine::{AlgebraicType as T, Identity, Row, TableSchema, Timestamp, row};

use super::*;
use crate::messages::{
    CallReducerFlags, ClientMessage, ConnectionId, QuerySetUpdate, ReducerEvent, ReducerStatus,
    ServerMessage, TableRows, TableUpdate, TransactionUpdate,
};
use crate::wire::json::rows_from_json;
use crate::wire::rowlist;
use crate::wire::v2::{Compression, TAG_GZIP, row_list_body};

const BOTH: [Encoding; 2] = [Encoding::MessagePack, Encoding::Json];

fn schema() -> TableSchema {
    TableSchema::builder("t")
        .column("id", T::U64)
        .column("who", T::Identity)
        .column("s", T::String)
        .build()
        .expect("t")
}

fn rows(n: u64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            row![
                u64::MAX - i,
                Identity::from_u64(i),
                format!("row number {i}")
            ]
        })
        .collect()
}

fn read_rows(r: &Rows<'_>) -> Vec<Row> {
    match r {
        Rows::Packed(b) => {
            let body = row_list_body(b).expect("body");
            let mut framed = Vec::new();
            let _ = rmp::encode::write_bin(&mut framed, &body);
            rowlist::decode(&schema(), &framed).expect("rows")
        }
        Rows::Json(raw) => rows_from_json(&schema(), raw.get()).expect("rows"),
    }
}

fn update(n: u64) -> TableUpdate {
    TableUpdate::new(
        "t".into(),
        TableRows::Persistent {
            inserts: rows(n),
            deletes: rows(1),
        },
    )
}

fn client_messages() -> Vec<ClientMessageWire> {
    vec![
        ClientMessageWire::Subscribe {
            request_id: 1,
            queries: vec!["SELECT * FROM t".into()],
        },
        ClientMessageWire::SubscribeSingle {
            request_id: 2,
            query_id: 5,
            query: "SELECT * FROM t".into(),
        },
        ClientMessageWire::SubscribeMulti {
            request_id: 3,
            query_id: 6,
            queries: vec!["SELECT * FROM t".into(), "SELECT * FROM u".into()],
        },
        ClientMessageWire::Unsubscribe {
            request_id: 4,
            query_id: 5,
        },
        ClientMessageWire::UnsubscribeMulti {
            request_id: 5,
            query_id: 6,
        },
        ClientMessageWire::CallReducer {
            request_id: 6,
            reducer: "send".into(),
            args: Packed(rmp_serde::to_vec(&("hi", 7u64)).expect("args").into()),
            flags: 1,
        },
        ClientMessageWire::OneOffQuery {
            request_id: 7,
            query: "SELECT * FROM t".into(),
        },
    ]
}

#[test]
fn every_client_message_round_trips_in_both_encodings() {
    for encoding in BOTH {
        for m in client_messages() {
            let frame = encode_client(&m, encoding);
            assert_eq!(
                matches!(frame, Frame::Text(_)),
                encoding == Encoding::Json,
                "JSON travels as text, MessagePack as binary"
            );
            let back = decode_client_wire(frame.as_bytes(), encoding).expect("decodes");
            assert_eq!(back, m, "{encoding:?}");
        }
    }
}

#[test]
fn client_messages_map_to_requests() {
    let requests: Vec<ClientMessage> = client_messages()
        .iter()
        .map(|m| {
            decode_client(encode_client(m, Encoding::Json).as_bytes(), Encoding::Json)
                .expect("decodes")
        })
        .collect();
    assert!(matches!(
        &requests[0],
        ClientMessage::V1Subscribe { request_id: 1, queries } if queries.len() == 1
    ));
    assert!(matches!(
        &requests[1],
        ClientMessage::V1SubscribeSingle {
            request_id: 2,
            query_id: 5,
            ..
        }
    ));
    assert!(matches!(
        &requests[2],
        ClientMessage::V1SubscribeMulti { request_id: 3, query_id: 6, queries } if queries.len() == 2
    ));
    assert!(matches!(
        requests[3],
        ClientMessage::V1Unsubscribe {
            request_id: 4,
            query_id: 5
        }
    ));
    assert!(matches!(
        requests[4],
        ClientMessage::V1Unsubscribe {
            request_id: 5,
            query_id: 6
        }
    ));
    let ClientMessage::V1CallReducer {
        request_id: 6,
        ref args,
        flags: CallReducerFlags::NoSuccessNotify,
        ..
    } = requests[5]
    else {
        panic!("a v1 call with its flags: {:?}", requests[5]);
    };
    assert_eq!(
        rmp_serde::from_slice::<(String, u64)>(args).expect("args"),
        ("hi".to_string(), 7)
    );
    assert!(matches!(
        requests[6],
        ClientMessage::OneOffQuery { request_id: 7, .. }
    ));
}

#[test]
fn json_clients_write_args_as_a_json_array() {
    let text = r#"{"CallReducer":{"request_id":9,"reducer":"send","args":["hi",18446744073709551615],"flags":0}}"#;
    let ClientMessage::V1CallReducer { args, flags, .. } =
        decode_client(text.as_bytes(), Encoding::Json).expect("decodes")
    else {
        panic!("a call");
    };
    assert_eq!(flags, CallReducerFlags::FullUpdate);
    assert_eq!(
        rmp_serde::from_slice::<(String, u64)>(&args).expect("args"),
        ("hi".to_string(), u64::MAX)
    );
}

#[test]
fn malformed_client_messages_are_errors() {
    let e = decode_client(b"{\"Subscribe\":", Encoding::Json).expect_err("truncated");
    assert!(matches!(e, WireError::Json { .. }), "{e}");
    let e = decode_client(b"[1,2]", Encoding::Json).expect_err("not a message");
    assert!(
        e.to_string().starts_with("not a valid v1 client message"),
        "{e}"
    );
    let e = decode_client(&[7, 1], Encoding::MessagePack).expect_err("tag");
    assert!(
        matches!(e, WireError::MessagePack(v2::WireError::Tag(7))),
        "{e}"
    );
    let reserved = ClientMessageWire::SubscribeSingle {
        request_id: 1,
        query_id: LEGACY_QUERY_ID,
        query: "SELECT * FROM t".into(),
    };
    for encoding in BOTH {
        let e = decode_client(encode_client(&reserved, encoding).as_bytes(), encoding)
            .expect_err("reserved id");
        assert!(
            matches!(e, WireError::ReservedQueryId(LEGACY_QUERY_ID)),
            "{e}"
        );
    }
    let flags = ClientMessageWire::CallReducer {
        request_id: 1,
        reducer: "x".into(),
        args: Packed::default(),
        flags: 2,
    };
    let e = decode_client(
        encode_client(&flags, Encoding::Json).as_bytes(),
        Encoding::Json,
    )
    .expect_err("flags");
    assert!(matches!(e, WireError::Flags(2)), "{e}");
}

fn caller_update(status: ReducerStatus) -> ServerMessage {
    ServerMessage::TransactionUpdate(TransactionUpdate {
        tx_offset: 9,
        timestamp: Timestamp(77),
        query_sets: vec![QuerySetUpdate {
            query_set_id: 4,
            tables: vec![update(3)],
        }],
        reducer_event: Some(ReducerEvent {
            request_id: 12,
            reducer: "send".into(),
            args: rmp_serde::to_vec(&("hi",)).expect("args"),
            caller: Identity::from_u64(8),
            status,
        }),
    })
}

fn server_messages() -> Vec<ServerMessage> {
    vec![
        ServerMessage::InitialConnection {
            identity: Identity::from_u64(8),
            connection_id: ConnectionId(3),
            token: Some("tok".into()),
        },
        ServerMessage::SubscribeApplied {
            request_id: 1,
            query_set_id: LEGACY_QUERY_ID,
            tx_offset: 4,
            tables: vec![update(2)],
        },
        ServerMessage::SubscribeApplied {
            request_id: 2,
            query_set_id: 5,
            tx_offset: 4,
            tables: vec![update(2)],
        },
        ServerMessage::SubscribeApplied {
            request_id: 3,
            query_set_id: 6,
            tx_offset: 4,
            tables: vec![update(2), update(1)],
        },
        ServerMessage::UnsubscribeApplied {
            request_id: 4,
            query_set_id: 5,
            tx_offset: 6,
            tables: None,
        },
        ServerMessage::UnsubscribeApplied {
            request_id: 5,
            query_set_id: 6,
            tx_offset: 6,
            tables: None,
        },
        ServerMessage::SubscriptionError {
            request_id: Some(1),
            query_set_id: Some(LEGACY_QUERY_ID),
            error: crate::messages::V1_EVENT_TABLE_ERROR.into(),
        },
        caller_update(ReducerStatus::Committed(
            rmp_serde::to_vec(&1u64).expect("v"),
        )),
        caller_update(ReducerStatus::Failed("no".into())),
        caller_update(ReducerStatus::InternalError("boom".into())),
        ServerMessage::OneOffQueryResult {
            request_id: 7,
            result: Ok(vec![("t".into(), rows(2))]),
        },
        ServerMessage::OneOffQueryResult {
            request_id: 8,
            result: Err("unknown table".into()),
        },
    ]
}

/// A codec that has seen the requests `server_messages` answer.
fn codec_after_requests(encoding: Encoding, compression: Compression) -> SessionCodec {
    let mut codec = SessionCodec::new(encoding, compression);
    for m in client_messages() {
        codec
            .decode(encode_client(&m, encoding).as_bytes())
            .expect("decodes");
    }
    codec
}

#[test]
fn every_server_message_round_trips_in_both_encodings() {
    for encoding in BOTH {
        let mut codec = codec_after_requests(encoding, Compression::None);
        let mut names = Vec::new();
        for m in server_messages() {
            let expected = codec_after_requests(encoding, Compression::None)
                .to_wire(&m)
                .expect("sent");
            let frame = codec.encode(&m).expect("sent");
            let back = decode_server(frame.as_bytes(), encoding).expect("decodes");
            assert_eq!(back, expected, "{encoding:?}: {m:?}");
            let name = match &back {
                ServerMessageWire::IdentityToken { .. } => "IdentityToken",
                ServerMessageWire::InitialSubscription { .. } => "InitialSubscription",
                ServerMessageWire::SubscribeApplied { .. } => "SubscribeApplied",
                ServerMessageWire::SubscribeMultiApplied { .. } => "SubscribeMultiApplied",
                ServerMessageWire::UnsubscribeApplied { .. } => "UnsubscribeApplied",
                ServerMessageWire::UnsubscribeMultiApplied { .. } => "UnsubscribeMultiApplied",
                ServerMessageWire::SubscriptionError { .. } => "SubscriptionError",
                ServerMessageWire::TransactionUpdate { .. } => "TransactionUpdate",
                ServerMessageWire::OneOffQueryResponse { .. } => "OneOffQueryResponse",
            };
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "IdentityToken",
                "InitialSubscription",
                "SubscribeApplied",
                "SubscribeMultiApplied",
                "UnsubscribeApplied",
                "UnsubscribeMultiApplied",
                "SubscriptionError",
                "TransactionUpdate",
                "TransactionUpdate",
                "TransactionUpdate",
                "OneOffQueryResponse",
                "OneOffQueryResponse",
            ],
            "answers are named after the request they answer"
        );
    }
}

#[test]
fn transaction_updates_carry_rows_and_the_reducer_call() {
    for (encoding, compression, n) in [
        (Encoding::MessagePack, Compression::None, 3),
        (Encoding::MessagePack, Compression::Gzip, 500),
        (Encoding::Json, Compression::Gzip, 3),
    ] {
        let msg = caller_update(ReducerStatus::Committed(
            rmp_serde::to_vec(&1u64).expect("v"),
        ));
        let ServerMessage::TransactionUpdate(mut u) = msg else {
            unreachable!()
        };
        u.query_sets[0].tables = vec![update(n)];
        let msg = ServerMessage::TransactionUpdate(u);
        let mut codec = SessionCodec::new(encoding, compression);
        let frame = codec.encode(&msg).expect("sent");
        let ServerMessageWire::TransactionUpdate {
            status,
            timestamp,
            caller_identity,
            reducer_call,
            tx_offset,
            database_update,
        } = decode_server(frame.as_bytes(), encoding).expect("decodes")
        else {
            panic!("a transaction update");
        };
        assert_eq!((timestamp, tx_offset), (77, 9));
        assert_eq!(
            status,
            UpdateStatus::Committed(Packed(rmp_serde::to_vec(&1u64).expect("v").into()))
        );
        assert_eq!(caller_identity.0.as_ref(), &Identity::from_u64(8).0);
        assert_eq!(
            (reducer_call.reducer_name.as_ref(), reducer_call.request_id),
            ("send", 12)
        );
        assert_eq!(
            rmp_serde::from_slice::<(String,)>(&reducer_call.args.0).expect("args"),
            ("hi".to_string(),)
        );
        let t = &database_update.tables[0];
        assert_eq!(
            (t.query_id, t.table_name.as_ref(), t.num_rows),
            (4, "t", n + 1)
        );
        if let Rows::Packed(b) = &t.inserts {
            assert_eq!(
                b.first() == Some(&TAG_GZIP),
                compression == Compression::Gzip && n == 500,
                "gzip only above the threshold"
            );
        }
        assert_eq!(read_rows(&t.inserts), rows(n));
        assert_eq!(read_rows(&t.deletes), rows(1));
    }
}

#[test]
fn json_rows_are_rendered_once_and_shared_by_every_session() {
    let u = update(3);
    let msg = ServerMessage::SubscribeApplied {
        request_id: 1,
        query_set_id: 2,
        tx_offset: 0,
        tables: vec![u.clone()],
    };
    let mut a = SessionCodec::new(Encoding::Json, Compression::None);
    let mut b = SessionCodec::new(Encoding::Json, Compression::None);
    let first = a.encode(&msg).expect("sent");
    let second = b.encode(&msg).expect("sent");
    assert_eq!(first, second);
    let ptr = |c: &mut SessionCodec| {
        let Some(ServerMessageWire::SubscribeMultiApplied {
            database_update, ..
        }) = c.to_wire(&msg)
        else {
            panic!("applied");
        };
        let Rows::Json(std::borrow::Cow::Borrowed(raw)) = &database_update.tables[0].inserts else {
            panic!("borrowed from the cache");
        };
        std::ptr::from_ref(*raw).cast::<u8>()
    };
    assert_eq!(ptr(&mut a), ptr(&mut b), "one rendering per table update");
    let Frame::Text(text) = first else {
        panic!("text");
    };
    assert!(
        text.contains(&format!("\"{}\"", u64::MAX)),
        "u64 as a decimal string: {text}"
    );
    assert!(
        text.contains(&format!("\"{}\"", Identity::from_u64(1).to_hex())),
        "identity as hex: {text}"
    );
    assert!(Arc::strong_count(&u.wire) >= 2);
}

#[test]
fn messages_v1_does_not_send_are_skipped() {
    let mut codec = SessionCodec::new(Encoding::Json, Compression::None);
    let skipped = [
        ServerMessage::UnsubscribeApplied {
            request_id: 1,
            query_set_id: LEGACY_QUERY_ID,
            tx_offset: 1,
            tables: None,
        },
        ServerMessage::Disconnected {
            reason: "bye".into(),
            going_away: true,
        },
    ];
    for m in skipped {
        assert!(codec.encode(&m).is_none(), "{m:?}");
    }
}

#[test]
fn other_clients_see_an_emptied_reducer_call() {
    let msg = ServerMessage::TransactionUpdate(TransactionUpdate {
        tx_offset: 2,
        timestamp: Timestamp(5),
        query_sets: vec![],
        reducer_event: Some(ReducerEvent {
            request_id: 0,
            reducer: String::new(),
            args: Vec::new(),
            caller: Identity::ZERO,
            status: ReducerStatus::Committed(Vec::new()),
        }),
    });
    let Frame::Text(text) = SessionCodec::new(Encoding::Json, Compression::None)
        .encode(&msg)
        .expect("sent")
    else {
        panic!("text");
    };
    assert_eq!(
        text,
        format!(
            r#"{{"TransactionUpdate":{{"status":{{"Committed":null}},"timestamp":5,"caller_identity":"{}","reducer_call":{{"reducer_name":"","args":null,"request_id":0}},"tx_offset":2,"database_update":{{"tables":[]}}}}}}"#,
            "00".repeat(32)
        )
    );
}
