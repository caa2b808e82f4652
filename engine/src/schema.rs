//! Table schemas and the database schema.
//!
//! A primary key and every unique constraint are unique btree indexes; a plain
//! `index(btree)` is a non-unique one. Constraint names follow PostgreSQL's habit
//! (`{table}_{cols}_pkey`, `{table}_{cols}_key`, `{table}_{cols}_idx`) so errors can name
//! them.
//!
//! Decision (DESIGN is silent): in a unique index NULL is a value like any other, so two
//! rows cannot both hold NULL in a unique `Option` column. Comparisons in queries still
//! follow SQL (NULL never equals anything); uniqueness is about storage identity.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::SchemaError;
use crate::row::Row;
use crate::value::{AlgebraicType, Value};

/// A column's position in its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ColId(pub u16);

impl ColId {
    /// The position as a `usize`.
    pub fn idx(self) -> usize {
        self.0 as usize
    }
}

/// A table's position in its [`Schema`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableId(pub u32);

impl TableId {
    /// The position as a `usize`.
    pub fn idx(self) -> usize {
        self.0 as usize
    }
}

/// Who may read a table without an explicit rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Any client may subscribe.
    Public,
    /// Only the owner (and visibility rules) may read it.
    Private,
}

/// One column.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name, unique within the table.
    pub name: Arc<str>,
    /// Column type.
    pub ty: AlgebraicType,
}

/// A btree index over one or more columns; unique indexes enforce constraints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexDef {
    /// Constraint/index name used in errors.
    pub name: Arc<str>,
    /// Indexed columns, in key order.
    pub columns: Vec<ColId>,
    /// Whether two rows may share a key.
    pub unique: bool,
}

/// A table's schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableSchema {
    /// Table name.
    pub name: Arc<str>,
    /// Columns in row order.
    pub columns: Vec<ColumnDef>,
    /// The primary-key column, if any (it also has a unique index).
    pub primary_key: Option<ColId>,
    /// Indexes; the primary key's comes first when there is one.
    pub indexes: Vec<IndexDef>,
    /// Columns with an `auto_inc` sequence.
    pub sequences: Vec<ColId>,
    /// Public or private.
    pub access: Access,
    /// Event table: rows live only inside the transaction that inserted them.
    pub is_event: bool,
}

impl TableSchema {
    /// Starts a schema for a table named `name`.
    pub fn builder(name: &str) -> TableSchemaBuilder {
        TableSchemaBuilder {
            name: name.into(),
            columns: Vec::new(),
            primary_key: None,
            uniques: Vec::new(),
            indexes: Vec::new(),
            sequences: Vec::new(),
            access: Access::Private,
            is_event: false,
        }
    }

    /// The column named `name`.
    pub fn column_id(&self, name: &str) -> Option<ColId> {
        self.columns
            .iter()
            .position(|c| &*c.name == name)
            .map(|i| ColId(i as u16))
    }

    /// The column at `col`.
    pub fn column(&self, col: ColId) -> &ColumnDef {
        &self.columns[col.idx()]
    }

    /// The first unique index whose key is exactly `columns`.
    pub fn unique_index_on(&self, columns: &[ColId]) -> Option<usize> {
        self.indexes
            .iter()
            .position(|i| i.unique && i.columns == columns)
    }

    /// The first btree index whose key starts with `col`.
    pub fn index_starting_with(&self, col: ColId) -> Option<usize> {
        self.indexes.iter().position(|i| i.columns[0] == col)
    }

    /// Whether `col` has a single-column unique index (or is the primary key).
    pub fn is_unique_column(&self, col: ColId) -> bool {
        self.unique_index_on(&[col]).is_some()
    }

    /// Checks a row against the columns and normalizes it (`-0.0` becomes `0.0`).
    ///
    /// Errors name the table, the column and what was wrong.
    pub fn check_row(&self, row: &mut Row) -> Result<(), crate::error::RowError> {
        use crate::error::RowError;
        if row.len() != self.columns.len() {
            return Err(RowError::Arity {
                table: self.name.clone(),
                expected: self.columns.len(),
                got: row.len(),
            });
        }
        for (value, col) in row.values_mut().iter_mut().zip(&self.columns) {
            if !value.has_type(&col.ty) {
                return Err(RowError::Type {
                    table: self.name.clone(),
                    column: col.name.clone(),
                    expected: col.ty.clone(),
                    got: value.kind_name(),
                });
            }
            match value {
                Value::F32(f) if f.is_nan() => return Err(self.nan(col)),
                Value::F64(f) if f.is_nan() => return Err(self.nan(col)),
                Value::F32(f) if *f == 0.0 => *f = 0.0,
                Value::F64(f) if *f == 0.0 => *f = 0.0,
                _ => {}
            }
        }
        Ok(())
    }

    fn nan(&self, col: &ColumnDef) -> crate::error::RowError {
        crate::error::RowError::NaN {
            table: self.name.clone(),
            column: col.name.clone(),
        }
    }

    fn col_names(&self, cols: &[ColId]) -> String {
        cols.iter()
            .map(|c| &*self.columns[c.idx()].name)
            .collect::<Vec<_>>()
            .join("_")
    }
}

/// Builds and validates a [`TableSchema`].
#[derive(Clone, Debug)]
pub struct TableSchemaBuilder {
    name: Arc<str>,
    columns: Vec<ColumnDef>,
    primary_key: Option<String>,
    uniques: Vec<Vec<String>>,
    indexes: Vec<Vec<String>>,
    sequences: Vec<String>,
    access: Access,
    is_event: bool,
}

impl TableSchemaBuilder {
    /// Adds a column.
    pub fn column(mut self, name: &str, ty: AlgebraicType) -> Self {
        self.columns.push(ColumnDef {
            name: name.into(),
            ty,
        });
        self
    }

    /// Makes `column` the primary key (unique, and the key `update` uses by default).
    pub fn primary_key(mut self, column: &str) -> Self {
        self.primary_key = Some(column.into());
        self
    }

    /// Adds a unique constraint over `columns`.
    pub fn unique(mut self, columns: &[&str]) -> Self {
        self.uniques
            .push(columns.iter().map(|c| c.to_string()).collect());
        self
    }

    /// Adds a non-unique btree index over `columns`.
    pub fn index(mut self, columns: &[&str]) -> Self {
        self.indexes
            .push(columns.iter().map(|c| c.to_string()).collect());
        self
    }

    /// Gives `column` an `auto_inc` sequence: inserting 0 there draws the next value.
    pub fn auto_inc(mut self, column: &str) -> Self {
        self.sequences.push(column.into());
        self
    }

    /// Makes the table public.
    pub fn public(mut self) -> Self {
        self.access = Access::Public;
        self
    }

    /// Sets the access explicitly.
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Makes the table an event table.
    pub fn event(mut self) -> Self {
        self.is_event = true;
        self
    }

    /// Sets the event flag explicitly.
    pub fn is_event(mut self, is_event: bool) -> Self {
        self.is_event = is_event;
        self
    }

    /// Validates and returns the schema, reporting every problem at once.
    pub fn build(self) -> Result<TableSchema, SchemaError> {
        let mut problems = Vec::new();
        let table = self.name.clone();
        if table.is_empty() {
            problems.push("the table name is empty".to_string());
        }
        if self.columns.is_empty() {
            problems.push("a table needs at least one column".to_string());
        }
        if self.columns.len() > u16::MAX as usize {
            problems.push(format!(
                "{} columns exceed the limit of 65535",
                self.columns.len()
            ));
        }
        for (i, c) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|d| d.name == c.name) {
                problems.push(format!("column `{}` is declared twice", c.name));
            }
            if let AlgebraicType::Option(inner) = &c.ty
                && matches!(**inner, AlgebraicType::Option(_))
            {
                problems.push(format!(
                    "column `{}`: nested options are not supported",
                    c.name
                ));
            }
            if let AlgebraicType::Enum(e) = c.ty.non_null()
                && (e.variants.is_empty() || e.variants.len() > 256)
            {
                problems.push(format!(
                    "column `{}`: enum `{}` must have 1 to 256 variants",
                    c.name, e.name
                ));
            }
        }
        let resolve = |name: &str, problems: &mut Vec<String>, what: &str| -> Option<ColId> {
            match self.columns.iter().position(|c| &*c.name == name) {
                Some(i) => Some(ColId(i as u16)),
                None => {
                    problems.push(format!("{what} names unknown column `{name}`"));
                    None
                }
            }
        };
        let mut schema = TableSchema {
            name: self.name.clone(),
            columns: self.columns.clone(),
            primary_key: None,
            indexes: Vec::new(),
            sequences: Vec::new(),
            access: self.access,
            is_event: self.is_event,
        };
        if let Some(pk) = &self.primary_key
            && let Some(col) = resolve(pk, &mut problems, "the primary key")
        {
            schema.primary_key = Some(col);
            let name = format!("{}_{}_pkey", table, schema.col_names(&[col]));
            schema.indexes.push(IndexDef {
                name: name.into(),
                columns: vec![col],
                unique: true,
            });
        }
        let mut add_index = |cols: &[String], unique: bool, problems: &mut Vec<String>| {
            let what = if unique {
                "a unique constraint"
            } else {
                "an index"
            };
            if cols.is_empty() {
                problems.push(format!("{what} has no columns"));
                return;
            }
            let ids: Vec<ColId> = cols
                .iter()
                .filter_map(|c| resolve(c, problems, what))
                .collect();
            if ids.len() != cols.len() {
                return;
            }
            if schema
                .indexes
                .iter()
                .any(|i| i.columns == ids && i.unique == unique)
            {
                return;
            }
            let suffix = if unique { "key" } else { "idx" };
            let name = format!("{}_{}_{}", table, schema.col_names(&ids), suffix);
            schema.indexes.push(IndexDef {
                name: name.into(),
                columns: ids,
                unique,
            });
        };
        for cols in &self.uniques {
            add_index(cols, true, &mut problems);
        }
        for cols in &self.indexes {
            add_index(cols, false, &mut problems);
        }
        for s in &self.sequences {
            if let Some(col) = resolve(s, &mut problems, "auto_inc") {
                if !schema.columns[col.idx()].ty.is_integer() {
                    problems.push(format!(
                        "auto_inc column `{s}` has type {}, not an integer type",
                        schema.columns[col.idx()].ty
                    ));
                } else if !schema.sequences.contains(&col) {
                    schema.sequences.push(col);
                }
            }
        }
        if problems.is_empty() {
            Ok(schema)
        } else {
            Err(SchemaError::InvalidTable { table, problems })
        }
    }
}

/// The database schema: every table, addressed by [`TableId`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schema {
    tables: Vec<Arc<TableSchema>>,
}

impl Schema {
    /// A schema of `tables`; table names must be unique.
    pub fn new(tables: impl IntoIterator<Item = TableSchema>) -> Result<Self, SchemaError> {
        let tables: Vec<Arc<TableSchema>> = tables.into_iter().map(Arc::new).collect();
        for (i, t) in tables.iter().enumerate() {
            if tables[..i].iter().any(|u| u.name == t.name) {
                return Err(SchemaError::DuplicateTable {
                    table: t.name.clone(),
                });
            }
        }
        Ok(Schema { tables })
    }

    /// All tables, in [`TableId`] order.
    pub fn tables(&self) -> &[Arc<TableSchema>] {
        &self.tables
    }

    /// The table at `id`.
    pub fn table(&self, id: TableId) -> Option<&Arc<TableSchema>> {
        self.tables.get(id.idx())
    }

    /// The id of the table named `name`.
    pub fn table_id(&self, name: &str) -> Option<TableId> {
        self.tables
            .iter()
            .position(|t| &*t.name == name)
            .map(|i| TableId(i as u32))
    }

    /// Iterates `(TableId, schema)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (TableId, &Arc<TableSchema>)> {
        self.tables
            .iter()
            .enumerate()
            .map(|(i, t)| (TableId(i as u32), t))
    }
}
