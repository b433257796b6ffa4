//! `engine_share_write`: can the **Database Engine's** service account write the share? FB-3's
//! `BACKUP DATABASE [mgc] TO DISK = N'<share>\…'` on the backup instance and FB-5's seed backup
//! of the primary are written by each instance's engine account (pchat-dr.md §6.2, §6.9), not by
//! the SQL Server Agent account that `sql_agent_access` proves, so a share granted to the Agent
//! alone passes every other check and fails FB-3 with Msg 3201 after FB-1 and FB-2 have already
//! taken the pool down.
//!
//! Decision: the proof is the agent's `check_engine_share_write` — a COPY_ONLY backup of `model`
//! to a uniquely named probe file on the share, which the agent then deletes. It is the least
//! intrusive probe that proves a *write* by the right account: `xp_fileexist` / `xp_dirtree` only
//! read, `xp_create_subdir` tests a different NTFS right and leaves a folder, a backup to `NUL`
//! never touches the share (the options and what the probe leaves behind — one named row set in
//! msdb's backup history of model — are weighed in the agent's `exec/sql/engine_access.rs`). It
//! is not a pure read, so like `check_agent_access` it is skipped when the request asks for
//! reads only (a dry run), and it runs in the failback direction only: no failover step has an
//! engine write to the share (the primary's log backups, LSBackup's `BACKUP LOG`, are already
//! judged by `log_backup`).
//!
//! Where: the share must be in the `[files]` roots of both instances' agents (the agent deletes
//! its probe through them) — FB-3 and FB-5 need it there anyway, to record the SHA-256 of the
//! backups they write (DESIGN §9 invariant 3), so a share outside them fails here with that fix.
//!
//! Status: `fail` when the write is refused (3201), naming the account, the folder and the fix
//! for the operating system error it carries (5 access denied: grant Modify; 2/3 path not found;
//! a network error: the file server unreachable) or when the probe could not run; `warn` when the
//! write worked but the agent could not delete its probe file; `skip` for a dry run or a pool
//! without that instance.

use failback_proto::pb;
use failback_proto::pb::PreflightStatus as St;

use super::Settings;
use super::checks::{check, ok, skip};
use super::facts::Facts;
use crate::topology::SqlRole;

/// The check's name.
pub const NAME: &str = "engine_share_write";

/// Windows network errors a 3201 can carry (the agent's retry class uses the same list).
const NETWORK_OS_ERRORS: [u32; 5] = [53, 64, 67, 121, 1231];

/// The failback direction's checks: the backup instance (FB-3), then the primary (FB-5's seed).
pub fn checks(f: &Facts, s: &Settings) -> Vec<pb::PreflightCheck> {
    [SqlRole::Backup, SqlRole::Primary]
        .into_iter()
        .map(|role| engine_share_write(f, s, role))
        .collect()
}

/// Which step writes the share as this instance's engine.
fn step_of(role: SqlRole) -> &'static str {
    match role {
        SqlRole::Backup => "FB-3 writes its full backup of mgc",
        _ => "FB-5 writes its seed backup of mgc",
    }
}

/// How the engine's account reaches a share, for the fix: a virtual or built-in account acts
/// on the network as the computer account.
fn grantee(account: &str) -> String {
    let lower = account.to_ascii_lowercase();
    let virtual_or_builtin = lower.starts_with(r"nt service\")
        || lower.starts_with(r"nt authority\")
        || lower == "localsystem"
        || lower.starts_with(r"nt virtual machine\");
    if account.is_empty() {
        "the SQL Server service account (SQL Server Configuration Manager names it)".into()
    } else if virtual_or_builtin {
        format!(
            "{account} — on the network a virtual or built-in account is the SQL host's computer account, so grant DOMAIN\\HOST$ (or run SQL Server as a domain account or gMSA)"
        )
    } else {
        account.to_string()
    }
}

/// One instance's check.
pub fn engine_share_write(f: &Facts, s: &Settings, role: SqlRole) -> pb::PreflightCheck {
    let Some(sql) = f.sql(role) else {
        return skip(
            NAME,
            role.as_str(),
            format!("the pool has no {} instance", role.as_str()),
        );
    };
    let target = format!("{} {}", role.as_str(), sql.agent);
    let share = &f.pool.share;
    let threshold = format!("the Database Engine's service account creates files in {share}");
    if s.reads_only {
        return skip(
            NAME,
            target,
            "not probed: reads only (the probe is a COPY_ONLY backup of model to the share, deleted after)",
        );
    }
    let Some((_, read)) = f.engine_write.iter().find(|(r, _)| *r == role) else {
        return skip(NAME, target, "not probed");
    };
    let w = match read {
        Err(e) => {
            return check(
                NAME,
                target,
                St::Fail,
                format!("the probe backup could not run: {e}"),
                threshold,
                format!(
                    "list {share} in the [files] roots of {}'s agent and make sure its login may back up model (sysadmin or db_backupoperator): the probe writes a COPY_ONLY backup of model there and deletes it",
                    sql.instance
                ),
            );
        }
        Ok(w) => w,
    };
    let who = if w.account.is_empty() {
        "the Database Engine's service account".to_string()
    } else {
        format!("the Database Engine's service account {}", w.account)
    };
    if w.can_write {
        let observed = format!(
            "{who} wrote a probe backup of model in {share}, where {}",
            step_of(role)
        );
        if w.probe_deleted {
            return ok(NAME, target, observed);
        }
        return check(
            NAME,
            target,
            St::Warn,
            format!("{observed}; the probe file was left behind: {}", w.cleanup),
            threshold,
            format!(
                "delete {} (a few MB); give the agent's account Modify on {share} so it can remove its probes",
                w.probe_file
            ),
        );
    }
    let why = match w.os_error {
        5 => format!(
            "grant {} Modify on the share {share} and on its NTFS folder (both: the narrower of the two applies); {} there as that account, not as SQL Server Agent's",
            grantee(&w.account),
            step_of(role)
        ),
        2 | 3 => format!(
            "{share} does not exist as {} sees it: create the folder or correct the topology's share",
            sql.instance
        ),
        e if NETWORK_OS_ERRORS.contains(&e) => format!(
            "{} cannot reach the share's file server (operating system error {e}): check name resolution, SMB (TCP 445) and the file server, then run preflight again",
            sql.instance
        ),
        _ => format!(
            "grant {} Modify on the share {share} and on its NTFS folder, and look up operating system error {} on {}",
            grantee(&w.account),
            w.os_error,
            sql.instance
        ),
    };
    check(
        NAME,
        target,
        St::Fail,
        format!(
            "{who} cannot create files in {share}: SQL Server error {}: {}",
            w.sql_error,
            strip_context(&w.message)
        ),
        threshold,
        why,
    )
}

/// SQL Server's own words from the agent's error text (`BACKUP DATABASE: SQL Server error 3201:
/// Cannot open …`): the error number is already in the sentence.
fn strip_context(message: &str) -> &str {
    message
        .split_once("SQL Server error 3201: ")
        .map_or(message, |(_, rest)| rest)
}
