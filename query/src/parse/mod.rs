//! Stage 1: text to syntax tree.
//!
//! A hand-written parser for exactly the subscription subset, so every construct outside
//! it is named in its error with a position. The predicate is parsed by operator
//! precedence with explicit stacks (no recursion per operator), and `AND`/`OR` chains are
//! flattened into n-ary nodes as they are built; only parentheses nest the tree, and their
//! depth is capped, so no input can overflow the stack.

pub mod ast;
pub mod dml;
pub mod error;
pub mod lexer;

use ast::{CmpOp, ColumnRef, Expr, From, Ident, Literal, Operand, Projection, Select, TableRef};
use error::{ParseError, ParseErrorKind};
use lexer::{Pos, Tok};

/// The longest query accepted by default, in bytes.
pub const QUERY_BYTES_MAX: usize = 50_000;

/// The deepest parenthesis nesting accepted.
pub const PAREN_DEPTH_MAX: usize = 32;

/// Words that start a construct outside the subset, with the name errors use.
const UNSUPPORTED_WORDS: &[(&str, &str)] = &[
    ("ORDER", "ORDER BY"),
    ("GROUP", "GROUP BY"),
    ("HAVING", "HAVING"),
    ("LIMIT", "LIMIT"),
    ("OFFSET", "OFFSET"),
    ("UNION", "UNION"),
    ("INTERSECT", "INTERSECT"),
    ("EXCEPT", "EXCEPT"),
    ("DISTINCT", "DISTINCT"),
    ("NOT", "NOT"),
    ("IN", "IN"),
    ("LIKE", "LIKE"),
    ("BETWEEN", "BETWEEN"),
    ("IS", "IS"),
    ("EXISTS", "EXISTS"),
    ("CASE", "CASE"),
    ("LEFT", "LEFT JOIN"),
    ("RIGHT", "RIGHT JOIN"),
    ("FULL", "FULL JOIN"),
    ("OUTER", "OUTER JOIN"),
    ("CROSS", "CROSS JOIN"),
    ("NATURAL", "NATURAL JOIN"),
];

/// Words that can never be identifiers here.
const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "JOIN", "INNER", "ON", "AS", "AND", "OR", "TRUE", "FALSE", "NULL",
];

/// Parses one subscription statement, with the default length limit.
pub fn parse(text: &str) -> Result<Select, ParseError> {
    parse_with_limit(text, QUERY_BYTES_MAX)
}

/// Parses one subscription statement no longer than `bytes_max`.
pub fn parse_with_limit(text: &str, bytes_max: usize) -> Result<Select, ParseError> {
    if text.len() > bytes_max {
        return Err(ParseError {
            kind: ParseErrorKind::TooLong {
                len: text.len(),
                max: bytes_max,
            },
            pos: Pos { line: 1, column: 1 },
        });
    }
    let toks = lexer::tokenize(text)?;
    let mut p = Parser { toks, at: 0 };
    let select = p.select()?;
    if p.peek() == &Tok::Semicolon {
        p.at += 1;
    }
    match p.peek() {
        Tok::Eof => Ok(select),
        _ => Err(p.unexpected("end of query")),
    }
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    at: usize,
}

/// An operator on the precedence stack.
#[derive(Clone, Copy, PartialEq)]
enum StackOp {
    And,
    Or,
    Open(Pos),
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].0
    }

    fn pos(&self) -> Pos {
        self.toks[self.at.min(self.toks.len() - 1)].1
    }

    fn next(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.at.min(self.toks.len() - 1)].clone();
        if self.at < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn err(&self, kind: ParseErrorKind) -> ParseError {
        ParseError {
            kind,
            pos: self.pos(),
        }
    }

    fn unexpected(&self, expected: &'static str) -> ParseError {
        if let Some(e) = self.unsupported_here() {
            return e;
        }
        self.err(ParseErrorKind::Unexpected {
            expected,
            found: self.peek().describe(),
        })
    }

    /// A named error when the next token starts a construct outside the subset.
    fn unsupported_here(&self) -> Option<ParseError> {
        let Tok::Word(w) = self.peek() else {
            return None;
        };
        let upper = w.to_ascii_uppercase();
        let name = match upper.as_str() {
            "INSERT" | "UPDATE" | "DELETE" | "CREATE" | "DROP" | "ALTER" => {
                "data modification (INSERT, UPDATE, DELETE) and DDL"
            }
            "COUNT" | "SUM" | "MIN" | "MAX" | "AVG" => "an aggregate function",
            _ => UNSUPPORTED_WORDS.iter().find(|(k, _)| *k == upper)?.1,
        };
        Some(self.err(ParseErrorKind::Unsupported(name)))
    }

    fn expect_kw(&mut self, kw: &'static str) -> Result<Pos, ParseError> {
        if self.peek().is_kw(kw) {
            Ok(self.next().1)
        } else {
            Err(self.unexpected(kw))
        }
    }

    fn ident(&mut self, expected: &'static str) -> Result<Ident, ParseError> {
        match self.peek().clone() {
            Tok::Word(w) if !RESERVED.iter().any(|r| w.eq_ignore_ascii_case(r)) => {
                if let Some(e) = self.unsupported_here() {
                    return Err(e);
                }
                let pos = self.next().1;
                Ok(Ident { name: w, pos })
            }
            Tok::Quoted(w) => {
                let pos = self.next().1;
                Ok(Ident { name: w, pos })
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    fn select(&mut self) -> Result<Select, ParseError> {
        if let Some(e) = self.unsupported_here() {
            return Err(e);
        }
        if self.peek().is_kw("WITH") {
            return Err(self.err(ParseErrorKind::Unsupported(
                "WITH (common table expressions)",
            )));
        }
        self.expect_kw("SELECT")?;
        let projection = self.projection()?;
        self.expect_kw("FROM")?;
        let from = self.from()?;
        let filter = if self.peek().is_kw("WHERE") {
            self.next();
            Some(self.expr()?)
        } else {
            None
        };
        if let Some(e) = self.unsupported_here() {
            return Err(e);
        }
        Ok(Select {
            projection,
            from,
            filter,
        })
    }

    fn projection(&mut self) -> Result<Projection, ParseError> {
        if let Some(e) = self.unsupported_here() {
            return Err(e);
        }
        let projection = match self.peek().clone() {
            Tok::Star => Projection::Star(self.next().1),
            Tok::Word(_) | Tok::Quoted(_) => {
                let start = self.at;
                let table = self.ident("`*` or `table.*`")?;
                if self.peek() == &Tok::LParen {
                    self.at = start;
                    return Err(self.err(ParseErrorKind::Unsupported("a function call")));
                }
                if self.peek() == &Tok::Dot
                    && self.toks.get(self.at + 1).map(|t| &t.0) == Some(&Tok::Star)
                {
                    self.at += 2;
                    Projection::TableStar(table)
                } else {
                    self.at = start;
                    return Err(self.err(ParseErrorKind::Unsupported(
                        "a column projection (select `*` or `table.*`)",
                    )));
                }
            }
            _ => return Err(self.unexpected("`*` or `table.*`")),
        };
        if self.peek() == &Tok::Comma {
            return Err(self.err(ParseErrorKind::Unsupported("a projection list")));
        }
        Ok(projection)
    }

    fn table_ref(&mut self) -> Result<TableRef, ParseError> {
        if self.peek() == &Tok::LParen {
            return Err(self.err(ParseErrorKind::Unsupported("a subquery")));
        }
        let table = self.ident("a table name")?;
        let alias = if self.peek().is_kw("AS") {
            self.next();
            Some(self.ident("an alias")?)
        } else if matches!(self.peek(), Tok::Word(_) | Tok::Quoted(_))
            && self.unsupported_here().is_none()
            && !["WHERE", "JOIN", "INNER", "ON"]
                .iter()
                .any(|k| self.peek().is_kw(k))
        {
            Some(self.ident("an alias")?)
        } else {
            None
        };
        Ok(TableRef { table, alias })
    }

    fn from(&mut self) -> Result<From, ParseError> {
        if self.peek() == &Tok::Star {
            return Ok(From::AllTables(self.next().1));
        }
        let left = self.table_ref()?;
        if self.peek() == &Tok::Comma {
            return Err(self.err(ParseErrorKind::Unsupported("a comma join (use JOIN .. ON)")));
        }
        if self.peek().is_kw("INNER") {
            self.next();
            if !self.peek().is_kw("JOIN") {
                return Err(self.unexpected("JOIN"));
            }
        }
        if !self.peek().is_kw("JOIN") {
            return Ok(From::Table(left));
        }
        self.next();
        let right = self.table_ref()?;
        self.expect_kw("ON")?;
        let on_left = self.column_ref()?;
        if self.peek() != &Tok::Eq {
            return Err(self.err(ParseErrorKind::Unsupported(
                "a join condition other than one equality",
            )));
        }
        self.next();
        let on_right = self.column_ref()?;
        if self.peek().is_kw("AND") || self.peek().is_kw("OR") {
            return Err(self.err(ParseErrorKind::Unsupported(
                "a join condition other than one equality",
            )));
        }
        if self.peek().is_kw("JOIN") || self.peek().is_kw("INNER") {
            return Err(self.err(ParseErrorKind::Unsupported(
                "a join of more than two tables",
            )));
        }
        Ok(From::Join {
            left,
            right,
            on_left,
            on_right,
        })
    }

    fn column_ref(&mut self) -> Result<ColumnRef, ParseError> {
        let first = self.ident("a column")?;
        if self.peek() == &Tok::Dot {
            self.next();
            let column = self.ident("a column")?;
            Ok(ColumnRef {
                qualifier: Some(first),
                column,
            })
        } else if self.peek() == &Tok::LParen {
            Err(ParseError {
                kind: ParseErrorKind::Unsupported("a function call"),
                pos: first.pos,
            })
        } else {
            Ok(ColumnRef {
                qualifier: None,
                column: first,
            })
        }
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        let pos = self.pos();
        let lit = |l| Ok(Operand::Literal(l, pos));
        match self.peek().clone() {
            Tok::Int(s) => {
                self.next();
                lit(Literal::Int(s))
            }
            Tok::Float(s) => {
                self.next();
                lit(Literal::Float(s))
            }
            Tok::Minus => {
                self.next();
                match self.next().0 {
                    Tok::Int(s) => lit(Literal::Int(format!("-{s}"))),
                    Tok::Float(s) => lit(Literal::Float(format!("-{s}"))),
                    _ => Err(ParseError {
                        kind: ParseErrorKind::Unsupported("arithmetic"),
                        pos,
                    }),
                }
            }
            Tok::Str(s) => {
                self.next();
                lit(Literal::Str(s))
            }
            Tok::Hex(b) => {
                self.next();
                lit(Literal::Hex(b))
            }
            Tok::Param(name) => {
                self.next();
                Ok(Operand::Param(Ident { name, pos }))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") => {
                self.next();
                lit(Literal::Bool(w.eq_ignore_ascii_case("TRUE")))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("NULL") => {
                self.next();
                lit(Literal::Null)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("SELECT") => {
                Err(self.err(ParseErrorKind::Unsupported("a subquery")))
            }
            Tok::Word(_) | Tok::Quoted(_) => Ok(Operand::Column(self.column_ref()?)),
            Tok::LParen => Err(self.err(ParseErrorKind::Unsupported("a parenthesized operand"))),
            _ => Err(self.unexpected("a column, a literal or :sender")),
        }
    }

    /// One comparison, or a lone `TRUE`/`FALSE`.
    fn atom(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        let lhs = self.operand()?;
        let op = match self.peek() {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ => {
                if let Operand::Literal(Literal::Bool(b), _) = lhs {
                    return Ok(Expr::Bool(b));
                }
                return Err(self.unexpected("a comparison operator"));
            }
        };
        self.next();
        if self.peek() == &Tok::LParen
            && self
                .toks
                .get(self.at + 1)
                .is_some_and(|t| t.0.is_kw("SELECT"))
        {
            return Err(self.err(ParseErrorKind::Unsupported("a subquery")));
        }
        let rhs = self.operand()?;
        if matches!(self.peek(), Tok::Minus | Tok::Star)
            || matches!(self.peek(), Tok::Word(w) if w == "+")
        {
            return Err(self.err(ParseErrorKind::Unsupported("arithmetic")));
        }
        Ok(Expr::Cmp { lhs, op, rhs, pos })
    }

    /// The predicate: operator precedence with explicit stacks.
    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut operands: Vec<Expr> = Vec::new();
        let mut ops: Vec<StackOp> = Vec::new();
        let mut depth = 0usize;
        loop {
            while self.peek() == &Tok::LParen {
                if self
                    .toks
                    .get(self.at + 1)
                    .is_some_and(|t| t.0.is_kw("SELECT"))
                {
                    return Err(self.err(ParseErrorKind::Unsupported("a subquery")));
                }
                depth += 1;
                if depth > PAREN_DEPTH_MAX {
                    return Err(self.err(ParseErrorKind::TooDeep {
                        max: PAREN_DEPTH_MAX,
                    }));
                }
                ops.push(StackOp::Open(self.next().1));
            }
            operands.push(self.atom()?);
            while self.peek() == &Tok::RParen {
                loop {
                    match ops.pop() {
                        Some(StackOp::Open(_)) => break,
                        Some(op) => reduce(&mut operands, op),
                        None => return Err(self.err(ParseErrorKind::Unmatched)),
                    }
                }
                depth -= 1;
                self.next();
            }
            let op = if self.peek().is_kw("AND") {
                StackOp::And
            } else if self.peek().is_kw("OR") {
                StackOp::Or
            } else {
                break;
            };
            self.next();
            // AND binds tighter than OR: reduce pending operators of equal or higher rank.
            while let Some(&top) = ops.last() {
                let reduce_top = match (top, op) {
                    (StackOp::Open(_), _) => false,
                    (StackOp::And, _) => true,
                    (StackOp::Or, StackOp::Or) => true,
                    (StackOp::Or, _) => false,
                };
                if !reduce_top {
                    break;
                }
                ops.pop();
                reduce(&mut operands, top);
            }
            ops.push(op);
        }
        while let Some(op) = ops.pop() {
            if let StackOp::Open(pos) = op {
                return Err(ParseError {
                    kind: ParseErrorKind::Unclosed,
                    pos,
                });
            }
            reduce(&mut operands, op);
        }
        match (operands.pop(), operands.is_empty()) {
            (Some(e), true) => Ok(e),
            _ => Err(self.unexpected("a predicate")),
        }
    }
}

/// Combines the top two operands with `op`, flattening same-kind chains.
fn reduce(operands: &mut Vec<Expr>, op: StackOp) {
    let (Some(b), Some(a)) = (operands.pop(), operands.pop()) else {
        return;
    };
    let combined = match op {
        StackOp::And => match a {
            Expr::And(mut v) => {
                push_flat(&mut v, b, true);
                Expr::And(v)
            }
            a => {
                let mut v = vec![a];
                push_flat(&mut v, b, true);
                Expr::And(v)
            }
        },
        StackOp::Or => match a {
            Expr::Or(mut v) => {
                push_flat(&mut v, b, false);
                Expr::Or(v)
            }
            a => {
                let mut v = vec![a];
                push_flat(&mut v, b, false);
                Expr::Or(v)
            }
        },
        StackOp::Open(_) => return,
    };
    operands.push(combined);
}

fn push_flat(v: &mut Vec<Expr>, e: Expr, and: bool) {
    match (e, and) {
        (Expr::And(inner), true) | (Expr::Or(inner), false) => v.extend(inner),
        (e, _) => v.push(e),
    }
}

#[cfg(test)]
mod tests;
