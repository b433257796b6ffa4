//! Watching and reporting a run, with real processes (coordinators, agents, sqlsim instances,
//! lyncsim's CMS: the failed-over pool of the `failed_over` harness). The backup instance's
//! BACKUP is slowed down (`delay backup`) so FB-3 runs long enough for its percent to be seen.
//!
//! `failbackctl run failback` (no `--yes`, no `--detach`) prints the run id and watches: the run
//! waits at FB-4 and the watch says which command approves it; an approver approves; the watch
//! exits 0 after the run succeeded, having shown the steps and FB-3's progress. Then
//! `report --format json` carries FB-3's file, SHA-256 and LSNs as the run recorded them, the
//! approval and per-step durations; `--format md` renders the same as tables; `/metrics` counts
//! the finished run and FB-3's duration.
//!
//! With two coordinators on a three-member etcd, `kill -9` of the leader while the run waits for
//! its approval does not end the watch: it says it lost the coordinator, finds the new leader,
//! and still exits 0 when the run (approved through the new leader) succeeds.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failback_tests::harness::etcd::{EtcdCluster, unique_cluster};
use failback_tests::harness::failed_over::{
    FailedOverLab, Options, failed_over, statements_starting,
};
use failback_tests::harness::fleet::{APPROVER, Fleet, OPERATOR};
use failback_tests::harness::process::bin;
use failback_tests::harness::{http_get, wait_for};
use tokio::io::AsyncBufReadExt;

const POOL: &str = "pchat01.lab.local";
const BACKUP: &str = "sql01.dc2.lab";
const LEASE_TTL: Duration = Duration::from_secs(4);

fn fault(spec: &str) -> Vec<String> {
    vec!["--fault".into(), spec.into()]
}

/// A failbackctl process left running (`run` and `watch` last as long as the run), its stdout
/// collected line by line as it comes.
struct Running {
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(fleet: &Fleet, identity: &str, args: &[&str]) -> Running {
        let mut child = tokio::process::Command::new(bin("failbackctl").unwrap())
            .args(args)
            .current_dir(&fleet.dir)
            .env("RUST_LOG", "warn")
            .env("FAILBACK_COORDINATORS", fleet.endpoints())
            .env("FAILBACK_CERTS_DIR", &fleet.certs)
            .env("FAILBACK_IDENTITY", identity)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                sink.lock().unwrap().push(l);
            }
        });
        Running { child, stdout }
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits for the exit code (the stdout reader has then seen everything but may lag a little).
    async fn finish(mut self, deadline: Duration) -> (i32, Vec<String>) {
        let status = tokio::time::timeout(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {deadline:?}: {:#?}", self.lines()))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        (status.code().unwrap_or(-1), self.lines())
    }
}

/// `failbackctl status RUN --output json`, parsed (`None` when no coordinator answered).
async fn status(lab: &FailedOverLab, run: &str) -> Option<serde_json::Value> {
    lab.status(run).await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_report_and_metrics_of_a_failback() {
    let lab = failed_over(Options {
        backup_args: vec![(0, fault("delay backup 4000"))],
        ..Options::default()
    })
    .await
    .unwrap();
    let fleet = &lab.fleet;

    // `run` without --detach: the run id first, then the watch.
    let run_proc = Running::start(fleet, OPERATOR, &["run", "failback", "--pool", POOL]);
    let run = wait_for("the run id", Duration::from_secs(30), || async {
        run_proc.lines().first().cloned()
    })
    .await
    .unwrap();
    // The id alone on the first line (YYYYMMDD-HHMMSS-xxxxxx), as scripts read it.
    assert!(
        run.len() == 22 && run.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "{run}"
    );

    // While FB-3's slow backup runs, GetRun shows the operation, its agent and a percent.
    let live = wait_for(
        "FB-3's backup to report a percent",
        Duration::from_secs(60),
        || async {
            let d = status(&lab, &run).await?;
            let p = d["pools"][0].clone();
            (p["step"] == "fb3_backup" && p["percent"].is_u64()).then_some(p)
        },
    )
    .await
    .unwrap();
    assert_eq!(live["operation"], "backup_database", "{live:#}");
    assert_eq!(live["agent"], BACKUP, "{live:#}");
    assert!(
        live["step_started_unix_ms"].as_u64().unwrap() > 0,
        "{live:#}"
    );

    // No --yes: the run waits at FB-4 and the watch says how to approve it.
    let hint = format!("awaiting approval: failbackctl approve {run}");
    wait_for(
        "the watch to show the approval hint",
        Duration::from_secs(60),
        || async {
            run_proc
                .lines()
                .iter()
                .any(|l| l.ends_with(&hint))
                .then_some(())
        },
    )
    .await
    .unwrap();
    let out = fleet.ctl(APPROVER, &["approve", &run]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");

    let (code, lines) = run_proc.finish(Duration::from_secs(120)).await;
    let shown = lines.join("\n");
    assert_eq!(code, 0, "{shown}");
    assert_eq!(lines[0], run);
    // Every step is shown once finished, however short (in a log, not a terminal).
    for step in [
        "1/8 fb1_clear_active",
        "2/8 fb2_remove_mirroring",
        "3/8 fb3_backup",
        "4/8 fb4_restore",
        "5/8 fb5_log_shipping",
        // The default order sets the pool Normal before activating servers (FB-7, then FB-6).
        "6/8 fb7_pool_normal",
        "7/8 fb6_activate",
        "8/8 fb8_prune_backups",
    ] {
        let done = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{POOL}  {step} ")) && l.contains(" in "))
            .count();
        assert_eq!(done, 1, "{step} not shown once finished:\n{shown}");
    }
    assert!(shown.contains("8/8 done"), "{shown}");
    assert!(
        lines.iter().any(|l| l.contains("3/8 fb3_backup")
            && l.contains("%")
            && l.contains("running backup_database on sql01.dc2.lab")),
        "no progress bar for FB-3:\n{shown}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("run {run} succeeded after ")),
        "{shown}"
    );

    // `watch RUN` of a finished run prints the final state and exits 0 at once.
    let out = fleet.ctl(OPERATOR, &["watch", &run]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("8/8 done"), "{out:?}");

    // The evidence report, JSON: FB-3's file, SHA-256 and LSNs as the run recorded them.
    let d = status(&lab, &run).await.unwrap();
    let fb3 = &d["pools"][0]["outputs"]["fb3_backup"]["output"];
    let out = fleet
        .ctl(OPERATOR, &["report", &run, "--format", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["run"]["status"], "succeeded", "{report:#}");
    assert_eq!(report["run"]["started_by"], OPERATOR, "{report:#}");
    assert!(
        report["run"]["duration_ms"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    let steps = report["pools"][0]["steps"].as_array().unwrap();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {report:#}"))
    };
    let facts = &step("fb3_backup")["facts"];
    let sha = facts["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64, "{report:#}");
    for k in ["file", "sha256", "first_lsn", "last_lsn"] {
        assert!(!fb3[k].is_null(), "{k}: {d:#}");
        assert_eq!(facts[k], fb3[k], "{k}: {report:#}");
    }
    // FB-3 ran at least as long as its slowed-down backup.
    assert!(
        step("fb3_backup")["duration_ms"].as_u64().unwrap() >= 3000,
        "{report:#}"
    );
    for name in [
        "fb1_clear_active",
        "fb4_restore",
        "fb5_log_shipping",
        "fb6_activate",
        "fb7_pool_normal",
    ] {
        let s = step(name);
        assert!(s["duration_ms"].is_u64(), "{name}: {report:#}");
        assert!(s["attempts"].as_u64().unwrap() >= 1, "{name}: {report:#}");
    }
    assert_eq!(step("fb4_restore")["facts"]["sha256"], sha, "{report:#}");
    assert_eq!(report["approvals"][0]["by"], APPROVER, "{report:#}");
    assert_eq!(report["approvals"][0]["at_start"], false, "{report:#}");
    let calls: Vec<(String, String)> = report["operator_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["by"].as_str().unwrap().to_string(),
                c["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        calls.contains(&(OPERATOR.to_string(), "run.created".to_string())),
        "{calls:?}"
    );
    assert!(
        calls.contains(&(APPROVER.to_string(), "run.approved".to_string())),
        "{calls:?}"
    );
    assert_eq!(report["pools"][0]["final_state"]["step"], "done");

    // Markdown renders the same evidence as tables.
    let out = fleet
        .ctl(OPERATOR, &["report", &run, "--format", "md"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let md = out.stdout;
    assert!(
        md.starts_with(&format!("# Evidence report: run {run}")),
        "{md}"
    );
    let row = md
        .lines()
        .find(|l| l.starts_with("| fb3_backup | succeeded |"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(row.contains(&format!("SHA-256: {sha}")), "{row}");
    assert!(
        md.contains(&format!("| {APPROVER} | run.approved |")),
        "{md}"
    );

    // /metrics: one finished run, FB-3's duration observed, nothing in progress.
    let body = wait_for(
        "metrics to show the finished run",
        Duration::from_secs(10),
        || async {
            let body = http_get(fleet.coordinator_metrics_port, "/metrics")
                .await
                .ok()?;
            body.lines()
                .any(|l| {
                    l == r#"failback_runs_finished_total{runbook="failback",status="succeeded"} 1"#
                })
                .then_some(body)
        },
    )
    .await
    .unwrap();
    for line in [
        r#"failback_runs_started_total{runbook="failback"} 1"#,
        r#"failback_runs_in_progress{runbook="failback"} 0"#,
        r#"failback_step_duration_seconds_count{runbook="failback",step="fb3_backup",outcome="succeeded"} 1"#,
        r#"failback_step_attempts_total{runbook="failback",step="fb3_backup"} 1"#,
    ] {
        assert!(body.lines().any(|l| l == line), "{line} missing:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_rides_out_a_leader_change() {
    let Some(etcd) = EtcdCluster::start_or_skip(3, "watch_rides_out_a_leader_change").await else {
        return;
    };
    let mut lab = failed_over(Options {
        etcd: Some((
            etcd.endpoints(),
            unique_cluster("run-observability"),
            LEASE_TTL,
        )),
        ..Options::default()
    })
    .await
    .unwrap();
    let leader = lab.fleet.leader(Duration::from_secs(30)).await.unwrap();

    let watch = Running::start(&lab.fleet, OPERATOR, &["run", "failback", "--pool", POOL]);
    let run = wait_for("the run id", Duration::from_secs(30), || async {
        watch.lines().first().cloned()
    })
    .await
    .unwrap();
    let hint = format!("awaiting approval: failbackctl approve {run}");
    wait_for(
        "the run to wait for its approval",
        Duration::from_secs(60),
        || async {
            watch
                .lines()
                .iter()
                .any(|l| l.ends_with(&hint))
                .then_some(())
        },
    )
    .await
    .unwrap();

    // kill -9 of the leader; the other takes over (lease TTL + election) and resumes the run.
    lab.fleet.kill_coordinator_named(&leader);
    wait_for(
        "the watch to notice the lost leader",
        Duration::from_secs(10),
        || async {
            watch
                .lines()
                .iter()
                .any(|l| l.starts_with("(no answer from the coordinators"))
                .then_some(())
        },
    )
    .await
    .unwrap();
    wait_for(
        "the new leader to approve the run",
        Duration::from_secs(60),
        || async {
            let out = lab.fleet.ctl(APPROVER, &["approve", &run]).await.ok()?;
            (out.code == 0).then_some(())
        },
    )
    .await
    .unwrap();

    let (code, lines) = watch.finish(Duration::from_secs(120)).await;
    let shown = lines.join("\n");
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("8/8 done"), "{shown}");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("run {run} succeeded after ")),
        "{shown}"
    );
    // The restore ran once, after the approval given to the new leader.
    let restores = statements_starting(&lab.pools[0].primary, "RESTORE DATABASE");
    assert_eq!(restores.len(), 1, "{restores:?}\n{shown}");
    drop(etcd);
}
