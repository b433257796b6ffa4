//! Reads the caller's identity from its verified client certificate and checks its role.
//!
//! The TLS layer has already refused certificates from another CA, expired ones and callers
//! without one; here a *valid* certificate is refused when its role does not fit the service.

use failback_proto::identity::{PeerIdentity, Role, identity_from_der};

use crate::error::Error;

/// The caller's identity, or `Unauthenticated` when the connection carries no verified
/// certificate (only possible if TLS were misconfigured).
pub fn peer<T>(request: &tonic::Request<T>) -> Result<PeerIdentity, Error> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Error::Unauthenticated("no client certificate on this connection".into()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Error::Unauthenticated("empty client certificate chain".into()))?;
    identity_from_der(leaf).map_err(|e| Error::Unauthenticated(format!("client certificate: {e}")))
}

/// The caller's identity if it holds one of `allowed`; otherwise `PermissionDenied` naming the
/// certificate, its roles and what `service` needs.
pub fn require<T>(
    request: &tonic::Request<T>,
    allowed: &[Role],
    service: &str,
) -> Result<PeerIdentity, Error> {
    let id = peer(request)?;
    if allowed.iter().any(|r| id.has(*r)) {
        return Ok(id);
    }
    let need: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    Err(Error::PermissionDenied(format!(
        "certificate '{}' has role(s) {}; {service} needs {}",
        id.name,
        id.roles_text(),
        need.join(" or ")
    )))
}
