//! The failback runbook end to end in standalone mode, with real processes: a coordinator (no
//! etcd), three agents, two sqlsim instances and lyncsim's CMS. The pool is built in the
//! failed-over state (the backup instance holds `mgc` with messages, the primary was rebuilt with
//! an empty `mgc`, the pool is FailedOver with the DC2 chat server active); `failbackctl run
//! failback` brings it back: the primary `mgc` ONLINE with every message, the pool Normal with
//! the DC1 chat server active, one BACKUP on the backup instance and one RESTORE on the primary.
//! A second test: without `--yes` the run waits for approval before FB-4; an operator-only
//! certificate cannot approve, the approver can.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

mod failback_checks;

use failback_checks::assert_failed_back;
use failback_tests::harness::failed_over::{Options, failed_over, statements_starting};
use failback_tests::harness::fleet::{APPROVER, OPERATOR};

const POOL: &str = "pchat01.lab.local";
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn standalone_failback_with_yes() {
    let lab = failed_over(Options::default()).await.unwrap();
    let run = lab
        .start_failback(APPROVER, &["--pool", POOL, "--yes"])
        .await
        .unwrap();
    let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
    assert_failed_back(&lab, 0, &detail).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_failback_waits_for_an_approver() {
    let lab = failed_over(Options::default()).await.unwrap();
    let run = lab
        .start_failback(OPERATOR, &["--pool", POOL])
        .await
        .unwrap();
    let detail = lab
        .wait_status(&run, &["awaiting_approval"], DEADLINE)
        .await
        .unwrap();
    assert_eq!(detail["run"]["status"], "awaiting_approval", "{detail:#}");
    assert_eq!(detail["pools"][0]["step"], "fb4_restore", "{detail:#}");
    let primary = &lab.pools[0].primary;
    assert!(statements_starting(primary, "RESTORE DATABASE").is_empty());

    let out = lab.fleet.ctl(OPERATOR, &["approve", &run]).await.unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    let d = lab.status(&run).await.unwrap();
    assert_eq!(d["run"]["status"], "awaiting_approval", "{d:#}");

    let out = lab.fleet.ctl(APPROVER, &["approve", &run]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
    assert_failed_back(&lab, 0, &detail).await;
}
