//! lyncsim's tokenizer: the PowerShell lexical subset the agent emits, read the way PowerShell reads
//! it. Single-quoted strings (any of PowerShell's five single-quote characters; a doubled quote is
//! one literal quote; nothing inside is special), `$name` variables with `.Member` access, `-Param`
//! names, barewords, `[type]` literals, `@(`, `@{`, `(`, `)`, `{`, `}`, `,`, `;`, `|`, `=`, newlines
//! and `#` comments.
//!
//! What the agent never emits is refused with a parser error instead of being half-understood:
//! double-quoted (expanding) strings, `$(...)` subexpressions, backtick escapes, here-strings,
//! redirections. A value that leaked out of its quotes therefore fails loudly here.

use std::fmt;

/// PowerShell's single-quote characters.
pub const SINGLE_QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];
/// PowerShell's double-quote characters.
const DOUBLE_QUOTES: [char; 4] = ['"', '\u{201C}', '\u{201D}', '\u{201E}'];
/// PowerShell's dash characters (a parameter may start with any of them).
const DASHES: [char; 4] = ['-', '\u{2013}', '\u{2014}', '\u{2015}'];

/// A token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A single-quoted string, quotes removed and doubled quotes collapsed.
    Str(String),
    /// `$name` (without the `$`).
    Var(String),
    /// `-Name` (without the dash).
    Param(String),
    /// A bareword: a command name, a hashtable key, a bare argument, a member name.
    Word(String),
    /// `[type]` (without the brackets).
    Type(String),
    /// `@(`
    AtParen,
    /// `@{`
    AtBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// A line break.
    Newline,
    /// `|`
    Pipe,
    /// `=`
    Eq,
    /// `.` directly after a variable or a closing bracket (member access).
    Dot,
}

/// A token and where it starts (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Line.
    pub line: usize,
    /// Column.
    pub col: usize,
}

/// A parser error, worded like PowerShell's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Line (1-based).
    pub line: usize,
    /// Column (1-based).
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// PowerShell's FullyQualifiedErrorId for it.
    pub id: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "At line:{} char:{}\n{}\n    + CategoryInfo          : ParserError: (:) [], ParentContainsErrorRecordException\n    + FullyQualifiedErrorId : {}",
            self.line, self.col, self.message, self.id
        )
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '\\' | '/')
}

/// Splits `script` into tokens.
pub fn tokenize(script: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = script.chars().collect();
    let mut out: Vec<Token> = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |line, col, message: String, id| ParseError {
        line,
        col,
        message,
        id,
    };
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        let push = |tok: Tok, out: &mut Vec<Token>| {
            out.push(Token {
                tok,
                line: tl,
                col: tc,
            })
        };
        let start = i;
        match c {
            '\n' => {
                push(Tok::Newline, &mut out);
                i += 1;
                line += 1;
                col = 1;
                continue;
            }
            c if c == '\r' || (c.is_whitespace() && c != '\n') => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            c if SINGLE_QUOTES.contains(&c) => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(err(
                            tl,
                            tc,
                            "The string is missing the terminator: '.".into(),
                            "TerminatorExpectedAtEndOfString",
                        ));
                    };
                    i += 1;
                    if SINGLE_QUOTES.contains(&c) {
                        if chars.get(i).is_some_and(|n| SINGLE_QUOTES.contains(n)) {
                            i += 1;
                            s.push(c);
                            continue;
                        }
                        break;
                    }
                    if c == '\n' {
                        line += 1;
                        col = 0;
                    }
                    s.push(c);
                }
                push(Tok::Str(s), &mut out);
            }
            c if DOUBLE_QUOTES.contains(&c) => {
                return Err(err(tl, tc, "lyncsim: double-quoted (expandable) strings are not supported; the agent sends single-quoted literals only.".into(), "LyncsimUnsupportedSyntax"));
            }
            '`' => {
                return Err(err(
                    tl,
                    tc,
                    "lyncsim: backtick escapes are not supported outside strings.".into(),
                    "LyncsimUnsupportedSyntax",
                ));
            }
            '$' => {
                if chars.get(i + 1) == Some(&'(') {
                    return Err(err(
                        tl,
                        tc,
                        "lyncsim: $(...) subexpressions are not supported.".into(),
                        "LyncsimUnsupportedSyntax",
                    ));
                }
                i += 1;
                let name_start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if i == name_start {
                    return Err(err(tl, tc, "Variable reference is not valid. '$' was not followed by a valid variable name character.".into(), "InvalidVariableReference"));
                }
                push(Tok::Var(chars[name_start..i].iter().collect()), &mut out);
            }
            '@' => match chars.get(i + 1) {
                Some('(') => {
                    push(Tok::AtParen, &mut out);
                    i += 2;
                }
                Some('{') => {
                    push(Tok::AtBrace, &mut out);
                    i += 2;
                }
                _ => {
                    return Err(err(
                        tl,
                        tc,
                        "lyncsim: only @( and @{ are supported after '@'.".into(),
                        "LyncsimUnsupportedSyntax",
                    ));
                }
            },
            '[' => {
                let mut depth = 0;
                let mut j = i;
                while j < chars.len() {
                    match chars[j] {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        c if c.is_alphanumeric() || c == '.' => {}
                        _ => break,
                    }
                    j += 1;
                }
                if chars.get(j) != Some(&']') || depth != 0 {
                    return Err(err(
                        tl,
                        tc,
                        "Missing ] at end of type token.".into(),
                        "EndSquareBracketExpectedAtEndOfType",
                    ));
                }
                push(Tok::Type(chars[i + 1..j].iter().collect()), &mut out);
                i = j + 1;
            }
            '(' | ')' | '{' | '}' | ',' | ';' | '|' | '=' => {
                push(
                    match c {
                        '(' => Tok::LParen,
                        ')' => Tok::RParen,
                        '{' => Tok::LBrace,
                        '}' => Tok::RBrace,
                        ',' => Tok::Comma,
                        ';' => Tok::Semi,
                        '|' => Tok::Pipe,
                        _ => Tok::Eq,
                    },
                    &mut out,
                );
                i += 1;
            }
            '.' if matches!(out.last().map(|t| &t.tok), Some(Tok::Var(_) | Tok::RParen))
                && i > 0
                && !chars[i - 1].is_whitespace() =>
            {
                push(Tok::Dot, &mut out);
                i += 1;
                let name_start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if i == name_start {
                    return Err(err(
                        tl,
                        tc,
                        "Missing property name after reference operator.".into(),
                        "MissingPropertyName",
                    ));
                }
                out.push(Token {
                    tok: Tok::Word(chars[name_start..i].iter().collect()),
                    line: tl,
                    col: tc + 1,
                });
            }
            c if DASHES.contains(&c) && chars.get(i + 1).is_some_and(|n| n.is_alphabetic()) => {
                i += 1;
                let name_start = i;
                while i < chars.len() && chars[i].is_alphanumeric() {
                    i += 1;
                }
                if chars.get(i) == Some(&':') {
                    return Err(err(
                        tl,
                        tc,
                        "lyncsim: -Param:value syntax is not supported.".into(),
                        "LyncsimUnsupportedSyntax",
                    ));
                }
                push(Tok::Param(chars[name_start..i].iter().collect()), &mut out);
            }
            c if is_word_char(c) => {
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                push(Tok::Word(chars[start..i].iter().collect()), &mut out);
            }
            other => {
                return Err(err(
                    tl,
                    tc,
                    format!("Unexpected token '{other}' in expression or statement."),
                    "UnexpectedToken",
                ));
            }
        }
        col += i - start;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn agent_script_tokens() {
        use Tok::*;
        assert_eq!(
            toks(
                "$ErrorActionPreference='Stop'\nSet-CsX -Identity 'a''b' -ActiveServers @{Replace='x','y'} -Force"
            ),
            vec![
                Var("ErrorActionPreference".into()),
                Eq,
                Str("Stop".into()),
                Newline,
                Word("Set-CsX".into()),
                Param("Identity".into()),
                Str("a'b".into()),
                Param("ActiveServers".into()),
                AtBrace,
                Word("Replace".into()),
                Eq,
                Str("x".into()),
                Comma,
                Str("y".into()),
                RBrace,
                Param("Force".into()),
            ]
        );
        assert_eq!(
            toks("@(G | Select-Object -Property @{n='I';e={[string[]]$_.Computers}})"),
            vec![
                AtParen,
                Word("G".into()),
                Pipe,
                Word("Select-Object".into()),
                Param("Property".into()),
                AtBrace,
                Word("n".into()),
                Eq,
                Str("I".into()),
                Semi,
                Word("e".into()),
                Eq,
                LBrace,
                Type("string[]".into()),
                Var("_".into()),
                Dot,
                Word("Computers".into()),
                RBrace,
                RBrace,
                RParen,
            ]
        );
        assert_eq!(
            toks("Import-Module 'C:\\P F\\Lync.psd1' # c\r\n$null"),
            vec![
                Word("Import-Module".into()),
                Str("C:\\P F\\Lync.psd1".into()),
                Newline,
                Var("null".into()),
            ]
        );
    }

    #[test]
    fn strings_are_inert() {
        assert_eq!(
            toks("'$(Remove-Item x); `n \"q\" # |'"),
            vec![Tok::Str("$(Remove-Item x); `n \"q\" # |".into())]
        );
        assert_eq!(
            toks("'a\u{2019}\u{2019}b'"),
            vec![Tok::Str("a\u{2019}b".into())]
        );
        assert_eq!(toks("'a\u{2018}"), vec![Tok::Str("a".into())]);
        assert_eq!(toks("'multi\nline'"), vec![Tok::Str("multi\nline".into())]);
    }

    #[test]
    fn unsupported_and_broken_syntax_is_refused() {
        for bad in [
            "'open",
            "\"x\"",
            "$(Remove-Item x)",
            "a`n",
            "@x",
            "$",
            "[string",
            "-Force:$true",
            "a > b",
        ] {
            let e = tokenize(bad).unwrap_err();
            assert!(e.to_string().contains("ParserError"), "{bad}: {e}");
        }
    }
}
