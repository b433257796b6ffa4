//! What a step sees while it runs: its pool, attempt and epoch, the outputs of earlier steps,
//! and two ways to talk to agents.
//!
//! - [`StepCtx::act`] sends an *action* with the deterministic op id `run/pool/step/attempt/label`
//!   after the engine has persisted that id in the pool's state (the "save before side effect"
//!   rule): after a crash the new leader knows which operations may have run and asks again with
//!   the same ids, which the agent's journal answers without running them twice.
//! - [`StepCtx::read`] sends a read-only operation with a fresh id (`…/r<epoch>.<n>`) so probes
//!   and verifications always see the current state, never a journaled answer.
//!
//! Both classify the agent's answer: transport trouble (no session, no answer in time, "still
//! in progress") is waited out by asking again with the *same* id until the step's timeout;
//! `STALE_EPOCH` means deposed; `INTERRUPTED` means the outcome is unknown (resolved by the
//! step's probe); other errors are retryable or fatal as the agent says.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::{AgentId, Epoch, OpId};
use failback_proto::pb;
use tokio_util::sync::CancellationToken;

use super::{AgentOpsRef, StepError, operation_name};
use crate::config::RunbookConfig;
use crate::error::Error;
use crate::store::{AcceptedGap, RunId};
use crate::topology::Pool;

/// Persists an action's op id before it is sent (implemented by the engine over the run store).
#[async_trait]
pub trait OpLog: Send + Sync {
    /// Adds `op_id` to the pool's recorded op ids and saves the pool state.
    async fn record(&self, op_id: &OpId) -> Result<(), Error>;
}

/// How long to wait between asking again about an operation whose answer did not come.
const REASK_DELAY: Duration = Duration::from_secs(1);
/// Timeout of one read-only operation.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The context of one attempt of one step for one pool.
pub struct StepCtx {
    /// The run.
    pub run: RunId,
    /// The pool (from the topology).
    pub pool: Arc<Pool>,
    /// The step's name.
    pub step: &'static str,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The leader epoch stamped on every instruction.
    pub epoch: Epoch,
    /// Runbook settings.
    pub config: Arc<RunbookConfig>,
    prior: serde_json::Map<String, serde_json::Value>,
    agents: AgentOpsRef,
    log: Arc<dyn OpLog>,
    reads: Arc<AtomicU64>,
    cancel: CancellationToken,
    accepted_gap: Option<AcceptedGap>,
    earlier: EarlierRuns,
}

/// Reads a pool's earlier runs from the run store (the engine's `history::earlier_runs`).
pub type EarlierLoader =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Arc<Vec<EarlierRun>>> + Send + Sync>;

/// A pool's earlier runs, read on first use and kept for the rest of its part of the run.
/// Why lazily: reading them means listing the store and loading every finished run of the
/// pool, and only FB-8 (the last failback step) needs them; a failover, or a failback that
/// stops before FB-8, never pays for it.
#[derive(Clone, Default)]
pub struct EarlierRuns {
    loader: Option<EarlierLoader>,
    cell: Arc<tokio::sync::OnceCell<Arc<Vec<EarlierRun>>>>,
}

impl EarlierRuns {
    /// Runs that `loader` reads when a step first asks.
    pub fn lazy(loader: EarlierLoader) -> Self {
        EarlierRuns {
            loader: Some(loader),
            cell: Arc::default(),
        }
    }

    async fn get(&self) -> Arc<Vec<EarlierRun>> {
        self.cell
            .get_or_init(|| async {
                match &self.loader {
                    Some(load) => load().await,
                    None => Arc::new(Vec::new()),
                }
            })
            .await
            .clone()
    }
}

/// A finished, succeeded run of the same kind for the same pool, as the run store recorded it:
/// what a step may clean up after (FB-8's retention).
#[derive(Debug, Clone)]
pub struct EarlierRun {
    /// Its id.
    pub id: RunId,
    /// When it was created, Unix ms.
    pub created_unix_ms: u64,
    /// This pool's step outputs in it, by step name.
    pub outputs: serde_json::Map<String, serde_json::Value>,
}

impl StepCtx {
    /// Builds a context (the engine's job; tests build one too).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run: RunId,
        pool: Arc<Pool>,
        step: &'static str,
        attempt: u32,
        epoch: Epoch,
        config: Arc<RunbookConfig>,
        prior: serde_json::Map<String, serde_json::Value>,
        agents: AgentOpsRef,
        log: Arc<dyn OpLog>,
        reads: Arc<AtomicU64>,
        cancel: CancellationToken,
    ) -> Self {
        StepCtx {
            run,
            pool,
            step,
            attempt,
            epoch,
            config,
            prior,
            agents,
            log,
            reads,
            cancel,
            accepted_gap: None,
            earlier: EarlierRuns::default(),
        }
    }

    /// The pool's earlier succeeded runs of this kind, newest first.
    #[must_use]
    pub fn with_earlier_runs(mut self, earlier: EarlierRuns) -> Self {
        self.earlier = earlier;
        self
    }

    /// The pool's earlier succeeded runs of this kind, newest first (empty when the engine
    /// could not read them: nothing that depends on them is then done). Read from the store on
    /// the first call of the pool's part of the run.
    pub async fn earlier_runs(&self) -> Arc<Vec<EarlierRun>> {
        self.earlier.get().await
    }

    /// The run's accepted gap in the log chain (an approver's decision recorded in its spec).
    #[must_use]
    pub fn with_accepted_gap(mut self, gap: Option<AcceptedGap>) -> Self {
        self.accepted_gap = gap;
        self
    }

    /// The gap in the log chain whose loss the run's approver accepted, if any (FO-3).
    pub fn accepted_gap(&self) -> Option<&AcceptedGap> {
        self.accepted_gap.as_ref()
    }

    /// The recorded output of an earlier step of this pool.
    pub fn prior(&self, step: &str) -> Option<&serde_json::Value> {
        self.prior.get(step)
    }

    /// The typed record of the earlier step that writes `R` (None: it recorded nothing); a
    /// record that does not read as `R` is an error naming the step.
    pub fn prior_record<R: super::records::StepRecord>(&self) -> Result<Option<R>, StepError> {
        self.prior(R::STEP).map(R::from_output).transpose()
    }

    /// The deterministic op id of action `label` in this attempt.
    pub fn op_id(&self, label: &str) -> Result<OpId, StepError> {
        OpId::new(format!(
            "{}/{}/{}/{}/{label}",
            self.run, self.pool.fqdn, self.step, self.attempt
        ))
        .map_err(StepError::fatal)
    }

    /// The first connected agent of `candidates`, else the first (the engine then waits for it
    /// to connect, within the step's timeout).
    pub fn pick_agent(&self, candidates: &[AgentId]) -> Result<AgentId, StepError> {
        candidates
            .iter()
            .find(|a| self.agents.is_connected(a))
            .or_else(|| candidates.first())
            .cloned()
            .ok_or_else(|| StepError::fatal("no agent is configured for this"))
    }

    /// Whether `agent` has a session now.
    pub fn is_connected(&self, agent: &AgentId) -> bool {
        self.agents.is_connected(agent)
    }

    /// Whether `agent` is an agent of the topology.
    pub fn pool_has_agent(&self, agent: &AgentId) -> bool {
        self.agents.is_known(agent)
    }

    /// Sends an action (op id persisted first; same id on every re-ask).
    pub async fn act(
        &self,
        agent: &AgentId,
        label: &str,
        operation: pb::Operation,
        timeout: Duration,
    ) -> Result<pb::operation_output::Kind, StepError> {
        let op_id = self.op_id(label)?;
        self.log.record(&op_id).await.map_err(store_error)?;
        tracing::info!(run = %self.run, pool = %self.pool.fqdn, step = self.step, %agent, op = %op_id, operation = operation_name(&operation), "sending action");
        self.send(agent, &op_id, operation, timeout).await
    }

    /// Sends a read-only operation with a fresh op id.
    pub async fn read(
        &self,
        agent: &AgentId,
        operation: pb::Operation,
    ) -> Result<pb::operation_output::Kind, StepError> {
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        let op_id = OpId::new(format!(
            "{}/{}/{}/{}/r{}.{n}",
            self.run, self.pool.fqdn, self.step, self.attempt, self.epoch
        ))
        .map_err(StepError::fatal)?;
        self.send(agent, &op_id, operation, READ_TIMEOUT).await
    }

    /// Sleeps, unless the run is aborted or leadership ends first.
    pub async fn sleep(&self, d: Duration) -> Result<(), StepError> {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(StepError::aborted("stopped while waiting")),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    async fn send(
        &self,
        agent: &AgentId,
        op_id: &OpId,
        operation: pb::Operation,
        timeout: Duration,
    ) -> Result<pb::operation_output::Kind, StepError> {
        use pb::ErrorKind as K;
        let name = operation_name(&operation);
        let watch_abort =
            !failback_proto::test_break::broken(failback_proto::test_break::WAIT_IGNORES_ABORT);
        loop {
            // The wait watches the run's token (issue #12, hang): an abort, or the end of
            // leadership, stops the step now instead of after the operation's timeout. What
            // the agent does meanwhile is recorded in its journal under this op id.
            let answer = tokio::select! {
                _ = self.cancel.cancelled(), if watch_abort => {
                    return Err(StepError::aborted(format!(
                        "stopped while waiting for {name} on '{agent}' (op {op_id}); its outcome is in the agent's journal under that op id"
                    )));
                }
                a = self.agents.instruct(agent, op_id, self.epoch, operation.clone(), timeout) => a,
            };
            match answer {
                Err(Error::Deposed(m)) => return Err(StepError::deposed(m)),
                Err(e @ (Error::AgentUnavailable(_) | Error::Timeout(_))) => {
                    // Outcome unknown or not sent: ask again with the same id (journal).
                    tracing::warn!(%agent, op = %op_id, "{name}: {e}; asking again with the same op id");
                }
                Err(e) => return Err(StepError::fatal(format!("{name} on '{agent}': {e}"))),
                Ok(result) => match result.outcome {
                    Some(pb::operation_result::Outcome::Output(out)) => {
                        return out.kind.ok_or_else(|| {
                            StepError::fatal(format!("{name} on '{agent}': empty output"))
                        });
                    }
                    None => {
                        return Err(StepError::fatal(format!(
                            "{name} on '{agent}': result without outcome"
                        )));
                    }
                    Some(pb::operation_result::Outcome::Error(e)) => match e.kind() {
                        K::InProgress => {}
                        K::StaleEpoch => {
                            return Err(StepError::deposed(format!(
                                "agent '{agent}' has seen a newer leader: {}",
                                e.message
                            )));
                        }
                        K::Interrupted => {
                            return Err(StepError::unknown(format!(
                                "{name} on '{agent}' (op {op_id}) was interrupted; its outcome is unknown: {}",
                                e.message
                            )));
                        }
                        _ => {
                            // The number stays typed in the error (`sql_error`); the message
                            // shows it once (the agent's text names it too).
                            let (sql, text) = if e.sql_error != 0 {
                                (
                                    format!(" (SQL Server error {})", e.sql_error),
                                    e.message.replace(
                                        &format!("SQL Server error {}: ", e.sql_error),
                                        "",
                                    ),
                                )
                            } else {
                                (String::new(), e.message.clone())
                            };
                            let message = format!("{name} on '{agent}' failed{sql}: {text}");
                            let err = if e.retryable {
                                StepError::retry(message)
                            } else {
                                StepError::fatal(message)
                            };
                            return Err(match e.sql_error {
                                0 => err,
                                n => err.with_sql_error(n),
                            });
                        }
                    },
                },
            }
            self.sleep(REASK_DELAY).await?;
        }
    }
}

fn store_error(e: Error) -> StepError {
    match e {
        Error::Deposed(m) => StepError::deposed(m),
        // Not sent: the op id may or may not be recorded; a new attempt is safe.
        other => StepError::retry(format!(
            "could not record the operation before sending it: {other}"
        )),
    }
}
