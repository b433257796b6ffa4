//! Expression grammar of the parser: precedence climbing from OR down to primaries (literals,
//! variables, `@@globals`, function calls, `COUNT(*)`, column references, parentheses).

use super::ast::{BinOp, Expr};
use super::lexer::TokenKind;
use super::parser::{PResult, Parser, is_reserved};
use crate::sqlsim::types::Value;

impl Parser<'_> {
    pub(super) fn expr(&mut self) -> PResult<Expr> {
        let mut left = self.and_expr()?;
        while self.eat_kw("OR") {
            let right = self.and_expr()?;
            left = Expr::Binary {
                op: BinOp::Or,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let mut left = self.not_expr()?;
        while self.eat_kw("AND") {
            let right = self.not_expr()?;
            left = Expr::Binary {
                op: BinOp::And,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let left = self.additive()?;
        let op = match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Symbol("=")) => Some(BinOp::Eq),
            Some(TokenKind::Symbol("<>" | "!=")) => Some(BinOp::Ne),
            Some(TokenKind::Symbol("<")) => Some(BinOp::Lt),
            Some(TokenKind::Symbol("<=")) => Some(BinOp::Le),
            Some(TokenKind::Symbol(">")) => Some(BinOp::Gt),
            Some(TokenKind::Symbol(">=")) => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let right = self.additive()?;
            return Ok(Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            });
        }
        if self.eat_kw("IS") {
            let negated = self.eat_kw("NOT");
            self.expect_kw("NULL")?;
            return Ok(Expr::IsNull {
                expr: Box::new(left),
                negated,
            });
        }
        let negated = self.kw("NOT") && self.peek_at(1).is_some_and(|t| t.is_kw("IN"));
        if negated {
            self.pos += 1;
        }
        if self.eat_kw("IN") {
            self.expect_sym("(")?;
            let mut list = vec![self.expr()?];
            while self.eat_sym(",") {
                list.push(self.expr()?);
            }
            self.expect_sym(")")?;
            return Ok(Expr::InList {
                expr: Box::new(left),
                list,
                negated,
            });
        }
        Ok(left)
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.sym("+") {
                BinOp::Add
            } else if self.sym("-") {
                BinOp::Sub
            } else {
                return Ok(left);
            };
            self.pos += 1;
            let right = self.multiplicative()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut left = self.unary()?;
        loop {
            let op = if self.sym("*") {
                BinOp::Mul
            } else if self.sym("/") {
                BinOp::Div
            } else if self.sym("%") {
                BinOp::Mod
            } else {
                return Ok(left);
            };
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.eat_sym("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        self.primary()
    }

    pub(super) fn primary(&mut self) -> PResult<Expr> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error());
        };
        match tok.kind {
            TokenKind::Number(n) => {
                self.pos += 1;
                Ok(Expr::Literal(number_literal(&n)))
            }
            TokenKind::Str { value, .. } => {
                self.pos += 1;
                Ok(Expr::Literal(Value::Str(value)))
            }
            TokenKind::Binary(b) => {
                self.pos += 1;
                Ok(Expr::Literal(Value::Bytes(b)))
            }
            TokenKind::Variable(v) => {
                self.pos += 1;
                Ok(Expr::Variable(v))
            }
            TokenKind::Global(g) => {
                self.pos += 1;
                Ok(Expr::Global(g))
            }
            TokenKind::Symbol("(") if self.peek_at(1).is_some_and(|t| t.is_kw("SELECT")) => {
                self.pos += 1;
                let sel = self.select()?;
                self.expect_sym(")")?;
                Ok(Expr::Subquery(Box::new(sel)))
            }
            TokenKind::Symbol("(") => {
                self.pos += 1;
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            TokenKind::Word(w) if w.eq_ignore_ascii_case("NULL") => {
                self.pos += 1;
                Ok(Expr::Literal(Value::Null))
            }
            TokenKind::Word(ref w)
                if !is_reserved(w)
                    || w.eq_ignore_ascii_case("LEFT")
                    || w.eq_ignore_ascii_case("RIGHT") =>
            {
                if self.peek_at(1).is_some_and(|t| t.is_sym("(")) {
                    self.pos += 2;
                    if w.eq_ignore_ascii_case("COUNT") && self.eat_sym("*") {
                        self.expect_sym(")")?;
                        return Ok(Expr::CountStar);
                    }
                    let mut args = Vec::new();
                    if !self.eat_sym(")") {
                        loop {
                            args.push(self.expr()?);
                            if !self.eat_sym(",") {
                                break;
                            }
                        }
                        self.expect_sym(")")?;
                    }
                    return Ok(Expr::Function {
                        name: w.clone(),
                        args,
                    });
                }
                self.column_ref()
            }
            TokenKind::QuotedIdent(_) => self.column_ref(),
            _ => Err(self.error()),
        }
    }

    fn column_ref(&mut self) -> PResult<Expr> {
        let mut parts = vec![self.ident()?];
        while self.sym(".") && !self.peek_at(1).is_some_and(|t| t.is_sym("*")) {
            self.pos += 1;
            parts.push(self.ident()?);
        }
        Ok(Expr::Column(parts))
    }
}

/// Integer literals become `Int`; decimals become exact numerics; exponents become floats.
fn number_literal(text: &str) -> Value {
    if text.contains(['e', 'E']) {
        return text.parse().map_or(Value::Null, Value::Float);
    }
    if let Some((int, frac)) = text.split_once('.') {
        let digits = format!("{int}{frac}");
        return digits
            .parse::<i128>()
            .map_or(Value::Null, |v| Value::Numeric(v, frac.len().min(38) as u8));
    }
    text.parse::<i64>()
        .map(Value::Int)
        .or_else(|_| text.parse::<i128>().map(|v| Value::Numeric(v, 0)))
        .unwrap_or(Value::Null)
}
