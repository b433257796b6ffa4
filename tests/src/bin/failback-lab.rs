//! `failback-lab`: the README's first command. Brings up a two-data-center fleet on loopback and
//! runs the disaster-recovery drill (failover after the loss of DC1, then failback), printing
//! progress and a final report; exit code 0 only when every check passed. With `--fault
//! KIND@POINT` it drills a failback under that fault instead (the scenario suite's runner and
//! DESIGN §9 checkers); `failback-lab scenario NAME` runs one of `tests/scenarios/`, and
//! `failback-lab reliability` writes docs/RELIABILITY.md from the last scenario outcomes. Thin by
//! design: parse the flags and call the library, where the lab and its decisions live.

#![allow(clippy::print_stdout)] // The drill's outcome on stdout is the command's output.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use failback_tests::lab::{Options, run};
use failback_tests::scenario;

/// Run the failback DR drill on loopback.
#[derive(Parser, Debug)]
#[command(name = "failback-lab", version)]
struct Cli {
    /// Number of Persistent Chat pools.
    #[arg(long, default_value_t = 3)]
    pools: usize,
    /// Size of a full backup of mgc, in MB (sqlsim --db-size-mb).
    #[arg(long, default_value_t = failback_tests::sqlsim::server::DEFAULT_DB_SIZE_MB)]
    db_size_mb: u32,
    /// Two coordinators on a three-member etcd (Debian's etcd-server) instead of one
    /// standalone coordinator.
    #[arg(long)]
    etcd: bool,
    /// Leave out the primary's and the backup's mirror instances (two SQL instances per pool
    /// instead of four).
    #[arg(long)]
    no_mirrors: bool,
    /// Leave everything running after the drill and print how to point failbackctl at it
    /// (Ctrl-C stops it).
    #[arg(long)]
    keep_running: bool,
    /// Working directory (default: a temporary one, removed after a passing drill).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Drill a failback under a fault instead: KIND@POINT, e.g. `kill-leader@fb4_restore`,
    /// `stop-leader@fb4_restore`, `kill-agent:primary@fb4_restore`, `corrupt-backup@fb4_restore`
    /// (repeatable; see tests/src/scenario/drill.rs). Passes when every DESIGN §9 invariant holds.
    #[arg(long = "fault", value_name = "KIND@POINT")]
    faults: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one scenario of tests/scenarios/ (by name, or a path to a scenario file).
    Scenario {
        /// Name (e.g. `kill-leader-fb4`) or path.
        name: String,
        /// Run it with a test-only break (FAILBACK_TEST_BREAK; debug builds only).
        #[arg(long = "break")]
        break_name: Option<String>,
    },
    /// Write docs/RELIABILITY.md from the last scenario outcomes.
    Reliability {
        /// Where the outcomes are (default: target/scenarios beside this binary).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Where to write.
        #[arg(long, default_value = "docs/RELIABILITY.md")]
        out: PathBuf,
    },
}

async fn run_scenario(
    s: scenario::spec::Scenario,
    break_name: Option<&str>,
) -> anyhow::Result<bool> {
    println!("scenario {}: {}", s.name, s.about);
    let o = scenario::runner::run(&s, break_name).await?;
    println!("{}", o.explain());
    Ok(o.passed())
}

async fn dispatch(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Some(Command::Reliability { results, out }) => {
            let results = match results {
                Some(r) => r,
                None => scenario::runner::results_dir()?,
            };
            let md = scenario::reliability::render(&results)?;
            std::fs::write(&out, md)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(true)
        }
        Some(Command::Scenario { name, break_name }) => {
            let path = if name.ends_with(".toml") {
                PathBuf::from(&name)
            } else {
                scenario::spec::scenario_dir().join(format!("{name}.toml"))
            };
            let s = scenario::spec::Scenario::load(&path)?;
            run_scenario(s, break_name.as_deref()).await
        }
        None if !cli.faults.is_empty() => {
            run_scenario(scenario::drill::scenario(&cli.faults)?, None).await
        }
        None => {
            let opts = Options {
                pools: cli.pools,
                db_size_mb: cli.db_size_mb,
                etcd: cli.etcd,
                mirrors: !cli.no_mirrors,
                keep_running: cli.keep_running,
                workdir: cli.workdir,
            };
            run(opts).await
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    failback_proto::install_crypto_provider();
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("failback-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
