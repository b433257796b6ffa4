//! `failbackctl`: the operators' command line. Thin: parses arguments, then calls the library
//! (`failback_coordinator::ctl`, `pki`, `topology`) and prints. Exit codes: 0 success, 1 failure
//! or no coordinator reachable, 2 invalid input or a refused request.

// Printing the answer is this binary's job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use failback_coordinator::ctl::output::{self, Format};
use failback_coordinator::ctl::{ClientSettings, Control, exit_code, runs_view};
use failback_coordinator::ctl::{report_view, watch};
use failback_coordinator::error::Error;
use failback_coordinator::pki;
use failback_coordinator::topology::Topology;
use failback_proto::endpoint::Endpoint;
use failback_proto::identity::Role;
use failback_proto::pb;
use failback_proto::telemetry::{LogFormat, init_tracing};

/// failback operator CLI.
#[derive(Parser, Debug)]
#[command(
    name = "failbackctl",
    version,
    about = "Operate failback: certificates, topology checks, agents.",
    after_help = "Exit codes: 0 success; 1 the operation failed or no coordinator was reachable; 2 invalid input or a request the coordinator refused (including a missing role); 3 `status`, `watch`, `run` (while watching): the run failed or was aborted; `preflight`: a check failed."
)]
struct Cli {
    /// Coordinator endpoint `name@host:port` (repeat, or comma-separate). Tried in order; a
    /// non-leader's hint is followed.
    #[arg(
        long = "endpoint",
        short = 'e',
        global = true,
        env = "FAILBACK_COORDINATORS",
        value_delimiter = ','
    )]
    endpoints: Vec<Endpoint>,
    /// Directory with ca.pem and your certificate (written by `certs init`).
    #[arg(
        long = "certs",
        global = true,
        env = "FAILBACK_CERTS_DIR",
        default_value = "certs"
    )]
    certs_dir: PathBuf,
    /// Which certificate in the directory to use (default: the only operator/approver one).
    #[arg(long, global = true, env = "FAILBACK_IDENTITY")]
    identity: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, env = "FAILBACK_LOG_FORMAT", default_value = "human", value_parser = parse_log_format)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the installation CA and certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// List the agents of the topology and their session state.
    Agents {
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Show what an agent manages (instance, databases, mirroring, sessions, Lync pool state),
    /// read through its typed read operations. Changes nothing.
    Inspect {
        agent: String,
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Send a ping through an agent's session and dispatcher; prints the round trip.
    Ping { agent: String },
    /// Show which coordinator leads, at which epoch.
    Leader {
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Topology files.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Start a runbook; prints the run id, then watches it (unless --detach or --output json).
    #[command(subcommand)]
    Run(RunbookCommand),
    /// Dry run of a runbook: steps, hosts, T-SQL and cmdlets, findings. Changes nothing.
    #[command(subcommand)]
    Plan(RunbookCommand),
    /// A run's progress, outputs and audit trail (default: the newest run). Exit code 3 when the
    /// run failed or was aborted.
    Status {
        run: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Approve a run's destructive steps (needs an approver certificate).
    Approve { run: String },
    /// Pause a run at the next step boundary.
    Pause { run: String },
    /// Resume a paused run.
    Resume { run: String },
    /// Abort a run: no further step starts.
    Abort { run: String },
    /// Runs, newest first.
    History {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = OutputArg::Table)]
        output: OutputArg,
    },
    /// Live progress of a run (default: the newest run) until it ends: per pool the step, a
    /// progress bar for backup / restore / copy, what it waits for, elapsed time. Exit code 0
    /// when the run succeeded, 3 when it failed or was aborted.
    Watch { run: Option<String> },
    /// The evidence report of a run (default: the newest run): per-step timings, approvals and
    /// operator calls, files, SHA-256, LSNs, final state.
    Report {
        run: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
    },
    /// Readiness of pools for failover and failback: agents, instances, databases, mirroring,
    /// log shipping, RPO, uncopied files, LSN chain, SQL Server Agent and its account's access,
    /// free space, pool state and active servers; every failed check says what to fix. Reads
    /// only. Exit code 0 when every check of every selected pool is ready (warnings allowed), 3
    /// when any check failed (as `status` for a failed run), 1 or 2 as for other commands.
    Preflight(PreflightArgs),
}

#[derive(Args, Debug)]
struct PreflightArgs {
    /// Pool FQDN (repeat for several).
    #[arg(long = "pool", required_unless_present = "all")]
    pools: Vec<String>,
    /// Every pool of the topology.
    #[arg(long, conflicts_with = "pools")]
    all: bool,
    /// Margin on the space a runbook needs: failback's two full backups of `mgc` on the share
    /// (FB-3's and FB-5's seed, each sized as msdb's newest full backup, else the data files),
    /// failover's uncopied log backups in the copy folder.
    #[arg(long, default_value_t = failback_coordinator::preflight::DEFAULT_FREE_SPACE_FACTOR)]
    free_space_factor: f64,
    /// Oldest acceptable newest log backup on the share (and RPO), e.g. `5m`; default: the
    /// primary's msdb backup threshold.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_log_age: Option<std::time::Duration>,
    #[arg(long, value_enum, default_value_t = OutputArg::Table)]
    output: OutputArg,
}

/// `report --format`.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum ReportFormat {
    /// Markdown tables, for people and tickets.
    Md,
    /// One JSON document, for machines.
    Json,
}

#[derive(Subcommand, Debug)]
enum RunbookCommand {
    /// The failback runbook (FB-1..FB-7).
    Failback(RunbookArgs),
    /// The failover runbook (FO-1..FO-7); a run needs --attest-primary-down.
    Failover(RunbookArgs),
}

impl RunbookCommand {
    /// The runbook's name on the wire and its arguments.
    fn parts(&self) -> (&'static str, &RunbookArgs) {
        match self {
            RunbookCommand::Failback(a) => ("failback", a),
            RunbookCommand::Failover(a) => ("failover", a),
        }
    }
}

#[derive(Args, Debug)]
struct RunbookArgs {
    /// Pool FQDN (repeat for several; the first is the canary).
    #[arg(long = "pool")]
    pools: Vec<String>,
    /// Every pool of the topology.
    #[arg(long, conflicts_with = "pools")]
    all: bool,
    /// Approve the destructive steps now (needs an approver certificate).
    #[arg(long)]
    yes: bool,
    /// Pools at once after the canary (1 or more).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    max_parallel: u32,
    /// Keep going with other pools after one fails.
    #[arg(long)]
    continue_on_failure: bool,
    /// Print the run id and return instead of watching the run (implied by --output json).
    #[arg(long)]
    detach: bool,
    /// Failover runs only, and required there: your statement that the primary data center is
    /// down (recorded in the run with your certificate name).
    #[arg(long, value_name = "REASON")]
    attest_primary_down: Option<String>,
    /// Failover runs only, approver certificate: accept the data loss of the gap an earlier
    /// run's FO-3 reported at FILE (the file name it gave); FO-3 then stops there and FO-4
    /// recovers mgc. A gap at any other file still stops the run. Needs --gap-reason.
    #[arg(long, value_name = "FILE", requires = "gap_reason")]
    accept_gap: Option<String>,
    /// Why the loss of the accepted gap is acceptable (recorded with your certificate name).
    #[arg(long, value_name = "TEXT", requires = "accept_gap")]
    gap_reason: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputArg::Table)]
    output: OutputArg,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Create a new CA in DIR and one certificate per name. Refuses if DIR already has a CA.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        names: Names,
        /// Lifetime of the issued certificates in days.
        #[arg(long, default_value_t = pki::DEFAULT_LEAF_DAYS)]
        days: i64,
    },
    /// Issue more certificates from the CA in DIR.
    Add {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        names: Names,
        /// Lifetime in days (ignored when --not-after is given).
        #[arg(long, default_value_t = pki::DEFAULT_LEAF_DAYS)]
        days: i64,
        /// Explicit end of validity (RFC 3339, e.g. 2027-01-31T00:00:00Z); for rehearsing expiry.
        #[arg(long)]
        not_after: Option<String>,
        /// Explicit start of validity (RFC 3339).
        #[arg(long)]
        not_before: Option<String>,
        /// Replace existing certificates of the same names.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
struct Names {
    /// Coordinator certificate names (their DNS names).
    #[arg(long = "coordinator", num_args = 1..)]
    coordinators: Vec<String>,
    /// Agent certificate names (the ids the topology uses).
    #[arg(long = "agent", num_args = 1..)]
    agents: Vec<String>,
    /// Operator certificate names.
    #[arg(long = "operator", num_args = 1..)]
    operators: Vec<String>,
    /// Approver certificate names (approvers are operators too).
    #[arg(long = "approver", num_args = 1..)]
    approvers: Vec<String>,
}

impl Names {
    fn requests(&self) -> Vec<(Role, String)> {
        let mut out = Vec::new();
        for (role, list) in [
            (Role::Coordinator, &self.coordinators),
            (Role::Agent, &self.agents),
            (Role::Operator, &self.operators),
            (Role::Approver, &self.approvers),
        ] {
            out.extend(list.iter().map(|n| (role, n.clone())));
        }
        out
    }
}

#[derive(Subcommand, Debug)]
enum TopologyCommand {
    /// Validate a topology file: exit 0 with a summary, or 2 with every problem.
    Check { file: PathBuf },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum OutputArg {
    Table,
    Json,
}

impl From<OutputArg> for Format {
    fn from(o: OutputArg) -> Self {
        match o {
            OutputArg::Table => Format::Table,
            OutputArg::Json => Format::Json,
        }
    }
}

fn parse_time(s: &str, what: &str) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::InvalidInput(format!("{what} '{s}' is not an RFC 3339 time: {e}")))
}

/// What a command printed and the exit code it asks for (0 unless said otherwise).
struct Done(String, u8);

impl From<String> for Done {
    fn from(s: String) -> Self {
        Done(s, 0)
    }
}

async fn run_call(
    settings: &ClientSettings,
    which: &'static str,
    run: String,
) -> Result<String, Error> {
    let mut control = Control::connect(settings).await?;
    let ack = control
        .call(|mut c| {
            let req = pb::RunRequest {
                run_id: run.clone(),
            };
            async move {
                match which {
                    "approve" => c.approve(req).await,
                    "pause" => c.pause(req).await,
                    "resume" => c.resume(req).await,
                    _ => c.abort(req).await,
                }
            }
        })
        .await?;
    Ok(format!(
        "run {}: {which} accepted; status {}",
        ack.run_id, ack.status
    ))
}

/// Watches `run` on stdout until it ends (redrawn in place on a terminal); the final line is
/// already printed, so the returned text is empty and the code is 0 or 3.
async fn watch_run(settings: &ClientSettings, run: Option<String>) -> Result<Done, Error> {
    use std::io::IsTerminal;
    let mut out = std::io::stdout();
    let options = watch::WatchOptions {
        tty: out.is_terminal(),
        ..watch::WatchOptions::default()
    };
    let code = watch::watch(settings, run, &mut out, &options).await?;
    Ok(Done(String::new(), code))
}

async fn execute(cli: Cli) -> Result<Done, Error> {
    let settings = ClientSettings {
        endpoints: cli.endpoints.clone(),
        certs_dir: cli.certs_dir.clone(),
        identity: cli.identity.clone(),
    };
    match cli.command {
        Command::Run(rc) => {
            let (runbook, a) = rc.parts();
            let mut control = Control::connect(&settings).await?;
            let r = control
                .call(|mut c| {
                    let req = pb::StartRunRequest {
                        attestation: a.attest_primary_down.clone().unwrap_or_default(),
                        accept_gap_file: a.accept_gap.clone().unwrap_or_default(),
                        accept_gap_reason: a.gap_reason.clone().unwrap_or_default(),
                        runbook: runbook.into(),
                        pools: a.pools.clone(),
                        all: a.all,
                        yes: a.yes,
                        max_parallel: a.max_parallel,
                        continue_on_failure: a.continue_on_failure,
                    };
                    async move { c.start_run(req).await }
                })
                .await?;
            match Format::from(a.output) {
                Format::Json => Ok(serde_json::json!({ "run_id": r.run_id }).to_string().into()),
                Format::Table if a.detach => Ok(r.run_id.into()),
                Format::Table => {
                    println!("{}", r.run_id);
                    watch_run(&settings, Some(r.run_id)).await
                }
            }
        }
        Command::Plan(rc) => {
            let (runbook, a) = rc.parts();
            let mut control = Control::connect(&settings).await?;
            let mut p = control
                .call(|mut c| {
                    let req = pb::PlanRequest {
                        runbook: runbook.into(),
                        pools: a.pools.clone(),
                        all: a.all,
                        max_parallel: a.max_parallel,
                    };
                    async move { c.plan(req).await }
                })
                .await?;
            // The plan's findings include preflight's for the runbook's direction, read-only
            // (no one-off Agent job), so a dry run still changes nothing.
            let pf = control
                .call(|mut c| {
                    let req = pb::PreflightRequest {
                        pools: a.pools.clone(),
                        all: a.all,
                        reads_only: true,
                        ..Default::default()
                    };
                    async move { c.preflight(req).await }
                })
                .await;
            match pf {
                Ok(r) => p
                    .findings
                    .extend(failback_coordinator::ctl::preflight_view::findings(
                        &r, runbook,
                    )),
                Err(e) => p.findings.push(format!("preflight could not run: {e}")),
            }
            Ok(runs_view::render_plan(&p, a.output.into()).into())
        }
        Command::Status { run, output } => {
            let mut control = Control::connect(&settings).await?;
            let d = control
                .call(|mut c| {
                    let run_id = run.clone().unwrap_or_default();
                    async move { c.get_run(pb::GetRunRequest { run_id }).await }
                })
                .await?;
            let status = d.run.as_ref().map(|r| r.status.clone()).unwrap_or_default();
            let code = if status == "failed" || status == "aborted" {
                3
            } else {
                0
            };
            Ok(Done(runs_view::render_run(&d, output.into()), code))
        }
        Command::Approve { run } => {
            return run_call(&settings, "approve", run).await.map(Into::into);
        }
        Command::Pause { run } => run_call(&settings, "pause", run).await.map(Into::into),
        Command::Resume { run } => run_call(&settings, "resume", run).await.map(Into::into),
        Command::Abort { run } => run_call(&settings, "abort", run).await.map(Into::into),
        Command::History { limit, output } => {
            let mut control = Control::connect(&settings).await?;
            let r = control
                .call(|mut c| async move { c.list_runs(pb::ListRunsRequest { limit }).await })
                .await?;
            Ok(runs_view::render_history(&r, output.into()).into())
        }
        Command::Watch { run } => watch_run(&settings, run).await,
        Command::Report { run, format } => {
            let mut control = Control::connect(&settings).await?;
            let d = control
                .call(|mut c| {
                    let run_id = run.clone().unwrap_or_default();
                    async move { c.get_run(pb::GetRunRequest { run_id }).await }
                })
                .await?;
            Ok(match format {
                ReportFormat::Md => report_view::report_md(&d),
                ReportFormat::Json => serde_json::to_string_pretty(&report_view::report_json(&d))
                    .map_err(|e| Error::Internal(format!("report JSON: {e}")))?,
            }
            .into())
        }
        Command::Preflight(a) => {
            let max_log_age_seconds = match a.max_log_age {
                None => 0,
                Some(d) if d.as_secs() >= 1 => u32::try_from(d.as_secs())
                    .map_err(|_| Error::InvalidInput(format!("--max-log-age {d:?} is too long")))?,
                Some(d) => {
                    return Err(Error::InvalidInput(format!(
                        "--max-log-age {d:?} must be at least one second"
                    )));
                }
            };
            let mut control = Control::connect(&settings).await?;
            let r = control
                .call(|mut c| {
                    let req = pb::PreflightRequest {
                        pools: a.pools.clone(),
                        all: a.all,
                        free_space_factor: a.free_space_factor,
                        max_log_age_seconds,
                        reads_only: false,
                    };
                    async move { c.preflight(req).await }
                })
                .await?;
            let code = if r.ready { 0 } else { 3 };
            Ok(Done(
                failback_coordinator::ctl::preflight_view::render(&r, a.output.into()),
                code,
            ))
        }
        other => execute_other(other, settings).await.map(Into::into),
    }
}

async fn execute_other(command: Command, settings: ClientSettings) -> Result<String, Error> {
    match command {
        Command::Certs(CertsCommand::Init { dir, names, days }) => {
            let specs = pki::group(&names.requests())?;
            let files = pki::init(&dir, &specs, pki::Validity::days(days))?;
            Ok(format!(
                "created a CA and {} certificate(s) in {} ({} files)",
                specs.len(),
                dir.display(),
                files.len()
            ))
        }
        Command::Certs(CertsCommand::Add {
            dir,
            names,
            days,
            not_after,
            not_before,
            force,
        }) => {
            let specs = pki::group(&names.requests())?;
            let mut validity = pki::Validity::days(days);
            if let Some(t) = not_after {
                validity.not_after = parse_time(&t, "--not-after")?;
            }
            if let Some(t) = not_before {
                validity.not_before = parse_time(&t, "--not-before")?;
            }
            pki::add(&dir, &specs, validity, force)?;
            let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
            Ok(format!("issued {} in {}", names.join(", "), dir.display()))
        }
        Command::Topology(TopologyCommand::Check { file }) => {
            let t = Topology::load(&file)?;
            Ok(format!(
                "{}: valid: {} pool(s), {} agent(s) in data centers {}",
                file.display(),
                t.pools.len(),
                t.agents.len(),
                t.datacenters().join(", ")
            ))
        }
        Command::Agents { output } => {
            let mut control = Control::connect(&settings).await?;
            let resp = control
                .call(|mut c| async move { c.list_agents(pb::ListAgentsRequest {}).await })
                .await?;
            let doc = output::agents_doc(&control.endpoint.name, &resp);
            Ok(output::render_agents(&doc, output.into()))
        }
        Command::Inspect { agent, output } => {
            let mut control = Control::connect(&settings).await?;
            let view = control
                .call(|mut c| {
                    let agent_id = agent.clone();
                    async move { c.inspect(pb::InspectRequest { agent_id }).await }
                })
                .await?;
            Ok(failback_coordinator::ctl::inspect_view::render(
                &view,
                output.into(),
            ))
        }
        Command::Ping { agent } => {
            let mut control = Control::connect(&settings).await?;
            let r = control
                .call(|mut c| {
                    let agent_id = agent.clone();
                    async move { c.ping_agent(pb::PingAgentRequest { agent_id }).await }
                })
                .await?;
            Ok(format!(
                "{}: pong in {} ms (epoch {})",
                r.agent_id, r.round_trip_ms, r.epoch
            ))
        }
        Command::Leader { output } => {
            let mut control = Control::connect(&settings).await?;
            let r = control
                .call(|mut c| async move { c.leader(pb::LeaderRequest {}).await })
                .await?;
            Ok(match Format::from(output) {
                Format::Json => serde_json::json!({
                    "leader_id": r.leader_id, "leader_endpoint": r.leader_endpoint, "epoch": r.epoch,
                    "answered_by": r.answered_by, "answered_by_leader": r.answered_by_leader, "mode": r.mode,
                })
                .to_string(),
                // Unknown is said as such (issue #12: a stale leader was named during a quorum
                // loss): the answering coordinator cannot confirm anyone leads.
                Format::Table if r.leader_id.is_empty() => format!(
                    "no leader known: {} cannot confirm who leads (mode {}; with etcd: quorum lost, or an election under way)",
                    r.answered_by, r.mode
                ),
                Format::Table => format!(
                    "leader {} ({}) at epoch {}, mode {}; answered by {}",
                    r.leader_id, r.leader_endpoint, r.epoch, r.mode, r.answered_by
                ),
            })
        }
        Command::Run(_)
        | Command::Plan(_)
        | Command::Status { .. }
        | Command::Approve { .. }
        | Command::Pause { .. }
        | Command::Resume { .. }
        | Command::Abort { .. }
        | Command::History { .. }
        | Command::Watch { .. }
        | Command::Report { .. }
        | Command::Preflight(_) => Err(Error::Internal("run commands are handled above".into())),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    failback_proto::install_crypto_provider();
    match execute(cli).await {
        Ok(Done(out, code)) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}
