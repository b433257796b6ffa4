//! ALTER DATABASE grammar: `SET SINGLE_USER | RESTRICTED_USER | MULTI_USER | ONLINE | OFFLINE |
//! READ_ONLY | READ_WRITE [WITH ROLLBACK IMMEDIATE | ROLLBACK AFTER n | NO_WAIT]`, `SET RECOVERY …` and the mirroring
//! clauses (`SET PARTNER OFF`, other PARTNER / WITNESS forms kept as text for the engine).

use super::ast::{AlterDatabase, Statement, Termination};
use super::lexer::TokenKind;
use super::parser::{PResult, Parser, is_reserved};

impl Parser<'_> {
    /// `ALTER DATABASE name SET option [WITH termination]`.
    pub(super) fn alter_database(&mut self) -> PResult<Statement> {
        use crate::sqlsim::engine::state::{DbState, RecoveryModel, UserAccess};
        self.expect_kw("DATABASE")?;
        let name = self.ident()?;
        self.expect_kw("SET")?;
        let word = match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Word(w)) => w.to_ascii_uppercase(),
            _ => return Err(self.error()),
        };
        self.pos += 1;
        let action = match word.as_str() {
            "SINGLE_USER" => AlterDatabase::UserAccess(UserAccess::SingleUser, self.termination()?),
            "RESTRICTED_USER" => {
                AlterDatabase::UserAccess(UserAccess::RestrictedUser, self.termination()?)
            }
            "MULTI_USER" => AlterDatabase::UserAccess(UserAccess::MultiUser, self.termination()?),
            "ONLINE" => AlterDatabase::State(DbState::Online, self.termination()?),
            "READ_ONLY" => AlterDatabase::ReadOnly(true, self.termination()?),
            "READ_WRITE" => AlterDatabase::ReadOnly(false, self.termination()?),
            "OFFLINE" => AlterDatabase::State(DbState::Offline, self.termination()?),
            "RECOVERY" => {
                let model = if self.eat_kw("FULL") {
                    RecoveryModel::Full
                } else if self.eat_kw("BULK_LOGGED") {
                    RecoveryModel::BulkLogged
                } else if self.eat_kw("SIMPLE") {
                    RecoveryModel::Simple
                } else {
                    return Err(self.error());
                };
                AlterDatabase::Recovery(model)
            }
            "PARTNER" | "WITNESS" => {
                if self.eat_kw("OFF") {
                    if word == "PARTNER" {
                        AlterDatabase::PartnerOff
                    } else {
                        AlterDatabase::PartnerOther("WITNESS OFF".into())
                    }
                } else {
                    // FAILOVER, FORCE_SERVICE_ALLOW_DATA_LOSS, SUSPEND, RESUME, SAFETY FULL|OFF, = 'tcp://…'
                    let mut clause = word.clone();
                    while let Some(t) = self.peek() {
                        match &t.kind {
                            TokenKind::Word(w)
                                if !is_reserved(w)
                                    || w.eq_ignore_ascii_case("FULL")
                                    || w.eq_ignore_ascii_case("OFF") =>
                            {
                                clause.push(' ');
                                clause.push_str(w);
                                self.pos += 1;
                            }
                            TokenKind::Symbol("=") => {
                                clause.push_str(" =");
                                self.pos += 1;
                            }
                            TokenKind::Str { value, .. } => {
                                clause.push_str(&format!(" '{value}'"));
                                self.pos += 1;
                            }
                            _ => break,
                        }
                    }
                    AlterDatabase::PartnerOther(clause)
                }
            }
            _ => {
                self.pos -= 1;
                return Err(self.error());
            }
        };
        Ok(Statement::AlterDatabase { name, action })
    }

    /// `WITH ROLLBACK IMMEDIATE | ROLLBACK AFTER n [SECONDS] | NO_WAIT`.
    fn termination(&mut self) -> PResult<Termination> {
        if !self.eat_kw("WITH") {
            return Ok(Termination::Wait);
        }
        if self.eat_kw("NO_WAIT") {
            return Ok(Termination::NoWait);
        }
        self.expect_kw("ROLLBACK")?;
        if self.eat_kw("IMMEDIATE") {
            return Ok(Termination::RollbackImmediate);
        }
        self.expect_kw("AFTER")?;
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Number(_)) => self.pos += 1,
            _ => return Err(self.error()),
        }
        self.eat_kw("SECONDS");
        Ok(Termination::RollbackImmediate)
    }
}
