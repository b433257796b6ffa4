//! The failover direction's log shipping checks (pchat-dr.md §6.8, §6.11, §7): last backup,
//! copy and restore against msdb's thresholds, restore latency, the RPO estimate, files on the
//! share not yet in the copy folder, the LSN chain after the last restored log, and room in the
//! copy folder for what FO-2 would copy. All `skip` when the pool is failed over (log shipping
//! is re-established by FB-5).
//!
//! Ages of files are the coordinator's clock minus the modification time the agent reports; a
//! file in the copy folder is aged by its original on the share when that is still there (a
//! copy may carry the time it was copied, not written).

use std::collections::BTreeMap;

use failback_proto::pb;
use failback_proto::pb::PreflightStatus as St;

use super::Settings;
use super::checks::{age, bytes, check, ok, skip};
use super::facts::Facts;
use crate::runbook::failback::MGC;
use crate::runbook::failover::chain::{self, Chain, LogFile, file_name, stamp_of};
use crate::topology::SqlRole;

/// msdb's defaults when a monitor row carries no threshold (minutes).
const BACKUP_THRESHOLD_MIN: i32 = 60;
const RESTORE_THRESHOLD_MIN: i32 = 45;

/// `<mgc>_*.trn` files of a listing by name (name → (mtime ms, size)).
fn trn(list: &Result<Vec<pb::FileInfo>, String>) -> Option<BTreeMap<String, (u64, u64)>> {
    list.as_ref().ok().map(|v| {
        v.iter()
            .filter(|f| !f.is_dir)
            .map(|f| (file_name(&f.path).to_string(), (f.modified_unix_ms, f.size)))
            .filter(|(n, _)| stamp_of(MGC, n).is_some())
            .collect()
    })
}

fn monitor(f: &Facts, role: SqlRole, primary: bool) -> Option<pb::LogShippingMonitorRow> {
    f.sql(role)?
        .log_shipping
        .as_ref()
        .ok()?
        .monitor
        .iter()
        .find(|r| r.is_primary == primary && r.database.eq_ignore_ascii_case(MGC))
        .cloned()
}

/// The failover direction's log shipping checks.
pub fn failover(f: &Facts, s: &Settings, next: bool) -> Vec<pb::PreflightCheck> {
    let names = [
        "log_backup",
        "log_copy",
        "log_restore",
        "restore_latency",
        "rpo_estimate",
        "uncopied_files",
        "lsn_chain",
        "free_space_copy",
    ];
    if !next {
        return names
            .iter()
            .map(|n| skip(n, MGC, "log shipping is checked while the pool is Normal"))
            .collect();
    }
    let backup_min = monitor(f, SqlRole::Primary, true)
        .and_then(|r| r.backup_threshold)
        .unwrap_or(BACKUP_THRESHOLD_MIN);
    let restore_min = monitor(f, SqlRole::Backup, false)
        .and_then(|r| r.restore_threshold)
        .unwrap_or(RESTORE_THRESHOLD_MIN);
    let max_age_ms = s
        .max_log_age_seconds
        .unwrap_or(u64::try_from(backup_min).unwrap_or(60) * 60)
        * 1000;
    let share = trn(&f.share_files);
    let copy = trn(&f.copy_files);
    let age_of = |mtime: u64| f.now_ms.saturating_sub(mtime);
    let newest_share = share
        .as_ref()
        .and_then(|m| m.iter().max_by_key(|(n, _)| stamp_of(MGC, n)))
        .map(|(n, (t, _))| (n.clone(), age_of(*t)));

    let mut out = vec![log_backup(f, backup_min, max_age_ms, &newest_share)];
    out.extend(copy_and_restore(f, restore_min));
    out.push(rpo(f, max_age_ms, &share, &copy, &newest_share));
    out.extend(uncopied_and_space(f, s, max_age_ms, &share, &copy));
    out.push(lsn_chain(f));
    out
}

fn log_backup(
    f: &Facts,
    threshold_min: i32,
    max_age_ms: u64,
    newest: &Option<(String, u64)>,
) -> pb::PreflightCheck {
    const NAME: &str = "log_backup";
    let Some(primary) = f.sql(SqlRole::Primary) else {
        return check(
            NAME,
            MGC,
            St::Fail,
            "the pool has no primary instance",
            "",
            "name it under [pool.sql] in the topology",
        );
    };
    let target = format!("{MGC} on primary {}", primary.agent);
    let threshold = format!(
        "msdb alert after {threshold_min} min; newest file on the share ≤ {}",
        age(max_age_ms)
    );
    let ls = match &primary.log_shipping {
        Err(e) => {
            return check(
                NAME,
                target,
                St::Fail,
                format!("unknown: {e}"),
                threshold,
                "make sure the primary's agent is connected and its login can read msdb (sysadmin)",
            );
        }
        Ok(ls) => ls,
    };
    if ls.primary.is_none() {
        return check(
            NAME,
            target,
            St::Fail,
            format!(
                "{MGC} on {} is not a log shipping primary",
                primary.instance
            ),
            threshold,
            "set up log shipping from the primary to the backup instance (pchat-dr.md §4.2; FB-5 does it after a failback)",
        );
    }
    let stale_fix = format!(
        "the log backup job LSBackup_{MGC} on {} is not producing backups: check that SQL Server Agent runs there, that the job is enabled and what its history says; the engine account needs write access to {}",
        primary.instance, f.pool.share
    );
    let row = monitor(f, SqlRole::Primary, true);
    let minutes = row.as_ref().and_then(|r| r.minutes_since_last_backup);
    let Some(minutes) = minutes else {
        return check(
            NAME,
            target,
            St::Fail,
            "no log backup recorded since log shipping was set up",
            threshold,
            stale_fix,
        );
    };
    if minutes > threshold_min {
        return check(
            NAME,
            target,
            St::Fail,
            format!("msdb: last log backup {minutes} min ago"),
            threshold,
            stale_fix,
        );
    }
    match (&f.share_files, newest) {
        (Err(e), _) => check(
            NAME,
            target,
            St::Fail,
            format!("msdb: last log backup {minutes} min ago; the share cannot be listed: {e}"),
            threshold,
            format!(
                "make {} reachable from the backup instance's agent and list it in its [files] roots",
                f.pool.share
            ),
        ),
        (Ok(_), None) => check(
            NAME,
            target,
            St::Fail,
            format!(
                "msdb: last log backup {minutes} min ago, but no {MGC}_*.trn file is on {}",
                f.pool.share
            ),
            threshold,
            stale_fix,
        ),
        (Ok(_), Some((name, a))) if *a > max_age_ms => check(
            NAME,
            target,
            St::Fail,
            format!(
                "newest log backup on the share {name} is {} old (msdb: {minutes} min)",
                age(*a)
            ),
            threshold,
            stale_fix,
        ),
        (Ok(_), Some((name, a))) => check(
            NAME,
            target,
            St::Ok,
            format!(
                "newest log backup on the share {name} is {} old (msdb: {minutes} min)",
                age(*a)
            ),
            threshold,
            "",
        ),
    }
}

fn copy_and_restore(f: &Facts, threshold_min: i32) -> Vec<pb::PreflightCheck> {
    let names = ["log_copy", "log_restore", "restore_latency"];
    let Some(backup) = f.sql(SqlRole::Backup) else {
        return names
            .iter()
            .map(|n| {
                check(
                    n,
                    MGC,
                    St::Fail,
                    "the pool has no backup instance",
                    "",
                    "name it under [pool.sql] in the topology",
                )
            })
            .collect();
    };
    let target = format!("{MGC} on backup {}", backup.agent);
    let threshold = format!("msdb alert after {threshold_min} min");
    let fail_all = |observed: String, fix: &str| -> Vec<pb::PreflightCheck> {
        names
            .iter()
            .map(|n| {
                check(
                    n,
                    target.clone(),
                    St::Fail,
                    observed.clone(),
                    threshold.clone(),
                    fix,
                )
            })
            .collect()
    };
    match &backup.log_shipping {
        Err(e) => {
            return fail_all(
                format!("unknown: {e}"),
                "make sure the backup's agent is connected and its login can read msdb (sysadmin)",
            );
        }
        Ok(ls) if ls.secondary.is_none() => {
            return fail_all(
                format!(
                    "{MGC} on {} is not a log shipping secondary",
                    backup.instance
                ),
                "re-seed the backup mgc from a full backup of the primary WITH NORECOVERY and set up log shipping (pchat-dr.md §4.2)",
            );
        }
        Ok(_) => {}
    }
    let row = monitor(f, SqlRole::Backup, false);
    let job_fix = |job: &str| {
        format!(
            "the {job} job on {} is not keeping up: check that SQL Server Agent runs there, that the job is enabled and what its history says",
            backup.instance
        )
    };
    let since = |v: Option<i32>, what: &str, name: &str, job: &str| match v {
        None => check(
            name,
            target.clone(),
            St::Fail,
            format!("nothing {what} since log shipping was set up"),
            threshold.clone(),
            job_fix(job),
        ),
        Some(m) if m > threshold_min => check(
            name,
            target.clone(),
            St::Fail,
            format!("last {what} {m} min ago"),
            threshold.clone(),
            job_fix(job),
        ),
        Some(m) => check(
            name,
            target.clone(),
            St::Ok,
            format!("last {what} {m} min ago"),
            threshold.clone(),
            "",
        ),
    };
    let sec = f.secondary().cloned().unwrap_or_default();
    let mut copy = since(
        row.as_ref().and_then(|r| r.minutes_since_last_copy),
        "copied",
        "log_copy",
        "LSCopy",
    );
    copy.observed = format!(
        "{} ({})",
        copy.observed,
        if sec.last_copied_file.is_empty() {
            "-"
        } else {
            file_name(&sec.last_copied_file)
        }
    );
    let mut restore = since(
        row.as_ref().and_then(|r| r.minutes_since_last_restore),
        "restored",
        "log_restore",
        "LSRestore",
    );
    restore.observed = format!(
        "{} ({})",
        restore.observed,
        if sec.last_restored_file.is_empty() {
            "-"
        } else {
            file_name(&sec.last_restored_file)
        }
    );
    let latency = match row.as_ref().and_then(|r| r.last_restored_latency) {
        None => ok("restore_latency", target.clone(), "no restore measured yet"),
        Some(m) if m > threshold_min => check(
            "restore_latency",
            target.clone(),
            St::Fail,
            format!("{m} min from log backup to restore"),
            threshold.clone(),
            job_fix("LSRestore"),
        ),
        Some(m) if m * 2 > threshold_min => check(
            "restore_latency",
            target.clone(),
            St::Warn,
            format!("{m} min from log backup to restore"),
            threshold.clone(),
            "the backup instance restores slowly: look at the restore job's duration and the copy folder's disk",
        ),
        Some(m) => check(
            "restore_latency",
            target.clone(),
            St::Ok,
            format!("{m} min from log backup to restore"),
            threshold.clone(),
            "",
        ),
    };
    vec![copy, restore, latency]
}

/// Age of the newest file in the copy folder, by its original on the share when present.
fn newest_copied(
    f: &Facts,
    share: &Option<BTreeMap<String, (u64, u64)>>,
    copy: &BTreeMap<String, (u64, u64)>,
) -> Option<(String, u64)> {
    let (name, (t, _)) = copy.iter().max_by_key(|(n, _)| stamp_of(MGC, n))?;
    let t = share
        .as_ref()
        .and_then(|s| s.get(name))
        .map_or(*t, |(st, _)| *st);
    Some((name.clone(), f.now_ms.saturating_sub(t)))
}

fn rpo(
    f: &Facts,
    max_age_ms: u64,
    share: &Option<BTreeMap<String, (u64, u64)>>,
    copy: &Option<BTreeMap<String, (u64, u64)>>,
    newest_share: &Option<(String, u64)>,
) -> pb::PreflightCheck {
    const NAME: &str = "rpo_estimate";
    let threshold = format!("≤ {}", age(max_age_ms));
    let lost = copy.as_ref().and_then(|c| newest_copied(f, share, c));
    let dc = &f.pool.primary_dc;
    match (newest_share, lost) {
        (None, _) => check(
            NAME,
            MGC,
            St::Fail,
            "unknown: no log backup on the share could be read",
            threshold,
            "make log backups reach the share and the share readable by the backup instance's agent (see log_backup)",
        ),
        (Some((_, a)), l) => {
            let lost_text = l.as_ref().map_or(
                "unknown (copy folder unreadable or empty)".to_string(),
                |(_, b)| age(*b),
            );
            let observed = format!(
                "up to {} of changes if the share survives; up to {lost_text} if it is lost with {dc}",
                age(*a)
            );
            if *a > max_age_ms {
                check(
                    NAME,
                    MGC,
                    St::Fail,
                    observed,
                    threshold,
                    "log backups are not reaching the share often enough: see log_backup",
                )
            } else if l.is_none_or(|(_, b)| b > max_age_ms) {
                check(
                    NAME,
                    MGC,
                    St::Warn,
                    observed,
                    threshold,
                    format!(
                        "the copy job is behind: if {} is lost with {dc}, the uncopied log backups are lost too; see log_copy and uncopied_files",
                        f.pool.share
                    ),
                )
            } else {
                check(NAME, MGC, St::Ok, observed, threshold, "")
            }
        }
    }
}

fn uncopied_and_space(
    f: &Facts,
    s: &Settings,
    max_age_ms: u64,
    share: &Option<BTreeMap<String, (u64, u64)>>,
    copy: &Option<BTreeMap<String, (u64, u64)>>,
) -> Vec<pb::PreflightCheck> {
    let target = format!("{} → {}", f.pool.share, f.pool.copy_dir);
    let (Some(share), Some(copy)) = (share, copy) else {
        let why = [
            (&f.share_files, &f.pool.share),
            (&f.copy_files, &f.pool.copy_dir),
        ]
        .iter()
        .filter_map(|(r, d)| r.as_ref().err().map(|e| format!("{d}: {e}")))
        .collect::<Vec<_>>()
        .join("; ");
        let fix = "make the share and the copy folder reachable from the backup instance's agent and list both in its [files] roots";
        return vec![
            check(
                "uncopied_files",
                target.clone(),
                St::Fail,
                format!("unknown: {why}"),
                "",
                fix,
            ),
            check(
                "free_space_copy",
                f.pool.copy_dir.clone(),
                St::Fail,
                format!("unknown: {why}"),
                "",
                fix,
            ),
        ];
    };
    let restored = f
        .secondary()
        .map(|s| file_name(&s.last_restored_file).to_string())
        .and_then(|n| stamp_of(MGC, &n).map(str::to_string));
    let uncopied: Vec<(&String, &(u64, u64))> = share
        .iter()
        .filter(|(n, _)| !copy.contains_key(*n))
        .filter(|(n, _)| {
            restored
                .as_deref()
                .is_none_or(|r| stamp_of(MGC, n).is_some_and(|st| st > r))
        })
        .collect();
    let total: u64 = uncopied.iter().map(|(_, (_, size))| size).sum();
    let oldest = uncopied
        .iter()
        .map(|(_, (t, _))| f.now_ms.saturating_sub(*t))
        .max();
    let listed = uncopied
        .iter()
        .take(5)
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let more = uncopied.len().saturating_sub(5);
    let threshold = format!("none older than {}", age(max_age_ms));
    let files = match oldest {
        None => ok(
            "uncopied_files",
            target.clone(),
            "every log backup on the share is in the copy folder",
        ),
        Some(a) if a > max_age_ms => check(
            "uncopied_files",
            target.clone(),
            St::Fail,
            format!(
                "{} not copied ({} ), oldest {} old: {listed}{}",
                uncopied.len(),
                bytes(total),
                age(a),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            threshold,
            "the copy job is not keeping up: check SQL Server Agent on the backup instance and its account's access to the share and the copy folder; a failover while the share survives copies them itself (FO-2), one that loses the share loses them",
        ),
        Some(a) => ok(
            "uncopied_files",
            target.clone(),
            format!(
                "{} not yet copied, oldest {} old (the copy job takes them next): {listed}",
                uncopied.len(),
                age(a)
            ),
        ),
    };
    let need = (total as f64 * s.free_space_factor).ceil();
    let space = match &f.copy_space {
        Err(e) => check(
            "free_space_copy",
            f.pool.copy_dir.clone(),
            St::Fail,
            format!("unknown: {e}"),
            "",
            "make the copy folder reachable from the backup instance's agent",
        ),
        Ok(sp) => {
            let observed = format!(
                "{} free; {} to copy",
                bytes(sp.available_bytes),
                bytes(total)
            );
            let threshold = format!(
                "≥ {} (uncopied × {})",
                bytes(need as u64),
                s.free_space_factor
            );
            if (sp.available_bytes as f64) < need {
                check(
                    "free_space_copy",
                    f.pool.copy_dir.clone(),
                    St::Fail,
                    observed,
                    threshold,
                    format!(
                        "free at least {} on the copy folder's volume: FO-2 copies the remaining log backups there",
                        bytes((need - sp.available_bytes as f64).max(0.0) as u64)
                    ),
                )
            } else {
                check(
                    "free_space_copy",
                    f.pool.copy_dir.clone(),
                    St::Ok,
                    observed,
                    threshold,
                    "",
                )
            }
        }
    };
    vec![files, space]
}

fn lsn_chain(f: &Facts) -> pb::PreflightCheck {
    const NAME: &str = "lsn_chain";
    let target = format!("{} + {}", f.pool.copy_dir, f.pool.share);
    if f.secondary().is_none() {
        return skip(
            NAME,
            target,
            "no log shipping secondary: nothing to chain (see log_copy)",
        );
    }
    let mut notes = Vec::new();
    let start = match &f.restored {
        None => {
            notes.push("nothing restored yet".to_string());
            None
        }
        Some((file, Ok(h))) => {
            chain::parse_lsn(&h.last_lsn).map(|l| (file_name(file).to_string(), l))
        }
        Some((file, Err(e))) => {
            notes.push(format!("the last restored file {} could not be read ({e}); continuity checked among the later files only", file_name(file)));
            None
        }
    };
    let mut links = Vec::new();
    let last = f.headers.len().saturating_sub(1);
    for (i, (name, h)) in f.headers.iter().enumerate() {
        match h {
            Ok(h) if h.backup_type == 2 => {
                match (
                    chain::parse_lsn(&h.first_lsn),
                    chain::parse_lsn(&h.last_lsn),
                ) {
                    (Some(first), Some(last)) => links.push(LogFile {
                        path: name.clone(),
                        first_lsn: first,
                        last_lsn: last,
                        finish_unix_ms: 0,
                    }),
                    _ => notes.push(format!("{name}: unreadable LSNs")),
                }
            }
            Ok(h) => notes.push(format!("{name}: not a log backup (type {})", h.backup_type)),
            // The newest file may still be being written or copied.
            Err(e) if i == last => notes.push(format!("{name} not readable yet ({e})")),
            Err(e) => {
                return check(
                    NAME,
                    target,
                    St::Fail,
                    format!("the header of {name} cannot be read: {e}"),
                    "unbroken from the last restored LSN",
                    format!(
                        "{name} is damaged or unreadable: a failover would stop before it; copy it again from the share or re-seed the backup from a new full backup of the primary"
                    ),
                );
            }
        }
    }
    if f.headers_skipped > 0 {
        notes.push(format!("{} later files not read", f.headers_skipped));
    }
    let threshold = "unbroken from the last restored LSN";
    let from = start
        .as_ref()
        .map_or("the oldest unrestored file".to_string(), |(n, l)| {
            format!("{n} (LSN {l})")
        });
    let note = if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join("; "))
    };
    match chain::walk(start.as_ref().map(|(_, l)| *l), links) {
        Chain::Unbroken { pending, reaches } => check(
            NAME,
            target,
            if f.headers_skipped > 0 {
                St::Warn
            } else {
                St::Ok
            },
            format!(
                "{pending} log backup(s) continue from {from}{}{note}",
                reaches.map(|r| format!(" to LSN {r}")).unwrap_or_default()
            ),
            threshold,
            if f.headers_skipped > 0 {
                "the backup instance is far behind: see log_restore"
            } else {
                ""
            },
        ),
        Chain::Gap {
            after,
            expected,
            next,
            next_first,
        } => check(
            NAME,
            target,
            St::Fail,
            format!(
                "gap after {}: the next log backup {next} starts at LSN {next_first}, the chain needs one starting at or before LSN {expected}{note}",
                after.unwrap_or(from)
            ),
            threshold,
            format!(
                "a log backup covering LSN {expected} to {next_first} is missing from {} and {}: put it back in the copy folder if it still exists, otherwise re-seed the backup {MGC} from a new full backup of the primary (RESTORE … WITH NORECOVERY); a failover now would stop at the gap",
                f.pool.copy_dir, f.pool.share
            ),
        ),
    }
}
