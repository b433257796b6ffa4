//! FB-3: full backup of the backup instance's `mgc` to the log-shipping share
//! (pchat-dr.md §3 step 3, §6.2, §6.3).
//!
//! - File: `<share>/mgc_failback_<run>_<attempt>.bak` — unique per run and attempt, so a new
//!   attempt never overwrites or appends to a file an earlier attempt may have half written,
//!   and a re-asked op id names the same file.
//! - Probe: always needed: the backup must contain everything written before FB-1, so an older
//!   file is never reused.
//! - First the backup `mgc` is frozen (op `freeze-backup-mgc`, `ALTER DATABASE [mgc] SET
//!   READ_ONLY WITH ROLLBACK IMMEDIATE`; why here and not in FB-4: [`super::freeze`]), so the
//!   backup holds every message SQL Server acknowledged and nothing can be written after it.
//! - Action: `BACKUP DATABASE [mgc] TO DISK = @file WITH FORMAT, INIT, CHECKSUM, COPY_ONLY, …`
//!   (op `backup-mgc`; COPY_ONLY so the backup instance's own backup chain, if any, is left as
//!   it was), then `RESTORE VERIFYONLY … WITH CHECKSUM` + HEADERONLY + FILELISTONLY (read).
//! - Output: file, SHA-256 and size (computed by the agent that wrote it), and the HEADERONLY
//!   LSNs (first, last, checkpoint, database backup) that FB-4 checks the restore against.
//! - Verify: one full backup set of `mgc` with checksums; a SHA-256 is present (invariant 3:
//!   FB-4 refuses a file whose checksum was not recorded here).
//!
//! `mgccomp` is not backed up (see the module docs of `failback`).
//!
//! Errors: agent unreachable / no answer → asked again with the same op id; retryable SQL
//! errors (e.g. share momentarily unreachable) → new attempt with a new file (3 in all; the
//! freeze is asserted again, a no-op); VERIFYONLY failure, no checksum, wrong database or
//! backup type → abort the pool's run, the error saying that the backup `mgc` stays READ_ONLY
//! and how to lift it. An interrupted backup (agent restart) → new attempt with a new file.

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::Value;

use super::freeze::{set_backup_read_only, still_frozen};
use super::{MGC, expect_output, join_path, op, sql};
use crate::config::RunbookConfig;
use crate::runbook::records::{BackupFile, BackupRecord, StepRecord};
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FB-3.
pub struct BackupMgc;

/// The backup file of run `run`, attempt `attempt`.
pub fn backup_file(pool: &Pool, run: &str, attempt: u32) -> String {
    join_path(&pool.share, &format!("{MGC}_failback_{run}_{attempt}.bak"))
}

#[async_trait]
impl Step for BackupMgc {
    fn name(&self) -> &'static str {
        "fb3_backup"
    }

    fn title(&self) -> &'static str {
        "FB-3 full backup of the backup mgc to the share (CHECKSUM, VERIFYONLY, LSNs, SHA-256)"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.data_step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let Some(b) = pool.sql.get(&SqlRole::Backup) else {
            return Vec::new();
        };
        let file = backup_file(pool, "<run>", 1);
        vec![
            PlannedOp::new(
                &b.agent,
                "set_read_only",
                format!(
                    "ALTER DATABASE [{MGC}] SET READ_ONLY WITH ROLLBACK IMMEDIATE (nothing is written after the backup)"
                ),
            ),
            PlannedOp::new(
                &b.agent,
                "backup_database",
                format!(
                    "BACKUP DATABASE [{MGC}] TO DISK = N'{file}' WITH FORMAT, INIT, CHECKSUM, COPY_ONLY, STATS = 10; SHA-256 of the file"
                ),
            ),
            PlannedOp::new(
                &b.agent,
                "verify_backup",
                format!(
                    "RESTORE VERIFYONLY FROM DISK = N'{file}' WITH CHECKSUM; RESTORE HEADERONLY; RESTORE FILELISTONLY"
                ),
            ),
        ]
    }

    async fn probe(&self, _ctx: &StepCtx) -> Result<Probe, StepError> {
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let file = backup_file(&ctx.pool, ctx.run.as_str(), ctx.attempt);
        let frozen = set_backup_read_only(ctx, "freeze-backup-mgc", true).await?;
        self.backup(ctx, &backup, file, frozen)
            .await
            .map_err(|mut e| {
                e.message = format!("{}; {}", e.message, still_frozen());
                e
            })
    }

    async fn verify(&self, _ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let r = BackupRecord::from_output(&output)?;
        let fail = |m: String| StepError::fatal(format!("{m}; {}", still_frozen()));
        if r.sha256.len() != 64 {
            return Err(fail(format!(
                "the agent returned no SHA-256 for '{}': the share must be one of the backup agent's [files] roots, or FB-4 could not check the file it restores",
                r.file
            )));
        }
        if !r.database.eq_ignore_ascii_case(MGC) {
            return Err(fail(format!(
                "the backup set is of database '{}', not {MGC}",
                r.database
            )));
        }
        if !r.has_checksums {
            return Err(fail("the backup set has no checksums".into()));
        }
        if r.last_lsn.is_empty() {
            return Err(fail("HEADERONLY returned no LastLSN".into()));
        }
        Ok(output)
    }
}

impl BackupMgc {
    /// The backup, its verification and the record FB-4 checks against.
    async fn backup(
        &self,
        ctx: &StepCtx,
        backup: &failback_proto::model::AgentId,
        file: String,
        frozen: String,
    ) -> Result<Value, StepError> {
        let out = ctx
            .act(
                backup,
                "backup-mgc",
                op(pb::operation::Kind::BackupDatabase(pb::BackupDatabase {
                    database: MGC.into(),
                    file: file.clone(),
                    copy_only: true,
                    compression: false,
                    name: format!("{MGC} failback {}", ctx.run),
                    description: format!("failback run {} of pool {}", ctx.run, ctx.pool.fqdn),
                })),
                ctx.config.data_step_timeout,
            )
            .await?;
        let b = expect_output!(out, Backup, "backup_database")?;
        let out = ctx
            .read(
                backup,
                op(pb::operation::Kind::VerifyBackup(pb::VerifyBackup {
                    file: file.clone(),
                })),
            )
            .await?;
        let v = expect_output!(out, Verify, "verify_backup")?;
        let h = v
            .headers
            .iter()
            .find(|h| h.database.eq_ignore_ascii_case(MGC) && h.backup_type == 1)
            .or(b.header.as_ref())
            .cloned()
            .ok_or_else(|| {
                StepError::fatal(format!("'{file}' holds no full backup set of {MGC}"))
            })?;
        BackupRecord {
            file: if b.file.is_empty() {
                file
            } else {
                b.file.clone()
            },
            sha256: b.sha256,
            size: b.size,
            database: h.database,
            backup_type: h.backup_type,
            has_checksums: h.has_checksums,
            first_lsn: h.first_lsn,
            last_lsn: h.last_lsn,
            checkpoint_lsn: h.checkpoint_lsn,
            database_backup_lsn: h.database_backup_lsn,
            server: h.server_name,
            finish_unix_ms: h.finish_unix_ms,
            verified: true,
            backup_frozen: frozen,
            files: v
                .files
                .iter()
                .map(|f| BackupFile {
                    logical_name: f.logical_name.clone(),
                    kind: f.r#type.clone(),
                })
                .collect(),
        }
        .to_output()
    }
}
