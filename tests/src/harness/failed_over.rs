//! Pools built in the failed-over state, the starting point of every failback test: for each
//! pool a primary sqlsim (DC1, rebuilt by Topology Builder: an empty `mgc`) and a backup sqlsim
//! (DC2: `mgc` ONLINE with the chat history, optionally mirrored to a third instance as a long
//! failed-over period leaves it), the pool `FailedOver` in lyncsim's CMS with its DC2 chat server
//! active, and the agents that manage them — all real processes, connected to one
//! standalone coordinator or to two coordinators on etcd.
//!
//! Agents: pool `i` (1-based) has `sql0i.dc1.lab` (primary) and `sql0i.dc2.lab` (backup);
//! `fe01.dc1.lab` is the DC1 Management Shell host and `sql01.dc2.lab` doubles as the DC2 one,
//! so pool 1 is exactly [`super::fleet::three_agent_topology`].

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::fleet::{AgentSpec, Fleet, OPERATOR};
use super::process::bin;
use super::sqlsim::{SA_PASSWORD, SqlSim};
use super::wait_for;
use crate::lab::sql::{LAB_ADMIN, mirror_mgc};

/// Messages each pool's `mgc` holds before failback.
pub const MESSAGES: usize = 20;
/// The DC1 Management Shell agent.
pub const SHELL_DC1: &str = "fe01.dc1.lab";

/// Fast drain, retry and latency settings for the coordinators (nothing is connected to the
/// backup databases, so FB-1 need not wait long).
pub const FAST_RUNBOOK: &str = "[runbook]\ndrain_grace = \"2s\"\ndrain_poll = \"200ms\"\nretry_backoff = \"500ms\"\nlatency_limit = \"500ms\"\n";

/// One pool of the lab.
pub struct PoolLab {
    /// Pool FQDN.
    pub fqdn: String,
    /// Primary SQL agent id (DC1).
    pub primary_agent: String,
    /// Backup SQL agent id (DC2).
    pub backup_agent: String,
    /// The primary instance.
    pub primary: SqlSim,
    /// The backup instance.
    pub backup: SqlSim,
    /// The backup's mirror (not an agent of the topology: FB-2 finds the mirroring on the
    /// backup instance), when the lab mirrors.
    pub mirror: Option<SqlSim>,
    /// How many statements the primary's and the backup's logs held when the lab was ready:
    /// what a run sent comes after.
    pub setup_statements: (usize, usize),
}

/// A fleet whose pools are failed over.
pub struct FailedOverLab {
    /// Certificates, configs, coordinators and agents.
    pub fleet: Fleet,
    /// The pools, in topology order (the first is the canary).
    pub pools: Vec<PoolLab>,
    /// Each coordinator's links to the etcd members, when the lab was built with
    /// [`Options::cuttable_etcd`].
    pub etcd_links: std::collections::BTreeMap<String, Vec<super::net_cut::Link>>,
}

/// How to build the lab.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of pools.
    pub pools: usize,
    /// Two coordinators on etcd: (endpoints, cluster name, lease TTL). None = standalone.
    pub etcd: Option<(Vec<String>, String, Duration)>,
    /// Extra sqlsim command-line arguments per pool index (0-based) for the backup instance
    /// (`--fault …`).
    pub backup_args: Vec<(usize, Vec<String>)>,
    /// Same for the primary instance.
    pub primary_args: Vec<(usize, Vec<String>)>,
    /// Heartbeat interval of the coordinators.
    pub heartbeat: Duration,
    /// Mirror each backup `mgc` to a third instance (as a long failed-over period leaves it).
    pub mirrored: bool,
    /// Environment of every coordinator and agent (the scenarios' test-only breaks).
    pub env: Vec<(String, String)>,
    /// DC2 keeps the log shipping secondary configuration of before the disaster, its monitor
    /// naming a log restored then ([`super::stale_shipping`]: a failover done by hand).
    pub stale_secondary: bool,
    /// Each coordinator reaches each etcd member through its own [`super::net_cut::Link`],
    /// so a scenario can cut one coordinator off etcd while it still reaches the agents.
    pub cuttable_etcd: bool,
    /// Lines added to the coordinators' `[runbook]` table (after [`FAST_RUNBOOK`]'s).
    pub runbook_extra: String,
    /// Every Management Shell script takes at least this long (see `Fleet::lync_delay`).
    pub lync_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pools: 1,
            etcd: None,
            backup_args: Vec::new(),
            primary_args: Vec::new(),
            heartbeat: Duration::from_millis(500),
            mirrored: false,
            env: Vec::new(),
            stale_secondary: false,
            cuttable_etcd: false,
            runbook_extra: String::new(),
            lync_delay: Duration::ZERO,
        }
    }
}

/// The data centers' hosts run different time zones (UTC+1 and UTC-5, as in the lab), so a
/// run's times are checked against SQL Server's local clocks, not against UTC by accident.
const DC1_UTC_OFFSET_MINUTES: i32 = 60;
/// See [`DC1_UTC_OFFSET_MINUTES`].
const DC2_UTC_OFFSET_MINUTES: i32 = -300;

/// Pool `i`'s FQDN (1-based).
pub fn pool_fqdn(i: usize) -> String {
    format!("pchat{i:02}.lab.local")
}

/// The topology of `n` failed-over pools, with its agents. The share and copy folders are
/// per pool under `files`.
pub fn topology(n: usize, files: &Path) -> (Vec<AgentSpec>, String) {
    let spec = |id: String, dc: &str| AgentSpec {
        id,
        datacenter: dc.into(),
    };
    let mut agents = vec![spec(SHELL_DC1.into(), "dc1")];
    for i in 1..=n {
        agents.push(spec(format!("sql{i:02}.dc1.lab"), "dc1"));
        agents.push(spec(format!("sql{i:02}.dc2.lab"), "dc2"));
    }
    let mut t = String::new();
    for a in &agents {
        t.push_str(&format!(
            "[[agent]]\nid = \"{}\"\ndatacenter = \"{}\"\n\n",
            a.id, a.datacenter
        ));
    }
    for i in 1..=n {
        let dir = files.join(format!("pool{i:02}"));
        t.push_str(&format!(
            r#"[[pool]]
fqdn = "{fqdn}"
primary_dc = "dc1"
backup_dc = "dc2"
databases = ["mgc"]
share = "{share}"
copy_dir = "{copy}"

[pool.lync_shell]
dc1 = ["{SHELL_DC1}"]
dc2 = ["sql01.dc2.lab"]

[pool.sql]
primary = {{ agent = "sql{i:02}.dc1.lab", instance = "sql{i:02}.dc1.lab" }}
backup = {{ agent = "sql{i:02}.dc2.lab", instance = "sql{i:02}.dc2.lab" }}

[pool.chat_servers]
dc1 = ["pc{i:02}.dc1.lab"]
dc2 = ["pc{i:02}.dc2.lab"]

"#,
            fqdn = pool_fqdn(i),
            share = dir.join("share").display(),
            copy = dir.join("copy").display(),
        ));
    }
    (agents, t)
}

/// Runs a script in lyncsim against the fleet's CMS, as an administrator would in the shell.
pub async fn lync(fleet: &Fleet, script: &str) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(bin("lyncsim")?)
        .args([
            "--store",
            &fleet.cms_store().display().to_string(),
            "--host",
            "admin",
            "-NoProfile",
            "-Command",
            script,
        ])
        .output()
        .await?;
    if !out.status.success() {
        anyhow::bail!("lyncsim: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn args_for(list: &[(usize, Vec<String>)], i: usize) -> Vec<String> {
    list.iter()
        .filter(|(p, _)| *p == i)
        .flat_map(|(_, a)| a.clone())
        .collect()
}

/// Builds and starts the lab: every pool failed over, every agent connected.
pub async fn failed_over(opts: Options) -> anyhow::Result<FailedOverLab> {
    failback_proto::install_crypto_provider();
    // The files root is known only once the fleet exists: write a placeholder topology first.
    let (agents, _) = topology(opts.pools, Path::new("/"));
    let mut fleet = Fleet::create(None, agents, "", opts.heartbeat).await?;
    let files = fleet.files_root();
    let (_, text) = topology(opts.pools, &files);
    std::fs::write(fleet.dir.join("topology.toml"), text)?;
    let mut etcd_links = std::collections::BTreeMap::new();
    if let Some((endpoints, cluster, ttl)) = &opts.etcd {
        fleet.use_etcd(endpoints.clone(), cluster, *ttl)?;
        if opts.cuttable_etcd {
            for name in fleet.coordinator_names() {
                let mut links = Vec::new();
                for e in endpoints {
                    let addr = e
                        .trim_start_matches("http://")
                        .parse()
                        .with_context(|| format!("etcd endpoint {e}"))?;
                    links.push(super::net_cut::Link::start(addr).await?);
                }
                let routed = links.iter().map(|l| format!("http://{}", l.addr)).collect();
                fleet.route_etcd(&name, routed)?;
                etcd_links.insert(name, links);
            }
        }
    }
    fleet.configure_coordinators(&format!("{FAST_RUNBOOK}{}", opts.runbook_extra))?;
    fleet.process_env = opts.env.clone();
    fleet.lync_delay = opts.lync_delay;
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, SA_PASSWORD)?;

    let mut pools = Vec::new();
    for i in 1..=opts.pools {
        let dir = files.join(format!("pool{i:02}"));
        std::fs::create_dir_all(dir.join("share"))?;
        std::fs::create_dir_all(dir.join("copy"))?;
        let (primary_agent, backup_agent) =
            (format!("sql{i:02}.dc1.lab"), format!("sql{i:02}.dc2.lab"));
        // `{share}` and `{copy}` in an argument name this pool's folders (known only here).
        let places = |args: Vec<String>| -> Vec<String> {
            args.into_iter()
                .map(|a| {
                    a.replace("{share}", &dir.join("share").display().to_string())
                        .replace("{copy}", &dir.join("copy").display().to_string())
                })
                .collect()
        };
        let pa = places(args_for(&opts.primary_args, i - 1));
        let mut ba = places(args_for(&opts.backup_args, i - 1));
        let registry = fleet.dir.join(format!("mirroring-{i:02}.json"));
        let mirror_args = [
            "--mirror-registry".to_string(),
            registry.display().to_string(),
            "--admin-login".into(),
            LAB_ADMIN.0.into(),
            "--admin-password".into(),
            LAB_ADMIN.1.into(),
        ];
        if opts.mirrored {
            ba.extend(mirror_args.iter().cloned());
        }
        let pa: Vec<&str> = pa.iter().map(String::as_str).collect();
        let ba: Vec<&str> = ba.iter().map(String::as_str).collect();
        let mut primary = SqlSim::new(
            &primary_agent,
            &fleet.dir.join(format!("sql-{primary_agent}")),
        )?
        .with_args(&pa)
        .with_utc_offset_minutes(DC1_UTC_OFFSET_MINUTES);
        let mut backup = SqlSim::new(
            &backup_agent,
            &fleet.dir.join(format!("sql-{backup_agent}")),
        )?
        .with_args(&ba)
        .with_utc_offset_minutes(DC2_UTC_OFFSET_MINUTES);
        primary.start().await?;
        backup.start().await?;
        fleet.configure_agent(&primary_agent, &primary.agent_section(&pw))?;
        let mut backup_extra = backup.agent_section(&pw);
        if i == 1 {
            backup_extra = format!("{backup_extra}\n{}", fleet.lync_section(&backup_agent)?);
        }
        fleet.configure_agent(&backup_agent, &backup_extra)?;

        // Failed over: the backup instance holds the pool's data, the primary was rebuilt empty.
        let sa = ("sa", SA_PASSWORD);
        if opts.stale_secondary {
            let stage = super::stale_shipping::Stage {
                primary_name: &primary_agent,
                old_dc1_dir: &fleet
                    .dir
                    .join(format!("sql-{primary_agent}-before-the-disaster")),
                dc1_utc_offset_minutes: DC1_UTC_OFFSET_MINUTES,
                share: &dir.join("share"),
                copy_dir: &dir.join("copy"),
                messages: MESSAGES,
            };
            super::stale_shipping::stage(&stage, &backup).await?;
        } else {
            backup
                .batch_as(
                    sa,
                    "master",
                    "CREATE DATABASE mgc; ALTER DATABASE mgc SET RECOVERY FULL",
                )
                .await?;
            for m in 0..MESSAGES {
                backup
                    .batch_as(
                        sa,
                        "mgc",
                        &format!(
                            "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'message {m}')"
                        ),
                    )
                    .await?;
            }
        }
        primary
            .batch_as(sa, "master", "CREATE DATABASE mgc")
            .await?;
        let mirror = if opts.mirrored {
            let name = format!("sql{i:02}m.dc2.lab");
            let ma: Vec<&str> = mirror_args.iter().map(String::as_str).collect();
            let mut m = SqlSim::new(&name, &fleet.dir.join(format!("sql-{name}")))?
                .with_args(&ma)
                .with_utc_offset_minutes(DC2_UTC_OFFSET_MINUTES);
            m.start().await?;
            mirror_mgc(&backup, &m, &fleet.dir.join("mirror-seeds")).await?;
            Some(m)
        } else {
            None
        };
        let fqdn = pool_fqdn(i);
        let (dc1, dc2) = (format!("pc{i:02}.dc1.lab"), format!("pc{i:02}.dc2.lab"));
        fleet
            .init_cms(&fqdn, &[dc1.as_str()], &[dc2.as_str()])
            .await?;
        lync(
            &fleet,
            &format!(
                "Import-Module 'SkypeForBusiness'; \
                 Set-CsPersistentChatState -Identity 'service:{fqdn}' -PoolState FailedOver -Force; \
                 Set-CsPersistentChatActiveServer -Identity 'PersistentChatServer:{fqdn}' -ActiveServers {dc2} -Force"
            ),
        )
        .await?;
        let setup_statements = (primary.statements().len(), backup.statements().len());
        pools.push(PoolLab {
            fqdn,
            primary_agent,
            backup_agent,
            primary,
            backup,
            mirror,
            setup_statements,
        });
    }
    let shell = fleet.lync_section(SHELL_DC1)?;
    fleet.configure_agent(SHELL_DC1, &shell)?;

    fleet.start_coordinator().await?;
    fleet.start_agents()?;
    let ids: Vec<String> = fleet.agent_specs.iter().map(|a| a.id.clone()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    fleet
        .wait_connected(&ids, true, Duration::from_secs(60))
        .await
        .context("agents did not connect")?;
    Ok(FailedOverLab {
        fleet,
        pools,
        etcd_links,
    })
}

impl FailedOverLab {
    /// `failbackctl status RUN --output json`, parsed.
    pub async fn status(&self, run: &str) -> anyhow::Result<serde_json::Value> {
        let out = self
            .fleet
            .ctl(OPERATOR, &["status", run, "--output", "json"])
            .await?;
        if out.code != 0 && out.code != 3 {
            anyhow::bail!("failbackctl status failed ({}): {}", out.code, out.stderr);
        }
        Ok(serde_json::from_str(&out.stdout)?)
    }

    /// Polls the run until its status is one of `wanted` or it ended; returns the last detail.
    pub async fn wait_status(
        &self,
        run: &str,
        wanted: &[&str],
        deadline: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let last = std::sync::Mutex::new(serde_json::Value::Null);
        let r = wait_for(
            &format!("run {run} to reach {wanted:?}"),
            deadline,
            || async {
                let d = self.status(run).await.ok()?;
                let s = d["run"]["status"].as_str().unwrap_or_default().to_string();
                if let Ok(mut l) = last.lock() {
                    *l = d.clone();
                }
                (wanted.contains(&s.as_str())
                    || ["succeeded", "failed", "aborted"].contains(&s.as_str()))
                .then_some(d)
            },
        )
        .await;
        r.map_err(|e| {
            let l = last.lock().map(|l| l.clone()).unwrap_or_default();
            anyhow::anyhow!("{e}: last status {l:#}")
        })
    }

    /// The first pool's share folder (FB-3's and FB-5's backups, log shipping's .trn files).
    pub fn share(&self) -> std::path::PathBuf {
        self.fleet.files_root().join("pool01").join("share")
    }

    /// Starts `failbackctl run failback` as `identity` with `args`; returns the run id.
    pub async fn start_failback(&self, identity: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["run", "failback"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--output", "json"]);
        let out = self.fleet.ctl(identity, &all).await?;
        if out.code != 0 {
            anyhow::bail!("failbackctl run failed ({}): {}", out.code, out.stderr);
        }
        let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
        v["run_id"]
            .as_str()
            .map(str::to_string)
            .context("no run_id in the answer")
    }
}

/// Statements in `sim`'s log that start with `prefix` (case-insensitive).
pub fn statements_starting(sim: &SqlSim, prefix: &str) -> Vec<String> {
    let prefix = prefix.to_ascii_uppercase();
    sim.statements()
        .into_iter()
        .map(|s| s.text)
        .filter(|t| t.trim_start().to_ascii_uppercase().starts_with(&prefix))
        .collect()
}
