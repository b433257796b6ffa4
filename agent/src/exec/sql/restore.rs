//! Restores (pchat-dr.md §6.4): `RESTORE DATABASE` with every file MOVEd to the instance's default
//! paths, `RESTORE LOG`, and `RESTORE DATABASE … WITH RECOVERY`.
//!
//! Before touching anything a restore probes: the file's SHA-256 must equal the one recorded when
//! it was written (DESIGN §9 invariant 3: refused otherwise, non-retryable); a database that is a
//! mirroring partner is refused (SQL Server would refuse too, less clearly: remove mirroring
//! first); an ONLINE database in use gets exclusive access with `SET SINGLE_USER WITH ROLLBACK
//! IMMEDIATE`, and the sessions ended are reported. After the restore the state is read back and
//! must match the recovery asked for; `MULTI_USER` is restored when the backup came back single-user.
//!
//! MOVE decision: each logical file keeps its file name from the backup and goes to the instance's
//! default data directory (log files: default log directory). Restoring where the backup's source
//! instance kept them would fail on a rebuilt host whose drives differ.
//!
//! Which set: the file's HEADERONLY decides. A restore reads the one set of the kind it restores
//! (`FILE = Position`; a file with several is refused, see `backup::one_set`) and asks for
//! `CHECKSUM` only when that set has backup checksums (pchat-dr.md §6.3: log shipping's `.trn`
//! files have none; SQL Server refuses the option on them with 3187 and still verifies checksums
//! that are present without it).
//!
//! Errors ([`super::retryable`]): 3101 (exclusive access) is retryable; 3159/3183/3187/3241/4305/
//! 4326 and a SHA-256 mismatch are not. `sql_error` on the wire carries the number (4305 = gap, 4326 = already applied).

use failback_proto::model::DatabaseName;
use failback_proto::pb;

use super::backup::{FULL, LOG, PercentSink, one_set, with_progress};
use super::tsql::{self, RecoveryClause};
use super::{Conn, SqlBackend, flag, outcome_unknown, text};
use crate::error::Error;
use crate::exec::files::Files;

fn refuse(message: String) -> Error {
    Error::Sql {
        number: None,
        message,
        retryable: false,
    }
}

/// `dir` + the file name of `physical`, with `dir`'s separator.
fn target_path(dir: &str, physical: &str) -> String {
    let name = physical.rsplit(['\\', '/']).next().unwrap_or(physical);
    let sep = if dir.contains('\\') { '\\' } else { '/' };
    format!("{}{sep}{name}", dir.trim_end_matches(['\\', '/']))
}

/// What a `RESTORE DATABASE` restores, from where, into which state.
#[derive(Debug, Clone, Copy)]
pub struct RestoreRequest<'a> {
    /// Target database.
    pub db: &'a DatabaseName,
    /// Backup file.
    pub file: &'a str,
    /// End state.
    pub recovery: &'a RecoveryClause,
    /// REPLACE.
    pub replace: bool,
    /// SHA-256 recorded when the file was written.
    pub expected_sha256: Option<&'a str>,
}

impl SqlBackend {
    /// Refuses unless `file` hashes to `expected` (when given).
    async fn check_sha(
        files: Option<&Files>,
        file: &str,
        expected: Option<&str>,
    ) -> Result<(), Error> {
        let Some(expected) = expected else {
            return Ok(());
        };
        // Test-only mutation (never in release builds): DESIGN §9.3's scenario.
        if failback_proto::test_break::broken(failback_proto::test_break::FB4_CHECKSUM) {
            return Ok(());
        }
        let f = files.ok_or_else(|| refuse(format!("cannot check the SHA-256 of '{file}': this agent has no [files] roots; not restoring")))?;
        let sum = f.checksum(file, |_| {}).await?;
        if !sum.sha256.eq_ignore_ascii_case(expected) {
            return Err(refuse(format!(
                "backup file '{file}' has SHA-256 {}, but {expected} was recorded when it was written; not restoring",
                sum.sha256
            )));
        }
        Ok(())
    }

    async fn state_of(
        conn: &mut Conn,
        db: &DatabaseName,
    ) -> Result<Option<(String, String)>, Error> {
        let rows = Self::rows(conn, &tsql::database_state(std::slice::from_ref(db))).await?;
        Ok(rows
            .first()
            .map(|r| (text(r, "state_desc"), text(r, "user_access_desc"))))
    }

    /// Refuses a database that takes part in mirroring.
    async fn refuse_mirrored(&self, db: &DatabaseName) -> Result<(), Error> {
        let m = self.mirroring_state(std::slice::from_ref(db)).await?;
        if let Some(info) = m.databases.first().filter(|i| i.mirrored) {
            return Err(refuse(format!(
                "database {db} is a mirroring partner ({} with {}); remove mirroring before restoring over it",
                info.role, info.partner_instance
            )));
        }
        Ok(())
    }

    /// Exclusive access for a restore over an ONLINE database that has other sessions.
    async fn take_exclusive(
        conn: &mut Conn,
        db: &DatabaseName,
    ) -> Result<Vec<pb::SessionInfo>, Error> {
        match Self::state_of(conn, db).await? {
            Some((state, _)) if state == "ONLINE" => {
                let sessions = Self::sessions_in(conn, db).await?;
                if !sessions.is_empty() {
                    Self::exec(conn, &tsql::single_user(db)).await?;
                }
                Ok(sessions)
            }
            _ => Ok(Vec::new()),
        }
    }

    fn expect_state(
        db: &DatabaseName,
        recovery: &RecoveryClause,
        state: &str,
    ) -> Result<(), Error> {
        let ok = match recovery {
            RecoveryClause::Recovery | RecoveryClause::Standby(_) => state == "ONLINE",
            RecoveryClause::NoRecovery => state == "RESTORING",
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Sql {
                number: None,
                message: format!(
                    "after the restore {db} is {state}, not the state asked for ({recovery:?})"
                ),
                retryable: false,
            })
        }
    }

    /// RESTORE DATABASE (FB-4; seeding a log-shipping secondary with NORECOVERY in FB-5).
    pub async fn restore_database(
        &self,
        req: RestoreRequest<'_>,
        files: Option<&Files>,
        sink: PercentSink,
    ) -> Result<pb::RestoreResult, Error> {
        let RestoreRequest {
            db,
            file,
            recovery,
            replace,
            expected_sha256,
        } = req;
        Self::check_sha(files, file, expected_sha256).await?;
        self.refuse_mirrored(db).await?;
        let info = self.describe_instance().await?;
        let mut conn = self.connect(true).await?;
        let headers = Self::headers(&mut conn, file).await?;
        let (set_header, set) = one_set(file, &headers, FULL)?;
        let set_header = set_header.clone();
        let entries = Self::file_list(&mut conn, file, set.position).await?;
        let moves: Vec<(String, String)> = entries
            .iter()
            .map(|e| {
                let dir = if e.r#type == "L" {
                    &info.default_log_path
                } else {
                    &info.default_data_path
                };
                (e.logical_name.clone(), target_path(dir, &e.physical_name))
            })
            .collect();
        let ended = Self::take_exclusive(&mut conn, db).await?;
        with_progress(
            self,
            &mut conn,
            &tsql::restore_database(db, file, set, recovery, replace, &moves),
            sink,
        )
        .await
        .map_err(|e| outcome_unknown("RESTORE DATABASE", e))?;
        let (state, access) = Self::state_of(&mut conn, db).await?.unwrap_or_default();
        Self::expect_state(db, recovery, &state)?;
        if state == "ONLINE" && access == "SINGLE_USER" {
            Self::exec(&mut conn, &tsql::multi_user(db)).await?;
        }
        Ok(pb::RestoreResult {
            database: db.to_string(),
            state,
            moves: moves
                .into_iter()
                .map(|(logical_name, physical_name)| pb::FileMove {
                    logical_name,
                    physical_name,
                })
                .collect(),
            header: Some(set_header),
            ended_sessions: ended,
            changed: true,
        })
    }

    /// RESTORE LOG (failover's FO-3; FB-5's verification cycle).
    pub async fn restore_log(
        &self,
        db: &DatabaseName,
        file: &str,
        recovery: &RecoveryClause,
        expected_sha256: Option<&str>,
        files: Option<&Files>,
        sink: PercentSink,
    ) -> Result<pb::RestoreResult, Error> {
        Self::check_sha(files, file, expected_sha256).await?;
        let mut conn = self.connect(true).await?;
        let headers = Self::headers(&mut conn, file).await?;
        let (set_header, set) = one_set(file, &headers, LOG)?;
        let set_header = set_header.clone();
        with_progress(
            self,
            &mut conn,
            &tsql::restore_log(db, file, set, recovery),
            sink,
        )
        .await
        .map_err(|e| outcome_unknown("RESTORE LOG", e))?;
        let (state, _) = Self::state_of(&mut conn, db).await?.unwrap_or_default();
        Self::expect_state(db, recovery, &state)?;
        Ok(pb::RestoreResult {
            database: db.to_string(),
            state,
            moves: Vec::new(),
            header: Some(set_header),
            ended_sessions: Vec::new(),
            changed: true,
        })
    }

    /// ALTER DATABASE … SET READ_ONLY / READ_WRITE; `changed = false` when it already is so.
    /// A database that is not ONLINE (RESTORING, OFFLINE) already takes no writes: READ_ONLY is
    /// then answered without a change, READ_WRITE refused (SQL Server would refuse the ALTER).
    pub async fn set_read_only(
        &self,
        db: &DatabaseName,
        read_only: bool,
    ) -> Result<pb::Done, Error> {
        let mut conn = self.connect(true).await?;
        let read = |rows: Vec<tiberius::Row>| {
            rows.first().map(|r| {
                (
                    text(r, "state_desc"),
                    r.try_get::<bool, _>("is_read_only")
                        .ok()
                        .flatten()
                        .unwrap_or(false),
                )
            })
        };
        let state =
            read(Self::rows(&mut conn, &tsql::database_state(std::slice::from_ref(db))).await?);
        let Some((state, current)) = state else {
            return Err(refuse(format!(
                "database {db} does not exist on this instance"
            )));
        };
        let wanted = if read_only { "READ_ONLY" } else { "READ_WRITE" };
        if current == read_only {
            return Ok(pb::Done {
                changed: false,
                detail: format!("{db} already {wanted}"),
            });
        }
        if state != "ONLINE" {
            // RESTORING / OFFLINE copies take no writes: the read-only goal already holds.
            if read_only {
                return Ok(pb::Done {
                    changed: false,
                    detail: format!("{db} is {state}: not writable"),
                });
            }
            return Err(refuse(format!(
                "database {db} is {state}, not ONLINE: cannot set it {wanted}"
            )));
        }
        Self::exec(&mut conn, &tsql::set_read_only(db, read_only)).await?;
        let after =
            read(Self::rows(&mut conn, &tsql::database_state(std::slice::from_ref(db))).await?);
        match after {
            Some((_, ro)) if ro == read_only => Ok(pb::Done {
                changed: true,
                detail: format!("{db} set {wanted}"),
            }),
            _ => Err(Error::Backend {
                message: format!("{db} is not {wanted} after ALTER DATABASE … SET {wanted}"),
                retryable: true,
            }),
        }
    }

    /// RESTORE DATABASE … WITH RECOVERY; `changed = false` when it is already ONLINE. A
    /// log-shipping STANDBY database reads ONLINE too (read-only between restores) and is
    /// recovered like a RESTORING one.
    pub async fn recover_database(&self, db: &DatabaseName) -> Result<pb::RestoreResult, Error> {
        let mut conn = self.connect(true).await?;
        let rows = Self::rows(&mut conn, &tsql::database_state(std::slice::from_ref(db))).await?;
        let Some(row) = rows.first() else {
            return Err(refuse(format!(
                "database {db} does not exist on this instance"
            )));
        };
        let state = text(row, "state_desc");
        if state == "ONLINE" && !flag(row, "is_in_standby") {
            return Ok(pb::RestoreResult {
                database: db.to_string(),
                state,
                changed: false,
                ..Default::default()
            });
        }
        Self::exec(&mut conn, &tsql::recover(db))
            .await
            .map_err(|e| outcome_unknown("RESTORE … WITH RECOVERY", e))?;
        let (state, _) = Self::state_of(&mut conn, db).await?.unwrap_or_default();
        Self::expect_state(db, &RecoveryClause::Recovery, &state)?;
        Ok(pb::RestoreResult {
            database: db.to_string(),
            state,
            changed: true,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::target_path;

    #[test]
    fn moves_keep_the_file_name_in_the_target_directory() {
        assert_eq!(
            target_path(r"E:\Data\", r"D:\Old\mgc.mdf"),
            r"E:\Data\mgc.mdf"
        );
        assert_eq!(
            target_path("/var/opt/mssql/data", "/x/y/mgc_log.ldf"),
            "/var/opt/mssql/data/mgc_log.ldf"
        );
    }
}
