//! The agent's side of `AgentSession.Open`: dial the coordinators (mTLS, our certificate), say
//! Hello, accept the Welcome's epoch through fencing, heartbeat, and answer instructions — and when
//! anything breaks, reconnect with jittered exponential backoff, trying the next coordinator or
//! the one a leader hint names (at once only for the first hint; never a hint naming the
//! coordinator that gave it).
//!
//! Retried: every connection and stream failure (forever, with backoff; the agent's purpose is to
//! be reachable). Not retried against the same coordinator: a Welcome with an epoch older than one
//! we accepted (that coordinator is deposed; we move on to the next endpoint).
//!
//! A coordinator we left because it went silent (hung: issue #12's SIGSTOP of the leader) still
//! holds its etcd lease for up to one TTL, so the standby names it in its hints, and the kernel
//! still accepts TCP connections for it, so a dial only fails when the handshake times out.
//! Following that hint cost 5 s per dial and the new leader waited for its agents. So: once a
//! Welcome has told us the liveness timeout, every dial and Welcome wait is bounded by it (a
//! coordinator that cannot answer in that time is as dead as one that goes silent), and for two
//! liveness timeouts after the silence the silent coordinator is skipped — in hints and in the
//! rotation, while there is another to try. After that it is dialed again like any other, so a
//! leader that was only paused (SIGCONT before its lease ran out) gets its agents back.

use std::sync::Arc;
use std::time::Duration;

use failback_proto::endpoint::Endpoint;
use failback_proto::identity::Role;
use failback_proto::model::Welcome;
use failback_proto::pb;
use failback_proto::pb::agent_session_client::AgentSessionClient;
use failback_proto::tls;
use failback_proto::{LEADER_HINT_METADATA, PROTOCOL_VERSION};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::dispatch::Dispatcher;
use crate::error::Error;
use crate::fencing::EpochStore;
use crate::metrics::Metrics;
use crate::outbox::Outbox;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a session needs, shared across reconnects.
pub struct SessionContext {
    /// Configuration.
    pub config: AgentConfig,
    /// Client TLS configuration (our certificate; servers must be coordinators).
    pub tls: Arc<rustls::ClientConfig>,
    /// Fencing.
    pub epochs: Arc<EpochStore>,
    /// Metrics.
    pub metrics: Metrics,
    /// Executes instructions.
    pub dispatcher: Arc<Dispatcher>,
    /// Where finished operations send their results: the current session, if any.
    pub outbox: Outbox,
    /// Why the coordinator will refuse our certificate, when we can tell locally (see
    /// `TlsMaterial::self_check`); appended to session errors.
    pub self_check: Option<String>,
}

/// Why a session ended without error.
enum Ended {
    Shutdown,
    Closed(String),
}

/// What the dialer remembers between sessions about coordinators' liveness.
#[derive(Default)]
struct Liveness {
    /// The liveness timeout of the last Welcome that gave one.
    timeout: Option<Duration>,
    /// The coordinator we last left for silence, and until when it is skipped.
    silent: Option<(Endpoint, tokio::time::Instant)>,
}

impl Liveness {
    /// The bound on a dial and on the wait for a Welcome.
    fn dial_timeout(&self, default: Duration) -> Duration {
        self.timeout.map_or(default, |t| t.min(default))
    }

    /// Whether `e` went silent recently enough to be skipped.
    fn skips(&self, e: &Endpoint) -> bool {
        self.silent
            .as_ref()
            .is_some_and(|(s, until)| s == e && tokio::time::Instant::now() < *until)
    }
}

/// Keeps a session to the leader open until `shutdown`.
pub async fn maintain(ctx: SessionContext, shutdown: CancellationToken) {
    let endpoints = ctx.config.coordinators.clone();
    let mut next = 0usize;
    let mut hint: Option<Endpoint> = None;
    let mut backoff = ctx.config.reconnect.initial;
    let mut live = Liveness::default();
    loop {
        let from_hint = hint.is_some();
        let endpoint = match hint.take() {
            Some(h) => h,
            None => {
                // Skip a recently silent coordinator while another is configured.
                if endpoints.len() > 1 && live.skips(&endpoints[next % endpoints.len()]) {
                    next += 1;
                }
                endpoints[next % endpoints.len()].clone()
            }
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => Ok(Ended::Shutdown),
            r = session(&ctx, &endpoint, &shutdown, &mut live) => r,
        };
        ctx.metrics.set_connected(false);
        match outcome {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Closed(why)) => {
                tracing::warn!(coordinator = %endpoint, "session closed: {why}; reconnecting");
                backoff = ctx.config.reconnect.initial;
            }
            Err(e @ Error::CoordinatorSilent { after, .. }) => {
                tracing::warn!(coordinator = %endpoint, "session failed: {e}");
                ctx.metrics.session_error("silent");
                live.silent = Some((endpoint.clone(), tokio::time::Instant::now() + after * 2));
                next += 1;
                // Straight to the next coordinator: the silence was the wait.
                backoff = ctx.config.reconnect.initial;
                continue;
            }
            Err(Error::NotLeader(leader)) if live.skips(&leader) => {
                tracing::info!(coordinator = %endpoint, %leader, "not the leader, and names one that just went silent: trying the next coordinator");
                next += 1;
            }
            // Issue #12, reconnect storm: a deposed coordinator named itself and agents came
            // straight back, hundreds of times a second. A hint naming the refusing coordinator
            // is ignored; a hint is followed at once only when it did not itself come from a
            // hint — a chain of refusals waits out the backoff like any other failure.
            Err(Error::NotLeader(leader)) if leader == endpoint && !follow_every_hint() => {
                tracing::warn!(coordinator = %endpoint, "refused as not the leader, yet names itself as the leader: ignoring the hint");
                ctx.metrics.session_error("self_hint");
                next += 1;
            }
            Err(Error::NotLeader(leader)) if from_hint && !follow_every_hint() => {
                tracing::info!(coordinator = %endpoint, %leader, "the hinted coordinator is not the leader either; following its hint after the backoff");
                hint = Some(leader);
            }
            Err(Error::NotLeader(leader)) => {
                tracing::info!(coordinator = %endpoint, %leader, "following leader hint");
                hint = Some(leader);
                continue;
            }
            Err(e) => {
                let e = match e {
                    Error::Session(text) => match ctx.self_check.as_ref() {
                        Some(why) => Error::Session(format!("{text}; {why}")),
                        None => Error::Session(text),
                    },
                    other => other,
                };
                ctx.metrics.session_error(match &e {
                    Error::StaleEpoch { .. } => "stale_leader",
                    Error::Protocol(_) => "protocol",
                    _ => "session",
                });
                tracing::warn!(coordinator = %endpoint, "session failed: {e}");
                next += 1;
            }
        }
        let jitter = rand::rng().random_range(0.8..1.2);
        let wait = backoff.mul_f64(jitter);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(ctx.config.reconnect.max);
    }
}

fn hello(ctx: &SessionContext) -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: ctx.config.capabilities(),
            highest_epoch_seen: ctx.epochs.highest().0,
        })),
    }
}

/// Test-only mutation (never in release builds): the agent follows every leader hint at once, as
/// before issue #12's reconnect storm was fixed.
fn follow_every_hint() -> bool {
    failback_proto::test_break::broken(failback_proto::test_break::LEADER_HINT)
}

/// Turns a refused Open into an error, following a leader hint when there is one.
fn refused(status: &tonic::Status) -> Error {
    if let Some(leader) = status
        .metadata()
        .get(LEADER_HINT_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<Endpoint>().ok())
    {
        return Error::NotLeader(leader);
    }
    use std::error::Error as _;
    match status.source() {
        Some(src) => Error::Session(tls::explain(src)),
        None => Error::Session(format!("{:?}: {}", status.code(), status.message())),
    }
}

async fn session(
    ctx: &SessionContext,
    endpoint: &Endpoint,
    shutdown: &CancellationToken,
    live: &mut Liveness,
) -> Result<Ended, Error> {
    let welcome_timeout = live.dial_timeout(WELCOME_TIMEOUT);
    let channel = tls::connect(
        endpoint,
        ctx.tls.clone(),
        live.dial_timeout(CONNECT_TIMEOUT),
    )
    .await
    .map_err(|e| Error::Session(format!("cannot connect: {}", tls::explain(&e))))?;
    let mut client = AgentSessionClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(64);
    tx.send(hello(ctx))
        .await
        .map_err(|_| Error::Session("outbound channel closed".into()))?;
    let response = client
        .open(ReceiverStream::new(rx))
        .await
        .map_err(|s| refused(&s))?;
    let mut inbound = response.into_inner();
    let first = tokio::time::timeout(welcome_timeout, inbound.message())
        .await
        .map_err(|_| Error::Session(format!("no Welcome within {welcome_timeout:?}")))?
        .map_err(|s| refused(&s))?;
    let welcome = match first.and_then(|m| m.body) {
        Some(pb::coordinator_message::Body::Welcome(w)) => Welcome::try_from(w)?,
        _ => {
            return Err(failback_proto::model::ProtocolError::Missing(
                "welcome (the first message down must be Welcome)",
            )
            .into());
        }
    };
    if let Err(e) = ctx.epochs.accept(welcome.epoch) {
        // Test-only mutation (never in release builds): the scenarios show §9.1 breaks.
        if !failback_proto::test_break::broken(failback_proto::test_break::AGENT_EPOCH_CHECK) {
            return Err(e);
        }
    }
    ctx.metrics.set_epoch(welcome.epoch.0);
    live.timeout = welcome.liveness_timeout.or(live.timeout);
    live.silent = None;
    ctx.outbox.set(Some(tx.clone()));
    // Clear the outbox however this session ends.
    struct ClearOnDrop<'a>(&'a Outbox);
    impl Drop for ClearOnDrop<'_> {
        fn drop(&mut self) {
            self.0.set(None);
        }
    }
    let _clear = ClearOnDrop(&ctx.outbox);
    ctx.metrics.set_connected(true);
    tracing::info!(
        coordinator = %welcome.coordinator_id,
        epoch = %welcome.epoch,
        agent = %welcome.agent_id,
        datacenter = %welcome.datacenter,
        "session open"
    );

    let mut seq = 0u64;
    let mut tick = tokio::time::interval(welcome.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Liveness of the coordinator (issue #12): a hung leader (SIGSTOP, a wedged process) keeps
    // its TCP connections, so only silence tells. With a timeout in the Welcome, every message
    // from the coordinator (its heartbeats included) resets it; silence ends the session and
    // the next coordinator is tried.
    let liveness = welcome.liveness_timeout.filter(|_| {
        !failback_proto::test_break::broken(failback_proto::test_break::AGENT_LIVENESS)
    });
    let mut heard = tokio::time::Instant::now();
    loop {
        let silent_until = heard + liveness.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
            _ = tokio::time::sleep_until(silent_until), if liveness.is_some() => {
                return Err(Error::CoordinatorSilent {
                    coordinator: welcome.coordinator_id.to_string(),
                    after: liveness.unwrap_or_default(),
                });
            }
            _ = tick.tick() => {
                seq += 1;
                let hb = pb::AgentMessage { body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat { seq })) };
                if tx.send(hb).await.is_err() {
                    return Ok(Ended::Closed("outbound stream closed".into()));
                }
                ctx.metrics.heartbeat();
            }
            msg = inbound.message() => match msg {
                Ok(Some(m)) => match m.body {
                    Some(pb::coordinator_message::Body::Heartbeat(_)) => heard = tokio::time::Instant::now(),
                    Some(pb::coordinator_message::Body::Instruction(i)) => {
                        heard = tokio::time::Instant::now();
                        let dispatcher = ctx.dispatcher.clone();
                        let outbox = ctx.outbox.clone();
                        tokio::spawn(async move {
                            let op_id = i.op_id.clone();
                            let result = dispatcher.handle(i).await;
                            let msg = pb::AgentMessage { body: Some(pb::agent_message::Body::Result(result)) };
                            if !outbox.send(msg).await {
                                tracing::info!(%op_id, "no session open for the result; it stays in the journal");
                            }
                        });
                    }
                    Some(pb::coordinator_message::Body::Welcome(_)) | None => {
                        return Err(failback_proto::model::ProtocolError::Invalid {
                            field: "body",
                            reason: "a second Welcome or an empty message".into(),
                        }.into());
                    }
                },
                Ok(None) => return Ok(Ended::Closed("the coordinator ended the stream".into())),
                Err(s) => return Ok(Ended::Closed(format!("{:?}: {}", s.code(), s.message()))),
            }
        }
    }
}

/// Checks that our own certificate may open agent sessions, so a misissued certificate is
/// reported at start instead of as an endless stream of refusals.
pub fn check_own_role(
    identity: &failback_proto::identity::PeerIdentity,
    cert: &std::path::Path,
) -> Result<(), Error> {
    if identity.has(Role::Agent) {
        return Ok(());
    }
    Err(Error::Config {
        path: cert.display().to_string(),
        message: format!(
            "certificate '{}' has role(s) {}; an agent needs the agent role (issue one with `failbackctl certs add --agent NAME`)",
            identity.name,
            identity.roles_text()
        ),
    })
}
