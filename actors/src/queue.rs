//! A session's outbound queue, with the meter that bounds it.
//!
//! The bound is enforced by the *sender* (the hub), never the receiver: a client that
//! stops reading cannot police itself. A push that would pass the message or byte bound
//! marks the session dropped, releases its whole backlog at once (so a slow client costs
//! nobody memory), leaves a single `Disconnected` message with the reason, and reports
//! the drop so the hub can detach the session and bump the metric. Everyone else is
//! unaffected: pushing never blocks.
//!
//! The receiver (an in-process client thread, or a WebSocket session actor) waits on the
//! queue's condition variable or is woken by the `on_ready` hook when the queue goes from
//! empty to non-empty.
//!
//! [`Metered`] is the bounded FIFO itself, shared with the inboxes of [`crate::inbox`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::messages::Envelope;

/// Bounds of one session's queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Most messages queued at once.
    pub messages_max: usize,
    /// Most bytes (approximate) queued at once.
    pub bytes_max: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            messages_max: 16_384,
            bytes_max: 64 << 20,
        }
    }
}

/// Outcome of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued, and the queue was empty: the receiver should be woken.
    QueuedWasEmpty,
    /// The push passed a bound: the session is now dropped.
    Dropped,
    /// The session was already dropped or closed; nothing queued.
    Gone,
}

impl Pushed {
    /// Whether the receiver has something new to wake up for.
    pub fn wakes(&self) -> bool {
        matches!(self, Pushed::QueuedWasEmpty | Pushed::Dropped)
    }
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    dropped: Option<String>,
    closed: bool,
}

impl<T> State<T> {
    /// Takes the next item, releasing its bytes.
    fn pop(&mut self) -> Option<T> {
        let (item, bytes) = self.items.pop_front()?;
        self.bytes -= bytes;
        Some(item)
    }
}

/// A FIFO of `T` bounded in items and approximate bytes, the bound enforced by the
/// pusher: the core of a session's queue and of an application thread's inbox
/// ([`crate::inbox`]).
pub struct Metered<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    limits: QueueLimits,
}

/// What a metered queue says when a push passes its bound: the reason, given what was
/// queued and the limits, and the one item left in the queue to tell the receiver.
pub struct Overflow<T> {
    /// The reason, from (items queued, bytes queued, limits).
    pub reason: fn(usize, usize, &QueueLimits) -> String,
    /// The notice left in place of the backlog.
    pub notice: fn(String) -> T,
}

impl<T> Metered<T> {
    /// An empty queue with `limits`.
    pub fn new(limits: QueueLimits) -> Self {
        Metered {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                dropped: None,
                closed: false,
            }),
            ready: Condvar::new(),
            limits,
        }
    }

    /// Appends `item` of `bytes` approximate bytes within the bounds. A push that would
    /// pass one releases the whole backlog, leaves only `overflow`'s notice and marks
    /// the queue dropped: nothing more is accepted.
    pub fn push(&self, item: T, bytes: usize, overflow: &Overflow<T>) -> Pushed {
        let pushed = self.push_unwoken(item, bytes, overflow, || {});
        if pushed.wakes() {
            self.wake();
        }
        pushed
    }

    /// [`Metered::push`] without waking the receiver: the caller calls [`Metered::wake`]
    /// when [`Pushed::wakes`] says so, after its other appends (a woken receiver may take
    /// this thread's core for a scheduler slice). `queued` runs once the item is in.
    pub fn push_unwoken(
        &self,
        item: T,
        bytes: usize,
        overflow: &Overflow<T>,
        queued: impl FnOnce(),
    ) -> Pushed {
        let mut s = self.state.lock();
        if s.dropped.is_some() || s.closed {
            return Pushed::Gone;
        }
        if s.items.len() + 1 > self.limits.messages_max || s.bytes + bytes > self.limits.bytes_max {
            let reason = (overflow.reason)(s.items.len(), s.bytes, &self.limits);
            s.items.clear();
            s.bytes = 0;
            s.items.push_back(((overflow.notice)(reason.clone()), 0));
            s.dropped = Some(reason);
            return Pushed::Dropped;
        }
        let was_empty = s.items.is_empty();
        s.items.push_back((item, bytes));
        s.bytes += bytes;
        drop(s);
        queued();
        if was_empty {
            Pushed::QueuedWasEmpty
        } else {
            Pushed::Queued
        }
    }

    /// Wakes whoever waits for an item.
    pub fn wake(&self) {
        self.ready.notify_all();
    }

    /// Appends `item` past the bounds, as the last thing a receiver hears: with
    /// `ending`, nothing more is accepted after it. Whether it was queued (not after a
    /// drop or a close).
    pub fn push_final(&self, item: T, ending: Option<&str>) -> bool {
        let mut s = self.state.lock();
        if s.dropped.is_some() || s.closed {
            return false;
        }
        s.items.push_back((item, 0));
        if let Some(reason) = ending {
            s.dropped = Some(reason.to_string());
        }
        drop(s);
        self.ready.notify_all();
        true
    }

    /// Takes the next item, if any.
    pub fn try_pop(&self) -> Option<T> {
        self.state.lock().pop()
    }

    /// Takes the next item, waiting up to `timeout` for one (not after a close).
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        loop {
            if let Some(item) = s.pop() {
                return Some(item);
            }
            if s.closed || self.ready.wait_until(&mut s, deadline).timed_out() {
                return s.pop();
            }
        }
    }

    /// Items queued now (a gauge).
    pub fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes queued now (a gauge).
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Why the queue was dropped, if it was.
    pub fn dropped_reason(&self) -> Option<String> {
        self.state.lock().dropped.clone()
    }

    /// Stops accepting items, forgets what is queued and wakes any waiter.
    pub fn close(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        s.items.clear();
        s.bytes = 0;
        drop(s);
        self.ready.notify_all();
    }

    /// Whether the queue no longer accepts items.
    pub fn is_closed(&self) -> bool {
        let s = self.state.lock();
        s.closed || s.dropped.is_some()
    }
}

/// A session's queue passing its bound.
const SESSION_OVERFLOW: Overflow<Envelope> = Overflow {
    reason: |items, bytes, limits| {
        format!(
            "outbound queue bound passed ({items} messages, {bytes} bytes queued; limits {} messages, {} bytes): the client is not reading fast enough",
            limits.messages_max, limits.bytes_max
        )
    },
    notice: |reason| Envelope::disconnected(reason, false),
};

/// A session's outbound queue. Shared between its hub (pushing) and its receiver.
pub struct SessionQueue {
    queue: Metered<Envelope>,
    on_ready: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    /// Whether `on_ready` holds a hook: in-process queues have none, and a wake must not
    /// take a second lock per push to find that out.
    has_hook: AtomicBool,
}

impl SessionQueue {
    /// An empty queue with `limits`.
    pub fn new(limits: QueueLimits) -> Self {
        SessionQueue {
            queue: Metered::new(limits),
            on_ready: Mutex::new(None),
            has_hook: AtomicBool::new(false),
        }
    }

    /// Calls `hook` whenever the queue goes from empty to non-empty (socket sessions).
    pub fn set_on_ready(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.on_ready.lock() = Some(Box::new(hook));
        self.has_hook.store(true, Ordering::Release);
    }

    /// Appends `envelope`, enforcing the bounds.
    pub fn push(&self, envelope: Envelope) -> Pushed {
        let bytes = envelope.approx_bytes();
        self.push_sized(envelope, bytes)
    }

    /// Like [`SessionQueue::push`], with the envelope's [`Envelope::approx_bytes`]
    /// already known: a fan-out computes it once per distinct message, not per session.
    pub fn push_sized(&self, envelope: Envelope, bytes: usize) -> Pushed {
        let pushed = self.queue.push(envelope, bytes, &SESSION_OVERFLOW);
        if pushed.wakes() {
            self.hook();
        }
        pushed
    }

    fn hook(&self) {
        if self.has_hook.load(Ordering::Acquire)
            && let Some(hook) = &*self.on_ready.lock()
        {
            hook();
        }
    }

    /// Takes the next message, if any.
    pub fn try_pop(&self) -> Option<Envelope> {
        self.queue.try_pop()
    }

    /// Takes the next message, waiting up to `timeout` for one.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<Envelope> {
        self.queue.pop_timeout(timeout)
    }

    /// Messages queued now (a gauge).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Approximate bytes queued now (a gauge).
    pub fn bytes(&self) -> usize {
        self.queue.bytes()
    }

    /// Why the session was dropped, if it was.
    pub fn dropped_reason(&self) -> Option<String> {
        self.queue.dropped_reason()
    }

    /// Ends the session after what is already queued: appends `Disconnected` (past the
    /// bounds: it is the last message) and accepts nothing more. For server shutdown.
    pub fn finish(&self, reason: &str) {
        let notice = Envelope::disconnected(reason.to_string(), true);
        if self.queue.push_final(notice, Some(reason)) {
            self.hook();
        }
    }

    /// Stops accepting messages (the client disconnected) and wakes any waiter.
    pub fn close(&self) {
        self.queue.close();
    }

    /// Whether the queue no longer accepts messages.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ServerMessage;

    fn msg() -> Envelope {
        Envelope::disconnected("x".into(), false)
    }

    #[test]
    fn passing_the_bound_drops_the_session_and_releases_its_backlog() {
        let q = SessionQueue::new(QueueLimits {
            messages_max: 3,
            bytes_max: usize::MAX,
        });
        assert_eq!(q.push(msg()), Pushed::QueuedWasEmpty);
        assert_eq!(q.push(msg()), Pushed::Queued);
        assert_eq!(q.push(msg()), Pushed::Queued);
        assert_eq!(q.push(msg()), Pushed::Dropped);
        assert_eq!(
            q.len(),
            1,
            "backlog released, only the disconnect notice left"
        );
        assert!(
            q.dropped_reason()
                .is_some_and(|r| r.contains("not reading"))
        );
        assert_eq!(q.push(msg()), Pushed::Gone);
        match q.try_pop().map(|e| e.message) {
            Some(m) => assert!(matches!(&*m, ServerMessage::Disconnected { .. })),
            None => panic!("the disconnect notice is delivered"),
        }
    }

    #[test]
    fn byte_bound_is_enforced_too() {
        let q = SessionQueue::new(QueueLimits {
            messages_max: usize::MAX,
            bytes_max: 100,
        });
        assert_eq!(q.push(msg()), Pushed::QueuedWasEmpty);
        assert_eq!(q.push(msg()), Pushed::Dropped);
    }
}
