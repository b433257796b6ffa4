//! Engine and failback-runbook tests against an in-memory fake of the agents (a small model of
//! one failed-over pool: Lync CMS, backup and primary instances, a share with files and
//! journals per op id) and the file run store.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::{AgentId, Epoch, OpId};
use failback_proto::pb;
use pb::operation::Kind as Op;
use pb::operation_output::Kind as Out;
use serde_json::{Value, json};

use super::engine::{Caller, Engine, RunbookFactory};
use super::{AgentOps, PlannedOp, Probe, Step, StepCtx, StepError, StepRef};
use crate::config::RunbookConfig;
use crate::error::Error;
use crate::leader::LeadershipListener;
use crate::store::file::FileRunStore;
use crate::store::{RunId, RunOptions, RunStatus, RunStoreRef, RunbookKind, StepStatus};
use crate::topology::{Pool, Topology};

const TOPOLOGY: &str = r#"
[[agent]]
id = "sql01.dc1.lab"
datacenter = "dc1"
[[agent]]
id = "fe01.dc1.lab"
datacenter = "dc1"
[[agent]]
id = "sql01.dc2.lab"
datacenter = "dc2"
[[agent]]
id = "fe01.dc2.lab"
datacenter = "dc2"
[[agent]]
id = "pc01.dc1.lab"
datacenter = "dc1"

[[pool]]
fqdn = "pchat01.lab.local"
primary_dc = "dc1"
backup_dc = "dc2"
databases = ["mgc", "mgccomp"]
share = "/lab/share"
copy_dir = "/lab/copy"
[pool.lync_shell]
dc1 = ["fe01.dc1.lab"]
dc2 = ["fe01.dc2.lab"]
[pool.sql]
primary = { agent = "sql01.dc1.lab", instance = "sql01.dc1.lab,14331" }
backup = { agent = "sql01.dc2.lab", instance = "sql01.dc2.lab,14332" }
[pool.chat_servers]
dc1 = ["pc01.dc1.lab", "pc02.dc1.lab"]
dc2 = ["pc01.dc2.lab"]
"#;

fn topology() -> Arc<Topology> {
    Arc::new(Topology::parse(Path::new("t.toml"), TOPOLOGY).unwrap())
}

fn config() -> RunbookConfig {
    RunbookConfig {
        drain_grace: Duration::from_millis(50),
        drain_poll: Duration::from_millis(10),
        retry_backoff: Duration::from_millis(10),
        step_timeout: Duration::from_secs(10),
        data_step_timeout: Duration::from_secs(10),
        ..RunbookConfig::default()
    }
}

/// A failed-over pool: backup `mgc` holds 42 messages and is mirrored, the primary's is empty,
/// DC2 servers active, the pool FailedOver, one chat-server session left in the backup `mgc`.
#[derive(Debug, Clone)]
struct World {
    active: Vec<String>,
    normal: bool,
    backup_msgs: u32,
    primary_msgs: u32,
    mirrored: BTreeSet<String>,
    sessions: Vec<(String, i32)>,
    files: HashMap<String, u32>,
    latency_us: u32,
}

impl Default for World {
    fn default() -> Self {
        World {
            active: vec!["pc01.dc2.lab".into()],
            normal: false,
            backup_msgs: 42,
            primary_msgs: 0,
            mirrored: ["mgc".to_string(), "mgccomp".to_string()].into(),
            sessions: vec![("mgc".into(), 61)],
            files: HashMap::new(),
            latency_us: 800,
        }
    }
}

#[derive(Default)]
struct Fake {
    world: Mutex<World>,
    journal: Mutex<HashMap<String, pb::OperationResult>>,
    /// Executed (not replayed) actions: (agent, operation, op id).
    executed: Mutex<Vec<(String, String, String)>>,
    /// Operation name → error to answer once instead of executing.
    fail_once: Mutex<HashMap<&'static str, pb::OperationError>>,
    /// Operation names whose first result is lost after executing (coordinator sees a timeout).
    lose_result_once: Mutex<BTreeSet<&'static str>>,
    /// Operation names whose first call executes and then never answers.
    hang_once: Mutex<BTreeSet<&'static str>>,
    disconnected: Mutex<BTreeSet<String>>,
}

fn sha_of(msgs: u32) -> String {
    format!("{msgs:064x}")
}

fn done() -> Out {
    Out::Done(pb::Done {
        changed: true,
        detail: String::new(),
    })
}

impl Fake {
    fn executed(&self, name: &str) -> Vec<String> {
        self.executed
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(_, _, id)| id.clone())
            .collect()
    }

    fn error(kind: pb::ErrorKind, retryable: bool, message: &str) -> pb::OperationError {
        pb::OperationError {
            kind: kind as i32,
            retryable,
            message: message.into(),
            sql_error: 0,
        }
    }

    fn execute(&self, agent: &AgentId, op: &pb::Operation) -> Result<Out, pb::OperationError> {
        let mut w = self.world.lock().unwrap();
        let backup = agent.as_str() == "sql01.dc2.lab";
        let header = |msgs: u32| pb::BackupHeader {
            database: "mgc".into(),
            backup_type: 1,
            first_lsn: "1000".into(),
            last_lsn: format!("{}", 2000 + msgs),
            checkpoint_lsn: format!("{}", 1500 + msgs),
            has_checksums: true,
            ..Default::default()
        };
        Ok(match op.kind.clone().unwrap() {
            Op::PoolServers(_) => Out::PoolServers(pb::PoolServersInfo {
                active_servers: w.active.clone(),
                ..Default::default()
            }),
            Op::SetActiveServers(s) => {
                match s.change() {
                    pb::ActiveServersChange::Clear => w.active.clear(),
                    pb::ActiveServersChange::Replace => w.active = s.servers,
                    _ => unreachable!(),
                }
                done()
            }
            Op::PoolState(_) => Out::PoolState(pb::PoolStateInfo {
                pool_fqdn: "pchat01.lab.local".into(),
                identity: "service:PersistentChatServer:pchat01.lab.local".into(),
                state: if w.normal {
                    pb::PoolStateValue::Normal
                } else {
                    pb::PoolStateValue::FailedOver
                } as i32,
            }),
            Op::SetPoolState(s) => {
                w.normal = s.state() == pb::PoolStateValue::Normal;
                done()
            }
            Op::DescribeInstance(_) => Out::Instance(pb::InstanceInfo::default()),
            Op::ListSessions(l) => Out::Sessions(pb::Sessions {
                sessions: w
                    .sessions
                    .iter()
                    .filter(|(db, _)| backup && *db == l.database)
                    .map(|(_, spid)| pb::SessionInfo {
                        spid: *spid,
                        program_name: "Persistent Chat".into(),
                        ..Default::default()
                    })
                    .collect(),
            }),
            Op::KillSessions(k) => {
                let killed: Vec<_> = w
                    .sessions
                    .iter()
                    .filter(|(db, _)| *db == k.database)
                    .map(|(_, spid)| pb::SessionInfo {
                        spid: *spid,
                        ..Default::default()
                    })
                    .collect();
                w.sessions.retain(|(db, _)| *db != k.database);
                Out::Killed(pb::Killed { sessions: killed })
            }
            Op::MirroringState(m) => Out::MirroringStates(pb::MirroringStates {
                databases: m
                    .databases
                    .iter()
                    .map(|d| pb::MirroringInfo {
                        database: d.clone(),
                        mirrored: backup && w.mirrored.contains(d),
                        ..Default::default()
                    })
                    .collect(),
            }),
            Op::RemoveMirroring(r) => {
                w.mirrored.remove(&r.database);
                done()
            }
            Op::BackupDatabase(b) => {
                if w.files.contains_key(&b.file) {
                    return Err(Self::error(pb::ErrorKind::Backend, false, "file exists"));
                }
                let msgs = if backup {
                    w.backup_msgs
                } else {
                    w.primary_msgs
                };
                w.files.insert(b.file.clone(), msgs);
                Out::Backup(pb::BackupResult {
                    file: b.file,
                    header: Some(header(msgs)),
                    sha256: sha_of(msgs),
                    size: 1024,
                })
            }
            Op::VerifyBackup(v) => {
                let msgs = *w
                    .files
                    .get(&v.file)
                    .ok_or_else(|| Self::error(pb::ErrorKind::Backend, false, "no such file"))?;
                Out::Verify(pb::VerifyResult {
                    file: v.file,
                    headers: vec![header(msgs)],
                    files: Vec::new(),
                })
            }
            Op::RestoreDatabase(r) => {
                let msgs = *w
                    .files
                    .get(&r.file)
                    .ok_or_else(|| Self::error(pb::ErrorKind::Backend, false, "no such file"))?;
                if r.expected_sha256 != sha_of(msgs) {
                    return Err(Self::error(
                        pb::ErrorKind::Backend,
                        false,
                        "SHA-256 mismatch",
                    ));
                }
                w.primary_msgs = msgs;
                Out::Restore(pb::RestoreResult {
                    database: "mgc".into(),
                    state: "ONLINE".into(),
                    header: Some(header(msgs)),
                    changed: true,
                    ..Default::default()
                })
            }
            Op::DatabaseState(d) => Out::DatabaseStates(pb::DatabaseStates {
                databases: d
                    .databases
                    .iter()
                    .map(|n| pb::DatabaseInfo {
                        name: n.clone(),
                        exists: true,
                        state: "ONLINE".into(),
                        ..Default::default()
                    })
                    .collect(),
            }),
            Op::TcpLatency(t) => Out::Latency(pb::Latency {
                endpoint: t.endpoint,
                samples_us: vec![w.latency_us],
                median_us: w.latency_us,
            }),
            Op::SetReadOnly(r) => Out::Done(pb::Done {
                changed: true,
                detail: format!("{} set READ_ONLY={}", r.database, r.read_only),
            }),
            other => panic!("unexpected operation {other:?}"),
        })
    }
}

fn is_read(op: &pb::Operation) -> bool {
    matches!(
        op.kind,
        Some(
            Op::PoolServers(_)
                | Op::PoolState(_)
                | Op::ListSessions(_)
                | Op::MirroringState(_)
                | Op::VerifyBackup(_)
                | Op::DatabaseState(_)
                | Op::TcpLatency(_)
                | Op::DescribeInstance(_)
        )
    )
}

#[async_trait]
impl AgentOps for Fake {
    async fn instruct(
        &self,
        agent: &AgentId,
        op_id: &OpId,
        _epoch: Epoch,
        operation: pb::Operation,
        _timeout: Duration,
    ) -> Result<pb::OperationResult, Error> {
        if self.disconnected.lock().unwrap().contains(agent.as_str()) {
            return Err(Error::AgentUnavailable(format!("{agent} not connected")));
        }
        if let Some(r) = self.journal.lock().unwrap().get(op_id.as_str()) {
            let mut r = r.clone();
            r.replayed = true;
            return Ok(r);
        }
        let name = super::operation_name(&operation);
        if let Some(e) = self.fail_once.lock().unwrap().remove(name) {
            return Ok(pb::OperationResult {
                op_id: op_id.to_string(),
                outcome: Some(pb::operation_result::Outcome::Error(e)),
                replayed: false,
            });
        }
        let outcome = match self.execute(agent, &operation) {
            Ok(o) => pb::operation_result::Outcome::Output(pb::OperationOutput { kind: Some(o) }),
            Err(e) => pb::operation_result::Outcome::Error(e),
        };
        let result = pb::OperationResult {
            op_id: op_id.to_string(),
            outcome: Some(outcome),
            replayed: false,
        };
        if !is_read(&operation) {
            self.executed.lock().unwrap().push((
                agent.to_string(),
                name.to_string(),
                op_id.to_string(),
            ));
        }
        self.journal
            .lock()
            .unwrap()
            .insert(op_id.to_string(), result.clone());
        if self.lose_result_once.lock().unwrap().remove(name) {
            return Err(Error::Timeout("result lost".into()));
        }
        if self.hang_once.lock().unwrap().remove(name) {
            std::future::pending::<()>().await;
        }
        Ok(result)
    }

    fn is_connected(&self, agent: &AgentId) -> bool {
        !self.disconnected.lock().unwrap().contains(agent.as_str())
    }

    fn is_known(&self, agent: &AgentId) -> bool {
        topology().agents.contains_key(agent)
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    store: RunStoreRef,
    fake: Arc<Fake>,
    engine: Engine,
}

/// The failback runbook with FB-5 not wired: the fake agents here do not simulate log shipping
/// (FB-5's wired path runs against the real agent and sqlsim in tests/tests/failback_e2e.rs).
fn failback_without_log_shipping() -> RunbookFactory {
    Arc::new(|kind, config| match kind {
        RunbookKind::Failback => Ok(super::failback::steps(config, None)),
        other => super::failback::runbook(other, config),
    })
}

async fn setup_with(factory: Option<RunbookFactory>, topo: Arc<Topology>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: RunStoreRef = Arc::new(FileRunStore::open(dir.path(), Epoch(1)).unwrap());
    let fake = Arc::new(Fake::default());
    let engine = match factory {
        None => Engine::with_factory(
            "c1",
            topo,
            fake.clone(),
            config(),
            failback_without_log_shipping(),
        ),
        Some(f) => Engine::with_factory("c1", topo, fake.clone(), config(), f),
    };
    engine.on_leader_start(Epoch(1)).await.unwrap();
    engine.set_store(store.clone());
    Setup {
        _dir: dir,
        store,
        fake,
        engine,
    }
}

async fn setup() -> Setup {
    setup_with(None, topology()).await
}

fn approver() -> Caller {
    Caller {
        name: "alice".into(),
        approver: true,
    }
}

fn operator() -> Caller {
    Caller {
        name: "bob".into(),
        approver: false,
    }
}

async fn wait_status(store: &RunStoreRef, id: &RunId, want: RunStatus) {
    for _ in 0..500 {
        if let Some(s) = store.get_run(id).await.unwrap()
            && s.run.status == want
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = store.get_run(id).await.unwrap().unwrap();
    let audit = store.audit(id).await.unwrap();
    panic!(
        "run {id} never reached {want:?}: {:?} {:?}\n{:#?}\n{:#?}",
        s.run.status,
        s.run.reason,
        s.pools,
        audit
            .iter()
            .map(|a| (&a.event, &a.details))
            .collect::<Vec<_>>()
    );
}

async fn start(s: &Setup, caller: &Caller, yes: bool) -> RunId {
    s.engine
        .start_run(
            caller,
            RunbookKind::Failback,
            vec!["pchat01.lab.local".into()],
            RunOptions {
                approved_at_start: yes,
                ..RunOptions::default()
            },
        )
        .await
        .unwrap()
}

fn assert_failed_back(s: &Setup) {
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.primary_msgs, 42, "every message restored");
    assert!(w.normal);
    assert_eq!(w.active, ["pc01.dc1.lab", "pc02.dc1.lab"]);
    assert!(w.mirrored.is_empty());
    assert!(w.sessions.is_empty());
    for op in [
        "restore_database",
        "backup_database",
        "set_pool_state",
        "kill_sessions",
    ] {
        assert_eq!(s.fake.executed(op).len(), 1, "{op} executed once");
    }
    assert_eq!(s.fake.executed("remove_mirroring").len(), 2);
}

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
    let order: Vec<String> = s
        .fake
        .executed
        .lock()
        .unwrap()
        .iter()
        .map(|(_, n, _)| n.clone())
        .collect();
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
    assert_eq!(plan.steps.len(), 7);
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
    ran: Arc<Mutex<Vec<String>>>,
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

fn all(max_parallel: u32, continue_on_failure: bool) -> RunOptions {
    RunOptions {
        max_parallel,
        approved_at_start: false,
        continue_on_failure,
    }
}

#[tokio::test]
async fn waves_canary_first_and_a_canary_failure_stops_the_rest() {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let s = setup_with(Some(factory(ran.clone(), None, None)), three_pools()).await;
    let id = s
        .engine
        .start_run(
            &operator(),
            RunbookKind::Failback,
            Vec::new(),
            all(2, false),
        )
        .await
        .unwrap();
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let order = ran.lock().unwrap().clone();
    assert_eq!(
        &order[..2],
        ["s1:p1.lab", "s2:p1.lab"],
        "canary alone first"
    );
    assert_eq!(order.len(), 6);

    let ran = Arc::new(Mutex::new(Vec::new()));
    let s = setup_with(
        Some(factory(ran.clone(), Some("p1.lab"), None)),
        three_pools(),
    )
    .await;
    let id = s
        .engine
        .start_run(
            &operator(),
            RunbookKind::Failback,
            Vec::new(),
            all(2, false),
        )
        .await
        .unwrap();
    wait_status(&s.store, &id, RunStatus::Failed).await;
    assert_eq!(ran.lock().unwrap().clone(), ["s1:p1.lab"]);
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(snap.pools.len(), 1, "later waves never started");

    let ran = Arc::new(Mutex::new(Vec::new()));
    let s = setup_with(
        Some(factory(ran.clone(), Some("p1.lab"), None)),
        three_pools(),
    )
    .await;
    let id = s
        .engine
        .start_run(&operator(), RunbookKind::Failback, Vec::new(), all(2, true))
        .await
        .unwrap();
    wait_status(&s.store, &id, RunStatus::Failed).await;
    assert_eq!(
        ran.lock().unwrap().len(),
        5,
        "continue_on_failure runs the others"
    );
}

#[tokio::test]
async fn pause_resume_abort() {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let s = setup_with(
        Some(factory(ran.clone(), None, Some(gate.clone()))),
        three_pools(),
    )
    .await;
    let id = s
        .engine
        .start_run(
            &operator(),
            RunbookKind::Failback,
            vec!["p1.lab".into()],
            all(1, false),
        )
        .await
        .unwrap();
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
    let id = s
        .engine
        .start_run(
            &operator(),
            RunbookKind::Failback,
            vec!["p2.lab".into()],
            all(1, false),
        )
        .await
        .unwrap();
    wait_status(&s.store, &id, RunStatus::Running).await;
    // A second run on the same pool is refused while this one is unfinished.
    assert!(
        s.engine
            .start_run(
                &operator(),
                RunbookKind::Failback,
                vec!["p2.lab".into()],
                all(1, false)
            )
            .await
            .is_err()
    );
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
