//! The engine: drives runs on the leader, persists every transition through the [`RunStore`]
//! before the side effect it announces, and resumes unfinished runs when a new term starts.
//!
//! Life cycle (a [`LeadershipListener`]): `on_leader_start(epoch)` opens a *term* (a cancellation
//! token and a task tracker), loads every unfinished run and spawns one driver per run;
//! `on_leader_stop` cancels the term and waits for its tasks. Nothing outside the engine checks
//! `is_leader`; operator calls outside a term fail with `NotLeader`.
//!
//! A run's pools go in **waves**: the first pool alone (the canary), then batches of
//! `max_parallel`. A failed pool stops the run after its wave unless `continue_on_failure`.
//!
//! One pool is a state machine over the runbook's steps, persisted as [`PoolState`]
//! (`step`, `attempt`, `op_ids`, `status`, `outputs`). One attempt of a step:
//! 1. save `Running` (new attempt: empty op ids) — before anything is sent;
//! 2. fresh attempt: **probe** (goal already true → `Succeeded` without acting; not applicable →
//!    `Skipped`); resumed attempt with recorded op ids: skip the probe and go to 4, so each
//!    recorded operation is asked again with the **same op id** (the agent's journal answers);
//! 3. destructive step: wait for the run's approval (`AwaitingApproval`);
//! 4. **act** (each action's op id persisted before it is sent); an operation whose outcome is
//!    unknown (`INTERRUPTED`: the agent restarted mid-operation) is resolved by the **probe**:
//!    goal true → done; otherwise a non-destructive step retries with a new attempt and a
//!    destructive one fails the pool for a person to decide — never a blind repeat;
//! 5. **verify** the postcondition; save `Succeeded` with the outputs.
//!
//! Failures: `Retry` → a new attempt after `retry_backoff`, up to `max_attempts`; `Fatal`,
//! exhausted retries or the step timeout → the pool `Failed`; `Deposed` → stop without writing.
//!
//! Operator calls (start, approve, pause, resume, abort) are audited with the caller's
//! certificate name *before* they take effect; the engine's own transitions are audited as
//! `coordinator:<name>`. Pause and abort take effect at step boundaries (and while waiting for
//! sessions or an approval): an operation already sent is never cancelled halfway.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use failback_proto::model::{AgentId, Epoch, OpId};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::context::OpLog;
use super::{
    AgentOpsRef, ErrorClass, PlannedOp, Probe, StartDecisions, StepCtx, StepError, StepRef,
};
use crate::config::RunbookConfig;
use crate::error::Error;
use crate::leader::LeadershipListener;
use crate::metrics::RunMetrics;
use crate::store::{
    AuditRecord, PoolState, RunId, RunOptions, RunRecord, RunSnapshot, RunSpec, RunStatus,
    RunStoreRef, RunbookKind, StepStatus, unix_ms,
};
use crate::topology::{Pool, Topology};

mod drive;
mod history;

/// How long a start waits for a finished run to let go of its pools.
const FINISHING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Step name saved for a pool that finished every step.
pub const END_STEP: &str = "done";

/// Builds the steps of a runbook kind (the failback set in production; test steps in tests).
pub type RunbookFactory =
    Arc<dyn Fn(RunbookKind, &RunbookConfig) -> Result<Vec<StepRef>, Error> + Send + Sync>;

/// Who makes an operator call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Certificate name.
    pub name: String,
    /// Whether the certificate has the approver role.
    pub approver: bool,
}

/// One step of one pool in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// Pool FQDN.
    pub pool: String,
    /// Step name.
    pub step: String,
    /// Step title.
    pub title: String,
    /// Whether it needs an approval.
    pub destructive: bool,
    /// What it would send.
    pub operations: Vec<PlannedOp>,
}

/// A dry run: steps and preflight findings.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Every step of every pool, in execution order per pool.
    pub steps: Vec<PlannedStep>,
    /// Problems found without changing anything (unconnected agents…).
    pub findings: Vec<String>,
    /// Waves the pools would run in.
    pub waves: Vec<Vec<String>>,
}

/// Splits pools into waves: the canary alone, then batches of `max_parallel`.
pub fn waves(pools: &[String], max_parallel: u32) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let Some((canary, rest)) = pools.split_first() else {
        return out;
    };
    out.push(vec![canary.clone()]);
    let n = usize::try_from(max_parallel.max(1)).unwrap_or(1);
    for chunk in rest.chunks(n) {
        out.push(chunk.to_vec());
    }
    out
}

/// Why a failover needs an operator's attestation (the refusal's text).
pub const ATTESTATION_REQUIRED: &str = "a failover needs the operator's attestation that the primary data center is down (failbackctl run failover --attest-primary-down \"reason\"): the coordinator and the backup data center cannot tell a dead primary site from a cut link between the sites, and failing over a primary that is still serving would leave two writable mgc databases; only a person who has confirmed the outage can decide";

/// Checks the attestation against the runbook: required (non-blank) for a failover, refused
/// for the others (it would be recorded as evidence of something nobody checked). Returns it
/// trimmed.
pub fn check_attestation(
    kind: RunbookKind,
    attestation: Option<String>,
) -> Result<Option<String>, Error> {
    let attestation = attestation
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    match (kind, attestation) {
        (RunbookKind::Failover, None) => Err(Error::InvalidInput(ATTESTATION_REQUIRED.into())),
        (RunbookKind::Failover, Some(a)) => {
            super::check_statement("the attestation", &a)?;
            Ok(Some(a))
        }
        (_, None) => Ok(None),
        (other, Some(_)) => Err(Error::InvalidInput(format!(
            "--attest-primary-down belongs to failover runs; a {other:?} run takes no attestation"
        ))),
    }
}

/// The runbook engine (cheap to clone).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    topology: Arc<Topology>,
    agents: AgentOpsRef,
    config: Arc<RunbookConfig>,
    factory: RunbookFactory,
    store: watch::Sender<Option<RunStoreRef>>,
    term: Mutex<Option<Term>>,
    reads: Arc<AtomicU64>,
    /// Where run and step metrics go (set once by the coordinator; unexposed by default).
    metrics: std::sync::OnceLock<RunMetrics>,
}

struct Term {
    epoch: Epoch,
    cancel: CancellationToken,
    tasks: TaskTracker,
    runs: HashMap<RunId, Arc<RunHandle>>,
    loading: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Control {
    paused: bool,
    aborted: bool,
    approved: bool,
}

struct RunHandle {
    id: RunId,
    spec: RunSpec,
    control: watch::Sender<Control>,
    /// Serialises run-status writes; holds the last status written.
    status: tokio::sync::Mutex<RunStatus>,
    awaiting: std::sync::atomic::AtomicUsize,
    finished: std::sync::atomic::AtomicBool,
    cancel: CancellationToken,
}

enum PoolEnd {
    Succeeded,
    Failed(String),
    /// Aborted or deposed: nothing more to write.
    Stopped,
}

enum AttemptEnd {
    Done(Value, &'static str),
    Skipped(String),
}

/// Stop driving: the run was aborted, the term ended, or we were deposed.
struct Stopped;

impl Engine {
    /// An engine for `topology`, talking to agents through `agents`, with the failback runbook.
    pub fn new(
        name: &str,
        topology: Arc<Topology>,
        agents: AgentOpsRef,
        config: RunbookConfig,
    ) -> Self {
        Self::with_factory(
            name,
            topology,
            agents,
            config,
            Arc::new(super::failback::runbook),
        )
    }

    /// Same with another set of runbooks (tests).
    pub fn with_factory(
        name: &str,
        topology: Arc<Topology>,
        agents: AgentOpsRef,
        config: RunbookConfig,
        factory: RunbookFactory,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                name: name.to_string(),
                topology,
                agents,
                config: Arc::new(config),
                factory,
                store: watch::Sender::new(None),
                term: Mutex::new(None),
                reads: Arc::new(AtomicU64::new(0)),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Hands the engine its run store (known only after leadership started in standalone mode;
    /// a term that started earlier waits for it).
    pub fn set_store(&self, store: RunStoreRef) {
        self.inner.store.send_replace(Some(store));
    }

    /// Records run and step metrics into `metrics` (the coordinator's registry); call before
    /// leadership starts. A second call is ignored.
    pub fn set_run_metrics(&self, metrics: RunMetrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    fn run_metrics(&self) -> &RunMetrics {
        self.inner.metrics.get_or_init(RunMetrics::default)
    }

    fn store(&self) -> Result<RunStoreRef, Error> {
        self.inner
            .store
            .borrow()
            .clone()
            .ok_or_else(|| Error::Store("the run store is not open yet; try again".into()))
    }

    fn term<T>(&self, f: impl FnOnce(&mut Term) -> Result<T, Error>) -> Result<T, Error> {
        let mut guard = self
            .inner
            .term
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_mut() {
            Some(t) => f(t),
            None => Err(Error::NotLeader { hint: None }),
        }
    }

    /// Waits (up to 10 s) for the term's unfinished runs to be loaded, so operator calls made
    /// right after an election see them.
    async fn wait_loaded(&self) -> Result<(), Error> {
        for _ in 0..200 {
            if !self.term(|t| Ok(t.loading))? {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(Error::Store(
            "the leader is still loading unfinished runs; try again".into(),
        ))
    }

    fn engine_caller(&self) -> String {
        format!("coordinator:{}", self.inner.name)
    }

    // ------------------------------------------------------------------ operator calls

    /// Starts a run of `kind` over `pools` (empty = every pool of the topology, in file order).
    pub async fn start_run(
        &self,
        caller: &Caller,
        kind: RunbookKind,
        pools: Vec<String>,
        options: RunOptions,
    ) -> Result<RunId, Error> {
        self.start_run_attested(caller, kind, pools, options, StartDecisions::default())
            .await
    }

    /// [`Engine::start_run`] with what the caller decided: the operator's attestation that the
    /// primary data center is down (required for a failover, refused without it, see
    /// [`check_attestation`]; refused for other runbooks) and an approver's acceptance of a gap
    /// in the log chain ([`crate::runbook::decisions`]). Recorded in the run's spec and in its
    /// `run.created`, `run.attested` and `run.gap_accepted` audit records with the caller's
    /// certificate name.
    pub async fn start_run_attested(
        &self,
        caller: &Caller,
        kind: RunbookKind,
        pools: Vec<String>,
        options: RunOptions,
        decisions: StartDecisions,
    ) -> Result<RunId, Error> {
        let pools = self.resolve_pools(pools)?;
        (self.inner.factory)(kind, &self.inner.config)?;
        let attestation = check_attestation(kind, decisions.attestation)?;
        let accepted_gap = crate::runbook::decisions::accepted_gap(
            kind,
            decisions.accept_gap,
            &caller.name,
            caller.approver,
        )?;
        self.wait_loaded().await?;
        if options.approved_at_start && !caller.approver {
            return Err(Error::PermissionDenied(format!(
                "certificate '{}' does not have the approver role; --yes (approval at start) needs it",
                caller.name
            )));
        }
        let store = self.store()?;
        // A run whose end is already saved still holds its pools until its task has let go of
        // them (an aborted run's last operation may still be in flight). A start right after
        // "succeeded" waits for that, briefly, rather than being refused by a run the operator
        // was just told is finished.
        let deadline = tokio::time::Instant::now() + FINISHING_WAIT;
        let (epoch, cancel) = loop {
            let may_wait = tokio::time::Instant::now() < deadline;
            let free = self.term(|t| {
                if t.loading {
                    return Err(Error::Store(
                        "the leader is still loading unfinished runs; try again".into(),
                    ));
                }
                for h in t.runs.values() {
                    if let Some(p) = h.spec.pools.iter().find(|p| pools.contains(p)) {
                        if may_wait && h.finished.load(std::sync::atomic::Ordering::SeqCst) {
                            return Ok(None);
                        }
                        return Err(Error::InvalidInput(format!(
                            "pool '{p}' is already part of unfinished run {}; wait for it, or abort it",
                            h.id
                        )));
                    }
                }
                Ok(Some((t.epoch, t.cancel.clone())))
            })?;
            match free {
                Some(f) => break f,
                None => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        let id = RunId::generate();
        let spec = RunSpec {
            kind,
            pools: pools.clone(),
            options: options.clone(),
            started_by: caller.name.clone(),
            attestation: attestation.clone(),
            accepted_gap: accepted_gap.clone(),
        };
        store.create_run(&id, spec.clone()).await?;
        store
            .append_audit(
                &id,
                &caller.name,
                "run.created",
                json!({ "kind": kind, "pools": pools, "options": options, "epoch": epoch.0, "attestation": attestation }),
            )
            .await?;
        if let Some(a) = &attestation {
            store
                .append_audit(
                    &id,
                    &caller.name,
                    "run.attested",
                    json!({ "primary_down": a, "attested_by": caller.name }),
                )
                .await?;
        }
        if let Some(g) = &accepted_gap {
            store
                .append_audit(
                    &id,
                    &caller.name,
                    "run.gap_accepted",
                    json!({ "file": g.file, "reason": g.reason, "accepted_by": g.accepted_by }),
                )
                .await?;
        }
        if options.approved_at_start {
            store
                .append_audit(
                    &id,
                    &caller.name,
                    "run.approved",
                    json!({ "at_start": true }),
                )
                .await?;
        }
        let control = Control {
            approved: options.approved_at_start,
            ..Control::default()
        };
        self.spawn_run(spec, id.clone(), control, RunStatus::Pending, &cancel)?;
        Ok(id)
    }

    fn resolve_pools(&self, pools: Vec<String>) -> Result<Vec<String>, Error> {
        let topo = &self.inner.topology;
        if pools.is_empty() {
            if topo.pools.is_empty() {
                return Err(Error::InvalidInput("the topology has no pools".into()));
            }
            return Ok(topo.pools.iter().map(|p| p.fqdn.clone()).collect());
        }
        let mut out: Vec<String> = Vec::new();
        for p in pools {
            let Some(pool) = topo.pools.iter().find(|x| x.fqdn.eq_ignore_ascii_case(&p)) else {
                let known: Vec<&str> = topo.pools.iter().map(|x| x.fqdn.as_str()).collect();
                return Err(Error::InvalidInput(format!(
                    "pool '{p}' is not in the topology (pools: {})",
                    known.join(", ")
                )));
            };
            if out.contains(&pool.fqdn) {
                return Err(Error::InvalidInput(format!(
                    "pool '{}' is named twice",
                    pool.fqdn
                )));
            }
            out.push(pool.fqdn.clone());
        }
        Ok(out)
    }

    fn handle(&self, id: &RunId) -> Result<Arc<RunHandle>, Error> {
        self.term(|t| {
            if let Some(h) = t.runs.get(id) {
                return Ok(h.clone());
            }
            if t.loading {
                return Err(Error::Store(
                    "the leader is still loading unfinished runs; try again".into(),
                ));
            }
            Err(Error::NotFound(format!("run {id} is not running")))
        })
    }

    /// Gives run `id` the approval its destructive steps need. Approver role only.
    pub async fn approve(&self, caller: &Caller, id: &RunId) -> Result<(), Error> {
        self.wait_loaded().await?;
        let store = self.store()?;
        // The role first: an operator learns they cannot approve, whatever the run's state.
        let snap = Self::lookup(&store, id).await?;
        if !caller.approver {
            store
                .append_audit(
                    id,
                    &caller.name,
                    "approve.denied",
                    json!({ "reason": "no approver role" }),
                )
                .await?;
            return Err(Error::PermissionDenied(format!(
                "certificate '{}' does not have the approver role; only an approver can approve run {id}",
                caller.name
            )));
        }
        Self::unfinished(&snap)?;
        let h = self.handle(id)?;
        store
            .append_audit(id, &caller.name, "run.approved", json!({}))
            .await?;
        h.control.send_modify(|c| c.approved = true);
        self.sync_status(&store, &h, None).await
    }

    /// Pauses run `id` at the next step boundary.
    pub async fn pause(&self, caller: &Caller, id: &RunId) -> Result<(), Error> {
        self.wait_loaded().await?;
        let store = self.store()?;
        self.existing(&store, id).await?;
        let h = self.handle(id)?;
        store
            .append_audit(id, &caller.name, "run.paused", json!({}))
            .await?;
        h.control.send_modify(|c| c.paused = true);
        self.sync_status(&store, &h, Some(format!("paused by {}", caller.name)))
            .await
    }

    /// Resumes a paused run.
    pub async fn resume(&self, caller: &Caller, id: &RunId) -> Result<(), Error> {
        self.wait_loaded().await?;
        let store = self.store()?;
        self.existing(&store, id).await?;
        let h = self.handle(id)?;
        store
            .append_audit(id, &caller.name, "run.resumed_by_operator", json!({}))
            .await?;
        h.control.send_modify(|c| c.paused = false);
        self.sync_status(&store, &h, None).await
    }

    /// Aborts run `id`: no further step starts; an operation already sent finishes.
    /// The reason says what the run leaves behind (a failback: a frozen backup `mgc`, no active
    /// chat servers…; a failover: log shipping removed, no database or no server serving the
    /// pool…), from the pools' records as the abort found them.
    pub async fn abort(&self, caller: &Caller, id: &RunId) -> Result<(), Error> {
        self.wait_loaded().await?;
        let store = self.store()?;
        let snap = self.existing(&store, id).await?;
        let mut reason = format!("aborted by {}", caller.name);
        for (pool, state) in &snap.pools {
            let mut left = crate::runbook::left_behind(snap.run.spec.kind, &state.outputs);
            if state.status == StepStatus::Running && !state.op_ids.is_empty() {
                left.push(format!(
                    "{} was running: an operation it had sent finishes on its own, so look at the instances (failbackctl inspect) before acting",
                    state.step
                ));
            }
            if !left.is_empty() {
                reason.push_str(&format!("; {pool} is left as follows: {}", left.join("; ")));
            }
        }
        let h = self.handle(id)?;
        store
            .append_audit(id, &caller.name, "run.aborted", json!({}))
            .await?;
        h.control.send_modify(|c| c.aborted = true);
        h.cancel.cancel();
        let mut last = h.status.lock().await;
        if !h.finished.swap(true, std::sync::atomic::Ordering::SeqCst) {
            store
                .set_run_status(id, RunStatus::Aborted, Some(reason))
                .await?;
            *last = RunStatus::Aborted;
        }
        Ok(())
    }

    async fn existing(&self, store: &RunStoreRef, id: &RunId) -> Result<RunSnapshot, Error> {
        let snap = Self::lookup(store, id).await?;
        Self::unfinished(&snap)?;
        Ok(snap)
    }

    async fn lookup(store: &RunStoreRef, id: &RunId) -> Result<RunSnapshot, Error> {
        store.get_run(id).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "no run {id} (run ids look like 20261126-095801-636d95; `failbackctl history` lists the runs)"
            ))
        })
    }

    fn unfinished(snap: &RunSnapshot) -> Result<(), Error> {
        if snap.run.status.is_finished() {
            return Err(Error::InvalidInput(format!(
                "run {} has already ended ({}); nothing is left to act on (`failbackctl report {}` shows what it did)",
                snap.run.id,
                crate::metrics::label(&snap.run.status),
                snap.run.id
            )));
        }
        Ok(())
    }

    /// One run with its pools and audit trail.
    pub async fn get(&self, id: &RunId) -> Result<(RunSnapshot, Vec<AuditRecord>), Error> {
        let store = self.store()?;
        let snap = store
            .get_run(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no run {id} (run ids look like 20261126-095801-636d95; `failbackctl history` lists the runs)")))?;
        let audit = store.audit(id).await?;
        Ok((snap, audit))
    }

    /// Up to `limit` runs, newest first.
    pub async fn list(&self, limit: usize) -> Result<Vec<RunRecord>, Error> {
        self.store()?.list_runs(limit).await
    }

    /// The dry run: what `start_run` would do, with findings. Sends nothing to any agent.
    pub fn plan(
        &self,
        kind: RunbookKind,
        pools: Vec<String>,
        max_parallel: u32,
    ) -> Result<Plan, Error> {
        let pools = self.resolve_pools(pools)?;
        let steps = (self.inner.factory)(kind, &self.inner.config)?;
        let mut plan = Plan {
            steps: Vec::new(),
            findings: Vec::new(),
            waves: waves(&pools, max_parallel),
        };
        // (agent, first operation planned on it), in plan order.
        let mut agents: Vec<(String, String)> = Vec::new();
        for name in &pools {
            let Some(pool) = self.pool(name) else {
                continue;
            };
            for s in &steps {
                let ops = s.plan(&pool);
                for op in &ops {
                    if !agents.iter().any(|(a, _)| a == &op.agent) {
                        agents.push((op.agent.clone(), op.operation.clone()));
                    }
                }
                plan.steps.push(PlannedStep {
                    pool: pool.fqdn.clone(),
                    step: s.name().to_string(),
                    title: s.title().to_string(),
                    destructive: s.destructive(),
                    operations: ops,
                });
            }
        }
        for (a, operation) in agents {
            let Ok(id) = AgentId::new(a.clone()) else {
                continue;
            };
            if !self.inner.agents.is_known(&id) {
                // Chat servers need not run an agent (FB-6 then activates them unmeasured):
                // say so rather than call them disconnected agents.
                plan.findings.push(format!(
                    "'{a}' runs no failback agent: its {operation} is not done (FB-6 activates such a chat server without a latency measurement)"
                ));
            } else if !self.inner.agents.is_connected(&id) {
                plan.findings.push(format!(
                    "agent '{a}' is not connected: a step that needs it waits for its session up to the step timeout, then fails"
                ));
            }
        }
        Ok(plan)
    }

    fn pool(&self, fqdn: &str) -> Option<Arc<Pool>> {
        self.inner
            .topology
            .pools
            .iter()
            .find(|p| p.fqdn == fqdn)
            .map(|p| Arc::new(p.clone()))
    }
}

#[async_trait]
impl LeadershipListener for Engine {
    fn name(&self) -> &str {
        "runbook engine"
    }

    async fn on_leader_start(&self, epoch: Epoch) -> Result<(), Error> {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        {
            let mut guard = self
                .inner
                .term
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(old) = guard.take() {
                old.cancel.cancel();
            }
            *guard = Some(Term {
                epoch,
                cancel: cancel.clone(),
                tasks: tasks.clone(),
                runs: HashMap::new(),
                loading: true,
            });
        }
        let engine = self.clone();
        tasks.spawn(async move { engine.load_term(epoch, cancel).await });
        Ok(())
    }

    async fn on_leader_stop(&self) -> Result<(), Error> {
        let term = self
            .inner
            .term
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = term {
            t.cancel.cancel();
            t.tasks.close();
            t.tasks.wait().await;
            tracing::info!(epoch = %t.epoch, "runbook engine stopped for this term");
        }
        Ok(())
    }
}
