//! `coordinator.toml`: what a coordinator process needs to start. Relative paths are resolved
//! against the directory of the config file, so a config and its certificates can move together.
//! Durations are humantime strings ("1s", "500ms"). Example: `deploy/coordinator.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use failback_proto::endpoint::Endpoint;
use failback_proto::tls::TlsFiles;
use serde::Deserialize;

use crate::error::Error;

/// The coordinator's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// gRPC (AgentSession, Control, health, reflection) listen address.
    pub listen: SocketAddr,
    /// Where clients reach this coordinator, given as the leader hint (`name@host:port`). Default:
    /// the certificate name at the listen address.
    #[serde(default)]
    pub advertise: Option<Endpoint>,
    /// Prometheus `/metrics` listen address; none = no metrics endpoint.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The topology file.
    pub topology: PathBuf,
    /// Local state (standalone epoch counter and, later, the embedded run store).
    pub state_dir: PathBuf,
    /// How often agents must send a heartbeat; two missed intervals mark an agent disconnected.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// CA, certificate and key of this coordinator.
    pub tls: TlsFiles,
    /// etcd for leadership and the run store; absent = standalone (always leader, run store in
    /// `state_dir`), the default.
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
    /// `[runbook]`: how runbooks behave (all fields have defaults).
    #[serde(default)]
    pub runbook: RunbookConfig,
}

/// `[runbook]`: knobs of the runbook engine and the failback runbook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunbookConfig {
    /// Failback order of FB-6 and FB-7. `false` (default): the pool is set `Normal` first, then
    /// the primary data center's servers are activated, so no server is ever active while the pool
    /// still points at the backup databases (pchat-dr.md §9 item 3). `true`: the documented order
    /// (activate, then `Normal`).
    pub activate_before_normal: bool,
    /// FB-6's latency gate: a chat server whose median TCP connect time to the primary SQL
    /// endpoint is above this is not activated.
    #[serde(with = "humantime_serde")]
    pub latency_limit: Duration,
    /// FB-1: how long chat servers get to leave `mgc`/`mgccomp` on their own before the leftover
    /// sessions are killed.
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
    /// FB-1: how often the sessions are listed while draining.
    #[serde(with = "humantime_serde")]
    pub drain_poll: Duration,
    /// Timeout of one attempt of a short step (Lync cmdlets, mirroring, session draining).
    #[serde(with = "humantime_serde")]
    pub step_timeout: Duration,
    /// Timeout of one attempt of a step that moves a database (backup, restore, seed).
    #[serde(with = "humantime_serde")]
    pub data_step_timeout: Duration,
    /// Pause between attempts of a step after a retryable failure.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// FB-8: the failback backups (FB-3's file, FB-5's seeds) of how many failbacks of a pool
    /// stay on its share, this one included; those of older succeeded failbacks are deleted.
    /// 0 keeps every file. Default 3: two older restore points besides the
    /// current one, at the price of up to six full backups of `mgc` on the share.
    pub backup_retention_runs: u32,
}

impl Default for RunbookConfig {
    fn default() -> Self {
        RunbookConfig {
            activate_before_normal: false,
            latency_limit: Duration::from_millis(10),
            drain_grace: Duration::from_secs(60),
            drain_poll: Duration::from_secs(2),
            step_timeout: Duration::from_secs(15 * 60),
            data_step_timeout: Duration::from_secs(8 * 3600),
            retry_backoff: Duration::from_secs(5),
            backup_retention_runs: 3,
        }
    }
}

/// `[etcd]`: where the election and the run store live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://host:2379`; plain http for now, see
    /// `leader::etcd`).
    pub endpoints: Vec<String>,
    /// Installation name: every key lives under `/failback/<cluster>/`. Coordinators of one
    /// installation share it; two installations on one etcd must not.
    pub cluster: String,
    /// Lease TTL: a dead leader is replaced after at most this long; a leader that cannot renew
    /// stops acting after half of it. Whole seconds, 2s..=60s.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(5)
}

impl EtcdConfig {
    /// Checks endpoints, cluster name and TTL; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("etcd.endpoints is empty; list the etcd client URLs or remove [etcd] for standalone mode".into());
        }
        for e in &self.endpoints {
            if e.starts_with("https://") {
                return Err(format!(
                    "etcd.endpoints: '{e}': TLS to etcd is not supported yet; use http:// on a trusted network"
                ));
            }
            let rest = e.strip_prefix("http://").unwrap_or(e);
            if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
                return Err(format!(
                    "etcd.endpoints: '{e}' is not a client URL like http://10.0.0.5:2379"
                ));
            }
        }
        crate::store::keys::validate_cluster(&self.cluster)
            .map_err(|m| format!("etcd.cluster: {m}"))?;
        let ttl = self.lease_ttl;
        if ttl.subsec_nanos() != 0 || ttl < Duration::from_secs(2) || ttl > Duration::from_secs(60)
        {
            return Err(format!(
                "etcd.lease_ttl {ttl:?} must be whole seconds in 2s..=60s (etcd leases count seconds)"
            ));
        }
        Ok(())
    }
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(2)
}

impl CoordinatorConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let err = |message: String| Error::Config {
            path: path.display().to_string(),
            message,
        };
        let mut c: CoordinatorConfig =
            toml::from_str(text).map_err(|e| err(e.to_string().trim().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.tls = c.tls.relative_to(base);
        for p in [&mut c.topology, &mut c.state_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if c.heartbeat_interval < Duration::from_millis(100)
            || c.heartbeat_interval > Duration::from_secs(600)
        {
            return Err(err(format!(
                "heartbeat_interval {:?} is outside 100ms..=10m",
                c.heartbeat_interval
            )));
        }
        if let Some(etcd) = &c.etcd {
            etcd.validate().map_err(err)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_and_errors() {
        let text = r#"
listen = "127.0.0.1:7443"
topology = "topology.toml"
state_dir = "state"
[tls]
ca = "certs/ca.pem"
cert = "certs/c1.pem"
key = "/abs/c1.key"
"#;
        let c =
            CoordinatorConfig::parse(Path::new("/etc/failback/coordinator.toml"), text).unwrap();
        assert_eq!(c.topology, Path::new("/etc/failback/topology.toml"));
        assert_eq!(c.tls.key, Path::new("/abs/c1.key"));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
        let bad = text.replace("listen", "lisen");
        let e = CoordinatorConfig::parse(Path::new("c.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("lisen"), "{e}");
        assert!(c.etcd.is_none(), "standalone by default");
    }

    #[test]
    fn etcd_section() {
        let base = r#"
listen = "127.0.0.1:7443"
topology = "topology.toml"
state_dir = "state"
[tls]
ca = "ca.pem"
cert = "c1.pem"
key = "c1.key"
[etcd]
"#;
        let ok = format!(
            "{base}endpoints = [\"http://127.0.0.1:2379\", \"10.0.0.2:2379\"]\ncluster = \"prod-1\"\n"
        );
        let c = CoordinatorConfig::parse(Path::new("c.toml"), &ok).unwrap();
        let etcd = c.etcd.unwrap();
        assert_eq!(etcd.lease_ttl, Duration::from_secs(5));
        assert_eq!(etcd.cluster, "prod-1");
        for (bad, field) in [
            ("endpoints = []\ncluster = \"a\"", "etcd.endpoints"),
            (
                "endpoints = [\"http://h:1\"]\ncluster = \"a/b\"",
                "etcd.cluster",
            ),
            (
                "endpoints = [\"http://h:1\"]\ncluster = \"a\"\nlease_ttl = \"1500ms\"",
                "etcd.lease_ttl",
            ),
            ("endpoints = [\"https://h:1\"]\ncluster = \"a\"", "TLS"),
        ] {
            let e = CoordinatorConfig::parse(Path::new("c.toml"), &format!("{base}{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }
}
