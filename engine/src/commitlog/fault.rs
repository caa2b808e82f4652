//! Failure injection for the writer's file operations.
//!
//! Outside unit tests [`Faults::check`] always succeeds and holds no state. Unit tests arm
//! it to make a write, an fsync or a segment creation fail, so the stop path can be tested
//! without relying on file permissions (which root ignores).

use std::io;

/// A file operation the writer performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileOp {
    /// Handing record bytes to the operating system.
    Write,
    /// Fsyncing the current segment.
    Sync,
    /// Creating a new segment.
    Create,
}

/// The set of operations that should fail, shared between a test and the writer thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    #[cfg(test)]
    armed: std::sync::Arc<parking_lot::Mutex<Vec<FileOp>>>,
}

impl Faults {
    /// Fails if a test armed `op`.
    pub(crate) fn check(&self, op: FileOp) -> io::Result<()> {
        #[cfg(test)]
        if self.armed.lock().contains(&op) {
            return Err(io::Error::other(format!("injected {op:?} failure")));
        }
        #[cfg(not(test))]
        let _ = op;
        Ok(())
    }

    /// Makes every later `op` fail.
    #[cfg(test)]
    pub(crate) fn arm(&self, op: FileOp) {
        self.armed.lock().push(op);
    }
}
