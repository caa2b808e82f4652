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
//! (the manager places sessions). For a query with several holders on an inbox, while
//! they have not changed since its last commit, the hub reuses the batch's target list:
//! a commit then costs it one message per distinct content per inbox, not work per
//! connection.
//!
//! The bound (items and approximate bytes, [`QueueLimits`]) is enforced by the sender,
//! like a session queue's, but for the whole inbox: an application thread that stops
//! draining it is slow for every connection it drives. Passing it releases the backlog,
//! leaves one [`Item::Dropped`] (every connection of the inbox is disconnected with the
//! reason) and reports the drop, so the hub detaches all of the inbox's sessions.
//!
//! [`Sink`] is where a hub sends one session's messages: its own queue or an inbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tidings_engine::commitlog::Durable;

use crate::messages::{ConnectionId, Envelope, ServerMessage};
use crate::queue::{Metered, Overflow, Pushed, QueueLimits, SessionQueue};

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

/// An inbox passing its bound.
const INBOX_OVERFLOW: Overflow<Item> = Overflow {
    reason: |items, bytes, limits| {
        format!(
            "inbox bound passed ({items} items, {bytes} bytes queued; limits {} items, {} bytes): the application thread is not draining its inbox fast enough",
            limits.messages_max, limits.bytes_max
        )
    },
    notice: Item::Dropped,
};

/// An inbox's queue, shared by its hub (pushing) and its application thread.
pub struct InboxQueue {
    id: u64,
    queue: Metered<Item>,
    /// When the last item was appended, in nanoseconds after `created`: one clock read
    /// per item, which for a commit is one per inbox, not per connection. Read before
    /// the application thread is woken, which may preempt the pusher.
    created: Instant,
    last_append: AtomicU64,
}

impl std::fmt::Debug for InboxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxQueue")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl InboxQueue {
    /// An empty inbox `id`.
    pub fn new(id: u64, limits: QueueLimits) -> Self {
        InboxQueue {
            id,
            queue: Metered::new(limits),
            created: Instant::now(),
            last_append: AtomicU64::new(0),
        }
    }

    /// Its id, unique within one Tidings.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Appends `item` of `bytes` approximate bytes, enforcing the bound.
    pub fn push(&self, item: Item, bytes: usize) -> Pushed {
        let pushed = self.push_unwoken(item, bytes);
        if pushed.wakes() {
            self.wake();
        }
        pushed
    }

    /// [`InboxQueue::push`] without waking the application thread: a hub appending a
    /// commit to several inboxes wakes them all after the last append, so that no woken
    /// thread takes the hub's core before the other inboxes have the commit.
    pub fn push_unwoken(&self, item: Item, bytes: usize) -> Pushed {
        self.queue.push_unwoken(item, bytes, &INBOX_OVERFLOW, || {
            // Zero means never: an append in the first nanosecond counts as one.
            let at = self.created.elapsed().as_nanos().max(1) as u64;
            self.last_append.fetch_max(at, Ordering::Relaxed);
        })
    }

    /// Wakes the application thread if it waits for an item.
    pub fn wake(&self) {
        self.queue.wake();
    }

    /// Appends `item` past the bound: the last message of a session that is ending.
    pub fn push_final(&self, item: Item) {
        self.queue.push_final(item, None);
    }

    /// Why the inbox was dropped, if it was.
    pub fn dropped_reason(&self) -> Option<String> {
        self.queue.dropped_reason()
    }

    /// Takes the next item, if any.
    pub fn try_pop(&self) -> Option<Item> {
        self.queue.try_pop()
    }

    /// Takes the next item, waiting up to `timeout` for one.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<Item> {
        self.queue.pop_timeout(timeout)
    }

    /// Items queued now (a gauge).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When an item was last appended (within the bound), if ever.
    pub fn last_append(&self) -> Option<Instant> {
        match self.last_append.load(Ordering::Relaxed) {
            0 => None,
            at => Some(self.created + Duration::from_nanos(at)),
        }
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
                Envelope::disconnected(reason.to_string(), true),
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
