//! A scripted coordinator for testing the real agent process: it serves `AgentSession` over the
//! same mTLS (a `coordinator` certificate of the fleet's CA) and hands each session to the test,
//! which then sends whatever Welcome epochs and instructions the case needs — including the stale
//! and repeated ones a correct coordinator never would.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use failback_proto::pb;
use failback_proto::tls::{TlsFiles, TlsMaterial};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// One agent session as the test sees it.
pub struct FakeSession {
    /// The agent's certificate name.
    pub agent: String,
    /// The Hello the agent sent.
    pub hello: pb::Hello,
    /// Messages to the agent.
    pub tx: mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
    /// Messages from the agent (after Hello).
    pub rx: Streaming<pb::AgentMessage>,
}

impl FakeSession {
    /// Sends a Welcome at `epoch` (no liveness check: the fake sends no heartbeats).
    pub async fn welcome(&self, epoch: u64) -> anyhow::Result<()> {
        self.welcome_with_liveness(epoch, 0).await
    }

    /// Sends a Welcome at `epoch` asking the agent to leave after `liveness_ms` of silence (0 =
    /// no check); the fake itself never beats, so it plays a hung coordinator.
    pub async fn welcome_with_liveness(&self, epoch: u64, liveness_ms: u32) -> anyhow::Result<()> {
        let w = pb::Welcome {
            coordinator_id: "coord1".into(),
            epoch,
            heartbeat_interval_ms: 500,
            agent_id: String::new(),
            datacenter: String::new(),
            liveness_timeout_ms: liveness_ms,
        };
        self.tx
            .send(Ok(pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Welcome(w)),
            }))
            .await
            .map_err(|_| anyhow::anyhow!("session closed"))
    }

    /// Sends a Ping instruction.
    pub async fn ping(&self, op_id: &str, epoch: u64) -> anyhow::Result<()> {
        self.instruct(op_id, epoch, pb::operation::Kind::Ping(pb::Ping {}))
            .await
    }

    /// Sends an instruction with a 60 s deadline.
    pub async fn instruct(
        &self,
        op_id: &str,
        epoch: u64,
        kind: pb::operation::Kind,
    ) -> anyhow::Result<()> {
        let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
        let i = pb::Instruction {
            op_id: op_id.into(),
            epoch,
            deadline_unix_ms: u64::try_from(
                deadline.duration_since(std::time::UNIX_EPOCH)?.as_millis(),
            )?,
            operation: Some(pb::Operation { kind: Some(kind) }),
        };
        self.tx
            .send(Ok(pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Instruction(i)),
            }))
            .await
            .map_err(|_| anyhow::anyhow!("session closed"))
    }

    /// Sends `i` as it is: an instruction no correct coordinator would send (a malformed op id,
    /// no operation).
    pub async fn send_raw(&self, i: pb::Instruction) -> anyhow::Result<()> {
        self.tx
            .send(Ok(pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Instruction(i)),
            }))
            .await
            .map_err(|_| anyhow::anyhow!("session closed"))
    }

    /// Waits for the result of `op_id`, skipping heartbeats and other results.
    pub async fn result(
        &mut self,
        op_id: &str,
        deadline: Duration,
    ) -> anyhow::Result<pb::OperationResult> {
        let fut = async {
            loop {
                match self.rx.message().await? {
                    Some(pb::AgentMessage {
                        body: Some(pb::agent_message::Body::Result(r)),
                    }) if r.op_id == op_id => return Ok(r),
                    Some(_) => continue,
                    None => anyhow::bail!("the agent closed the session"),
                }
            }
        };
        tokio::time::timeout(deadline, fut)
            .await
            .map_err(|_| anyhow::anyhow!("no result for {op_id} within {deadline:?}"))?
    }

    /// Sends an instruction and waits for its result.
    pub async fn call(
        &mut self,
        op_id: &str,
        epoch: u64,
        kind: pb::operation::Kind,
    ) -> anyhow::Result<pb::OperationResult> {
        self.instruct(op_id, epoch, kind).await?;
        self.result(op_id, Duration::from_secs(60)).await
    }

    /// Waits until the agent ends the session (or errors it).
    pub async fn closed(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let fut = async {
            loop {
                match self.rx.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                }
            }
        };
        tokio::time::timeout(deadline, fut)
            .await
            .map_err(|_| anyhow::anyhow!("session still open after {deadline:?}"))
    }
}

struct Service {
    sessions: mpsc::Sender<FakeSession>,
    /// Refuse every session as "not the leader", naming this endpoint as the leader.
    refuse_with_hint: Option<String>,
    /// Sessions refused so far.
    refusals: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl pb::agent_session_server::AgentSession for Service {
    type OpenStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

    async fn open(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let agent = request
            .peer_certs()
            .and_then(|c| {
                c.first()
                    .and_then(|d| failback_proto::identity::identity_from_der(d).ok())
            })
            .map(|id| id.name)
            .unwrap_or_default();
        if let Some(hint) = &self.refuse_with_hint {
            self.refusals.fetch_add(1, Ordering::SeqCst);
            let mut status = Status::unavailable("not the leader (fake)");
            if let Ok(v) = hint.parse() {
                status
                    .metadata_mut()
                    .insert(failback_proto::LEADER_HINT_METADATA, v);
            }
            return Err(status);
        }
        let mut rx = request.into_inner();
        let hello = match rx.message().await? {
            Some(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("expected Hello")),
        };
        let (tx, out) = mpsc::channel(64);
        self.sessions
            .send(FakeSession {
                agent,
                hello,
                tx,
                rx,
            })
            .await
            .map_err(|_| Status::unavailable("test gone"))?;
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}

/// The running fake; stops when dropped.
pub struct FakeCoordinator {
    /// Sessions as agents open them.
    pub sessions: mpsc::Receiver<FakeSession>,
    /// Sessions refused (see [`FakeCoordinator::start_refusing`]).
    pub refusals: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl FakeCoordinator {
    /// Serves on `127.0.0.1:port` with the certificate `name` from `certs`.
    pub async fn start(certs: &std::path::Path, name: &str, port: u16) -> anyhow::Result<Self> {
        Self::serve(certs, name, port, None).await
    }

    /// [`FakeCoordinator::start`] on the port of a coordinator just killed, which can take a
    /// moment to be free: tried for up to 2 s.
    pub async fn start_in_place_of(
        certs: &std::path::Path,
        name: &str,
        port: u16,
    ) -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..20 {
            match Self::start(certs, name, port).await {
                Ok(f) => return Ok(f),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
            .map_err(|e| e.context(format!("listen as {name} on port {port}")))
    }

    /// Like [`FakeCoordinator::start`], but refuses every session as not the leader with a
    /// leader hint naming `hint` (a deposed coordinator that names itself, issue #12).
    pub async fn start_refusing(
        certs: &std::path::Path,
        name: &str,
        port: u16,
        hint: &str,
    ) -> anyhow::Result<Self> {
        Self::serve(certs, name, port, Some(hint.to_string())).await
    }

    async fn serve(
        certs: &std::path::Path,
        name: &str,
        port: u16,
        refuse_with_hint: Option<String>,
    ) -> anyhow::Result<Self> {
        failback_proto::install_crypto_provider();
        let refusals = Arc::new(AtomicUsize::new(0));
        let tls = TlsMaterial::load(&TlsFiles::in_dir(certs, name))?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let (stx, srx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .tls_config(tls.server_config())?
            .add_service(pb::agent_session_server::AgentSessionServer::new(Service {
                sessions: stx,
                refuse_with_hint,
                refusals: refusals.clone(),
            }));
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = server
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    token.cancelled_owned(),
                )
                .await;
        });
        Ok(FakeCoordinator {
            sessions: srx,
            refusals,
            stop,
        })
    }

    /// The next session of `agent` (sessions of other agents are dropped), within `deadline`.
    pub async fn session_of(
        &mut self,
        agent: &str,
        deadline: Duration,
    ) -> anyhow::Result<FakeSession> {
        let fut = async {
            loop {
                let s = self
                    .sessions
                    .recv()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("fake coordinator stopped"))?;
                if s.agent == agent {
                    return Ok(s);
                }
            }
        };
        tokio::time::timeout(deadline, fut)
            .await
            .map_err(|_| anyhow::anyhow!("no session of {agent} within {deadline:?}"))?
    }

    /// The next session, within `deadline`.
    pub async fn next_session(&mut self, deadline: Duration) -> anyhow::Result<FakeSession> {
        tokio::time::timeout(deadline, self.sessions.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no agent session within {deadline:?}"))?
            .ok_or_else(|| anyhow::anyhow!("fake coordinator stopped"))
    }
}

impl Drop for FakeCoordinator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
