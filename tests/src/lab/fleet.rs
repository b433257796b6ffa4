//! The lab's processes: certificates from `failbackctl certs init`, one coordinator
//! (standalone store) or two on a three-member etcd, one agent per simulated host, and
//! `failbackctl` calls against them.
//!
//! A variant of `harness::fleet::Fleet` rather than a use of it: the lab needs agent configs
//! that list two coordinators, a `[runbook]` tuned for a loopback drill, and agents that can be
//! killed and restarted per data center. Everything it starts is killed when it is dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::harness::etcd::{EtcdCluster, unique_cluster};
use crate::harness::fleet::{APPROVER, COORDINATOR, CtlOutput, OPERATOR, run_ctl};
use crate::harness::process::{Proc, bin};
use crate::harness::{free_port, wait_for};

/// The second coordinator's certificate name (etcd mode).
pub const COORDINATOR2: &str = "coord2";

/// Heartbeat of the lab: short, so a killed data center shows as disconnected within seconds.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// The runbook knobs of a loopback drill: chat servers drop their sessions at once, so FB-1's
/// drain needs no minute of grace; loopback latency is far below any real limit.
const RUNBOOK: &str = "\n[runbook]\ndrain_grace = \"2s\"\ndrain_poll = \"200ms\"\nretry_backoff = \"500ms\"\nlatency_limit = \"500ms\"\n";

struct Coordinator {
    name: &'static str,
    port: u16,
    config: PathBuf,
    proc: Option<Proc>,
}

/// The lab's certificates, configs and processes.
pub struct LabFleet {
    /// Working directory.
    pub dir: PathBuf,
    /// Certificate directory.
    pub certs: PathBuf,
    coordinators: Vec<Coordinator>,
    /// The etcd cluster (`--etcd`).
    pub etcd: Option<EtcdCluster>,
    agent_ids: Vec<String>,
    agent_extra: BTreeMap<String, String>,
    agents: BTreeMap<String, Proc>,
}

impl LabFleet {
    /// Writes certificates (one per agent id, the coordinators, an operator and an approver),
    /// the topology and the coordinator configs. With `etcd`, starts a three-member etcd.
    pub async fn create(
        dir: &Path,
        agent_ids: Vec<String>,
        topology: &str,
        etcd: bool,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let certs = dir.join("certs");
        let mut args: Vec<String> = vec![
            "certs".into(),
            "init".into(),
            "--dir".into(),
            certs.display().to_string(),
            "--coordinator".into(),
            COORDINATOR.into(),
            "--operator".into(),
            OPERATOR.into(),
            "--approver".into(),
            APPROVER.into(),
        ];
        if etcd {
            args.extend(["--coordinator".into(), COORDINATOR2.into()]);
        }
        for a in &agent_ids {
            args.extend(["--agent".into(), a.clone()]);
        }
        let out = run_ctl(dir, &args, &[]).await?;
        anyhow::ensure!(
            out.code == 0,
            "failbackctl certs init failed: {}",
            out.stderr.trim()
        );
        std::fs::write(dir.join("topology.toml"), topology)?;
        let etcd = if etcd {
            Some(
                EtcdCluster::start(3)
                    .await
                    .context("start a three-member etcd")?,
            )
        } else {
            None
        };
        let names: &[&'static str] = if etcd.is_some() {
            &[COORDINATOR, COORDINATOR2]
        } else {
            &[COORDINATOR]
        };
        let cluster = unique_cluster("failback-lab");
        let mut coordinators = Vec::new();
        for name in names {
            let port = free_port()?;
            let mut text = format!(
                "listen = \"127.0.0.1:{port}\"\ntopology = \"topology.toml\"\nstate_dir = \"state/{name}\"\nheartbeat_interval = \"{}ms\"\n\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/{name}.pem\"\nkey = \"certs/{name}.key\"\n",
                HEARTBEAT.as_millis()
            );
            if let Some(e) = &etcd {
                let endpoints: Vec<String> =
                    e.endpoints().iter().map(|u| format!("\"{u}\"")).collect();
                text.push_str(&format!(
                    "\n[etcd]\nendpoints = [{}]\ncluster = \"{cluster}\"\nlease_ttl = \"4s\"\n",
                    endpoints.join(", ")
                ));
            }
            text.push_str(RUNBOOK);
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, text)?;
            coordinators.push(Coordinator {
                name,
                port,
                config,
                proc: None,
            });
        }
        Ok(LabFleet {
            dir: dir.to_path_buf(),
            certs,
            coordinators,
            etcd,
            agent_ids,
            agent_extra: BTreeMap::new(),
            agents: BTreeMap::new(),
        })
    }

    /// Every coordinator endpoint, comma-separated (`FAILBACK_COORDINATORS`).
    pub fn endpoints(&self) -> String {
        self.coordinators
            .iter()
            .map(|c| format!("{}@127.0.0.1:{}", c.name, c.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The directory every agent may read and write through the files backend.
    pub fn files_root(&self) -> PathBuf {
        self.dir.join("files")
    }

    /// The shared Central Management Store file.
    pub fn cms_store(&self) -> PathBuf {
        self.dir.join("cms.json")
    }

    /// The `[lync]` section that makes an agent run lyncsim as it would run powershell.exe.
    pub fn lync_section(&self, id: &str) -> anyhow::Result<String> {
        Ok(format!(
            "[lync]\nproduct = \"sfb2015\"\ncommand = [\"{}\", \"--store\", \"{}\", \"--host\", \"{id}\", \"-NoProfile\", \"-NonInteractive\", \"-ExecutionPolicy\", \"Bypass\", \"-Command\"]\ntimeout = \"30s\"\n",
            bin("lyncsim")?.display(),
            self.cms_store().display()
        ))
    }

    /// Sets the extra sections (`[sql]`, `[lync]`) of an agent's config.
    pub fn configure_agent(&mut self, id: &str, extra: String) {
        self.agent_extra.insert(id.to_string(), extra);
    }

    fn write_agent_config(&self, id: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join("agents").join(id);
        std::fs::create_dir_all(&dir)?;
        let coordinators: Vec<String> = self
            .endpoints()
            .split(',')
            .map(|e| format!("\"{e}\""))
            .collect();
        let certs = self.certs.display();
        let mut text = format!(
            "coordinators = [{}]\nstate_dir = \"state\"\n\n[reconnect]\ninitial = \"100ms\"\nmax = \"1s\"\n\n[files]\nroots = [\"{}\"]\n\n[tls]\nca = \"{certs}/ca.pem\"\ncert = \"{certs}/{id}.pem\"\nkey = \"{certs}/{id}.key\"\n",
            coordinators.join(", "),
            self.files_root().display()
        );
        if let Some(extra) = self.agent_extra.get(id) {
            text.push('\n');
            text.push_str(extra);
        }
        let path = dir.join("agent.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Starts the coordinators and waits until each listens.
    pub async fn start_coordinators(&mut self) -> anyhow::Result<()> {
        for c in &mut self.coordinators {
            let log = self.dir.join("logs").join(format!("{}.log", c.name));
            let p = Proc::spawn(
                c.name,
                &bin("failback-coordinator")?,
                &["--config", &c.config.display().to_string()],
                &[],
                &log,
            )?;
            c.proc = Some(p);
            let addr = format!("127.0.0.1:{}", c.port);
            let ready = wait_for("the coordinator to listen", Duration::from_secs(20), || {
                let addr = addr.clone();
                async move { tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ()) }
            })
            .await;
            if let Err(e) = ready {
                let tail = c.proc.as_ref().map(|p| p.log_tail(20)).unwrap_or_default();
                anyhow::bail!("{e}\n{} log:\n{tail}", c.name);
            }
        }
        Ok(())
    }

    /// Starts (or restarts) one agent on a freshly written config.
    pub fn start_agent(&mut self, id: &str) -> anyhow::Result<()> {
        let config = self.write_agent_config(id)?;
        let log = self.dir.join("logs").join(format!("agent-{id}.log"));
        let p = Proc::spawn(
            &format!("agent {id}"),
            &bin("failback-agent")?,
            &["--config", &config.display().to_string()],
            &[],
            &log,
        )?;
        self.agents.insert(id.to_string(), p);
        Ok(())
    }

    /// Kills one agent (SIGKILL, as losing its host would).
    pub fn kill_agent(&mut self, id: &str) {
        if let Some(mut p) = self.agents.remove(id) {
            p.kill();
        }
    }

    /// Every agent id.
    pub fn agent_ids(&self) -> &[String] {
        &self.agent_ids
    }

    /// Runs failbackctl as `identity` against every coordinator.
    pub async fn ctl(&self, identity: &str, args: &[&str]) -> anyhow::Result<CtlOutput> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let certs = self.certs.display().to_string();
        run_ctl(
            &self.dir,
            &args,
            &[
                ("FAILBACK_COORDINATORS", &self.endpoints()),
                ("FAILBACK_CERTS_DIR", &certs),
                ("FAILBACK_IDENTITY", identity),
            ],
        )
        .await
    }

    /// Waits until a coordinator answers as leader; returns `failbackctl leader --output json`.
    pub async fn wait_leader(&self) -> anyhow::Result<serde_json::Value> {
        wait_for("a coordinator to lead", Duration::from_secs(30), || async {
            let out = self
                .ctl(OPERATOR, &["leader", "--output", "json"])
                .await
                .ok()?;
            let doc: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            doc["leader_id"]
                .as_str()
                .is_some_and(|l| !l.is_empty())
                .then_some(doc)
        })
        .await
    }

    /// Waits until each agent in `ids` has the `connected` flag in `failbackctl agents`.
    pub async fn wait_connected(
        &self,
        ids: &[String],
        connected: bool,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        wait_for(
            &format!("agents {ids:?} connected={connected}"),
            deadline,
            || async {
                let out = self
                    .ctl(OPERATOR, &["agents", "--output", "json"])
                    .await
                    .ok()?;
                let doc: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
                let list = doc["agents"].as_array()?;
                ids.iter()
                    .all(|id| {
                        list.iter()
                            .find(|x| x["id"] == id.as_str())
                            .is_some_and(|x| x["connected"] == connected)
                    })
                    .then_some(())
            },
        )
        .await
    }
}
