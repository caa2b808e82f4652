//! The client SDK: one [`DbConnection`] API, in process or over a WebSocket.
//!
//! A [`DbConnection`] sends requests to Tidings and receives server messages on its own
//! queue. Messages are processed, and callbacks run, on whichever application thread
//! calls [`DbConnection::frame_tick`], [`DbConnection::run_until`] or
//! [`DbConnection::run_threaded`], never on an engine thread. Each message is applied to
//! the cache as a whole before any of its callbacks runs, and callbacks run without the
//! cache locked, so they may read it (`count()`, `iter()`, `find()`).
//!
//! An application thread that drives many connections makes them through one [`Inbox`]
//! ([`crate::Tidings::inbox`]): they share one queue, a commit reaches all of them as
//! one item, and [`Inbox::frame_tick`] processes them all (a connection's own
//! `frame_tick` processes its inbox). At 10,000 subscribers of one query this cut the
//! engine's CPU per commit from about 1 ms to about 60 µs (see `examples/fanout.rs`).
//! The connections of an inbox also share the rows they cache from each update (one
//! copy per row, not one per connection: [`pool`]).
//!
//! A reducer call's result comes back through [`DbConnection::reducer_then`]'s callback,
//! keyed by the call's own request id (ids are unique per connection and never 0).
//!
//! # Two transports
//!
//! - **In process** ([`crate::Tidings::connect`]): the connection is a session of the
//!   embedded Tidings. Requests go straight into the transaction actor's FIFO; the hub
//!   appends the shared `ServerMessage`s to the connection's queue. Nothing is encoded.
//! - **WebSocket** ([`DbConnection::builder`], see [`remote`]): a background thread owns
//!   the socket, encodes requests, and decodes each frame, row lists included, into the
//!   same `ServerMessage` values, which it pushes onto the same kind of queue. The
//!   application supplies the table schemas it was compiled against (its module); they
//!   are checked against the server's `GET /schema` at connect. A remote connection can
//!   [`DbConnection::reconnect`] with its token, keeping its identity and query sets.
//!
//! From the queue on, both run the same code (`client/process.rs`): the same cache, the same
//! callbacks and [`EventContext`]s, the same request ids and subscription builder.
//!
//! # Two protocol versions
//!
//! Either transport speaks v2 (the default) or legacy v1: in process with
//! [`ConnectOptions::protocol`], over a WebSocket with the builder's `.protocol(..)`, which
//! takes a [`WireProtocol`] (`V2MsgPack`, `V1MsgPack` or `V1Json`) or a
//! [`crate::messages::Protocol`] (its MessagePack encoding). The API is the same; v1 keeps
//! its meaning: event tables cannot be subscribed to, [`SubscriptionBuilder::subscribe`]
//! sends `SubscribeMulti`, `subscribe_v1_single` and `subscribe_v1_legacy` reach v1's
//! other two paths, and a reducer call's result (for `reducer_then`) is the reducer event
//! in the caller's own transaction update, found by its request id; other v1 clients see
//! that commit as [`Event::Transaction`].

pub mod cache;
mod inbox;
mod link;
pub mod pool;
mod process;
pub mod remote;
mod subscription;
mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tidings_engine::{Identity, Row, Timestamp, TxOffset};

pub use inbox::Inbox;
use pool::RowPool;
pub use remote::codec::{SendError, WireProtocol};
pub use remote::{ConnectError, DbConnectionBuilder};
pub use subscription::{SubscriptionBuilder, SubscriptionHandle};
pub use table::{CallbackId, ClientTable};

use crate::messages::{
    ClientMessage, ConnectionId, Envelope, OneOffRows, Protocol, QuerySetId, ReducerStatus,
    RequestId, ServerMessage,
};
use crate::module::{ReducerError, encode_args};
use crate::queue::QueueLimits;
use crate::session::Session;
use crate::system::TidingsError;
use cache::ClientCache;
use link::Link;

/// Calls `step` with the time left (at most 50 ms at a time) until `done` holds or
/// `timeout` passes; `step` returns false once nothing more can arrive. Whether `done`
/// held.
pub(crate) fn drive_until(
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    mut step: impl FnMut(Duration) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !step(left.min(Duration::from_millis(50))) {
            return done();
        }
    }
}

/// Options for [`crate::Tidings::connect_with`].
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// The identity to connect as (default: a fresh one).
    pub identity: Option<Identity>,
    /// Owner rights: bypasses visibility rules, may read private tables.
    pub owner: bool,
    /// Protocol version (default v2).
    pub protocol: Protocol,
    /// Queue bounds for this connection (default: the server's).
    pub queue_limits: Option<QueueLimits>,
    /// A token to hand back in the connection's first message (transports set it).
    pub token: Option<String>,
}

/// Why callbacks are running.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// This connection's own reducer call (v2: its reducer result; v1: its transaction
    /// update, which carries the call).
    Reducer {
        /// The call's request id.
        request_id: RequestId,
        /// The reducer.
        reducer: String,
        /// When it ran.
        timestamp: Timestamp,
        /// What it did.
        status: ReducerStatus,
    },
    /// Somebody else's commit (or, on v1, any commit).
    Transaction {
        /// Its offset.
        offset: TxOffset,
        /// Its time.
        timestamp: Timestamp,
    },
    /// A query set's initial rows arrived.
    SubscribeApplied {
        /// The set.
        query_set_id: QuerySetId,
    },
    /// A query set ended.
    UnsubscribeApplied {
        /// The set.
        query_set_id: QuerySetId,
    },
    /// A query set ended with an error.
    SubscriptionError {
        /// The set.
        query_set_id: Option<QuerySetId>,
        /// What went wrong.
        error: String,
    },
}

/// What callbacks receive.
#[derive(Clone)]
pub struct EventContext {
    /// Why they run.
    pub event: Event,
    /// The connection, to read the cache or make calls.
    pub conn: DbConnection,
}

type ReducerThen = Box<dyn FnOnce(&EventContext, Result<Vec<u8>, ReducerError>) + Send>;
type SetCallback = Box<dyn FnOnce(&EventContext) + Send>;
type ErrorCallback = Box<dyn FnOnce(&EventContext, &str) + Send>;
type OneOffCallback = Box<dyn FnOnce(OneOffRows) + Send>;

struct PendingCall {
    reducer: String,
    then: Option<ReducerThen>,
}

#[derive(Default)]
struct PendingSet {
    on_applied: Option<SetCallback>,
    on_error: Option<ErrorCallback>,
    on_unsubscribed: Option<SetCallback>,
}

pub(crate) type RowCallback = Arc<Mutex<dyn FnMut(&EventContext, &Row) + Send>>;
pub(crate) type UpdateCallback = Arc<Mutex<dyn FnMut(&EventContext, &Row, &Row) + Send>>;

#[derive(Default)]
pub(crate) struct TableCallbacks {
    pub(crate) on_insert: Vec<(CallbackId, RowCallback)>,
    pub(crate) on_delete: Vec<(CallbackId, RowCallback)>,
    pub(crate) on_update: Vec<(CallbackId, UpdateCallback)>,
}

struct ConnInner {
    link: Link,
    /// The application thread's inbox it is delivered through, if any.
    inbox: Option<Inbox>,
    cache: RwLock<ClientCache>,
    callbacks: Mutex<HashMap<Arc<str>, TableCallbacks>>,
    next_callback: AtomicU32,
    next_request: AtomicU32,
    next_set: AtomicU32,
    calls: Mutex<HashMap<RequestId, PendingCall>>,
    sets: Mutex<HashMap<QuerySetId, PendingSet>>,
    one_offs: Mutex<HashMap<RequestId, OneOffCallback>>,
    disconnected: Mutex<Option<String>>,
    errors: Mutex<Vec<String>>,
    last_offset: std::sync::atomic::AtomicU64,
}

/// A client connection, in process or over a WebSocket. Cheap to clone.
#[derive(Clone)]
pub struct DbConnection {
    inner: Arc<ConnInner>,
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConnection")
            .field("identity", &self.identity().to_hex())
            .field("connection_id", &self.connection_id())
            .field("remote", &self.is_remote())
            .finish_non_exhaustive()
    }
}

impl DbConnection {
    /// Starts configuring a connection to a server in another process.
    pub fn builder() -> DbConnectionBuilder {
        DbConnectionBuilder::default()
    }

    pub(crate) fn new(session: Session) -> Self {
        Self::with_link(Link::InProcess(session))
    }

    pub(crate) fn with_link(link: Link) -> Self {
        Self::with_link_on(link, None)
    }

    pub(crate) fn with_link_on(link: Link, inbox: Option<Inbox>) -> Self {
        let cache = ClientCache::new(&link.schema());
        DbConnection {
            inner: Arc::new(ConnInner {
                link,
                inbox,
                cache: RwLock::new(cache),
                callbacks: Mutex::new(HashMap::new()),
                next_callback: AtomicU32::new(1),
                next_request: AtomicU32::new(1),
                next_set: AtomicU32::new(1),
                calls: Mutex::new(HashMap::new()),
                sets: Mutex::new(HashMap::new()),
                one_offs: Mutex::new(HashMap::new()),
                disconnected: Mutex::new(None),
                errors: Mutex::new(Vec::new()),
                last_offset: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// This connection's identity.
    pub fn identity(&self) -> Identity {
        self.inner.link.identity()
    }

    /// This connection's id (a reconnect gets a new one).
    pub fn connection_id(&self) -> ConnectionId {
        self.inner.link.connection_id()
    }

    /// The protocol this connection speaks.
    pub fn protocol(&self) -> Protocol {
        self.inner.link.protocol()
    }

    /// The token the server issued, which restores this identity on a later connection
    /// (`None` in process).
    pub fn token(&self) -> Option<String> {
        self.inner.link.remote().and_then(|r| r.token())
    }

    /// Whether this connection talks to a server over a WebSocket.
    pub fn is_remote(&self) -> bool {
        self.inner.link.remote().is_some()
    }

    /// The offset of the last commit (or snapshot) this connection has applied.
    pub fn last_offset(&self) -> TxOffset {
        self.inner.last_offset.load(Ordering::Acquire)
    }

    fn saw_offset(&self, offset: TxOffset) {
        self.inner.last_offset.fetch_max(offset, Ordering::AcqRel);
    }

    /// Every subscription error this connection has received, oldest first.
    pub fn subscription_errors(&self) -> Vec<String> {
        self.inner.errors.lock().clone()
    }

    /// Why the server dropped this connection, if it did.
    pub fn disconnected(&self) -> Option<String> {
        self.inner.disconnected.lock().clone()
    }

    fn request_id(&self) -> RequestId {
        // Ids start at 1 and wrap past 0: a result for id 0 would be someone else's.
        loop {
            let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Sends a raw protocol message (transports and compatibility tests use this).
    pub fn send(&self, message: ClientMessage) -> Result<(), TidingsError> {
        self.inner.link.send(message)
    }

    /// Calls `reducer` with `args` (a tuple or struct, sent as a MessagePack array).
    pub fn call<A: Serialize>(&self, reducer: &str, args: &A) -> Result<RequestId, TidingsError> {
        self.call_with(reducer, args, None)
    }

    /// Calls `reducer`; `then` runs once with this call's own result.
    pub fn reducer_then<A: Serialize>(
        &self,
        reducer: &str,
        args: &A,
        then: impl FnOnce(&EventContext, Result<Vec<u8>, ReducerError>) + Send + 'static,
    ) -> Result<RequestId, TidingsError> {
        self.call_with(reducer, args, Some(Box::new(then)))
    }

    fn call_with<A: Serialize>(
        &self,
        reducer: &str,
        args: &A,
        then: Option<ReducerThen>,
    ) -> Result<RequestId, TidingsError> {
        let args = encode_args(args)?;
        let request_id = self.request_id();
        self.inner.calls.lock().insert(
            request_id,
            PendingCall {
                reducer: reducer.into(),
                then,
            },
        );
        let call = ClientMessage::CallReducer {
            request_id,
            reducer: reducer.into(),
            args,
        };
        let sent = match &self.inner.link {
            Link::InProcess(s) => s.send(call),
            Link::Remote(r) => r.send(call).map_err(TidingsError::from),
        };
        if let Err(e) = sent {
            self.inner.calls.lock().remove(&request_id);
            return Err(e);
        }
        Ok(request_id)
    }

    /// Starts a subscription with callbacks.
    pub fn subscription_builder(&self) -> SubscriptionBuilder {
        SubscriptionBuilder {
            conn: self.clone(),
            pending: PendingSet::default(),
        }
    }

    /// Subscribes to `queries` as one query set, without callbacks.
    pub fn subscribe<S: AsRef<str>>(
        &self,
        queries: &[S],
    ) -> Result<SubscriptionHandle, TidingsError> {
        self.subscription_builder().subscribe(queries)
    }

    /// Subscribes to every table this client may read, event tables included (v2), each
    /// named explicitly; `SELECT * FROM *` on the server would leave event tables out.
    pub fn subscribe_to_all_tables(&self) -> Result<SubscriptionHandle, TidingsError> {
        self.subscription_builder().subscribe_to_all_tables()
    }

    fn all_table_queries(&self) -> Vec<String> {
        let schema = self.inner.link.schema();
        schema
            .tables()
            .iter()
            .filter(|t| t.access == tidings_engine::Access::Public || self.owner_hint())
            .filter(|t| self.protocol() == Protocol::V2 || !t.is_event)
            .map(|t| format!("SELECT * FROM \"{}\"", t.name))
            .collect()
    }

    fn owner_hint(&self) -> bool {
        self.identity() == Identity::ZERO
    }

    /// Runs `query` once against committed state; `then` receives the rows.
    pub fn one_off_query(
        &self,
        query: &str,
        then: impl FnOnce(OneOffRows) + Send + 'static,
    ) -> Result<RequestId, TidingsError> {
        let request_id = self.request_id();
        self.inner
            .one_offs
            .lock()
            .insert(request_id, Box::new(then));
        self.send(ClientMessage::OneOffQuery {
            request_id,
            query: query.into(),
        })?;
        Ok(request_id)
    }

    /// The typed view of the table of `T` in the cache.
    pub fn table<T: tidings_engine::TableType + 'static>(&self) -> ClientTable<T> {
        ClientTable::new(self.clone())
    }

    /// Rows of `table` in the cache (dynamic API).
    pub fn rows(&self, table: &str) -> Vec<Row> {
        self.inner.cache.read().rows(table)
    }

    /// Number of rows of `table` in the cache (0 for event tables).
    pub fn count(&self, table: &str) -> usize {
        self.inner.cache.read().count(table)
    }

    pub(crate) fn callbacks(
        &self,
    ) -> parking_lot::MutexGuard<'_, HashMap<Arc<str>, TableCallbacks>> {
        self.inner.callbacks.lock()
    }

    pub(crate) fn next_callback_id(&self) -> CallbackId {
        CallbackId(self.inner.next_callback.fetch_add(1, Ordering::Relaxed))
    }

    /// Processes every message already queued; returns how many. A connection made
    /// through an [`Inbox`] processes the whole inbox (every connection on it).
    pub fn frame_tick(&self) -> usize {
        if let Some(inbox) = &self.inner.inbox {
            return inbox.frame_tick();
        }
        let queue = self.inner.link.queue();
        let mut n = 0;
        while let Some(env) = queue.try_pop() {
            self.process(env, &queue, &mut RowPool::alone());
            n += 1;
        }
        n
    }

    /// Processes at most one message, waiting up to `timeout`; whether one was processed.
    /// A connection made through an [`Inbox`] processes the inbox's next item.
    pub fn advance_one_message(&self, timeout: Duration) -> bool {
        if let Some(inbox) = &self.inner.inbox {
            return inbox.advance_one_message(timeout);
        }
        let queue = self.inner.link.queue();
        match queue.pop_timeout(timeout) {
            Some(env) => {
                self.process(env, &queue, &mut RowPool::alone());
                true
            }
            None => false,
        }
    }

    /// Processes messages until `done(self)` holds or `timeout` passes; whether it held.
    pub fn run_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&DbConnection) -> bool,
    ) -> bool {
        drive_until(
            timeout,
            || done(self),
            |left| {
                // A closed, drained queue brings nothing more: waiting out the deadline
                // on it would spin.
                self.advance_one_message(left)
                    || !(self.inner.link.queue().is_closed() && self.inner.link.queue().is_empty())
            },
        )
    }

    /// Processes messages on a thread of its own until the connection ends (a
    /// reconnect made before it noticed keeps it going on the new socket).
    pub fn run_threaded(&self) -> std::thread::JoinHandle<()> {
        let conn = self.clone();
        std::thread::spawn(move || {
            loop {
                let queue = conn.inner.link.queue();
                if queue.is_closed() && queue.is_empty() {
                    return;
                }
                drop(queue);
                conn.advance_one_message(Duration::from_millis(100));
            }
        })
    }

    /// Disconnects: the server forgets this connection's query sets. The cache keeps
    /// its rows; a remote connection may [`DbConnection::reconnect`] later.
    pub fn disconnect(&self) {
        if let Some(inbox) = &self.inner.inbox {
            inbox.forget(self.connection_id());
        }
        self.inner.link.close();
    }

    /// The inbox this connection is delivered through, if it was made by one.
    pub fn inbox(&self) -> Option<&Inbox> {
        self.inner.inbox.as_ref()
    }

    /// Reconnects a remote connection with its token: same identity, every query set
    /// sent again, the cache brought to the new snapshots (see [`remote`]). Returns once
    /// the new socket's `InitialConnection` arrived; the re-applied sets' snapshots are
    /// processed like any message. Reducer calls and one-off queries still unanswered
    /// get an error (their callbacks run when the next messages are processed).
    pub fn reconnect(&self) -> Result<(), ConnectError> {
        let Some(remote) = self.inner.link.remote() else {
            return Err(ConnectError::InProcess);
        };
        let ended = remote.reconnect(|| self.request_id())?;
        *self.inner.disconnected.lock() = None;
        let queue = remote.queue();
        let why = "the connection was replaced before the result arrived";
        let calls: Vec<RequestId> = self.inner.calls.lock().keys().copied().collect();
        for request_id in calls {
            queue.push(Envelope::now(ServerMessage::ReducerResult {
                request_id,
                tx_offset: None,
                timestamp: Timestamp::now(),
                outcome: crate::messages::ReducerOutcome::InternalError(format!(
                    "no result: {why}; the call may have committed"
                )),
            }));
        }
        let one_offs: Vec<RequestId> = self.inner.one_offs.lock().keys().copied().collect();
        for request_id in one_offs {
            queue.push(Envelope::now(ServerMessage::OneOffQueryResult {
                request_id,
                result: Err(format!("no result: {why}")),
            }));
        }
        for query_set_id in ended {
            queue.push(Envelope::now(ServerMessage::UnsubscribeApplied {
                request_id: 0,
                query_set_id,
                tx_offset: self.last_offset(),
                tables: None,
            }));
        }
        Ok(())
    }
}
