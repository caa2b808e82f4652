//! Stage 2: type-check a syntax tree against the schema.
//!
//! Resolves tables, aliases and columns, types every literal against the column it is
//! compared with (out-of-range literals are errors, not silent wraps), binds `:sender`,
//! and decides which table a join returns. The result, [`TypedQuery`], no longer mentions
//! names or positions.

use std::cmp::Ordering;
use std::sync::Arc;

use thiserror::Error;
use tidings_engine::{
    AlgebraicType, ColId, Identity, Schema, TableId, TableSchema, Value, ValueRef,
};

use crate::parse::ast::{self, CmpOp, ColumnRef, Expr, Literal, Operand, Projection, Select};
use crate::parse::lexer::Pos;

/// Which table of a query a column belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The returned table.
    Returned,
    /// The lookup (joined-against) table.
    Lookup,
}

/// A typed predicate. Comparisons always have the column on the left.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pred {
    /// All hold.
    And(Vec<Pred>),
    /// Any holds.
    Or(Vec<Pred>),
    /// `column op value`, SQL semantics (NULL compares unknown, so false).
    Cmp {
        /// Which table.
        side: Side,
        /// Which column.
        col: ColId,
        /// The operator.
        op: CmpOp,
        /// The typed constant.
        value: Value,
    },
    /// A constant.
    Const(bool),
}

/// What a query reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// One table.
    Table(TableId),
    /// `returned ⋉ lookup` on `returned.returned_col = lookup.lookup_col`.
    Semijoin {
        /// The table whose rows are returned.
        returned: TableId,
        /// The table joined against.
        lookup: TableId,
        /// Join column of the returned table.
        returned_col: ColId,
        /// Join column of the lookup table.
        lookup_col: ColId,
    },
}

impl Source {
    /// The table whose rows the query returns.
    pub fn returned(&self) -> TableId {
        match self {
            Source::Table(t) | Source::Semijoin { returned: t, .. } => *t,
        }
    }

    /// The lookup table, for a semijoin.
    pub fn lookup(&self) -> Option<TableId> {
        match self {
            Source::Table(_) => None,
            Source::Semijoin { lookup, .. } => Some(*lookup),
        }
    }
}

/// A checked query.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TypedQuery {
    /// What it reads.
    pub source: Source,
    /// The predicate (`Const(true)` when there is no WHERE).
    pub filter: Pred,
}

/// Who is asking: decides `:sender` and which tables are readable.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// The caller's identity, bound to `:sender`.
    pub identity: Identity,
    /// The owner may read private tables.
    pub is_owner: bool,
}

/// A query that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{kind} ({pos})")]
pub struct CheckError {
    /// What was wrong (boxed: errors are rare, results are common).
    pub kind: Box<CheckErrorKind>,
    /// Where.
    pub pos: Pos,
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CheckErrorKind {
    /// No such table.
    #[error("unknown table `{0}`")]
    UnknownTable(String),
    /// No such column in the table(s) in scope.
    #[error("unknown column `{column}` in {scope}")]
    UnknownColumn {
        /// The column.
        column: String,
        /// Where it was looked for.
        scope: String,
    },
    /// A qualifier that names no table in the query.
    #[error("`{0}` is not a table or alias of this query")]
    UnknownQualifier(String),
    /// An unqualified column both tables have.
    #[error("column `{0}` is ambiguous: qualify it with a table or alias")]
    AmbiguousColumn(String),
    /// Two tables of a join with the same visible name.
    #[error("both sides of the join are called `{0}`: give one an alias")]
    DuplicateAlias(String),
    /// A private table read by someone other than the owner.
    #[error("table `{0}` is private")]
    Private(String),
    /// `SELECT *` over a join.
    #[error("SELECT * over a join would return two tables: select one side with `table.*`")]
    StarOverJoin,
    /// The ON clause does not join one column of each side.
    #[error("the join condition must compare a column of each side")]
    BadJoinCondition,
    /// The join columns have different types.
    #[error("join columns `{left}` ({left_ty}) and `{right}` ({right_ty}) have different types")]
    JoinTypeMismatch {
        /// Left column.
        left: String,
        /// Its type.
        left_ty: AlgebraicType,
        /// Right column.
        right: String,
        /// Its type.
        right_ty: AlgebraicType,
    },
    /// A literal of the wrong kind for its column.
    #[error("column `{column}` has type {ty}, which cannot be compared with {literal}")]
    TypeMismatch {
        /// The column.
        column: String,
        /// Its type.
        ty: AlgebraicType,
        /// The literal, described.
        literal: String,
    },
    /// A literal outside its column type's range.
    #[error("literal {literal} is out of range for column `{column}` of type {ty}")]
    OutOfRange {
        /// The column.
        column: String,
        /// Its type.
        ty: AlgebraicType,
        /// The literal.
        literal: String,
    },
    /// A parameter other than `:sender`.
    #[error("unknown parameter `:{0}` (only `:sender` exists)")]
    UnknownParam(String),
    /// Two columns compared in WHERE.
    #[error("comparing two columns is not supported in subscription queries")]
    ColumnComparison,
    /// A comparison without any column.
    #[error("a comparison must involve a column")]
    NoColumn,
    /// NULL for a column that is not an `Option`.
    #[error("column `{0}` is not nullable")]
    NotNullable(String),
    /// A column named twice in one `INSERT` column list or `SET` clause.
    #[error("column `{0}` is named more than once")]
    DuplicateColumn(String),
    /// An `INSERT` leaving out a column that has neither a sequence nor NULL.
    #[error("column `{0}` needs a value: it is neither auto_inc nor nullable")]
    MissingValue(String),
    /// An `INSERT` row with the wrong number of values.
    #[error("row {row} has {got} values for {expected} columns")]
    ValueCount {
        /// 1-based row number.
        row: usize,
        /// Columns listed.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A literal assigned to a column of another type.
    #[error("{literal} is not a value of column `{column}` ({ty})")]
    NotAValue {
        /// The column.
        column: String,
        /// Its type.
        ty: AlgebraicType,
        /// The literal, described.
        literal: String,
    },
    /// `UPDATE` or `DELETE` on an event table.
    #[error("`{0}` is an event table: it holds no rows to update or delete")]
    EventTableDml(String),
}

fn at(kind: impl Into<Box<CheckErrorKind>>, pos: Pos) -> CheckError {
    CheckError {
        kind: kind.into(),
        pos,
    }
}

/// One table in scope.
struct Scoped<'a> {
    id: TableId,
    schema: &'a Arc<TableSchema>,
    name: &'a str,
    side: Side,
}

/// Checks one statement; `FROM *` yields one query per readable non-event table.
pub fn check(
    select: &Select,
    schema: &Schema,
    caller: Caller,
) -> Result<Vec<TypedQuery>, CheckError> {
    let resolve = |r: &ast::TableRef| -> Result<(TableId, &Arc<TableSchema>), CheckError> {
        let id = schema.table_id(&r.table.name).ok_or_else(|| {
            at(
                CheckErrorKind::UnknownTable(r.table.name.clone()),
                r.table.pos,
            )
        })?;
        let ts = schema.table(id).ok_or_else(|| {
            at(
                CheckErrorKind::UnknownTable(r.table.name.clone()),
                r.table.pos,
            )
        })?;
        if ts.access == tidings_engine::Access::Private && !caller.is_owner {
            return Err(at(
                CheckErrorKind::Private(r.table.name.clone()),
                r.table.pos,
            ));
        }
        Ok((id, ts))
    };
    match &select.from {
        ast::From::AllTables(pos) => {
            if let Projection::TableStar(i) = &select.projection {
                return Err(at(CheckErrorKind::UnknownQualifier(i.name.clone()), i.pos));
            }
            if let Some(f) = &select.filter {
                // A filter over every table can only be constant.
                let mut scope = Vec::new();
                let filter = typed_pred(f, &mut scope, caller)?;
                if !matches!(filter, Pred::Const(_)) {
                    return Err(at(CheckErrorKind::NoColumn, *pos));
                }
            }
            Ok(schema
                .iter()
                .filter(|(_, t)| {
                    !t.is_event && (caller.is_owner || t.access == tidings_engine::Access::Public)
                })
                .map(|(id, _)| TypedQuery {
                    source: Source::Table(id),
                    filter: Pred::Const(true),
                })
                .collect())
        }
        ast::From::Table(r) => {
            let (id, ts) = resolve(r)?;
            if let Projection::TableStar(i) = &select.projection
                && i.name != r.visible_name().name
            {
                return Err(at(CheckErrorKind::UnknownQualifier(i.name.clone()), i.pos));
            }
            let mut scope = vec![Scoped {
                id,
                schema: ts,
                name: &r.visible_name().name,
                side: Side::Returned,
            }];
            let filter = match &select.filter {
                Some(f) => typed_pred(f, &mut scope, caller)?,
                None => Pred::Const(true),
            };
            Ok(vec![TypedQuery {
                source: Source::Table(id),
                filter,
            }])
        }
        ast::From::Join {
            left,
            right,
            on_left,
            on_right,
        } => {
            let (lid, lts) = resolve(left)?;
            let (rid, rts) = resolve(right)?;
            let (lname, rname) = (&left.visible_name().name, &right.visible_name().name);
            if lname == rname {
                return Err(at(
                    CheckErrorKind::DuplicateAlias(lname.clone()),
                    right.visible_name().pos,
                ));
            }
            let returned_left = match &select.projection {
                Projection::Star(pos) => return Err(at(CheckErrorKind::StarOverJoin, *pos)),
                Projection::TableStar(i) if &i.name == lname => true,
                Projection::TableStar(i) if &i.name == rname => false,
                Projection::TableStar(i) => {
                    return Err(at(CheckErrorKind::UnknownQualifier(i.name.clone()), i.pos));
                }
            };
            let side = |left_side: bool| {
                if left_side == returned_left {
                    Side::Returned
                } else {
                    Side::Lookup
                }
            };
            let mut scope = vec![
                Scoped {
                    id: lid,
                    schema: lts,
                    name: lname,
                    side: side(true),
                },
                Scoped {
                    id: rid,
                    schema: rts,
                    name: rname,
                    side: side(false),
                },
            ];
            let a = column(on_left, &scope)?;
            let b = column(on_right, &scope)?;
            if a.0 == b.0 {
                return Err(at(CheckErrorKind::BadJoinCondition, on_left.column.pos));
            }
            let (ret, look) = if a.0 == Side::Returned {
                (a, b)
            } else {
                (b, a)
            };
            let (ret_ts, look_ts) = if returned_left {
                (lts, rts)
            } else {
                (rts, lts)
            };
            let (rty, lty) = (&ret_ts.column(ret.1).ty, &look_ts.column(look.1).ty);
            if rty.non_null() != lty.non_null() {
                return Err(at(
                    CheckErrorKind::JoinTypeMismatch {
                        left: format!("{}.{}", ret_ts.name, ret_ts.column(ret.1).name),
                        left_ty: rty.clone(),
                        right: format!("{}.{}", look_ts.name, look_ts.column(look.1).name),
                        right_ty: lty.clone(),
                    },
                    on_left.column.pos,
                ));
            }
            let filter = match &select.filter {
                Some(f) => typed_pred(f, &mut scope, caller)?,
                None => Pred::Const(true),
            };
            let (returned, lookup) = if returned_left {
                (lid, rid)
            } else {
                (rid, lid)
            };
            Ok(vec![TypedQuery {
                source: Source::Semijoin {
                    returned,
                    lookup,
                    returned_col: ret.1,
                    lookup_col: look.1,
                },
                filter,
            }])
        }
    }
}

/// Resolves a column reference to its side, id and type.
fn column(
    c: &ColumnRef,
    scope: &[Scoped<'_>],
) -> Result<(Side, ColId, AlgebraicType, String), CheckError> {
    let candidates: Vec<&Scoped<'_>> = match &c.qualifier {
        Some(q) => {
            let s = scope
                .iter()
                .find(|s| s.name == q.name)
                .ok_or_else(|| at(CheckErrorKind::UnknownQualifier(q.name.clone()), q.pos))?;
            vec![s]
        }
        None => scope.iter().collect(),
    };
    let mut found = candidates
        .iter()
        .filter_map(|s| s.schema.column_id(&c.column.name).map(|col| (s, col)));
    let Some((s, col)) = found.next() else {
        let scope_desc = candidates
            .iter()
            .map(|s| format!("table `{}`", s.schema.name))
            .collect::<Vec<_>>()
            .join(" or ");
        return Err(at(
            CheckErrorKind::UnknownColumn {
                column: c.column.name.clone(),
                scope: scope_desc,
            },
            c.column.pos,
        ));
    };
    if found.next().is_some() {
        return Err(at(
            CheckErrorKind::AmbiguousColumn(c.column.name.clone()),
            c.column.pos,
        ));
    }
    let _ = s.id;
    Ok((
        s.side,
        col,
        s.schema.column(col).ty.clone(),
        format!("{}.{}", s.schema.name, s.schema.column(col).name),
    ))
}

/// Types a predicate; recursion depth is bounded by the parser's parenthesis limit.
fn typed_pred(e: &Expr, scope: &mut Vec<Scoped<'_>>, caller: Caller) -> Result<Pred, CheckError> {
    Ok(match e {
        Expr::Bool(b) => Pred::Const(*b),
        // Plain loops, not iterator adapters: each nesting level then costs one frame,
        // which keeps the deepest accepted nesting well inside a small thread stack.
        Expr::And(v) | Expr::Or(v) => {
            let mut children = Vec::with_capacity(v.len());
            for e in v {
                children.push(typed_pred(e, scope, caller)?);
            }
            if matches!(e, Expr::And(_)) {
                Pred::And(children)
            } else {
                Pred::Or(children)
            }
        }
        Expr::Cmp { lhs, op, rhs, pos } => {
            let (col, op, other) = match (lhs, rhs) {
                (Operand::Column(c), o) if !matches!(o, Operand::Column(_)) => (c, *op, o),
                (o, Operand::Column(c)) if !matches!(o, Operand::Column(_)) => (c, op.flipped(), o),
                (Operand::Column(_), Operand::Column(_)) => {
                    return Err(at(CheckErrorKind::ColumnComparison, *pos));
                }
                _ => return Err(at(CheckErrorKind::NoColumn, *pos)),
            };
            let (side, col_id, ty, col_name) = column(col, scope)?;
            let value = match other {
                Operand::Param(p) if p.name == "sender" => {
                    if ty.non_null() != &AlgebraicType::Identity {
                        return Err(at(
                            CheckErrorKind::TypeMismatch {
                                column: col_name,
                                ty,
                                literal: "`:sender` (an identity)".into(),
                            },
                            p.pos,
                        ));
                    }
                    Value::from(caller.identity)
                }
                Operand::Param(p) => {
                    return Err(at(CheckErrorKind::UnknownParam(p.name.clone()), p.pos));
                }
                Operand::Literal(l, lpos) => {
                    typed_literal(l, &ty, &col_name).map_err(|k| at(k, *lpos))?
                }
                Operand::Column(_) => return Err(at(CheckErrorKind::ColumnComparison, *pos)),
            };
            Pred::Cmp {
                side,
                col: col_id,
                op,
                value,
            }
        }
    })
}

fn describe(l: &Literal) -> String {
    match l {
        Literal::Int(s) => format!("the integer {s}"),
        Literal::Float(s) => format!("the float {s}"),
        Literal::Str(s) => format!("the string '{s}'"),
        Literal::Hex(b) => format!("a {}-byte hex literal", b.len()),
        Literal::Bool(b) => format!("the boolean {b}"),
        Literal::Null => "NULL".into(),
    }
}

/// Types literal `l` as a value of column type `ty`.
pub fn typed_literal(
    l: &Literal,
    ty: &AlgebraicType,
    column: &str,
) -> Result<Value, Box<CheckErrorKind>> {
    use AlgebraicType as T;
    let mismatch = || {
        Box::new(CheckErrorKind::TypeMismatch {
            column: column.into(),
            ty: ty.clone(),
            literal: describe(l),
        })
    };
    let range = |lit: &str| {
        Box::new(CheckErrorKind::OutOfRange {
            column: column.into(),
            ty: ty.clone(),
            literal: lit.into(),
        })
    };
    if let Literal::Null = l {
        return Ok(Value::Null);
    }
    let inner = ty.non_null();
    Ok(match (l, inner) {
        (Literal::Bool(b), T::Bool) => Value::Bool(*b),
        (Literal::Int(s), t) if t.is_integer() || matches!(t, T::Timestamp) => {
            let n: i128 = match s.parse() {
                Ok(n) => n,
                // Beyond i128: only u128 can still hold it.
                Err(_) => match (t, s.parse::<u128>()) {
                    (T::U128, Ok(n)) => return Ok(Value::U128(n)),
                    _ => return Err(range(s)),
                },
            };
            let v = match t {
                T::U8 => u8::try_from(n).ok().map(Value::U8),
                T::U16 => u16::try_from(n).ok().map(Value::U16),
                T::U32 => u32::try_from(n).ok().map(Value::U32),
                T::U64 => u64::try_from(n).ok().map(Value::U64),
                T::U128 => u128::try_from(n).ok().map(Value::U128),
                T::I8 => i8::try_from(n).ok().map(Value::I8),
                T::I16 => i16::try_from(n).ok().map(Value::I16),
                T::I32 => i32::try_from(n).ok().map(Value::I32),
                T::I64 => i64::try_from(n).ok().map(Value::I64),
                T::I128 => Some(Value::I128(n)),
                T::Timestamp => i64::try_from(n)
                    .ok()
                    .map(|v| Value::Timestamp(tidings_engine::Timestamp(v))),
                _ => None,
            };
            v.ok_or_else(|| range(s))?
        }
        (Literal::Int(s) | Literal::Float(s), T::F32 | T::F64) => {
            let f: f64 = s.parse().map_err(|_| range(s))?;
            if !f.is_finite() {
                return Err(range(s));
            }
            if matches!(inner, T::F32) {
                // Parse straight to f32: narrowing the f64 rounds twice, and for a few
                // literals (`7.038531e-26`, the shortest text of an f32) that lands on the
                // neighbouring f32, so the literal would not equal the value it names.
                let g: f32 = s.parse().map_err(|_| range(s))?;
                if !g.is_finite() {
                    return Err(range(s));
                }
                Value::F32(if g == 0.0 { 0.0 } else { g })
            } else {
                Value::F64(if f == 0.0 { 0.0 } else { f })
            }
        }
        (Literal::Str(s), T::String) => Value::String(s.as_str().into()),
        (Literal::Str(s), T::Enum(e)) => {
            let tag = e.variants.iter().position(|v| **v == **s).ok_or_else(|| {
                CheckErrorKind::TypeMismatch {
                    column: column.into(),
                    ty: ty.clone(),
                    literal: format!(
                        "'{s}', which is not one of its variants ({})",
                        e.variants.join(", ")
                    ),
                }
            })?;
            Value::Enum(tag as u8)
        }
        (Literal::Int(s), T::Enum(e)) => {
            let tag: u8 = s.parse().map_err(|_| range(s))?;
            if tag as usize >= e.variants.len() {
                return Err(range(s));
            }
            Value::Enum(tag)
        }
        (Literal::Hex(b), T::Bytes) => Value::Bytes(b.clone().into_boxed_slice()),
        (Literal::Hex(b), T::Identity) => {
            let arr: [u8; 32] = b.as_slice().try_into().map_err(|_| mismatch())?;
            Value::from(Identity(arr))
        }
        (Literal::Str(s), T::Identity) => {
            let bytes = s.strip_prefix("0x").unwrap_or(s);
            let parsed: Option<Vec<u8>> = (0..bytes.len())
                .step_by(2)
                .map(|i| {
                    bytes
                        .get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            let arr: [u8; 32] = parsed
                .and_then(|v| v.try_into().ok())
                .ok_or_else(mismatch)?;
            Value::from(Identity(arr))
        }
        _ => return Err(mismatch()),
    })
}

/// SQL comparison of a column value with a constant: unknown (false) with NULL.
pub fn compare(v: &Value, op: CmpOp, c: &Value) -> bool {
    compare_ref(ValueRef::from(v), op, c)
}

/// [`compare`] for a value read in place from a stored row.
#[inline(always)]
pub fn compare_ref(v: ValueRef<'_>, op: CmpOp, c: &Value) -> bool {
    // Integer columns against literals of their own type (the checker types literals
    // by column) compare directly; everything else takes the general SQL comparison.
    let ord = match (v, c) {
        (ValueRef::U64(a), Value::U64(b)) => a.cmp(b),
        (ValueRef::I64(a), Value::I64(b)) => a.cmp(b),
        (ValueRef::U32(a), Value::U32(b)) => a.cmp(b),
        (ValueRef::I32(a), Value::I32(b)) => a.cmp(b),
        (ValueRef::U16(a), Value::U16(b)) => a.cmp(b),
        (ValueRef::I16(a), Value::I16(b)) => a.cmp(b),
        (ValueRef::U8(a), Value::U8(b)) => a.cmp(b),
        (ValueRef::I8(a), Value::I8(b)) => a.cmp(b),
        (ValueRef::Enum(a), Value::Enum(b)) => a.cmp(b),
        (v, c) => match v.sql_cmp(&ValueRef::from(c)) {
            Some(ord) => ord,
            None => return false,
        },
    };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}
