//! failback's agent: a small daemon on every SQL Server and Lync host. It dials out to the
//! coordinators, keeps one mTLS session to the leader, and executes typed operations — never an
//! arbitrary command — under epoch fencing.
//!
//! Layout:
//! - [`config`] — `agent.toml`.
//! - [`session`] — dialing, Hello/Welcome, heartbeats, reconnect with backoff, instruction dispatch.
//! - [`dispatch`] — one instruction: validate, fence, journal, execute with the deadline.
//! - [`journal`] — the at-most-once operation journal.
//! - [`fencing`] — the persisted highest epoch.
//! - [`outbox`] — the current session's sender, for results and progress.
//! - [`exec`] — the backends: files, sql, lync, host.
//! - [`metrics`] — Prometheus metrics.
//! - [`error`] — the crate's error type.
//!
//! Entry point: [`run`].

pub mod config;
pub mod dispatch;
pub mod error;
pub mod exec;
pub mod fencing;
pub mod journal;
pub mod metrics;
pub mod outbox;
pub mod session;

use std::sync::Arc;

use failback_proto::identity::Role;
use failback_proto::tls::TlsMaterial;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::fencing::EpochStore;

/// Runs the agent until `shutdown` is cancelled. `metrics_listener` is bound by the caller.
pub async fn run(
    config: AgentConfig,
    metrics_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    failback_proto::install_crypto_provider();
    let tls = TlsMaterial::load(&config.tls)?;
    session::check_own_role(&tls.identity, &config.tls.cert)?;
    let client_tls = tls.client_config(Role::Coordinator)?;
    if let Err(why) = tls.self_check() {
        // Keep running: the CA file may be the stale one, and the operator sees this in the log.
        tracing::error!("{why}");
    }
    let epochs = Arc::new(EpochStore::open(&config.state_dir)?);
    let (metrics, registry) = metrics::Metrics::new();
    metrics.set_epoch(epochs.highest().0);
    tracing::info!(
        agent = %tls.identity.name,
        coordinators = config.coordinators.len(),
        highest_epoch = %epochs.highest(),
        "agent starting"
    );
    let tasks = tokio_util::task::TaskTracker::new();
    if let Some(l) = metrics_listener {
        tasks.spawn(failback_proto::telemetry::serve_metrics(
            l,
            registry,
            shutdown.clone(),
        ));
    }
    let journal = Arc::new(journal::Journal::open(&config.state_dir)?);
    let files = match &config.files {
        Some(f) => {
            let files = exec::files::Files::new(
                exec::files::roots::FileRoots::new(&f.roots).map_err(Error::Files)?,
            );
            // The rate was checked with the rest of the config (config.rs).
            Some(match f.copy_bytes_per_second {
                Some(rate) => files.with_copy_rate(rate),
                None => files,
            })
        }
        None => None,
    };
    let sql = match &config.sql {
        Some(c) => {
            Some(
                exec::sql::SqlBackend::new(c.clone()).map_err(|message| Error::Config {
                    path: "agent.toml [sql]".into(),
                    message,
                })?,
            )
        }
        None => None,
    };
    let lync = match &config.lync {
        Some(c) => Some(exec::lync::LyncShell::new(c)?),
        None => None,
    };
    let outbox = outbox::Outbox::default();
    let dispatcher = Arc::new(dispatch::Dispatcher {
        epochs: epochs.clone(),
        journal,
        files,
        sql,
        lync,
        outbox: outbox.clone(),
    });
    let ctx = session::SessionContext {
        config,
        tls: client_tls,
        epochs,
        metrics,
        dispatcher,
        outbox,
        self_check: tls.self_check().err(),
    };
    session::maintain(ctx, shutdown.clone()).await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    tracing::info!(agent = %tls.identity.name, "agent stopped");
    Ok(())
}
