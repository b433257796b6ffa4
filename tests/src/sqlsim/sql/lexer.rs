//! The T-SQL tokenizer. It knows the lexical rules that matter for recognising statements safely:
//! `'…'` and `N'…'` strings with doubled quotes, `[bracketed]]` and `"quoted"` identifiers, `--` and
//! nested `/* */` comments, `@variables`, `@@globals`, numbers and `0x` binary literals. Keywords
//! are ordinary [`TokenKind::Word`]s compared case-insensitively by the parser, so `select`,
//! `SELECT` and `Select` are the same while `[select]` stays an identifier. Each token keeps its
//! byte span, so the statement log can quote a statement exactly as the client sent it.

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    /// An unquoted word: keyword or identifier, as written.
    Word(String),
    /// A `[bracketed]` or `"double-quoted"` identifier, unescaped.
    QuotedIdent(String),
    /// A string literal, unescaped; `national` for `N'…'`.
    Str {
        /// Written with the `N` prefix.
        national: bool,
        /// Content with doubled quotes collapsed.
        value: String,
    },
    /// A numeric literal as written.
    Number(String),
    /// A `0x…` literal.
    Binary(Vec<u8>),
    /// `@name` (the text includes the `@`).
    Variable(String),
    /// `@@name` (the text includes the `@@`).
    Global(String),
    /// Punctuation or an operator: `( ) , . ; = < > <= >= <> != * + - / %`.
    Symbol(&'static str),
}

/// A token and where it sits in the batch text (byte offsets).
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// The token.
    pub kind: TokenKind,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
}

impl Token {
    /// True if this is the unquoted word `kw` (case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// True if this is the symbol `s`.
    pub fn is_sym(&self, s: &str) -> bool {
        matches!(&self.kind, TokenKind::Symbol(x) if *x == s)
    }

    /// The text SQL Server quotes in "Incorrect syntax near '…'": strings and quoted identifiers
    /// without their quotes, everything else as written.
    pub fn near_text(&self, source: &str) -> String {
        match &self.kind {
            TokenKind::Str { value, .. } | TokenKind::QuotedIdent(value) => value.clone(),
            _ => source
                .get(self.start..self.end)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// A lexical error, reported as SQL Server reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LexError {
    /// A string or quoted identifier runs to the end of the batch (error 105).
    UnclosedQuote(String),
    /// A `/*` comment is never closed (error 113).
    UnclosedComment,
    /// A character that cannot start any token (error 102 near it).
    Unexpected(String),
}

const SYMBOLS: [&str; 18] = [
    "<=", ">=", "<>", "!=", "(", ")", ",", ".", ";", "=", "<", ">", "*", "+", "-", "/", "%", ":",
];

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '#'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '#' || c == '$' || c == '@'
}

/// Splits `src` into tokens, dropping whitespace and comments.
pub fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(src.len(), |(b, _)| *b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        let next = chars.get(i + 1).map(|(_, c)| *c);
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i].1 != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            // T-SQL block comments nest.
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    return Err(LexError::UnclosedComment);
                }
                let (a, b) = (chars[i].1, chars.get(i + 1).map(|(_, c)| *c));
                if a == '/' && b == Some('*') {
                    depth += 1;
                    i += 2;
                } else if a == '*' && b == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        let national = (c == 'N' || c == 'n') && next == Some('\'');
        if c == '\'' || national || c == '[' || c == '"' {
            let (open_at, close) = match c {
                '[' => (i, ']'),
                '"' => (i, '"'),
                _ if national => (i + 1, '\''),
                _ => (i, '\''),
            };
            i = open_at + 1;
            let mut value = String::new();
            loop {
                let Some(&(_, ch)) = chars.get(i) else {
                    return Err(LexError::UnclosedQuote(value));
                };
                if ch == close {
                    // A doubled closing character is an escaped one.
                    if chars.get(i + 1).map(|(_, c)| *c) == Some(close) {
                        value.push(close);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                value.push(ch);
                i += 1;
            }
            let kind = if c == '[' || c == '"' {
                TokenKind::QuotedIdent(value)
            } else {
                TokenKind::Str { national, value }
            };
            out.push(Token {
                kind,
                start: byte_at(start),
                end: byte_at(i),
            });
            continue;
        }
        if c == '0' && matches!(next, Some('x' | 'X')) {
            i += 2;
            let digits_start = i;
            while i < chars.len() && chars[i].1.is_ascii_hexdigit() {
                i += 1;
            }
            let hex: String = chars[digits_start..i].iter().map(|(_, c)| *c).collect();
            let padded = if hex.len() % 2 == 1 {
                format!("0{hex}")
            } else {
                hex
            };
            let bytes = (0..padded.len())
                .step_by(2)
                .filter_map(|k| u8::from_str_radix(&padded[k..k + 2], 16).ok())
                .collect();
            out.push(Token {
                kind: TokenKind::Binary(bytes),
                start: byte_at(start),
                end: byte_at(i),
            });
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
            while i < chars.len() && (chars[i].1.is_ascii_digit() || chars[i].1 == '.') {
                i += 1;
            }
            if i < chars.len() && matches!(chars[i].1, 'e' | 'E') {
                let mut j = i + 1;
                if j < chars.len() && matches!(chars[j].1, '+' | '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].1.is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].1.is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text = src[byte_at(start)..byte_at(i)].to_string();
            out.push(Token {
                kind: TokenKind::Number(text),
                start: byte_at(start),
                end: byte_at(i),
            });
            continue;
        }
        if c == '@' {
            let global = next == Some('@');
            i += if global { 2 } else { 1 };
            while i < chars.len() && is_word_char(chars[i].1) {
                i += 1;
            }
            let text = src[byte_at(start)..byte_at(i)].to_string();
            let kind = if global {
                TokenKind::Global(text)
            } else {
                TokenKind::Variable(text)
            };
            out.push(Token {
                kind,
                start: byte_at(start),
                end: byte_at(i),
            });
            continue;
        }
        if is_word_start(c) {
            while i < chars.len() && is_word_char(chars[i].1) {
                i += 1;
            }
            let text = src[byte_at(start)..byte_at(i)].to_string();
            out.push(Token {
                kind: TokenKind::Word(text),
                start: byte_at(start),
                end: byte_at(i),
            });
            continue;
        }
        let rest = &src[byte_at(i)..];
        match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            Some(sym) => {
                i += sym.chars().count();
                out.push(Token {
                    kind: TokenKind::Symbol(sym),
                    start: byte_at(start),
                    end: byte_at(i),
                });
            }
            None => return Err(LexError::Unexpected(c.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        tokenize(src).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn strings_identifiers_and_comments() {
        let k = kinds("SELECT N'it''s', 'x' -- c\n /* a /* nested */ b */ FROM [my]]db].\"t\"");
        assert_eq!(
            k,
            vec![
                TokenKind::Word("SELECT".into()),
                TokenKind::Str {
                    national: true,
                    value: "it's".into()
                },
                TokenKind::Symbol(","),
                TokenKind::Str {
                    national: false,
                    value: "x".into()
                },
                TokenKind::Word("FROM".into()),
                TokenKind::QuotedIdent("my]db".into()),
                TokenKind::Symbol("."),
                TokenKind::QuotedIdent("t".into()),
            ]
        );
    }

    #[test]
    fn variables_numbers_and_symbols() {
        let k = kinds("@@SPID @P1<>-1.5e3 0x0aFF;");
        assert_eq!(
            k,
            vec![
                TokenKind::Global("@@SPID".into()),
                TokenKind::Variable("@P1".into()),
                TokenKind::Symbol("<>"),
                TokenKind::Symbol("-"),
                TokenKind::Number("1.5e3".into()),
                TokenKind::Binary(vec![0x0a, 0xff]),
                TokenKind::Symbol(";"),
            ]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            tokenize("select 'abc"),
            Err(LexError::UnclosedQuote("abc".into()))
        );
        assert_eq!(tokenize("select /* x"), Err(LexError::UnclosedComment));
        assert_eq!(tokenize("select ?"), Err(LexError::Unexpected("?".into())));
    }

    #[test]
    fn spans_cover_source_text() {
        let src = "use  [mgc]";
        let t = tokenize(src).unwrap();
        assert_eq!(&src[t[1].start..t[1].end], "[mgc]");
        assert_eq!(t[1].near_text(src), "mgc");
    }
}
