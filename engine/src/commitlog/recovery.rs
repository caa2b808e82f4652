//! Opening a log directory: checking it, locking it, replaying every intact record, and
//! cutting off a torn tail.
//!
//! Nothing here modifies a file until every check that could reject the log has passed;
//! the only changes ever made are the tail truncation and the removal of a last segment
//! that holds no record.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use tracing::{debug, warn};

use super::error::CommitlogError;
use super::segment::{self, HEADER_LEN, LOCK_FILE, Record};

/// The last segment, which the writer continues appending to.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Its path.
    pub(crate) path: PathBuf,
    /// Its length in bytes after any truncation.
    pub(crate) len: u64,
    /// How many records it holds.
    pub(crate) records: u64,
}

/// The outcome of a successful recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The held directory lock; dropping it lets someone else open the directory.
    pub(crate) lock: File,
    /// Number of entries replayed, which is also the index of the next one.
    pub(crate) entries: u64,
    /// The segment to append to, if any segment holds a valid header.
    pub(crate) tail: Option<Tail>,
}

/// Prepares `dir`, locks it and replays its records through `replay`.
pub(crate) fn recover<E>(
    dir: &Path,
    mut replay: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<Recovered, CommitlogError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    prepare_dir(dir)?;
    // Listing before locking means a foreign directory is rejected without creating a
    // LOCK file in it; the list is taken again under the lock so it cannot be stale.
    list_segments(dir)?;
    let lock = lock_dir(dir)?;
    let segments = list_segments(dir)?;

    let mut entries = 0u64;
    let mut tail: Option<Tail> = None;
    let last = segments.len().saturating_sub(1);
    for (pos, (first_index, path)) in segments.into_iter().enumerate() {
        if first_index != entries {
            return Err(CommitlogError::Corrupt {
                segment: path,
                offset: 0,
                reason: format!(
                    "segment starts at entry {first_index} but entry {entries} was expected \
                     (a segment is missing or foreign)"
                ),
            });
        }
        let data = fs::read(&path).map_err(|e| CommitlogError::io(&path, e))?;
        let is_last = pos == last;
        if let Err(reason) = segment::check_header(&data, first_index) {
            // A crash between creating a segment and writing its header leaves a short last
            // file; it holds no record, so removing it loses nothing.
            if is_last && data.len() as u64 <= HEADER_LEN {
                warn!(segment = %path.display(), len = data.len(), %reason,
                    "removing an incomplete last segment left by a crash");
                fs::remove_file(&path).map_err(|e| CommitlogError::io(&path, e))?;
                segment::sync_dir(dir).map_err(|e| CommitlogError::io(dir, e))?;
                break;
            }
            return Err(CommitlogError::Corrupt {
                segment: path,
                offset: 0,
                reason,
            });
        }
        let scanned = replay_segment(&path, &data, is_last, first_index, &mut replay)?;
        if let Some(cut) = scanned.torn_at {
            truncate(&path, cut)?;
        }
        entries = first_index + scanned.records;
        tail = Some(Tail {
            path,
            len: scanned.torn_at.unwrap_or(data.len() as u64),
            records: scanned.records,
        });
    }
    debug!(dir = %dir.display(), entries, "commit log recovered");
    Ok(Recovered {
        lock,
        entries,
        tail,
    })
}

/// What replaying one segment found.
struct Scanned {
    /// Number of valid records.
    records: u64,
    /// Offset of a torn tail to cut off (only ever set for the last segment).
    torn_at: Option<u64>,
}

/// Replays the records of one segment, deciding whether a bad record is a torn tail.
///
/// The torn-tail rule: a bad record in the last segment is a torn tail exactly when no
/// complete, valid record starts at any byte offset after it. Anything else (a bad record
/// followed by a valid one, or a bad record in an earlier segment) is corruption.
fn replay_segment<E>(
    path: &Path,
    data: &[u8],
    is_last: bool,
    first_index: u64,
    replay: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<Scanned, CommitlogError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut offset = HEADER_LEN as usize;
    let mut records = 0u64;
    loop {
        match segment::read_record(data, offset) {
            Record::Valid { payload, next } => {
                replay(first_index + records, payload).map_err(|e| CommitlogError::Replay {
                    segment: path.to_owned(),
                    offset: offset as u64,
                    source: Box::new(e),
                })?;
                records += 1;
                offset = next;
            }
            Record::End => {
                return Ok(Scanned {
                    records,
                    torn_at: None,
                });
            }
            Record::Bad(reason) => {
                let corrupt = |reason: String| CommitlogError::Corrupt {
                    segment: path.to_owned(),
                    offset: offset as u64,
                    reason,
                };
                if !is_last {
                    return Err(corrupt(format!(
                        "{reason}, in a segment that is not the last"
                    )));
                }
                if let Some(next_valid) = segment::find_valid_record(data, offset + 1) {
                    return Err(corrupt(format!(
                        "{reason}, yet a valid record follows at byte {next_valid}"
                    )));
                }
                return Ok(Scanned {
                    records,
                    torn_at: Some(offset as u64),
                });
            }
        }
    }
}

/// Cuts a torn tail off the last segment and makes the cut durable.
fn truncate(path: &Path, at: u64) -> Result<(), CommitlogError> {
    let io = |e| CommitlogError::io(path, e);
    let file = fs::OpenOptions::new().write(true).open(path).map_err(io)?;
    let old_len = file.metadata().map_err(io)?.len();
    warn!(segment = %path.display(), offset = at, dropped_bytes = old_len.saturating_sub(at),
        "truncating a torn record at the end of the commit log");
    file.set_len(at).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Creates `dir` if absent and checks that it is a directory.
fn prepare_dir(dir: &Path) -> Result<(), CommitlogError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(CommitlogError::NotADirectory {
            path: dir.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| CommitlogError::io(dir, e))?;
            // The new directory's own name lives in its parent; make that durable too.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent).map_err(|e| CommitlogError::io(parent, e))?;
            }
            Ok(())
        }
        Err(e) => Err(CommitlogError::io(dir, e)),
    }
}

/// Takes the exclusive lock on `dir/LOCK`, creating the file if needed.
fn lock_dir(dir: &Path) -> Result<File, CommitlogError> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CommitlogError::io(&path, e))?;
    // The lock belongs to the open file description, and a child process forked by any
    // thread of this process shares the descriptions it inherits until it calls exec. So a
    // lock released by a `Commitlog` closed in this process can look held for a moment; a
    // few short retries tell that apart from a real second user.
    for pause_ms in LOCK_RETRY_PAUSES_MS {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) => thread::sleep(Duration::from_millis(pause_ms)),
            Err(TryLockError::Error(e)) => return Err(CommitlogError::io(&path, e)),
        }
    }
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(CommitlogError::Locked {
            path: dir.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(CommitlogError::io(&path, e)),
    }
}

/// Pauses between attempts to take the directory lock (about 0.1 s in all).
const LOCK_RETRY_PAUSES_MS: [u64; 6] = [1, 2, 5, 10, 20, 50];

/// The segments in `dir`, sorted by first index; anything else but the lock file is an error.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CommitlogError> {
    let io = |e| CommitlogError::io(dir, e);
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let foreign = || CommitlogError::NotADataDirectory {
            path: dir.to_owned(),
            found: name.to_string_lossy().into_owned(),
        };
        let Some(name_str) = name.to_str() else {
            return Err(foreign());
        };
        let is_file = entry.file_type().map_err(io)?.is_file();
        if name_str == LOCK_FILE && is_file {
            continue;
        }
        match segment::parse_file_name(name_str) {
            Some(first_index) if is_file => segments.push((first_index, entry.path())),
            _ => return Err(foreign()),
        }
    }
    segments.sort_unstable_by_key(|(first_index, _)| *first_index);
    Ok(segments)
}
