//! FO-3: apply, in LSN order, every log backup in the copy folder not yet applied to the backup
//! `mgc` (`RESTORE LOG … WITH NORECOVERY`), stop at a gap, and record the data-loss window
//! (pchat-dr.md §2 step 3, §6.11, §7).
//!
//! - Reading a `.trn`: plain `RESTORE HEADERONLY` (`read_backup_header`), never VERIFYONLY and
//!   never `WITH CHECKSUM`: log shipping's backups (sqllogship.exe) carry no backup checksums and
//!   SQL Server refuses CHECKSUM on them (Msg 3187). The agent's RESTORE LOG adds CHECKSUM only
//!   where HEADERONLY says the set has checksums (pchat-dr.md §6.3). Treating a 3187 as "file
//!   missing" is how wave 1 recovered past every shipped log and reported a small loss window.
//! - Restore point: the header of the last restored file FO-1a recorded. When it is unknown (log
//!   shipping removed by an earlier run, or the file gone from the copy folder), SQL Server's own
//!   LSN check decides file by file: 4326 (already applied) skips a file, 4305 (too recent) is a
//!   gap.
//! - Candidates: `*.trn` in the copy folder not older by name stamp than the last restored file
//!   (see FO-2), their headers read; a header of another database or not a log backup
//!   (BackupType 2) is ignored and listed.
//! - **Holes**: a log backup known by name whose log cannot be read: a header SQL Server refuses
//!   (damaged, truncated: 3241, 3183, 3201…), or the copy job's last copied file absent from the
//!   copy folder. A hole newer by name stamp than the restore point reached (or without a stamp)
//!   is a **gap**, even when no later file exposes it by LSN: the log it holds would be lost
//!   silently. A hole older than the point reached held nothing the chain needed (the LSN check
//!   passed across it) and is only listed.
//! - Walk ([`super::chain`]): sorted by FirstLSN; `LastLSN <= point` skipped; `FirstLSN <= point
//!   < LastLSN` applied (op `restore-<first>-<last>`, with the SHA-256 FO-2 recorded when FO-2
//!   copied the file); `FirstLSN > point` is a gap: nothing beyond it is applied.
//! - **Gap** (fatal, for a person): the logs before it are applied and the database stays
//!   RESTORING. The message names the gap's file (the first log backup that could not be applied:
//!   the hole, or the file after a missing LSN range), the missing LSN range where known, and the
//!   loss window. To continue: put a readable copy of the missing file into the copy folder and
//!   start a new failover run (it resumes from SQL Server's restore point). To accept the loss:
//!   an approver starts a new failover run with `--accept-gap <file> --gap-reason "…"`
//!   ([`crate::runbook::decisions`]); FO-3 then stops at that gap without error, records the
//!   acceptance in `gap_accepted` and in the loss window, and FO-4 recovers. An accepted gap at a
//!   different file than the one found still stops the run.
//! - Output `loss_window` (read by `failbackctl report`; keep the keys): `last_restored_file`,
//!   `last_restored_lsn`, `last_restored_backup_time`, `last_backup_known_file`,
//!   `last_backup_known_time`, `window_seconds`, `files_missing`, `share_reachable` (+ `note`,
//!   and `accepted_gap` when a gap's loss was accepted). "Known" means a header was read (copy
//!   folder after FO-2); with the share unreachable the real window is larger and the note says
//!   so; an unreadable file's own log is not in `window_seconds` (its times are unknown).
//! - Probe: `mgc` already ONLINE (recovered) → not applicable; absent → abort.
//! - Verify: `mgc` is still RESTORING.
//!
//! Errors: agent unreachable → asked again with the same op id; a retryable error (also on a
//! header read) → new attempt (the new attempt's already applied files answer 4326 and are
//! skipped); a gap not accepted, a refused restore (checksum mismatch, damaged file) → abort the
//! pool's run.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::AgentId;
use failback_proto::pb;
use serde_json::{Value, json};

use super::chain::{self, Decision, LogFile, LossWindow, not_older, parse_lsn};
use super::fo2_copy_logs::list_logs;
use super::{Captured, describe_state, file_name, mgc_info, recovered};
use crate::config::RunbookConfig;
use crate::runbook::failback::{MGC, expect_output, op, sql};
use crate::runbook::records::AcceptedGap;
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
    /// The header could not be read (damaged, partial): a hole in the chain.
    Unreadable(String),
}

/// The header of `path`, read by the backup instance with a plain RESTORE HEADERONLY. A refusal
/// by SQL Server makes the file unreadable (a hole); a retryable failure (connection) is the
/// step's, so the engine tries again rather than declaring a gap.
async fn header(ctx: &StepCtx, agent: &AgentId, path: &str) -> Result<Header, StepError> {
    let out = match ctx
        .read(
            agent,
            op(pb::operation::Kind::ReadBackupHeader(
                pb::ReadBackupHeader {
                    file: path.to_string(),
                },
            )),
        )
        .await
    {
        Ok(o) => o,
        Err(e) if e.class == crate::runbook::ErrorClass::Fatal => {
            return Ok(Header::Unreadable(format!(
                "header unreadable: {}",
                e.message
            )));
        }
        Err(e) => return Err(e),
    };
    let v = expect_output!(out, Verify, "read_backup_header")?;
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

/// A log backup known by name whose log cannot be read (see the module doc).
struct Hole {
    path: String,
    why: String,
}

/// Where the chain stops: the gap's file (the first log backup that could not be applied) and
/// what is missing, for a person.
struct Stop {
    at: String,
    what: String,
}

impl Stop {
    /// The earliest, by name stamp, of the LSN gap's next file and the open holes (a hole right
    /// before the next file is usually the missing log itself). None: nothing stops the chain.
    fn of(gap: Option<&Gap>, open: &[Hole]) -> Option<Stop> {
        let from_gap = gap.map(|g| Stop {
            at: g.before.clone(),
            what: g.missing(),
        });
        let from_holes = open.iter().map(|h| Stop {
            at: h.path.clone(),
            what: format!("{} cannot be read ({})", h.path, h.why),
        });
        from_gap
            .into_iter()
            .chain(from_holes)
            .min_by(|a, b| stamp_order(file_name(&a.at), file_name(&b.at)))
    }
}

/// Name-stamp order; a name without a stamp sorts first (nothing can be placed before it).
fn stamp_order(a: &str, b: &str) -> std::cmp::Ordering {
    chain::stamp(a).cmp(&chain::stamp(b))
}

/// The files an accepted gap leaves unapplied: the gap's file and every readable or unreadable
/// file not applied after it.
fn not_applied(files: &[LogFile], open: &[Hole], at: &str, applied: &[Value]) -> Vec<String> {
    let done: Vec<&str> = applied
        .iter()
        .filter_map(|a| a.get("file").and_then(Value::as_str))
        .collect();
    let mut out: Vec<String> = files
        .iter()
        .map(|f| f.path.clone())
        .filter(|p| !done.contains(&p.as_str()))
        .filter(|p| stamp_order(file_name(p), file_name(at)).is_ge())
        .chain(open.iter().map(|h| h.path.clone()))
        .collect();
    out.sort_by(|a, b| stamp_order(file_name(a), file_name(b)));
    out.dedup();
    out
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
                "read_backup_header",
                "RESTORE HEADERONLY (no CHECKSUM) of the last restored log backup and of every newer one in the copy folder; order by FirstLSN",
            ),
            PlannedOp::new(
                &b.agent,
                "restore_log",
                format!(
                    "RESTORE LOG [{MGC}] FROM DISK = N'<file>' WITH FILE = <Position>, NORECOVERY (CHECKSUM only when the set has backup checksums) for each in order; stop at a gap (FirstLSN after the restore point, or an unreadable file newer than it), naming the file, unless the run accepted that gap (--accept-gap)"
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
        let mut holes: Vec<Hole> = Vec::new();
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
                Header::Unreadable(why) => holes.push(Hole {
                    path: f.path.clone(),
                    why,
                }),
                Header::Other(why) => ignored.push(json!({ "file": f.path, "reason": why })),
            }
        }
        let copied_name = file_name(&cap.last_copied_file).to_string();
        if !copied_name.is_empty()
            && !listing.iter().any(|f| file_name(&f.path) == copied_name)
            && (restored_name.is_empty()
                || (copied_name != restored_name && not_older(&copied_name, &restored_name)))
        {
            holes.push(Hole {
                path: cap.last_copied_file.clone(),
                why: "recorded as copied by the copy job, not in the copy folder".into(),
            });
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
                Err(e) if e.sql_error == Some(TOO_EARLY) => {
                    // Applied before (a previous attempt or run): SQL Server's restore point is
                    // at or past its LastLSN.
                    found_applied += 1;
                    if point.is_none_or(|p| p < f.last_lsn) {
                        point = Some(f.last_lsn);
                        exact = false;
                        last_restored = Some(f.clone());
                    }
                }
                Err(e) if e.sql_error == Some(TOO_RECENT) => {
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

        // Holes newer than the point reached are gaps even where no later file exposes them by
        // LSN; older ones held nothing the (LSN-checked) chain needed.
        let reached = last_restored
            .as_ref()
            .map(|r| file_name(&r.path).to_string());
        let (open, passed): (Vec<Hole>, Vec<Hole>) = holes.into_iter().partition(|h| {
            reached
                .as_deref()
                .is_none_or(|r| not_older(file_name(&h.path), r))
        });
        for h in &passed {
            ignored.push(json!({ "file": h.path, "reason": format!("{}; older than the restore point reached, so the chain did not need it", h.why) }));
        }
        let stop = Stop::of(gap.as_ref(), &open);
        let mut missing: Vec<String> = Vec::new();
        if let Some(g) = &gap {
            missing.push(g.missing());
        }
        missing.extend(open.iter().map(|h| format!("{} ({})", h.path, h.why)));
        let mut window = LossWindow {
            last_restored,
            last_known,
            files_missing: missing,
            share_reachable,
        }
        .to_record();
        let Some(stop) = stop else {
            return Ok(json!({
                "copy_dir": cap.copy_dir,
                "applied": applied,
                "already_applied": found_applied,
                "ignored": ignored,
                "loss_window": window,
            }));
        };
        let at_name = file_name(&stop.at).to_string();
        match ctx.accepted_gap() {
            Some(a) if a.file.eq_ignore_ascii_case(&at_name) => {
                let accepted = AcceptedGap {
                    file: a.file.clone(),
                    reason: a.reason.clone(),
                    accepted_by: a.accepted_by.clone(),
                    missing: stop.what.clone(),
                    not_applied: not_applied(&files, &open, &stop.at, &applied),
                };
                window.note = format!(
                    "{} The log from {at_name} on was not applied: {} accepted that loss ({}); the unreadable or missing files' own log is not counted in window_seconds.",
                    window.note, a.accepted_by, a.reason
                );
                window.accepted_gap = Some(accepted.clone());
                Ok(json!({
                    "copy_dir": cap.copy_dir,
                    "applied": applied,
                    "already_applied": found_applied,
                    "ignored": ignored,
                    "gap_accepted": accepted,
                    "loss_window": window,
                }))
            }
            accepted => {
                let mismatch = accepted.map_or_else(String::new, |a| {
                    format!(
                        " This run accepted the loss of a gap at {}, not at {at_name}: that acceptance does not cover this gap.",
                        a.file
                    )
                });
                Err(StepError::fatal(format!(
                    "gap in the log chain of {MGC} at {at_name}: {}; missing from the copy folder {}{}. Applied {} log backup(s) up to the gap; nothing beyond it was applied and {MGC} stays RESTORING.{mismatch} To continue: put a readable copy of the missing log backup(s) into the copy folder and start a new failover run. To accept the loss instead: an approver starts a new failover run with --accept-gap {at_name} --gap-reason \"why the loss is acceptable\"; FO-3 then stops at this gap and FO-4 recovers {MGC} without the log from {at_name} on. loss_window: {}",
                    stop.what,
                    cap.copy_dir,
                    if share_reachable {
                        format!(" and the share {}", cap.share)
                    } else {
                        format!(" (the share {} was unreachable)", cap.share)
                    },
                    applied.len(),
                    serde_json::to_string(&window).unwrap_or_default()
                )))
            }
        }
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
