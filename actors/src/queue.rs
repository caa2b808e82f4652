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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::messages::{Envelope, ServerMessage};

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

#[derive(Default)]
struct State {
    queue: VecDeque<(Envelope, usize)>,
    bytes: usize,
    dropped: Option<String>,
    closed: bool,
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

/// A session's outbound queue. Shared between its hub (pushing) and its receiver.
pub struct SessionQueue {
    state: Mutex<State>,
    ready: Condvar,
    limits: QueueLimits,
    on_ready: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    /// Whether `on_ready` holds a hook: in-process queues have none, and a wake must not
    /// take a second lock per push to find that out.
    has_hook: AtomicBool,
}

impl SessionQueue {
    /// An empty queue with `limits`.
    pub fn new(limits: QueueLimits) -> Self {
        SessionQueue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            limits,
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
        let mut s = self.state.lock();
        if s.dropped.is_some() || s.closed {
            return Pushed::Gone;
        }
        if s.queue.len() + 1 > self.limits.messages_max || s.bytes + bytes > self.limits.bytes_max {
            let reason = format!(
                "outbound queue bound passed ({} messages, {} bytes queued; limits {} messages, {} bytes): the client is not reading fast enough",
                s.queue.len(),
                s.bytes,
                self.limits.messages_max,
                self.limits.bytes_max
            );
            s.queue.clear();
            s.bytes = 0;
            s.queue.push_back((
                Envelope::now(ServerMessage::Disconnected {
                    reason: reason.clone(),
                    going_away: false,
                }),
                0,
            ));
            s.dropped = Some(reason);
            drop(s);
            self.wake();
            return Pushed::Dropped;
        }
        let was_empty = s.queue.is_empty();
        s.queue.push_back((envelope, bytes));
        s.bytes += bytes;
        drop(s);
        if was_empty {
            self.wake();
            Pushed::QueuedWasEmpty
        } else {
            Pushed::Queued
        }
    }

    fn wake(&self) {
        self.ready.notify_all();
        if self.has_hook.load(Ordering::Acquire)
            && let Some(hook) = &*self.on_ready.lock()
        {
            hook();
        }
    }

    /// Takes the next message, if any.
    pub fn try_pop(&self) -> Option<Envelope> {
        let mut s = self.state.lock();
        let (env, bytes) = s.queue.pop_front()?;
        s.bytes -= bytes;
        Some(env)
    }

    /// Takes the next message, waiting up to `timeout` for one.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<Envelope> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        loop {
            if let Some((env, bytes)) = s.queue.pop_front() {
                s.bytes -= bytes;
                return Some(env);
            }
            if s.closed || self.ready.wait_until(&mut s, deadline).timed_out() {
                let (env, bytes) = s.queue.pop_front()?;
                s.bytes -= bytes;
                return Some(env);
            }
        }
    }

    /// Messages queued now (a gauge).
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes queued now (a gauge).
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Why the session was dropped, if it was.
    pub fn dropped_reason(&self) -> Option<String> {
        self.state.lock().dropped.clone()
    }

    /// Ends the session after what is already queued: appends `Disconnected` (past the
    /// bounds: it is the last message) and accepts nothing more. For server shutdown.
    pub fn finish(&self, reason: &str) {
        let mut s = self.state.lock();
        if s.dropped.is_some() || s.closed {
            return;
        }
        s.queue.push_back((
            Envelope::now(ServerMessage::Disconnected {
                reason: reason.to_string(),
                going_away: true,
            }),
            0,
        ));
        s.dropped = Some(reason.to_string());
        drop(s);
        self.wake();
    }

    /// Stops accepting messages (the client disconnected) and wakes any waiter.
    pub fn close(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        s.queue.clear();
        s.bytes = 0;
        drop(s);
        self.ready.notify_all();
    }

    /// Whether the queue no longer accepts messages.
    pub fn is_closed(&self) -> bool {
        let s = self.state.lock();
        s.closed || s.dropped.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Envelope {
        Envelope::now(ServerMessage::Disconnected {
            reason: "x".into(),
            going_away: false,
        })
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
