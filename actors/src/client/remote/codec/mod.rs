//! Wire protocols of the remote client: client messages to frames, frames to the same
//! [`ServerMessage`] values an in-process connection receives.
//!
//! Each protocol is one `Codec` (`v2.rs`, `v1.rs`); `codec_for` picks it by
//! [`WireProtocol`]. A codec encodes requests on the application's threads and makes one
//! `Decoder` per socket, which decodes that socket's frames on its thread, row lists
//! included (into [`Row`]s with the application's table schemas), so the connection's
//! processing code and cache never see wire types. A decoder is per socket because v1
//! needs to know what the server holds for this session (see `v1.rs`), and a reconnect
//! starts a new session.

mod v1;
mod v2;

use std::sync::Arc;

use hashbrown::HashMap;
use thiserror::Error;
use tidings_engine::{Identity, Row, Schema, TableSchema};

use crate::messages::{ClientMessage, Protocol, ServerMessage};
use crate::wire::json::JsonRowsError;
use crate::wire::rowlist::{self, RowListError};
use crate::wire::{v1 as wire_v1, v2 as wire_v2};

/// A protocol a remote connection speaks: its version and its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WireProtocol {
    /// `v2.msgpack.tidings` (the default).
    #[default]
    V2MsgPack,
    /// `v1.msgpack.tidings` (legacy, binary frames).
    V1MsgPack,
    /// `v1.json.tidings` (legacy, text frames).
    V1Json,
}

impl WireProtocol {
    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            WireProtocol::V2MsgPack => wire_v2::SUBPROTOCOL,
            WireProtocol::V1MsgPack => wire_v1::SUBPROTOCOL_MSGPACK,
            WireProtocol::V1Json => wire_v1::SUBPROTOCOL_JSON,
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
    /// The v2 envelope does not decode.
    #[error("the message does not decode")]
    Wire(#[from] wire_v2::WireError),
    /// The v1 envelope does not decode.
    #[error("the v1 message does not decode")]
    V1(#[from] wire_v1::WireError),
    /// Rows of a table the application's schema does not have.
    #[error("rows of table `{table}`, which the client's schema does not have")]
    UnknownTable {
        /// The table the server named.
        table: String,
    },
    /// A row list that does not fit its table's schema.
    #[error("a row list does not decode")]
    Rows(#[from] RowListError),
    /// A v1 JSON row list that does not fit its table's schema.
    #[error("a JSON row list does not decode")]
    JsonRows(#[from] JsonRowsError),
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
    /// A text message (`v1.json.tidings`).
    Text(String),
}

/// One wire protocol's encoder, and the maker of its per-socket decoders.
pub(crate) trait Codec: Send + Sync {
    /// Encodes a request (on the application's thread, so errors are the caller's).
    fn encode(&self, message: ClientMessage) -> Result<OutFrame, SendError>;
    /// A decoder for a new socket's frames.
    fn decoder(&self) -> Box<dyn Decoder>;
}

/// Decodes one socket's frames, in order, on its thread. A frame yields one message,
/// except where a protocol folds two of the in-process messages into one frame.
pub(crate) trait Decoder: Send {
    /// Decodes a binary frame, appending its messages to `out`.
    fn decode_binary(
        &mut self,
        frame: &[u8],
        out: &mut Vec<ServerMessage>,
    ) -> Result<(), DecodeError>;
    /// Decodes a text frame, appending its messages to `out`.
    fn decode_text(&mut self, frame: &str, out: &mut Vec<ServerMessage>)
    -> Result<(), DecodeError>;
}

/// The codec of `protocol`, decoding rows with `schema`'s tables.
pub(crate) fn codec_for(protocol: WireProtocol, schema: &Schema) -> Arc<dyn Codec> {
    let tables = Arc::new(Tables::new(schema));
    match protocol {
        WireProtocol::V2MsgPack => Arc::new(v2::V2Codec::new(tables)),
        WireProtocol::V1MsgPack => {
            Arc::new(v1::V1Codec::new(tables, wire_v1::Encoding::MessagePack))
        }
        WireProtocol::V1Json => Arc::new(v1::V1Codec::new(tables, wire_v1::Encoding::Json)),
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

/// `bytes` as an identity.
fn identity(bytes: &[u8]) -> Result<Identity, DecodeError> {
    Ok(Identity(
        bytes
            .try_into()
            .map_err(|_| DecodeError::Identity(bytes.len()))?,
    ))
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

    /// Decodes one MessagePack row list payload (compression tag, then the rows or their
    /// gzip) of `schema`'s rows: v2's and v1 MessagePack's row lists alike.
    pub(crate) fn rows(
        &self,
        schema: &TableSchema,
        payload: &[u8],
    ) -> Result<Vec<Row>, DecodeError> {
        let body = wire_v2::row_list_body(payload)?;
        Ok(rowlist::decode_rows(schema, &body)?)
    }
}
