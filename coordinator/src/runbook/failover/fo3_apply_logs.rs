//! FO-3: apply, in LSN order, every log backup in the copy folder not yet applied to the backup
//! `mgc` (`RESTORE LOG … WITH NORECOVERY`), stop at a gap, and record the data-loss window
//! (pchat-dr.md §2 step 3, §6.11, §7).
//!
//! - Restore point: the header (RESTORE HEADERONLY, through `verify_backup`) of the last restored
//!   file FO-1a recorded. When it is unknown (log shipping removed by an earlier run, or the
//!   file gone from the copy folder), SQL Server's own LSN check decides file by file: 4326
//!   (already applied) skips a file, 4305 (too recent) is a gap.
//! - Candidates: `*.trn` in the copy folder not older by name stamp than the last restored file
//!   (see FO-2), their headers read; a header of another database or not a log backup
//!   (BackupType 2) is ignored and listed; an unreadable one is listed as missing.
//! - Walk ([`super::chain`]): sorted by FirstLSN; `LastLSN <= point` skipped; `FirstLSN <= point
//!   < LastLSN` applied (op `restore-<first>-<last>`, with the SHA-256 FO-2 recorded when FO-2
//!   copied the file); `FirstLSN > point` is a **gap**: nothing beyond it is applied.
//! - **Gap** (fatal, for a person): the logs before it are applied and the database stays
//!   RESTORING; the message names the missing LSN range and the files on either side (a
//!   missing log backup's own name is recorded nowhere that survives: when the copy job recorded
//!   it as copied, that name is given too). To continue: put the missing file in the copy
//!   folder and start a new failover run (it resumes from SQL Server's restore point); to
//!   accept the loss: `RESTORE DATABASE [mgc] WITH RECOVERY` by hand, then a new run finishes
//!   FO-4..FO-7.
//! - Output `loss_window` (read by `failbackctl report`; keep the keys): `last_restored_file`,
//!   `last_restored_lsn`, `last_restored_backup_time`, `last_backup_known_file`,
//!   `last_backup_known_time`, `window_seconds`, `files_missing`, `share_reachable` (+ `note`).
//!   "Known" means a header was read (copy folder after FO-2); with the share unreachable the
//!   real window is larger and the note says so. On a gap the window is in the error message.
//! - Probe: `mgc` already ONLINE (recovered) → not applicable; absent → abort.
//! - Verify: `mgc` is still RESTORING.
//!
//! Errors: agent unreachable → asked again with the same op id; a retryable restore error → new
//! attempt (the new attempt's already applied files answer 4326 and are skipped); a gap, a
//! refused restore (checksum mismatch, damaged file) → abort the pool's run.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::AgentId;
use failback_proto::pb;
use serde_json::{Value, json};

use super::chain::{self, Decision, LogFile, LossWindow, not_older, parse_lsn};
use super::fo2_copy_logs::list_logs;
use super::{Captured, describe_state, file_name, mgc_info, recovered, sql_error_number};
use crate::config::RunbookConfig;
use crate::runbook::failback::{MGC, expect_output, op, sql};
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FO-3.
pub struct ApplyLogs;

/// SQL Server: the log backup starts after the restore point (a log backup is missing).
const TOO_RECENT: u32 = 4305;
/// SQL Server: the log backup ends before the restore point (already applied).
const TOO_EARLY: u32 = 4326;

/// What a file's header says.
enum Header {
    /// A log backup of `mgc`.
    Log(LogFile),
    /// Something else (another database, a full backup): ignored.
    Other(String),
    /// The header could not be read (damaged, partial): the file counts as missing.
    Unreadable(String),
}

/// The header of `path`, read by the backup instance.
async fn header(ctx: &StepCtx, agent: &AgentId, path: &str) -> Result<Header, StepError> {
    let out = match ctx
        .read(
            agent,
            op(pb::operation::Kind::VerifyBackup(pb::VerifyBackup {
                file: path.to_string(),
            })),
        )
        .await
    {
        Ok(o) => o,
        Err(e)
            if matches!(
                e.class,
                crate::runbook::ErrorClass::Retry | crate::runbook::ErrorClass::Fatal
            ) =>
        {
            return Ok(Header::Unreadable(format!(
                "header unreadable: {}",
                e.message
            )));
        }
        Err(e) => return Err(e),
    };
    let v = expect_output!(out, Verify, "verify_backup")?;
    let Some(h) = v.headers.into_iter().next() else {
        return Ok(Header::Unreadable("no backup set in the file".into()));
    };
    if !h.database.eq_ignore_ascii_case(MGC) {
        return Ok(Header::Other(format!(
            "a backup of {}, not {MGC}",
            h.database
        )));
    }
    if h.backup_type != 2 {
        return Ok(Header::Other(format!(
            "backup type {}, not a log backup",
            h.backup_type
        )));
    }
    match (parse_lsn(&h.first_lsn), parse_lsn(&h.last_lsn)) {
        (Some(first_lsn), Some(last_lsn)) => Ok(Header::Log(LogFile {
            path: path.to_string(),
            first_lsn,
            last_lsn,
            finish_unix_ms: h.finish_unix_ms,
        })),
        _ => Ok(Header::Unreadable(format!(
            "LSNs '{}'..'{}' are not numbers",
            h.first_lsn, h.last_lsn
        ))),
    }
}

/// Where a gap is, for the message and the loss window.
struct Gap {
    /// The restore point, or a lower bound of it (`exact` false), when known.
    from: Option<u128>,
    exact: bool,
    to: u128,
    after: Option<String>,
    before: String,
}

impl Gap {
    fn missing(&self) -> String {
        match (self.from, self.exact) {
            (Some(from), true) => format!(
                "the log backup(s) covering LSN {from} to {} (after {}, before {})",
                self.to,
                self.after.as_deref().unwrap_or("the restore point"),
                self.before
            ),
            (Some(from), false) => format!(
                "the log backup(s) between the database's restore point (LSN {from} or later) and LSN {} (before {})",
                self.to, self.before
            ),
            (None, _) => format!(
                "the log backup(s) between the database's restore point and LSN {} (before {})",
                self.to, self.before
            ),
        }
    }
}

#[async_trait]
impl Step for ApplyLogs {
    fn name(&self) -> &'static str {
        "fo3_apply_logs"
    }

    fn title(&self) -> &'static str {
        "FO-3 apply the unapplied log backups in LSN order (WITH NORECOVERY), stop at a gap, record the data-loss window"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.data_step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let Some(b) = pool.sql.get(&SqlRole::Backup) else {
            return Vec::new();
        };
        vec![
            PlannedOp::new(
                &b.agent,
                "verify_backup",
                "RESTORE HEADERONLY of the last restored log backup and of every newer one in the copy folder; order by FirstLSN",
            ),
            PlannedOp::new(
                &b.agent,
                "restore_log",
                format!(
                    "RESTORE LOG [{MGC}] FROM DISK = N'<file>' WITH NORECOVERY for each in order; stop at a gap (FirstLSN after the restore point), naming the missing LSN range"
                ),
            ),
            PlannedOp::new(
                &b.agent,
                "none",
                "records loss_window: last restored log backup (file, LSN, time) vs the newest log backup known, window_seconds, files_missing, share_reachable",
            ),
        ]
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        match mgc_info(ctx, &backup).await? {
            None => Err(StepError::fatal(format!(
                "there is no {MGC} on the backup instance"
            ))),
            Some(d) if recovered(&d) => Ok(Probe::NotApplicable(format!(
                "{MGC} is already ONLINE (recovered) on the backup instance: no log backup can be applied to it any more"
            ))),
            Some(_) => Ok(Probe::Needed),
        }
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let cap = Captured::from_run(ctx)?;
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let fo2 = ctx.prior("fo2_copy_logs").cloned().unwrap_or_default();
        let share_reachable = fo2
            .get("share_reachable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let shas: BTreeMap<String, String> = fo2
            .get("copied")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| {
                        Some((
                            file_name(c.get("file")?.as_str()?).to_string(),
                            c.get("sha256")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();

        let listing = list_logs(ctx, &backup, &cap.copy_dir).await?;
        let restored_name = file_name(&cap.last_restored_file).to_string();
        let mut start: Option<LogFile> = None;
        let mut missing: Vec<String> = Vec::new();
        let mut ignored: Vec<Value> = Vec::new();
        let mut files: Vec<LogFile> = Vec::new();
        for f in &listing {
            let name = file_name(&f.path);
            if !restored_name.is_empty() && !not_older(name, &restored_name) {
                continue;
            }
            match header(ctx, &backup, &f.path).await? {
                Header::Log(h) if name == restored_name => start = Some(h),
                Header::Log(h) => files.push(h),
                // The restored file's header only gives the restore point; without it SQL
                // Server decides file by file.
                Header::Unreadable(_) if name == restored_name => {}
                Header::Unreadable(why) => missing.push(format!("{} ({why})", f.path)),
                Header::Other(why) => ignored.push(json!({ "file": f.path, "reason": why })),
            }
        }
        let copied_name = file_name(&cap.last_copied_file).to_string();
        if !copied_name.is_empty()
            && !listing.iter().any(|f| file_name(&f.path) == copied_name)
            && (restored_name.is_empty()
                || (copied_name != restored_name && not_older(&copied_name, &restored_name)))
        {
            missing.push(format!(
                "{} (recorded as copied by the copy job, not in the copy folder)",
                cap.last_copied_file
            ));
        }
        chain::sort(&mut files);
        let last_known = files
            .iter()
            .chain(start.iter())
            .max_by_key(|f| (f.last_lsn, f.finish_unix_ms))
            .cloned();

        // `exact`: `point` is the restore point (from FO-1a's file or our own restores); after
        // a 4326 it is only a lower bound (SQL Server's point is at or past that file), and a
        // file after it is tried rather than declared a gap: SQL Server decides.
        let mut point = start.as_ref().map(|s| s.last_lsn);
        let mut exact = point.is_some();
        let mut last_restored = start.clone();
        let mut applied: Vec<Value> = Vec::new();
        let mut found_applied = 0usize;
        let mut gap: Option<Gap> = None;
        for f in &files {
            match chain::decide(point, f) {
                Decision::AlreadyApplied => {
                    found_applied += 1;
                    continue;
                }
                Decision::Gap { .. } if !exact => {}
                Decision::Gap { from, to } => {
                    gap = Some(Gap {
                        from: Some(from),
                        exact: true,
                        to,
                        after: last_restored.as_ref().map(|r| r.path.clone()),
                        before: f.path.clone(),
                    });
                    break;
                }
                Decision::Apply => {}
            }
            let name = file_name(&f.path);
            let r = ctx
                .act(
                    &backup,
                    &format!("restore-{}-{}", f.first_lsn, f.last_lsn),
                    op(pb::operation::Kind::RestoreLog(pb::RestoreLog {
                        database: MGC.into(),
                        file: f.path.clone(),
                        recovery: pb::RecoveryMode::Norecovery as i32,
                        standby_file: String::new(),
                        expected_sha256: shas.get(name).cloned().unwrap_or_default(),
                    })),
                    ctx.config.data_step_timeout,
                )
                .await;
            match r {
                Ok(out) => {
                    let r = expect_output!(out, Restore, "restore_log")?;
                    applied.push(json!({ "file": f.path, "first_lsn": f.first_lsn.to_string(), "last_lsn": f.last_lsn.to_string(), "state": r.state }));
                    point = Some(f.last_lsn);
                    exact = true;
                    last_restored = Some(f.clone());
                }
                Err(e) if sql_error_number(&e) == Some(TOO_EARLY) => {
                    // Applied before (a previous attempt or run): SQL Server's restore point is
                    // at or past its LastLSN.
                    found_applied += 1;
                    if point.is_none_or(|p| p < f.last_lsn) {
                        point = Some(f.last_lsn);
                        exact = false;
                        last_restored = Some(f.clone());
                    }
                }
                Err(e) if sql_error_number(&e) == Some(TOO_RECENT) => {
                    gap = Some(Gap {
                        from: point,
                        exact,
                        to: f.first_lsn,
                        after: last_restored.as_ref().map(|r| r.path.clone()),
                        before: f.path.clone(),
                    });
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(g) = &gap {
            missing.insert(0, g.missing());
        }
        let window = LossWindow {
            last_restored,
            last_known,
            files_missing: missing,
            share_reachable,
        };
        if let Some(g) = gap {
            return Err(StepError::fatal(format!(
                "gap in the log chain of {MGC}: {}, missing from the copy folder {}{}. Applied {} log backup(s) up to the gap; nothing beyond it was applied and {MGC} stays RESTORING. Put the missing log backup(s) into the copy folder and start a new failover run, or accept the loss: RESTORE DATABASE [{MGC}] WITH RECOVERY by hand, then a new run finishes the failover. loss_window: {}",
                g.missing(),
                cap.copy_dir,
                if share_reachable {
                    format!(" and the share {}", cap.share)
                } else {
                    format!(" (the share {} was unreachable)", cap.share)
                },
                applied.len(),
                window.to_json()
            )));
        }
        Ok(json!({
            "copy_dir": cap.copy_dir,
            "applied": applied,
            "already_applied": found_applied,
            "ignored": ignored,
            "loss_window": window.to_json(),
        }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        match mgc_info(ctx, &backup).await? {
            Some(d) if !recovered(&d) => {}
            other => {
                return Err(StepError::fatal(format!(
                    "{MGC} on the backup instance is {} after applying the log backups, not RESTORING",
                    other.map_or_else(|| "absent".into(), |d| describe_state(&d))
                )));
            }
        }
        Ok(output)
    }
}
