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
use super::{AgentOpsRef, ErrorClass, PlannedOp, Probe, StepCtx, StepError, StepRef};
use crate::config::RunbookConfig;
use crate::error::Error;
use crate::leader::LeadershipListener;
use crate::store::{
    AuditRecord, PoolState, RunId, RunOptions, RunRecord, RunSnapshot, RunSpec, RunStatus,
    RunStoreRef, RunbookKind, StepStatus, unix_ms,
};
use crate::topology::{Pool, Topology};

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
            }),
        }
    }

    /// Hands the engine its run store (known only after leadership started in standalone mode;
    /// a term that started earlier waits for it).
    pub fn set_store(&self, store: RunStoreRef) {
        self.inner.store.send_replace(Some(store));
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
        let pools = self.resolve_pools(pools)?;
        (self.inner.factory)(kind, &self.inner.config)?;
        self.wait_loaded().await?;
        if options.approved_at_start && !caller.approver {
            return Err(Error::PermissionDenied(format!(
                "certificate '{}' does not have the approver role; --yes (approval at start) needs it",
                caller.name
            )));
        }
        let store = self.store()?;
        let (epoch, cancel) = self.term(|t| {
            if t.loading {
                return Err(Error::Store(
                    "the leader is still loading unfinished runs; try again".into(),
                ));
            }
            for h in t.runs.values() {
                if let Some(p) = h.spec.pools.iter().find(|p| pools.contains(p)) {
                    return Err(Error::InvalidInput(format!(
                        "pool '{p}' is already part of unfinished run {}; wait for it, or abort it",
                        h.id
                    )));
                }
            }
            Ok((t.epoch, t.cancel.clone()))
        })?;
        let id = RunId::generate();
        let spec = RunSpec {
            kind,
            pools: pools.clone(),
            options: options.clone(),
            started_by: caller.name.clone(),
        };
        store.create_run(&id, spec.clone()).await?;
        store
            .append_audit(
                &id,
                &caller.name,
                "run.created",
                json!({ "kind": kind, "pools": pools, "options": options, "epoch": epoch.0 }),
            )
            .await?;
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
        self.existing(&store, id).await?;
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
    pub async fn abort(&self, caller: &Caller, id: &RunId) -> Result<(), Error> {
        self.wait_loaded().await?;
        let store = self.store()?;
        self.existing(&store, id).await?;
        let h = self.handle(id)?;
        store
            .append_audit(id, &caller.name, "run.aborted", json!({}))
            .await?;
        h.control.send_modify(|c| c.aborted = true);
        h.cancel.cancel();
        let mut last = h.status.lock().await;
        if !h.finished.swap(true, std::sync::atomic::Ordering::SeqCst) {
            store
                .set_run_status(
                    id,
                    RunStatus::Aborted,
                    Some(format!("aborted by {}", caller.name)),
                )
                .await?;
            *last = RunStatus::Aborted;
        }
        Ok(())
    }

    async fn existing(&self, store: &RunStoreRef, id: &RunId) -> Result<RunSnapshot, Error> {
        let snap = store
            .get_run(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no run {id}")))?;
        if snap.run.status.is_finished() {
            return Err(Error::InvalidInput(format!(
                "run {id} is already {:?}",
                snap.run.status
            )));
        }
        Ok(snap)
    }

    /// One run with its pools and audit trail.
    pub async fn get(&self, id: &RunId) -> Result<(RunSnapshot, Vec<AuditRecord>), Error> {
        let store = self.store()?;
        let snap = store
            .get_run(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no run {id}")))?;
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
        let mut agents: Vec<String> = Vec::new();
        for name in &pools {
            let Some(pool) = self.pool(name) else {
                continue;
            };
            for s in &steps {
                let ops = s.plan(&pool);
                for op in &ops {
                    if !agents.contains(&op.agent) {
                        agents.push(op.agent.clone());
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
        for a in agents {
            if let Ok(id) = AgentId::new(a.clone())
                && !self.inner.agents.is_connected(&id)
            {
                plan.findings.push(format!("agent '{a}' is not connected"));
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

    // ------------------------------------------------------------------ driving

    fn spawn_run(
        &self,
        spec: RunSpec,
        id: RunId,
        control: Control,
        status: RunStatus,
        term_cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let handle = Arc::new(RunHandle {
            id: id.clone(),
            spec,
            control: watch::Sender::new(control),
            status: tokio::sync::Mutex::new(status),
            awaiting: std::sync::atomic::AtomicUsize::new(0),
            finished: std::sync::atomic::AtomicBool::new(false),
            cancel: term_cancel.child_token(),
        });
        let tasks = self.term(|t| {
            t.runs.insert(id.clone(), handle.clone());
            Ok(t.tasks.clone())
        })?;
        let engine = self.clone();
        let term_cancel = term_cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = term_cancel.cancelled() => {}
                _ = engine.drive_run(handle.clone()) => {}
            }
            let _ = engine.term(|t| {
                t.runs.remove(&handle.id);
                Ok(())
            });
        });
        Ok(())
    }

    async fn audit(&self, id: &RunId, event: &str, details: Value) -> Result<(), Stopped> {
        let store = self.store().map_err(|_| Stopped)?;
        let caller = self.engine_caller();
        self.persist(|| store.append_audit(id, &caller, event, details.clone()))
            .await
            .map(|_| ())
    }

    async fn save(&self, id: &RunId, state: &PoolState) -> Result<(), Stopped> {
        let store = self.store().map_err(|_| Stopped)?;
        self.persist(|| store.save_pool_state(id, state.clone()))
            .await
    }

    /// Runs a store write, waiting out transient store failures; `Stopped` when deposed.
    async fn persist<T, F, Fut>(&self, f: F) -> Result<T, Stopped>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(Error::Deposed(m)) => {
                    tracing::warn!("run store refused a write (deposed): {m}");
                    return Err(Stopped);
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!("failed to write the run store: {e:#}; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!("failed to write the run store: {e:#}; stopping this run");
                    return Err(Stopped);
                }
            }
        }
    }

    /// Writes the run status that follows from the controls (paused / awaiting approval /
    /// running), unless the run is finished.
    async fn sync_status(
        &self,
        store: &RunStoreRef,
        h: &RunHandle,
        reason: Option<String>,
    ) -> Result<(), Error> {
        let mut last = h.status.lock().await;
        if h.finished.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let c = *h.control.borrow();
        let next = if c.aborted {
            RunStatus::Aborted
        } else if c.paused {
            RunStatus::Paused
        } else if h.awaiting.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            RunStatus::AwaitingApproval
        } else {
            RunStatus::Running
        };
        if next != *last {
            store.set_run_status(&h.id, next, reason).await?;
            *last = next;
        }
        Ok(())
    }

    async fn finish(&self, h: &RunHandle, status: RunStatus, reason: Option<String>) {
        let Ok(store) = self.store() else { return };
        let mut last = h.status.lock().await;
        if h.finished.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let r = self
            .persist(|| store.set_run_status(&h.id, status, reason.clone()))
            .await;
        if r.is_ok() {
            *last = status;
            let _ = self
                .audit(
                    &h.id,
                    "run.finished",
                    json!({ "status": status, "reason": reason }),
                )
                .await;
        }
    }

    async fn drive_run(&self, h: Arc<RunHandle>) {
        let Ok(store) = self.store() else { return };
        if let Err(e) = self.sync_status(&store, &h, None).await {
            tracing::warn!(run = %h.id, "failed to set the run running: {e:#}");
            return;
        }
        let snapshot = match store.get_run(&h.id).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(run = %h.id, "failed to read the run: {e:#}");
                return;
            }
        };
        let steps = match (self.inner.factory)(h.spec.kind, &self.inner.config) {
            Ok(s) => s,
            Err(e) => {
                self.finish(&h, RunStatus::Failed, Some(e.to_string()))
                    .await;
                return;
            }
        };
        let mut failures: Vec<String> = Vec::new();
        let all_waves = waves(&h.spec.pools, h.spec.options.max_parallel);
        let n_waves = all_waves.len();
        for (i, wave) in all_waves.into_iter().enumerate() {
            if h.control.borrow().aborted {
                return;
            }
            let drives = wave.iter().map(|p| {
                let state = snapshot.pools.get(p).cloned();
                self.drive_pool(&h, &steps, p, state)
            });
            let ends = futures::future::join_all(drives).await;
            for (pool, end) in wave.iter().zip(ends) {
                match end {
                    PoolEnd::Succeeded => {}
                    PoolEnd::Failed(m) => failures.push(format!("{pool}: {m}")),
                    PoolEnd::Stopped => return,
                }
            }
            if !failures.is_empty() && !h.spec.options.continue_on_failure {
                if i + 1 < n_waves {
                    let _ = self
                        .audit(
                            &h.id,
                            "run.stopped_after_failure",
                            json!({ "wave": i + 1, "failures": failures }),
                        )
                        .await;
                }
                break;
            }
        }
        if failures.is_empty() {
            self.finish(&h, RunStatus::Succeeded, None).await;
        } else {
            self.finish(&h, RunStatus::Failed, Some(failures.join("; ")))
                .await;
        }
    }

    async fn wait_runnable(&self, h: &RunHandle) -> Result<(), Stopped> {
        let mut rx = h.control.subscribe();
        loop {
            let c = *rx.borrow_and_update();
            if c.aborted {
                return Err(Stopped);
            }
            if !c.paused {
                return Ok(());
            }
            if rx.changed().await.is_err() {
                return Err(Stopped);
            }
        }
    }

    async fn drive_pool(
        &self,
        h: &Arc<RunHandle>,
        steps: &[StepRef],
        pool_name: &str,
        saved: Option<PoolState>,
    ) -> PoolEnd {
        match self.drive_pool_inner(h, steps, pool_name, saved).await {
            Ok(end) => end,
            Err(Stopped) => PoolEnd::Stopped,
        }
    }

    async fn drive_pool_inner(
        &self,
        h: &Arc<RunHandle>,
        steps: &[StepRef],
        pool_name: &str,
        saved: Option<PoolState>,
    ) -> Result<PoolEnd, Stopped> {
        let Some(pool) = self.pool(pool_name) else {
            return Ok(PoolEnd::Failed(format!(
                "pool '{pool_name}' is no longer in the topology"
            )));
        };
        let mut outputs = saved
            .as_ref()
            .map(|s| s.outputs.clone())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let start = match &saved {
            None => 0,
            Some(s) if s.step == END_STEP => return Ok(PoolEnd::Succeeded),
            Some(s) if s.status == StepStatus::Failed => {
                let msg = outputs
                    .get(&s.step)
                    .and_then(|o| o.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("failed")
                    .to_string();
                return Ok(PoolEnd::Failed(format!("{}: {msg}", s.step)));
            }
            Some(s) => match steps.iter().position(|x| x.name() == s.step) {
                Some(i) if matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped) => i + 1,
                Some(i) => i,
                None => {
                    return Ok(PoolEnd::Failed(format!(
                        "saved step '{}' is not a step of this runbook",
                        s.step
                    )));
                }
            },
        };
        let epoch = self.term(|t| Ok(t.epoch)).map_err(|_| Stopped)?;
        let mut resume = saved.filter(|s| s.step != END_STEP);
        for step in &steps[start..] {
            self.wait_runnable(h).await?;
            let (mut attempt, mut op_ids) = match resume.take() {
                Some(s) if s.step == step.name() => (s.attempt.max(1), s.op_ids),
                _ => (1, Vec::new()),
            };
            let started = unix_ms();
            loop {
                let resumed = !op_ids.is_empty();
                let tracker = Arc::new(PoolTracker {
                    engine: self.clone(),
                    run: h.id.clone(),
                    state: tokio::sync::Mutex::new(PoolState {
                        pool: pool.fqdn.clone(),
                        step: step.name().to_string(),
                        attempt,
                        op_ids: op_ids.clone(),
                        status: StepStatus::Running,
                        outputs: outputs.clone(),
                        updated_unix_ms: 0,
                    }),
                });
                tracker.save().await?;
                self.audit(
                    &h.id,
                    if resumed { "step.resumed" } else { "step.started" },
                    json!({ "pool": pool.fqdn, "step": step.name(), "attempt": attempt, "op_ids": op_ids, "epoch": epoch.0 }),
                )
                .await?;
                let prior = prior_outputs(&outputs);
                let ctx = StepCtx::new(
                    h.id.clone(),
                    pool.clone(),
                    step.name(),
                    attempt,
                    epoch,
                    self.inner.config.clone(),
                    prior,
                    self.inner.agents.clone(),
                    tracker.clone(),
                    self.inner.reads.clone(),
                    h.cancel.clone(),
                );
                let result = tokio::time::timeout(
                    step.timeout(&self.inner.config),
                    self.attempt(h, step, &ctx, resumed, &tracker),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(StepError::fatal(format!(
                        "timed out after {:?}; operations sent may still be running (op ids in the pool state)",
                        step.timeout(&self.inner.config)
                    )))
                });
                let record = |status: &str, extra: Value| {
                    let mut o = json!({ "status": status, "attempts": attempt, "started_unix_ms": started, "finished_unix_ms": unix_ms() });
                    if let (Some(map), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
                        for (k, v) in extra {
                            map.insert(k.clone(), v.clone());
                        }
                    }
                    o
                };
                match result {
                    Ok(AttemptEnd::Done(output, how)) => {
                        outputs[step.name()] =
                            record("succeeded", json!({ "output": output, "how": how }));
                        tracker
                            .finish(StepStatus::Succeeded, outputs.clone())
                            .await?;
                        self.audit(
                            &h.id,
                            "step.succeeded",
                            json!({ "pool": pool.fqdn, "step": step.name(), "attempt": attempt, "how": how }),
                        )
                        .await?;
                        break;
                    }
                    Ok(AttemptEnd::Skipped(reason)) => {
                        outputs[step.name()] = record("skipped", json!({ "reason": reason }));
                        tracker.finish(StepStatus::Skipped, outputs.clone()).await?;
                        self.audit(
                            &h.id,
                            "step.skipped",
                            json!({ "pool": pool.fqdn, "step": step.name(), "reason": reason }),
                        )
                        .await?;
                        break;
                    }
                    Err(e) => match e.class {
                        ErrorClass::Deposed | ErrorClass::Aborted => return Err(Stopped),
                        ErrorClass::Retry if attempt < step.max_attempts() => {
                            self.audit(
                                &h.id,
                                "step.retry",
                                json!({ "pool": pool.fqdn, "step": step.name(), "attempt": attempt, "error": e.message }),
                            )
                            .await?;
                            tokio::time::sleep(self.inner.config.retry_backoff).await;
                            self.wait_runnable(h).await?;
                            attempt += 1;
                            op_ids = Vec::new();
                        }
                        _ => {
                            outputs[step.name()] =
                                record("failed", json!({ "error": e.message, "class": e.class }));
                            tracker.finish(StepStatus::Failed, outputs.clone()).await?;
                            self.audit(
                                &h.id,
                                "step.failed",
                                json!({ "pool": pool.fqdn, "step": step.name(), "attempt": attempt, "error": e.message, "class": e.class }),
                            )
                            .await?;
                            return Ok(PoolEnd::Failed(format!("{}: {}", step.name(), e.message)));
                        }
                    },
                }
            }
        }
        let done = PoolState {
            pool: pool.fqdn.clone(),
            step: END_STEP.to_string(),
            attempt: 1,
            op_ids: Vec::new(),
            status: StepStatus::Succeeded,
            outputs,
            updated_unix_ms: 0,
        };
        self.save(&h.id, &done).await?;
        self.audit(&h.id, "pool.succeeded", json!({ "pool": pool.fqdn }))
            .await?;
        Ok(PoolEnd::Succeeded)
    }

    async fn attempt(
        &self,
        h: &Arc<RunHandle>,
        step: &StepRef,
        ctx: &StepCtx,
        resumed: bool,
        tracker: &Arc<PoolTracker>,
    ) -> Result<AttemptEnd, StepError> {
        if !resumed {
            match step.probe(ctx).await? {
                Probe::Done(v) => return Ok(AttemptEnd::Done(v, "probe: goal already true")),
                Probe::NotApplicable(r) => return Ok(AttemptEnd::Skipped(r)),
                Probe::Needed => {}
            }
        }
        if step.destructive() {
            self.wait_approval(h, step, tracker)
                .await
                .map_err(|_| StepError {
                    class: ErrorClass::Aborted,
                    message: "stopped while awaiting approval".into(),
                })?;
        }
        let output = match step.act(ctx).await {
            Ok(v) => v,
            Err(e) if e.class == ErrorClass::Unknown => {
                let _ = self
                    .audit(
                        &h.id,
                        "step.outcome_unknown",
                        json!({ "pool": ctx.pool.fqdn, "step": step.name(), "attempt": ctx.attempt, "error": e.message }),
                    )
                    .await;
                return match step.probe(ctx).await? {
                    Probe::Done(v) => Ok(AttemptEnd::Done(v, "probe after an unknown outcome")),
                    Probe::NotApplicable(r) => Ok(AttemptEnd::Skipped(r)),
                    Probe::Needed if step.destructive() => Err(StepError::fatal(format!(
                        "{}; the probe shows the goal not reached and the step is destructive, so it is not repeated automatically: inspect the target and start a new run",
                        e.message
                    ))),
                    Probe::Needed => Err(StepError::retry(format!(
                        "{}; the probe shows the goal not reached",
                        e.message
                    ))),
                };
            }
            Err(e) => return Err(e),
        };
        let v = step.verify(ctx, output).await?;
        Ok(AttemptEnd::Done(v, "acted"))
    }

    async fn wait_approval(
        &self,
        h: &Arc<RunHandle>,
        step: &StepRef,
        tracker: &Arc<PoolTracker>,
    ) -> Result<(), Stopped> {
        let mut rx = h.control.subscribe();
        if rx.borrow_and_update().approved {
            return Ok(());
        }
        tracker.set_status(StepStatus::AwaitingApproval).await?;
        self.audit(
            &h.id,
            "step.awaiting_approval",
            json!({ "pool": tracker.pool().await, "step": step.name() }),
        )
        .await?;
        let store = self.store().map_err(|_| Stopped)?;
        h.awaiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.sync_status(&store, h, None).await;
        let outcome = loop {
            let c = *rx.borrow_and_update();
            if c.aborted {
                break Err(Stopped);
            }
            if c.approved {
                break Ok(());
            }
            if rx.changed().await.is_err() {
                break Err(Stopped);
            }
        };
        h.awaiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        outcome?;
        tracker.set_status(StepStatus::Running).await?;
        let _ = self.sync_status(&store, h, None).await;
        Ok(())
    }

    // ------------------------------------------------------------------ terms

    async fn load_term(&self, epoch: Epoch, cancel: CancellationToken) {
        let mut rx = self.inner.store.subscribe();
        let store = loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                break s;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
            }
        };
        let runs = loop {
            match store.load_unfinished().await {
                Ok(r) => break r,
                Err(Error::Deposed(_)) => return,
                Err(e) => {
                    tracing::warn!("failed to load unfinished runs: {e:#}; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        for snap in runs {
            let id = snap.run.id.clone();
            let approved = snap.run.spec.options.approved_at_start
                || store
                    .audit(&id)
                    .await
                    .map(|a| a.iter().any(|r| r.event == "run.approved"))
                    .unwrap_or(false);
            let control = Control {
                paused: snap.run.status == RunStatus::Paused,
                aborted: false,
                approved,
            };
            if self
                .audit(
                    &id,
                    "run.loaded",
                    json!({ "epoch": epoch.0, "status": snap.run.status }),
                )
                .await
                .is_err()
            {
                return;
            }
            tracing::info!(run = %id, %epoch, "resuming unfinished run");
            // The status on record may be AwaitingApproval; sync_status recomputes it.
            let status = snap.run.status;
            if self
                .spawn_run(snap.run.spec.clone(), id, control, status, &cancel)
                .is_err()
            {
                return;
            }
        }
        let _ = self.term(|t| {
            t.loading = false;
            Ok(())
        });
    }
}

fn prior_outputs(outputs: &Value) -> serde_json::Map<String, Value> {
    outputs
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.get("output").map(|o| (k.clone(), o.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// One pool's saved state during one attempt; records op ids before they are sent.
struct PoolTracker {
    engine: Engine,
    run: RunId,
    state: tokio::sync::Mutex<PoolState>,
}

impl PoolTracker {
    async fn save(&self) -> Result<(), Stopped> {
        let state = self.state.lock().await.clone();
        self.engine.save(&self.run, &state).await
    }

    async fn pool(&self) -> String {
        self.state.lock().await.pool.clone()
    }

    async fn set_status(&self, status: StepStatus) -> Result<(), Stopped> {
        let state = {
            let mut s = self.state.lock().await;
            s.status = status;
            s.clone()
        };
        self.engine.save(&self.run, &state).await
    }

    async fn finish(&self, status: StepStatus, outputs: Value) -> Result<(), Stopped> {
        let state = {
            let mut s = self.state.lock().await;
            s.status = status;
            s.outputs = outputs;
            s.clone()
        };
        self.engine.save(&self.run, &state).await
    }
}

#[async_trait]
impl OpLog for PoolTracker {
    async fn record(&self, op_id: &OpId) -> Result<(), Error> {
        let state = {
            let mut s = self.state.lock().await;
            if s.op_ids.iter().any(|o| o == op_id.as_str()) {
                return Ok(());
            }
            s.op_ids.push(op_id.to_string());
            s.clone()
        };
        self.engine
            .save(&self.run, &state)
            .await
            .map_err(|_| Error::Deposed("the run store refused to record the operation".into()))
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
