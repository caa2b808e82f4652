//! `INSERT`, `UPDATE` and `DELETE` for the owner: parse, check, then run inside a
//! transaction the caller provides.
//!
//! The stages mirror subscriptions: [`crate::parse::dml`] builds the syntax tree,
//! [`check()`] types it against the schema (the `WHERE` clause goes through the very same
//! checker as a subscription's, so it accepts exactly the same predicates), and
//! [`execute`] applies it to a [`MutTx`]. Committing, logging and broadcasting are the
//! caller's business: run inside the transaction actor, the change reaches subscribers
//! like any reducer's.
//!
//! Decisions:
//! - `UPDATE` deletes every matched row before inserting any replacement, so uniqueness
//!   is checked against the statement's result, not against rows it is replacing; a
//!   clash among the replacements refuses the whole statement.
//! - `INSERT` of a row whose unique key is already present is a unique violation, even
//!   when the whole row is identical (reducers' inserts treat that as a no-op; a person
//!   typing `INSERT` expects SQL's answer). A table without any unique index is a set:
//!   inserting a row identical to a present one changes nothing.
//! - A column omitted from `INSERT` takes its `auto_inc` sequence's next value, or NULL if
//!   it is nullable; any other omission is an error naming the column.
//! - `UPDATE`/`DELETE` on an event table are errors: event tables hold no rows between
//!   transactions, so such a statement could only ever match nothing. `INSERT` into an
//!   event table is allowed and delivers the events to subscribers.

use std::sync::Arc;

use thiserror::Error;
use tidings_engine::{
    AlgebraicType, ColId, MutTx, Row, Schema, TableId, TableSchema, TxError, Value,
};

use crate::check::{self, CheckError, CheckErrorKind, Pred, typed_literal};
use crate::parse::ast::{self, Dml, Ident, Literal};
use crate::parse::error::ParseError;
use crate::parse::lexer::Pos;
use crate::{Caller, exec};

/// A statement checked against the schema.
#[derive(Clone, Debug, PartialEq)]
pub enum TypedDml {
    /// Rows to insert, complete and typed.
    Insert {
        /// The table.
        table: TableId,
        /// The rows.
        rows: Vec<Row>,
    },
    /// Set `assignments` on every row matching `filter`.
    Update {
        /// The table.
        table: TableId,
        /// Typed `(column, value)` pairs.
        assignments: Vec<(ColId, Value)>,
        /// Which rows.
        filter: Pred,
    },
    /// Delete every row matching `filter`.
    Delete {
        /// The table.
        table: TableId,
        /// Which rows.
        filter: Pred,
    },
}

/// A statement that cannot run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DmlError {
    /// It does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// It does not fit the schema.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The transaction refused it (a unique constraint, a bad row).
    #[error(transparent)]
    Tx(#[from] TxError),
    /// The datastore refused the commit (its log has stopped).
    #[error("commit refused: {0}")]
    Commit(String),
}

/// Parses and checks `sql` for `caller` (who must be allowed to read the table).
pub fn compile(sql: &str, schema: &Schema, caller: Caller) -> Result<TypedDml, DmlError> {
    let dml = crate::parse::dml::parse_dml(sql)?;
    Ok(check(&dml, schema, caller)?)
}

fn at(kind: CheckErrorKind, pos: Pos) -> CheckError {
    CheckError {
        kind: Box::new(kind),
        pos,
    }
}

fn resolve<'s>(
    table: &Ident,
    schema: &'s Schema,
) -> Result<(TableId, &'s Arc<TableSchema>), CheckError> {
    schema
        .table_id(&table.name)
        .and_then(|id| schema.table(id).map(|ts| (id, ts)))
        .ok_or_else(|| at(CheckErrorKind::UnknownTable(table.name.clone()), table.pos))
}

fn column(ts: &TableSchema, c: &Ident) -> Result<ColId, CheckError> {
    ts.column_id(&c.name).ok_or_else(|| {
        at(
            CheckErrorKind::UnknownColumn {
                column: c.name.clone(),
                scope: format!("table `{}`", ts.name),
            },
            c.pos,
        )
    })
}

/// Types `l` for column `col`, refusing NULL where the column is not nullable.
fn value(ts: &TableSchema, col: ColId, l: &Literal, pos: Pos) -> Result<Value, CheckError> {
    let def = ts.column(col);
    if matches!(l, Literal::Null) && !matches!(def.ty, AlgebraicType::Option(_)) {
        return Err(at(CheckErrorKind::NotNullable(def.name.to_string()), pos));
    }
    typed_literal(l, &def.ty, &def.name).map_err(|kind| {
        // The shared checker words a mismatch as a comparison; here it is an assignment.
        let kind = match *kind {
            CheckErrorKind::TypeMismatch {
                column,
                ty,
                literal,
            } => Box::new(CheckErrorKind::NotAValue {
                column,
                ty,
                literal,
            }),
            other => Box::new(other),
        };
        CheckError { kind, pos }
    })
}

/// The `WHERE` clause typed exactly as a subscription's would be.
fn filter(
    table: &Ident,
    filter: &Option<ast::Expr>,
    schema: &Schema,
    caller: Caller,
) -> Result<Pred, CheckError> {
    let select = ast::Select {
        projection: ast::Projection::Star(table.pos),
        from: ast::From::Table(ast::TableRef {
            table: table.clone(),
            alias: None,
        }),
        filter: filter.clone(),
    };
    let mut typed = check::check(&select, schema, caller)?;
    Ok(typed.pop().map_or(Pred::Const(false), |q| q.filter))
}

/// Types a parsed statement against `schema`.
pub fn check(dml: &Dml, schema: &Schema, caller: Caller) -> Result<TypedDml, CheckError> {
    match dml {
        Dml::Insert {
            table,
            columns,
            rows,
        } => {
            let (id, ts) = resolve(table, schema)?;
            let targets: Vec<(ColId, Pos)> = match columns {
                None => (0..ts.columns.len())
                    .map(|i| (ColId(i as u16), table.pos))
                    .collect(),
                Some(cols) => {
                    let mut seen = Vec::with_capacity(cols.len());
                    for c in cols {
                        let col = column(ts, c)?;
                        if seen.iter().any(|(s, _)| *s == col) {
                            return Err(at(CheckErrorKind::DuplicateColumn(c.name.clone()), c.pos));
                        }
                        seen.push((col, c.pos));
                    }
                    seen
                }
            };
            // Columns the statement leaves out: a sequence's next value, else NULL.
            let mut defaults: Vec<Option<Value>> = vec![None; ts.columns.len()];
            for (i, def) in ts.columns.iter().enumerate() {
                let col = ColId(i as u16);
                if targets.iter().any(|(t, _)| *t == col) {
                    continue;
                }
                defaults[i] = Some(if ts.sequences.contains(&col) {
                    typed_literal(&Literal::Int("0".into()), &def.ty, &def.name).map_err(
                        |kind| CheckError {
                            kind,
                            pos: table.pos,
                        },
                    )?
                } else if matches!(def.ty, AlgebraicType::Option(_)) {
                    Value::Null
                } else {
                    return Err(at(
                        CheckErrorKind::MissingValue(def.name.to_string()),
                        table.pos,
                    ));
                });
            }
            let mut out = Vec::with_capacity(rows.len());
            for (n, (values, start)) in rows.iter().enumerate() {
                if values.len() != targets.len() {
                    return Err(at(
                        CheckErrorKind::ValueCount {
                            row: n + 1,
                            expected: targets.len(),
                            got: values.len(),
                        },
                        *start,
                    ));
                }
                let mut row: Vec<Value> = defaults
                    .iter()
                    .map(|d| d.clone().unwrap_or(Value::Null))
                    .collect();
                for ((col, _), (l, pos)) in targets.iter().zip(values) {
                    row[col.idx()] = value(ts, *col, l, *pos)?;
                }
                out.push(Row::from(row));
            }
            Ok(TypedDml::Insert {
                table: id,
                rows: out,
            })
        }
        Dml::Update {
            table,
            assignments,
            filter: f,
        } => {
            let (id, ts) = resolve(table, schema)?;
            if ts.is_event {
                return Err(at(
                    CheckErrorKind::EventTableDml(table.name.clone()),
                    table.pos,
                ));
            }
            let mut typed: Vec<(ColId, Value)> = Vec::with_capacity(assignments.len());
            for (c, l, pos) in assignments {
                let col = column(ts, c)?;
                if typed.iter().any(|(t, _)| *t == col) {
                    return Err(at(CheckErrorKind::DuplicateColumn(c.name.clone()), c.pos));
                }
                typed.push((col, value(ts, col, l, *pos)?));
            }
            Ok(TypedDml::Update {
                table: id,
                assignments: typed,
                filter: filter(table, f, schema, caller)?,
            })
        }
        Dml::Delete { table, filter: f } => {
            let (id, ts) = resolve(table, schema)?;
            if ts.is_event {
                return Err(at(
                    CheckErrorKind::EventTableDml(table.name.clone()),
                    table.pos,
                ));
            }
            Ok(TypedDml::Delete {
                table: id,
                filter: filter(table, f, schema, caller)?,
            })
        }
    }
}

/// Applies `dml` to `tx`; returns how many rows it inserted, updated or deleted.
///
/// On error the transaction may hold part of the statement: the caller rolls it back.
pub fn execute(dml: &TypedDml, tx: &mut MutTx) -> Result<usize, TxError> {
    match dml {
        TypedDml::Insert { table, rows } => {
            let schema = tx.table_schema(*table)?.clone();
            for row in rows {
                for (i, idx) in schema.indexes.iter().enumerate().filter(|(_, i)| i.unique) {
                    let key = row.project(&idx.columns);
                    if tx.find(*table, i, &key)?.is_some() {
                        return Err(TxError::unique(&schema.name, &idx.name, &key));
                    }
                }
                tx.insert(*table, row.clone())?;
            }
            Ok(rows.len())
        }
        TypedDml::Delete { table, filter } => {
            let matched = matching(tx, *table, filter)?;
            for row in &matched {
                tx.delete(*table, row.clone())?;
            }
            Ok(matched.len())
        }
        TypedDml::Update {
            table,
            assignments,
            filter,
        } => {
            let matched = matching(tx, *table, filter)?;
            for row in &matched {
                tx.delete(*table, row.clone())?;
            }
            for row in &matched {
                let mut values = row.values().to_vec();
                for (col, v) in assignments {
                    values[col.idx()] = v.clone();
                }
                tx.insert(*table, Row::from(values))?;
            }
            Ok(matched.len())
        }
    }
}

/// The rows of `table` visible to `tx` that satisfy `filter`.
fn matching(tx: &MutTx, table: TableId, filter: &Pred) -> Result<Vec<Row>, TxError> {
    // A full scan: DML is an operator's tool, and the scan sees the transaction's own
    // writes, which the committed indexes would not.
    Ok(tx
        .scan(table)?
        .into_iter()
        .filter(|r| exec::holds(filter, r.values(), None))
        .collect())
}
