//! The subscription manager: compiles subscriptions, evaluates each commit once per
//! distinct affected query, and hands the results to the hubs.
//!
//! It is the only emitter of server-to-client messages, and emits them in offset order:
//! requests reach it through the transaction actor's FIFO, interleaved with commits
//! exactly as they happened. The transaction actor evaluates each commit against the
//! shared registry right after the merge ([`evaluate_commit`]: each changed query once,
//! each delta in one shared `Arc`); the manager sends one broadcast per hub that has an
//! interested session. A commit that changes no query and answers no connection never
//! reaches the manager.
//!
//! A query set registered from a snapshot at offset O receives exactly the commits after
//! O: the snapshot and the registration happen under one read guard, and the hub skips
//! any broadcast at or below a set's snapshot offset.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use hashbrown::HashMap;
use smallvec::SmallVec;
use tidings_engine::commitlog::Durable;
use tidings_engine::{CommittedState, Datastore, Identity, Timestamp, TxData, TxOffset};
use tidings_query::rls::{RlsRules, compile_for};
use tidings_query::{Caller, Plan, QueryId, Registry, evaluate_delta, evaluate_rows};

use crate::hub::{
    Hub, HubAttach, HubCommit, HubDetach, HubSend, HubSubscribed, HubUnsubscribed, SetQuery,
};
use crate::inbox::Sink;
use crate::messages::{
    CallReducerFlags, ClientMessage, ConnectionId, Envelope, Protocol, QuerySetId, ReducerStatus,
    RequestId, ServerMessage, TableRows, TableUpdate, V1_EVENT_TABLE_ERROR, V1_LEGACY_QUERY_SET,
};
use crate::metrics::Metrics;

/// A reducer call from a connection, as its result must be reported.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The caller's connection.
    pub connection: ConnectionId,
    /// Its request id.
    pub request_id: RequestId,
    /// Reducer name.
    pub reducer: String,
    /// Arguments (v1 echoes them to the caller).
    pub args: Vec<u8>,
    /// Caller identity.
    pub caller: Identity,
    /// Whether the caller hears of a success (v1).
    pub flags: CallReducerFlags,
    /// When the reducer ran.
    pub timestamp: Timestamp,
    /// What happened.
    pub status: ReducerStatus,
}

/// A commit (or a call that committed nothing) from the transaction actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Committed {
    /// The commit's TxData, when something was committed.
    pub tx_data: Option<Arc<TxData>>,
    /// The reducer call, when a connection made it.
    pub call: Option<CallInfo>,
    /// Durability ticket of the commit.
    pub durable: Option<Durable>,
    /// Each changed query's rows, evaluated by the transaction actor right after the
    /// merge ([`evaluate_commit`]). A commit that changes no query reaches the manager
    /// only to answer the connection that made the call.
    pub updates: HashMap<QueryId, TableUpdate>,
}

/// The registry, shared by the manager (which registers queries and routes their
/// updates) and the transaction actor (which evaluates them; see [`evaluate_commit`]).
pub type SharedRegistry = Arc<parking_lot::RwLock<Registry>>;

/// Evaluates every registered query the just-merged commit `tx` can change, against
/// exactly its post-state, on the transaction actor's thread.
///
/// # Why on the transaction actor's thread
///
/// Incremental evaluation must read the post-state of the commit it evaluates. Done by
/// the manager, that needs a commit gate: commit N+1 may not merge until the manager has
/// evaluated N, which costs two cross-thread wake-ups per commit (the manager's, then the
/// transaction actor's) and measured, on 2 cores, 5-35 µs of gate wait per commit.
/// Evaluated here, right after the merge and before the next one (this thread is the
/// only writer), the post-state is exact with no gate at all; the manager keeps what
/// does not need the state: routing each update to the hubs of its subscribers. The
/// price is that evaluation no longer overlaps the next reducer; it is incremental and
/// pruned, so it is small next to a commit.
///
/// Queries registered after this evaluation have a snapshot at or after `tx` (the
/// manager registers under a read guard of the committed state), so they need none of it.
pub fn evaluate_commit(
    ds: &Datastore,
    registry: &SharedRegistry,
    metrics: &Metrics,
    tx: &TxData,
) -> HashMap<QueryId, TableUpdate> {
    let state = ds.read();
    let registry = registry.read();
    let affected = registry.affected(tx, &state);
    metrics
        .evaluations
        .fetch_add(affected.len() as u64, Ordering::Relaxed);
    let mut updates = HashMap::new();
    for id in affected {
        let Some(plan) = registry.plan(id) else {
            continue;
        };
        let delta = evaluate_delta(plan, &state, tx);
        if delta.is_empty() {
            continue;
        }
        let rows = if plan.returns_event_table() {
            TableRows::Event {
                events: delta.inserts.into_vec(),
            }
        } else {
            TableRows::Persistent {
                inserts: delta.inserts.into_vec(),
                deletes: delta.deletes.into_vec(),
            }
        };
        updates.insert(
            id,
            TableUpdate::new(plan.returned_table_name().clone(), rows),
        );
    }
    updates
}

/// Requests handled by the manager, always routed through the transaction actor.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ManagerRequest {
    /// A new connection.
    Connect {
        /// Its id.
        connection: ConnectionId,
        /// Its identity.
        identity: Identity,
        /// Whether it holds the owner's rights (bypasses visibility rules).
        is_owner: bool,
        /// Its protocol.
        protocol: Protocol,
        /// Where its messages go.
        sink: Sink,
        /// The token to hand the client in its first message (WebSocket clients).
        token: Option<String>,
    },
    /// The connection went away.
    Disconnect {
        /// Its id.
        connection: ConnectionId,
    },
    /// The server is shutting down: every session ends, after what is queued for it.
    Shutdown {
        /// Told to every client.
        reason: String,
    },
    /// A subscription or one-off request of a connection.
    Client {
        /// Its id.
        connection: ConnectionId,
        /// The request.
        message: ClientMessage,
    },
}

/// What a commit broadcast carries to the hubs: every changed query's rows, shared.
#[derive(Debug)]
pub struct CommitBroadcast {
    /// The commit offset (`None` for a call that committed nothing).
    pub tx_offset: Option<TxOffset>,
    /// Commit time.
    pub timestamp: Timestamp,
    /// Per changed query: its rows.
    pub updates: HashMap<QueryId, TableUpdate>,
    /// The call, for its caller's result.
    pub call: Option<CallInfo>,
    /// Durability ticket.
    pub durable: Option<Durable>,
}

struct ClientEntry {
    hub: usize,
    identity: Identity,
    is_owner: bool,
    protocol: Protocol,
    sets: HashMap<QuerySetId, Vec<SetQuery>>,
}

/// Bytes the manager holds for one connection with one query set of one query: its
/// entry in the client map and that entry's query-set map and query list. (Per-query
/// state, shared by every subscriber of the query, is not counted.)
pub(crate) fn client_bytes() -> usize {
    crate::hub::map_entry_bytes::<ConnectionId, ClientEntry>()
        + crate::hub::one_entry_map_bytes::<QuerySetId, Vec<SetQuery>>()
        + std::mem::size_of::<SetQuery>()
}

/// The subscription manager actor.
pub struct SubscriptionManager {
    ds: Datastore,
    registry: SharedRegistry,
    hubs: Vec<Addr<Hub>>,
    clients: HashMap<ConnectionId, ClientEntry>,
    /// For each query, how many query sets on each hub hold it.
    query_hubs: HashMap<QueryId, SmallVec<[(usize, u32); 2]>>,
    metrics: Arc<Metrics>,
    confirmed_reads: bool,
    next_hub: usize,
    rules: Arc<RlsRules>,
    /// Snapshots taken at the current committed offset, by query; cleared by every commit
    /// and by every query's removal.
    snapshots: HashMap<QueryId, (TxOffset, Option<TableUpdate>)>,
}

impl SubscriptionManager {
    /// A manager over `ds` delivering through `hubs`, keeping its queries in `registry`.
    pub fn new(
        ds: Datastore,
        registry: SharedRegistry,
        hubs: Vec<Addr<Hub>>,
        metrics: Arc<Metrics>,
        confirmed_reads: bool,
        rules: Arc<RlsRules>,
    ) -> Self {
        SubscriptionManager {
            ds,
            registry,
            hubs,
            clients: HashMap::new(),
            query_hubs: HashMap::new(),
            metrics,
            confirmed_reads,
            next_hub: 0,
            rules,
            snapshots: HashMap::new(),
        }
    }

    fn send(&self, connection: ConnectionId, message: ServerMessage) {
        if let Some(c) = self.clients.get(&connection) {
            self.hubs[c.hub].do_send(HubSend {
                connection,
                envelope: Envelope::now(message),
            });
        }
    }

    fn error(
        &self,
        connection: ConnectionId,
        request_id: Option<RequestId>,
        query_set_id: Option<QuerySetId>,
        error: String,
    ) {
        self.send(
            connection,
            ServerMessage::SubscriptionError {
                request_id,
                query_set_id,
                error,
            },
        );
    }

    /// Compiles every query of a subscription for `connection`, visibility rules expanded
    /// into fragments; all or nothing.
    fn compile_all(
        &self,
        client: &ClientEntry,
        queries: &[String],
        state: &CommittedState,
    ) -> Result<Vec<Plan>, String> {
        let caller = Caller {
            identity: client.identity,
            is_owner: client.is_owner,
        };
        let mut plans = Vec::new();
        for q in queries {
            let compiled = compile_for(
                q,
                state.schema(),
                &self.rules,
                state.schema_version(),
                caller,
            )
            .map_err(|e| format!("query `{q}`: {e}"))?;
            for cq in compiled {
                if client.protocol == Protocol::V1 && cq.returns_event_table {
                    return Err(V1_EVENT_TABLE_ERROR.to_string());
                }
                plans.extend(cq.fragments);
            }
        }
        Ok(plans)
    }

    fn subscribe(
        &mut self,
        connection: ConnectionId,
        request_id: RequestId,
        query_set_id: QuerySetId,
        queries: &[String],
        replace: bool,
    ) {
        let Some(client) = self.clients.get(&connection) else {
            return;
        };
        if !replace && client.sets.contains_key(&query_set_id) {
            return self.error(
                connection,
                Some(request_id),
                Some(query_set_id),
                format!("query set {query_set_id} is already subscribed; unsubscribe it first or choose another id"),
            );
        }
        let ds = self.ds.clone();
        let state = ds.read();
        let plans = match self.compile_all(client, queries, &state) {
            Ok(p) => p,
            Err(e) => return self.error(connection, Some(request_id), Some(query_set_id), e),
        };
        let hub = client.hub;
        if replace {
            drop(state);
            self.unsubscribe(connection, request_id, query_set_id, false, true);
            return self.subscribe(connection, request_id, query_set_id, queries, false);
        }
        let mut tables = Vec::new();
        let mut set = Vec::new();
        let tx_offset = state.offset();
        for plan in plans {
            let returns_event = plan.returns_event_table();
            let id = self.registry.write().register(plan, &state);
            self.add_query_hub(id, hub);
            // A query listed twice in one set (or also reached through `SELECT * FROM *`)
            // is held once: its updates reach the set once, so its snapshot must too.
            if set.iter().any(|q: &SetQuery| q.id == id) {
                self.drop_query(id, hub);
                continue;
            }
            // One snapshot per query and offset, shared by every subscriber asking for it
            // before the next commit (a subscribe storm evaluates each query once).
            // Keyed by offset too: the next commit may merge before the manager hears of it.
            let snapshot = match self.snapshots.get(&id) {
                Some((offset, u)) if *offset == tx_offset => u.clone(),
                _ => {
                    let registry = self.registry.read();
                    let Some(plan) = registry.plan(id) else {
                        continue;
                    };
                    let rows = evaluate_rows(plan, &state);
                    self.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
                    let update = (!rows.is_empty()).then(|| {
                        TableUpdate::new(
                            plan.returned_table_name().clone(),
                            TableRows::Persistent {
                                inserts: rows,
                                deletes: Vec::new(),
                            },
                        )
                    });
                    self.snapshots.insert(id, (tx_offset, update.clone()));
                    update
                }
            };
            tables.extend(snapshot);
            set.push(SetQuery { id, returns_event });
        }
        drop(state);
        self.metrics
            .queries
            .store(self.registry.read().len() as u64, Ordering::Relaxed);
        if let Some(c) = self.clients.get_mut(&connection) {
            c.sets.insert(query_set_id, set.clone());
        }
        self.hubs[hub].do_send(HubSubscribed {
            connection,
            query_set_id,
            queries: set,
            from_offset: tx_offset,
            envelope: Envelope::now(ServerMessage::SubscribeApplied {
                request_id,
                query_set_id,
                tx_offset,
                tables,
            }),
        });
    }

    fn add_query_hub(&mut self, id: QueryId, hub: usize) {
        let hubs = self.query_hubs.entry(id).or_default();
        match hubs.iter_mut().find(|(h, _)| *h == hub) {
            Some((_, n)) => *n += 1,
            None => hubs.push((hub, 1)),
        }
    }

    fn drop_query(&mut self, id: QueryId, hub: usize) {
        if let Some(hubs) = self.query_hubs.get_mut(&id) {
            if let Some(p) = hubs.iter().position(|(h, _)| *h == hub) {
                hubs[p].1 -= 1;
                if hubs[p].1 == 0 {
                    hubs.swap_remove(p);
                }
            }
            if hubs.is_empty() {
                self.query_hubs.remove(&id);
            }
        }
        if self.registry.write().unregister(id) {
            // An id may be reused by a different query after this.
            self.snapshots.remove(&id);
        }
    }

    fn unsubscribe(
        &mut self,
        connection: ConnectionId,
        request_id: RequestId,
        query_set_id: QuerySetId,
        send_rows: bool,
        quiet_if_missing: bool,
    ) {
        let Some(client) = self.clients.get_mut(&connection) else {
            return;
        };
        let hub = client.hub;
        let Some(set) = client.sets.remove(&query_set_id) else {
            if !quiet_if_missing {
                self.error(
                    connection,
                    Some(request_id),
                    Some(query_set_id),
                    format!("unknown query set {query_set_id}"),
                );
            }
            return;
        };
        let state = self.ds.read();
        let registry = self.registry.read();
        let tables = send_rows.then(|| {
            set.iter()
                .filter_map(|q| {
                    let plan = registry.plan(q.id)?;
                    let rows = evaluate_rows(plan, &state);
                    (!rows.is_empty()).then(|| {
                        TableUpdate::new(
                            plan.returned_table_name().clone(),
                            TableRows::Persistent {
                                inserts: Vec::new(),
                                deletes: rows,
                            },
                        )
                    })
                })
                .collect()
        });
        let tx_offset = state.offset();
        drop(registry);
        drop(state);
        for q in &set {
            self.drop_query(q.id, hub);
        }
        self.metrics
            .queries
            .store(self.registry.read().len() as u64, Ordering::Relaxed);
        self.hubs[hub].do_send(HubUnsubscribed {
            connection,
            query_set_id,
            envelope: Envelope::now(ServerMessage::UnsubscribeApplied {
                request_id,
                query_set_id,
                tx_offset,
                tables,
            }),
        });
    }

    fn one_off(&self, connection: ConnectionId, request_id: RequestId, query: &str) {
        let Some(client) = self.clients.get(&connection) else {
            return;
        };
        let state = self.ds.read();
        let caller = Caller {
            identity: client.identity,
            is_owner: client.is_owner,
        };
        let result = compile_for(
            query,
            state.schema(),
            &self.rules,
            state.schema_version(),
            caller,
        )
        .map(|queries| {
            queries
                .iter()
                .map(|q| {
                    let rows = q.evaluate(&state);
                    (q.returned_table_name.clone(), rows)
                })
                .collect()
        })
        .map_err(|e| e.to_string());
        drop(state);
        self.send(
            connection,
            ServerMessage::OneOffQueryResult { request_id, result },
        );
    }

    fn client_message(&mut self, connection: ConnectionId, message: ClientMessage) {
        match message {
            ClientMessage::Subscribe {
                request_id,
                query_set_id,
                queries,
            } => self.subscribe(connection, request_id, query_set_id, &queries, false),
            ClientMessage::Unsubscribe {
                request_id,
                query_set_id,
                send_dropped_rows,
            } => self.unsubscribe(
                connection,
                request_id,
                query_set_id,
                send_dropped_rows,
                false,
            ),
            ClientMessage::OneOffQuery { request_id, query } => {
                self.one_off(connection, request_id, &query)
            }
            ClientMessage::V1Subscribe {
                request_id,
                queries,
            } => self.subscribe(connection, request_id, V1_LEGACY_QUERY_SET, &queries, true),
            ClientMessage::V1SubscribeSingle {
                request_id,
                query_id,
                query,
            } => self.subscribe(connection, request_id, query_id, &[query], false),
            ClientMessage::V1SubscribeMulti {
                request_id,
                query_id,
                queries,
            } => self.subscribe(connection, request_id, query_id, &queries, false),
            ClientMessage::V1Unsubscribe {
                request_id,
                query_id,
            } => self.unsubscribe(connection, request_id, query_id, false, false),
            ClientMessage::CallReducer { request_id, .. }
            | ClientMessage::V1CallReducer { request_id, .. } => self.error(
                connection,
                Some(request_id),
                None,
                "reducer calls go to the transaction actor".into(),
            ),
        }
    }

    fn committed(&mut self, msg: Committed) {
        // `clear` rewrites the whole table even when empty; most commits find it so.
        if msg.tx_data.is_some() && !self.snapshots.is_empty() {
            self.snapshots.clear();
        }
        let updates = msg.updates;
        let (tx_offset, timestamp) = match &msg.tx_data {
            Some(tx) => (Some(tx.offset), tx.timestamp),
            None => (
                None,
                msg.call.as_ref().map_or(Timestamp(0), |c| c.timestamp),
            ),
        };
        let caller_hub = msg
            .call
            .as_ref()
            .and_then(|c| self.clients.get(&c.connection))
            .map(|c| c.hub);
        let mut targets: SmallVec<[usize; 4]> = SmallVec::new();
        for id in updates.keys() {
            for (hub, _) in self.query_hubs.get(id).into_iter().flatten() {
                if !targets.contains(hub) {
                    targets.push(*hub);
                }
            }
        }
        // v1 clients see every commit that touched their queries; the caller always gets
        // exactly one result.
        if let Some(h) = caller_hub
            && !targets.contains(&h)
        {
            targets.push(h);
        }
        if targets.is_empty() {
            return;
        }
        let broadcast = Arc::new(CommitBroadcast {
            tx_offset,
            timestamp,
            updates,
            call: msg.call,
            durable: msg.durable,
        });
        for h in targets {
            self.hubs[h].do_send(HubCommit {
                broadcast: broadcast.clone(),
                confirmed_reads: self.confirmed_reads,
            });
        }
    }

    fn connect(
        &mut self,
        connection: ConnectionId,
        identity: Identity,
        is_owner: bool,
        protocol: Protocol,
        sink: Sink,
        token: Option<String>,
    ) {
        // Every inbox's sessions live on the first hub: a commit is then one append per
        // inbox, and a commit's batches are all built before the first is appended, so
        // the application threads wake together. With inboxes on different hubs, the
        // first thread woken takes a core from the hub still building the next batch (on
        // 2 cores that delayed the last delivery by a scheduler slice, milliseconds). A
        // batch costs its hub a few nanoseconds per connection, so one hub serves them all.
        let hub = match sink.inbox() {
            Some(_) => 0,
            None => {
                self.next_hub += 1;
                (self.next_hub - 1) % self.hubs.len().max(1)
            }
        };
        self.clients.insert(
            connection,
            ClientEntry {
                hub,
                identity,
                is_owner,
                protocol,
                sets: HashMap::new(),
            },
        );
        self.metrics.sessions.fetch_add(1, Ordering::Relaxed);
        self.hubs[hub].do_send(HubAttach {
            connection,
            protocol,
            sink,
            initial: Envelope::now(ServerMessage::InitialConnection {
                identity,
                connection_id: connection,
                token,
            }),
        });
    }

    fn disconnect(&mut self, connection: ConnectionId) {
        let Some(client) = self.clients.remove(&connection) else {
            return;
        };
        for (_, set) in client.sets {
            for q in set {
                self.drop_query(q.id, client.hub);
            }
        }
        self.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        self.metrics
            .queries
            .store(self.registry.read().len() as u64, Ordering::Relaxed);
        self.hubs[client.hub].do_send(HubDetach { connection });
    }
}

impl Actor for SubscriptionManager {
    type Context = Context<Self>;
}

impl Handler<Committed> for SubscriptionManager {
    type Result = ();

    fn handle(&mut self, msg: Committed, _: &mut Self::Context) {
        self.committed(msg);
    }
}

impl Handler<ManagerRequest> for SubscriptionManager {
    type Result = ();

    fn handle(&mut self, msg: ManagerRequest, _: &mut Self::Context) {
        match msg {
            ManagerRequest::Connect {
                connection,
                identity,
                is_owner,
                protocol,
                sink,
                token,
            } => self.connect(connection, identity, is_owner, protocol, sink, token),
            ManagerRequest::Disconnect { connection } => self.disconnect(connection),
            ManagerRequest::Shutdown { reason } => {
                for hub in &self.hubs {
                    hub.do_send(crate::hub::HubShutdown {
                        reason: reason.clone(),
                    });
                }
            }
            ManagerRequest::Client {
                connection,
                message,
            } => self.client_message(connection, message),
        }
    }
}

impl Handler<crate::messages::Barrier> for SubscriptionManager {
    type Result = ();
    fn handle(&mut self, _: crate::messages::Barrier, _: &mut Self::Context) {}
}

/// Sent by a hub when it dropped a session for passing its queue bound.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionDropped {
    /// The session.
    pub connection: ConnectionId,
}

impl Handler<SessionDropped> for SubscriptionManager {
    type Result = ();

    fn handle(&mut self, msg: SessionDropped, _: &mut Self::Context) {
        self.disconnect(msg.connection);
    }
}
