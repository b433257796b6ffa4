//! The accept loop: one tokio task per connection, all sharing one [`Engine`]. A connection's
//! error is logged and ends that connection only. Shutdown (the token) stops accepting, ends every
//! session and waits for the connection tasks to finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::engine::files::PathMap;
use super::engine::{Engine, EngineOptions};
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
    /// An old server's TLS (`--tls-max-version 1.0`, see [`tls`]); `None`: TLS 1.2.
    pub old_tls: Option<tls::OldTls>,
    /// Sim administrator `(login, password)`: the only login allowed to run `sqlsim.*`
    /// procedures (faults, mirroring, services).
    pub admin: Option<(String, String)>,
    /// Size of a full backup's payload in MB (default [`DEFAULT_DB_SIZE_MB`]).
    pub db_size_mb: u32,
    /// Size of a log backup's payload in MB (0: the rows only, a few KB).
    pub log_backup_mb: u32,
    /// Lab-only deviation from SQL Server: accept seconds-based job schedules from 1 second
    /// (SQL Server refuses under 10 with Msg 14278). Off by default.
    pub lab_short_schedules: bool,
    /// `PREFIX=DIR` rules mapping SQL Server paths to local directories.
    pub path_map: Vec<String>,
    /// Registry file shared with the mirroring partner sim.
    pub mirror_registry: Option<PathBuf>,
    /// Fault switches armed at start (`EXEC sqlsim.fault` syntax).
    pub faults: Vec<String>,
    /// The Agent account's folder access (`PATH=rw|read|write|none|default`), applied at start.
    pub agent_access: Vec<String>,
    /// SERVERPROPERTY('ProductVersion') (`major.minor.build.revision`); `None` keeps the saved
    /// one (a new instance is 13.0.6300.2, SQL Server 2016 SP3). Backups record it and a newer
    /// release's backup does not restore here (3169).
    pub product_version: Option<String>,
    /// `@@SERVERNAME` different from the real name (`HOST\INST`), as on a rebuilt host whose
    /// `sys.servers` entry was never fixed; `None` keeps the saved setting.
    pub stale_server_name: Option<String>,
    /// The host's local time minus UTC in minutes (`--utc-offset-minutes`, default 0): what
    /// SQL Server reports in local time is shifted by it (see `clock`).
    pub utc_offset_minutes: i32,
}

/// Default size of a full backup's payload, in MB: small, yet several I/O chunks.
pub const DEFAULT_DB_SIZE_MB: u32 = 2;

impl Config {
    /// A configuration with only the required fields set and everything else at its default.
    pub fn new(data_dir: PathBuf, sa_password: impl Into<String>) -> Self {
        Config {
            data_dir,
            sa_password: sa_password.into(),
            server_name: None,
            tls_cert: None,
            tls_key: None,
            old_tls: None,
            admin: None,
            db_size_mb: DEFAULT_DB_SIZE_MB,
            log_backup_mb: 0,
            lab_short_schedules: false,
            path_map: Vec::new(),
            mirror_registry: None,
            faults: Vec::new(),
            agent_access: Vec::new(),
            product_version: None,
            stale_server_name: None,
            utc_offset_minutes: 0,
        }
    }

    /// The engine's options (path rules parsed).
    fn engine_options(&self) -> Result<EngineOptions> {
        let mut paths = PathMap::new(self.data_dir.join("fs"));
        for rule in &self.path_map {
            paths = paths.with_rule(rule).map_err(SimError::Config)?;
        }
        Ok(EngineOptions {
            sa_password: self.sa_password.clone(),
            admin: self.admin.clone(),
            db_size_mb: self.db_size_mb,
            log_backup_mb: self.log_backup_mb,
            lab_short_schedules: self.lab_short_schedules,
            paths,
            mirror_registry: self.mirror_registry.clone(),
            faults: self.faults.clone(),
            agent_access: self.agent_access.clone(),
            product_version: self.product_version.clone(),
            stale_server_name: self.stale_server_name.clone(),
        })
    }
}

impl Config {
    /// Checks that the TLS options come as a pair.
    pub fn validate(&self) -> Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(SimError::TlsConfig(
                "--tls-cert and --tls-key must be given together".into(),
            ));
        }
        if self.old_tls.is_some() && self.tls_cert.is_none() {
            // Without a certificate the sim answers NOT_SUP and no handshake ever starts.
            return Err(SimError::TlsConfig(
                "--tls-max-version needs --tls-cert and --tls-key".into(),
            ));
        }
        Ok(())
    }
}

/// Serves TDS on `listener` until `shutdown` is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    // Process-wide: one sqlsim process is one instance (see clock.rs).
    super::clock::set_utc_offset_minutes(config.utc_offset_minutes);
    let engine = Engine::open(
        &config.data_dir,
        config.server_name.as_deref(),
        config.engine_options()?,
    )?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load_acceptor(cert, key, config.old_tls)?),
        _ => None,
    };
    let engine = Arc::new(engine);
    // SQL Server Agent: schedules and job runs, while the Agent service row says Running.
    let agent = tokio::spawn(Arc::clone(&engine).run_agent(shutdown.child_token()));
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
    agent.abort();
    tracker.wait().await;
    Ok(())
}
