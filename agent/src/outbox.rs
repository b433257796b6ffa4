//! The sender of the currently open session. Operations outlive sessions: a result (or a
//! progress update) is sent on the session open when it is produced, and a result is in the
//! journal otherwise, for a coordinator that asks again.

use std::sync::Arc;

use failback_proto::pb;
use tokio::sync::mpsc;

/// Shared handle to the current session's sender.
#[derive(Clone, Default)]
pub struct Outbox(Arc<std::sync::Mutex<Option<mpsc::Sender<pb::AgentMessage>>>>);

impl Outbox {
    /// Sets (or clears) the current session's sender.
    pub fn set(&self, tx: Option<mpsc::Sender<pb::AgentMessage>>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tx;
    }

    /// Sends on the current session; false when none is open or it closed.
    pub async fn send(&self, msg: pb::AgentMessage) -> bool {
        let tx = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match tx {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        }
    }
}
