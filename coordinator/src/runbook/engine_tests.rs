//! Engine and failback-runbook tests against an in-memory fake of the agents (a small model of
//! one failed-over pool: Lync CMS, backup and primary instances, a share with files and
//! journals per op id) and the file run store.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::Epoch;
use failback_proto::pb;
use serde_json::{Value, json};

use super::engine::{Engine, RunbookFactory};
use super::{PlannedOp, Probe, Step, StepCtx, StepError, StepRef};
use crate::config::RunbookConfig;
use crate::error::Error;
use crate::leader::LeadershipListener;
use crate::store::{RunId, RunOptions, RunStatus, RunbookKind, StepStatus};
use crate::topology::{Pool, Topology};

mod fake;
mod retention;
use fake::*;

#[tokio::test]
async fn failback_with_yes_runs_every_step_once() {
    let s = setup().await;
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_failed_back(&s);
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    let pool = &snap.pools["pchat01.lab.local"];
    assert_eq!(pool.step, super::engine::END_STEP);
    let o = &pool.outputs;
    assert_eq!(o["fb3_backup"]["output"]["sha256"], json!(sha_of(42)));
    assert_eq!(o["fb3_backup"]["output"]["last_lsn"], json!("2042"));
    assert_eq!(o["fb4_restore"]["output"]["last_lsn"], json!("2042"));
    assert_eq!(o["fb5_log_shipping"]["status"], json!("skipped"));
    assert_eq!(
        o["fb3_backup"]["output"]["file"],
        json!(format!("/lab/share/mgc_failback_{id}_1.bak"))
    );
    // Normal before activation (the default order).
    let restore = s.fake.executed("restore_database");
    assert!(
        restore[0].ends_with("/fb4_restore/1/restore-mgc"),
        "{restore:?}"
    );
    let order = s.fake.executed_names();
    let pos = |n: &str| order.iter().rposition(|x| x == n).unwrap();
    assert!(
        pos("set_pool_state") < pos("set_active_servers"),
        "{order:?}"
    );
    let audit = s.store.audit(&id).await.unwrap();
    let events: Vec<&str> = audit.iter().map(|a| a.event.as_str()).collect();
    assert!(events.contains(&"run.created") && events.contains(&"run.approved"));
    assert_eq!(audit[0].caller, "alice");
    assert!(events.contains(&"run.finished"));
}

#[tokio::test]
async fn waits_at_fb4_until_an_approver_approves() {
    let s = setup().await;
    let id = start(&s, &operator(), false).await;
    wait_status(&s.store, &id, RunStatus::AwaitingApproval).await;
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    let pool = &snap.pools["pchat01.lab.local"];
    assert_eq!(
        (pool.step.as_str(), pool.status),
        ("fb4_restore", StepStatus::AwaitingApproval)
    );
    assert!(s.fake.executed("restore_database").is_empty());
    let e = s.engine.approve(&operator(), &id).await.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
    assert!(s.fake.executed("restore_database").is_empty());
    s.engine.approve(&approver(), &id).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_failed_back(&s);
    let audit = s.store.audit(&id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.event == "approve.denied" && a.caller == "bob")
    );
    assert!(
        audit
            .iter()
            .any(|a| a.event == "run.approved" && a.caller == "alice")
    );
    // --yes needs the approver role.
    let e = s
        .engine
        .start_run(
            &operator(),
            RunbookKind::Failback,
            Vec::new(),
            RunOptions {
                approved_at_start: true,
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)));
}

#[tokio::test]
async fn lost_result_is_asked_again_with_the_same_op_id() {
    let s = setup().await;
    s.fake
        .lose_result_once
        .lock()
        .unwrap()
        .insert("restore_database");
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_failed_back(&s);
}

#[tokio::test]
async fn new_leader_resumes_mid_restore_without_repeating_it() {
    let s = setup().await;
    s.fake.hang_once.lock().unwrap().insert("restore_database");
    let id = start(&s, &approver(), true).await;
    // Wait until the restore was sent (and executed, its answer lost with the old leader).
    for _ in 0..500 {
        if !s.fake.executed("restore_database").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.engine.on_leader_stop().await.unwrap();
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    let pool = &snap.pools["pchat01.lab.local"];
    assert_eq!(pool.step, "fb4_restore");
    assert_eq!(pool.status, StepStatus::Running);
    assert!(pool.op_ids.iter().any(|o| o.ends_with("restore-mgc")));
    assert!(!snap.run.status.is_finished());

    let next = Engine::with_factory(
        "c2",
        topology(),
        s.fake.clone(),
        config(),
        failback_without_log_shipping(),
    );
    next.set_store(s.store.clone());
    next.on_leader_start(Epoch(2)).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_failed_back(&s);
    let audit = s.store.audit(&id).await.unwrap();
    assert!(audit.iter().any(|a| a.event == "run.loaded"));
    assert!(
        audit
            .iter()
            .any(|a| a.event == "step.resumed" && a.details["step"] == "fb4_restore")
    );
}

#[tokio::test]
async fn interrupted_backup_is_probed_then_retried_with_a_new_file() {
    let s = setup().await;
    s.fake.fail_once.lock().unwrap().insert(
        "backup_database",
        Fake::error(pb::ErrorKind::Interrupted, false, "agent restarted"),
    );
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    let o = &snap.pools["pchat01.lab.local"].outputs["fb3_backup"];
    assert_eq!(o["attempts"], json!(2));
    assert!(o["output"]["file"].as_str().unwrap().ends_with("_2.bak"));
    assert_failed_back(&s);
}

#[tokio::test]
async fn interrupted_restore_fails_the_pool_instead_of_repeating() {
    let s = setup().await;
    s.fake.fail_once.lock().unwrap().insert(
        "restore_database",
        Fake::error(pb::ErrorKind::Interrupted, false, "agent restarted"),
    );
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Failed).await;
    assert!(s.fake.executed("restore_database").is_empty());
    assert!(!s.fake.world.lock().unwrap().normal);
}

#[tokio::test]
async fn retryable_errors_get_new_attempts_and_fatal_ones_stop() {
    let s = setup().await;
    s.fake.fail_once.lock().unwrap().insert(
        "remove_mirroring",
        Fake::error(pb::ErrorKind::Backend, true, "deadlock victim"),
    );
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let audit = s.store.audit(&id).await.unwrap();
    assert!(audit.iter().any(|a| a.event == "step.retry"));

    let s = setup().await;
    s.fake.fail_once.lock().unwrap().insert(
        "set_pool_state",
        Fake::error(pb::ErrorKind::InvalidArgument, false, "no such pool"),
    );
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Failed).await;
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    assert!(snap.run.reason.unwrap().contains("no such pool"));
    // FB-6 never ran: servers stay cleared.
    assert!(s.fake.world.lock().unwrap().active.is_empty());
}

#[tokio::test]
async fn latency_gate_refuses_slow_servers() {
    let s = setup().await;
    s.fake.world.lock().unwrap().latency_us = 50_000;
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    // pc01.dc1.lab has an agent (measured, too slow); pc02.dc1.lab has none (same-DC rule).
    assert_eq!(s.fake.world.lock().unwrap().active, ["pc02.dc1.lab"]);
}

#[tokio::test]
async fn plan_sends_nothing() {
    let s = setup().await;
    s.fake
        .disconnected
        .lock()
        .unwrap()
        .insert("fe01.dc2.lab".into());
    let plan = s.engine.plan(RunbookKind::Failback, Vec::new(), 1).unwrap();
    assert_eq!(plan.steps.len(), 8);
    assert!(
        plan.steps
            .iter()
            .any(|p| p.destructive && p.step == "fb4_restore")
    );
    assert!(plan.findings.iter().any(|f| f.contains("fe01.dc2.lab")));
    assert!(s.fake.executed.lock().unwrap().is_empty());
    assert!(s.fake.journal.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------- engine mechanics with test steps

/// A step that records which pools ran it and fails for `fail_pool`; `gate` holds it.
struct TestStep {
    name: &'static str,
    ran: Arc<Mutex<Vec<String>>>,
    fail_pool: Option<String>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[async_trait]
impl Step for TestStep {
    fn name(&self) -> &'static str {
        self.name
    }
    fn title(&self) -> &'static str {
        "test"
    }
    fn timeout(&self, _: &RunbookConfig) -> Duration {
        Duration::from_secs(10)
    }
    fn plan(&self, _: &Pool) -> Vec<PlannedOp> {
        Vec::new()
    }
    async fn probe(&self, _: &StepCtx) -> Result<Probe, StepError> {
        Ok(Probe::Needed)
    }
    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        if let Some(g) = &self.gate {
            g.acquire().await.unwrap().forget();
        }
        self.ran
            .lock()
            .unwrap()
            .push(format!("{}:{}", self.name, ctx.pool.fqdn));
        if self.fail_pool.as_deref() == Some(ctx.pool.fqdn.as_str()) {
            return Err(StepError::fatal("injected"));
        }
        Ok(json!({}))
    }
    async fn verify(&self, _: &StepCtx, o: Value) -> Result<Value, StepError> {
        Ok(o)
    }
}

fn three_pools() -> Arc<Topology> {
    let mut t = String::from(
        "[[agent]]\nid = \"a1\"\ndatacenter = \"dc1\"\n[[agent]]\nid = \"a2\"\ndatacenter = \"dc2\"\n",
    );
    for i in 1..=3 {
        t.push_str(&format!(
            r#"
[[pool]]
fqdn = "p{i}.lab"
primary_dc = "dc1"
backup_dc = "dc2"
databases = ["mgc"]
share = "/s"
copy_dir = "/c"
[pool.lync_shell]
dc1 = ["a1"]
dc2 = ["a2"]
[pool.sql]
primary = {{ agent = "a1", instance = "h{i}a,1" }}
backup = {{ agent = "a2", instance = "h{i}b,1" }}
[pool.chat_servers]
dc1 = ["pc{i}.lab"]
dc2 = ["pcb{i}.lab"]
"#
        ));
    }
    Arc::new(Topology::parse(Path::new("t.toml"), &t).unwrap())
}

fn factory(
    ran: Ran,
    fail_pool: Option<&str>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
) -> RunbookFactory {
    let fail_pool = fail_pool.map(String::from);
    Arc::new(move |_, _| {
        let steps: Vec<StepRef> = ["s1", "s2"]
            .into_iter()
            .map(|name| {
                Arc::new(TestStep {
                    name,
                    ran: ran.clone(),
                    fail_pool: fail_pool.clone(),
                    gate: gate.clone(),
                }) as StepRef
            })
            .collect();
        Ok(steps)
    })
}

type Ran = Arc<Mutex<Vec<String>>>;

/// The three-pool topology run by the counting test steps of [`factory`].
async fn three_pool_setup(
    fail_pool: Option<&str>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
) -> (Ran, Setup) {
    let ran = Ran::default();
    let s = setup_with(Some(factory(ran.clone(), fail_pool, gate)), three_pools()).await;
    (ran, s)
}

/// An operator's failback of `pools` (every pool when empty), not approved up front.
async fn start_pools(
    s: &Setup,
    pools: &[&str],
    max_parallel: u32,
    continue_on_failure: bool,
) -> Result<RunId, Error> {
    s.engine
        .start_run(
            &operator(),
            RunbookKind::Failback,
            pools.iter().map(|p| p.to_string()).collect(),
            RunOptions {
                max_parallel,
                approved_at_start: false,
                continue_on_failure,
            },
        )
        .await
}

#[tokio::test]
async fn waves_canary_first_and_a_canary_failure_stops_the_rest() {
    let (ran, s) = three_pool_setup(None, None).await;
    let id = start_pools(&s, &[], 2, false).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let order = ran.lock().unwrap().clone();
    assert_eq!(
        &order[..2],
        ["s1:p1.lab", "s2:p1.lab"],
        "canary alone first"
    );
    assert_eq!(order.len(), 6);

    let (ran, s) = three_pool_setup(Some("p1.lab"), None).await;
    let id = start_pools(&s, &[], 2, false).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Failed).await;
    assert_eq!(ran.lock().unwrap().clone(), ["s1:p1.lab"]);
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(snap.pools.len(), 1, "later waves never started");

    let (ran, s) = three_pool_setup(Some("p1.lab"), None).await;
    let id = start_pools(&s, &[], 2, true).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Failed).await;
    assert_eq!(
        ran.lock().unwrap().len(),
        5,
        "continue_on_failure runs the others"
    );
}

#[tokio::test]
async fn pause_resume_abort() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (ran, s) = three_pool_setup(None, Some(gate.clone())).await;
    let id = start_pools(&s, &["p1.lab"], 1, false).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Running).await;
    s.engine.pause(&operator(), &id).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Paused).await;
    gate.add_permits(1); // s1 finishes; s2 must not start while paused
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ran.lock().unwrap().clone(), ["s1:p1.lab"]);
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(snap.pools["p1.lab"].step, "s1");
    s.engine.resume(&operator(), &id).await.unwrap();
    gate.add_permits(1);
    wait_status(&s.store, &id, RunStatus::Succeeded).await;

    // Abort while a step waits.
    let id = start_pools(&s, &["p2.lab"], 1, false).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Running).await;
    // A second run on the same pool is refused while this one is unfinished.
    assert!(start_pools(&s, &["p2.lab"], 1, false).await.is_err());
    s.engine.abort(&operator(), &id).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Aborted).await;
    gate.add_permits(5);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!ran.lock().unwrap().iter().any(|r| r == "s2:p2.lab"));
    let audit = s.store.audit(&id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.event == "run.aborted" && a.caller == "bob")
    );
    assert!(s.engine.pause(&operator(), &id).await.is_err());
    let unknown = RunId::new("nope").unwrap();
    assert!(matches!(
        s.engine.pause(&operator(), &unknown).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn failback_of_a_normal_pool_is_refused_before_any_change() {
    let s = setup().await;
    {
        let mut w = s.fake.world.lock().unwrap();
        w.normal = true;
        w.active = vec!["pc01.dc1.lab".into()];
    }
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Failed).await;
    assert!(
        s.fake.executed.lock().unwrap().is_empty(),
        "{:?}",
        s.fake.executed.lock().unwrap()
    );
    assert_eq!(
        s.fake.world.lock().unwrap().active,
        vec!["pc01.dc1.lab".to_string()]
    );
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    let reason = snap.run.reason.clone().unwrap_or_default();
    assert!(reason.contains("not FailedOver"), "{reason}");
}

#[tokio::test]
async fn abort_while_awaiting_approval_leaves_the_step_not_started() {
    let s = setup().await;
    let id = start(&s, &operator(), false).await;
    wait_status(&s.store, &id, RunStatus::AwaitingApproval).await;
    s.engine.abort(&operator(), &id).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Aborted).await;
    // The reason says what the abort leaves: FB-1 cleared the active servers, FB-3 froze the
    // backup mgc (issue #12: it said only "aborted by").
    let reason = s.store.get_run(&id).await.unwrap().unwrap().run.reason;
    let reason = reason.unwrap_or_default();
    assert!(reason.starts_with("aborted by "), "{reason}");
    assert!(
        reason.contains("no chat server of the pool is active"),
        "{reason}"
    );
    assert!(
        reason.contains("ALTER DATABASE [mgc] SET READ_WRITE"),
        "{reason}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let snap = s.store.get_run(&id).await.unwrap().unwrap();
        let pool = &snap.pools["pchat01.lab.local"];
        if pool.status == StepStatus::Pending {
            assert_eq!(pool.step, "fb4_restore");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pool still {:?} after the abort",
            pool.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.fake.executed("restore_database").is_empty());
}

#[tokio::test]
async fn approving_a_finished_run_checks_the_role_first() {
    let s = setup().await;
    let id = start(&s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert!(matches!(
        s.engine.approve(&operator(), &id).await,
        Err(Error::PermissionDenied(_))
    ));
    match s.engine.approve(&approver(), &id).await {
        Err(Error::InvalidInput(m)) => assert!(m.contains("has already ended (succeeded)"), "{m}"),
        other => panic!("approving a finished run: {other:?}"),
    }
}
