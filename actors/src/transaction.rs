//! The transaction actor: the only writer.
//!
//! It runs alone on a dedicated arbiter (its own thread), so a reducer runs from begin to
//! commit with no `.await` in between and reducers never interleave. (Not a
//! `SyncArbiter`: its dispatcher lives on the system arbiter, so an application that
//! blocks its own system thread while waiting for a client would stall every call.) Every client
//! request passes through its FIFO, in arrival order: reducer calls are run, while
//! subscribe, unsubscribe and one-off requests are forwarded to the subscription manager
//! in the same stream as the commits, so the manager sees them in exactly the order the
//! client sent them relative to every commit. Right after each merge, and before the
//! next, it evaluates the commit against the manager's registry (the post-state is then
//! exactly the commit's, with no gate; see [`crate::manager::evaluate_commit`]) and hands
//! the updates to the manager to route.
//!
//! A reducer that panics is caught: its transaction is rolled back, the caller gets an
//! internal error, and the actor lives on. The queue is bounded by an in-flight counter
//! that senders check ([`crate::TidingsError::Overloaded`] when full).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix::prelude::*;
use tidings_engine::commitlog::Durable;
use tidings_engine::{Datastore, Identity, Timestamp, TxData, TxMeta, TxOffset};

use tidings_query::Caller;
use tidings_query::dml::{self, DmlError};

use crate::manager::{
    CallInfo, Committed, ManagerRequest, SharedRegistry, SubscriptionManager, evaluate_commit,
};
use crate::messages::{CallReducerFlags, ConnectionId, ReducerStatus, RequestId};
use crate::metrics::Metrics;
use crate::module::{Db, Module, ReducerContext, ReducerError};

/// Runs one reducer. The reply is for direct callers; connections get theirs in order
/// through the subscription manager.
#[derive(Message)]
#[rtype(result = "CallResult")]
pub struct CallReducer {
    /// Who calls.
    pub caller: Identity,
    /// The caller's connection, if the call came through one.
    pub connection: Option<ConnectionId>,
    /// The connection's request id (echoed in its reducer result).
    pub request_id: RequestId,
    /// Reducer name.
    pub reducer: String,
    /// MessagePack array of arguments.
    pub args: Vec<u8>,
    /// Whether the caller hears of a success (v1).
    pub flags: CallReducerFlags,
    /// The calling connection's in-flight ticket, released once the call has run.
    pub ticket: Option<InFlight>,
}

/// What a direct caller learns about its reducer call.
#[derive(Debug, Clone)]
pub struct CallResult {
    /// The MessagePack return value, or why nothing was committed.
    pub outcome: Result<Vec<u8>, ReducerError>,
    /// The commit offset, when something was committed.
    pub tx_offset: Option<TxOffset>,
    /// When the reducer ran.
    pub timestamp: Timestamp,
    /// Resolves once the commit is durable (when a log is attached).
    pub durable: Option<Durable>,
    /// The commit's TxData.
    pub tx_data: Option<Arc<TxData>>,
}

/// Runs the owner's `INSERT`, `UPDATE` or `DELETE` as one transaction; subscribers see
/// it like any reducer's commit (with no reducer named).
#[derive(Message)]
#[rtype(result = "Result<DmlDone, DmlError>")]
pub struct RunDml {
    /// Who runs it (the owner: identity zero).
    pub caller: Identity,
    /// The statement's text; compiled here, against the schema in force when it runs.
    pub sql: String,
}

/// What a statement did.
#[derive(Debug, Clone)]
pub struct DmlDone {
    /// Rows inserted, updated or deleted.
    pub rows_affected: usize,
    /// The commit offset, when something changed.
    pub tx_offset: Option<TxOffset>,
    /// Resolves once the commit is durable (when a log is attached).
    pub durable: Option<Durable>,
}

/// A request the manager handles, routed through this actor's FIFO to keep order, with
/// its connection's in-flight ticket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forward(pub ManagerRequest, pub Option<InFlight>);

/// One request a connection has waiting in this actor's queue. Counted when the
/// connection sends it and released when the request is handled, or dropped unhandled
/// (a stopped actor), so the count can never leak.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Takes a ticket from `counter`, unless `max` are already out.
    pub fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<InFlight> {
        let n = counter.fetch_add(1, Ordering::AcqRel);
        if n >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight(counter.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The transaction actor.
pub struct TransactionActor {
    ds: Datastore,
    module: Arc<Module>,
    manager: Addr<SubscriptionManager>,
    /// The manager's registry: the queries each commit is evaluated for.
    registry: SharedRegistry,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    /// Set by graceful shutdown: queued calls are answered with an error, not run.
    stopping: Arc<AtomicBool>,
}

/// What a call queued behind a shutdown is told.
pub const SHUTTING_DOWN: &str = "the server is shutting down: the call was not run";

impl TransactionActor {
    /// A transaction actor over `ds` running `module`'s reducers.
    pub fn new(
        ds: Datastore,
        module: Arc<Module>,
        manager: Addr<SubscriptionManager>,
        registry: SharedRegistry,
        in_flight: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
        stopping: Arc<AtomicBool>,
    ) -> Self {
        TransactionActor {
            ds,
            module,
            manager,
            registry,
            in_flight,
            metrics,
            stopping,
        }
    }

    /// The updates of every query the just-merged commit `tx` changes.
    fn evaluate(
        &self,
        tx: Option<&TxData>,
    ) -> hashbrown::HashMap<tidings_query::QueryId, crate::messages::TableUpdate> {
        tx.map(|tx| evaluate_commit(&self.ds, &self.registry, &self.metrics, tx))
            .unwrap_or_default()
    }

    /// Runs a reducer to commit or rollback. Plain method: the handler stays thin.
    fn run(&mut self, msg: &CallReducer) -> CallResult {
        let timestamp = Timestamp::now();
        let failed = |e: ReducerError| CallResult {
            outcome: Err(e),
            tx_offset: None,
            timestamp,
            durable: None,
            tx_data: None,
        };
        if self.stopping.load(Ordering::Acquire) {
            return failed(ReducerError::Internal(SHUTTING_DOWN.into()));
        }
        let Some(def) = self.module.reducer_def(&msg.reducer) else {
            return failed(ReducerError::Internal(format!(
                "no reducer named `{}`",
                msg.reducer
            )));
        };
        let mut tx = self.ds.begin_mut_tx();
        tx.set_meta(TxMeta {
            reducer: Some(def.name.clone()),
            caller: msg.caller,
        });
        let run = def.run.clone();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = ReducerContext {
                sender: msg.caller,
                connection_id: msg.connection,
                timestamp,
                db: Db::new(&mut tx),
            };
            run(&mut ctx, &msg.args)
        }));
        let value = match result {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => return failed(e),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".into());
                tracing::warn!(reducer = %msg.reducer, %what, "reducer panicked; rolled back");
                return failed(ReducerError::Internal(format!(
                    "reducer `{}` panicked: {what}",
                    msg.reducer
                )));
            }
        };
        match tx.commit() {
            Ok(commit) => {
                self.metrics
                    .commits
                    .fetch_add(u64::from(commit.tx_data.is_some()), Ordering::Relaxed);
                CallResult {
                    outcome: Ok(value),
                    tx_offset: commit.offset(),
                    timestamp,
                    durable: commit.durable().cloned(),
                    tx_data: commit.tx_data,
                }
            }
            Err(e) => failed(ReducerError::Internal(format!("commit refused: {e}"))),
        }
    }
}

impl Actor for TransactionActor {
    type Context = Context<Self>;
}

impl Handler<CallReducer> for TransactionActor {
    type Result = MessageResult<CallReducer>;

    fn handle(&mut self, mut msg: CallReducer, _: &mut Self::Context) -> Self::Result {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let result = self.run(&msg);
        // Released before anyone can hear the outcome: a client that has its answer may
        // send again at once.
        drop(msg.ticket.take());
        let call = msg.connection.map(|connection| CallInfo {
            connection,
            request_id: msg.request_id,
            reducer: msg.reducer.clone(),
            args: msg.args.clone(),
            caller: msg.caller,
            flags: msg.flags,
            timestamp: result.timestamp,
            status: match &result.outcome {
                Ok(v) => ReducerStatus::Committed(v.clone()),
                Err(ReducerError::User(e)) => ReducerStatus::Failed(e.clone()),
                Err(ReducerError::Internal(e) | ReducerError::Args(e)) => {
                    ReducerStatus::InternalError(e.clone())
                }
            },
        });
        let updates = self.evaluate(result.tx_data.as_deref());
        // A commit that changes nobody's result, made by no connection, has nothing for
        // the manager to send: it is not woken for it.
        if !updates.is_empty() || call.is_some() {
            self.manager.do_send(Committed {
                tx_data: result.tx_data.clone(),
                call,
                durable: result.durable.clone(),
                updates,
            });
        }
        MessageResult(result)
    }
}

impl Handler<RunDml> for TransactionActor {
    type Result = Result<DmlDone, DmlError>;

    fn handle(&mut self, msg: RunDml, _: &mut Self::Context) -> Self::Result {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.stopping.load(Ordering::Acquire) {
            return Err(DmlError::Commit(SHUTTING_DOWN.into()));
        }
        let caller = Caller {
            identity: msg.caller,
            is_owner: msg.caller == Identity::ZERO,
        };
        let statement = dml::compile(&msg.sql, &self.ds.schema(), caller)?;
        let mut tx = self.ds.begin_mut_tx();
        tx.set_meta(TxMeta {
            reducer: None,
            caller: msg.caller,
        });
        // On error `tx` drops here, rolling back whatever part of the statement ran.
        let rows_affected = dml::execute(&statement, &mut tx)?;
        let commit = tx.commit().map_err(|e| DmlError::Commit(e.to_string()))?;
        self.metrics
            .commits
            .fetch_add(u64::from(commit.tx_data.is_some()), Ordering::Relaxed);
        let done = DmlDone {
            rows_affected,
            tx_offset: commit.offset(),
            durable: commit.durable().cloned(),
        };
        let updates = self.evaluate(commit.tx_data.as_deref());
        if !updates.is_empty() {
            self.manager.do_send(Committed {
                tx_data: commit.tx_data,
                call: None,
                durable: done.durable.clone(),
                updates,
            });
        }
        Ok(done)
    }
}

impl Handler<crate::messages::Barrier> for TransactionActor {
    type Result = ();
    fn handle(&mut self, _: crate::messages::Barrier, _: &mut Self::Context) {}
}

impl Handler<Forward> for TransactionActor {
    type Result = ();

    fn handle(&mut self, msg: Forward, _: &mut Self::Context) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let Forward(request, ticket) = msg;
        drop(ticket);
        self.manager.do_send(request);
    }
}
