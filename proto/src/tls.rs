//! mTLS for every failback connection: loading the installation's PEM files, the coordinator's
//! server configuration, and the client connector used by agents and failbackctl.
//!
//! The client side uses its own rustls connector instead of tonic's built-in TLS because it must
//! check more than the chain: the server must carry the `coordinator` role (DESIGN §3: agents
//! accept instructions only from coordinator certificates), and its failures must reach the user
//! as sentences ("the coordinator's certificate has expired"), which [`explain`] builds from the
//! rustls error buried in tonic's transport error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{Channel, Uri};

use crate::endpoint::Endpoint;
use crate::identity::{PeerIdentity, Role, identity_from_der};

/// Paths of the three PEM files every process needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The installation CA certificate (`ca.pem`).
    pub ca: PathBuf,
    /// This process's certificate.
    pub cert: PathBuf,
    /// This process's private key. Never logged.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `failbackctl certs init` writes for `name` into `dir`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// Resolves relative paths against `base` (the directory of the config file naming them).
    #[must_use]
    pub fn relative_to(mut self, base: &Path) -> Self {
        for p in [&mut self.ca, &mut self.cert, &mut self.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        self
    }
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} '{path}': {source}")]
    Read {
        /// "CA certificate", "certificate" or "private key".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file was read but holds no usable PEM object.
    #[error("{what} '{path}' is not valid PEM: {reason}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Our own certificate is not a failback identity.
    #[error("certificate '{path}': {reason}")]
    Identity {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Loaded PEM material plus the identity of our own certificate.
#[derive(Clone)]
pub struct TlsMaterial {
    /// Our certificate name and roles.
    pub identity: PeerIdentity,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is deliberately absent.
        f.debug_struct("TlsMaterial")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block".to_string(),
        });
    }
    Ok(certs)
}

impl TlsMaterial {
    /// Reads and checks the three files.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let ca_pem = read("CA certificate", &files.ca)?;
        let cert_pem = read("certificate", &files.cert)?;
        let key_pem = read("private key", &files.key)?;
        let ca = certs("CA certificate", &files.ca, &ca_pem)?;
        let chain = certs("certificate", &files.cert, &cert_pem)?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            what: "private key",
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
        let identity = identity_from_der(&chain[0]).map_err(|e| TlsError::Identity {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
        Ok(TlsMaterial {
            identity,
            ca_pem,
            cert_pem,
            key_pem,
            ca,
            chain,
        })
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| TlsError::Config(e.to_string()))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in &self.ca {
            roots
                .add(c.clone())
                .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
        }
        Ok(roots)
    }

    /// Checks our own certificate exactly as a failback server will (chain to the CA in the CA
    /// file, validity dates, client-auth usage). With TLS 1.3 a server's refusal of our
    /// certificate arrives after the handshake and is usually lost in a "broken pipe"; this turns
    /// it back into the reason. `Ok` when the server should accept the certificate.
    pub fn self_check(&self) -> Result<(), String> {
        let roots = self.roots().map_err(|e| e.to_string())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| e.to_string())?;
        let (leaf, intermediates) = self
            .chain
            .split_first()
            .ok_or_else(|| "the certificate file holds no certificate".to_string())?;
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| {
                let why = match &e {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                    | rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature) => {
                        "it was not issued by the installation's CA (the CA file next to it)"
                            .to_string()
                    }
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
                    | rustls::Error::InvalidCertificate(
                        rustls::CertificateError::ExpiredContext { .. },
                    ) => "it has expired; issue a new one with `failbackctl certs add --force`"
                        .to_string(),
                    rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet)
                    | rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidYetContext { .. },
                    ) => "it is not valid yet (check this host's clock)".to_string(),
                    other => other.to_string(),
                };
                format!(
                    "our certificate '{}' will be refused: {why} ({e})",
                    self.identity.name
                )
            })
    }

    /// tonic server configuration: our certificate, and client certificates required and
    /// verified against the installation CA (a client without one, or from another CA, fails the
    /// handshake). Roles are checked per service, from the peer certificate.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.ca_pem))
    }

    /// rustls client configuration presenting our certificate and accepting only servers whose
    /// certificate chains to the CA, matches the dialled name, and carries `server_role`.
    pub fn client_config(&self, server_role: Role) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let webpki = WebPkiServerVerifier::builder(Arc::new(self.roots()?))
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let verifier = Arc::new(RoleVerifier {
            inner: webpki,
            role: server_role,
        });
        let mut config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key()?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Chain and name verification by webpki, then the role check.
#[derive(Debug)]
struct RoleVerifier {
    inner: Arc<WebPkiServerVerifier>,
    role: Role,
}

impl ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let id = identity_from_der(end_entity)
            .map_err(|e| rustls::Error::General(format!("server certificate: {e}")))?;
        if !id.has(self.role) {
            return Err(rustls::Error::General(format!(
                "server certificate '{}' has role(s) {}, not {}",
                id.name,
                id.roles_text(),
                self.role
            )));
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Opens an HTTP/2 channel to `endpoint` over our mTLS connector. The TCP connect and handshake
/// are bounded by `timeout`.
pub async fn connect(
    endpoint: &Endpoint,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let server_name = ServerName::try_from(endpoint.name.clone())
        .unwrap_or_else(|_| ServerName::try_from("invalid.name").expect("static name is valid"));
    let address = endpoint.address.clone();
    let connector = tower::service_fn(move |_uri: Uri| {
        let config = config.clone();
        let server_name = server_name.clone();
        let address = address.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    // The URI only feeds the :authority header; the connector above decides where to dial.
    tonic::transport::Endpoint::from_shared(format!("http://{}", endpoint.address))?
        .connect_timeout(timeout)
        .timeout(Duration::from_secs(3600))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
}

/// Turns a connection or call failure into a sentence naming the likely cause, by walking the
/// error's source chain for the rustls error or TLS alert inside it.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        // io and hyper errors repeat their cause in their own text; say each thing once.
        let text = e.to_string();
        if !chain.last().is_some_and(|l: &String| l.contains(&text)) {
            chain.push(text);
        }
        cur = e.source();
    }
    let all = chain.join(": ");
    let lower = all.to_ascii_lowercase();
    let hint = if lower.contains("received fatal alert: unknownca")
        || lower.contains("received fatal alert: badcertificate")
        || lower.contains("received fatal alert: decrypterror")
    {
        "the coordinator refused our certificate: it was not issued by the installation's CA"
    } else if lower.contains("received fatal alert: certificateexpired") {
        "the coordinator refused our certificate: it has expired (or is not valid yet); issue a new one with `failbackctl certs add`"
    } else if lower.contains("received fatal alert: certificaterequired") {
        "the coordinator requires a client certificate and none was sent"
    } else if lower.contains("unknownissuer")
        || lower.contains("invalid peer certificate: badsignature")
    {
        "the coordinator's certificate was not issued by our CA (check --certs / the ca file)"
    } else if lower.contains("expired") {
        "a certificate has expired (check the dates with `openssl x509 -noout -dates -in FILE`)"
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        "the coordinator's certificate does not carry the name we dialled (endpoints are name@host:port)"
    } else if lower.contains("has role(s)") {
        "the server is not a failback coordinator"
    } else if lower.contains("connection refused") {
        "nothing is listening at that address"
    } else if lower.contains("timed out") || lower.contains("deadline") {
        "the connection timed out"
    } else {
        ""
    };
    if hint.is_empty() {
        all
    } else {
        format!("{hint} ({all})")
    }
}
