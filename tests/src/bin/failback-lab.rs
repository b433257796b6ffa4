//! `failback-lab`: the README's first command. Today it brings up a small two-data-center fleet on
//! loopback — certificates from `failbackctl certs init`, a coordinator, three agents over mTLS, a
//! `sqlsim` SQL Server stand-in behind each SQL agent (the pool's chat history written into the
//! backup data center's `mgc`, as after a failover), and the Lync Management Shell stand-in
//! `lyncsim` behind the shell agent — then shows what an operator sees: `failbackctl agents` and
//! `failbackctl inspect` of a SQL agent and of the shell agent. The failover/failback drill joins it
//! in a later issue.

// Printing the lab's report is this binary's job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use failback_tests::harness::fleet::{Fleet, OPERATOR, three_agent_topology};
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};

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

const POOL: &str = "pchat01.lab.local";

async fn ctl(fleet: &Fleet, args: &[&str]) -> anyhow::Result<()> {
    println!("\n$ failbackctl {}", args.join(" "));
    let out = fleet.ctl(OPERATOR, args).await?;
    println!("{}", out.stdout.trim_end());
    if out.code != 0 {
        anyhow::bail!(
            "failbackctl {} failed ({}): {}",
            args.join(" "),
            out.code,
            out.stderr.trim()
        );
    }
    Ok(())
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
    println!("== failback lab: certificates, topology and configs");
    let mut fleet = Fleet::create(workdir, agents, &topology, Duration::from_millis(500)).await?;
    println!("   workdir {}", fleet.dir.display());

    println!("== SQL Server stand-ins (sqlsim) and the Lync shell stand-in (lyncsim)");
    let password = fleet.dir.join("sql-password");
    std::fs::write(&password, SA_PASSWORD)?;
    let mut sims = Vec::new();
    for id in ["sql01.dc1.lab", "sql01.dc2.lab"] {
        let mut sim = SqlSim::new(id, &fleet.dir.join("sql").join(id))?;
        sim.start().await?;
        println!("   sqlsim {id} on 127.0.0.1:{}", sim.port);
        sims.push(sim);
    }
    fleet
        .init_cms(POOL, &["pc01.dc1.lab"], &["pc01.dc2.lab"])
        .await?;
    let sql_section = |sim: &SqlSim| {
        format!(
            "[sql]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"sa\"\npassword_file = \"{}\"\nencryption = \"not_supported\"\n",
            sim.port,
            password.display()
        )
    };
    fleet.configure_agent("sql01.dc1.lab", &sql_section(&sims[0]))?;
    let dc2 = format!(
        "{}\n{}",
        sql_section(&sims[1]),
        fleet.lync_section("sql01.dc2.lab")?
    );
    fleet.configure_agent("sql01.dc2.lab", &dc2)?;
    let shell = fleet.lync_section("fe01.dc1.lab")?;
    fleet.configure_agent("fe01.dc1.lab", &shell)?;

    println!(
        "== coordinator {} and {} agents",
        fleet.endpoint(),
        fleet.agent_specs.len()
    );
    fleet.start_coordinator().await?;
    fleet.start_agents()?;
    let ids: Vec<String> = fleet.agent_specs.iter().map(|a| a.id.clone()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    fleet
        .wait_connected(&refs, true, Duration::from_secs(30))
        .await?;

    ctl(&fleet, &["agents"]).await?;
    ctl(&fleet, &["inspect", "sql01.dc2.lab"]).await?;
    ctl(&fleet, &["inspect", "fe01.dc1.lab"]).await?;

    if cli.keep_running {
        println!("\nThe fleet keeps running. In another shell:");
        println!("  export FAILBACK_COORDINATORS={}", fleet.endpoint());
        println!("  export FAILBACK_CERTS_DIR={}", fleet.certs.display());
        println!("  export FAILBACK_IDENTITY={OPERATOR}");
        println!("  target/debug/failbackctl agents");
        println!("Ctrl-C stops it.");
        tokio::signal::ctrl_c().await?;
    }
    println!(
        "\n== lab OK: {} agents connected, every inspection answered",
        ids.len()
    );
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
