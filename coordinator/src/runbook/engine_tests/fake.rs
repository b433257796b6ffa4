//! The world the engine tests drive: a small model of one failed-over pool (Lync CMS, backup
//! and primary instances, a share with files) behind the journaling fake agents of
//! [`crate::runbook::test_fleet`], and the setup and assertion helpers the tests share.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use failback_proto::model::AgentId;
use failback_proto::pb;
use pb::operation::Kind as Op;
use pb::operation_output::Kind as Out;

use crate::config::RunbookConfig;
use crate::runbook::engine::{Caller, Engine, RunbookFactory};
use crate::runbook::test_fleet::{
    self, FleetWorld, JournalingAgents, done, fast_config, lab_pool_state, lab_topology,
};
pub(super) use crate::runbook::test_fleet::{approver, operator, wait_status};
use crate::store::{RunId, RunbookKind};
use crate::topology::Topology;

/// The lab pool with two DC1 chat servers, one of them (`pc01.dc1.lab`) running an agent.
pub(super) fn topology() -> Arc<Topology> {
    lab_topology(
        "[[agent]]\nid = \"pc01.dc1.lab\"\ndatacenter = \"dc1\"\n",
        &["pc01.dc1.lab", "pc02.dc1.lab"],
    )
}

pub(super) fn config() -> RunbookConfig {
    RunbookConfig {
        drain_grace: Duration::from_millis(50),
        drain_poll: Duration::from_millis(10),
        ..fast_config()
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

/// The fake agents; fault switches are keyed by operation name.
pub(super) type Fake = JournalingAgents<World>;

pub(super) type Setup = test_fleet::Setup<World>;

pub(super) fn sha_of(msgs: u32) -> String {
    format!("{msgs:064x}")
}

impl FleetWorld for World {
    type Fault = &'static str;

    fn execute(&mut self, agent: &AgentId, op: &pb::Operation) -> Result<Out, pb::OperationError> {
        let w = self;
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
            Op::PoolState(_) => lab_pool_state(if w.normal {
                pb::PoolStateValue::Normal
            } else {
                pb::PoolStateValue::FailedOver
            }),
            Op::SetPoolState(s) => {
                w.normal = s.state() == pb::PoolStateValue::Normal;
                done()
            }
            // A sane instance: @@SERVERNAME matches SERVERPROPERTY('ServerName').
            Op::DescribeInstance(_) => Out::Instance(pb::InstanceInfo {
                server_name: agent.to_string(),
                at_servername: agent.to_string(),
                product_version: "13.0.6300.2".into(),
                ..Default::default()
            }),
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
                        role: if backup && w.mirrored.contains(d) {
                            "PRINCIPAL".into()
                        } else {
                            String::new()
                        },
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
                    return Err(Fake::error(pb::ErrorKind::Backend, false, "file exists"));
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
                    .ok_or_else(|| Fake::error(pb::ErrorKind::Backend, false, "no such file"))?;
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
                    .ok_or_else(|| Fake::error(pb::ErrorKind::Backend, false, "no such file"))?;
                if r.expected_sha256 != sha_of(msgs) {
                    return Err(Fake::error(
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
            Op::CheckEngineShareWrite(c) => Out::EngineShareWrite(pb::EngineShareWrite {
                directory: c.directory,
                account: "NT Service\\MSSQLSERVER".into(),
                can_write: true,
                ..Default::default()
            }),
            Op::FileChecksum(c) => {
                let msgs = *w
                    .files
                    .get(&c.path)
                    .ok_or_else(|| Fake::error(pb::ErrorKind::Backend, false, "no such file"))?;
                Out::Checksum(pb::Checksum {
                    path: c.path,
                    sha256: sha_of(msgs),
                    size: 1024,
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
            Op::FileStat(f) => Out::FileInfo(pb::FileInfo {
                exists: w.files.contains_key(&f.path),
                size: 1024,
                path: f.path,
                ..Default::default()
            }),
            Op::FileDelete(f) => {
                let deleted = w.files.remove(&f.path).is_some();
                Out::Done(pb::Done {
                    changed: deleted,
                    detail: if deleted { "deleted" } else { "already absent" }.into(),
                })
            }
            Op::SetReadOnly(r) => Out::Done(pb::Done {
                changed: true,
                detail: format!("{} set READ_ONLY={}", r.database, r.read_only),
            }),
            other => panic!("unexpected operation {other:?}"),
        })
    }

    fn fault(op: &pb::Operation) -> Option<&'static str> {
        Some(crate::runbook::operation_name(op))
    }
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
    setup_configured(factory, topo, config()).await
}

/// [`setup_with`] with a runbook configuration of the test's.
pub(super) async fn setup_configured(
    factory: Option<RunbookFactory>,
    topo: Arc<Topology>,
    config: RunbookConfig,
) -> Setup {
    let factory = factory.unwrap_or_else(failback_without_log_shipping);
    let fake = Fake::new(World::default(), &topology());
    Setup::lead(fake, |agents| {
        Engine::with_factory("c1", topo, agents, config, factory)
    })
    .await
}

pub(super) async fn setup() -> Setup {
    setup_with(None, topology()).await
}

pub(super) async fn start(s: &Setup, caller: &Caller, yes: bool) -> RunId {
    s.start_run(caller, RunbookKind::Failback, yes, None)
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
