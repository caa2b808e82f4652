//! The one error type of the commit log.
//!
//! Each variant names the file (and byte offset, where there is one) a person needs to look
//! at; underlying causes sit in `#[source]`.

use std::error::Error;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why opening, appending to or flushing the commit log failed.
#[derive(Debug, Error)]
pub enum CommitlogError {
    /// A file system operation failed.
    #[error("I/O error on `{}`", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The path exists but is not a directory.
    #[error("`{}` is not a directory", path.display())]
    NotADirectory {
        /// The path given to `open`.
        path: PathBuf,
    },
    /// The directory holds files that are not this log's, so it is probably the wrong one.
    #[error("`{}` is not a commit log directory: it contains `{found}`", path.display())]
    NotADataDirectory {
        /// The directory given to `open`.
        path: PathBuf,
        /// Name of the first foreign entry found.
        found: String,
    },
    /// Another process (or another `Commitlog` in this one) has the directory open.
    #[error("commit log directory `{}` is locked by another user", path.display())]
    Locked {
        /// The directory given to `open`.
        path: PathBuf,
    },
    /// Damage that is not a torn tail; nothing was modified.
    #[error("commit log segment `{}` is corrupt at byte {offset}: {reason}", segment.display())]
    Corrupt {
        /// The damaged segment file.
        segment: PathBuf,
        /// Byte offset of the damaged record (or 0 for the header or the file name).
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The replay callback rejected a record.
    #[error("replay of the record at byte {offset} of `{}` failed", segment.display())]
    Replay {
        /// The segment holding the record.
        segment: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// The callback's error.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    /// An earlier write or fsync failed; the log accepts nothing more.
    #[error("commit log stopped: {reason}")]
    Stopped {
        /// The failure that stopped the writer.
        reason: String,
    },
    /// The payload cannot be stored: over `u32::MAX` bytes or over the segment size limit.
    #[error("payload of {len} bytes is too large for the commit log")]
    TooLarge {
        /// Payload length in bytes.
        len: u64,
    },
}

impl CommitlogError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
