//! The in-memory fake of the agents the engine tests drive: a small model of one failed-over
//! pool (Lync CMS, backup and primary instances, a share with files, a journal per op id), the
//! file run store, and the setup and assertion helpers the tests share.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::{AgentId, Epoch, OpId};
use failback_proto::pb;
use pb::operation::Kind as Op;
use pb::operation_output::Kind as Out;

use crate::config::RunbookConfig;
use crate::error::Error;
use crate::leader::LeadershipListener;
use crate::runbook::AgentOps;
use crate::runbook::engine::{Caller, Engine, RunbookFactory};
use crate::store::file::FileRunStore;
use crate::store::{RunId, RunOptions, RunStatus, RunStoreRef, RunbookKind};
use crate::topology::Topology;

pub(super) const TOPOLOGY: &str = r#"
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

pub(super) fn topology() -> Arc<Topology> {
    Arc::new(Topology::parse(Path::new("t.toml"), TOPOLOGY).unwrap())
}

pub(super) fn config() -> RunbookConfig {
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
pub(super) struct World {
    pub(super) active: Vec<String>,
    pub(super) normal: bool,
    pub(super) backup_msgs: u32,
    pub(super) primary_msgs: u32,
    pub(super) mirrored: BTreeSet<String>,
    pub(super) sessions: Vec<(String, i32)>,
    pub(super) files: HashMap<String, u32>,
    pub(super) latency_us: u32,
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
pub(super) struct Fake {
    pub(super) world: Mutex<World>,
    pub(super) journal: Mutex<HashMap<String, pb::OperationResult>>,
    /// Executed (not replayed) actions: (agent, operation, op id).
    pub(super) executed: Mutex<Vec<(String, String, String)>>,
    /// Operation name → error to answer once instead of executing.
    pub(super) fail_once: Mutex<HashMap<&'static str, pb::OperationError>>,
    /// Operation names whose first result is lost after executing (coordinator sees a timeout).
    pub(super) lose_result_once: Mutex<BTreeSet<&'static str>>,
    /// Operation names whose first call executes and then never answers.
    pub(super) hang_once: Mutex<BTreeSet<&'static str>>,
    pub(super) disconnected: Mutex<BTreeSet<String>>,
}

pub(super) fn sha_of(msgs: u32) -> String {
    format!("{msgs:064x}")
}

pub(super) fn done() -> Out {
    Out::Done(pb::Done {
        changed: true,
        detail: String::new(),
    })
}

impl Fake {
    pub(super) fn executed(&self, name: &str) -> Vec<String> {
        self.executed
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(_, _, id)| id.clone())
            .collect()
    }

    pub(super) fn error(kind: pb::ErrorKind, retryable: bool, message: &str) -> pb::OperationError {
        pb::OperationError {
            kind: kind as i32,
            retryable,
            message: message.into(),
            sql_error: 0,
        }
    }

    pub(super) fn execute(
        &self,
        agent: &AgentId,
        op: &pb::Operation,
    ) -> Result<Out, pb::OperationError> {
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

pub(super) fn is_read(op: &pb::Operation) -> bool {
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
        let name = crate::runbook::operation_name(&operation);
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

pub(super) struct Setup {
    pub(super) _dir: tempfile::TempDir,
    pub(super) store: RunStoreRef,
    pub(super) fake: Arc<Fake>,
    pub(super) engine: Engine,
}

/// The failback runbook with FB-5 not wired: the fake agents here do not simulate log shipping
/// (FB-5's wired path runs against the real agent and sqlsim in tests/tests/failback_e2e.rs).
pub(super) fn failback_without_log_shipping() -> RunbookFactory {
    Arc::new(|kind, config| match kind {
        RunbookKind::Failback => Ok(crate::runbook::failback::steps(config, None)),
        other => crate::runbook::failback::runbook(other, config),
    })
}

pub(super) async fn setup_with(factory: Option<RunbookFactory>, topo: Arc<Topology>) -> Setup {
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

pub(super) async fn setup() -> Setup {
    setup_with(None, topology()).await
}

pub(super) fn approver() -> Caller {
    Caller {
        name: "alice".into(),
        approver: true,
    }
}

pub(super) fn operator() -> Caller {
    Caller {
        name: "bob".into(),
        approver: false,
    }
}

pub(super) async fn wait_status(store: &RunStoreRef, id: &RunId, want: RunStatus) {
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

pub(super) async fn start(s: &Setup, caller: &Caller, yes: bool) -> RunId {
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

pub(super) fn assert_failed_back(s: &Setup) {
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
