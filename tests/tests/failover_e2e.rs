//! The failover runbook end to end in standalone mode, with real processes: a coordinator, three
//! agents, two sqlsim instances and lyncsim's CMS. The pool starts in the normal state with log
//! shipping primary → backup running on 1-second schedules (the SSMS scripts, as the DBA ran
//! them) and messages written on the primary; then DC1 is lost (its sqlsim and both of its
//! agents killed) and `failbackctl run failover --attest-primary-down` runs:
//! - normal case: refused without the attestation; with it the backup `mgc` comes ONLINE with
//!   every message of the logs the primary backed up (the last ones only on the share: the
//!   backup's copy job was stopped, so FO-2 copies and FO-3 applies them), the pool FailedOver,
//!   DC2's chat server active, the attestation in the audit trail;
//! - the share is lost with DC1: the run reports `share_reachable: false` in its loss window and
//!   applies what the copy folder holds (messages whose logs were copied are there, those whose
//!   logs were only on the share are not);
//! - a gap: one log backup deleted from the share (and the copy folder) stops the run at FO-3,
//!   the message naming the missing LSN range; the backup `mgc` stays RESTORING and the pool
//!   Normal;
//! - an unreadable newest log backup (no later file exposes the gap by LSN): FO-3 stops naming
//!   the file; a run accepting that gap (`--accept-gap FILE --gap-reason`, approver) recovers
//!   without it and records the decision; no statement read or restored a `.trn` WITH CHECKSUM.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod failover_lab;

use failback_tests::harness::fleet::{APPROVER, Fleet, OPERATOR};
use failback_tests::harness::normal_pool::{BACKUP, POOL, PRIMARY};
use failback_tests::harness::wait_for;
use failover_lab::{DEADLINE, Lab, batch, failover_ctl, finished, normal_lab};

const ATTEST: &str = "DC1 lost (failover_e2e killed it)";

/// `run failover --attest-primary-down … --yes` as the approver; the run's final detail.
async fn failover(fleet: &Fleet) -> serde_json::Value {
    let out = failover_ctl(fleet, APPROVER, ATTEST, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let run: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    finished(fleet, run["run_id"].as_str().unwrap()).await
}

/// The pool's state and active servers as the DC2 shell reads them.
async fn lync_view(fleet: &Fleet) -> (serde_json::Value, serde_json::Value) {
    let out = fleet
        .ctl(OPERATOR, &["inspect", BACKUP, "--output", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let item = |name: &str| {
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["operation"] == name)
            .unwrap_or_else(|| panic!("{doc:#}"))["result"]
            .clone()
    };
    (
        item("pool_state")["state"].clone(),
        item("pool_servers")["active_servers"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn attested_failover_brings_the_backup_online_with_every_backed_up_message() {
    let mut lab = normal_lab(10, false).await;
    // The backup's copy job stops: the last log backups stay on the share only.
    lab.backup_job("LSCopy", false).await;
    let mark = lab.write(5).await;
    lab.backed_up(mark).await;
    lab.lose_dc1().await;

    // Without the attestation the coordinator refuses, saying why.
    let out = lab
        .fleet
        .ctl(
            APPROVER,
            &[
                "run", "failover", "--pool", POOL, "--yes", "--output", "json",
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("cannot tell a dead primary site from a cut link"),
        "{out:?}"
    );

    // The dry run: every step, the destructive ones marked, the lost primary found.
    let out = lab
        .fleet
        .ctl(
            OPERATOR,
            &["plan", "failover", "--pool", POOL, "--output", "json"],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8, "{plan:#}");
    let destructive: Vec<&str> = steps
        .iter()
        .filter(|s| s["destructive"] == true)
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(destructive, ["fo1_remove_log_shipping", "fo4_recover"]);
    assert!(plan.to_string().contains("loss_window"), "{plan:#}");
    assert!(plan["findings"].to_string().contains(PRIMARY), "{plan:#}");

    let d = failover(&lab.fleet).await;
    assert_eq!(d["run"]["status"], "succeeded", "{d:#}");
    let o = &d["pools"][0]["outputs"];
    assert!(
        !o["fo2_copy_logs"]["output"]["copied"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{d:#}"
    );
    let lw = &o["fo3_apply_logs"]["output"]["loss_window"];
    assert_eq!(lw["share_reachable"], true, "{d:#}");
    assert_eq!(lw["files_missing"], serde_json::json!([]), "{d:#}");
    assert_eq!(lw["window_seconds"], 0, "{d:#}");
    assert!(
        !lw["last_restored_lsn"].as_str().unwrap().is_empty(),
        "{d:#}"
    );
    assert_eq!(lab.backup_state().await, "ONLINE");
    assert_eq!(lab.backup_messages().await, lab.written, "{d:#}");
    let (state, active) = lync_view(&lab.fleet).await;
    assert_eq!(state, "FailedOver");
    assert_eq!(active, serde_json::json!(["pc01.dc2.lab"]));
    let attested = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["event"] == "run.attested")
        .unwrap_or_else(|| panic!("{d:#}"))
        .clone();
    assert_eq!(attested["caller"], APPROVER, "{attested:#}");
    assert!(attested.to_string().contains(ATTEST), "{attested:#}");
    // Log shipping is gone from the backup instance (its jobs with it).
    let r = batch(
        &lab.backup,
        "master",
        "SELECT COUNT(*) FROM msdb.dbo.log_shipping_secondary_databases",
    )
    .await;
    assert_eq!(r[0].get::<i32, _>(0), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn share_lost_with_dc1_applies_the_copy_folder_and_reports_it() {
    let mut lab = normal_lab(10, false).await;
    // Copied but not restored: these logs are in the copy folder when DC1 goes.
    lab.backup_job("LSRestore", false).await;
    let mark = lab.write(5).await;
    lab.backed_up(mark).await;
    let last_backup = batch(
        &lab.primary,
        "master",
        "SELECT last_backup_file FROM msdb.dbo.log_shipping_primary_databases",
    )
    .await[0]
        .get::<&str, _>(0)
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let copy = lab.copy.clone();
    wait_for(
        "the copy job to copy the newest log backup",
        DEADLINE,
        || {
            let copy = copy.clone();
            let last_backup = last_backup.clone();
            async move { Lab::logs(&copy).contains(&last_backup).then_some(()) }
        },
    )
    .await
    .unwrap();
    let copied = lab.written;
    // Only on the share: lost with it.
    lab.backup_job("LSCopy", false).await;
    let mark = lab.write(5).await;
    lab.backed_up(mark).await;
    lab.lose_dc1().await;
    std::fs::rename(&lab.share, lab.share.with_file_name("share-lost")).unwrap();

    let d = failover(&lab.fleet).await;
    assert_eq!(d["run"]["status"], "succeeded", "{d:#}");
    let o = &d["pools"][0]["outputs"];
    assert_eq!(
        o["fo2_copy_logs"]["output"]["share_reachable"], false,
        "{d:#}"
    );
    let lw = &o["fo3_apply_logs"]["output"]["loss_window"];
    assert_eq!(lw["share_reachable"], false, "{d:#}");
    assert!(
        !o["fo3_apply_logs"]["output"]["applied"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the copied logs were applied: {d:#}"
    );
    let found = lab.backup_messages().await;
    assert!(
        found >= copied && found < lab.written,
        "found {found}: {copied} were in copied logs, {} written: {d:#}",
        lab.written
    );
    assert_eq!(lab.backup_state().await, "ONLINE");
    let (state, _) = lync_view(&lab.fleet).await;
    assert_eq!(state, "FailedOver");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_in_the_log_chain_stops_at_fo3_naming_the_missing_range() {
    let mut lab = normal_lab(5, false).await;
    lab.backup_job("LSCopy", false).await;
    for _ in 0..3 {
        let mark = lab.write(1).await;
        lab.backed_up(mark).await;
    }
    lab.lose_dc1().await;
    // The first uncopied log backup that holds log records goes missing from both folders.
    let copied = Lab::logs(&lab.copy);
    let mut victim = None;
    for name in Lab::logs(&lab.share) {
        if copied.contains(&name) {
            continue;
        }
        let path = lab.share.join(&name);
        let (first, last) = lab.lsns_of(&path).await;
        if first < last {
            victim = Some((path, first, last));
            break;
        }
    }
    let (path, first, last) = victim.expect("an uncopied log backup with log records");
    std::fs::remove_file(&path).unwrap();
    let _ = std::fs::remove_file(lab.copy.join(path.file_name().unwrap()));

    let d = failover(&lab.fleet).await;
    assert_eq!(d["run"]["status"], "failed", "{d:#}");
    let fo3 = &d["pools"][0]["outputs"]["fo3_apply_logs"];
    assert_eq!(fo3["status"], "failed", "{d:#}");
    let msg = fo3["error"].as_str().unwrap();
    assert!(msg.contains("gap in the log chain"), "{msg}");
    assert!(
        msg.contains(&format!("LSN {first} to {last}")),
        "the missing file's LSN range {first}..{last}: {msg}"
    );
    assert_eq!(lab.backup_state().await, "RESTORING");
    let (state, _) = lync_view(&lab.fleet).await;
    assert_eq!(state, "Normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_newest_log_backup_stops_fo3_until_an_approver_accepts_the_gap() {
    let mut lab = normal_lab(5, false).await;
    lab.backup_job("LSCopy", false).await;
    let mut marks = Vec::new();
    for _ in 0..3 {
        let mark = lab.write(1).await;
        lab.backed_up(mark).await;
        marks.push(mark);
    }
    lab.lose_dc1().await;
    // The newest log backup holding log records is damaged on the share (only there: the copy
    // job was stopped), so no later file exposes the loss by LSN.
    let copied = Lab::logs(&lab.copy);
    let mut victim = None;
    for name in Lab::logs(&lab.share).into_iter().rev() {
        if copied.contains(&name) {
            continue;
        }
        let (first, last) = lab.lsns_of(&lab.share.join(&name)).await;
        if first < last {
            victim = Some(name);
            break;
        }
    }
    let victim = victim.expect("an uncopied log backup with log records");
    std::fs::write(lab.share.join(&victim), b"not a backup: damaged in transit").unwrap();

    let d = failover(&lab.fleet).await;
    assert_eq!(d["run"]["status"], "failed", "{d:#}");
    let msg = d["pools"][0]["outputs"]["fo3_apply_logs"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains(&format!("at {victim}")), "{msg}");
    assert!(msg.contains(&format!("--accept-gap {victim}")), "{msg}");
    assert_eq!(lab.backup_state().await, "RESTORING");

    // An operator alone cannot accept the loss.
    let accept_args = [
        "--accept-gap",
        victim.as_str(),
        "--gap-reason",
        "the damaged log backup is the last one; loss accepted by the service owner",
    ];
    let accept = |who| failover_ctl(&lab.fleet, who, ATTEST, &accept_args);
    let out = accept(OPERATOR).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("approver"), "{out:?}");
    let out = accept(APPROVER).await;
    assert_eq!(out.code, 0, "{out:?}");
    let run: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let d = finished(&lab.fleet, run["run_id"].as_str().unwrap()).await;
    assert_eq!(d["run"]["status"], "succeeded", "{d:#}");
    assert_eq!(d["run"]["accepted_gap"]["file"], victim.as_str(), "{d:#}");
    let fo3 = &d["pools"][0]["outputs"]["fo3_apply_logs"]["output"];
    assert_eq!(fo3["gap_accepted"]["file"], victim.as_str(), "{d:#}");
    assert_eq!(lab.backup_state().await, "ONLINE");
    // Everything in the logs before the damaged one is there; the damaged one's is not.
    let n = lab.backup_messages().await;
    assert!(n >= 5 && n < lab.written, "{n} of {} messages", lab.written);

    // No read or restore of a log backup asked for CHECKSUM (sqllogship's sets have none).
    for st in lab.backup.statements() {
        let t = st.text.to_ascii_uppercase();
        // A failover writes no full backup, so every RESTORE here reads log shipping's files.
        let reads_a_log =
            t.contains("RESTORE LOG") || t.contains("HEADERONLY") || t.contains("VERIFYONLY");
        if reads_a_log {
            assert!(!t.contains("CHECKSUM"), "{}", st.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_secondary_with_nothing_left_to_apply_is_recovered() {
    let mut lab = normal_lab(10, true).await;
    // The primary stops backing up; the backup restores everything there is (STANDBY between
    // restores: ONLINE, read-only), so FO-3 finds nothing to apply and FO-4 recovers a STANDBY
    // database.
    batch(
        &lab.primary,
        "master",
        "EXEC msdb.dbo.sp_update_job @job_name = N'LSBackup_mgc', @enabled = 0",
    )
    .await;
    let name = |p: &str| p.rsplit('/').next().unwrap_or_default().to_string();
    wait_for(
        "the backup to restore the last log backup",
        DEADLINE,
        || async {
            let p = batch(
                &lab.primary,
                "master",
                "SELECT last_backup_file FROM msdb.dbo.log_shipping_primary_databases",
            )
            .await;
            let b = batch(
                &lab.backup,
                "master",
                "SELECT last_restored_file FROM msdb.dbo.log_shipping_secondary_databases",
            )
            .await;
            let last = name(p[0].get::<&str, _>(0).unwrap_or_default());
            let restored = name(b[0].get::<&str, _>(0).unwrap_or_default());
            (!last.is_empty() && last == restored).then_some(())
        },
    )
    .await
    .unwrap();
    let r = batch(
        &lab.backup,
        "master",
        "SELECT state_desc, is_in_standby FROM sys.databases WHERE name = 'mgc'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("ONLINE"));
    assert_eq!(r[0].get::<bool, _>(1), Some(true));
    lab.lose_dc1().await;

    let d = failover(&lab.fleet).await;
    assert_eq!(d["run"]["status"], "succeeded", "{d:#}");
    let o = &d["pools"][0]["outputs"];
    assert_eq!(
        o["fo3_apply_logs"]["output"]["applied"],
        serde_json::json!([]),
        "{d:#}"
    );
    assert_eq!(o["fo4_recover"]["output"]["changed"], true, "{d:#}");
    let r = batch(
        &lab.backup,
        "master",
        "SELECT state_desc, is_in_standby FROM sys.databases WHERE name = 'mgc'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("ONLINE"));
    assert_eq!(
        r[0].get::<bool, _>(1),
        Some(false),
        "recovered, not STANDBY"
    );
    assert_eq!(lab.backup_messages().await, lab.written, "{d:#}");
}
