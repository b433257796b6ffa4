//! The example files in deploy/ are parsed with the real loaders, so they never go stale.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use failback_coordinator::config::CoordinatorConfig;
use failback_coordinator::topology::Topology;

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

#[test]
fn example_coordinator_config_parses() {
    let c = CoordinatorConfig::load(&deploy("coordinator.toml")).unwrap();
    assert_eq!(c.listen.port(), 7443);
    assert!(c.topology.ends_with("topology.toml"));
    assert_eq!(c.heartbeat_interval, std::time::Duration::from_secs(2));
}

#[test]
fn example_etcd_coordinator_config_parses() {
    let standalone = CoordinatorConfig::load(&deploy("coordinator.toml")).unwrap();
    assert!(
        standalone.etcd.is_none(),
        "the default example is standalone"
    );
    let c = CoordinatorConfig::load(&deploy("coordinator-etcd.toml")).unwrap();
    let etcd = c.etcd.unwrap();
    assert_eq!(etcd.endpoints.len(), 3);
    assert_eq!(etcd.cluster, "contoso-pchat");
    assert_eq!(etcd.lease_ttl, std::time::Duration::from_secs(5));
}

#[test]
fn example_topology_is_valid() {
    let t = Topology::load(&deploy("topology.toml")).unwrap();
    assert_eq!(t.pools.len(), 1);
    let pool = &t.pools[0];
    assert_eq!(pool.fqdn, "pchat01.contoso.com");
    assert_eq!(pool.sql.len(), 4);
    let id = failback_proto::model::AgentId::new("sql01.dc2.contoso.com").unwrap();
    assert_eq!(
        t.roles_of(&id),
        vec!["sql-backup:pchat01.contoso.com".to_string()]
    );
    let pc = failback_proto::model::AgentId::new("pc01.dc1.contoso.com").unwrap();
    assert_eq!(
        t.roles_of(&pc),
        vec!["chat-server:pchat01.contoso.com".to_string()]
    );
}
