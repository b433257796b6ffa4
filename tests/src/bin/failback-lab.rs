//! `failback-lab`: the README's first command. Brings up a two-data-center fleet on loopback and
//! runs the disaster-recovery drill (failover after the loss of DC1, then failback), printing
//! progress and a final report; exit code 0 only when every check passed. Thin by design: parse
//! the flags and call [`failback_tests::lab::run`], where the lab and its decisions live.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use failback_tests::lab::{Options, run};

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
}

#[tokio::main]
async fn main() -> ExitCode {
    failback_proto::install_crypto_provider();
    let cli = Cli::parse();
    let opts = Options {
        pools: cli.pools,
        db_size_mb: cli.db_size_mb,
        etcd: cli.etcd,
        mirrors: !cli.no_mirrors,
        keep_running: cli.keep_running,
        workdir: cli.workdir,
    };
    match run(opts).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("failback-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
