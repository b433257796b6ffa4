//! The operation journal: every instruction is recorded (and fsynced) before it runs, and its
//! outcome after. A repeated op id is answered from the journal instead of running again — this is
//! what makes "send it again" safe for a coordinator that lost track (crash, failover, a result lost
//! with a broken stream). After an agent restart, operations that were started but never finished
//! are reported as `interrupted`: the agent cannot know how far they got, and the coordinator
//! decides by probing (DESIGN §5), never by running them blindly again.
//!
//! Format: JSON lines in `state_dir/journal.jsonl`, one record per event, outcomes as base64
//! protobuf (`OperationResult`) so they replay byte-for-byte. A torn last line (power loss during
//! a write) is ignored on load — the operation it described then looks started-not-finished, i.e.
//! interrupted, which is the truthful answer. The file is compacted (rewritten atomically with
//! the newest [`MAX_ENTRIES`] operations) when it has grown past twice that many records.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use failback_proto::model::{Epoch, OpId};
use failback_proto::pb;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use failback_proto::clock::unix_ms as now_ms;

/// Operations kept after compaction.
pub const MAX_ENTRIES: usize = 10_000;

/// One line of `journal.jsonl`. Public so that readers outside the agent (the reliability
/// scenarios' fencing and no-repeat checkers) parse the same format rather than a copy of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// An instruction accepted and started.
    Started {
        /// Its op id.
        op: String,
        /// The epoch it carried.
        epoch: u64,
        /// When (Unix ms).
        at_ms: u64,
        /// Human summary of the operation (kind), for people reading the file.
        what: String,
    },
    /// Its outcome recorded.
    Finished {
        /// Its op id.
        op: String,
        /// When (Unix ms).
        at_ms: u64,
        /// base64 of the protobuf `OperationResult`.
        result: String,
    },
}

/// What the journal knows about an op id.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Started and, in this process, still running.
    Running,
    /// Started in a previous process and never finished.
    Interrupted,
    /// Finished with this result (boxed: results are large next to the other variants).
    Finished(Box<pb::OperationResult>),
}

struct Inner {
    file: std::fs::File,
    entries: HashMap<String, Entry>,
    /// Op ids in first-seen order, for compaction.
    order: VecDeque<String>,
    records_in_file: usize,
}

/// The journal (one per agent process).
pub struct Journal {
    path: PathBuf,
    max_entries: usize,
    inner: Mutex<Inner>,
}

fn encode(result: &pb::OperationResult) -> String {
    base64::engine::general_purpose::STANDARD.encode(result.encode_to_vec())
}

impl Journal {
    /// Opens `state_dir/journal.jsonl`, marking operations left running by a previous process as
    /// interrupted.
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        Self::open_with_limit(state_dir, MAX_ENTRIES)
    }

    /// [`Journal::open`] keeping `max_entries` operations at compaction.
    pub fn open_with_limit(state_dir: &Path, max_entries: usize) -> Result<Self, Error> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            Error::io(
                format!("create state directory '{}'", state_dir.display()),
                e,
            )
        })?;
        let path = state_dir.join("journal.jsonl");
        let mut entries = HashMap::new();
        let mut order = VecDeque::new();
        let mut records = 0usize;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let record: Record = match serde_json::from_str(line) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(
                                line = n + 1,
                                "journal '{}': unreadable record skipped: {e}",
                                path.display()
                            );
                            continue;
                        }
                    };
                    records += 1;
                    match record {
                        Record::Started { op, .. } => {
                            if !entries.contains_key(&op) {
                                order.push_back(op.clone());
                            }
                            entries.insert(op, Entry::Interrupted);
                        }
                        Record::Finished { op, result, .. } => {
                            let decoded = base64::engine::general_purpose::STANDARD
                                .decode(result.as_bytes())
                                .ok()
                                .and_then(|b| pb::OperationResult::decode(b.as_slice()).ok());
                            match decoded {
                                Some(r) => {
                                    if !entries.contains_key(&op) {
                                        order.push_back(op.clone());
                                    }
                                    entries.insert(op, Entry::Finished(Box::new(r)));
                                }
                                None => {
                                    tracing::warn!(line = n + 1, %op, "journal: undecodable outcome skipped")
                                }
                            }
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("read journal '{}'", path.display()), e)),
        }
        let interrupted = entries
            .values()
            .filter(|e| **e == Entry::Interrupted)
            .count();
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "operations interrupted by the previous agent process; they will be reported, not re-run"
            );
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open journal '{}'", path.display()), e))?;
        Ok(Journal {
            path,
            max_entries: max_entries.max(1),
            inner: Mutex::new(Inner {
                file,
                entries,
                order,
                records_in_file: records,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is known about `op`.
    pub fn get(&self, op: &OpId) -> Option<Entry> {
        self.lock().entries.get(op.as_str()).cloned()
    }

    fn append(&self, inner: &mut Inner, record: &Record) -> Result<(), Error> {
        let mut line = serde_json::to_string(record)
            .map_err(|e| Error::io("encode journal record", std::io::Error::other(e)))?;
        line.push('\n');
        inner
            .file
            .write_all(line.as_bytes())
            .and_then(|()| inner.file.sync_data())
            .map_err(|e| Error::io(format!("write journal '{}'", self.path.display()), e))?;
        inner.records_in_file += 1;
        Ok(())
    }

    /// Records that `op` starts now, unless the journal already knows it: then returns what it
    /// knows and the caller must not run the operation.
    pub fn begin(&self, op: &OpId, epoch: Epoch, what: &str) -> Result<Option<Entry>, Error> {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get(op.as_str()) {
            return Ok(Some(e.clone()));
        }
        self.append(
            &mut inner,
            &Record::Started {
                op: op.to_string(),
                epoch: epoch.0,
                at_ms: now_ms(),
                what: what.to_string(),
            },
        )?;
        inner.entries.insert(op.to_string(), Entry::Running);
        inner.order.push_back(op.to_string());
        Ok(None)
    }

    /// Records the outcome of `op`.
    pub fn finish(&self, op: &OpId, result: &pb::OperationResult) -> Result<(), Error> {
        let mut inner = self.lock();
        self.append(
            &mut inner,
            &Record::Finished {
                op: op.to_string(),
                at_ms: now_ms(),
                result: encode(result),
            },
        )?;
        inner
            .entries
            .insert(op.to_string(), Entry::Finished(Box::new(result.clone())));
        if inner.records_in_file > 2 * self.max_entries {
            self.compact(&mut inner)?;
        }
        Ok(())
    }

    /// Keeps the newest `max_entries` operations (running ones always), rewriting the file
    /// atomically.
    fn compact(&self, inner: &mut Inner) -> Result<(), Error> {
        while inner.order.len() > self.max_entries {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&old) == Some(&Entry::Running) {
                inner.order.push_back(old);
                break;
            }
            inner.entries.remove(&old);
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut out = String::new();
        for op in &inner.order {
            let record = match inner.entries.get(op) {
                Some(Entry::Finished(r)) => Record::Finished {
                    op: op.clone(),
                    at_ms: now_ms(),
                    result: encode(r),
                },
                Some(_) => Record::Started {
                    op: op.clone(),
                    epoch: 0,
                    at_ms: now_ms(),
                    what: "carried over by compaction".into(),
                },
                None => continue,
            };
            if let Ok(line) = serde_json::to_string(&record) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        let write = || -> std::io::Result<std::fs::File> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(out.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::OpenOptions::new().append(true).open(&self.path)
        };
        inner.file = write()
            .map_err(|e| Error::io(format!("compact journal '{}'", self.path.display()), e))?;
        inner.records_in_file = inner.order.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(s: &str) -> OpId {
        OpId::new(s).unwrap()
    }

    fn ok(op_id: &str) -> pb::OperationResult {
        pb::OperationResult {
            op_id: op_id.into(),
            outcome: Some(pb::operation_result::Outcome::Output(pb::OperationOutput {
                kind: Some(pb::operation_output::Kind::Pong(pb::Pong {})),
            })),
            replayed: false,
        }
    }

    #[test]
    fn begin_finish_replay_and_interrupted_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.begin(&op("a"), Epoch(1), "ping").unwrap(), None);
        assert_eq!(
            j.begin(&op("a"), Epoch(1), "ping").unwrap(),
            Some(Entry::Running)
        );
        j.finish(&op("a"), &ok("a")).unwrap();
        assert_eq!(j.begin(&op("b"), Epoch(1), "ping").unwrap(), None);
        drop(j);
        // A torn last line must not break loading.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal.jsonl"))
            .unwrap()
            .write_all(b"{\"event\":\"fin")
            .unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.get(&op("a")), Some(Entry::Finished(Box::new(ok("a")))));
        assert_eq!(j.get(&op("b")), Some(Entry::Interrupted));
        assert_eq!(j.get(&op("c")), None);
    }

    #[test]
    fn compaction_bounds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        const MAX: usize = 20;
        let j = Journal::open_with_limit(dir.path(), MAX).unwrap();
        for i in 0..(MAX + 5) {
            let id = op(&format!("op{i}"));
            j.begin(&id, Epoch(1), "ping").unwrap();
            j.finish(&id, &ok(id.as_str())).unwrap();
        }
        drop(j);
        let lines = std::fs::read_to_string(dir.path().join("journal.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 2 * MAX + 2, "{lines}");
        let j = Journal::open_with_limit(dir.path(), MAX).unwrap();
        assert!(j.get(&op(&format!("op{}", MAX + 4))).is_some());
        assert_eq!(j.get(&op("op0")), None, "oldest pruned");
    }
}
