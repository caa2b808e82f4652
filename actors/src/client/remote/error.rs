//! What can go wrong connecting: one variant per stage, each naming what it waited for
//! or what it was given.

use std::time::Duration;

use thiserror::Error;
use tidings_engine::SchemaError;

use super::codec;
use super::schema_check::SchemaDifference;

/// A failure reported by the HTTP/WebSocket library, as text (its error types are not
/// `Send`, so they cannot leave the socket's thread).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct TransportError(String);

impl TransportError {
    pub(crate) fn of(e: impl std::fmt::Display) -> Self {
        TransportError(e.to_string())
    }
}

/// Why a remote connection (or reconnection) did not come up.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The builder has no server address.
    #[error("no server address: call `uri(\"ws://host:port\")` on the builder")]
    MissingUri,
    /// The builder has no schema.
    #[error(
        "no table schemas: call `module(..)` or `module_schema(..)` on the builder (row lists are decoded with the application's schemas)"
    )]
    MissingSchema,
    /// The module's tables do not form a valid schema.
    #[error("the module's tables do not form a valid schema")]
    Schema(#[source] SchemaError),
    /// The address is not a usable `ws://` URI.
    #[error("invalid server address {uri:?}: {problem}")]
    InvalidUri {
        /// What was given.
        uri: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Nothing answered at the address (refused, unresolvable, reset).
    #[error("cannot reach the server at {url}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What the network layer said.
        #[source]
        source: TransportError,
    },
    /// `GET /schema` answered with an error status.
    #[error("GET {url} answered HTTP {status}; is this a Tidings server?")]
    SchemaFetch {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// `GET /schema` answered something that is not a schema.
    #[error("GET {url} did not return a schema; is this a Tidings server?")]
    SchemaResponse {
        /// The URL.
        url: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The server's tables are not the ones this client was compiled against.
    #[error(
        "the server's schema differs from the client's: {}; rebuild the client against the server's module",
        differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    SchemaMismatch {
        /// Every difference found.
        differences: Vec<SchemaDifference>,
    },
    /// The server refused the token (HTTP 401).
    #[error(
        "the server refused the token (HTTP 401): it was not issued by this server; connect without a token for a new identity"
    )]
    Unauthorized,
    /// The server refused the WebSocket handshake.
    #[error("the server refused the WebSocket handshake at {url} with HTTP {status}")]
    Rejected {
        /// The URL.
        url: String,
        /// The status (400: unsupported subprotocol or compression).
        status: u16,
    },
    /// The WebSocket handshake failed otherwise.
    #[error("the WebSocket handshake with {url} failed")]
    Handshake {
        /// The URL.
        url: String,
        /// What went wrong.
        #[source]
        source: TransportError,
    },
    /// A stage of connecting did not finish in time.
    #[error("no {waiting_for} within {timeout:?} (the builder's `timeout`)")]
    Timeout {
        /// What was awaited.
        waiting_for: &'static str,
        /// The deadline.
        timeout: Duration,
    },
    /// The server closed the socket before `InitialConnection`.
    #[error("the server closed the connection before InitialConnection: {reason}")]
    Closed {
        /// The close reason.
        reason: String,
    },
    /// The server's first message is not `InitialConnection`.
    #[error("the server's first message is not InitialConnection")]
    NotInitialConnection,
    /// The server's first message does not decode.
    #[error("the server's first message does not decode")]
    Decode(#[source] codec::DecodeError),
    /// A reconnect came back as another identity.
    #[error(
        "reconnected as identity {got}, expected {expected}: the server no longer honours the token"
    )]
    IdentityChanged {
        /// The identity before (hex).
        expected: String,
        /// The identity now (hex).
        got: String,
    },
    /// `reconnect` on an in-process connection.
    #[error(
        "an in-process connection has no socket to reconnect; connect again with `Tidings::connect_with`"
    )]
    InProcess,
    /// The socket's thread could not start.
    #[error("cannot start the connection's thread")]
    Thread(#[source] std::io::Error),
    /// The socket's thread ended without reporting (it panicked).
    #[error("the connection's thread stopped before the connection came up")]
    ThreadStopped,
}
