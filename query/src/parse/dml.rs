//! `INSERT`, `UPDATE` and `DELETE`: the statements the owner may run over `/sql`.
//!
//! Separate from subscriptions on purpose: [`super::parse`] keeps rejecting them by name,
//! so a subscription can never modify data. Predicates reuse the subscription grammar.

use super::ast::{Dml, Literal, Operand};
use super::error::{ParseError, ParseErrorKind};
use super::lexer::{self, Pos, Tok};
use super::{Parser, QUERY_BYTES_MAX};

/// Whether `text` starts like a data-modification statement (so callers can route it).
pub fn is_dml(text: &str) -> bool {
    let first = text
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    ["INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k))
}

/// Parses one `INSERT`, `UPDATE` or `DELETE`.
pub fn parse_dml(text: &str) -> Result<Dml, ParseError> {
    parse_dml_inner(text).map_err(|e| match e.kind {
        // The shared grammar names constructs "not supported in subscription queries".
        ParseErrorKind::Unsupported(what) => ParseError {
            kind: ParseErrorKind::UnsupportedInDml(what),
            pos: e.pos,
        },
        _ => e,
    })
}

fn parse_dml_inner(text: &str) -> Result<Dml, ParseError> {
    if text.len() > QUERY_BYTES_MAX {
        return Err(ParseError {
            kind: ParseErrorKind::TooLong {
                len: text.len(),
                max: QUERY_BYTES_MAX,
            },
            pos: Pos { line: 1, column: 1 },
        });
    }
    let toks = lexer::tokenize(text)?;
    let mut p = Parser { toks, at: 0 };
    let dml = if p.peek().is_kw("INSERT") {
        p.next();
        p.insert()?
    } else if p.peek().is_kw("UPDATE") {
        p.next();
        p.update()?
    } else if p.peek().is_kw("DELETE") {
        p.next();
        p.expect_kw("FROM")?;
        let table = p.ident("a table name")?;
        let filter = p.where_clause()?;
        Dml::Delete { table, filter }
    } else {
        return Err(p.err(ParseErrorKind::Unexpected {
            expected: "INSERT, UPDATE or DELETE",
            found: p.peek().describe(),
        }));
    };
    if p.peek() == &Tok::Semicolon {
        p.at += 1;
    }
    match p.peek() {
        Tok::Eof => Ok(dml),
        _ => Err(p.unexpected("end of statement")),
    }
}

impl Parser {
    fn insert(&mut self) -> Result<Dml, ParseError> {
        self.expect_kw("INTO")?;
        let table = self.ident("a table name")?;
        let columns = if self.peek() == &Tok::LParen {
            self.next();
            let mut cols = vec![self.ident("a column")?];
            while self.peek() == &Tok::Comma {
                self.next();
                cols.push(self.ident("a column")?);
            }
            self.expect(Tok::RParen, "`)`")?;
            Some(cols)
        } else {
            None
        };
        if self.peek().is_kw("SELECT") {
            return Err(self.err(ParseErrorKind::Unsupported("INSERT .. SELECT")));
        }
        self.expect_kw("VALUES")?;
        let mut rows = Vec::new();
        loop {
            let start = self.expect(Tok::LParen, "`(` starting a row of values")?;
            let mut values = vec![self.literal()?];
            while self.peek() == &Tok::Comma {
                self.next();
                values.push(self.literal()?);
            }
            self.expect(Tok::RParen, "`)` or `,`")?;
            rows.push((values, start));
            if self.peek() != &Tok::Comma {
                break;
            }
            self.next();
        }
        Ok(Dml::Insert {
            table,
            columns,
            rows,
        })
    }

    fn update(&mut self) -> Result<Dml, ParseError> {
        let table = self.ident("a table name")?;
        self.expect_kw("SET")?;
        let mut assignments = Vec::new();
        loop {
            let column = self.ident("a column")?;
            self.expect(Tok::Eq, "`=`")?;
            let (value, pos) = self.literal()?;
            assignments.push((column, value, pos));
            if self.peek() != &Tok::Comma {
                break;
            }
            self.next();
        }
        let filter = self.where_clause()?;
        Ok(Dml::Update {
            table,
            assignments,
            filter,
        })
    }

    fn where_clause(&mut self) -> Result<Option<super::ast::Expr>, ParseError> {
        if self.peek().is_kw("WHERE") {
            self.next();
            Ok(Some(self.expr()?))
        } else {
            Ok(None)
        }
    }

    /// A literal value; columns, parameters and expressions are not values here.
    fn literal(&mut self) -> Result<(Literal, Pos), ParseError> {
        let pos = self.pos();
        match self.operand()? {
            Operand::Literal(l, pos) => {
                if matches!(self.peek(), Tok::Minus | Tok::Star) {
                    return Err(self.err(ParseErrorKind::Unsupported("arithmetic")));
                }
                Ok((l, pos))
            }
            Operand::Column(_) => Err(ParseError {
                kind: ParseErrorKind::Unsupported("a column reference as a value"),
                pos,
            }),
            Operand::Param(_) => Err(ParseError {
                kind: ParseErrorKind::Unsupported("a parameter as a value"),
                pos,
            }),
        }
    }

    fn expect(&mut self, tok: Tok, expected: &'static str) -> Result<Pos, ParseError> {
        if self.peek() == &tok {
            Ok(self.next().1)
        } else {
            Err(self.unexpected(expected))
        }
    }
}
