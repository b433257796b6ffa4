//! The primary and backup instances as failback needs them (issue #11 item 7): current names
//! and matching versions, checked by FB-1 before the run's first change and again by FB-5.
//!
//! - Names: log shipping records `@@SERVERNAME` (`HOST` or `HOST\INSTANCE`), which need not be
//!   the topology's client address (an FQDN, a `,port`), so FB-5 registers each instance under
//!   its `@@SERVERNAME`. A stale one (differing from `SERVERPROPERTY('ServerName')` after a
//!   rename or rebuild) is refused: the jobs and monitor rows would name a server that does not
//!   exist.
//! - Versions: FB-4 restores the backup instance's full backup on the primary (the backup must
//!   not be newer: Msg 3169) and FB-5 ships the primary's logs to the backup (the primary must
//!   not be newer), so failback needs the same major version on both.
//!
//! - The engine's account: FB-3 (on the backup instance) and FB-5 (the seed, on the primary)
//!   write full backups to the share as the SQL Server service account, not the Agent's; FB-1
//!   proves both can before it stops chat ([`engine_can_write_share`], the agent's
//!   `check_engine_share_write` probe), so a missing grant is found before the outage, not at
//!   FB-3.
//!
//! Every refusal is fatal (no retry can fix it) and names the fix.

use failback_proto::pb;

use super::{expect_output, op, sql};
use crate::runbook::{StepCtx, StepError};
use crate::topology::SqlRole;
use failback_proto::model::sql_major_version as major;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instances {
    /// `@@SERVERNAME` of the primary.
    pub primary_name: String,
    /// `@@SERVERNAME` of the backup instance.
    pub backup_name: String,
}

async fn describe(ctx: &StepCtx, role: SqlRole) -> Result<pb::InstanceInfo, StepError> {
    let s = sql(&ctx.pool, role)?;
    let out = ctx
        .read(
            &s.agent,
            op(pb::operation::Kind::DescribeInstance(
                pb::DescribeInstance {},
            )),
        )
        .await?;
    expect_output!(out, Instance, "describe_instance")
}

/// The recorded name of `role`'s instance, or why it cannot be used; `done` says what the
/// refusal left untouched.
fn recorded_name(
    ctx: &StepCtx,
    role: SqlRole,
    i: &pb::InstanceInfo,
    done: &str,
) -> Result<String, StepError> {
    let s = sql(&ctx.pool, role)?;
    if i.at_servername.is_empty() {
        return Err(StepError::fatal(format!(
            "the agent {} did not report @@SERVERNAME of {}: upgrade failback-agent there; {done}",
            s.agent, s.instance
        )));
    }
    if !i.at_servername.eq_ignore_ascii_case(&i.server_name) {
        return Err(StepError::fatal(format!(
            "@@SERVERNAME of {} is {} but SERVERPROPERTY('ServerName') is {}: log shipping would record a server that does not exist; {done}. \
             On {}: EXEC sp_dropserver N'{}'; EXEC sp_addserver N'{}', 'local'; restart the SQL Server service, then run the failback again",
            s.instance, i.at_servername, i.server_name, s.instance, i.at_servername, i.server_name
        )));
    }
    Ok(i.at_servername.clone())
}

/// Describes both instances and checks their names and major versions.
pub async fn check(ctx: &StepCtx, done: &str) -> Result<Instances, StepError> {
    let p = describe(ctx, SqlRole::Primary).await?;
    let b = describe(ctx, SqlRole::Backup).await?;
    let primary_name = recorded_name(ctx, SqlRole::Primary, &p, done)?;
    let backup_name = recorded_name(ctx, SqlRole::Backup, &b, done)?;
    match (major(&p.product_version), major(&b.product_version)) {
        (Some(pm), Some(bm)) if pm == bm => {}
        (Some(pm), Some(bm)) => {
            let fix = if bm > pm {
                format!(
                    "upgrade {primary_name} to major version {bm}: FB-4 cannot restore a backup from a newer server (3169)"
                )
            } else {
                format!(
                    "upgrade {backup_name} to major version {pm}: FB-5's log restores there would fail (3169)"
                )
            };
            return Err(StepError::fatal(format!(
                "the primary {primary_name} runs SQL Server {} and the backup {backup_name} runs {}: failback needs the same major version; {done}. To go on: {fix}",
                p.product_version, b.product_version
            )));
        }
        _ => {
            return Err(StepError::fatal(format!(
                "unreadable SQL Server versions (primary {:?}, backup {:?}); {done}",
                p.product_version, b.product_version
            )));
        }
    }
    Ok(Instances {
        primary_name,
        backup_name,
    })
}

/// The SQL Server service account of `role`'s instance can write a file on the pool's share
/// (a COPY_ONLY backup of `model`, deleted again by the agent); otherwise fatal with the grant
/// to make.
pub async fn engine_can_write_share(
    ctx: &StepCtx,
    role: SqlRole,
    done: &str,
) -> Result<pb::EngineShareWrite, StepError> {
    let s = sql(&ctx.pool, role)?;
    let out = ctx
        .act(
            &s.agent,
            &format!("engine-write-{}", role.as_str()),
            op(pb::operation::Kind::CheckEngineShareWrite(
                pb::CheckEngineShareWrite {
                    directory: ctx.pool.share.clone(),
                },
            )),
            ctx.config.step_timeout,
        )
        .await?;
    let w = expect_output!(out, EngineShareWrite, "check_engine_share_write")?;
    if w.can_write {
        return Ok(w);
    }
    let account = if w.account.is_empty() {
        "the SQL Server service account".to_string()
    } else {
        w.account.clone()
    };
    Err(StepError::fatal(format!(
        "the Database Engine of {} cannot write the share {} as {account} (SQL Server error {}, operating system error {}: {}); {done}. \
         Grant {account} (a virtual account such as NT Service\\MSSQLSERVER reaches a share as the computer account DOMAIN\\HOST$) Modify on the share and its folder, then run the failback again",
        s.instance, ctx.pool.share, w.sql_error, w.os_error, w.message
    )))
}
