//! Protocol v2 in MessagePack (`v2.msgpack.tidings`).
//!
//! Every binary WebSocket message starts with one *compression tag* byte, then a
//! MessagePack map-encoded message (struct fields by name, enums externally tagged:
//! `{"Subscribe": {...}}`). The tag is `0x00` (none) for every message the server sends
//! today; clients send `0x00`. Row lists are compressed individually instead (see
//! [`RowList`]): a query's rows are encoded, and compressed when large, once per commit
//! and shared by every client of that query, never once per client.

use std::borrow::Cow;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::messages::{
    ClientMessage, ReducerOutcome, ServerMessage, TableRows, TableUpdate, TransactionUpdate,
};
use crate::wire::rowlist;

/// The subprotocol name.
pub const SUBPROTOCOL: &str = "v2.msgpack.tidings";

/// Leading byte of a message: not compressed.
pub const TAG_NONE: u8 = 0x00;
/// Leading byte of a message: the rest is gzip-compressed MessagePack.
pub const TAG_GZIP: u8 = 0x01;

/// Row lists at least this large are gzip-compressed when the client asked for gzip.
/// Below it, gzip's header and CPU cost more than the bytes saved (measured by
/// `wire_sizes` in the tests: a 1-row list grows, a 100-row list shrinks ~3x).
pub const GZIP_THRESHOLD_BYTES: usize = 1024;

/// How a client wants row lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Never compressed.
    #[default]
    None,
    /// gzip above [`GZIP_THRESHOLD_BYTES`].
    Gzip,
}

/// A message that does not decode.
#[derive(Debug, Error)]
pub enum WireError {
    /// The frame is empty (no compression tag).
    #[error("empty message: a binary message starts with a compression tag byte")]
    Empty,
    /// An unknown compression tag.
    #[error("unknown compression tag 0x{0:02x} (0x00 none, 0x01 gzip)")]
    Tag(u8),
    /// gzip data that does not inflate.
    #[error("gzip payload does not inflate")]
    Gzip(#[source] std::io::Error),
    /// MessagePack that is not a valid message.
    #[error("not a valid {what}: {source}")]
    Decode {
        /// What was expected.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: rmp_serde::decode::Error,
    },
}

/// A row list on the wire: a MessagePack `bin` whose first byte says how the rest is
/// stored: `0x00` then the concatenated rows, or `0x01` then their gzip.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct RowList<'a>(#[serde(with = "serde_bytes", borrow)] pub Cow<'a, [u8]>);

/// One table's rows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TableRowsWire<'a> {
    /// Table name.
    pub table: Cow<'a, str>,
    /// The rows.
    #[serde(borrow)]
    pub rows: RowsWire<'a>,
}

/// Persistent changes or events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum RowsWire<'a> {
    /// A persistent table's rows.
    Persistent {
        /// Rows entering.
        #[serde(borrow)]
        inserts: RowList<'a>,
        /// Rows leaving.
        #[serde(borrow)]
        deletes: RowList<'a>,
    },
    /// An event table's rows.
    Event {
        /// The events.
        #[serde(borrow)]
        events: RowList<'a>,
    },
}

/// One query set's changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QuerySetWire<'a> {
    /// The set.
    pub query_set_id: u32,
    /// Its tables.
    #[serde(borrow)]
    pub tables: Vec<TableRowsWire<'a>>,
}

/// A commit's changes for one client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TransactionUpdateWire<'a> {
    /// Commit offset.
    pub tx_offset: u64,
    /// Commit time, µs since epoch.
    pub timestamp: i64,
    /// Per query set.
    #[serde(borrow)]
    pub query_sets: Vec<QuerySetWire<'a>>,
}

/// A reducer outcome.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum OutcomeWire<'a> {
    /// Committed: the MessagePack return value and the caller's update.
    Ok {
        /// Return value (MessagePack).
        #[serde(with = "serde_bytes", borrow)]
        value: Cow<'a, [u8]>,
        /// The caller's own update.
        #[serde(borrow)]
        update: TransactionUpdateWire<'a>,
    },
    /// The reducer's error.
    Err(Cow<'a, str>),
    /// A panic, a malformed call, or an engine failure.
    InternalError(Cow<'a, str>),
}

/// Messages from the server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ServerMessageWire<'a> {
    /// First message.
    InitialConnection {
        /// 32-byte identity.
        #[serde(with = "serde_bytes", borrow)]
        identity: Cow<'a, [u8]>,
        /// Connection id.
        connection_id: u64,
        /// Token restoring the identity on reconnect.
        token: Option<Cow<'a, str>>,
    },
    /// A query set's initial rows.
    SubscribeApplied {
        /// Echoed.
        request_id: u32,
        /// The set.
        query_set_id: u32,
        /// Snapshot offset.
        tx_offset: u64,
        /// Rows per query.
        #[serde(borrow)]
        tables: Vec<TableRowsWire<'a>>,
    },
    /// A query set ended.
    UnsubscribeApplied {
        /// Echoed.
        request_id: u32,
        /// The set.
        query_set_id: u32,
        /// Offset it ended at.
        tx_offset: u64,
        /// Its rows, when asked for.
        #[serde(borrow)]
        tables: Option<Vec<TableRowsWire<'a>>>,
    },
    /// A request failed, or the server ended a set.
    SubscriptionError {
        /// The request, if any.
        request_id: Option<u32>,
        /// The set, if any.
        query_set_id: Option<u32>,
        /// What went wrong.
        error: Cow<'a, str>,
    },
    /// A commit's changes.
    #[serde(borrow)]
    TransactionUpdate(TransactionUpdateWire<'a>),
    /// A one-off query's rows or error.
    OneOffQueryResult {
        /// Echoed.
        request_id: u32,
        /// Rows per table (persistent, as inserts), when it succeeded.
        #[serde(borrow)]
        tables: Option<Vec<TableRowsWire<'a>>>,
        /// The error, when it failed.
        error: Option<Cow<'a, str>>,
    },
    /// The caller's reducer result.
    ReducerResult {
        /// Echoed.
        request_id: u32,
        /// Commit offset, when something was committed.
        tx_offset: Option<u64>,
        /// When the reducer ran.
        timestamp: i64,
        /// What happened.
        #[serde(borrow)]
        outcome: OutcomeWire<'a>,
    },
}

/// Messages from the client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ClientMessageWire {
    /// Adds a query set.
    Subscribe {
        /// Echoed.
        request_id: u32,
        /// The new set's id.
        query_set_id: u32,
        /// Queries.
        queries: Vec<String>,
    },
    /// Ends a query set.
    Unsubscribe {
        /// Echoed.
        request_id: u32,
        /// The set.
        query_set_id: u32,
        /// Send its rows back.
        send_dropped_rows: bool,
    },
    /// Runs a reducer.
    CallReducer {
        /// Echoed.
        request_id: u32,
        /// Reducer name.
        reducer: String,
        /// Arguments: a MessagePack array, as bytes.
        #[serde(with = "serde_bytes")]
        args: Vec<u8>,
    },
    /// Runs a query once.
    OneOffQuery {
        /// Echoed.
        request_id: u32,
        /// The SELECT.
        query: String,
    },
}

/// Encodes rows as a [`RowList`] payload: tag byte, then the (maybe compressed) rows.
pub fn row_list_bytes(rows: &[tidings_engine::Row], compression: Compression) -> Vec<u8> {
    let mut body = Vec::with_capacity(rows.len() * 24 + 1);
    for r in rows {
        rowlist::write_row(&mut body, r);
    }
    if compression == Compression::Gzip && body.len() >= GZIP_THRESHOLD_BYTES {
        let mut enc = flate2::write::GzEncoder::new(vec![TAG_GZIP], flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        if enc.write_all(&body).is_ok()
            && let Ok(out) = enc.finish()
        {
            return out;
        }
    }
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(TAG_NONE);
    out.extend_from_slice(&body);
    out
}

/// The concatenated rows inside a [`RowList`] payload, inflated if needed.
pub fn row_list_body(payload: &[u8]) -> Result<Cow<'_, [u8]>, WireError> {
    match payload.split_first() {
        None => Err(WireError::Empty),
        Some((&TAG_NONE, rest)) => Ok(Cow::Borrowed(rest)),
        Some((&TAG_GZIP, rest)) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(rest)
                .read_to_end(&mut out)
                .map_err(WireError::Gzip)?;
            Ok(Cow::Owned(out))
        }
        Some((&t, _)) => Err(WireError::Tag(t)),
    }
}

fn table_wire<'a>(u: &'a TableUpdate, compression: Compression) -> TableRowsWire<'a> {
    let rows = match &*u.rows {
        TableRows::Persistent { .. } => {
            let (ins, del) = u.wire.persistent(&u.rows, compression);
            RowsWire::Persistent {
                inserts: RowList(Cow::Borrowed(ins)),
                deletes: RowList(Cow::Borrowed(del)),
            }
        }
        TableRows::Event { .. } => {
            let (ev, _) = u.wire.persistent(&u.rows, compression);
            RowsWire::Event {
                events: RowList(Cow::Borrowed(ev)),
            }
        }
    };
    TableRowsWire {
        table: Cow::Borrowed(&u.table),
        rows,
    }
}

fn update_wire(u: &TransactionUpdate, compression: Compression) -> TransactionUpdateWire<'_> {
    TransactionUpdateWire {
        tx_offset: u.tx_offset,
        timestamp: u.timestamp.0,
        query_sets: u
            .query_sets
            .iter()
            .map(|q| QuerySetWire {
                query_set_id: q.query_set_id,
                tables: q
                    .tables
                    .iter()
                    .map(|t| table_wire(t, compression))
                    .collect(),
            })
            .collect(),
    }
}

/// The wire form of `msg` (borrowing from it), or `None` for messages that become a
/// WebSocket close instead (`Disconnected`).
pub fn to_wire(msg: &ServerMessage, compression: Compression) -> Option<ServerMessageWire<'_>> {
    fn tables(t: &[TableUpdate], compression: Compression) -> Vec<TableRowsWire<'_>> {
        t.iter().map(|u| table_wire(u, compression)).collect()
    }
    Some(match msg {
        ServerMessage::InitialConnection {
            identity,
            connection_id,
            token,
        } => ServerMessageWire::InitialConnection {
            identity: Cow::Borrowed(&identity.0),
            connection_id: connection_id.0,
            token: token.as_deref().map(Cow::Borrowed),
        },
        ServerMessage::SubscribeApplied {
            request_id,
            query_set_id,
            tx_offset,
            tables: t,
        } => ServerMessageWire::SubscribeApplied {
            request_id: *request_id,
            query_set_id: *query_set_id,
            tx_offset: *tx_offset,
            tables: tables(t, compression),
        },
        ServerMessage::UnsubscribeApplied {
            request_id,
            query_set_id,
            tx_offset,
            tables: t,
        } => ServerMessageWire::UnsubscribeApplied {
            request_id: *request_id,
            query_set_id: *query_set_id,
            tx_offset: *tx_offset,
            tables: t.as_deref().map(|t| tables(t, compression)),
        },
        ServerMessage::SubscriptionError {
            request_id,
            query_set_id,
            error,
        } => ServerMessageWire::SubscriptionError {
            request_id: *request_id,
            query_set_id: *query_set_id,
            error: Cow::Borrowed(error),
        },
        ServerMessage::TransactionUpdate(u) => {
            ServerMessageWire::TransactionUpdate(update_wire(u, compression))
        }
        ServerMessage::OneOffQueryResult { request_id, result } => match result {
            Ok(rows) => ServerMessageWire::OneOffQueryResult {
                request_id: *request_id,
                tables: Some(
                    rows.iter()
                        .map(|(t, r)| TableRowsWire {
                            table: Cow::Borrowed(t),
                            rows: RowsWire::Persistent {
                                inserts: RowList(Cow::Owned(row_list_bytes(r, compression))),
                                deletes: RowList(Cow::Owned(vec![TAG_NONE])),
                            },
                        })
                        .collect(),
                ),
                error: None,
            },
            Err(e) => ServerMessageWire::OneOffQueryResult {
                request_id: *request_id,
                tables: None,
                error: Some(Cow::Borrowed(e)),
            },
        },
        ServerMessage::ReducerResult {
            request_id,
            tx_offset,
            timestamp,
            outcome,
        } => ServerMessageWire::ReducerResult {
            request_id: *request_id,
            tx_offset: *tx_offset,
            timestamp: timestamp.0,
            outcome: match outcome {
                ReducerOutcome::Ok { value, update } => OutcomeWire::Ok {
                    value: Cow::Borrowed(value),
                    update: update_wire(update, compression),
                },
                ReducerOutcome::Err(e) => OutcomeWire::Err(Cow::Borrowed(e)),
                ReducerOutcome::InternalError(e) => OutcomeWire::InternalError(Cow::Borrowed(e)),
            },
        },
        ServerMessage::Disconnected { .. } => return None,
    })
}

/// Encodes a server message as a binary WebSocket payload (tag byte + MessagePack).
pub fn encode_server(msg: &ServerMessage, compression: Compression) -> Option<Vec<u8>> {
    let wire = to_wire(msg, compression)?;
    let mut out = vec![TAG_NONE];
    // Serializing owned plain data into a Vec cannot fail.
    rmp_serde::encode::write_named(&mut out, &wire).ok()?;
    Some(out)
}

/// Strips and applies the compression tag of a binary payload.
pub fn unframe(frame: &[u8]) -> Result<Cow<'_, [u8]>, WireError> {
    row_list_body(frame)
}

/// Decodes a client's binary payload.
pub fn decode_client(frame: &[u8]) -> Result<ClientMessage, WireError> {
    let body = unframe(frame)?;
    let wire: ClientMessageWire =
        rmp_serde::from_slice(&body).map_err(|source| WireError::Decode {
            what: "v2 client message",
            source,
        })?;
    Ok(match wire {
        ClientMessageWire::Subscribe {
            request_id,
            query_set_id,
            queries,
        } => ClientMessage::Subscribe {
            request_id,
            query_set_id,
            queries,
        },
        ClientMessageWire::Unsubscribe {
            request_id,
            query_set_id,
            send_dropped_rows,
        } => ClientMessage::Unsubscribe {
            request_id,
            query_set_id,
            send_dropped_rows,
        },
        ClientMessageWire::CallReducer {
            request_id,
            reducer,
            args,
        } => ClientMessage::CallReducer {
            request_id,
            reducer,
            args,
        },
        ClientMessageWire::OneOffQuery { request_id, query } => {
            ClientMessage::OneOffQuery { request_id, query }
        }
    })
}

/// Encodes a client message (what a client sends).
pub fn encode_client(msg: &ClientMessageWire) -> Vec<u8> {
    let mut out = vec![TAG_NONE];
    // Serializing owned plain data into a Vec cannot fail.
    let _ = rmp_serde::encode::write_named(&mut out, msg);
    out
}

/// Decodes a server's binary payload (what a client receives).
pub fn decode_server(frame: &[u8]) -> Result<ServerMessageWire<'static>, WireError> {
    let body = unframe(frame)?;
    let wire: ServerMessageWire<'_> =
        rmp_serde::from_slice(&body).map_err(|source| WireError::Decode {
            what: "v2 server message",
            source,
        })?;
    Ok(into_owned(wire))
}

fn owned_rows(r: RowsWire<'_>) -> RowsWire<'static> {
    let own = |l: RowList<'_>| RowList(Cow::Owned(l.0.into_owned()));
    match r {
        RowsWire::Persistent { inserts, deletes } => RowsWire::Persistent {
            inserts: own(inserts),
            deletes: own(deletes),
        },
        RowsWire::Event { events } => RowsWire::Event {
            events: own(events),
        },
    }
}

fn owned_tables(t: Vec<TableRowsWire<'_>>) -> Vec<TableRowsWire<'static>> {
    t.into_iter()
        .map(|t| TableRowsWire {
            table: Cow::Owned(t.table.into_owned()),
            rows: owned_rows(t.rows),
        })
        .collect()
}

fn owned_update(u: TransactionUpdateWire<'_>) -> TransactionUpdateWire<'static> {
    TransactionUpdateWire {
        tx_offset: u.tx_offset,
        timestamp: u.timestamp,
        query_sets: u
            .query_sets
            .into_iter()
            .map(|q| QuerySetWire {
                query_set_id: q.query_set_id,
                tables: owned_tables(q.tables),
            })
            .collect(),
    }
}

fn into_owned(w: ServerMessageWire<'_>) -> ServerMessageWire<'static> {
    let s = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
    match w {
        ServerMessageWire::InitialConnection {
            identity,
            connection_id,
            token,
        } => ServerMessageWire::InitialConnection {
            identity: Cow::Owned(identity.into_owned()),
            connection_id,
            token: token.map(s),
        },
        ServerMessageWire::SubscribeApplied {
            request_id,
            query_set_id,
            tx_offset,
            tables,
        } => ServerMessageWire::SubscribeApplied {
            request_id,
            query_set_id,
            tx_offset,
            tables: owned_tables(tables),
        },
        ServerMessageWire::UnsubscribeApplied {
            request_id,
            query_set_id,
            tx_offset,
            tables,
        } => ServerMessageWire::UnsubscribeApplied {
            request_id,
            query_set_id,
            tx_offset,
            tables: tables.map(owned_tables),
        },
        ServerMessageWire::SubscriptionError {
            request_id,
            query_set_id,
            error,
        } => ServerMessageWire::SubscriptionError {
            request_id,
            query_set_id,
            error: s(error),
        },
        ServerMessageWire::TransactionUpdate(u) => {
            ServerMessageWire::TransactionUpdate(owned_update(u))
        }
        ServerMessageWire::OneOffQueryResult {
            request_id,
            tables,
            error,
        } => ServerMessageWire::OneOffQueryResult {
            request_id,
            tables: tables.map(owned_tables),
            error: error.map(s),
        },
        ServerMessageWire::ReducerResult {
            request_id,
            tx_offset,
            timestamp,
            outcome,
        } => ServerMessageWire::ReducerResult {
            request_id,
            tx_offset,
            timestamp,
            outcome: match outcome {
                OutcomeWire::Ok { value, update } => OutcomeWire::Ok {
                    value: Cow::Owned(value.into_owned()),
                    update: owned_update(update),
                },
                OutcomeWire::Err(e) => OutcomeWire::Err(s(e)),
                OutcomeWire::InternalError(e) => OutcomeWire::InternalError(s(e)),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::QuerySetUpdate;
    use std::sync::Arc;
    use tidings_engine::{AlgebraicType as T, Row, TableSchema, Timestamp, row};

    fn schema() -> TableSchema {
        TableSchema::builder("t")
            .column("id", T::U64)
            .column("s", T::String)
            .build()
            .expect("t")
    }

    fn rows(n: u64) -> Vec<Row> {
        (0..n).map(|i| row![i, format!("row number {i}")]).collect()
    }

    fn decode_list(l: &RowList<'_>) -> Vec<Row> {
        let body = row_list_body(&l.0).expect("body");
        let mut framed = Vec::new();
        let _ = rmp::encode::write_bin(&mut framed, &body);
        rowlist::decode(&schema(), &framed).expect("rows")
    }

    #[test]
    fn transaction_updates_round_trip_with_and_without_gzip() {
        for (compression, n) in [
            (Compression::None, 3),
            (Compression::Gzip, 3),
            (Compression::Gzip, 500),
        ] {
            let update = TableUpdate::new(
                "t".into(),
                TableRows::Persistent {
                    inserts: rows(n),
                    deletes: rows(1),
                },
            );
            let msg = ServerMessage::TransactionUpdate(TransactionUpdate {
                tx_offset: 9,
                timestamp: Timestamp(77),
                query_sets: vec![QuerySetUpdate {
                    query_set_id: 4,
                    tables: vec![update.clone()],
                }],
                reducer_event: None,
            });
            let bytes = encode_server(&msg, compression).expect("encodes");
            let ServerMessageWire::TransactionUpdate(u) = decode_server(&bytes).expect("decodes")
            else {
                panic!("kind");
            };
            assert_eq!(
                (u.tx_offset, u.timestamp, u.query_sets[0].query_set_id),
                (9, 77, 4)
            );
            let RowsWire::Persistent { inserts, deletes } = &u.query_sets[0].tables[0].rows else {
                panic!("persistent");
            };
            let gzipped = inserts.0.first() == Some(&TAG_GZIP);
            assert_eq!(
                gzipped,
                compression == Compression::Gzip && n == 500,
                "gzip only above the threshold"
            );
            assert_eq!(decode_list(inserts), rows(n));
            assert_eq!(decode_list(deletes), rows(1));
            // Encoded once: a second client's message reuses the same bytes.
            let first = Arc::as_ptr(&update.wire.persistent(&update.rows, compression).0);
            let again = Arc::as_ptr(&update.wire.persistent(&update.rows, compression).0);
            assert_eq!(first, again);
        }
    }

    #[test]
    fn wire_sizes() {
        // Gzip pays off only for larger lists: the reason for the threshold.
        let small = row_list_bytes(&rows(1), Compression::None).len();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&row_list_bytes(&rows(1), Compression::None))
            .expect("gzip");
        assert!(
            gz.finish().expect("gzip").len() > small,
            "gzip grows a 1-row list"
        );
        let big_plain = row_list_bytes(&rows(100), Compression::None).len();
        assert!(big_plain >= GZIP_THRESHOLD_BYTES);
        let big_gz = row_list_bytes(&rows(100), Compression::Gzip).len();
        assert!(
            big_gz * 2 < big_plain,
            "gzip shrinks a 100-row list: {big_gz} vs {big_plain}"
        );
    }

    #[test]
    fn client_messages_round_trip_and_garbage_is_an_error() {
        let m = ClientMessageWire::CallReducer {
            request_id: 5,
            reducer: "send".into(),
            args: rmp_serde::to_vec(&("hi",)).expect("args"),
        };
        let decoded = decode_client(&encode_client(&m)).expect("decodes");
        assert!(
            matches!(decoded, ClientMessage::CallReducer { request_id: 5, ref reducer, .. } if reducer == "send")
        );
        assert!(matches!(decode_client(&[]), Err(WireError::Empty)));
        assert!(matches!(decode_client(&[7, 1, 2]), Err(WireError::Tag(7))));
        assert!(matches!(
            decode_client(&[0, 0xc1]),
            Err(WireError::Decode { .. })
        ));
        assert!(matches!(decode_client(&[1, 0, 0]), Err(WireError::Gzip(_))));
    }
}
