//! The failback of a pool failed over and mirrored in DC2, on a real three-member etcd with two
//! coordinator processes, and the leader
//! killed with SIGKILL twice: while FB-3's `BACKUP DATABASE` runs on the backup instance and
//! again while FB-4's `RESTORE DATABASE` runs on the primary. The other coordinator takes over
//! each time (the run's audit trail shows both coordinators driving it), re-asks the agents with
//! the same op ids, and finishes: the pool ends failed back exactly as in standalone mode, and
//! sqlsim's statement logs show each destructive statement exactly once (DESIGN §9 invariant 5).
//!
//! sqlsim's `delay backup` / `delay restore` faults spread a few seconds over the file I/O so the
//! kills land while the statements are in flight (the statement log records a statement before
//! it runs).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

mod failback_checks;

use failback_checks::assert_failed_back;
use failback_tests::harness::etcd::{EtcdCluster, unique_cluster};
use failback_tests::harness::failed_over::{Options, failed_over, statements_starting};
use failback_tests::harness::fleet::{APPROVER, COORDINATOR, COORDINATOR2, OPERATOR};
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};
use failback_tests::harness::wait_for;

const POOL: &str = "pchat01.lab.local";
const LEASE_TTL: Duration = Duration::from_secs(4);

fn fault(spec: &str) -> Vec<String> {
    vec!["--fault".into(), spec.into()]
}

/// Waits until `sim` has received a statement starting with `prefix` beyond the `before` it
/// already had.
async fn wait_statement(sim: &SqlSim, prefix: &str, before: usize) {
    wait_for(
        &format!("'{prefix}' in the statement log"),
        Duration::from_secs(90),
        || async { (statements_starting(sim, prefix).len() > before).then_some(()) },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn failback_on_etcd_survives_leader_kills_during_fb3_and_fb4() {
    let Some(etcd) = EtcdCluster::start_or_skip(3, "failback_ha").await else {
        return;
    };
    let mut lab = failed_over(Options {
        etcd: Some((etcd.endpoints(), unique_cluster("failback-ha"), LEASE_TTL)),
        backup_args: vec![(0, fault("delay backup 5000"))],
        primary_args: vec![(0, fault("delay restore 5000"))],
        heartbeat: Duration::from_millis(1000),
        mirrored: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let first = lab.fleet.leader(Duration::from_secs(30)).await.unwrap();
    // The mirror's seed was a BACKUP DATABASE on the backup instance too.
    let seeded = statements_starting(&lab.pools[0].backup, "BACKUP DATABASE").len();
    let run = lab
        .start_failback(APPROVER, &["--pool", POOL, "--yes"])
        .await
        .unwrap();

    // FB-3 in flight on the backup instance: kill -9 the leader. FB-1's engine-account probe
    // (a COPY_ONLY backup of model) is the first BACKUP DATABASE of the run; FB-3's follows.
    wait_statement(&lab.pools[0].backup, "BACKUP DATABASE", seeded + 1).await;
    lab.fleet.kill_coordinator_named(&first);
    let second = lab
        .fleet
        .other_leader(&first, Duration::from_secs(30))
        .await
        .unwrap();
    lab.fleet.start_coordinator_named(&first).await.unwrap();

    // FB-4 in flight on the primary: kill -9 the new leader.
    wait_statement(&lab.pools[0].primary, "RESTORE DATABASE", 0).await;
    lab.fleet.kill_coordinator_named(&second);
    // Invariant 7: while the primary copy is being restored, the backup copy takes no writes.
    let rows = lab.pools[0]
        .backup
        .batch_as(
            ("sa", SA_PASSWORD),
            "master",
            "SELECT is_read_only FROM sys.databases WHERE name = 'mgc'",
        )
        .await
        .unwrap();
    assert_eq!(
        rows[0].get::<bool, _>(0),
        Some(true),
        "backup mgc still writable during FB-4"
    );
    let detail = lab
        .wait_status(&run, &[], Duration::from_secs(180))
        .await
        .unwrap();
    lab.fleet.start_coordinator_named(&second).await.unwrap();

    assert_failed_back(&lab, 0, &detail).await;
    // Both coordinators drove the run: each recorded its own transitions.
    let drivers: std::collections::BTreeSet<String> = detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["caller"].as_str())
        .filter(|c| c.starts_with("coordinator:"))
        .map(str::to_string)
        .collect();
    for c in [COORDINATOR, COORDINATOR2] {
        assert!(
            drivers.contains(&format!("coordinator:{c}")),
            "{c} never drove the run: {drivers:?}\n{detail:#}"
        );
    }
    // The evidence report names both leaders and where the second took over (issue #12).
    let out = lab
        .fleet
        .ctl(OPERATOR, &["report", &run, "--format", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let leaders = report["leaders"].as_array().unwrap();
    assert!(leaders.len() >= 2, "{report:#}");
    assert!(
        leaders.iter().skip(1).all(|l| l["took_over"] == true),
        "{report:#}"
    );
    // Each interrupted step was resumed by the coordinator that took over, in the same
    // attempt (so with the same op ids), never started afresh.
    let audit = detail["audit"].as_array().unwrap();
    for (step, by) in [("fb3_backup", &second), ("fb4_restore", &first)] {
        let events: Vec<(&str, &str, u64)> = audit
            .iter()
            .filter(|a| a["details"]["step"] == *step)
            .map(|a| {
                (
                    a["event"].as_str().unwrap_or_default(),
                    a["caller"].as_str().unwrap_or_default(),
                    a["details"]["attempt"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert!(
            events.contains(&("step.resumed", &format!("coordinator:{by}"), 1)),
            "{step} not resumed by {by}: {events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|(e, _, a)| *e == "step.started" && *a > 1),
            "{step} started a new attempt: {events:?}"
        );
    }
    drop(etcd);
}
