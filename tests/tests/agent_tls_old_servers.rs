//! The agent's SQL client (its real `SqlBackend`, over TCP to a sqlsim process) against the two
//! TLS problems of old Lync back ends (issue #11 item 9): an unpatched SQL Server 2012/2014 that
//! speaks only TLS 1.0 (sqlsim `--tls-max-version 1.0`, each way such a server answers a TLS 1.2
//! ClientHello), and SQL Server's self-signed certificate. Each failure must name the instance,
//! the cause and the fix, and only the ambiguous one (a reset, which a restarting server also
//! causes) may be retried; `trust_server_certificate = true` reaches the self-signed server.
//! One test runs the agent process behind a fake coordinator, to see the same error arrive on the
//! wire as a non-retryable operation error. This Linux build uses rustls, so "TLS 1.0 only" always fails here; the Windows build's
//! SChannel path is not exercised by these tests.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use std::time::Duration;

use failback_agent::error::Error;
use failback_agent::exec::sql::SqlBackend;
use failback_agent::exec::sql::config::SqlConfig;
use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;
use failback_tests::harness::fake_coordinator::FakeCoordinator;
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};
use failback_tests::harness::ops::error;
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim, tls_material};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A started sim with `cert`/`key` and extra flags, in `dir`.
async fn sim(dir: &Path, cert: PathBuf, key: PathBuf, args: &[&str]) -> SqlSim {
    let mut s = SqlSim::new("LYNCBE01", &dir.join("sim"))
        .unwrap()
        .with_tls(cert, key)
        .with_args(args);
    s.start().await.unwrap();
    s
}

/// The agent's backend for `sim`, with `extra` lines in its `[sql]` section.
fn backend(dir: &Path, sim: &SqlSim, extra: &str) -> SqlBackend {
    let pw = dir.join("sql-password");
    std::fs::write(&pw, format!("{SA_PASSWORD}\n")).unwrap();
    let toml = format!(
        "host = \"127.0.0.1\"\nport = {}\nuser = \"sa\"\npassword_file = \"{}\"\nconnect_timeout = \"10s\"\n{extra}",
        sim.port,
        pw.display()
    );
    let config: SqlConfig = toml::from_str(&toml).unwrap();
    SqlBackend::new(config).unwrap()
}

/// Runs the simplest operation and returns its error.
async fn fails(b: &SqlBackend) -> Error {
    b.describe_instance().await.unwrap_err()
}

/// A self-signed certificate shaped like the one SQL Server generates when none is configured
/// (CN=SSL_Self_Signed_Fallback, no subjectAltName); returns (cert.pem, key.pem).
fn sql_server_self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "SSL_Self_Signed_Fallback");
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    let paths = (dir.join("fallback.pem"), dir.join("fallback.key"));
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    paths
}

/// A certificate for `name` only, signed by a new CA; returns (ca.pem, cert.pem, key.pem).
fn cert_for(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "other CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = CertificateParams::new(vec![name.to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap().pem();
    let paths = (
        dir.join("named-ca.pem"),
        dir.join("named.pem"),
        dir.join("named.key"),
    );
    std::fs::write(&paths.0, ca_pem).unwrap();
    std::fs::write(&paths.1, cert).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn assert_names(e: &Error, instance: &str, words: &[&str]) {
    let text = e.to_string();
    assert!(text.contains(instance), "no instance in: {text}");
    for w in words {
        assert!(text.contains(w), "no '{w}' in: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls10_only_server_fails_naming_the_update_whatever_it_answers() {
    failback_proto::install_crypto_provider();
    for reply in ["server-hello", "alert-version", "alert-handshake"] {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = tls_material(&dir.path().join("pki")).unwrap();
        let sim = sim(
            dir.path(),
            cert,
            key,
            &["--tls-max-version", "1.0", "--tls-old-reply", reply],
        )
        .await;
        let instance = format!("127.0.0.1:{}", sim.port);
        // `encryption = "off"` does not avoid the handshake: SQL Server encrypts LOGIN7 anyway.
        for enc in ["required", "off"] {
            let b = backend(
                dir.path(),
                &sim,
                &format!("encryption = \"{enc}\"\nca_file = \"{}\"\n", ca.display()),
            );
            let e = fails(&b).await;
            assert_names(&e, &instance, &["TLS 1.0", "KB3135244", "Windows build"]);
            assert!(!e.is_retryable(), "{reply}/{enc}: a retry cannot fix {e}");
            let wire = e.to_operation_error();
            assert!(!wire.retryable && wire.message.contains("KB3135244"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls10_only_server_that_resets_is_named_but_stays_retryable() {
    failback_proto::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_material(&dir.path().join("pki")).unwrap();
    // The default answer, as SQL Server 2012/2014 gives it: a reset after the ClientHello.
    let sim = sim(dir.path(), cert, key, &["--tls-max-version", "1.0"]).await;
    let b = backend(
        dir.path(),
        &sim,
        &format!("ca_file = \"{}\"\n", ca.display()),
    );
    let e = fails(&b).await;
    assert_names(
        &e,
        &format!("127.0.0.1:{}", sim.port),
        &["closed the connection", "likely cause is TLS", "KB3135244"],
    );
    // A restarting server resets too, so this one may be tried again.
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn self_signed_certificate_is_untrusted_until_trust_server_certificate() {
    failback_proto::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (lab_ca, _, _) = tls_material(&dir.path().join("pki")).unwrap();
    let (cert, key) = sql_server_self_signed(dir.path());
    let sim = sim(dir.path(), cert, key, &[]).await;
    let instance = format!("127.0.0.1:{}", sim.port);

    // The system roots (no ca_file): nobody vouches for it.
    let e = fails(&backend(dir.path(), &sim, "")).await;
    assert_names(
        &e,
        &instance,
        &[
            "not trusted",
            "self-signed",
            "`ca_file`",
            "`trust_server_certificate = true`",
        ],
    );
    assert!(!e.is_retryable(), "{e}");

    // Another CA in ca_file: the message names that file.
    let e = fails(&backend(
        dir.path(),
        &sim,
        &format!("ca_file = \"{}\"\n", lab_ca.display()),
    ))
    .await;
    assert_names(
        &e,
        &instance,
        &[&lab_ca.display().to_string(), "trust_server_certificate"],
    );
    assert!(!e.is_retryable(), "{e}");

    // Said out loud in the config, the same server is reached.
    let info = backend(dir.path(), &sim, "trust_server_certificate = true\n")
        .describe_instance()
        .await
        .unwrap();
    assert_eq!(info.server_name, "LYNCBE01");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_for_another_name_is_a_name_mismatch() {
    failback_proto::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = cert_for(dir.path(), "lyncbe01.corp.example");
    let sim = sim(dir.path(), cert, key, &[]).await;
    let e = fails(&backend(
        dir.path(),
        &sim,
        &format!("ca_file = \"{}\"\n", ca.display()),
    ))
    .await;
    assert_names(
        &e,
        &format!("127.0.0.1:{}", sim.port),
        &[
            "not valid for the name '127.0.0.1'",
            "`host`",
            "trust_server_certificate",
        ],
    );
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_process_reports_a_tls10_only_server_as_not_retryable() {
    failback_proto::install_crypto_provider();
    const AGENT: &str = "sql01.dc1.lab";
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    let (ca, cert, key) = tls_material(&fleet.dir.join("sqltls")).unwrap();
    let sim = sim(
        &fleet.dir.join("sql01"),
        cert,
        key,
        &[
            "--tls-max-version",
            "1.0",
            "--tls-old-reply",
            "server-hello",
        ],
    )
    .await;
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, format!("{SA_PASSWORD}\n")).unwrap();
    fleet
        .configure_agent(
            AGENT,
            &format!(
                "[sql]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"sa\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
                sim.port,
                pw.display(),
                ca.display()
            ),
        )
        .unwrap();
    let mut fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(AGENT).unwrap();
    let mut session = fake.next_session(Duration::from_secs(20)).await.unwrap();
    session.welcome(2).await.unwrap();
    let e = error(
        session
            .call(
                "tls/describe",
                2,
                K::DescribeInstance(pb::DescribeInstance {}),
            )
            .await
            .unwrap(),
    );
    assert!(!e.retryable, "{e:?}");
    assert_eq!(e.kind(), pb::ErrorKind::Backend, "{e:?}");
    assert!(
        e.message.contains(&format!("127.0.0.1:{}", sim.port))
            && e.message.contains("TLS 1.0")
            && e.message.contains("KB3135244"),
        "{e:?}"
    );
}
