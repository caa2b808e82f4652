//! Unit tests that need the writer's failure injection; the rest live in
//! `engine/tests/commitlog.rs`.

use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use super::fault::{Faults, FileOp};
use super::*;

/// Options whose group window is far longer than any test, so only `flush` can trigger
/// an fsync and the order of events is deterministic.
fn slow_group() -> LogOptions {
    LogOptions {
        segment_size_max: 256,
        durability: DurabilityPolicy::Group {
            window: Duration::from_secs(3600),
        },
        queue_len_max: 16,
    }
}

fn open_faulty(dir: &Path, opts: LogOptions, faults: &Faults) -> Commitlog {
    Commitlog::open_with_faults(dir, opts, |_, _| Ok::<_, Infallible>(()), faults.clone())
        .expect("open")
}

fn replay_all(dir: &Path) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    let log = Commitlog::open(dir, LogOptions::default(), |i, p| {
        assert_eq!(i, seen.len() as u64);
        seen.push(p.to_vec());
        Ok::<_, Infallible>(())
    })
    .expect("reopen");
    drop(log);
    seen
}

fn assert_stopped(r: Result<impl fmt::Debug, CommitlogError>, needle: &str) {
    match r {
        Err(CommitlogError::Stopped { reason }) => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
}

#[test]
fn failed_fsync_stops_the_log_and_fails_pending_waiters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Faults::default();
    let log = open_faulty(dir.path(), slow_group(), &faults);
    let early = log.append(b"early".to_vec()).expect("append");
    log.flush().expect("flush");
    assert!(early.is_durable());

    faults.arm(FileOp::Sync);
    let pending: Vec<Durable> = (0..3)
        .map(|i| log.append(vec![i; 10]).expect("append"))
        .collect();
    assert!(pending.iter().all(|t| !t.is_durable()));
    assert_stopped(log.flush(), "injected Sync failure");
    for t in &pending {
        assert_stopped(t.wait(), "fsync of");
        assert_stopped(t.wait_timeout(Duration::from_secs(60)), "fsync of");
    }
    // What was durable before the failure stays so.
    early.wait().expect("early entry stays durable");
    assert_stopped(log.append(b"late".to_vec()), "injected Sync failure");
    assert_stopped(log.close(), "injected Sync failure");
}

#[test]
fn failed_write_stops_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Faults::default();
    let opts = LogOptions {
        durability: DurabilityPolicy::EveryCommit,
        ..slow_group()
    };
    let log = open_faulty(dir.path(), opts, &faults);
    log.append(b"kept".to_vec())
        .expect("append")
        .wait()
        .expect("durable");
    faults.arm(FileOp::Write);
    let lost = log.append(b"lost".to_vec()).expect("append is only queued");
    assert_stopped(lost.wait(), "writing to");
    assert_stopped(log.append(b"refused".to_vec()), "injected Write failure");
    drop(log);
    assert_eq!(replay_all(dir.path()), vec![b"kept".to_vec()]);
}

#[test]
fn failed_segment_creation_stops_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Faults::default();
    let log = open_faulty(dir.path(), slow_group(), &faults);
    let first = log.append(vec![1; 200]).expect("append");
    log.flush().expect("flush");
    faults.arm(FileOp::Create);
    // 200 + 200 bytes do not fit in a 256-byte segment, so this needs a new one.
    let second = log.append(vec![2; 200]).expect("append is only queued");
    assert_stopped(second.wait(), "creating a segment");
    first.wait().expect("first entry stays durable");
    drop(log);
    assert_eq!(replay_all(dir.path()), vec![vec![1; 200]]);
}

#[test]
fn group_commit_syncs_at_once_for_a_waiter_despite_a_long_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_faulty(dir.path(), slow_group(), &Faults::default());
    let t = log.append(b"x".to_vec()).expect("append");
    // The window is far longer than this deadline: only the waiter's nudge can make the
    // entry durable in time.
    assert!(
        t.wait_timeout(Duration::from_secs(30)).expect("no failure"),
        "a waiter must not sit out the group window"
    );
    log.flush().expect("flush");
    log.close().expect("close");
}

#[test]
fn group_commit_syncs_after_the_window_without_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LogOptions {
        durability: DurabilityPolicy::Group {
            window: Duration::from_millis(5),
        },
        ..slow_group()
    };
    let log = open_faulty(dir.path(), opts, &Faults::default());
    let tickets: Vec<Durable> = (0..20u8)
        .map(|i| log.append(vec![i; 30]).expect("append"))
        .collect();
    for t in &tickets {
        t.wait().expect("durable within the window");
    }
    log.close().expect("close");
    assert_eq!(replay_all(dir.path()).len(), 20);
}

#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn clone_send<T: Clone + Send>() {}
    send_sync::<Commitlog>();
    clone_send::<Durable>();
}
