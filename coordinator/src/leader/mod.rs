//! Leadership behind a narrow trait. The rest of the coordinator asks one question — "who leads,
//! at which epoch, and is it me?" — and never talks to etcd itself.
//!
//! Today only [`standalone::Standalone`] exists (DESIGN §4's embedded default: always leader, the
//! epoch a counter in the local state directory). The etcd implementation (lease, campaign,
//! create-revision epoch, step-down) implements the same trait.

pub mod standalone;

use std::sync::Arc;

use failback_proto::model::Epoch;

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

/// Leadership as the coordinator consumes it.
pub trait Leadership: Send + Sync {
    /// The current view.
    fn view(&self) -> LeaderView;
}

/// Shared handle.
pub type LeadershipRef = Arc<dyn Leadership>;
