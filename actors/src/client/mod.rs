//! The client SDK, in process.
//!
//! A [`DbConnection`] sends requests into Tidings and receives server messages on its
//! own queue. Messages are processed, and callbacks run, on whichever application thread
//! calls [`DbConnection::frame_tick`], [`DbConnection::run_until`] or
//! [`DbConnection::run_threaded`], never on an engine thread. Each message is applied to
//! the cache as a whole before any of its callbacks runs, and callbacks run without the
//! cache locked, so they may read it (`count()`, `iter()`, `find()`).
//!
//! A reducer call's result comes back through [`DbConnection::reducer_then`]'s callback,
//! keyed by the call's own request id (ids are unique per connection and never 0).

pub mod cache;
mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tidings_engine::{Identity, Row, Timestamp, TxOffset};

pub use table::{CallbackId, ClientTable};

use crate::messages::{
    ClientMessage, ConnectionId, Envelope, OneOffRows, Protocol, QuerySetId, ReducerOutcome,
    ReducerStatus, RequestId, ServerMessage, TableUpdate,
};
use crate::module::{ReducerError, encode_args};
use crate::queue::QueueLimits;
use crate::session::Session;
use crate::system::TidingsError;
use cache::{ClientCache, TableChanges};

/// Options for [`Tidings::connect_with`].
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
    /// This connection's own reducer call.
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
    session: Session,
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

/// An in-process client connection. Cheap to clone.
#[derive(Clone)]
pub struct DbConnection {
    inner: Arc<ConnInner>,
}

impl DbConnection {
    pub(crate) fn new(session: Session) -> Self {
        let cache = ClientCache::new(&session.tidings().datastore().schema());
        DbConnection {
            inner: Arc::new(ConnInner {
                session,
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
        self.inner.session.identity()
    }

    /// This connection's id.
    pub fn connection_id(&self) -> ConnectionId {
        self.inner.session.id()
    }

    /// The protocol this connection speaks.
    pub fn protocol(&self) -> Protocol {
        self.inner.session.protocol()
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
        self.inner.session.send(message)
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
        if let Err(e) = self.inner.session.send(ClientMessage::CallReducer {
            request_id,
            reducer: reducer.into(),
            args,
        }) {
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
        let schema = self.inner.session.tidings().datastore().schema();
        schema
            .tables()
            .iter()
            .filter(|t| t.access == tidings_engine::Access::Public || self.owner_hint())
            .filter(|t| self.inner.session.protocol() == Protocol::V2 || !t.is_event)
            .map(|t| format!("SELECT * FROM \"{}\"", t.name))
            .collect()
    }

    fn owner_hint(&self) -> bool {
        self.inner.session.identity() == Identity::ZERO
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

    /// Processes every message already queued; returns how many.
    pub fn frame_tick(&self) -> usize {
        let mut n = 0;
        while let Some(env) = self.inner.session.queue().try_pop() {
            self.process(env);
            n += 1;
        }
        n
    }

    /// Processes at most one message, waiting up to `timeout`; whether one was processed.
    pub fn advance_one_message(&self, timeout: Duration) -> bool {
        match self.inner.session.queue().pop_timeout(timeout) {
            Some(env) => {
                self.process(env);
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
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return done(self);
            }
            self.advance_one_message(left.min(Duration::from_millis(50)));
        }
    }

    /// Processes messages on a thread of its own until the connection ends.
    pub fn run_threaded(&self) -> std::thread::JoinHandle<()> {
        let conn = self.clone();
        std::thread::spawn(move || {
            while !conn.inner.session.queue().is_closed() || !conn.inner.session.queue().is_empty()
            {
                conn.advance_one_message(Duration::from_millis(100));
            }
        })
    }

    /// Disconnects: the server forgets this connection's query sets.
    pub fn disconnect(&self) {
        self.inner.session.close();
    }

    fn ctx(&self, event: Event) -> EventContext {
        EventContext {
            event,
            conn: self.clone(),
        }
    }

    fn process(&self, env: Envelope) {
        if let Some(d) = &env.durable
            && let Err(e) = d.wait()
        {
            tracing::error!(error = %e, "a commit reported to this client did not become durable");
        }
        match &*env.message {
            ServerMessage::InitialConnection { .. } => {}
            ServerMessage::SubscribeApplied {
                query_set_id,
                tables,
                ..
            } => {
                let changes = self
                    .inner
                    .cache
                    .write()
                    .apply(tables.iter().map(|t| (*query_set_id, t)));
                let ctx = self.ctx(Event::SubscribeApplied {
                    query_set_id: *query_set_id,
                });
                self.fire(&ctx, changes);
                let cb = self
                    .inner
                    .sets
                    .lock()
                    .get_mut(query_set_id)
                    .and_then(|p| p.on_applied.take());
                if let Some(cb) = cb {
                    cb(&ctx);
                }
            }
            ServerMessage::UnsubscribeApplied { query_set_id, .. } => {
                let changes = self.inner.cache.write().remove_set(*query_set_id);
                let ctx = self.ctx(Event::UnsubscribeApplied {
                    query_set_id: *query_set_id,
                });
                self.fire(&ctx, changes);
                let cb = {
                    let mut sets = self.inner.sets.lock();
                    let cb = sets
                        .get_mut(query_set_id)
                        .and_then(|p| p.on_unsubscribed.take());
                    // A v1 legacy resubscribe reuses the id: keep its pending callbacks.
                    if sets
                        .get(query_set_id)
                        .is_some_and(|p| p.on_applied.is_none() && p.on_error.is_none())
                    {
                        sets.remove(query_set_id);
                    }
                    cb
                };
                if let Some(cb) = cb {
                    cb(&ctx);
                }
            }
            ServerMessage::SubscriptionError {
                request_id,
                query_set_id,
                error,
            } => {
                let ctx = self.ctx(Event::SubscriptionError {
                    query_set_id: *query_set_id,
                    error: error.clone(),
                });
                let pending = query_set_id.and_then(|qs| {
                    self.inner
                        .sets
                        .lock()
                        .get_mut(&qs)
                        .and_then(|p| p.on_error.take())
                });
                if request_id.is_none()
                    && let Some(qs) = query_set_id
                {
                    // The server ended a set that was in force: drop exactly its rows.
                    let changes = self.inner.cache.write().remove_set(*qs);
                    self.fire(&ctx, changes);
                }
                // A rejected request changed nothing: any earlier set stays in force.
                match pending {
                    Some(cb) => cb(&ctx, error),
                    None => tracing::warn!(%error, "subscription error"),
                }
                self.inner.errors.lock().push(error.clone());
            }
            ServerMessage::TransactionUpdate(u) => {
                self.saw_offset(u.tx_offset);
                let changes = self.apply_sets(&u.query_sets);
                let event = match (&u.reducer_event, self.inner.session.protocol()) {
                    (Some(ev), Protocol::V1)
                        if ev.caller == self.inner.session.identity() && !ev.reducer.is_empty() =>
                    {
                        Event::Reducer {
                            request_id: 0,
                            reducer: ev.reducer.clone(),
                            timestamp: u.timestamp,
                            status: ev.status.clone(),
                        }
                    }
                    _ => Event::Transaction {
                        offset: u.tx_offset,
                        timestamp: u.timestamp,
                    },
                };
                let ctx = self.ctx(event);
                self.fire(&ctx, changes);
            }
            ServerMessage::ReducerResult {
                request_id,
                timestamp,
                outcome,
                tx_offset,
            } => {
                if let Some(o) = tx_offset {
                    self.saw_offset(*o);
                }
                let pending = self.inner.calls.lock().remove(request_id);
                let reducer = pending
                    .as_ref()
                    .map(|p| p.reducer.clone())
                    .unwrap_or_default();
                let (status, result, changes) = match outcome {
                    ReducerOutcome::Ok { value, update } => (
                        ReducerStatus::Committed(value.clone()),
                        Ok(value.clone()),
                        self.apply_sets(&update.query_sets),
                    ),
                    ReducerOutcome::Err(e) => (
                        ReducerStatus::Failed(e.clone()),
                        Err(ReducerError::User(e.clone())),
                        Vec::new(),
                    ),
                    ReducerOutcome::InternalError(e) => (
                        ReducerStatus::InternalError(e.clone()),
                        Err(ReducerError::Internal(e.clone())),
                        Vec::new(),
                    ),
                };
                let ctx = self.ctx(Event::Reducer {
                    request_id: *request_id,
                    reducer,
                    timestamp: *timestamp,
                    status,
                });
                self.fire(&ctx, changes);
                match pending {
                    Some(PendingCall {
                        then: Some(then), ..
                    }) => then(&ctx, result),
                    Some(_) => {}
                    None => tracing::warn!(
                        request_id,
                        "reducer result for a request this connection did not make"
                    ),
                }
            }
            ServerMessage::OneOffQueryResult { request_id, result } => {
                if let Some(cb) = self.inner.one_offs.lock().remove(request_id) {
                    cb(result.clone());
                }
            }
            ServerMessage::Disconnected { reason, .. } => {
                *self.inner.disconnected.lock() = Some(reason.clone());
                self.inner.session.queue().close();
            }
        }
    }

    fn apply_sets(
        &self,
        sets: &[crate::messages::QuerySetUpdate],
    ) -> Vec<(Arc<str>, TableChanges)> {
        let pairs: Vec<(QuerySetId, &TableUpdate)> = sets
            .iter()
            .flat_map(|s| s.tables.iter().map(move |t| (s.query_set_id, t)))
            .collect();
        self.inner.cache.write().apply(pairs)
    }

    /// Runs the callbacks for `changes`, with the cache unlocked.
    fn fire(&self, ctx: &EventContext, changes: Vec<(Arc<str>, TableChanges)>) {
        for (table, ch) in changes {
            let (ins, del, upd) = {
                let cbs = self.inner.callbacks.lock();
                match cbs.get(&table) {
                    Some(c) => (
                        c.on_insert
                            .iter()
                            .map(|(_, f)| f.clone())
                            .collect::<Vec<_>>(),
                        c.on_delete
                            .iter()
                            .map(|(_, f)| f.clone())
                            .collect::<Vec<_>>(),
                        c.on_update
                            .iter()
                            .map(|(_, f)| f.clone())
                            .collect::<Vec<_>>(),
                    ),
                    None => continue,
                }
            };
            for r in &ch.deletes {
                for f in &del {
                    (f.lock())(ctx, r);
                }
            }
            for (old, new) in &ch.updates {
                for f in &upd {
                    (f.lock())(ctx, old, new);
                }
            }
            for r in &ch.inserts {
                for f in &ins {
                    (f.lock())(ctx, r);
                }
            }
            // An event row is gone at the end of its transaction: on_delete right after.
            for e in &ch.events {
                for f in &ins {
                    (f.lock())(ctx, e);
                }
                for f in &del {
                    (f.lock())(ctx, e);
                }
            }
        }
    }
}

/// Builds a subscription with its callbacks.
pub struct SubscriptionBuilder {
    conn: DbConnection,
    pending: PendingSet,
}

impl SubscriptionBuilder {
    /// Runs once the initial rows are in the cache.
    pub fn on_applied(mut self, f: impl FnOnce(&EventContext) + Send + 'static) -> Self {
        self.pending.on_applied = Some(Box::new(f));
        self
    }

    /// Runs if the subscription is rejected.
    pub fn on_error(mut self, f: impl FnOnce(&EventContext, &str) + Send + 'static) -> Self {
        self.pending.on_error = Some(Box::new(f));
        self
    }

    /// Sends the subscription as one new query set (v1: `SubscribeMulti`).
    pub fn subscribe<S: AsRef<str>>(
        self,
        queries: &[S],
    ) -> Result<SubscriptionHandle, TidingsError> {
        let queries: Vec<String> = queries.iter().map(|q| q.as_ref().to_string()).collect();
        let protocol = self.conn.inner.session.protocol();
        self.send(None, move |request_id, query_set_id| match protocol {
            Protocol::V2 => ClientMessage::Subscribe {
                request_id,
                query_set_id,
                queries,
            },
            Protocol::V1 => ClientMessage::V1SubscribeMulti {
                request_id,
                query_id: query_set_id,
                queries,
            },
        })
    }

    /// Subscribes to every readable table by name (v2: event tables included).
    pub fn subscribe_to_all_tables(self) -> Result<SubscriptionHandle, TidingsError> {
        let queries = self.conn.all_table_queries();
        self.subscribe(&queries)
    }

    /// v1 `SubscribeSingle`: one query under a new id.
    pub fn subscribe_v1_single(self, query: &str) -> Result<SubscriptionHandle, TidingsError> {
        let query = query.to_string();
        self.send(None, move |request_id, query_id| {
            ClientMessage::V1SubscribeSingle {
                request_id,
                query_id,
                query,
            }
        })
    }

    /// v1 legacy `Subscribe`: atomically replaces the legacy subscription.
    pub fn subscribe_v1_legacy<S: AsRef<str>>(
        self,
        queries: &[S],
    ) -> Result<SubscriptionHandle, TidingsError> {
        let queries: Vec<String> = queries.iter().map(|q| q.as_ref().to_string()).collect();
        self.send(
            Some(crate::messages::V1_LEGACY_QUERY_SET),
            move |request_id, _| ClientMessage::V1Subscribe {
                request_id,
                queries,
            },
        )
    }

    fn send(
        self,
        fixed_set: Option<QuerySetId>,
        message: impl FnOnce(RequestId, QuerySetId) -> ClientMessage,
    ) -> Result<SubscriptionHandle, TidingsError> {
        let conn = self.conn;
        let query_set_id =
            fixed_set.unwrap_or_else(|| conn.inner.next_set.fetch_add(1, Ordering::Relaxed));
        let request_id = conn.request_id();
        conn.inner.sets.lock().insert(query_set_id, self.pending);
        let message = message(request_id, query_set_id);
        if let Err(e) = conn.send(message) {
            conn.inner.sets.lock().remove(&query_set_id);
            return Err(e);
        }
        Ok(SubscriptionHandle { conn, query_set_id })
    }
}

/// A live query set.
pub struct SubscriptionHandle {
    conn: DbConnection,
    query_set_id: QuerySetId,
}

impl SubscriptionHandle {
    /// The query set's id.
    pub fn query_set_id(&self) -> QuerySetId {
        self.query_set_id
    }

    /// Ends the query set; `then` runs once its rows are gone from the cache.
    pub fn unsubscribe_then(
        self,
        then: impl FnOnce(&EventContext) + Send + 'static,
    ) -> Result<(), TidingsError> {
        self.conn
            .inner
            .sets
            .lock()
            .entry(self.query_set_id)
            .or_default()
            .on_unsubscribed = Some(Box::new(then));
        let request_id = self.conn.request_id();
        let message = match self.conn.inner.session.protocol() {
            Protocol::V2 => ClientMessage::Unsubscribe {
                request_id,
                query_set_id: self.query_set_id,
                send_dropped_rows: false,
            },
            Protocol::V1 => ClientMessage::V1Unsubscribe {
                request_id,
                query_id: self.query_set_id,
            },
        };
        self.conn.send(message)
    }
}
