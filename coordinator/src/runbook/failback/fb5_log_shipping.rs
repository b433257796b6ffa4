//! FB-5: re-establish log shipping primary → backup (pchat-dr.md §3 step 5, §4.2, §6.7).
//! **Destructive** (seeding overwrites the backup `mgc`): needs the run's approval.
//!
//! **Wiring status**: the agent's log-shipping operations (`setup_log_shipping_primary` /
//! `_secondary`, `run_job`, `log_shipping_status`) are being added on another branch. This step
//! is written against the small [`LogShippingSetup`] trait; until an implementation is passed to
//! [`super::steps`], the probe reports the step as *not applicable* with the reason, the run
//! record says so, and nothing is seeded: seeding the backup `mgc` WITH NORECOVERY without
//! shipping logs to it afterwards would only throw away the last copy in the backup data center.
//!
//! With a setup wired, the action is, in the documented order (§6.7):
//! 1. fresh full backup of the primary `mgc` to the share (op `seed-backup`, CHECKSUM,
//!    VERIFYONLY, SHA-256) — FB-3's file cannot seed: the primary has moved on since FB-4;
//! 2. restore it over the backup `mgc` WITH NORECOVERY, SHA-256 re-checked (op `seed-restore`),
//!    which also makes the backup `mgc` non-writable (invariant 7);
//! 3. [`LogShippingSetup::configure`]: primary side (`sp_add_log_shipping_primary_database`,
//!    schedule, enable), secondary side (`sp_add_log_shipping_secondary_primary`, schedules,
//!    `sp_add_log_shipping_secondary_database`, enable), then `sp_add_log_shipping_primary_secondary`;
//! 4. [`LogShippingSetup::run_cycle`]: run the backup, copy and restore jobs once and check the
//!    monitor tables (§6.8).
//! - Probe: [`LogShippingSetup::configured`] (shipping already set up and healthy → done).
//! - Verify: the cycle's result shows a restored log newer than the seed.
//!
//! Errors: as FB-3/FB-4 for the seed; setup errors are the setup's classification (retryable
//! SQL errors → new attempt; refused procedures → abort the pool's run).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use super::{MGC, expect_output, join_path, op, sql};
use crate::config::RunbookConfig;
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// The log-shipping procedures FB-5 needs (to be implemented over the agent's log-shipping
/// operations when they land).
#[async_trait]
pub trait LogShippingSetup: Send + Sync {
    /// What `configure` and `run_cycle` would send, for `plan`.
    fn plan(&self, pool: &Pool) -> Vec<PlannedOp>;
    /// Whether shipping primary → backup is already configured and healthy.
    async fn configured(&self, ctx: &StepCtx) -> Result<bool, StepError>;
    /// Creates the primary and secondary configuration (seeded backup given).
    async fn configure(&self, ctx: &StepCtx, seed: &Value) -> Result<Value, StepError>;
    /// Runs one backup/copy/restore cycle and checks it in the monitor tables.
    async fn run_cycle(&self, ctx: &StepCtx) -> Result<Value, StepError>;
}

/// FB-5.
pub struct LogShipping {
    /// The wired setup, if any.
    pub setup: Option<Arc<dyn LogShippingSetup>>,
}

const NOT_WIRED: &str = "log-shipping setup is not wired in this build (the agent's log-shipping operations are pending): configure it by hand as in pchat-dr.md §4.2/§6.7; the backup mgc was left ONLINE as it was";

#[async_trait]
impl Step for LogShipping {
    fn name(&self) -> &'static str {
        "fb5_log_shipping"
    }

    fn title(&self) -> &'static str {
        "FB-5 seed the backup mgc WITH NORECOVERY and re-establish log shipping primary → backup"
    }

    fn destructive(&self) -> bool {
        true
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.data_step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let Some(setup) = &self.setup else {
            if let Some(b) = pool.sql.get(&SqlRole::Backup) {
                return vec![PlannedOp::new(&b.agent, "none", NOT_WIRED)];
            }
            return Vec::new();
        };
        let mut ops = Vec::new();
        if let (Some(p), Some(b)) = (
            pool.sql.get(&SqlRole::Primary),
            pool.sql.get(&SqlRole::Backup),
        ) {
            let file = join_path(&pool.share, &format!("{MGC}_seed_<run>_1.bak"));
            ops.push(PlannedOp::new(&p.agent, "backup_database", format!("BACKUP DATABASE [{MGC}] TO DISK = N'{file}' WITH FORMAT, INIT, CHECKSUM, COPY_ONLY")));
            ops.push(PlannedOp::new(&b.agent, "restore_database", format!("RESTORE DATABASE [{MGC}] FROM DISK = N'{file}' WITH REPLACE, NORECOVERY, CHECKSUM, MOVE … (SHA-256 re-checked)")));
        }
        ops.extend(setup.plan(pool));
        ops
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        let Some(setup) = &self.setup else {
            return Ok(Probe::NotApplicable(NOT_WIRED.into()));
        };
        if setup.configured(ctx).await? {
            return Ok(Probe::Done(json!({ "already_configured": true })));
        }
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let Some(setup) = &self.setup else {
            return Err(StepError::fatal(NOT_WIRED));
        };
        let primary = sql(&ctx.pool, SqlRole::Primary)?.agent.clone();
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let file = join_path(
            &ctx.pool.share,
            &format!("{MGC}_seed_{}_{}.bak", ctx.run, ctx.attempt),
        );
        let out = ctx
            .act(
                &primary,
                "seed-backup",
                op(pb::operation::Kind::BackupDatabase(pb::BackupDatabase {
                    database: MGC.into(),
                    file: file.clone(),
                    copy_only: true,
                    compression: false,
                    name: format!("{MGC} log shipping seed {}", ctx.run),
                    description: format!("failback run {} of pool {}", ctx.run, ctx.pool.fqdn),
                })),
                ctx.config.data_step_timeout,
            )
            .await?;
        let b = expect_output!(out, Backup, "backup_database")?;
        if b.sha256.len() != 64 {
            return Err(StepError::fatal(format!(
                "no SHA-256 for the seed file '{file}'"
            )));
        }
        ctx.read(
            &primary,
            op(pb::operation::Kind::VerifyBackup(pb::VerifyBackup {
                file: file.clone(),
            })),
        )
        .await?;
        let out = ctx
            .act(
                &backup,
                "seed-restore",
                op(pb::operation::Kind::RestoreDatabase(pb::RestoreDatabase {
                    database: MGC.into(),
                    file: file.clone(),
                    recovery: pb::RecoveryMode::Norecovery as i32,
                    standby_file: String::new(),
                    replace: true,
                    expected_sha256: b.sha256.clone(),
                })),
                ctx.config.data_step_timeout,
            )
            .await?;
        let r = expect_output!(out, Restore, "restore_database")?;
        let seed = json!({ "file": file, "sha256": b.sha256, "state": r.state, "last_lsn": b.header.map(|h| h.last_lsn) });
        let configured = setup.configure(ctx, &seed).await?;
        let cycle = setup.run_cycle(ctx).await?;
        Ok(json!({ "seed": seed, "configured": configured, "cycle": cycle }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let Some(setup) = &self.setup else {
            return Err(StepError::fatal(NOT_WIRED));
        };
        if !setup.configured(ctx).await? {
            return Err(StepError::retry(
                "log shipping does not report healthy after the cycle",
            ));
        }
        Ok(output)
    }
}
