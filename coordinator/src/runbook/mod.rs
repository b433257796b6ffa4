//! The runbook engine (DESIGN §5; GreptimeDB's procedure framework, style.md §3): a run is a
//! persisted, resumable state machine per pool, driven only by the leader.
//!
//! Layout:
//! - this file — the vocabulary: [`Step`] (probe / action / verify, timeout, retry budget,
//!   destructive flag), [`StepError`] and its classes, [`Probe`], [`PlannedOp`], and the narrow
//!   [`AgentOps`] trait over `Registry::instruct` that steps talk to (faked in the unit tests).
//! - [`context`] — [`context::StepCtx`]: what a step sees (its pool, the earlier steps' outputs,
//!   operation helpers that persist op ids *before* sending and turn agent answers into
//!   [`StepError`] classes).
//! - [`engine`] — [`engine::Engine`]: a `LeadershipListener`; on leader start it loads unfinished
//!   runs and resumes them; runs pools in waves; approvals, pause, resume, abort; every
//!   transition and operator call goes to the run's audit trail.
//! - [`failback`] — the failback runbook, one file per step (FB-1..FB-7).
//! - [`failover`] — the failover runbook, one file per step (FO-1..FO-7).
//! - [`activation`] — the latency-gated activation FB-6 and FO-7 share.
//!
//! Why steps are trait objects rather than the serde-tagged enum style.md sketches: the engine is
//! unit-tested with steps that exist only in tests (fault injection, counters), and a step's
//! persisted state is just its name, attempt and JSON outputs ([`crate::store::PoolState`]), so
//! nothing needs to deserialise into a step type. The failback set itself is closed
//! ([`failback::steps`]).
//!
//! When you change the step contract, also touch `failback/*.rs`, `failover/*.rs`, `engine_tests/fake.rs` and `failover_tests/fake.rs`.

pub mod context;
pub mod decisions;
pub mod engine;
pub mod failback;

pub mod activation;
pub mod failover;
pub mod records;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod failover_tests;
mod test_fleet;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::{AgentId, Epoch, OpId};
use failback_proto::pb;
use serde::Serialize;

use crate::config::RunbookConfig;
use crate::error::Error;
use crate::topology::Pool;

pub use context::StepCtx;
pub use decisions::{StartDecisions, check_gap_file, check_statement};

/// How the engine treats a step failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// May succeed on a new attempt (new op ids) — bounded by [`Step::max_attempts`].
    Retry,
    /// Needs a person: the pool stops as failed.
    Fatal,
    /// An operation's outcome is unknown (the agent restarted mid-operation): the engine resolves
    /// it with the step's probe, never by acting again blindly.
    Unknown,
    /// A newer leader exists: stop all work of this term without writing anything.
    Deposed,
    /// The run was aborted while the step waited.
    Aborted,
}

/// A step failure with its class and a sentence for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// How the engine reacts.
    pub class: ErrorClass,
    /// What happened.
    pub message: String,
    /// The SQL Server error number the agent reported (its `sql_error`), kept typed so a step
    /// decides on it (FO-3 on 4305 and 4326) without reading it back out of the message (issue
    /// #13).
    pub sql_error: Option<u32>,
}

impl StepError {
    /// A failure of `class`.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        StepError {
            class,
            message: message.into(),
            sql_error: None,
        }
    }
    /// A failure a new attempt may fix.
    pub fn retry(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Retry, message)
    }
    /// A failure that stops the pool.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Fatal, message)
    }
    /// An operation whose outcome is unknown.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unknown, message)
    }
    /// A newer leader exists.
    pub fn deposed(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Deposed, message)
    }
    /// The run was aborted (or leadership ended) while the step waited.
    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Aborted, message)
    }
    /// The same failure, carrying SQL Server error `number`.
    #[must_use]
    pub fn with_sql_error(mut self, number: u32) -> Self {
        self.sql_error = Some(number);
        self
    }
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The step's goal already holds: done without acting (the value is recorded as its output).
    Done(serde_json::Value),
    /// The step does not apply to this pool (FB-2 without mirroring): skipped, with the reason.
    NotApplicable(String),
    /// The action must run.
    Needed,
}

/// One operation a step would send, for `plan` (dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedOp {
    /// Agent that would run it.
    pub agent: String,
    /// Operation name (`backup_database`, `set_active_servers`…).
    pub operation: String,
    /// The T-SQL or cmdlet it amounts to, or the condition under which it is sent.
    pub detail: String,
}

impl PlannedOp {
    /// Shorthand.
    pub fn new(agent: &AgentId, operation: &str, detail: impl Into<String>) -> Self {
        PlannedOp {
            agent: agent.to_string(),
            operation: operation.to_string(),
            detail: detail.into(),
        }
    }
}

/// One step of a runbook. Every method must be idempotent: after a leader change the engine may
/// call `act` again for the same attempt, and every action operation then carries the same op
/// id, which the agent's journal answers without re-running.
#[async_trait]
pub trait Step: Send + Sync {
    /// Stable name persisted in the run store (`fb3_backup`).
    fn name(&self) -> &'static str;

    /// One line for operators.
    fn title(&self) -> &'static str;

    /// Destructive steps need the run's approval (DESIGN §5).
    fn destructive(&self) -> bool {
        false
    }

    /// Upper bound for one attempt (probe + action + verify).
    fn timeout(&self, config: &RunbookConfig) -> Duration;

    /// Attempts allowed for [`ErrorClass::Retry`] failures (1 = no retry).
    fn max_attempts(&self) -> u32 {
        3
    }

    /// What the step would do for `pool` (no side effect, no agent call).
    fn plan(&self, pool: &Pool) -> Vec<PlannedOp>;

    /// Is the goal already true? Read-only.
    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError>;

    /// Make the goal true; returns the outputs to record (file names, LSNs, checksums).
    async fn act(&self, ctx: &StepCtx) -> Result<serde_json::Value, StepError>;

    /// Check the postcondition after `act` (given its output); returns the output to record.
    async fn verify(
        &self,
        ctx: &StepCtx,
        output: serde_json::Value,
    ) -> Result<serde_json::Value, StepError>;
}

/// Shared step handle.
pub type StepRef = Arc<dyn Step>;

/// The narrow slice of the agent registry the engine needs (faked in unit tests).
#[async_trait]
pub trait AgentOps: Send + Sync {
    /// Sends `operation` as `op_id` at `epoch` and waits up to `timeout` for the result.
    /// `Timeout` / `AgentUnavailable` mean the outcome is unknown: ask again with the same op id.
    async fn instruct(
        &self,
        agent: &AgentId,
        op_id: &OpId,
        epoch: Epoch,
        operation: pb::Operation,
        timeout: Duration,
    ) -> Result<pb::OperationResult, Error>;

    /// Whether `agent` has a session now (for choosing among equivalent agents and for plan
    /// findings).
    fn is_connected(&self, agent: &AgentId) -> bool;

    /// Whether `agent` is an agent of the topology at all.
    fn is_known(&self, agent: &AgentId) -> bool;
}

/// Shared handle.
pub type AgentOpsRef = Arc<dyn AgentOps>;

#[async_trait]
impl AgentOps for crate::registry::Registry {
    async fn instruct(
        &self,
        agent: &AgentId,
        op_id: &OpId,
        epoch: Epoch,
        operation: pb::Operation,
        timeout: Duration,
    ) -> Result<pb::OperationResult, Error> {
        crate::registry::Registry::instruct(self, agent, op_id, epoch, operation, timeout).await
    }

    fn is_connected(&self, agent: &AgentId) -> bool {
        self.list()
            .iter()
            .any(|a| a.connected && a.id == agent.as_str())
    }

    fn is_known(&self, agent: &AgentId) -> bool {
        self.datacenter(agent).is_some()
    }
}

/// Short operation name of an operation (for plans, audit and logs): the catalogue name the
/// agent's journal writes too, from the one place that knows it (the model).
pub fn operation_name(op: &pb::Operation) -> &'static str {
    match op
        .kind
        .clone()
        .map(failback_proto::model::Operation::try_from)
    {
        None => "none",
        Some(Ok(o)) => o.name(),
        Some(Err(_)) => "invalid",
    }
}

/// What a run of `kind` that stopped before its end leaves behind, per pool record `outputs`
/// (one sentence each; a drill's record holds both runbooks' steps, so both lists apply).
pub fn left_behind(kind: crate::store::RunbookKind, outputs: &serde_json::Value) -> Vec<String> {
    use crate::store::RunbookKind as K;
    match kind {
        K::Failback => failback::left::left_behind(outputs),
        K::Failover => failover::left::left_behind(outputs),
        K::Drill => {
            let mut all = failover::left::left_behind(outputs);
            all.extend(failback::left::left_behind(outputs));
            all
        }
    }
}
