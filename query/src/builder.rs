//! The typed query builder: subscriptions written as Rust over `#[table]` structs.
//!
//! ```text
//! use tidings_query::builder::prelude::*;
//!
//! let q = Message::query()
//!     .filter(|c: &MessageCols| c.sender.eq(Sender).and(c.id.gt(5u64)))
//!     .left_semijoin(User::query(), |m, u| (m.sender, u.identity));
//! let plan = q.compile(&schema, schema_version, caller)?;
//! ```
//!
//! A builder query compiles to the same [`TypedQuery`], hence the same [`Plan`] and
//! [`QueryKey`](crate::QueryKey), as the equivalent SQL, so builder and SQL subscribers
//! share one evaluation. What SQL rejects when it is checked or planned, the builder
//! rejects when it is compiled by rustc where it can:
//!
//! - a comparison's value must have the column's Rust type ([`CmpValue`]), and
//!   [`Sender`] only compares with identity columns;
//! - one filter closure sees one table's columns, so a filter cannot mix sides;
//! - join columns must be [`IndexedCol`]s of the same Rust type;
//! - the lookup side of a semijoin must be [`CanBeLookupTable`], which event tables are
//!   not;
//! - a query holds at most one join ([`Single`] and [`Joined`]).
//!
//! What only the schema in force can tell (the table exists, its columns are the ones
//! the struct declares, the caller may read it) is checked by [`Query::compile`].

use std::fmt;
use std::marker::PhantomData;

use thiserror::Error;
use tidings_engine::typed::{CanBeLookupTable, Column, HasCols, IndexedCol, SqlType, TableType};
use tidings_engine::{Access, ColId, Identity, Schema, TableId, TableSchema, Value};

use crate::check::{Caller, Pred, Side, Source, TypedQuery};
use crate::parse::ast::CmpOp;
use crate::plan::{self, Plan, PlanError};

/// The usual imports for writing builder queries.
pub mod prelude {
    pub use super::{ColumnExt, QueryExt, Sender};
}

/// The caller's identity, bound when the query is compiled: `:sender` in SQL.
///
/// It lets one query (or one [`ViewDef`](crate::view::ViewDef)) serve every caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sender;

/// The right-hand side of a comparison: a constant, or the caller yet to be bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Operand(OperandKind);

#[derive(Clone, Debug, PartialEq)]
enum OperandKind {
    Value(Value),
    Sender,
}

/// A value that a column of Rust type `V` can be compared with.
#[diagnostic::on_unimplemented(
    message = "a column of type `{V}` cannot be compared with `{Self}`",
    label = "not a `{V}`",
    note = "compare with a value of the column's Rust type (`Some(x)` for an `Option` column), or with `Sender` for an identity column"
)]
pub trait CmpValue<V> {
    /// The operand this value stands for.
    fn into_operand(self) -> Operand;
}

impl<V: SqlType> CmpValue<V> for V {
    fn into_operand(self) -> Operand {
        Operand(OperandKind::Value(self.into_value()))
    }
}

impl CmpValue<Identity> for Sender {
    fn into_operand(self) -> Operand {
        Operand(OperandKind::Sender)
    }
}

impl CmpValue<Option<Identity>> for Sender {
    fn into_operand(self) -> Operand {
        Operand(OperandKind::Sender)
    }
}

/// A predicate over the columns of table `T`.
pub struct Expr<T> {
    node: Node,
    _table: PhantomData<fn() -> T>,
}

/// A predicate without its table: what [`Expr`] holds.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    Cmp {
        col: ColId,
        op: CmpOp,
        rhs: OperandKind,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl<T> Expr<T> {
    fn new(node: Node) -> Self {
        Expr {
            node,
            _table: PhantomData,
        }
    }

    /// Both hold.
    pub fn and(self, other: Expr<T>) -> Expr<T> {
        Expr::new(junction(self.node, other.node, true))
    }

    /// Either holds.
    pub fn or(self, other: Expr<T>) -> Expr<T> {
        Expr::new(junction(self.node, other.node, false))
    }
}

/// `a AND b` or `a OR b`, flattened as it is built so that long chains stay shallow (the
/// planner would flatten them anyway, but recursion over a deep tree costs stack).
fn junction(a: Node, b: Node, and: bool) -> Node {
    let mut children = Vec::new();
    for n in [a, b] {
        match (n, and) {
            (Node::And(inner), true) | (Node::Or(inner), false) => children.extend(inner),
            (other, _) => children.push(other),
        }
    }
    if and {
        Node::And(children)
    } else {
        Node::Or(children)
    }
}

// Written out because derives would require `T: Clone` and `T: Debug`.
impl<T> Clone for Expr<T> {
    fn clone(&self) -> Self {
        Expr::new(self.node.clone())
    }
}

impl<T> fmt::Debug for Expr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.node).finish()
    }
}

/// Comparisons on column handles: `c.id.gt(5u64)`, `c.owner.eq(Sender)`.
///
/// SQL semantics: a comparison with NULL (`None`) is unknown, so it never holds.
pub trait ColumnExt: Column {
    /// `column = value`
    fn eq(self, value: impl CmpValue<Self::Value>) -> Expr<Self::Table> {
        compare(self, CmpOp::Eq, value)
    }
    /// `column != value`
    fn ne(self, value: impl CmpValue<Self::Value>) -> Expr<Self::Table> {
        compare(self, CmpOp::Ne, value)
    }
    /// `column < value`
    fn lt(self, value: impl CmpValue<Self::Value>) -> Expr<Self::Table> {
        compare(self, CmpOp::Lt, value)
    }
    /// `column <= value`
    fn le(self, value: impl CmpValue<Self::Value>) -> Expr<Self::Table> {
        compare(self, CmpOp::Le, value)
    }
    /// `column > value`
    fn gt(self, value: impl CmpValue<Self::Value>) -> Expr<Self::Table> {
        compare(self, CmpOp::Gt, value)
    }
    /// `column >= value`
    fn ge(self, value: impl CmpValue<Self::Value>) -> Expr<Self::Table> {
        compare(self, CmpOp::Ge, value)
    }
}

impl<C: Column> ColumnExt for C {}

fn compare<C: Column>(col: C, op: CmpOp, value: impl CmpValue<C::Value>) -> Expr<C::Table> {
    Expr::new(Node::Cmp {
        col: col.col_id(),
        op,
        rhs: value.into_operand().0,
    })
}

/// Marks a query without a join; the only kind that can still be joined.
#[derive(Debug)]
pub enum Single {}

/// Marks a query joined against table `R`.
///
/// Naming the lookup table in the query's type is what lets a view require, at compile
/// time, that every table it reads can back a view.
pub struct Joined<R>(PhantomData<fn() -> R>);

impl<R> fmt::Debug for Joined<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Joined")
    }
}

/// A typed subscription query returning rows of `T`; `J` is [`Single`] or [`Joined`].
pub struct Query<T, J = Single> {
    raw: UntypedQuery,
    _marker: PhantomData<fn() -> (T, J)>,
}

impl<T, J> Clone for Query<T, J> {
    fn clone(&self) -> Self {
        Query::from_raw(self.raw.clone())
    }
}

impl<T, J> fmt::Debug for Query<T, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Query").field(&self.raw).finish()
    }
}

/// `T::query()` for every `#[table]` struct.
pub trait QueryExt: HasCols {
    /// Every row of the table; narrow it with [`Query::filter`].
    fn query() -> Query<Self> {
        Query::new()
    }
}

impl<T: HasCols> QueryExt for T {}

impl<T: HasCols> Default for Query<T> {
    fn default() -> Self {
        Query::new()
    }
}

impl<T: HasCols> Query<T> {
    /// Every row of `T`: `SELECT * FROM t`.
    pub fn new() -> Self {
        Query::from_raw(UntypedQuery {
            source: RawSource::Table(TableInfo::of::<T>()),
            filter: Vec::new(),
        })
    }

    /// Rows of `T` with a matching row in `R`: `SELECT t.* FROM t JOIN r ON t.x = r.y`.
    ///
    /// `on` picks the join columns, `(t.x, r.y)`; both must be indexed and of the same
    /// type. Filters already on either query are kept, each on its own side.
    pub fn left_semijoin<R, V>(
        self,
        lookup: Query<R>,
        on: impl FnOnce(&T::Cols, &R::Cols) -> (IndexedCol<T, V>, IndexedCol<R, V>),
    ) -> Query<T, Joined<R>>
    where
        R: HasCols + CanBeLookupTable,
    {
        let (t_col, r_col) = on(&T::cols(), &R::cols());
        Query::from_raw(semijoin(self.raw, t_col.id(), lookup.raw, r_col.id()))
    }

    /// Rows of `R` with a matching row in `T`: `SELECT r.* FROM t JOIN r ON t.x = r.y`.
    ///
    /// The mirror of [`left_semijoin`](Self::left_semijoin): `T`, the left side, is
    /// looked up, so it must be [`CanBeLookupTable`]; `R` may be an event table.
    pub fn right_semijoin<R, V>(
        self,
        returned: Query<R>,
        on: impl FnOnce(&T::Cols, &R::Cols) -> (IndexedCol<T, V>, IndexedCol<R, V>),
    ) -> Query<R, Joined<T>>
    where
        T: CanBeLookupTable,
        R: HasCols,
    {
        let (t_col, r_col) = on(&T::cols(), &R::cols());
        Query::from_raw(semijoin(returned.raw, r_col.id(), self.raw, t_col.id()))
    }
}

/// Joins two single-table queries; each keeps its filters, moved to its side.
fn semijoin(
    returned: UntypedQuery,
    returned_col: ColId,
    lookup: UntypedQuery,
    lookup_col: ColId,
) -> UntypedQuery {
    // The typestate only lets `Single` queries in here, so both sources are tables.
    let (RawSource::Table(r), RawSource::Table(l)) = (returned.source, lookup.source) else {
        unreachable!("only single-table queries can be joined")
    };
    let filter = returned
        .filter
        .into_iter()
        .map(|(_, n)| (Side::Returned, n))
        .chain(lookup.filter.into_iter().map(|(_, n)| (Side::Lookup, n)))
        .collect();
    UntypedQuery {
        source: RawSource::Semijoin {
            returned: r,
            lookup: l,
            returned_col,
            lookup_col,
        },
        filter,
    }
}

impl<T: HasCols, J> Query<T, J> {
    /// Keeps the rows of `T` for which `f`'s predicate holds; filters add up with AND.
    pub fn filter(mut self, f: impl FnOnce(&T::Cols) -> Expr<T>) -> Self {
        self.raw.filter.push((Side::Returned, f(&T::cols()).node));
        self
    }
}

impl<T, J> Query<T, J> {
    fn from_raw(raw: UntypedQuery) -> Self {
        Query {
            raw,
            _marker: PhantomData,
        }
    }

    /// The query without its Rust types, as views store it.
    pub fn untyped(&self) -> &UntypedQuery {
        &self.raw
    }

    /// Checks the query against `schema` for `caller` and binds [`Sender`].
    pub fn to_typed(&self, schema: &Schema, caller: Caller) -> Result<TypedQuery, BuildError> {
        self.raw.to_typed(schema, caller)
    }

    /// Compiles the query for `caller` against `schema` at `schema_version`: the plan
    /// the equivalent SQL compiles to.
    pub fn compile(
        &self,
        schema: &Schema,
        schema_version: u64,
        caller: Caller,
    ) -> Result<Plan, BuildError> {
        self.raw.compile(schema, schema_version, caller)
    }
}

/// A builder query that cannot be compiled against the schema in force.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// The schema has no table of the struct's name.
    #[error("unknown table `{table}`: the schema has no table of that name")]
    UnknownTable {
        /// The table's name (`TableType::NAME`).
        table: &'static str,
    },
    /// The schema's table differs from the struct's (columns, their types, event flag).
    #[error(
        "table `{table}` in the schema does not match its Rust struct: the columns or the event flag differ"
    )]
    SchemaMismatch {
        /// The table.
        table: &'static str,
    },
    /// A private table read by someone other than the owner.
    #[error("table `{table}` is private")]
    Private {
        /// The table.
        table: &'static str,
    },
    /// A float column compared with NaN, which SQL cannot even write.
    #[error("column `{table}.{column}` is compared with NaN")]
    NotANumber {
        /// The table.
        table: &'static str,
        /// The column.
        column: String,
    },
    /// The checked query cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// A builder query without its Rust types: what a [`Query`] holds and views store.
#[derive(Clone, Debug)]
pub struct UntypedQuery {
    source: RawSource,
    /// Conjuncts, each on the side it was given for.
    filter: Vec<(Side, Node)>,
}

#[derive(Clone, Debug)]
enum RawSource {
    Table(TableInfo),
    Semijoin {
        returned: TableInfo,
        lookup: TableInfo,
        returned_col: ColId,
        lookup_col: ColId,
    },
}

/// What the builder knows of a table from its Rust type.
#[derive(Clone, Copy)]
struct TableInfo {
    name: &'static str,
    is_event: bool,
    /// Called only when compiling, to compare the struct with the schema in force.
    schema: fn() -> TableSchema,
}

impl fmt::Debug for TableInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl TableInfo {
    fn of<T: TableType>() -> Self {
        TableInfo {
            name: T::NAME,
            is_event: T::IS_EVENT,
            schema: T::schema,
        }
    }

    /// The table's id in `schema`, once it is known to be the struct's table and
    /// readable by `caller`.
    fn resolve<'s>(
        &self,
        schema: &'s Schema,
        caller: Caller,
    ) -> Result<(TableId, &'s TableSchema), BuildError> {
        let table = self.name;
        let (id, ts) = schema
            .table_id(table)
            .and_then(|id| Some((id, schema.table(id)?)))
            .ok_or(BuildError::UnknownTable { table })?;
        // Column handles are positions, so they are only meaningful against the struct's
        // own columns; a schema from another version of the program would silently
        // compare the wrong column.
        if ts.is_event != self.is_event || ts.columns != (self.schema)().columns {
            return Err(BuildError::SchemaMismatch { table });
        }
        if ts.access == Access::Private && !caller.is_owner {
            return Err(BuildError::Private { table });
        }
        Ok((id, ts))
    }
}

impl UntypedQuery {
    /// The names of the tables the query reads: the returned one first.
    pub fn tables(&self) -> Vec<&'static str> {
        match &self.source {
            RawSource::Table(t) => vec![t.name],
            RawSource::Semijoin {
                returned, lookup, ..
            } => vec![returned.name, lookup.name],
        }
    }

    /// The name of the table whose rows the query returns.
    pub fn returned_table(&self) -> &'static str {
        match &self.source {
            RawSource::Table(t) | RawSource::Semijoin { returned: t, .. } => t.name,
        }
    }

    /// Checks the query against `schema` for `caller` and binds [`Sender`].
    pub fn to_typed(&self, schema: &Schema, caller: Caller) -> Result<TypedQuery, BuildError> {
        let (source, returned, lookup) = match &self.source {
            RawSource::Table(t) => {
                let (id, ts) = t.resolve(schema, caller)?;
                (Source::Table(id), (t.name, ts), None)
            }
            RawSource::Semijoin {
                returned,
                lookup,
                returned_col,
                lookup_col,
            } => {
                let (rid, rts) = returned.resolve(schema, caller)?;
                let (lid, lts) = lookup.resolve(schema, caller)?;
                let source = Source::Semijoin {
                    returned: rid,
                    lookup: lid,
                    returned_col: *returned_col,
                    lookup_col: *lookup_col,
                };
                (source, (returned.name, rts), Some((lookup.name, lts)))
            }
        };
        let mut conjuncts = Vec::with_capacity(self.filter.len());
        for (side, node) in &self.filter {
            let table = match side {
                Side::Returned => returned,
                // Only a semijoin puts filters on the lookup side.
                Side::Lookup => lookup.unwrap_or(returned),
            };
            conjuncts.push(to_pred(node, *side, table, caller)?);
        }
        let filter = match conjuncts.len() {
            0 => Pred::Const(true),
            1 => conjuncts.remove(0),
            _ => Pred::And(conjuncts),
        };
        Ok(TypedQuery { source, filter })
    }

    /// Compiles the query for `caller` against `schema` at `schema_version`.
    pub fn compile(
        &self,
        schema: &Schema,
        schema_version: u64,
        caller: Caller,
    ) -> Result<Plan, BuildError> {
        let typed = self.to_typed(schema, caller)?;
        Ok(plan::plan(typed, schema, schema_version)?)
    }
}

/// The predicate `node` stands for on `side`, whose table is `table`.
fn to_pred(
    node: &Node,
    side: Side,
    table: (&'static str, &TableSchema),
    caller: Caller,
) -> Result<Pred, BuildError> {
    let children = |nodes: &[Node]| {
        nodes
            .iter()
            .map(|n| to_pred(n, side, table, caller))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match node {
        Node::And(v) => Pred::And(children(v)?),
        Node::Or(v) => Pred::Or(children(v)?),
        Node::Cmp { col, op, rhs } => {
            let value = match rhs {
                OperandKind::Sender => Value::from(caller.identity),
                OperandKind::Value(v) => sql_value(v, || BuildError::NotANumber {
                    table: table.0,
                    column: table.1.column(*col).name.to_string(),
                })?,
            };
            Pred::Cmp {
                side,
                col: *col,
                op: *op,
                value,
            }
        }
    })
}

/// `v` as the SQL checker would have typed the same literal: `-0.0` is `0.0` (stored rows
/// are normalized so), and NaN cannot be written at all.
fn sql_value(v: &Value, nan: impl FnOnce() -> BuildError) -> Result<Value, BuildError> {
    Ok(match v {
        Value::F32(f) if f.is_nan() => return Err(nan()),
        Value::F64(f) if f.is_nan() => return Err(nan()),
        Value::F32(f) if *f == 0.0 => Value::F32(0.0),
        Value::F64(f) if *f == 0.0 => Value::F64(0.0),
        other => other.clone(),
    })
}
