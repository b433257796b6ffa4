//! Who a peer is and what it may do, read from its certificate.
//!
//! Decision (DESIGN §3 leaves the encoding to us): a failback certificate carries
//! - its **name** as the subject Common Name and as a DNS subject-alternative name (coordinators
//!   need the DNS SAN for server-name verification; we put it on every certificate for symmetry);
//! - each **role** as a URI subject-alternative name `urn:failback:role:<role>`.
//!
//! Why URI SANs rather than an OU or a custom extended key usage: a certificate may hold several
//! (an approver certificate is also an operator certificate), they are ordinary X.509 that every
//! tool prints (`openssl x509 -text` shows `URI:urn:failback:role:operator`), and subject OUs are
//! being retired by public CAs, so an installation that ever issues from a corporate CA can still
//! add SANs. Only certificates issued by the installation's CA are trusted at all (mTLS), so a
//! role SAN cannot be self-asserted.
//!
//! An agent's id is its certificate name; nothing a peer *says* is used as its identity.

use std::fmt;
use std::str::FromStr;

use x509_parser::prelude::*;

/// URI prefix of a role subject-alternative name.
pub const ROLE_URI_PREFIX: &str = "urn:failback:role:";

/// What a certificate entitles its holder to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// May open an agent session (and nothing else).
    Agent,
    /// May serve the coordinator APIs and send instructions to agents.
    Coordinator,
    /// May call the Control API.
    Operator,
    /// May call the Control API and approve destructive steps.
    Approver,
}

impl Role {
    /// All roles, in display order.
    pub const ALL: [Role; 4] = [
        Role::Agent,
        Role::Coordinator,
        Role::Operator,
        Role::Approver,
    ];

    /// The lower-case name used in the certificate and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Coordinator => "coordinator",
            Role::Operator => "operator",
            Role::Approver => "approver",
        }
    }

    /// The URI SAN that carries this role.
    pub fn uri(self) -> String {
        format!("{ROLE_URI_PREFIX}{}", self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role '{s}' (known: agent, coordinator, operator, approver)")
            })
    }
}

/// The identity read from a verified peer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Certificate name (subject CN).
    pub name: String,
    /// Roles from the `urn:failback:role:*` SANs; unknown role names are ignored.
    pub roles: Vec<Role>,
}

impl PeerIdentity {
    /// Whether the certificate carries `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Roles as a human list, e.g. "operator, approver" or "none".
    pub fn roles_text(&self) -> String {
        if self.roles.is_empty() {
            return "none".to_string();
        }
        self.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a certificate could not be read as a failback identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The DER bytes are not an X.509 certificate.
    #[error("not a valid X.509 certificate: {0}")]
    Parse(String),
    /// No subject CN.
    #[error("the certificate has no subject common name")]
    NoName,
}

/// Reads name and roles from a DER certificate.
pub fn identity_from_der(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .ok_or(IdentityError::NoName)?;
    let mut roles = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let GeneralName::URI(uri) = gn
                && let Some(role) = uri
                    .strip_prefix(ROLE_URI_PREFIX)
                    .and_then(|r| r.parse().ok())
                && !roles.contains(&role)
            {
                roles.push(role);
            }
        }
    }
    roles.sort();
    Ok(PeerIdentity { name, roles })
}

/// Checks a certificate name: 1 to 253 characters of letters, digits, `-` and `.`, not starting
/// or ending with `.` or `-`. Names become file names, DNS SANs and agent ids, so they are kept to
/// a set that is safe in all three.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("name '{name}' must be 1 to 253 characters long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!(
            "name '{name}' may hold only letters, digits, '-' and '.'"
        ));
    }
    if name.starts_with(['.', '-']) || name.ends_with(['.', '-']) || name.contains("..") {
        return Err(format!(
            "name '{name}' must not start or end with '.' or '-', nor contain '..'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("sql01.dc1.contoso.com").is_ok());
        for bad in ["", "a b", "../x", "a/b", "-a", "a.", "a..b", "ü"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
