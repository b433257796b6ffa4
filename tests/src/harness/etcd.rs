//! A real etcd for tests: 1 or 3 members of Debian's `etcd` binary (3.4) on free loopback ports
//! with data directories in a temporary directory, killed on drop, readiness polled with a
//! deadline. Single members can be killed (SIGKILL) and restarted on their data directory, to
//! test what leadership does when etcd loses a member.
//!
//! The binary is `$FAILBACK_ETCD_BIN` or `etcd` on `PATH` (`deploy/dev/setup.sh` installs
//! `etcd-server`). Tests that need etcd call [`EtcdCluster::start_or_skip`]: without a binary
//! they say so on stderr and pass, except under `CI` where a missing etcd is a failure (CI must
//! never silently stop testing the etcd code).
//!
//! Keys of different tests never collide: each test uses its own cluster name
//! ([`unique_cluster`]), i.e. its own `/failback/<cluster>/` prefix, whether or not it shares
//! an etcd.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, ConnectOptions};

use super::process::Proc;
use super::{free_port, wait_for};

/// How long a member (or a cluster) may take to serve.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The etcd binary, if one is installed.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FAILBACK_ETCD_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// A cluster name unique to this test run (`<test>-<pid>-<random>`): its keys are under
/// `/failback/<name>/` and nobody else's are.
pub fn unique_cluster(test: &str) -> String {
    let clean: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    format!(
        "{clean}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running etcd cluster. Dropping it kills every member, then removes the data.
pub struct EtcdCluster {
    binary: PathBuf,
    initial_cluster: String,
    token: String,
    // Members before the directory: fields drop in order, processes die before their data.
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members (1 or 3) and waits until every one serves with a raft leader.
    pub async fn start(size: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            size == 1 || size == 3,
            "an etcd test cluster has 1 or 3 members"
        );
        let binary = etcd_binary().context(
            "etcd not found: install etcd-server (deploy/dev/setup.sh) or set FAILBACK_ETCD_BIN",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("failback-etcd-")
            .tempdir()?;
        let mut members = Vec::new();
        for i in 0..size {
            let name = format!("m{i}");
            members.push(Member {
                data_dir: dir.path().join(&name),
                log: dir.path().join(format!("{name}.log")),
                name,
                client_port: free_port()?,
                peer_port: free_port()?,
                proc: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("failback-test-{}", rand::random::<u32>());
        let mut cluster = EtcdCluster {
            binary,
            initial_cluster,
            token,
            members,
            dir,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_ready(i).await?;
        }
        Ok(cluster)
    }

    /// [`EtcdCluster::start`], or `None` with a message on stderr when no etcd binary is
    /// installed and `CI` is not set. Panics on any other failure.
    pub async fn start_or_skip(size: usize, test: &str) -> Option<Self> {
        if etcd_binary().is_none() && std::env::var_os("CI").is_none() {
            eprintln!(
                "SKIPPED {test}: no etcd binary (install etcd-server or set FAILBACK_ETCD_BIN)"
            );
            return None;
        }
        match Self::start(size).await {
            Ok(c) => Some(c),
            Err(e) => panic!("{test}: cannot start etcd: {e:#}"),
        }
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let args = [
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--listen-client-urls={}", m.client_url()),
            format!("--advertise-client-urls={}", m.client_url()),
            format!("--listen-peer-urls={}", m.peer_url()),
            format!("--initial-advertise-peer-urls={}", m.peer_url()),
            format!("--initial-cluster={}", self.initial_cluster),
            format!("--initial-cluster-token={}", self.token),
            "--initial-cluster-state=new".to_string(),
            "--logger=zap".to_string(),
            "--log-outputs=stderr".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = Proc::spawn(
            &format!("etcd {}", m.name),
            &self.binary,
            &args,
            &[],
            &m.log,
        )?;
        self.members[i].proc = Some(proc);
        Ok(())
    }

    /// Waits until member `i` answers a linearizable read (so it has a raft leader).
    pub async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let url = self.members[i].client_url();
        let ready = wait_for(
            &format!("etcd member {i} ({url}) to serve"),
            READY_DEADLINE,
            || {
                let url = url.clone();
                async move {
                    let options = ConnectOptions::new()
                        .with_connect_timeout(Duration::from_secs(1))
                        .with_timeout(Duration::from_secs(2))
                        .with_require_leader(true);
                    let mut c = Client::connect([url], Some(options)).await.ok()?;
                    c.get("/failback-test-readiness", None)
                        .await
                        .ok()
                        .map(|_| ())
                }
            },
        )
        .await;
        ready.map_err(|e| anyhow::anyhow!("{e}\nlog:\n{}", self.log_tail(i, 20)))
    }

    /// Client URLs of every member (killed ones included: clients must cope).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// A client over every member.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_require_leader(true);
        Client::connect(self.endpoints(), Some(options))
            .await
            .context("connect to the test etcd")
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill();
        }
    }

    /// Restarts a killed member on its data directory and waits until it serves.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready(i).await
    }

    /// Starts a killed member again without waiting (start several, then wait for each: a
    /// lone member of a lost majority never becomes ready).
    pub fn start_member(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// The last `lines` of member `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Where the members' data and logs are.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
