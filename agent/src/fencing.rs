//! Fencing: the agent persists the highest leader epoch it has accepted and refuses anything
//! older. Persisted (fsync + atomic rename) *before* the first instruction of a new epoch runs, so
//! a restart cannot forget it and let a deposed leader back in.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use failback_proto::model::Epoch;

use crate::error::Error;

/// The persisted highest epoch.
#[derive(Debug)]
pub struct EpochStore {
    path: PathBuf,
    highest: Mutex<Epoch>,
}

impl EpochStore {
    /// Opens (or creates) `state_dir/epoch`. A corrupt file is an error, not a reset to 0: a
    /// reset would silently re-admit deposed leaders.
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            Error::io(
                format!("create state directory '{}'", state_dir.display()),
                e,
            )
        })?;
        let path = state_dir.join("epoch");
        let highest = match std::fs::read_to_string(&path) {
            Ok(s) => Epoch(s.trim().parse().map_err(|_| Error::Config {
                path: path.display().to_string(),
                message: format!("holds '{}', not an epoch number", s.trim().escape_default()),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Epoch(0),
            Err(e) => return Err(Error::io(format!("read '{}'", path.display()), e)),
        };
        Ok(EpochStore {
            path,
            highest: Mutex::new(highest),
        })
    }

    /// The highest accepted epoch.
    pub fn highest(&self) -> Epoch {
        *self
            .highest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Accepts `epoch` if it is not older than the highest; persists it when it is newer.
    pub fn accept(&self, epoch: Epoch) -> Result<(), Error> {
        let mut highest = self
            .highest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if epoch < *highest {
            return Err(Error::StaleEpoch {
                got: epoch,
                highest: *highest,
            });
        }
        if epoch > *highest {
            let tmp = self.path.with_extension("tmp");
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                writeln!(f, "{}", epoch.0)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &self.path)?;
                if let Some(dir) = self.path.parent().and_then(|d| std::fs::File::open(d).ok()) {
                    let _ = dir.sync_all();
                }
                Ok(())
            };
            write()
                .map_err(|e| Error::io(format!("persist epoch to '{}'", self.path.display()), e))?;
            *highest = epoch;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_older_also_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = EpochStore::open(dir.path()).unwrap();
        s.accept(Epoch(7)).unwrap();
        assert!(matches!(s.accept(Epoch(6)), Err(Error::StaleEpoch { .. })));
        s.accept(Epoch(7)).unwrap();
        let s = EpochStore::open(dir.path()).unwrap();
        assert_eq!(s.highest(), Epoch(7));
        assert!(s.accept(Epoch(6)).is_err());
    }
}
