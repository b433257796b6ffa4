//! failbackctl's client side: which certificate to present, connecting to the coordinators in
//! turn, following the leader hint once, and turning failures into sentences.
//!
//! Exit codes (documented in `failbackctl --help` and README): 0 success; 1 the operation failed
//! or no coordinator could be reached; 2 invalid input (arguments, files, topology), or a request
//! the coordinator refused as invalid or not permitted.

pub mod inspect_view;
pub mod output;
pub mod preflight_view;
pub mod report_leaders;
pub mod report_view;
pub mod runs_view;
pub mod watch;
pub mod watch_view;

use std::path::{Path, PathBuf};
use std::time::Duration;

use failback_proto::LEADER_HINT_METADATA;
use failback_proto::endpoint::Endpoint;
use failback_proto::identity::{Role, identity_from_der};
use failback_proto::pb::control_client::ControlClient;
use failback_proto::tls::{self, TlsFiles, TlsMaterial};
use tonic::transport::Channel;

use crate::error::{Error, ErrorKind};

/// Connect timeout per coordinator.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where failbackctl finds the coordinators and its certificate.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Coordinators to try, in order.
    pub endpoints: Vec<Endpoint>,
    /// Directory written by `certs init`.
    pub certs_dir: PathBuf,
    /// Which certificate of the directory to present; `None` = the only operator/approver one.
    pub identity: Option<String>,
}

/// Process exit code for an error.
pub fn exit_code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::Input | ErrorKind::Auth => 2,
        ErrorKind::Unavailable | ErrorKind::Internal => 1,
    }
}

/// Picks the identity: the one named, or the single operator/approver certificate in the dir.
pub fn resolve_identity(dir: &Path, named: Option<&str>) -> Result<String, Error> {
    if let Some(n) = named {
        return Ok(n.to_string());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::InvalidInput(format!(
            "cannot read certificate directory '{}': {e} (set --certs or FAILBACK_CERTS_DIR)",
            dir.display()
        ))
    })?;
    let mut people = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "pem") || stem == "ca" {
            continue;
        }
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        use rustls_pki_types::pem::PemObject;
        let Ok(der) = rustls_pki_types::CertificateDer::from_pem_slice(&pem) else {
            continue;
        };
        if let Ok(id) = identity_from_der(&der)
            && (id.has(Role::Operator) || id.has(Role::Approver))
        {
            people.push(stem.to_string());
        }
    }
    people.sort();
    match people.len() {
        1 => Ok(people.remove(0)),
        0 => Err(Error::InvalidInput(format!(
            "no operator or approver certificate in '{}'; issue one with `failbackctl certs add --dir {} --operator NAME`",
            dir.display(),
            dir.display()
        ))),
        _ => Err(Error::InvalidInput(format!(
            "several operator/approver certificates in '{}' ({}); choose one with --identity NAME or FAILBACK_IDENTITY",
            dir.display(),
            people.join(", ")
        ))),
    }
}

/// A connected Control client.
pub struct Control {
    /// The generated client.
    pub client: ControlClient<Channel>,
    /// The coordinator it talks to.
    pub endpoint: Endpoint,
    config: std::sync::Arc<rustls::ClientConfig>,
    material: TlsMaterial,
}

impl Control {
    /// Connects to the first reachable coordinator.
    pub async fn connect(settings: &ClientSettings) -> Result<Self, Error> {
        if settings.endpoints.is_empty() {
            return Err(Error::InvalidInput(
                "no coordinator endpoint given (use --endpoint name@host:port or FAILBACK_COORDINATORS)".into(),
            ));
        }
        let name = resolve_identity(&settings.certs_dir, settings.identity.as_deref())?;
        let dir = &settings.certs_dir;
        let material = TlsMaterial::load(&TlsFiles::in_dir(dir, &name)).map_err(|e| {
            // Say which setting to fix, not only which file is missing.
            if !dir.is_dir() {
                Error::InvalidInput(format!(
                    "{e} (no certificate directory '{}': set --certs or FAILBACK_CERTS_DIR; `failbackctl certs init` creates one)",
                    dir.display()
                ))
            } else if !dir.join(format!("{name}.pem")).is_file() {
                Error::InvalidInput(format!(
                    "{e} (no certificate '{name}' in '{}': --identity or FAILBACK_IDENTITY names one of its NAME.pem files)",
                    dir.display()
                ))
            } else {
                Error::from(e)
            }
        })?;
        let config = material.client_config(Role::Coordinator)?;
        let mut failures = Vec::new();
        for ep in &settings.endpoints {
            match tls::connect(ep, config.clone(), CONNECT_TIMEOUT).await {
                Ok(ch) => {
                    return Ok(Control {
                        client: ControlClient::new(ch),
                        endpoint: ep.clone(),
                        config,
                        material,
                    });
                }
                Err(e) => failures.push(format!("{ep}: {}", tls::explain(&e))),
            }
        }
        if let Err(why) = material.self_check() {
            failures.push(why);
        }
        Err(Error::Unreachable(format!(
            "no coordinator reachable:\n  {}",
            failures.join("\n  ")
        )))
    }

    /// Runs `call`; when the answer is "not the leader" with a hint, reconnects to the hint and
    /// runs it once more.
    pub async fn call<T, F, Fut>(&mut self, call: F) -> Result<T, Error>
    where
        F: Fn(ControlClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match call(self.client.clone()).await {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => {
                let hint = status
                    .metadata()
                    .get(LEADER_HINT_METADATA)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<Endpoint>().ok());
                if let (tonic::Code::Unavailable, Some(leader)) = (status.code(), hint) {
                    let ch = tls::connect(&leader, self.config.clone(), CONNECT_TIMEOUT)
                        .await
                        .map_err(|e| {
                            Error::Unreachable(format!("leader {leader}: {}", tls::explain(&e)))
                        })?;
                    self.client = ControlClient::new(ch);
                    self.endpoint = leader;
                    return call(self.client.clone())
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| self.diagnose(status_error(s)));
                }
                Err(self.diagnose(status_error(status)))
            }
        }
    }
}

impl Control {
    /// A transport failure right after the handshake is how TLS 1.3 servers refuse a client
    /// certificate; check ours locally and say why when it is the cause.
    fn diagnose(&self, e: Error) -> Error {
        match e {
            Error::Unreachable(text) if text.contains("refused our certificate") => {
                Error::Unauthenticated(text)
            }
            Error::Unreachable(text) => match self.material.self_check() {
                Err(why) => Error::Unauthenticated(format!(
                    "the coordinator refused our certificate: {why} ({text})"
                )),
                Ok(()) => Error::Unreachable(text),
            },
            other => other,
        }
    }
}

/// A failed call as an [`Error`], with transport failures explained.
pub fn status_error(status: tonic::Status) -> Error {
    use std::error::Error as _;
    if let Some(src) = status.source() {
        return Error::Unreachable(tls::explain(src));
    }
    if status.code() == tonic::Code::Unknown || status.code() == tonic::Code::Unavailable {
        // Transport failures surface as Unknown/Unavailable with the cause only in the message.
        let explained = tls::explain(&status);
        if explained != status.to_string() {
            return Error::Unreachable(explained);
        }
    }
    Error::Remote {
        code: status.code(),
        message: status.message().to_string(),
    }
}
