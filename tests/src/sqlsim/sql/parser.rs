//! Statement recognition on tokens. A batch is parsed completely before anything runs, as SQL
//! Server compiles a batch before executing it, so a syntax error anywhere means nothing in the
//! batch executes. Statements may be separated by `;` or simply follow each other. A syntax error
//! names the token it stopped at, which the engine turns into error 102 (or 156 for a reserved
//! keyword), matching SQL Server's "Incorrect syntax near …" messages.

use super::ast::*;
use super::lexer::{LexError, Token, TokenKind, tokenize};

/// Why a batch could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The tokenizer failed.
    Lex(LexError),
    /// Syntax error near a token.
    Syntax {
        /// Token text as SQL Server quotes it.
        near: String,
        /// The token is a reserved keyword (error 156 instead of 102).
        keyword: bool,
    },
}

/// Reserved words that cannot be bare identifiers or aliases (a subset of T-SQL's list that covers
/// every word the parser gives meaning to).
const RESERVED: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BACKUP",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "CHECK",
    "COLUMN",
    "COMMIT",
    "CREATE",
    "CROSS",
    "DATABASE",
    "DECLARE",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DROP",
    "ELSE",
    "END",
    "EXEC",
    "EXECUTE",
    "EXISTS",
    "FOR",
    "FROM",
    "FULL",
    "GRANT",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INNER",
    "INSERT",
    "INTO",
    "IS",
    "JOIN",
    "KILL",
    "LEFT",
    "LIKE",
    "NOT",
    "NULL",
    "OF",
    "OFF",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "PROC",
    "PROCEDURE",
    "RESTORE",
    "RIGHT",
    "ROLLBACK",
    "SELECT",
    "SET",
    "TABLE",
    "TOP",
    "TRAN",
    "TRANSACTION",
    "TRUNCATE",
    "UNION",
    "UPDATE",
    "USE",
    "VALUES",
    "WHERE",
    "WHILE",
    "WITH",
];

/// True for a reserved keyword (case-insensitive).
pub fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(word))
}

pub(super) type PResult<T> = Result<T, ParseError>;

/// Cursor over the tokens of one batch.
pub(super) struct Parser<'a> {
    pub(super) src: &'a str,
    pub(super) toks: Vec<Token>,
    pub(super) pos: usize,
}

/// Parses a whole batch into statements.
pub fn parse_batch(src: &str) -> Result<Vec<Parsed>, ParseError> {
    let toks = tokenize(src).map_err(ParseError::Lex)?;
    let mut p = Parser { src, toks, pos: 0 };
    let mut out = Vec::new();
    while p.pos < p.toks.len() {
        if p.eat_sym(";") {
            continue;
        }
        let start = p.toks[p.pos].start;
        let stmt = p.statement(out.is_empty())?;
        let end = p.toks.get(p.pos.wrapping_sub(1)).map_or(start, |t| t.end);
        out.push(Parsed { stmt, start, end });
    }
    Ok(out)
}

impl<'a> Parser<'a> {
    pub(super) fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    pub(super) fn peek_at(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.pos + n)
    }

    /// A syntax error at the current token (or the last one at the end of the batch).
    pub(super) fn error(&self) -> ParseError {
        let tok = self.peek().or(self.toks.last());
        match tok {
            Some(t) => ParseError::Syntax {
                near: t.near_text(self.src),
                keyword: matches!(&t.kind, TokenKind::Word(w) if is_reserved(w)),
            },
            None => ParseError::Syntax {
                near: String::new(),
                keyword: false,
            },
        }
    }

    pub(super) fn kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_kw(kw))
    }

    pub(super) fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.kw(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    pub(super) fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    pub(super) fn sym(&self, s: &str) -> bool {
        self.peek().is_some_and(|t| t.is_sym(s))
    }

    pub(super) fn eat_sym(&mut self, s: &str) -> bool {
        let hit = self.sym(s);
        if hit {
            self.pos += 1;
        }
        hit
    }

    pub(super) fn expect_sym(&mut self, s: &str) -> PResult<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// An identifier: an unreserved word or a quoted identifier.
    pub(super) fn ident(&mut self) -> PResult<String> {
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Word(w)) if !is_reserved(w) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            Some(TokenKind::QuotedIdent(q)) => {
                let q = q.clone();
                self.pos += 1;
                Ok(q)
            }
            _ => Err(self.error()),
        }
    }

    /// A database name: like an identifier, but SQL Server also takes some keywords here
    /// (`USE master` never needs them, yet `CREATE DATABASE [x]` may be written with brackets).
    fn object_name(&mut self) -> PResult<ObjectName> {
        let mut parts = vec![self.ident()?];
        while self.eat_sym(".") {
            if self.sym(".") {
                parts.push(String::new());
                continue;
            }
            parts.push(self.ident()?);
        }
        Ok(ObjectName { parts })
    }

    pub(super) fn statement(&mut self, first: bool) -> PResult<Statement> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error());
        };
        let word = match &tok.kind {
            TokenKind::Word(w) => w.to_ascii_uppercase(),
            _ => return Err(self.error()),
        };
        match word.as_str() {
            "USE" => {
                self.pos += 1;
                Ok(Statement::Use(self.ident()?))
            }
            "SET"
                if matches!(
                    self.peek_at(1).map(|t| &t.kind),
                    Some(TokenKind::Variable(_))
                ) =>
            {
                self.pos += 1;
                self.set_variable()
            }
            "SET" => self.set_option(),
            "DECLARE" => {
                self.pos += 1;
                self.declare()
            }
            "IF" => {
                self.pos += 1;
                self.if_statement()
            }
            "SELECT" => Ok(Statement::Select(self.select()?)),
            "INSERT" => self.insert(),
            "CREATE" => {
                self.pos += 1;
                self.expect_kw("DATABASE")?;
                Ok(Statement::CreateDatabase(self.ident()?))
            }
            "DROP" => {
                self.pos += 1;
                self.expect_kw("DATABASE")?;
                let if_exists =
                    if self.kw("IF") && self.peek_at(1).is_some_and(|t| t.is_kw("EXISTS")) {
                        self.pos += 2;
                        true
                    } else {
                        false
                    };
                let mut names = vec![self.ident()?];
                while self.eat_sym(",") {
                    names.push(self.ident()?);
                }
                Ok(Statement::DropDatabase { names, if_exists })
            }
            "BACKUP" => self.backup(),
            "RESTORE" => self.restore(),
            "KILL" => {
                self.pos += 1;
                Ok(Statement::Kill(self.primary()?))
            }
            "ALTER" => {
                self.pos += 1;
                self.alter_database()
            }
            "EXEC" | "EXECUTE" => {
                self.pos += 1;
                self.exec()
            }
            "BEGIN" => {
                self.pos += 1;
                if !(self.eat_kw("TRAN") || self.eat_kw("TRANSACTION")) {
                    return self.block();
                }
                self.optional_tran_name();
                Ok(Statement::BeginTran)
            }
            "COMMIT" | "ROLLBACK" => {
                self.pos += 1;
                if self.eat_kw("TRAN") || self.eat_kw("TRANSACTION") {
                    self.optional_tran_name();
                } else {
                    self.eat_kw("WORK");
                }
                Ok(if word == "COMMIT" {
                    Statement::Commit
                } else {
                    Statement::Rollback
                })
            }
            // SQL Server runs a bare procedure name at the start of a batch as EXEC.
            _ if first && !is_reserved(&word) => self.exec_body(None),
            _ => Err(self.error()),
        }
    }

    fn optional_tran_name(&mut self) {
        if matches!(self.peek().map(|t| &t.kind), Some(TokenKind::Word(w)) if !is_reserved(w))
            || matches!(
                self.peek().map(|t| &t.kind),
                Some(TokenKind::QuotedIdent(_) | TokenKind::Variable(_))
            )
        {
            self.pos += 1;
        }
    }

    /// `SET option[, option] value` and `SET TRANSACTION ISOLATION LEVEL …`.
    fn set_option(&mut self) -> PResult<Statement> {
        self.pos += 1;
        if self.eat_kw("TRANSACTION") {
            self.expect_kw("ISOLATION")?;
            self.expect_kw("LEVEL")?;
            let level = if self.eat_kw("READ") {
                if self.eat_kw("UNCOMMITTED") || self.eat_kw("COMMITTED") {
                    "READ"
                } else {
                    return Err(self.error());
                }
            } else if self.eat_kw("REPEATABLE") {
                self.expect_kw("READ")?;
                "REPEATABLE READ"
            } else if self.eat_kw("SNAPSHOT") || self.eat_kw("SERIALIZABLE") {
                "OTHER"
            } else {
                return Err(self.error());
            };
            return Ok(Statement::SetOption(format!(
                "TRANSACTION ISOLATION LEVEL {level}"
            )));
        }
        let mut names = Vec::new();
        loop {
            match self.peek().map(|t| &t.kind) {
                Some(TokenKind::Word(w)) if !is_reserved(w) => {
                    names.push(w.to_ascii_uppercase());
                    self.pos += 1;
                }
                _ => return Err(self.error()),
            }
            if !self.eat_sym(",") {
                break;
            }
        }
        // The value: ON, OFF, a (signed) number, a word or a string.
        self.eat_sym("-");
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Word(_) | TokenKind::Number(_) | TokenKind::Str { .. }) => {
                self.pos += 1
            }
            _ => return Err(self.error()),
        }
        Ok(Statement::SetOption(names.join(",")))
    }

    fn exec(&mut self) -> PResult<Statement> {
        if self.eat_sym("(") {
            let e = self.expr()?;
            self.expect_sym(")")?;
            return Ok(Statement::ExecString(e));
        }
        let mut return_var = None;
        if let Some(TokenKind::Variable(v)) = self.peek().map(|t| &t.kind)
            && self.peek_at(1).is_some_and(|t| t.is_sym("="))
        {
            return_var = Some(v.clone());
            self.pos += 2;
        }
        self.exec_body(return_var)
    }

    fn exec_body(&mut self, return_var: Option<String>) -> PResult<Statement> {
        let procedure = self.object_name()?;
        let mut args = Vec::new();
        let starts_arg = |p: &Parser<'_>| match p.peek().map(|t| &t.kind) {
            Some(
                TokenKind::Variable(_)
                | TokenKind::Str { .. }
                | TokenKind::Number(_)
                | TokenKind::Binary(_),
            ) => true,
            Some(TokenKind::Symbol("-")) => true,
            Some(TokenKind::Word(w)) => {
                w.eq_ignore_ascii_case("NULL") || w.eq_ignore_ascii_case("DEFAULT")
            }
            _ => false,
        };
        if starts_arg(self) {
            loop {
                let mut name = None;
                if let Some(TokenKind::Variable(v)) = self.peek().map(|t| &t.kind)
                    && self.peek_at(1).is_some_and(|t| t.is_sym("="))
                {
                    name = Some(v.clone());
                    self.pos += 2;
                }
                let value = if self.eat_kw("DEFAULT") {
                    None
                } else {
                    Some(self.primary_operand()?)
                };
                let output = self.eat_kw("OUTPUT") || self.eat_kw("OUT");
                args.push(ExecArg {
                    name,
                    value,
                    output,
                });
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        Ok(Statement::Exec {
            return_var,
            procedure,
            args,
        })
    }

    /// A literal, variable or signed number (what EXEC arguments may be).
    fn primary_operand(&mut self) -> PResult<Expr> {
        if self.eat_sym("-") {
            return Ok(Expr::Neg(Box::new(self.primary()?)));
        }
        self.primary()
    }

    fn insert(&mut self) -> PResult<Statement> {
        self.pos += 1;
        self.eat_kw("INTO");
        let table = self.object_name()?;
        let columns = if self.eat_sym("(") {
            let mut cols = vec![self.ident()?];
            while self.eat_sym(",") {
                cols.push(self.ident()?);
            }
            self.expect_sym(")")?;
            Some(cols)
        } else {
            None
        };
        self.expect_kw("VALUES")?;
        let mut rows = Vec::new();
        loop {
            self.expect_sym("(")?;
            let mut row = vec![self.expr()?];
            while self.eat_sym(",") {
                row.push(self.expr()?);
            }
            self.expect_sym(")")?;
            rows.push(row);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(Statement::Insert(Insert {
            table,
            columns,
            rows,
        }))
    }

    pub(super) fn select(&mut self) -> PResult<Select> {
        self.pos += 1;
        // `SELECT [ALL | DISTINCT] [TOP n] …`.
        let distinct = self.eat_kw("DISTINCT");
        if !distinct {
            self.eat_kw("ALL");
        }
        let top = if self.eat_kw("TOP") {
            if self.eat_sym("(") {
                let e = self.expr()?;
                self.expect_sym(")")?;
                Some(e)
            } else {
                Some(self.primary()?)
            }
        } else {
            None
        };
        let mut items = Vec::new();
        loop {
            items.push(self.select_item()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        let mut from = None;
        let mut joins = Vec::new();
        if self.eat_kw("FROM") {
            from = Some(self.table_ref()?);
            loop {
                let inner = self.kw("INNER") && self.peek_at(1).is_some_and(|t| t.is_kw("JOIN"));
                if inner {
                    self.pos += 1;
                }
                if !self.eat_kw("JOIN") {
                    break;
                }
                let table = self.table_ref()?;
                self.expect_kw("ON")?;
                let on = self.expr()?;
                joins.push(Join { table, on });
            }
        }
        let filter = if self.eat_kw("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let e = self.expr()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                order_by.push((e, desc));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        Ok(Select {
            distinct,
            top,
            items,
            from,
            joins,
            filter,
            order_by,
        })
    }

    fn select_item(&mut self) -> PResult<SelectItem> {
        if self.eat_sym("*") {
            return Ok(SelectItem::Wildcard(None));
        }
        // alias.*
        if let (Some(TokenKind::Word(w) | TokenKind::QuotedIdent(w)), Some(dot), Some(star)) = (
            self.peek().map(|t| &t.kind),
            self.peek_at(1),
            self.peek_at(2),
        ) && dot.is_sym(".")
            && star.is_sym("*")
        {
            let q = w.clone();
            self.pos += 3;
            return Ok(SelectItem::Wildcard(Some(q)));
        }
        let expr = self.expr()?;
        let alias = self.alias(true)?;
        Ok(SelectItem::Expr { expr, alias })
    }

    /// `[AS] alias`; a string literal is allowed as a column alias, as in T-SQL.
    fn alias(&mut self, allow_string: bool) -> PResult<Option<String>> {
        let had_as = self.eat_kw("AS");
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Word(w)) if !is_reserved(w) => {
                let w = w.clone();
                self.pos += 1;
                Ok(Some(w))
            }
            Some(TokenKind::QuotedIdent(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(Some(w))
            }
            Some(TokenKind::Str { value, .. }) if allow_string => {
                let w = value.clone();
                self.pos += 1;
                Ok(Some(w))
            }
            _ if had_as => Err(self.error()),
            _ => Ok(None),
        }
    }

    fn table_ref(&mut self) -> PResult<TableRef> {
        let name = self.object_name()?;
        let alias = self.alias(false)?;
        // Table hints such as WITH (NOLOCK) are accepted and ignored.
        if self.kw("WITH") && self.peek_at(1).is_some_and(|t| t.is_sym("(")) {
            self.pos += 2;
            while !self.eat_sym(")") {
                if self.peek().is_none() {
                    return Err(self.error());
                }
                self.pos += 1;
            }
        }
        Ok(TableRef { name, alias })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlsim::types::Value;

    fn one(src: &str) -> Statement {
        let mut v = parse_batch(src).unwrap();
        assert_eq!(v.len(), 1, "{src}");
        v.remove(0).stmt
    }

    #[test]
    fn several_statements_with_and_without_semicolons() {
        let v = parse_batch("USE [master]; SET NOCOUNT ON SELECT @@VERSION\nselect 1;;").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].stmt, Statement::Use("master".into()));
        assert!(matches!(v[1].stmt, Statement::SetOption(_)));
    }

    #[test]
    fn select_shapes() {
        let s = one(
            "SELECT name, database_id AS id FROM sys.databases WHERE name IN (N'a', N'b') ORDER BY name DESC",
        );
        let Statement::Select(sel) = s else { panic!() };
        assert_eq!(sel.items.len(), 2);
        assert_eq!(sel.from.unwrap().name.display(), "sys.databases");
        assert!(matches!(sel.filter, Some(Expr::InList { .. })));
        assert_eq!(sel.order_by.len(), 1);
        let Statement::Select(sel) = one("select count(*) from [dbo].[Messages]") else {
            panic!()
        };
        assert!(matches!(
            &sel.items[0],
            SelectItem::Expr {
                expr: Expr::CountStar,
                ..
            }
        ));
    }

    #[test]
    fn insert_and_exec() {
        let s = one("INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'it''s')");
        let Statement::Insert(ins) = s else { panic!() };
        assert_eq!(ins.rows[0][2], Expr::Literal(Value::Str("it's".into())));
        assert!(matches!(
            one("ALTER DATABASE [mgc] SET SINGLE_USER WITH ROLLBACK IMMEDIATE"),
            Statement::AlterDatabase {
                action: AlterDatabase::UserAccess(_, Termination::RollbackImmediate),
                ..
            }
        ));
        assert_eq!(
            one("alter database mgc set partner off"),
            Statement::AlterDatabase {
                name: "mgc".into(),
                action: AlterDatabase::PartnerOff
            }
        );
        assert!(matches!(one("KILL 53"), Statement::Kill(_)));
        let s = one("EXEC @rc = master.dbo.xp_fileexist N'C:\\x', @out OUTPUT");
        let Statement::Exec {
            return_var,
            procedure,
            args,
        } = s
        else {
            panic!()
        };
        assert_eq!(return_var.as_deref(), Some("@rc"));
        assert_eq!(procedure.display(), "master.dbo.xp_fileexist");
        assert!(args[1].output);
        assert!(matches!(one("sp_who"), Statement::Exec { .. }));
    }

    #[test]
    fn syntax_errors_name_the_token() {
        assert_eq!(
            parse_batch("SELECT 1 foo bar"),
            Err(ParseError::Syntax {
                near: "bar".into(),
                keyword: false
            })
        );
        assert_eq!(
            parse_batch("SELECT FROM x"),
            Err(ParseError::Syntax {
                near: "FROM".into(),
                keyword: true
            })
        );
        assert_eq!(
            parse_batch("SELECT * FROM"),
            Err(ParseError::Syntax {
                near: "FROM".into(),
                keyword: true
            })
        );
    }
}
