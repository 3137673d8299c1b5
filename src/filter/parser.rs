//! The expression tree and a recursive-descent parser for it.
//!
//! Hand-written rather than built on nom/pest/logos: the grammar is a dozen productions, the one
//! ambiguity (`not` as an operator or as a bare word, e.g. `not in Tags`) needs a single local
//! backtrack, and errors must carry Consul's `line:column (offset)` positions and name the offending
//! token, which is simplest to control by hand and costs no new dependency.
//!
//! Grammar (keywords are case-sensitive, whitespace is free outside strings and paths):
//! ```text
//! expr    := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | primary
//! primary := "(" expr ")" | match
//! match   := path ("==" | "!=" | "contains" | "not contains" | "matches" | "not matches") value
//!          | path "is" ["not"] "empty"
//!          | value ("in" | "not in") path
//! value   := path | number | string        (a path used as a value means its dotted text)
//! ```

use std::fmt;

use regex::Regex;

use super::error::FilterError;
use super::lexer::{tokenize, Tok, Token};

/// Deepest nesting of parentheses and `not` accepted. Expressions arrive in URLs, so this bounds the
/// recursion of both the parser and the evaluator against hostile input.
pub const MAX_DEPTH: usize = 128;

/// Largest compiled regular expression accepted for `matches`, for the same reason.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(super) enum Expr {
    /// The empty expression: no filtering.
    True,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Match(Box<Match>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Equal,
    NotEqual,
    In,
    NotIn,
    Contains,
    NotContains,
    IsEmpty,
    IsNotEmpty,
    Matches,
    NotMatches,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "==",
            Op::NotEqual => "!=",
            Op::In => "in",
            Op::NotIn => "not in",
            Op::Contains => "contains",
            Op::NotContains => "not contains",
            Op::IsEmpty => "is empty",
            Op::IsNotEmpty => "is not empty",
            Op::Matches => "matches",
            Op::NotMatches => "not matches",
        }
    }

    /// The positive operator this one negates, if it is a negation.
    pub fn negated(self) -> Option<Op> {
        match self {
            Op::NotEqual => Some(Op::Equal),
            Op::NotIn => Some(Op::In),
            Op::NotContains => Some(Op::Contains),
            Op::IsNotEmpty => Some(Op::IsEmpty),
            Op::NotMatches => Some(Op::Matches),
            _ => None,
        }
    }
}

/// A path of field names / map keys / list indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Selector(pub Vec<String>);

impl fmt::Display for Selector {
    /// Canonical form: `.name` where the part is a plain word or an index, `["key"]` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            let word = part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let index = !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
            if i == 0 {
                f.write_str(part)?;
            } else if word || index {
                write!(f, ".{part}")?;
            } else {
                write!(f, "[{part:?}]")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    /// `is empty` / `is not empty`.
    None,
    /// The value as written (quotes removed); coerced to the type it meets at evaluation.
    Text(String),
    /// `matches` / `not matches`, compiled once at parse time.
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub(super) struct Match {
    pub selector: Selector,
    pub op: Op,
    pub operand: Operand,
}

/// A failure at a byte offset; the furthest one wins when alternatives are tried.
struct PErr {
    at: usize,
    msg: String,
}

enum Fail {
    Syntax(PErr),
    /// Not a grammar problem: reported as is, never replaced by an alternative's error.
    Other(FilterError),
}

impl From<PErr> for Fail {
    fn from(e: PErr) -> Fail {
        Fail::Syntax(e)
    }
}

pub(super) fn parse(src: &str) -> Result<Expr, FilterError> {
    if src.is_empty() {
        return Ok(Expr::True);
    }
    let mut p = Parser {
        tokens: tokenize(src),
        pos: 0,
    };
    let result = p.expr(0).and_then(|e| match &p.peek().tok {
        Tok::Eof => Ok(e),
        Tok::RParen => Err(p.err_here("unmatched parenthesis: unexpected \")\"").into()),
        _ => Err(p
            .unexpected("\"and\", \"or\" or the end of the expression")
            .into()),
    });
    result.map_err(|f| match f {
        Fail::Syntax(e) => FilterError::syntax(src, e.at, e.msg),
        Fail::Other(e) => e,
    })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

const MATCH_OPERATORS: &str =
    "==, !=, contains, not contains, in, not in, is empty, is not empty, matches, not matches";

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof or Error, and the parser never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.pos + ahead).min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if !matches!(t.tok, Tok::Eof | Tok::Error(_)) {
            self.pos += 1;
        }
        t
    }

    fn at_word(&self, w: &str) -> bool {
        self.peek().word() == Some(w)
    }

    fn err_here(&self, msg: impl Into<String>) -> PErr {
        PErr {
            at: self.peek().at,
            msg: msg.into(),
        }
    }

    /// "unexpected X, expected Y" for the current token; a pending lexer error wins, since it is
    /// the real reason the expected thing is not there.
    fn unexpected(&self, expected: &str) -> PErr {
        let t = self.peek();
        let msg = match &t.tok {
            Tok::Error(m) => m.clone(),
            other => format!("unexpected {}, expected {expected}", describe(other)),
        };
        PErr { at: t.at, msg }
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, Fail> {
        let mut terms = vec![self.and(depth)?];
        while self.at_word("or") {
            self.bump();
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, Fail> {
        let mut terms = vec![self.not(depth)?];
        while self.at_word("and") {
            self.bump();
            terms.push(self.not(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn not(&mut self, depth: usize) -> Result<Expr, Fail> {
        if !self.at_word("not") {
            return self.primary(depth);
        }
        if depth >= MAX_DEPTH {
            return Err(self
                .err_here(format!("expression nested too deeply (limit {MAX_DEPTH})"))
                .into());
        }
        let save = self.pos;
        self.bump();
        let as_operator = match self.not(depth + 1) {
            Ok(Expr::Not(inner)) => return Ok(*inner),
            Ok(e) => return Ok(Expr::Not(Box::new(e))),
            Err(Fail::Other(e)) => return Err(Fail::Other(e)),
            Err(Fail::Syntax(e)) => e,
        };
        // `not` may also be a bare-word value (`not in Tags`) or a field name (`not == x`).
        self.pos = save;
        match self.primary(depth) {
            Ok(e) => Ok(e),
            Err(Fail::Syntax(e)) if e.at > as_operator.at => Err(e.into()),
            Err(Fail::Syntax(_)) => Err(as_operator.into()),
            Err(other) => Err(other),
        }
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, Fail> {
        if self.peek().tok != Tok::LParen {
            return self.match_expr();
        }
        if depth >= MAX_DEPTH {
            return Err(self
                .err_here(format!("expression nested too deeply (limit {MAX_DEPTH})"))
                .into());
        }
        let open = self.bump();
        let inner = self.expr(depth + 1)?;
        match &self.peek().tok {
            Tok::RParen => {
                self.bump();
                Ok(inner)
            }
            Tok::Eof => Err(PErr {
                at: open.at,
                msg: "unmatched parenthesis: \"(\" is never closed".into(),
            }
            .into()),
            _ => Err(self.unexpected("\")\", \"and\" or \"or\"").into()),
        }
    }

    fn match_expr(&mut self) -> Result<Expr, Fail> {
        let parts = match &self.peek().tok {
            Tok::Str(s) | Tok::Num(s) => {
                let value = s.clone();
                self.bump();
                return self.value_in_selector(value);
            }
            Tok::Path(parts) => parts.clone(),
            _ => return Err(self.unexpected("a selector or a value").into()),
        };
        self.bump();
        if self.at_word("in") || (self.at_word("not") && self.peek_at(1).word() == Some("in")) {
            // A bare word (or dotted path) on the left of `in` is a value.
            return self.value_in_selector(parts.join("."));
        }
        let selector = Selector(parts);
        let op = self.operator()?;
        let operand = match op {
            Op::IsEmpty | Op::IsNotEmpty => Operand::None,
            Op::Matches | Op::NotMatches => {
                let pattern = self.value(op)?;
                let re = regex::RegexBuilder::new(&pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        Fail::Other(FilterError::InvalidRegex {
                            selector: selector.to_string(),
                            pattern: pattern.clone(),
                            reason: regex_reason(&e),
                        })
                    })?;
                Operand::Regex(re)
            }
            _ => Operand::Text(self.value(op)?),
        };
        Ok(Expr::Match(Box::new(Match {
            selector,
            op,
            operand,
        })))
    }

    /// The operator after a selector (`in` / `not in` are handled by the caller).
    fn operator(&mut self) -> Result<Op, Fail> {
        let here = self.peek().clone();
        let next = self.peek_at(1).word();
        let (op, tokens) = match (&here.tok, here.word(), next) {
            (Tok::Eq, ..) => (Op::Equal, 1),
            (Tok::Ne, ..) => (Op::NotEqual, 1),
            (_, Some("contains"), _) => (Op::Contains, 1),
            (_, Some("matches"), _) => (Op::Matches, 1),
            (_, Some("not"), Some("contains")) => (Op::NotContains, 2),
            (_, Some("not"), Some("matches")) => (Op::NotMatches, 2),
            (_, Some("is"), Some("empty")) => (Op::IsEmpty, 2),
            (_, Some("is"), Some("not")) if self.peek_at(2).word() == Some("empty") => {
                (Op::IsNotEmpty, 3)
            }
            (_, Some("is"), _) => {
                self.bump();
                return Err(self
                    .unexpected("\"empty\" or \"not empty\" after \"is\"")
                    .into());
            }
            (_, Some("not"), _) => {
                let shown = format!("not {}", next.unwrap_or_default());
                return Err(unknown_operator(here.at, shown.trim_end()));
            }
            (Tok::Other(text), ..) => return Err(unknown_operator(here.at, text)),
            (Tok::Path(parts), ..) => {
                return Err(unknown_operator(
                    here.at,
                    &Selector(parts.clone()).to_string(),
                ))
            }
            _ => {
                return Err(self
                    .unexpected(&format!("a match operator ({MATCH_OPERATORS})"))
                    .into())
            }
        };
        for _ in 0..tokens {
            self.bump();
        }
        Ok(op)
    }

    /// After a value: `in` or `not in`, then the selector. The current token is the operator.
    fn value_in_selector(&mut self, value: String) -> Result<Expr, Fail> {
        let op = if self.at_word("in") {
            self.bump();
            Op::In
        } else if self.at_word("not") && self.peek_at(1).word() == Some("in") {
            self.bump();
            self.bump();
            Op::NotIn
        } else {
            // Only reachable after a quoted or numeric value: after a path the caller checked for `in`.
            return Err(self.unexpected("\"in\" or \"not in\" after a value").into());
        };
        match &self.peek().tok {
            Tok::Path(parts) => {
                let selector = Selector(parts.clone());
                self.bump();
                Ok(Expr::Match(Box::new(Match {
                    selector,
                    op,
                    operand: Operand::Text(value),
                })))
            }
            _ => Err(self
                .unexpected(&format!("a selector after {:?}", op.as_str()))
                .into()),
        }
    }

    fn value(&mut self, op: Op) -> Result<String, Fail> {
        let v = match &self.peek().tok {
            Tok::Str(s) | Tok::Num(s) => s.clone(),
            Tok::Path(parts) => parts.join("."),
            _ => {
                return Err(self
                    .unexpected(&format!("a value after {:?}", op.as_str()))
                    .into())
            }
        };
        self.bump();
        Ok(v)
    }
}

fn unknown_operator(at: usize, shown: &str) -> Fail {
    Fail::Syntax(PErr {
        at,
        msg: format!("unknown operator {shown:?}, expected one of {MATCH_OPERATORS}"),
    })
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Path(p) => format!("{:?}", Selector(p.clone()).to_string()),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Eq => "\"==\"".into(),
        Tok::Ne => "\"!=\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Other(t) => format!("{t:?}"),
        Tok::Error(m) => m.clone(),
        Tok::Eof => "end of input".into(),
    }
}

/// The regex crate's message without its multi-line caret diagram.
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => {
            let reasons: Vec<&str> = s
                .lines()
                .filter_map(|l| l.strip_prefix("error: "))
                .collect();
            if reasons.is_empty() {
                s.clone()
            } else {
                reasons.join("; ")
            }
        }
        other => other.to_string(),
    }
}
