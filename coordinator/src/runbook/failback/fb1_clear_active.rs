//! FB-1: clear the pool's active servers, then make sure nothing is connected to the backup
//! `mgc`/`mgccomp` any more (pchat-dr.md §3 step 1, §5.2).
//!
//! - Probe: never done (see [`ClearActiveServers::probe`]): the action is idempotent and its
//!   Agent-account check must run in every run.
//! - Precondition (before any change of the run): Lync reports the pool FailedOver; a Normal
//!   pool is refused (fatal) — failing back a pool that serves from its primary would stop chat
//!   and back up the wrong copy. And the backup instance is the mirroring PRINCIPAL of every
//!   mirrored pool database ([`super::principal`]); the primary and backup instances have
//!   current names and the same major version, and their Database Engine accounts can write
//!   the share FB-3 and FB-5 back up to ([`super::instances`]); otherwise fatal, with what to
//!   do.
//! - Action: `Set-CsPersistentChatActiveServer -Identity <id> -ActiveServers $null -Force`
//!   (op `clear-active`, through a Lync shell agent of the backup data center first); then list
//!   the sessions in every pool database on the backup instance every `drain_poll` until none
//!   remain or `drain_grace` has passed, and kill the leftovers (ops `kill-<db>`). Servers not
//!   on the list refuse *new* connections but keep existing ones (§5.2), hence the grace period
//!   and the kill. Every session counts, not only the chat servers': after FB-1 nothing may
//!   write to these databases, and FB-3's backup must contain everything written before it.
//! - Also records the backup instance's SQL Server Agent service account and state
//!   (`describe_instance`) and proves that account can read the share and write the copy folder
//!   (pchat-dr.md §3 step 1, §9 item 7: FB-5's copy job runs as it): `check_agent_access` (op
//!   `agent-access`, a one-off CmdExec Agent job on the backup instance). A folder it cannot
//!   read or write aborts the pool's run before anything is changed in SQL Server. Decided: the
//!   check runs only when both folders are Windows paths (drive or UNC), the only form a CmdExec
//!   job can use; a lab topology with POSIX paths records "not checked" with the reason.
//! - Verify: the list is empty and no session remains.
//!
//! - A client that connects again after its session was killed (watched for
//!   [`reconnect_watch`], and again at verify) is not following the active-server list: it
//!   would write into the backup `mgc` after FB-3's backup. Decided: the pool's run stops there
//!   (fatal, nothing backed up or restored, the error names each session's host, program and
//!   login and what to do) rather than kill it again and race it; FB-3's freeze is the second
//!   line for a client that comes back later.
//!
//! Errors: agent not connected or no answer → asked again with the same op id until the step
//! timeout; a retryable agent error → new attempt (3 in all); a client that reconnected → abort
//! the pool's run (above); anything else (cmdlet refused, unknown pool) aborts the pool's run.

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use super::{
    MGC, expect_output, instances, op, pool_servers, pool_state, principal, sessions, shell_agents,
    sql,
};
use crate::config::RunbookConfig;
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FB-1.
pub struct ClearActiveServers;

async fn all_sessions(ctx: &StepCtx) -> Result<Vec<(String, Vec<pb::SessionInfo>)>, StepError> {
    let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
    let mut out = Vec::new();
    for db in &ctx.pool.databases {
        let s = sessions(ctx, &backup, db).await?;
        if !s.is_empty() {
            out.push((db.to_string(), s));
        }
    }
    Ok(out)
}

/// The sessions in words an operator can act on: host, program, login and SPID per database.
fn describe(sessions: &[(String, Vec<pb::SessionInfo>)]) -> String {
    sessions
        .iter()
        .map(|(db, s)| {
            let each: Vec<String> = s
                .iter()
                .map(|x| {
                    format!(
                        "{} ({}, login {}, SPID {})",
                        if x.host_name.is_empty() {
                            "unknown host"
                        } else {
                            &x.host_name
                        },
                        if x.program_name.is_empty() {
                            "unknown program"
                        } else {
                            &x.program_name
                        },
                        x.login,
                        x.spid
                    )
                })
                .collect();
            format!("{db}: {}", each.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How long FB-1 watches for a killed client coming back: twice the drain poll, at least a
/// second. A Persistent Chat server that is off the active list never opens a new connection
/// (pchat-dr.md §5.2), so one that does within this window is not following the CMS.
fn reconnect_watch(config: &RunbookConfig) -> Duration {
    (config.drain_poll * 2).max(Duration::from_secs(1))
}

/// The error for clients that reconnected after FB-1 ended their sessions.
fn reconnected(ctx: &StepCtx, left: &[(String, Vec<pb::SessionInfo>)]) -> StepError {
    StepError::fatal(format!(
        "refusing to go on: after FB-1 ended every session in the backup databases, these connected again: {}. \
         A client that is not following the pool's active-server list is still writing to the backup {MGC} \
         (a Persistent Chat server whose copy of the Central Management Store no longer replicates — \
         check Get-CsManagementStoreReplicationStatus — or another program). Nothing was backed up or restored \
         and the backup {MGC} is still writable, but the pool has no active servers now. Stop that client \
         (Stop-CsWindowsService on the chat server, or end the program) and run the failback again, or to go \
         back to serving from the backup data center: Set-CsPersistentChatActiveServer -Identity {} -ActiveServers <its servers>",
        describe(left),
        ctx.pool.fqdn
    ))
}

/// A drive (`E:\x`) or UNC (`\\host\share`) path: the forms a CmdExec Agent job can use.
fn windows_path(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with(r"\\")
        || (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
}

/// FB-1's Agent-account check (see the module doc).
async fn agent_access(
    ctx: &StepCtx,
    backup: &failback_proto::model::AgentId,
) -> Result<Value, StepError> {
    let (share, copy) = (&ctx.pool.share, &ctx.pool.copy_dir);
    if !windows_path(share) || !windows_path(copy) {
        return Ok(json!({
            "checked": false,
            "reason": format!("not checked: '{share}' or '{copy}' is not a drive or UNC path (a lab topology)"),
        }));
    }
    let out = ctx
        .act(
            backup,
            "agent-access",
            op(pb::operation::Kind::CheckAgentAccess(
                pb::CheckAgentAccess {
                    read_folder: share.clone(),
                    write_folder: copy.clone(),
                    timeout_seconds: 0,
                },
            )),
            ctx.config.step_timeout,
        )
        .await?;
    let a = expect_output!(out, AgentAccess, "check_agent_access")?;
    let messages: Vec<String> = a
        .steps
        .iter()
        .map(|s| format!("step {}: {}", s.step_id, s.message))
        .collect();
    if !a.can_read || !a.can_write {
        return Err(StepError::fatal(format!(
            "the SQL Server Agent account on the backup instance cannot {} (FB-5's copy job runs as it; grant access and run again): {}",
            match (a.can_read, a.can_write) {
                (false, false) => format!("read '{share}' nor write '{copy}'"),
                (false, true) => format!("read '{share}'"),
                _ => format!("write '{copy}'"),
            },
            messages.join("; ")
        )));
    }
    Ok(
        json!({ "checked": true, "read_folder": a.read_folder, "write_folder": a.write_folder, "commands": a.commands }),
    )
}

#[async_trait]
impl Step for ClearActiveServers {
    fn name(&self) -> &'static str {
        "fb1_clear_active"
    }

    fn title(&self) -> &'static str {
        "FB-1 clear the active servers; no session left in mgc/mgccomp on the backup instance"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let mut ops = Vec::new();
        if let Some(shell) = shell_agents(pool, &pool.backup_dc).first() {
            ops.push(PlannedOp::new(
                shell,
                "set_active_servers",
                format!(
                    "Set-CsPersistentChatActiveServer -Identity <identity of {}> -ActiveServers $null -Force",
                    pool.fqdn
                ),
            ));
        }
        if let Some(b) = pool.sql.get(&SqlRole::Backup) {
            ops.push(PlannedOp::new(
                &b.agent,
                "describe_instance",
                "read the SQL Server Agent service state and account",
            ));
            for role in [SqlRole::Backup, SqlRole::Primary] {
                if let Some(i) = pool.sql.get(&role) {
                    ops.push(PlannedOp::new(
                        &i.agent,
                        "check_engine_share_write",
                        format!(
                            "BACKUP DATABASE [model] TO DISK = N'{}\\failback_engine_probe_<id>.bak' WITH COPY_ONLY, … then delete it (the engine's account can write the share)",
                            pool.share
                        ),
                    ));
                }
            }
            if windows_path(&pool.share) && windows_path(&pool.copy_dir) {
                ops.push(PlannedOp::new(
                    &b.agent,
                    "check_agent_access",
                    format!(
                        "one-off Agent job: cmd /c dir \"{}\", write and delete a probe file in \"{}\"",
                        pool.share, pool.copy_dir
                    ),
                ));
            }
            for db in &pool.databases {
                ops.push(PlannedOp::new(
                    &b.agent,
                    "list_sessions",
                    format!("sessions in [{db}] until none remain"),
                ));
                ops.push(PlannedOp::new(
                    &b.agent,
                    "kill_sessions",
                    format!("KILL <spid> for sessions left in [{db}] after the grace period"),
                ));
            }
        }
        ops
    }

    /// Never `Done`, decided: an empty active list and no sessions are not the whole goal — the
    /// SQL Server Agent account check must prove, in this run, the share access FB-5's log
    /// shipping needs (a run that failed after clearing the servers would otherwise skip it on
    /// the next run). Acting again is harmless: clearing an empty list changes nothing.
    async fn probe(&self, _ctx: &StepCtx) -> Result<Probe, StepError> {
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let shell = ctx.pick_agent(&shell_agents(&ctx.pool, &ctx.pool.backup_dc))?;
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        // Failback brings a failed-over pool back: on a Normal pool, clearing the active servers
        // would stop chat for nothing and FB-3 would back up the wrong copy. Checked before the
        // first change of the run, so a refused run changes nothing.
        let state = pool_state(ctx, &ctx.pool.backup_dc).await?;
        if state.state() != pb::PoolStateValue::FailedOver {
            return Err(StepError::fatal(format!(
                "refusing to fail back: Lync reports pool {} as {:?}, not FailedOver; nothing was changed. \
                 Failback applies to a pool that was failed over (check with `failbackctl preflight --pool {}`)",
                ctx.pool.fqdn,
                state.state(),
                ctx.pool.fqdn
            )));
        }
        // The same holds for the mirroring role: failback starts from the live principal.
        principal::require_backup_principal(ctx).await?;
        // And the instances' names and versions FB-4 and FB-5 depend on: found only there, they
        // would stop the run after the primary has been overwritten.
        instances::check(ctx, "nothing was changed").await?;
        let mut engine_write = Vec::new();
        for role in [SqlRole::Backup, SqlRole::Primary] {
            let w = instances::engine_can_write_share(ctx, role, "nothing was changed").await?;
            engine_write.push(
                json!({ "role": role.as_str(), "account": w.account, "probe_file": w.probe_file }),
            );
        }
        let before = pool_servers(ctx, &shell).await?;
        // Test-only mutation (never in release builds): the scenarios show §9.2 breaks.
        if !failback_proto::test_break::broken(failback_proto::test_break::ACTIVE_SERVERS_GUARD) {
            ctx.act(
                &shell,
                "clear-active",
                op(pb::operation::Kind::SetActiveServers(
                    pb::SetActiveServers {
                        pool_fqdn: ctx.pool.fqdn.clone(),
                        change: pb::ActiveServersChange::Clear as i32,
                        servers: Vec::new(),
                    },
                )),
                ctx.config.step_timeout,
            )
            .await?;
        }
        let instance = ctx
            .read(
                &backup,
                op(pb::operation::Kind::DescribeInstance(
                    pb::DescribeInstance {},
                )),
            )
            .await
            .ok();
        let agent_service = instance
            .and_then(|k| match k {
                pb::operation_output::Kind::Instance(i) => Some(i),
                _ => None,
            })
            .and_then(|i| {
                i.services
                    .into_iter()
                    .find(|s| s.name.to_ascii_uppercase().contains("AGENT"))
            })
            .map(|s| json!({ "name": s.name, "status": s.status, "account": s.account }));

        let started = tokio::time::Instant::now();
        let mut killed = Vec::new();
        loop {
            let left = all_sessions(ctx).await?;
            if left.is_empty() {
                break;
            }
            if started.elapsed() >= ctx.config.drain_grace {
                tracing::warn!(pool = %ctx.pool.fqdn, "sessions left after the grace period: {}", describe(&left));
                for (db, _) in &left {
                    let out = ctx
                        .act(
                            &backup,
                            &format!("kill-{db}"),
                            op(pb::operation::Kind::KillSessions(pb::KillSessions {
                                database: db.clone(),
                                program_names: Vec::new(),
                            })),
                            ctx.config.step_timeout,
                        )
                        .await?;
                    let k = expect_output!(out, Killed, "kill_sessions")?;
                    killed.push(json!({ "database": db, "sessions": k.sessions.len() }));
                }
                // A killed client that comes straight back would write after FB-3's backup
                // (issue #12, a chat server that will not disconnect): watch for it.
                let watch = tokio::time::Instant::now();
                while watch.elapsed() < reconnect_watch(&ctx.config) {
                    ctx.sleep(ctx.config.drain_poll).await?;
                    let back = all_sessions(ctx).await?;
                    // Part of the same test-only mutation as the clear above.
                    if !back.is_empty()
                        && !failback_proto::test_break::broken(
                            failback_proto::test_break::ACTIVE_SERVERS_GUARD,
                        )
                    {
                        return Err(reconnected(ctx, &back));
                    }
                }
                break;
            }
            ctx.sleep(ctx.config.drain_poll).await?;
        }
        let agent_access = agent_access(ctx, &backup).await?;
        Ok(json!({
            "previously_active": before.active_servers,
            "drained_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "killed": killed,
            "sql_agent_service": agent_service,
            "agent_access_check": agent_access,
            "engine_share_write": engine_write,
        }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let shell = ctx.pick_agent(&shell_agents(&ctx.pool, &ctx.pool.backup_dc))?;
        let servers = pool_servers(ctx, &shell).await?;
        if !servers.active_servers.is_empty()
            && !failback_proto::test_break::broken(failback_proto::test_break::ACTIVE_SERVERS_GUARD)
        {
            return Err(StepError::retry(format!(
                "active servers still listed after clearing: {}",
                servers.active_servers.join(", ")
            )));
        }
        let left = all_sessions(ctx).await?;
        if !left.is_empty()
            && !failback_proto::test_break::broken(failback_proto::test_break::ACTIVE_SERVERS_GUARD)
        {
            return Err(reconnected(ctx, &left));
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::windows_path;

    #[test]
    fn agent_access_needs_windows_folders() {
        assert!(windows_path(r"\\fileserver\pchat-ls"));
        assert!(windows_path(r"E:\PChatLSCopy"));
        assert!(!windows_path("/lab/share"));
        assert!(!windows_path("E:"));
        assert!(!windows_path("relative"));
    }
}
