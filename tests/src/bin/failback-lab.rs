//! `failback-lab`: the README's first command. Today (foundation) it generates certificates, starts
//! a coordinator and three agents on loopback, and lists them with `failbackctl agents`; the
//! failover/failback drill joins it in a later issue.

// Printing the lab's report is this binary's job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use failback_tests::harness::fleet::{Fleet, OPERATOR, three_agent_topology};

/// Run a failback fleet on loopback.
#[derive(Parser, Debug)]
#[command(name = "failback-lab", version)]
struct Cli {
    /// Working directory (default: a temporary one, removed at exit).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Leave the fleet running and print how to point failbackctl at it (Ctrl-C stops it).
    #[arg(long)]
    keep_running: bool,
}

async fn lab(cli: Cli) -> anyhow::Result<()> {
    let (agents, topology) = three_agent_topology();
    let workdir = match (&cli.workdir, cli.keep_running) {
        (Some(d), _) => Some(d.clone()),
        (None, true) => {
            Some(std::env::temp_dir().join(format!("failback-lab-{}", std::process::id())))
        }
        (None, false) => None,
    };
    println!("== failback lab: generating certificates and configs");
    let mut fleet = Fleet::create(workdir, agents, &topology, Duration::from_millis(500)).await?;
    println!("   workdir {}", fleet.dir.display());
    println!("== starting coordinator {}", fleet.endpoint());
    fleet.start_coordinator().await?;
    println!("== starting {} agents", fleet.agent_specs.len());
    fleet.start_agents()?;
    let ids: Vec<String> = fleet.agent_specs.iter().map(|a| a.id.clone()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    fleet
        .wait_connected(&refs, true, Duration::from_secs(30))
        .await?;
    println!("== failbackctl agents");
    let out = fleet.ctl(OPERATOR, &["agents"]).await?;
    println!("{}", out.stdout.trim_end());
    if out.code != 0 {
        anyhow::bail!("failbackctl agents failed: {}", out.stderr);
    }
    if cli.keep_running {
        println!("\nThe fleet keeps running. In another shell:");
        println!("  export FAILBACK_COORDINATORS={}", fleet.endpoint());
        println!("  export FAILBACK_CERTS_DIR={}", fleet.certs.display());
        println!("  export FAILBACK_IDENTITY={OPERATOR}");
        println!("  failbackctl agents");
        println!("Ctrl-C stops it.");
        tokio::signal::ctrl_c().await?;
    }
    println!("== all {} agents connected: OK", ids.len());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    failback_proto::install_crypto_provider();
    match lab(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("failback-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
