//! `failback-lab`: the one-command disaster-recovery drill on loopback (DESIGN §8, issue #7).
//!
//! It brings up two data centers — per pool four `sqlsim` instances (primary and its mirror in
//! DC1, backup and its mirror in DC2; two with `--no-mirrors`), a Lync shell host per data
//! center running `lyncsim` over one shared CMS store, one agent per host, a coordinator
//! (standalone store, or with `--etcd` two coordinators on a three-member etcd), the
//! log-shipping share (DC1) and copy folders (DC2) — puts every pool in its normal state with
//! log shipping on 1-2 s schedules (sqlsim's lab-only `--lab-short-schedules`, see [`sql`]), starts chat traffic that behaves like the pools' chat
//! servers, then drills: preflight → loss of DC1 → failover → count → rebuild DC1 → preflight
//! → failback → count → report. Exit 0 only when every check passed. Layout decisions (mirrors,
//! where the share lives) are documented in [`topology`].
//!
//! Modules: [`topology`] (names, layout decisions), [`fleet`] (processes), [`sql`] (databases
//! and log shipping), [`traffic`] (chat servers and the ledger), [`runs`] (runbooks through
//! failbackctl), [`drill`] (the phases), [`counts`] (their checks) and [`report`].
#![allow(clippy::print_stdout)] // Progress and the report on stdout are the lab's output.

pub mod counts;
pub mod drill;
pub mod fleet;
pub mod report;
pub mod runs;
pub mod sql;
pub mod topology;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fleet::LabFleet;
use report::Report;
use topology::{PoolLayout, SHELL_DC1, SHELL_DC2};
use traffic::{PoolTarget, Traffic};

use crate::harness::fleet::OPERATOR;
use crate::harness::process::bin;
use crate::harness::sqlsim::{SA_PASSWORD, SqlSim};

/// What the lab was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of pools.
    pub pools: usize,
    /// Size of a full backup's payload per database (sqlsim `--db-size-mb`).
    pub db_size_mb: u32,
    /// Run two coordinators on a three-member etcd instead of one standalone coordinator.
    pub etcd: bool,
    /// Run the primary's and the backup's mirror instances (see [`topology`]).
    pub mirrors: bool,
    /// Leave everything running at the end and say how to reach it.
    pub keep_running: bool,
    /// Working directory (default: a temporary one, kept when the drill fails).
    pub workdir: Option<PathBuf>,
}

/// The running lab.
pub struct Lab {
    /// Options it was started with.
    pub opts: Options,
    /// Certificates, configs, coordinators, agents.
    pub fleet: LabFleet,
    /// The pools.
    pub pools: Vec<PoolLayout>,
    /// sqlsim instances by agent id.
    pub sims: BTreeMap<String, SqlSim>,
    /// The chat traffic.
    pub traffic: Traffic,
    /// The record of the drill.
    pub report: Report,
    password: PathBuf,
}

/// Runs the lab; `Ok(true)` when every check passed.
pub async fn run(opts: Options) -> anyhow::Result<bool> {
    anyhow::ensure!(
        (1..=20).contains(&opts.pools),
        "--pools {} is outside 1..=20",
        opts.pools
    );
    anyhow::ensure!(opts.db_size_mb >= 1, "--db-size-mb must be at least 1");
    let (dir, tmp) = match (&opts.workdir, opts.keep_running) {
        (Some(d), _) => {
            anyhow::ensure!(
                !d.join("certs").exists(),
                "--workdir {} already holds a lab (certs/ exists); give an empty or new directory",
                d.display()
            );
            std::fs::create_dir_all(d)?;
            // Absolute: agent file roots and sqlsim paths must not depend on a process's cwd.
            let d = std::fs::canonicalize(d)
                .map_err(|e| anyhow::anyhow!("--workdir {}: {e}", d.display()))?;
            (d, None)
        }
        (None, keep) => {
            let t = tempfile::Builder::new().prefix("failback-lab-").tempdir()?;
            let d = t.path().to_path_buf();
            (d, (!keep).then_some(t))
        }
    };
    println!(
        "failback lab: {} pool(s), workdir {}",
        opts.pools,
        dir.display()
    );
    let result = async {
        let mut lab = Lab::start(opts.clone(), dir.clone()).await?;
        drill::run(&mut lab).await;
        lab.traffic.stop().await;
        println!("{}", lab.report.render());
        let passed = lab.report.passed();
        if opts.keep_running {
            lab.print_how_to_connect();
            tokio::signal::ctrl_c().await?;
        }
        anyhow::Ok(passed)
    }
    .await;
    match (&result, tmp) {
        (Ok(true), _) | (_, None) => {}
        (_, Some(t)) => {
            let kept = t.keep();
            println!("workdir kept for the logs: {}", kept.display());
        }
    }
    result
}

impl Lab {
    /// Brings the lab up in its normal state (module doc) and starts the traffic.
    async fn start(opts: Options, dir: PathBuf) -> anyhow::Result<Self> {
        let mut report = Report::default();
        let t = report.begin("bring up two data centers on loopback");
        let files = dir.join("files");
        let pools = topology::layout(opts.pools, &files, opts.mirrors);
        let mut sims = BTreeMap::new();
        for p in &pools {
            for (id, dc) in p.instances() {
                let registry = opts.mirrors.then(|| mirror_registry(&dir, p, dc, 0));
                let mut sim = sql::new_sim(
                    id,
                    &dir.join("sql").join(id),
                    None,
                    opts.db_size_mb,
                    registry.as_deref(),
                    topology::utc_offset_minutes(dc),
                )?;
                // The DBA's log shipping on 1-2 s schedules needs sqlsim's lab-only deviation
                // (sql.rs module doc); the mirrors and the rebuilt DC1 run as SQL Server does.
                if id == p.primary || id == p.backup {
                    sim = sim.with_lab_short_schedules();
                }
                sims.insert(id.to_string(), sim);
            }
        }
        let topo = topology::topology_toml(&pools, |id| sims.get(id).map_or(0, |s| s.port));
        let ids: Vec<String> = topology::agents(&pools).into_iter().map(|a| a.0).collect();
        let mut fleet = LabFleet::create(&dir, ids, &topo, opts.etcd).await?;
        println!(
            "   certificates in {}, coordinator(s) {}",
            fleet.certs.display(),
            fleet.endpoints()
        );
        if let Some(e) = &fleet.etcd {
            println!("   etcd members {}", e.endpoints().join(", "));
        }
        std::fs::create_dir_all(&files)?;
        std::fs::create_dir_all(dir.join("mirroring"))?;
        for sim in sims.values_mut() {
            sim.start().await?;
        }
        let password = dir.join("sql-password");
        std::fs::write(&password, SA_PASSWORD)?;
        for p in &pools {
            let (primary, backup) = (&sims[&p.primary], &sims[&p.backup]);
            sql::install_databases(primary, backup).await?;
            sql::configure_log_shipping(p, primary, backup).await?;
            if let Some(m) = &p.primary_mirror {
                let seed = topology::dc1_files(&files)
                    .join("mirror-seed")
                    .join(&p.fqdn);
                sql::mirror_mgc(primary, &sims[m], &seed).await?;
                println!("   {}: mgc mirrored {} -> {m}", p.fqdn, p.primary);
            }
            println!(
                "   {}: sqlsim {} :{} (primary) -> {} :{} (backup), log shipping every {}/{}/{} s (lab-only --lab-short-schedules)",
                p.fqdn,
                p.primary,
                primary.port,
                p.backup,
                backup.port,
                sql::BACKUP_EVERY_S,
                sql::COPY_EVERY_S,
                sql::RESTORE_EVERY_S
            );
            init_cms(&fleet, p).await?;
        }
        fleet.start_coordinators().await?;
        let leader = fleet.wait_leader().await?;
        println!(
            "   leader {} at epoch {} ({} mode)",
            leader["leader_id"].as_str().unwrap_or("?"),
            leader["epoch"],
            leader["mode"].as_str().unwrap_or("?")
        );
        let targets: Vec<PoolTarget> = pools
            .iter()
            .map(|p| PoolTarget {
                layout: p.clone(),
                primary_port: sims[&p.primary].port,
                backup_port: sims[&p.backup].port,
            })
            .collect();
        let mut lab = Lab {
            opts,
            pools,
            sims,
            traffic: Traffic::start(fleet.cms_store(), &targets),
            report: Report::default(),
            password,
            fleet,
        };
        let ids = lab.fleet.agent_ids().to_vec();
        for id in &ids {
            lab.configure_agent(id)?;
            lab.fleet.start_agent(id)?;
        }
        lab.fleet
            .wait_connected(&ids, true, Duration::from_secs(60))
            .await?;
        println!("   {} agents connected; chat traffic started", ids.len());
        report.end(
            t,
            format!("{} pools, {} agents", lab.pools.len(), ids.len()),
        );
        lab.report = report;
        Ok(lab)
    }

    /// Writes an agent's `[sql]` / `[lync]` sections for its role.
    fn configure_agent(&mut self, id: &str) -> anyhow::Result<()> {
        let extra = if id == SHELL_DC1 || id == SHELL_DC2 {
            self.fleet.lync_section(id)?
        } else {
            let sim = self
                .sims
                .get(id)
                .ok_or_else(|| anyhow::anyhow!("agent {id} has no SQL instance"))?;
            sim.agent_section(&self.password)
        };
        self.fleet.configure_agent(id, extra);
        Ok(())
    }

    fn print_how_to_connect(&self) {
        println!("\nThe lab keeps running (Ctrl-C stops it). In another shell:");
        println!("  export FAILBACK_COORDINATORS={}", self.fleet.endpoints());
        println!("  export FAILBACK_CERTS_DIR={}", self.fleet.certs.display());
        println!("  export FAILBACK_IDENTITY={OPERATOR}");
        if let Ok(ctl) = bin("failbackctl") {
            println!("  {} agents", ctl.display());
            println!("  {} history", ctl.display());
            println!(
                "  {} inspect {}",
                ctl.display(),
                self.pools.first().map_or("", |p| p.primary.as_str())
            );
        }
        println!("  (approvals: FAILBACK_IDENTITY=approver1)");
        println!("  logs: {}", self.fleet.dir.join("logs").display());
        println!("  CMS store: {}", self.fleet.cms_store().display());
    }
}

/// The mirroring registry file a pool's instances in `dc` share; `generation` 1 is DC1
/// rebuilt (its fresh instances know nothing of the sessions of the lost ones).
pub fn mirror_registry(
    dir: &std::path::Path,
    p: &PoolLayout,
    dc: &str,
    generation: u32,
) -> PathBuf {
    dir.join("mirroring")
        .join(format!("p{}-{dc}-{generation}.json", p.index))
}

/// Adds the pool to the CMS: `Normal`, its DC1 chat server active.
async fn init_cms(fleet: &LabFleet, p: &PoolLayout) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(bin("lyncsim")?)
        .args([
            "--store",
            &fleet.cms_store().display().to_string(),
            "init",
            "--pool",
            &p.fqdn,
            "--servers",
            &p.chat_dc1,
            "--servers-dc2",
            &p.chat_dc2,
            "--product",
            "sfb2015",
        ])
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "lyncsim init {}: {}",
        p.fqdn,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
