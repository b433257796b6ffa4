//! Failover-runbook tests against the in-memory fleet of [`fake`] and the file run store: the
//! whole runbook with an attestation, refusals without one, a lost share, a gap (and the runs
//! that follow it), approvals, a primary still serving, plan, retries and a leader change
//! mid-apply.

mod fake;

use std::collections::BTreeSet;
use std::time::Duration;

use failback_proto::model::Epoch;
use serde_json::{Value, json};

use super::StartDecisions;
use super::engine::{Caller, Engine};
use super::test_fleet::{self, approver, fast_config as config, operator};
use crate::error::Error;
use crate::leader::LeadershipListener;
use crate::store::{RunId, RunOptions, RunStatus, RunStoreRef, RunbookKind, StepStatus};
use fake::{Fake, POOL, PRIMARY, Setup, World, err, name, topology};

/// DC1 lost: its agents are not connected.
async fn setup(world: World) -> Setup {
    let fake = Fake::new(world, &topology());
    fake.disconnected
        .lock()
        .unwrap()
        .extend([PRIMARY.to_string(), "fe01.dc1.lab".to_string()]);
    Setup::lead(fake, |agents| {
        Engine::new("c1", topology(), agents, config())
    })
    .await
}

async fn start(
    s: &Setup,
    caller: &Caller,
    yes: bool,
    attestation: Option<&str>,
) -> Result<RunId, Error> {
    s.start_run(caller, RunbookKind::Failover, yes, attestation)
        .await
}

/// The outputs of the pool once the run has status `want`.
async fn wait_status(store: &RunStoreRef, id: &RunId, want: RunStatus) -> Value {
    test_fleet::wait_status(store, id, want).await.pools[POOL]
        .outputs
        .clone()
}

/// Starts a failover as soon as the previous run has left the engine's table (it leaves just
/// after its final status is written).
async fn start_when_free(s: &Setup) -> RunId {
    for _ in 0..100 {
        if let Ok(id) = start(s, &approver(), true, Some(ATTESTED)).await {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start(s, &approver(), true, Some(ATTESTED)).await.unwrap()
}

const ATTESTED: &str = "DC1 lost power at 08:55; confirmed with the facility";

#[tokio::test]
async fn attested_failover_copies_applies_recovers_and_activates() {
    let s = setup(World::default()).await;
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3, 4, 5], "logs applied in LSN order, once each");
    assert!(w.backup_online && w.failed_over && !w.ls_configured);
    assert_eq!(w.active, ["pc01.dc2.lab"]);
    assert_eq!(w.sessions, 0);
    assert_eq!(w.copy, (1..=5).collect());
    // FO-1a captured what FO-1b then removed.
    let cap = &o["fo1_capture"]["output"];
    assert_eq!(
        cap["last_restored_file"],
        json!(format!("/lab/copy/{}", name(2)))
    );
    assert_eq!(cap["share"], "/lab/share");
    assert_eq!(cap["primary_server"], PRIMARY);
    let est = &cap["loss_window_estimate"];
    assert_eq!(est["log_backups_not_restored"], 3, "{est}");
    assert_eq!(est["window_seconds_estimate"], 180, "{est}");
    assert_eq!(est["newest_log_backup"], json!(name(5)), "{est}");
    assert_eq!(est["share_reachable"], true, "{est}");
    assert_eq!(
        o["fo2_copy_logs"]["output"]["copied"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let lw = &o["fo3_apply_logs"]["output"]["loss_window"];
    assert_eq!(
        lw["last_restored_file"],
        json!(format!("/lab/copy/{}", name(5)))
    );
    assert_eq!(lw["last_restored_lsn"], "600");
    assert_eq!(lw["last_backup_known_file"], lw["last_restored_file"]);
    assert_eq!(lw["window_seconds"], 0);
    assert_eq!(lw["share_reachable"], true);
    assert_eq!(lw["files_missing"], json!([]));
    assert_eq!(o["fo6_mirror"]["status"], "skipped");
    for op in [
        "remove_log_shipping_secondary",
        "recover_database",
        "set_pool_state",
        "kill_sessions",
    ] {
        assert_eq!(s.fake.executed(op).len(), 1, "{op}");
    }
    // The restores carried the SHA-256 FO-2 recorded; the order was remove, copy, apply, recover.
    let order = s.fake.executed_names();
    let first = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(first("remove_log_shipping_secondary") < first("file_copy"));
    assert!(first("file_copy") < first("restore_log"));
    assert!(first("restore_log") < first("recover_database"));
    assert!(first("set_pool_state") < first("set_active_servers"));
    // The attestation is in the run and its audit trail with the caller's name.
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(snap.run.spec.attestation.as_deref(), Some(ATTESTED));
    let audit = s.store.audit(&id).await.unwrap();
    let a = audit.iter().find(|a| a.event == "run.attested").unwrap();
    assert_eq!(
        (a.caller.as_str(), &a.details["primary_down"]),
        ("alice", &json!(ATTESTED))
    );
}

#[tokio::test]
async fn a_failover_without_attestation_is_refused() {
    let s = setup(World::default()).await;
    for a in [None, Some("   ")] {
        let e = start(&s, &approver(), true, a).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        assert!(
            e.to_string()
                .contains("cannot tell a dead primary site from a cut link"),
            "{e}"
        );
    }
    let e = start(&s, &approver(), true, Some("a\u{7}b"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    // A failback takes no attestation.
    let e = s
        .engine
        .start_run_attested(
            &approver(),
            RunbookKind::Failback,
            vec![POOL.into()],
            RunOptions::default(),
            StartDecisions::attested(Some("x")),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("belongs to failover runs"), "{e}");
    assert!(s.store.list_runs(10).await.unwrap().is_empty());
    assert!(s.fake.executed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn lost_share_applies_what_the_copy_folder_holds() {
    let s = setup(World {
        share: None,
        ..World::default()
    })
    .await;
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3]);
    assert!(w.backup_online && w.failed_over);
    let est = &o["fo1_capture"]["output"]["loss_window_estimate"];
    assert_eq!(est["share_reachable"], false, "{est}");
    assert_eq!(est["log_backups_not_restored"], 1, "{est}");
    let fo2 = &o["fo2_copy_logs"]["output"];
    assert_eq!(fo2["share_reachable"], false);
    assert!(
        fo2["share_error"]
            .as_str()
            .unwrap()
            .contains("host is down"),
        "{fo2}"
    );
    let lw = &o["fo3_apply_logs"]["output"]["loss_window"];
    assert_eq!(lw["share_reachable"], false);
    assert_eq!(lw["last_restored_lsn"], "400");
    assert!(lw["note"].as_str().unwrap().contains("unreachable"), "{lw}");
}

#[tokio::test]
async fn a_gap_stops_the_run_naming_the_missing_range_then_a_new_run_continues() {
    let mut share: BTreeSet<u32> = (1..=6).collect();
    share.remove(&4);
    let s = setup(World {
        share: Some(share),
        ..World::default()
    })
    .await;
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let snap = test_fleet::wait_status(&s.store, &id, RunStatus::Failed).await;
    // The run's reason says what the stop leaves: log shipping gone, nothing recovered.
    let reason = snap.run.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("log shipping to the backup mgc is removed (FO-1)")
            && reason.contains("no database serves the pool"),
        "{reason}"
    );
    let o = snap.pools[POOL].outputs.clone();
    let fo3 = &o["fo3_apply_logs"];
    assert_eq!(fo3["status"], "failed");
    let msg = fo3["error"].as_str().unwrap();
    assert!(msg.contains("LSN 400 to 500"), "{msg}");
    assert!(msg.contains(&name(3)) && msg.contains(&name(5)), "{msg}");
    assert!(msg.contains("\"window_seconds\":180"), "{msg}");
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3], "nothing beyond the gap");
    assert!(!w.backup_online && !w.failed_over);
    assert!(s.fake.executed("recover_database").is_empty());

    // A new run without the file (log shipping already removed: the restore point is unknown,
    // already applied logs answer 4326, SQL Server's 4305 finds the gap).
    let id = start_when_free(&s).await;
    let o = wait_status(&s.store, &id, RunStatus::Failed).await;
    let msg = o["fo3_apply_logs"]["error"].as_str().unwrap();
    assert!(
        msg.contains("restore point (LSN 400 or later) and LSN 500"),
        "{msg}"
    );
    assert_eq!(s.fake.world.lock().unwrap().applied, [3]);

    // The missing file turns up; a new run finishes the failover.
    s.fake.world.lock().unwrap().copy.insert(4);
    let id = start_when_free(&s).await;
    let o = wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_eq!(o["fo1_capture"]["output"]["configured"], false);
    assert_eq!(
        o["fo1_remove_log_shipping"]["how"],
        "probe: goal already true"
    );
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3, 4, 5, 6]);
    assert!(w.backup_online && w.failed_over);
    let fo3 = &o["fo3_apply_logs"]["output"];
    assert_eq!(fo3["already_applied"], 3);
    assert_eq!(fo3["loss_window"]["last_restored_lsn"], "700");
}

/// Starts a failover accepting the gap at `file`, as soon as the engine takes it.
async fn start_accepting(s: &Setup, caller: &Caller, file: &str) -> Result<RunId, Error> {
    let decisions = StartDecisions {
        attestation: Some(ATTESTED.into()),
        accept_gap: Some((
            file.into(),
            "the last log backup died with the share; ticket 4712".into(),
        )),
    };
    for _ in 0..100 {
        match s
            .start_run_with(caller, RunbookKind::Failover, true, decisions.clone())
            .await
        {
            Err(Error::InvalidInput(m)) if m.contains("already part of unfinished run") => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
    s.start_run_with(caller, RunbookKind::Failover, true, decisions)
        .await
}

/// An attested failover over a chain whose log backups `damaged` cannot be read: it fails in
/// FO-3; the setup and FO-3's error.
async fn fails_at_fo3_with_damaged(damaged: &[u32]) -> (Setup, String) {
    let s = setup(World {
        damaged: damaged.iter().copied().collect(),
        ..World::default()
    })
    .await;
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Failed).await;
    let msg = o["fo3_apply_logs"]["error"].as_str().unwrap().to_string();
    (s, msg)
}

#[tokio::test]
async fn an_unreadable_newest_log_backup_is_a_gap_that_only_a_named_acceptance_passes() {
    // Log 5, the newest, cannot be read: no later file exposes the gap by LSN, and applying 3
    // and 4 then recovering would lose log 5 silently.
    let (s, msg) = fails_at_fo3_with_damaged(&[5]).await;
    assert!(msg.contains(&format!("at {}", name(5))), "{msg}");
    assert!(msg.contains("cannot be read"), "{msg}");
    assert!(msg.contains(&format!("--accept-gap {}", name(5))), "{msg}");
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(
        w.applied,
        [3, 4],
        "everything before the gap, nothing past it"
    );
    assert!(!w.backup_online && !w.failed_over);
    assert!(s.fake.executed("recover_database").is_empty());

    // Only an approver may accept the loss; nothing starts otherwise.
    let e = start_accepting(&s, &operator(), &name(5))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e}");

    // An acceptance of another file does not cover this gap.
    let id = start_accepting(&s, &approver(), &name(4)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Failed).await;
    let msg = o["fo3_apply_logs"]["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("accepted the loss of a gap at {}", name(4))),
        "{msg}"
    );
    assert!(s.fake.executed("recover_database").is_empty());

    // Accepting the gap FO-3 named: recovered without log 5, the decision in the run's record.
    let id = start_accepting(&s, &approver(), &format!("/copy/{}", name(5)))
        .await
        .unwrap();
    let snap = test_fleet::wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let fo3 = &snap.pools[POOL].outputs["fo3_apply_logs"]["output"];
    assert_eq!(fo3["gap_accepted"]["file"], name(5));
    assert_eq!(fo3["gap_accepted"]["accepted_by"], approver().name);
    assert_eq!(fo3["loss_window"]["accepted_gap"]["file"], name(5));
    assert!(
        fo3["gap_accepted"]["not_applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().ends_with(&name(5))),
        "{fo3}"
    );
    let run = s.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.run.spec.accepted_gap.as_ref().unwrap().file, name(5));
    let audit = s.store.audit(&id).await.unwrap();
    assert!(audit.iter().any(|a| a.event == "run.gap_accepted"));
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3, 4]);
    assert!(w.backup_online && w.failed_over);
}

#[tokio::test]
async fn an_unreadable_log_backup_before_a_readable_one_is_named_as_the_gap() {
    // Log 3 unreadable: log 4 starts where 3 ends, past the restore point, so nothing applies;
    // the gap is reported at the hole (the missing log itself), not at log 4.
    let (s, msg) = fails_at_fo3_with_damaged(&[3]).await;
    assert!(msg.contains(&format!("at {}", name(3))), "{msg}");
    assert!(s.fake.world.lock().unwrap().applied.is_empty());
}

#[tokio::test]
async fn removal_and_recovery_wait_for_an_approver() {
    let s = setup(World::default()).await;
    let id = start(&s, &operator(), false, Some(ATTESTED)).await.unwrap();
    wait_status(&s.store, &id, RunStatus::AwaitingApproval).await;
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    let pool = &snap.pools[POOL];
    assert_eq!(
        (pool.step.as_str(), pool.status),
        ("fo1_remove_log_shipping", StepStatus::AwaitingApproval)
    );
    assert_eq!(
        pool.outputs["fo1_capture"]["output"]["loss_window_estimate"]["window_seconds_estimate"],
        180,
        "the approver sees the expected loss"
    );
    assert_eq!(
        pool.outputs["fo1_capture"]["status"], "succeeded",
        "captured before the approval"
    );
    assert!(s.fake.world.lock().unwrap().ls_configured);
    s.engine.approve(&approver(), &id).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert!(s.fake.world.lock().unwrap().backup_online);
}

#[tokio::test]
async fn a_primary_still_serving_mgc_refuses_the_failover() {
    let s = setup(World {
        primary_online: true,
        ..World::default()
    })
    .await;
    s.fake.disconnected.lock().unwrap().remove(PRIMARY);
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Failed).await;
    let msg = o["fo1_capture"]["error"].as_str().unwrap();
    assert!(
        msg.contains("not down") && msg.contains("second writable mgc"),
        "{msg}"
    );
    assert!(s.fake.executed.lock().unwrap().is_empty());
    assert!(s.fake.world.lock().unwrap().ls_configured);
}

#[tokio::test]
async fn plan_shows_the_steps_and_sends_nothing() {
    let s = setup(World::default()).await;
    let plan = s
        .engine
        .plan(RunbookKind::Failover, vec![POOL.into()], 1)
        .unwrap();
    let names: Vec<&str> = plan.steps.iter().map(|p| p.step.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    let destructive: Vec<&str> = plan
        .steps
        .iter()
        .filter(|p| p.destructive)
        .map(|p| p.step.as_str())
        .collect();
    assert_eq!(destructive, ["fo1_remove_log_shipping", "fo4_recover"]);
    let fo3 = plan
        .steps
        .iter()
        .find(|p| p.step == "fo3_apply_logs")
        .unwrap();
    assert!(
        fo3.operations
            .iter()
            .any(|o| o.detail.contains("loss_window"))
    );
    assert!(plan.findings.iter().any(|f| f.contains(PRIMARY)));
    assert!(s.fake.executed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_retry_after_a_partial_apply_skips_what_was_applied() {
    let s = setup(World::default()).await;
    s.fake
        .fail_once
        .lock()
        .unwrap()
        .insert(4, err(true, 1205, "deadlock victim"));
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_eq!(o["fo3_apply_logs"]["attempts"], 2);
    assert_eq!(o["fo3_apply_logs"]["output"]["already_applied"], 1);
    assert_eq!(s.fake.world.lock().unwrap().applied, [3, 4, 5]);
}

#[tokio::test]
async fn a_new_leader_resumes_mid_apply_without_repeating_a_restore() {
    let s = setup(World::default()).await;
    s.fake.hang_once.lock().unwrap().insert(4);
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    for _ in 0..500 {
        if s.fake.world.lock().unwrap().applied.contains(&4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.engine.on_leader_stop().await.unwrap();
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(snap.pools[POOL].step, "fo3_apply_logs");
    let next = Engine::new("c2", topology(), s.fake.clone(), config());
    next.set_store(s.store.clone());
    next.on_leader_start(Epoch(2)).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_eq!(s.fake.world.lock().unwrap().applied, [3, 4, 5]);
    assert_eq!(
        s.fake.executed("restore_log").len(),
        3,
        "each restore ran once; the resumed one was answered from the journal"
    );
}
