//! The in-memory fleet of the failover tests: one pool whose primary data center is lost — the
//! backup instance's `mgc` RESTORING at a restore point, log shipping metadata in its msdb, log
//! backups on the share and in the copy folder, the Lync CMS — answering the typed operations
//! the failover runbook sends through the journaling fake agents of
//! [`crate::runbook::test_fleet`]. Its RESTORE LOG follows SQL Server's LSN rule (4305 too
//! recent / 4326 too early).

use std::collections::BTreeSet;
use std::sync::Arc;

use failback_proto::model::AgentId;
use failback_proto::pb;
use pb::operation::Kind as Op;
use pb::operation_output::Kind as Out;

use crate::runbook::test_fleet::{
    self, FleetWorld, JournalingAgents, done, lab_pool_state, lab_topology,
};
use crate::topology::Topology;

pub(super) const POOL: &str = "pchat01.lab.local";
pub(super) const BACKUP: &str = "sql01.dc2.lab";
pub(super) const PRIMARY: &str = "sql01.dc1.lab";

/// The lab pool with one DC1 chat server and no agent on it.
pub(super) fn topology() -> Arc<Topology> {
    lab_topology("", &["pc01.dc1.lab"])
}

/// Log backup `i` covers LSN `i*100 .. (i+1)*100` and finished at minute `i`.
pub(super) fn name(i: u32) -> String {
    format!("mgc_2026112609{i:02}00.trn")
}

pub(super) fn lsns(i: u32) -> (u128, u128) {
    (u128::from(i) * 100, u128::from(i + 1) * 100)
}

pub(super) fn finish_ms(i: u32) -> u64 {
    1_790_000_000_000 + u64::from(i) * 60_000
}

pub(super) fn sha(i: u32) -> String {
    format!("{i:064x}")
}

pub(super) fn index_of(path: &str) -> Option<u32> {
    let n = path.rsplit('/').next()?;
    n.strip_prefix("mgc_2026112609")?
        .strip_suffix(".trn")?
        .get(..2)?
        .parse()
        .ok()
}

#[derive(Debug, Clone)]
pub(super) struct World {
    /// The primary's mgc is ONLINE (only visible while its agent is connected).
    pub(super) primary_online: bool,
    /// The backup mgc: RESTORING until recovered.
    pub(super) backup_online: bool,
    /// LSN the backup mgc is restored to.
    pub(super) point: u128,
    pub(super) applied: Vec<u32>,
    pub(super) ls_configured: bool,
    pub(super) last_copied: Option<u32>,
    pub(super) last_restored: Option<u32>,
    /// None: the share is unreachable.
    pub(super) share: Option<BTreeSet<u32>>,
    pub(super) copy: BTreeSet<u32>,
    pub(super) failed_over: bool,
    pub(super) active: Vec<String>,
    pub(super) sessions: u32,
    /// Log backups in the copy folder whose header SQL Server cannot read (3241).
    pub(super) damaged: BTreeSet<u32>,
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
            damaged: BTreeSet::new(),
        }
    }
}

/// The fake agents; fault switches are keyed by the index of the log backup a RESTORE LOG
/// applies.
pub(super) type Fake = JournalingAgents<World>;

pub(super) type Setup = test_fleet::Setup<World>;

pub(super) fn restore_index(op: &pb::Operation) -> Option<u32> {
    match &op.kind {
        Some(Op::RestoreLog(r)) => index_of(&r.file),
        _ => None,
    }
}

pub(super) fn err(retryable: bool, sql_error: u32, message: &str) -> pb::OperationError {
    pb::OperationError {
        kind: pb::ErrorKind::Backend as i32,
        retryable,
        message: message.into(),
        sql_error,
    }
}

impl FleetWorld for World {
    type Fault = u32;

    fn execute(&mut self, agent: &AgentId, op: &pb::Operation) -> Result<Out, pb::OperationError> {
        let w = self;
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
            Op::VerifyBackup(pb::VerifyBackup { file })
            | Op::ReadBackupHeader(pb::ReadBackupHeader { file }) => {
                let v = pb::VerifyBackup { file };
                let i = index_of(&v.file).unwrap();
                if !w.copy.contains(&i) {
                    return Err(err(false, 3201, "Cannot open backup device"));
                }
                if w.damaged.contains(&i) {
                    return Err(err(
                        false,
                        3241,
                        "The media family on device is incorrectly formed",
                    ));
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
            Op::PoolState(_) => lab_pool_state(if w.failed_over {
                pb::PoolStateValue::FailedOver
            } else {
                pb::PoolStateValue::Normal
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

    fn fault(op: &pb::Operation) -> Option<u32> {
        restore_index(op)
    }
}
