//! FO-1b: remove log shipping from the backup `mgc` (pchat-dr.md §2 step 1:
//! `exec sp_delete_log_shipping_secondary_database mgc`). **Destructive**: it deletes the copy
//! and restore jobs and their msdb metadata (FO-1a recorded it first), so it needs the run's
//! approval.
//!
//! Why remove it at all before copying and applying (§9 item 4; the generic SQL order keeps the
//! jobs): the Microsoft topic does, and it stops the restore job from racing FO-3's own
//! restores; once the backup `mgc` is recovered, a restore job left behind would only fail
//! every interval. The alternative (run the copy and restore jobs once, then remove) is not
//! used: the copy job cannot reach a share that died with the primary, and FO-2/FO-3 do the
//! same work with every file accounted for in the run.
//!
//! - Probe: `mgc` is no log shipping secondary on the backup instance → done.
//! - Action: `remove_log_shipping_secondary` (op `remove-secondary`).
//! - Verify: `log_shipping_status` shows no secondary configuration for `mgc`.
//!
//! Errors: asked again while the backup agent is unreachable; retryable SQL errors → new attempt
//! (3 in all); a configuration still present at verify → retried; anything else aborts the
//! pool's run. An agent restart mid-removal (outcome unknown) is resolved by the probe.

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use super::secondary_config;
use crate::config::RunbookConfig;
use crate::runbook::failback::{MGC, expect_output, op, sql};
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FO-1b.
pub struct RemoveLogShipping;

#[async_trait]
impl Step for RemoveLogShipping {
    fn name(&self) -> &'static str {
        "fo1_remove_log_shipping"
    }

    fn title(&self) -> &'static str {
        "FO-1b remove log shipping from the backup mgc (deletes its copy and restore jobs)"
    }

    fn destructive(&self) -> bool {
        true
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        pool.sql
            .get(&SqlRole::Backup)
            .map(|b| {
                vec![PlannedOp::new(
                    &b.agent,
                    "remove_log_shipping_secondary",
                    format!("EXEC master.dbo.sp_delete_log_shipping_secondary_database @secondary_database = N'{MGC}'; (only if configured)"),
                )]
            })
            .unwrap_or_default()
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        if secondary_config(ctx, &backup).await?.0.is_none() {
            return Ok(Probe::Done(json!({
                "removed": false,
                "detail": format!("{MGC} is not a log shipping secondary on the backup instance"),
            })));
        }
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let out = ctx
            .act(
                &backup,
                "remove-secondary",
                op(pb::operation::Kind::RemoveLogShippingSecondary(
                    pb::RemoveLogShippingSecondary {
                        database: MGC.into(),
                    },
                )),
                ctx.config.step_timeout,
            )
            .await?;
        let d = expect_output!(out, Done, "remove_log_shipping_secondary")?;
        Ok(json!({ "removed": d.changed, "detail": d.detail }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        if let Some(s) = secondary_config(ctx, &backup).await?.0 {
            return Err(StepError::retry(format!(
                "{MGC} is still a log shipping secondary of {} after the removal",
                s.primary_server
            )));
        }
        Ok(output)
    }
}
