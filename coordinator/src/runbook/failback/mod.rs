//! The failback runbook (DESIGN §1, pchat-dr.md §3): one file per step.
//!
//! | step | file | where |
//! |---|---|---|
//! | FB-1 | [`fb1_clear_active`] | Lync shell, backup SQL |
//! | FB-2 | [`fb2_remove_mirroring`] | backup SQL |
//! | FB-3 | [`fb3_backup`] | backup SQL |
//! | FB-4 | [`fb4_restore`] | primary SQL (destructive) |
//! | FB-5 | [`fb5_log_shipping`] | both SQL (destructive; through [`fb5_log_shipping::AgentLogShipping`]) |
//! | FB-6 | [`fb6_activate`] | Lync shell, chat servers |
//! | FB-7 | [`fb7_pool_normal`] | Lync shell |
//! | FB-8 | [`fb8_prune_backups`] | primary SQL host's files (destructive; not in the Microsoft runbook: backup retention on the share) |
//!
//! Order: FB-1..FB-5, then FB-7 before FB-6 by default, FB-8 last — see
//! [`crate::config::RunbookConfig::activate_before_normal`]: the documented order activates
//! servers while the pool still points at the backup databases (pchat-dr.md §9 item 3); a server
//! that accepts a connection in that window writes into the backup `mgc`, which is no longer the
//! copy that survives (invariants 6 and 7), so Normal goes first.
//!
//! `mgccomp` (pchat-dr.md §4.4, §9 item 5), decided: no topic backs up, restores or log-ships
//! `mgccomp`, and the failover topic says it is not failed over; the failback topic only asks to
//! remove its mirroring. So `mgccomp` takes part in FB-1 (no sessions may remain in it), FB-2
//! (mirroring removed where it exists) and nothing else: the primary's `mgccomp` rebuilt by
//! Topology Builder is the one the pool uses after failback.

pub mod fb1_clear_active;
pub mod fb2_remove_mirroring;
pub mod fb3_backup;
pub mod fb4_restore;
pub mod fb5_log_shipping;
pub mod fb6_activate;
pub mod fb7_pool_normal;
pub mod fb8_prune_backups;
pub mod freeze;
pub mod instances;
pub mod left;
pub mod principal;

use std::sync::Arc;

use failback_proto::model::{AgentId, DatabaseName};
use failback_proto::pb;

use super::{StepError, StepRef};
use crate::config::RunbookConfig;
use crate::error::Error;
use crate::store::RunbookKind;
use crate::topology::{Pool, SqlInstance, SqlRole};

/// The steps of a runbook kind.
pub fn runbook(kind: RunbookKind, config: &RunbookConfig) -> Result<Vec<StepRef>, Error> {
    match kind {
        RunbookKind::Failback => Ok(steps(
            config,
            Some(Arc::new(fb5_log_shipping::AgentLogShipping)),
        )),
        RunbookKind::Failover => Ok(super::failover::steps(config)),
        other => Err(Error::InvalidInput(format!(
            "the {other:?} runbook is not implemented yet; failback and failover are"
        ))),
    }
}

/// The failback steps in execution order; `log_shipping` wires FB-5 (None = FB-5 is skipped
/// with a clear reason; [`runbook`] wires [`fb5_log_shipping::AgentLogShipping`]).
pub fn steps(
    config: &RunbookConfig,
    log_shipping: Option<Arc<dyn fb5_log_shipping::LogShippingSetup>>,
) -> Vec<StepRef> {
    let mut s: Vec<StepRef> = vec![
        Arc::new(fb1_clear_active::ClearActiveServers),
        Arc::new(fb2_remove_mirroring::RemoveMirroring),
        Arc::new(fb3_backup::BackupMgc),
        Arc::new(fb4_restore::RestorePrimary),
        Arc::new(fb5_log_shipping::LogShipping {
            setup: log_shipping,
        }),
    ];
    if config.activate_before_normal {
        s.push(Arc::new(fb6_activate::ActivateServers));
        s.push(Arc::new(fb7_pool_normal::PoolNormal));
    } else {
        s.push(Arc::new(fb7_pool_normal::PoolNormal));
        s.push(Arc::new(fb6_activate::ActivateServers));
    }
    s.push(Arc::new(fb8_prune_backups::PruneBackups));
    s
}

/// The content database.
pub const MGC: &str = "mgc";

/// The pool's SQL instance in `role`.
pub fn sql(pool: &Pool, role: SqlRole) -> Result<&SqlInstance, StepError> {
    pool.sql.get(&role).ok_or_else(|| {
        StepError::fatal(format!(
            "pool '{}' has no {} SQL instance in the topology",
            pool.fqdn,
            role.as_str()
        ))
    })
}

/// `mgc` as a database name.
pub fn mgc() -> DatabaseName {
    // A constant that satisfies the identifier rules.
    DatabaseName::new(MGC).unwrap_or_else(|_| unreachable!("'mgc' is a valid database name"))
}

/// Lync shell agents, those of `first_dc` first, then the others.
pub fn shell_agents(pool: &Pool, first_dc: &str) -> Vec<AgentId> {
    let mut out: Vec<AgentId> = pool.lync_shell.get(first_dc).cloned().unwrap_or_default();
    for (dc, agents) in &pool.lync_shell {
        if dc != first_dc {
            out.extend(agents.iter().cloned());
        }
    }
    out
}

/// Wraps an operation kind.
pub fn op(kind: pb::operation::Kind) -> pb::Operation {
    pb::Operation { kind: Some(kind) }
}

/// Joins a file name to a folder written the way its host writes paths (`\` when the folder
/// has one, else `/`).
pub fn join_path(dir: &str, name: &str) -> String {
    let sep = if dir.contains('\\') { '\\' } else { '/' };
    let dir = dir.trim_end_matches(['\\', '/']);
    format!("{dir}{sep}{name}")
}

/// Unwraps an output variant or fails the step naming what came instead.
macro_rules! expect_output {
    ($out:expr, $variant:ident, $what:expr) => {
        match $out {
            failback_proto::pb::operation_output::Kind::$variant(v) => Ok(v),
            other => Err($crate::runbook::StepError::fatal(format!(
                "{}: unexpected output {:?}",
                $what, other
            ))),
        }
    };
}
pub(crate) use expect_output;

/// `Get-CsService`/active-server read through a shell agent.
pub async fn pool_servers(
    ctx: &super::StepCtx,
    agent: &AgentId,
) -> Result<pb::PoolServersInfo, StepError> {
    let out = ctx
        .read(
            agent,
            op(pb::operation::Kind::PoolServers(pb::PoolServers {
                pool_fqdn: ctx.pool.fqdn.clone(),
            })),
        )
        .await?;
    expect_output!(out, PoolServers, "pool_servers")
}

/// The pool's state (`Get-CsPersistentChatState`) read through a Management Shell agent of
/// data center `dc`.
pub async fn pool_state(ctx: &super::StepCtx, dc: &str) -> Result<pb::PoolStateInfo, StepError> {
    let shell = ctx.pick_agent(&shell_agents(&ctx.pool, dc))?;
    let out = ctx
        .read(
            &shell,
            op(pb::operation::Kind::PoolState(pb::PoolState {
                pool_fqdn: ctx.pool.fqdn.clone(),
            })),
        )
        .await?;
    expect_output!(out, PoolState, "pool_state")
}

/// Sessions in `db` on the instance of `agent`.
pub async fn sessions(
    ctx: &super::StepCtx,
    agent: &AgentId,
    db: &DatabaseName,
) -> Result<Vec<pb::SessionInfo>, StepError> {
    let out = ctx
        .read(
            agent,
            op(pb::operation::Kind::ListSessions(pb::ListSessions {
                database: db.to_string(),
            })),
        )
        .await?;
    Ok(expect_output!(out, Sessions, "list_sessions")?.sessions)
}

/// State of the pool's databases on the instance of `agent`.
pub async fn database_states(
    ctx: &super::StepCtx,
    agent: &AgentId,
    dbs: &[DatabaseName],
) -> Result<Vec<pb::DatabaseInfo>, StepError> {
    let out = ctx
        .read(
            agent,
            op(pb::operation::Kind::DatabaseState(pb::DatabaseState {
                databases: dbs.iter().map(ToString::to_string).collect(),
            })),
        )
        .await?;
    Ok(expect_output!(out, DatabaseStates, "database_state")?.databases)
}

/// Case-insensitive set equality of server FQDN lists.
pub fn same_servers(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_paths() {
        let names = |c: &RunbookConfig| -> Vec<&'static str> {
            steps(c, None).iter().map(|s| s.name()).collect()
        };
        let mut c = RunbookConfig::default();
        assert_eq!(
            names(&c),
            [
                "fb1_clear_active",
                "fb2_remove_mirroring",
                "fb3_backup",
                "fb4_restore",
                "fb5_log_shipping",
                "fb7_pool_normal",
                "fb6_activate",
                "fb8_prune_backups"
            ]
        );
        c.activate_before_normal = true;
        assert_eq!(names(&c)[5..7], ["fb6_activate", "fb7_pool_normal"]);
        assert_eq!(join_path(r"\\fs\ls\", "a.bak"), r"\\fs\ls\a.bak");
        assert_eq!(join_path("/srv/ls", "a.bak"), "/srv/ls/a.bak");
        assert!(same_servers(
            &["A.x".into(), "b.x".into()],
            &["b.X".into(), "a.x".into()]
        ));
        assert!(runbook(RunbookKind::Drill, &c).is_err());
    }
}
