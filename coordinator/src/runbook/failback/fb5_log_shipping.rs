//! FB-5: re-establish log shipping primary → backup (pchat-dr.md §3 step 5, §4.2, §6.7).
//! **Destructive** (seeding overwrites the backup `mgc`): needs the run's approval.
//!
//! **Wiring**: the step is written against the small [`LogShippingSetup`] trait; the failback
//! runbook wires [`AgentLogShipping`] (the agent's `setup_log_shipping_primary` / `_secondary`,
//! `run_job`, `job_outcome`, `log_shipping_status`). Built without a setup (engine tests whose
//! fake agents do not simulate log shipping), the probe reports the step as *not applicable*
//! with the reason and nothing is seeded: seeding the backup `mgc` WITH NORECOVERY without
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
//! - Probe: [`LogShippingSetup::configured`] (shipping already set up and healthy → done; for the
//!   agent setup that means the backup `mgc` RESTORING and its last restored log ending after
//!   FB-4's restore point, not merely a `last_restored_file` a stale configuration left).
//! - Verify: log shipping reports healthy, and the cycle's last restored log ends after the seed
//!   (its header's LastLSN beyond the seed's LastLSN), not merely "some log was restored".
//!
//! Errors: as FB-3/FB-4 for the seed; setup errors are the setup's classification (retryable
//! SQL errors → new attempt; refused procedures → abort the pool's run).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use super::{MGC, expect_output, instances, join_path, op, sql};
use crate::config::RunbookConfig;
use crate::runbook::failover::chain::parse_lsn;
use crate::runbook::records::BackupRecord;
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

const NOT_WIRED: &str = "log-shipping setup is not wired in this build: configure it by hand as in pchat-dr.md §4.2/§6.7; the backup mgc was left ONLINE as it was";

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
        proves_shipping_after_seed(ctx, &output).await?;
        Ok(output)
    }
}

/// The cycle's restored log must carry log records newer than the seed (issue #12, false
/// proof): a log taken before the seed, or a `last_restored_file` left from an earlier
/// configuration, says nothing about the shipping set up now. Compared by LSN (LastLSN of the
/// restored log beyond the seed's LastLSN), read from the file's header on the backup instance.
async fn proves_shipping_after_seed(ctx: &StepCtx, output: &Value) -> Result<(), StepError> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let seed_lsn = text(&output["seed"]["last_lsn"]);
    let restored = text(&output["cycle"]["last_restored_file"]);
    let Some(seed) = parse_lsn(&seed_lsn) else {
        return Err(StepError::fatal(format!(
            "the seed backup's LastLSN {seed_lsn:?} is unknown: cannot prove the new log shipping restores logs newer than it"
        )));
    };
    let last = restored_log_end(ctx, &restored).await?;
    match last {
        Some(l) if l > seed => Ok(()),
        _ => Err(StepError::retry(format!(
            "the last restored log '{restored}' ends at LSN {} — not after the seed's LastLSN {seed}: it proves nothing about the new log shipping",
            last.map_or_else(|| "unknown".to_string(), |l| l.to_string())
        ))),
    }
}

/// The LastLSN of log backup `file` as the backup instance reads its header (None: no header
/// names one).
async fn restored_log_end(ctx: &StepCtx, file: &str) -> Result<Option<u128>, StepError> {
    let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
    let out = ctx
        .read(
            &backup,
            op(pb::operation::Kind::ReadBackupHeader(
                pb::ReadBackupHeader {
                    file: file.to_string(),
                },
            )),
        )
        .await?;
    let headers = expect_output!(out, Verify, "read_backup_header")?.headers;
    Ok(headers.iter().filter_map(|h| parse_lsn(&h.last_lsn)).max())
}

/// The restore point FB-4 gave the primary (its LastLSN; FB-3's when FB-4 recorded none):
/// every log the new primary ships ends after it.
fn restore_point(ctx: &StepCtx) -> Option<u128> {
    let fb4 = ctx
        .prior("fb4_restore")
        .and_then(|v| v.get("last_lsn"))
        .and_then(Value::as_str)
        .and_then(parse_lsn);
    fb4.or_else(|| {
        let fb3 = ctx.prior_record::<BackupRecord>().ok().flatten()?;
        parse_lsn(&fb3.last_lsn)
    })
}

/// The name shown in `plan` (no agent is asked): the topology's host part, which the run
/// replaces with `@@SERVERNAME`.
fn planned_name(instance: &str) -> &str {
    instance.split(',').next().unwrap_or(instance).trim()
}

/// [`LogShippingSetup`] over the agent's log-shipping and Agent-job operations (pchat-dr.md §6.7,
/// §6.8): `setup_log_shipping_primary` on the primary (which also registers the secondary with
/// `sp_add_log_shipping_primary_secondary`, as the SSMS primary script does), then
/// `setup_log_shipping_secondary` on the backup instance; the cycle runs the SSMS-named jobs
/// `LSBackup_<db>`, `LSCopy_<primary>_<db>`, `LSRestore_<primary>_<db>` once each, in that
/// order, waiting for each outcome, and then reads `log_shipping_status` on the backup.
/// Intervals and retentions are PChat's prescribed defaults (the agent fills zeros): the jobs
/// run every 15 minutes. Decided: no lab or test switch shortens that (SQL Server Agent refuses
/// a seconds interval under 10 s, Msg 14278, and failback_proto refuses it before msdb does);
/// the step runs its cycle itself with `run_job`, so it never waits for a schedule.
pub struct AgentLogShipping;

impl AgentLogShipping {
    /// `@@SERVERNAME` of the primary and of the backup instance (checked as FB-1 checked them).
    async fn names(ctx: &StepCtx) -> Result<(String, String), StepError> {
        let i = instances::check(ctx, "nothing was seeded").await?;
        Ok((i.primary_name, i.backup_name))
    }

    fn jobs(primary_server: &str) -> [String; 3] {
        [
            format!("LSBackup_{MGC}"),
            format!("LSCopy_{primary_server}_{MGC}"),
            format!("LSRestore_{primary_server}_{MGC}"),
        ]
    }

    async fn status(
        ctx: &StepCtx,
        agent: &failback_proto::model::AgentId,
    ) -> Result<pb::LogShippingStatusInfo, StepError> {
        let out = ctx
            .read(
                agent,
                op(pb::operation::Kind::LogShippingStatus(
                    pb::LogShippingStatus {
                        database: MGC.into(),
                    },
                )),
            )
            .await?;
        expect_output!(out, LogShipping, "log_shipping_status")
    }

    /// Starts `job` on `agent` and waits (within the step's timeout) for its outcome.
    async fn run_job(
        ctx: &StepCtx,
        agent: &failback_proto::model::AgentId,
        label: &str,
        job: &str,
    ) -> Result<Value, StepError> {
        let out = ctx
            .act(
                agent,
                label,
                op(pb::operation::Kind::RunJob(pb::RunJob {
                    job_name: job.into(),
                })),
                ctx.config.step_timeout,
            )
            .await?;
        let started = expect_output!(out, JobStarted, "run_job")?;
        loop {
            let out = ctx
                .read(
                    agent,
                    op(pb::operation::Kind::JobOutcome(pb::JobOutcome {
                        job_name: job.into(),
                        after_instance_id: started.after_instance_id,
                    })),
                )
                .await?;
            let o = expect_output!(out, JobOutcome, "job_outcome")?;
            if let (false, Some(run)) = (o.running, o.outcome) {
                return match run.status() {
                    pb::JobRunStatus::Succeeded => Ok(
                        json!({ "job": job, "instance_id": run.instance_id, "message": run.message }),
                    ),
                    other => {
                        // The job's outcome row only says "The job failed."; its steps say why.
                        let why: Vec<String> = o
                            .steps
                            .iter()
                            .filter(|s| s.status() != pb::JobRunStatus::Succeeded)
                            .map(|s| format!("step {} ({}): {}", s.step_id, s.step_name, s.message))
                            .collect();
                        Err(StepError::retry(format!(
                            "job {job} on {agent} ended {other:?}: {}{}",
                            run.message,
                            if why.is_empty() {
                                String::new()
                            } else {
                                format!(" — {}", why.join("; "))
                            }
                        )))
                    }
                };
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What an operator does about a failed copy job: it runs as the backup instance's SQL Server
/// Agent account (FB-1 recorded it), which must read the share and write the copy folder.
fn copy_job_hint(ctx: &StepCtx) -> String {
    let account = ctx
        .prior("fb1_clear_active")
        .and_then(|o| o.get("sql_agent_service"))
        .and_then(|s| s.get("account"))
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .map_or_else(
            || "the SQL Server Agent account".to_string(),
            |a| format!("the SQL Server Agent account '{a}'"),
        );
    format!(
        "the copy job runs on the backup instance as {account}, which must be able to read {} and write {}: grant it that access. \
         The primary {MGC} is restored and serves the data; the backup {MGC} is RESTORING from FB-5's seed, and the pool is not Normal yet",
        ctx.pool.share, ctx.pool.copy_dir
    )
}

#[async_trait]
impl LogShippingSetup for AgentLogShipping {
    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let (Some(p), Some(b)) = (
            pool.sql.get(&SqlRole::Primary),
            pool.sql.get(&SqlRole::Backup),
        ) else {
            return Vec::new();
        };
        let (ps, bs) = (planned_name(&p.instance), planned_name(&b.instance));
        let [backup_job, copy_job, restore_job] = Self::jobs(ps);
        vec![
            PlannedOp::new(
                &p.agent,
                "setup_log_shipping_primary",
                format!(
                    "EXEC master.dbo.sp_add_log_shipping_primary_database [{MGC}] → {}; msdb.dbo.sp_add_schedule, sp_attach_schedule, sp_update_job (enable {backup_job}); master.dbo.sp_add_log_shipping_alert_job; master.dbo.sp_add_log_shipping_primary_secondary {bs}",
                    pool.share
                ),
            ),
            PlannedOp::new(
                &b.agent,
                "setup_log_shipping_secondary",
                format!(
                    "EXEC master.dbo.sp_add_log_shipping_secondary_primary {ps} {} → {}; msdb.dbo.sp_add_schedule, sp_attach_schedule (copy and restore jobs); master.dbo.sp_add_log_shipping_secondary_database [{MGC}] NORECOVERY; msdb.dbo.sp_update_job (enable {copy_job}, {restore_job})",
                    pool.share, pool.copy_dir
                ),
            ),
            PlannedOp::new(
                &p.agent,
                "run_job",
                format!(
                    "EXEC msdb.dbo.sp_start_job {backup_job} (its step runs BACKUP LOG to the share), wait for its outcome"
                ),
            ),
            PlannedOp::new(
                &b.agent,
                "run_job",
                format!(
                    "EXEC msdb.dbo.sp_start_job {copy_job}, then {restore_job} (its step runs RESTORE LOG … WITH NORECOVERY), waiting for each outcome"
                ),
            ),
            PlannedOp::new(
                &b.agent,
                "log_shipping_status",
                "EXEC master.dbo.sp_help_log_shipping_monitor: a restored log file is recorded on the secondary",
            ),
        ]
    }

    async fn configured(&self, ctx: &StepCtx) -> Result<bool, StepError> {
        let (ps, bs) = Self::names(ctx).await?;
        let primary = sql(&ctx.pool, SqlRole::Primary)?.agent.clone();
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let p = Self::status(ctx, &primary).await?;
        let ships_to_backup = p.primary.is_some_and(|c| {
            c.secondaries
                .iter()
                .any(|s| s.server.eq_ignore_ascii_case(&bs))
        });
        if !ships_to_backup {
            return Ok(false);
        }
        let b = Self::status(ctx, &backup).await?;
        let Some(restored) = b
            .secondary
            .filter(|c| c.primary_server.eq_ignore_ascii_case(&ps))
            .map(|c| c.last_restored_file)
            .filter(|f| !f.is_empty())
        else {
            return Ok(false);
        };
        // A secondary configuration outlives the shipping it describes (issue #12, false
        // proof): a failover done by hand that skipped sp_delete_log_shipping_secondary_database
        // leaves DC2's msdb naming a log restored before the disaster. Shipping counts as set up
        // only when the backup mgc is restoring logs and its last restored log ends after the
        // restore point FB-4 gave the primary: only the new primary can have written that log.
        // Anything unproven (no restore point, a header that cannot be read) means "not set up",
        // and the step seeds again, which this destructive, approved step may do.
        if failback_proto::test_break::broken(failback_proto::test_break::FB5_STALE_PROOF) {
            return Ok(true);
        }
        let Some(floor) = restore_point(ctx) else {
            return Ok(false);
        };
        let states = super::database_states(ctx, &backup, &[super::mgc()]).await?;
        let restoring = states
            .first()
            .is_some_and(|d| d.exists && (d.state == "RESTORING" || d.is_in_standby));
        if !restoring {
            return Ok(false);
        }
        Ok(matches!(restored_log_end(ctx, &restored).await, Ok(Some(end)) if end > floor))
    }

    async fn configure(&self, ctx: &StepCtx, _seed: &Value) -> Result<Value, StepError> {
        let (ps, bs) = Self::names(ctx).await?;
        let primary = sql(&ctx.pool, SqlRole::Primary)?.agent.clone();
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let out = ctx
            .act(
                &primary,
                "ls-primary",
                op(pb::operation::Kind::SetupLogShippingPrimary(
                    pb::SetupLogShippingPrimary {
                        database: MGC.into(),
                        backup_directory: ctx.pool.share.clone(),
                        backup_share: ctx.pool.share.clone(),
                        secondary_server: bs,
                        ..Default::default()
                    },
                )),
                ctx.config.step_timeout,
            )
            .await?;
        let p = expect_output!(out, LogShippingSetup, "setup_log_shipping_primary")?;
        let out = ctx
            .act(
                &backup,
                "ls-secondary",
                op(pb::operation::Kind::SetupLogShippingSecondary(
                    pb::SetupLogShippingSecondary {
                        database: MGC.into(),
                        primary_server: ps,
                        backup_source_directory: ctx.pool.share.clone(),
                        backup_destination_directory: ctx.pool.copy_dir.clone(),
                        standby: false,
                        ..Default::default()
                    },
                )),
                ctx.config.step_timeout,
            )
            .await?;
        let s = expect_output!(out, LogShippingSetup, "setup_log_shipping_secondary")?;
        Ok(json!({
            "primary": { "changed": p.changed, "primary_id": p.primary_id, "backup_job_id": p.backup_job_id },
            "secondary": { "changed": s.changed, "secondary_id": s.secondary_id, "copy_job_id": s.copy_job_id, "restore_job_id": s.restore_job_id },
        }))
    }

    async fn run_cycle(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let (ps, _) = Self::names(ctx).await?;
        let primary = sql(&ctx.pool, SqlRole::Primary)?.agent.clone();
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let [backup_job, copy_job, restore_job] = Self::jobs(&ps);
        let b = Self::run_job(ctx, &primary, "job-backup", &backup_job).await?;
        let c = Self::run_job(ctx, &backup, "job-copy", &copy_job)
            .await
            .map_err(|mut e| {
                e.message = format!("{}; {}", e.message, copy_job_hint(ctx));
                e
            })?;
        let r = Self::run_job(ctx, &backup, "job-restore", &restore_job).await?;
        let st = Self::status(ctx, &backup).await?;
        let restored = st
            .secondary
            .map(|s| s.last_restored_file)
            .unwrap_or_default();
        if restored.is_empty() {
            return Err(StepError::retry(
                "the restore job succeeded but the secondary records no restored log",
            ));
        }
        Ok(json!({ "jobs": [b, c, r], "last_restored_file": restored }))
    }
}
