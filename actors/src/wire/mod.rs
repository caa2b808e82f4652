//! Wire encodings shared by the transports.
//!
//! [`rowlist`] is the schema-directed MessagePack form of a query's rows and [`json`] its
//! JSON form; the WebSocket protocol wraps row lists in per-version message envelopes:
//! [`v2`] (MessagePack) and [`v1`] (MessagePack or JSON). [`Codec`] picks one per session
//! from the negotiated subprotocol.

pub mod json;
pub mod rowlist;
pub mod v1;
pub mod v2;

use thiserror::Error;

use crate::messages::{ClientMessage, Protocol, ServerMessage};
use v2::Compression;

/// An encoded message and the WebSocket frame type it travels in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message.
    Text(String),
}

impl Frame {
    /// The payload's bytes, whatever the frame type.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Frame::Binary(b) => b,
            Frame::Text(t) => t.as_bytes(),
        }
    }
}

/// The frame types a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    /// Binary.
    Binary,
    /// Text.
    Text,
}

/// An incoming frame that is not a request.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// A frame type the subprotocol does not use.
    #[error("{frame} frames are not part of {subprotocol}; send {expected}")]
    FrameType {
        /// What came.
        frame: &'static str,
        /// The session's subprotocol.
        subprotocol: &'static str,
        /// What to send instead.
        expected: &'static str,
    },
    /// A v2 payload that does not decode.
    #[error(transparent)]
    V2(#[from] v2::WireError),
    /// A v1 payload that does not decode.
    #[error(transparent)]
    V1(#[from] v1::WireError),
}

/// One session's encoding, chosen by its subprotocol.
#[derive(Debug)]
pub enum Codec {
    /// `v2.msgpack.tidings`.
    V2 {
        /// How row lists are compressed.
        compression: Compression,
    },
    /// `v1.msgpack.tidings` or `v1.json.tidings`.
    V1(v1::SessionCodec),
}

impl Codec {
    /// The codec for a subprotocol name, or `None` for one this server does not speak.
    pub fn for_subprotocol(name: &str, compression: Compression) -> Option<Codec> {
        Some(match name {
            v2::SUBPROTOCOL => Codec::V2 { compression },
            v1::SUBPROTOCOL_MSGPACK => Codec::V1(v1::SessionCodec::new(
                v1::Encoding::MessagePack,
                compression,
            )),
            v1::SUBPROTOCOL_JSON => {
                Codec::V1(v1::SessionCodec::new(v1::Encoding::Json, compression))
            }
            _ => return None,
        })
    }

    /// The subprotocol it speaks.
    pub fn subprotocol(&self) -> &'static str {
        match self {
            Codec::V2 { .. } => v2::SUBPROTOCOL,
            Codec::V1(c) => c.encoding().subprotocol(),
        }
    }

    /// The protocol version the session must be opened with.
    pub fn protocol(&self) -> Protocol {
        match self {
            Codec::V2 { .. } => Protocol::V2,
            Codec::V1(_) => Protocol::V1,
        }
    }

    /// The frame for `msg`, or `None` when the protocol sends nothing for it.
    pub fn encode(&mut self, msg: &ServerMessage) -> Option<Frame> {
        match self {
            Codec::V2 { compression } => v2::encode_server(msg, *compression).map(Frame::Binary),
            Codec::V1(c) => c.encode(msg),
        }
    }

    /// The request in an incoming frame.
    pub fn decode(
        &mut self,
        frame: FrameType,
        payload: &[u8],
    ) -> Result<ClientMessage, DecodeError> {
        let subprotocol = self.subprotocol();
        match (self, frame) {
            (Codec::V2 { .. }, FrameType::Binary) => Ok(v2::decode_client(payload)?),
            (Codec::V1(c), FrameType::Binary) if c.encoding() == v1::Encoding::MessagePack => {
                Ok(c.decode(payload)?)
            }
            (Codec::V1(c), FrameType::Text) if c.encoding() == v1::Encoding::Json => {
                Ok(c.decode(payload)?)
            }
            (_, FrameType::Text) => Err(DecodeError::FrameType {
                frame: "text",
                subprotocol,
                expected: "binary MessagePack",
            }),
            (_, FrameType::Binary) => Err(DecodeError::FrameType {
                frame: "binary",
                subprotocol,
                expected: "JSON in text frames",
            }),
        }
    }
}
