//! `sqlsim`: runs the SQL Server stand-in. Thin by design: parse flags, set up logging, bind the
//! listener, print the bound address (so a harness can use port 0) and call `sqlsim::run`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use failback_tests::sqlsim::{Config, run};
use tokio_util::sync::CancellationToken;

/// A SQL Server stand-in that speaks TDS 7.4.
#[derive(Parser, Debug)]
#[command(name = "sqlsim", version)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:1433 (port 0 picks a free port).
    #[arg(long)]
    listen: String,
    /// Directory holding the instance state and the statement log.
    #[arg(long)]
    data_dir: PathBuf,
    /// Password of the `sa` login.
    #[arg(long)]
    sa_password: String,
    /// Server name (@@SERVERNAME); defaults to the saved one, or SQLSIM.
    #[arg(long)]
    server_name: Option<String>,
    /// PEM certificate chain for TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Highest TLS version: `1.0` or `1.1` make an unpatched SQL Server 2012/2014 that cannot
    /// answer a TLS 1.2 ClientHello (see the sqlsim `tls` module).
    #[arg(long, requires = "tls_cert")]
    tls_max_version: Option<String>,
    /// How that old server answers: `reset` (default, as SQL Server does), `server-hello`,
    /// `alert-version` or `alert-handshake`.
    #[arg(long, requires = "tls_max_version")]
    tls_old_reply: Option<String>,
    /// Sim administrator login: the only login that may run `sqlsim.*` procedures.
    #[arg(long, requires = "admin_password")]
    admin_login: Option<String>,
    /// Password of the sim administrator login.
    #[arg(long, requires = "admin_login")]
    admin_password: Option<String>,
    /// Size of a full backup's payload in MB (rows plus filler).
    #[arg(long, default_value_t = failback_tests::sqlsim::server::DEFAULT_DB_SIZE_MB)]
    db_size_mb: u32,
    /// Size of a log backup's payload in MB (rows plus filler; default 0: the rows only).
    #[arg(long, default_value_t = 0)]
    log_backup_mb: u32,
    /// LAB-ONLY DEVIATION FROM SQL SERVER: accept seconds-based job schedules
    /// (`@freq_subday_type = 2`) from 1 second. SQL Server (msdb's sp_verify_schedule) refuses
    /// an interval under 10 seconds with Msg 14278, and so does sqlsim without this flag.
    #[arg(long)]
    lab_short_schedules: bool,
    /// Map a SQL Server path prefix to a local directory: `PREFIX=DIR`, e.g.
    /// `\\fileserver\pchat-ls=/srv/share` (repeatable).
    #[arg(long = "path-map")]
    path_map: Vec<String>,
    /// Registry file shared with a mirroring partner sim.
    #[arg(long)]
    mirror_registry: Option<PathBuf>,
    /// Arm a fault switch at start, in `EXEC sqlsim.fault` syntax, e.g. `delay backup 2000`
    /// (repeatable).
    #[arg(long = "fault")]
    fault: Vec<String>,
    /// The SQL Server Agent account's access to a folder: `PATH=rw|read|write|none|default`,
    /// e.g. `\\fileserver\pchat-ls=none` (repeatable; kept in the instance state).
    #[arg(long = "agent-access")]
    agent_access: Vec<String>,
    /// SERVERPROPERTY('ProductVersion'), e.g. 15.0.2000.5 (default for a new instance:
    /// 13.0.6300.2, SQL Server 2016 SP3; kept in the instance state). Backups record it; a
    /// backup from a newer release is refused by RESTORE with Msg 3169.
    #[arg(long)]
    product_version: Option<String>,
    /// Make @@SERVERNAME return this `HOST\INST` while SERVERPROPERTY('ServerName') returns the
    /// real name, as on a rebuilt host whose sys.servers entry was never fixed (kept in the
    /// instance state).
    #[arg(long)]
    stale_server_name: Option<String>,
    /// The host's local time minus UTC, in minutes (e.g. -300 for US Eastern standard time):
    /// GETDATE(), HEADERONLY's dates, msdb's non-`_utc` columns and Agent's schedules use it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    utc_offset_minutes: i32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // RUST_LOG selects the level (default info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // One crypto provider for every rustls user in the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    let addr = listener.local_addr().context("read the bound address")?;
    // The harness waits for this line; it is the readiness signal.
    writeln!(std::io::stdout(), "sqlsim listening on {addr}").context("write to stdout")?;
    std::io::stdout().flush().context("flush stdout")?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            signal.cancel();
        }
    });
    let mut config = Config::new(args.data_dir, args.sa_password);
    config.server_name = args.server_name;
    config.tls_cert = args.tls_cert;
    config.tls_key = args.tls_key;
    config.old_tls = failback_tests::sqlsim::tls::OldTls::parse(
        args.tls_max_version.as_deref(),
        args.tls_old_reply.as_deref(),
    )?;
    config.admin = args.admin_login.zip(args.admin_password);
    config.db_size_mb = args.db_size_mb;
    config.log_backup_mb = args.log_backup_mb;
    config.lab_short_schedules = args.lab_short_schedules;
    config.path_map = args.path_map;
    config.mirror_registry = args.mirror_registry;
    config.faults = args.fault;
    config.agent_access = args.agent_access;
    config.product_version = args.product_version;
    config.stale_server_name = args.stale_server_name;
    config.utc_offset_minutes = args.utc_offset_minutes;
    run(config, listener, shutdown)
        .await
        .context("sqlsim failed")?;
    Ok(())
}
