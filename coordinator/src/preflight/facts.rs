//! What preflight knows about one pool, read once through the agents' typed operations. Every
//! read is attempted even when an earlier one failed (an operator fixing a broken pool wants
//! every finding at once); a failed read is kept as its error text and becomes a failed check.
//! Reads go to connected agents only: a disconnected agent's reads fail at once instead of
//! waiting for a timeout.
//!
//! Which agent reads what: the SQL agent of each instance reads its instance; the backup SQL
//! agent lists and measures the share and the copy folder (the copy folder is on its host, and
//! the share must be in its `[files]` roots for FO-2 anyway) and reads the headers of the files
//! in the copy folder; headers of files only on the share are read by the primary instance (its
//! engine wrote them) when its agent is connected. A Lync shell agent of the primary data center
//! is asked first for the pool state and servers, then any other.
//!
//! Not every read is a pure read: `check_agent_access` (a one-off Agent job) and
//! `check_engine_share_write` (a COPY_ONLY backup of `model` to a probe file on the share, which
//! the agent deletes; see `super::engine_access`) write and clean up after themselves, and both
//! are left out when the request asks for reads only. The engine probe runs on the backup
//! instance (FB-3's writer) and on the primary (FB-5's seed writer), each through its own agent.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use failback_proto::model::{AgentId, Epoch, OpId};
use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;
use failback_proto::pb::operation_output::Kind as Out;

use crate::error::Error;
use crate::registry::Registry;
use crate::runbook::failback::{MGC, join_path, shell_agents};
use crate::runbook::failover::chain::{file_name, stamp_of};
use crate::topology::{Pool, SqlRole};

/// A read's value or why it could not be had.
pub type Read<T> = Result<T, String>;

/// Timeout of one read.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the one-off Agent job of `check_agent_access` may take (seconds).
const ACCESS_JOB_SECONDS: u32 = 30;
/// Extra time for the engine-account probe's backup of `model` (a few MB).
const PROBE_EXTRA: Duration = Duration::from_secs(30);
/// At most this many log backup headers are read per pool (the oldest unrestored ones: a gap
/// matters from the restored point on, and a pool this far behind fails its staleness checks).
pub const MAX_HEADERS: usize = 64;
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Sends read operations with fresh op ids (`preflight/<caller>/<stamp>-<n>/<i>-<op>`): a
/// preflight always wants the current state, never a journaled answer.
pub struct Reader<'a> {
    registry: &'a Registry,
    epoch: Epoch,
    prefix: String,
    connected: BTreeSet<String>,
    n: usize,
}

impl<'a> Reader<'a> {
    /// A reader for one preflight call by `caller`.
    pub fn new(registry: &'a Registry, epoch: Epoch, caller: &str) -> Self {
        let connected = registry
            .list()
            .into_iter()
            .filter(|a| a.connected)
            .map(|a| a.id)
            .collect();
        Reader {
            registry,
            epoch,
            prefix: format!(
                "preflight/{caller}/{}-{}",
                super::now_ms(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ),
            connected,
            n: 0,
        }
    }

    /// Whether `agent` had a session when the preflight started.
    pub fn connected(&self, agent: &AgentId) -> bool {
        self.connected.contains(agent.as_str())
    }

    /// Sends one read to `agent` and returns its output or the reason it failed.
    pub async fn read(&mut self, agent: &AgentId, kind: K, timeout: Duration) -> Read<Out> {
        if !self.connected(agent) {
            return Err(format!("agent '{agent}' is not connected"));
        }
        let op = pb::Operation { kind: Some(kind) };
        let name = crate::runbook::operation_name(&op);
        self.n += 1;
        let op_id = OpId::new(format!("{}/{}-{name}", self.prefix, self.n))
            .map_err(|e| format!("op id: {e}"))?;
        match self
            .registry
            .instruct(agent, &op_id, self.epoch, op, timeout)
            .await
        {
            Err(e) => Err(format!("{name} on '{agent}': {e}")),
            Ok(r) => match r.outcome {
                Some(pb::operation_result::Outcome::Output(o)) => o
                    .kind
                    .ok_or_else(|| format!("{name} on '{agent}': empty output")),
                Some(pb::operation_result::Outcome::Error(e)) => Err(format!(
                    "{name} on '{agent}' failed{}: {}",
                    if e.sql_error != 0 && !e.message.contains(&format!("error {}", e.sql_error)) {
                        format!(" (SQL Server error {})", e.sql_error)
                    } else {
                        String::new()
                    },
                    e.message
                )),
                None => Err(format!("{name} on '{agent}': result without outcome")),
            },
        }
    }
}

/// Unwraps an output variant, naming what came instead.
macro_rules! take {
    ($read:expr, $variant:ident) => {
        match $read {
            Ok(Out::$variant(v)) => Ok(v),
            Ok(other) => Err(format!("unexpected output {other:?}")),
            Err(e) => Err(e),
        }
    };
}

/// One SQL instance of the pool.
#[derive(Debug, Clone)]
pub struct SqlFacts {
    /// Its role in the pool.
    pub role: SqlRole,
    /// The agent on its host.
    pub agent: AgentId,
    /// As the topology names it.
    pub instance: String,
    /// `describe_instance`.
    pub info: Read<pb::InstanceInfo>,
    /// `database_state` of the pool's databases.
    pub databases: Read<Vec<pb::DatabaseInfo>>,
    /// `mirroring_state` of the pool's databases.
    pub mirroring: Read<Vec<pb::MirroringInfo>>,
    /// `log_shipping_status` of `mgc`.
    pub log_shipping: Read<pb::LogShippingStatusInfo>,
}

impl SqlFacts {
    /// The state of database `name`, when read and present.
    pub fn database(&self, name: &str) -> Option<&pb::DatabaseInfo> {
        self.databases
            .as_ref()
            .ok()?
            .iter()
            .find(|d| d.exists && d.name.eq_ignore_ascii_case(name))
    }

    /// The SQL Server Agent service row, when the instance listed its services.
    pub fn agent_service(&self) -> Option<&pb::ServiceInfo> {
        self.info
            .as_ref()
            .ok()?
            .services
            .iter()
            .find(|s| s.name.to_ascii_uppercase().contains("AGENT"))
    }
}

/// One agent of the pool and whether it has a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFact {
    /// Agent id.
    pub id: String,
    /// What the pool uses it for (`sql primary`, `lync shell dc2`).
    pub what: String,
    /// Session now.
    pub connected: bool,
    /// Only a mirror's agent: both runbooks work without it.
    pub optional: bool,
}

/// Everything read for one pool.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The pool (from the topology).
    pub pool: Pool,
    /// When the facts were read (coordinator clock, Unix ms).
    pub now_ms: u64,
    /// The pool's agents.
    pub agents: Vec<AgentFact>,
    /// `pool_state` through a shell agent.
    pub pool_state: Read<pb::PoolStateInfo>,
    /// `pool_servers` through a shell agent.
    pub pool_servers: Read<pb::PoolServersInfo>,
    /// Every SQL instance of the topology's pool entry.
    pub sql: Vec<SqlFacts>,
    /// `<mgc>_*.trn` on the share.
    pub share_files: Read<Vec<pb::FileInfo>>,
    /// `<mgc>_*.trn` in the copy folder.
    pub copy_files: Read<Vec<pb::FileInfo>>,
    /// Free space on the share's volume.
    pub share_space: Read<pb::Space>,
    /// Free space on the copy folder's volume.
    pub copy_space: Read<pb::Space>,
    /// The log shipping copy job's name and last outcome (only when the backup instance is a
    /// log shipping secondary).
    pub copy_job: Option<(String, Read<pb::JobOutcomeInfo>)>,
    /// `check_agent_access` on the backup instance (only for drive/UNC folders).
    pub agent_access: Option<Read<pb::AgentAccess>>,
    /// `check_engine_share_write` of the share on the backup instance (FB-3) and the primary
    /// (FB-5's seed), by role; empty when not probed (`reads_only`).
    pub engine_write: Vec<(SqlRole, Read<pb::EngineShareWrite>)>,
    /// msdb's last restored file and its header (only on a log shipping secondary that has
    /// restored something).
    pub restored: Option<(String, Read<pb::BackupHeader>)>,
    /// Headers of the log backups after the restored one, oldest first (file name, header).
    pub headers: Vec<(String, Read<pb::BackupHeader>)>,
    /// Candidates left unread beyond [`MAX_HEADERS`].
    pub headers_skipped: usize,
}

impl Facts {
    /// The instance in `role`, if the topology has one.
    pub fn sql(&self, role: SqlRole) -> Option<&SqlFacts> {
        self.sql.iter().find(|s| s.role == role)
    }

    /// The backup instance's log shipping secondary configuration, when it has one.
    pub fn secondary(&self) -> Option<&pb::LogShippingSecondaryConfig> {
        self.sql(SqlRole::Backup)?
            .log_shipping
            .as_ref()
            .ok()?
            .secondary
            .as_ref()
    }
}

/// A drive (`E:\x`) or UNC (`\\host\share`) path: the forms a CmdExec Agent job can use (the
/// same rule as FB-1's access check).
pub fn windows_path(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with(r"\\")
        || (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
}

fn header_of(r: Read<Out>) -> Read<pb::BackupHeader> {
    take!(r, Verify)?
        .headers
        .into_iter()
        .next()
        .ok_or_else(|| "the file holds no backup set".to_string())
}

/// The engine-account probe (a COPY_ONLY backup of `model` to the share, deleted after; see
/// `super::engine_access`) on the backup instance, whose engine writes FB-3's backup, and on
/// the primary, whose engine writes FB-5's seed backup.
async fn engine_write(
    reader: &mut Reader<'_>,
    pool: &Pool,
) -> Vec<(SqlRole, Read<pb::EngineShareWrite>)> {
    let mut out = Vec::new();
    for role in [SqlRole::Backup, SqlRole::Primary] {
        let Some(inst) = pool.sql.get(&role) else {
            continue;
        };
        let r = reader
            .read(
                &inst.agent,
                K::CheckEngineShareWrite(pb::CheckEngineShareWrite {
                    directory: pool.share.clone(),
                }),
                READ_TIMEOUT + PROBE_EXTRA,
            )
            .await;
        out.push((role, take!(r, EngineShareWrite)));
    }
    out
}

/// Reads everything preflight needs about `pool`.
pub async fn gather(
    reader: &mut Reader<'_>,
    pool: &Pool,
    reads_only: bool,
) -> Result<Facts, Error> {
    let dbs: Vec<String> = pool.databases.iter().map(ToString::to_string).collect();
    let mut agents: Vec<AgentFact> = Vec::new();
    for (role, inst) in &pool.sql {
        let optional = matches!(role, SqlRole::PrimaryMirror | SqlRole::BackupMirror);
        if let Some(existing) = agents.iter_mut().find(|x| x.id == inst.agent.as_str()) {
            existing.what.push_str(&format!(", sql {}", role.as_str()));
            existing.optional &= optional;
            continue;
        }
        agents.push(AgentFact {
            id: inst.agent.to_string(),
            what: format!("sql {}", role.as_str()),
            connected: reader.connected(&inst.agent),
            optional,
        });
    }
    for (dc, list) in &pool.lync_shell {
        for a in list {
            if let Some(existing) = agents.iter_mut().find(|x| x.id == a.as_str()) {
                existing.what.push_str(&format!(", lync shell {dc}"));
                existing.optional = false;
            } else {
                agents.push(AgentFact {
                    id: a.to_string(),
                    what: format!("lync shell {dc}"),
                    connected: reader.connected(a),
                    optional: false,
                });
            }
        }
    }

    let shells = shell_agents(pool, &pool.primary_dc);
    let shell = shells
        .iter()
        .find(|a| reader.connected(a))
        .or_else(|| shells.first())
        .cloned();
    let (pool_state, pool_servers) = match &shell {
        None => (
            Err("the topology names no Lync shell agent for this pool".to_string()),
            Err("the topology names no Lync shell agent for this pool".to_string()),
        ),
        Some(shell) => {
            let fqdn = pool.fqdn.clone();
            let state = take!(
                reader
                    .read(
                        shell,
                        K::PoolState(pb::PoolState {
                            pool_fqdn: fqdn.clone()
                        }),
                        READ_TIMEOUT
                    )
                    .await,
                PoolState
            );
            let servers = take!(
                reader
                    .read(
                        shell,
                        K::PoolServers(pb::PoolServers { pool_fqdn: fqdn }),
                        READ_TIMEOUT
                    )
                    .await,
                PoolServers
            );
            (state, servers)
        }
    };

    let mut sql = Vec::new();
    for (role, inst) in &pool.sql {
        let a = &inst.agent;
        let info = take!(
            reader
                .read(
                    a,
                    K::DescribeInstance(pb::DescribeInstance {}),
                    READ_TIMEOUT
                )
                .await,
            Instance
        );
        let databases = take!(
            reader
                .read(
                    a,
                    K::DatabaseState(pb::DatabaseState {
                        databases: dbs.clone()
                    }),
                    READ_TIMEOUT
                )
                .await,
            DatabaseStates
        )
        .map(|d| d.databases);
        let mirroring = take!(
            reader
                .read(
                    a,
                    K::MirroringState(pb::MirroringState {
                        databases: dbs.clone()
                    }),
                    READ_TIMEOUT
                )
                .await,
            MirroringStates
        )
        .map(|m| m.databases);
        // Log shipping carries mgc only (pchat-dr.md §4.4); mirrors are not part of it.
        let log_shipping = if matches!(role, SqlRole::Primary | SqlRole::Backup) {
            take!(
                reader
                    .read(
                        a,
                        K::LogShippingStatus(pb::LogShippingStatus {
                            database: MGC.into()
                        }),
                        READ_TIMEOUT
                    )
                    .await,
                LogShipping
            )
        } else {
            Err("not read: log shipping involves the primary and backup instances only".into())
        };
        sql.push(SqlFacts {
            role: *role,
            agent: a.clone(),
            instance: inst.instance.clone(),
            info,
            databases,
            mirroring,
            log_shipping,
        });
    }

    let mut facts = Facts {
        pool: pool.clone(),
        now_ms: super::now_ms(),
        agents,
        pool_state,
        pool_servers,
        sql,
        share_files: Err("not read: the pool has no backup SQL instance".into()),
        copy_files: Err("not read: the pool has no backup SQL instance".into()),
        share_space: Err("not read: the pool has no backup SQL instance".into()),
        copy_space: Err("not read: the pool has no backup SQL instance".into()),
        copy_job: None,
        agent_access: None,
        engine_write: Vec::new(),
        restored: None,
        headers: Vec::new(),
        headers_skipped: 0,
    };
    if !reads_only {
        facts.engine_write = engine_write(reader, pool).await;
    }
    let Some(backup) = facts.sql(SqlRole::Backup).map(|s| s.agent.clone()) else {
        return Ok(facts);
    };
    let primary = facts
        .sql(SqlRole::Primary)
        .map(|s| s.agent.clone())
        .filter(|a| reader.connected(a));
    let pattern = format!("{MGC}_*.trn");
    for (dir, files, space) in [
        (pool.share.clone(), true, true),
        (pool.copy_dir.clone(), false, false),
    ] {
        let list = take!(
            reader
                .read(
                    &backup,
                    K::FileList(pb::FileList {
                        directory: dir.clone(),
                        pattern: pattern.clone()
                    }),
                    READ_TIMEOUT
                )
                .await,
            FileListing
        )
        .map(|l| l.files);
        let free = take!(
            reader
                .read(
                    &backup,
                    K::FreeSpace(pb::FreeSpace { path: dir }),
                    READ_TIMEOUT
                )
                .await,
            Space
        );
        if files {
            facts.share_files = list;
        } else {
            facts.copy_files = list;
        }
        if space {
            facts.share_space = free;
        } else {
            facts.copy_space = free;
        }
    }

    if !reads_only && windows_path(&pool.share) && windows_path(&pool.copy_dir) {
        let r = reader
            .read(
                &backup,
                K::CheckAgentAccess(pb::CheckAgentAccess {
                    read_folder: pool.share.clone(),
                    write_folder: pool.copy_dir.clone(),
                    timeout_seconds: ACCESS_JOB_SECONDS,
                }),
                READ_TIMEOUT + Duration::from_secs(u64::from(ACCESS_JOB_SECONDS)),
            )
            .await;
        facts.agent_access = Some(take!(r, AgentAccess));
    }

    let Some(sec) = facts.secondary().cloned() else {
        return Ok(facts);
    };
    // SSMS' and FB-5's name for the copy job (LogShippingSecondary::copy_job_name).
    let job = format!("LSCopy_{}_{}", sec.primary_server, sec.primary_database);
    let outcome = take!(
        reader
            .read(
                &backup,
                K::JobOutcome(pb::JobOutcome {
                    job_name: job.clone(),
                    after_instance_id: 0
                }),
                READ_TIMEOUT
            )
            .await,
        JobOutcome
    );
    facts.copy_job = Some((job, outcome));

    let restored_stamp = if sec.last_restored_file.is_empty() {
        None
    } else {
        let r = reader
            .read(
                &backup,
                K::ReadBackupHeader(pb::ReadBackupHeader {
                    file: sec.last_restored_file.clone(),
                }),
                READ_TIMEOUT,
            )
            .await;
        facts.restored = Some((sec.last_restored_file.clone(), header_of(r)));
        stamp_of(MGC, file_name(&sec.last_restored_file)).map(str::to_string)
    };
    let names = |r: &Read<Vec<pb::FileInfo>>| -> Vec<String> {
        r.as_ref()
            .map(|v| {
                v.iter()
                    .filter(|f| !f.is_dir)
                    .map(|f| file_name(&f.path).to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let in_copy: BTreeSet<String> = names(&facts.copy_files).into_iter().collect();
    let mut candidates: Vec<(String, String)> = in_copy
        .iter()
        .cloned()
        .chain(names(&facts.share_files))
        .filter_map(|n| {
            let stamp = stamp_of(MGC, &n)?.to_string();
            restored_stamp
                .as_deref()
                .is_none_or(|r| stamp.as_str() > r)
                .then_some((stamp, n))
        })
        .collect();
    candidates.sort();
    candidates.dedup_by(|a, b| a.1 == b.1);
    facts.headers_skipped = candidates.len().saturating_sub(MAX_HEADERS);
    candidates.truncate(MAX_HEADERS);
    for (_, name) in candidates {
        let (agent, path) = if in_copy.contains(&name) {
            (&backup, join_path(&pool.copy_dir, &name))
        } else {
            (
                primary.as_ref().unwrap_or(&backup),
                join_path(&pool.share, &name),
            )
        };
        let r = reader
            .read(
                agent,
                K::ReadBackupHeader(pb::ReadBackupHeader { file: path }),
                READ_TIMEOUT,
            )
            .await;
        facts.headers.push((name, header_of(r)));
    }
    Ok(facts)
}
