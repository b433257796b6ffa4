//! A pool built in the normal state with log shipping running, the starting point of the
//! preflight and failover tests: [`super::fleet::three_agent_topology`] with the share and copy
//! folder under the agents' files root, a primary sqlsim (`mgc` ONLINE, FULL recovery) and a
//! backup sqlsim seeded from a full backup (RESTORING, or STANDBY), log shipping primary →
//! backup configured with the SSMS scripts ([`super::ssms`], 1-second schedules, so both sims
//! run with the lab-only `--lab-short-schedules`) as a DBA runs them, lyncsim's CMS with the
//! pool Normal, and a standalone coordinator (or two on etcd) with all three agents connected. Modelled on [`super::failed_over`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::fleet::{Fleet, three_agent_topology};
use super::sqlsim::{SA_PASSWORD, SqlSim};
use super::ssms::LogShipping;

/// The primary SQL agent and instance (DC1).
pub const PRIMARY: &str = "sql01.dc1.lab";
/// The backup SQL agent and instance (DC2), also the DC2 Management Shell host.
pub const BACKUP: &str = "sql01.dc2.lab";
/// The DC1 Management Shell agent.
pub const SHELL_DC1: &str = "fe01.dc1.lab";
/// The pool's FQDN.
pub const POOL: &str = "pchat01.lab.local";

/// How to build the pool.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra sqlsim command-line arguments for both instances.
    pub sim_args: Vec<String>,
    /// TOML appended to the coordinator's config (a `[runbook]` section), if not empty.
    pub coordinator_extra: String,
    /// Message bodies written into the primary `mgc` before the seed backup.
    pub seed_messages: Vec<String>,
    /// The backup `mgc` in STANDBY between restores (seeded and restored WITH STANDBY) instead
    /// of NORECOVERY.
    pub standby: bool,
    /// Extra sqlsim arguments for the backup instance only (after `sim_args`).
    pub backup_sim_args: Vec<String>,
    /// Two coordinators on etcd (endpoints, cluster name, lease TTL) instead of one standalone.
    pub etcd: Option<(Vec<String>, String, Duration)>,
    /// Every Management Shell script takes at least this long (`Fleet::lync_delay`).
    pub lync_delay: Duration,
    /// Every agent's `[files] copy_bytes_per_second` (`Fleet::copy_bytes_per_second`).
    pub copy_bytes_per_second: Option<u64>,
}

/// The pool and the processes behind it.
pub struct NormalPool {
    /// Certificates, configs, the coordinator and the agents.
    pub fleet: Fleet,
    /// The primary instance.
    pub primary: SqlSim,
    /// The backup instance.
    pub backup: SqlSim,
    /// The log shipping share (the primary's backup folder).
    pub share: PathBuf,
    /// The backup's copy folder.
    pub copy: PathBuf,
}

/// Builds and starts the pool: log shipping configured, every agent connected. Waiting for the
/// first logs to ship is the caller's: what "shipping" must show differs by test.
pub async fn normal_pool(opts: Options) -> anyhow::Result<NormalPool> {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500)).await?;
    fleet.lync_delay = opts.lync_delay;
    fleet.copy_bytes_per_second = opts.copy_bytes_per_second;
    if let Some((endpoints, cluster, ttl)) = &opts.etcd {
        fleet.use_etcd(endpoints.clone(), cluster, *ttl)?;
    }
    let files = fleet.files_root();
    let (share, copy) = (files.join("share"), files.join("copy"));
    let topology = topology
        .replace("/lab/share", &share.display().to_string())
        .replace("/lab/copy", &copy.display().to_string());
    std::fs::write(fleet.dir.join("topology.toml"), topology)?;
    std::fs::create_dir_all(&share)?;
    std::fs::create_dir_all(&copy)?;
    if !opts.coordinator_extra.is_empty() {
        fleet.configure_coordinators(&opts.coordinator_extra)?;
    }

    let args: Vec<&str> = opts.sim_args.iter().map(String::as_str).collect();
    let mut primary = SqlSim::new(PRIMARY, &fleet.dir.join("sql-primary"))?
        .with_args(&args)
        .with_lab_short_schedules();
    let backup_args: Vec<&str> = args
        .iter()
        .copied()
        .chain(opts.backup_sim_args.iter().map(String::as_str))
        .collect();
    let mut backup = SqlSim::new(BACKUP, &fleet.dir.join("sql-backup"))?
        .with_args(&backup_args)
        .with_lab_short_schedules();
    primary.start().await?;
    backup.start().await?;
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, SA_PASSWORD)?;
    fleet.configure_agent(PRIMARY, &primary.agent_section(&pw))?;
    let backup_extra = format!(
        "{}\n{}",
        backup.agent_section(&pw),
        fleet.lync_section(BACKUP)?
    );
    fleet.configure_agent(BACKUP, &backup_extra)?;
    let shell = fleet.lync_section(SHELL_DC1)?;
    fleet.configure_agent(SHELL_DC1, &shell)?;

    // Log shipping as the DBA set it up: the pool's data on the primary, the backup seeded
    // from a full backup, then the SSMS scripts on both sides.
    let (s, c) = (share.display().to_string(), copy.display().to_string());
    let sa = ("sa", SA_PASSWORD);
    primary
        .batch_as(
            sa,
            "master",
            "CREATE DATABASE mgc; ALTER DATABASE mgc SET RECOVERY FULL",
        )
        .await?;
    for body in &opts.seed_messages {
        primary
            .batch_as(
                sa,
                "mgc",
                &format!(
                    "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'{}')",
                    body.replace('\'', "''")
                ),
            )
            .await?;
    }
    primary
        .batch_as(
            sa,
            "master",
            &format!("BACKUP DATABASE [mgc] TO DISK = N'{s}/mgc_seed.bak' WITH INIT"),
        )
        .await?;
    let restore = if opts.standby {
        let undo = backup.data_dir.join("mgc_seed.tuf");
        format!(
            "RESTORE DATABASE [mgc] FROM DISK = N'{s}/mgc_seed.bak' WITH STANDBY = N'{}'",
            undo.display()
        )
    } else {
        format!("RESTORE DATABASE [mgc] FROM DISK = N'{s}/mgc_seed.bak' WITH NORECOVERY")
    };
    backup.batch_as(sa, "master", &restore).await?;
    let ls = LogShipping::new("mgc", &s, &c, PRIMARY, BACKUP).standby(opts.standby);
    let r = primary.batch_as(sa, "master", &ls.primary_script()).await?;
    let rc = r.first().and_then(|row| row.get::<i32, _>("rc"));
    anyhow::ensure!(
        rc == Some(0),
        "the SSMS primary script on {PRIMARY} returned {rc:?}"
    );
    let r = backup
        .batch_as(sa, "master", &ls.secondary_script())
        .await?;
    let rc = r.first().and_then(|row| row.get::<i32, _>("rc"));
    anyhow::ensure!(
        rc == Some(0),
        "the SSMS secondary script on {BACKUP} returned {rc:?}"
    );

    fleet
        .init_cms(POOL, &["pc01.dc1.lab"], &["pc01.dc2.lab"])
        .await?;
    fleet.start_coordinator().await?;
    fleet.start_agents()?;
    fleet
        .wait_connected(&[PRIMARY, BACKUP, SHELL_DC1], true, Duration::from_secs(30))
        .await
        .context("agents did not connect")?;
    Ok(NormalPool {
        fleet,
        primary,
        backup,
        share,
        copy,
    })
}
