//! Durability progress shared between the writer thread and everyone waiting on it, and the
//! [`Durable`] ticket handed out by `append`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::CommitlogError;

/// What the writer has achieved so far.
#[derive(Debug)]
struct Progress {
    /// Entries `0..durable` are covered by a completed fsync.
    durable: u64,
    /// Set once a write or fsync failed; the writer does nothing after that.
    stopped: Option<String>,
}

/// Progress plus the condition variable its waiters sleep on.
#[derive(Debug)]
pub(crate) struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
    /// The highest entry count somebody is blocked waiting for. Under group commit the
    /// writer fsyncs as soon as a waiter exists instead of sitting out the window: the
    /// window bounds how long an unobserved commit may stay unsynced, it should never
    /// add latency to a caller that is already waiting.
    wanted: std::sync::atomic::AtomicU64,
    /// Wakes the writer when a new waiter arrives (the writer may be idle in its window).
    nudge: Mutex<Option<std::sync::mpsc::SyncSender<super::writer::Msg>>>,
}

impl Shared {
    /// Progress for a log whose first `durable` entries are already on disk.
    pub(crate) fn new(durable: u64) -> Self {
        Self {
            progress: Mutex::new(Progress {
                durable,
                stopped: None,
            }),
            changed: Condvar::new(),
            wanted: std::sync::atomic::AtomicU64::new(0),
            nudge: Mutex::new(None),
        }
    }

    /// Gives waiters a way to wake the writer.
    pub(crate) fn set_nudge(&self, tx: Option<std::sync::mpsc::SyncSender<super::writer::Msg>>) {
        *self.nudge.lock() = tx;
    }

    /// The highest entry count a waiter is blocked on.
    pub(crate) fn wanted(&self) -> u64 {
        self.wanted.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records that entries `0..count` are durable and wakes the waiters.
    pub(crate) fn publish_durable(&self, count: u64) {
        let mut p = self.progress.lock();
        if count > p.durable {
            p.durable = count;
            self.changed.notify_all();
        }
    }

    /// Records why the writer stopped and wakes every waiter so none of them hangs.
    pub(crate) fn stop(&self, reason: String) {
        let mut p = self.progress.lock();
        // The first failure is the interesting one; later ones are consequences.
        if p.stopped.is_none() {
            p.stopped = Some(reason);
        }
        self.changed.notify_all();
    }

    /// The error to report if the writer has stopped.
    pub(crate) fn stopped_error(&self) -> Option<CommitlogError> {
        self.progress
            .lock()
            .stopped
            .as_ref()
            .map(|reason| CommitlogError::Stopped {
                reason: reason.clone(),
            })
    }

    /// Whether entries `0..count` are durable.
    pub(crate) fn is_durable(&self, count: u64) -> bool {
        self.progress.lock().durable >= count
    }

    /// Blocks until entries `0..count` are durable (`Ok(true)`), the deadline passes
    /// (`Ok(false)`), or the writer stops first (`Err`).
    pub(crate) fn wait_for(
        &self,
        count: u64,
        deadline: Option<Instant>,
    ) -> Result<bool, CommitlogError> {
        let mut p = self.progress.lock();
        loop {
            // Durability is checked before failure: an entry synced before the writer
            // stopped is still safely on disk.
            if p.durable >= count {
                return Ok(true);
            }
            if let Some(reason) = &p.stopped {
                return Err(CommitlogError::Stopped {
                    reason: reason.clone(),
                });
            }
            let before = self
                .wanted
                .fetch_max(count, std::sync::atomic::Ordering::AcqRel);
            if before < count
                && let Some(tx) = &*self.nudge.lock()
            {
                // A full queue means the writer is busy and will see `wanted` after
                // this batch anyway; never block here.
                let _ = tx.try_send(super::writer::Msg::Flush);
            }
            match deadline {
                None => self.changed.wait(&mut p),
                Some(d) => {
                    if self.changed.wait_until(&mut p, d).timed_out() {
                        return Ok(p.durable >= count);
                    }
                }
            }
        }
    }
}

/// Ticket for one appended entry.
///
/// Cheap to clone; every clone observes the same entry.
#[derive(Debug, Clone)]
pub struct Durable {
    index: u64,
    shared: Arc<Shared>,
}

impl Durable {
    /// A ticket for entry `index`.
    pub(crate) fn new(index: u64, shared: Arc<Shared>) -> Self {
        Self { index, shared }
    }

    /// The entry's position in the log, counted from 0 across all segments.
    pub fn entry_index(&self) -> u64 {
        self.index
    }

    /// Whether the entry is already covered by an fsync.
    pub fn is_durable(&self) -> bool {
        self.shared.is_durable(self.index + 1)
    }

    /// Blocks until the entry is fsynced under the log's policy, or the writer failed.
    pub fn wait(&self) -> Result<(), CommitlogError> {
        self.shared.wait_for(self.index + 1, None).map(|_| ())
    }

    /// Like [`Durable::wait`] but gives up after `timeout`, returning whether it is durable.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, CommitlogError> {
        // A timeout too large to represent as an instant is as good as no timeout.
        let deadline = Instant::now().checked_add(timeout);
        self.shared.wait_for(self.index + 1, deadline)
    }
}
