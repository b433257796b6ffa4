//! Connections to etcd: one client per member, used one member at a time and rotated on failure.
//!
//! Why not one client over all endpoints: etcd-client balances requests over its endpoints with
//! tonic's balancer, which keeps sending a share of requests (keep-alives included) to a member
//! that is down, so losing one member of three made a healthy leader miss its keep-alive budget
//! and step down (seen in `tests/tests/etcd_leadership.rs`). Like etcd's own Go client, we talk to
//! one member and move to the next when a call to it fails; the failed call's caller decides
//! whether to retry (never blindly for writes whose outcome is unknown).
//!
//! Transport: plain `http://` for now (etcd-client is built without TLS features). An etcd
//! reachable beyond loopback or a private segment needs the `tls-aws-lc` feature and client
//! certificates: a config addition (`[etcd] ca/cert/key`), not a change to the callers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::config::EtcdConfig;
use crate::error::Error;

/// A client of one member, with its position for [`Members::failed`].
pub struct Pick {
    /// Which member.
    pub index: usize,
    /// Its client.
    pub client: Client,
}

/// The etcd members, one lazily connected client each, and which one is in use.
#[derive(Clone)]
pub struct Members {
    clients: Arc<Vec<(String, Client)>>,
    current: Arc<AtomicUsize>,
}

impl Members {
    /// One client per endpoint of `config`. Connections are made on first use, so this fails
    /// only on malformed endpoints. No request timeout is set on the channels: `campaign` and
    /// `observe` legitimately block while another coordinator leads; unary calls that must be
    /// bounded are wrapped in `tokio::time::timeout` where they are made. `require_leader` makes
    /// a member cut off from its quorum refuse instead of answering stale.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, Error> {
        let mut clients = Vec::new();
        for endpoint in &config.endpoints {
            let options = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
                .with_require_leader(true);
            let client = Client::connect([endpoint.as_str()], Some(options))
                .await
                .map_err(|e| Error::Store(format!("etcd endpoint '{endpoint}': {e}")))?;
            clients.push((endpoint.clone(), client));
        }
        if clients.is_empty() {
            return Err(Error::Store("no etcd endpoints".into()));
        }
        Ok(Members {
            clients: Arc::new(clients),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The member in use.
    pub fn pick(&self) -> Pick {
        let index = self.current.load(Ordering::Acquire) % self.clients.len();
        Pick {
            index,
            client: self.clients[index].1.clone(),
        }
    }

    /// A call to member `index` failed: move on to the next member, unless someone already did.
    pub fn failed(&self, index: usize) {
        let next = (index + 1) % self.clients.len();
        if self
            .current
            .compare_exchange(index, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && self.clients.len() > 1
        {
            tracing::info!(
                from = %self.clients[index].0,
                to = %self.clients[next].0,
                "etcd member failed; switching"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotation_moves_once_per_failure_of_the_member_in_use() {
        // Connections are lazy: nothing listens on these ports and nothing needs to.
        let config = EtcdConfig {
            endpoints: vec!["http://127.0.0.1:9".into(), "http://127.0.0.1:10".into()],
            cluster: "t".into(),
            lease_ttl: Duration::from_secs(5),
        };
        let members = Members::connect(&config).await.unwrap();
        assert_eq!(members.pick().index, 0);
        members.failed(0);
        assert_eq!(members.pick().index, 1);
        // A second caller reporting the same (already replaced) member changes nothing.
        members.failed(0);
        assert_eq!(members.pick().index, 1);
        members.failed(1);
        assert_eq!(members.pick().index, 0, "wraps around");
    }
}
