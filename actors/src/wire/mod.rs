//! Wire encodings shared by the transports.
//!
//! [`rowlist`] is the schema-directed MessagePack form of a query's rows; the WebSocket
//! protocol wraps row lists in per-version message envelopes.

pub mod rowlist;
pub mod v2;
