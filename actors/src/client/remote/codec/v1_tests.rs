//! The client's v1 codec against the server's own v1 session codec: requests the server
//! decodes as sent, and frames the server writes for a session decode to the messages
//! that session's in-process twin receives.

use super::super::{WireProtocol, codec_for};
use super::*;
use crate::wire::v1::{SessionCodec, decode_client_wire};
use crate::wire::v2::Compression;
use tidings_engine::{AlgebraicType as T, Identity, Schema, row};

fn schema() -> Schema {
    Schema::new([
        TableSchema::builder("t")
            .column("id", T::U64)
            .column("s", T::String)
            .build()
            .expect("t"),
        TableSchema::builder("e")
            .column("x", T::U32)
            .event()
            .build()
            .expect("e"),
    ])
    .expect("schema")
}

/// Every v1 encoding, MessagePack with and without compressed row lists.
const CASES: [(Encoding, Compression); 3] = [
    (Encoding::MessagePack, Compression::None),
    (Encoding::MessagePack, Compression::Gzip),
    (Encoding::Json, Compression::None),
];

fn codec(encoding: Encoding) -> Arc<dyn Codec> {
    let protocol = match encoding {
        Encoding::MessagePack => WireProtocol::V1MsgPack,
        Encoding::Json => WireProtocol::V1Json,
    };
    codec_for(protocol, &schema())
}

fn payload(frame: &OutFrame) -> &[u8] {
    match frame {
        OutFrame::Binary(b) => b,
        OutFrame::Text(t) => t.as_bytes(),
    }
}

/// Decodes a server frame as the socket would.
fn decode(
    decoder: &mut dyn Decoder,
    frame: &Frame,
    out: &mut Vec<ServerMessage>,
) -> Result<(), DecodeError> {
    match frame {
        Frame::Binary(b) => decoder.decode_binary(b, out),
        Frame::Text(t) => decoder.decode_text(t, out),
    }
}

/// Field by field: `ServerMessage` has no `PartialEq` (it carries shared encodings).
fn same(a: &ServerMessage, b: &ServerMessage) -> bool {
    use ServerMessage as M;
    match (a, b) {
        (
            M::InitialConnection {
                identity: i1,
                connection_id: c1,
                token: t1,
            },
            M::InitialConnection {
                identity: i2,
                connection_id: c2,
                token: t2,
            },
        ) => (i1, c1, t1) == (i2, c2, t2),
        (
            M::SubscribeApplied {
                request_id: r1,
                query_set_id: q1,
                tx_offset: o1,
                tables: t1,
            },
            M::SubscribeApplied {
                request_id: r2,
                query_set_id: q2,
                tx_offset: o2,
                tables: t2,
            },
        ) => (r1, q1, o1, t1) == (r2, q2, o2, t2),
        (
            M::UnsubscribeApplied {
                request_id: r1,
                query_set_id: q1,
                tx_offset: o1,
                tables: t1,
            },
            M::UnsubscribeApplied {
                request_id: r2,
                query_set_id: q2,
                tx_offset: o2,
                tables: t2,
            },
        ) => (r1, q1, o1, t1) == (r2, q2, o2, t2),
        (
            M::SubscriptionError {
                request_id: r1,
                query_set_id: q1,
                error: e1,
            },
            M::SubscriptionError {
                request_id: r2,
                query_set_id: q2,
                error: e2,
            },
        ) => (r1, q1, e1) == (r2, q2, e2),
        (M::TransactionUpdate(u1), M::TransactionUpdate(u2)) => u1 == u2,
        (
            M::OneOffQueryResult {
                request_id: r1,
                result: o1,
            },
            M::OneOffQueryResult {
                request_id: r2,
                result: o2,
            },
        ) => (r1, o1) == (r2, o2),
        _ => false,
    }
}

fn persistent(inserts: Vec<Row>, deletes: Vec<Row>) -> TableUpdate {
    TableUpdate::new("t".into(), TableRows::Persistent { inserts, deletes })
}

fn applied(request_id: u32, query_set_id: u32, tables: Vec<TableUpdate>) -> ServerMessage {
    ServerMessage::SubscribeApplied {
        request_id,
        query_set_id,
        tx_offset: 10,
        tables,
    }
}

fn unsubscribed(request_id: u32, query_set_id: u32) -> ServerMessage {
    ServerMessage::UnsubscribeApplied {
        request_id,
        query_set_id,
        tx_offset: 10,
        tables: None,
    }
}

fn update(query_sets: Vec<QuerySetUpdate>, reducer_event: ReducerEvent) -> ServerMessage {
    ServerMessage::TransactionUpdate(TransactionUpdate {
        tx_offset: 11,
        timestamp: Timestamp(1_700_000_000_000_000),
        query_sets,
        reducer_event: Some(reducer_event),
    })
}

#[test]
fn requests_reach_the_server_as_sent_with_the_twin_unsubscribe() {
    for (encoding, _) in CASES {
        let client = codec(encoding);
        let mut server = SessionCodec::new(encoding, Compression::None);
        let args = crate::module::encode_args(&("hi", 5u32)).expect("args");
        let requests = [
            ClientMessage::V1SubscribeSingle {
                request_id: 1,
                query_id: 3,
                query: "SELECT * FROM t".into(),
            },
            ClientMessage::V1SubscribeMulti {
                request_id: 2,
                query_id: 4,
                queries: vec![
                    "SELECT * FROM t".into(),
                    "SELECT * FROM t WHERE id = 1".into(),
                ],
            },
            ClientMessage::V1Subscribe {
                request_id: 3,
                queries: vec!["SELECT * FROM t".into()],
            },
            ClientMessage::V1Unsubscribe {
                request_id: 4,
                query_id: 3,
            },
            ClientMessage::V1Unsubscribe {
                request_id: 5,
                query_id: 4,
            },
            ClientMessage::V1CallReducer {
                request_id: 6,
                reducer: "r".into(),
                args: args.clone(),
                flags: CallReducerFlags::NoSuccessNotify,
            },
            ClientMessage::OneOffQuery {
                request_id: 7,
                query: "SELECT * FROM t".into(),
            },
        ];
        for r in &requests {
            let frame = client.encode(r.clone()).expect("encodes");
            assert_eq!(
                matches!(frame, OutFrame::Text(_)),
                encoding == Encoding::Json,
                "{encoding:?}: JSON in text frames, MessagePack in binary ones"
            );
            assert_eq!(
                &server
                    .decode(payload(&frame))
                    .expect("the server decodes it"),
                r,
                "{encoding:?}"
            );
            if let ClientMessage::V1Unsubscribe { query_id, .. } = r {
                let wire = decode_client_wire(payload(&frame), encoding).expect("decodes");
                let single = matches!(wire, ClientMessageWire::Unsubscribe { .. });
                assert_eq!(single, *query_id == 3, "{encoding:?}: {wire:?}");
            }
        }
        // A plain call is a v1 call with a full update, as in process.
        let frame = client
            .encode(ClientMessage::CallReducer {
                request_id: 8,
                reducer: "r".into(),
                args: args.clone(),
            })
            .expect("encodes");
        assert_eq!(
            server.decode(payload(&frame)).expect("decodes"),
            ClientMessage::V1CallReducer {
                request_id: 8,
                reducer: "r".into(),
                args,
                flags: CallReducerFlags::FullUpdate,
            }
        );
        // `()` is nil; JSON sends "no arguments" as `[]`, which the server accepts.
        let frame = client
            .encode(ClientMessage::CallReducer {
                request_id: 9,
                reducer: "noop".into(),
                args: vec![NIL],
            })
            .expect("encodes");
        let ClientMessage::V1CallReducer { args, .. } =
            server.decode(payload(&frame)).expect("decodes")
        else {
            panic!("a call");
        };
        let expected = match encoding {
            Encoding::MessagePack => [NIL],
            Encoding::Json => [EMPTY_ARRAY],
        };
        assert_eq!(args, expected, "{encoding:?}");
    }
}

#[test]
fn server_frames_decode_to_the_messages_of_an_in_process_v1_session() {
    let me = Identity::from_u64(42);
    let t_rows: Vec<Row> = (0..300u64).map(|i| row![i, format!("r{i}")]).collect();
    let args = crate::module::encode_args(&("hi",)).expect("args");
    let dealt = rmp_serde::to_vec(&vec![1u64, u64::MAX]).expect("value");
    for (encoding, compression) in CASES {
        let client = codec(encoding);
        let mut server = SessionCodec::new(encoding, compression);
        // The requests the answers below answer, so the server names them.
        for r in [
            ClientMessage::V1SubscribeSingle {
                request_id: 1,
                query_id: 3,
                query: "SELECT * FROM t".into(),
            },
            ClientMessage::V1SubscribeMulti {
                request_id: 2,
                query_id: 4,
                queries: vec!["SELECT * FROM t".into()],
            },
            ClientMessage::V1Unsubscribe {
                request_id: 5,
                query_id: 3,
            },
            ClientMessage::V1Unsubscribe {
                request_id: 6,
                query_id: 4,
            },
        ] {
            let frame = client.encode(r).expect("encodes");
            server.decode(payload(&frame)).expect("decodes");
        }
        let own = ReducerEvent {
            request_id: 9,
            reducer: "deal".into(),
            args: args.clone(),
            caller: me,
            status: ReducerStatus::Committed(dealt.clone()),
        };
        let unit = ReducerEvent {
            request_id: 10,
            reducer: "noop".into(),
            args: args.clone(),
            caller: me,
            status: ReducerStatus::Committed(vec![NIL]),
        };
        let failed = ReducerEvent {
            request_id: 11,
            reducer: "fail".into(),
            args: args.clone(),
            caller: me,
            status: ReducerStatus::Failed("no".into()),
        };
        let emptied = ReducerEvent {
            request_id: 0,
            reducer: String::new(),
            args: Vec::new(),
            caller: Identity::ZERO,
            status: ReducerStatus::Committed(Vec::new()),
        };
        let sets = vec![
            QuerySetUpdate {
                query_set_id: 3,
                tables: vec![persistent(vec![row![7u64, "new"]], vec![row![6u64, "old"]])],
            },
            QuerySetUpdate {
                query_set_id: 4,
                tables: vec![
                    persistent(t_rows.clone(), Vec::new()),
                    TableUpdate::new(
                        "e".into(),
                        TableRows::Event {
                            events: vec![row![1u32], row![2u32]],
                        },
                    ),
                ],
            },
            QuerySetUpdate {
                query_set_id: LEGACY_QUERY_ID,
                tables: vec![persistent(Vec::new(), vec![row![1u64, "gone"]])],
            },
        ];
        // What the session's in-process twin receives, in order. The legacy set's
        // `UnsubscribeApplied` before its replacement has no v1 frame: the decoder must
        // put it back.
        let in_process = vec![
            ServerMessage::InitialConnection {
                identity: me,
                connection_id: ConnectionId(77),
                token: Some("tok".into()),
            },
            applied(1, 3, vec![persistent(t_rows.clone(), Vec::new())]),
            applied(2, 4, vec![persistent(t_rows.clone(), Vec::new())]),
            applied(
                3,
                LEGACY_QUERY_ID,
                vec![persistent(vec![row![1u64, "a"]], Vec::new())],
            ),
            unsubscribed(12, LEGACY_QUERY_ID),
            applied(12, LEGACY_QUERY_ID, Vec::new()),
            update(sets.clone(), own),
            update(Vec::new(), unit),
            update(Vec::new(), failed),
            update(sets, emptied),
            ServerMessage::SubscriptionError {
                request_id: Some(13),
                query_set_id: Some(5),
                error: crate::messages::V1_EVENT_TABLE_ERROR.into(),
            },
            unsubscribed(5, 3),
            unsubscribed(6, 4),
            ServerMessage::OneOffQueryResult {
                request_id: 14,
                result: Ok(vec![("t".into(), t_rows.clone())]),
            },
            ServerMessage::OneOffQueryResult {
                request_id: 15,
                result: Err("no table".into()),
            },
        ];
        let mut decoder = client.decoder();
        let mut decoded = Vec::new();
        for m in &in_process {
            match server.encode(m) {
                Some(frame) => decode(&mut *decoder, &frame, &mut decoded)
                    .unwrap_or_else(|e| panic!("{encoding:?}: {m:?}: {e}")),
                None => assert!(
                    matches!(m, ServerMessage::UnsubscribeApplied { query_set_id, .. } if *query_set_id == LEGACY_QUERY_ID),
                    "only the legacy set's UnsubscribeApplied has no frame: {m:?}"
                ),
            }
        }
        assert_eq!(decoded.len(), in_process.len(), "{encoding:?}: {decoded:?}");
        for (got, want) in decoded.iter().zip(&in_process) {
            assert!(
                same(got, want),
                "{encoding:?} {compression:?}:\n got {got:?}\nwant {want:?}"
            );
        }
    }
}

#[test]
fn the_legacy_unsubscribe_comes_back_only_while_the_session_holds_the_set() {
    for (encoding, compression) in CASES {
        let mut server = SessionCodec::new(encoding, compression);
        let initial = server
            .encode(&applied(1, LEGACY_QUERY_ID, Vec::new()))
            .expect("InitialSubscription");
        let refused = server
            .encode(&ServerMessage::SubscriptionError {
                request_id: Some(2),
                query_set_id: Some(LEGACY_QUERY_ID),
                error: "bad query".into(),
            })
            .expect("error");
        let ended = server
            .encode(&ServerMessage::SubscriptionError {
                request_id: None,
                query_set_id: Some(LEGACY_QUERY_ID),
                error: "the table changed".into(),
            })
            .expect("error");
        let codec = codec(encoding);
        let kinds = |decoder: &mut dyn Decoder, frame: &Frame| {
            let mut out = Vec::new();
            decode(decoder, frame, &mut out).expect("decodes");
            out.iter()
                .map(|m| match m {
                    ServerMessage::SubscribeApplied { .. } => "applied",
                    ServerMessage::UnsubscribeApplied { .. } => "unsubscribed",
                    ServerMessage::SubscriptionError { .. } => "error",
                    _ => "other",
                })
                .collect::<Vec<_>>()
        };
        let mut d = codec.decoder();
        assert_eq!(kinds(&mut *d, &initial), ["applied"], "nothing to replace");
        assert_eq!(kinds(&mut *d, &initial), ["unsubscribed", "applied"]);
        assert_eq!(kinds(&mut *d, &refused), ["error"]);
        assert_eq!(
            kinds(&mut *d, &initial),
            ["unsubscribed", "applied"],
            "a refused replace left the set in force"
        );
        assert_eq!(kinds(&mut *d, &ended), ["error"]);
        assert_eq!(
            kinds(&mut *d, &initial),
            ["applied"],
            "the server ended the set"
        );
        let mut fresh = codec.decoder();
        assert_eq!(
            kinds(&mut *fresh, &initial),
            ["applied"],
            "a new socket's session holds nothing"
        );
    }
}

#[test]
fn wrong_frames_unknown_tables_and_v2_requests_are_typed_errors() {
    let mut out = Vec::new();
    assert!(matches!(
        codec(Encoding::Json)
            .decoder()
            .decode_binary(&[0, 0x80], &mut out),
        Err(DecodeError::FrameKind { kind: "binary", .. })
    ));
    assert!(matches!(
        codec(Encoding::MessagePack)
            .decoder()
            .decode_text("{}", &mut out),
        Err(DecodeError::FrameKind { kind: "text", .. })
    ));
    for (encoding, compression) in CASES {
        let mut server = SessionCodec::new(encoding, compression);
        let frame = server
            .encode(&applied(
                1,
                2,
                vec![TableUpdate::new(
                    "nope".into(),
                    TableRows::Persistent {
                        inserts: vec![row![1u8]],
                        deletes: Vec::new(),
                    },
                )],
            ))
            .expect("frame");
        assert!(matches!(
            decode(&mut *codec(encoding).decoder(), &frame, &mut out),
            Err(DecodeError::UnknownTable { table }) if table == "nope"
        ));
        let c = codec(encoding);
        for v2_only in [
            ClientMessage::Subscribe {
                request_id: 1,
                query_set_id: 1,
                queries: Vec::new(),
            },
            ClientMessage::Unsubscribe {
                request_id: 1,
                query_set_id: 1,
                send_dropped_rows: false,
            },
            ClientMessage::V1Unsubscribe {
                request_id: 1,
                query_id: LEGACY_QUERY_ID,
            },
        ] {
            assert!(
                matches!(
                    c.encode(v2_only.clone()),
                    Err(SendError::NotInProtocol { .. })
                ),
                "{encoding:?}: {v2_only:?}"
            );
        }
    }
    assert!(out.is_empty(), "a failed frame yields nothing");
}
