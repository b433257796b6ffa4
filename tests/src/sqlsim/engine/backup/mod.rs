//! BACKUP and RESTORE: [`format`](mod@format) is the file (a media set of backup sets), `create`
//! runs BACKUP DATABASE / LOG, `restore` runs RESTORE DATABASE / LOG (and `… WITH RECOVERY`),
//! `plan` checks where a RESTORE DATABASE puts each file (MOVE), `inspect` answers VERIFYONLY,
//! HEADERONLY and FILELISTONLY, `version` decides which releases read which backups (3169).
//!
//! LSN rules (pchat-dr.md §6.3-§6.4, simplified but consistent): every change takes the
//! database's next LSN; a BACKUP itself logs one record, so a full backup covers
//! `[FirstLSN = CheckpointLSN, LastLSN)` with `LastLSN = FirstLSN + 1`, and a log backup covers
//! `[end of the previous log backup, current LSN)`. The log chain starts with the first full
//! backup under FULL / BULK_LOGGED recovery and is broken by switching to SIMPLE. A restored
//! database stands at the backup's LastLSN; the next log backup must have
//! `FirstLSN <= that < LastLSN` (else 4305 gap / 4326 already applied).
//!
//! Locks are never held across I/O: a statement checks and snapshots under the state lock,
//! writes or reads the file (paced by the `delay backup|restore` fault, reporting progress to
//! `sys.dm_exec_requests`), then commits under the lock again. Every failure is the cause (or,
//! for RESTORE planning, every cause then 3119) followed by 3013 "… is terminating abnormally.",
//! as SQL Server sends them. None of them is allowed inside a user transaction (3021), except
//! HEADERONLY / FILELISTONLY, which scripts run through `INSERT … EXEC` (a transaction).

mod create;
pub mod format;
mod inspect;
mod plan;
mod restore;
pub mod version;

use std::collections::HashSet;

use super::eval::Params;
use super::{Engine, ResultItem, SessionInfo, StatementResult, errors};
use crate::sqlsim::sql::ast::{Expr, WithOption};
use crate::sqlsim::tokens::ServerMessage;

/// The evaluated WITH options of one BACKUP / RESTORE.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// Flags given (upper case).
    flags: HashSet<String>,
    /// `STATS [= n]` (plain STATS is 10).
    stats: Option<u32>,
    /// `NAME =`.
    name: Option<String>,
    /// `DESCRIPTION =`.
    description: Option<String>,
    /// `FILE =`: the backup set's position on the device (RESTORE reads set 1 without it).
    file: Option<i64>,
    /// `STANDBY =` undo file.
    standby: Option<String>,
    /// `MOVE logical TO physical`.
    moves: Vec<(String, String)>,
}

impl Settings {
    fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    /// The backup set a RESTORE reads.
    fn position(&self) -> i64 {
        self.file.unwrap_or(1)
    }
}

/// Why a BACKUP / RESTORE failed: the messages before 3013, in order (the first is the one
/// `@@ERROR` and single-error clients such as tiberius report).
#[derive(Debug)]
pub(crate) struct Refusal(Vec<ServerMessage>);

impl From<ServerMessage> for Refusal {
    fn from(m: ServerMessage) -> Self {
        Refusal(vec![m])
    }
}

/// A failed BACKUP / RESTORE: the causes, then 3013.
fn terminate(verb: &str, cause: impl Into<Refusal>) -> StatementResult {
    let mut causes = cause.into().0.into_iter();
    let first = causes.next().unwrap_or_else(|| errors::terminating(verb));
    let mut r = StatementResult::failed(first);
    r.items.extend(causes.map(ResultItem::Message));
    r.items.push(ResultItem::Message(errors::terminating(verb)));
    r
}

/// 3021 when the session has a transaction open (`BEGIN TRAN`, or a Transaction Manager
/// request): SQL Server runs no backup or restore inside one.
fn outside_transaction(session: &SessionInfo) -> Result<(), ServerMessage> {
    if session.tran_count > 0 {
        return Err(errors::backup_in_transaction());
    }
    Ok(())
}

/// The STATS messages for a finished operation ("10 percent processed." …).
fn stats_messages(stats: Option<u32>) -> Vec<ServerMessage> {
    match stats {
        Some(step) if step > 0 => (1..=100 / step.min(100))
            .map(|i| errors::percent_processed(i * step.min(100)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Pages of `bytes` (at least 1).
fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(format::PAGE).max(1)
}

/// Log pages a full backup reports besides its data pages.
const LOG_PAGES_IN_FULL: u64 = 2;

/// The set's size as msdb's `backupset.backup_size` shows it: the pages BACKUP reported
/// processing, × 8 KB.
pub fn set_bytes(header: &format::BackupHeader) -> u64 {
    let log = if header.backup_type == 2 {
        0
    } else {
        LOG_PAGES_IN_FULL
    };
    (pages(header.payload_len) + log) * format::PAGE
}

impl Engine {
    /// Evaluates a name, file or option value; NULL or a non-text value is error 102 near it,
    /// roughly what SQL Server says for a NULL device name.
    fn eval_text(
        &self,
        e: &Expr,
        session: &SessionInfo,
        params: &Params,
    ) -> Result<String, ServerMessage> {
        self.eval_scalar(e, session, params)?
            .to_text()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| errors::syntax_near("NULL"))
    }

    fn settings(
        &self,
        options: &[WithOption],
        session: &SessionInfo,
        params: &Params,
    ) -> Result<Settings, ServerMessage> {
        let mut s = Settings::default();
        for o in options {
            let value = |e: &Option<Expr>| -> Result<Option<String>, ServerMessage> {
                e.as_ref()
                    .map(|e| self.eval_text(e, session, params))
                    .transpose()
            };
            match o.name.as_str() {
                "STATS" => {
                    let n = match value(&o.value)? {
                        Some(v) => v.trim().parse().map_err(|_| errors::int_conversion(&v))?,
                        None => 10,
                    };
                    s.stats = Some(n);
                }
                "NAME" => s.name = value(&o.value)?,
                "DESCRIPTION" => s.description = value(&o.value)?,
                "FILE" => {
                    let v = value(&o.value)?.unwrap_or_default();
                    s.file = Some(v.trim().parse().map_err(|_| errors::int_conversion(&v))?);
                }
                "STANDBY" => s.standby = value(&o.value)?,
                "MOVE" => {
                    let logical = value(&o.value)?.unwrap_or_default();
                    let physical = value(&o.to)?.unwrap_or_default();
                    s.moves.push((logical, physical));
                }
                flag => {
                    s.flags.insert(flag.to_string());
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Engine, EngineOptions, ResultItem, SessionInfo};
    use crate::sqlsim::engine::eval::Params;
    use crate::sqlsim::engine::files::PathMap;

    fn messages(results: &[crate::sqlsim::engine::StatementResult]) -> Vec<(i32, String)> {
        results
            .iter()
            .flat_map(|r| &r.items)
            .filter_map(|i| match i {
                ResultItem::Message(m) => Some((m.number, m.message.clone())),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn backup_and_restore_send_sql_servers_messages() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(
            dir.path(),
            Some("SRV"),
            EngineOptions {
                db_size_mb: 1,
                log_backup_mb: 0,
                paths: PathMap::new(dir.path().join("fs")),
                ..EngineOptions::default()
            },
        )
        .unwrap();
        let (mut s, _kill) = engine
            .open_session("sa", false, "h", "app", "master")
            .unwrap();
        let run = async |sql: &str, s: &mut SessionInfo| {
            messages(&engine.execute_batch(s, sql, &Params::new(), "batch").await)
        };
        run("CREATE DATABASE mgc", &mut s).await;
        std::fs::create_dir_all(dir.path().join("fs/C/b")).unwrap();
        // The named-parameter sp_executesql form the agent sends.
        let m = run(
            r"EXEC sp_executesql N'BACKUP DATABASE @db TO DISK = @file WITH CHECKSUM, STATS = 25', N'@db sysname, @file nvarchar(260)', @db = N'mgc', @file = N'C:\b\mgc.bak'",
            &mut s,
        )
        .await;
        let numbers: Vec<i32> = m.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            numbers,
            vec![3211, 3211, 3211, 3211, 4035, 4035, 3014],
            "{m:?}"
        );
        assert_eq!(m[0].1, "25 percent processed.");
        assert!(
            m[4].1
                .starts_with("Processed 129 pages for database 'mgc', file 'mgc' on file 1."),
            "{m:?}"
        );
        assert!(
            m[6].1
                .starts_with("BACKUP DATABASE successfully processed 131 pages in ")
        );
        let m = run(r"RESTORE VERIFYONLY FROM DISK = N'C:\b\mgc.bak'", &mut s).await;
        assert_eq!(
            m,
            vec![(3262, "The backup set on file 1 is valid.".to_string())]
        );
        let m = run(r"RESTORE DATABASE mgc FROM DISK = N'C:\b\nope.bak'", &mut s).await;
        assert_eq!(m[0].0, 3201);
        assert!(
            m[0].1
                .contains("Operating system error 2(The system cannot find the file specified.)"),
            "{m:?}"
        );
        assert_eq!(
            m[1],
            (
                3013,
                "RESTORE DATABASE is terminating abnormally.".to_string()
            )
        );
        let m = run(
            r"RESTORE DATABASE mgc FROM DISK = N'C:\b\mgc.bak' WITH REPLACE",
            &mut s,
        )
        .await;
        assert_eq!(m.last().map(|x| x.0), Some(3014));
        assert!(
            m.last()
                .unwrap()
                .1
                .starts_with("RESTORE DATABASE successfully processed")
        );
    }
}
