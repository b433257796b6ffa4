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
    }
}
