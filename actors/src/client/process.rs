//! Applying server messages to the cache and running callbacks: the code both
//! transports share. A message is applied as a whole before any of its callbacks runs,
//! and callbacks run with the cache unlocked.

use tidings_engine::Timestamp;
use tidings_engine::commitlog::Durable;

use super::cache::Changes;
use super::pool::RowPool;
use super::{DbConnection, Event, EventContext, PendingCall};
use crate::messages::{
    Envelope, Protocol, ReducerOutcome, ReducerStatus, RequestId, ServerMessage,
};
use crate::module::ReducerError;
use crate::queue::SessionQueue;

impl DbConnection {
    fn ctx(&self, event: Event) -> EventContext {
        EventContext {
            event,
            conn: self.clone(),
        }
    }

    /// Applies one message from `queue` and runs its callbacks.
    pub(super) fn process(&self, env: Envelope, queue: &SessionQueue, pool: &mut RowPool) {
        wait_durable(env.durable.as_ref());
        self.process_message(&env.message, queue, pool);
    }

    /// Applies one message, already durable where that matters, and runs its
    /// callbacks; `queue` is the connection's own (closed by `Disconnected`). The rows
    /// the cache takes in are shared through `pool` with the other connections the
    /// caller applies the same message to.
    pub(super) fn process_message(
        &self,
        message: &ServerMessage,
        queue: &SessionQueue,
        pool: &mut RowPool,
    ) {
        match message {
            ServerMessage::InitialConnection { .. } => {}
            ServerMessage::SubscribeApplied {
                request_id,
                query_set_id,
                tables,
                tx_offset,
            } => {
                self.saw_offset(*tx_offset);
                let replaces = self
                    .inner
                    .link
                    .remote()
                    .is_some_and(|r| r.applied(*query_set_id, *request_id));
                let changes = if replaces {
                    self.inner.cache.write().replace_set(*query_set_id, tables)
                } else {
                    self.inner
                        .cache
                        .write()
                        .apply_pooled(tables.iter().map(|t| (*query_set_id, t)), pool)
                };
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
                if let Some(r) = self.inner.link.remote() {
                    r.unsubscribed(*query_set_id);
                }
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
                // A set re-sent after a reconnect was in force until this answer.
                let was_in_force = self
                    .inner
                    .link
                    .remote()
                    .is_some_and(|r| r.failed(*query_set_id, *request_id));
                if (request_id.is_none() || was_in_force)
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
                let changes = self.apply_sets(&u.query_sets, pool);
                // v1 has no reducer result: the caller's own update carries its call
                // (others see it emptied, without a name).
                let own = match (&u.reducer_event, self.inner.link.protocol()) {
                    (Some(ev), Protocol::V1)
                        if ev.caller == self.inner.link.identity() && !ev.reducer.is_empty() =>
                    {
                        Some(ev)
                    }
                    _ => None,
                };
                match own {
                    None => {
                        let ctx = self.ctx(Event::Transaction {
                            offset: u.tx_offset,
                            timestamp: u.timestamp,
                        });
                        self.fire(&ctx, changes);
                    }
                    Some(ev) => {
                        let ctx = self.ctx(Event::Reducer {
                            request_id: ev.request_id,
                            reducer: ev.reducer.clone(),
                            timestamp: u.timestamp,
                            status: ev.status.clone(),
                        });
                        self.fire(&ctx, changes);
                        let pending = self.inner.calls.lock().remove(&ev.request_id);
                        if let Some(PendingCall {
                            then: Some(then), ..
                        }) = pending
                        {
                            then(&ctx, reducer_result(&ev.status));
                        }
                    }
                }
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
                        self.apply_sets(&update.query_sets, pool),
                    ),
                    ReducerOutcome::Err(e) => (
                        ReducerStatus::Failed(e.clone()),
                        Err(ReducerError::User(e.clone())),
                        Changes::new(),
                    ),
                    ReducerOutcome::InternalError(e) => (
                        ReducerStatus::InternalError(e.clone()),
                        Err(ReducerError::Internal(e.clone())),
                        Changes::new(),
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
                // The queue it came from: after a reconnect the link reads another one.
                queue.close();
                self.fail_unanswered(reason);
            }
        }
    }

    fn apply_sets<'a>(
        &self,
        sets: &'a [crate::messages::QuerySetUpdate],
        pool: &mut RowPool,
    ) -> Changes<'a> {
        let pairs = sets
            .iter()
            .flat_map(|s| s.tables.iter().map(move |t| (s.query_set_id, t)));
        self.inner.cache.write().apply_pooled(pairs, pool)
    }

    /// Runs the callbacks for `changes`, with the cache unlocked.
    fn fire(&self, ctx: &EventContext, changes: Changes<'_>) {
        if changes.is_empty() {
            return;
        }
        for (table, ch) in changes {
            let (ins, del, upd) = {
                let cbs = self.inner.callbacks.lock();
                match cbs.get(table.as_ref()) {
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
    /// Ends every reducer call and one-off query still waiting for an answer that will
    /// not come: the connection ended, or a reconnect replaced its socket.
    pub(super) fn fail_unanswered(&self, why: &str) {
        let mut calls: Vec<(RequestId, PendingCall)> = self.inner.calls.lock().drain().collect();
        calls.sort_unstable_by_key(|(id, _)| *id);
        let error = format!("no result: {why}; the call may have committed");
        for (request_id, call) in calls {
            let ctx = self.ctx(Event::Reducer {
                request_id,
                reducer: call.reducer,
                timestamp: Timestamp::now(),
                status: ReducerStatus::InternalError(error.clone()),
            });
            if let Some(then) = call.then {
                then(&ctx, Err(ReducerError::Internal(error.clone())));
            }
        }
        let mut one_offs: Vec<_> = self.inner.one_offs.lock().drain().collect();
        one_offs.sort_unstable_by_key(|(id, _)| *id);
        for (_, then) in one_offs {
            then(Err(format!("no result: {why}")));
        }
    }
}

/// Waits until the commit a message reports is durable, if it must be (confirmed reads,
/// reducer results); a commit that cannot become durable is logged, and the message is
/// shown anyway, as the commit is in memory.
pub(super) fn wait_durable(durable: Option<&Durable>) {
    if let Some(d) = durable
        && let Err(e) = d.wait()
    {
        tracing::error!(error = %e, "a commit reported to this client did not become durable");
    }
}

/// What `reducer_then` receives for a v1 reducer event's status.
fn reducer_result(status: &ReducerStatus) -> Result<Vec<u8>, ReducerError> {
    match status {
        ReducerStatus::Committed(value) => Ok(value.clone()),
        ReducerStatus::Failed(e) => Err(ReducerError::User(e.clone())),
        ReducerStatus::InternalError(e) => Err(ReducerError::Internal(e.clone())),
    }
}
