//! One session's v1 codec: server messages to the v1 catalogue, client frames to requests.
//!
//! The server's messages are protocol-neutral ([`ServerMessage`]); v1 names some answers
//! after the request they answer (`SubscribeApplied` for `SubscribeSingle`,
//! `SubscribeMultiApplied` for `SubscribeMulti`, and the same for unsubscribing), so the
//! codec remembers, per request id, which kind of request is awaiting its answer. An entry
//! lives from the request's decoding to its answer; every subscribe and unsubscribe
//! request is answered (applied or error), so the map holds at most the requests in
//! flight.

use std::borrow::Cow;

use hashbrown::HashMap;

use super::{
    Bytes, ClientMessageWire, DatabaseUpdate, Encoding, Frame, LEGACY_QUERY_ID, OneOffTable,
    Packed, ReducerCallInfo, Rows, ServerMessageWire, TableUpdateWire, UpdateStatus, WireError,
    decode_client_wire, encode_server,
};
use crate::messages::{
    CallReducerFlags, ClientMessage, QuerySetId, QuerySetUpdate, ReducerStatus, RequestId,
    ServerMessage, TableUpdate,
};
use crate::wire::json::rows_json;
use crate::wire::v2::{Compression, row_list_bytes};

/// Which of v1's twin requests a request id stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `SubscribeSingle` or `Unsubscribe`.
    Single,
    /// `SubscribeMulti` or `UnsubscribeMulti`.
    Multi,
}

/// Encodes and decodes one v1 session's messages.
#[derive(Debug)]
pub struct SessionCodec {
    encoding: Encoding,
    compression: Compression,
    awaiting: HashMap<RequestId, Kind>,
}

impl SessionCodec {
    /// A codec writing `encoding`; `compression` applies to MessagePack row lists only.
    pub fn new(encoding: Encoding, compression: Compression) -> Self {
        SessionCodec {
            encoding,
            compression,
            awaiting: HashMap::new(),
        }
    }

    /// The encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Decodes a client's payload (a binary frame's bytes for MessagePack, a text frame's
    /// for JSON) into a request, remembering what its answer must be called.
    pub fn decode(&mut self, payload: &[u8]) -> Result<ClientMessage, WireError> {
        let wire = decode_client_wire(payload, self.encoding)?;
        match &wire {
            ClientMessageWire::SubscribeSingle { request_id, .. }
            | ClientMessageWire::Unsubscribe { request_id, .. } => {
                self.awaiting.insert(*request_id, Kind::Single);
            }
            ClientMessageWire::SubscribeMulti { request_id, .. }
            | ClientMessageWire::UnsubscribeMulti { request_id, .. } => {
                self.awaiting.insert(*request_id, Kind::Multi);
            }
            _ => {}
        }
        Ok(into_request(wire))
    }

    /// The frame for `msg`, or `None` for messages v1 does not send: `Disconnected`
    /// (a close instead), `ReducerResult` (v2 only), and the legacy set's
    /// `UnsubscribeApplied` (its `InitialSubscription` follows and replaces it).
    pub fn encode(&mut self, msg: &ServerMessage) -> Option<Frame> {
        let wire = self.to_wire(msg)?;
        encode_server(&wire, self.encoding)
    }

    /// The v1 form of `msg` (borrowing its rows), as [`SessionCodec::encode`] writes it.
    pub fn to_wire<'a>(&mut self, msg: &'a ServerMessage) -> Option<ServerMessageWire<'a>> {
        let (encoding, compression) = (self.encoding, self.compression);
        let rows = |tables: &'a [TableUpdate], query_id: QuerySetId| DatabaseUpdate {
            tables: tables
                .iter()
                .map(|t| table_wire(t, query_id, encoding, compression))
                .collect(),
        };
        Some(match msg {
            ServerMessage::InitialConnection {
                identity,
                connection_id,
                token,
            } => ServerMessageWire::IdentityToken {
                identity: Bytes(Cow::Borrowed(&identity.0)),
                token: token.as_deref().map(Cow::Borrowed),
                connection_id: connection_id.0,
            },
            ServerMessage::SubscribeApplied {
                request_id,
                query_set_id,
                tx_offset,
                tables,
            } => {
                let kind = self.awaiting.remove(request_id);
                let (request_id, tx_offset) = (*request_id, *tx_offset);
                let database_update = rows(tables, *query_set_id);
                match (*query_set_id, kind) {
                    (LEGACY_QUERY_ID, _) => ServerMessageWire::InitialSubscription {
                        request_id,
                        tx_offset,
                        database_update,
                    },
                    (query_id, Some(Kind::Single)) => ServerMessageWire::SubscribeApplied {
                        request_id,
                        query_id,
                        tx_offset,
                        database_update,
                    },
                    (query_id, _) => ServerMessageWire::SubscribeMultiApplied {
                        request_id,
                        query_id,
                        tx_offset,
                        database_update,
                    },
                }
            }
            ServerMessage::UnsubscribeApplied {
                request_id,
                query_set_id,
                tx_offset,
                ..
            } => {
                if *query_set_id == LEGACY_QUERY_ID {
                    return None;
                }
                let (request_id, query_id, tx_offset) = (*request_id, *query_set_id, *tx_offset);
                match self.awaiting.remove(&request_id) {
                    Some(Kind::Single) => ServerMessageWire::UnsubscribeApplied {
                        request_id,
                        query_id,
                        tx_offset,
                    },
                    _ => ServerMessageWire::UnsubscribeMultiApplied {
                        request_id,
                        query_id,
                        tx_offset,
                    },
                }
            }
            ServerMessage::SubscriptionError {
                request_id,
                query_set_id,
                error,
            } => {
                if let Some(r) = request_id {
                    self.awaiting.remove(r);
                }
                ServerMessageWire::SubscriptionError {
                    request_id: *request_id,
                    query_id: *query_set_id,
                    error: Cow::Borrowed(error),
                }
            }
            ServerMessage::TransactionUpdate(u) => {
                let database_update = DatabaseUpdate {
                    tables: u
                        .query_sets
                        .iter()
                        .flat_map(
                            |QuerySetUpdate {
                                 query_set_id,
                                 tables,
                             }| {
                                tables
                                    .iter()
                                    .map(|t| table_wire(t, *query_set_id, encoding, compression))
                            },
                        )
                        .collect(),
                };
                let (status, caller, call) = match &u.reducer_event {
                    Some(ev) => (
                        match &ev.status {
                            ReducerStatus::Committed(v) => {
                                UpdateStatus::Committed(Packed(Cow::Borrowed(v)))
                            }
                            ReducerStatus::Failed(e) => UpdateStatus::Failed(Cow::Borrowed(e)),
                            ReducerStatus::InternalError(e) => {
                                UpdateStatus::InternalError(Cow::Borrowed(e))
                            }
                        },
                        &ev.caller.0,
                        ReducerCallInfo {
                            reducer_name: Cow::Borrowed(&ev.reducer),
                            args: Packed(Cow::Borrowed(&ev.args)),
                            request_id: ev.request_id,
                        },
                    ),
                    // A commit with no reducer behind it (none reaches v1 sessions today).
                    None => (
                        UpdateStatus::Committed(Packed::default()),
                        &[0u8; 32],
                        ReducerCallInfo {
                            reducer_name: Cow::Borrowed(""),
                            args: Packed::default(),
                            request_id: 0,
                        },
                    ),
                };
                ServerMessageWire::TransactionUpdate {
                    status,
                    timestamp: u.timestamp.0,
                    caller_identity: Bytes(Cow::Borrowed(caller)),
                    reducer_call: call,
                    tx_offset: u.tx_offset,
                    database_update,
                }
            }
            ServerMessage::OneOffQueryResult { request_id, result } => {
                let (error, tables) = match result {
                    Ok(tables) => (
                        None,
                        tables
                            .iter()
                            .map(|(table, rows)| OneOffTable {
                                table_name: Cow::Borrowed(table),
                                // Answers one request: nothing to share, encoded here.
                                rows: match encoding {
                                    Encoding::MessagePack => {
                                        Rows::Packed(Cow::Owned(row_list_bytes(rows, compression)))
                                    }
                                    Encoding::Json => Rows::Json(Cow::Owned(rows_json(rows))),
                                },
                            })
                            .collect(),
                    ),
                    Err(e) => (Some(Cow::Borrowed(e.as_str())), Vec::new()),
                };
                ServerMessageWire::OneOffQueryResponse {
                    request_id: *request_id,
                    error,
                    tables,
                }
            }
            ServerMessage::ReducerResult { request_id, .. } => {
                tracing::debug!(request_id, "a v2 reducer result reached a v1 session");
                return None;
            }
            ServerMessage::Disconnected { .. } => return None,
        })
    }
}

/// One query's shared rows, wrapped: the row lists come from the update's cache.
fn table_wire(
    t: &TableUpdate,
    query_id: QuerySetId,
    encoding: Encoding,
    compression: Compression,
) -> TableUpdateWire<'_> {
    let (inserts, deletes) = match encoding {
        Encoding::MessagePack => {
            let (ins, del) = t.wire.persistent(&t.rows, compression);
            (
                Rows::Packed(Cow::Borrowed(&ins[..])),
                Rows::Packed(Cow::Borrowed(&del[..])),
            )
        }
        Encoding::Json => {
            let (ins, del) = t.wire.json(&t.rows);
            (
                Rows::Json(Cow::Borrowed(&**ins)),
                Rows::Json(Cow::Borrowed(&**del)),
            )
        }
    };
    TableUpdateWire {
        query_id,
        table_name: Cow::Borrowed(&t.table),
        num_rows: t.rows.len() as u64,
        inserts,
        deletes,
    }
}

/// The request a decoded v1 message stands for.
fn into_request(wire: ClientMessageWire) -> ClientMessage {
    match wire {
        ClientMessageWire::Subscribe {
            request_id,
            queries,
        } => ClientMessage::V1Subscribe {
            request_id,
            queries,
        },
        ClientMessageWire::SubscribeSingle {
            request_id,
            query_id,
            query,
        } => ClientMessage::V1SubscribeSingle {
            request_id,
            query_id,
            query,
        },
        ClientMessageWire::SubscribeMulti {
            request_id,
            query_id,
            queries,
        } => ClientMessage::V1SubscribeMulti {
            request_id,
            query_id,
            queries,
        },
        ClientMessageWire::Unsubscribe {
            request_id,
            query_id,
        }
        | ClientMessageWire::UnsubscribeMulti {
            request_id,
            query_id,
        } => ClientMessage::V1Unsubscribe {
            request_id,
            query_id,
        },
        ClientMessageWire::CallReducer {
            request_id,
            reducer,
            args,
            flags,
        } => ClientMessage::V1CallReducer {
            request_id,
            reducer,
            args: args.0.into_owned(),
            flags: if flags == 1 {
                CallReducerFlags::NoSuccessNotify
            } else {
                CallReducerFlags::FullUpdate
            },
        },
        ClientMessageWire::OneOffQuery { request_id, query } => {
            ClientMessage::OneOffQuery { request_id, query }
        }
    }
}

/// Decodes a client's payload into a request (a [`SessionCodec`] also remembers what
/// the answer must be called).
pub fn decode_client(payload: &[u8], encoding: Encoding) -> Result<ClientMessage, WireError> {
    decode_client_wire(payload, encoding).map(into_request)
}
