//! The backup `mgc`'s freeze (`ALTER DATABASE [mgc] SET READ_ONLY WITH ROLLBACK IMMEDIATE` on
//! the backup instance), shared by FB-3, which freezes it before its backup, and FB-4, which
//! asserts it again before the restore and lifts it when it refuses FB-3's file.
//!
//! Why FB-3 (issue #12, a chat server that will not disconnect): FB-1 ends every session, but a
//! client that ignores the active-server list can connect again at any time. Whatever it writes
//! after FB-3's backup began is not in the backup, and before this the backup stayed writable
//! until FB-4 — a window in which SQL Server acknowledged messages that the failback then lost.
//! Frozen first, the backup holds every acknowledged message and later writes are refused (the
//! client sees an error, not a lost message). The cost is availability while FB-3 and FB-4 run,
//! which FB-1 has already given up (no active servers); FB-4 gives it back when it refuses the
//! file. A freeze destroys nothing (SET READ_WRITE undoes it), so FB-3 needs no approval: a run
//! waiting for FB-4's approval waits with the backup `mgc` frozen.

use failback_proto::pb;

use super::{MGC, expect_output, op, sql};
use crate::runbook::{StepCtx, StepError};
use crate::topology::SqlRole;

/// Sets the backup `mgc` READ_ONLY (`read_only`) or READ_WRITE with op `op_name`; the agent's
/// detail. Under the test-only mutation `backup-freeze` (never in release builds) a freeze is
/// skipped: DESIGN §9.7's and §9.6's scenarios show what it prevents.
pub async fn set_backup_read_only(
    ctx: &StepCtx,
    op_name: &str,
    read_only: bool,
) -> Result<String, StepError> {
    if read_only && failback_proto::test_break::broken(failback_proto::test_break::BACKUP_FREEZE) {
        return Ok("not frozen (test-only mutation backup-freeze)".into());
    }
    let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
    let out = ctx
        .act(
            &backup,
            op_name,
            op(pb::operation::Kind::SetReadOnly(pb::SetReadOnly {
                database: MGC.into(),
                read_only,
            })),
            ctx.config.step_timeout,
        )
        .await?;
    Ok(expect_output!(out, Done, "set_read_only")?.detail)
}

/// What an operator reads when a step fails with the backup `mgc` frozen.
pub fn still_frozen() -> String {
    format!(
        "the backup {MGC} is READ_ONLY since FB-3 and stays so: to keep serving the pool from it, run ALTER DATABASE [{MGC}] SET READ_WRITE on the backup instance"
    )
}
