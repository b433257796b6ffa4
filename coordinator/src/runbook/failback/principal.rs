//! Failback starts from the live principal (pchat-dr.md §6.1, issue #11 item 2).
//!
//! `ALTER DATABASE … SET PARTNER OFF` succeeds on either partner. When the backup instance is
//! currently the MIRROR of a pool database (its own mirror took over), FB-2 would leave the
//! backup's copy RESTORING while the live principal — the copy chat has been writing to — sits
//! on the backup mirror, FB-3 would find nothing to back up, and the messages written since the
//! takeover would stay behind. Decided: failback does not re-plan itself around the mirror (the
//! topology, the log shipping FB-5 sets up and the Lync store all name the backup instance);
//! it stops before its first change and says how to make the backup instance the principal
//! again. FB-1 checks this before it clears the active servers, FB-2 before any SET PARTNER OFF,
//! and preflight for failback reports the same finding.

use failback_proto::model::DatabaseName;
use failback_proto::pb;

use super::{expect_output, op, sql};
use crate::runbook::{StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// `sys.database_mirroring` on the backup instance for every pool database.
pub async fn backup_mirroring(ctx: &StepCtx) -> Result<Vec<pb::MirroringInfo>, StepError> {
    let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
    let out = ctx
        .read(
            &backup,
            op(pb::operation::Kind::MirroringState(pb::MirroringState {
                databases: ctx.pool.databases.iter().map(ToString::to_string).collect(),
            })),
        )
        .await?;
    Ok(expect_output!(out, MirroringStates, "mirroring_state")?.databases)
}

/// The pool databases mirrored on the backup instance (any role).
pub fn mirrored(pool: &Pool, states: &[pb::MirroringInfo]) -> Vec<DatabaseName> {
    pool.databases
        .iter()
        .filter(|db| {
            states
                .iter()
                .any(|m| m.mirrored && m.database.eq_ignore_ascii_case(db.as_str()))
        })
        .cloned()
        .collect()
}

/// What is wrong (`found`) and what to do (`fix`) when the backup instance is not the
/// principal of a mirrored pool database. Shared by the runbook and preflight so they say the
/// same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPrincipal {
    /// The databases and their roles, states and principals.
    pub found: String,
    /// How to make the backup instance the principal again.
    pub fix: String,
}

/// `None` when every mirrored pool database has the backup instance as PRINCIPAL.
pub fn not_principal(pool: &Pool, states: &[pb::MirroringInfo]) -> Option<NotPrincipal> {
    let backup = pool
        .sql
        .get(&SqlRole::Backup)
        .map_or("the backup instance", |s| s.instance.as_str());
    let wrong: Vec<&pb::MirroringInfo> = states
        .iter()
        .filter(|m| {
            m.mirrored
                && !m.role.eq_ignore_ascii_case("PRINCIPAL")
                && pool
                    .databases
                    .iter()
                    .any(|db| m.database.eq_ignore_ascii_case(db.as_str()))
        })
        .collect();
    let first = wrong.first()?;
    let listed: Vec<String> = wrong
        .iter()
        .map(|m| {
            format!(
                "[{}] is the mirroring {} ({}), principal {}",
                m.database, m.role, m.state, m.partner_instance
            )
        })
        .collect();
    Some(NotPrincipal {
        found: format!("on the backup instance {backup} {}", listed.join("; ")),
        fix: format!(
            "make {backup} the principal again, then run `failbackctl preflight --pool {pool}` \
             and the failback: from a Lync Server Management Shell `Invoke-CsDatabaseFailover \
             -PoolFqdn {pool} -DatabaseType PersistentChat -NewPrincipal Primary`, or on \
             {partner} `ALTER DATABASE [{db}] SET PARTNER FAILOVER;` once the session is \
             SYNCHRONIZED (with the partner unreachable, bring it back first: forcing service \
             would lose what only the principal holds)",
            pool = pool.fqdn,
            partner = first.partner_instance,
            db = first.database,
        ),
    })
}

/// Fails the run (fatal, nothing changed) when the backup instance is not the principal of
/// every mirrored pool database; returns the states it read.
pub async fn require_backup_principal(ctx: &StepCtx) -> Result<Vec<pb::MirroringInfo>, StepError> {
    let states = backup_mirroring(ctx).await?;
    match not_principal(&ctx.pool, &states) {
        Some(n) => Err(StepError::fatal(format!(
            "refusing to fail back pool {}: {}; failback must start from the live principal and \
             nothing was changed. To go on: {}",
            ctx.pool.fqdn, n.found, n.fix
        ))),
        None => Ok(states),
    }
}
