//! An agent refused by a coordinator that names itself as the leader (a deposed coordinator
//! during quorum loss, issue #12) backs off instead of reconnecting in a tight loop. Real agent
//! process, fake coordinator over mTLS.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use failback_tests::harness::fake_coordinator::FakeCoordinator;
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};
use failback_tests::harness::wait_for;

const AGENT: &str = "sql01.dc1.lab";

#[tokio::test(flavor = "multi_thread")]
async fn a_self_naming_leader_hint_does_not_cause_a_reconnect_storm() {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    let me = fleet.endpoint();
    let fake =
        FakeCoordinator::start_refusing(&fleet.certs, COORDINATOR, fleet.coordinator_port, &me)
            .await
            .unwrap();
    fleet.start_agent(AGENT).unwrap();
    wait_for("the first refusal", Duration::from_secs(20), || async {
        (fake.refusals.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await
    .unwrap();
    let start = fake.refusals.load(Ordering::SeqCst);
    // Measured over a fixed window on purpose: the behaviour under test is how often the agent
    // comes back. The agent's backoff here is 100 ms doubling to 1 s, so 3 s allow about 6
    // attempts; following the self-naming hint without backoff made hundreds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = fake.refusals.load(Ordering::SeqCst) - start;
    assert!(
        n <= 20,
        "{n} sessions refused in 3 s: the agent does not back off"
    );
    assert!(n >= 1, "the agent stopped trying");
}

/// A coordinator that goes silent after its Welcome (hung: SIGSTOP keeps the TCP connection) is
/// left once its liveness timeout passes, and the agent opens a new session (issue #12: agents
/// stayed on a stopped leader until HTTP/2 keepalive gave up, 12-17 s). The agent advertises
/// the capability that makes a real coordinator send its heartbeats.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_coordinator_is_left_after_its_liveness_timeout() {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    let mut fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(AGENT).unwrap();
    let first = fake
        .session_of(AGENT, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        first.hello.capabilities.iter().any(|c| c == "liveness"),
        "{:?}",
        first.hello.capabilities
    );
    first.welcome_with_liveness(3, 1000).await.unwrap();
    // The agent keeps heartbeating but hears nothing: within a few seconds it gives up on this
    // session and dials again (the same fake, the only coordinator it knows).
    let second = fake.session_of(AGENT, Duration::from_secs(10)).await;
    assert!(second.is_ok(), "the agent stayed on a silent coordinator");
    drop(first);
}
