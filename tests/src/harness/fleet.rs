//! A fleet on loopback: certificates made by the real `failbackctl certs init`, a topology, a
//! coordinator and agents as real processes, and `failbackctl` calls against them. Used by the
//! integration tests and by `failback-lab`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::process::{Proc, bin};
use super::{free_port, wait_for};

/// Operator identity the fleet's certificates include.
pub const OPERATOR: &str = "operator1";
/// Approver identity the fleet's certificates include.
pub const APPROVER: &str = "approver1";
/// The coordinator's certificate name.
pub const COORDINATOR: &str = "coord1";
/// The second coordinator's certificate name (used when the fleet runs on etcd).
pub const COORDINATOR2: &str = "coord2";

/// How the fleet's coordinators keep their state.
#[derive(Debug, Clone)]
struct EtcdMode {
    endpoints: Vec<String>,
    cluster: String,
    lease_ttl: Duration,
    /// Endpoints a coordinator reaches etcd by instead (links a test can cut).
    per_coordinator: std::collections::BTreeMap<String, Vec<String>>,
}

/// One coordinator process of the fleet (one in standalone mode, two on etcd).
struct CoordinatorSlot {
    name: String,
    port: u16,
    metrics_port: u16,
    proc: Option<Proc>,
}

/// One agent of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// Agent id (certificate name).
    pub id: String,
    /// Data center.
    pub datacenter: String,
}

/// The smallest useful topology: one pool over two data centers, three agents (a SQL primary and
/// a Lync shell in dc1, a SQL backup that also hosts the shell in dc2).
pub fn three_agent_topology() -> (Vec<AgentSpec>, String) {
    let agents = vec![
        AgentSpec {
            id: "sql01.dc1.lab".into(),
            datacenter: "dc1".into(),
        },
        AgentSpec {
            id: "fe01.dc1.lab".into(),
            datacenter: "dc1".into(),
        },
        AgentSpec {
            id: "sql01.dc2.lab".into(),
            datacenter: "dc2".into(),
        },
    ];
    let mut t = String::new();
    for a in &agents {
        t.push_str(&format!(
            "[[agent]]\nid = \"{}\"\ndatacenter = \"{}\"\n\n",
            a.id, a.datacenter
        ));
    }
    t.push_str(
        r#"[[pool]]
fqdn = "pchat01.lab.local"
primary_dc = "dc1"
backup_dc = "dc2"
databases = ["mgc"]
share = "/lab/share"
copy_dir = "/lab/copy"

[pool.lync_shell]
dc1 = ["fe01.dc1.lab"]
dc2 = ["sql01.dc2.lab"]

[pool.sql]
primary = { agent = "sql01.dc1.lab", instance = "sql01.dc1.lab,14331" }
backup = { agent = "sql01.dc2.lab", instance = "sql01.dc2.lab,14332" }

[pool.chat_servers]
dc1 = ["pc01.dc1.lab"]
dc2 = ["pc01.dc2.lab"]
"#,
    );
    (agents, t)
}

/// What a `failbackctl` call printed and returned.
#[derive(Debug)]
pub struct CtlOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A fleet's files and processes. Dropping it kills every process (and removes a temporary
/// working directory).
pub struct Fleet {
    /// Working directory (certs, configs, state, logs).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// The certificate directory.
    pub certs: PathBuf,
    /// Coordinator gRPC port.
    pub coordinator_port: u16,
    /// Coordinator metrics port.
    pub coordinator_metrics_port: u16,
    /// Heartbeat interval configured.
    pub heartbeat: Duration,
    /// The agents.
    pub agent_specs: Vec<AgentSpec>,
    /// Metrics port of each agent.
    pub agent_metrics_ports: BTreeMap<String, u16>,
    /// Extra TOML appended to an agent's config (its `[sql]` or `[lync]` section).
    agent_extra: BTreeMap<String, String>,
    /// Extra TOML appended to every coordinator's config (`[runbook]`).
    coordinator_extra: String,
    etcd: Option<EtcdMode>,
    /// Environment given to every coordinator and agent started from now on, and to every
    /// failbackctl call (the scenarios' test-only breaks, `FAILBACK_TEST_BREAK`).
    pub process_env: Vec<(String, String)>,
    /// lyncsim's `--delay` in every `[lync]` section written from now on: each Management
    /// Shell script then takes at least this long (slow steps for faults to land in).
    pub lync_delay: Duration,
    /// `[files] copy_bytes_per_second` in every agent config written from now on (slow copies
    /// for a fault to land in).
    pub copy_bytes_per_second: Option<u64>,
    coordinators: Vec<CoordinatorSlot>,
    agents: BTreeMap<String, Proc>,
}

impl Fleet {
    /// Writes certificates, topology and configs into `workdir` (a fresh temporary directory if
    /// `None`). Starts nothing.
    pub async fn create(
        workdir: Option<PathBuf>,
        agents: Vec<AgentSpec>,
        topology: &str,
        heartbeat: Duration,
    ) -> anyhow::Result<Self> {
        let (dir, tmp) = match workdir {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                (d, None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("failback-fleet-")
                    .tempdir()?;
                // FAILBACK_KEEP_FLEET=1 keeps the directory (logs, journals, statement logs)
                // for whoever debugs a failed test; it is printed on stderr.
                if std::env::var_os("FAILBACK_KEEP_FLEET").is_some() {
                    let d = t.keep();
                    eprintln!("fleet directory kept: {}", d.display());
                    (d, None)
                } else {
                    (t.path().to_path_buf(), Some(t))
                }
            }
        };
        let certs = dir.join("certs");
        let mut args: Vec<String> = vec![
            "certs".into(),
            "init".into(),
            "--dir".into(),
            certs.display().to_string(),
        ];
        args.extend([
            "--coordinator".into(),
            COORDINATOR.into(),
            COORDINATOR2.into(),
            "--operator".into(),
            OPERATOR.into(),
            "--approver".into(),
            APPROVER.into(),
        ]);
        for a in &agents {
            args.extend(["--agent".into(), a.id.clone()]);
        }
        let out = run_ctl(&dir, &args, &[]).await?;
        if out.code != 0 {
            anyhow::bail!("failbackctl certs init failed: {}", out.stderr);
        }
        std::fs::write(dir.join("topology.toml"), topology)?;
        let (coordinator_port, coordinator_metrics_port) = (free_port()?, free_port()?);
        let fleet = Fleet {
            dir,
            _tmp: tmp,
            certs,
            coordinator_port,
            coordinator_metrics_port,
            heartbeat,
            agent_metrics_ports: agents
                .iter()
                .map(|a| Ok((a.id.clone(), free_port()?)))
                .collect::<anyhow::Result<_>>()?,
            agent_specs: agents,
            agent_extra: BTreeMap::new(),
            coordinator_extra: String::new(),
            process_env: Vec::new(),
            lync_delay: Duration::ZERO,
            copy_bytes_per_second: None,
            etcd: None,
            coordinators: vec![CoordinatorSlot {
                name: COORDINATOR.into(),
                port: coordinator_port,
                metrics_port: coordinator_metrics_port,
                proc: None,
            }],
            agents: BTreeMap::new(),
        };
        fleet.write_coordinator_configs()?;
        std::fs::create_dir_all(fleet.files_root())?;
        for a in &fleet.agent_specs {
            fleet.write_agent_config(&a.id)?;
        }
        std::fs::create_dir_all(fleet.dir.join("logs"))?;
        Ok(fleet)
    }

    /// `name@127.0.0.1:port` of the first coordinator.
    pub fn endpoint(&self) -> String {
        format!("{COORDINATOR}@127.0.0.1:{}", self.coordinator_port)
    }

    /// Every coordinator's endpoint, comma-separated (what agents and failbackctl are given).
    pub fn endpoints(&self) -> String {
        self.coordinators
            .iter()
            .map(|c| format!("{}@127.0.0.1:{}", c.name, c.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Switches the fleet to two coordinators (`coord1`, `coord2`) sharing a leader lock and run
    /// store in etcd at `endpoints`; rewrites every config. Call before starting anything.
    pub fn use_etcd(
        &mut self,
        endpoints: Vec<String>,
        cluster: &str,
        lease_ttl: Duration,
    ) -> anyhow::Result<()> {
        self.etcd = Some(EtcdMode {
            endpoints,
            cluster: cluster.to_string(),
            lease_ttl,
            per_coordinator: std::collections::BTreeMap::new(),
        });
        if self.coordinators.len() < 2 {
            self.coordinators.push(CoordinatorSlot {
                name: COORDINATOR2.into(),
                port: free_port()?,
                metrics_port: free_port()?,
                proc: None,
            });
        }
        self.write_coordinator_configs()?;
        let ids: Vec<String> = self.agent_specs.iter().map(|a| a.id.clone()).collect();
        for id in ids {
            self.write_agent_config(&id)?;
        }
        Ok(())
    }

    /// Gives coordinator `name` its own way to etcd (`endpoints` instead of the cluster's, e.g.
    /// [`super::net_cut::Link`]s); after [`Fleet::use_etcd`], before the coordinator starts.
    pub fn route_etcd(&mut self, name: &str, endpoints: Vec<String>) -> anyhow::Result<()> {
        let e = self
            .etcd
            .as_mut()
            .context("route_etcd: the fleet is not on etcd")?;
        e.per_coordinator.insert(name.to_string(), endpoints);
        self.write_coordinator_configs()
    }

    /// Appends TOML (a `[runbook]` section) to every coordinator's config.
    pub fn configure_coordinators(&mut self, extra: &str) -> anyhow::Result<()> {
        self.coordinator_extra = extra.to_string();
        self.write_coordinator_configs()
    }

    /// Config file of a coordinator (`<name>.toml`).
    pub fn coordinator_config(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    fn write_coordinator_configs(&self) -> anyhow::Result<()> {
        for c in &self.coordinators {
            let mut text = format!(
                r#"listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{mport}"
topology = "topology.toml"
state_dir = "state/{state}"
heartbeat_interval = "{hb}ms"

[tls]
ca = "certs/ca.pem"
cert = "certs/{name}.pem"
key = "certs/{name}.key"
"#,
                port = c.port,
                mport = c.metrics_port,
                name = c.name,
                state = c.name,
                hb = self.heartbeat.as_millis()
            );
            if let Some(e) = &self.etcd {
                let eps = e
                    .per_coordinator
                    .get(&c.name)
                    .unwrap_or(&e.endpoints)
                    .iter()
                    .map(|x| format!("\"{x}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                text.push_str(&format!(
                    "\n[etcd]\nendpoints = [{eps}]\ncluster = \"{}\"\nlease_ttl = \"{}ms\"\n",
                    e.cluster,
                    e.lease_ttl.as_millis()
                ));
            }
            if !self.coordinator_extra.is_empty() {
                text.push_str(&format!("\n{}\n", self.coordinator_extra));
            }
            std::fs::write(self.coordinator_config(&c.name), text)?;
        }
        Ok(())
    }

    /// Path of an agent's config file.
    pub fn agent_config(&self, id: &str) -> PathBuf {
        self.dir.join("agents").join(id).join("agent.toml")
    }

    fn write_agent_config(&self, id: &str) -> anyhow::Result<()> {
        let path = self.agent_config(id);
        std::fs::create_dir_all(path.parent().context("agent dir")?)?;
        let certs = self.certs.display();
        let text = format!(
            r#"coordinators = [{ep}]
state_dir = "state"
metrics_listen = "127.0.0.1:{mport}"

[reconnect]
initial = "100ms"
max = "1s"

[files]
roots = ["{files}"]
{rate}
[tls]
ca = "{certs}/ca.pem"
cert = "{certs}/{id}.pem"
key = "{certs}/{id}.key"
"#,
            ep = self
                .endpoints()
                .split(',')
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", "),
            mport = self.agent_metrics_ports.get(id).copied().unwrap_or(0),
            files = self.files_root().display(),
            rate = self
                .copy_bytes_per_second
                .map(|r| format!("copy_bytes_per_second = {r}\n"))
                .unwrap_or_default()
        );
        let text = match self.agent_extra.get(id) {
            Some(extra) => format!("{text}\n{extra}\n"),
            None => text,
        };
        std::fs::write(path, text)?;
        Ok(())
    }

    /// The directory every lab agent may read and write through the files backend (it holds the
    /// lab's share and copy folders).
    pub fn files_root(&self) -> PathBuf {
        self.dir.join("files")
    }

    /// The lab's Central Management Store (shared by every lyncsim the agents run).
    pub fn cms_store(&self) -> PathBuf {
        self.dir.join("cms.json")
    }

    /// Creates the CMS with one pool: `dc1` servers active, `dc2` servers standing by.
    pub async fn init_cms(&self, pool: &str, dc1: &[&str], dc2: &[&str]) -> anyhow::Result<()> {
        let store = self.cms_store().display().to_string();
        let (d1, d2) = (dc1.join(","), dc2.join(","));
        let out = tokio::process::Command::new(bin("lyncsim")?)
            .args([
                "--store",
                &store,
                "init",
                "--pool",
                pool,
                "--servers",
                &d1,
                "--servers-dc2",
                &d2,
                "--product",
                "sfb2015",
            ])
            .output()
            .await?;
        if !out.status.success() {
            anyhow::bail!(
                "lyncsim init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The `[lync]` section that makes an agent run lyncsim (labelled with the agent id) exactly
    /// as it would run powershell.exe.
    pub fn lync_section(&self, id: &str) -> anyhow::Result<String> {
        let sim = bin("lyncsim")?;
        let delay = if self.lync_delay.is_zero() {
            String::new()
        } else {
            format!("\"--delay\", \"{}ms\", ", self.lync_delay.as_millis())
        };
        Ok(format!(
            "[lync]\nproduct = \"sfb2015\"\ncommand = [\"{}\", \"--store\", \"{}\", \"--host\", \"{id}\", {delay}\"-NoProfile\", \"-NonInteractive\", \"-ExecutionPolicy\", \"Bypass\", \"-Command\"]\ntimeout = \"30s\"\n",
            sim.display(),
            self.cms_store().display()
        ))
    }

    /// Appends `extra` (TOML sections) to an agent's config, rewriting it.
    pub fn configure_agent(&mut self, id: &str, extra: &str) -> anyhow::Result<()> {
        self.agent_extra.insert(id.to_string(), extra.to_string());
        self.write_agent_config(id)
    }

    /// Starts every coordinator and waits until each accepts connections.
    pub async fn start_coordinator(&mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self.coordinators.iter().map(|c| c.name.clone()).collect();
        for n in names {
            self.start_coordinator_named(&n).await?;
        }
        Ok(())
    }

    /// Starts (or restarts) one coordinator and waits until its port accepts connections.
    pub async fn start_coordinator_named(&mut self, name: &str) -> anyhow::Result<()> {
        let config = self.coordinator_config(name);
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let slot = self
            .coordinators
            .iter_mut()
            .find(|c| c.name == name)
            .with_context(|| format!("no coordinator '{name}' in this fleet"))?;
        let p = Proc::spawn(
            name,
            &bin("failback-coordinator")?,
            &["--config", &config.display().to_string()],
            &env_refs(&self.process_env),
            &log,
        )?;
        slot.proc = Some(p);
        let addr = format!("127.0.0.1:{}", slot.port);
        let ready = wait_for(
            &format!("coordinator {name} to listen"),
            Duration::from_secs(20),
            || {
                let addr = addr.clone();
                async move { tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ()) }
            },
        )
        .await;
        if let Err(e) = ready {
            let tail = self.coordinator_log_tail(name, 20);
            anyhow::bail!("{e}\ncoordinator log:\n{tail}");
        }
        Ok(())
    }

    /// The last `lines` of a coordinator's log.
    pub fn coordinator_log_tail(&self, name: &str, lines: usize) -> String {
        self.coordinators
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.proc.as_ref())
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    /// Kills every coordinator (SIGKILL).
    pub fn kill_coordinator(&mut self) {
        for c in &mut self.coordinators {
            if let Some(mut p) = c.proc.take() {
                p.kill();
            }
        }
    }

    /// Kills one coordinator with SIGKILL (`kill -9`).
    pub fn kill_coordinator_named(&mut self, name: &str) {
        if let Some(mut p) = self
            .coordinators
            .iter_mut()
            .find(|c| c.name == name)
            .and_then(|c| c.proc.take())
        {
            p.kill();
        }
    }

    /// The process id of a running coordinator (for SIGSTOP / SIGCONT faults).
    pub fn coordinator_pid(&self, name: &str) -> Option<u32> {
        self.coordinators
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.proc.as_ref())
            .and_then(Proc::pid)
    }

    /// The port a coordinator listens on.
    pub fn coordinator_port_of(&self, name: &str) -> Option<u16> {
        self.coordinators
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.port)
    }

    /// The names of the fleet's coordinators.
    pub fn coordinator_names(&self) -> Vec<String> {
        self.coordinators.iter().map(|c| c.name.clone()).collect()
    }

    /// The sum of metric `name` over the coordinators that are running and answer `/metrics`.
    pub async fn coordinators_metric(&self, name: &str) -> f64 {
        let mut sum = 0.0;
        for c in self.coordinators.iter().filter(|c| c.proc.is_some()) {
            sum += self.coordinator_metric(&c.name, name).await.unwrap_or(0.0);
        }
        sum
    }

    /// The sum of metric `name` on the running coordinator `coordinator`'s `/metrics` (None:
    /// not running, or it did not answer within 2 s).
    pub async fn coordinator_metric(&self, coordinator: &str, name: &str) -> Option<f64> {
        let c = self
            .coordinators
            .iter()
            .find(|c| c.name == coordinator && c.proc.is_some())?;
        let body = tokio::time::timeout(
            Duration::from_secs(2),
            super::http_get(c.metrics_port, "/metrics"),
        )
        .await
        .ok()?
        .ok()?;
        Some(super::metric_sum(&body, name))
    }

    /// An agent's state directory (its journal and persisted epoch).
    pub fn agent_state_dir(&self, id: &str) -> PathBuf {
        self.dir.join("agents").join(id).join("state")
    }

    /// Which coordinator leads now (`failbackctl leader`), once one does.
    pub async fn leader(&self, deadline: Duration) -> anyhow::Result<String> {
        wait_for("a coordinator to lead", deadline, || async {
            let out = self
                .ctl(OPERATOR, &["leader", "--output", "json"])
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            let id = v["leader_id"].as_str()?.to_string();
            (!id.is_empty()).then_some(id)
        })
        .await
    }

    /// The coordinator that leads once `first` no longer does (after a kill or a stop).
    pub async fn other_leader(&self, first: &str, deadline: Duration) -> anyhow::Result<String> {
        wait_for("the other coordinator to lead", deadline, || async {
            let l = self.leader(Duration::from_secs(5)).await.ok()?;
            (l != first).then_some(l)
        })
        .await
    }

    /// Starts (or restarts) one agent.
    pub fn start_agent(&mut self, id: &str) -> anyhow::Result<()> {
        let config = self.agent_config(id);
        let log = self.dir.join("logs").join(format!("agent-{id}.log"));
        let p = Proc::spawn(
            &format!("agent {id}"),
            &bin("failback-agent")?,
            &["--config", &config.display().to_string()],
            &env_refs(&self.process_env),
            &log,
        )?;
        self.agents.insert(id.to_string(), p);
        Ok(())
    }

    /// Starts every agent.
    pub fn start_agents(&mut self) -> anyhow::Result<()> {
        let ids: Vec<String> = self.agent_specs.iter().map(|a| a.id.clone()).collect();
        for id in ids {
            self.start_agent(&id)?;
        }
        Ok(())
    }

    /// Kills one agent with SIGKILL.
    pub fn kill_agent(&mut self, id: &str) {
        if let Some(mut p) = self.agents.remove(id) {
            p.kill();
        }
    }

    /// Runs failbackctl against this fleet as `identity`.
    pub async fn ctl(&self, identity: &str, args: &[&str]) -> anyhow::Result<CtlOutput> {
        self.ctl_target(identity).run(args).await
    }

    /// What failbackctl needs to reach this fleet as `identity`, owned, for a task that runs
    /// beside the test's own loop.
    pub fn ctl_target(&self, identity: &str) -> CtlTarget {
        CtlTarget {
            dir: self.dir.clone(),
            endpoints: self.endpoints(),
            certs: self.certs.display().to_string(),
            identity: identity.to_string(),
            env: self.process_env.clone(),
        }
    }

    /// `failbackctl agents --output json` as the operator, parsed.
    pub async fn agents_json(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.ctl(OPERATOR, &["agents", "--output", "json"]).await?;
        if out.code != 0 {
            anyhow::bail!("failbackctl agents failed ({}): {}", out.code, out.stderr);
        }
        Ok(serde_json::from_str(&out.stdout)?)
    }

    /// Waits until the connected flag of each agent in `ids` equals `connected`.
    pub async fn wait_connected(
        &self,
        ids: &[&str],
        connected: bool,
        deadline: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        wait_for(
            &format!("agents {ids:?} connected={connected}"),
            deadline,
            || async {
                let doc = self.agents_json().await.ok()?;
                let all = ids.iter().all(|id| {
                    doc["agents"]
                        .as_array()
                        .and_then(|a| a.iter().find(|x| x["id"] == *id))
                        .is_some_and(|x| x["connected"] == connected)
                });
                all.then_some(doc)
            },
        )
        .await
    }

    /// Process id of a running agent.
    pub fn agent_pid(&self, id: &str) -> Option<u32> {
        self.agents.get(id).and_then(Proc::pid)
    }

    /// Log file of an agent.
    pub fn agent_log(&self, id: &str) -> PathBuf {
        self.dir.join("logs").join(format!("agent-{id}.log"))
    }
}

/// A fleet as failbackctl reaches it (see [`Fleet::ctl_target`]).
#[derive(Debug, Clone)]
pub struct CtlTarget {
    dir: PathBuf,
    endpoints: String,
    certs: String,
    identity: String,
    /// The fleet's `process_env` (a scenario's test-only break reaches failbackctl too).
    env: Vec<(String, String)>,
}

impl CtlTarget {
    /// Runs failbackctl with `args`.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<CtlOutput> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut envs = vec![
            ("FAILBACK_COORDINATORS", self.endpoints.as_str()),
            ("FAILBACK_CERTS_DIR", self.certs.as_str()),
            ("FAILBACK_IDENTITY", self.identity.as_str()),
        ];
        envs.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        run_ctl(&self.dir, &args, &envs).await
    }
}

/// Runs failbackctl in `cwd` with `args` and extra environment.
pub async fn run_ctl(
    cwd: &Path,
    args: &[String],
    envs: &[(&str, &str)],
) -> anyhow::Result<CtlOutput> {
    let mut cmd = tokio::process::Command::new(bin("failbackctl")?);
    cmd.args(args).current_dir(cwd).env("RUST_LOG", "warn");
    for k in [
        "FAILBACK_COORDINATORS",
        "FAILBACK_CERTS_DIR",
        "FAILBACK_IDENTITY",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .context("failbackctl did not finish within 60 s")??;
    Ok(CtlOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
