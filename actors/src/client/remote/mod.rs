//! The WebSocket transport of [`DbConnection`]: the same connection, cache and callbacks
//! as in process, talking to a Tidings server in another process.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let module = tidings_actors::Module::new();
//! use tidings_actors::{DbConnection, Protocol};
//! let conn = DbConnection::builder()
//!     .uri("ws://127.0.0.1:3000")
//!     .module(&module) // the tables this client was compiled against
//!     .protocol(Protocol::V2) // the default; or WireProtocol::V1MsgPack / V1Json
//!     .connect()?; // returns once InitialConnection arrived
//! let token = conn.token(); // hand it to `.token(..)` next time to keep the identity
//! # Ok(()) }
//! ```
//!
//! **Protocols.** All three of the server's: `v2.msgpack.tidings`, and legacy v1 as
//! `v1.msgpack.tidings` (binary frames) or `v1.json.tidings` (text frames). A v1
//! connection receives the very messages an in-process v1 connection does (see
//! `codec/v1.rs` for how v1's frames map back to them), so it behaves the same. v1 cannot
//! express ending the legacy `Subscribe`'s set on its own (a new legacy `Subscribe`
//! replaces it), so unsubscribing that handle over a WebSocket is a
//! [`SendError::NotInProtocol`].
//!
//! The socket runs on a thread of its own (`remote/socket.rs`); decoded messages land in the
//! same kind of queue an in-process connection reads, and the application processes them
//! with `frame_tick`, `run_until` or `run_threaded` as usual. [`codec`] turns frames into
//! the same `ServerMessage` values, rows decoded with the application's table schemas
//! (checked against the server's `GET /schema` at connect, see [`schema_check`]).
//!
//! **Reconnecting.** [`DbConnection::reconnect`] opens a new socket with the token the
//! server issued, checks the identity is the same, and sends every query set the
//! connection had (applied or still pending) again under its own id, with the request
//! that made it (on v1: `SubscribeSingle`, `SubscribeMulti` or the legacy `Subscribe`). When a re-applied
//! set's snapshot arrives, the cache swaps the set's old rows for the new ones and fires
//! only the difference: rows still there fire nothing, rows gone fire `on_delete`, new
//! rows `on_insert` (or `on_update` when the primary key matches). A set whose
//! unsubscribe was in flight ends locally. Reducer calls and one-off queries still
//! unanswered get an error: their results were lost with the old socket (a call may
//! still have committed). Messages of the old socket not yet processed are discarded.

pub mod codec;
mod error;
pub mod schema_check;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use hashbrown::HashMap;
use parking_lot::Mutex;
use tidings_engine::{Identity, Schema, SchemaError};

use super::DbConnection;
use super::link::Link;
use crate::messages::{ClientMessage, ConnectionId, QuerySetId, RequestId, V1_LEGACY_QUERY_SET};
use crate::module::Module;
use crate::queue::{QueueLimits, SessionQueue};
use crate::wire::v2::Compression;
use codec::{Codec, OutFrame, SendError, WireProtocol};
pub use error::{ConnectError, TransportError};

/// Where the server is: its WebSocket and schema URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    ws_base: String,
    pub(crate) schema_url: String,
}

impl Endpoint {
    /// Accepts `ws://host:port` or `http://host:port`, with an optional path prefix and an
    /// optional trailing `/subscribe`.
    pub(crate) fn parse(uri: &str) -> Result<Self, ConnectError> {
        let bad = |problem| ConnectError::InvalidUri {
            uri: uri.to_string(),
            problem,
        };
        let parsed: awc::http::Uri = uri.parse().map_err(|_| bad("not a URI"))?;
        match parsed.scheme_str() {
            Some("ws" | "http") => {}
            Some("wss" | "https") => {
                return Err(bad(
                    "TLS is not built into this client; use ws:// (behind a TLS-terminating proxy if needed)",
                ));
            }
            Some(_) => return Err(bad("the scheme must be ws:// or http://")),
            None => return Err(bad("no scheme: write ws://host:port")),
        }
        let authority = parsed
            .authority()
            .ok_or_else(|| bad("no host: write ws://host:port"))?;
        if parsed.query().is_some() {
            return Err(bad(
                "no query string: the token and compression are builder options",
            ));
        }
        let path = parsed.path().trim_end_matches('/');
        let path = path.strip_suffix("/subscribe").unwrap_or(path);
        Ok(Endpoint {
            ws_base: format!("ws://{authority}{path}/subscribe"),
            schema_url: format!("http://{authority}{path}/schema"),
        })
    }

    pub(crate) fn ws_url(&self, compression: Compression) -> String {
        let c = match compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        };
        format!("{}?compression={c}", self.ws_base)
    }
}

/// What every socket of one connection shares.
pub(crate) struct RemoteConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) protocol: WireProtocol,
    pub(crate) compression: Compression,
    pub(crate) timeout: Duration,
    pub(crate) verify_schema: bool,
    pub(crate) queue_limits: QueueLimits,
    pub(crate) frame_bytes_max: usize,
    pub(crate) schema: Arc<Schema>,
    pub(crate) codec: Arc<dyn Codec>,
}

/// Configures and opens a remote [`DbConnection`].
pub struct DbConnectionBuilder {
    uri: Option<String>,
    schema: Option<Result<Schema, SchemaError>>,
    token: Option<String>,
    protocol: WireProtocol,
    compression: Compression,
    timeout: Duration,
    verify_schema: bool,
    queue_limits: QueueLimits,
    frame_bytes_max: usize,
}

impl std::fmt::Debug for DbConnectionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never printed.
        f.debug_struct("DbConnectionBuilder")
            .field("uri", &self.uri)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field("verify_schema", &self.verify_schema)
            .finish_non_exhaustive()
    }
}

impl Default for DbConnectionBuilder {
    fn default() -> Self {
        DbConnectionBuilder {
            uri: None,
            schema: None,
            token: None,
            protocol: WireProtocol::default(),
            compression: Compression::None,
            timeout: Duration::from_secs(10),
            verify_schema: true,
            queue_limits: QueueLimits::default(),
            frame_bytes_max: 64 << 20,
        }
    }
}

impl DbConnectionBuilder {
    /// The server: `ws://host:port` (a trailing `/subscribe` is optional).
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = Some(uri.into());
        self
    }

    /// The module whose tables this client was compiled against.
    pub fn module(mut self, module: &Module) -> Self {
        self.schema = Some(module.schema());
        self
    }

    /// The table schemas this client was compiled against (instead of [`Self::module`]).
    pub fn module_schema(mut self, schema: Schema) -> Self {
        self.schema = Some(Ok(schema));
        self
    }

    /// A token from an earlier connection, to come back as the same identity.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The protocol: a [`WireProtocol`] (`V2MsgPack`, the default; `V1MsgPack`; `V1Json`)
    /// or a version (`Protocol::V2`, `Protocol::V1`: its MessagePack encoding).
    pub fn protocol(mut self, protocol: impl Into<WireProtocol>) -> Self {
        self.protocol = protocol.into();
        self
    }

    /// Asks the server to gzip large row lists (`?compression=gzip`).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Deadline for connecting, up to `InitialConnection` (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to compare the schema with the server's `GET /schema` (default: yes).
    pub fn verify_schema(mut self, verify: bool) -> Self {
        self.verify_schema = verify;
        self
    }

    /// Bounds of the queue between the socket and the application (default: the
    /// in-process defaults). Passing them drops the connection with a reason.
    pub fn queue_limits(mut self, limits: QueueLimits) -> Self {
        self.queue_limits = limits;
        self
    }

    /// Largest server message accepted, in bytes (default 64 MiB).
    pub fn frame_bytes_max(mut self, bytes: usize) -> Self {
        self.frame_bytes_max = bytes;
        self
    }

    /// Connects; returns once the server's `InitialConnection` arrived.
    pub fn connect(self) -> Result<DbConnection, ConnectError> {
        let uri = self.uri.ok_or(ConnectError::MissingUri)?;
        let endpoint = Endpoint::parse(&uri)?;
        let schema = match self.schema {
            Some(Ok(s)) => Arc::new(s),
            Some(Err(e)) => return Err(ConnectError::Schema(e)),
            None => return Err(ConnectError::MissingSchema),
        };
        let codec = codec::codec_for(self.protocol, &schema);
        let config = Arc::new(RemoteConfig {
            endpoint,
            protocol: self.protocol,
            compression: self.compression,
            timeout: self.timeout,
            verify_schema: self.verify_schema,
            queue_limits: self.queue_limits,
            frame_bytes_max: self.frame_bytes_max,
            schema,
            codec,
        });
        let opened = socket::open(&config, self.token.clone())?;
        let link = RemoteLink {
            identity: opened.hello.identity,
            current: Mutex::new(Current::new(opened, self.token)),
            sets: Mutex::new(HashMap::new()),
            config,
        };
        Ok(DbConnection::with_link(Link::Remote(link)))
    }
}

/// The socket a connection uses now.
struct Current {
    connection_id: ConnectionId,
    token: Option<String>,
    queue: Arc<SessionQueue>,
    /// `None` once the connection let go of the socket.
    out: Option<UnboundedSender<OutFrame>>,
}

impl Current {
    fn new(opened: socket::Opened, token: Option<String>) -> Self {
        Current {
            connection_id: opened.hello.connection_id,
            token: opened.hello.token.or(token),
            queue: opened.queue,
            out: Some(opened.out),
        }
    }
}

/// A query set as the connection asked for it, to ask again after a reconnect.
#[derive(Default)]
struct TrackedSet {
    /// The request that put the set in force.
    applied: Option<ClientMessage>,
    /// Requests sent and not answered yet, oldest first; `true` marks a re-sent set
    /// whose earlier rows are still in the cache.
    sent: Vec<(ClientMessage, bool)>,
    /// An unsubscribe is in flight.
    unsubscribing: bool,
}

/// The set a request creates or ends, and whether it ends one.
fn set_of(message: &ClientMessage) -> Option<(QuerySetId, bool)> {
    match message {
        ClientMessage::Subscribe { query_set_id, .. } => Some((*query_set_id, false)),
        ClientMessage::V1SubscribeSingle { query_id, .. }
        | ClientMessage::V1SubscribeMulti { query_id, .. } => Some((*query_id, false)),
        ClientMessage::V1Subscribe { .. } => Some((V1_LEGACY_QUERY_SET, false)),
        ClientMessage::Unsubscribe { query_set_id, .. } => Some((*query_set_id, true)),
        ClientMessage::V1Unsubscribe { query_id, .. } => Some((*query_id, true)),
        ClientMessage::CallReducer { .. }
        | ClientMessage::V1CallReducer { .. }
        | ClientMessage::OneOffQuery { .. } => None,
    }
}

/// A connection's WebSocket side.
pub(crate) struct RemoteLink {
    config: Arc<RemoteConfig>,
    identity: Identity,
    current: Mutex<Current>,
    /// Held while a subscription request is tracked and sent, and through a reconnect's
    /// swap and re-sends, so no request reaches a socket twice or not at all.
    sets: Mutex<HashMap<QuerySetId, TrackedSet>>,
}

impl RemoteLink {
    pub(crate) fn identity(&self) -> Identity {
        self.identity
    }

    pub(crate) fn connection_id(&self) -> ConnectionId {
        self.current.lock().connection_id
    }

    pub(crate) fn token(&self) -> Option<String> {
        self.current.lock().token.clone()
    }

    pub(crate) fn protocol(&self) -> WireProtocol {
        self.config.protocol
    }

    pub(crate) fn schema(&self) -> &Arc<Schema> {
        &self.config.schema
    }

    pub(crate) fn queue(&self) -> Arc<SessionQueue> {
        self.current.lock().queue.clone()
    }

    fn push_frame(&self, frame: OutFrame) -> Result<(), SendError> {
        match &self.current.lock().out {
            Some(out) => out.unbounded_send(frame).map_err(|_| SendError::Closed),
            None => Err(SendError::Closed),
        }
    }

    pub(crate) fn send(&self, message: ClientMessage) -> Result<(), SendError> {
        let Some((qs, ends)) = set_of(&message) else {
            return self.push_frame(self.config.codec.encode(message)?);
        };
        let mut sets = self.sets.lock();
        let request_id = message.request_id();
        if ends {
            if let Some(s) = sets.get_mut(&qs) {
                s.unsubscribing = true;
            }
        } else {
            sets.entry(qs)
                .or_default()
                .sent
                .push((message.clone(), false));
        }
        let result = self
            .config
            .codec
            .encode(message)
            .and_then(|f| self.push_frame(f));
        if result.is_err() {
            // Not sent: nothing to answer, nothing to send again.
            if let Some(s) = sets.get_mut(&qs) {
                if ends {
                    s.unsubscribing = false;
                } else {
                    s.sent.retain(|(m, _)| m.request_id() != request_id);
                }
                if s.applied.is_none() && s.sent.is_empty() {
                    sets.remove(&qs);
                }
            }
        }
        result
    }

    /// `SubscribeApplied` for `qs`: whether the snapshot replaces rows the set already
    /// has in the cache (a set re-applied after a reconnect).
    pub(crate) fn applied(&self, qs: QuerySetId, request_id: RequestId) -> bool {
        let mut sets = self.sets.lock();
        let Some(s) = sets.get_mut(&qs) else {
            return false;
        };
        match s
            .sent
            .iter()
            .position(|(m, _)| m.request_id() == request_id)
        {
            Some(i) => {
                let (m, replaces) = s.sent.remove(i);
                s.applied = Some(m);
                replaces
            }
            None => false,
        }
    }

    /// `UnsubscribeApplied` for `qs`.
    pub(crate) fn unsubscribed(&self, qs: QuerySetId) {
        let mut sets = self.sets.lock();
        if let Some(s) = sets.get_mut(&qs) {
            s.applied = None;
            s.unsubscribing = false;
            if s.sent.is_empty() {
                sets.remove(&qs);
            }
        }
    }

    /// `SubscriptionError` for `qs`: whether rows the set holds in the cache must go
    /// (its re-send after a reconnect failed, so it is no longer in force).
    pub(crate) fn failed(&self, qs: Option<QuerySetId>, request_id: Option<RequestId>) -> bool {
        let mut sets = self.sets.lock();
        // A request refused before it reached a set (too many requests) names no set.
        let qs = qs.or_else(|| {
            let id = request_id?;
            sets.iter()
                .find(|(_, s)| s.sent.iter().any(|(m, _)| m.request_id() == id))
                .map(|(qs, _)| *qs)
        });
        let Some((qs, s)) = qs.and_then(|qs| Some((qs, sets.get_mut(&qs)?))) else {
            return false;
        };
        let Some(request_id) = request_id else {
            // The server ended the set.
            sets.remove(&qs);
            return false;
        };
        let replaced = match s
            .sent
            .iter()
            .position(|(m, _)| m.request_id() == request_id)
        {
            Some(i) => s.sent.remove(i).1,
            None => false,
        };
        if s.applied.is_none() && s.sent.is_empty() {
            sets.remove(&qs);
        }
        replaced
    }

    /// Lets go of the socket: it sends a close frame and its thread ends.
    pub(crate) fn close(&self) {
        let mut current = self.current.lock();
        current.out = None;
        current.queue.close();
    }

    /// Opens a new socket as the same identity, makes it current, and sends every
    /// tracked query set again with ids from `next_request`. Returns the sets whose
    /// unsubscribe was in flight: they end locally.
    pub(crate) fn reconnect(
        &self,
        mut next_request: impl FnMut() -> RequestId,
    ) -> Result<Vec<QuerySetId>, ConnectError> {
        let token = self.token();
        let opened = socket::open(&self.config, token.clone())?;
        if opened.hello.identity != self.identity {
            return Err(ConnectError::IdentityChanged {
                expected: self.identity.to_hex(),
                got: opened.hello.identity.to_hex(),
            });
        }
        let mut sets = self.sets.lock();
        {
            let mut current = self.current.lock();
            current.queue.close();
            *current = Current::new(opened, token);
        }
        let mut ended = Vec::new();
        let mut ids: Vec<QuerySetId> = sets.keys().copied().collect();
        ids.sort_unstable();
        for qs in ids {
            let Some(s) = sets.get_mut(&qs) else { continue };
            if s.unsubscribing {
                sets.remove(&qs);
                ended.push(qs);
                continue;
            }
            let mut again: Vec<(ClientMessage, bool)> =
                s.applied.take().map(|m| (m, true)).into_iter().collect();
            again.append(&mut s.sent);
            for (mut m, replaces) in again {
                *m.request_id_mut() = next_request();
                let sent = self
                    .config
                    .codec
                    .encode(m.clone())
                    .and_then(|f| self.push_frame(f));
                match sent {
                    Ok(()) => s.sent.push((m, replaces)),
                    Err(e) => {
                        tracing::warn!(query_set_id = qs, error = %e, "query set not sent again after reconnect")
                    }
                }
            }
        }
        sets.retain(|_, s| s.applied.is_some() || !s.sent.is_empty());
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_threads_and_tokens_stay_out_of_debug_output() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<ConnectError>();
        send_sync::<SendError>();
        let b = DbConnectionBuilder::default().token("secret-token");
        assert!(!format!("{b:?}").contains("secret"));
    }

    #[test]
    fn addresses_accept_ws_and_http_and_reject_the_rest() {
        let e = Endpoint::parse("ws://127.0.0.1:3000").expect("plain");
        assert_eq!(
            e.ws_url(Compression::Gzip),
            "ws://127.0.0.1:3000/subscribe?compression=gzip"
        );
        assert_eq!(e.schema_url, "http://127.0.0.1:3000/schema");
        for same in [
            "ws://127.0.0.1:3000/",
            "ws://127.0.0.1:3000/subscribe",
            "http://127.0.0.1:3000",
        ] {
            assert_eq!(Endpoint::parse(same).expect(same), e, "{same}");
        }
        let prefixed = Endpoint::parse("ws://h:1/db/subscribe").expect("prefix");
        assert_eq!(prefixed.schema_url, "http://h:1/db/schema");
        for bad in [
            "",
            "not a url",
            "127.0.0.1:3000",
            "ftp://h:1",
            "wss://h:1",
            "ws://h:1/?token=x",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(ConnectError::InvalidUri { .. })),
                "{bad:?} is rejected"
            );
        }
    }
}
