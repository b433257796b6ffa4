//! The real agent process against a scripted coordinator: epoch fencing (7 accepted, then 6
//! refused naming both, also after an agent restart) and the journal (a repeated op id is answered
//! from the journal, also after an agent restart, never executed twice).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_proto::pb;
use failback_tests::harness::fake_coordinator::FakeCoordinator;
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};

const AGENT: &str = "sql01.dc1.lab";
const T: Duration = Duration::from_secs(20);

fn error_of(r: &pb::OperationResult) -> Option<&pb::OperationError> {
    match &r.outcome {
        Some(pb::operation_result::Outcome::Error(e)) => Some(e),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn epochs_are_fenced_and_repeated_ops_replayed_across_restarts() {
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    let mut fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(AGENT).unwrap();

    let mut s = fake.next_session(T).await.unwrap();
    assert_eq!(s.hello.highest_epoch_seen, 0);
    assert_eq!(s.hello.protocol_version, failback_proto::PROTOCOL_VERSION);
    s.welcome(7).await.unwrap();
    s.ping("t/pool/ping/1", 7).await.unwrap();
    let r = s.result("t/pool/ping/1", T).await.unwrap();
    assert!(error_of(&r).is_none(), "{r:?}");
    assert!(!r.replayed);

    s.ping("t/pool/ping/2", 6).await.unwrap();
    let r = s.result("t/pool/ping/2", T).await.unwrap();
    let e = error_of(&r).expect("epoch 6 must be refused");
    assert_eq!(e.kind(), pb::ErrorKind::StaleEpoch);
    assert!(
        e.message.contains("epoch 6") && e.message.contains("epoch 7"),
        "{}",
        e.message
    );

    s.ping("t/pool/ping/1", 7).await.unwrap();
    assert!(
        s.result("t/pool/ping/1", T).await.unwrap().replayed,
        "same op id answered from the journal"
    );

    // Restart the agent: it remembers epoch 7 and its journal.
    fleet.kill_agent(AGENT);
    drop(s);
    fleet.start_agent(AGENT).unwrap();
    let mut s = fake.next_session(T).await.unwrap();
    assert_eq!(
        s.hello.highest_epoch_seen, 7,
        "the epoch survives a restart"
    );

    // A coordinator at epoch 6 is refused at Welcome: the agent drops the session.
    s.welcome(6).await.unwrap();
    s.closed(T).await.unwrap();
    let mut s = fake.next_session(T).await.unwrap();
    s.welcome(7).await.unwrap();
    s.ping("t/pool/ping/3", 6).await.unwrap();
    let r = s.result("t/pool/ping/3", T).await.unwrap();
    assert_eq!(
        error_of(&r).map(pb::OperationError::kind),
        Some(pb::ErrorKind::StaleEpoch)
    );
    s.ping("t/pool/ping/1", 7).await.unwrap();
    let r = s.result("t/pool/ping/1", T).await.unwrap();
    assert!(
        r.replayed && error_of(&r).is_none(),
        "replayed from the journal after restart: {r:?}"
    );

    // The journal on disk shows exactly one start of op 1.
    let journal = std::fs::read_to_string(
        fleet
            .agent_config(AGENT)
            .parent()
            .unwrap()
            .join("state/journal.jsonl"),
    )
    .unwrap();
    let starts = journal
        .lines()
        .filter(|l| l.contains("\"started\"") && l.contains("t/pool/ping/1"))
        .count();
    assert_eq!(starts, 1, "{journal}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failbackctl_ping_goes_through_the_session() {
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    fleet.start_coordinator().await.unwrap();
    fleet.start_agent(AGENT).unwrap();
    fleet.wait_connected(&[AGENT], true, T).await.unwrap();
    let out = fleet.ctl("operator1", &["ping", AGENT]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("pong in") && out.stdout.contains("epoch 1"),
        "{}",
        out.stdout
    );
    // Not connected: a clear refusal.
    let out = fleet
        .ctl("operator1", &["ping", "fe01.dc1.lab"])
        .await
        .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("agent 'fe01.dc1.lab' is not connected"),
        "{}",
        out.stderr
    );
    let out = fleet
        .ctl("operator1", &["ping", "nope;drop"])
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("agent id"), "{}", out.stderr);
}
