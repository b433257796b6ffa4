//! The coordinator's Prometheus metrics. One struct owns every metric so handlers record through
//! named methods and the names live in one place.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    session_errors: Family<ReasonLabel, Counter>,
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
            "agent_session_errors",
            "Agent sessions refused or ended abnormally, by reason",
            m.session_errors.clone(),
        );
        (m, Arc::new(Mutex::new(r)))
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
