//! The syntax tree of one subscription statement.

use super::lexer::Pos;

/// An identifier and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name, exactly as written (identifiers match exactly).
    pub name: String,
    /// Where it starts.
    pub pos: Pos,
}

/// `SELECT <projection> FROM <from> [WHERE <filter>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    /// `*` or `t.*`.
    pub projection: Projection,
    /// The source.
    pub from: From,
    /// The predicate, if any.
    pub filter: Option<Expr>,
}

/// What the statement returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Projection {
    /// `*`
    Star(Pos),
    /// `t.*`
    TableStar(Ident),
}

/// A table and its optional alias.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRef {
    /// The table name.
    pub table: Ident,
    /// `AS alias`.
    pub alias: Option<Ident>,
}

impl TableRef {
    /// The name other parts of the query use for it: the alias, else the table.
    pub fn visible_name(&self) -> &Ident {
        self.alias.as_ref().unwrap_or(&self.table)
    }
}

/// The `FROM` clause.
#[derive(Clone, Debug, PartialEq)]
pub enum From {
    /// `FROM *`: every readable table.
    AllTables(Pos),
    /// One table.
    Table(TableRef),
    /// `a JOIN b ON a.x = b.y`.
    Join {
        /// The left table.
        left: TableRef,
        /// The right table.
        right: TableRef,
        /// The left operand of the `ON` equality.
        on_left: ColumnRef,
        /// The right operand of the `ON` equality.
        on_right: ColumnRef,
    },
}

/// `[qualifier.]column`.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnRef {
    /// The table or alias, if written.
    pub qualifier: Option<Ident>,
    /// The column.
    pub column: Ident,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`, `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator with its operands swapped (`1 < x` is `x > 1`).
    pub fn flipped(self) -> Self {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }

    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A literal as written; typed against a column by the checker.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// Integer digits, with the sign applied.
    Int(String),
    /// Float text, with the sign applied.
    Float(String),
    /// A string.
    Str(String),
    /// Hex bytes.
    Hex(Vec<u8>),
    /// `TRUE` or `FALSE`.
    Bool(bool),
    /// `NULL`
    Null,
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A column.
    Column(ColumnRef),
    /// A literal.
    Literal(Literal, Pos),
    /// A `:name` parameter (only `:sender` exists).
    Param(Ident),
}

/// A predicate. `And`/`Or` are n-ary and never directly contain their own kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// All must hold.
    And(Vec<Expr>),
    /// Any must hold.
    Or(Vec<Expr>),
    /// A comparison.
    Cmp {
        /// Left operand.
        lhs: Operand,
        /// Operator.
        op: CmpOp,
        /// Right operand.
        rhs: Operand,
        /// Where the comparison starts.
        pos: Pos,
    },
    /// `TRUE` / `FALSE`.
    Bool(bool),
}

/// A data-modification statement (the owner's `/sql`; never a subscription).
#[derive(Clone, Debug, PartialEq)]
pub enum Dml {
    /// `INSERT INTO t [(c, ..)] VALUES (v, ..), ..`
    Insert {
        /// The table.
        table: Ident,
        /// The listed columns; `None` means every column in schema order.
        columns: Option<Vec<Ident>>,
        /// One literal list per row, each with where the row starts.
        rows: Vec<(Vec<(Literal, Pos)>, Pos)>,
    },
    /// `UPDATE t SET c = v, .. [WHERE ..]`
    Update {
        /// The table.
        table: Ident,
        /// `column = literal` pairs.
        assignments: Vec<(Ident, Literal, Pos)>,
        /// The predicate, if any.
        filter: Option<Expr>,
    },
    /// `DELETE FROM t [WHERE ..]`
    Delete {
        /// The table.
        table: Ident,
        /// The predicate, if any.
        filter: Option<Expr>,
    },
}
