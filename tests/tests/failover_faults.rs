//! The failover runbook under faults (issue #12: kill -9 of the leader in the middle of a long
//! step of both runbooks; an agent killed during a copy), with real processes: two coordinators
//! on a one-member etcd, three agents, two sqlsim instances, lyncsim. The pool starts normal with
//! log shipping running ([`failover_lab`]); the backup's copy and restore jobs are stopped so
//! that several log backups wait on the share, then DC1 is lost and an attested failover runs.
//! - The leader is killed while FO-2 copies a log backup (2 MiB logs, copies capped at 1 MiB/s
//!   by `[files] copy_bytes_per_second`), while FO-3 restores those logs (each RESTORE LOG
//!   slowed to 1.5 s), or at a step boundary: after FO-1 removed log shipping (destructive),
//!   after FO-2, FO-3, FO-4, FO-5 and FO-6 (every Management Shell script then takes 1 s, so
//!   the Lync steps FO-5 and FO-7 outlast the test's look at the run record and the kill lands
//!   inside the run). The other coordinator takes over (the report names it as having taken
//!   over), FO-3 goes on from SQL Server's restore point, no log backup is restored twice, log
//!   shipping is removed once, and every message the primary backed up is in the backup `mgc`.
//! - The backup instance's agent is killed while FO-3's first RESTORE LOG runs and restarted
//!   2 s later: the outcome is unknown, FO-3 resolves it with SQL Server's LSN check (a log
//!   already applied is refused with 4326 and skipped), each log is applied once (msdb's
//!   restorehistory), and nothing is lost.
//! - The backup instance's agent is killed *during* FO-2's copy of a log backup (as above) and
//!   restarted 1 s later: the copy goes on from its verified `.partial` (FO-2's output says
//!   from where), no `.partial` is left, each log is applied once and nothing is lost.
//!
//! Not scenario files: the scenario runner drives failback only (its lab and its invariant
//! checkers are built around a failed-over pool); these assert the same invariants directly.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod failover_lab;

use std::collections::BTreeMap;
use std::time::Duration;

use failback_tests::harness::etcd::{EtcdCluster, unique_cluster};
use failback_tests::harness::fleet::{APPROVER, Fleet, OPERATOR};
use failback_tests::harness::normal_pool::{BACKUP, Options};
use failback_tests::harness::sqlsim::SqlSim;
use failback_tests::harness::wait_for;
use failover_lab::{Lab, batch, failover_ctl, finished, normal_lab_with, status};

const LEASE_TTL: Duration = Duration::from_secs(4);
const ATTEST: &str = "DC1 lost (failover_faults killed it)";

/// A pool on etcd whose backup applies each RESTORE LOG in 1.5 s, `m` messages shipped, then
/// the copy and restore jobs stopped, `more` messages written and backed up (their logs only on
/// the share), and DC1 lost.
///
/// Every Management Shell script takes `lync_delay`: the Lync steps FO-5 and FO-7 then outlast
/// the test's look at the run record, so a kill at a later step boundary lands inside the run.
async fn lab_with_logs_waiting(
    etcd: &EtcdCluster,
    name: &str,
    m: usize,
    more: usize,
    lync_delay: Duration,
) -> Lab {
    lab_with_logs_waiting_opts(
        m,
        more,
        Options {
            backup_sim_args: vec!["--fault".into(), "delay restore 1500".into()],
            etcd: Some((etcd.endpoints(), unique_cluster(name), LEASE_TTL)),
            lync_delay,
            ..Options::default()
        },
    )
    .await
}

/// A pool on etcd whose log backups are 2 MiB and copied at 1 MiB/s, so each FO-2 copy lasts
/// about two seconds; `backup_sim_args` as [`Options::backup_sim_args`].
fn slow_copies(etcd: &EtcdCluster, name: &str, backup_sim_args: Vec<String>) -> Options {
    Options {
        sim_args: vec!["--log-backup-mb".into(), "2".into()],
        backup_sim_args,
        etcd: Some((etcd.endpoints(), unique_cluster(name), LEASE_TTL)),
        copy_bytes_per_second: Some(1 << 20),
        ..Options::default()
    }
}

/// As [`lab_with_logs_waiting`], with the pool's options given.
async fn lab_with_logs_waiting_opts(m: usize, more: usize, opts: Options) -> Lab {
    let mut lab = normal_lab_with(m, opts).await;
    lab.backup_job("LSCopy", false).await;
    lab.backup_job("LSRestore", false).await;
    // Three log backups' worth: the primary's backup job runs every second.
    for _ in 0..3 {
        let mark = lab.write(more / 3).await;
        lab.backed_up(mark).await;
    }
    lab.lose_dc1().await;
    lab
}

async fn start_failover(fleet: &Fleet) -> String {
    let out = failover_ctl(fleet, APPROVER, ATTEST, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["run_id"].as_str().unwrap().to_string()
}

/// How many times msdb says each log backup was restored into the backup `mgc` (restorehistory
/// ⋈ backupset ⋈ backupmediafamily), by file: each must be once (DESIGN §9.5). A RESTORE LOG
/// sent again after an unknown outcome is refused by SQL Server (4326, already applied) and
/// leaves no row: that is FO-3's probe (see its doc), not a repeat.
async fn applied_logs(sim: &SqlSim) -> BTreeMap<String, usize> {
    let rows = batch(
        sim,
        "master",
        "SELECT f.physical_device_name FROM msdb.dbo.restorehistory AS r \
         JOIN msdb.dbo.backupset AS b ON b.backup_set_id = r.backup_set_id \
         JOIN msdb.dbo.backupmediafamily AS f ON f.media_set_id = b.media_set_id \
         WHERE r.destination_database_name = N'mgc' AND r.restore_type = N'L'",
    )
    .await;
    let mut by_file = BTreeMap::new();
    for r in rows {
        let f = r.get::<&str, _>(0).unwrap_or_default().to_string();
        *by_file.entry(f).or_insert(0) += 1;
    }
    by_file
}

/// The RESTORE LOG statements the run itself sent to `sim` (not log shipping's restore job).
fn restore_log_statements(sim: &SqlSim) -> usize {
    sim.statements()
        .iter()
        .filter(|s| s.kind != "agent" && s.text.to_ascii_uppercase().starts_with("RESTORE LOG"))
        .count()
}

/// Every message written on the primary is in the backup `mgc`, and it is ONLINE.
async fn assert_nothing_lost(lab: &Lab, d: &serde_json::Value) {
    assert_eq!(d["run"]["status"], "succeeded", "{d:#}");
    assert_eq!(lab.backup_state().await, "ONLINE");
    assert_eq!(lab.backup_messages().await, lab.written, "{d:#}");
}

/// Where the leader is killed.
enum KillAt {
    /// FO-2 is copying a log backup (2 MiB logs copied at 1 MiB/s: half a MiB is in its
    /// `.partial`).
    Fo2Copying,
    /// FO-3's first RESTORE LOG reached the backup instance.
    Fo3Restoring,
    /// The step shows finished in the run record (a step boundary).
    After(&'static str),
}

/// The name of a `.partial` in `copy` holding at least half a MiB: a copy is under way.
fn copying(copy: &std::path::Path) -> Option<String> {
    std::fs::read_dir(copy)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name().to_string_lossy().ends_with(".partial")
                && e.metadata().is_ok_and(|m| m.len() >= 512 << 10)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// kill -9 of the leader at `at`, restarted once the other leads; the run must succeed with
/// nothing lost, each log applied once, and the new leader in the report.
async fn leader_killed(name: &str, at: KillAt) {
    let Some(etcd) = EtcdCluster::start_or_skip(1, "failover_faults").await else {
        return;
    };
    let lync_delay = match at {
        KillAt::After(_) => Duration::from_secs(1),
        KillAt::Fo2Copying | KillAt::Fo3Restoring => Duration::ZERO,
    };
    let mut lab = match at {
        KillAt::Fo2Copying => {
            let slow_restores = vec!["--fault".into(), "delay restore 1500".into()];
            lab_with_logs_waiting_opts(5, 9, slow_copies(&etcd, name, slow_restores)).await
        }
        _ => lab_with_logs_waiting(&etcd, name, 5, 9, lync_delay).await,
    };
    let first = lab.fleet.leader(Duration::from_secs(30)).await.unwrap();
    let run = start_failover(&lab.fleet).await;
    match at {
        KillAt::Fo2Copying => {
            wait_for("FO-2 to be copying", Duration::from_secs(90), || async {
                copying(&lab.copy)
            })
            .await
            .unwrap();
        }
        KillAt::Fo3Restoring => {
            wait_for("FO-3 to restore a log", Duration::from_secs(90), || async {
                (restore_log_statements(&lab.backup) > 0).then_some(())
            })
            .await
            .unwrap();
        }
        KillAt::After(step) => {
            wait_for(
                &format!("{step} to finish"),
                Duration::from_secs(90),
                || async {
                    let d = status(&lab.fleet, &run).await;
                    let s = &d["pools"][0]["outputs"][step]["status"];
                    (s == "succeeded" || s == "skipped").then_some(())
                },
            )
            .await
            .unwrap();
        }
    }
    lab.fleet.kill_coordinator_named(&first);
    let second = lab
        .fleet
        .other_leader(&first, Duration::from_secs(30))
        .await
        .unwrap();
    lab.fleet.start_coordinator_named(&first).await.unwrap();

    let d = finished(&lab.fleet, &run).await;
    assert_nothing_lost(&lab, &d).await;
    let applied = applied_logs(&lab.backup).await;
    assert!(applied.len() >= 4, "several logs applied: {applied:?}");
    assert!(
        applied.values().all(|n| *n == 1),
        "a log applied twice after the leader change: {applied:?}"
    );
    // FO-1's removal of log shipping (destructive) ran once: the second leader's probe saw it
    // done.
    let removed = lab
        .backup
        .statements()
        .iter()
        .filter(|s| {
            s.kind != "agent" && s.text.contains("sp_delete_log_shipping_secondary_database")
        })
        .count();
    assert_eq!(removed, 1, "log shipping removed {removed} times");
    // The new leader finished the run: the report names it.
    let out = lab
        .fleet
        .ctl(OPERATOR, &["report", &run, "--format", "json"])
        .await
        .unwrap();
    // … as the coordinator that took over (so the kill landed inside the run, not after it).
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        report["leaders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["coordinator"] == second.as_str() && l["took_over"] == true),
        "{:#}",
        report["leaders"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_during_fo3_is_taken_over_and_no_log_is_applied_twice() {
    leader_killed("failover-faults-fo3", KillAt::Fo3Restoring).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_after_fo1_removed_log_shipping_is_taken_over_without_repeating_it() {
    leader_killed(
        "failover-faults-fo1",
        KillAt::After("fo1_remove_log_shipping"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_after_fo2_copied_the_logs_is_taken_over() {
    leader_killed("failover-faults-fo2", KillAt::After("fo2_copy_logs")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_during_fo2s_copy_is_taken_over() {
    leader_killed("failover-faults-fo2-copy", KillAt::Fo2Copying).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_after_fo3_applied_the_logs_is_taken_over() {
    leader_killed("failover-faults-fo3-done", KillAt::After("fo3_apply_logs")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_after_fo4_recovered_the_backup_is_taken_over() {
    leader_killed("failover-faults-fo4", KillAt::After("fo4_recover")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_after_fo5_failed_the_pool_over_is_taken_over() {
    leader_killed("failover-faults-fo5", KillAt::After("fo5_pool_failed_over")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_after_fo6_is_taken_over_before_fo7_activates() {
    leader_killed("failover-faults-fo6", KillAt::After("fo6_mirror")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_restore_log_is_resolved_by_the_lsn_check_and_applies_each_log_once() {
    let Some(etcd) = EtcdCluster::start_or_skip(1, "failover_faults").await else {
        return;
    };
    let mut lab = lab_with_logs_waiting(&etcd, "failover-faults-agent", 5, 9, Duration::ZERO).await;
    lab.fleet.leader(Duration::from_secs(30)).await.unwrap();
    let before = Lab::logs(&lab.copy);
    let run = start_failover(&lab.fleet).await;

    // The backup instance's agent dies while FO-3's first RESTORE LOG runs (its outcome is
    // unknown to the coordinator) and comes back 2 s later.
    wait_for("FO-3 to restore a log", Duration::from_secs(90), || async {
        (restore_log_statements(&lab.backup) > 0).then_some(())
    })
    .await
    .unwrap();
    lab.fleet.kill_agent(BACKUP);
    tokio::time::sleep(Duration::from_secs(2)).await;
    lab.fleet.start_agent(BACKUP).unwrap();

    let d = finished(&lab.fleet, &run).await;
    assert_nothing_lost(&lab, &d).await;
    let copied: Vec<String> = Lab::logs(&lab.copy)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert!(
        copied.len() >= 3,
        "FO-2 copied the waiting logs: {copied:?}"
    );
    let applied = applied_logs(&lab.backup).await;
    assert!(
        applied.values().all(|n| *n == 1),
        "a log applied twice after the agent restart: {applied:?}"
    );
    for f in &copied {
        assert!(
            applied.keys().any(|a| a.ends_with(f.as_str())),
            "{f} never applied: {applied:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_copy_resumes_from_its_partial_and_loses_nothing() {
    let Some(etcd) = EtcdCluster::start_or_skip(1, "failover_faults").await else {
        return;
    };
    let opts = slow_copies(&etcd, "failover-faults-copy", Vec::new());
    let mut lab = lab_with_logs_waiting_opts(5, 9, opts).await;
    lab.fleet.leader(Duration::from_secs(30)).await.unwrap();
    let run = start_failover(&lab.fleet).await;

    // The backup instance's agent dies once a copy's `.partial` holds half a MiB.
    let partial = wait_for("FO-2 to be copying", Duration::from_secs(90), || async {
        copying(&lab.copy)
    })
    .await
    .unwrap();
    lab.fleet.kill_agent(BACKUP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.fleet.start_agent(BACKUP).unwrap();

    let d = finished(&lab.fleet, &run).await;
    assert_nothing_lost(&lab, &d).await;
    let copied = d["pools"][0]["outputs"]["fo2_copy_logs"]["output"]["copied"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let name = partial.trim_end_matches(".partial");
    let resumed = copied
        .iter()
        .find(|c| c["file"].as_str().is_some_and(|f| f.ends_with(name)))
        .unwrap_or_else(|| panic!("{name} is not among FO-2's copies: {copied:?}"));
    assert!(
        resumed["resumed_from"].as_u64().unwrap_or(0) >= 512 << 10,
        "the interrupted copy of {name} started over instead of going on from its .partial: {resumed}"
    );
    let left: Vec<String> = std::fs::read_dir(&lab.copy)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "partial copies left behind: {left:?}");
    let applied = applied_logs(&lab.backup).await;
    assert!(
        applied.values().all(|n| *n == 1),
        "a log applied twice after the agent restart: {applied:?}"
    );
}
