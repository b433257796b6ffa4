//! The run store: what the runbook engine persists, behind a domain-level trait (style rule 7;
//! Ballista's removed generic KV trait is the counter-example). The engine says "create this
//! run", "save this pool's step state", "append this audit record"; it never sees keys,
//! revisions or files.
//!
//! Implementations:
//! - [`etcd::EtcdRunStore`]: every write is one etcd transaction that also compares our leader
//!   key's create revision (DESIGN §4), so a deposed leader's writes fail with
//!   [`Error::Deposed`] even before it has noticed it was deposed. Layout: [`keys`].
//! - [`file::FileRunStore`]: standalone mode, one JSON file per run in `state_dir/runs`, replaced
//!   atomically (write, fsync, rename, fsync the directory).
//!
//! Both pass the same suite ([`conformance`], feature `testing`).
//!
//! Values are small JSON (a run record, one pool's step state, one audit record; outputs are
//! capped at [`MAX_VALUE_BYTES`]); large evidence belongs in files the records point to.

pub mod etcd;
pub mod file;
pub mod keys;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use failback_proto::model::Epoch;
use serde::{Deserialize, Serialize};

use crate::error::Error;
pub(crate) use failback_proto::clock::unix_ms;

/// Largest encoded value (run record, pool state, audit record) a store accepts. etcd refuses
/// requests over 1.5 MiB by default; staying far below keeps transactions and watches cheap.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A run's id: 1..=64 of `[A-Za-z0-9._-]`, not starting with `.`. Generated ids
/// (`20260131-235959-1a2b3c`) sort by creation time.
///
/// ```compile_fail
/// use failback_coordinator::store::RunId;
/// fn takes(_: &RunId) {}
/// takes(&"20260101-000000-abcdef".to_string()); // a String is not a RunId
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// Validates `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        if s.is_empty() || s.len() > 64 || s.starts_with('.') {
            return Err(format!(
                "run id '{s}' must be 1 to 64 characters, not starting with '.'"
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "run id '{s}' contains '{c}'; use letters, digits, '.', '_' and '-'"
            ));
        }
        Ok(RunId(s))
    }

    /// A fresh id: UTC time to the second, then 24 random bits (collisions are refused by
    /// `create_run` anyway).
    pub fn generate() -> Self {
        let now = time::OffsetDateTime::now_utc();
        let suffix: u32 = rand::random::<u32>() & 0x00ff_ffff;
        RunId(format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}-{suffix:06x}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RunId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RunId::new(s)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

/// Which runbook a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunbookKind {
    /// Back to the primary data center (DESIGN §1, FB-1..FB-7).
    Failback,
    /// To the backup data center.
    Failover,
    /// Failover then failback.
    Drill,
}

/// How a run is to be executed (what the operator asked for at start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Pools worked on at once after the canary.
    #[serde(default = "one")]
    pub max_parallel: u32,
    /// `--yes` given by an approver at start: destructive steps need no separate approval.
    #[serde(default)]
    pub approved_at_start: bool,
    /// Keep going with the other pools after a pool fails.
    #[serde(default)]
    pub continue_on_failure: bool,
}

fn one() -> u32 {
    1
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_parallel: 1,
            approved_at_start: false,
            continue_on_failure: false,
        }
    }
}

/// What a run is: fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The runbook.
    pub kind: RunbookKind,
    /// Pool FQDNs, in execution order (the first is the canary).
    pub pools: Vec<String>,
    /// Execution options.
    pub options: RunOptions,
    /// Certificate name of the operator who started it.
    pub started_by: String,
    /// The operator's attestation that the primary data center is down (failover runs, where
    /// it is required: two sites cannot tell a dead peer from a cut link, so a person decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// An approver's acceptance of the data loss of one gap in the log chain (failover runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_gap: Option<AcceptedGap>,
}

/// An approver's decision to recover a failover's database past a gap in its log chain, losing
/// the log at and after the named file. It names the file an earlier run's FO-3 reported as the
/// gap, so it accepts that loss and no other: FO-3 still stops at a gap anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedGap {
    /// The file name FO-3 reported as the gap (the first log backup it could not apply).
    pub file: String,
    /// Why the loss is acceptable (1 to [`MAX_ATTESTATION_CHARS`] characters).
    pub reason: String,
    /// Certificate name of the approver.
    pub accepted_by: String,
}

/// Longest attestation text a run records.
pub const MAX_ATTESTATION_CHARS: usize = 1000;

/// A run's overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, not started.
    Pending,
    /// Steps are executing.
    Running,
    /// Waiting for an approver (a destructive step is next).
    AwaitingApproval,
    /// Paused by an operator.
    Paused,
    /// Finished: every pool done.
    Succeeded,
    /// Finished: a pool failed and the run stopped.
    Failed,
    /// Finished: an operator aborted it.
    Aborted,
}

impl RunStatus {
    /// Whether the run is over (a new leader does not resume it).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Aborted
        )
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Its id.
    pub id: RunId,
    /// What it does.
    pub spec: RunSpec,
    /// Where it is.
    pub status: RunStatus,
    /// Why it is in that status (failure message, who paused it), when there is a reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// The leader epoch that created it.
    pub created_epoch: Epoch,
    /// Creation time, Unix milliseconds.
    pub created_unix_ms: u64,
    /// Last change, Unix milliseconds.
    pub updated_unix_ms: u64,
}

/// Where one step of one pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Probe, action or verify in progress (after a leader change: outcome to be resolved
    /// through the agent's journal, then by probing).
    Running,
    /// Destructive and waiting for an approval.
    AwaitingApproval,
    /// Done (acted, or the probe found the goal already true).
    Succeeded,
    /// Failed after its retries.
    Failed,
    /// Not applicable to this pool (FB-2 without mirroring).
    Skipped,
}

/// One pool's progress within a run: the engine saves it before and after each side effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolState {
    /// The pool FQDN (one of the run's pools).
    pub pool: String,
    /// Current step name (`fb3_backup`...).
    pub step: String,
    /// Attempt number of that step (1 for the first).
    pub attempt: u32,
    /// Operation ids sent for this attempt (`run/pool/step/attempt[/n]`).
    pub op_ids: Vec<String>,
    /// Step status.
    pub status: StepStatus,
    /// Small step outputs (file names, LSNs, checksums) as JSON.
    pub outputs: serde_json::Value,
    /// Last change, Unix milliseconds (set by the store).
    #[serde(default)]
    pub updated_unix_ms: u64,
}

/// One audit record: every transition and every operator call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the run's trail, from 1, without gaps.
    pub seq: u64,
    /// When, Unix milliseconds.
    pub at_unix_ms: u64,
    /// Who: a certificate name, or `coordinator:<name>` for the engine itself.
    pub caller: String,
    /// What, as a short event name (`run.created`, `step.started`, `approve`).
    pub event: String,
    /// Details as small JSON.
    pub details: serde_json::Value,
}

/// A run with its pools' states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSnapshot {
    /// The run record.
    pub run: RunRecord,
    /// Pool states saved so far, by pool.
    pub pools: BTreeMap<String, PoolState>,
}

/// What the runbook engine persists. Writes fail with [`Error::Deposed`] when this coordinator
/// no longer leads (etcd: checked by etcd in the same transaction), [`Error::NotFound`] for an
/// unknown run, [`Error::AlreadyExists`] for a reused run id, [`Error::InvalidInput`] for a pool
/// outside the run or a value over [`MAX_VALUE_BYTES`], [`Error::Store`] when the backend
/// failed.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// "etcd" or "file", for logs.
    fn backend(&self) -> &'static str;

    /// Creates run `id` in status [`RunStatus::Pending`].
    async fn create_run(&self, id: &RunId, spec: RunSpec) -> Result<RunRecord, Error>;

    /// Sets a run's status (and reason); returns the updated record.
    async fn set_run_status(
        &self,
        id: &RunId,
        status: RunStatus,
        reason: Option<String>,
    ) -> Result<RunRecord, Error>;

    /// Saves one pool's step state (replacing the previous one of that pool).
    async fn save_pool_state(&self, id: &RunId, state: PoolState) -> Result<(), Error>;

    /// Appends an audit record to run `id`; the store assigns the next sequence number and the
    /// time.
    async fn append_audit(
        &self,
        id: &RunId,
        caller: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<AuditRecord, Error>;

    /// Saves one pool's step state and appends the audit record of that change in one write:
    /// both land or neither (issue #12, truth: a crash or deposition between a save and its
    /// append left a step's state without its audit record). Fails as the two would.
    async fn save_pool_state_audited(
        &self,
        id: &RunId,
        state: PoolState,
        caller: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<AuditRecord, Error>;

    /// One run with its pools, if it exists.
    async fn get_run(&self, id: &RunId) -> Result<Option<RunSnapshot>, Error>;

    /// Up to `limit` runs, newest first (history).
    async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, Error>;

    /// Every run not finished, oldest first, with its pools: what a new leader resumes.
    async fn load_unfinished(&self) -> Result<Vec<RunSnapshot>, Error>;

    /// A run's audit trail in sequence order.
    async fn audit(&self, id: &RunId) -> Result<Vec<AuditRecord>, Error>;
}

/// Shared handle.
pub type RunStoreRef = Arc<dyn RunStore>;

/// Encodes a value, refusing anything over [`MAX_VALUE_BYTES`].
pub(crate) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, Error> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| Error::Internal(format!("encode {what}: {e}")))?;
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(Error::InvalidInput(format!(
            "{what} is {} bytes encoded; the run store keeps values under {MAX_VALUE_BYTES} bytes (put large evidence in a file and record its path)",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes a stored value; a value that does not decode is corruption, reported with its key.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Internal(format!("run store: value of '{key}' does not decode: {e}")))
}

/// Checks a spec before it is stored: pools valid, unique, at least one; a caller named.
pub(crate) fn validate_spec(spec: &RunSpec) -> Result<(), Error> {
    if spec.pools.is_empty() {
        return Err(Error::InvalidInput("a run needs at least one pool".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &spec.pools {
        keys::validate_segment("pool", p).map_err(Error::InvalidInput)?;
        if !seen.insert(p) {
            return Err(Error::InvalidInput(format!(
                "pool '{p}' appears twice in the run"
            )));
        }
    }
    if spec.started_by.is_empty() {
        return Err(Error::InvalidInput(
            "a run needs the identity of who started it".into(),
        ));
    }
    if let Some(a) = &spec.attestation {
        crate::runbook::check_statement("the attestation", a)?;
    }
    if let Some(g) = &spec.accepted_gap {
        crate::runbook::check_gap_file(&g.file)?;
        crate::runbook::check_statement("the gap's reason", &g.reason)?;
    }
    if spec.options.max_parallel == 0 {
        return Err(Error::InvalidInput(
            "max_parallel must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Checks a pool state against its run's spec.
pub(crate) fn validate_pool_state(run: &RunRecord, state: &PoolState) -> Result<(), Error> {
    if !run.spec.pools.iter().any(|p| p == &state.pool) {
        return Err(Error::InvalidInput(format!(
            "pool '{}' is not part of run {} (pools: {})",
            state.pool,
            run.id,
            run.spec.pools.join(", ")
        )));
    }
    if state.step.is_empty() {
        return Err(Error::InvalidInput("a pool state needs a step name".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids() {
        let id = RunId::generate();
        assert_eq!(RunId::new(id.as_str()).as_ref(), Ok(&id));
        assert_eq!(id.as_str().len(), "20260101-000000-abcdef".len());
        for bad in ["", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(RunId::new(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<RunId>("\"a/b\"").is_err());
    }

    #[test]
    fn statuses_and_limits() {
        assert!(RunStatus::Aborted.is_finished());
        assert!(!RunStatus::Paused.is_finished());
        let big = serde_json::json!({ "x": "y".repeat(MAX_VALUE_BYTES) });
        assert!(matches!(
            encode("outputs", &big),
            Err(Error::InvalidInput(_))
        ));
        assert!(decode::<RunRecord>("k", b"{").is_err());
    }
}
