//! The failback as an operator drives it for a fleet, with real processes:
//! - `plan` changes nothing (the instances see only reads, the CMS is untouched) and lists every
//!   changing statement the following `run` sends, on the agent that sends it;
//! - three pools with `--max-parallel 2` run in waves (the canary alone, then the other two at
//!   once), and a failure in the canary stops the run before any other pool is touched;
//! - a failback of a pool that is Normal again is refused before it changes anything.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

mod failback_checks;

use failback_checks::assert_failed_back;
use failback_tests::harness::failed_over::{FailedOverLab, Options, failed_over, pool_fqdn};
use failback_tests::harness::fleet::{APPROVER, OPERATOR};
use failback_tests::harness::sqlsim::SqlSim;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(180);

/// The statements of `sim`'s log from index `from` on.
fn texts(sim: &SqlSim, from: usize) -> Vec<String> {
    sim.statements()
        .into_iter()
        .skip(from)
        .map(|s| s.text)
        .collect()
}

/// What a statement changes, as the plan must name it: `BACKUP DATABASE` and `RESTORE DATABASE`
/// with their WITH options (leaving out progress and labels: STATS, NAME, DESCRIPTION, FILE,
/// MOVE), `ALTER DATABASE`, `KILL`, or a procedure that changes msdb/master (sp_add_*,
/// sp_update_job, sp_attach_schedule, sp_start_job, sp_delete_*). Reads (SELECT, HEADERONLY,
/// FILELISTONLY, VERIFYONLY, sp_help_*) and what SQL Server Agent jobs run by themselves
/// (BACKUP LOG, RESTORE LOG: the plan names the sp_start_job that triggers them) give None.
fn change_key(text: &str) -> Option<(String, Vec<String>)> {
    let t = text.trim().to_ascii_uppercase();
    for cmd in ["BACKUP DATABASE", "RESTORE DATABASE"] {
        if t.starts_with(cmd) {
            let opts = t
                .split_once(" WITH ")
                .map(|(_, o)| o)
                .unwrap_or_default()
                .split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| {
                    !["STATS", "NAME", "DESCRIPTION", "FILE", "MOVE"]
                        .iter()
                        .any(|skip| o.starts_with(skip))
                })
                .collect();
            return Some((cmd.to_string(), opts));
        }
    }
    for cmd in ["ALTER DATABASE", "KILL"] {
        if t.starts_with(cmd) {
            return Some((cmd.to_string(), Vec::new()));
        }
    }
    let proc = t.rsplit('.').next().unwrap_or_default().to_string();
    let changing = ["SP_ADD_", "SP_DELETE_"]
        .iter()
        .any(|p| proc.starts_with(p))
        || ["SP_UPDATE_JOB", "SP_ATTACH_SCHEDULE", "SP_START_JOB"].contains(&proc.as_str());
    changing.then_some((proc, Vec::new()))
}

/// The plan's operations for `agent`, as one upper-case text per operation.
fn planned_for(plan: &Value, agent: &str) -> Vec<String> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["operations"].as_array().unwrap().iter())
        .filter(|o| o["agent"] == agent)
        .map(|o| {
            format!(
                "{} {}",
                o["operation"],
                o["detail"].as_str().unwrap_or_default()
            )
            .to_ascii_uppercase()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_changes_nothing_and_lists_what_run_sends() {
    let lab = failed_over(Options::default()).await.unwrap();
    let pool = &lab.pools[0];
    let before = (
        pool.primary.statements().len(),
        pool.backup.statements().len(),
    );
    let cms = std::fs::read(lab.fleet.cms_store()).unwrap();

    let out = lab
        .fleet
        .ctl(
            OPERATOR,
            &["plan", "failback", "--pool", &pool.fqdn, "--output", "json"],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    let table = lab
        .fleet
        .ctl(OPERATOR, &["plan", "failback", "--pool", &pool.fqdn])
        .await
        .unwrap();
    assert_eq!(table.code, 0, "{table:?}");
    assert!(
        table.stdout.contains("BACKUP DATABASE [mgc]"),
        "{}",
        table.stdout
    );

    // Nothing changed: the instances saw only reads (preflight's, for the plan's findings),
    // the CMS is byte for byte the same.
    for (sim, from) in [(&pool.primary, before.0), (&pool.backup, before.1)] {
        let changes: Vec<String> = texts(sim, from)
            .into_iter()
            .filter(|t| change_key(t).is_some())
            .collect();
        assert_eq!(changes, Vec::<String>::new());
    }
    assert_eq!(std::fs::read(lab.fleet.cms_store()).unwrap(), cms);
    // The findings include preflight's for the failback direction (the lab's chat servers run
    // no agent; FB-3's share has room, etc.): at least the plan says what it checked.
    assert!(
        plan["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "{plan:#}"
    );
    let before = (
        pool.primary.statements().len(),
        pool.backup.statements().len(),
    );

    let run = lab
        .start_failback(APPROVER, &["--pool", &pool.fqdn, "--yes"])
        .await
        .unwrap();
    let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
    assert_failed_back(&lab, 0, &detail).await;

    let mut checked = 0;
    for (agent, sim, from) in [
        (&pool.primary_agent, &pool.primary, before.0),
        (&pool.backup_agent, &pool.backup, before.1),
    ] {
        let planned = planned_for(&plan, agent);
        for text in texts(sim, from) {
            let Some((cmd, opts)) = change_key(&text) else {
                continue;
            };
            checked += 1;
            let hit = planned
                .iter()
                .any(|p| p.contains(&cmd) && opts.iter().all(|o| p.contains(o.as_str())));
            assert!(
                hit,
                "{agent} ran '{text}' ({cmd} {opts:?}) but the plan does not list it:\n{planned:#?}"
            );
        }
    }
    // BACKUP and RESTORE on each side plus the log-shipping procedures were compared.
    assert!(checked >= 12, "only {checked} changing statements seen");
}

/// Steps started per pool, with the audit sequence number of each event.
fn events(detail: &Value, pool: &str, event: &str) -> Vec<u64> {
    detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["event"] == event && a["details"]["pool"] == pool)
        .map(|a| a["seq"].as_u64().unwrap())
        .collect()
}

async fn run_all(lab: &FailedOverLab) -> Value {
    let run = lab
        .start_failback(APPROVER, &["--all", "--yes", "--max-parallel", "2"])
        .await
        .unwrap();
    lab.wait_status(&run, &[], DEADLINE).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_pools_in_waves_and_a_failing_canary_stops_the_rest() {
    let mut lab = failed_over(Options {
        pools: 3,
        ..Options::default()
    })
    .await
    .unwrap();
    let (p1, p2, p3) = (pool_fqdn(1), pool_fqdn(2), pool_fqdn(3));

    let out = lab
        .fleet
        .ctl(
            OPERATOR,
            &[
                "plan",
                "failback",
                "--all",
                "--max-parallel",
                "2",
                "--output",
                "json",
            ],
        )
        .await
        .unwrap();
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        plan["waves"],
        serde_json::json!([[p1], [p2, p3]]),
        "{plan:#}"
    );

    // The canary's backup instance is down: FB-1 cannot check its sessions, the canary fails
    // after its retries, and the run stops before the second wave.
    lab.pools[0].backup.kill();
    let sent_before: Vec<usize> = lab.pools[1..]
        .iter()
        .flat_map(|p| [p.primary.statements().len(), p.backup.statements().len()])
        .collect();
    let detail = run_all(&lab).await;
    assert_eq!(detail["run"]["status"], "failed", "{detail:#}");
    assert!(
        !events(&detail, &p1, "step.failed").is_empty(),
        "{detail:#}"
    );
    for p in [&p2, &p3] {
        assert_eq!(
            events(&detail, p, "step.started"),
            Vec::<u64>::new(),
            "{p}: {detail:#}"
        );
    }
    let sent_after: Vec<usize> = lab.pools[1..]
        .iter()
        .flat_map(|p| [p.primary.statements().len(), p.backup.statements().len()])
        .collect();
    assert_eq!(
        sent_before, sent_after,
        "the other pools' instances were touched"
    );

    // Back up: a new run fails the three pools back, the canary first, then two at once.
    lab.pools[0].backup.start().await.unwrap();
    let detail = run_all(&lab).await;
    assert_eq!(detail["run"]["status"], "succeeded", "{detail:#}");
    let canary_done = events(&detail, &p1, "pool.succeeded")[0];
    let first = |p: &str| *events(&detail, p, "step.started").first().unwrap();
    let done = |p: &str| events(&detail, p, "pool.succeeded")[0];
    for p in [&p2, &p3] {
        assert!(
            first(p) > canary_done,
            "{p} started before the canary finished: {detail:#}"
        );
    }
    // The second wave ran its two pools at once: each started before the other finished.
    assert!(
        first(&p2) < done(&p3) && first(&p3) < done(&p2),
        "{detail:#}"
    );
    for i in 0..3 {
        assert_failed_back(&lab, i, &detail).await;
    }

    // Failing back a pool that is Normal again is refused before anything changes: its DC1
    // chat server stays active (FB-1 would otherwise clear it and stop chat).
    let cms = std::fs::read(lab.fleet.cms_store()).unwrap();
    let run = lab
        .start_failback(APPROVER, &["--pool", &p1, "--yes"])
        .await
        .unwrap();
    let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
    assert_eq!(detail["run"]["status"], "failed", "{detail:#}");
    assert!(
        detail["run"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not FailedOver"),
        "{detail:#}"
    );
    assert_eq!(std::fs::read(lab.fleet.cms_store()).unwrap(), cms);
}
