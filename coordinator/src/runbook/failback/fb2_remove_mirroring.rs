//! FB-2: remove mirroring from the backup `mgc` and `mgccomp`, only where it exists
//! (pchat-dr.md §3 step 2, §6.1).
//!
//! - Probe: `sys.database_mirroring` on the backup instance for every pool database; none
//!   mirrored → the step does not apply (skipped, with the reason).
//! - Action: `ALTER DATABASE [db] SET PARTNER OFF;` for each mirrored database (ops
//!   `partner-off-<db>`).
//! - Verify: no pool database is mirrored any more.
//!
//! Not flagged destructive (decision): it destroys no data — the backup database stays ONLINE
//! with every row, and its former mirror copy stays RESTORING — and it is reversible by
//! re-creating the mirror. The run's approval is asked where data is overwritten (FB-4, FB-5),
//! so an operator is not asked twice for one failback.
//!
//! The backup instance must be the PRINCIPAL of every mirrored pool database
//! ([`super::principal`]): SET PARTNER OFF on the MIRROR would strand the live data on its
//! partner, so that case aborts the run (fatal, nothing changed) with what to do.
//!
//! Errors: agent unreachable / no answer → asked again with the same op id; retryable SQL
//! errors → new attempt (3 in all); a database still mirrored at verify → retried; anything
//! else aborts the pool's run.

use async_trait::async_trait;
use failback_proto::model::DatabaseName;
use failback_proto::pb;
use serde_json::{Value, json};
use std::time::Duration;

use super::{op, principal, sql};
use crate::config::RunbookConfig;
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FB-2.
pub struct RemoveMirroring;

/// The mirrored pool databases, after checking the backup instance is their principal.
async fn mirrored(ctx: &StepCtx) -> Result<Vec<DatabaseName>, StepError> {
    let states = principal::require_backup_principal(ctx).await?;
    Ok(principal::mirrored(&ctx.pool, &states))
}

#[async_trait]
impl Step for RemoveMirroring {
    fn name(&self) -> &'static str {
        "fb2_remove_mirroring"
    }

    fn title(&self) -> &'static str {
        "FB-2 remove mirroring from the backup mgc/mgccomp where it exists"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let Some(b) = pool.sql.get(&SqlRole::Backup) else {
            return Vec::new();
        };
        let mut ops = vec![PlannedOp::new(
            &b.agent,
            "mirroring_state",
            "SELECT … FROM sys.database_mirroring (which databases are mirrored)",
        )];
        for db in &pool.databases {
            ops.push(PlannedOp::new(
                &b.agent,
                "remove_mirroring",
                format!("ALTER DATABASE [{db}] SET PARTNER OFF; (only if mirrored)"),
            ));
        }
        ops
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        if mirrored(ctx).await?.is_empty() {
            Ok(Probe::NotApplicable(
                "no pool database is mirrored on the backup instance".into(),
            ))
        } else {
            Ok(Probe::Needed)
        }
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let dbs = mirrored(ctx).await?;
        let mut removed = Vec::new();
        for db in &dbs {
            ctx.act(
                &backup,
                &format!("partner-off-{db}"),
                op(pb::operation::Kind::RemoveMirroring(pb::RemoveMirroring {
                    database: db.to_string(),
                })),
                ctx.config.step_timeout,
            )
            .await?;
            removed.push(db.to_string());
        }
        Ok(json!({ "removed": removed }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let left = principal::mirrored(&ctx.pool, &principal::backup_mirroring(ctx).await?);
        if !left.is_empty() {
            let names: Vec<String> = left.iter().map(ToString::to_string).collect();
            return Err(StepError::retry(format!(
                "still mirrored: {}",
                names.join(", ")
            )));
        }
        Ok(output)
    }
}
