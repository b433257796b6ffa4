//! FO-5: set the pool state `FailedOver` (pchat-dr.md §2 step 5, §5.3): the pool uses the
//! backup databases, which FO-4 made the primary.
//!
//! - Probe: `Get-CsPersistentChatState` (the agent reuses the Identity it returns verbatim,
//!   §9 item 1) reads `FailedOver` → done.
//! - Action: `Set-CsPersistentChatState -Identity <id> -PoolState FailedOver -Force` (op
//!   `set-failed-over`), through a Lync shell agent of the backup data center first (the
//!   primary's are presumed lost).
//! - Verify: the state reads `FailedOver`.
//!
//! Runs before FO-7 (the topic's order): servers are activated only once the pool points at
//! the recovered databases.
//!
//! Errors: agent unreachable / no answer → asked again with the same op id; retryable cmdlet
//! failures → new attempt (3 in all); state not FailedOver at verify → retried; anything else
//! aborts the pool's run.

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use crate::config::RunbookConfig;
use crate::runbook::failback::{op, pool_state, shell_agents};
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::Pool;

/// FO-5.
pub struct PoolFailedOver;

#[async_trait]
impl Step for PoolFailedOver {
    fn name(&self) -> &'static str {
        "fo5_pool_failed_over"
    }

    fn title(&self) -> &'static str {
        "FO-5 set the pool state FailedOver"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        shell_agents(pool, &pool.backup_dc)
            .first()
            .map(|a| {
                vec![PlannedOp::new(
                    a,
                    "set_pool_state",
                    format!("Set-CsPersistentChatState -Identity <identity of {}> -PoolState FailedOver -Force", pool.fqdn),
                )]
            })
            .unwrap_or_default()
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        let s = pool_state(ctx, &ctx.pool.backup_dc).await?;
        if s.state() == pb::PoolStateValue::FailedOver {
            return Ok(Probe::Done(
                json!({ "identity": s.identity, "state": "FailedOver" }),
            ));
        }
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let shell = ctx.pick_agent(&shell_agents(&ctx.pool, &ctx.pool.backup_dc))?;
        ctx.act(
            &shell,
            "set-failed-over",
            op(pb::operation::Kind::SetPoolState(pb::SetPoolState {
                pool_fqdn: ctx.pool.fqdn.clone(),
                state: pb::PoolStateValue::FailedOver as i32,
            })),
            ctx.config.step_timeout,
        )
        .await?;
        Ok(json!({ "state": "FailedOver" }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let s = pool_state(ctx, &ctx.pool.backup_dc).await?;
        if s.state() != pb::PoolStateValue::FailedOver {
            return Err(StepError::retry(format!(
                "pool state reads {:?} after setting FailedOver",
                s.state()
            )));
        }
        let mut output = output;
        output["identity"] = json!(s.identity);
        Ok(output)
    }
}
