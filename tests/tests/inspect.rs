//! `failbackctl inspect`: the operator's read-only view of a SQL agent (instance, databases,
//! mirroring, sessions from sqlsim) and of a Lync shell agent (pool state and servers from
//! lyncsim), through the real coordinator, agents and simulators. Nothing is changed.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_tests::harness::fleet::{Fleet, OPERATOR, three_agent_topology};
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};

const SQL: &str = "sql01.dc1.lab";
const SHELL: &str = "fe01.dc1.lab";
const POOL: &str = "pchat01.lab.local";

#[tokio::test(flavor = "multi_thread")]
async fn inspect_sql_and_lync_agents() {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    let mut sim = SqlSim::new(SQL, &fleet.dir.join("sql01")).unwrap();
    sim.start().await.unwrap();
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, SA_PASSWORD).unwrap();
    fleet.configure_agent(SQL, &sim.agent_section(&pw)).unwrap();
    fleet
        .init_cms(POOL, &["pc01.dc1.lab"], &["pc01.dc2.lab"])
        .await
        .unwrap();
    let section = fleet.lync_section(SHELL).unwrap();
    fleet.configure_agent(SHELL, &section).unwrap();
    fleet.start_coordinator().await.unwrap();
    fleet.start_agents().unwrap();
    fleet
        .wait_connected(&[SQL, SHELL], true, Duration::from_secs(30))
        .await
        .unwrap();
    let before = sim.statements().len();

    let out = fleet.ctl(OPERATOR, &["inspect", SQL]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("instance") && out.stdout.contains(SQL),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("mgc absent"), "{}", out.stdout);
    let out = fleet
        .ctl(OPERATOR, &["inspect", SQL, "--output", "json"])
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["agent"], SQL);
    assert_eq!(doc["datacenter"], "dc1");
    let items = doc["items"].as_array().unwrap();
    let instance = items
        .iter()
        .find(|i| i["operation"] == "describe_instance")
        .unwrap();
    assert_eq!(instance["result"]["server_name"], SQL);
    let dbs = items
        .iter()
        .find(|i| i["operation"] == "database_state")
        .unwrap();
    assert_eq!(dbs["result"][0]["name"], "mgc");
    assert_eq!(dbs["result"][0]["exists"], false);
    let ls = items
        .iter()
        .find(|i| i["operation"] == "log_shipping_status")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(ls["result"]["primary"], serde_json::Value::Null, "{ls:#}");
    assert_eq!(ls["result"]["secondary"], serde_json::Value::Null);
    // Read-only: every statement the inspection sent is a SELECT (or the monitor procedure).
    let sent = sim.statements();
    assert!(sent.len() > before);
    assert!(
        sent[before..].iter().all(|s| {
            let t = s.text.trim_start().to_ascii_uppercase();
            t.starts_with("SELECT") || t == "MASTER.DBO.SP_HELP_LOG_SHIPPING_MONITOR"
        }),
        "{:#?}",
        &sent[before..]
    );

    let out = fleet
        .ctl(OPERATOR, &["inspect", SHELL, "--output", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let items = doc["items"].as_array().unwrap();
    let pool = items
        .iter()
        .find(|i| i["operation"] == "pool_state")
        .unwrap();
    assert_eq!(pool["result"]["state"], "Normal", "{doc:#}");
    assert_eq!(pool["result"]["pool_fqdn"], POOL);
    let servers = items
        .iter()
        .find(|i| i["operation"] == "pool_servers")
        .unwrap();
    assert_eq!(
        servers["result"]["active_servers"],
        serde_json::json!(["pc01.dc1.lab"]),
        "{doc:#}"
    );
    let out = fleet.ctl(OPERATOR, &["inspect", SHELL]).await.unwrap();
    assert!(
        out.stdout.contains("pc01.dc1.lab (active)"),
        "{}",
        out.stdout
    );
}
