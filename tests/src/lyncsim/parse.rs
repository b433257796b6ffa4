//! lyncsim's parser: tokens to statements, for the PowerShell subset of [`super::token`].
//!
//! ```text
//! script    := sep* (statement (sep+ statement)*)? sep*        sep := newline | ';'
//! statement := $var '=' expr | pipeline
//! pipeline  := element ('|' newline* element)*
//! element   := Word arg*                       a command (arguments: -Param or values)
//!            | expr                            an expression (first element only)
//! expr      := unary (',' unary)*              a comma list makes an array
//! unary     := [type] unary | primary ('.' Member)*
//! primary   := 'str' | $var | Word (command arguments only) | @( script ) | @{ key = expr; ... }
//!            | { script } | ( pipeline )
//! ```

use std::rc::Rc;

use super::token::{ParseError, Tok, Token};

/// A statement.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// `$name = expr`.
    Assign(String, Expr),
    /// A pipeline and the line it starts on.
    Pipeline(Vec<Element>, usize),
}

/// One element of a pipeline.
#[derive(Debug, Clone)]
pub enum Element {
    /// A command with its arguments.
    Command {
        /// The command name as written.
        name: String,
        /// The arguments in order.
        args: Vec<Arg>,
    },
    /// An expression.
    Expr(Expr),
}

/// A command argument.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `-Name`.
    Param(String),
    /// A value.
    Value(Expr),
}

/// An expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A string.
    Str(String),
    /// A variable.
    Var(String),
    /// A bareword used as a command argument (a string to PowerShell).
    Bare(String),
    /// `expr.Member`.
    Member(Box<Expr>, String),
    /// `[type]expr`.
    Cast(String, Box<Expr>),
    /// `a, b, c`.
    List(Vec<Expr>),
    /// `@( statements )`.
    SubArray(Vec<Stmt>),
    /// `@{ key = value; ... }`, keys in order.
    Table(Vec<(String, Expr)>),
    /// `{ statements }`.
    Block(Rc<Vec<Stmt>>),
    /// `( pipeline )`.
    Paren(Vec<Element>),
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

/// Parses tokens into statements.
pub fn parse(toks: Vec<Token>) -> Result<Vec<Stmt>, ParseError> {
    let mut p = Parser { toks, pos: 0 };
    let stmts = p.statements()?;
    match p.peek() {
        None => Ok(stmts),
        Some(_) => Err(p.error(
            "Unexpected token in expression or statement.",
            "UnexpectedToken",
        )),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek2(&self) -> Option<&Tok> {
        self.toks.get(self.pos + 1).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |t| t.line)
    }

    fn error(&self, message: &str, id: &'static str) -> ParseError {
        let (line, col) = self
            .toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or((1, 1), |t| (t.line, t.col));
        ParseError {
            line,
            col,
            message: message.to_string(),
            id,
        }
    }

    fn expect(&mut self, want: Tok, message: &str, id: &'static str) -> Result<(), ParseError> {
        if self.peek() == Some(&want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(message, id))
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline | Tok::Semi)) {
            self.pos += 1;
        }
    }

    /// Statements up to the end or a closing `)` / `}` (not consumed).
    fn statements(&mut self) -> Result<Vec<Stmt>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_separators();
            match self.peek() {
                None | Some(Tok::RParen | Tok::RBrace) => return Ok(out),
                _ => {}
            }
            out.push(self.statement()?);
            match self.peek() {
                None | Some(Tok::Newline | Tok::Semi | Tok::RParen | Tok::RBrace) => {}
                Some(_) => {
                    return Err(self.error(
                        "Unexpected token in expression or statement.",
                        "UnexpectedToken",
                    ));
                }
            }
        }
    }

    fn statement(&mut self) -> Result<Stmt, ParseError> {
        if let (Some(Tok::Var(name)), Some(Tok::Eq)) = (self.peek(), self.peek2()) {
            let name = name.clone();
            self.pos += 2;
            return Ok(Stmt::Assign(name, self.expr()?));
        }
        let line = self.line();
        Ok(Stmt::Pipeline(self.pipeline()?, line))
    }

    fn pipeline(&mut self) -> Result<Vec<Element>, ParseError> {
        let mut elements = vec![self.element(true)?];
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            while self.peek() == Some(&Tok::Newline) {
                self.pos += 1;
            }
            elements.push(self.element(false)?);
        }
        Ok(elements)
    }

    fn element(&mut self, first: bool) -> Result<Element, ParseError> {
        match self.peek() {
            Some(Tok::Word(name)) => {
                let name = name.clone();
                self.pos += 1;
                let mut args = Vec::new();
                loop {
                    match self.peek() {
                        None
                        | Some(Tok::Newline | Tok::Semi | Tok::Pipe | Tok::RParen | Tok::RBrace) => {
                            break;
                        }
                        Some(Tok::Param(p)) => {
                            args.push(Arg::Param(p.clone()));
                            self.pos += 1;
                        }
                        Some(_) => args.push(Arg::Value(self.list(true)?)),
                    }
                }
                Ok(Element::Command { name, args })
            }
            Some(_) if first => Ok(Element::Expr(self.expr()?)),
            _ => Err(self.error(
                "Expressions are only allowed as the first element of a pipeline.",
                "ExpressionsMustBeFirstInPipeline",
            )),
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.list(false)
    }

    fn list(&mut self, command_mode: bool) -> Result<Expr, ParseError> {
        let first = self.unary(command_mode)?;
        if self.peek() != Some(&Tok::Comma) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek() == Some(&Tok::Comma) {
            self.pos += 1;
            items.push(self.unary(command_mode)?);
        }
        Ok(Expr::List(items))
    }

    fn unary(&mut self, command_mode: bool) -> Result<Expr, ParseError> {
        if let Some(Tok::Type(t)) = self.peek() {
            let t = t.clone();
            self.pos += 1;
            return Ok(Expr::Cast(t, Box::new(self.unary(command_mode)?)));
        }
        let mut e = self.primary(command_mode)?;
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            match self.next() {
                Some(Tok::Word(m)) => e = Expr::Member(Box::new(e), m),
                _ => {
                    return Err(self.error(
                        "Missing property name after reference operator.",
                        "MissingPropertyName",
                    ));
                }
            }
        }
        Ok(e)
    }

    fn primary(&mut self, command_mode: bool) -> Result<Expr, ParseError> {
        let missing = |p: &Parser| {
            p.error(
                "You must provide a value expression following this token.",
                "ExpectedValueExpression",
            )
        };
        match self.next() {
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Var(v)) => Ok(Expr::Var(v)),
            Some(Tok::Word(w)) if command_mode => Ok(Expr::Bare(w)),
            Some(Tok::AtParen) => {
                let body = self.statements()?;
                self.expect(
                    Tok::RParen,
                    "Missing closing ')' in subexpression.",
                    "MissingEndParenthesisInSubexpression",
                )?;
                Ok(Expr::SubArray(body))
            }
            Some(Tok::LParen) => {
                let body = self.pipeline()?;
                self.expect(
                    Tok::RParen,
                    "Missing closing ')' in expression.",
                    "MissingEndParenthesisInExpression",
                )?;
                Ok(Expr::Paren(body))
            }
            Some(Tok::LBrace) => {
                let body = self.statements()?;
                self.expect(
                    Tok::RBrace,
                    "Missing closing '}' in statement block.",
                    "MissingEndCurlyBrace",
                )?;
                Ok(Expr::Block(Rc::new(body)))
            }
            Some(Tok::AtBrace) => self.table(),
            _ => {
                self.pos -= 1;
                Err(missing(self))
            }
        }
    }

    fn table(&mut self) -> Result<Expr, ParseError> {
        let mut entries = Vec::new();
        loop {
            self.skip_separators();
            let key = match self.next() {
                Some(Tok::RBrace) => return Ok(Expr::Table(entries)),
                Some(Tok::Word(k) | Tok::Str(k)) => k,
                _ => {
                    self.pos -= 1;
                    return Err(self.error(
                        "Missing key before '=' in hash literal.",
                        "MissingEqualsInHashLiteral",
                    ));
                }
            };
            self.expect(
                Tok::Eq,
                "Missing '=' operator after key in hash literal.",
                "MissingEqualsInHashLiteral",
            )?;
            while self.peek() == Some(&Tok::Newline) {
                self.pos += 1;
            }
            entries.push((key, self.expr()?));
            match self.peek() {
                Some(Tok::Newline | Tok::Semi | Tok::RBrace) => {}
                _ => {
                    return Err(self.error(
                        "Missing statement after '=' in hash literal.",
                        "MissingStatementInHashLiteral",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::token::tokenize;
    use super::*;

    fn p(s: &str) -> Result<Vec<Stmt>, ParseError> {
        parse(tokenize(s)?)
    }

    #[test]
    fn agent_shapes_parse() {
        let s = p("$a='Stop'; $b='x'\nImport-Module 'Lync'\n\
                   Set-CsPersistentChatActiveServer -Identity 'i' -ActiveServers @{Replace='a','b'} -Force\n\
                   ConvertTo-Json -Compress -Depth 4 -InputObject @{S=@(Get-CsService -PersistentChatServer -PoolFqdn 'p' | \
                   Select-Object -Property @{n='I';e={[string]$_.Identity}},@{n='C';e={[string[]]$_.Computers}});P=@()}")
        .unwrap();
        assert_eq!(s.len(), 5);
        let Stmt::Pipeline(els, 3) = &s[3] else {
            panic!("{:?}", s[3])
        };
        let Element::Command { name, args } = &els[0] else {
            panic!()
        };
        assert_eq!(name, "Set-CsPersistentChatActiveServer");
        assert_eq!(args.len(), 5);
        assert!(
            matches!(&args[3], Arg::Value(Expr::Table(t)) if matches!(&t[0].1, Expr::List(l) if l.len() == 2))
        );
    }

    #[test]
    fn broken_scripts_are_parser_errors() {
        for bad in [
            "@(a",
            "@{a}",
            "@{a=}",
            "x | 'y'",
            "{a",
            "'a' 'b'",
            "$x = ",
            "Set-X -A @{Replace='a',}",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
