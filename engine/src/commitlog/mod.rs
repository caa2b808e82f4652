//! A durable, append-only log of opaque payloads.
//!
//! The datastore encodes each commit or schema change into a `Vec<u8>` and appends it;
//! on open, every intact payload is replayed in order. The log knows nothing about what
//! the payloads mean. Entries are numbered from 0 across the whole log.
//!
//! # On-disk format
//!
//! A log is a directory holding a `LOCK` file and segment files named after the index of
//! their first entry, zero-padded to 20 digits so that names sort in log order:
//! `00000000000000000000.tlog`, `00000000000000000137.tlog`, ... Any other entry makes
//! [`Commitlog::open`] refuse the directory. All integers are little-endian.
//!
//! ```text
//! segment file
//! offset  size  field
//! 0       8     magic "TIDLOG01" (54 49 44 4C 4F 47 30 31)
//! 8       4     format version, u32 = 1
//! 12      4     reserved, zero
//! 16      8     first entry index, u64 (must match the file name)
//! 24      ...   records, back to back, up to end of file
//!
//! record (at offset r)
//! r+0     4     len: payload length in bytes, u32
//! r+4     4     crc: CRC-32 (IEEE, crc32fast) of the 4 len bytes then the payload, u32
//! r+8     len   payload
//! ```
//!
//! There is no padding and no trailer: the next record starts at `r + 8 + len`. The
//! checksum covers the length so that a torn or flipped length cannot pass as a valid
//! shorter record. A segment grows until the next record would take it past
//! [`LogOptions::segment_size_max`]; a segment with no record yet accepts any record, so
//! one larger than the limit sits alone in its own segment.
//!
//! # Write path
//!
//! 1. [`Commitlog::append`] checks the size, assigns the next entry index and queues the
//!    payload on a bounded channel; it never touches a file (it blocks only while the
//!    queue is full) and returns a [`Durable`] ticket.
//! 2. The writer thread takes the first queued message and everything already queued
//!    behind it (up to `queue_len_max`) as one batch.
//! 3. For each payload: if it does not fit the current segment, fsync the current segment,
//!    create the next one (`create_new`, so nothing is overwritten), write its header and
//!    fsync the directory. Then encode the record into a buffer.
//! 4. Write the buffer to the segment file.
//! 5. Fsync (`sync_data`): after every batch under [`DurabilityPolicy::EveryCommit`];
//!    under [`DurabilityPolicy::Group`] once the window that started with the first
//!    unsynced write has passed, or at once when [`Commitlog::flush`] asks.
//! 6. After the fsync, raise the durable count and wake the tickets waiting on it.
//! 7. If any write, fsync or creation fails, record why, wake every waiter with
//!    [`CommitlogError::Stopped`], and exit; later appends fail with the same reason.
//!
//! # Recovery on open
//!
//! 1. Create the directory if absent; refuse a path that is not a directory
//!    ([`CommitlogError::NotADirectory`]) or a directory holding anything but `LOCK` and
//!    segment files ([`CommitlogError::NotADataDirectory`]), before writing anything.
//! 2. Take an exclusive lock on `LOCK` ([`CommitlogError::Locked`] if someone holds it).
//! 3. Visit segments in index order. The first must start at entry 0, and each next one
//!    at the previous one's first index plus its record count; otherwise
//!    [`CommitlogError::Corrupt`].
//! 4. Check the header. A last segment no longer than a header whose header is invalid
//!    was cut short right after creation: it holds no record, so it is removed. Any other
//!    bad header is corruption.
//! 5. Read records from offset 24, calling the replay callback on each valid one; a
//!    callback error aborts with [`CommitlogError::Replay`].
//! 6. A bad record (too few bytes for the framing, a length running past the end of the
//!    file, or a checksum mismatch) at offset `X` is a **torn tail** exactly when it is in
//!    the last segment *and* no complete, valid record starts at any byte offset after
//!    `X`. The segment is then truncated to `X` (with a warning) and fsynced. Every byte
//!    offset is tried, rather than following the bad record's length, so a damaged length
//!    field cannot hide the valid records behind it. Otherwise it is mid-log corruption:
//!    open fails with [`CommitlogError::Corrupt`] naming the segment and `X`, and no file
//!    is modified.
//! 7. Start the writer thread, which appends to the last segment.
//!
//! Replay runs as segments are read, so when `open` fails the callback may already have
//! seen a prefix of the log; the caller should discard whatever it built from it.
//! Corruption is only detected through checksums: a damaged record at the very end of the
//! last segment is indistinguishable from a torn write and is cut off. After a power loss
//! the unsynced part of the tail may come back with holes; if a valid record survives
//! behind a hole, open reports corruption rather than silently dropping it.

mod durable;
mod error;
mod fault;
mod recovery;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{info, warn};

pub use durable::Durable;
pub use error::CommitlogError;

use durable::Shared;
use fault::Faults;
use writer::{Msg, OpenSegment, Writer, WriterConfig};

/// When appended entries are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityPolicy {
    /// Fsync after every batch the writer drains; nothing waits for a timer.
    EveryCommit,
    /// Fsync at most once per `window` while nobody waits, trading latency for fewer
    /// fsyncs; as soon as someone waits on an unsynced entry (an acknowledgment is
    /// pending), fsync right after the batch being written.
    Group {
        /// Longest time a written entry waits for its fsync.
        window: Duration,
    },
}

impl Default for DurabilityPolicy {
    fn default() -> Self {
        Self::Group {
            window: Duration::from_millis(2),
        }
    }
}

/// Settings for [`Commitlog::open`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Segment size limit in bytes, header included (default 64 MiB); also the largest payload.
    pub segment_size_max: u64,
    /// When entries are fsynced (default: group commit with a 2 ms window).
    pub durability: DurabilityPolicy,
    /// Payloads that may wait for the writer before `append` blocks (default 4096).
    pub queue_len_max: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_size_max: 64 << 20,
            durability: DurabilityPolicy::default(),
            queue_len_max: 4096,
        }
    }
}

/// An open commit log; see the module documentation for the format and guarantees.
pub struct Commitlog {
    dir: PathBuf,
    segment_size_max: u64,
    /// Index assignment and queueing happen together under this lock, so the queue order
    /// is the index order.
    queue: Mutex<SyncSender<Msg>>,
    /// Entries appended so far; written only under `queue`'s lock, after a successful send.
    len: AtomicU64,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    /// Held until the writer is joined; closing it releases the directory lock.
    _lock: File,
}

impl Commitlog {
    /// Opens (creating if absent) the log in `dir`, calls `replay(entry_index, payload)`
    /// for every intact record in order, truncates a torn tail with a warning, then starts
    /// the writer thread.
    pub fn open<E>(
        dir: &Path,
        opts: LogOptions,
        replay: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<Commitlog, CommitlogError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self::open_with_faults(dir, opts, replay, Faults::default())
    }

    /// [`Commitlog::open`] with failure injection for the writer.
    pub(crate) fn open_with_faults<E>(
        dir: &Path,
        opts: LogOptions,
        replay: impl FnMut(u64, &[u8]) -> Result<(), E>,
        faults: Faults,
    ) -> Result<Commitlog, CommitlogError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let recovered = recovery::recover(dir, replay)?;
        let segment = match recovered.tail {
            Some(tail) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&tail.path)
                    .map_err(|e| CommitlogError::io(&tail.path, e))?;
                Some(OpenSegment {
                    file,
                    path: tail.path,
                    len: tail.len,
                    records: tail.records,
                })
            }
            None => None,
        };
        let entries = recovered.entries;
        let shared = Arc::new(Shared::new(entries));
        let queue_len = opts.queue_len_max.max(1);
        let (tx, rx) = mpsc::sync_channel(queue_len);
        shared.set_nudge(Some(tx.clone()));
        let config = WriterConfig {
            segment_size_max: opts.segment_size_max,
            durability: opts.durability,
            batch_max: queue_len,
        };
        let writer = Writer::new(
            dir.to_owned(),
            config,
            rx,
            Arc::clone(&shared),
            faults,
            segment,
            entries,
        );
        let handle = std::thread::Builder::new()
            .name("tidings-commitlog".to_owned())
            .spawn(move || writer.run())
            .map_err(|e| CommitlogError::io(dir, e))?;
        info!(dir = %dir.display(), entries, "commit log opened");
        Ok(Commitlog {
            dir: dir.to_owned(),
            segment_size_max: opts.segment_size_max,
            queue: Mutex::new(tx),
            len: AtomicU64::new(entries),
            shared,
            writer: Some(handle),
            _lock: recovered.lock,
        })
    }

    /// Queues a payload; never blocks on fsync (blocks only if the bounded queue is full).
    /// Returns a ticket.
    pub fn append(&self, payload: Vec<u8>) -> Result<Durable, CommitlogError> {
        let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        if len > u64::from(u32::MAX) || len > self.segment_size_max {
            return Err(CommitlogError::TooLarge { len });
        }
        if let Some(e) = self.shared.stopped_error() {
            return Err(e);
        }
        let queue = self.queue.lock();
        let index = self.len.load(Ordering::Acquire);
        if queue.send(Msg::Append(payload)).is_err() {
            return Err(self.writer_gone());
        }
        self.len.store(index + 1, Ordering::Release);
        Ok(Durable::new(index, Arc::clone(&self.shared)))
    }

    /// Number of entries appended so far (replayed + queued).
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the log holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until everything queued so far is durable.
    pub fn flush(&self) -> Result<(), CommitlogError> {
        let target = {
            let queue = self.queue.lock();
            let target = self.len.load(Ordering::Acquire);
            // The flush request queues behind every append counted in `target`, so the
            // writer has written them all by the time it acts on it.
            if !self.shared.is_durable(target) && queue.send(Msg::Flush).is_err() {
                return Err(self.writer_gone());
            }
            target
        };
        self.shared.wait_for(target, None).map(|_| ())
    }

    /// Flushes, stops the writer thread and joins it (also done on drop, best-effort).
    pub fn close(mut self) -> Result<(), CommitlogError> {
        let flushed = self.flush();
        let joined = self.stop_writer();
        flushed.and(joined)
    }

    /// Asks the writer to fsync and exit, and waits for it.
    fn stop_writer(&mut self) -> Result<(), CommitlogError> {
        let Some(handle) = self.writer.take() else {
            return Ok(());
        };
        // A failed send means the writer already exited after a failure; joining it
        // below is still right.
        // Waiters must not keep the writer's channel alive once it is told to stop.
        self.shared.set_nudge(None);
        let _ = self.queue.lock().send(Msg::Shutdown);
        handle.join().map_err(|_| CommitlogError::Stopped {
            reason: "the commit log writer thread panicked".to_owned(),
        })?;
        match self.shared.stopped_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The error for an append or flush that found the writer thread gone.
    fn writer_gone(&self) -> CommitlogError {
        self.shared
            .stopped_error()
            .unwrap_or_else(|| CommitlogError::Stopped {
                reason: "the commit log writer thread has exited".to_owned(),
            })
    }
}

impl Drop for Commitlog {
    fn drop(&mut self) {
        if let Err(e) = self.stop_writer() {
            warn!(dir = %self.dir.display(), error = %e, "commit log closed with an error");
        }
    }
}

impl fmt::Debug for Commitlog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commitlog")
            .field("dir", &self.dir)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}
