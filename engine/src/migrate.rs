//! Schema migrations: what may change between the schema in force and a new one.
//!
//! Allowed: adding tables, adding or dropping indexes and unique constraints (checked
//! against the rows when applied), adding or dropping `auto_inc`, changing access, and any
//! column change of a table that stays an event table (it holds no rows; query sets that
//! read it must end, since their decoders are stale: see [`MigrationReport::ended_tables`]).
//!
//! Refused, with every problem listed at once and nothing written: changing a table's
//! event flag (either way), changing a persistent table's columns, removing a table.

use std::sync::Arc;

use thiserror::Error;

use crate::schema::{Schema, TableSchema};

/// One reason a migration is refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum MigrationProblem {
    /// The event flag changed.
    #[error("Changing the event flag of table {table} requires a manual migration")]
    ChangeEventFlag {
        /// The table.
        table: Arc<str>,
    },
    /// A persistent table's columns changed.
    #[error("Changing the columns of table {table} requires a manual migration: {details}")]
    ChangeColumns {
        /// The table.
        table: Arc<str>,
        /// What changed, column by column.
        details: String,
    },
    /// A table is gone from the new schema.
    #[error("Removing table {table} requires a manual migration")]
    RemoveTable {
        /// The table.
        table: Arc<str>,
    },
    /// A new unique constraint does not hold for the rows present.
    #[error(
        "Unique constraint {constraint} of table {table} does not hold: key {value} appears more than once"
    )]
    UniqueViolated {
        /// The table.
        table: Arc<str>,
        /// The constraint.
        constraint: Arc<str>,
        /// A duplicated key.
        value: String,
    },
}

/// A refused migration: every problem found.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub struct MigrationError {
    /// Every problem, in table order.
    pub problems: Vec<MigrationProblem>,
}

/// What an accepted migration changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Tables that are new.
    pub added_tables: Vec<Arc<str>>,
    /// Event tables whose columns changed: query sets reading them must end.
    pub ended_tables: Vec<Arc<str>>,
    /// Tables whose access changed: their query sets must be re-checked.
    pub access_changed: Vec<Arc<str>>,
    /// Tables whose indexes, constraints or sequences changed.
    pub reindexed_tables: Vec<Arc<str>>,
}

impl MigrationReport {
    /// Whether the migration changed nothing.
    pub fn is_empty(&self) -> bool {
        *self == MigrationReport::default()
    }
}

/// Checks `new` against `old`, listing every problem at once.
pub fn plan(old: &Schema, new: &Schema) -> Result<MigrationReport, MigrationError> {
    let mut problems = Vec::new();
    let mut report = MigrationReport::default();
    for (_, o) in old.iter() {
        if new.table_id(&o.name).is_none() {
            problems.push(MigrationProblem::RemoveTable {
                table: o.name.clone(),
            });
        }
    }
    for (_, n) in new.iter() {
        let Some(o) = old.table_id(&n.name).and_then(|id| old.table(id)) else {
            report.added_tables.push(n.name.clone());
            continue;
        };
        if o.is_event != n.is_event {
            problems.push(MigrationProblem::ChangeEventFlag {
                table: n.name.clone(),
            });
            continue;
        }
        if o.columns != n.columns {
            if n.is_event {
                report.ended_tables.push(n.name.clone());
            } else {
                problems.push(MigrationProblem::ChangeColumns {
                    table: n.name.clone(),
                    details: column_diff(o, n),
                });
                continue;
            }
        }
        if o.access != n.access {
            report.access_changed.push(n.name.clone());
        }
        if o.indexes != n.indexes || o.sequences != n.sequences || o.primary_key != n.primary_key {
            report.reindexed_tables.push(n.name.clone());
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(MigrationError { problems })
    }
}

fn column_diff(o: &TableSchema, n: &TableSchema) -> String {
    let mut parts = Vec::new();
    for (i, oc) in o.columns.iter().enumerate() {
        match n.columns.get(i) {
            None => parts.push(format!("column `{}` removed", oc.name)),
            Some(nc) if nc.name != oc.name => parts.push(format!(
                "column {i} renamed from `{}` to `{}`",
                oc.name, nc.name
            )),
            Some(nc) if nc.ty != oc.ty => parts.push(format!(
                "column `{}` changes type from {} to {}",
                oc.name, oc.ty, nc.ty
            )),
            Some(_) => {}
        }
    }
    for nc in n.columns.iter().skip(o.columns.len()) {
        parts.push(format!("column `{}` added", nc.name));
    }
    parts.join(", ")
}
