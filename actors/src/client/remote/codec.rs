//! Wire protocols of the remote client: client messages to frames, frames to the same
//! [`ServerMessage`] values an in-process connection receives.
//!
//! Each protocol is one `Codec`; `codec_for` picks it by [`WireProtocol`]. A frame is
//! decoded on the socket's thread, row lists included (into [`Row`]s with the
//! application's table schemas), so the connection's processing code and cache never see
//! wire types. A v1 codec plugs in as one more `Codec` and one more arm in `codec_for`.

use std::sync::Arc;

use hashbrown::HashMap;
use thiserror::Error;
use tidings_engine::{Identity, Row, Schema, TableSchema, Timestamp};

use crate::messages::{
    ClientMessage, ConnectionId, OneOffRows, Protocol, QuerySetUpdate, ReducerOutcome,
    ServerMessage, TableRows, TableUpdate, TransactionUpdate,
};
use crate::wire::rowlist::{self, RowListError};
use crate::wire::v2::{
    self, ClientMessageWire, OutcomeWire, RowList, RowsWire, ServerMessageWire, TableRowsWire,
    TransactionUpdateWire, WireError,
};

/// A protocol a remote connection speaks: its version and its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WireProtocol {
    /// `v2.msgpack.tidings` (the default).
    #[default]
    V2MsgPack,
    /// `v1.msgpack.tidings` (legacy).
    V1MsgPack,
    /// `v1.json.tidings` (legacy, text frames).
    V1Json,
}

impl WireProtocol {
    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            WireProtocol::V2MsgPack => v2::SUBPROTOCOL,
            WireProtocol::V1MsgPack => "v1.msgpack.tidings",
            WireProtocol::V1Json => "v1.json.tidings",
        }
    }

    /// The protocol version it carries.
    pub fn version(self) -> Protocol {
        match self {
            WireProtocol::V2MsgPack => Protocol::V2,
            WireProtocol::V1MsgPack | WireProtocol::V1Json => Protocol::V1,
        }
    }
}

/// A version's default encoding: MessagePack.
impl From<Protocol> for WireProtocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::V2 => WireProtocol::V2MsgPack,
            Protocol::V1 => WireProtocol::V1MsgPack,
        }
    }
}

/// A request that cannot be sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The socket is gone (disconnected, or the server closed it).
    #[error("the WebSocket connection is closed; call `reconnect()` to send again")]
    Closed,
    /// The request has no form in the connection's protocol.
    #[error("`{message}` has no form in {protocol}")]
    NotInProtocol {
        /// The request's kind.
        message: &'static str,
        /// The connection's subprotocol.
        protocol: &'static str,
    },
}

/// A server frame the client cannot turn into a message.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The envelope does not decode.
    #[error("the message does not decode")]
    Wire(#[from] WireError),
    /// Rows of a table the application's schema does not have.
    #[error("rows of table `{table}`, which the client's schema does not have")]
    UnknownTable {
        /// The table the server named.
        table: String,
    },
    /// A row list that does not fit its table's schema.
    #[error("a row list does not decode")]
    Rows(#[from] RowListError),
    /// An identity that is not 32 bytes.
    #[error("an identity is 32 bytes, this one {0}")]
    Identity(usize),
    /// A frame kind the protocol does not use.
    #[error("{kind} frames are not part of {protocol}")]
    FrameKind {
        /// `text` or `binary`.
        kind: &'static str,
        /// The connection's subprotocol.
        protocol: &'static str,
    },
}

/// An encoded request, ready for the socket.
#[derive(Debug)]
pub(crate) enum OutFrame {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message (JSON protocols).
    // Only `v1.json.tidings` sends text, and its codec is not in this client yet.
    #[allow(dead_code)]
    Text(String),
}

/// One wire protocol's encoder and decoder.
pub(crate) trait Codec: Send + Sync {
    /// Encodes a request (on the application's thread, so errors are the caller's).
    fn encode(&self, message: ClientMessage) -> Result<OutFrame, SendError>;
    /// Decodes a binary frame (on the socket's thread).
    fn decode_binary(&self, frame: &[u8]) -> Result<ServerMessage, DecodeError>;
    /// Decodes a text frame (on the socket's thread).
    fn decode_text(&self, frame: &str) -> Result<ServerMessage, DecodeError>;
}

/// The codec of `protocol`, or `None` when this client does not implement it yet.
pub(crate) fn codec_for(protocol: WireProtocol, schema: &Schema) -> Option<Arc<dyn Codec>> {
    let tables = Tables::new(schema);
    match protocol {
        WireProtocol::V2MsgPack => Some(Arc::new(V2Codec { tables })),
        WireProtocol::V1MsgPack | WireProtocol::V1Json => None,
    }
}

/// The name of a request's kind, for errors.
pub(crate) fn kind(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Subscribe { .. } => "Subscribe",
        ClientMessage::Unsubscribe { .. } => "Unsubscribe",
        ClientMessage::CallReducer { .. } => "CallReducer",
        ClientMessage::V1CallReducer { .. } => "v1 CallReducer",
        ClientMessage::OneOffQuery { .. } => "OneOffQuery",
        ClientMessage::V1Subscribe { .. } => "v1 Subscribe",
        ClientMessage::V1SubscribeSingle { .. } => "v1 SubscribeSingle",
        ClientMessage::V1SubscribeMulti { .. } => "v1 SubscribeMulti",
        ClientMessage::V1Unsubscribe { .. } => "v1 Unsubscribe",
    }
}

/// The application's table schemas by name: what row lists decode against.
pub(crate) struct Tables(HashMap<Arc<str>, Arc<TableSchema>>);

impl Tables {
    pub(crate) fn new(schema: &Schema) -> Self {
        Tables(
            schema
                .tables()
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
        )
    }

    pub(crate) fn get(&self, table: &str) -> Result<&Arc<TableSchema>, DecodeError> {
        self.0.get(table).ok_or_else(|| DecodeError::UnknownTable {
            table: table.to_string(),
        })
    }

    /// Decodes one [`RowList`] of `schema`'s rows.
    pub(crate) fn rows(
        &self,
        schema: &TableSchema,
        list: &RowList<'_>,
    ) -> Result<Vec<Row>, DecodeError> {
        let body = v2::row_list_body(&list.0)?;
        Ok(rowlist::decode_rows(schema, &body)?)
    }
}

/// `v2.msgpack.tidings`.
struct V2Codec {
    tables: Tables,
}

impl Codec for V2Codec {
    fn encode(&self, message: ClientMessage) -> Result<OutFrame, SendError> {
        let wire = match message {
            ClientMessage::Subscribe {
                request_id,
                query_set_id,
                queries,
            } => ClientMessageWire::Subscribe {
                request_id,
                query_set_id,
                queries,
            },
            ClientMessage::Unsubscribe {
                request_id,
                query_set_id,
                send_dropped_rows,
            } => ClientMessageWire::Unsubscribe {
                request_id,
                query_set_id,
                send_dropped_rows,
            },
            ClientMessage::CallReducer {
                request_id,
                reducer,
                args,
            } => ClientMessageWire::CallReducer {
                request_id,
                reducer,
                args,
            },
            ClientMessage::OneOffQuery { request_id, query } => {
                ClientMessageWire::OneOffQuery { request_id, query }
            }
            other @ (ClientMessage::V1Subscribe { .. }
            | ClientMessage::V1CallReducer { .. }
            | ClientMessage::V1SubscribeSingle { .. }
            | ClientMessage::V1SubscribeMulti { .. }
            | ClientMessage::V1Unsubscribe { .. }) => {
                return Err(SendError::NotInProtocol {
                    message: kind(&other),
                    protocol: v2::SUBPROTOCOL,
                });
            }
        };
        Ok(OutFrame::Binary(v2::encode_client(&wire)))
    }

    fn decode_binary(&self, frame: &[u8]) -> Result<ServerMessage, DecodeError> {
        let body = v2::unframe(frame)?;
        let wire: ServerMessageWire<'_> =
            rmp_serde::from_slice(&body).map_err(|source| WireError::Decode {
                what: "v2 server message",
                source,
            })?;
        self.message(wire)
    }

    fn decode_text(&self, _: &str) -> Result<ServerMessage, DecodeError> {
        Err(DecodeError::FrameKind {
            kind: "text",
            protocol: v2::SUBPROTOCOL,
        })
    }
}

impl V2Codec {
    fn table(&self, t: TableRowsWire<'_>) -> Result<TableUpdate, DecodeError> {
        let schema = self.tables.get(&t.table)?;
        let rows = match &t.rows {
            RowsWire::Persistent { inserts, deletes } => TableRows::Persistent {
                inserts: self.tables.rows(schema, inserts)?,
                deletes: self.tables.rows(schema, deletes)?,
            },
            RowsWire::Event { events } => TableRows::Event {
                events: self.tables.rows(schema, events)?,
            },
        };
        // The schema's own name: cache and callbacks key tables by the shared `Arc`.
        Ok(TableUpdate::new(schema.name.clone(), rows))
    }

    fn tables(&self, t: Vec<TableRowsWire<'_>>) -> Result<Vec<TableUpdate>, DecodeError> {
        t.into_iter().map(|t| self.table(t)).collect()
    }

    fn update(&self, u: TransactionUpdateWire<'_>) -> Result<TransactionUpdate, DecodeError> {
        Ok(TransactionUpdate {
            tx_offset: u.tx_offset,
            timestamp: Timestamp(u.timestamp),
            query_sets: u
                .query_sets
                .into_iter()
                .map(|q| {
                    Ok(QuerySetUpdate {
                        query_set_id: q.query_set_id,
                        tables: self.tables(q.tables)?,
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
            reducer_event: None,
        })
    }

    fn message(&self, wire: ServerMessageWire<'_>) -> Result<ServerMessage, DecodeError> {
        Ok(match wire {
            ServerMessageWire::InitialConnection {
                identity,
                connection_id,
                token,
            } => ServerMessage::InitialConnection {
                identity: Identity(
                    identity[..]
                        .try_into()
                        .map_err(|_| DecodeError::Identity(identity.len()))?,
                ),
                connection_id: ConnectionId(connection_id),
                token: token.map(|t| t.into_owned()),
            },
            ServerMessageWire::SubscribeApplied {
                request_id,
                query_set_id,
                tx_offset,
                tables,
            } => ServerMessage::SubscribeApplied {
                request_id,
                query_set_id,
                tx_offset,
                tables: self.tables(tables)?,
            },
            ServerMessageWire::UnsubscribeApplied {
                request_id,
                query_set_id,
                tx_offset,
                tables,
            } => ServerMessage::UnsubscribeApplied {
                request_id,
                query_set_id,
                tx_offset,
                tables: tables.map(|t| self.tables(t)).transpose()?,
            },
            ServerMessageWire::SubscriptionError {
                request_id,
                query_set_id,
                error,
            } => ServerMessage::SubscriptionError {
                request_id,
                query_set_id,
                error: error.into_owned(),
            },
            ServerMessageWire::TransactionUpdate(u) => {
                ServerMessage::TransactionUpdate(self.update(u)?)
            }
            ServerMessageWire::OneOffQueryResult {
                request_id,
                tables,
                error,
            } => {
                let result: OneOffRows = match (tables, error) {
                    (_, Some(e)) => Err(e.into_owned()),
                    (Some(tables), None) => Ok(tables
                        .into_iter()
                        .map(|t| {
                            let u = self.table(t)?;
                            let rows = match Arc::unwrap_or_clone(u.rows) {
                                TableRows::Persistent { inserts, .. } => inserts,
                                TableRows::Event { events } => events,
                            };
                            Ok((u.table, rows))
                        })
                        .collect::<Result<_, DecodeError>>()?),
                    (None, None) => Ok(Vec::new()),
                };
                ServerMessage::OneOffQueryResult { request_id, result }
            }
            ServerMessageWire::ReducerResult {
                request_id,
                tx_offset,
                timestamp,
                outcome,
            } => ServerMessage::ReducerResult {
                request_id,
                tx_offset,
                timestamp: Timestamp(timestamp),
                outcome: match outcome {
                    OutcomeWire::Ok { value, update } => ReducerOutcome::Ok {
                        value: value.into_owned(),
                        update: self.update(update)?,
                    },
                    OutcomeWire::Err(e) => ReducerOutcome::Err(e.into_owned()),
                    OutcomeWire::InternalError(e) => ReducerOutcome::InternalError(e.into_owned()),
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_engine::{AlgebraicType as T, row};

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

    fn codec() -> Arc<dyn Codec> {
        codec_for(WireProtocol::V2MsgPack, &schema()).expect("v2 is implemented")
    }

    #[test]
    fn server_encodings_decode_to_the_same_values() {
        let update = TransactionUpdate {
            tx_offset: 12,
            timestamp: Timestamp(99),
            query_sets: vec![QuerySetUpdate {
                query_set_id: 3,
                tables: vec![
                    TableUpdate::new(
                        "t".into(),
                        TableRows::Persistent {
                            inserts: (0..300u64).map(|i| row![i, format!("r{i}")]).collect(),
                            deletes: vec![row![7u64, "old"]],
                        },
                    ),
                    TableUpdate::new(
                        "e".into(),
                        TableRows::Event {
                            events: vec![row![1u32], row![2u32]],
                        },
                    ),
                ],
            }],
            reducer_event: None,
        };
        let messages = [
            ServerMessage::TransactionUpdate(update.clone()),
            ServerMessage::ReducerResult {
                request_id: 5,
                tx_offset: Some(12),
                timestamp: Timestamp(99),
                outcome: ReducerOutcome::Ok {
                    value: vec![0xc0],
                    update: update.clone(),
                },
            },
            ServerMessage::SubscriptionError {
                request_id: Some(2),
                query_set_id: Some(3),
                error: "no".into(),
            },
        ];
        for compression in [v2::Compression::None, v2::Compression::Gzip] {
            for m in &messages {
                let bytes = v2::encode_server(m, compression).expect("encodes");
                let back = codec().decode_binary(&bytes).expect("decodes");
                // Same value: it encodes to the same bytes (rows included).
                assert_eq!(
                    v2::encode_server(&back, compression).expect("encodes"),
                    bytes,
                    "{compression:?}: {m:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_tables_and_text_frames_are_typed_errors() {
        let other = ServerMessage::TransactionUpdate(TransactionUpdate {
            tx_offset: 1,
            timestamp: Timestamp(1),
            query_sets: vec![QuerySetUpdate {
                query_set_id: 1,
                tables: vec![TableUpdate::new(
                    "nope".into(),
                    TableRows::Event { events: vec![] },
                )],
            }],
            reducer_event: None,
        });
        let bytes = v2::encode_server(&other, v2::Compression::None).expect("encodes");
        assert!(matches!(
            codec().decode_binary(&bytes),
            Err(DecodeError::UnknownTable { table }) if table == "nope"
        ));
        assert!(matches!(
            codec().decode_text("{}"),
            Err(DecodeError::FrameKind { kind: "text", .. })
        ));
        assert!(matches!(
            codec().encode(ClientMessage::V1Unsubscribe {
                request_id: 1,
                query_id: 1
            }),
            Err(SendError::NotInProtocol { .. })
        ));
    }
}
