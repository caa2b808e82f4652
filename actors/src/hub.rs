//! Per-arbiter hubs: fan-out of one commit to the sessions living on one arbiter.
//!
//! The manager sends each hub one shared `Arc` of a commit's updates, never one message
//! per session. The hub owns its sessions' delivery state in a slotmap (sink, protocol,
//! query sets with their snapshot offsets) and an index from query to local (session,
//! query set) pairs, so fanning a commit out costs one lookup per changed query and one
//! small envelope per affected session, appended straight to that session's queue. A
//! session driven by an application thread's [`crate::inbox`] costs less still: one
//! target entry, and the inbox gets a single batch per commit.
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

use crate::inbox::{Batch, InboxQueue, Item, Sink, TARGET_BYTES};
use crate::manager::{CommitBroadcast, SessionDropped};
use crate::messages::{
    CallReducerFlags, ConnectionId, Envelope, Protocol, QuerySetId, QuerySetUpdate, ReducerEvent,
    ReducerOutcome, ReducerStatus, ServerMessage, TransactionUpdate,
};
use crate::metrics::Metrics;
use crate::queue::Pushed;

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
    sink: Sink,
    sets: HashMap<QuerySetId, QuerySet>,
}

/// A session holding one query: what a commit changing that query needs to reach it,
/// without looking the session or its sets up.
struct Holder {
    key: SessionKey,
    sink: Sink,
    v1: bool,
    /// The query sets holding the query, with their snapshot offsets; sorted by set.
    sets: SmallVec<[(QuerySetId, u64); 1]>,
}

/// What changed for one session in one commit: (query set, query) pairs, sorted.
type ContentKey = SmallVec<[(QuerySetId, QueryId); 2]>;

/// The local holders of one query: sessions with their own queue, and per inbox the
/// sessions delivered through it.
#[derive(Default)]
struct Holders {
    own: Vec<Holder>,
    inboxes: Vec<InboxHolders>,
}

/// The holders of one query on one inbox.
struct InboxHolders {
    inbox: Arc<InboxQueue>,
    holders: Vec<Holder>,
    /// The batch targets for a commit of the query, built at the first commit past all
    /// their snapshots and reused until the holders change: a commit then costs this
    /// inbox one message per distinct content, whatever the number of connections.
    cached: Option<CachedTargets>,
}

struct CachedTargets {
    /// The distinct (protocol v1, content) pairs the targets point into.
    contents: Vec<(bool, ContentKey)>,
    targets: Arc<[(ConnectionId, u32)]>,
}

impl Holders {
    /// The list `sink`'s session belongs in; an inbox's cached targets are dropped, as
    /// the caller is about to change the list.
    fn list_for(&mut self, sink: &Sink) -> &mut Vec<Holder> {
        let Some(inbox) = sink.inbox() else {
            return &mut self.own;
        };
        let at = match self
            .inboxes
            .iter()
            .position(|g| Arc::ptr_eq(&g.inbox, inbox))
        {
            Some(at) => at,
            None => {
                self.inboxes.push(InboxHolders {
                    inbox: inbox.clone(),
                    holders: Vec::new(),
                    cached: None,
                });
                self.inboxes.len() - 1
            }
        };
        let g = &mut self.inboxes[at];
        g.cached = None;
        &mut g.holders
    }

    fn is_empty(&self) -> bool {
        self.own.is_empty() && self.inboxes.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Holder> {
        self.own
            .iter()
            .chain(self.inboxes.iter().flat_map(|g| g.holders.iter()))
    }
}

impl InboxHolders {
    /// The cached targets for a commit at `offset` of query `id`, built if need be;
    /// `None` while some holder's snapshot is not older than `offset`.
    fn targets(&mut self, offset: u64, id: QueryId) -> Option<&CachedTargets> {
        if self.cached.is_none() {
            let newest = self
                .holders
                .iter()
                .flat_map(|h| h.sets.iter().map(|(_, from)| *from))
                .max()
                .unwrap_or(0);
            if offset <= newest {
                return None;
            }
            let mut contents: Vec<(bool, ContentKey)> = Vec::new();
            let mut seen: HashMap<(bool, ContentKey), u32> = HashMap::new();
            let mut targets = Vec::with_capacity(self.holders.len());
            for h in &self.holders {
                let Sink::Inbox(_, connection) = &h.sink else {
                    continue;
                };
                let content: ContentKey = h.sets.iter().map(|(qs, _)| (*qs, id)).collect();
                let at = *seen.entry((h.v1, content)).or_insert_with_key(|k| {
                    contents.push(k.clone());
                    contents.len() as u32 - 1
                });
                targets.push((*connection, at));
            }
            self.cached = Some(CachedTargets {
                contents,
                targets: targets.into(),
            });
        }
        self.cached.as_ref()
    }
}

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
    // One element of a query's holder list, which grows by doubling.
    let by_query = 2 * size_of::<Holder>();
    let scratch = map_entry_bytes::<SessionKey, ContentKey>();
    slot + sets + by_connection + by_query + scratch
}

/// A hub actor; one per pool arbiter.
pub struct Hub {
    sessions: SlotMap<SessionKey, Session>,
    by_connection: HashMap<ConnectionId, SessionKey>,
    /// Per query, the local sessions holding it (one entry per session).
    by_query: HashMap<QueryId, Holders>,
    manager: Option<Recipient<SessionDropped>>,
    metrics: Arc<Metrics>,
    /// Reused per commit: each affected session's query-set updates.
    scratch: HashMap<SessionKey, ContentKey>,
    /// Reused per commit: the batches for inboxes.
    batches: Batches,
}

/// The message a fan-out sends to sessions with the same share of a commit, built once.
#[derive(Clone)]
struct Built {
    message: Arc<ServerMessage>,
    bytes: usize,
    /// Distinguishes the messages of one fan-out, so an inbox batch holds each once.
    id: u32,
}

/// The inbox batches of one fan-out, reused across commits.
#[derive(Default)]
struct Batches {
    open: Vec<OpenBatch>,
    /// Inbox id -> index in `open`; consulted only when the last batch used is not the
    /// inbox wanted (a hub usually serves one or two inboxes).
    index: HashMap<u64, usize>,
    last: usize,
}

struct OpenBatch {
    inbox: Arc<InboxQueue>,
    /// A session of the inbox, to report the inbox dropped.
    key: SessionKey,
    durable: Option<Durable>,
    messages: SmallVec<[Arc<ServerMessage>; 1]>,
    /// Targets gathered one by one, or a cached list (then nothing else is added).
    targets: Vec<(ConnectionId, u32)>,
    shared: Option<Arc<[(ConnectionId, u32)]>>,
    /// The [`Built::id`] of each message in `messages`.
    ids: SmallVec<[u32; 1]>,
    bytes: usize,
}

/// The messages of a commit that changed one query, built once per distinct content.
struct OneQuery<'a> {
    b: &'a CommitBroadcast,
    offset: u64,
    id: QueryId,
    caller: Option<SessionKey>,
    /// Sessions usually share one content (same set ids, same protocol): compared
    /// before looking in `built`.
    last: Option<(bool, ContentKey, Built)>,
    built: HashMap<(bool, ContentKey), Built>,
    content: ContentKey,
}

impl OneQuery<'_> {
    /// The message for sessions of protocol `v1` whose share is `content`.
    fn built(&mut self, v1: bool, content: &ContentKey) -> Built {
        let next = self.built.len() as u32;
        let b = self.b;
        self.built
            .entry((v1, content.clone()))
            .or_insert_with_key(|(v1, c)| Hub::build(b, *v1, c, next))
            .clone()
    }

    /// Sends `h` its share, if the commit is past one of its sets' snapshots.
    fn send(&mut self, h: &Holder, out: &mut Delivery<'_>) {
        if self.caller == Some(h.key) {
            return;
        }
        let mut content = std::mem::take(&mut self.content);
        content.clear();
        content.extend(
            h.sets
                .iter()
                .filter(|(_, from)| self.offset > *from)
                .map(|(qs, _)| (*qs, self.id)),
        );
        if !content.is_empty() {
            match &self.last {
                Some((v1, c, m)) if *v1 == h.v1 && *c == content => out.send(h.key, &h.sink, m),
                _ => {
                    let m = self.built(h.v1, &content);
                    out.send(h.key, &h.sink, &m);
                    self.last = Some((h.v1, content.clone(), m));
                }
            }
        }
        self.content = content;
    }
}

/// One commit's delivery in progress: pushes to own queues at once, gathers inbox
/// targets into one batch per inbox.
struct Delivery<'a> {
    durable: &'a Option<Durable>,
    batches: &'a mut Batches,
    delivered: u64,
    dropped: SmallVec<[SessionKey; 2]>,
}

impl<'a> Delivery<'a> {
    fn new(durable: &'a Option<Durable>, batches: &'a mut Batches) -> Self {
        Delivery {
            durable,
            batches,
            delivered: 0,
            dropped: SmallVec::new(),
        }
    }

    fn send(&mut self, key: SessionKey, sink: &Sink, m: &Built) {
        match sink {
            Sink::Queue(q) => {
                let envelope = Envelope {
                    message: m.message.clone(),
                    durable: self.durable.clone(),
                };
                match q.push_sized(envelope, m.bytes) {
                    Pushed::Queued | Pushed::QueuedWasEmpty => self.delivered += 1,
                    Pushed::Dropped => self.dropped.push(key),
                    Pushed::Gone => {}
                }
            }
            Sink::Inbox(inbox, connection) => self.add(inbox, key, *connection, m),
        }
    }

    fn add(
        &mut self,
        inbox: &Arc<InboxQueue>,
        key: SessionKey,
        connection: ConnectionId,
        m: &Built,
    ) {
        let b = &mut *self.batches;
        let at = match b.open.get(b.last) {
            Some(o) if Arc::ptr_eq(&o.inbox, inbox) => b.last,
            _ => match b.index.get(&inbox.id()) {
                Some(&at) => at,
                None => {
                    b.open.push(OpenBatch {
                        inbox: inbox.clone(),
                        key,
                        durable: self.durable.clone(),
                        messages: SmallVec::new(),
                        targets: Vec::new(),
                        shared: None,
                        ids: SmallVec::new(),
                        bytes: 0,
                    });
                    b.index.insert(inbox.id(), b.open.len() - 1);
                    b.open.len() - 1
                }
            },
        };
        b.last = at;
        let o = &mut b.open[at];
        debug_assert!(o.shared.is_none(), "a cached batch takes no more targets");
        let slot = match o.ids.iter().rposition(|id| *id == m.id) {
            Some(slot) => slot,
            None => {
                o.ids.push(m.id);
                o.messages.push(m.message.clone());
                o.bytes += m.bytes;
                o.ids.len() - 1
            }
        };
        o.targets.push((connection, slot as u32));
        o.bytes += TARGET_BYTES;
    }

    /// Adds a whole batch for `inbox`: its cached `targets`, pointing into `messages`.
    fn add_shared(
        &mut self,
        inbox: &Arc<InboxQueue>,
        key: SessionKey,
        messages: SmallVec<[Built; 1]>,
        targets: Arc<[(ConnectionId, u32)]>,
    ) {
        let b = &mut *self.batches;
        debug_assert!(!b.index.contains_key(&inbox.id()), "one batch per inbox");
        b.open.push(OpenBatch {
            inbox: inbox.clone(),
            key,
            durable: self.durable.clone(),
            bytes: messages.iter().map(|m| m.bytes).sum::<usize>() + TARGET_BYTES * targets.len(),
            messages: messages.into_iter().map(|m| m.message).collect(),
            targets: Vec::new(),
            shared: Some(targets),
            ids: SmallVec::new(),
        });
        b.index.insert(inbox.id(), b.open.len() - 1);
    }

    /// Appends each inbox's batch; returns the deliveries and the sessions dropped.
    fn finish(mut self) -> (u64, SmallVec<[SessionKey; 2]>) {
        self.batches.index.clear();
        self.batches.last = 0;
        // Every inbox gets the commit before any is woken.
        let mut woken: SmallVec<[Arc<InboxQueue>; 2]> = SmallVec::new();
        for o in self.batches.open.drain(..) {
            let targets = o.shared.unwrap_or_else(|| o.targets.into());
            let reached = targets.len() as u64;
            let batch = Batch {
                durable: o.durable,
                messages: o.messages,
                targets,
            };
            let pushed = o.inbox.push_unwoken(Item::Commit(batch), o.bytes);
            if pushed.wakes() {
                woken.push(o.inbox);
            }
            match pushed {
                Pushed::Queued | Pushed::QueuedWasEmpty => self.delivered += reached,
                Pushed::Dropped => self.dropped.push(o.key),
                Pushed::Gone => {}
            }
        }
        for inbox in woken {
            inbox.wake();
        }
        (self.delivered, self.dropped)
    }
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
            batches: Batches::default(),
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
        let bytes = envelope.approx_bytes();
        match s.sink.push(envelope, bytes) {
            Pushed::Queued | Pushed::QueuedWasEmpty => true,
            Pushed::Dropped => {
                self.dropped(key);
                false
            }
            Pushed::Gone => false,
        }
    }

    /// Reports the session of `key` dropped for passing its bound; a session on an
    /// inbox takes every session of that inbox with it (they shared the bound).
    fn dropped(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let reason = s.sink.dropped_reason().unwrap_or_default();
        let gone: SmallVec<[ConnectionId; 1]> = match s.sink.inbox() {
            None => smallvec::smallvec![s.connection],
            // Rare (an application thread stopped draining): a scan is fine.
            Some(inbox) => self
                .sessions
                .values()
                .filter(|o| o.sink.inbox().is_some_and(|i| Arc::ptr_eq(i, inbox)))
                .map(|o| o.connection)
                .collect(),
        };
        for connection in gone {
            tracing::warn!(connection = connection.0, %reason, "dropping session");
            self.metrics.count_drop(&reason);
            if let Some(m) = &self.manager {
                m.do_send(SessionDropped { connection });
            }
        }
    }

    fn remove_session(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.remove(key) else {
            return;
        };
        self.by_connection.remove(&s.connection);
        for (qs, set) in s.sets {
            for q in set.queries {
                self.unindex(q.id, key, &s.sink, qs);
            }
        }
    }

    fn index(&mut self, id: QueryId, key: SessionKey, qs: QuerySetId, from_offset: u64) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let list = self.by_query.entry(id).or_default().list_for(&s.sink);
        match list.iter_mut().find(|h| h.key == key) {
            Some(h) => {
                let at = h.sets.partition_point(|(q, _)| *q < qs);
                h.sets.insert(at, (qs, from_offset));
            }
            None => list.push(Holder {
                key,
                sink: s.sink.clone(),
                v1: s.protocol == Protocol::V1,
                sets: smallvec::smallvec![(qs, from_offset)],
            }),
        }
    }

    fn unindex(&mut self, id: QueryId, key: SessionKey, sink: &Sink, qs: QuerySetId) {
        if let Some(holders) = self.by_query.get_mut(&id) {
            let list = holders.list_for(sink);
            if let Some(p) = list.iter().position(|h| h.key == key) {
                let h = &mut list[p];
                if let Some(i) = h.sets.iter().position(|(q, _)| *q == qs) {
                    h.sets.remove(i);
                }
                if h.sets.is_empty() {
                    list.swap_remove(p);
                }
            }
            holders.inboxes.retain(|g| !g.holders.is_empty());
            if holders.is_empty() {
                self.by_query.remove(&id);
            }
        }
    }

    /// The message for sessions whose share of `b` is `content`, for the protocol `v1`.
    fn build(b: &CommitBroadcast, v1: bool, content: &ContentKey, id: u32) -> Built {
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
            id,
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
            let sets = self.take_caller_sets(b, key);
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
    /// recipient, so no per-session grouping is needed, and an inbox whose holders did
    /// not change since the last commit of the query reuses its targets. Returns the
    /// deliveries and the sessions dropped for passing their bound.
    fn fan_out_one(
        &mut self,
        b: &CommitBroadcast,
        offset: u64,
        caller: Option<SessionKey>,
        durable: &Option<Durable>,
    ) -> (u64, SmallVec<[SessionKey; 2]>) {
        let mut batches = std::mem::take(&mut self.batches);
        let mut out = Delivery::new(durable, &mut batches);
        let caller_inbox = caller
            .and_then(|k| self.sessions.get(k))
            .and_then(|s| s.sink.inbox().cloned());
        if let Some((id, _)) = b.updates.iter().next()
            && let Some(holders) = self.by_query.get_mut(id)
        {
            let mut one = OneQuery {
                b,
                offset,
                id: *id,
                caller,
                last: None,
                built: HashMap::new(),
                content: ContentKey::new(),
            };
            for h in &holders.own {
                one.send(h, &mut out);
            }
            for g in &mut holders.inboxes {
                // The caller gets its own result instead, and a lone holder is as cheap
                // to serve directly (caching its one target would cost allocations for
                // queries that see one commit in a while): those go holder by holder.
                let has_caller = caller_inbox
                    .as_ref()
                    .is_some_and(|c| Arc::ptr_eq(c, &g.inbox));
                let cached = match g.holders.first() {
                    Some(first) if !has_caller && g.holders.len() > 1 => {
                        let key = first.key;
                        g.targets(offset, *id).map(|c| (key, c))
                    }
                    _ => None,
                };
                match cached {
                    Some((key, cached)) => {
                        let targets = cached.targets.clone();
                        let messages = cached
                            .contents
                            .iter()
                            .map(|(v1, content)| one.built(*v1, content))
                            .collect();
                        out.add_shared(&g.inbox, key, messages, targets);
                    }
                    None => {
                        for h in &g.holders {
                            one.send(h, &mut out);
                        }
                    }
                }
            }
        }
        let result = out.finish();
        self.batches = batches;
        result
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
            for h in self.by_query.get(id).into_iter().flat_map(Holders::iter) {
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
        let mut batches = std::mem::take(&mut self.batches);
        let mut out = Delivery::new(durable, &mut batches);
        for (key, mut content) in per_session.drain() {
            let Some(s) = self.sessions.get(key) else {
                continue;
            };
            content.sort_unstable();
            let v1 = s.protocol == Protocol::V1;
            let next = built.len() as u32;
            let m = built
                .entry((v1, content))
                .or_insert_with_key(|(v1, c)| Self::build(b, *v1, c, next));
            out.send(key, &s.sink, m);
        }
        let result = out.finish();
        self.batches = batches;
        self.scratch = per_session;
        result
    }

    /// The caller's own query-set updates (recomputed: the caller was skipped above).
    fn take_caller_sets(&self, b: &CommitBroadcast, key: SessionKey) -> Vec<QuerySetUpdate> {
        let (Some(offset), Some(s)) = (b.tx_offset, self.sessions.get(key)) else {
            return Vec::new();
        };
        // The same share, in the same order, as the caller would get as anyone else: a
        // client's callbacks must not depend on whether it made the call.
        let mut content: ContentKey = s
            .sets
            .iter()
            .filter(|(_, set)| offset > set.from_offset)
            .flat_map(|(qs, set)| {
                set.queries
                    .iter()
                    .filter(|q| b.updates.contains_key(&q.id))
                    .map(move |q| (*qs, q.id))
            })
            .collect();
        content.sort_unstable();
        content.dedup();
        group_by_set(&content, b)
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
    /// Where its messages go.
    pub sink: Sink,
    /// The first message to deliver.
    pub initial: Envelope,
}

impl Handler<HubAttach> for Hub {
    type Result = ();
    fn handle(&mut self, msg: HubAttach, _: &mut Self::Context) {
        let key = self.sessions.insert(Session {
            connection: msg.connection,
            protocol: msg.protocol,
            sink: msg.sink,
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
        if let Some((sink, set)) = self.sessions.get_mut(key).and_then(|s| {
            let set = s.sets.remove(&msg.query_set_id)?;
            Some((s.sink.clone(), set))
        }) {
            for q in set.queries {
                self.unindex(q.id, key, &sink, msg.query_set_id);
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
            s.sink.finish(&msg.reason);
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
    use crate::queue::{QueueLimits, SessionQueue};
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
            sink: Sink::Queue(queue.clone()),
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
            sink: Sink::Queue(queue.clone()),
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
        hub.unindex(a, key, &Sink::Queue(queue.clone()), 1);
        hub.commit(&broadcast(3, a), false);
        assert_eq!(sets_of(queue.try_pop().expect("delivered")), vec![2]);
    }
}
