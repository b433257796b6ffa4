//! Leadership behind a narrow trait. The rest of the coordinator asks one question — "who leads,
//! at which epoch, and is it me?" — and reacts to changes through [`listener`]s; it never talks to
//! etcd itself and never sprinkles `if is_leader` checks over leader-only work.
//!
//! Two implementations (DESIGN §4):
//! - [`standalone::Standalone`]: the embedded default (no `[etcd]` in `coordinator.toml`): always
//!   leader, the epoch a counter in the local state directory.
//! - [`etcd::EtcdLeadership`]: a campaign loop inside the implementation (lease kept alive from
//!   before the campaign, leadership confirmed by a transaction on the leader key's create
//!   revision, that revision is the epoch, step down when a keep-alive fails or is late, resign
//!   on graceful shutdown). Its decisions are the pure transitions of [`state`].
//!
//! Both call the registered [`LeadershipListener`]s (through a [`LeadershipNotifier`]) when this
//! coordinator starts and stops leading, and publish every change of [`LeaderView`] on a watch
//! channel ([`Leadership::subscribe`]).

pub mod etcd;
pub mod listener;
pub mod standalone;
pub mod state;

use std::sync::Arc;

use async_trait::async_trait;
use failback_proto::model::Epoch;
use tokio::sync::watch;

use crate::error::Error;

pub use listener::{LeadershipListener, LeadershipListenerRef, LeadershipNotifier};

/// What a coordinator knows about leadership at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    /// Whether this coordinator leads now.
    pub is_leader: bool,
    /// The leader's certificate name, when known.
    pub leader_id: Option<String>,
    /// Where to reach the leader (`name@host:port`), when known.
    pub leader_endpoint: Option<String>,
    /// The leader's epoch (0 when unknown).
    pub epoch: Epoch,
    /// "standalone" or "etcd".
    pub mode: &'static str,
}

impl LeaderView {
    /// Nobody is known to lead (a follower before its first observation).
    pub fn unknown(mode: &'static str) -> Self {
        LeaderView {
            is_leader: false,
            leader_id: None,
            leader_endpoint: None,
            epoch: Epoch(0),
            mode,
        }
    }
}

/// The certificate name in an advertised endpoint (`name@host:port`): the part before the last
/// `@`, or the whole string when it has none (a hand-written value in etcd).
pub fn endpoint_name(endpoint: &str) -> String {
    endpoint
        .rsplit_once('@')
        .map_or(endpoint, |(name, _)| name)
        .to_string()
}

/// Leadership as the coordinator consumes it.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// The current view.
    fn view(&self) -> LeaderView;

    /// A receiver that sees every change of the view (the current value is marked seen).
    fn subscribe(&self) -> watch::Receiver<LeaderView>;

    /// Stops leading (listeners' `on_leader_stop` first, then hands the lock over) and stops
    /// campaigning. Called on graceful shutdown; idempotent.
    async fn resign(&self) -> Result<(), Error>;
}

/// Shared handle.
pub type LeadershipRef = Arc<dyn Leadership>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names() {
        assert_eq!(endpoint_name("coord1@10.0.0.1:7443"), "coord1");
        assert_eq!(endpoint_name("plain"), "plain");
    }
}
