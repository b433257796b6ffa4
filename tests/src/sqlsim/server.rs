//! The accept loop: one tokio task per connection, all sharing one [`Engine`]. A connection's
//! error is logged and ends that connection only. Shutdown (the token) stops accepting, ends every
//! session and waits for the connection tasks to finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::engine::Engine;
use super::error::{Result, SimError};
use super::session::{self, Shared};
use super::tls;

/// How sqlsim is started (the binary fills it from its command line).
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory for `state.json`, the statement log and (later) backup files.
    pub data_dir: PathBuf,
    /// Password of the `sa` login.
    pub sa_password: String,
    /// `@@SERVERNAME`; `None` keeps the saved name (or `SQLSIM` on first start).
    pub server_name: Option<String>,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// Checks that the TLS options come as a pair.
    pub fn validate(&self) -> Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(SimError::TlsConfig(
                "--tls-cert and --tls-key must be given together".into(),
            ));
        }
        Ok(())
    }
}

/// Serves TDS on `listener` until `shutdown` is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    let engine = Engine::open(
        &config.data_dir,
        config.server_name.as_deref(),
        &config.sa_password,
    )?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load_acceptor(cert, key)?),
        _ => None,
    };
    let shared = Arc::new(Shared { engine, tls });
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    tracing::debug!(%peer, "connection accepted");
                    match session::serve(stream, shared, shutdown).await {
                        Ok(()) => tracing::debug!(%peer, "connection closed"),
                        Err(e) => tracing::info!(%peer, "connection closed: {e}"),
                    }
                });
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("failed to accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracker.close();
    shared.engine.kill_all_sessions();
    tracker.wait().await;
    Ok(())
}
