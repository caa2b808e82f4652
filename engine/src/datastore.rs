//! The datastore: committed state behind one lock, and the commit path.
//!
//! Committed state sits behind one `RwLock`, stamped with the offset of the last commit
//! merged into it. A [`MutTx`] holds the lock's *upgradable* read side for its whole life:
//! readers keep reading, a second writer waits, and commit upgrades to the write side only
//! for the merge. Commit goes:
//!
//! 1. collect the net inserts and deletes per table (no net change: no offset, no record);
//! 2. when the *commit gate* is on ([`Datastore::enable_commit_gate`]), wait until a
//!    reader evaluating commits on another thread has acknowledged the previous offset, so
//!    it always reads the post-state of the commit it evaluates (the actors evaluate on
//!    the committing thread instead, and leave the gate off);
//! 3. append the record to the commitlog (a writer thread fsyncs it; the caller gets a
//!    [`Durable`] ticket and acknowledges only once it resolves);
//! 4. upgrade, merge (event-table rows are never merged), stamp the offset, release.
//!
//! A reader therefore sees either all of a commit or none of it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::lock_api::{ArcRwLockReadGuard, ArcRwLockUpgradableReadGuard};
use parking_lot::{Condvar, Mutex, RawRwLock, RwLock};
use thiserror::Error;

use crate::codec;
use crate::commitlog::{Commitlog, CommitlogError, Durable, LogOptions};
use crate::error::TxError;
use crate::migrate::{self, MigrationError, MigrationReport};
use crate::packed::PackedRows;
use crate::record::{self, Record, RecordError};
use crate::row::Row;
use crate::schema::{Schema, TableId};
use crate::sequence::Sequences;
use crate::table::{RowId, Table};
use crate::tx::MutTx;
use crate::tx_data::{TableUpdate, TxData, TxMeta, TxOffset};
use crate::value::Timestamp;

/// Where the commitlog of data directory `dir` lives: its own subdirectory, so the
/// directory can hold other files of the application's (keys, configuration).
pub fn log_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("log")
}

/// A table adopted whole from a transaction with at least this many rows gets its
/// indexes repacked: cheap next to the load, and it roughly halves index memory.
const BULK_ROWS_MIN: usize = 4096;

/// The committed state: every table's rows as of [`CommittedState::offset`].
#[derive(Debug)]
pub struct CommittedState {
    schema: Arc<Schema>,
    schema_version: u64,
    tables: Vec<Table>,
    offset: TxOffset,
    timestamp: Timestamp,
}

impl CommittedState {
    fn new(schema: Arc<Schema>) -> Self {
        let tables = schema
            .tables()
            .iter()
            .map(|t| Table::new(t.clone()))
            .collect();
        CommittedState {
            schema,
            schema_version: 1,
            tables,
            offset: 0,
            timestamp: Timestamp(0),
        }
    }

    /// The schema in force.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Bumped by every migration; plans compiled against an older version are stale.
    pub fn schema_version(&self) -> u64 {
        self.schema_version
    }

    /// The offset of the last commit merged (0 before the first).
    pub fn offset(&self) -> TxOffset {
        self.offset
    }

    /// The timestamp of the last commit merged.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The table at `id`.
    pub fn table(&self, id: TableId) -> Option<&Table> {
        self.tables.get(id.idx())
    }

    /// The table named `name`.
    pub fn table_by_name(&self, name: &str) -> Option<(TableId, &Table)> {
        let id = self.schema.table_id(name)?;
        Some((id, &self.tables[id.idx()]))
    }

    /// Every row of `table`, decoded.
    pub fn rows(&self, table: TableId) -> Vec<Row> {
        self.table(table)
            .map(|t| t.iter().map(|(_, r)| r).collect())
            .unwrap_or_default()
    }
}

/// A read guard on committed state; it sees exactly one offset.
pub type ReadGuard = ArcRwLockReadGuard<RawRwLock, CommittedState>;

/// Options for [`Datastore::open`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Commitlog segment size and durability policy.
    pub log: LogOptions,
}

/// Opening a data directory failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The log could not be opened or replayed.
    #[error(transparent)]
    Log(#[from] CommitlogError),
    /// The schema given does not fit the data directory's.
    #[error("the schema does not fit the data directory: {0}")]
    Migration(#[from] MigrationError),
}

/// A commit failed; nothing changed.
#[derive(Debug, Error)]
pub enum CommitError {
    /// The log refused the record (a previous write or fsync failed).
    #[error("commit refused by the log")]
    Log(#[from] CommitlogError),
}

/// What a commit produced.
#[derive(Debug)]
pub struct Commit {
    /// The commit's TxData; `None` when it changed nothing (no offset was taken).
    pub tx_data: Option<Arc<TxData>>,
    durable: Option<Durable>,
}

impl Commit {
    /// The commit offset, if the commit changed anything.
    pub fn offset(&self) -> Option<TxOffset> {
        self.tx_data.as_ref().map(|t| t.offset)
    }

    /// The durability ticket, when a log is attached and the commit was logged.
    pub fn durable(&self) -> Option<&Durable> {
        self.durable.as_ref()
    }

    /// Blocks until the commit is durable under the log's policy (at once in memory).
    pub fn wait_durable(&self) -> Result<(), CommitlogError> {
        match &self.durable {
            Some(d) => d.wait(),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Default)]
struct Gate {
    evaluated: TxOffset,
}

struct Inner {
    state: Arc<RwLock<CommittedState>>,
    sequences: Mutex<Sequences>,
    gate: Mutex<Gate>,
    /// Whether the gate is on: an atomic, so that a commit with the gate off (the
    /// default) does not take the gate's lock.
    gate_enabled: std::sync::atomic::AtomicBool,
    gate_cv: Condvar,
    gate_wait_ns: AtomicU64,
    gate_waiting: std::sync::atomic::AtomicBool,
    /// From how many rows of one table in one commit TxData also packs them.
    pack_rows_from: std::sync::atomic::AtomicUsize,
    log: Option<Commitlog>,
    last_migration: Mutex<MigrationReport>,
}

/// The datastore handle; cheap to clone, shared across threads.
#[derive(Clone)]
pub struct Datastore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Datastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datastore")
            .field("offset", &self.inner.state.read().offset)
            .field("durable", &self.inner.log.is_some())
            .finish()
    }
}

impl Datastore {
    /// An in-memory datastore of `schema` (nothing is written anywhere).
    pub fn in_memory(schema: Schema) -> Self {
        Self::from_parts(
            CommittedState::new(Arc::new(schema)),
            None,
            MigrationReport::default(),
        )
    }

    fn from_parts(state: CommittedState, log: Option<Commitlog>, report: MigrationReport) -> Self {
        let sequences = Sequences::for_schema(&state.schema, None);
        Self::with_sequences(state, sequences, log, report)
    }

    fn with_sequences(
        state: CommittedState,
        sequences: Sequences,
        log: Option<Commitlog>,
        report: MigrationReport,
    ) -> Self {
        Datastore {
            inner: Arc::new(Inner {
                state: Arc::new(RwLock::new(state)),
                sequences: Mutex::new(sequences),
                gate: Mutex::new(Gate::default()),
                gate_enabled: Default::default(),
                gate_cv: Condvar::new(),
                gate_wait_ns: AtomicU64::new(0),
                gate_waiting: Default::default(),
                pack_rows_from: PACK_ROWS_FROM.into(),
                log,
                last_migration: Mutex::new(report),
            }),
        }
    }

    /// Opens (or creates) the data directory `dir` with `schema`, replaying its log.
    ///
    /// When the directory was written with another schema, `schema` is applied as a
    /// migration ([`Datastore::last_migration`] tells what it ended); an incompatible one
    /// is refused with every problem listed and nothing written.
    pub fn open(dir: &Path, schema: Schema, opts: OpenOptions) -> Result<Self, OpenError> {
        let mut replay = Replay::default();
        let log = Commitlog::open(&log_dir(dir), opts.log, |index, payload| {
            replay.apply(index, payload)
        })?;
        let Replay {
            state, sequences, ..
        } = replay;
        let schema = Arc::new(schema);
        let (state, sequences, report, record) = match state {
            None => {
                let state = CommittedState::new(schema.clone());
                let seqs = Sequences::for_schema(&schema, None);
                (
                    state,
                    seqs,
                    MigrationReport::default(),
                    Some(record::encode_schema(0, &schema)),
                )
            }
            Some(old) if *old.schema == *schema => {
                (old, sequences, MigrationReport::default(), None)
            }
            Some(old) => {
                let report = migrate::plan(&old.schema, &schema)?;
                let seqs = Sequences::for_schema(&schema, Some((&old.schema, &sequences)));
                let state = rebuild(&old, schema.clone())?;
                let rec = record::encode_schema(state.offset, &schema);
                (state, seqs, report, Some(rec))
            }
        };
        if let Some(rec) = record {
            log.append(rec)?.wait()?;
        }
        Ok(Self::with_sequences(state, sequences, Some(log), report))
    }

    /// Applies `schema` to the running datastore as an exclusive transaction.
    pub fn migrate(&self, schema: Schema) -> Result<MigrationReport, OpenError> {
        let guard = self.inner.state.upgradable_read_arc();
        if *guard.schema == schema {
            return Ok(MigrationReport::default());
        }
        let report = migrate::plan(&guard.schema, &schema)?;
        let schema = Arc::new(schema);
        let next = rebuild(&guard, schema.clone())?;
        if let Some(log) = &self.inner.log {
            log.append(record::encode_schema(guard.offset, &schema))?
                .wait()?;
        }
        {
            let mut seqs = self.inner.sequences.lock();
            *seqs = Sequences::for_schema(&schema, Some((&guard.schema, &seqs)));
        }
        let mut w = ArcRwLockUpgradableReadGuard::upgrade(guard);
        *w = next;
        *self.inner.last_migration.lock() = report.clone();
        Ok(report)
    }

    /// What the schema applied at open (or the last [`Datastore::migrate`]) changed.
    pub fn last_migration(&self) -> MigrationReport {
        self.inner.last_migration.lock().clone()
    }

    /// Begins a mutable transaction; waits while another one is open.
    pub fn begin_mut_tx(&self) -> MutTx {
        let committed = self.inner.state.upgradable_read_arc();
        let n = committed.tables.len();
        MutTx {
            ds: self.clone(),
            committed,
            tables: (0..n).map(|_| None).collect(),
            meta: TxMeta::default(),
        }
    }

    /// A read guard on committed state, reporting the offset it sees.
    pub fn read(&self) -> ReadGuard {
        self.inner.state.read_arc()
    }

    /// The schema in force.
    pub fn schema(&self) -> Arc<Schema> {
        self.inner.state.read().schema.clone()
    }

    /// Turns on the commit gate: a commit may merge only once the previous offset has been
    /// acknowledged with [`Datastore::acknowledge_evaluated`].
    pub fn enable_commit_gate(&self) {
        let offset = self.inner.state.read().offset;
        let mut g = self.inner.gate.lock();
        g.evaluated = g.evaluated.max(offset);
        self.inner.gate_enabled.store(true, Ordering::Release);
    }

    /// Turns the commit gate off and releases any commit waiting at it.
    pub fn disable_commit_gate(&self) {
        // Stored under the lock: a commit checks it under the lock before it waits, so
        // it either sees the gate off or is already waiting when the notice comes.
        let g = self.inner.gate.lock();
        self.inner.gate_enabled.store(false, Ordering::Release);
        drop(g);
        self.inner.gate_cv.notify_all();
    }

    /// A reader has evaluated every commit up to `offset`.
    pub fn acknowledge_evaluated(&self, offset: TxOffset) {
        let mut g = self.inner.gate.lock();
        if offset > g.evaluated {
            g.evaluated = offset;
            self.inner.gate_cv.notify_all();
        }
    }

    /// Sets from how many rows of one table in one commit TxData carries them packed as
    /// well ([`TableUpdate::stored_inserts`]); [`PACK_ROWS_FROM`] by default, 1 to pack
    /// every change (tests of the packed readers use that).
    pub fn set_pack_rows_from(&self, rows: usize) {
        self.inner
            .pack_rows_from
            .store(rows.max(1), Ordering::Relaxed);
    }

    /// Total time commits have waited at the gate, in nanoseconds.
    pub fn gate_wait_ns(&self) -> u64 {
        self.inner.gate_wait_ns.load(Ordering::Relaxed)
    }

    /// Whether a commit is waiting at the gate right now (a gauge for metrics and tests).
    pub fn commit_waiting_at_gate(&self) -> bool {
        self.inner.gate_waiting.load(Ordering::Acquire)
    }

    fn wait_gate(&self, committed: TxOffset) {
        let enabled = || self.inner.gate_enabled.load(Ordering::Acquire);
        if !enabled() {
            return;
        }
        let mut g = self.inner.gate.lock();
        if !enabled() || g.evaluated >= committed {
            return;
        }
        let start = Instant::now();
        self.inner.gate_waiting.store(true, Ordering::Release);
        while enabled() && g.evaluated < committed {
            self.inner.gate_cv.wait(&mut g);
        }
        self.inner.gate_waiting.store(false, Ordering::Release);
        let ns = start.elapsed().as_nanos() as u64;
        self.inner.gate_wait_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn draw_sequence(
        &self,
        schema: &Schema,
        table: TableId,
        column: crate::ColId,
    ) -> Result<crate::Value, TxError> {
        self.inner.sequences.lock().draw(schema, table, column)
    }

    /// Waits until everything committed so far is durable (no-op in memory).
    pub fn flush(&self) -> Result<(), CommitlogError> {
        match &self.inner.log {
            Some(log) => log.flush(),
            None => Ok(()),
        }
    }

    pub(crate) fn commit(&self, mut tx: MutTx) -> Result<Commit, CommitError> {
        let schema = tx.committed.schema.clone();
        let mut tables = Vec::new();
        for (i, slot) in tx.tables.iter().enumerate() {
            let Some(t) = slot.as_deref().filter(|t| !t.is_noop()) else {
                continue;
            };
            let committed = &tx.committed.tables[i];
            let ts = &schema.tables()[i];
            let pack_from = self.inner.pack_rows_from.load(Ordering::Relaxed);
            let (inserts, stored_inserts) = collect_rows(&t.inserts, t.live_inserts(), pack_from);
            let (deletes, stored_deletes) = collect_rows(committed, t.live_deletes(), pack_from);
            if inserts.is_empty() && deletes.is_empty() {
                continue;
            }
            let truncated = !ts.is_event
                && !deletes.is_empty()
                && committed.len() == t.deletes.len()
                && inserts.is_empty();
            tables.push(TableUpdate {
                table_id: TableId(i as u32),
                table_name: ts.name.clone(),
                is_event: ts.is_event,
                inserts: inserts.into(),
                deletes: deletes.into(),
                stored_inserts,
                stored_deletes,
                truncated,
            });
        }
        if tables.is_empty() {
            return Ok(Commit {
                tx_data: None,
                durable: None,
            });
        }
        self.wait_gate(tx.committed.offset);
        let tx_data = TxData {
            offset: tx.committed.offset + 1,
            timestamp: Timestamp::now().max(tx.committed.timestamp),
            meta: std::mem::take(&mut tx.meta),
            tables,
            sequences: self.inner.sequences.lock().take_dirty(),
        };
        let durable = match &self.inner.log {
            Some(log) => Some(log.append(record::encode_commit(&schema, &tx_data))?),
            None => None,
        };
        let mut w = ArcRwLockUpgradableReadGuard::upgrade(tx.committed);
        for (i, slot) in tx.tables.iter_mut().enumerate() {
            let Some(t) = slot.as_deref_mut() else {
                continue;
            };
            if schema.tables()[i].is_event {
                continue;
            }
            let committed = &mut w.tables[i];
            for id in t.live_deletes().collect::<Vec<_>>() {
                committed.delete(id);
            }
            if committed.is_empty() && t.inserts.len() == t.order.len() {
                // Nothing was replaced or removed, so the insert table is exactly the new
                // contents in first-insertion order: adopt it whole (bulk loads).
                std::mem::swap(committed, &mut t.inserts);
                if committed.len() >= BULK_ROWS_MIN {
                    committed.compact_indexes();
                }
                continue;
            }
            for id in t.live_inserts().collect::<Vec<_>>() {
                if let (Some(row), Some(bytes)) = (t.inserts.get(id), t.inserts.get_bytes(id)) {
                    committed.insert_unchecked(&row, bytes.into());
                }
            }
        }
        w.offset = tx_data.offset;
        w.timestamp = tx_data.timestamp;
        drop(w);
        Ok(Commit {
            tx_data: Some(Arc::new(tx_data)),
            durable,
        })
    }
}

impl MutTx {
    /// Commits: see the module doc of [`crate::datastore`] for the steps.
    pub fn commit(self) -> Result<Commit, CommitError> {
        let ds = self.ds.clone();
        ds.commit(self)
    }

    /// Discards every change (sequence values drawn stay drawn).
    pub fn rollback(self) {}
}

/// From this many rows of one table in one commit, TxData carries them packed too:
/// below it, readers find the decoded rows as near and the packing would cost a small
/// commit several allocations (about a tenth of a one-row commit's time).
pub const PACK_ROWS_FROM: usize = 16;

/// The rows of `from` at `ids`, decoded for TxData, and also packed when there may be
/// `pack_from` or more of them.
fn collect_rows(
    from: &Table,
    ids: impl Iterator<Item = RowId>,
    pack_from: usize,
) -> (Vec<Row>, Option<Arc<PackedRows>>) {
    // Ids of rows replaced within the transaction are skipped, so this is at most.
    let at_most = ids.size_hint().1.unwrap_or(0);
    let mut rows = Vec::with_capacity(at_most);
    // `pack_from` is at least 1 (`set_pack_rows_from`), so an empty list is never packed.
    let mut packed = (at_most >= pack_from)
        .then(|| PackedRows::new(from.schema().clone(), from.fixed_offsets().clone()));
    for id in ids {
        if let (Some(row), Some(bytes)) = (from.get(id), from.get_bytes(id)) {
            if let Some(p) = &mut packed {
                if rows.is_empty() {
                    // The first row's size is the best guess at the others'.
                    p.reserve(at_most, bytes.len());
                }
                p.push(bytes);
            }
            rows.push(row);
        }
    }
    (rows, packed.map(Arc::new))
}

/// A log record that does not fit the state replayed so far.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The record does not decode.
    #[error("log entry {index} does not decode")]
    Record {
        /// Entry index in the log.
        index: u64,
        /// Why.
        #[source]
        source: RecordError,
    },
    /// A commit before any schema record.
    #[error("log entry {index} is a commit, but no schema record precedes it")]
    NoSchema {
        /// Entry index in the log.
        index: u64,
    },
    /// Offsets must be dense.
    #[error("log entry {index} has commit offset {got}, expected {expected}")]
    Offset {
        /// Entry index in the log.
        index: u64,
        /// The offset found.
        got: TxOffset,
        /// The offset expected.
        expected: TxOffset,
    },
    /// A delete of a row that is not there.
    #[error("log entry {index} deletes a row of `{table}` that is not present: {row}")]
    MissingRow {
        /// Entry index in the log.
        index: u64,
        /// The table.
        table: Arc<str>,
        /// The row.
        row: Row,
    },
    /// The schema record could not be applied.
    #[error("log entry {index} changes the schema incompatibly")]
    Migration {
        /// Entry index in the log.
        index: u64,
        /// Why.
        #[source]
        source: MigrationError,
    },
}

#[derive(Default)]
struct Replay {
    state: Option<CommittedState>,
    sequences: Sequences,
}

impl Replay {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Result<(), ReplayError> {
        let empty = Schema::default();
        let schema = self.state.as_ref().map_or(&empty, |s| &*s.schema);
        let rec = record::decode(schema, payload)
            .map_err(|source| ReplayError::Record { index, source })?;
        match rec {
            Record::Schema { schema, .. } => {
                let schema = Arc::new(schema);
                let next = match &self.state {
                    None => CommittedState::new(schema.clone()),
                    Some(old) => rebuild(old, schema.clone())
                        .map_err(|source| ReplayError::Migration { index, source })?,
                };
                let old = self.state.as_ref().map(|s| (&*s.schema, &self.sequences));
                self.sequences = Sequences::for_schema(&schema, old);
                self.state = Some(next);
            }
            Record::Commit(c) => {
                let state = self.state.as_mut().ok_or(ReplayError::NoSchema { index })?;
                if c.offset != state.offset + 1 {
                    return Err(ReplayError::Offset {
                        index,
                        got: c.offset,
                        expected: state.offset + 1,
                    });
                }
                for (tid, inserts, deletes) in c.tables {
                    let table = &mut state.tables[tid.idx()];
                    for row in deletes {
                        let bytes = codec::row_bytes(table.schema(), &row);
                        match table.find_identical(&row, &bytes) {
                            Some(id) => {
                                table.delete(id);
                            }
                            None => {
                                return Err(ReplayError::MissingRow {
                                    index,
                                    table: table.schema().name.clone(),
                                    row,
                                });
                            }
                        }
                    }
                    for row in inserts {
                        let bytes = codec::row_bytes(table.schema(), &row);
                        table.insert_unchecked(&row, bytes);
                    }
                }
                for (t, col, next) in c.sequences {
                    self.sequences.restore(t, col, next);
                }
                state.offset = c.offset;
                state.timestamp = c.timestamp;
            }
        }
        Ok(())
    }
}

/// Committed state under `schema`, with the rows of `old` carried over by table name.
fn rebuild(old: &CommittedState, schema: Arc<Schema>) -> Result<CommittedState, MigrationError> {
    let mut next = CommittedState::new(schema.clone());
    next.offset = old.offset;
    next.timestamp = old.timestamp;
    next.schema_version = old.schema_version + 1;
    let mut problems = Vec::new();
    for (tid, ts) in schema.iter() {
        let Some((_, prior)) = old.table_by_name(&ts.name) else {
            continue;
        };
        if ts.is_event {
            continue;
        }
        let table = &mut next.tables[tid.idx()];
        for (_, row) in prior.iter() {
            for (i, idx) in ts.indexes.iter().enumerate().filter(|(_, i)| i.unique) {
                let key = row.project(&idx.columns);
                if table.unique_lookup(i, &key).is_some() {
                    problems.push(migrate::MigrationProblem::UniqueViolated {
                        table: ts.name.clone(),
                        constraint: idx.name.clone(),
                        value: crate::error::fmt_key(&key),
                    });
                }
            }
            let bytes = codec::row_bytes(ts, &row);
            table.insert_unchecked(&row, bytes);
        }
    }
    if problems.is_empty() {
        Ok(next)
    } else {
        Err(MigrationError { problems })
    }
}
