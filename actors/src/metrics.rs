//! Counters and gauges, shared by the actors and read by whoever exports them.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Engine-wide counters. Each is monotonic unless it says it is a gauge.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Commits that changed something.
    pub commits: AtomicU64,
    /// Query evaluations (each distinct affected query, once per commit).
    pub evaluations: AtomicU64,
    /// Initial-row snapshots evaluated (one per query and offset, however many subscribe).
    pub snapshots: AtomicU64,
    /// Messages appended to session queues.
    pub deliveries: AtomicU64,
    /// Bytes written to WebSocket sessions.
    pub bytes_sent: AtomicU64,
    /// WebSocket frames encoded; a frame written to many sessions counts once.
    pub frames_encoded: AtomicU64,
    /// Bytes of the frames encoded (`bytes_sent` counts each frame once per session).
    pub frame_bytes_encoded: AtomicU64,
    /// Gauge: connected sessions.
    pub sessions: AtomicU64,
    /// Gauge: distinct registered queries.
    pub queries: AtomicU64,
    /// Sessions dropped, by reason.
    pub dropped: Mutex<Vec<(String, u64)>>,
}

impl Metrics {
    /// Counts one dropped session under `reason` (the part before any detail).
    pub fn count_drop(&self, reason: &str) {
        let key = reason.split(" (").next().unwrap_or(reason).to_string();
        let mut d = self.dropped.lock();
        match d.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => d.push((key, 1)),
        }
    }

    /// A snapshot of a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Sessions dropped, all reasons together.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.lock().iter().map(|(_, n)| n).sum()
    }
}
