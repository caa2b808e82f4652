//! Memory footprint of a loaded table: bytes currently allocated per row.
//!
//! Loads the 1,000,000-row `footprint` table (non-unique btree indexes on both `u64`
//! columns) in one transaction, commits, drops the commit (freeing its TxData) and reports
//! the growth of the bytes currently allocated through the Rust global allocator, divided
//! by the row count. SQLite allocates through its own `sqlite3_malloc`, which this counter
//! does not see, so its figures come from SQLite itself.
//!
//! Run with `cargo bench --bench engine_memory`.

// A counting global allocator has to implement the unsafe `GlobalAlloc` trait, and SQLite's
// allocator statistics are only reachable through its C API.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::{EngineStore, FOOTPRINT_ROWS, SqliteStore, Store};

/// Bytes per row the engine should stay under.
const TARGET_BYTES_PER_ROW: f64 = 100.0;

/// `System`, counting the bytes currently allocated and their high-water mark.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are only updated
// after a successful allocation or before/after a deallocation, never touching memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Resets the high-water mark to the current figure.
fn reset_peak() {
    PEAK.store(current(), Ordering::Relaxed);
}

fn per_row(bytes: usize) -> f64 {
    bytes as f64 / FOOTPRINT_ROWS as f64
}

fn sqlite_memory_used() -> i64 {
    // SAFETY: a read of SQLite's global allocator statistics; no arguments, no state.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

struct Line {
    what: &'static str,
    bytes_per_row: f64,
    note: String,
}

fn main() {
    let mut lines = Vec::new();

    // Engine.
    let before = current();
    reset_peak();
    let start = Instant::now();
    let mut engine = EngineStore::in_memory();
    let commit = engine.load_footprint(FOOTPRINT_ROWS);
    let load_time = start.elapsed();
    let with_tx_data = current().saturating_sub(before);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    drop(commit);
    let after = current().saturating_sub(before);
    let rows = engine
        .ds
        .read()
        .table_by_name("footprint")
        .map(|(_, t)| t.len());
    assert_eq!(
        rows,
        Some(FOOTPRINT_ROWS as usize),
        "every row was committed"
    );
    let engine_per_row = per_row(after);
    let verdict = if engine_per_row < TARGET_BYTES_PER_ROW {
        "within target"
    } else {
        "ABOVE TARGET"
    };
    lines.push(Line {
        what: "engine: allocated after commit, TxData dropped",
        bytes_per_row: engine_per_row,
        note: format!("target < {TARGET_BYTES_PER_ROW:.0}: {verdict}"),
    });
    lines.push(Line {
        what: "engine: allocated with the commit's TxData held",
        bytes_per_row: per_row(with_tx_data),
        note: String::new(),
    });
    lines.push(Line {
        what: "engine: peak allocated during load and commit",
        bytes_per_row: per_row(peak),
        note: format!("load + commit took {:.2} s", load_time.as_secs_f64()),
    });
    drop(engine);

    // SQLite, :memory:.
    let mut sqlite = SqliteStore::in_memory();
    let sqlite_before = sqlite_memory_used();
    let start = Instant::now();
    sqlite.load_footprint(FOOTPRINT_ROWS);
    let sqlite_time = start.elapsed();
    let sqlite_used = usize::try_from(sqlite_memory_used() - sqlite_before).unwrap_or(0);
    let db_bytes = usize::try_from(sqlite.database_bytes()).unwrap_or(usize::MAX);
    lines.push(Line {
        what: "sqlite :memory:: database size (page_count * page_size)",
        bytes_per_row: per_row(db_bytes),
        note: "a different measure: database pages, not allocator bytes".to_owned(),
    });
    lines.push(Line {
        what: "sqlite :memory:: sqlite3_memory_used() growth",
        bytes_per_row: per_row(sqlite_used),
        note: format!(
            "SQLite's own allocator counter; load + commit took {:.2} s",
            sqlite_time.as_secs_f64()
        ),
    });
    drop(sqlite);

    println!(
        "footprint: {FOOTPRINT_ROWS} rows (entity_id u64, owner_entity_id u64, type enum), \
         non-unique btree indexes on entity_id and owner_entity_id, one transaction"
    );
    println!();
    println!("{:<58} {:>10}  note", "measure", "bytes/row");
    println!("{}", "-".repeat(100));
    for l in &lines {
        println!("{:<58} {:>10.1}  {}", l.what, l.bytes_per_row, l.note);
    }
}
