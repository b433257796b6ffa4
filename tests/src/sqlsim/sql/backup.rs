//! BACKUP and RESTORE grammar. SQL Server lets the database name and every file or option value
//! be a `@variable`, which is how the agent sends them through sp_executesql (DESIGN.md §3), so
//! each of those positions parses to an [`Expr`] that the engine evaluates. Options are checked
//! against the list SQL Server accepts for the statement (an unknown one is error 102 here, as
//! there); whether an accepted option makes sense for the backup at hand is the engine's call.

use super::ast::{Backup, BackupKind, Expr, Restore, RestoreKind, Statement, WithOption};
use super::lexer::TokenKind;
use super::parser::{PResult, Parser};
use crate::sqlsim::types::Value;

/// BACKUP options without a value.
const BACKUP_FLAGS: &[&str] = &[
    "FORMAT",
    "NOFORMAT",
    "INIT",
    "NOINIT",
    "SKIP",
    "NOSKIP",
    "CHECKSUM",
    "NO_CHECKSUM",
    "COMPRESSION",
    "NO_COMPRESSION",
    "COPY_ONLY",
    "CONTINUE_AFTER_ERROR",
    "STOP_ON_ERROR",
    "UNLOAD",
    "NOUNLOAD",
    "REWIND",
    "NOREWIND",
    "NORECOVERY",
    "NO_TRUNCATE",
];

/// BACKUP options with `= value` (STATS alone means 10).
const BACKUP_VALUED: &[&str] = &[
    "STATS",
    "NAME",
    "DESCRIPTION",
    "MEDIANAME",
    "MEDIADESCRIPTION",
    "BUFFERCOUNT",
    "MAXTRANSFERSIZE",
    "BLOCKSIZE",
    "EXPIREDATE",
    "RETAINDAYS",
    "STANDBY",
];

/// RESTORE options without a value.
const RESTORE_FLAGS: &[&str] = &[
    "REPLACE",
    "RECOVERY",
    "NORECOVERY",
    "CHECKSUM",
    "NO_CHECKSUM",
    "CONTINUE_AFTER_ERROR",
    "STOP_ON_ERROR",
    "UNLOAD",
    "NOUNLOAD",
    "REWIND",
    "NOREWIND",
    "RESTRICTED_USER",
    "KEEP_REPLICATION",
    "KEEP_CDC",
    "LOADHISTORY",
];

/// RESTORE options with `= value`.
const RESTORE_VALUED: &[&str] = &[
    "FILE",
    "STATS",
    "STANDBY",
    "BUFFERCOUNT",
    "MAXTRANSFERSIZE",
    "BLOCKSIZE",
    "MEDIANAME",
    "PASSWORD",
    "MEDIAPASSWORD",
];

fn listed(list: &[&str], word: &str) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(word))
}

impl Parser<'_> {
    /// `BACKUP DATABASE | LOG name TO DISK = file [, DISK = file] [WITH …]`.
    pub(super) fn backup(&mut self) -> PResult<Statement> {
        self.pos += 1;
        let kind = if self.eat_kw("DATABASE") {
            BackupKind::Database
        } else if self.eat_kw("LOG") {
            BackupKind::Log
        } else {
            return Err(self.error());
        };
        let database = self.name_or_variable()?;
        self.expect_kw("TO")?;
        let disks = self.devices()?;
        let options = self.with_options(BACKUP_FLAGS, BACKUP_VALUED, false)?;
        Ok(Statement::Backup(Backup {
            kind,
            database,
            disks,
            options,
        }))
    }

    /// `RESTORE DATABASE | LOG name [FROM DISK = file] [WITH …]` and
    /// `RESTORE VERIFYONLY | HEADERONLY | FILELISTONLY FROM DISK = file [WITH …]`.
    pub(super) fn restore(&mut self) -> PResult<Statement> {
        self.pos += 1;
        let word = match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Word(w)) => w.to_ascii_uppercase(),
            _ => return Err(self.error()),
        };
        let kind = match word.as_str() {
            "DATABASE" => RestoreKind::Database,
            "LOG" => RestoreKind::Log,
            "VERIFYONLY" => RestoreKind::VerifyOnly,
            "HEADERONLY" => RestoreKind::HeaderOnly,
            "FILELISTONLY" => RestoreKind::FileListOnly,
            _ => return Err(self.error()),
        };
        self.pos += 1;
        let database = match kind {
            RestoreKind::Database | RestoreKind::Log => Some(self.name_or_variable()?),
            _ => None,
        };
        let disks = if self.eat_kw("FROM") {
            self.devices()?
        } else if database.is_none() {
            // The inspection forms always read a device.
            return Err(self.error());
        } else {
            Vec::new()
        };
        let options = self.with_options(RESTORE_FLAGS, RESTORE_VALUED, true)?;
        Ok(Statement::Restore(Restore {
            kind,
            database,
            disks,
            options,
        }))
    }

    /// A database name as an identifier (turned into a string literal) or a `@variable`.
    fn name_or_variable(&mut self) -> PResult<Expr> {
        if let Some(TokenKind::Variable(v)) = self.peek().map(|t| &t.kind) {
            let v = v.clone();
            self.pos += 1;
            return Ok(Expr::Variable(v));
        }
        Ok(Expr::Literal(Value::Str(self.ident()?)))
    }

    /// A string literal or a variable (file names, option values).
    fn string_or_variable(&mut self) -> PResult<Expr> {
        match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Variable(v)) => {
                let e = Expr::Variable(v.clone());
                self.pos += 1;
                Ok(e)
            }
            Some(TokenKind::Str { value, .. }) => {
                let e = Expr::Literal(Value::Str(value.clone()));
                self.pos += 1;
                Ok(e)
            }
            _ => Err(self.error()),
        }
    }

    /// `DISK = file [, DISK = file]…`.
    fn devices(&mut self) -> PResult<Vec<Expr>> {
        let mut out = Vec::new();
        loop {
            self.expect_kw("DISK")?;
            self.expect_sym("=")?;
            out.push(self.string_or_variable()?);
            let more = self.sym(",") && self.peek_at(1).is_some_and(|t| t.is_kw("DISK"));
            if !more {
                return Ok(out);
            }
            self.pos += 1;
        }
    }

    /// `[WITH option [, option]…]`.
    fn with_options(
        &mut self,
        flags: &[&str],
        valued: &[&str],
        allow_move: bool,
    ) -> PResult<Vec<WithOption>> {
        let mut out = Vec::new();
        if !self.eat_kw("WITH") {
            return Ok(out);
        }
        loop {
            let word = match self.peek().map(|t| &t.kind) {
                Some(TokenKind::Word(w)) => w.to_ascii_uppercase(),
                _ => return Err(self.error()),
            };
            if allow_move && word == "MOVE" {
                self.pos += 1;
                let logical = self.string_or_variable()?;
                self.expect_kw("TO")?;
                let physical = self.string_or_variable()?;
                out.push(WithOption {
                    name: word,
                    value: Some(logical),
                    to: Some(physical),
                });
            } else if listed(flags, &word) {
                self.pos += 1;
                out.push(WithOption {
                    name: word,
                    value: None,
                    to: None,
                });
            } else if listed(valued, &word) {
                self.pos += 1;
                let value = if self.eat_sym("=") {
                    Some(match self.peek().map(|t| &t.kind) {
                        Some(TokenKind::Variable(_) | TokenKind::Str { .. }) => {
                            self.string_or_variable()?
                        }
                        _ => self.primary()?,
                    })
                } else if word == "STATS" {
                    None
                } else {
                    return Err(self.error());
                };
                out.push(WithOption {
                    name: word,
                    value,
                    to: None,
                });
            } else {
                return Err(self.error());
            }
            if !self.eat_sym(",") {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse_batch;
    use super::*;

    fn one(src: &str) -> Statement {
        let mut v = parse_batch(src).unwrap();
        assert_eq!(v.len(), 1, "{src}");
        v.remove(0).stmt
    }

    #[test]
    fn backup_text_and_parameter_forms() {
        let Statement::Backup(b) = one(
            "BACKUP DATABASE [mgc] TO DISK = N'\\\\fs\\ls\\mgc.bak' WITH FORMAT, INIT, CHECKSUM, COMPRESSION, STATS = 10, NAME = N'n', DESCRIPTION = N'd'",
        ) else {
            panic!()
        };
        assert_eq!(b.kind, BackupKind::Database);
        assert_eq!(b.database, Expr::Literal(Value::Str("mgc".into())));
        assert_eq!(b.options.len(), 7);
        let Statement::Backup(b) =
            one("BACKUP LOG @db TO DISK = @file WITH CHECKSUM, STATS, COPY_ONLY")
        else {
            panic!()
        };
        assert_eq!(b.database, Expr::Variable("@db".into()));
        assert_eq!(b.disks, vec![Expr::Variable("@file".into())]);
        assert!(parse_batch("BACKUP DATABASE mgc TO DISK = N'x' WITH BOGUS").is_err());
    }

    #[test]
    fn restore_forms() {
        let Statement::Restore(r) = one(
            "RESTORE DATABASE [mgc] FROM DISK = N'x.bak' WITH FILE = 1, REPLACE, RECOVERY, CHECKSUM, STATS = 10, MOVE N'mgc' TO N'D:\\mgc.mdf', MOVE N'mgc_log' TO N'L:\\mgc_log.ldf'",
        ) else {
            panic!()
        };
        assert_eq!(r.kind, RestoreKind::Database);
        assert_eq!(r.options.iter().filter(|o| o.name == "MOVE").count(), 2);
        let Statement::Restore(r) = one("RESTORE DATABASE mgc WITH RECOVERY") else {
            panic!()
        };
        assert!(r.disks.is_empty());
        let Statement::Restore(r) = one("RESTORE HEADERONLY FROM DISK = @f") else {
            panic!()
        };
        assert_eq!(r.kind, RestoreKind::HeaderOnly);
        assert!(parse_batch("RESTORE HEADERONLY WITH FILE = 1").is_err());
        assert!(matches!(
            one("RESTORE LOG mgc FROM DISK = N'a.trn' WITH STANDBY = N'u.tuf'"),
            Statement::Restore(Restore {
                kind: RestoreKind::Log,
                ..
            })
        ));
    }
}
