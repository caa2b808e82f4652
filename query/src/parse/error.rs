//! Parse errors: one variant per rejected construct, each with a position.

use thiserror::Error;

use super::lexer::Pos;

/// A query that does not parse, and where.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{kind} ({pos})")]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// Where.
    pub pos: Pos,
}

/// What was wrong with the text.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParseErrorKind {
    /// A construct outside the subscription subset.
    #[error("{0} is not supported in subscription queries")]
    Unsupported(&'static str),
    /// A construct outside what `INSERT`, `UPDATE` and `DELETE` accept.
    #[error("{0} is not supported in INSERT, UPDATE or DELETE")]
    UnsupportedInDml(&'static str),
    /// A token where another was expected.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        /// What the grammar wanted.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// The text is longer than the limit.
    #[error("query is {len} bytes, more than the limit of {max} bytes")]
    TooLong {
        /// Bytes in the query.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Parentheses nest deeper than the limit.
    #[error("parentheses nest deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A `(` without its `)`.
    #[error("unclosed `(`")]
    Unclosed,
    /// A `)` without its `(`.
    #[error("`)` without a matching `(`")]
    Unmatched,
    /// A string literal without its closing quote.
    #[error("string literal is not terminated")]
    UnterminatedString,
    /// A quoted identifier without its closing quote.
    #[error("quoted identifier is not terminated")]
    UnterminatedIdentifier,
    /// A malformed number.
    #[error("malformed number")]
    BadNumber,
    /// A malformed hex literal.
    #[error("malformed hex literal: it needs an even number of hex digits")]
    BadHex,
    /// A character that starts no token.
    #[error("unexpected character `{0}`")]
    UnexpectedChar(char),
}
