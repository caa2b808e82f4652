//! `v1.msgpack.tidings` (binary frames) and `v1.json.tidings` (text frames): requests to
//! v1 frames, and v1 frames back to the very [`ServerMessage`]s a v1 connection receives
//! in process, so the connection's processing code does not know which path it reads.
//!
//! The server's v1 session codec (`wire/v1/codec.rs`) renames and flattens those messages;
//! this module undoes each step:
//!
//! | v1 frame | in-process message |
//! | --- | --- |
//! | `IdentityToken` | `InitialConnection` |
//! | `InitialSubscription` | `SubscribeApplied` of the legacy set ([`LEGACY_QUERY_ID`]), after an `UnsubscribeApplied` of it when the session held one |
//! | `SubscribeApplied`, `SubscribeMultiApplied` | `SubscribeApplied` |
//! | `UnsubscribeApplied`, `UnsubscribeMultiApplied` | `UnsubscribeApplied` (no rows) |
//! | `SubscriptionError` | `SubscriptionError` |
//! | `TransactionUpdate` | `TransactionUpdate`, rows regrouped per query set, with its reducer event |
//! | `OneOffQueryResponse` | `OneOffQueryResult` |
//!
//! Two of those steps need memory. Requests: `Unsubscribe` ends what `SubscribeSingle`
//! began and `UnsubscribeMulti` what `SubscribeMulti` began, so the codec remembers how each
//! query id was subscribed. Answers: a legacy `Subscribe` that replaces a set in force is
//! answered in process by `UnsubscribeApplied` then `SubscribeApplied`, but v1 sends only
//! `InitialSubscription` (the server's codec drops the first), so each socket's decoder
//! remembers whether its session holds a legacy set and puts the `UnsubscribeApplied` back.
//! That memory is per socket: a reconnect's new session holds nothing until its first
//! `InitialSubscription`.
//!
//! JSON carries reducer values as JSON, and writes both "no bytes" and MessagePack nil as
//! `null`; a caller's return value is never empty (a reducer returning nothing returns
//! nil), so its `null` reads back as nil, while an emptied event's stays empty.

use std::borrow::Cow;
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;
use tidings_engine::{Row, TableSchema, Timestamp};

use super::{Codec, DecodeError, Decoder, OutFrame, SendError, Tables, identity, kind};
use crate::messages::{
    CallReducerFlags, ClientMessage, ConnectionId, OneOffRows, QuerySetId, QuerySetUpdate,
    ReducerEvent, ReducerStatus, ServerMessage, TableRows, TableUpdate, TransactionUpdate,
};
use crate::wire::Frame;
use crate::wire::json::rows_from_json;
use crate::wire::v1::{
    self as wire, ClientMessageWire, DatabaseUpdate, Encoding, LEGACY_QUERY_ID, Packed,
    ReducerCallInfo, Rows, ServerMessageWire, TableUpdateWire, UpdateStatus,
};

/// MessagePack nil: what a reducer returning nothing returns.
const NIL: u8 = 0xc0;
/// An empty MessagePack array.
const EMPTY_ARRAY: u8 = 0x90;

/// Which of v1's twin requests put a query id in force, so its unsubscribe is the twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `SubscribeSingle`, ended by `Unsubscribe`.
    Single,
    /// `SubscribeMulti`, ended by `UnsubscribeMulti`.
    Multi,
}

/// v1 in one encoding.
pub(super) struct V1Codec {
    tables: Arc<Tables>,
    encoding: Encoding,
    /// How each query id was last subscribed. Kept across sockets: a reconnect sends the
    /// same requests again under the same ids (and records them again here).
    kinds: Mutex<HashMap<QuerySetId, Kind>>,
}

impl V1Codec {
    pub(super) fn new(tables: Arc<Tables>, encoding: Encoding) -> Self {
        V1Codec {
            tables,
            encoding,
            kinds: Mutex::new(HashMap::new()),
        }
    }
}

impl V1Codec {
    /// serde writes "no arguments", `()`, as nil, which JSON would carry as `null`: no
    /// bytes at all on the server's side. v1 JSON arguments are an array, so nil goes
    /// as `[]`, which the server reads as no arguments.
    fn args(&self, args: Vec<u8>) -> Packed<'static> {
        if self.encoding == Encoding::Json && args == [NIL] {
            return Packed(Cow::Owned(vec![EMPTY_ARRAY]));
        }
        Packed(Cow::Owned(args))
    }
}

impl Codec for V1Codec {
    fn encode(&self, message: ClientMessage) -> Result<OutFrame, SendError> {
        let not_in_v1 = |message| SendError::NotInProtocol {
            message,
            protocol: self.encoding.subprotocol(),
        };
        let wire = match message {
            ClientMessage::V1Subscribe {
                request_id,
                queries,
            } => ClientMessageWire::Subscribe {
                request_id,
                queries,
            },
            ClientMessage::V1SubscribeSingle {
                request_id,
                query_id,
                query,
            } => {
                self.kinds.lock().insert(query_id, Kind::Single);
                ClientMessageWire::SubscribeSingle {
                    request_id,
                    query_id,
                    query,
                }
            }
            ClientMessage::V1SubscribeMulti {
                request_id,
                query_id,
                queries,
            } => {
                self.kinds.lock().insert(query_id, Kind::Multi);
                ClientMessageWire::SubscribeMulti {
                    request_id,
                    query_id,
                    queries,
                }
            }
            ClientMessage::V1Unsubscribe {
                request_id,
                query_id,
            } => {
                // The server refuses the reserved id in every request; only a new
                // legacy `Subscribe` replaces the legacy set.
                if query_id == LEGACY_QUERY_ID {
                    return Err(not_in_v1("v1 Unsubscribe of the legacy Subscribe"));
                }
                match self.kinds.lock().remove(&query_id) {
                    Some(Kind::Single) => ClientMessageWire::Unsubscribe {
                        request_id,
                        query_id,
                    },
                    // An id this codec did not subscribe: the server treats both alike.
                    Some(Kind::Multi) | None => ClientMessageWire::UnsubscribeMulti {
                        request_id,
                        query_id,
                    },
                }
            }
            // What an in-process v1 session does with a plain call: a full update.
            ClientMessage::CallReducer {
                request_id,
                reducer,
                args,
            } => ClientMessageWire::CallReducer {
                request_id,
                reducer,
                args: self.args(args),
                flags: 0,
            },
            ClientMessage::V1CallReducer {
                request_id,
                reducer,
                args,
                flags,
            } => ClientMessageWire::CallReducer {
                request_id,
                reducer,
                args: self.args(args),
                flags: match flags {
                    CallReducerFlags::FullUpdate => 0,
                    CallReducerFlags::NoSuccessNotify => 1,
                },
            },
            ClientMessage::OneOffQuery { request_id, query } => {
                ClientMessageWire::OneOffQuery { request_id, query }
            }
            other @ (ClientMessage::Subscribe { .. } | ClientMessage::Unsubscribe { .. }) => {
                return Err(not_in_v1(kind(&other)));
            }
        };
        Ok(match wire::encode_client(&wire, self.encoding) {
            Frame::Binary(b) => OutFrame::Binary(b),
            Frame::Text(t) => OutFrame::Text(t),
        })
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(V1Decoder {
            tables: self.tables.clone(),
            encoding: self.encoding,
            legacy_in_force: false,
        })
    }
}

/// One socket's v1 frames.
struct V1Decoder {
    tables: Arc<Tables>,
    encoding: Encoding,
    /// Whether this socket's session holds a legacy set: from its `InitialSubscription`
    /// until the server ends it (a `SubscriptionError` naming no request). A refused
    /// legacy `Subscribe` leaves it as it was, as the server does.
    legacy_in_force: bool,
}

impl Decoder for V1Decoder {
    fn decode_binary(
        &mut self,
        frame: &[u8],
        out: &mut Vec<ServerMessage>,
    ) -> Result<(), DecodeError> {
        match self.encoding {
            Encoding::MessagePack => self.decode(frame, out),
            Encoding::Json => Err(DecodeError::FrameKind {
                kind: "binary",
                protocol: wire::SUBPROTOCOL_JSON,
            }),
        }
    }

    fn decode_text(
        &mut self,
        frame: &str,
        out: &mut Vec<ServerMessage>,
    ) -> Result<(), DecodeError> {
        match self.encoding {
            Encoding::Json => self.decode(frame.as_bytes(), out),
            Encoding::MessagePack => Err(DecodeError::FrameKind {
                kind: "text",
                protocol: wire::SUBPROTOCOL_MSGPACK,
            }),
        }
    }
}

impl V1Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<ServerMessage>) -> Result<(), DecodeError> {
        let message = wire::decode_server(payload, self.encoding)?;
        match message {
            ServerMessageWire::IdentityToken {
                identity: id,
                token,
                connection_id,
            } => out.push(ServerMessage::InitialConnection {
                identity: identity(&id.0)?,
                connection_id: ConnectionId(connection_id),
                token: token.map(Cow::into_owned),
            }),
            ServerMessageWire::InitialSubscription {
                request_id,
                tx_offset,
                database_update,
            } => {
                // Rows first: a frame that does not decode changes no state.
                let tables = self.tables(database_update)?;
                if self.legacy_in_force {
                    out.push(ServerMessage::UnsubscribeApplied {
                        request_id,
                        query_set_id: LEGACY_QUERY_ID,
                        tx_offset,
                        tables: None,
                    });
                }
                self.legacy_in_force = true;
                out.push(ServerMessage::SubscribeApplied {
                    request_id,
                    query_set_id: LEGACY_QUERY_ID,
                    tx_offset,
                    tables,
                });
            }
            ServerMessageWire::SubscribeApplied {
                request_id,
                query_id,
                tx_offset,
                database_update,
            }
            | ServerMessageWire::SubscribeMultiApplied {
                request_id,
                query_id,
                tx_offset,
                database_update,
            } => out.push(ServerMessage::SubscribeApplied {
                request_id,
                query_set_id: query_id,
                tx_offset,
                tables: self.tables(database_update)?,
            }),
            ServerMessageWire::UnsubscribeApplied {
                request_id,
                query_id,
                tx_offset,
            }
            | ServerMessageWire::UnsubscribeMultiApplied {
                request_id,
                query_id,
                tx_offset,
            } => out.push(ServerMessage::UnsubscribeApplied {
                request_id,
                query_set_id: query_id,
                tx_offset,
                tables: None,
            }),
            ServerMessageWire::SubscriptionError {
                request_id,
                query_id,
                error,
            } => {
                if request_id.is_none() && query_id == Some(LEGACY_QUERY_ID) {
                    self.legacy_in_force = false;
                }
                out.push(ServerMessage::SubscriptionError {
                    request_id,
                    query_set_id: query_id,
                    error: error.into_owned(),
                });
            }
            ServerMessageWire::TransactionUpdate {
                status,
                timestamp,
                caller_identity,
                reducer_call,
                tx_offset,
                database_update,
            } => {
                let reducer_event = self.reducer_event(status, &caller_identity.0, reducer_call)?;
                out.push(ServerMessage::TransactionUpdate(TransactionUpdate {
                    tx_offset,
                    timestamp: Timestamp(timestamp),
                    query_sets: self.query_sets(database_update)?,
                    reducer_event: Some(reducer_event),
                }));
            }
            ServerMessageWire::OneOffQueryResponse {
                request_id,
                error,
                tables,
            } => {
                let result: OneOffRows = match error {
                    Some(e) => Err(e.into_owned()),
                    None => Ok(tables
                        .iter()
                        .map(|t| {
                            let schema = self.tables.get(&t.table_name)?;
                            Ok((schema.name.clone(), self.rows(schema, &t.rows)?))
                        })
                        .collect::<Result<_, DecodeError>>()?),
                };
                out.push(ServerMessage::OneOffQueryResult { request_id, result });
            }
        }
        Ok(())
    }

    fn rows(&self, schema: &TableSchema, rows: &Rows<'_>) -> Result<Vec<Row>, DecodeError> {
        match rows {
            Rows::Packed(payload) => self.tables.rows(schema, payload),
            Rows::Json(raw) => Ok(rows_from_json(schema, raw.get())?),
        }
    }

    fn table(&self, t: &TableUpdateWire<'_>) -> Result<TableUpdate, DecodeError> {
        let schema = self.tables.get(&t.table_name)?;
        let inserts = self.rows(schema, &t.inserts)?;
        // v1 writes an event table's events as inserts (the server refuses v1 event
        // table subscriptions; this keeps the inverse whole).
        let rows = if schema.is_event {
            TableRows::Event { events: inserts }
        } else {
            TableRows::Persistent {
                inserts,
                deletes: self.rows(schema, &t.deletes)?,
            }
        };
        // The schema's own name: cache and callbacks key tables by the shared `Arc`.
        Ok(TableUpdate::new(schema.name.clone(), rows))
    }

    fn tables(&self, update: DatabaseUpdate<'_>) -> Result<Vec<TableUpdate>, DecodeError> {
        update.tables.iter().map(|t| self.table(t)).collect()
    }

    /// The server writes each query set's tables in turn, each tagged with its set: runs
    /// of one id are one set.
    fn query_sets(&self, update: DatabaseUpdate<'_>) -> Result<Vec<QuerySetUpdate>, DecodeError> {
        let mut sets: Vec<QuerySetUpdate> = Vec::new();
        for t in &update.tables {
            let table = self.table(t)?;
            match sets.last_mut() {
                Some(last) if last.query_set_id == t.query_id => last.tables.push(table),
                _ => sets.push(QuerySetUpdate {
                    query_set_id: t.query_id,
                    tables: vec![table],
                }),
            }
        }
        Ok(sets)
    }

    fn reducer_event(
        &self,
        status: UpdateStatus<'_>,
        caller: &[u8],
        call: ReducerCallInfo<'_>,
    ) -> Result<ReducerEvent, DecodeError> {
        // Other clients see the call emptied: no name.
        let own = !call.reducer_name.is_empty();
        let status = match status {
            UpdateStatus::Committed(Packed(value)) => {
                let mut value = value.into_owned();
                if own && value.is_empty() && self.encoding == Encoding::Json {
                    value.push(NIL);
                }
                ReducerStatus::Committed(value)
            }
            UpdateStatus::Failed(e) => ReducerStatus::Failed(e.into_owned()),
            UpdateStatus::InternalError(e) => ReducerStatus::InternalError(e.into_owned()),
        };
        Ok(ReducerEvent {
            request_id: call.request_id,
            reducer: call.reducer_name.into_owned(),
            args: call.args.0.into_owned(),
            caller: identity(caller)?,
            status,
        })
    }
}

#[cfg(test)]
#[path = "v1_tests.rs"]
mod tests;
