//! Failover-runbook tests against an in-memory fake of the agents (a small model of one pool
//! whose primary data center is lost: the backup instance's `mgc` RESTORING at a restore point,
//! log shipping metadata in its msdb, log backups on the share and in the copy folder, the Lync
//! CMS) and the file run store. The LSN rule of the fake's RESTORE LOG is SQL Server's (4305 /
//! 4326), so the runbook's own chain checks and SQL Server's can be told apart.

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

use super::AgentOps;
use super::engine::{Caller, Engine};
use crate::config::RunbookConfig;
use crate::error::Error;
use crate::leader::LeadershipListener;
use crate::store::file::FileRunStore;
use crate::store::{RunId, RunOptions, RunStatus, RunStoreRef, RunbookKind, StepStatus};
use crate::topology::Topology;

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
dc1 = ["pc01.dc1.lab"]
dc2 = ["pc01.dc2.lab"]
"#;

const POOL: &str = "pchat01.lab.local";
const BACKUP: &str = "sql01.dc2.lab";
const PRIMARY: &str = "sql01.dc1.lab";

fn topology() -> Arc<Topology> {
    Arc::new(Topology::parse(Path::new("t.toml"), TOPOLOGY).unwrap())
}

fn config() -> RunbookConfig {
    RunbookConfig {
        retry_backoff: Duration::from_millis(10),
        step_timeout: Duration::from_secs(10),
        data_step_timeout: Duration::from_secs(10),
        ..RunbookConfig::default()
    }
}

/// Log backup `i` covers LSN `i*100 .. (i+1)*100` and finished at minute `i`.
fn name(i: u32) -> String {
    format!("mgc_202611260900{i:02}.trn")
}

fn lsns(i: u32) -> (u128, u128) {
    (u128::from(i) * 100, u128::from(i + 1) * 100)
}

fn finish_ms(i: u32) -> u64 {
    1_790_000_000_000 + u64::from(i) * 60_000
}

fn sha(i: u32) -> String {
    format!("{i:064x}")
}

fn index_of(path: &str) -> Option<u32> {
    let n = path.rsplit('/').next()?;
    n.strip_prefix("mgc_2026112609")?
        .strip_suffix(".trn")?
        .get(2..)?
        .parse()
        .ok()
}

#[derive(Debug, Clone)]
struct World {
    /// The primary's mgc is ONLINE (only visible while its agent is connected).
    primary_online: bool,
    /// The backup mgc: RESTORING until recovered.
    backup_online: bool,
    /// LSN the backup mgc is restored to.
    point: u128,
    applied: Vec<u32>,
    ls_configured: bool,
    last_copied: Option<u32>,
    last_restored: Option<u32>,
    /// None: the share is unreachable.
    share: Option<BTreeSet<u32>>,
    copy: BTreeSet<u32>,
    failed_over: bool,
    active: Vec<String>,
    sessions: u32,
}

impl Default for World {
    /// Restored through log 2, log 3 copied and not yet restored, logs 4 and 5 only on the
    /// share; DC1's server still listed active; one session (the old restore job's) in mgc.
    fn default() -> Self {
        World {
            primary_online: false,
            backup_online: false,
            point: lsns(2).1,
            applied: Vec::new(),
            ls_configured: true,
            last_copied: Some(3),
            last_restored: Some(2),
            share: Some((1..=5).collect()),
            copy: (1..=3).collect(),
            failed_over: false,
            active: vec!["pc01.dc1.lab".into()],
            sessions: 1,
        }
    }
}

#[derive(Default)]
struct Fake {
    world: Mutex<World>,
    journal: Mutex<HashMap<String, pb::OperationResult>>,
    /// Executed actions: (operation, op id).
    executed: Mutex<Vec<(String, String)>>,
    disconnected: Mutex<BTreeSet<String>>,
    /// Log backups whose first restore answers a retryable error without running.
    fail_restore_once: Mutex<BTreeSet<u32>>,
    /// Log backups whose first restore runs and then never answers (the leader goes away).
    hang_restore_once: Mutex<BTreeSet<u32>>,
}

fn restore_index(op: &pb::Operation) -> Option<u32> {
    match &op.kind {
        Some(Op::RestoreLog(r)) => index_of(&r.file),
        _ => None,
    }
}

fn err(retryable: bool, sql_error: u32, message: &str) -> pb::OperationError {
    pb::OperationError {
        kind: pb::ErrorKind::Backend as i32,
        retryable,
        message: message.into(),
        sql_error,
    }
}

fn done() -> Out {
    Out::Done(pb::Done {
        changed: true,
        detail: String::new(),
    })
}

impl Fake {
    fn executed(&self, op: &str) -> Vec<String> {
        self.executed
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == op)
            .map(|(_, id)| id.clone())
            .collect()
    }

    fn execute(&self, agent: &AgentId, op: &pb::Operation) -> Result<Out, pb::OperationError> {
        let mut w = self.world.lock().unwrap();
        let backup = agent.as_str() == BACKUP;
        Ok(match op.kind.clone().unwrap() {
            Op::DatabaseState(d) => Out::DatabaseStates(pb::DatabaseStates {
                databases: d
                    .databases
                    .iter()
                    .map(|n| pb::DatabaseInfo {
                        name: n.clone(),
                        exists: true,
                        state: if (backup && w.backup_online) || (!backup && w.primary_online) {
                            "ONLINE"
                        } else {
                            "RESTORING"
                        }
                        .into(),
                        ..Default::default()
                    })
                    .collect(),
            }),
            Op::LogShippingStatus(_) => Out::LogShipping(pb::LogShippingStatusInfo {
                monitor: Vec::new(),
                primary: None,
                secondary: w.ls_configured.then(|| pb::LogShippingSecondaryConfig {
                    database: "mgc".into(),
                    primary_server: PRIMARY.into(),
                    primary_database: "mgc".into(),
                    backup_source_directory: "/lab/share".into(),
                    backup_destination_directory: "/lab/copy".into(),
                    last_copied_file: w
                        .last_copied
                        .map(|i| format!("/lab/copy/{}", name(i)))
                        .unwrap_or_default(),
                    last_restored_file: w
                        .last_restored
                        .map(|i| format!("/lab/copy/{}", name(i)))
                        .unwrap_or_default(),
                    ..Default::default()
                }),
            }),
            Op::RemoveLogShippingSecondary(_) => {
                w.ls_configured = false;
                done()
            }
            Op::FileList(l) => {
                let set = match l.directory.as_str() {
                    "/lab/share" => w
                        .share
                        .clone()
                        .ok_or_else(|| err(true, 0, "cannot reach '/lab/share': host is down"))?,
                    "/lab/copy" => w.copy.clone(),
                    other => return Err(err(false, 0, &format!("unexpected folder {other}"))),
                };
                Out::FileListing(pb::FileListing {
                    files: set
                        .iter()
                        .map(|i| pb::FileInfo {
                            path: format!("{}/{}", l.directory, name(*i)),
                            exists: true,
                            size: 1024,
                            ..Default::default()
                        })
                        .collect(),
                })
            }
            Op::FileCopy(c) => {
                let i = index_of(&c.source).unwrap();
                let on_share = w.share.as_ref().is_some_and(|s| s.contains(&i));
                if !on_share {
                    return Err(err(true, 0, "source unreadable"));
                }
                assert_eq!(c.destination, format!("/lab/copy/{}", name(i)));
                w.copy.insert(i);
                Out::Copy(pb::CopyResult {
                    destination: c.destination,
                    bytes: 1024,
                    resumed_from: 0,
                    sha256: sha(i),
                })
            }
            Op::FileStat(s) => {
                let i = index_of(&s.path).unwrap();
                let exists = w.copy.contains(&i);
                Out::FileInfo(pb::FileInfo {
                    path: s.path,
                    exists,
                    size: if exists { 1024 } else { 0 },
                    ..Default::default()
                })
            }
            Op::VerifyBackup(v) => {
                let i = index_of(&v.file).unwrap();
                if !w.copy.contains(&i) {
                    return Err(err(false, 3201, "Cannot open backup device"));
                }
                let (first, last) = lsns(i);
                Out::Verify(pb::VerifyResult {
                    file: v.file,
                    headers: vec![pb::BackupHeader {
                        database: "mgc".into(),
                        backup_type: 2,
                        first_lsn: first.to_string(),
                        last_lsn: last.to_string(),
                        finish_unix_ms: finish_ms(i),
                        ..Default::default()
                    }],
                    files: Vec::new(),
                })
            }
            Op::RestoreLog(r) => {
                let i = index_of(&r.file).unwrap();
                if !r.expected_sha256.is_empty() && r.expected_sha256 != sha(i) {
                    return Err(err(false, 0, "SHA-256 mismatch"));
                }
                if w.backup_online {
                    return Err(err(false, 3117, "the database is already recovered"));
                }
                let (first, last) = lsns(i);
                if last <= w.point {
                    return Err(err(false, 4326, "too early to apply"));
                }
                if first > w.point {
                    return Err(err(false, 4305, "too recent to apply"));
                }
                w.point = last;
                w.applied.push(i);
                Out::Restore(pb::RestoreResult {
                    database: "mgc".into(),
                    state: "RESTORING".into(),
                    changed: true,
                    ..Default::default()
                })
            }
            Op::KillSessions(_) => {
                let n = std::mem::take(&mut w.sessions);
                Out::Killed(pb::Killed {
                    sessions: (0..n)
                        .map(|i| pb::SessionInfo {
                            spid: 60 + i as i32,
                            ..Default::default()
                        })
                        .collect(),
                })
            }
            Op::RecoverDatabase(_) => {
                w.backup_online = true;
                Out::Restore(pb::RestoreResult {
                    database: "mgc".into(),
                    state: "ONLINE".into(),
                    changed: true,
                    ..Default::default()
                })
            }
            Op::PoolState(_) => Out::PoolState(pb::PoolStateInfo {
                pool_fqdn: POOL.into(),
                identity: format!("service:PersistentChatServer:{POOL}"),
                state: if w.failed_over {
                    pb::PoolStateValue::FailedOver
                } else {
                    pb::PoolStateValue::Normal
                } as i32,
            }),
            Op::SetPoolState(s) => {
                w.failed_over = s.state() == pb::PoolStateValue::FailedOver;
                done()
            }
            Op::PoolServers(_) => Out::PoolServers(pb::PoolServersInfo {
                active_servers: w.active.clone(),
                ..Default::default()
            }),
            Op::SetActiveServers(s) => {
                assert_eq!(s.change(), pb::ActiveServersChange::Replace);
                w.active = s.servers;
                done()
            }
            other => panic!("unexpected operation {other:?}"),
        })
    }
}

fn is_read(op: &pb::Operation) -> bool {
    matches!(
        op.kind,
        Some(
            Op::DatabaseState(_)
                | Op::LogShippingStatus(_)
                | Op::FileList(_)
                | Op::FileStat(_)
                | Op::VerifyBackup(_)
                | Op::PoolState(_)
                | Op::PoolServers(_)
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
        let restoring = restore_index(&operation);
        if let Some(i) = restoring
            && self.fail_restore_once.lock().unwrap().remove(&i)
        {
            return Ok(pb::OperationResult {
                op_id: op_id.to_string(),
                outcome: Some(pb::operation_result::Outcome::Error(err(
                    true,
                    1205,
                    "deadlock victim",
                ))),
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
                super::operation_name(&operation).to_string(),
                op_id.to_string(),
            ));
            self.journal
                .lock()
                .unwrap()
                .insert(op_id.to_string(), result.clone());
        }
        if let Some(i) = restoring
            && self.hang_restore_once.lock().unwrap().remove(&i)
        {
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

/// DC1 lost: its agents are not connected.
async fn setup(world: World) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: RunStoreRef = Arc::new(FileRunStore::open(dir.path(), Epoch(1)).unwrap());
    let fake = Arc::new(Fake {
        world: Mutex::new(world),
        ..Fake::default()
    });
    fake.disconnected
        .lock()
        .unwrap()
        .extend([PRIMARY.to_string(), "fe01.dc1.lab".to_string()]);
    let engine = Engine::new("c1", topology(), fake.clone(), config());
    engine.on_leader_start(Epoch(1)).await.unwrap();
    engine.set_store(store.clone());
    Setup {
        _dir: dir,
        store,
        fake,
        engine,
    }
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

async fn start(
    s: &Setup,
    caller: &Caller,
    yes: bool,
    attestation: Option<&str>,
) -> Result<RunId, Error> {
    s.engine
        .start_run_attested(
            caller,
            RunbookKind::Failover,
            vec![POOL.into()],
            RunOptions {
                approved_at_start: yes,
                ..RunOptions::default()
            },
            attestation.map(String::from),
        )
        .await
}

async fn wait_status(store: &RunStoreRef, id: &RunId, want: RunStatus) -> Value {
    for _ in 0..500 {
        if let Some(s) = store.get_run(id).await.unwrap()
            && s.run.status == want
        {
            return s.pools[POOL].outputs.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = store.get_run(id).await.unwrap().unwrap();
    panic!(
        "run {id} never reached {want:?}: {:?} {:?}\n{:#?}",
        s.run.status, s.run.reason, s.pools
    );
}

/// Starts a failover as soon as the previous run has left the engine's table (it leaves just
/// after its final status is written).
async fn start_when_free(s: &Setup) -> RunId {
    for _ in 0..100 {
        if let Ok(id) = start(s, &approver(), true, Some(ATTESTED)).await {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start(s, &approver(), true, Some(ATTESTED)).await.unwrap()
}

const ATTESTED: &str = "DC1 lost power at 08:55; confirmed with the facility";

#[tokio::test]
async fn attested_failover_copies_applies_recovers_and_activates() {
    let s = setup(World::default()).await;
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3, 4, 5], "logs applied in LSN order, once each");
    assert!(w.backup_online && w.failed_over && !w.ls_configured);
    assert_eq!(w.active, ["pc01.dc2.lab"]);
    assert_eq!(w.sessions, 0);
    assert_eq!(w.copy, (1..=5).collect());
    // FO-1a captured what FO-1b then removed.
    let cap = &o["fo1_capture"]["output"];
    assert_eq!(
        cap["last_restored_file"],
        json!(format!("/lab/copy/{}", name(2)))
    );
    assert_eq!(cap["share"], "/lab/share");
    assert_eq!(cap["primary_server"], PRIMARY);
    assert_eq!(
        o["fo2_copy_logs"]["output"]["copied"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let lw = &o["fo3_apply_logs"]["output"]["loss_window"];
    assert_eq!(
        lw["last_restored_file"],
        json!(format!("/lab/copy/{}", name(5)))
    );
    assert_eq!(lw["last_restored_lsn"], "600");
    assert_eq!(lw["last_backup_known_file"], lw["last_restored_file"]);
    assert_eq!(lw["window_seconds"], 0);
    assert_eq!(lw["share_reachable"], true);
    assert_eq!(lw["files_missing"], json!([]));
    assert_eq!(o["fo6_mirror"]["status"], "skipped");
    for op in [
        "remove_log_shipping_secondary",
        "recover_database",
        "set_pool_state",
        "kill_sessions",
    ] {
        assert_eq!(s.fake.executed(op).len(), 1, "{op}");
    }
    // The restores carried the SHA-256 FO-2 recorded; the order was remove, copy, apply, recover.
    let order: Vec<String> = s
        .fake
        .executed
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let first = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(first("remove_log_shipping_secondary") < first("file_copy"));
    assert!(first("file_copy") < first("restore_log"));
    assert!(first("restore_log") < first("recover_database"));
    assert!(first("set_pool_state") < first("set_active_servers"));
    // The attestation is in the run and its audit trail with the caller's name.
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(snap.run.spec.attestation.as_deref(), Some(ATTESTED));
    let audit = s.store.audit(&id).await.unwrap();
    let a = audit.iter().find(|a| a.event == "run.attested").unwrap();
    assert_eq!(
        (a.caller.as_str(), &a.details["primary_down"]),
        ("alice", &json!(ATTESTED))
    );
}

#[tokio::test]
async fn a_failover_without_attestation_is_refused() {
    let s = setup(World::default()).await;
    for a in [None, Some("   ")] {
        let e = start(&s, &approver(), true, a).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        assert!(
            e.to_string()
                .contains("cannot tell a dead primary site from a cut link"),
            "{e}"
        );
    }
    let e = start(&s, &approver(), true, Some("a\u{7}b"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    // A failback takes no attestation.
    let e = s
        .engine
        .start_run_attested(
            &approver(),
            RunbookKind::Failback,
            vec![POOL.into()],
            RunOptions::default(),
            Some("x".into()),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("belongs to failover runs"), "{e}");
    assert!(s.store.list_runs(10).await.unwrap().is_empty());
    assert!(s.fake.executed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn lost_share_applies_what_the_copy_folder_holds() {
    let s = setup(World {
        share: None,
        ..World::default()
    })
    .await;
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Succeeded).await;
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3]);
    assert!(w.backup_online && w.failed_over);
    let fo2 = &o["fo2_copy_logs"]["output"];
    assert_eq!(fo2["share_reachable"], false);
    assert!(
        fo2["share_error"]
            .as_str()
            .unwrap()
            .contains("host is down"),
        "{fo2}"
    );
    let lw = &o["fo3_apply_logs"]["output"]["loss_window"];
    assert_eq!(lw["share_reachable"], false);
    assert_eq!(lw["last_restored_lsn"], "400");
    assert!(lw["note"].as_str().unwrap().contains("unreachable"), "{lw}");
}

#[tokio::test]
async fn a_gap_stops_the_run_naming_the_missing_range_then_a_new_run_continues() {
    let mut share: BTreeSet<u32> = (1..=6).collect();
    share.remove(&4);
    let s = setup(World {
        share: Some(share),
        ..World::default()
    })
    .await;
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Failed).await;
    let fo3 = &o["fo3_apply_logs"];
    assert_eq!(fo3["status"], "failed");
    let msg = fo3["error"].as_str().unwrap();
    assert!(msg.contains("LSN 400 to 500"), "{msg}");
    assert!(msg.contains(&name(3)) && msg.contains(&name(5)), "{msg}");
    assert!(msg.contains("\"window_seconds\":180"), "{msg}");
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3], "nothing beyond the gap");
    assert!(!w.backup_online && !w.failed_over);
    assert!(s.fake.executed("recover_database").is_empty());

    // A new run without the file (log shipping already removed: the restore point is unknown,
    // already applied logs answer 4326, SQL Server's 4305 finds the gap).
    let id = start_when_free(&s).await;
    let o = wait_status(&s.store, &id, RunStatus::Failed).await;
    let msg = o["fo3_apply_logs"]["error"].as_str().unwrap();
    assert!(
        msg.contains("restore point (LSN 400 or later) and LSN 500"),
        "{msg}"
    );
    assert_eq!(s.fake.world.lock().unwrap().applied, [3]);

    // The missing file turns up; a new run finishes the failover.
    s.fake.world.lock().unwrap().copy.insert(4);
    let id = start_when_free(&s).await;
    let o = wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_eq!(o["fo1_capture"]["output"]["configured"], false);
    assert_eq!(
        o["fo1_remove_log_shipping"]["how"],
        "probe: goal already true"
    );
    let w = s.fake.world.lock().unwrap().clone();
    assert_eq!(w.applied, [3, 4, 5, 6]);
    assert!(w.backup_online && w.failed_over);
    let fo3 = &o["fo3_apply_logs"]["output"];
    assert_eq!(fo3["already_applied"], 3);
    assert_eq!(fo3["loss_window"]["last_restored_lsn"], "700");
}

#[tokio::test]
async fn removal_and_recovery_wait_for_an_approver() {
    let s = setup(World::default()).await;
    let id = start(&s, &operator(), false, Some(ATTESTED)).await.unwrap();
    wait_status(&s.store, &id, RunStatus::AwaitingApproval).await;
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    let pool = &snap.pools[POOL];
    assert_eq!(
        (pool.step.as_str(), pool.status),
        ("fo1_remove_log_shipping", StepStatus::AwaitingApproval)
    );
    assert_eq!(
        pool.outputs["fo1_capture"]["status"], "succeeded",
        "captured before the approval"
    );
    assert!(s.fake.world.lock().unwrap().ls_configured);
    s.engine.approve(&approver(), &id).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert!(s.fake.world.lock().unwrap().backup_online);
}

#[tokio::test]
async fn a_primary_still_serving_mgc_refuses_the_failover() {
    let s = setup(World {
        primary_online: true,
        ..World::default()
    })
    .await;
    s.fake.disconnected.lock().unwrap().remove(PRIMARY);
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Failed).await;
    let msg = o["fo1_capture"]["error"].as_str().unwrap();
    assert!(
        msg.contains("not down") && msg.contains("second writable mgc"),
        "{msg}"
    );
    assert!(s.fake.executed.lock().unwrap().is_empty());
    assert!(s.fake.world.lock().unwrap().ls_configured);
}

#[tokio::test]
async fn plan_shows_the_steps_and_sends_nothing() {
    let s = setup(World::default()).await;
    let plan = s
        .engine
        .plan(RunbookKind::Failover, vec![POOL.into()], 1)
        .unwrap();
    let names: Vec<&str> = plan.steps.iter().map(|p| p.step.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    let destructive: Vec<&str> = plan
        .steps
        .iter()
        .filter(|p| p.destructive)
        .map(|p| p.step.as_str())
        .collect();
    assert_eq!(destructive, ["fo1_remove_log_shipping", "fo4_recover"]);
    let fo3 = plan
        .steps
        .iter()
        .find(|p| p.step == "fo3_apply_logs")
        .unwrap();
    assert!(
        fo3.operations
            .iter()
            .any(|o| o.detail.contains("loss_window"))
    );
    assert!(plan.findings.iter().any(|f| f.contains(PRIMARY)));
    assert!(s.fake.executed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_retry_after_a_partial_apply_skips_what_was_applied() {
    let s = setup(World::default()).await;
    s.fake.fail_restore_once.lock().unwrap().insert(4);
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    let o = wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_eq!(o["fo3_apply_logs"]["attempts"], 2);
    assert_eq!(o["fo3_apply_logs"]["output"]["already_applied"], 1);
    assert_eq!(s.fake.world.lock().unwrap().applied, [3, 4, 5]);
}

#[tokio::test]
async fn a_new_leader_resumes_mid_apply_without_repeating_a_restore() {
    let s = setup(World::default()).await;
    s.fake.hang_restore_once.lock().unwrap().insert(4);
    let id = start(&s, &approver(), true, Some(ATTESTED)).await.unwrap();
    for _ in 0..500 {
        if s.fake.world.lock().unwrap().applied.contains(&4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.engine.on_leader_stop().await.unwrap();
    let snap = s.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(snap.pools[POOL].step, "fo3_apply_logs");
    let next = Engine::new("c2", topology(), s.fake.clone(), config());
    next.set_store(s.store.clone());
    next.on_leader_start(Epoch(2)).await.unwrap();
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    assert_eq!(s.fake.world.lock().unwrap().applied, [3, 4, 5]);
    assert_eq!(
        s.fake.executed("restore_log").len(),
        3,
        "each restore ran once; the resumed one was answered from the journal"
    );
}
