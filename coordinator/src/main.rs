//! `failback-coordinator --config coordinator.toml`: parses, loads the config, sets up tracing,
//! binds the listeners and calls [`failback_coordinator::run`]. Ctrl-C or SIGTERM shuts down
//! gracefully (sessions closed, tasks drained).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use failback_coordinator::config::CoordinatorConfig;
use failback_coordinator::{Listeners, run};
use failback_proto::telemetry::{LogFormat, bind_metrics, init_tracing};
use tokio_util::sync::CancellationToken;

/// failback coordinator.
#[derive(Parser, Debug)]
#[command(name = "failback-coordinator", version)]
struct Cli {
    /// Configuration file.
    #[arg(long, env = "FAILBACK_COORDINATOR_CONFIG")]
    config: PathBuf,
    /// Log format on stderr: human or json.
    #[arg(long, env = "FAILBACK_LOG_FORMAT", default_value = "human", value_parser = |s: &str| s.parse::<LogFormat>())]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let config = match CoordinatorConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let grpc = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    };
    let metrics = match config.metrics_listen {
        Some(addr) => match bind_metrics(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    let shutdown = CancellationToken::new();
    {
        let token = shutdown.clone();
        tokio::spawn(async move {
            failback_proto::telemetry::shutdown_signal().await;
            token.cancel();
        });
    }
    match run(config, Listeners { grpc, metrics }, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(
                if matches!(e.kind(), failback_coordinator::error::ErrorKind::Input) {
                    2
                } else {
                    1
                },
            )
        }
    }
}
