//! `failback-agent --config agent.toml`: parses, loads the config, sets up tracing, binds the
//! metrics listener and calls [`failback_agent::run`]. Ctrl-C or SIGTERM stops it. On Windows it
//! runs as a service through a service wrapper (see deploy/README.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use failback_agent::config::AgentConfig;
use failback_proto::telemetry::{LogFormat, bind_metrics, init_tracing};
use tokio_util::sync::CancellationToken;

/// failback agent.
#[derive(Parser, Debug)]
#[command(name = "failback-agent", version)]
struct Cli {
    /// Configuration file.
    #[arg(long, env = "FAILBACK_AGENT_CONFIG")]
    config: PathBuf,
    /// Log format on stderr: human or json.
    #[arg(long, env = "FAILBACK_LOG_FORMAT", default_value = "human", value_parser = |s: &str| s.parse::<LogFormat>())]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let config = match AgentConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
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
    match failback_agent::run(config, metrics, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
    }
}
