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
//! - Verify: nothing more to check (the output is the evidence).
//!
//! Errors: reads are asked again while the backup agent is unreachable (until the step
//! timeout); retryable agent errors → new attempt (3 in all); `mgc` absent, or a primary that
//! is visibly still serving `mgc` → abort the pool's run.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{describe_state, mgc_info, primary_not_serving, secondary_config};
use crate::config::RunbookConfig;
use crate::runbook::failback::{MGC, sql};
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// The step name (FO-2/FO-3 read its output).
pub const NAME: &str = "fo1_capture";

/// FO-1a.
pub struct CaptureLogShipping;

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
            return Ok(json!({
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
        Ok(json!({
            "configured": true,
            "backup_database_state": state,
            "primary_server": s.primary_server,
            "primary_database": s.primary_database,
            "share": or(&s.backup_source_directory, &ctx.pool.share),
            "copy_dir": or(&s.backup_destination_directory, &ctx.pool.copy_dir),
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
