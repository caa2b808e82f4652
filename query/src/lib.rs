//! tidings-query: the SQL subset clients subscribe with.
//!
//! A subscription string passes through these stages, each a module with its own error:
//!
//! 1. [`parse`]: text to syntax tree ([`parse::ast::Select`]); rejects every construct
//!    outside the subset by name and position; length and nesting limits.
//! 2. [`check`]: names to ids, literals to typed values, `:sender` bound
//!    ([`check::TypedQuery`]).
//! 3. [`plan`]: normalization into a sharing [`QueryKey`], event-table rules, index choice
//!    ([`Plan`]).
//! 4. [`exec`]: full evaluation against committed state (initial rows, one-off queries),
//!    reading stored rows in place ([`exec::evaluate_stored`]).
//! 5. [`delta`]: incremental evaluation of one commit's TxData against the post-state;
//!    a [`QueryDelta`] shares the commit's rows instead of copying them. A single-table
//!    query filters the commit's packed rows through its [`bytefilter`], compiled with
//!    the plan: equalities on fixed-offset columns become byte comparisons.
//!
//! Beside the pipeline:
//! - [`registry`] shares equal queries and prunes, per commit, the queries a commit
//!   cannot change;
//! - [`rls`] expands a client's query into one fragment per combination of visibility
//!   rules ([`rls::compile_for`]);
//! - [`builder`] is the typed query builder (`Message::query().filter(..)`), compiling to
//!   the same plans as SQL; event tables cannot be its lookup side, at compile time;
//! - [`view`] declares named queries clients subscribe to like tables;
//! - [`dml`] parses, checks and applies the owner's `INSERT`/`UPDATE`/`DELETE` (never a
//!   subscription: [`parse::parse`] keeps rejecting them).
//!
//! [`compile`] runs stages 1 to 3. Read [`Plan`], [`exec::evaluate`] and
//! [`delta::evaluate_delta`] first.
//!
//! This crate knows the engine's committed state and TxData, and nothing of actors,
//! sessions or the wire format.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod builder;
pub mod bytefilter;
pub mod check;
pub mod delta;
pub mod dml;
pub mod exec;
pub mod parse;
pub mod plan;
pub mod registry;
pub mod rls;
pub mod view;

pub use check::{Caller, CheckError, Pred, Side, Source, TypedQuery};
pub use delta::{DeltaRow, DeltaRows, QueryDelta, evaluate_delta};
pub use exec::{evaluate, evaluate_rows, evaluate_stored};
pub use parse::error::ParseError;
pub use plan::{EVENT_LOOKUP_ERROR, Plan, PlanError, QueryKey};
pub use registry::{QueryId, Registry};
pub use rls::{ClientQuery, RlsCompileError, RlsError, RlsRules, compile_for};

use thiserror::Error;
use tidings_engine::Schema;

/// A subscription string that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CompileError {
    /// It does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// It does not fit the schema.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// It cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Compiles `sql` for `caller` against `schema` at `schema_version`.
///
/// Returns one plan per query: `SELECT * FROM *` expands to every table the caller may
/// read except event tables; anything else yields exactly one plan.
pub fn compile(
    sql: &str,
    schema: &Schema,
    schema_version: u64,
    caller: Caller,
) -> Result<Vec<Plan>, CompileError> {
    compile_with_limit(sql, schema, schema_version, caller, parse::QUERY_BYTES_MAX)
}

/// [`compile`] with a custom length limit in bytes.
pub fn compile_with_limit(
    sql: &str,
    schema: &Schema,
    schema_version: u64,
    caller: Caller,
    bytes_max: usize,
) -> Result<Vec<Plan>, CompileError> {
    let select = parse::parse_with_limit(sql, bytes_max)?;
    let typed = check::check(&select, schema, caller)?;
    typed
        .into_iter()
        .map(|q| plan::plan(q, schema, schema_version).map_err(CompileError::from))
        .collect()
}
