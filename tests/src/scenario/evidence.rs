//! What a scenario leaves behind, read back for the invariant checkers: every SQL instance's
//! statement log, the Lync shell's script log, each agent's journal, the run record (status and
//! audit trail), the faults as they fired, and the samples of which `mgc` copies were writable.
//! Read from the files the real processes wrote, never from the runner's own beliefs, so a
//! checker judges what happened, not what the scenario meant to do.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::harness::sqlsim::{LoggedStatement, SqlSim};

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// RFC 3339 (sqlsim's and lyncsim's log times) to Unix milliseconds; 0 when unreadable.
pub fn rfc3339_ms(s: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| u64::try_from(t.timestamp_millis()).unwrap_or(0))
        .unwrap_or(0)
}

/// One statement with its time in Unix milliseconds.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// When sqlsim received it.
    pub at_ms: u64,
    /// Upper-cased text with its `@Pn` parameters substituted (`'value'`), for matching.
    pub norm: String,
    /// As logged.
    pub raw: LoggedStatement,
}

impl Stmt {
    fn from(raw: LoggedStatement) -> Stmt {
        let mut norm = raw.text.clone();
        // Longest names first: @P10 before @P1.
        let mut params: Vec<(&String, &String)> = raw.params.iter().collect();
        params.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        for (k, v) in params {
            norm = norm.replace(k.as_str(), &format!("'{v}'"));
            norm = norm.replace(&k.to_ascii_lowercase(), &format!("'{v}'"));
        }
        Stmt {
            at_ms: rfc3339_ms(&raw.time),
            norm: norm.trim().to_ascii_uppercase(),
            raw,
        }
    }

    /// The value of parameter `@Pn`.
    pub fn param(&self, n: u32) -> Option<&str> {
        self.raw.params.get(&format!("@P{n}")).map(String::as_str)
    }
}

/// A SQL instance's log, from the run's start on.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Agent id / host name of the instance.
    pub name: String,
    /// Statements received since the lab was ready.
    pub statements: Vec<Stmt>,
}

impl Instance {
    /// Reads `sim`'s log past its first `skip` statements (the lab's own setup).
    pub fn read(name: &str, sim: &SqlSim, skip: usize) -> Instance {
        Instance {
            name: name.to_string(),
            statements: sim
                .statements()
                .into_iter()
                .skip(skip)
                .map(Stmt::from)
                .collect(),
        }
    }

    /// Statements whose normalized text starts with `prefix` (upper case).
    pub fn starting<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Stmt> + 'a {
        self.statements
            .iter()
            .filter(move |s| s.norm.starts_with(prefix))
    }
}

/// One script the Lync shell stand-in received.
#[derive(Debug, Clone, Deserialize)]
pub struct Script {
    /// When (RFC 3339).
    pub time: String,
    /// The host it ran on.
    #[serde(default)]
    pub host: String,
    /// The script.
    pub script: String,
}

/// Reads the CMS script log beside `store`.
pub fn read_scripts(store: &Path) -> Vec<Script> {
    let mut p = store.as_os_str().to_owned();
    p.push(".scripts.jsonl");
    std::fs::read_to_string(Path::new(&p))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// An agent's journal record: the agent's own type, so the format has one definition.
pub use failback_agent::journal::Record as JournalRecord;

/// Reads every agent's journal: agent id → records in file order.
pub fn read_journals(fleet: &crate::harness::fleet::Fleet) -> BTreeMap<String, Vec<JournalRecord>> {
    fleet
        .agent_specs
        .iter()
        .map(|a| {
            let path = fleet.agent_state_dir(&a.id).join("journal.jsonl");
            let records = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            (a.id.clone(), records)
        })
        .collect()
}

/// A fault as it fired.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Fired {
    /// `do @ at`.
    pub label: String,
    /// When it fired (Unix ms).
    pub at_ms: u64,
    /// What the runner saw when it fired (e.g. which coordinator led).
    pub note: String,
    /// For leader faults: the highest epoch any agent had accepted when it fired.
    pub epoch_before: Option<u64>,
    /// For a damaged backup file: its path.
    pub damaged_file: Option<String>,
    /// For bad instructions (§9.8): what was sent and answered.
    pub probes: Option<super::bad_input::Probes>,
}

/// One look at which copies of `mgc` were writable.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When.
    pub at_ms: u64,
    /// Instance name → (state_desc, is_read_only) of its `mgc`; absent when it did not answer.
    pub mgc: BTreeMap<String, (String, bool)>,
}

impl Sample {
    /// Instances whose `mgc` was ONLINE and writable.
    pub fn writable(&self) -> Vec<&str> {
        self.mgc
            .iter()
            .filter(|(_, (state, ro))| state == "ONLINE" && !ro)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Everything the checkers read.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The pool.
    pub pool: String,
    /// The primary (DC1) instance's log.
    pub primary: Instance,
    /// The backup (DC2) instance's log.
    pub backup: Instance,
    /// Lync shell scripts.
    pub scripts: Vec<Script>,
    /// Agent journals.
    pub journals: BTreeMap<String, Vec<JournalRecord>>,
    /// `failbackctl status RUN --output json` at the end.
    pub detail: serde_json::Value,
    /// Faults as fired.
    pub fired: Vec<Fired>,
    /// Writable-`mgc` samples.
    pub samples: Vec<Sample>,
    /// Messages in the primary's `mgc` at the end, when it answered.
    pub primary_messages: Option<usize>,
    /// Chat traffic during the run, when the scenario ran chat servers.
    pub chat: Option<ChatSeen>,
    /// The backup `mgc` at the end, as log shipping left it.
    pub backup_shipping: Option<ShippingSeen>,
    /// Messages the pool held before FB-1.
    pub messages_before: usize,
    /// When the run was started (Unix ms).
    pub started_ms: u64,
}

/// What the chat servers wrote during a run.
#[derive(Debug, Clone)]
pub struct ChatSeen {
    /// Every message SQL Server acknowledged, and whether it went to the backup `mgc`.
    pub acked: Vec<(String, bool)>,
    /// The message bodies in the primary `mgc` at the end (None: it did not answer).
    pub held: Option<std::collections::BTreeSet<String>>,
    /// The message bodies in the backup `mgc` at the end (None: it did not answer, or is not
    /// readable: RESTORING).
    pub held_backup: Option<std::collections::BTreeSet<String>>,
}

/// The backup `mgc` at the end of a run.
#[derive(Debug, Clone)]
pub struct ShippingSeen {
    /// `sys.databases.state_desc`.
    pub state: String,
    /// `restorehistory.restore_type` of the newest restore into it (`D` full, `L` log).
    pub last_restore_type: String,
}

impl Evidence {
    /// The highest epoch accepted by any agent before `t` (Unix ms).
    pub fn epoch_before(journals: &BTreeMap<String, Vec<JournalRecord>>, t: u64) -> u64 {
        journals
            .values()
            .flatten()
            .filter_map(|r| match r {
                JournalRecord::Started { epoch, at_ms, .. } if *at_ms <= t => Some(*epoch),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The first operation an agent finished after `t` under an epoch above `epoch`: (agent,
    /// op, finished at).
    pub fn first_finished_after(&self, t: u64, epoch: u64) -> Option<(String, String, u64)> {
        let mut best: Option<(String, String, u64)> = None;
        for (agent, records) in &self.journals {
            let mut epochs: BTreeMap<&str, u64> = BTreeMap::new();
            for r in records {
                match r {
                    JournalRecord::Started { op, epoch: e, .. } => {
                        epochs.insert(op.as_str(), *e);
                    }
                    JournalRecord::Finished { op, at_ms, .. } => {
                        let newer = epochs.get(op.as_str()).is_some_and(|e| *e > epoch);
                        if newer && *at_ms > t && best.as_ref().is_none_or(|b| *at_ms < b.2) {
                            best = Some((agent.clone(), op.clone(), *at_ms));
                        }
                    }
                }
            }
        }
        best
    }

    /// The run's audit trail.
    pub fn audit(&self) -> Vec<&serde_json::Value> {
        self.detail["audit"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    /// The pool's step outputs.
    pub fn outputs(&self) -> &serde_json::Value {
        self.detail["pools"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["pool"] == self.pool.as_str()))
            .map_or(&serde_json::Value::Null, |p| &p["outputs"])
    }
}
