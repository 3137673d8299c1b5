//! HCL 1: the dialect Consul reads its config files with.
//!
//! Consul decodes `.hcl` files with HCL 1 (hashicorp/hcl v1), which accepts files an HCL 2
//! parser refuses: a block whose first attribute shares the line of its `{`
//! (`acl { enabled = true` ... `}`), several items on one line, commas between items, keys
//! repeated at will. No maintained Rust crate parses HCL 1, so this is a small lexer and
//! recursive-descent parser for its grammar:
//!
//! - items are `key = value` or `key ["label" ...] { ... }`; keys are identifiers or quoted
//!   strings; items may be separated by commas;
//! - values are strings (with Go escapes; `${...}` is kept verbatim), heredocs (`<<EOF`,
//!   `<<-EOF`), integers (decimal, `0x` hex, leading-zero octal), floats, `true`/`false`,
//!   lists `[...]` (trailing comma allowed) and objects `{...}`;
//! - comments are `#`, `//` and `/* */`.
//!
//! The result is the JSON-shaped tree the config code consumes (`hcl::Value`): a block or
//! object is an object and the labels of a block nest as object keys. A key given more than
//! once merges as Consul's decoder merges it: blocks and lists append (two `service` blocks
//! become a list of two objects), a repeated label merges into the same key, and for
//! scalars the last one wins.

use hcl::{Map, Number, Value};

/// A syntax error, positioned like Consul's (`At LINE:COLUMN: ...`, both from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("At {line}:{column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses an HCL 1 document into an object.
pub fn parse(src: &str) -> Result<Value, ParseError> {
    let mut p = Parser {
        lex: Lexer::new(src),
        peeked: None,
        depth: 0,
    };
    let body = p.body(None)?;
    Ok(object_value(body))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

impl Pos {
    fn err(self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Bool(bool),
    Str(String),
    Heredoc(String),
    Int(i64),
    Float(f64),
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Comma,
    Assign,
    Eof,
}

impl Tok {
    /// How the token is named in errors.
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Bool(b) => format!("bool {b}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Heredoc(_) => "heredoc".to_owned(),
            Tok::Int(i) => format!("number {i}"),
            Tok::Float(f) => format!("number {f}"),
            Tok::LBrace => "'{'".to_owned(),
            Tok::RBrace => "'}'".to_owned(),
            Tok::LBrack => "'['".to_owned(),
            Tok::RBrack => "']'".to_owned(),
            Tok::Comma => "','".to_owned(),
            Tok::Assign => "'='".to_owned(),
            Tok::Eof => "end of file".to_owned(),
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

impl Lexer {
    fn new(src: &str) -> Lexer {
        // Editors on Windows save a byte-order mark; it is not part of the document.
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        Lexer {
            chars: src.chars().collect(),
            i: 0,
            line: 1,
            column: 1,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n' | '\r') => {
                    self.bump();
                }
                Some('#') => self.skip_line(),
                Some('/') => match self.peek_at(1) {
                    Some('/') => self.skip_line(),
                    Some('*') => {
                        let start = self.pos();
                        self.bump();
                        self.bump();
                        loop {
                            match self.bump() {
                                Some('*') if self.peek() == Some('/') => {
                                    self.bump();
                                    break;
                                }
                                Some(_) => {}
                                None => return Err(start.err("comment not terminated")),
                            }
                        }
                    }
                    _ => return Err(self.pos().err("expected '/' for comment")),
                },
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn next(&mut self) -> Result<(Tok, Pos), ParseError> {
        self.skip_trivia()?;
        let pos = self.pos();
        let Some(c) = self.peek() else {
            return Ok((Tok::Eof, pos));
        };
        let tok = match c {
            '{' => self.single(Tok::LBrace),
            '}' => self.single(Tok::RBrace),
            '[' => self.single(Tok::LBrack),
            ']' => self.single(Tok::RBrack),
            ',' => self.single(Tok::Comma),
            '=' => self.single(Tok::Assign),
            '"' => self.string(pos)?,
            '<' => self.heredoc(pos)?,
            '-' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(pos)?,
            '.' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(pos)?,
            c if c.is_ascii_digit() => self.number(pos)?,
            c if is_letter(c) => {
                let mut s = String::new();
                while let Some(c) = self.peek() {
                    if is_letter(c) || is_digit(c) || c == '-' || c == '.' {
                        s.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                match s.as_str() {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    _ => Tok::Ident(s),
                }
            }
            other => return Err(pos.err(format!("illegal character {other:?}"))),
        };
        Ok((tok, pos))
    }

    fn single(&mut self, t: Tok) -> Tok {
        self.bump();
        t
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, ParseError> {
        let mut text = String::new();
        if self.peek() == Some('-') {
            text.push('-');
            self.bump();
        }
        let digits_from = text.len();
        if self.peek() == Some('0') && matches!(self.peek_at(1), Some('x' | 'X')) {
            self.bump();
            self.bump();
            let mut hex = String::new();
            while let Some(c) = self.peek().filter(char::is_ascii_hexdigit) {
                hex.push(c);
                self.bump();
            }
            if hex.is_empty() {
                return Err(pos.err("illegal hexadecimal number"));
            }
            return i64::from_str_radix(&format!("{text}{hex}"), 16)
                .map(Tok::Int)
                .map_err(|_| pos.err(format!("number {text}0x{hex} is out of range")));
        }
        let mut float = false;
        self.digits(&mut text);
        if self.peek() == Some('.') {
            float = true;
            text.push('.');
            self.bump();
            self.digits(&mut text);
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            float = true;
            text.push('e');
            self.bump();
            if let Some(s @ ('+' | '-')) = self.peek() {
                text.push(s);
                self.bump();
            }
            let before = text.len();
            self.digits(&mut text);
            if text.len() == before {
                return Err(pos.err(format!("malformed number exponent in {text:?}")));
            }
        }
        if float {
            // Go reads "1." and ".5"; Rust's parser wants digits on both sides.
            let mut t = text.clone();
            if t.ends_with('.') || t.contains(".e") {
                t = t.replace(".e", ".0e");
                if t.ends_with('.') {
                    t.push('0');
                }
            }
            if t[digits_from..].starts_with('.') {
                t.insert(digits_from, '0');
            }
            let f: f64 = t
                .parse()
                .map_err(|_| pos.err(format!("malformed number {text:?}")))?;
            return Ok(Tok::Float(f));
        }
        let digits = &text[digits_from..];
        // Like Go's strconv.ParseInt(s, 0, 64): a leading zero means octal.
        let (radix, body) = if digits.len() > 1 && digits.starts_with('0') {
            if digits.contains(['8', '9']) {
                return Err(pos.err(format!("illegal octal number {text}")));
            }
            (8, &digits[1..])
        } else {
            (10, digits)
        };
        let signed = format!("{}{body}", &text[..digits_from]);
        i64::from_str_radix(&signed, radix)
            .map(Tok::Int)
            .map_err(|_| pos.err(format!("number {text} is out of range")))
    }

    fn digits(&mut self, out: &mut String) {
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            out.push(c);
            self.bump();
        }
    }

    /// A double-quoted string. Like HCL 1, quotes inside `${ ... }` do not end it.
    fn string(&mut self, pos: Pos) -> Result<Tok, ParseError> {
        self.bump();
        let mut out: Vec<u8> = Vec::new();
        let mut braces = 0usize;
        loop {
            let here = self.pos();
            let Some(c) = self.bump() else {
                return Err(pos.err("string not terminated"));
            };
            if braces > 0 {
                match c {
                    '{' => braces += 1,
                    '}' => braces -= 1,
                    _ => {}
                }
                push_char(&mut out, c);
                continue;
            }
            match c {
                '\n' => return Err(pos.err("string not terminated before the end of the line")),
                '"' => break,
                '$' if self.peek() == Some('{') => {
                    self.bump();
                    braces = 1;
                    out.extend_from_slice(b"${");
                }
                '\\' => self.escape(here, &mut out)?,
                c => push_char(&mut out, c),
            }
        }
        String::from_utf8(out)
            .map(Tok::Str)
            .map_err(|_| pos.err("string escapes do not form valid UTF-8"))
    }

    /// One escape after a backslash, with Go's meaning (HCL 1 unquotes like `strconv`).
    fn escape(&mut self, at: Pos, out: &mut Vec<u8>) -> Result<(), ParseError> {
        let bad = || at.err("illegal escape sequence in string");
        let c = self.bump().ok_or_else(bad)?;
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        let (radix, width) = match c {
            '0'..='7' => (8, 3),
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            _ => return Err(bad()),
        };
        let mut digits = String::new();
        if radix == 8 {
            digits.push(c);
        }
        while digits.len() < width {
            match self.peek() {
                Some(d) if d.is_digit(radix) => {
                    digits.push(d);
                    self.bump();
                }
                _ => return Err(bad()),
            }
        }
        let n = u32::from_str_radix(&digits, radix).map_err(|_| bad())?;
        match c {
            // Octal and \x give single bytes, as in Go.
            '0'..='7' | 'x' => out.push(u8::try_from(n).map_err(|_| bad())?),
            _ => push_char(out, char::from_u32(n).ok_or_else(bad)?),
        }
        Ok(())
    }

    /// `<<ANCHOR` or `<<-ANCHOR`, then lines up to one holding only the anchor.
    fn heredoc(&mut self, pos: Pos) -> Result<Tok, ParseError> {
        self.bump();
        if self.peek() != Some('<') {
            return Err(pos.err("illegal character '<' (a heredoc starts with \"<<\")"));
        }
        self.bump();
        let indented = self.peek() == Some('-');
        if indented {
            self.bump();
        }
        let mut anchor = String::new();
        while let Some(c) = self.peek().filter(|c| is_letter(*c) || is_digit(*c)) {
            anchor.push(c);
            self.bump();
        }
        if self.peek() == Some('\r') && self.peek_at(1) == Some('\n') {
            self.bump();
        }
        match self.peek() {
            Some('\n') => {
                self.bump();
            }
            None => return Err(pos.err("heredoc not terminated")),
            Some(_) => return Err(pos.err("invalid characters in heredoc anchor")),
        }
        if anchor.is_empty() {
            return Err(pos.err("zero-length heredoc anchor"));
        }
        let mut lines: Vec<String> = Vec::new();
        let terminator_indent = loop {
            if self.peek().is_none() {
                return Err(pos.err(format!("heredoc not terminated: no line {anchor:?}")));
            }
            let mut line = String::new();
            while let Some(c) = self.bump() {
                if c == '\n' {
                    break;
                }
                line.push(c);
            }
            let body = line.trim_end_matches('\r');
            let indent_len = body.len() - body.trim_start().len();
            if body[indent_len..] == anchor {
                break body[..indent_len].to_owned();
            }
            lines.push(line);
        };
        Ok(Tok::Heredoc(heredoc_value(
            lines,
            &terminator_indent,
            indented,
        )))
    }
}

/// The value of a heredoc, as HCL 1 computes it: each line keeps its newline; `<<-` strips
/// the terminator's indentation from every line when all lines have it; a plain heredoc
/// whose terminator is indented keeps that indentation at its end.
fn heredoc_value(lines: Vec<String>, terminator_indent: &str, indented: bool) -> String {
    let strip = indented && lines.iter().all(|l| l.starts_with(terminator_indent));
    let mut out = String::new();
    for l in &lines {
        out.push_str(if strip {
            &l[terminator_indent.len()..]
        } else {
            l
        });
        out.push('\n');
    }
    if !indented {
        out.push_str(terminator_indent);
    }
    out
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// A parsed value before repeated keys are resolved into the JSON shape.
#[derive(Debug)]
enum Node {
    Scalar(Value),
    List(Vec<Node>),
    /// One object per block (or `{ }` value) given for the key.
    Objects(Vec<Obj>),
    /// The labels of labelled blocks: `service "web" { }` is `service` -> `web` -> block.
    Labels(Obj),
}

type Obj = Vec<(String, Node)>;

fn insert(obj: &mut Obj, key: String, node: Node) {
    match obj.iter_mut().find(|(k, _)| *k == key) {
        Some((_, slot)) => {
            let old = std::mem::replace(slot, Node::List(Vec::new()));
            *slot = merge(old, node);
        }
        None => obj.push((key, node)),
    }
}

/// Combines two values given for one key the way Consul's HCL decoder does: blocks and lists
/// accumulate, labels merge key by key, anything else is replaced by the later value.
fn merge(old: Node, new: Node) -> Node {
    match (old, new) {
        (Node::Labels(mut a), Node::Labels(b)) => {
            for (k, v) in b {
                insert(&mut a, k, v);
            }
            Node::Labels(a)
        }
        (Node::List(mut a), new @ (Node::List(_) | Node::Objects(_) | Node::Labels(_))) => {
            a.extend(into_items(new));
            Node::List(a)
        }
        (old @ (Node::Objects(_) | Node::Labels(_)), Node::List(b)) => {
            let mut items = into_items(old);
            items.extend(b);
            Node::List(items)
        }
        (Node::Objects(mut a), Node::Objects(b)) => {
            a.extend(b);
            Node::Objects(a)
        }
        // A labelled block and a plain one under one key: a list of both objects.
        (Node::Objects(mut a), Node::Labels(b)) => {
            a.push(b);
            Node::Objects(a)
        }
        (Node::Labels(a), Node::Objects(b)) => {
            let mut all = vec![a];
            all.extend(b);
            Node::Objects(all)
        }
        (_, new) => new,
    }
}

fn into_items(n: Node) -> Vec<Node> {
    match n {
        Node::List(v) => v,
        Node::Objects(v) => v.into_iter().map(|o| Node::Objects(vec![o])).collect(),
        Node::Labels(o) => vec![Node::Objects(vec![o])],
        scalar => vec![scalar],
    }
}

fn to_value(n: Node) -> Value {
    match n {
        Node::Scalar(v) => v,
        Node::List(items) => Value::Array(items.into_iter().map(to_value).collect()),
        Node::Objects(mut objs) if objs.len() == 1 => object_value(objs.pop().unwrap_or_default()),
        Node::Objects(objs) => Value::Array(objs.into_iter().map(object_value).collect()),
        Node::Labels(obj) => object_value(obj),
    }
}

fn object_value(obj: Obj) -> Value {
    let mut m = Map::new();
    for (k, v) in obj {
        m.insert(k, to_value(v));
    }
    Value::Object(m)
}

/// Objects and lists nested deeper than this are refused rather than risking the stack.
const MAX_DEPTH: usize = 200;

struct Parser {
    lex: Lexer,
    peeked: Option<(Tok, Pos)>,
    depth: usize,
}

impl Parser {
    fn next(&mut self) -> Result<(Tok, Pos), ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next(),
        }
    }

    fn peek(&mut self) -> Result<&Tok, ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next()?);
        }
        Ok(&self.peeked.as_ref().expect("just filled").0)
    }

    /// Items up to the end of the file (`open` is None) or the `}` closing the brace at `open`.
    fn body(&mut self, open: Option<Pos>) -> Result<Obj, ParseError> {
        let mut obj = Obj::new();
        loop {
            let (tok, pos) = self.next()?;
            let first = match tok {
                Tok::Eof => {
                    return match open {
                        None => Ok(obj),
                        Some(o) => Err(o.err(format!(
                        "'{{' is not closed: expected '}}' before the end of the file (at {}:{})",
                        pos.line, pos.column
                    ))),
                    }
                }
                Tok::RBrace if open.is_some() => return Ok(obj),
                Tok::Ident(k) | Tok::Str(k) => k,
                other => {
                    return Err(pos.err(format!(
                        "expected a key (identifier or quoted string), got {}",
                        other.describe()
                    )))
                }
            };
            let (key, node) = self.item(first)?;
            insert(&mut obj, key, node);
            // Items may be comma-separated, as in HCL 1.
            if self.peek()? == &Tok::Comma {
                self.next()?;
            }
        }
    }

    /// The rest of an item whose first key has been read: more keys (block labels), then
    /// `= value` or `{ body }`.
    fn item(&mut self, first: String) -> Result<(String, Node), ParseError> {
        let mut labels: Vec<String> = Vec::new();
        loop {
            let (tok, pos) = self.next()?;
            match tok {
                Tok::Ident(l) | Tok::Str(l) => labels.push(l),
                Tok::Assign if labels.is_empty() => {
                    let (tok, pos) = self.next()?;
                    return Ok((first, self.value(tok, pos)?));
                }
                Tok::Assign => {
                    return Err(pos.err(format!(
                        "expected '{{' after {first:?} {}, got '=' (only a block takes labels)",
                        quote_all(&labels)
                    )))
                }
                Tok::LBrace => {
                    let mut node = Node::Objects(vec![self.nested_body(pos)?]);
                    for label in labels.into_iter().rev() {
                        node = Node::Labels(vec![(label, node)]);
                    }
                    return Ok((first, node));
                }
                other => {
                    let what = if labels.is_empty() {
                        format!("key {first:?}")
                    } else {
                        format!("{first:?} {}", quote_all(&labels))
                    };
                    return Err(pos.err(format!(
                        "expected '=' or '{{' after {what}, got {}",
                        other.describe()
                    )));
                }
            }
        }
    }

    fn value(&mut self, tok: Tok, pos: Pos) -> Result<Node, ParseError> {
        Ok(match tok {
            Tok::Str(s) | Tok::Heredoc(s) => Node::Scalar(Value::String(s)),
            Tok::Bool(b) => Node::Scalar(Value::Bool(b)),
            Tok::Int(i) => Node::Scalar(Value::Number(Number::from(i))),
            Tok::Float(f) => Node::Scalar(
                Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| pos.err("number is not finite"))?,
            ),
            Tok::LBrace => Node::Objects(vec![self.nested_body(pos)?]),
            Tok::LBrack => {
                self.enter(pos)?;
                let items = self.list(pos);
                self.depth -= 1;
                Node::List(items?)
            }
            Tok::Ident(s) => {
                return Err(pos.err(format!(
                    "expected a value, got identifier {s:?} (strings must be quoted)"
                )))
            }
            other => {
                return Err(pos.err(format!(
                    "expected a value (string, number, bool, list or object), got {}",
                    other.describe()
                )))
            }
        })
    }

    fn enter(&mut self, pos: Pos) -> Result<(), ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(pos.err(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        Ok(())
    }

    fn nested_body(&mut self, open: Pos) -> Result<Obj, ParseError> {
        self.enter(open)?;
        let body = self.body(Some(open));
        self.depth -= 1;
        body
    }

    fn list(&mut self, open: Pos) -> Result<Vec<Node>, ParseError> {
        let mut items = Vec::new();
        let mut need_comma = false;
        loop {
            let (tok, pos) = self.next()?;
            match tok {
                Tok::RBrack => return Ok(items),
                Tok::Comma => need_comma = false,
                Tok::Eof => {
                    return Err(open.err(format!(
                        "'[' is not closed: expected ']' before the end of the file (at {}:{})",
                        pos.line, pos.column
                    )))
                }
                other if need_comma => {
                    return Err(pos.err(format!(
                        "expected ',' or ']' in list, got {}",
                        other.describe()
                    )))
                }
                other => {
                    items.push(self.value(other, pos)?);
                    need_comma = true;
                }
            }
        }
    }
}

fn quote_all(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("{l:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[path = "hcl1_tests.rs"]
mod tests;
