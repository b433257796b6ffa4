//! Faults during a failback that must neither hang the run nor repeat a destructive step
//! (issue #12): the primary's agent killed mid-restore and back 3 s later, the primary SQL
//! instance killed mid-restore and restarted, and an abort while FB-4's restore runs. Real coordinator, agents and sqlsim (its restores slowed by a fault so
//! the kill lands inside one).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_tests::harness::failed_over::{
    FailedOverLab, Options, failed_over, statements_starting,
};
use failback_tests::harness::fleet::APPROVER;
use failback_tests::harness::wait_for;

const POOL: &str = "pchat01.lab.local";

/// A lab whose primary spreads each RESTORE over `ms` milliseconds.
async fn slow_restores(ms: u32) -> FailedOverLab {
    failed_over(Options {
        primary_args: vec![(0, vec!["--fault".into(), format!("delay restore {ms}")])],
        ..Options::default()
    })
    .await
    .unwrap()
}

/// Starts a failback with `--yes` and waits until FB-4's RESTORE reached the primary.
async fn restore_running(lab: &FailedOverLab) -> String {
    let run = lab
        .start_failback(APPROVER, &["--pool", POOL, "--yes"])
        .await
        .unwrap();
    let primary = &lab.pools[0].primary;
    wait_for(
        "FB-4's RESTORE on the primary",
        Duration::from_secs(90),
        || async { (!statements_starting(primary, "RESTORE DATABASE").is_empty()).then_some(()) },
    )
    .await
    .unwrap();
    run
}

/// Before the fix the run stayed "running" until the 8-hour step timeout: the coordinator
/// waited for a result the restarted agent could never send. Now the wait ends with the
/// session, the op is asked again under the same id, the agent's journal says it was
/// interrupted, and FB-4 stops the pool for a person — with exactly one RESTORE sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_restarted_mid_restore_ends_the_wait_without_a_second_restore() {
    let mut lab = slow_restores(6000).await;
    let run = restore_running(&lab).await;
    let agent = lab.pools[0].primary_agent.clone();
    lab.fleet.kill_agent(&agent);
    tokio::time::sleep(Duration::from_secs(3)).await;
    lab.fleet.start_agent(&agent).unwrap();
    let detail = lab
        .wait_status(&run, &[], Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(detail["run"]["status"], "failed", "{detail:#}");
    let msg = detail["pools"][0]["outputs"]["fb4_restore"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains("the agent restarted while this operation ran"),
        "{detail:#}"
    );
    let restores = statements_starting(&lab.pools[0].primary, "RESTORE DATABASE");
    assert_eq!(restores.len(), 1, "{restores:#?}");
}

/// An abort while FB-4 waits for its restore ends the run at once and frees the pool for the
/// next run (before, the pool stayed "already part of unfinished run" until a leader restart).
#[tokio::test(flavor = "multi_thread")]
async fn an_abort_during_a_long_restore_frees_the_pool() {
    let lab = slow_restores(30_000).await;
    let run = restore_running(&lab).await;
    let out = lab.fleet.ctl(APPROVER, &["abort", &run]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let detail = lab
        .wait_status(&run, &[], Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(detail["run"]["status"], "aborted", "{detail:#}");
    // The pool is free: a new run of it starts (it will wait for approval before FB-4).
    let next = wait_for(
        "the pool to be free for a new run",
        Duration::from_secs(20),
        || async { lab.start_failback(APPROVER, &["--pool", POOL]).await.ok() },
    )
    .await
    .unwrap();
    let out = lab.fleet.ctl(APPROVER, &["abort", &next]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
}

/// The primary SQL instance dies mid-RESTORE and comes back: the agent reports the restore's
/// outcome as unknown (not a retryable connection error), the engine probes, and FB-4, being
/// destructive, stops for a person. Before the fix attempt 2 sent a second RESTORE … REPLACE
/// with a new op id and no probe (DESIGN §9.5).
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_killed_mid_restore_is_probed_not_restored_again() {
    let mut lab = slow_restores(6000).await;
    let run = restore_running(&lab).await;
    let primary = &mut lab.pools[0].primary;
    primary.kill();
    primary.start().await.unwrap();
    let detail = lab
        .wait_status(&run, &[], Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(detail["run"]["status"], "failed", "{detail:#}");
    let msg = detail["pools"][0]["outputs"]["fb4_restore"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains("outcome is unknown")
            && msg.contains("not repeated automatically")
            && msg.contains("SET READ_WRITE"),
        "{detail:#}"
    );
    let restores = statements_starting(&lab.pools[0].primary, "RESTORE DATABASE");
    assert_eq!(restores.len(), 1, "{restores:#?}");
}
