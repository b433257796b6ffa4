//! The topology: which agents exist, in which data center, and what each manages for every
//! Persistent Chat pool. The coordinator loads it at start; `failbackctl topology check` runs the
//! same code. Example with every field: `deploy/topology.toml`.
//!
//! Data-center membership comes from this file, not from Lync (a stretched pool is one Lync site).
//! Every error names the file, the line and the pool/field, and all problems are reported at once
//! so an operator fixes the file in one pass.
//!
//! When you change the format, also touch `deploy/topology.toml`, the lab's topology writer
//! (tests crate, `harness::fleet`) and `tests/tests/topology_check.rs`.

mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use failback_proto::model::{AgentId, DatabaseName};

/// A validated topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Agents by id.
    pub agents: BTreeMap<AgentId, AgentEntry>,
    /// Pools in file order.
    pub pools: Vec<Pool>,
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEntry {
    /// Data center name.
    pub datacenter: String,
}

/// What a SQL instance does for its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SqlRole {
    /// The pool's normal back end (primary data center).
    Primary,
    /// Its mirror, same data center.
    PrimaryMirror,
    /// The log-shipping target in the backup data center.
    Backup,
    /// The backup's mirror.
    BackupMirror,
}

impl SqlRole {
    /// Field name in the file and label in role lists.
    pub fn as_str(self) -> &'static str {
        match self {
            SqlRole::Primary => "primary",
            SqlRole::PrimaryMirror => "primary_mirror",
            SqlRole::Backup => "backup",
            SqlRole::BackupMirror => "backup_mirror",
        }
    }
}

/// One SQL Server instance and the agent on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlInstance {
    /// Agent that manages it.
    pub agent: AgentId,
    /// `host`, `host\INSTANCE` or `host,port`, as SQL clients write it.
    pub instance: String,
}

/// One Persistent Chat pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The pool's FQDN (its Lync identity).
    pub fqdn: String,
    /// Where it lives normally.
    pub primary_dc: String,
    /// Where it is failed over to.
    pub backup_dc: String,
    /// `mgc`, and `mgccomp` where compliance is enabled.
    pub databases: Vec<DatabaseName>,
    /// Log-shipping share reachable from both back ends (UNC on Windows).
    pub share: String,
    /// Folder on the backup SQL host where the copy job puts log backups.
    pub copy_dir: String,
    /// Agents that can run Management Shell cmdlets, per data center.
    pub lync_shell: BTreeMap<String, Vec<AgentId>>,
    /// SQL instances by role.
    pub sql: BTreeMap<SqlRole, SqlInstance>,
    /// Persistent Chat servers (FQDNs) per data center. A server's agent, when it has one, is the
    /// agent whose id equals the server FQDN.
    pub chat_servers: BTreeMap<String, Vec<String>>,
}

impl Topology {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                line: None,
                context: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text`; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TopologyError> {
        validate::parse(text).map_err(|problems| TopologyError {
            file: path.to_path_buf(),
            problems,
        })
    }

    /// The data center of `agent`, if the topology knows it.
    pub fn datacenter_of(&self, agent: &AgentId) -> Option<&str> {
        self.agents.get(agent).map(|a| a.datacenter.as_str())
    }

    /// What the topology gives `agent` to do, e.g. `sql-primary:pchat01.contoso.com`,
    /// `lync-shell:pchat01.contoso.com`, `chat-server:pchat01.contoso.com`.
    pub fn roles_of(&self, agent: &AgentId) -> Vec<String> {
        let mut roles = Vec::new();
        for pool in &self.pools {
            for (role, inst) in &pool.sql {
                if &inst.agent == agent {
                    roles.push(format!(
                        "sql-{}:{}",
                        role.as_str().replace('_', "-"),
                        pool.fqdn
                    ));
                }
            }
            if pool.lync_shell.values().flatten().any(|a| a == agent) {
                roles.push(format!("lync-shell:{}", pool.fqdn));
            }
            if pool
                .chat_servers
                .values()
                .flatten()
                .any(|s| s.eq_ignore_ascii_case(agent.as_str()))
            {
                roles.push(format!("chat-server:{}", pool.fqdn));
            }
        }
        roles
    }

    /// Sorted data-center names.
    pub fn datacenters(&self) -> Vec<&str> {
        let mut dcs: Vec<&str> = self
            .agents
            .values()
            .map(|a| a.datacenter.as_str())
            .collect();
        dcs.sort_unstable();
        dcs.dedup();
        dcs
    }
}

/// One problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Where in the model: `pool 'x': sql.backup.agent`, or empty.
    pub context: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

/// A topology that failed to load or validate, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// The file.
    pub file: PathBuf,
    /// All problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "topology '{}' is invalid ({n} problem{})",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", self.file.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
            if !p.context.is_empty() {
                write!(f, "{}: ", p.context)?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for TopologyError {}
