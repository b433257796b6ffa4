//! The coordinator's Prometheus metrics. One struct owns every metric so handlers record through
//! named methods and the names live in one place.
//!
//! Run and step metrics ([`RunMetrics`]) belong to the same registry: [`Metrics::runs`] hands
//! them to the engine (`Engine::set_run_metrics`), which records them at its transitions
//! (`runbook/engine/drive.rs`). An engine never given a handle records into its own unexposed
//! one (unit tests).

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of `failback_agent_session_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short machine-readable reason (`role`, `unknown_agent`, `protocol`, `missed_heartbeats`, …).
    pub reason: String,
}

/// Metrics handles (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    connected_agents: Gauge,
    heartbeats: Counter,
    leader_keepalives: Counter,
    session_errors: Family<ReasonLabel, Counter>,
    runs: RunMetrics,
}

impl Metrics {
    /// Creates the metrics and a registry that exposes them.
    pub fn new() -> (Self, Arc<Mutex<Registry>>) {
        let m = Metrics::default();
        let mut r = Registry::with_prefix("failback");
        r.register(
            "connected_agents",
            "Agents with a live session to this coordinator",
            m.connected_agents.clone(),
        );
        r.register(
            "agent_heartbeats",
            "Heartbeats received from agents",
            m.heartbeats.clone(),
        );
        r.register(
            "leader_keepalives",
            "Keep-alives of this coordinator's etcd lease that etcd answered (flat while it cannot reach etcd)",
            m.leader_keepalives.clone(),
        );
        r.register(
            "agent_session_errors",
            "Agent sessions refused or ended abnormally, by reason",
            m.session_errors.clone(),
        );
        m.runs.register(&mut r);
        (m, Arc::new(Mutex::new(r)))
    }

    /// The run and step metrics exposed by this registry (for the engine).
    pub fn runs(&self) -> RunMetrics {
        self.runs.clone()
    }

    /// The counter the etcd leadership increments per answered keep-alive.
    pub fn leader_keepalives(&self) -> Counter {
        self.leader_keepalives.clone()
    }

    /// Sets the number of connected agents.
    pub fn set_connected(&self, n: usize) {
        self.connected_agents
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts one heartbeat.
    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    /// Counts one session error.
    pub fn session_error(&self, reason: &str) {
        self.session_errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// Label of the run counters and gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunbookLabel {
    /// `failback`, `failover`, `drill`.
    pub runbook: String,
}

/// Labels of `failback_runs_finished_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunEndLabels {
    /// Runbook.
    pub runbook: String,
    /// `succeeded`, `failed`, `aborted`.
    pub status: String,
}

/// Labels of the step counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// Runbook.
    pub runbook: String,
    /// Step name (`fb3_backup`, …).
    pub step: String,
}

/// Labels of `failback_step_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepEndLabels {
    /// Runbook.
    pub runbook: String,
    /// Step name.
    pub step: String,
    /// `succeeded`, `skipped`, `failed`.
    pub outcome: String,
}

/// Labels of the step retry and failure counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepErrorLabels {
    /// Runbook.
    pub runbook: String,
    /// Step name.
    pub step: String,
    /// The engine's error class (`retry`, `fatal`, `unknown`, …).
    pub class: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Step durations run from a second (a probe that finds the goal true) to hours (restoring a
/// large `mgc`): 0.1 s doubling 18 times reaches about 7.3 h.
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 18))
}

/// Run and step metrics (cheap to clone; see the module doc for why they are process-wide).
#[derive(Debug, Clone)]
pub struct RunMetrics {
    started: Family<RunbookLabel, Counter>,
    finished: Family<RunEndLabels, Counter>,
    in_progress: Family<RunbookLabel, Gauge>,
    step_duration: HistogramFamily<StepEndLabels>,
    step_attempts: Family<StepLabels, Counter>,
    step_retries: Family<StepErrorLabels, Counter>,
    step_failures: Family<StepErrorLabels, Counter>,
}

impl Default for RunMetrics {
    fn default() -> Self {
        RunMetrics {
            started: Family::default(),
            finished: Family::default(),
            in_progress: Family::default(),
            step_duration: Family::new_with_constructor(step_histogram),
            step_attempts: Family::default(),
            step_retries: Family::default(),
            step_failures: Family::default(),
        }
    }
}

/// A serde enum (`RunbookKind`, `RunStatus`, `ErrorClass`) as its snake_case label.
pub fn label<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

/// Counts a run as in progress while alive (decrements when dropped, however the driver ends).
#[derive(Debug)]
pub struct InProgress(Gauge);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl RunMetrics {
    /// Exposes the families in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "runs_started",
            "Runs that started (left pending), by runbook",
            self.started.clone(),
        );
        r.register(
            "runs_finished",
            "Runs that finished, by runbook and final status",
            self.finished.clone(),
        );
        r.register(
            "runs_in_progress",
            "Runs this coordinator is driving now, by runbook",
            self.in_progress.clone(),
        );
        r.register(
            "step_duration_seconds",
            "Time from a step's start to its end (all attempts), by runbook, step and outcome",
            self.step_duration.clone(),
        );
        r.register(
            "step_attempts",
            "Step attempts started (the first one included), by runbook and step",
            self.step_attempts.clone(),
        );
        r.register(
            "step_retries",
            "Step attempts that failed and will be retried, by runbook, step and error class",
            self.step_retries.clone(),
        );
        r.register(
            "step_failures",
            "Steps that failed their pool, by runbook, step and error class",
            self.step_failures.clone(),
        );
    }

    /// A run left `pending`.
    pub fn run_started(&self, runbook: &str) {
        self.started
            .get_or_create(&RunbookLabel {
                runbook: runbook.into(),
            })
            .inc();
    }

    /// A run reached a final status.
    pub fn run_finished(&self, runbook: &str, status: &str) {
        self.finished
            .get_or_create(&RunEndLabels {
                runbook: runbook.into(),
                status: status.into(),
            })
            .inc();
    }

    /// This coordinator drives a run until the guard is dropped.
    pub fn in_progress(&self, runbook: &str) -> InProgress {
        let g = self
            .in_progress
            .get_or_create(&RunbookLabel {
                runbook: runbook.into(),
            })
            .clone();
        g.inc();
        InProgress(g)
    }

    /// An attempt of `step` started.
    pub fn step_attempt(&self, runbook: &str, step: &str) {
        self.step_attempts
            .get_or_create(&StepLabels {
                runbook: runbook.into(),
                step: step.into(),
            })
            .inc();
    }

    /// An attempt of `step` failed with `class` and will be retried.
    pub fn step_retry(&self, runbook: &str, step: &str, class: &str) {
        self.step_retries
            .get_or_create(&StepErrorLabels {
                runbook: runbook.into(),
                step: step.into(),
                class: class.into(),
            })
            .inc();
    }

    /// `step` ended (`succeeded`, `skipped`, `failed`) `millis` after it started; a failure is
    /// counted with its error class.
    pub fn step_finished(
        &self,
        runbook: &str,
        step: &str,
        outcome: &str,
        millis: u64,
        class: Option<&str>,
    ) {
        self.step_duration
            .get_or_create(&StepEndLabels {
                runbook: runbook.into(),
                step: step.into(),
                outcome: outcome.into(),
            })
            .observe(millis as f64 / 1000.0);
        if let Some(class) = class {
            self.step_failures
                .get_or_create(&StepErrorLabels {
                    runbook: runbook.into(),
                    step: step.into(),
                    class: class.into(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_metrics_are_exposed_with_their_labels() {
        let m = RunMetrics::default();
        let mut r = Registry::with_prefix("failback");
        m.register(&mut r);
        m.run_started("failback");
        {
            let _g = m.in_progress("failback");
            m.step_attempt("failback", "fb3_backup");
            m.step_retry("failback", "fb3_backup", "retry");
            m.step_finished("failback", "fb3_backup", "succeeded", 2500, None);
            m.step_finished("failback", "fb4_restore", "failed", 100, Some("fatal"));
        }
        m.run_finished("failback", "failed");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            r#"failback_runs_started_total{runbook="failback"} 1"#,
            r#"failback_runs_finished_total{runbook="failback",status="failed"} 1"#,
            r#"failback_runs_in_progress{runbook="failback"} 0"#,
            r#"failback_step_duration_seconds_count{runbook="failback",step="fb3_backup",outcome="succeeded"} 1"#,
            r#"failback_step_duration_seconds_sum{runbook="failback",step="fb3_backup",outcome="succeeded"} 2.5"#,
            r#"failback_step_attempts_total{runbook="failback",step="fb3_backup"} 1"#,
            r#"failback_step_retries_total{runbook="failback",step="fb3_backup",class="retry"} 1"#,
            r#"failback_step_failures_total{runbook="failback",step="fb4_restore",class="fatal"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
