//! FB-7: return the pool to `Normal` (pchat-dr.md §3 trailer, §5.3): the pool uses its primary
//! databases again.
//!
//! - Probe: `Get-CsPersistentChatState` (the agent picks the object whose Identity ends with the
//!   pool FQDN and reuses that Identity verbatim, §9 item 1) says `Normal` → done.
//! - Action: `Set-CsPersistentChatState -Identity <id> -PoolState Normal -Force` (op
//!   `set-normal`), through a Lync shell agent of the primary data center first.
//! - Verify: the state reads `Normal`.
//!
//! Runs before FB-6 by default (see the `failback` module docs and
//! `RunbookConfig::activate_before_normal`).
//!
//! Errors: agent unreachable / no answer → asked again with the same op id; retryable cmdlet
//! failures → new attempt (3 in all); state not Normal at verify → retried; anything else aborts
//! the pool's run.

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use super::{op, pool_state, shell_agents};
use crate::config::RunbookConfig;
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::Pool;

/// FB-7.
pub struct PoolNormal;

#[async_trait]
impl Step for PoolNormal {
    fn name(&self) -> &'static str {
        "fb7_pool_normal"
    }

    fn title(&self) -> &'static str {
        "FB-7 set the pool state Normal"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        shell_agents(pool, &pool.primary_dc)
            .first()
            .map(|a| {
                vec![PlannedOp::new(
                    a,
                    "set_pool_state",
                    format!("Set-CsPersistentChatState -Identity <identity of {}> -PoolState Normal -Force", pool.fqdn),
                )]
            })
            .unwrap_or_default()
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        let s = pool_state(ctx, &ctx.pool.primary_dc).await?;
        if s.state() == pb::PoolStateValue::Normal {
            return Ok(Probe::Done(
                json!({ "identity": s.identity, "state": "Normal" }),
            ));
        }
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let shell = ctx.pick_agent(&shell_agents(&ctx.pool, &ctx.pool.primary_dc))?;
        ctx.act(
            &shell,
            "set-normal",
            op(pb::operation::Kind::SetPoolState(pb::SetPoolState {
                pool_fqdn: ctx.pool.fqdn.clone(),
                state: pb::PoolStateValue::Normal as i32,
            })),
            ctx.config.step_timeout,
        )
        .await?;
        Ok(json!({ "state": "Normal" }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let s = pool_state(ctx, &ctx.pool.primary_dc).await?;
        if s.state() != pb::PoolStateValue::Normal {
            return Err(StepError::retry(format!(
                "pool state reads {:?} after setting Normal",
                s.state()
            )));
        }
        let mut output = output;
        output["identity"] = json!(s.identity);
        Ok(output)
    }
}
