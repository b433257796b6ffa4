//! FO-6: the optional mirror for the new primary (pchat-dr.md §2 step 6: `Install-CsMirrorDatabase`
//! with the backup instance as primary and the backup's mirror instance as mirror).
//! **Skipped by default** — decided, for these reasons:
//! - it is high availability for the failed-over period, not part of recovering service: the
//!   pool serves from the recovered `mgc` without it, and doing it inside the outage only adds
//!   a full backup/restore of `mgc` to the time until FO-7 activates the servers (RTO);
//! - the agents have no typed operation for it, by design (no generic cmdlet execution), and
//!   the reference leaves open whether Lync 2013 accepts `-DatabaseType PersistentChat` for it
//!   (§9 item 10: VERIFY per CU level);
//! - failback undoes it anyway (FB-2 removes mirroring from the backup `mgc`), and the reference
//!   says nothing about undoing `Install-CsMirrorDatabase` itself (§9 item 6).
//!
//! The step stays in the runbook so the plan and the run record show the decision and the
//! command an operator runs by hand once service is back, when the failed-over period will be
//! long. Probe: always not applicable, with that text. Nothing is ever sent.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::RunbookConfig;
use crate::runbook::failback::{MGC, shell_agents};
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FO-6.
pub struct MirrorNewPrimary;

fn reason(pool: &Pool) -> String {
    let backup = pool
        .sql
        .get(&SqlRole::Backup)
        .map_or("<backup instance>", |s| s.instance.as_str());
    let mirror = pool.sql.get(&SqlRole::BackupMirror).map_or(
        "<the backup's mirror instance: none in the topology>",
        |s| s.instance.as_str(),
    );
    format!(
        "skipped by design (optional high availability, not needed to restore service; no typed agent operation): if the failed-over period will be long, mirror {MGC} by hand from a Lync Management Shell: Install-CsMirrorDatabase -DatabaseType PersistentChat -SqlServerFqdn {backup} -MirrorSqlServerFqdn {mirror} ... (see 'Deploying SQL mirroring for Back End Server high availability'); failback removes it again in FB-2"
    )
}

#[async_trait]
impl Step for MirrorNewPrimary {
    fn name(&self) -> &'static str {
        "fo6_mirror"
    }

    fn title(&self) -> &'static str {
        "FO-6 (optional) mirror the new primary with Install-CsMirrorDatabase: skipped, done by hand when wanted"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn max_attempts(&self) -> u32 {
        1
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        shell_agents(pool, &pool.backup_dc)
            .first()
            .map(|a| vec![PlannedOp::new(a, "none", reason(pool))])
            .unwrap_or_default()
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        Ok(Probe::NotApplicable(reason(&ctx.pool)))
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        Err(StepError::fatal(reason(&ctx.pool)))
    }

    async fn verify(&self, _ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        Ok(output)
    }
}
