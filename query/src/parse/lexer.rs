//! Tokens with their positions.

use std::fmt;

use super::error::{ParseError, ParseErrorKind};

/// A position in the query text: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A bare identifier or keyword, as written.
    Word(String),
    /// A `"quoted"` identifier (never a keyword).
    Quoted(String),
    /// An integer literal's digits.
    Int(String),
    /// A float literal's text.
    Float(String),
    /// A `'string'` literal, unescaped.
    Str(String),
    /// A `X'..'` or `0x..` literal.
    Hex(Vec<u8>),
    /// A `:name` parameter.
    Param(String),
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `*`
    Star,
    /// `-`
    Minus,
    /// `;`
    Semicolon,
    /// End of input.
    Eof,
}

impl Tok {
    /// Whether this is the keyword `kw` (case-insensitive; quoted identifiers never are).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Quoted(w) => format!("`\"{w}\"`"),
            Tok::Int(s) | Tok::Float(s) => format!("number `{s}`"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Hex(_) => "hex literal".into(),
            Tok::Param(p) => format!("parameter `:{p}`"),
            Tok::Eq => "`=`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Star => "`*`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Semicolon => "`;`".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// Splits `text` into tokens, each with the position where it starts.
pub fn tokenize(text: &str) -> Result<Vec<(Tok, Pos)>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    let err = |kind, line, column| ParseError {
        kind,
        pos: Pos { line, column },
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, column: col };
        let start = i;
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let tok = match c {
            '=' => {
                i += 1;
                Tok::Eq
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Tok::Ne
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    i += 2;
                    Tok::Le
                }
                Some('>') => {
                    i += 2;
                    Tok::Ne
                }
                _ => {
                    i += 1;
                    Tok::Lt
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 2;
                    Tok::Ge
                } else {
                    i += 1;
                    Tok::Gt
                }
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '.' if !chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                i += 1;
                Tok::Dot
            }
            '*' => {
                i += 1;
                Tok::Star
            }
            '-' => {
                i += 1;
                Tok::Minus
            }
            ';' => {
                i += 1;
                Tok::Semicolon
            }
            '\'' => {
                let (s, used, lines) = quoted(&chars[i..], '\'')
                    .ok_or_else(|| err(ParseErrorKind::UnterminatedString, line, col))?;
                i += used;
                if lines > 0 {
                    line += lines;
                    col = 1;
                }
                Tok::Str(s)
            }
            '"' => {
                let (s, used, _) = quoted(&chars[i..], '"')
                    .ok_or_else(|| err(ParseErrorKind::UnterminatedIdentifier, line, col))?;
                i += used;
                Tok::Quoted(s)
            }
            ':' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if j == i + 1 {
                    return Err(err(ParseErrorKind::UnexpectedChar(':'), line, col));
                }
                let name: String = chars[i + 1..j].iter().collect();
                i = j;
                Tok::Param(name)
            }
            'x' | 'X' if chars.get(i + 1) == Some(&'\'') => {
                let (s, used, _) = quoted(&chars[i + 1..], '\'')
                    .ok_or_else(|| err(ParseErrorKind::UnterminatedString, line, col))?;
                i += 1 + used;
                Tok::Hex(hex(&s).ok_or_else(|| err(ParseErrorKind::BadHex, line, col))?)
            }
            '0' if matches!(chars.get(i + 1), Some('x' | 'X')) => {
                let mut j = i + 2;
                while j < chars.len() && chars[j].is_ascii_alphanumeric() {
                    j += 1;
                }
                let s: String = chars[i + 2..j].iter().collect();
                i = j;
                Tok::Hex(hex(&s).ok_or_else(|| err(ParseErrorKind::BadHex, line, col))?)
            }
            c if c.is_ascii_digit() || c == '.' => {
                let mut j = i;
                let mut float = false;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '.' {
                    float = true;
                    j += 1;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                }
                if j < chars.len() && matches!(chars[j], 'e' | 'E') {
                    let mut k = j + 1;
                    if k < chars.len() && matches!(chars[k], '+' | '-') {
                        k += 1;
                    }
                    if k < chars.len() && chars[k].is_ascii_digit() {
                        float = true;
                        j = k;
                        while j < chars.len() && chars[j].is_ascii_digit() {
                            j += 1;
                        }
                    }
                }
                if j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    return Err(err(ParseErrorKind::BadNumber, line, col));
                }
                let s: String = chars[i..j].iter().collect();
                i = j;
                if float { Tok::Float(s) } else { Tok::Int(s) }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let s: String = chars[i..j].iter().collect();
                i = j;
                Tok::Word(s)
            }
            other => return Err(err(ParseErrorKind::UnexpectedChar(other), line, col)),
        };
        if !matches!(tok, Tok::Str(_)) || line == pos.line {
            col += (i - start) as u32;
        }
        out.push((tok, pos));
    }
    out.push((Tok::Eof, Pos { line, column: col }));
    Ok(out)
}

/// Reads a quoted run starting at `chars[0] == q`; a doubled quote is one quote.
/// Returns the contents, the characters used and the newlines inside.
fn quoted(chars: &[char], q: char) -> Option<(String, usize, u32)> {
    let mut s = String::new();
    let mut i = 1;
    let mut lines = 0;
    while i < chars.len() {
        if chars[i] == q {
            if chars.get(i + 1) == Some(&q) {
                s.push(q);
                i += 2;
                continue;
            }
            return Some((s, i + 1, lines));
        }
        if chars[i] == '\n' {
            lines += 1;
        }
        s.push(chars[i]);
        i += 1;
    }
    None
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
