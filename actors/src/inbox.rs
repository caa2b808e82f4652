//! Application-thread inboxes: one queue for many in-process connections.
//!
//! A session's own [`SessionQueue`] costs its hub one locked append per session per
//! commit, and its reader one wake-up per session. An application that drives many
//! connections from one thread (a game server's tick loop, a test harness, a bot farm)
//! would rather hear once per commit. An [`InboxQueue`] is that: the hub appends one
//! [`Item::Commit`] per commit holding the commit's distinct messages once and, per
//! affected connection of the inbox, which of them it gets. Every other message for those
//! connections (initial connection, subscription answers, reducer results) goes into the
//! same FIFO as an [`Item::One`], so each connection still sees its messages in order.
//!
//! All connections of one inbox live on the same hub, so a commit is exactly one append
//! per inbox and the inbox's bound has a single enforcer; and every inbox lives on the
//! first hub, so a commit's batches are all built before the first one is appended
//! (see [`crate::Tidings::inbox`]). For a query whose holders on an inbox have not
//! changed since its last commit, the hub reuses the batch's target list: a commit then
//! costs it one message per distinct content per inbox, not work per connection.
//!
//! The bound (items and approximate bytes, [`QueueLimits`]) is enforced by the sender,
//! like a session queue's, but for the whole inbox: an application thread that stops
//! draining it is slow for every connection it drives. Passing it releases the backlog,
//! leaves one [`Item::Dropped`] (every connection of the inbox is disconnected with the
//! reason) and reports the drop, so the hub detaches all of the inbox's sessions.
//!
//! [`Sink`] is where a hub sends one session's messages: its own queue or an inbox.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;
use tidings_engine::commitlog::Durable;

use crate::messages::{ConnectionId, Envelope, ServerMessage};
use crate::queue::{Pushed, QueueLimits, SessionQueue};

/// Bytes a commit item charges per connection it names, on top of its messages: the
/// target entry itself. The messages are shared, so they are charged once.
pub const TARGET_BYTES: usize = 16;

/// One commit's messages for several connections of an inbox.
#[derive(Debug)]
pub struct Batch {
    /// The commit must be durable before any of it is shown (confirmed reads).
    pub durable: Option<Durable>,
    /// The distinct messages, each shared by every target that names it.
    pub messages: SmallVec<[Arc<ServerMessage>; 1]>,
    /// Each affected connection and the index of its message in `messages`. Shared:
    /// while a query's holders on an inbox do not change, every commit of that query
    /// sends the same list.
    pub targets: Arc<[(ConnectionId, u32)]>,
}

/// What an inbox holds.
#[derive(Debug)]
pub enum Item {
    /// A message for one connection.
    One(ConnectionId, Envelope),
    /// One commit, for several connections.
    Commit(Batch),
    /// The inbox passed its bound: every connection on it is disconnected with this
    /// reason, and nothing follows.
    Dropped(String),
}

#[derive(Default)]
struct State {
    items: VecDeque<(Item, usize)>,
    bytes: usize,
    dropped: Option<String>,
    /// When the last item was appended: one clock read per item, which for a commit is
    /// one per inbox, not per connection.
    last_append: Option<Instant>,
}

/// An inbox's queue, shared by its hub (pushing) and its application thread.
pub struct InboxQueue {
    id: u64,
    hub: usize,
    state: Mutex<State>,
    ready: Condvar,
    limits: QueueLimits,
}

impl std::fmt::Debug for InboxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxQueue")
            .field("id", &self.id)
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl InboxQueue {
    /// An empty inbox `id`, whose connections all live on hub `hub`.
    pub fn new(id: u64, hub: usize, limits: QueueLimits) -> Self {
        InboxQueue {
            id,
            hub,
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            limits,
        }
    }

    /// Its id, unique within one Tidings.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The hub its connections live on.
    pub fn hub(&self) -> usize {
        self.hub
    }

    /// Appends `item` of `bytes` approximate bytes, enforcing the bound.
    pub fn push(&self, item: Item, bytes: usize) -> Pushed {
        let mut s = self.state.lock();
        if s.dropped.is_some() {
            return Pushed::Gone;
        }
        if s.items.len() + 1 > self.limits.messages_max || s.bytes + bytes > self.limits.bytes_max {
            let reason = format!(
                "inbox bound passed ({} items, {} bytes queued; limits {} items, {} bytes): the application thread is not draining its inbox fast enough",
                s.items.len(),
                s.bytes,
                self.limits.messages_max,
                self.limits.bytes_max
            );
            s.items.clear();
            s.bytes = 0;
            s.items.push_back((Item::Dropped(reason.clone()), 0));
            s.dropped = Some(reason);
            drop(s);
            self.ready.notify_all();
            return Pushed::Dropped;
        }
        let was_empty = s.items.is_empty();
        s.items.push_back((item, bytes));
        s.bytes += bytes;
        s.last_append = Some(Instant::now());
        drop(s);
        if was_empty {
            self.ready.notify_all();
            Pushed::QueuedWasEmpty
        } else {
            Pushed::Queued
        }
    }

    /// Appends `item` past the bound: the last message of a session that is ending.
    pub fn push_final(&self, item: Item) {
        let mut s = self.state.lock();
        if s.dropped.is_some() {
            return;
        }
        s.items.push_back((item, 0));
        drop(s);
        self.ready.notify_all();
    }

    /// Why the inbox was dropped, if it was.
    pub fn dropped_reason(&self) -> Option<String> {
        self.state.lock().dropped.clone()
    }

    /// Takes the next item, if any.
    pub fn try_pop(&self) -> Option<Item> {
        let mut s = self.state.lock();
        let (item, bytes) = s.items.pop_front()?;
        s.bytes -= bytes;
        Some(item)
    }

    /// Takes the next item, waiting up to `timeout` for one.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<Item> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        loop {
            if let Some((item, bytes)) = s.items.pop_front() {
                s.bytes -= bytes;
                return Some(item);
            }
            if self.ready.wait_until(&mut s, deadline).timed_out() {
                let (item, bytes) = s.items.pop_front()?;
                s.bytes -= bytes;
                return Some(item);
            }
        }
    }

    /// Items queued now (a gauge).
    pub fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    /// When an item was last appended (within the bound), if ever.
    pub fn last_append(&self) -> Option<Instant> {
        self.state.lock().last_append
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a hub sends one session's messages.
#[derive(Clone)]
pub enum Sink {
    /// The session's own queue (WebSocket sessions, and in-process connections made
    /// without an inbox).
    Queue(Arc<SessionQueue>),
    /// The inbox of the application thread that drives the connection.
    Inbox(Arc<InboxQueue>, ConnectionId),
}

impl Sink {
    /// Appends one message for this session, enforcing the bound of whatever queue it
    /// lands in.
    pub fn push(&self, envelope: Envelope, bytes: usize) -> Pushed {
        match self {
            Sink::Queue(q) => q.push_sized(envelope, bytes),
            Sink::Inbox(i, c) => i.push(Item::One(*c, envelope), bytes),
        }
    }

    /// Ends the session after what is queued for it, with `reason` (server shutdown).
    pub fn finish(&self, reason: &str) {
        match self {
            Sink::Queue(q) => q.finish(reason),
            Sink::Inbox(i, c) => i.push_final(Item::One(
                *c,
                Envelope::now(ServerMessage::Disconnected {
                    reason: reason.to_string(),
                    going_away: true,
                }),
            )),
        }
    }

    /// Why the session's queue was dropped, if it was.
    pub fn dropped_reason(&self) -> Option<String> {
        match self {
            Sink::Queue(q) => q.dropped_reason(),
            Sink::Inbox(i, _) => i.dropped_reason(),
        }
    }

    /// The inbox, if the session has one.
    pub fn inbox(&self) -> Option<&Arc<InboxQueue>> {
        match self {
            Sink::Queue(_) => None,
            Sink::Inbox(i, _) => Some(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(c: u64) -> Item {
        Item::One(
            ConnectionId(c),
            Envelope::now(ServerMessage::Disconnected {
                reason: "x".into(),
                going_away: false,
            }),
        )
    }

    #[test]
    fn passing_the_bound_drops_the_whole_inbox_and_releases_its_backlog() {
        let q = InboxQueue::new(
            1,
            0,
            QueueLimits {
                messages_max: 2,
                bytes_max: usize::MAX,
            },
        );
        assert_eq!(q.push(one(1), 10), Pushed::QueuedWasEmpty);
        assert_eq!(q.push(one(2), 10), Pushed::Queued);
        assert_eq!(q.push(one(3), 10), Pushed::Dropped);
        assert_eq!(q.len(), 1, "backlog released, only the drop notice left");
        assert_eq!(q.push(one(4), 10), Pushed::Gone);
        match q.pop_timeout(Duration::ZERO) {
            Some(Item::Dropped(reason)) => assert!(reason.contains("not draining")),
            other => panic!("expected the drop notice, got {other:?}"),
        }
    }

    #[test]
    fn the_byte_bound_counts_what_was_pushed() {
        let q = InboxQueue::new(
            1,
            0,
            QueueLimits {
                messages_max: usize::MAX,
                bytes_max: 100,
            },
        );
        assert_eq!(q.push(one(1), 60), Pushed::QueuedWasEmpty);
        assert!(q.try_pop().is_some());
        // Taking released the bytes: another 60 fits.
        assert_eq!(q.push(one(2), 60), Pushed::QueuedWasEmpty);
        assert_eq!(q.push(one(3), 60), Pushed::Dropped);
    }
}
