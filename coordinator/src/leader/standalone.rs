//! Standalone leadership: one coordinator, always leader. Its epoch is a counter in
//! `state_dir/epoch`, incremented and fsynced at every start, so agents that saw the previous
//! process's epoch accept the new one and a copy of an old process (restored from a backup of the
//! host, say) is refused by agents that saw the newer epoch.
//!
//! Leader-only work starts through the same listeners as with etcd: `on_leader_start(epoch)`
//! right after the counter is written, `on_leader_stop` on [`Leadership::resign`].

use std::io::Write;
use std::path::Path;

use async_trait::async_trait;
use failback_proto::model::Epoch;
use tokio::sync::{Mutex, watch};

use super::{LeaderView, Leadership, LeadershipNotifier};
use crate::error::Error;

/// Always-leader implementation.
pub struct Standalone {
    view: watch::Sender<LeaderView>,
    /// Taken by `resign` so listeners are stopped once.
    notifier: Mutex<Option<LeadershipNotifier>>,
}

impl Standalone {
    /// Bumps the epoch counter in `state_dir`, becomes leader at the new epoch and starts the
    /// listeners of `notifier`.
    pub async fn start(
        state_dir: &Path,
        id: &str,
        endpoint: &str,
        notifier: LeadershipNotifier,
    ) -> Result<Self, Error> {
        let view = Self::bump_epoch(state_dir, id, endpoint)?;
        notifier.notify_start(view.epoch).await;
        Ok(Standalone {
            view: watch::Sender::new(view),
            notifier: Mutex::new(Some(notifier)),
        })
    }

    /// The epoch file's part: read, increment, write durably; the view at the new epoch.
    fn bump_epoch(state_dir: &Path, id: &str, endpoint: &str) -> Result<LeaderView, Error> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            Error::io(
                format!("create state directory '{}'", state_dir.display()),
                e,
            )
        })?;
        let path = state_dir.join("epoch");
        let previous = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| Error::Config {
                path: path.display().to_string(),
                message: format!("holds '{}', not an epoch number; restore it or remove the state directory deliberately", s.trim()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(format!("read '{}'", path.display()), e)),
        };
        let epoch = previous + 1;
        let tmp = state_dir.join("epoch.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{epoch}")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            if let Ok(dir) = std::fs::File::open(state_dir) {
                let _ = dir.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| Error::io(format!("write '{}'", path.display()), e))?;
        Ok(LeaderView {
            is_leader: true,
            leader_id: Some(id.to_string()),
            leader_endpoint: Some(endpoint.to_string()),
            epoch: Epoch(epoch),
            mode: "standalone",
        })
    }
}

#[async_trait]
impl Leadership for Standalone {
    fn view(&self) -> LeaderView {
        self.view.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<LeaderView> {
        self.view.subscribe()
    }

    async fn resign(&self) -> Result<(), Error> {
        if let Some(notifier) = self.notifier.lock().await.take() {
            self.view.send_modify(|v| v.is_leader = false);
            notifier.notify_stop().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::leader::listener::testing::Recorder;

    #[tokio::test]
    async fn epoch_increases_across_starts_and_listeners_follow() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(Recorder::default());
        let notifier = LeadershipNotifier::new().with_listener(rec.clone());
        let a = Standalone::start(dir.path(), "c1", "c1@h:1", notifier)
            .await
            .unwrap();
        let view = a.view();
        assert!(view.is_leader);
        assert_eq!(rec.calls(), vec![format!("start({})", view.epoch)]);
        let mut changes = a.subscribe();
        a.resign().await.unwrap();
        a.resign().await.unwrap();
        assert_eq!(rec.calls().len(), 2, "stopped once: {:?}", rec.calls());
        assert!(changes.has_changed().unwrap());
        assert!(!changes.borrow_and_update().is_leader);
        let b = Standalone::start(dir.path(), "c1", "c1@h:1", LeadershipNotifier::new())
            .await
            .unwrap()
            .view();
        assert_eq!(b.epoch, Epoch(view.epoch.0 + 1));
        std::fs::write(dir.path().join("epoch"), "garbage").unwrap();
        assert!(
            Standalone::start(dir.path(), "c1", "c1@h:1", LeadershipNotifier::new())
                .await
                .is_err()
        );
    }
}
