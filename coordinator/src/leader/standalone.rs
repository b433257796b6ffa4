//! Standalone leadership: one coordinator, always leader. Its epoch is a counter in
//! `state_dir/epoch`, incremented and fsynced at every start, so agents that saw the previous
//! process's epoch accept the new one and a copy of an old process (restored from a backup of the
//! host, say) is refused by agents that saw the newer epoch.

use std::io::Write;
use std::path::Path;

use failback_proto::model::Epoch;

use super::{LeaderView, Leadership};
use crate::error::Error;

/// Always-leader implementation.
#[derive(Debug)]
pub struct Standalone {
    view: LeaderView,
}

impl Standalone {
    /// Bumps the epoch counter in `state_dir` and becomes leader at the new epoch.
    pub fn start(state_dir: &Path, id: &str, endpoint: &str) -> Result<Self, Error> {
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
        Ok(Standalone {
            view: LeaderView {
                is_leader: true,
                leader_id: Some(id.to_string()),
                leader_endpoint: Some(endpoint.to_string()),
                epoch: Epoch(epoch),
                mode: "standalone",
            },
        })
    }
}

impl Leadership for Standalone {
    fn view(&self) -> LeaderView {
        self.view.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_increases_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let a = Standalone::start(dir.path(), "c1", "c1@h:1")
            .unwrap()
            .view();
        let b = Standalone::start(dir.path(), "c1", "c1@h:1")
            .unwrap()
            .view();
        assert!(a.is_leader);
        assert_eq!(b.epoch, Epoch(a.epoch.0 + 1));
        std::fs::write(dir.path().join("epoch"), "garbage").unwrap();
        assert!(Standalone::start(dir.path(), "c1", "c1@h:1").is_err());
    }
}
