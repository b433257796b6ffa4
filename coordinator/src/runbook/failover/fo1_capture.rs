//! FO-1a: record the backup instance's log shipping metadata *before* anything removes it
//! (pchat-dr.md §2, automation notes; §6.8). Read only.
//!
//! `sp_delete_log_shipping_secondary_database` (FO-1b) deletes the copy and restore jobs and the
//! msdb rows that say where the share and the copy folder are and which file was copied and
//! restored last. This step reads them first and its output — persisted by the engine before
//! FO-1b may start — is what FO-2 and FO-3 work from:
//! `primary_server`, `share` (backup_source_directory), `copy_dir`
//! (backup_destination_directory), `last_copied_file` / `_date`, `last_restored_file` / `_date`,
//! the job ids, `standby`, and the monitor rows for `mgc`.
//!
//! - Probe: always needed (a read; every attempt records the current values).
//! - Action: `log_shipping_status` and `database_state` on the backup instance; the primary
//!   check of [`super::primary_not_serving`].
//! - Decisions: `mgc` absent on the backup instance aborts (nothing to fail over to). `mgc` not
//!   a secondary any more (a second run after a failed first one) is recorded as
//!   `configured: false` and the topology's share and copy folder are used. When msdb and the
//!   topology name different folders, msdb wins (the jobs used it) and both are recorded.
//! - Also records `loss_window_estimate` for whoever approves FO-1b: the last restored file
//!   against the newest `*.trn` on the share and in the copy folder, by the backup job's UTC
//!   name stamps (two listings, no header read; FO-3 records the exact window from the
//!   headers). The plan cannot show it (a plan sends nothing to agents); a run started without
//!   `--yes` stops for approval right after this step, with the estimate on record
//!   (`failbackctl status`). Listing errors only make the estimate say so.
//! - Verify: nothing more to check (the output is the evidence).
//!
//! Errors: reads are asked again while the backup agent is unreachable (until the step
//! timeout); retryable agent errors → new attempt (3 in all); `mgc` absent, or a primary that
//! is visibly still serving `mgc` → abort the pool's run.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::chain::{stamp, stamp_seconds};
use super::fo2_copy_logs::list_logs;
use super::{describe_state, file_name, mgc_info, primary_not_serving, secondary_config};
use crate::config::RunbookConfig;
use crate::runbook::failback::{MGC, sql};
use crate::runbook::{ErrorClass, PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};
use failback_proto::model::AgentId;

/// The step name (FO-2/FO-3 read its output).
pub const NAME: &str = "fo1_capture";

/// FO-1a.
pub struct CaptureLogShipping;

/// The loss window as file names tell it (see the module doc).
async fn estimate(
    ctx: &StepCtx,
    backup: &AgentId,
    share: &str,
    copy_dir: &str,
    last_restored_file: &str,
) -> Result<Value, StepError> {
    let mut names: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut share_reachable = false;
    for (dir, is_share) in [(copy_dir, false), (share, true)] {
        match list_logs(ctx, backup, dir).await {
            Ok(files) => {
                share_reachable |= is_share;
                names.extend(files.iter().map(|f| file_name(&f.path).to_string()));
            }
            Err(e) if matches!(e.class, ErrorClass::Retry | ErrorClass::Fatal) => {
                errors.push(e.message);
            }
            Err(e) => return Err(e),
        }
    }
    names.sort();
    names.dedup();
    let restored = file_name(last_restored_file);
    let restored_stamp = stamp(restored);
    let pending: Vec<&String> = names
        .iter()
        .filter(|n| match (stamp(n), restored_stamp) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            _ => false,
        })
        .collect();
    let newest = names
        .iter()
        .filter(|n| stamp(n).is_some())
        .max_by_key(|n| stamp(n));
    let window = match (newest.and_then(|n| stamp(n)), restored_stamp) {
        (Some(a), Some(b)) => stamp_seconds(a)
            .zip(stamp_seconds(b))
            .map(|(a, b)| (a - b).max(0)),
        _ => None,
    };
    Ok(json!({
        "last_restored_file": last_restored_file,
        "newest_log_backup": newest,
        "log_backups_not_restored": pending.len(),
        "window_seconds_estimate": window,
        "share_reachable": share_reachable,
        "errors": errors,
        "basis": "backup job file name stamps (UTC); FO-3 records the exact window from the backup headers",
    }))
}

#[async_trait]
impl Step for CaptureLogShipping {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "FO-1a record the backup mgc's log shipping metadata (share, copy folder, last copied/restored file) before it is removed"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let mut ops = Vec::new();
        if let Some(b) = pool.sql.get(&SqlRole::Backup) {
            ops.push(PlannedOp::new(
                &b.agent,
                "none",
                "precondition: the run records the operator's attestation that the primary data center is down (--attest-primary-down)",
            ));
            ops.push(PlannedOp::new(
                &b.agent,
                "log_shipping_status",
                format!("msdb.dbo.log_shipping_secondary / _secondary_databases / sp_help_log_shipping_monitor for [{MGC}]: share, copy folder, last copied and restored file, recorded in the run"),
            ));
            ops.push(PlannedOp::new(
                &b.agent,
                "database_state",
                format!("[{MGC}] exists on the backup instance (RESTORING while log shipped)"),
            ));
        }
        for role in [SqlRole::Primary, SqlRole::PrimaryMirror] {
            if let Some(p) = pool.sql.get(&role) {
                ops.push(PlannedOp::new(
                    &p.agent,
                    "database_state",
                    format!("only if its agent is connected: [{MGC}] ONLINE there refuses the failover (two writable {MGC})"),
                ));
            }
        }
        ops
    }

    async fn probe(&self, _ctx: &StepCtx) -> Result<Probe, StepError> {
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let Some(info) = mgc_info(ctx, &backup).await? else {
            return Err(StepError::fatal(format!(
                "there is no {MGC} on the backup instance: nothing to fail over to"
            )));
        };
        let state = describe_state(&info);
        let primary = primary_not_serving(ctx).await?;
        let (secondary, monitor) = secondary_config(ctx, &backup).await?;
        let monitor: Vec<Value> = monitor
            .iter()
            .map(|m| {
                json!({
                    "server": m.server, "is_primary": m.is_primary, "alert": m.alert,
                    "last_copied_file": m.last_copied_file, "minutes_since_last_copy": m.minutes_since_last_copy,
                    "last_restored_file": m.last_restored_file, "minutes_since_last_restore": m.minutes_since_last_restore,
                    "last_restored_latency": m.last_restored_latency,
                })
            })
            .collect();
        let Some(s) = secondary else {
            let estimate = estimate(ctx, &backup, &ctx.pool.share, &ctx.pool.copy_dir, "").await?;
            return Ok(json!({
                "loss_window_estimate": estimate,
                "configured": false,
                "reason": format!("{MGC} is not a log shipping secondary on the backup instance (already removed?): using the topology's share and copy folder"),
                "backup_database_state": state,
                "share": ctx.pool.share,
                "copy_dir": ctx.pool.copy_dir,
                "last_copied_file": "",
                "last_restored_file": "",
                "monitor": monitor,
                "primary_check": primary,
            }));
        };
        let mut differs = Vec::new();
        if !s.backup_source_directory.is_empty() && s.backup_source_directory != ctx.pool.share {
            differs.push(json!({ "field": "share", "msdb": s.backup_source_directory, "topology": ctx.pool.share }));
        }
        if !s.backup_destination_directory.is_empty()
            && s.backup_destination_directory != ctx.pool.copy_dir
        {
            differs.push(json!({ "field": "copy_dir", "msdb": s.backup_destination_directory, "topology": ctx.pool.copy_dir }));
        }
        let or = |v: &str, fallback: &str| {
            if v.is_empty() {
                fallback.to_string()
            } else {
                v.to_string()
            }
        };
        let share = or(&s.backup_source_directory, &ctx.pool.share);
        let copy_dir = or(&s.backup_destination_directory, &ctx.pool.copy_dir);
        let estimate = estimate(ctx, &backup, &share, &copy_dir, &s.last_restored_file).await?;
        Ok(json!({
            "loss_window_estimate": estimate,
            "configured": true,
            "backup_database_state": state,
            "primary_server": s.primary_server,
            "primary_database": s.primary_database,
            "share": share,
            "copy_dir": copy_dir,
            "last_copied_file": s.last_copied_file,
            "last_copied_date": s.last_copied_date,
            "last_restored_file": s.last_restored_file,
            "last_restored_date": s.last_restored_date,
            "copy_job_id": s.copy_job_id,
            "restore_job_id": s.restore_job_id,
            "standby": s.standby,
            "topology_differs": differs,
            "monitor": monitor,
            "primary_check": primary,
        }))
    }

    async fn verify(&self, _ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        Ok(output)
    }
}
