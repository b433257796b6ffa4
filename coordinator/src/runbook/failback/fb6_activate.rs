//! FB-6: make the primary data center's chat servers the active servers (pchat-dr.md §3 step 6,
//! §5.2), behind a latency gate.
//!
//! - Candidates: the pool's `chat_servers` of its primary data center (the reference's rule:
//!   same data center as the new primary, or low latency to it; data-center membership comes
//!   from the topology, DESIGN §2).
//! - Latency gate: from each candidate's own agent (agent id = server FQDN), `tcp_latency` to the
//!   primary SQL endpoint (`host,port` → that port; `host` or `host\INSTANCE` → 1433: write named
//!   instances as `host,port` in the topology for an exact measurement); a median above
//!   `latency_limit` refuses the server. Decisions: a candidate with an agent that is not
//!   connected is refused (its latency cannot be proven); a candidate without any agent is
//!   accepted on the same-data-center rule alone, and the output says it was not measured.
//!   No candidate left → the pool's run aborts.
//! - Probe: done when the active list is non-empty and holds only primary-DC servers.
//! - Action: `Set-CsPersistentChatActiveServer -Identity <id> -ActiveServers @{Replace=…} -Force`
//!   (op `replace-active`).
//! - Verify: the active list equals the accepted servers.
//!
//! Errors: latency reads and shell calls are asked again while the agent is unreachable; a
//! retryable cmdlet failure → new attempt (3 in all); a list that differs at verify → retried;
//! no acceptable server or a refused cmdlet → abort the pool's run.
//!
//! The body is shared with FO-7 in [`crate::runbook::activation`].

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::RunbookConfig;
use crate::runbook::activation;
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

pub use crate::runbook::activation::sql_endpoint;

/// FB-6.
pub struct ActivateServers;

#[async_trait]
impl Step for ActivateServers {
    fn name(&self) -> &'static str {
        "fb6_activate"
    }

    fn title(&self) -> &'static str {
        "FB-6 latency gate, then make the primary data center's chat servers active"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        activation::plan(pool, &pool.primary_dc, SqlRole::Primary)
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        activation::probe(ctx, &ctx.pool.primary_dc).await
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        activation::act(ctx, &ctx.pool.primary_dc, SqlRole::Primary).await
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        activation::verify(ctx, &ctx.pool.primary_dc, output).await
    }
}
