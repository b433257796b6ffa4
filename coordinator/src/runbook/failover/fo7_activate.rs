//! FO-7: make the backup data center's chat servers the active servers (pchat-dr.md §2 step 7,
//! §5.2), behind the same latency gate as FB-6 ([`crate::runbook::activation`]): candidates are
//! the pool's `chat_servers` of its backup data center, measured from their own agents against
//! the backup SQL instance (now the primary); `Set-CsPersistentChatActiveServer -Identity <id>
//! -ActiveServers @{Replace=…} -Force` (op `replace-active`) through a backup-DC shell agent
//! first. After this the failover is complete.
//!
//! - Probe: the active list is non-empty and holds only backup-DC servers → done.
//! - Verify: the active list equals the accepted servers.
//!
//! Errors: as FB-6 — unreachable agents are asked again; a retryable cmdlet failure → new
//! attempt (3 in all); a list that differs at verify → retried; no server passing the gate or
//! a refused cmdlet → abort the pool's run.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::RunbookConfig;
use crate::runbook::activation;
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FO-7.
pub struct ActivateBackupServers;

#[async_trait]
impl Step for ActivateBackupServers {
    fn name(&self) -> &'static str {
        "fo7_activate"
    }

    fn title(&self) -> &'static str {
        "FO-7 latency gate, then make the backup data center's chat servers active"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        activation::plan(pool, &pool.backup_dc, SqlRole::Backup)
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        activation::probe(ctx, &ctx.pool.backup_dc).await
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        activation::act(ctx, &ctx.pool.backup_dc, SqlRole::Backup).await
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        activation::verify(ctx, &ctx.pool.backup_dc, output).await
    }
}
