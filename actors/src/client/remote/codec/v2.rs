//! `v2.msgpack.tidings`: requests to binary frames, frames to [`ServerMessage`]s. v2 keeps
//! no state per socket: every answer names its request and its query set.

use std::sync::Arc;

use tidings_engine::Timestamp;

use super::{Codec, DecodeError, Decoder, OutFrame, SendError, Tables, identity, kind};
use crate::messages::{
    ClientMessage, ConnectionId, OneOffRows, QuerySetUpdate, ReducerOutcome, ServerMessage,
    TableRows, TableUpdate, TransactionUpdate,
};
use crate::wire::v2::{
    self, ClientMessageWire, OutcomeWire, RowsWire, ServerMessageWire, TableRowsWire,
    TransactionUpdateWire, WireError,
};

/// `v2.msgpack.tidings`; stateless, so it is its own decoder.
#[derive(Clone)]
pub(super) struct V2Codec {
    tables: Arc<Tables>,
}

impl V2Codec {
    pub(super) fn new(tables: Arc<Tables>) -> Self {
        V2Codec { tables }
    }
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

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(self.clone())
    }
}

impl Decoder for V2Codec {
    fn decode_binary(
        &mut self,
        frame: &[u8],
        out: &mut Vec<ServerMessage>,
    ) -> Result<(), DecodeError> {
        let body = v2::unframe(frame)?;
        let wire: ServerMessageWire<'_> =
            rmp_serde::from_slice(&body).map_err(|source| WireError::Decode {
                what: "v2 server message",
                source,
            })?;
        out.push(self.message(wire)?);
        Ok(())
    }

    fn decode_text(&mut self, _: &str, _: &mut Vec<ServerMessage>) -> Result<(), DecodeError> {
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
                inserts: self.tables.rows(schema, &inserts.0)?,
                deletes: self.tables.rows(schema, &deletes.0)?,
            },
            RowsWire::Event { events } => TableRows::Event {
                events: self.tables.rows(schema, &events.0)?,
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
                identity: id,
                connection_id,
                token,
            } => ServerMessage::InitialConnection {
                identity: identity(&id)?,
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
    use super::super::{WireProtocol, codec_for};
    use super::*;
    use tidings_engine::{AlgebraicType as T, Schema, TableSchema, row};

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
        codec_for(WireProtocol::V2MsgPack, &schema())
    }

    fn decode(frame: &[u8]) -> Result<ServerMessage, DecodeError> {
        let mut out = Vec::new();
        codec().decoder().decode_binary(frame, &mut out)?;
        assert_eq!(out.len(), 1, "one message per v2 frame");
        Ok(out.remove(0))
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
                let back = decode(&bytes).expect("decodes");
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
            decode(&bytes),
            Err(DecodeError::UnknownTable { table }) if table == "nope"
        ));
        assert!(matches!(
            codec().decoder().decode_text("{}", &mut Vec::new()),
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
