//! Driving runs: one driver per run spawns pools in waves, one attempt of a step at a time
//! (probe, approval, act, verify), every transition persisted before the side effect it
//! announces. Split from `engine.rs`, which keeps the engine's state and the operator calls.
//!
//! Run and step metrics (`crate::metrics::runs`) are recorded here, at the transitions: a run
//! leaving `pending`, a run driven by this coordinator (in progress), a run finished; each step
//! attempt, retry, failure and each step's duration.

use super::*;
use crate::metrics::label as metric_label;

impl Engine {
    // ------------------------------------------------------------------ driving

    pub(super) fn spawn_run(
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
            let runbook = metric_label(&handle.spec.kind);
            let driving = engine.run_metrics().in_progress(&runbook);
            tokio::select! {
                _ = term_cancel.cancelled() => {}
                _ = engine.drive_run(handle.clone()) => {}
            }
            drop(driving);
            // Finished here (or aborted by an operator call): counted once, by the leader that
            // saw the end. A run cut off by the end of the term is the next leader's to count.
            if handle.finished.load(std::sync::atomic::Ordering::SeqCst) {
                let status = *handle.status.lock().await;
                engine
                    .run_metrics()
                    .run_finished(&runbook, &metric_label(&status));
            }
            let _ = engine.term(|t| {
                t.runs.remove(&handle.id);
                Ok(())
            });
        });
        Ok(())
    }

    pub(super) async fn audit(
        &self,
        id: &RunId,
        event: &str,
        details: Value,
    ) -> Result<(), Stopped> {
        let store = self.store().map_err(|_| Stopped)?;
        let caller = self.engine_caller();
        self.persist(|| store.append_audit(id, &caller, event, details.clone()))
            .await
            .map(|_| ())
    }

    pub(super) async fn save(&self, id: &RunId, state: &PoolState) -> Result<(), Stopped> {
        let store = self.store().map_err(|_| Stopped)?;
        self.persist(|| store.save_pool_state(id, state.clone()))
            .await
    }

    /// Saves a pool's state with the audit record of the change, in one store write (issue
    /// #12: a record could be lost between a save and its append).
    pub(super) async fn save_audited(
        &self,
        id: &RunId,
        state: &PoolState,
        event: &str,
        details: Value,
    ) -> Result<(), Stopped> {
        let store = self.store().map_err(|_| Stopped)?;
        let caller = self.engine_caller();
        if failback_proto::test_break::broken(failback_proto::test_break::AUDIT_ONE_WRITE) {
            self.persist(|| store.save_pool_state(id, state.clone()))
                .await?;
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            return self
                .persist(|| store.append_audit(id, &caller, event, details.clone()))
                .await
                .map(|_| ());
        }
        self.persist(|| {
            store.save_pool_state_audited(id, state.clone(), &caller, event, details.clone())
        })
        .await
        .map(|_| ())
    }

    /// Runs a store write, waiting out transient store failures; `Stopped` when deposed.
    pub(super) async fn persist<T, F, Fut>(&self, f: F) -> Result<T, Stopped>
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
    pub(super) async fn sync_status(
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
        if *h.status.lock().await == RunStatus::Pending {
            self.run_metrics().run_started(&metric_label(&h.spec.kind));
        }
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
                return Ok(failed_end(h.spec.kind, &s.step, &msg, &outputs));
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
        let runbook = metric_label(&h.spec.kind);
        let mut resume = saved.filter(|s| s.step != END_STEP);
        // Read on first use (FB-8), once for the pool's part of the run.
        let earlier = match self.store() {
            Ok(store) => {
                let (id, kind, fqdn) = (h.id.clone(), h.spec.kind, pool.fqdn.clone());
                crate::runbook::context::EarlierRuns::lazy(Arc::new(move || {
                    let (store, id, fqdn) = (store.clone(), id.clone(), fqdn.clone());
                    Box::pin(
                        async move { super::history::earlier_runs(&store, &id, kind, &fqdn).await },
                    )
                }))
            }
            Err(_) => crate::runbook::context::EarlierRuns::default(),
        };
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
                tracker
                    .save_audited(
                        if resumed { "step.resumed" } else { "step.started" },
                        json!({ "pool": pool.fqdn, "step": step.name(), "attempt": attempt, "op_ids": op_ids, "epoch": epoch.0 }),
                    )
                    .await?;
                self.run_metrics().step_attempt(&runbook, step.name());
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
                )
                .with_accepted_gap(h.spec.accepted_gap.clone())
                .with_earlier_runs(earlier.clone());
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
                let took = unix_ms().saturating_sub(started);
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
                            .finish_audited(
                                StepStatus::Succeeded,
                                outputs.clone(),
                                "step.succeeded",
                                json!({ "pool": pool.fqdn, "step": step.name(), "attempt": attempt, "how": how }),
                            )
                            .await?;
                        self.run_metrics().step_finished(
                            &runbook,
                            step.name(),
                            "succeeded",
                            took,
                            None,
                        );
                        break;
                    }
                    Ok(AttemptEnd::Skipped(reason)) => {
                        outputs[step.name()] = record("skipped", json!({ "reason": reason }));
                        tracker
                            .finish_audited(
                                StepStatus::Skipped,
                                outputs.clone(),
                                "step.skipped",
                                json!({ "pool": pool.fqdn, "step": step.name(), "reason": reason }),
                            )
                            .await?;
                        self.run_metrics().step_finished(
                            &runbook,
                            step.name(),
                            "skipped",
                            took,
                            None,
                        );
                        break;
                    }
                    Err(e) => match e.class {
                        ErrorClass::Deposed | ErrorClass::Aborted => return Err(Stopped),
                        ErrorClass::Retry if attempt < step.max_attempts() => {
                            self.run_metrics().step_retry(
                                &runbook,
                                step.name(),
                                &metric_label(&e.class),
                            );
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
                            tracker
                                .finish_audited(
                                    StepStatus::Failed,
                                    outputs.clone(),
                                    "step.failed",
                                    json!({ "pool": pool.fqdn, "step": step.name(), "attempt": attempt, "error": e.message, "class": e.class }),
                                )
                                .await?;
                            let class = metric_label(&e.class);
                            self.run_metrics().step_finished(
                                &runbook,
                                step.name(),
                                "failed",
                                took,
                                Some(&class),
                            );
                            return Ok(failed_end(h.spec.kind, step.name(), &e.message, &outputs));
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
        self.save_audited(&h.id, &done, "pool.succeeded", json!({ "pool": pool.fqdn }))
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
        // The approval gate; `approval-gate` is a test-only mutation (never in release builds).
        if step.destructive()
            && !failback_proto::test_break::broken(failback_proto::test_break::APPROVAL_GATE)
        {
            self.wait_approval(h, step, tracker)
                .await
                .map_err(|_| StepError::aborted("stopped while awaiting approval"))?;
        }
        let output = match step.act(ctx).await {
            Ok(v) => v,
            Err(e)
                if e.class == ErrorClass::Unknown
                    && failback_proto::test_break::broken(
                        failback_proto::test_break::DESTRUCTIVE_UNKNOWN_RETRY,
                    ) =>
            {
                return Err(StepError::retry(e.message));
            }
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
        if outcome.is_err() && rx.borrow().aborted {
            // Aborted while waiting: the step never acted; say so instead of leaving the pool
            // "awaiting approval" in an aborted run.
            let _ = tracker.set_status(StepStatus::Pending).await;
        }
        outcome?;
        tracker.set_status(StepStatus::Running).await?;
        let _ = self.sync_status(&store, h, None).await;
        Ok(())
    }

    // ------------------------------------------------------------------ terms

    pub(super) async fn load_term(&self, epoch: Epoch, cancel: CancellationToken) {
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

    /// Saves the state with the audit record `event` of the change, in one write.
    async fn save_audited(&self, event: &str, details: Value) -> Result<(), Stopped> {
        let state = self.state.lock().await.clone();
        self.engine
            .save_audited(&self.run, &state, event, details)
            .await
    }

    /// Ends the step in `status` with `outputs`, audited as `event`, in one write.
    async fn finish_audited(
        &self,
        status: StepStatus,
        outputs: Value,
        event: &str,
        details: Value,
    ) -> Result<(), Stopped> {
        let state = {
            let mut s = self.state.lock().await;
            s.status = status;
            s.outputs = outputs;
            s.clone()
        };
        self.engine
            .save_audited(&self.run, &state, event, details)
            .await
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

/// A pool's failure as the run's reason shows it: the step and its error and what the steps
/// before it left (issue #12: a failback that failed in FB-5 on a full share said only "disk
/// full", not that chat was down since FB-1 and the primary already restored).
fn failed_end(kind: RunbookKind, step: &str, error: &str, outputs: &Value) -> PoolEnd {
    let mut m = format!("{step}: {error}");
    let left = crate::runbook::left_behind(kind, outputs);
    if !left.is_empty() {
        m.push_str(&format!(
            "; the pool is left as follows: {}",
            left.join("; ")
        ));
    }
    PoolEnd::Failed(m)
}
