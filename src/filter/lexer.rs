//! Tokens of the filter language.
//!
//! A selector path is lexed as one token (`Service.Meta["some-key"].x`), because inside a path no
//! whitespace is allowed and its parts are unambiguous; a lone word arrives the same way and the parser
//! decides from its position whether it is a keyword (`and`, `in`, `is`, ...), a selector or a bare-word
//! value. A lexing failure does not abort at once: it becomes a final [`Tok::Error`] token so that a
//! parse error earlier in the text is still reported first.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// An identifier followed by any number of `.name`, `.123` and `["key"]` parts.
    Path(Vec<String>),
    /// A double-quoted (escapes decoded) or backtick (raw) string.
    Str(String),
    /// A number literal, kept as written: values are compared in the type of the field they meet.
    Num(String),
    Eq,
    Ne,
    LParen,
    RParen,
    /// A run of punctuation that is no operator of the language, e.g. `>` or `=~`.
    Other(String),
    /// What the lexer could not read; always the last token.
    Error(String),
    Eof,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub tok: Tok,
    /// Byte offset of the token's first character.
    pub at: usize,
}

impl Token {
    /// The token as a keyword candidate: a path of exactly one plain word.
    pub fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Path(parts) if parts.len() == 1 => Some(parts[0].as_str()),
            _ => None,
        }
    }
}

pub(super) fn tokenize(src: &str) -> Vec<Token> {
    let mut lx = Lexer {
        src,
        pos: 0,
        out: Vec::new(),
    };
    lx.run();
    lx.out
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    out: Vec<Token>,
}

/// A lexing failure at a byte offset.
struct Fail(usize, String);

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, skip: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(skip)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
    }

    fn push(&mut self, tok: Tok, at: usize) {
        self.out.push(Token { tok, at });
    }

    fn run(&mut self) {
        loop {
            self.skip_space();
            let at = self.pos;
            let Some(c) = self.peek() else {
                self.push(Tok::Eof, at);
                return;
            };
            let next = match c {
                '(' => {
                    self.pos += 1;
                    Ok(Tok::LParen)
                }
                ')' => {
                    self.pos += 1;
                    Ok(Tok::RParen)
                }
                '"' | '`' => self.string().map(Tok::Str),
                c if c.is_ascii_digit() => self.number(),
                '-' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(),
                c if is_ident_start(c) => self.path().map(Tok::Path),
                _ => Ok(self.punct()),
            };
            match next {
                Ok(tok) => self.push(tok, at),
                Err(Fail(fail_at, msg)) => {
                    self.push(Tok::Error(msg), fail_at);
                    return;
                }
            }
        }
    }

    fn punct(&mut self) -> Tok {
        let rest = &self.src[self.pos..];
        if rest.starts_with("==") {
            self.pos += 2;
            return Tok::Eq;
        }
        if rest.starts_with("!=") {
            self.pos += 2;
            return Tok::Ne;
        }
        let start = self.pos;
        let first = self.bump().unwrap_or_default();
        if first.is_ascii_punctuation() {
            // Group `=~`, `>=`, `&&` and the like so an error can name the whole would-be operator.
            while let Some(c) = self.peek() {
                if c.is_ascii_punctuation() && !matches!(c, '(' | ')' | '"' | '`' | '[' | ']' | '.')
                {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        Tok::Other(self.src[start..self.pos].to_string())
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_char) {
            self.pos += 1;
        }
        self.src[start..self.pos].to_string()
    }

    fn path(&mut self) -> Result<Vec<String>, Fail> {
        let mut parts = vec![self.ident()];
        loop {
            match self.peek() {
                Some('.') => {
                    let dot = self.pos;
                    self.pos += 1;
                    match self.peek() {
                        Some(c) if is_ident_start(c) => parts.push(self.ident()),
                        Some(c) if c.is_ascii_digit() => {
                            let start = self.pos;
                            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                                self.pos += 1;
                            }
                            parts.push(self.src[start..self.pos].to_string());
                        }
                        _ => {
                            return Err(Fail(
                                dot,
                                "invalid selector: expected a name or an index after \".\"".into(),
                            ));
                        }
                    }
                }
                Some('[') => {
                    let open = self.pos;
                    self.pos += 1;
                    self.skip_space();
                    if !matches!(self.peek(), Some('"' | '`')) {
                        return Err(Fail(
                            open,
                            "invalid index: expected a quoted string after \"[\"".into(),
                        ));
                    }
                    parts.push(self.string()?);
                    self.skip_space();
                    if self.peek() != Some(']') {
                        return Err(Fail(
                            open,
                            "unclosed index expression: expected \"]\"".into(),
                        ));
                    }
                    self.pos += 1;
                }
                _ => return Ok(parts),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, which must end at whitespace, `)` or the end of the input.
    fn number(&mut self) -> Result<Tok, Fail> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        if self.peek() == Some('0') {
            self.pos += 1;
        } else {
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        match self.peek() {
            None | Some(')') => {}
            Some(c) if is_space(c) => {}
            Some(_) => {
                let mut end = self.pos;
                while self.src[end..]
                    .chars()
                    .next()
                    .is_some_and(|c| !is_space(c) && c != ')')
                {
                    end += self.src[end..].chars().next().map_or(1, char::len_utf8);
                }
                return Err(Fail(
                    start,
                    format!("invalid number literal {:?}", &self.src[start..end]),
                ));
            }
        }
        Ok(Tok::Num(self.src[start..self.pos].to_string()))
    }

    /// A string starting at the current quote character.
    fn string(&mut self) -> Result<String, Fail> {
        let open = self.pos;
        let quote = self.bump().unwrap_or('"');
        let unterminated = || Fail(open, "unterminated string literal".into());
        let mut out = String::new();
        if quote == '`' {
            let rest = &self.src[self.pos..];
            let end = rest.find('`').ok_or_else(unterminated)?;
            // Raw strings drop carriage returns, as Go's raw strings (the reference syntax) do.
            out.extend(rest[..end].chars().filter(|&c| c != '\r'));
            self.pos += end + 1;
            return Ok(out);
        }
        loop {
            let here = self.pos;
            match self.bump() {
                None => return Err(unterminated()),
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape(here)?),
                Some(c) => out.push(c),
            }
        }
    }

    /// Go-style escapes (`\n`, `\t`, `\\`, `\"`, `\xHH`, `\NNN`, `\uHHHH`, `\UHHHHHHHH`, ...), so a
    /// regular expression written for Consul (`"^1\\."`) means the same here.
    fn escape(&mut self, at: usize) -> Result<char, Fail> {
        let bad = |this: &Self| {
            Fail(
                at,
                format!(
                    "invalid escape sequence {:?} in string",
                    &this.src[at..this.pos]
                ),
            )
        };
        let Some(c) = self.bump() else {
            return Err(Fail(at, "unterminated string literal".into()));
        };
        let simple = match c {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(s) = simple {
            return Ok(s);
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (2, 8),
            _ => return Err(bad(self)),
        };
        let start = self.pos;
        for _ in 0..digits {
            if !self.peek().is_some_and(|d| d.is_digit(radix)) {
                return Err(bad(self));
            }
            self.pos += 1;
        }
        let text = if radix == 8 {
            &self.src[start - 1..self.pos]
        } else {
            &self.src[start..self.pos]
        };
        let code = u32::from_str_radix(text, radix).map_err(|_| bad(self))?;
        // `\x` and octal escapes denote bytes; only the ASCII ones are characters on their own.
        if matches!(c, 'x' | '0'..='7') && code > 0x7f {
            return Err(bad(self));
        }
        char::from_u32(code).ok_or_else(|| bad(self))
    }
}
