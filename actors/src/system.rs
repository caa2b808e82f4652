//! Starting Tidings inside an application: the actor system and the handle.
//!
//! When the application is not already running an actix `System`, Tidings starts its own
//! on a thread of its own and returns a handle that is `Send + Sync + Clone`, so any
//! thread may call reducers or connect clients. Placement follows the design: the
//! transaction actor alone on its own arbiter (thread), a pool of arbiters
//! (default: one per core) each running a hub, and the subscription manager on an arbiter
//! of its own (DESIGN suggested a pool arbiter on 2 cores; the fan-out benchmark showed
//! the manager then waits behind its hub's appends, so its own thread is the default).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use actix::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;
use thiserror::Error;
use tidings_engine::commitlog::LogOptions;
use tidings_engine::{Datastore, Identity, OpenError, OpenOptions, SchemaError};

use crate::client::{ConnectOptions, DbConnection, Inbox};
use crate::hub::{Hub, HubSetManager};
use crate::inbox::{InboxQueue, Sink};
use crate::manager::{ManagerRequest, SharedRegistry, SubscriptionManager};
use crate::messages::{Barrier, CallReducerFlags, ConnectionId};
use crate::metrics::Metrics;
use crate::module::{Module, encode_args};
use crate::queue::{QueueLimits, SessionQueue};
use crate::session::Session;
use crate::transaction::{
    CallReducer, CallResult, DmlDone, Forward, InFlight, RunDml, TransactionActor,
};

/// Starting or using Tidings failed.
#[derive(Debug, Error)]
pub enum TidingsError {
    /// The module's tables do not form a valid schema.
    #[error("invalid module schema")]
    Schema(#[from] SchemaError),
    /// A visibility rule is invalid.
    #[error("invalid visibility rule")]
    Rules(#[from] tidings_query::rls::RlsError),
    /// The data directory could not be opened.
    #[error("cannot open the data directory")]
    Open(#[from] OpenError),
    /// The transaction queue is full; retry later.
    #[error("the transaction queue is full ({0} requests in flight)")]
    Overloaded(usize),
    /// This connection already has its most requests waiting.
    #[error(
        "this connection has {0} requests in flight, the most allowed; wait for answers before sending more"
    )]
    TooManyInFlight(usize),
    /// The actor system has stopped.
    #[error("Tidings has stopped")]
    Stopped,
    /// Arguments that cannot be encoded.
    #[error("reducer arguments do not encode")]
    Args(#[from] rmp_serde::encode::Error),
    /// The actor system could not start.
    #[error("the actor system did not start: {0}")]
    Start(String),
    /// A remote connection could not send the request.
    #[error("the request was not sent")]
    Remote(#[from] crate::client::SendError),
}

/// Where committed state lives.
#[derive(Clone, Debug)]
enum Storage {
    InMemory,
    Dir(PathBuf, LogOptions),
}

/// Configures and starts Tidings.
pub struct TidingsBuilder {
    module: Module,
    storage: Storage,
    arbiters: usize,
    queue_limits: QueueLimits,
    confirmed_reads: bool,
    tx_queue_max: usize,
    client_in_flight_max: usize,
    manager_on_pool: bool,
}

impl TidingsBuilder {
    /// Runs the subscription manager on the first pool arbiter instead of its own
    /// (default: its own; see `start_actors` for the measurement behind the choice).
    pub fn manager_on_pool(mut self, on: bool) -> Self {
        self.manager_on_pool = on;
        self
    }

    /// Keeps everything in memory (the default).
    pub fn in_memory(mut self) -> Self {
        self.storage = Storage::InMemory;
        self
    }

    /// Keeps committed state in the data directory `dir` (created if absent).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.storage = Storage::Dir(dir.into(), LogOptions::default());
        self
    }

    /// Keeps committed state in `dir` with explicit log options.
    pub fn data_dir_with(mut self, dir: impl Into<PathBuf>, log: LogOptions) -> Self {
        self.storage = Storage::Dir(dir.into(), log);
        self
    }

    /// Number of pool arbiters (hubs); default: the number of cores.
    pub fn arbiters(mut self, n: usize) -> Self {
        self.arbiters = n.max(1);
        self
    }

    /// Bounds of each session's outbound queue.
    pub fn queue_limits(mut self, limits: QueueLimits) -> Self {
        self.queue_limits = limits;
        self
    }

    /// Sends subscriber updates only once their commit is durable.
    pub fn confirmed_reads(mut self, on: bool) -> Self {
        self.confirmed_reads = on;
        self
    }

    /// Most requests queued for the transaction actor before `Overloaded`.
    pub fn tx_queue_max(mut self, n: usize) -> Self {
        self.tx_queue_max = n.max(1);
        self
    }

    /// Most requests one connection may have waiting in the transaction actor's queue
    /// (default 256); past it, that connection's requests are refused with
    /// [`TidingsError::TooManyInFlight`], so one client cannot fill the queue all share.
    pub fn client_in_flight_max(mut self, n: usize) -> Self {
        self.client_in_flight_max = n.max(1);
        self
    }

    /// Opens the storage and starts the actors.
    pub fn start(self) -> Result<Tidings, TidingsError> {
        let schema = self.module.schema()?;
        let ds = match &self.storage {
            Storage::InMemory => Datastore::in_memory(schema),
            Storage::Dir(dir, log) => {
                Datastore::open(dir, schema, OpenOptions { log: log.clone() })?
            }
        };
        let rules = Arc::new(tidings_query::rls::RlsRules::new(
            &ds.schema(),
            self.module
                .rules()
                .iter()
                .map(|(t, sql)| tidings_query::rls::Rule::new(t, sql)),
        )?);
        let rules_handle = rules.clone();
        let metrics = Arc::new(Metrics::default());
        let module = Arc::new(self.module);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let parts = {
            let (ds, module, metrics, in_flight, stopping) = (
                ds.clone(),
                module.clone(),
                metrics.clone(),
                in_flight.clone(),
                stopping.clone(),
            );
            let (arbiters, confirmed_reads) = (self.arbiters, self.confirmed_reads);
            let manager_on_pool = self.manager_on_pool;
            move || {
                start_actors(
                    ds,
                    module,
                    metrics,
                    in_flight,
                    stopping,
                    rules,
                    Placement {
                        arbiters,
                        confirmed_reads,
                        manager_on_pool,
                    },
                )
            }
        };
        let (actors, own_system) = if actix_rt::System::try_current().is_some() {
            (parts()?, None)
        } else {
            let (send, recv) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("tidings-system".into())
                .spawn(move || {
                    let sys = actix_rt::System::new();
                    sys.block_on(async move {
                        let _ = send.send((parts(), actix_rt::System::current()));
                    });
                    if let Err(e) = sys.run() {
                        tracing::error!(error = %e, "actor system ended with an error");
                    }
                })
                .map_err(|e| TidingsError::Start(e.to_string()))?;
            let (actors, system) = recv
                .recv()
                .map_err(|e| TidingsError::Start(e.to_string()))?;
            (actors?, Some((system, thread)))
        };
        Ok(Tidings {
            inner: Arc::new(Inner {
                tx: actors.tx,
                manager: actors.manager,
                hubs: actors.hubs,
                stopping,
                arbiters: Mutex::new(actors.arbiters),
                ds,
                module,
                metrics,
                in_flight,
                tx_queue_max: self.tx_queue_max,
                client_in_flight_max: self.client_in_flight_max,
                queue_limits: self.queue_limits,
                next_connection: AtomicU64::new(1),
                next_inbox: AtomicU64::new(0),
                rules: rules_handle,
                own_system: Mutex::new(own_system),
            }),
        })
    }
}

/// Where the actors run, and how the manager delivers.
struct Placement {
    arbiters: usize,
    confirmed_reads: bool,
    manager_on_pool: bool,
}

struct Actors {
    tx: Addr<TransactionActor>,
    manager: Addr<SubscriptionManager>,
    hubs: Vec<Addr<Hub>>,
    arbiters: Vec<Arbiter>,
}

fn start_actors(
    ds: Datastore,
    module: Arc<Module>,
    metrics: Arc<Metrics>,
    in_flight: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    rules: Arc<tidings_query::rls::RlsRules>,
    placement: Placement,
) -> Result<Actors, TidingsError> {
    let Placement {
        arbiters,
        confirmed_reads,
        manager_on_pool,
    } = placement;
    let pool: Vec<Arbiter> = (0..arbiters).map(|_| Arbiter::new()).collect();
    let hubs: Vec<Addr<Hub>> = pool
        .iter()
        .map(|a| {
            let m = metrics.clone();
            Hub::start_in_arbiter(&a.handle(), move |_| Hub::new(m))
        })
        .collect();
    // Measured (examples/fanout, N = 10,000 same query, 2 cores), when the manager still
    // evaluated commits behind a commit gate: on its own arbiter it no longer queued
    // behind hub 0's appends and sustained commits/s rose ~24x. It still routes every
    // commit's updates, so it keeps its own arbiter.
    let own = (!manager_on_pool).then(Arbiter::new);
    let registry = SharedRegistry::default();
    let manager = {
        let (ds, hubs, m, r) = (ds.clone(), hubs.clone(), metrics.clone(), registry.clone());
        let home = own.as_ref().unwrap_or(&pool[0]).handle();
        SubscriptionManager::start_in_arbiter(&home, move |_| {
            SubscriptionManager::new(ds, r, hubs, m, confirmed_reads, rules)
        })
    };
    for h in &hubs {
        h.do_send(HubSetManager(manager.clone().recipient()));
    }
    let dispatch = Arbiter::new();
    let tx = {
        let manager = manager.clone();
        TransactionActor::start_in_arbiter(&dispatch.handle(), move |_| {
            TransactionActor::new(ds, module, manager, registry, in_flight, metrics, stopping)
        })
    };
    let mut pool = pool;
    pool.push(dispatch);
    pool.extend(own);
    Ok(Actors {
        tx,
        manager,
        hubs,
        arbiters: pool,
    })
}

struct Inner {
    tx: Addr<TransactionActor>,
    manager: Addr<SubscriptionManager>,
    hubs: Vec<Addr<Hub>>,
    /// Set by [`Tidings::shutdown_gracefully`]: no new requests are accepted.
    stopping: Arc<AtomicBool>,
    arbiters: Mutex<Vec<Arbiter>>,
    ds: Datastore,
    module: Arc<Module>,
    metrics: Arc<Metrics>,
    in_flight: Arc<AtomicUsize>,
    tx_queue_max: usize,
    client_in_flight_max: usize,
    queue_limits: QueueLimits,
    next_connection: AtomicU64,
    next_inbox: AtomicU64,
    rules: Arc<tidings_query::rls::RlsRules>,
    own_system: Mutex<Option<(actix_rt::System, std::thread::JoinHandle<()>)>>,
}

/// A running Tidings: call reducers, connect clients. Cheap to clone; any thread.
#[derive(Clone)]
pub struct Tidings {
    inner: Arc<Inner>,
}

impl Tidings {
    /// Starts configuring Tidings for `module`.
    pub fn builder(module: Module) -> TidingsBuilder {
        TidingsBuilder {
            module,
            storage: Storage::InMemory,
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_limits: QueueLimits::default(),
            confirmed_reads: false,
            tx_queue_max: 65_536,
            client_in_flight_max: 256,
            manager_on_pool: false,
        }
    }

    /// The datastore (reads; writes go through reducers).
    pub fn datastore(&self) -> &Datastore {
        &self.inner.ds
    }

    /// The module.
    pub fn module(&self) -> &Arc<Module> {
        &self.inner.module
    }

    /// The visibility rules in force.
    pub fn rules(&self) -> &tidings_query::rls::RlsRules {
        &self.inner.rules
    }

    /// Engine metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Requests queued for the transaction actor now (a gauge).
    pub fn tx_queue_len(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Reserves a place in the transaction actor's queue.
    fn reserve(&self) -> Result<(), TidingsError> {
        if self.inner.stopping.load(Ordering::Acquire) {
            return Err(TidingsError::Stopped);
        }
        let n = self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        if n >= self.inner.tx_queue_max {
            self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(TidingsError::Overloaded(n));
        }
        Ok(())
    }

    /// Calls `reducer` as the application (identity zero); the reply comes back directly.
    pub async fn call<A: Serialize>(
        &self,
        reducer: &str,
        args: &A,
    ) -> Result<CallResult, TidingsError> {
        self.call_raw(reducer, encode_args(args)?, Identity::ZERO)
            .await
    }

    /// Calls `reducer` with MessagePack-encoded positional `args` as `caller`.
    pub async fn call_raw(
        &self,
        reducer: &str,
        args: Vec<u8>,
        caller: Identity,
    ) -> Result<CallResult, TidingsError> {
        self.reserve()?;
        let msg = CallReducer {
            caller,
            connection: None,
            request_id: 0,
            reducer: reducer.into(),
            args,
            flags: CallReducerFlags::FullUpdate,
            ticket: None,
        };
        self.inner
            .tx
            .send(msg)
            .await
            .map_err(|_| TidingsError::Stopped)
    }

    /// Runs an `INSERT`, `UPDATE` or `DELETE` as the owner (identity zero), as one
    /// transaction in order with every reducer call; subscribers see its commit.
    pub async fn execute_dml(
        &self,
        sql: &str,
    ) -> Result<Result<DmlDone, tidings_query::dml::DmlError>, TidingsError> {
        self.reserve()?;
        self.inner
            .tx
            .send(RunDml {
                caller: Identity::ZERO,
                sql: sql.into(),
            })
            .await
            .map_err(|_| TidingsError::Stopped)
    }

    /// [`Tidings::call`] for threads that are not async.
    pub fn call_blocking<A: Serialize>(
        &self,
        reducer: &str,
        args: &A,
    ) -> Result<CallResult, TidingsError> {
        futures::executor::block_on(self.call(reducer, args))
    }

    /// Connects an in-process client with default options (a fresh identity, v2).
    pub fn connect(&self) -> DbConnection {
        self.connect_with(ConnectOptions::default())
    }

    /// Connects an in-process client.
    pub fn connect_with(&self, opts: ConnectOptions) -> DbConnection {
        DbConnection::new(self.open_session(opts))
    }

    /// An inbox for one application thread: connections made through it are all
    /// delivered through it, one message per commit (see [`Inbox`]). Its bound is the
    /// server's queue bound.
    pub fn inbox(&self) -> Inbox {
        self.inbox_with(self.inner.queue_limits)
    }

    /// An inbox with its own bound.
    pub fn inbox_with(&self, limits: QueueLimits) -> Inbox {
        let id = self.inner.next_inbox.fetch_add(1, Ordering::Relaxed);
        // Its connections' sessions all live on the first hub (see the manager's
        // `connect`).
        Inbox::new(self.clone(), Arc::new(InboxQueue::new(id, limits)))
    }

    /// Opens a raw session (for transports): a connection id, a queue, a request path.
    pub fn open_session(&self, opts: ConnectOptions) -> Session {
        self.open_session_on(opts, None)
    }

    /// Opens a raw session whose messages go to `inbox` when given, else to its queue.
    pub(crate) fn open_session_on(
        &self,
        opts: ConnectOptions,
        inbox: Option<Arc<InboxQueue>>,
    ) -> Session {
        let id = ConnectionId(self.inner.next_connection.fetch_add(1, Ordering::Relaxed));
        let identity = opts
            .identity
            .unwrap_or_else(|| Identity::from_u64(1 << 32 | id.0));
        let queue = Arc::new(SessionQueue::new(
            opts.queue_limits.unwrap_or(self.inner.queue_limits),
        ));
        let sink = match inbox {
            Some(inbox) => Sink::Inbox(inbox, id),
            None => Sink::Queue(queue.clone()),
        };
        self.forward_unchecked(ManagerRequest::Connect {
            connection: id,
            identity,
            is_owner: opts.owner,
            protocol: opts.protocol,
            sink,
            token: opts.token,
        });
        Session::new(
            self.clone(),
            id,
            identity,
            opts.protocol,
            queue,
            self.inner.client_in_flight_max,
        )
    }

    /// Sends a connection's request into the transaction actor's FIFO.
    pub(crate) fn forward(
        &self,
        req: ManagerRequest,
        ticket: InFlight,
    ) -> Result<(), TidingsError> {
        self.reserve()?;
        self.inner.tx.do_send(Forward(req, Some(ticket)));
        Ok(())
    }

    /// Connects and disconnects must never be refused, or the manager's view would drift.
    pub(crate) fn forward_unchecked(&self, req: ManagerRequest) {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        self.inner.tx.do_send(Forward(req, None));
    }

    /// Sends a connection's reducer call (with v1 `flags`).
    pub(crate) fn call_from(&self, call: CallReducer) -> Result<(), TidingsError> {
        self.reserve()?;
        self.inner.tx.do_send(call);
        Ok(())
    }

    /// The subscription manager's address (for transports).
    pub fn manager(&self) -> &Addr<SubscriptionManager> {
        &self.inner.manager
    }

    /// Shuts down gracefully, in this order: new requests are refused
    /// ([`TidingsError::Stopped`]); the transaction in progress finishes; calls still
    /// queued are answered with an error instead of running; every session gets what was
    /// already queued for it, then `Disconnected { reason, going_away: true }` (a
    /// WebSocket closes with 1001 and `reason`); the log is flushed. Resolves when all of
    /// that has happened, except the sockets' own flushing, which transports await.
    /// Call [`Tidings::shutdown`] afterwards to stop the actors.
    pub async fn shutdown_gracefully(&self, reason: &str) {
        self.inner.stopping.store(true, Ordering::Release);
        self.forward_unchecked(ManagerRequest::Shutdown {
            reason: reason.to_string(),
        });
        // Each barrier returns once everything sent before it has been handled: first
        // every queued request (and the shutdown notice), then the manager's answers,
        // then the hubs' appends to the session queues.
        let _ = self.inner.tx.send(Barrier).await;
        let _ = self.inner.manager.send(Barrier).await;
        for hub in &self.inner.hubs {
            let _ = hub.send(Barrier).await;
        }
        if let Err(e) = self.inner.ds.flush() {
            tracing::error!(error = %e, "flush at shutdown failed");
        }
    }

    /// Whether [`Tidings::shutdown_gracefully`] has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// Stops the actor system Tidings started (if it started its own) and flushes the log.
    pub fn shutdown(&self) {
        if let Err(e) = self.inner.ds.flush() {
            tracing::error!(error = %e, "flush at shutdown failed");
        }
        for a in self.inner.arbiters.lock().drain(..) {
            a.stop();
        }
        if let Some((system, thread)) = self.inner.own_system.lock().take() {
            system.stop();
            let _ = thread.join();
        }
    }
}
