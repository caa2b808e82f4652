//! Protocol v1 (legacy) in MessagePack (`v1.msgpack.tidings`) and JSON (`v1.json.tidings`).
//!
//! One message catalogue, two encodings. MessagePack messages travel in binary frames
//! that start with the same compression tag byte as v2 ([`super::v2::TAG_NONE`]); JSON
//! messages travel in text frames, without a tag. In both, messages are maps with the
//! field names below and enums are externally tagged (`{"Subscribe": {...}}`). The few
//! fields whose form differs between the encodings use the types [`Bytes`], [`Packed`]
//! and [`Rows`], which serialize by the format's `is_human_readable`:
//!
//! | type | MessagePack | JSON |
//! | --- | --- | --- |
//! | [`Bytes`] (identities) | `bin` | lowercase hex string |
//! | [`Packed`] (reducer args, return values) | `bin` holding MessagePack | the value itself, `null` when empty |
//! | [`Rows`] (row lists) | a v2 row list `bin` (tag byte, rows) | array of row arrays ([`super::json`]) |
//!
//! Row lists are the per-commit shared encodings of [`crate::messages::WireCache`]: the
//! MessagePack bytes are the very bytes v2 sends, the JSON text is rendered once per
//! query per commit too; a session only wraps them.
//!
//! v1 differs from v2 in what it means, not only in names (`docs/protocol.md`): `Subscribe`
//! atomically replaces the legacy set (query id [`LEGACY_QUERY_ID`] in row updates),
//! a reducer's caller gets a `TransactionUpdate` with its reducer call while other
//! clients get theirs with the name, arguments and caller emptied, and event tables
//! cannot be subscribed to. [`SessionCodec`] maps the server's messages to this catalogue
//! for one session.

mod codec;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

pub use super::Frame;
pub use codec::{SessionCodec, decode_client};

use crate::messages::V1_LEGACY_QUERY_SET;
use crate::wire::json::{bytes_from_hex, hex, json_to_msgpack, msgpack_to_json};
use crate::wire::v2;

/// The MessagePack subprotocol name.
pub const SUBPROTOCOL_MSGPACK: &str = "v1.msgpack.tidings";
/// The JSON subprotocol name.
pub const SUBPROTOCOL_JSON: &str = "v1.json.tidings";

/// The query id under which the legacy `Subscribe`'s rows travel; clients choose ids
/// below it for `SubscribeSingle` and `SubscribeMulti`.
pub const LEGACY_QUERY_ID: u32 = V1_LEGACY_QUERY_SET;

/// How v1 messages are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Binary frames: compression tag byte, then MessagePack.
    MessagePack,
    /// Text frames: JSON.
    Json,
}

impl Encoding {
    /// The subprotocol that selects this encoding.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::MessagePack => SUBPROTOCOL_MSGPACK,
            Encoding::Json => SUBPROTOCOL_JSON,
        }
    }
}

/// A v1 message that does not decode.
#[derive(Debug, Error)]
pub enum WireError {
    /// Bad compression tag, bad gzip or bad MessagePack.
    #[error(transparent)]
    MessagePack(#[from] v2::WireError),
    /// JSON that is not a valid message.
    #[error("not a valid {what}: {source}")]
    Json {
        /// What was expected.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: serde_json::Error,
    },
    /// A client-chosen query id that collides with the legacy set's.
    #[error("query_id {0} is reserved for the legacy Subscribe; choose a smaller id")]
    ReservedQueryId(u32),
    /// Unknown `CallReducer` flags.
    #[error("unknown CallReducer flags {0} (0 = full update, 1 = no success notify)")]
    Flags(u8),
}

/// Bytes: a MessagePack `bin`, or a lowercase hex string in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bytes<'a>(pub Cow<'a, [u8]>);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Bytes<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let b = bytes_from_hex(&s)
                .ok_or_else(|| D::Error::custom(format!("{s:?} is not a hex string")))?;
            Ok(Bytes(Cow::Owned(b)))
        } else {
            Ok(Bytes(Cow::Owned(
                serde_bytes::ByteBuf::deserialize(d)?.into_vec(),
            )))
        }
    }
}

/// A MessagePack-encoded value (reducer arguments, a return value): a `bin` holding it,
/// or in JSON the value itself (`null` for no bytes; `bin` inside shows as hex).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Packed<'a>(pub Cow<'a, [u8]>);

impl Serialize for Packed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            msgpack_to_json(&self.0).serialize(s)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Packed<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let j = serde_json::Value::deserialize(d)?;
            let b = json_to_msgpack(&j).map_err(|e| {
                D::Error::custom(format!("value does not convert to MessagePack: {e}"))
            })?;
            Ok(Packed(Cow::Owned(b)))
        } else {
            Ok(Packed(Cow::Owned(
                serde_bytes::ByteBuf::deserialize(d)?.into_vec(),
            )))
        }
    }
}

/// A row list: the shared v2 row-list bytes in MessagePack, the shared JSON rendering in
/// JSON. Decoding yields whichever the format carries.
#[derive(Clone, Debug)]
pub enum Rows<'a> {
    /// A MessagePack row list payload (compression tag, then the rows or their gzip).
    Packed(Cow<'a, [u8]>),
    /// A JSON array of row arrays.
    Json(Cow<'a, RawValue>),
}

impl PartialEq for Rows<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Rows::Packed(a), Rows::Packed(b)) => a == b,
            (Rows::Json(a), Rows::Json(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rows::Packed(b) => s.serialize_bytes(b),
            Rows::Json(raw) => raw.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Rows<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Ok(Rows::Json(Cow::Owned(Box::<RawValue>::deserialize(d)?)))
        } else {
            Ok(Rows::Packed(Cow::Owned(
                serde_bytes::ByteBuf::deserialize(d)?.into_vec(),
            )))
        }
    }
}

/// One query's rows of one table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TableUpdateWire<'a> {
    /// The query id the rows belong to ([`LEGACY_QUERY_ID`] for the legacy `Subscribe`).
    pub query_id: u32,
    /// The table.
    pub table_name: Cow<'a, str>,
    /// Rows in `inserts` and `deletes` together.
    pub num_rows: u64,
    /// Rows entering.
    pub inserts: Rows<'a>,
    /// Rows leaving.
    pub deletes: Rows<'a>,
}

/// Rows per query and table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DatabaseUpdate<'a> {
    /// One entry per query and table that changed.
    pub tables: Vec<TableUpdateWire<'a>>,
}

/// What a reducer did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum UpdateStatus<'a> {
    /// Committed; the return value (the caller only; empty for others).
    Committed(Packed<'a>),
    /// The reducer returned an error; nothing changed.
    Failed(Cow<'a, str>),
    /// The reducer panicked, the call was malformed, or the engine failed.
    InternalError(Cow<'a, str>),
}

/// The call behind a transaction (emptied for other clients).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReducerCallInfo<'a> {
    /// Reducer name.
    pub reducer_name: Cow<'a, str>,
    /// Its arguments.
    pub args: Packed<'a>,
    /// The caller's request id.
    pub request_id: u32,
}

/// One table of a one-off query's answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OneOffTable<'a> {
    /// The table.
    pub table_name: Cow<'a, str>,
    /// Its rows.
    pub rows: Rows<'a>,
}

/// Messages from the server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ServerMessageWire<'a> {
    /// First message of a connection.
    IdentityToken {
        /// 32-byte identity.
        identity: Bytes<'a>,
        /// Token restoring the identity on reconnect.
        token: Option<Cow<'a, str>>,
        /// Connection id.
        connection_id: u64,
    },
    /// Answers `Subscribe`: the legacy set now holds exactly these rows (any rows received
    /// earlier under [`LEGACY_QUERY_ID`] are gone).
    InitialSubscription {
        /// Echoed.
        request_id: u32,
        /// Snapshot offset: updates follow for every later commit.
        tx_offset: u64,
        /// The rows.
        database_update: DatabaseUpdate<'a>,
    },
    /// Answers `SubscribeSingle`.
    SubscribeApplied {
        /// Echoed.
        request_id: u32,
        /// Echoed.
        query_id: u32,
        /// Snapshot offset.
        tx_offset: u64,
        /// The rows.
        database_update: DatabaseUpdate<'a>,
    },
    /// Answers `SubscribeMulti`.
    SubscribeMultiApplied {
        /// Echoed.
        request_id: u32,
        /// Echoed.
        query_id: u32,
        /// Snapshot offset.
        tx_offset: u64,
        /// The rows.
        database_update: DatabaseUpdate<'a>,
    },
    /// Answers `Unsubscribe`: drop the rows received under `query_id`.
    UnsubscribeApplied {
        /// Echoed.
        request_id: u32,
        /// Echoed.
        query_id: u32,
        /// The offset it ended at.
        tx_offset: u64,
    },
    /// Answers `UnsubscribeMulti`: drop the rows received under `query_id`.
    UnsubscribeMultiApplied {
        /// Echoed.
        request_id: u32,
        /// Echoed.
        query_id: u32,
        /// The offset it ended at.
        tx_offset: u64,
    },
    /// A request failed (with `request_id`: nothing changed) or the server ended a set.
    SubscriptionError {
        /// The request, if any.
        request_id: Option<u32>,
        /// The query id, if any.
        query_id: Option<u32>,
        /// What went wrong.
        error: Cow<'a, str>,
    },
    /// A commit's changes, or the caller's failed call.
    TransactionUpdate {
        /// What the reducer did.
        status: UpdateStatus<'a>,
        /// Commit time, µs since epoch.
        timestamp: i64,
        /// The caller (all zero for other clients).
        caller_identity: Bytes<'a>,
        /// The call (emptied for other clients).
        reducer_call: ReducerCallInfo<'a>,
        /// Commit offset (0 when nothing was committed).
        tx_offset: u64,
        /// Rows per query and table.
        database_update: DatabaseUpdate<'a>,
    },
    /// Answers `OneOffQuery`.
    OneOffQueryResponse {
        /// Echoed.
        request_id: u32,
        /// Why it failed, if it did.
        error: Option<Cow<'a, str>>,
        /// Rows per table (empty on error).
        tables: Vec<OneOffTable<'a>>,
    },
}

/// Messages from the client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ClientMessageWire {
    /// Atomically replaces the legacy set with `queries`.
    Subscribe {
        /// Echoed.
        request_id: u32,
        /// Queries.
        queries: Vec<String>,
    },
    /// Adds one query under `query_id`.
    SubscribeSingle {
        /// Echoed.
        request_id: u32,
        /// Client-chosen, below [`LEGACY_QUERY_ID`].
        query_id: u32,
        /// The query.
        query: String,
    },
    /// Adds several queries atomically under `query_id`.
    SubscribeMulti {
        /// Echoed.
        request_id: u32,
        /// Client-chosen, below [`LEGACY_QUERY_ID`].
        query_id: u32,
        /// The queries.
        queries: Vec<String>,
    },
    /// Removes what `SubscribeSingle` added.
    Unsubscribe {
        /// Echoed.
        request_id: u32,
        /// The id.
        query_id: u32,
    },
    /// Removes what `SubscribeMulti` added.
    UnsubscribeMulti {
        /// Echoed.
        request_id: u32,
        /// The id.
        query_id: u32,
    },
    /// Runs a reducer.
    CallReducer {
        /// Echoed in the caller's `reducer_call`.
        request_id: u32,
        /// Reducer name.
        reducer: String,
        /// Positional arguments: a MessagePack array (`bin`), or a JSON array.
        args: Packed<'static>,
        /// 0 = full update, 1 = no success notify.
        flags: u8,
    },
    /// Runs a query once.
    OneOffQuery {
        /// Echoed.
        request_id: u32,
        /// The SELECT.
        query: String,
    },
}

/// Writes `msg` in `encoding`.
fn frame<T: Serialize>(msg: &T, encoding: Encoding) -> Option<Frame> {
    match encoding {
        Encoding::MessagePack => {
            let mut out = vec![v2::TAG_NONE];
            rmp_serde::encode::write_named(&mut out, msg).ok()?;
            Some(Frame::Binary(out))
        }
        Encoding::Json => serde_json::to_string(msg).ok().map(Frame::Text),
    }
}

fn unframe<T: for<'de> Deserialize<'de>>(
    payload: &[u8],
    encoding: Encoding,
    what: &'static str,
) -> Result<T, WireError> {
    match encoding {
        Encoding::MessagePack => {
            let body = v2::unframe(payload)?;
            rmp_serde::from_slice(&body)
                .map_err(|source| v2::WireError::Decode { what, source }.into())
        }
        Encoding::Json => {
            serde_json::from_slice(payload).map_err(|source| WireError::Json { what, source })
        }
    }
}

/// Encodes a server message (its rows already in `encoding`'s form).
pub fn encode_server(msg: &ServerMessageWire<'_>, encoding: Encoding) -> Option<Frame> {
    frame(msg, encoding)
}

/// Decodes a server message (what a client receives).
pub fn decode_server(
    payload: &[u8],
    encoding: Encoding,
) -> Result<ServerMessageWire<'static>, WireError> {
    unframe(payload, encoding, "v1 server message")
}

/// Encodes a client message (what a client sends).
pub fn encode_client(msg: &ClientMessageWire, encoding: Encoding) -> Frame {
    // Plain owned data always serializes; an empty frame would be answered with an error.
    frame(msg, encoding).unwrap_or_else(|| match encoding {
        Encoding::MessagePack => Frame::Binary(Vec::new()),
        Encoding::Json => Frame::Text(String::new()),
    })
}

/// Decodes a client message in its wire form.
pub fn decode_client_wire(
    payload: &[u8],
    encoding: Encoding,
) -> Result<ClientMessageWire, WireError> {
    let wire: ClientMessageWire = unframe(payload, encoding, "v1 client message")?;
    match &wire {
        ClientMessageWire::SubscribeSingle { query_id, .. }
        | ClientMessageWire::SubscribeMulti { query_id, .. }
        | ClientMessageWire::Unsubscribe { query_id, .. }
        | ClientMessageWire::UnsubscribeMulti { query_id, .. }
            if *query_id == LEGACY_QUERY_ID =>
        {
            Err(WireError::ReservedQueryId(*query_id))
        }
        ClientMessageWire::CallReducer { flags, .. } if *flags > 1 => Err(WireError::Flags(*flags)),
        _ => Ok(wire),
    }
}
