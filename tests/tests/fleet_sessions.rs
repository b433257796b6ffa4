//! Acceptance of the foundation: real coordinator and agent processes over mTLS on loopback.
//! Agents appear connected with their topology data centers; an agent killed shows disconnected
//! quickly, a frozen one (SIGSTOP: no TCP reset, like a host that lost power) within the
//! heartbeat-silence limit; restarted or thawed agents come back.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use failback_tests::harness::fleet::{Fleet, three_agent_topology};
use failback_tests::harness::http_get;

const HB: Duration = Duration::from_millis(1000);

fn agent<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("agent {id} missing from {doc}"))
}

async fn started_fleet() -> Fleet {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, HB).await.unwrap();
    fleet.start_coordinator().await.unwrap();
    fleet.start_agents().unwrap();
    fleet
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_connect_disconnect_and_return() {
    let mut fleet = started_fleet().await;
    let ids = ["sql01.dc1.lab", "fe01.dc1.lab", "sql01.dc2.lab"];
    let doc = fleet
        .wait_connected(&ids, true, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(doc["agents"].as_array().unwrap().len(), 3);
    assert_eq!(agent(&doc, "sql01.dc1.lab")["datacenter"], "dc1");
    assert_eq!(agent(&doc, "fe01.dc1.lab")["datacenter"], "dc1");
    assert_eq!(agent(&doc, "sql01.dc2.lab")["datacenter"], "dc2");
    assert_eq!(
        agent(&doc, "sql01.dc2.lab")["roles"],
        serde_json::json!([
            "sql-backup:pchat01.lab.local",
            "lync-shell:pchat01.lab.local"
        ])
    );
    assert_eq!(
        agent(&doc, "sql01.dc1.lab")["version"],
        env!("CARGO_PKG_VERSION")
    );

    // Killed: the TCP connection closes, so the coordinator knows at once; the bound is two intervals.
    let killed_at = Instant::now();
    fleet.kill_agent("sql01.dc1.lab");
    let doc = fleet
        .wait_connected(&["sql01.dc1.lab"], false, HB * 2)
        .await
        .unwrap();
    let took = killed_at.elapsed();
    assert!(took <= HB * 2, "disconnect seen after {took:?}");
    assert_eq!(
        agent(&doc, "fe01.dc1.lab")["connected"],
        true,
        "the others stay connected"
    );
    assert!(
        agent(&doc, "sql01.dc1.lab")["last_heartbeat_unix_ms"]
            .as_u64()
            .is_some(),
        "last heartbeat is kept"
    );

    fleet.start_agent("sql01.dc1.lab").unwrap();
    fleet
        .wait_connected(&["sql01.dc1.lab"], true, Duration::from_secs(20))
        .await
        .unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn frozen_agent_is_disconnected_by_heartbeat_silence() {
    let fleet = started_fleet().await;
    let ids = ["sql01.dc1.lab", "fe01.dc1.lab", "sql01.dc2.lab"];
    fleet
        .wait_connected(&ids, true, Duration::from_secs(30))
        .await
        .unwrap();
    let pid = fleet.agent_pid("fe01.dc1.lab").unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let stopped_at = Instant::now();
    // Silence of more than two intervals after the last heartbeat (sent at most one interval
    // before the freeze), checked every quarter interval.
    let r = fleet.wait_connected(&["fe01.dc1.lab"], false, HB * 4).await;
    let took = stopped_at.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    r.unwrap();
    assert!(
        took >= HB,
        "a frozen agent must not be dropped before it missed a heartbeat ({took:?})"
    );
    assert!(took <= HB * 3 + HB / 2, "took {took:?}");
    // Thawed, it finds its session closed and reconnects.
    fleet
        .wait_connected(&["fe01.dc1.lab"], true, Duration::from_secs(20))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_counts_connected_agents() {
    let fleet = started_fleet().await;
    fleet
        .wait_connected(
            &["sql01.dc1.lab", "fe01.dc1.lab", "sql01.dc2.lab"],
            true,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let body = failback_tests::harness::wait_for(
        "metrics to show 3 agents",
        Duration::from_secs(10),
        || async {
            let body = http_get(fleet.coordinator_metrics_port, "/metrics")
                .await
                .ok()?;
            body.lines()
                .any(|l| l == "failback_connected_agents 3")
                .then_some(body)
        },
    )
    .await
    .unwrap();
    assert!(body.contains("failback_agent_heartbeats_total"), "{body}");
    // The coordinator counts a session once attached; the agent counts it once it has accepted
    // the Welcome, a moment later on a loaded machine: poll.
    let port = fleet.agent_metrics_ports["sql01.dc2.lab"];
    let body = failback_tests::harness::wait_for(
        "the agent's metrics to show its session",
        Duration::from_secs(10),
        || async {
            let body = http_get(port, "/metrics").await.ok()?;
            body.lines()
                .any(|l| l == "failback_agent_connected 1")
                .then_some(body)
        },
    )
    .await
    .unwrap();
    assert!(
        body.lines()
            .any(|l| l.starts_with("failback_agent_epoch ") && l != "failback_agent_epoch 0"),
        "{body}"
    );
    let missing = http_get(port, "/nope").await.unwrap();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}
