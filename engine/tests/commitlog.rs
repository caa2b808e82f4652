//! Integration tests of the commit log: round trips, torn tails, corruption, directory
//! checks, locking, and crash tests that SIGKILL a child process mid-append.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidings_engine::commitlog::{Commitlog, CommitlogError, DurabilityPolicy, LogOptions};

/// Bytes of the segment header, which sits in front of the first record.
const HEADER_LEN: usize = 24;
/// Bytes of framing in front of each payload.
const RECORD_OVERHEAD: usize = 8;

fn options(segment_size_max: u64, durability: DurabilityPolicy) -> LogOptions {
    LogOptions {
        segment_size_max,
        durability,
        queue_len_max: 64,
    }
}

fn group() -> DurabilityPolicy {
    DurabilityPolicy::Group {
        window: Duration::from_millis(1),
    }
}

/// Opens the log, collecting every replayed payload and checking indices count up from 0.
fn open_collect(dir: &Path, opts: LogOptions) -> Result<(Commitlog, Vec<Vec<u8>>), CommitlogError> {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let log = Commitlog::open(dir, opts, |index, payload| {
        assert_eq!(
            index,
            seen.len() as u64,
            "replay indices must be consecutive"
        );
        seen.push(payload.to_vec());
        Ok::<_, Infallible>(())
    })?;
    Ok((log, seen))
}

/// Reopens the log and returns its payloads, closing it again.
fn replay_all(dir: &Path, opts: LogOptions) -> Vec<Vec<u8>> {
    let (log, seen) = open_collect(dir, opts).expect("reopen");
    assert_eq!(log.len(), seen.len() as u64);
    log.close().expect("close");
    seen
}

/// Payload number `i`: sizes vary from 0 to 90 bytes so records straddle segment limits.
fn varied_payload(i: usize) -> Vec<u8> {
    let len = (i * 37) % 91;
    (0..len).map(|j| (i + j) as u8).collect()
}

/// Appends `payloads` to a fresh log in `dir` and closes it.
fn write_log(dir: &Path, opts: LogOptions, payloads: &[Vec<u8>]) {
    let (log, seen) = open_collect(dir, opts).expect("open");
    assert!(seen.is_empty());
    for p in payloads {
        log.append(p.clone()).expect("append");
    }
    log.close().expect("close");
}

/// Segment files of `dir`, in log order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tlog"))
        .collect();
    v.sort();
    v
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).expect("read"))
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Byte offsets where each record of a single segment holding `payloads` starts, followed
/// by the end of the last one.
fn record_offsets(payloads: &[Vec<u8>]) -> Vec<usize> {
    let mut offsets = vec![HEADER_LEN];
    for p in payloads {
        let last = *offsets.last().expect("non-empty");
        offsets.push(last + RECORD_OVERHEAD + p.len());
    }
    offsets
}

#[test]
fn round_trip_across_many_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || options(256, group());
    let mut payloads: Vec<Vec<u8>> = (0..300).map(varied_payload).collect();
    // The largest payload the limit allows: its record cannot fit any segment, so it must
    // go alone into a fresh one.
    payloads.insert(150, vec![0xAB; 256]);
    let (log, _) = open_collect(dir.path(), opts()).expect("open");
    let tickets: Vec<_> = payloads
        .iter()
        .map(|p| log.append(p.clone()).expect("append"))
        .collect();
    for (i, t) in tickets.iter().enumerate() {
        assert_eq!(t.entry_index(), i as u64);
    }
    assert_eq!(log.len(), payloads.len() as u64);
    log.close().expect("close");
    assert!(tickets.iter().all(|t| t.is_durable()));
    assert!(
        segments(dir.path()).len() > 50,
        "tiny segments must roll over"
    );

    let (log, seen) = open_collect(dir.path(), opts()).expect("reopen");
    assert_eq!(seen, payloads);
    let next = log.append(b"after reopen".to_vec()).expect("append");
    assert_eq!(next.entry_index(), payloads.len() as u64);
    next.wait().expect("durable");
    log.close().expect("close");

    payloads.push(b"after reopen".to_vec());
    assert_eq!(replay_all(dir.path(), opts()), payloads);
}

#[test]
fn oversized_payload_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open_collect(dir.path(), options(256, group())).expect("open");
    match log.append(vec![0; 257]) {
        Err(CommitlogError::TooLarge { len: 257 }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(log.len(), 0);
    log.append(Vec::new()).expect("empty payloads are fine");
    log.close().expect("close");
}

#[test]
fn concurrent_appenders_get_distinct_ordered_indices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || options(1024, group());
    let (log, _) = open_collect(dir.path(), opts()).expect("open");
    let appended: Vec<(u64, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u8)
            .map(|thread| {
                let log = &log;
                s.spawn(move || {
                    (0..150u8)
                        .map(|i| {
                            let payload = vec![thread, i];
                            let t = log.append(payload.clone()).expect("append");
                            (t.entry_index(), payload)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("appender thread"))
            .collect()
    });
    log.flush().expect("flush");
    log.close().expect("close");
    let seen = replay_all(dir.path(), opts());
    assert_eq!(seen.len(), appended.len());
    for (index, payload) in appended {
        assert_eq!(seen[index as usize], payload);
    }
}

/// Cuts the last segment of a finished log at every byte position and checks that open
/// keeps exactly the records that are wholly before the cut.
fn truncate_last_segment_everywhere(earlier: &[Vec<u8>], last: &[Vec<u8>], segment_size_max: u64) {
    let opts = || options(segment_size_max, DurabilityPolicy::EveryCommit);
    let base = tempfile::tempdir().expect("tempdir");
    let original = base.path().join("original");
    let all: Vec<Vec<u8>> = earlier.iter().chain(last).cloned().collect();
    write_log(&original, opts(), &all);
    let segs = segments(&original);
    let last_segment = segs.last().expect("a segment");
    let offsets = record_offsets(last);
    let file_len = fs::metadata(last_segment).expect("metadata").len() as usize;
    assert_eq!(
        file_len,
        *offsets.last().expect("offsets"),
        "last segment layout"
    );

    for cut in 0..=file_len {
        let dir = base.path().join(format!("cut{cut}"));
        copy_dir(&original, &dir);
        let seg = dir.join(last_segment.file_name().expect("name"));
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open segment")
            .set_len(cut as u64)
            .expect("truncate");

        let whole = offsets[1..].iter().filter(|&&end| end <= cut).count();
        let mut expected: Vec<Vec<u8>> = earlier.iter().chain(&last[..whole]).cloned().collect();
        let (log, seen) = open_collect(&dir, opts()).expect("a torn tail is not an error");
        assert_eq!(seen, expected, "cut at byte {cut}");
        let t = log.append(b"new".to_vec()).expect("append");
        assert_eq!(t.entry_index(), expected.len() as u64);
        log.close().expect("close");
        expected.push(b"new".to_vec());
        assert_eq!(
            replay_all(&dir, opts()),
            expected,
            "after append, cut at {cut}"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}

#[test]
fn truncating_a_single_segment_at_every_byte_keeps_the_intact_prefix() {
    let last: Vec<Vec<u8>> = [0usize, 7, 13, 1, 31]
        .iter()
        .map(|&n| vec![n as u8; n])
        .collect();
    truncate_last_segment_everywhere(&[], &last, 4096);
}

#[test]
fn truncating_the_last_of_several_segments_at_every_byte_keeps_the_intact_prefix() {
    // With a 108-byte limit, 3 payloads of 20 bytes (28-byte records) fill each segment.
    let earlier: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 20]).collect();
    let last: Vec<Vec<u8>> = (6..9u8).map(|i| vec![i; 20]).collect();
    truncate_last_segment_everywhere(&earlier, &last, 108);
}

/// Flips every byte of one record in turn and checks that open reports exactly that
/// record as corrupt and leaves the files untouched.
fn flip_each_byte_of_record(
    payloads: &[Vec<u8>],
    segment_size_max: u64,
    segment_index: usize,
    record_in_segment: usize,
) {
    let opts = || options(segment_size_max, DurabilityPolicy::EveryCommit);
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), opts(), payloads);
    let segment = segments(dir.path())[segment_index].clone();
    let original = fs::read(&segment).expect("read");
    // Walk the records of this segment to find the target's extent.
    let mut start = HEADER_LEN;
    for _ in 0..record_in_segment {
        let len = u32::from_le_bytes(original[start..start + 4].try_into().expect("4 bytes"));
        start += RECORD_OVERHEAD + len as usize;
    }
    let len = u32::from_le_bytes(original[start..start + 4].try_into().expect("4 bytes"));
    let end = start + RECORD_OVERHEAD + len as usize;
    assert!(end < original.len() || segment_index + 1 < segments(dir.path()).len());

    for at in start..end {
        let mut damaged = original.clone();
        damaged[at] ^= 0x10;
        fs::write(&segment, &damaged).expect("write");
        let before = snapshot(dir.path());
        match open_collect(dir.path(), opts()) {
            Err(CommitlogError::Corrupt {
                segment: s, offset, ..
            }) => {
                assert_eq!(s, segment, "flip at byte {at}");
                assert_eq!(offset, start as u64, "flip at byte {at}");
            }
            Err(e) => panic!("flip at byte {at}: expected Corrupt, got {e}"),
            Ok(_) => panic!("flip at byte {at}: expected Corrupt, open succeeded"),
        }
        assert_eq!(
            snapshot(dir.path()),
            before,
            "failed open modified files (flip at {at})"
        );
    }
    fs::write(&segment, &original).expect("restore");
    assert_eq!(replay_all(dir.path(), opts()), payloads);
}

#[test]
fn bit_flip_in_a_middle_record_of_the_last_segment_is_corruption() {
    let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 12]).collect();
    flip_each_byte_of_record(&payloads, 4096, 0, 2);
}

#[test]
fn bit_flip_in_an_earlier_segment_is_corruption() {
    let payloads: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i; 20]).collect();
    // Segments hold three records each; the last record of the first segment is not
    // followed by anything in its file, yet is still mid-log.
    flip_each_byte_of_record(&payloads, 108, 0, 2);
    flip_each_byte_of_record(&payloads, 108, 1, 1);
}

#[test]
fn missing_segment_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || options(100, DurabilityPolicy::EveryCommit);
    let payloads: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i; 20]).collect();
    write_log(dir.path(), opts(), &payloads);
    let segs = segments(dir.path());
    fs::remove_file(&segs[1]).expect("remove");
    match open_collect(dir.path(), opts()) {
        Err(CommitlogError::Corrupt {
            segment, offset: 0, ..
        }) => assert_eq!(segment, segs[2]),
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, seen)| seen)),
    }
}

#[test]
fn empty_trailing_segment_is_tolerated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || options(100, DurabilityPolicy::EveryCommit);
    let mut payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 20]).collect();
    write_log(dir.path(), opts(), &payloads);
    // A crash right after creating the next segment leaves it empty.
    fs::write(dir.path().join(format!("{:020}.tlog", payloads.len())), b"").expect("create");
    let (log, seen) = open_collect(dir.path(), opts()).expect("open");
    assert_eq!(seen, payloads);
    log.append(b"next".to_vec()).expect("append");
    log.close().expect("close");
    payloads.push(b"next".to_vec());
    assert_eq!(replay_all(dir.path(), opts()), payloads);
}

#[test]
fn replay_error_names_the_record() {
    #[derive(Debug, thiserror::Error)]
    #[error("refused entry {0}")]
    struct Refused(u64);

    let dir = tempfile::tempdir().expect("tempdir");
    let payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
    write_log(dir.path(), options(4096, group()), &payloads);
    let result = Commitlog::open(dir.path(), options(4096, group()), |index, _| {
        if index == 2 {
            Err(Refused(index))
        } else {
            Ok(())
        }
    });
    match result {
        Err(CommitlogError::Replay {
            segment,
            offset,
            source,
        }) => {
            assert_eq!(segment, segments(dir.path())[0]);
            assert_eq!(offset, record_offsets(&payloads)[2] as u64);
            assert_eq!(source.to_string(), "refused entry 2");
        }
        other => panic!("expected Replay, got {other:?}"),
    }
}

#[test]
fn foreign_file_makes_it_not_a_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
    match open_collect(dir.path(), LogOptions::default()) {
        Err(CommitlogError::NotADataDirectory { path, found }) => {
            assert_eq!(path, dir.path());
            assert_eq!(found, "notes.txt");
        }
        other => panic!(
            "expected NotADataDirectory, got {:?}",
            other.map(|(_, s)| s)
        ),
    }
    // Refusing the directory must not leave anything behind in it.
    assert_eq!(
        snapshot(dir.path()).keys().collect::<Vec<_>>(),
        ["notes.txt"]
    );
}

#[test]
fn path_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain");
    fs::write(&file, b"x").expect("write");
    match open_collect(&file, LogOptions::default()) {
        Err(e @ CommitlogError::NotADirectory { .. }) => {
            assert!(e.to_string().contains("is not a directory"), "{e}");
        }
        other => panic!("expected NotADirectory, got {:?}", other.map(|(_, s)| s)),
    }
}

#[test]
fn missing_directory_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a").join("b");
    let (log, seen) = open_collect(&nested, LogOptions::default()).expect("open");
    assert!(seen.is_empty() && log.is_empty());
    log.close().expect("close");
    assert!(nested.is_dir());
}

#[test]
fn second_open_of_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = open_collect(dir.path(), LogOptions::default()).expect("open");
    match open_collect(dir.path(), LogOptions::default()) {
        Err(CommitlogError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {:?}", other.map(|(_, s)| s)),
    }
    first.close().expect("close");
    let (again, _) = open_collect(dir.path(), LogOptions::default()).expect("lock released");
    drop(again);
}

// ---- crash tests ------------------------------------------------------------------------

/// Set in the environment of a re-executed test binary to run [`crash_child`] for real.
const CHILD_ENV: &str = "TIDINGS_CRASH_CHILD";
const CHILD_DIR_ENV: &str = "TIDINGS_CRASH_DIR";
const CHILD_POLICY_ENV: &str = "TIDINGS_CRASH_POLICY";
const CRASH_SEGMENT_SIZE: u64 = 4096;
/// Durable records the parent waits for in each round before it kills the child.
const DURABLE_PER_ROUND: u64 = 200;
const CRASH_ROUNDS: usize = 5;

fn crash_policy(name: &str) -> DurabilityPolicy {
    match name {
        "every" => DurabilityPolicy::EveryCommit,
        _ => DurabilityPolicy::Group {
            window: Duration::from_millis(2),
        },
    }
}

/// Payload for sequence number `n`: the number, then a filler whose length varies.
fn crash_payload(n: u64) -> Vec<u8> {
    let mut p = n.to_le_bytes().to_vec();
    p.extend(std::iter::repeat_n(n as u8, (n as usize * 7) % 300));
    p
}

/// Checks that the log holds exactly payloads 0..k, each at its own index, and returns k.
fn verify_crash_log(dir: &Path, policy: &str) -> u64 {
    let seen = replay_all(dir, options(CRASH_SEGMENT_SIZE, crash_policy(policy)));
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(
            *p,
            crash_payload(i as u64),
            "entry {i} does not hold payload {i}"
        );
    }
    seen.len() as u64
}

/// Child mode of the crash tests: appends forever (until killed), pipelining appends and
/// reporting each record once its ticket says it is durable. Without the environment
/// variable it does nothing, so a normal test run passes straight through.
#[test]
fn crash_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR_ENV).expect("dir env"));
    let policy = std::env::var(CHILD_POLICY_ENV).expect("policy env");
    let (log, _) =
        open_collect(&dir, options(CRASH_SEGMENT_SIZE, crash_policy(&policy))).expect("child open");
    let mut stdout = std::io::stdout();
    let mut in_flight = VecDeque::new();
    // A safety net so an orphaned child cannot run forever if the parent dies.
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut n = log.len();
    while Instant::now() < give_up {
        while in_flight.len() < 32 {
            in_flight.push_back((n, log.append(crash_payload(n)).expect("child append")));
            n += 1;
        }
        let Some((seq, ticket)) = in_flight.pop_front() else {
            break;
        };
        ticket.wait().expect("child wait");
        if writeln!(stdout, "durable {seq}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break; // The parent is gone.
        }
    }
}

/// Runs rounds of: start a child on `dir`, let it report `DURABLE_PER_ROUND` durable
/// records, SIGKILL it, and check what survived.
fn crash_rounds(policy: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir for child stderr");
    let exe = std::env::current_exe().expect("current_exe");
    let mut surviving = 0u64;
    for round in 0..CRASH_ROUNDS {
        let stderr_path = logs.path().join(format!("stderr{round}"));
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_POLICY_ENV, policy)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut last_durable = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read child stdout");
            // Skip the test harness's own lines.
            let Some(n) = line.strip_prefix("durable ") else {
                continue;
            };
            let n: u64 = n.parse().expect("sequence number");
            last_durable = Some(n);
            if n + 1 >= surviving + DURABLE_PER_ROUND {
                break;
            }
        }
        child.kill().expect("kill child");
        child.wait().expect("reap child");
        let Some(last_durable) = last_durable else {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("round {round}: child reported nothing durable; stderr:\n{stderr}");
        };
        surviving = verify_crash_log(dir.path(), policy);
        assert!(
            surviving > last_durable,
            "round {round}: record {last_durable} was reported durable but only {surviving} survived"
        );
    }
    assert!(
        segments(dir.path()).len() > 3,
        "the crash test should span several segments"
    );
}

#[test]
fn crash_with_every_commit_keeps_every_durable_record() {
    crash_rounds("every");
}

#[test]
fn crash_with_group_commit_keeps_a_prefix_covering_every_durable_record() {
    crash_rounds("group");
}
