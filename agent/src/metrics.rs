//! The agent's Prometheus metrics, owned by one struct.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of `failback_agent_session_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short reason: `connect`, `refused`, `stream`, `protocol`, `stale_leader`.
    pub reason: String,
}

/// Metrics handles (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    connected: Gauge,
    epoch: Gauge,
    heartbeats: Counter,
    session_errors: Family<ReasonLabel, Counter>,
}

impl Metrics {
    /// Creates the metrics and their registry.
    pub fn new() -> (Self, Arc<Mutex<Registry>>) {
        let m = Metrics::default();
        let mut r = Registry::with_prefix("failback_agent");
        r.register(
            "connected",
            "1 while a session to the leader is open",
            m.connected.clone(),
        );
        r.register("epoch", "Highest leader epoch accepted", m.epoch.clone());
        r.register("heartbeats_sent", "Heartbeats sent", m.heartbeats.clone());
        r.register(
            "session_errors",
            "Sessions that failed to open or ended abnormally, by reason",
            m.session_errors.clone(),
        );
        (m, Arc::new(Mutex::new(r)))
    }

    /// Session open/closed.
    pub fn set_connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }

    /// Highest epoch accepted.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    /// One heartbeat sent.
    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    /// One session error.
    pub fn session_error(&self, reason: &str) {
        self.session_errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
}
