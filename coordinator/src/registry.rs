//! The agent registry: every agent the topology names, and for each the observed session state
//! (connected, last heartbeat, version). Sessions attach and detach here; a sweeper marks an agent
//! disconnected when it misses two heartbeat intervals, because a host that vanished without a TCP
//! reset (power loss, a cut link) would otherwise look connected until TCP gave up minutes later.
//!
//! It also knows what is in flight: every instruction waiting for its result, with the agent's
//! latest progress update (`OperationUpdate`) for it, so `GetRun` can show "restore_database 42%
//! on sql01". That table is bounded by the instructions in flight: an entry goes when its result
//! arrives or its caller stops waiting, or when the agent's session ends: then the waiter is
//! told at once, so it asks again with the same op id on the next session instead of waiting out
//! the step's timeout for a result a restarted agent will never send.
//!
//! A `std::sync::Mutex` guards the map: it is never held across an `.await`, and every operation
//! is a few map updates.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failback_proto::model::{AgentId, Epoch, Hello, OpId};
use failback_proto::pb;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::topology::Topology;
use failback_proto::clock::unix_ms;

/// What flows down a session (instructions, or the status that ends it).
pub type Outbound = Result<pb::CoordinatorMessage, tonic::Status>;

struct Session {
    id: u64,
    tx: mpsc::Sender<Outbound>,
    cancel: CancellationToken,
    last_heartbeat: Instant,
}

struct Entry {
    datacenter: String,
    roles: Vec<String>,
    session: Option<Session>,
    last_heartbeat_unix_ms: u64,
    connected_since_unix_ms: u64,
    version: String,
    capabilities: Vec<String>,
    peer: String,
}

/// Shared registry handle.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
    metrics: Metrics,
}

struct Inner {
    agents: BTreeMap<AgentId, Entry>,
    next_session: u64,
    /// Callers waiting for a result, by agent and op id. A session's end tells them at once
    /// ([`Inner::session_lost`]); they ask again on the next session with the same op id.
    pending: HashMap<(AgentId, String), Pending>,
}

/// How a wait ends: the result, or the agent's session ended first.
type Awaited = Result<pb::OperationResult, SessionLost>;

/// The session an instruction was sent on ended before its result arrived.
#[derive(Debug)]
struct SessionLost;

impl Inner {
    /// Ends every wait on `id`'s operations (issue #12, hang): a restarted agent has forgotten
    /// what it ran and will never send those results, and a reconnecting one may not either.
    /// Each caller asks again with the same op id once a session is back; the agent's journal
    /// answers (the result, in progress, or interrupted), never a second run.
    fn session_lost(&mut self, id: &AgentId) {
        if failback_proto::test_break::broken(failback_proto::test_break::SESSION_LOST_WAITS) {
            return;
        }
        let lost: Vec<(AgentId, String)> = self
            .pending
            .keys()
            .filter(|(a, _)| a == id)
            .cloned()
            .collect();
        for key in lost {
            if let Some(p) = self.pending.remove(&key) {
                let _ = p.tx.send(Err(SessionLost));
            }
        }
    }
}

/// One instruction waiting for its result.
struct Pending {
    tx: oneshot::Sender<Awaited>,
    /// Catalogue name of the operation.
    operation: &'static str,
    /// When it was sent, Unix ms (the newest one in flight is the one to show).
    sent_unix_ms: u64,
    /// The agent's latest progress for it; `None` until one arrives and after its session ended.
    update: Option<pb::OperationUpdate>,
}

/// An operation in flight, as `GetRun` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// Agent running it.
    pub agent: String,
    /// Op id.
    pub op_id: String,
    /// Catalogue name.
    pub operation: String,
    /// 0..=100 when the agent reported one.
    pub percent: Option<u32>,
    /// The agent's last progress message (empty when none).
    pub message: String,
    /// When it was sent, Unix ms.
    pub sent_unix_ms: u64,
}

impl Registry {
    /// One entry per agent of the topology, all disconnected.
    pub fn new(topology: &Topology, metrics: Metrics) -> Self {
        let agents = topology
            .agents
            .iter()
            .map(|(id, a)| {
                (
                    id.clone(),
                    Entry {
                        datacenter: a.datacenter.clone(),
                        roles: topology.roles_of(id),
                        session: None,
                        last_heartbeat_unix_ms: 0,
                        connected_since_unix_ms: 0,
                        version: String::new(),
                        capabilities: Vec::new(),
                        peer: String::new(),
                    },
                )
            })
            .collect();
        Registry {
            inner: Arc::new(Mutex::new(Inner {
                agents,
                next_session: 1,
                pending: HashMap::new(),
            })),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters
        // more than losing the registry, so recover the guard.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The data center of a known agent.
    pub fn datacenter(&self, id: &AgentId) -> Option<String> {
        self.lock().agents.get(id).map(|e| e.datacenter.clone())
    }

    /// Attaches a new session for `id`, replacing (and ending) any previous one: the newest
    /// connection is the truth, an older one is a half-dead leftover. Returns the session id and
    /// the token cancelled when the session is detached.
    pub fn attach(
        &self,
        id: &AgentId,
        hello: &Hello,
        peer: String,
        tx: mpsc::Sender<Outbound>,
    ) -> Option<(u64, CancellationToken)> {
        let mut inner = self.lock();
        let session_id = inner.next_session;
        inner.next_session += 1;
        let entry = inner.agents.get_mut(id)?;
        let replaced = entry.session.take().is_some_and(|old| {
            let _ = old.tx.try_send(Err(tonic::Status::aborted(
                "replaced by a newer session of the same agent",
            )));
            old.cancel.cancel();
            true
        });
        // The new session may come from a restarted agent that has forgotten the old one's
        // operations: their waiters ask again too.
        if replaced {
            inner.session_lost(id);
        }
        let entry = inner.agents.get_mut(id)?;
        let cancel = CancellationToken::new();
        let now = unix_ms();
        entry.session = Some(Session {
            id: session_id,
            tx,
            cancel: cancel.clone(),
            last_heartbeat: Instant::now(),
        });
        entry.last_heartbeat_unix_ms = now;
        entry.connected_since_unix_ms = now;
        entry.version = hello.agent_version.clone();
        entry.capabilities = hello.capabilities.clone();
        entry.peer = peer;
        let n = inner
            .agents
            .values()
            .filter(|e| e.session.is_some())
            .count();
        drop(inner);
        self.metrics.set_connected(n);
        Some((session_id, cancel))
    }

    /// Records a heartbeat of the given session (ignored if the session was replaced).
    pub fn heartbeat(&self, id: &AgentId, session_id: u64) {
        let mut inner = self.lock();
        if let Some(e) = inner.agents.get_mut(id)
            && let Some(s) = e.session.as_mut().filter(|s| s.id == session_id)
        {
            s.last_heartbeat = Instant::now();
            e.last_heartbeat_unix_ms = unix_ms();
            self.metrics.heartbeat();
        }
    }

    /// Detaches the given session (no-op if it was already replaced). Dropping the session's
    /// sender ends the outbound stream.
    pub fn detach(&self, id: &AgentId, session_id: u64, status: Option<tonic::Status>) -> bool {
        let mut inner = self.lock();
        let Some(e) = inner.agents.get_mut(id) else {
            return false;
        };
        if e.session.as_ref().is_none_or(|s| s.id != session_id) {
            return false;
        }
        if let Some(s) = e.session.take() {
            if let Some(status) = status {
                let _ = s.tx.try_send(Err(status));
            }
            s.cancel.cancel();
        }
        inner.session_lost(id);
        let n = inner
            .agents
            .values()
            .filter(|e| e.session.is_some())
            .count();
        drop(inner);
        self.metrics.set_connected(n);
        true
    }

    /// Detaches every session, telling each agent `status` (leadership ended: the agents must
    /// find the new leader). Returns how many were detached.
    pub fn detach_all(&self, status: &tonic::Status) -> usize {
        let sessions: Vec<(AgentId, u64)> = self
            .lock()
            .agents
            .iter()
            .filter_map(|(id, e)| e.session.as_ref().map(|s| (id.clone(), s.id)))
            .collect();
        sessions
            .into_iter()
            .filter(|(id, sid)| self.detach(id, *sid, Some(status.clone())))
            .count()
    }

    /// Detaches every session silent for longer than `max_silence`; returns their agent ids.
    pub fn sweep(&self, max_silence: Duration) -> Vec<AgentId> {
        let now = Instant::now();
        let stale: Vec<(AgentId, u64)> = self
            .lock()
            .agents
            .iter()
            .filter_map(|(id, e)| {
                let s = e.session.as_ref()?;
                (now.duration_since(s.last_heartbeat) > max_silence).then(|| (id.clone(), s.id))
            })
            .collect();
        let mut out = Vec::new();
        for (id, sid) in stale {
            let status = tonic::Status::deadline_exceeded(format!(
                "no heartbeat for more than {max_silence:?}; session closed, reconnect"
            ));
            if self.detach(&id, sid, Some(status)) {
                self.metrics.session_error("missed_heartbeats");
                out.push(id);
            }
        }
        out
    }

    /// Sends `operation` to `agent` as op `op_id` at `epoch`, and waits up to `timeout` for the
    /// result. A timeout or a lost session means the outcome is unknown: ask again with the same
    /// op id (the agent's journal answers without re-running) — never with a new one blindly.
    pub async fn instruct(
        &self,
        agent: &AgentId,
        op_id: &OpId,
        epoch: Epoch,
        operation: pb::Operation,
        timeout: Duration,
    ) -> Result<pb::OperationResult, Error> {
        let key = (agent.clone(), op_id.to_string());
        let (tx, rx) = oneshot::channel();
        let operation_name = crate::runbook::operation_name(&operation);
        let session_tx = {
            let mut inner = self.lock();
            let session_tx = inner
                .agents
                .get(agent)
                .ok_or_else(|| {
                    Error::InvalidInput(format!("agent '{agent}' is not in the topology"))
                })?
                .session
                .as_ref()
                .map(|s| s.tx.clone())
                .ok_or_else(|| {
                    Error::AgentUnavailable(format!("agent '{agent}' is not connected"))
                })?;
            inner.pending.insert(
                key.clone(),
                Pending {
                    tx,
                    operation: operation_name,
                    sent_unix_ms: unix_ms(),
                    update: None,
                },
            );
            session_tx
        };
        let deadline = SystemTime::now() + timeout;
        let instruction = pb::Instruction {
            op_id: op_id.to_string(),
            epoch: epoch.0,
            deadline_unix_ms: deadline
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            operation: Some(operation),
        };
        let msg = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Instruction(instruction)),
        };
        let outcome = match session_tx.send(Ok(msg)).await {
            Err(_) => Err(Error::AgentUnavailable(format!(
                "the session to agent '{agent}' closed before the instruction was sent"
            ))),
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(result))) => Ok(result),
                Ok(Ok(Err(SessionLost))) => Err(Error::AgentUnavailable(format!(
                    "the session to agent '{agent}' ended while op '{op_id}' was in flight; its outcome is unknown (ask again with the same op id)"
                ))),
                Ok(Err(_)) => Err(Error::Internal("result waiter dropped".into())),
                Err(_) => Err(Error::Timeout(format!(
                    "no result from agent '{agent}' for op '{op_id}' within {timeout:?}; its outcome is unknown (ask again with the same op id)"
                ))),
            },
        };
        self.lock().pending.remove(&key);
        outcome
    }

    /// Routes a result from `agent` to its waiter; false when nobody waits (a late or replayed
    /// result).
    pub fn deliver(&self, agent: &AgentId, result: pb::OperationResult) -> bool {
        let waiter = self
            .lock()
            .pending
            .remove(&(agent.clone(), result.op_id.clone()));
        match waiter {
            Some(p) => p.tx.send(Ok(result)).is_ok(),
            None => false,
        }
    }

    /// Keeps `update` as the latest progress of its operation; false (and dropped) when nothing
    /// waits for that op id from this agent (a late update, racing its own result).
    pub fn update(&self, agent: &AgentId, mut update: pb::OperationUpdate) -> bool {
        update.percent = update.percent.map(|p| p.min(100));
        match self
            .lock()
            .pending
            .get_mut(&(agent.clone(), update.op_id.clone()))
        {
            Some(p) => {
                p.update = Some(update);
                true
            }
            None => false,
        }
    }

    /// The newest operation in flight among `op_ids` (a pool's current attempt), if any.
    pub fn in_flight(&self, op_ids: &[String]) -> Option<InFlight> {
        self.lock()
            .pending
            .iter()
            .filter(|((_, op), _)| op_ids.contains(op))
            .max_by_key(|(_, p)| p.sent_unix_ms)
            .map(|((agent, op), p)| InFlight {
                agent: agent.to_string(),
                op_id: op.clone(),
                operation: p.operation.to_string(),
                percent: p.update.as_ref().and_then(|u| u.percent),
                message: p
                    .update
                    .as_ref()
                    .map(|u| u.message.clone())
                    .unwrap_or_default(),
                sent_unix_ms: p.sent_unix_ms,
            })
    }

    /// Every agent with its state, sorted by id.
    pub fn list(&self) -> Vec<pb::AgentInfo> {
        self.lock()
            .agents
            .iter()
            .map(|(id, e)| pb::AgentInfo {
                id: id.to_string(),
                datacenter: e.datacenter.clone(),
                roles: e.roles.clone(),
                connected: e.session.is_some(),
                last_heartbeat_unix_ms: e.last_heartbeat_unix_ms,
                version: e.version.clone(),
                capabilities: e.capabilities.clone(),
                peer_address: e.peer.clone(),
                connected_since_unix_ms: e.connected_since_unix_ms,
            })
            .collect()
    }
}

/// Agent sessions belong to the leader: when leadership ends, every session is closed so each
/// agent looks for the new leader (its coordinator list, then the leader hint) instead of
/// waiting on a coordinator that may no longer instruct it.
#[async_trait::async_trait]
impl crate::leader::LeadershipListener for Registry {
    fn name(&self) -> &str {
        "agent sessions"
    }

    async fn on_leader_start(&self, _epoch: Epoch) -> Result<(), Error> {
        Ok(())
    }

    async fn on_leader_stop(&self) -> Result<(), Error> {
        let n = self.detach_all(&tonic::Status::unavailable(
            "this coordinator no longer leads; reconnect to the leader",
        ));
        if n > 0 {
            tracing::info!(
                sessions = n,
                "closed agent sessions at the end of leadership"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = r#"
[[agent]]
id = "sql01.dc1.lab"
datacenter = "dc1"
[[agent]]
id = "sql01.dc2.lab"
datacenter = "dc2"
[[agent]]
id = "fe01.dc1.lab"
datacenter = "dc1"
[[agent]]
id = "fe01.dc2.lab"
datacenter = "dc2"

[[pool]]
fqdn = "pchat01.lab.local"
primary_dc = "dc1"
backup_dc = "dc2"
databases = ["mgc", "mgccomp"]
share = "/lab/share"
copy_dir = "/lab/copy"
[pool.lync_shell]
dc1 = ["fe01.dc1.lab"]
dc2 = ["fe01.dc2.lab"]
[pool.sql]
primary = { agent = "sql01.dc1.lab", instance = "sql01.dc1.lab,14331" }
backup = { agent = "sql01.dc2.lab", instance = "sql01.dc2.lab,14332" }
[pool.chat_servers]
dc1 = ["pc01.dc1.lab"]
dc2 = ["pc01.dc2.lab"]
"#;

    fn registry() -> Registry {
        let t = Topology::parse(std::path::Path::new("t.toml"), TOPOLOGY).unwrap();
        Registry::new(&t, Metrics::default())
    }

    fn update(op: &str, percent: Option<u32>) -> pb::OperationUpdate {
        pb::OperationUpdate {
            op_id: op.into(),
            percent,
            message: "some bytes".into(),
        }
    }

    #[tokio::test]
    async fn keeps_the_latest_update_while_the_operation_is_in_flight() {
        let reg = registry();
        let agent = AgentId::new("sql01.dc1.lab").unwrap();
        let hello = Hello {
            agent_version: "t".into(),
            capabilities: vec![],
            highest_epoch_seen: Epoch(1),
        };
        let (tx, mut rx) = mpsc::channel(8);
        reg.attach(&agent, &hello, "peer".into(), tx).unwrap();
        let op = OpId::new("run/pool/fb3_backup/1/backup").unwrap();
        let r2 = reg.clone();
        let (a2, op2) = (agent.clone(), op.clone());
        let waiter = tokio::spawn(async move {
            let operation = pb::Operation {
                kind: Some(pb::operation::Kind::Ping(pb::Ping {})),
            };
            r2.instruct(&a2, &op2, Epoch(1), operation, Duration::from_secs(10))
                .await
        });
        rx.recv().await.unwrap().unwrap();
        let ids = vec![op.to_string()];
        // A late update for an op nobody waits for is dropped.
        assert!(!reg.update(&agent, update("other", Some(5))));
        assert!(reg.update(&agent, update(op.as_str(), Some(40))));
        assert!(reg.update(&agent, update(op.as_str(), Some(140))));
        let f = reg.in_flight(&ids).unwrap();
        assert_eq!(
            (f.agent.as_str(), f.operation.as_str(), f.percent),
            ("sql01.dc1.lab", "ping", Some(100))
        );
        assert_eq!(reg.in_flight(&["x".to_string()]), None);
        // The result arrives: nothing in flight any more.
        assert!(reg.deliver(
            &agent,
            pb::OperationResult {
                op_id: op.to_string(),
                ..Default::default()
            }
        ));
        waiter.await.unwrap().unwrap();
    }

    /// A session that ends with an operation in flight ends its wait at once, as "agent
    /// unavailable" (ask again with the same op id), whether the session is detached or
    /// replaced by a newer one (an agent that restarted never sends the old result). Before,
    /// the wait lasted the whole step timeout (issue #12, hang).
    #[tokio::test]
    async fn a_lost_session_ends_the_waits_on_it() {
        let reg = registry();
        let agent = AgentId::new("sql01.dc1.lab").unwrap();
        let hello = Hello {
            agent_version: "t".into(),
            capabilities: vec![],
            highest_epoch_seen: Epoch(1),
        };
        for replace in [false, true] {
            let (tx, mut rx) = mpsc::channel(8);
            let (sid, _) = reg.attach(&agent, &hello, "peer".into(), tx).unwrap();
            let op = OpId::new(format!("run/pool/fb4_restore/1/restore-{replace}")).unwrap();
            let r2 = reg.clone();
            let (a2, op2) = (agent.clone(), op.clone());
            let waiter = tokio::spawn(async move {
                let operation = pb::Operation {
                    kind: Some(pb::operation::Kind::Ping(pb::Ping {})),
                };
                r2.instruct(&a2, &op2, Epoch(1), operation, Duration::from_secs(3600))
                    .await
            });
            rx.recv().await.unwrap().unwrap();
            assert!(reg.in_flight(&[op.to_string()]).is_some());
            if replace {
                let (tx, _rx) = mpsc::channel(8);
                reg.attach(&agent, &hello, "peer".into(), tx).unwrap();
            } else {
                assert!(reg.detach(&agent, sid, None));
            }
            let r = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("the wait ended at once")
                .unwrap();
            assert!(matches!(r, Err(Error::AgentUnavailable(_))), "{r:?}");
            assert_eq!(reg.in_flight(&[op.to_string()]), None);
        }
    }
}
