//! Control flow and variables, the part of T-SQL that the SSMS-generated log shipping scripts
//! (pchat-dr.md §6.7) lean on: `DECLARE @a type [= value], …`, `SET @a = value`,
//! `IF condition statement | BEGIN … END [ELSE …]` and bare `BEGIN … END` blocks. Types in
//! DECLARE are parsed for shape (`nvarchar(128)`, `uniqueidentifier`) and not enforced: a
//! variable takes whatever value it is given, and starts as NULL.

use super::ast::{Expr, Parsed, Statement};
use super::lexer::TokenKind;
use super::parser::{PResult, Parser};

impl Parser<'_> {
    /// One statement with its span (statements inside IF / BEGIN … END).
    pub(super) fn parsed_statement(&mut self) -> PResult<Parsed> {
        while self.eat_sym(";") {}
        let start = self.peek().ok_or_else(|| self.error())?.start;
        let stmt = self.statement(false)?;
        let end = self
            .toks
            .get(self.pos.wrapping_sub(1))
            .map_or(start, |t| t.end);
        Ok(Parsed { stmt, start, end })
    }

    /// `DECLARE @a [AS] type [= value][, …]` (DECLARE already consumed).
    pub(super) fn declare(&mut self) -> PResult<Statement> {
        let mut vars = Vec::new();
        loop {
            let name = match self.peek().map(|t| &t.kind) {
                Some(TokenKind::Variable(v)) => v.clone(),
                _ => return Err(self.error()),
            };
            self.pos += 1;
            self.eat_kw("AS");
            // The type: a (possibly qualified) name with an optional `(n[, m] | max)`.
            self.ident()?;
            while self.eat_sym(".") {
                self.ident()?;
            }
            if self.eat_sym("(") {
                while !self.eat_sym(")") {
                    if self.peek().is_none() {
                        return Err(self.error());
                    }
                    self.pos += 1;
                }
            }
            let value = if self.eat_sym("=") {
                Some(self.expr()?)
            } else {
                None
            };
            vars.push((name, value));
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(Statement::Declare(vars))
    }

    /// `SET @a = value` (SET consumed, the variable is next).
    pub(super) fn set_variable(&mut self) -> PResult<Statement> {
        let name = match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Variable(v)) => v.clone(),
            _ => return Err(self.error()),
        };
        self.pos += 1;
        self.expect_sym("=")?;
        let value = self.expr()?;
        Ok(Statement::SetVariable { name, value })
    }

    /// `IF condition body [ELSE body]` (IF consumed).
    pub(super) fn if_statement(&mut self) -> PResult<Statement> {
        let condition: Expr = self.expr()?;
        let then = self.body()?;
        while self.sym(";") && self.peek_at(1).is_some_and(|t| t.is_kw("ELSE")) {
            self.pos += 1;
        }
        let otherwise = if self.eat_kw("ELSE") {
            self.body()?
        } else {
            Vec::new()
        };
        Ok(Statement::If {
            condition,
            then,
            otherwise,
        })
    }

    /// A statement or a `BEGIN … END` block, as IF and ELSE take them.
    fn body(&mut self) -> PResult<Vec<Parsed>> {
        let p = self.parsed_statement()?;
        Ok(match p.stmt {
            Statement::Block(inner) => inner,
            other => vec![Parsed { stmt: other, ..p }],
        })
    }

    /// The statements of a block up to its END (BEGIN consumed).
    pub(super) fn block(&mut self) -> PResult<Statement> {
        let mut inner = Vec::new();
        loop {
            while self.eat_sym(";") {}
            if self.eat_kw("END") {
                return Ok(Statement::Block(inner));
            }
            if self.peek().is_none() {
                return Err(self.error());
            }
            inner.push(self.parsed_statement()?);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlsim::sql::ast::Statement;
    use crate::sqlsim::sql::parser::parse_batch;

    #[test]
    fn ssms_script_shape() {
        let v = parse_batch(
            "DECLARE @id uniqueidentifier, @rc int = 0, @n nvarchar(128);\n\
             EXEC @rc = msdb.dbo.sp_x @a = 1, @b = @id OUTPUT;\n\
             IF (@@ERROR = 0 AND @rc = 0)\nBEGIN\n DECLARE @s int;\n EXEC sp_y @s = @s OUTPUT;\n SET @n = N'x'\nEND\n\
             ELSE SELECT 1;\nBEGIN TRANSACTION",
        )
        .unwrap();
        assert_eq!(v.len(), 4);
        assert!(matches!(&v[0].stmt, Statement::Declare(d) if d.len() == 3));
        let Statement::If {
            then, otherwise, ..
        } = &v[2].stmt
        else {
            panic!("{:?}", v[2].stmt)
        };
        assert_eq!(then.len(), 3);
        assert_eq!(otherwise.len(), 1);
        assert_eq!(v[3].stmt, Statement::BeginTran);
        assert!(parse_batch("IF 1 = 1 BEGIN SELECT 1").is_err());
    }
}
