//! `AgentSession.Open`: the long-lived stream each agent dials.
//!
//! Order of checks, each refusing with a reason the agent logs and `failbackctl agents` can't
//! hide: (1) the certificate carries the `agent` role; (2) its name is an agent of the topology;
//! (3) this coordinator leads (otherwise UNAVAILABLE with the leader hint); (4) the first message
//! is a Hello with our protocol version; (5) the agent has not already accepted a newer epoch than
//! ours (then a newer leader exists and we are stale: refuse rather than instruct). Then Welcome
//! goes down and the session is attached to the registry until the stream ends, the agent misses
//! two heartbeats, a newer session of the same agent replaces it, or the coordinator shuts down.

use std::pin::Pin;
use std::time::Duration;

use failback_proto::identity::Role;
use failback_proto::model::{AgentId, Hello, ProtocolError};
use failback_proto::pb;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::api::auth;
use crate::error::Error;
use crate::leader::LeadershipRef;
use crate::metrics::Metrics;
use crate::registry::{Outbound, Registry};

/// How long an agent has to send Hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The service implementation.
pub struct AgentSessionService {
    /// Agent registry.
    pub registry: Registry,
    /// Who leads.
    pub leadership: LeadershipRef,
    /// Our certificate name.
    pub coordinator_id: String,
    /// Heartbeat interval agents must keep.
    pub heartbeat_interval: Duration,
    /// How long an agent with the "liveness" capability waits for a message from us before it
    /// leaves (see [`liveness_timeout`]); we beat every third of it.
    pub liveness_timeout: Duration,
    /// Metrics.
    pub metrics: Metrics,
    /// Cancelled at coordinator shutdown; ends every session.
    pub shutdown: CancellationToken,
}

type OpenStream = Pin<Box<dyn Stream<Item = Outbound> + Send>>;

/// The capability an agent advertises when it checks the coordinator's liveness.
pub const LIVENESS_CAPABILITY: &str = "liveness";

/// How long an agent may go without hearing from us (issue #12: after a SIGSTOP of the leader,
/// agents stayed attached until HTTP/2 keepalive gave up, 12-17 s, and the new leader could not
/// act). Three heartbeat intervals, and with etcd at most half the lease TTL, so agents leave a
/// hung leader before a new one can win; never under 300 ms.
pub fn liveness_timeout(heartbeat: Duration, lease_ttl: Option<Duration>) -> Duration {
    let t = heartbeat * 3;
    let t = lease_ttl.map_or(t, |ttl| t.min(ttl / 2));
    t.max(Duration::from_millis(300))
}

impl AgentSessionService {
    async fn accept(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<OpenStream, (&'static str, Error)> {
        let peer =
            auth::require(&request, &[Role::Agent], "an agent session").map_err(|e| ("role", e))?;
        let agent = AgentId::new(peer.name.clone())
            .map_err(|e| ("identity", Error::PermissionDenied(e)))?;
        let Some(datacenter) = self.registry.datacenter(&agent) else {
            return Err((
                "unknown_agent",
                Error::PermissionDenied(format!(
                    "agent '{agent}' is not in this coordinator's topology; add an [[agent]] table for it"
                )),
            ));
        };
        let view = self.leadership.view();
        if !view.is_leader {
            return Err((
                "not_leader",
                Error::NotLeader {
                    hint: view.leader_endpoint,
                },
            ));
        }
        let peer_addr = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                (
                    "protocol",
                    Error::Timeout(format!("no Hello within {HELLO_TIMEOUT:?}")),
                )
            })?
            .map_err(|s| {
                (
                    "protocol",
                    Error::InvalidInput(format!("stream failed before Hello: {}", s.message())),
                )
            })?;
        let hello = match first.and_then(|m| m.body) {
            Some(pb::agent_message::Body::Hello(h)) => {
                Hello::try_from(h).map_err(|e| ("protocol", e.into()))?
            }
            _ => {
                return Err((
                    "protocol",
                    ProtocolError::Missing("hello (the first message must be Hello)").into(),
                ));
            }
        };
        if hello.highest_epoch_seen > view.epoch {
            return Err((
                "stale_epoch",
                Error::Deposed(format!(
                    "agent '{agent}' has accepted epoch {} but this coordinator's epoch is {}; a newer leader exists",
                    hello.highest_epoch_seen, view.epoch
                )),
            ));
        }
        let beats = hello.capabilities.iter().any(|c| c == LIVENESS_CAPABILITY);
        let (tx, rx) = mpsc::channel::<Outbound>(64);
        let beat_tx = tx.clone();
        let welcome = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Welcome(pb::Welcome {
                coordinator_id: self.coordinator_id.clone(),
                epoch: view.epoch.0,
                heartbeat_interval_ms: u32::try_from(self.heartbeat_interval.as_millis())
                    .unwrap_or(u32::MAX),
                agent_id: agent.to_string(),
                datacenter,
                liveness_timeout_ms: if beats {
                    u32::try_from(self.liveness_timeout.as_millis()).unwrap_or(u32::MAX)
                } else {
                    0
                },
            })),
        };
        tx.send(Ok(welcome)).await.map_err(|_| {
            (
                "internal",
                Error::Internal("session channel closed before Welcome".into()),
            )
        })?;
        let (session_id, cancel) = self
            .registry
            .attach(&agent, &hello, peer_addr.clone(), tx)
            .ok_or((
                "unknown_agent",
                Error::Internal("agent vanished from the registry".into()),
            ))?;
        tracing::info!(%agent, %peer_addr, version = %hello.agent_version, session_id, "agent session attached");

        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        let shutdown = self.shutdown.clone();
        let beat_every = self.liveness_timeout / 3;
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(beat_every);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            let end = loop {
                tokio::select! {
                    _ = cancel.cancelled() => break "detached",
                    _ = beat.tick(), if beats => {
                        seq += 1;
                        // try_send: a full channel means instructions are queued, which the
                        // agent hears as liveness anyway.
                        let _ = beat_tx.try_send(Ok(pb::CoordinatorMessage {
                            body: Some(pb::coordinator_message::Body::Heartbeat(pb::Heartbeat { seq })),
                        }));
                    }
                    _ = shutdown.cancelled() => {
                        registry.detach(&agent, session_id, Some(Status::unavailable("coordinator shutting down")));
                        break "coordinator shutdown";
                    }
                    msg = inbound.message() => match msg {
                        Ok(Some(m)) => match m.body {
                            Some(pb::agent_message::Body::Heartbeat(_)) => registry.heartbeat(&agent, session_id),
                            Some(pb::agent_message::Body::Update(u)) => {
                                // Kept as the op's latest progress for `GetRun` / `watch`.
                                let op_id = u.op_id.clone();
                                let kept = registry.update(&agent, u);
                                tracing::debug!(%agent, %op_id, kept, "operation update");
                            }
                            Some(pb::agent_message::Body::Result(r)) => {
                                let op_id = r.op_id.clone();
                                let replayed = r.replayed;
                                if !registry.deliver(&agent, r) {
                                    tracing::info!(%agent, %op_id, replayed, "result nobody waits for (late or repeated)");
                                }
                            }
                            Some(pb::agent_message::Body::Hello(_)) | None => {
                                metrics.session_error("protocol");
                                registry.detach(&agent, session_id, Some(Status::invalid_argument(
                                    "unexpected message: Hello is only valid as the first message, and a message needs a body",
                                )));
                                break "protocol error";
                            }
                        },
                        Ok(None) => {
                            registry.detach(&agent, session_id, None);
                            break "closed by agent";
                        }
                        Err(e) => {
                            metrics.session_error("stream");
                            registry.detach(&agent, session_id, None);
                            tracing::debug!(%agent, "session stream error: {e}");
                            break "stream error";
                        }
                    }
                }
            };
            tracing::info!(%agent, session_id, reason = end, "agent session ended");
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl pb::agent_session_server::AgentSession for AgentSessionService {
    type OpenStream = OpenStream;

    async fn open(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        match self.accept(request).await {
            Ok(stream) => Ok(Response::new(stream)),
            Err((reason, e)) => {
                self.metrics.session_error(reason);
                tracing::warn!(reason, "agent session refused: {e}");
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_is_three_beats_and_under_half_the_lease() {
        let s = Duration::from_secs;
        assert_eq!(liveness_timeout(s(2), None), s(6));
        assert_eq!(
            liveness_timeout(s(2), Some(s(5))),
            Duration::from_millis(2500)
        );
        assert_eq!(liveness_timeout(s(1), Some(s(10))), s(3));
        assert_eq!(
            liveness_timeout(Duration::from_millis(50), None),
            Duration::from_millis(300)
        );
    }
}
