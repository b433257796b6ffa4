//! TLS inside PRELOGIN: a test CA and server certificate made with rcgen, sqlsim started with
//! `--tls-cert/--tls-key`, and tiberius connecting with `EncryptionLevel::Required` while trusting
//! only that CA (the agent's production setting). A client that says NOT_SUP still gets plain TCP,
//! FreeTDS (which says OFF) gets TLS for its login only, and a Required client is refused by a sim
//! without a certificate.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{PW, Sim, connect_with, rows};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tiberius::EncryptionLevel;

/// Writes ca.pem, server.pem and server.key into `dir`.
fn make_pki(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sqlsim test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "sqlsim");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), leaf_key.serialize_pem()).unwrap();
}

fn start_tls_sim(pki: &Path, data: &Path) -> Sim {
    let cert = pki.join("server.pem");
    let key = pki.join("server.key");
    Sim::start(
        data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
}

#[tokio::test]
async fn tiberius_required_encryption_with_trusted_ca() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let data = tempfile::tempdir().unwrap();
    let sim = start_tls_sim(pki.path(), data.path());

    let mut config = sim.config(EncryptionLevel::Required, PW);
    config.trust_cert_ca(pki.path().join("ca.pem").to_str().unwrap());
    let mut c = connect_with(config).await.unwrap();
    c.simple_query("CREATE DATABASE tlsdb; USE tlsdb; INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'over tls')")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    // Big enough to span several TDS packets inside TLS records.
    let big = "z".repeat(20_000);
    c.execute(
        "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', @P1)",
        &[&big.as_str()],
    )
    .await
    .unwrap();
    let r = c
        .query("SELECT body FROM dbo.Messages WHERE id = @P1", &[&2i64])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(r[0].get::<&str, _>(0).map(str::len), Some(20_000));
    let r = rows(&mut c, "SELECT COUNT(*) FROM dbo.Messages").await;
    assert_eq!(r[0].get::<i32, _>(0), Some(2));

    // The same sim still serves a client that does not want TLS.
    let mut plain = sim.connect().await;
    assert_eq!(rows(&mut plain, "SELECT 1").await.len(), 1);

    // A client that does not trust the CA is refused during the handshake.
    let untrusting = sim.config(EncryptionLevel::Required, PW);
    assert!(connect_with(untrusting).await.is_err());
    // And the sim keeps serving.
    assert_eq!(
        rows(&mut c, "SELECT DB_NAME()").await[0].get::<&str, _>(0),
        Some("tlsdb")
    );
}

#[tokio::test]
async fn required_encryption_against_a_sim_without_certificate_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let sim = Sim::start(data.path(), &[]);
    let config = sim.config(EncryptionLevel::Required, PW);
    let err = connect_with(config).await.err().unwrap();
    assert!(
        err.to_string().to_lowercase().contains("encryption"),
        "{err}"
    );
}

#[tokio::test]
async fn freetds_login_only_tls() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let data = tempfile::tempdir().unwrap();
    let sim = start_tls_sim(pki.path(), data.path());
    // FreeTDS' default "encryption = request" sends OFF: TLS for LOGIN7 only, then plain TCP.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("tsql")
            .args([
                "-H",
                "127.0.0.1",
                "-p",
                &sim.port().to_string(),
                "-U",
                "sa",
                "-P",
                PW,
            ])
            .env("TDSVER", "7.4")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
            .wait_with_output_after_input(b"SELECT @@SERVERNAME AS srv\ngo\nexit\n"),
    )
    .await
    .unwrap();
    assert!(out.contains("srv") && out.contains("SQLSIM"), "{out}");
}

/// Small helper: write stdin, then collect stdout + stderr.
trait WaitWithInput {
    async fn wait_with_output_after_input(self, input: &[u8]) -> String;
}

impl WaitWithInput for tokio::process::Child {
    async fn wait_with_output_after_input(mut self, input: &[u8]) -> String {
        use tokio::io::AsyncWriteExt;
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(input).await.unwrap();
        drop(stdin);
        let out = self.wait_with_output().await.unwrap();
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}
