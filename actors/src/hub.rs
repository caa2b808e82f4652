//! Per-arbiter hubs: fan-out of one commit to the sessions living on one arbiter.
//!
//! The manager sends each hub one shared `Arc` of a commit's updates, never one message
//! per session. The hub owns its sessions' delivery state in a slotmap (queue, protocol,
//! query sets with their snapshot offsets) and an index from query to local (session,
//! query set) pairs, so fanning a commit out costs one lookup per changed query and one
//! small envelope per affected session, appended straight to that session's queue.
//!
//! For a reducer's caller the hub folds the caller's own update into its `ReducerResult`
//! (v2) or its `TransactionUpdate` with the full reducer event (v1); every other session
//! gets a bare `TransactionUpdate` (v1: with the reducer event emptied). A v1 caller whose
//! call carried `NoSuccessNotify` and succeeded is one of the others.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use hashbrown::HashMap;
use slotmap::{SlotMap, new_key_type};
use smallvec::SmallVec;
use tidings_engine::commitlog::Durable;
use tidings_query::QueryId;

use crate::manager::{CommitBroadcast, SessionDropped};
use crate::messages::{
    CallReducerFlags, ConnectionId, Envelope, Protocol, QuerySetId, QuerySetUpdate, ReducerEvent,
    ReducerOutcome, ReducerStatus, ServerMessage, TransactionUpdate,
};
use crate::metrics::Metrics;
use crate::queue::{Pushed, SessionQueue};

new_key_type! {
    struct SessionKey;
}

/// One query of a query set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetQuery {
    /// The registered query.
    pub id: QueryId,
    /// Whether it returns event rows.
    pub returns_event: bool,
}

struct QuerySet {
    /// Snapshot offset: only commits after it are delivered.
    from_offset: u64,
    queries: SmallVec<[SetQuery; 2]>,
}

struct Session {
    connection: ConnectionId,
    protocol: Protocol,
    queue: Arc<SessionQueue>,
    sets: HashMap<QuerySetId, QuerySet>,
}

/// A session holding one query: what a commit changing that query needs to reach it,
/// without looking the session or its sets up.
struct Holder {
    key: SessionKey,
    queue: Arc<SessionQueue>,
    v1: bool,
    /// The query sets holding the query, with their snapshot offsets; sorted by set.
    sets: SmallVec<[(QuerySetId, u64); 1]>,
}

/// What changed for one session in one commit: (query set, query) pairs, sorted.
type ContentKey = SmallVec<[(QuerySetId, QueryId); 2]>;

/// The query-set updates for `content`, taking each query's rows from the broadcast.
fn group_by_set(content: &ContentKey, b: &CommitBroadcast) -> Vec<QuerySetUpdate> {
    let mut out: Vec<QuerySetUpdate> = Vec::new();
    for (qs, id) in content {
        let Some(update) = b.updates.get(id) else {
            continue;
        };
        match out.last_mut() {
            Some(u) if u.query_set_id == *qs => u.tables.push(update.clone()),
            _ => out.push(QuerySetUpdate {
                query_set_id: *qs,
                tables: vec![update.clone()],
            }),
        }
    }
    out
}

/// Amortized bytes of one entry in a large hash map: the entry and its control byte,
/// twice over (right after a table doubles, half of it is empty).
pub(crate) fn map_entry_bytes<K, V>() -> usize {
    2 * (std::mem::size_of::<(K, V)>() + 1)
}

/// Bytes of a hash map holding one entry: hashbrown's smallest table has 4 buckets plus
/// one group (16) of trailing control bytes.
pub(crate) fn one_entry_map_bytes<K, V>() -> usize {
    4 * (std::mem::size_of::<(K, V)>() + 1) + 16
}

/// Bytes a hub holds for one session subscribed to one query set of one query: its
/// slotmap slot (value and version), its query-set map, its entries in the connection
/// and query indexes, and its share of the per-commit scratch map.
pub(crate) fn session_bytes() -> usize {
    use std::mem::size_of;
    let slot = size_of::<Session>() + size_of::<u32>();
    let sets = one_entry_map_bytes::<QuerySetId, QuerySet>();
    let by_connection = map_entry_bytes::<ConnectionId, SessionKey>();
    // One element of a query's subscriber list, which grows by doubling.
    let by_query = 2 * size_of::<(SessionKey, QuerySetId)>();
    let scratch = map_entry_bytes::<SessionKey, ContentKey>();
    slot + sets + by_connection + by_query + scratch
}

/// A hub actor; one per pool arbiter.
pub struct Hub {
    sessions: SlotMap<SessionKey, Session>,
    by_connection: HashMap<ConnectionId, SessionKey>,
    /// Per query, the local sessions holding it (one entry per session).
    by_query: HashMap<QueryId, Vec<Holder>>,
    manager: Option<Recipient<SessionDropped>>,
    metrics: Arc<Metrics>,
    /// Reused per commit: each affected session's query-set updates.
    scratch: HashMap<SessionKey, ContentKey>,
}

/// The message a fan-out sends to sessions with the same share of a commit, built once.
#[derive(Clone)]
struct Built {
    message: Arc<ServerMessage>,
    bytes: usize,
}

impl Hub {
    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Hub {
            sessions: SlotMap::with_key(),
            by_connection: HashMap::new(),
            by_query: HashMap::new(),
            manager: None,
            metrics,
            scratch: HashMap::new(),
        }
    }

    fn push(&mut self, key: SessionKey, envelope: Envelope) {
        if self.push_counted(key, envelope) {
            self.metrics.deliveries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Like [`Hub::push`], leaving the delivery count to the caller; whether it queued.
    fn push_counted(&mut self, key: SessionKey, envelope: Envelope) -> bool {
        let Some(s) = self.sessions.get(key) else {
            return false;
        };
        match s.queue.push(envelope) {
            Pushed::Queued | Pushed::QueuedWasEmpty => true,
            Pushed::Dropped => {
                self.dropped(key);
                false
            }
            Pushed::Gone => false,
        }
    }

    fn dropped(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let reason = s.queue.dropped_reason().unwrap_or_default();
        tracing::warn!(connection = s.connection.0, %reason, "dropping session");
        self.metrics.count_drop(&reason);
        if let Some(m) = &self.manager {
            m.do_send(SessionDropped {
                connection: s.connection,
            });
        }
    }

    fn remove_session(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.remove(key) else {
            return;
        };
        self.by_connection.remove(&s.connection);
        for (qs, set) in s.sets {
            for q in set.queries {
                self.unindex(q.id, key, qs);
            }
        }
    }

    fn index(&mut self, id: QueryId, key: SessionKey, qs: QuerySetId, from_offset: u64) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let list = self.by_query.entry(id).or_default();
        match list.iter_mut().find(|h| h.key == key) {
            Some(h) => {
                let at = h.sets.partition_point(|(q, _)| *q < qs);
                h.sets.insert(at, (qs, from_offset));
            }
            None => list.push(Holder {
                key,
                queue: s.queue.clone(),
                v1: s.protocol == Protocol::V1,
                sets: smallvec::smallvec![(qs, from_offset)],
            }),
        }
    }

    fn unindex(&mut self, id: QueryId, key: SessionKey, qs: QuerySetId) {
        if let Some(list) = self.by_query.get_mut(&id) {
            if let Some(p) = list.iter().position(|h| h.key == key) {
                let h = &mut list[p];
                if let Some(i) = h.sets.iter().position(|(q, _)| *q == qs) {
                    h.sets.remove(i);
                }
                if h.sets.is_empty() {
                    list.swap_remove(p);
                }
            }
            if list.is_empty() {
                self.by_query.remove(&id);
            }
        }
    }

    /// The message for sessions whose share of `b` is `content`, for the protocol `v1`.
    fn build(b: &CommitBroadcast, v1: bool, content: &ContentKey) -> Built {
        // Only the caller learns what was called, with what, and what it returned.
        let event = v1.then(|| ReducerEvent {
            request_id: 0,
            reducer: String::new(),
            args: Vec::new(),
            caller: Default::default(),
            status: match b.call.as_ref().map(|c| &c.status) {
                None | Some(ReducerStatus::Committed(_)) => ReducerStatus::Committed(Vec::new()),
                Some(other) => other.clone(),
            },
        });
        let envelope = Envelope::now(ServerMessage::TransactionUpdate(TransactionUpdate {
            tx_offset: b.tx_offset.unwrap_or(0),
            timestamp: b.timestamp,
            query_sets: group_by_set(content, b),
            reducer_event: event,
        }));
        Built {
            bytes: envelope.approx_bytes(),
            message: envelope.message,
        }
    }

    fn commit(&mut self, b: &CommitBroadcast, confirmed_reads: bool) {
        // A v1 caller that asked not to hear of its success is served like everyone else.
        let caller = b
            .call
            .as_ref()
            .filter(|c| {
                !(c.flags == CallReducerFlags::NoSuccessNotify
                    && matches!(c.status, ReducerStatus::Committed(_)))
            })
            .and_then(|c| self.by_connection.get(&c.connection).map(|k| (*k, c)));
        let durable_for_all = if confirmed_reads {
            b.durable.clone()
        } else {
            None
        };
        let (delivered, dropped) = match b.tx_offset {
            Some(offset) if b.updates.len() == 1 => {
                self.fan_out_one(b, offset, caller.map(|(k, _)| k), &durable_for_all)
            }
            Some(offset) => self.fan_out_many(b, offset, caller.map(|(k, _)| k), &durable_for_all),
            None => (0, SmallVec::new()),
        };
        for key in dropped {
            self.dropped(key);
        }
        self.metrics
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
        let update = |query_sets: Vec<QuerySetUpdate>, reducer_event| TransactionUpdate {
            tx_offset: b.tx_offset.unwrap_or(0),
            timestamp: b.timestamp,
            query_sets,
            reducer_event,
        };
        if let Some((key, call)) = caller {
            let mut sets = self.take_caller_sets(b, key);
            sets.sort_by_key(|u| u.query_set_id);
            let Some(s) = self.sessions.get(key) else {
                return;
            };
            let message = match s.protocol {
                Protocol::V2 => ServerMessage::ReducerResult {
                    request_id: call.request_id,
                    tx_offset: b.tx_offset,
                    timestamp: b.timestamp,
                    outcome: match &call.status {
                        ReducerStatus::Committed(value) => ReducerOutcome::Ok {
                            value: value.clone(),
                            update: update(sets, None),
                        },
                        ReducerStatus::Failed(e) => ReducerOutcome::Err(e.clone()),
                        ReducerStatus::InternalError(e) => ReducerOutcome::InternalError(e.clone()),
                    },
                },
                Protocol::V1 => ServerMessage::TransactionUpdate(update(
                    sets,
                    Some(ReducerEvent {
                        request_id: call.request_id,
                        reducer: call.reducer.clone(),
                        args: call.args.clone(),
                        caller: call.caller,
                        status: call.status.clone(),
                    }),
                )),
            };
            self.push(
                key,
                Envelope {
                    message: Arc::new(message),
                    durable: b.durable.clone(),
                },
            );
        }
    }

    /// Fans out a commit that changed exactly one query: each holder of the query is one
    /// recipient, so no per-session grouping is needed. Returns the deliveries and the
    /// sessions dropped for passing their bound.
    fn fan_out_one(
        &self,
        b: &CommitBroadcast,
        offset: u64,
        caller: Option<SessionKey>,
        durable: &Option<Durable>,
    ) -> (u64, SmallVec<[SessionKey; 2]>) {
        let mut delivered = 0u64;
        let mut dropped = SmallVec::new();
        let Some((id, _)) = b.updates.iter().next() else {
            return (delivered, dropped);
        };
        // Sessions usually share one content (same set ids, same protocol): compare with
        // the last one built before looking further.
        let mut last: Option<(bool, ContentKey, Built)> = None;
        let mut built: HashMap<(bool, ContentKey), Built> = HashMap::new();
        let mut content = ContentKey::new();
        for h in self.by_query.get(id).into_iter().flatten() {
            if caller == Some(h.key) {
                continue;
            }
            content.clear();
            content.extend(
                h.sets
                    .iter()
                    .filter(|(_, from)| offset > *from)
                    .map(|(qs, _)| (*qs, *id)),
            );
            if content.is_empty() {
                continue;
            }
            let m = match &last {
                Some((v1, c, m)) if *v1 == h.v1 && *c == content => m.clone(),
                _ => {
                    let m = built
                        .entry((h.v1, content.clone()))
                        .or_insert_with_key(|(v1, c)| Self::build(b, *v1, c))
                        .clone();
                    last = Some((h.v1, content.clone(), m.clone()));
                    m
                }
            };
            let envelope = Envelope {
                message: m.message,
                durable: durable.clone(),
            };
            match h.queue.push_sized(envelope, m.bytes) {
                Pushed::Queued | Pushed::QueuedWasEmpty => delivered += 1,
                Pushed::Dropped => dropped.push(h.key),
                Pushed::Gone => {}
            }
        }
        (delivered, dropped)
    }

    /// Fans out a commit that changed several queries: each affected session's share is
    /// grouped first, as a session may hold more than one of them.
    fn fan_out_many(
        &mut self,
        b: &CommitBroadcast,
        offset: u64,
        caller: Option<SessionKey>,
        durable: &Option<Durable>,
    ) -> (u64, SmallVec<[SessionKey; 2]>) {
        let mut per_session = std::mem::take(&mut self.scratch);
        for id in b.updates.keys() {
            for h in self.by_query.get(id).into_iter().flatten() {
                if caller == Some(h.key) {
                    continue;
                }
                for (qs, from) in &h.sets {
                    if offset > *from {
                        per_session.entry(h.key).or_default().push((*qs, *id));
                    }
                }
            }
        }
        // Sessions whose share of the commit is the same (same query sets, same changed
        // queries, same protocol) get the same message: build it once, clone the `Arc`.
        let mut built: HashMap<(bool, ContentKey), Built> = HashMap::new();
        let mut delivered = 0u64;
        let mut dropped = SmallVec::new();
        for (key, mut content) in per_session.drain() {
            let Some(s) = self.sessions.get(key) else {
                continue;
            };
            content.sort_unstable();
            let v1 = s.protocol == Protocol::V1;
            let m = built
                .entry((v1, content))
                .or_insert_with_key(|(v1, c)| Self::build(b, *v1, c))
                .clone();
            let envelope = Envelope {
                message: m.message,
                durable: durable.clone(),
            };
            match s.queue.push_sized(envelope, m.bytes) {
                Pushed::Queued | Pushed::QueuedWasEmpty => delivered += 1,
                Pushed::Dropped => dropped.push(key),
                Pushed::Gone => {}
            }
        }
        self.scratch = per_session;
        (delivered, dropped)
    }

    /// The caller's own query-set updates (recomputed: the caller was skipped above).
    fn take_caller_sets(&self, b: &CommitBroadcast, key: SessionKey) -> Vec<QuerySetUpdate> {
        let (Some(offset), Some(s)) = (b.tx_offset, self.sessions.get(key)) else {
            return Vec::new();
        };
        let mut out: Vec<QuerySetUpdate> = Vec::new();
        for (qs, set) in &s.sets {
            if offset <= set.from_offset {
                continue;
            }
            let tables: Vec<_> = set
                .queries
                .iter()
                .filter_map(|q| b.updates.get(&q.id).cloned())
                .collect();
            if !tables.is_empty() {
                out.push(QuerySetUpdate {
                    query_set_id: *qs,
                    tables,
                });
            }
        }
        out
    }
}

impl Actor for Hub {
    type Context = Context<Self>;
}

/// Tells a hub where to report dropped sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HubSetManager(pub Recipient<SessionDropped>);

impl Handler<HubSetManager> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubSetManager, _: &mut Self::Context) {
        self.manager = Some(msg.0);
    }
}

/// A session joins this hub.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HubAttach {
    /// The connection.
    pub connection: ConnectionId,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its queue.
    pub queue: Arc<SessionQueue>,
    /// The first message to deliver.
    pub initial: Envelope,
}

impl Handler<HubAttach> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubAttach, _: &mut Self::Context) {
        let key = self.sessions.insert(Session {
            connection: msg.connection,
            protocol: msg.protocol,
            queue: msg.queue,
            sets: HashMap::new(),
        });
        self.by_connection.insert(msg.connection, key);
        self.push(key, msg.initial);
    }
}

/// A session leaves this hub.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HubDetach {
    /// The connection.
    pub connection: ConnectionId,
}

impl Handler<HubDetach> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubDetach, _: &mut Self::Context) {
        if let Some(key) = self.by_connection.get(&msg.connection).copied() {
            self.remove_session(key);
        }
    }
}

/// A query set is in force for a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HubSubscribed {
    /// The connection.
    pub connection: ConnectionId,
    /// The set.
    pub query_set_id: QuerySetId,
    /// Its queries.
    pub queries: Vec<SetQuery>,
    /// The snapshot offset.
    pub from_offset: u64,
    /// The `SubscribeApplied` to deliver.
    pub envelope: Envelope,
}

impl Handler<HubSubscribed> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubSubscribed, _: &mut Self::Context) {
        let Some(key) = self.by_connection.get(&msg.connection).copied() else {
            return;
        };
        for q in &msg.queries {
            self.index(q.id, key, msg.query_set_id, msg.from_offset);
        }
        if let Some(s) = self.sessions.get_mut(key) {
            s.sets.insert(
                msg.query_set_id,
                QuerySet {
                    from_offset: msg.from_offset,
                    queries: msg.queries.into_iter().collect(),
                },
            );
        }
        self.push(key, msg.envelope);
    }
}

/// A query set ended for a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HubUnsubscribed {
    /// The connection.
    pub connection: ConnectionId,
    /// The set.
    pub query_set_id: QuerySetId,
    /// The `UnsubscribeApplied` to deliver.
    pub envelope: Envelope,
}

impl Handler<HubUnsubscribed> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubUnsubscribed, _: &mut Self::Context) {
        let Some(key) = self.by_connection.get(&msg.connection).copied() else {
            return;
        };
        if let Some(set) = self
            .sessions
            .get_mut(key)
            .and_then(|s| s.sets.remove(&msg.query_set_id))
        {
            for q in set.queries {
                self.unindex(q.id, key, msg.query_set_id);
            }
        }
        self.push(key, msg.envelope);
    }
}

/// Server shutdown: every session ends after what is already queued for it, with
/// `reason`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HubShutdown {
    /// Told to every client.
    pub reason: String,
}

impl Handler<HubShutdown> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubShutdown, _: &mut Self::Context) {
        for (_, s) in &self.sessions {
            s.queue.finish(&msg.reason);
        }
    }
}

impl Handler<crate::messages::Barrier> for Hub {
    type Result = ();
    fn handle(&mut self, _: crate::messages::Barrier, _: &mut Self::Context) {}
}

/// A message for one session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HubSend {
    /// The connection.
    pub connection: ConnectionId,
    /// The message.
    pub envelope: Envelope,
}

impl Handler<HubSend> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubSend, _: &mut Self::Context) {
        if let Some(key) = self.by_connection.get(&msg.connection).copied() {
            self.push(key, msg.envelope);
        }
    }
}

/// A commit to fan out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HubCommit {
    /// The shared broadcast.
    pub broadcast: Arc<CommitBroadcast>,
    /// Whether every update waits for durability.
    pub confirmed_reads: bool,
}

impl Handler<HubCommit> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubCommit, _: &mut Self::Context) {
        self.commit(&msg.broadcast, msg.confirmed_reads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{TableRows, TableUpdate};
    use crate::queue::QueueLimits;
    use tidings_engine::{Timestamp, row};

    fn broadcast(offset: u64, id: QueryId) -> Arc<CommitBroadcast> {
        let mut updates = HashMap::new();
        updates.insert(
            id,
            TableUpdate::new(
                "t".into(),
                TableRows::Persistent {
                    inserts: vec![row![offset]],
                    deletes: vec![],
                },
            ),
        );
        Arc::new(CommitBroadcast {
            tx_offset: Some(offset),
            timestamp: Timestamp(0),
            updates,
            call: None,
            durable: None,
        })
    }

    #[test]
    fn a_query_set_receives_exactly_the_commits_after_its_snapshot() {
        let mut hub = Hub::new(Arc::default());
        let queue = Arc::new(SessionQueue::new(QueueLimits::default()));
        let conn = ConnectionId(1);
        let key = hub.sessions.insert(Session {
            connection: conn,
            protocol: Protocol::V2,
            queue: queue.clone(),
            sets: HashMap::new(),
        });
        hub.by_connection.insert(conn, key);
        let id = {
            let mut ids: slotmap::SlotMap<QueryId, ()> = slotmap::SlotMap::with_key();
            ids.insert(())
        };
        hub.index(id, key, 7, 5);
        hub.sessions[key].sets.insert(
            7,
            QuerySet {
                from_offset: 5,
                queries: [SetQuery {
                    id,
                    returns_event: false,
                }]
                .into_iter()
                .collect(),
            },
        );
        hub.commit(&broadcast(5, id), false);
        assert!(
            queue.is_empty(),
            "the commit at the snapshot offset is already in the snapshot"
        );
        hub.commit(&broadcast(6, id), false);
        let env = queue.try_pop().expect("the next commit is delivered");
        match &*env.message {
            ServerMessage::TransactionUpdate(u) => {
                assert_eq!(u.tx_offset, 6);
                assert_eq!(u.query_sets[0].query_set_id, 7);
            }
            other => panic!("expected a transaction update, got {other:?}"),
        }
    }

    #[test]
    fn a_session_holding_a_changed_query_in_two_sets_gets_one_message_with_both() {
        let mut hub = Hub::new(Arc::default());
        let queue = Arc::new(SessionQueue::new(QueueLimits::default()));
        let conn = ConnectionId(1);
        let key = hub.sessions.insert(Session {
            connection: conn,
            protocol: Protocol::V2,
            queue: queue.clone(),
            sets: HashMap::new(),
        });
        hub.by_connection.insert(conn, key);
        let mut ids: slotmap::SlotMap<QueryId, ()> = slotmap::SlotMap::with_key();
        let (a, b) = (ids.insert(()), ids.insert(()));
        for (qs, id) in [(2, a), (1, a), (3, b)] {
            hub.index(id, key, qs, 0);
            hub.sessions[key].sets.insert(
                qs,
                QuerySet {
                    from_offset: 0,
                    queries: [SetQuery {
                        id,
                        returns_event: false,
                    }]
                    .into_iter()
                    .collect(),
                },
            );
        }
        let sets_of = |env: Envelope| match &*env.message {
            ServerMessage::TransactionUpdate(u) => u
                .query_sets
                .iter()
                .map(|s| s.query_set_id)
                .collect::<Vec<_>>(),
            other => panic!("expected a transaction update, got {other:?}"),
        };
        hub.commit(&broadcast(1, a), false);
        assert_eq!(sets_of(queue.try_pop().expect("delivered")), vec![1, 2]);
        assert!(queue.is_empty(), "one message per session per commit");
        let mut both = broadcast(2, a);
        let extra = broadcast(2, b).updates[&b].clone();
        Arc::get_mut(&mut both)
            .expect("not shared yet")
            .updates
            .insert(b, extra);
        hub.commit(&both, false);
        assert_eq!(sets_of(queue.try_pop().expect("delivered")), vec![1, 2, 3]);
        assert!(queue.is_empty(), "one message per session per commit");
        hub.unindex(a, key, 1);
        hub.commit(&broadcast(3, a), false);
        assert_eq!(sets_of(queue.try_pop().expect("delivered")), vec![2]);
    }
}
