//! FO-4: bring the backup `mgc` online (pchat-dr.md §2 step 4, §6.10): end every session in it,
//! then `RESTORE DATABASE [mgc] WITH RECOVERY`. **Destructive**: recovery ends the restore
//! sequence for good (no further log backup can be applied), so it needs the run's approval.
//!
//! - Precondition (DESIGN §9 invariant 7): [`super::primary_not_serving`] again — time has
//!   passed since FO-1a (an approval may have been waited for), and a primary that came back
//!   and serves `mgc` must not get a second writable copy next to it.
//! - Probe: `mgc` ONLINE and not STANDBY on the backup instance → done.
//! - Action: `kill_sessions` on `mgc` (op `kill-mgc`: every session but the agent's own —
//!   `sp_who2`/`KILL` in the topic; `SET SINGLE_USER` cannot be used on a RESTORING database),
//!   then `recover_database` (op `recover-mgc`, no FROM clause needed).
//! - Verify: `mgc` reads ONLINE.
//!
//! Errors: agent unreachable → asked again with the same op id; retryable SQL errors → new
//! attempt (3 in all); an agent restart mid-recovery (outcome unknown) is resolved by the probe
//! (ONLINE → done; otherwise the pool stops for a person, never a blind repeat); a primary that
//! serves `mgc`, or a database not ONLINE at verify → abort the pool's run.

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use super::{describe_state, mgc_info, primary_not_serving, recovered};
use crate::config::RunbookConfig;
use crate::runbook::failback::{MGC, expect_output, op, sql};
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FO-4.
pub struct RecoverBackup;

#[async_trait]
impl Step for RecoverBackup {
    fn name(&self) -> &'static str {
        "fo4_recover"
    }

    fn title(&self) -> &'static str {
        "FO-4 end the sessions in the backup mgc, then RESTORE DATABASE [mgc] WITH RECOVERY (the backup mgc becomes the primary)"
    }

    fn destructive(&self) -> bool {
        true
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
                "kill_sessions",
                format!("KILL <spid> for every session in [{MGC}] (sys.sysprocesses)"),
            ),
            PlannedOp::new(
                &b.agent,
                "recover_database",
                format!("RESTORE DATABASE [{MGC}] WITH RECOVERY; then state_desc = ONLINE"),
            ),
        ]
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        match mgc_info(ctx, &backup).await? {
            None => Err(StepError::fatal(format!(
                "there is no {MGC} on the backup instance"
            ))),
            Some(d) if recovered(&d) => Ok(Probe::Done(json!({ "state": d.state }))),
            Some(_) => Ok(Probe::Needed),
        }
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let primary = primary_not_serving(ctx).await?;
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let out = ctx
            .act(
                &backup,
                "kill-mgc",
                op(pb::operation::Kind::KillSessions(pb::KillSessions {
                    database: MGC.into(),
                    program_names: Vec::new(),
                })),
                ctx.config.step_timeout,
            )
            .await?;
        let killed = expect_output!(out, Killed, "kill_sessions")?;
        let out = ctx
            .act(
                &backup,
                "recover-mgc",
                op(pb::operation::Kind::RecoverDatabase(pb::RecoverDatabase {
                    database: MGC.into(),
                })),
                ctx.config.data_step_timeout,
            )
            .await?;
        let r = expect_output!(out, Restore, "recover_database")?;
        Ok(json!({
            "state": r.state,
            "changed": r.changed,
            "killed": killed.sessions.iter().map(|s| json!({ "spid": s.spid, "login": s.login, "host": s.host_name, "program": s.program_name })).collect::<Vec<_>>(),
            "primary_check": primary,
        }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        match mgc_info(ctx, &backup).await? {
            Some(d) if recovered(&d) => Ok(output),
            other => Err(StepError::fatal(format!(
                "{MGC} on the backup instance is {} after RESTORE WITH RECOVERY, not ONLINE",
                other.map_or_else(|| "absent".into(), |d| describe_state(&d))
            ))),
        }
    }
}
