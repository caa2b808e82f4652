//! The writer thread: the only code that writes segments or calls fsync.
//!
//! It drains whatever is queued into one batch, hands the batch to the operating system,
//! and fsyncs according to the [`DurabilityPolicy`]; only after an fsync does it publish
//! the new durable count. The first failure stops it for good.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use tracing::{debug, error};

use super::DurabilityPolicy;
use super::durable::Shared;
use super::fault::{Faults, FileOp};
use super::segment::{self, HEADER_LEN, RECORD_OVERHEAD};

/// Encoded bytes buffered before they are handed to the operating system, so a long batch
/// of large payloads does not pile up in memory.
const WRITE_CHUNK: usize = 1 << 20;

/// A request to the writer thread.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Append this payload as the next entry.
    Append(Vec<u8>),
    /// Fsync what has been written without waiting for the group window.
    Flush,
    /// Fsync what has been written, then exit.
    Shutdown,
}

/// The segment currently being appended to.
#[derive(Debug)]
pub(crate) struct OpenSegment {
    /// The file, opened for appending.
    pub(crate) file: File,
    /// Its path, for error messages.
    pub(crate) path: PathBuf,
    /// Its length in bytes, counting bytes still in the writer's buffer.
    pub(crate) len: u64,
    /// Records in it, counting those still in the writer's buffer.
    pub(crate) records: u64,
}

/// Settings the writer needs from the log's options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    /// Roll to a new segment rather than grow one past this many bytes.
    pub(crate) segment_size_max: u64,
    /// When to fsync.
    pub(crate) durability: DurabilityPolicy,
    /// Most messages handled between two fsync decisions.
    pub(crate) batch_max: usize,
}

/// State owned by the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    dir: PathBuf,
    config: WriterConfig,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    faults: Faults,
    segment: Option<OpenSegment>,
    /// Encoded records not yet handed to the operating system.
    pending: Vec<u8>,
    /// Entries written so far (to the OS or `pending`); also the next entry's index.
    written: u64,
    /// Entries covered by a completed fsync.
    synced: u64,
    /// Under group commit, when the oldest unsynced write must be fsynced.
    sync_deadline: Option<Instant>,
}

/// What one wait on the queue produced.
enum Next {
    Msg(Msg),
    /// The group-commit window closed with nothing new queued.
    Timeout,
    /// Every sender is gone.
    Disconnected,
}

impl Writer {
    /// A writer continuing a log of `entries` entries whose last segment is `segment`.
    pub(crate) fn new(
        dir: PathBuf,
        config: WriterConfig,
        rx: Receiver<Msg>,
        shared: Arc<Shared>,
        faults: Faults,
        segment: Option<OpenSegment>,
        entries: u64,
    ) -> Self {
        Self {
            dir,
            config,
            rx,
            shared,
            faults,
            segment,
            pending: Vec::new(),
            written: entries,
            synced: entries,
            sync_deadline: None,
        }
    }

    /// The thread body: runs until shutdown or the first failure.
    pub(crate) fn run(mut self) {
        let _guard = StopOnPanic(Arc::clone(&self.shared));
        match self.run_loop() {
            Ok(()) => {
                debug!(dir = %self.dir.display(), entries = self.written, "commit log writer finished")
            }
            Err(reason) => {
                error!(dir = %self.dir.display(), %reason, "commit log writer stopped");
                self.shared.stop(reason);
                // Returning drops the receiver, which fails any append blocked on a full
                // queue instead of leaving it hanging.
            }
        }
    }

    fn run_loop(&mut self) -> Result<(), String> {
        loop {
            let mut sync_now = false;
            let mut shutdown = false;
            match self.receive() {
                Next::Timeout => sync_now = true,
                Next::Disconnected => shutdown = true,
                Next::Msg(first) => {
                    // Take what is already queued into the same batch, up to a bound so a
                    // steady stream of appends cannot postpone the fsync forever.
                    let mut msg = Some(first);
                    let mut handled = 0;
                    while let Some(m) = msg.take() {
                        match m {
                            Msg::Append(payload) => self.write_record(&payload)?,
                            Msg::Flush => sync_now = true,
                            Msg::Shutdown => {
                                shutdown = true;
                                break;
                            }
                        }
                        handled += 1;
                        if handled < self.config.batch_max {
                            msg = self.try_receive();
                        }
                    }
                }
            }
            self.write_pending()?;
            if shutdown {
                return self.sync();
            }
            if self.synced < self.written {
                // Someone is already waiting on an unsynced entry: the window would only
                // add to their latency.
                sync_now |= self.shared.wanted() > self.synced;
                match self.config.durability {
                    DurabilityPolicy::EveryCommit => sync_now = true,
                    DurabilityPolicy::Group { window } => {
                        let now = Instant::now();
                        // A window too long to represent never expires; only flush, close
                        // or a segment roll fsync then.
                        if self.sync_deadline.is_none() {
                            self.sync_deadline = now.checked_add(window);
                        }
                        sync_now |= self.sync_deadline.is_some_and(|d| now >= d);
                    }
                }
            }
            if sync_now {
                self.sync()?;
            }
        }
    }

    /// Waits for the next message, but under group commit no longer than the deadline.
    fn receive(&self) -> Next {
        match self.sync_deadline {
            None => match self.rx.recv() {
                Ok(m) => Next::Msg(m),
                Err(_) => Next::Disconnected,
            },
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(wait) {
                    Ok(m) => Next::Msg(m),
                    Err(RecvTimeoutError::Timeout) => Next::Timeout,
                    Err(RecvTimeoutError::Disconnected) => Next::Disconnected,
                }
            }
        }
    }

    /// The next message if one is already queued.
    fn try_receive(&self) -> Option<Msg> {
        // A disconnect reads as "nothing queued"; the next blocking receive reports it.
        self.rx.try_recv().ok()
    }

    /// Encodes one entry, first rolling to a new segment if it would not fit.
    fn write_record(&mut self, payload: &[u8]) -> Result<(), String> {
        let record_len = RECORD_OVERHEAD + payload.len() as u64;
        let must_roll = match &self.segment {
            None => true,
            // An empty segment takes any record, so one larger than the limit sits alone.
            Some(s) => s.records > 0 && s.len + record_len > self.config.segment_size_max,
        };
        if must_roll {
            self.roll()?;
        }
        let Some(seg) = self.segment.as_mut() else {
            return Err("no open segment after a roll".to_owned());
        };
        segment::encode_record(payload, &mut self.pending);
        seg.len += record_len;
        seg.records += 1;
        self.written += 1;
        if self.pending.len() >= WRITE_CHUNK {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Finishes the current segment (fsyncing it, since later fsyncs only cover the new
    /// one) and starts the next at the next entry index.
    fn roll(&mut self) -> Result<(), String> {
        self.sync()?;
        let first_index = self.written;
        self.faults
            .check(FileOp::Create)
            .map_err(|e| failure("creating a segment in", &self.dir, &e))?;
        let (file, path) = segment::create(&self.dir, first_index)
            .map_err(|(path, e)| failure("creating segment", &path, &e))?;
        debug!(segment = %path.display(), first_index, "started a new commit log segment");
        self.segment = Some(OpenSegment {
            file,
            path,
            len: HEADER_LEN,
            records: 0,
        });
        Ok(())
    }

    /// Hands buffered records to the operating system (no fsync).
    fn write_pending(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.segment.as_mut() else {
            return Err("records buffered without an open segment".to_owned());
        };
        self.faults
            .check(FileOp::Write)
            .and_then(|()| seg.file.write_all(&self.pending))
            .map_err(|e| failure("writing to", &seg.path, &e))?;
        self.pending.clear();
        Ok(())
    }

    /// Makes every written entry durable and tells the waiters.
    fn sync(&mut self) -> Result<(), String> {
        self.sync_deadline = None;
        if self.synced == self.written {
            return Ok(());
        }
        self.write_pending()?;
        if let Some(seg) = &self.segment {
            self.faults
                .check(FileOp::Sync)
                .and_then(|()| seg.file.sync_data())
                .map_err(|e| failure("fsync of", &seg.path, &e))?;
        }
        self.synced = self.written;
        self.shared.publish_durable(self.synced);
        Ok(())
    }
}

/// The reason recorded when a file operation fails.
fn failure(what: &str, path: &Path, e: &io::Error) -> String {
    format!("{what} `{}` failed: {e}", path.display())
}

/// Marks the log stopped if the writer thread panics, so no waiter sleeps forever.
struct StopOnPanic(Arc<Shared>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .stop("the commit log writer thread panicked".to_owned());
        }
    }
}
