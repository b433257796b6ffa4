//! The agent plumbing both runbook test fleets share (`engine_tests/fake.rs` models a failed-over
//! pool for failback, `failover_tests/fake.rs` a pool whose primary data center is lost):
//! [`JournalingAgents`] answers [`AgentOps`] like the real agent does — a journal per op id that
//! answers a repeated id with the recorded result marked `replayed`, disconnected agents, and
//! fault switches (fail once, lose the result once, hang once) — around a [`FleetWorld`] that
//! only says how one operation changes its model. The setup helpers (the lab topology, a file
//! run store, an engine leading it, polling a run's status) live here too.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::{AgentId, Epoch, OpId};
use failback_proto::pb;
use pb::operation_output::Kind as Out;

use crate::config::RunbookConfig;
use crate::error::Error;
use crate::leader::LeadershipListener;
use crate::runbook::engine::{Caller, Engine};
use crate::runbook::{AgentOps, AgentOpsRef, StartDecisions, operation_name};
use crate::store::file::FileRunStore;
use crate::store::{RunId, RunOptions, RunSnapshot, RunStatus, RunStoreRef, RunbookKind};
use crate::topology::Topology;

/// One test world: the state the fake agents change and read.
pub(crate) trait FleetWorld: Send + 'static {
    /// What the fault switches of [`JournalingAgents`] are keyed by.
    type Fault: Ord + Send + Sync + 'static;

    /// Runs `op` on `agent` against the model.
    fn execute(&mut self, agent: &AgentId, op: &pb::Operation) -> Result<Out, pb::OperationError>;

    /// The fault switch `op` answers to, if any.
    fn fault(op: &pb::Operation) -> Option<Self::Fault>;
}

/// The fake agents of a test world `W`.
pub(crate) struct JournalingAgents<W: FleetWorld> {
    pub(crate) world: Mutex<W>,
    /// Every answered operation by op id (reads too: they always carry fresh ids).
    pub(crate) journal: Mutex<BTreeMap<String, pb::OperationResult>>,
    /// Executed (not replayed) actions: (agent, operation, op id).
    pub(crate) executed: Mutex<Vec<(String, String, String)>>,
    /// Fault → error to answer once instead of executing.
    pub(crate) fail_once: Mutex<BTreeMap<W::Fault, pb::OperationError>>,
    /// Faults whose first result is lost after executing (the coordinator sees a timeout).
    pub(crate) lose_result_once: Mutex<BTreeSet<W::Fault>>,
    /// Faults whose first call executes and then never answers (the leader goes away).
    pub(crate) hang_once: Mutex<BTreeSet<W::Fault>>,
    pub(crate) disconnected: Mutex<BTreeSet<String>>,
    known: BTreeSet<AgentId>,
}

impl<W: FleetWorld> JournalingAgents<W> {
    /// All agents of `topology` connected, no fault armed.
    pub(crate) fn new(world: W, topology: &Topology) -> Self {
        JournalingAgents {
            world: Mutex::new(world),
            journal: Mutex::default(),
            executed: Mutex::default(),
            fail_once: Mutex::default(),
            lose_result_once: Mutex::default(),
            hang_once: Mutex::default(),
            disconnected: Mutex::default(),
            known: topology.agents.keys().cloned().collect(),
        }
    }

    /// The op ids of the executed `name` actions, in order.
    pub(crate) fn executed(&self, name: &str) -> Vec<String> {
        self.executed
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(_, _, id)| id.clone())
            .collect()
    }

    /// The names of the executed actions, in order.
    pub(crate) fn executed_names(&self) -> Vec<String> {
        self.executed
            .lock()
            .unwrap()
            .iter()
            .map(|(_, n, _)| n.clone())
            .collect()
    }

    pub(crate) fn error(kind: pb::ErrorKind, retryable: bool, message: &str) -> pb::OperationError {
        pb::OperationError {
            kind: kind as i32,
            retryable,
            message: message.into(),
            sql_error: 0,
        }
    }
}

/// The operations the runbooks only read with; they are left out of the executed-actions log.
/// One list serves every world: a world panics on an operation it does not model before this
/// is asked.
fn is_read(op: &pb::Operation) -> bool {
    use pb::operation::Kind as Op;
    matches!(
        op.kind,
        Some(
            Op::PoolServers(_)
                | Op::PoolState(_)
                | Op::ListSessions(_)
                | Op::MirroringState(_)
                | Op::VerifyBackup(_)
                | Op::ReadBackupHeader(_)
                | Op::DatabaseState(_)
                | Op::TcpLatency(_)
                | Op::DescribeInstance(_)
                | Op::LogShippingStatus(_)
                | Op::FileList(_)
                | Op::FileStat(_)
        )
    )
}

fn result(op_id: &OpId, outcome: pb::operation_result::Outcome) -> pb::OperationResult {
    pb::OperationResult {
        op_id: op_id.to_string(),
        outcome: Some(outcome),
        replayed: false,
    }
}

#[async_trait]
impl<W: FleetWorld> AgentOps for JournalingAgents<W> {
    async fn instruct(
        &self,
        agent: &AgentId,
        op_id: &OpId,
        _epoch: Epoch,
        operation: pb::Operation,
        _timeout: Duration,
    ) -> Result<pb::OperationResult, Error> {
        use pb::operation_result::Outcome;
        if self.disconnected.lock().unwrap().contains(agent.as_str()) {
            return Err(Error::AgentUnavailable(format!("{agent} not connected")));
        }
        if let Some(r) = self.journal.lock().unwrap().get(op_id.as_str()) {
            let mut r = r.clone();
            r.replayed = true;
            return Ok(r);
        }
        let fault = W::fault(&operation);
        if let Some(f) = &fault
            && let Some(e) = self.fail_once.lock().unwrap().remove(f)
        {
            return Ok(result(op_id, Outcome::Error(e)));
        }
        let outcome = match self.world.lock().unwrap().execute(agent, &operation) {
            Ok(o) => Outcome::Output(pb::OperationOutput { kind: Some(o) }),
            Err(e) => Outcome::Error(e),
        };
        let result = result(op_id, outcome);
        if !is_read(&operation) {
            self.executed.lock().unwrap().push((
                agent.to_string(),
                operation_name(&operation).to_string(),
                op_id.to_string(),
            ));
        }
        self.journal
            .lock()
            .unwrap()
            .insert(op_id.to_string(), result.clone());
        if let Some(f) = &fault {
            if self.lose_result_once.lock().unwrap().remove(f) {
                return Err(Error::Timeout("result lost".into()));
            }
            if self.hang_once.lock().unwrap().remove(f) {
                std::future::pending::<()>().await;
            }
        }
        Ok(result)
    }

    fn is_connected(&self, agent: &AgentId) -> bool {
        !self.disconnected.lock().unwrap().contains(agent.as_str())
    }

    fn is_known(&self, agent: &AgentId) -> bool {
        self.known.contains(agent)
    }
}

/// The lab pool both worlds model: `pchat01.lab.local`, DC1 primary and DC2 backup, one SQL and
/// one Lync front-end agent per data center, DC2's chat server `pc01.dc2.lab`. `extra_agents`
/// (TOML `[[agent]]` tables) and DC1's chat servers differ between the worlds.
pub(crate) fn lab_topology(extra_agents: &str, dc1_chat_servers: &[&str]) -> Arc<Topology> {
    let mut t = String::new();
    for (id, dc) in [
        ("sql01.dc1.lab", "dc1"),
        ("fe01.dc1.lab", "dc1"),
        ("sql01.dc2.lab", "dc2"),
        ("fe01.dc2.lab", "dc2"),
    ] {
        t.push_str(&format!(
            "[[agent]]\nid = \"{id}\"\ndatacenter = \"{dc}\"\n"
        ));
    }
    t.push_str(extra_agents);
    t.push_str(&format!(
        r#"
[[pool]]
fqdn = "pchat01.lab.local"
primary_dc = "dc1"
backup_dc = "dc2"
databases = ["mgc", "mgccomp"]
share = "/lab/share"
copy_dir = "/lab/copy"
lync_shell = {{ dc1 = ["fe01.dc1.lab"], dc2 = ["fe01.dc2.lab"] }}
chat_servers = {{ dc1 = {dc1_chat_servers:?}, dc2 = ["pc01.dc2.lab"] }}
[pool.sql]
primary = {{ agent = "sql01.dc1.lab", instance = "sql01.dc1.lab,14331" }}
backup = {{ agent = "sql01.dc2.lab", instance = "sql01.dc2.lab,14332" }}
"#
    ));
    Arc::new(Topology::parse(Path::new("t.toml"), &t).unwrap())
}

/// An action's plain success.
pub(crate) fn done() -> Out {
    Out::Done(pb::Done {
        changed: true,
        detail: String::new(),
    })
}

/// The Lync CMS's answer for the lab pool in `state`.
pub(crate) fn lab_pool_state(state: pb::PoolStateValue) -> Out {
    Out::PoolState(pb::PoolStateInfo {
        pool_fqdn: "pchat01.lab.local".into(),
        identity: "service:PersistentChatServer:pchat01.lab.local".into(),
        state: state as i32,
    })
}

/// Short waits so the runbooks run in milliseconds.
pub(crate) fn fast_config() -> RunbookConfig {
    RunbookConfig {
        retry_backoff: Duration::from_millis(10),
        step_timeout: Duration::from_secs(10),
        data_step_timeout: Duration::from_secs(10),
        ..RunbookConfig::default()
    }
}

pub(crate) fn approver() -> Caller {
    Caller {
        name: "alice".into(),
        approver: true,
    }
}

pub(crate) fn operator() -> Caller {
    Caller {
        name: "bob".into(),
        approver: false,
    }
}

/// An engine leading (term 1) a file run store in a temporary folder, over fake agents.
pub(crate) struct Setup<W: FleetWorld> {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) store: RunStoreRef,
    pub(crate) fake: Arc<JournalingAgents<W>>,
    pub(crate) engine: Engine,
}

impl<W: FleetWorld> Setup<W> {
    /// `engine` builds the engine over the agents it is given.
    pub(crate) async fn lead(
        fake: JournalingAgents<W>,
        engine: impl FnOnce(AgentOpsRef) -> Engine,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: RunStoreRef = Arc::new(FileRunStore::open(dir.path(), Epoch(1)).unwrap());
        let fake = Arc::new(fake);
        let engine = engine(fake.clone());
        engine.on_leader_start(Epoch(1)).await.unwrap();
        engine.set_store(store.clone());
        Setup {
            _dir: dir,
            store,
            fake,
            engine,
        }
    }

    /// Starts a `kind` run on the lab pool, approved up front when `yes`.
    pub(crate) async fn start_run(
        &self,
        caller: &Caller,
        kind: RunbookKind,
        yes: bool,
        attestation: Option<&str>,
    ) -> Result<RunId, Error> {
        self.start_run_with(caller, kind, yes, StartDecisions::attested(attestation))
            .await
    }

    /// [`Setup::start_run`] with every start decision (an accepted gap too).
    pub(crate) async fn start_run_with(
        &self,
        caller: &Caller,
        kind: RunbookKind,
        yes: bool,
        decisions: StartDecisions,
    ) -> Result<RunId, Error> {
        self.engine
            .start_run_attested(
                caller,
                kind,
                vec!["pchat01.lab.local".into()],
                RunOptions {
                    approved_at_start: yes,
                    ..RunOptions::default()
                },
                decisions,
            )
            .await
    }
}

/// Polls until run `id` has status `want` (five seconds at most); panics with its pools and
/// audit trail otherwise.
pub(crate) async fn wait_status(store: &RunStoreRef, id: &RunId, want: RunStatus) -> RunSnapshot {
    for _ in 0..500 {
        if let Some(s) = store.get_run(id).await.unwrap()
            && s.run.status == want
        {
            return s;
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
