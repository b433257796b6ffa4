//! Facts → checks, per direction. Every check that is not ok says what to fix in one sentence an
//! on-call operator can act on; the log shipping checks live in [`super::logship`].
//!
//! Which checks a direction has, in order: the pool's agents, the pool state, the active servers,
//! each SQL instance, the databases, mirroring, SQL Server Agent on the primary and the backup,
//! the Agent account's access; then for failover the log shipping checks (backup, copy, restore,
//! latency, RPO estimate, uncopied files, LSN chain, free space in the copy folder) and for
//! failback the RPO (lossless by design), the free space for FB-3's full backup and the engine
//! accounts' write to the share ([`super::engine_access`]).

use failback_proto::pb;
use failback_proto::pb::PreflightStatus as St;

use super::Settings;
use super::facts::{Facts, SqlFacts};
use super::{identity, logship};
use crate::runbook::failback::MGC;
use crate::runbook::failback::principal::{NotPrincipal, not_principal};
use crate::topology::SqlRole;

/// A runbook direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Primary data center → backup data center.
    Failover,
    /// Back again.
    Failback,
}

impl Direction {
    /// Name on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Failover => "failover",
            Direction::Failback => "failback",
        }
    }
}

/// Builds one check.
pub fn check(
    name: &str,
    target: impl Into<String>,
    status: St,
    observed: impl Into<String>,
    threshold: impl Into<String>,
    fix: impl Into<String>,
) -> pb::PreflightCheck {
    pb::PreflightCheck {
        name: name.to_string(),
        target: target.into(),
        status: status.into(),
        observed: observed.into(),
        threshold: threshold.into(),
        fix: fix.into(),
    }
}

/// An ok check (no threshold, no fix).
pub fn ok(
    name: &str,
    target: impl Into<String>,
    observed: impl Into<String>,
) -> pb::PreflightCheck {
    check(name, target, St::Ok, observed, "", "")
}

/// A check that does not apply now.
pub fn skip(name: &str, target: impl Into<String>, why: impl Into<String>) -> pb::PreflightCheck {
    check(name, target, St::Skip, why, "", "")
}

/// Human size (binary units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Human age from milliseconds.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s / 60) % 60),
    }
}

/// The pool's state as read, if it was.
fn state_of(f: &Facts) -> Option<pb::PoolStateValue> {
    f.pool_state.as_ref().ok().map(|s| s.state())
}

/// Every check of both directions for one pool.
pub fn evaluate(f: &Facts, s: &Settings) -> pb::PreflightPool {
    let state = state_of(f);
    let dirs: Vec<pb::PreflightDirection> = [Direction::Failover, Direction::Failback]
        .into_iter()
        .map(|d| {
            let next = matches!(
                (d, state),
                (Direction::Failover, Some(pb::PoolStateValue::Normal))
                    | (Direction::Failback, Some(pb::PoolStateValue::FailedOver))
            );
            let checks = direction(f, s, d, next);
            pb::PreflightDirection {
                direction: d.as_str().to_string(),
                ready: checks.iter().all(|c| c.status() != St::Fail),
                next,
                checks,
            }
        })
        .collect();
    pb::PreflightPool {
        pool: f.pool.fqdn.clone(),
        pool_state: match state {
            Some(pb::PoolStateValue::Normal) => "Normal",
            Some(pb::PoolStateValue::FailedOver) => "FailedOver",
            _ => "unknown",
        }
        .to_string(),
        ready: dirs.iter().all(|d| d.ready),
        directions: dirs,
    }
}

/// The checks of one direction; `next` = the pool's state leads to it.
pub fn direction(f: &Facts, s: &Settings, d: Direction, next: bool) -> Vec<pb::PreflightCheck> {
    let mut out = agents(f);
    out.push(pool_state(f, d));
    out.push(active_servers(f, d));
    for sql in &f.sql {
        out.push(sql_instance(sql));
    }
    for role in [SqlRole::Primary, SqlRole::Backup] {
        if let Some(sql) = f.sql(role) {
            out.push(identity::server_name(sql, d));
        }
    }
    out.push(identity::versions(f, d));
    out.extend(databases(f, d, next));
    out.push(mirroring(f, d, next));
    for role in [SqlRole::Primary, SqlRole::Backup] {
        if let Some(sql) = f.sql(role) {
            out.push(sql_agent_service(sql));
        }
    }
    out.push(sql_agent_access(f));
    match d {
        Direction::Failover => out.extend(logship::failover(f, s, next)),
        Direction::Failback => {
            out.push(ok(
                "rpo_estimate",
                "",
                "0: failback is lossless by design (FB-1 stops every writer before FB-3's full backup)",
            ));
            out.push(super::space::full_backups(f, s));
            out.extend(super::engine_access::checks(f, s));
        }
    }
    out
}

fn agents(f: &Facts) -> Vec<pb::PreflightCheck> {
    f.agents
        .iter()
        .map(|a| {
            if a.connected {
                ok("agent_connected", &a.id, format!("connected ({})", a.what))
            } else {
                check(
                    "agent_connected",
                    &a.id,
                    if a.optional { St::Warn } else { St::Fail },
                    format!("not connected ({})", a.what),
                    "",
                    format!(
                        "start failback-agent on {} and check that it reaches the coordinator (`failbackctl agents`, the agent's log)",
                        a.id
                    ),
                )
            }
        })
        .collect()
}

fn pool_state(f: &Facts, d: Direction) -> pb::PreflightCheck {
    const NAME: &str = "pool_state";
    let s = match &f.pool_state {
        Err(e) => {
            return check(
                NAME,
                &f.pool.fqdn,
                St::Fail,
                format!("unknown: {e}"),
                "",
                "connect a Lync shell agent of the pool that can run Get-CsPersistentChatState",
            );
        }
        Ok(s) => s.state(),
    };
    match (d, s) {
        (Direction::Failover, pb::PoolStateValue::Normal) => ok(
            NAME,
            &f.pool.fqdn,
            "Normal: the pool uses its primary databases",
        ),
        (Direction::Failover, pb::PoolStateValue::FailedOver) => skip(
            NAME,
            &f.pool.fqdn,
            "FailedOver: already failed over; the next direction is failback",
        ),
        (Direction::Failback, pb::PoolStateValue::FailedOver) => ok(
            NAME,
            &f.pool.fqdn,
            "FailedOver: the pool uses its backup databases",
        ),
        (Direction::Failback, pb::PoolStateValue::Normal) => skip(
            NAME,
            &f.pool.fqdn,
            "Normal: failback applies after a failover; the environment checks below rehearse it",
        ),
        (_, other) => check(
            NAME,
            &f.pool.fqdn,
            St::Fail,
            format!("unexpected state {other:?}"),
            "Normal or FailedOver",
            "check Get-CsPersistentChatState for the pool in the Management Shell",
        ),
    }
}

fn lower(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.to_ascii_lowercase()).collect()
}

fn active_servers(f: &Facts, d: Direction) -> pb::PreflightCheck {
    const NAME: &str = "active_servers";
    let servers = match &f.pool_servers {
        Err(e) => {
            return check(
                NAME,
                &f.pool.fqdn,
                St::Fail,
                format!("unknown: {e}"),
                "",
                "connect a Lync shell agent of the pool that can run Get-CsService -PersistentChatServer",
            );
        }
        Ok(s) => s,
    };
    let (dc, step) = match d {
        Direction::Failover => (&f.pool.backup_dc, "FO-7"),
        Direction::Failback => (&f.pool.primary_dc, "FB-6"),
    };
    let target = f.pool.chat_servers.get(dc).cloned().unwrap_or_default();
    let active = servers.active_servers.join(", ");
    let observed = format!(
        "active: {}; {step} would activate ({dc}): {}",
        if active.is_empty() { "none" } else { &active },
        if target.is_empty() {
            "none".to_string()
        } else {
            target.join(", ")
        }
    );
    if target.is_empty() {
        return check(
            NAME,
            &f.pool.fqdn,
            St::Fail,
            observed,
            "",
            format!(
                "list the pool's chat servers of {dc} under [pool.chat_servers] in the topology"
            ),
        );
    }
    let members = lower(&servers.servers);
    let unknown: Vec<&String> = target
        .iter()
        .filter(|t| !members.contains(&t.to_ascii_lowercase()))
        .collect();
    if !unknown.is_empty() {
        return check(
            NAME,
            &f.pool.fqdn,
            St::Fail,
            format!(
                "{observed}; not servers of the pool in Lync: {}",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "",
            "make the topology's chat_servers match the pool's servers in Lync (Get-CsService -PersistentChatServer)",
        );
    }
    // Which data center should be active now follows the pool state.
    let now_dc = match state_of(f) {
        Some(pb::PoolStateValue::FailedOver) => &f.pool.backup_dc,
        _ => &f.pool.primary_dc,
    };
    let expected = lower(&f.pool.chat_servers.get(now_dc).cloned().unwrap_or_default());
    let stray: Vec<&String> = servers
        .active_servers
        .iter()
        .filter(|a| !expected.contains(&a.to_ascii_lowercase()))
        .collect();
    // No active server means chat is down: not ready, whatever the direction.
    if servers.active_servers.is_empty() {
        return check(
            NAME,
            &f.pool.fqdn,
            St::Fail,
            observed,
            format!("active servers of {now_dc}"),
            format!(
                "chat is down: no server is active; set the active servers to the chat servers of {now_dc} (Set-CsPersistentChatActiveServer), or finish the run that cleared them"
            ),
        );
    }
    if !stray.is_empty() {
        return check(
            NAME,
            &f.pool.fqdn,
            St::Warn,
            observed,
            format!("active servers of {now_dc} only"),
            format!(
                "set the active servers to the chat servers of {now_dc} (Set-CsPersistentChatActiveServer): servers of the other data center write across the WAN"
            ),
        );
    }
    ok(NAME, &f.pool.fqdn, observed)
}

fn role_target(sql: &SqlFacts) -> String {
    format!("{} {}", sql.role.as_str(), sql.agent)
}

fn sql_instance(sql: &SqlFacts) -> pb::PreflightCheck {
    const NAME: &str = "sql_instance";
    match &sql.info {
        Ok(i) => ok(
            NAME,
            role_target(sql),
            format!("{} {} {}", i.server_name, i.product_version, i.edition),
        ),
        Err(e) => check(
            NAME,
            role_target(sql),
            // A mirror is optional for both runbooks.
            if matches!(sql.role, SqlRole::Primary | SqlRole::Backup) {
                St::Fail
            } else {
                St::Warn
            },
            format!("unreachable: {e}"),
            "",
            format!(
                "check that SQL Server runs on {} and that the agent's [sql] settings (host, port, login) reach it",
                sql.instance
            ),
        ),
    }
}

fn databases(f: &Facts, d: Direction, next: bool) -> Vec<pb::PreflightCheck> {
    const NAME: &str = "database";
    if !next {
        return vec![skip(
            NAME,
            "",
            format!(
                "the pool's state does not lead to {} now; database states are checked for the next direction",
                d.as_str()
            ),
        )];
    }
    let mut out = Vec::new();
    let (Some(primary), Some(backup)) = (f.sql(SqlRole::Primary), f.sql(SqlRole::Backup)) else {
        return vec![check(
            NAME,
            "",
            St::Fail,
            "the topology lacks a primary or backup SQL instance",
            "",
            "name both under [pool.sql] in the topology",
        )];
    };
    let describe = |db: &pb::DatabaseInfo| {
        format!(
            "{} {}{} ({} recovery){}",
            db.name,
            db.state,
            if db.is_in_standby { " standby" } else { "" },
            db.recovery_model,
            if db.data_size_bytes > 0 {
                format!(", data {}", bytes(db.data_size_bytes))
            } else {
                String::new()
            }
        )
    };
    let read_error = |sql: &SqlFacts| {
        sql.databases.as_ref().err().map(|e| {
            check(
                NAME,
                role_target(sql),
                St::Fail,
                format!("unknown: {e}"),
                "",
                "make sure the instance's agent is connected and its login can read sys.databases",
            )
        })
    };
    match d {
        Direction::Failover => {
            if let Some(c) = read_error(primary) {
                out.push(c);
            } else {
                for name in &f.pool.databases {
                    let t = format!("{name} on {}", role_target(primary));
                    out.push(match primary.database(name.as_str()) {
                        None => check(NAME, t, St::Fail, "absent", "ONLINE", format!("{name} must exist on the primary instance {}: restore it or fail back first", primary.instance)),
                        Some(db) if db.state != "ONLINE" => check(NAME, t, St::Fail, describe(db), "ONLINE", format!("bring {name} online on {} before relying on failover", primary.instance)),
                        Some(db) if name.as_str() == MGC && db.recovery_model == "SIMPLE" => check(NAME, t, St::Fail, describe(db), "FULL recovery", "log shipping needs FULL recovery: ALTER DATABASE [mgc] SET RECOVERY FULL, then a full backup and re-seed the backup"),
                        Some(db) => ok(NAME, t, describe(db)),
                    });
                }
            }
            if let Some(c) = read_error(backup) {
                out.push(c);
            } else {
                let t = format!("{MGC} on {}", role_target(backup));
                out.push(match backup.database(MGC) {
                    None => check(NAME, t, St::Fail, "absent", "RESTORING (log shipping secondary)", format!("seed {MGC} on {} from a full backup of the primary WITH NORECOVERY and set up log shipping (pchat-dr.md §4.2)", backup.instance)),
                    Some(db) if db.state == "RESTORING" || db.is_in_standby => ok(NAME, t, describe(db)),
                    Some(db) => check(NAME, t, St::Fail, describe(db), "RESTORING (log shipping secondary)", format!("{MGC} on the backup instance is not restoring logs, so a failover would not bring the latest data: re-seed it from a full backup of the primary WITH NORECOVERY (never two writable {MGC})")),
                });
            }
        }
        Direction::Failback => {
            if let Some(c) = read_error(backup) {
                out.push(c);
            } else {
                let t = format!("{MGC} on {}", role_target(backup));
                out.push(match backup.database(MGC) {
                    Some(db) if db.state == "ONLINE" && !db.is_read_only && !db.is_in_standby => ok(NAME, t, describe(db)),
                    // ONLINE but read-only: what FB-4's freeze leaves when a failback stopped
                    // after it (issue #12): the data is all there, only writes are off.
                    Some(db) if db.state == "ONLINE" && db.is_read_only && !db.is_in_standby => check(NAME, t, St::Fail, describe(db), "ONLINE, read-write", format!("{MGC} on the backup instance is read-only, as FB-4 leaves it before restoring the primary: if the pool is to keep serving from the backup, run ALTER DATABASE [{MGC}] SET READ_WRITE on {} (never RESTORE … WITH RECOVERY: the database is already recovered)", backup.instance)),
                    Some(db) => check(NAME, t, St::Fail, describe(db), "ONLINE, read-write", format!("FB-3 backs up {MGC} on the backup instance, which serves the pool: finish the failover (RESTORE DATABASE [{MGC}] WITH RECOVERY)")),
                    None => check(NAME, t, St::Fail, "absent", "ONLINE, read-write", format!("the pool is failed over but {} holds no {MGC}: find where the pool's data is before failing back", backup.instance)),
                });
            }
            if let Some(c) = read_error(primary) {
                out.push(c);
            } else {
                let t = format!("{MGC} on {}", role_target(primary));
                out.push(match primary.database(MGC) {
                    Some(db) => ok(NAME, t, format!("{} (FB-4 replaces it)", describe(db))),
                    None => ok(NAME, t, "absent (FB-4 creates it from FB-3's backup)"),
                });
            }
        }
    }
    out
}

fn mirrored(sql: Option<&SqlFacts>) -> Option<pb::MirroringInfo> {
    sql?.mirroring
        .as_ref()
        .ok()?
        .iter()
        .find(|m| m.database.eq_ignore_ascii_case(MGC) && m.mirrored)
        .cloned()
}

/// The backup instance is not the principal of a mirrored pool database (FB-1 and FB-2 refuse).
fn backup_not_principal(f: &Facts) -> Option<NotPrincipal> {
    let states = f.sql(SqlRole::Backup)?.mirroring.as_ref().ok()?;
    not_principal(&f.pool, states)
}

fn mirroring(f: &Facts, d: Direction, next: bool) -> pb::PreflightCheck {
    const NAME: &str = "mirroring";
    if !next {
        return skip(
            NAME,
            MGC,
            format!("checked when the pool's state leads to {}", d.as_str()),
        );
    }
    let primary = f.sql(SqlRole::Primary);
    match d {
        Direction::Failover => {
            if !f.pool.sql.contains_key(&SqlRole::PrimaryMirror) {
                return ok(NAME, MGC, "no primary mirror in the topology");
            }
            match mirrored(primary) {
                Some(m) if m.state == "SYNCHRONIZED" => ok(
                    NAME,
                    MGC,
                    format!("{} {} with {}", m.role, m.state, m.partner_instance),
                ),
                Some(m) => check(
                    NAME,
                    MGC,
                    St::Warn,
                    format!("{} {} with {}", m.role, m.state, m.partner_instance),
                    "SYNCHRONIZED",
                    "resume mirroring on the primary (ALTER DATABASE [mgc] SET PARTNER RESUME) and let it synchronize",
                ),
                None => check(
                    NAME,
                    MGC,
                    St::Warn,
                    "the primary mgc is not mirrored although the topology names a primary mirror",
                    "SYNCHRONIZED",
                    "re-create the mirror (Install-CsMirrorDatabase) or remove primary_mirror from the topology",
                ),
            }
        }
        Direction::Failback => match mirrored(primary) {
            Some(m) => check(
                NAME,
                MGC,
                St::Fail,
                format!("the primary mgc is a mirroring {} ({})", m.role, m.state),
                "not mirrored",
                "FB-4 cannot restore over a mirroring partner: on the primary run ALTER DATABASE [mgc] SET PARTNER OFF",
            ),
            None => match (backup_not_principal(f), mirrored(f.sql(SqlRole::Backup))) {
                (Some(n), _) => check(
                    NAME,
                    MGC,
                    St::Fail,
                    n.found,
                    "PRINCIPAL on the backup",
                    n.fix,
                ),
                (None, Some(m)) => ok(
                    NAME,
                    MGC,
                    format!(
                        "backup mgc mirrored ({} {}); FB-2 removes it",
                        m.role, m.state
                    ),
                ),
                (None, None) => ok(NAME, MGC, "not mirrored on either side"),
            },
        },
    }
}

fn sql_agent_service(sql: &SqlFacts) -> pb::PreflightCheck {
    const NAME: &str = "sql_agent_service";
    let target = role_target(sql);
    if let Err(e) = &sql.info {
        return check(
            NAME,
            target,
            St::Fail,
            format!("unknown: {e}"),
            "Running",
            format!("make {} reachable first", sql.instance),
        );
    }
    let Some(svc) = sql.agent_service() else {
        return check(
            NAME,
            target,
            St::Warn,
            "not listed by sys.dm_server_services (SQL Server older than 2008 R2 SP1?)",
            "Running",
            format!(
                "check in services.msc that SQL Server Agent runs on {}",
                sql.instance
            ),
        );
    };
    let observed = format!(
        "{} {} (startup {}, account {})",
        svc.name, svc.status, svc.startup_type, svc.account
    );
    if !svc.status.eq_ignore_ascii_case("Running") {
        return check(
            NAME,
            target,
            St::Fail,
            observed,
            "Running",
            format!(
                "start {} on {} (SQL Server Configuration Manager) and set its startup type to Automatic: log shipping's backup, copy and restore jobs and FB-5 run as Agent jobs",
                svc.name, sql.instance
            ),
        );
    }
    if !svc.startup_type.eq_ignore_ascii_case("Automatic") {
        return check(
            NAME,
            target,
            St::Warn,
            observed,
            "Running, startup Automatic",
            format!(
                "set {}'s startup type to Automatic so log shipping survives a reboot",
                svc.name
            ),
        );
    }
    ok(NAME, target, observed)
}

fn sql_agent_access(f: &Facts) -> pb::PreflightCheck {
    const NAME: &str = "sql_agent_access";
    let Some(backup) = f.sql(SqlRole::Backup) else {
        return skip(NAME, "", "the pool has no backup instance");
    };
    let target = role_target(backup);
    let account = backup.agent_service().map_or_else(
        || "the SQL Server Agent account".to_string(),
        |s| format!("the SQL Server Agent account {}", s.account),
    );
    let (share, copy) = (&f.pool.share, &f.pool.copy_dir);
    let threshold = format!("read {share}, write {copy}");
    let grant = format!(
        "grant {account} on {} read access to {share} and write access to {copy} (the copy job and FB-5 run as it)",
        backup.instance
    );
    if let Some(access) = &f.agent_access {
        return match access {
            Ok(a) if a.can_read && a.can_write => ok(
                NAME,
                target,
                format!("{account} reads {share} and writes {copy}"),
            ),
            Ok(a) => {
                let steps: Vec<String> = a
                    .steps
                    .iter()
                    .map(|s| format!("step {}: {}", s.step_id, s.message))
                    .collect();
                let what = match (a.can_read, a.can_write) {
                    (false, false) => format!("cannot read {share} nor write {copy}"),
                    (false, true) => format!("cannot read {share}"),
                    _ => format!("cannot write {copy}"),
                };
                check(
                    NAME,
                    target,
                    St::Fail,
                    format!("{account} {what}: {}", steps.join("; ")),
                    threshold,
                    grant,
                )
            }
            Err(e) => check(
                NAME,
                target,
                St::Fail,
                format!("the access check could not run: {e}"),
                threshold,
                format!(
                    "make sure SQL Server Agent runs on {}, then {grant}",
                    backup.instance
                ),
            ),
        };
    }
    match &f.copy_job {
        None => skip(
            NAME,
            target,
            format!(
                "not checked: {share} or {copy} is not a drive or UNC path (a lab) and the backup instance runs no log shipping copy job"
            ),
        ),
        Some((job, Err(e))) => check(
            NAME,
            target,
            St::Warn,
            format!("the copy job {job} could not be read: {e}"),
            threshold,
            format!("check the job's history on {}", backup.instance),
        ),
        Some((job, Ok(o))) => match &o.outcome {
            None => check(
                NAME,
                target,
                St::Warn,
                format!("the copy job {job} (runs as {account}) has not run yet"),
                threshold,
                format!(
                    "make sure SQL Server Agent runs on {} and the job is enabled",
                    backup.instance
                ),
            ),
            Some(run) if run.status() == pb::JobRunStatus::Failed => check(
                NAME,
                target,
                St::Fail,
                format!(
                    "the copy job {job} (runs as {account}) failed at {}: {}{}",
                    run.started_at,
                    run.message,
                    if f.share_files.is_ok() && f.copy_files.is_ok() {
                        " The share and the copy folder are reachable from this host, so the Agent account's access is the likely cause (the job's step history has sqllogship's words)."
                    } else {
                        ""
                    }
                ),
                threshold,
                grant,
            ),
            Some(run) => ok(
                NAME,
                target,
                format!(
                    "the copy job {job} (runs as {account}) last ran {:?} at {}",
                    run.status(),
                    run.started_at
                ),
            ),
        },
    }
}
