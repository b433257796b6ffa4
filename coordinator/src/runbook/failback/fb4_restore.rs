//! FB-4: restore the primary's `mgc` from FB-3's file, overwriting, ready to use
//! (pchat-dr.md §3 step 4, §6.4). **Destructive**: needs the run's approval.
//!
//! - Inputs: FB-3's file, SHA-256 and LSNs (a pool without them fails here).
//! - Probe: always needed. A rebuilt, empty `mgc` on the primary is ONLINE too, so "ONLINE" alone
//!   cannot say the restore happened; the agent exposes no restore history yet, so the goal
//!   can only be proven by this step's own restore result.
//! - Preconditions (invariant 2): the pool's active-server list is empty (FB-1 still holds).
//! - Action: `RESTORE DATABASE [mgc] FROM DISK = @file WITH FILE = 1, REPLACE, RECOVERY,
//!   CHECKSUM, MOVE …` (op `restore-mgc`): the agent re-checks the file's SHA-256 against
//!   FB-3's (invariant 3) and refuses on a mismatch, takes exclusive access (ends the sessions in
//!   `mgc` with ROLLBACK IMMEDIATE), and MOVEs each file to the instance's default paths.
//! - First the primary's agent checks the file's SHA-256 against FB-3's (op `check-file`): a
//!   mismatch (or another failure that stops the run) lifts FB-3's freeze of the backup `mgc`
//!   (op `thaw-backup-mgc`, SET READ_WRITE) so the pool is not left with no writable `mgc`, and
//!   aborts with nothing restored. A retryable failure keeps the freeze (see the code).
//! - Before the restore (invariant 7, never two writable `mgc`): the backup instance's `mgc` is
//!   READ_ONLY — FB-3 froze it ([`super::freeze`]); asserted again here (op `freeze-backup-mgc`,
//!   a no-op unless someone lifted it), so the moment the primary copy becomes writable the
//!   backup copy no longer is; FB-5 then restores the backup WITH NORECOVERY (RESTORING).
//!   Decided over OFFLINE (a restore over an offline database needs its files, READ_ONLY keeps
//!   it readable for an operator who wants to compare). If the run stops between FB-3 and FB-5,
//!   the backup `mgc` stays read-only: to go back to the backup copy, `ALTER DATABASE [mgc] SET
//!   READ_WRITE` on it (the error says so).
//! - Verify: `mgc` is ONLINE on the primary, and the restored set's LastLSN and CheckpointLSN
//!   equal those FB-3 recorded.
//!
//! After a leader change the restore is asked again with the same op id: the agent's journal
//! answers (or says it is still running) — it never runs twice. If the agent itself restarted
//! mid-restore (`INTERRUPTED`), the probe cannot prove the goal, so the pool fails for a person
//! to look (never a blind second restore).
//!
//! Errors: agent unreachable / no answer → asked again with the same op id; active servers
//! present, checksum mismatch, wrong LSN, not ONLINE → abort the pool's run; retryable SQL
//! errors (3101 "database in use" after the exclusive-access attempt) → new attempt (2 in all).

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use super::freeze::{set_backup_read_only, still_frozen};
use super::{MGC, database_states, expect_output, mgc, op, pool_servers, shell_agents, sql};
use crate::config::RunbookConfig;
use crate::runbook::records::BackupRecord;
use crate::runbook::{ErrorClass, PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FB-4.
pub struct RestorePrimary;

#[async_trait]
impl Step for RestorePrimary {
    fn name(&self) -> &'static str {
        "fb4_restore"
    }

    fn title(&self) -> &'static str {
        "FB-4 restore the primary mgc from FB-3's file (REPLACE, RECOVERY; SHA-256 and LSN checked)"
    }

    fn destructive(&self) -> bool {
        true
    }

    fn max_attempts(&self) -> u32 {
        2
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.data_step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let Some(p) = pool.sql.get(&SqlRole::Primary) else {
            return Vec::new();
        };
        let mut ops = Vec::new();
        if let Some(shell) = shell_agents(pool, &pool.primary_dc).first() {
            ops.push(PlannedOp::new(
                shell,
                "pool_servers",
                "precondition: no active server",
            ));
        }
        ops.push(PlannedOp::new(
            &p.agent,
            "file_checksum",
            "SHA-256 of FB-3's file equals FB-3's record (before anything changes)",
        ));
        if let Some(b) = pool.sql.get(&SqlRole::Backup) {
            ops.push(PlannedOp::new(
                &b.agent,
                "set_read_only",
                format!("ALTER DATABASE [{MGC}] SET READ_ONLY WITH ROLLBACK IMMEDIATE, asserting FB-3's freeze (SET READ_WRITE instead if the file is refused)"),
            ));
        }
        ops.push(PlannedOp::new(
            &p.agent,
            "restore_database",
            format!("SHA-256 re-check of FB-3's file; ALTER DATABASE [{MGC}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE (if in use); RESTORE DATABASE [{MGC}] FROM DISK = N'<FB-3 file>' WITH FILE = 1, REPLACE, RECOVERY, CHECKSUM, MOVE … to the default paths"),
        ));
        ops.push(PlannedOp::new(
            &p.agent,
            "database_state",
            format!("[{MGC}] ONLINE; LastLSN equals FB-3's"),
        ));
        ops
    }

    async fn probe(&self, _ctx: &StepCtx) -> Result<Probe, StepError> {
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let fb3 = ctx
            .prior_record::<BackupRecord>()?
            .ok_or_else(|| StepError::fatal("FB-3 recorded no backup file"))?;
        let (file, sha) = (fb3.file, fb3.sha256);
        if file.is_empty() || sha.len() != 64 {
            return Err(StepError::fatal(
                "FB-3's record lacks the file or its SHA-256",
            ));
        }
        let shell = ctx.pick_agent(&shell_agents(&ctx.pool, &ctx.pool.primary_dc))?;
        let servers = pool_servers(ctx, &shell).await?;
        if !servers.active_servers.is_empty()
            && !failback_proto::test_break::broken(failback_proto::test_break::ACTIVE_SERVERS_GUARD)
        {
            return Err(StepError::fatal(format!(
                "refusing to restore: active servers {} (FB-1 no longer holds); {}",
                servers.active_servers.join(", "),
                still_frozen()
            )));
        }
        // The file is checked before anything changes here. FB-3 froze the backup mgc; a file
        // refused for good lifts that freeze, so the pool keeps a writable mgc (issue #12,
        // availability). A retryable failure keeps the freeze: the next attempt restores FB-3's
        // file, and a write let in meanwhile would be missing from it. The agent checks the
        // SHA-256 again inside the restore, so a file changed in between is still refused.
        let primary = sql(&ctx.pool, SqlRole::Primary)?.agent.clone();
        let checked = ctx
            .act(
                &primary,
                "check-file",
                op(pb::operation::Kind::FileChecksum(pb::FileChecksum {
                    path: file.clone(),
                })),
                ctx.config.data_step_timeout,
            )
            .await
            .and_then(|out| Ok(expect_output!(out, Checksum, "file_checksum")?.sha256));
        let refused = match checked {
            // `fb4-checksum` is a test-only mutation (never in release builds): DESIGN §9.3's
            // scenario.
            Ok(got)
                if got.eq_ignore_ascii_case(&sha)
                    || failback_proto::test_break::broken(
                        failback_proto::test_break::FB4_CHECKSUM,
                    ) =>
            {
                None
            }
            Ok(got) => Some(StepError::fatal(format!(
                "refusing to restore: backup file '{file}' has SHA-256 {got} on the primary, but FB-3 recorded {sha}; \
                 nothing was restored. Start a new failback run: FB-3 writes a new file"
            ))),
            Err(e) => Some(e),
        };
        if let Some(mut e) = refused {
            if e.class != ErrorClass::Fatal
                || failback_proto::test_break::broken(
                    failback_proto::test_break::REFUSAL_KEEPS_FREEZE,
                )
            {
                e.message = format!("{}; nothing was restored; {}", e.message, still_frozen());
                return Err(e);
            }
            e.message = match set_backup_read_only(ctx, "thaw-backup-mgc", false).await {
                Ok(_) => format!(
                    "{}; nothing was restored, and the backup {MGC}, frozen by FB-3, was set READ_WRITE again (it is still the pool's database)",
                    e.message
                ),
                Err(t) => format!(
                    "{}; nothing was restored, and lifting FB-3's freeze failed ({}): {}",
                    e.message,
                    t.message,
                    still_frozen()
                ),
            };
            return Err(e);
        }
        // FB-3's freeze, asserted again (a no-op unless someone lifted it since).
        let frozen_detail = set_backup_read_only(ctx, "freeze-backup-mgc", true).await?;
        let out = ctx
            .act(
                &primary,
                "restore-mgc",
                op(pb::operation::Kind::RestoreDatabase(pb::RestoreDatabase {
                    database: MGC.into(),
                    file: file.clone(),
                    recovery: pb::RecoveryMode::Recovery as i32,
                    standby_file: String::new(),
                    replace: true,
                    expected_sha256: sha.clone(),
                })),
                ctx.config.data_step_timeout,
            )
            .await
            .map_err(|mut e| {
                // The freeze stays: say so where the operator reads the failure.
                e.message = format!("{}; {}", e.message, still_frozen());
                e
            })?;
        let r = expect_output!(out, Restore, "restore_database")?;
        let h = r.header.unwrap_or_default();
        Ok(json!({
            "file": file,
            "sha256": sha,
            "state": r.state,
            "last_lsn": h.last_lsn,
            "checkpoint_lsn": h.checkpoint_lsn,
            "moves": r.moves.iter().map(|m| json!({ "logical_name": m.logical_name, "physical_name": m.physical_name })).collect::<Vec<_>>(),
            "ended_sessions": r.ended_sessions.len(),
            "backup_frozen": frozen_detail,
        }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let primary = sql(&ctx.pool, SqlRole::Primary)?.agent.clone();
        let states = database_states(ctx, &primary, &[mgc()]).await?;
        let state = states
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(MGC))
            .map(|d| d.state.clone())
            .unwrap_or_default();
        if state != "ONLINE" {
            return Err(StepError::fatal(format!(
                "{MGC} on the primary is '{state}' after the restore, not ONLINE"
            )));
        }
        let fb3 = ctx.prior_record::<BackupRecord>()?.unwrap_or_default();
        for (k, want) in [
            ("last_lsn", fb3.last_lsn.as_str()),
            ("checkpoint_lsn", fb3.checkpoint_lsn.as_str()),
        ] {
            let got = output.get(k).and_then(Value::as_str).unwrap_or_default();
            if want != got {
                return Err(StepError::fatal(format!(
                    "restored {k} {got} differs from FB-3's backup ({want})"
                )));
            }
        }
        Ok(output)
    }
}
