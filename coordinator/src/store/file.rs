//! The run store for standalone mode: one JSON file per run, `state_dir/runs/<run-id>.json`,
//! holding the run record, its pools' states and its audit trail.
//!
//! Why this shape (rather than one file for everything, or a JSON-lines log): each write
//! replaces one file atomically — write `<id>.json.tmp`, fsync it, rename it over `<id>.json`,
//! fsync the directory — so a crash leaves either the old or the new version, never a torn one,
//! and recovery needs no log replay or torn-tail handling. Per-run files bound the cost of a
//! write to the size of one run (a few steps per pool and its audit trail: kilobytes) instead of
//! the whole history. Every file is read once at open and kept in memory; reads never touch the
//! disk.
//!
//! A second coordinator on the same state directory would be a split brain that no lease
//! prevents: `runs/.lock` is held exclusively (an OS file lock, released when the process
//! dies) for as long as the store is open, and a second open fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use failback_proto::model::Epoch;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{
    AuditRecord, PoolState, RunId, RunRecord, RunSnapshot, RunSpec, RunStatus, RunStore, decode,
    encode, unix_ms, validate_pool_state, validate_spec,
};
use crate::error::Error;

/// Everything stored about one run: the content of its file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunFile {
    run: RunRecord,
    pools: BTreeMap<String, PoolState>,
    audit: Vec<AuditRecord>,
}

/// File-backed run store.
pub struct FileRunStore {
    dir: PathBuf,
    epoch: Epoch,
    runs: Mutex<BTreeMap<RunId, RunFile>>,
    /// Holds the exclusive lock for the store's lifetime.
    _lock: File,
}

impl FileRunStore {
    /// Opens (creating) `state_dir/runs`, takes its lock and loads every run. `epoch` is the
    /// standalone leader's epoch, recorded in the runs it creates.
    pub fn open(state_dir: &Path, epoch: Epoch) -> Result<Self, Error> {
        let dir = state_dir.join("runs");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create '{}'", dir.display()), e))?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("open '{}'", lock_path.display()), e))?;
        fs4::FileExt::try_lock(&lock).map_err(|e| {
            Error::Config {
                path: dir.display().to_string(),
                message: format!(
                    "the run store is in use by another coordinator process ({e}); two standalone coordinators must not share a state directory"
                ),
            }
        })?;
        let mut runs = BTreeMap::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("read '{}'", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("read '{}'", dir.display()), e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json.tmp") {
                // A write interrupted before its rename: the .json beside it is the truth.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(id) = RunId::new(stem) else {
                tracing::warn!(file = %path.display(), "not a run file name; ignored");
                continue;
            };
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::io(format!("read '{}'", path.display()), e))?;
            let file: RunFile = decode(&path.display().to_string(), &bytes)?;
            if file.run.id != id {
                return Err(Error::Internal(format!(
                    "run store: '{}' holds run {}",
                    path.display(),
                    file.run.id
                )));
            }
            runs.insert(id, file);
        }
        Ok(FileRunStore {
            dir,
            epoch,
            runs: Mutex::new(runs),
            _lock: lock,
        })
    }

    /// Writes `file` durably, then (only then) the caller updates memory.
    async fn persist(&self, file: &RunFile) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(file)
            .map_err(|e| Error::Internal(format!("encode run file: {e}")))?;
        let path = self.dir.join(format!("{}.json", file.run.id));
        let dir = self.dir.clone();
        let written = Arc::new(path);
        let target = written.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &target, &bytes))
            .await
            .map_err(|e| Error::Internal(format!("run store writer: {e}")))?
            .map_err(|e| Error::io(format!("write '{}'", written.display()), e))
    }

    /// Applies `change` to a copy of run `id`'s file, persists it, and installs it.
    async fn update<T>(
        &self,
        id: &RunId,
        change: impl FnOnce(&mut RunFile) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut runs = self.runs.lock().await;
        let mut file = runs
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no run {id}")))?;
        let out = change(&mut file)?;
        self.persist(&file).await?;
        runs.insert(id.clone(), file);
        Ok(out)
    }
}

/// Appends the next audit record to `f`.
fn push_audit(
    f: &mut RunFile,
    caller: &str,
    event: &str,
    details: serde_json::Value,
) -> Result<AuditRecord, Error> {
    let record = AuditRecord {
        seq: f.audit.last().map_or(0, |r| r.seq) + 1,
        at_unix_ms: unix_ms(),
        caller: caller.to_string(),
        event: event.to_string(),
        details,
    };
    encode("audit record", &record)?;
    f.audit.push(record.clone());
    Ok(record)
}

/// tmp + fsync + rename + fsync(dir).
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    // The rename is durable only once the directory is; not possible on every platform.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn snapshot(file: &RunFile) -> RunSnapshot {
    RunSnapshot {
        run: file.run.clone(),
        pools: file.pools.clone(),
    }
}

#[async_trait]
impl RunStore for FileRunStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn create_run(&self, id: &RunId, spec: RunSpec) -> Result<RunRecord, Error> {
        validate_spec(&spec)?;
        let mut runs = self.runs.lock().await;
        if runs.contains_key(id) {
            return Err(Error::AlreadyExists(format!("run {id} already exists")));
        }
        let now = unix_ms();
        let run = RunRecord {
            id: id.clone(),
            spec,
            status: RunStatus::Pending,
            reason: None,
            created_epoch: self.epoch,
            created_unix_ms: now,
            updated_unix_ms: now,
        };
        encode("run record", &run)?;
        let file = RunFile {
            run: run.clone(),
            pools: BTreeMap::new(),
            audit: Vec::new(),
        };
        self.persist(&file).await?;
        runs.insert(id.clone(), file);
        Ok(run)
    }

    async fn set_run_status(
        &self,
        id: &RunId,
        status: RunStatus,
        reason: Option<String>,
    ) -> Result<RunRecord, Error> {
        self.update(id, |f| {
            f.run.status = status;
            f.run.reason = reason;
            f.run.updated_unix_ms = unix_ms();
            encode("run record", &f.run)?;
            Ok(f.run.clone())
        })
        .await
    }

    async fn save_pool_state(&self, id: &RunId, mut state: PoolState) -> Result<(), Error> {
        self.update(id, |f| {
            validate_pool_state(&f.run, &state)?;
            state.updated_unix_ms = unix_ms();
            encode("pool state", &state)?;
            f.pools.insert(state.pool.clone(), state);
            Ok(())
        })
        .await
    }

    async fn append_audit(
        &self,
        id: &RunId,
        caller: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<AuditRecord, Error> {
        self.update(id, |f| push_audit(f, caller, event, details))
            .await
    }

    async fn save_pool_state_audited(
        &self,
        id: &RunId,
        mut state: PoolState,
        caller: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<AuditRecord, Error> {
        // One file per run holds both: one atomic rename writes them together.
        self.update(id, |f| {
            validate_pool_state(&f.run, &state)?;
            state.updated_unix_ms = unix_ms();
            encode("pool state", &state)?;
            f.pools.insert(state.pool.clone(), state);
            push_audit(f, caller, event, details)
        })
        .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<RunSnapshot>, Error> {
        Ok(self.runs.lock().await.get(id).map(snapshot))
    }

    async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, Error> {
        let runs = self.runs.lock().await;
        let mut out: Vec<RunRecord> = runs.values().map(|f| f.run.clone()).collect();
        out.sort_by(|a, b| (b.created_unix_ms, &b.id).cmp(&(a.created_unix_ms, &a.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn load_unfinished(&self) -> Result<Vec<RunSnapshot>, Error> {
        let runs = self.runs.lock().await;
        let mut out: Vec<RunSnapshot> = runs
            .values()
            .filter(|f| !f.run.status.is_finished())
            .map(snapshot)
            .collect();
        out.sort_by(|a, b| {
            (a.run.created_unix_ms, &a.run.id).cmp(&(b.run.created_unix_ms, &b.run.id))
        });
        Ok(out)
    }

    async fn audit(&self, id: &RunId) -> Result<Vec<AuditRecord>, Error> {
        Ok(self
            .runs
            .lock()
            .await
            .get(id)
            .map(|f| f.audit.clone())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        conformance::run_all(|| {
            n += 1;
            let path = dir.path().join(format!("s{n}"));
            async move {
                Arc::new(FileRunStore::open(&path, Epoch(3)).unwrap()) as crate::store::RunStoreRef
            }
        })
        .await;
    }

    #[tokio::test]
    async fn survives_reopen_and_excludes_a_second_process() {
        let dir = tempfile::tempdir().unwrap();
        let id = RunId::new("r1").unwrap();
        {
            let s = FileRunStore::open(dir.path(), Epoch(1)).unwrap();
            s.create_run(&id, conformance::spec(&["p1"])).await.unwrap();
            s.append_audit(&id, "op", "run.created", serde_json::json!({}))
                .await
                .unwrap();
            let e = FileRunStore::open(dir.path(), Epoch(1)).err().unwrap();
            assert!(e.to_string().contains("in use"), "{e}");
        }
        // A leftover temporary file from an interrupted write is ignored and removed.
        std::fs::write(dir.path().join("runs").join("r1.json.tmp"), "{torn").unwrap();
        let s = FileRunStore::open(dir.path(), Epoch(2)).unwrap();
        let snap = s.get_run(&id).await.unwrap().unwrap();
        assert_eq!(snap.run.created_epoch, Epoch(1));
        assert_eq!(s.audit(&id).await.unwrap().len(), 1);
        assert!(!dir.path().join("runs").join("r1.json.tmp").exists());
        // A corrupt run file stops the open with its path named, rather than losing the run.
        drop(s);
        std::fs::write(dir.path().join("runs").join("r2.json"), "{").unwrap();
        let e = FileRunStore::open(dir.path(), Epoch(2)).err().unwrap();
        assert!(e.to_string().contains("r2.json"), "{e}");
    }
}
