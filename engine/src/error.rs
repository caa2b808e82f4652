//! Error types, one per operation.
//!
//! Each carries the names a person needs to find the problem (table, column, constraint,
//! value, segment, offset); causes sit in `#[source]`, never in the text.

use std::sync::Arc;

use thiserror::Error;

use crate::value::{AlgebraicType, Value};

/// A table or database schema that cannot be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SchemaError {
    /// The table definition has problems; all of them are listed.
    #[error("table `{table}` is invalid: {}", problems.join("; "))]
    InvalidTable {
        /// The table.
        table: Arc<str>,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// Two tables share a name.
    #[error("table `{table}` is declared twice")]
    DuplicateTable {
        /// The table.
        table: Arc<str>,
    },
}

/// A row that does not fit its table.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RowError {
    /// Wrong number of values.
    #[error("table `{table}` has {expected} columns but the row has {got} values")]
    Arity {
        /// The table.
        table: Arc<str>,
        /// Columns in the table.
        expected: usize,
        /// Values in the row.
        got: usize,
    },
    /// A value of the wrong type.
    #[error("column `{table}.{column}` has type {expected}, but the row gives a {got}")]
    Type {
        /// The table.
        table: Arc<str>,
        /// The column.
        column: Arc<str>,
        /// The column's type.
        expected: AlgebraicType,
        /// The value's kind.
        got: &'static str,
    },
    /// NaN in a float column.
    #[error("column `{table}.{column}` cannot hold NaN")]
    NaN {
        /// The table.
        table: Arc<str>,
        /// The column.
        column: Arc<str>,
    },
}

/// Bytes that are not a valid row of the schema they were decoded with.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cannot decode column `{table}.{column}` at byte {position}: {what}")]
pub struct DecodeError {
    /// The table.
    pub table: Arc<str>,
    /// The column being decoded.
    pub column: Arc<str>,
    /// Byte position within the row.
    pub position: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// A failed operation inside a transaction. The transaction itself stays usable.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TxError {
    /// No table by that id or name.
    #[error("no table `{0}`")]
    UnknownTable(String),
    /// No column by that name.
    #[error("table `{table}` has no column `{column}`")]
    UnknownColumn {
        /// The table.
        table: Arc<str>,
        /// The column asked for.
        column: String,
    },
    /// The row does not fit the table.
    #[error(transparent)]
    Row(#[from] RowError),
    /// A unique constraint (or primary key) would be violated.
    #[error(
        "insert into `{table}` violates unique constraint `{constraint}`: key {value} already exists"
    )]
    UniqueViolation {
        /// The table.
        table: Arc<str>,
        /// The constraint's name.
        constraint: Arc<str>,
        /// The duplicate key, formatted.
        value: String,
    },
    /// `update` found no row with the given key.
    #[error("update of `{table}` found no row with {constraint} = {value}")]
    UpdateNotFound {
        /// The table.
        table: Arc<str>,
        /// The unique constraint used to find the row.
        constraint: Arc<str>,
        /// The key, formatted.
        value: String,
    },
    /// `update` needs a unique index over the given columns.
    #[error("table `{table}` has no unique index over ({columns}) to update by")]
    NoUniqueIndex {
        /// The table.
        table: Arc<str>,
        /// The columns asked for.
        columns: String,
    },
    /// The index does not exist.
    #[error("table `{table}` has no index #{index}")]
    UnknownIndex {
        /// The table.
        table: Arc<str>,
        /// The index position asked for.
        index: usize,
    },
    /// An index lookup with a key of the wrong length or type.
    #[error("index `{index}` of `{table}` takes ({expected}), not the key given")]
    KeyMismatch {
        /// The table.
        table: Arc<str>,
        /// The index name.
        index: Arc<str>,
        /// The key's column types.
        expected: String,
    },
    /// The sequence ran past its column type's maximum.
    #[error("auto_inc sequence of `{table}.{column}` is exhausted")]
    SequenceExhausted {
        /// The table.
        table: Arc<str>,
        /// The column.
        column: Arc<str>,
    },
}

impl TxError {
    /// A unique-constraint violation of `constraint` on `table` by `key`.
    pub fn unique(table: &Arc<str>, constraint: &Arc<str>, key: &[Value]) -> Self {
        TxError::UniqueViolation {
            table: table.clone(),
            constraint: constraint.clone(),
            value: fmt_key(key),
        }
    }
}

pub(crate) fn fmt_key(key: &[Value]) -> String {
    if key.len() == 1 {
        return key[0].to_string();
    }
    let parts: Vec<String> = key.iter().map(|v| v.to_string()).collect();
    format!("({})", parts.join(", "))
}
