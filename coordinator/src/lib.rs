//! failback's coordinator: holds the topology, leads through [`leader`], keeps the agents'
//! sessions in [`registry`], and serves the operators' Control API. Also the library behind
//! `failbackctl` ([`ctl`], [`pki`]).
//!
//! Layout:
//! - [`config`] — `coordinator.toml`.
//! - [`topology`] — the topology file, validated with line-accurate errors.
//! - [`leader`] — the `Leadership` trait, listeners, the standalone and etcd implementations.
//! - [`etcd`] — connections to the etcd members (one at a time, rotated on failure).
//! - [`store`] — the run store (domain trait; etcd and file implementations; key layout).
//! - [`registry`] — agents, sessions, heartbeats, liveness.
//! - [`runbook`] — the runbook engine (a leadership listener) and the failback runbook.
//! - [`api`] — gRPC services, caller identity, the one `Error` → `Status` mapping.
//! - [`metrics`] — Prometheus metrics.
//! - [`pki`] — the installation CA (`failbackctl certs`).
//! - [`preflight`] — readiness of pools for failover and failback (`failbackctl preflight`).
//! - [`ctl`] — failbackctl's client side (connect, leader-following, output).
//! - [`error`] — the crate's error type.
//!
//! Entry point: [`run`], called by the thin `main` and by tests alike.

pub mod api;
pub mod config;
pub mod ctl;
pub mod error;
pub mod etcd;
pub mod leader;
pub mod metrics;
pub mod pki;
pub mod preflight;
pub mod registry;
pub mod runbook;
pub mod store;
pub mod topology;

use std::sync::Arc;

use failback_proto::endpoint::Endpoint;
use failback_proto::pb;
use failback_proto::tls::TlsMaterial;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::config::CoordinatorConfig;
use crate::error::Error;
use crate::leader::etcd::EtcdLeadership;
use crate::leader::standalone::Standalone;
use crate::leader::{Leadership, LeadershipNotifier, LeadershipRef};
use crate::registry::Registry;
use crate::store::RunStoreRef;
use crate::store::etcd::EtcdRunStore;
use crate::store::file::FileRunStore;
use crate::topology::Topology;

/// Listeners bound by the caller (so tests can bind port 0 and read the address).
pub struct Listeners {
    /// gRPC listener.
    pub grpc: TcpListener,
    /// Optional metrics listener.
    pub metrics: Option<TcpListener>,
}

/// Runs a coordinator until `shutdown` is cancelled.
pub async fn run(
    config: CoordinatorConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    failback_proto::install_crypto_provider();
    let tls = TlsMaterial::load(&config.tls)?;
    if !tls
        .identity
        .has(failback_proto::identity::Role::Coordinator)
    {
        return Err(Error::Config {
            path: config.tls.cert.display().to_string(),
            message: format!(
                "certificate '{}' has role(s) {}; a coordinator needs the coordinator role",
                tls.identity.name,
                tls.identity.roles_text()
            ),
        });
    }
    let id = tls.identity.name.clone();
    let topology = Topology::load(&config.topology)?;
    let local = listeners
        .grpc
        .local_addr()
        .map_err(|e| Error::io("read the listener address", e))?;
    let advertise = match &config.advertise {
        Some(e) => e.clone(),
        None => Endpoint {
            name: id.clone(),
            address: local.to_string(),
        },
    };
    let (metrics, metrics_registry) = metrics::Metrics::new();
    let registry = Registry::new(&topology, metrics.clone());
    let topology = Arc::new(topology);
    let engine = runbook::engine::Engine::new(
        &id,
        topology.clone(),
        Arc::new(registry.clone()),
        config.runbook.clone(),
    );
    engine.set_run_metrics(metrics.runs());
    // Leader-only work registers here before leadership starts. The engine's term waits for
    // the run store, which standalone mode can only open once its epoch is known.
    let notifier = LeadershipNotifier::new()
        .with_listener(Arc::new(registry.clone()))
        .with_listener(Arc::new(engine.clone()));
    let (leadership, store) =
        start_leadership(&config, &id, &advertise, notifier, &metrics, &shutdown).await?;
    engine.set_store(store.clone());
    tracing::info!(
        coordinator = %id,
        listen = %local,
        mode = leadership.view().mode,
        store = store.backend(),
        agents = topology.agents.len(),
        pools = topology.pools.len(),
        "coordinator starting"
    );

    let sessions = api::agent_session::AgentSessionService {
        registry: registry.clone(),
        leadership: leadership.clone(),
        coordinator_id: id.clone(),
        heartbeat_interval: config.heartbeat_interval,
        liveness_timeout: api::agent_session::liveness_timeout(
            config.heartbeat_interval,
            config.etcd.as_ref().map(|e| e.lease_ttl),
        ),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let control = api::control::ControlService {
        registry: registry.clone(),
        topology: topology.clone(),
        leadership: leadership.clone(),
        coordinator_id: id.clone(),
        heartbeat_interval: config.heartbeat_interval,
        engine: engine.clone(),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::agent_session_server::AgentSessionServer<api::agent_session::AgentSessionService>>()
        .await;
    health
        .set_serving::<pb::control_server::ControlServer<api::control::ControlService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection service: {e}")))?;

    let tasks = tokio_util::task::TaskTracker::new();
    if let Some(l) = listeners.metrics {
        tasks.spawn(failback_proto::telemetry::serve_metrics(
            l,
            metrics_registry,
            shutdown.clone(),
        ));
    }
    // Liveness sweep: two missed heartbeat intervals = disconnected.
    {
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        let interval = config.heartbeat_interval;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(interval / 4);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        for agent in registry.sweep(interval * 2) {
                            tracing::warn!(%agent, "agent missed two heartbeats; marked disconnected");
                        }
                    }
                }
            }
        });
    }

    let server = tonic::transport::Server::builder()
        .tls_config(tls.server_config())
        .map_err(|e| Error::Config {
            path: config.tls.cert.display().to_string(),
            message: format!("TLS: {e}"),
        })?
        .add_service(health_service)
        .add_service(reflection)
        .add_service(pb::agent_session_server::AgentSessionServer::new(sessions))
        .add_service(pb::control_server::ControlServer::new(control));
    let result = server
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listeners.grpc),
            shutdown.clone().cancelled_owned(),
        )
        .await
        .map_err(|e| Error::Internal(format!("gRPC server: {e}")));
    shutdown.cancel();
    // Stop leader-only work and hand the lock over now rather than after the lease TTL.
    if let Err(e) = leadership.resign().await {
        tracing::warn!("failed to resign leadership: {e:#}");
    }
    tasks.close();
    tasks.wait().await;
    tracing::info!(coordinator = %id, "coordinator stopped");
    result
}

/// Picks the leadership implementation and the run store that goes with it: etcd for both when
/// `[etcd]` is configured, otherwise standalone with the file store in `state_dir`.
async fn start_leadership(
    config: &CoordinatorConfig,
    id: &str,
    advertise: &Endpoint,
    notifier: LeadershipNotifier,
    metrics: &metrics::Metrics,
    shutdown: &CancellationToken,
) -> Result<(LeadershipRef, RunStoreRef), Error> {
    match &config.etcd {
        None => {
            let standalone =
                Standalone::start(&config.state_dir, id, &advertise.to_string(), notifier).await?;
            let epoch = standalone.view().epoch;
            let store = FileRunStore::open(&config.state_dir, epoch)?;
            Ok((Arc::new(standalone), Arc::new(store)))
        }
        Some(etcd) => {
            let members = crate::etcd::Members::connect(etcd).await?;
            let leadership = EtcdLeadership::start(
                members.clone(),
                etcd,
                &advertise.to_string(),
                notifier,
                metrics.leader_keepalives(),
                shutdown,
            );
            let store = EtcdRunStore::new(members, &etcd.cluster, leadership.fences());
            Ok((Arc::new(leadership), Arc::new(store)))
        }
    }
}
