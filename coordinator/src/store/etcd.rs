//! The run store in etcd. Every write is one transaction whose first comparison is our leader
//! key's create revision (the fencing pattern of etcd's own `Election.Proclaim`/`Resign`):
//! `create_revision(<our leader key>) == <our epoch>`. After a new leader is elected our key is
//! gone (its lease expired or was revoked), the comparison fails inside etcd, and the write
//! returns [`Error::Deposed`] — even if this coordinator has not noticed yet.
//!
//! A failed transaction also reads our leader key (`or_else`), so one round trip tells "deposed"
//! from "another condition failed" (a run id already used, a concurrent update of the same run,
//! an audit sequence number taken); the latter are retried a few times or reported.
//!
//! Reads are not fenced: a follower may read runs (status, history) and that is harmless.
//!
//! A failed call moves later calls to the next etcd member ([`Members`]) and returns
//! [`Error::Store`]; a write that failed that way may or may not have been applied, and the
//! caller must find out (read back) before repeating anything that is not idempotent.

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KeyValue, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};
use tokio::sync::watch;

use super::keys::{Keys, RunKey};
use super::{
    AuditRecord, PoolState, RunId, RunRecord, RunSnapshot, RunSpec, RunStatus, RunStore, decode,
    encode, unix_ms, validate_pool_state, validate_spec,
};
use crate::error::Error;
use crate::etcd::Members;
use crate::leader::state::Fence;

/// How often a write is retried when a non-fence condition failed because of a concurrent write.
const CONFLICT_RETRIES: usize = 8;

/// etcd run store, fenced by the current leadership term.
pub struct EtcdRunStore {
    members: Members,
    keys: Keys,
    fences: watch::Receiver<Option<Fence>>,
}

/// What a failed transaction means.
enum Failed {
    /// Our leader key is gone or was recreated: we are deposed.
    Deposed,
    /// Another comparison failed.
    Condition,
}

impl EtcdRunStore {
    /// A store for installation `cluster` whose writes carry the fence published on `fences`
    /// (from `EtcdLeadership::fences`; `None` while not leading, when every write is refused).
    pub fn new(members: Members, cluster: &str, fences: watch::Receiver<Option<Fence>>) -> Self {
        EtcdRunStore {
            members,
            keys: Keys::new(cluster),
            fences,
        }
    }

    /// Runs `call` on the member in use; a failure moves later calls to the next member.
    async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, Error>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let pick = self.members.pick();
        call(pick.client).await.map_err(|e| {
            self.members.failed(pick.index);
            Error::Store(format!("{what}: {e}"))
        })
    }

    fn fence(&self) -> Result<Fence, Error> {
        self.fences.borrow().clone().ok_or_else(|| {
            Error::Deposed("this coordinator does not lead; run state is read-only here".into())
        })
    }

    /// Runs `ops` if our fence holds and every compare in `when` holds.
    async fn fenced_txn(
        &self,
        fence: &Fence,
        when: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Result<(), Failed>, Error> {
        let rev = i64::try_from(fence.epoch.0)
            .map_err(|_| Error::Internal(format!("epoch {} out of range", fence.epoch)))?;
        let mut compares = vec![Compare::create_revision(
            fence.key.clone(),
            CompareOp::Equal,
            rev,
        )];
        compares.extend(when);
        let txn = Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else([TxnOp::get(fence.key.clone(), None)]);
        let resp = self
            .call("write transaction (outcome unknown)", |c| async move {
                c.kv_client().txn(txn).await
            })
            .await?;
        if resp.succeeded() {
            return Ok(Ok(()));
        }
        let ours = resp.op_responses().into_iter().any(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().iter().any(|kv| kv.create_revision() == rev),
            _ => false,
        });
        Ok(Err(if ours {
            Failed::Condition
        } else {
            Failed::Deposed
        }))
    }

    fn deposed(&self, fence: &Fence) -> Error {
        Error::Deposed(format!(
            "our leader key (epoch {}) no longer exists in etcd: a newer leader exists; the write was not made",
            fence.epoch
        ))
    }

    async fn get_kv(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let mut resp = self
            .call(&format!("read '{key}'"), |c| async move {
                c.kv_client().get(key, None).await
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    async fn get_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, Error> {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        let mut resp = self
            .call(&format!("read '{prefix}*'"), |c| async move {
                c.kv_client().get(prefix, Some(options)).await
            })
            .await?;
        Ok(resp.take_kvs())
    }

    /// The run record with its key's create and mod revisions.
    async fn load_run(&self, id: &RunId) -> Result<(RunRecord, i64, i64), Error> {
        let key = self.keys.run(id);
        let kv = self
            .get_kv(&key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no run {id}")))?;
        Ok((
            decode(&key, kv.value())?,
            kv.create_revision(),
            kv.mod_revision(),
        ))
    }

    /// Groups the key-values of the runs prefix into snapshots (pools without their run record
    /// are ignored: a half-written run cannot exist, since records are created first, but a
    /// stray key must not stop a new leader).
    fn snapshots(&self, kvs: &[KeyValue]) -> Result<Vec<RunSnapshot>, Error> {
        let mut runs: std::collections::BTreeMap<RunId, RunSnapshot> = Default::default();
        let mut pools = Vec::new();
        for kv in kvs {
            let key = String::from_utf8_lossy(kv.key());
            match self.keys.parse_run_key(kv.key()) {
                Some(RunKey::Run(id)) => {
                    let run: RunRecord = decode(&key, kv.value())?;
                    runs.insert(
                        id,
                        RunSnapshot {
                            run,
                            pools: Default::default(),
                        },
                    );
                }
                Some(RunKey::Pool(id, pool)) => {
                    pools.push((id, pool, decode::<PoolState>(&key, kv.value())?));
                }
                None => tracing::warn!(%key, "unexpected key under the runs prefix; ignored"),
            }
        }
        for (id, pool, state) in pools {
            if let Some(s) = runs.get_mut(&id) {
                s.pools.insert(pool, state);
            }
        }
        let mut out: Vec<RunSnapshot> = runs.into_values().collect();
        out.sort_by(|a, b| {
            (a.run.created_unix_ms, &a.run.id).cmp(&(b.run.created_unix_ms, &b.run.id))
        });
        Ok(out)
    }

    /// Appends an audit record to run `id` in one fenced transaction with the writes `with`
    /// returns for the run (validated against it); retried when another append took the
    /// sequence number.
    async fn audited(
        &self,
        id: &RunId,
        caller: &str,
        event: &str,
        details: serde_json::Value,
        with: impl Fn(&RunRecord) -> Result<Vec<TxnOp>, Error>,
    ) -> Result<AuditRecord, Error> {
        let fence = self.fence()?;
        let (run, run_create_rev, _) = self.load_run(id).await?;
        let prefix = self.keys.audit_prefix(id);
        for _ in 0..CONFLICT_RETRIES {
            let last = {
                let options = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(1)
                    .with_keys_only();
                let from = prefix.clone();
                let resp = self
                    .call(&format!("read '{prefix}*'"), |c| async move {
                        c.kv_client().get(from, Some(options)).await
                    })
                    .await?;
                resp.kvs()
                    .first()
                    .and_then(|kv| self.keys.parse_audit_seq(id, kv.key()))
                    .unwrap_or(0)
            };
            let record = AuditRecord {
                seq: last + 1,
                at_unix_ms: unix_ms(),
                caller: caller.to_string(),
                event: event.to_string(),
                details: details.clone(),
            };
            let key = self.keys.audit(id, record.seq);
            let value = encode("audit record", &record)?;
            match self
                .fenced_txn(
                    &fence,
                    vec![
                        Compare::create_revision(
                            self.keys.run(id),
                            CompareOp::Equal,
                            run_create_rev,
                        ),
                        Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                    ],
                    {
                        let mut ops = with(&run)?;
                        ops.push(TxnOp::put(key, value, None));
                        ops
                    },
                )
                .await?
            {
                Ok(()) => return Ok(record),
                Err(Failed::Deposed) => return Err(self.deposed(&fence)),
                // Another writer of this leader took the number (or the run went): look again.
                Err(Failed::Condition) => continue,
            }
        }
        Err(Error::Store(format!(
            "run {id}: audit record not appended after {CONFLICT_RETRIES} concurrent appends"
        )))
    }
}

#[async_trait]
impl RunStore for EtcdRunStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn create_run(&self, id: &RunId, spec: RunSpec) -> Result<RunRecord, Error> {
        validate_spec(&spec)?;
        let fence = self.fence()?;
        let now = unix_ms();
        let record = RunRecord {
            id: id.clone(),
            spec,
            status: RunStatus::Pending,
            reason: None,
            created_epoch: fence.epoch,
            created_unix_ms: now,
            updated_unix_ms: now,
        };
        let key = self.keys.run(id);
        let value = encode("run record", &record)?;
        match self
            .fenced_txn(
                &fence,
                vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)],
                vec![TxnOp::put(key, value, None)],
            )
            .await?
        {
            Ok(()) => Ok(record),
            Err(Failed::Deposed) => Err(self.deposed(&fence)),
            Err(Failed::Condition) => Err(Error::AlreadyExists(format!("run {id} already exists"))),
        }
    }

    async fn set_run_status(
        &self,
        id: &RunId,
        status: RunStatus,
        reason: Option<String>,
    ) -> Result<RunRecord, Error> {
        let fence = self.fence()?;
        let key = self.keys.run(id);
        for _ in 0..CONFLICT_RETRIES {
            let (mut record, _, mod_rev) = self.load_run(id).await?;
            record.status = status;
            record.reason = reason.clone();
            record.updated_unix_ms = unix_ms();
            let value = encode("run record", &record)?;
            match self
                .fenced_txn(
                    &fence,
                    vec![Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        mod_rev,
                    )],
                    vec![TxnOp::put(key.clone(), value, None)],
                )
                .await?
            {
                Ok(()) => return Ok(record),
                Err(Failed::Deposed) => return Err(self.deposed(&fence)),
                // Updated (or deleted) concurrently: read again.
                Err(Failed::Condition) => continue,
            }
        }
        Err(Error::Store(format!(
            "run {id}: status not saved after {CONFLICT_RETRIES} concurrent updates"
        )))
    }

    async fn save_pool_state(&self, id: &RunId, mut state: PoolState) -> Result<(), Error> {
        let fence = self.fence()?;
        let (run, create_rev, _) = self.load_run(id).await?;
        validate_pool_state(&run, &state)?;
        state.updated_unix_ms = unix_ms();
        let value = encode("pool state", &state)?;
        match self
            .fenced_txn(
                &fence,
                // The run still exists (the same incarnation we validated against).
                vec![Compare::create_revision(
                    self.keys.run(id),
                    CompareOp::Equal,
                    create_rev,
                )],
                vec![TxnOp::put(self.keys.pool(id, &state.pool), value, None)],
            )
            .await?
        {
            Ok(()) => Ok(()),
            Err(Failed::Deposed) => Err(self.deposed(&fence)),
            Err(Failed::Condition) => Err(Error::NotFound(format!("run {id} was removed"))),
        }
    }

    async fn append_audit(
        &self,
        id: &RunId,
        caller: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<AuditRecord, Error> {
        self.audited(id, caller, event, details, |_| Ok(Vec::new()))
            .await
    }

    async fn save_pool_state_audited(
        &self,
        id: &RunId,
        state: PoolState,
        caller: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<AuditRecord, Error> {
        self.audited(id, caller, event, details, |run| {
            validate_pool_state(run, &state)?;
            let mut state = state.clone();
            state.updated_unix_ms = unix_ms();
            let value = encode("pool state", &state)?;
            Ok(vec![TxnOp::put(
                self.keys.pool(id, &state.pool),
                value,
                None,
            )])
        })
        .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<RunSnapshot>, Error> {
        let kvs = self.get_prefix(&self.keys.run_and_pools_prefix(id)).await?;
        Ok(self.snapshots(&kvs)?.into_iter().find(|s| &s.run.id == id))
    }

    async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, Error> {
        let kvs = self.get_prefix(&self.keys.runs_prefix()).await?;
        let mut runs: Vec<RunRecord> = self.snapshots(&kvs)?.into_iter().map(|s| s.run).collect();
        runs.reverse();
        runs.truncate(limit);
        Ok(runs)
    }

    async fn load_unfinished(&self) -> Result<Vec<RunSnapshot>, Error> {
        let kvs = self.get_prefix(&self.keys.runs_prefix()).await?;
        Ok(self
            .snapshots(&kvs)?
            .into_iter()
            .filter(|s| !s.run.status.is_finished())
            .collect())
    }

    async fn audit(&self, id: &RunId) -> Result<Vec<AuditRecord>, Error> {
        let kvs = self.get_prefix(&self.keys.audit_prefix(id)).await?;
        kvs.iter()
            .map(|kv| decode(&String::from_utf8_lossy(kv.key()), kv.value()))
            .collect()
    }
}
