//! Leader-only work starts and stops here (GreptimeDB's `LeadershipChangeListener` and
//! notifier). A subsystem that must run only on the leader — the runbook engine, sweeps that
//! write to the run store — registers a [`LeadershipListener`] before the leadership
//! implementation starts; nothing else needs to check `is_leader`.
//!
//! Ordering guarantee the implementations give: `on_leader_stop` of every listener has returned
//! before this coordinator campaigns again, so work of an old term is stopped before a new term
//! can start. A listener's error is logged and does not stop the others: leadership changes are
//! facts, not requests a listener can refuse.

use std::sync::Arc;

use async_trait::async_trait;
use failback_proto::model::Epoch;

use crate::error::Error;

/// Something that runs only while this coordinator leads.
#[async_trait]
pub trait LeadershipListener: Send + Sync {
    /// Short name for logs.
    fn name(&self) -> &str;

    /// This coordinator now leads at `epoch`: start leader-only work (load unfinished runs...).
    /// Must not block for long: start tasks and return.
    async fn on_leader_start(&self, epoch: Epoch) -> Result<(), Error>;

    /// This coordinator no longer leads (or is shutting down): stop leader-only work now. The
    /// run store already refuses this term's writes when this is called.
    async fn on_leader_stop(&self) -> Result<(), Error>;
}

/// Shared listener handle.
pub type LeadershipListenerRef = Arc<dyn LeadershipListener>;

/// Calls every registered listener in registration order.
#[derive(Default, Clone)]
pub struct LeadershipNotifier {
    listeners: Vec<LeadershipListenerRef>,
}

impl LeadershipNotifier {
    /// An empty notifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a listener (before the leadership implementation starts).
    #[must_use]
    pub fn with_listener(mut self, listener: LeadershipListenerRef) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Registers a listener in place.
    pub fn add_listener(&mut self, listener: LeadershipListenerRef) {
        self.listeners.push(listener);
    }

    /// Tells every listener that leadership started at `epoch`.
    pub async fn notify_start(&self, epoch: Epoch) {
        tracing::info!(%epoch, "leader start: notifying {} listener(s)", self.listeners.len());
        for l in &self.listeners {
            if let Err(e) = l.on_leader_start(epoch).await {
                tracing::error!(listener = l.name(), %epoch, "failed to start leader work: {e:#}");
            }
        }
    }

    /// Tells every listener that leadership stopped.
    pub async fn notify_stop(&self) {
        tracing::info!(
            "leader stop: notifying {} listener(s)",
            self.listeners.len()
        );
        for l in &self.listeners {
            if let Err(e) = l.on_leader_stop().await {
                tracing::error!(listener = l.name(), "failed to stop leader work: {e:#}");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A recording listener for tests.
    use std::sync::Mutex;

    use super::*;

    /// Records `start(epoch)` / `stop` calls.
    #[derive(Default)]
    pub struct Recorder {
        pub calls: Mutex<Vec<String>>,
    }

    impl Recorder {
        pub fn calls(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        }
        fn push(&self, s: String) {
            self.calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(s);
        }
    }

    #[async_trait]
    impl LeadershipListener for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        async fn on_leader_start(&self, epoch: Epoch) -> Result<(), Error> {
            self.push(format!("start({epoch})"));
            Ok(())
        }
        async fn on_leader_stop(&self) -> Result<(), Error> {
            self.push("stop".into());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Recorder;
    use super::*;

    struct Failing;

    #[async_trait]
    impl LeadershipListener for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        async fn on_leader_start(&self, _: Epoch) -> Result<(), Error> {
            Err(Error::Internal("boom".into()))
        }
        async fn on_leader_stop(&self) -> Result<(), Error> {
            Err(Error::Internal("boom".into()))
        }
    }

    #[tokio::test]
    async fn a_failing_listener_does_not_stop_the_others() {
        let rec = Arc::new(Recorder::default());
        let n = LeadershipNotifier::new()
            .with_listener(Arc::new(Failing))
            .with_listener(rec.clone());
        n.notify_start(Epoch(7)).await;
        n.notify_stop().await;
        assert_eq!(rec.calls(), vec!["start(7)", "stop"]);
    }
}
