//! Preflight: the SQL instances' names and versions (issue #11 item 7).
//!
//! Log shipping records `@@SERVERNAME` (`HOST` or `HOST\INSTANCE`) on both sides, in msdb and in
//! the SSMS job names (`LSCopy_<primary>_mgc`), and FB-5 sets it up with those names. A rebuilt
//! or renamed host often keeps a stale `@@SERVERNAME` (it follows `sys.servers`, fixed only by
//! `sp_dropserver`/`sp_addserver … 'local'` and a restart) while `SERVERPROPERTY('ServerName')`
//! already shows the new name: then the jobs and monitor rows name a server that does not
//! exist. Failback fails the check (FB-5 would register that name); failover only warns, as
//! it reads the names log shipping already recorded.
//!
//! Versions: a backup restores only on the same or a newer major version (Msg 3169 otherwise).
//! Failback restores the backup instance's full backup on the primary (FB-4: backup not newer
//! than primary) and then log-ships primary → backup (FB-5: primary not newer than backup), so
//! it needs equal majors; failover restores the primary's logs on the backup (primary not
//! newer than backup).

use failback_proto::model::sql_major_version as major;
use failback_proto::pb;
use failback_proto::pb::PreflightStatus as St;

use super::checks::{Direction, check, ok, skip};
use super::facts::{Facts, SqlFacts};
use crate::topology::SqlRole;

/// `@@SERVERNAME` against `SERVERPROPERTY('ServerName')` on one instance.
pub fn server_name(sql: &SqlFacts, d: Direction) -> pb::PreflightCheck {
    const NAME: &str = "server_name";
    let target = format!("{} {}", sql.role.as_str(), sql.agent);
    let Ok(i) = &sql.info else {
        return skip(
            NAME,
            target,
            "the instance was not described (see sql_instance)",
        );
    };
    if i.at_servername.is_empty() {
        return check(
            NAME,
            target,
            St::Warn,
            "the agent did not report @@SERVERNAME",
            "@@SERVERNAME = SERVERPROPERTY('ServerName')",
            format!("upgrade failback-agent on {}", sql.agent),
        );
    }
    if i.at_servername.eq_ignore_ascii_case(&i.server_name) {
        return ok(NAME, target, format!("@@SERVERNAME {}", i.at_servername));
    }
    check(
        NAME,
        target,
        match d {
            Direction::Failback => St::Fail,
            Direction::Failover => St::Warn,
        },
        format!(
            "@@SERVERNAME is {} but SERVERPROPERTY('ServerName') is {} (a renamed or rebuilt host)",
            i.at_servername, i.server_name
        ),
        "@@SERVERNAME = SERVERPROPERTY('ServerName')",
        format!(
            "on {}: EXEC sp_dropserver N'{}'; EXEC sp_addserver N'{}', 'local'; then restart the SQL Server service (log shipping records @@SERVERNAME)",
            sql.instance, i.at_servername, i.server_name
        ),
    )
}

/// The primary's and the backup's major versions, compared for the direction.
pub fn versions(f: &Facts, d: Direction) -> pb::PreflightCheck {
    const NAME: &str = "sql_versions";
    let version = |role| {
        f.sql(role)
            .and_then(|s| s.info.as_ref().ok())
            .map(|i| i.product_version.clone())
    };
    let (Some(pv), Some(bv)) = (version(SqlRole::Primary), version(SqlRole::Backup)) else {
        return skip(
            NAME,
            "",
            "the primary or the backup instance was not described (see sql_instance)",
        );
    };
    let (Some(p), Some(b)) = (major(&pv), major(&bv)) else {
        return check(
            NAME,
            "",
            St::Warn,
            format!("unreadable versions: primary {pv:?}, backup {bv:?}"),
            "major versions",
            "check SERVERPROPERTY('ProductVersion') on both instances",
        );
    };
    let observed = format!("primary {pv} (major {p}), backup {bv} (major {b})");
    let (bad, expected, fix) = match d {
        Direction::Failover => (
            p > b,
            "primary not newer than backup",
            "upgrade the backup instance to the primary's major version: its log restores fail with 3169",
        ),
        Direction::Failback => (
            p != b,
            "the same major version",
            if b > p {
                "upgrade the rebuilt primary to the backup's major version: FB-4 cannot restore a backup from a newer server (3169)"
            } else {
                "upgrade the backup instance to the primary's major version: FB-5's log shipping to it would fail with 3169"
            },
        ),
    };
    if bad {
        check(NAME, "", St::Fail, observed, expected, fix)
    } else {
        ok(NAME, "", observed)
    }
}
