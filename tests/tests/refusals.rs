//! Negative tests of identity and protocol: each refusal happens, and the error the client sees
//! says why. Real coordinator process, real mTLS; the raw-session cases use the proto crate's
//! client the way the agent does.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_proto::endpoint::Endpoint;
use failback_proto::identity::Role;
use failback_proto::pb;
use failback_proto::pb::agent_session_client::AgentSessionClient;
use failback_proto::tls::{self, TlsFiles, TlsMaterial};
use failback_tests::harness::fleet::{Fleet, run_ctl, three_agent_topology};
use tokio_stream::StreamExt;

async fn fleet() -> Fleet {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    fleet.start_coordinator().await.unwrap();
    fleet
}

/// Opens an agent session presenting `name`'s certificate from `dir`, sending `hello`.
async fn open_session(
    fleet: &Fleet,
    dir: &std::path::Path,
    name: &str,
    hello: pb::Hello,
) -> Result<pb::CoordinatorMessage, tonic::Status> {
    let material = TlsMaterial::load(&TlsFiles::in_dir(dir, name)).unwrap();
    let config = material.client_config(Role::Coordinator).unwrap();
    let ep: Endpoint = fleet.endpoint().parse().unwrap();
    let channel = tls::connect(&ep, config, Duration::from_secs(5))
        .await
        .unwrap();
    let mut client = AgentSessionClient::new(channel);
    let first = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(hello)),
    };
    let outbound = tokio_stream::iter(vec![first]).chain(tokio_stream::pending());
    let mut inbound = client.open(outbound).await?.into_inner();
    inbound
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("stream ended"))
}

fn hello(version: u32) -> pb::Hello {
    pb::Hello {
        protocol_version: version,
        agent_version: "0.1.0".into(),
        capabilities: vec!["sql".into()],
        highest_epoch_seen: 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_session_works_with_an_agent_certificate() {
    let fleet = fleet().await;
    let m = open_session(
        &fleet,
        &fleet.certs,
        "sql01.dc1.lab",
        hello(failback_proto::PROTOCOL_VERSION),
    )
    .await
    .unwrap();
    match m.body {
        Some(pb::coordinator_message::Body::Welcome(w)) => {
            assert_eq!(w.agent_id, "sql01.dc1.lab");
            assert_eq!(w.datacenter, "dc1");
            assert!(w.epoch >= 1);
        }
        other => panic!("expected Welcome, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_certificate_cannot_open_an_agent_session() {
    let fleet = fleet().await;
    let e = open_session(
        &fleet,
        &fleet.certs,
        "operator1",
        hello(failback_proto::PROTOCOL_VERSION),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("'operator1' has role(s) operator")
            && e.message().contains("needs agent"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_version_mismatch_is_refused_naming_both_versions() {
    let fleet = fleet().await;
    let e = open_session(&fleet, &fleet.certs, "sql01.dc2.lab", hello(999))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let ours = failback_proto::PROTOCOL_VERSION.to_string();
    assert!(
        e.message().contains("version 999") && e.message().contains(&format!("version {ours}")),
        "{}",
        e.message()
    );
    let e = open_session(&fleet, &fleet.certs, "sql01.dc2.lab", hello(0))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::FailedPrecondition,
        "unset version is refused too: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_certificate_cannot_call_control() {
    let fleet = fleet().await;
    let out = fleet.ctl("sql01.dc1.lab", &["agents"]).await.unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("'sql01.dc1.lab' has role(s) agent")
            && out.stderr.contains("operator or approver"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_from_another_ca_is_refused_at_the_tls_layer() {
    let fleet = fleet().await;
    // A second installation with its own CA.
    let other = fleet.dir.join("other-ca");
    let out = run_ctl(
        &fleet.dir,
        &[
            "certs".into(),
            "init".into(),
            "--dir".into(),
            other.display().to_string(),
            "--operator".into(),
            "mallory".into(),
        ],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    // Mallory trusts our CA (so she can reach the server) but her certificate is from hers.
    let mixed = fleet.dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(fleet.certs.join("ca.pem"), mixed.join("ca.pem")).unwrap();
    for f in ["mallory.pem", "mallory.key"] {
        std::fs::copy(other.join(f), mixed.join(f)).unwrap();
    }
    let ep = fleet.endpoint();
    let env = [
        ("FAILBACK_COORDINATORS", ep.as_str()),
        ("FAILBACK_CERTS_DIR", mixed.to_str().unwrap()),
        ("FAILBACK_IDENTITY", "mallory"),
    ];
    let out = run_ctl(&fleet.dir, &["agents".into()], &env).await.unwrap();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("not issued by the installation's CA"),
        "{}",
        out.stderr
    );

    // With her own CA only, she does not even trust the coordinator.
    let env = [
        ("FAILBACK_COORDINATORS", ep.as_str()),
        ("FAILBACK_CERTS_DIR", other.to_str().unwrap()),
        ("FAILBACK_IDENTITY", "mallory"),
    ];
    let out = run_ctl(&fleet.dir, &["agents".into()], &env).await.unwrap();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("coordinator's certificate was not issued by our CA"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_certificate_is_refused() {
    let fleet = fleet().await;
    let out = fleet
        .ctl(
            "operator1",
            &[
                "certs",
                "add",
                "--dir",
                fleet.certs.to_str().unwrap(),
                "--operator",
                "old-op",
                "--not-before",
                "2020-01-01T00:00:00Z",
                "--not-after",
                "2020-02-01T00:00:00Z",
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let out = fleet.ctl("old-op", &["agents"]).await.unwrap();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("expired"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_with_an_operator_certificate_refuses_to_start() {
    let fleet = fleet().await;
    let config = fleet.agent_config("sql01.dc1.lab");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("sql01.dc1.lab.pem", "operator1.pem")
        .replace("sql01.dc1.lab.key", "operator1.key");
    std::fs::write(&config, text).unwrap();
    let out = tokio::process::Command::new(
        failback_tests::harness::process::bin("failback-agent").unwrap(),
    )
    .args(["--config", config.to_str().unwrap()])
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("an agent needs the agent role"), "{err}");
}
