//! The installation's private CA and the certificates it issues (`failbackctl certs init|add`).
//!
//! One CA per installation; every certificate names one peer and carries its roles as
//! `urn:failback:role:*` URI SANs (see `failback_proto::identity` for why). Files land in one
//! directory as `ca.pem`/`ca.key` and `NAME.pem`/`NAME.key`; private keys are created with mode
//! 0600 on Unix. Existing files are never overwritten unless asked, because replacing a CA
//! silently would lock every agent out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use failback_proto::identity::{Role, validate_name};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::error::Error;

/// Default lifetime of a leaf certificate.
pub const DEFAULT_LEAF_DAYS: i64 = 730;
/// Lifetime of the CA.
pub const CA_DAYS: i64 = 3650;

/// One certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Certificate name (CN and DNS SAN).
    pub name: String,
    /// Roles, sorted, without duplicates.
    pub roles: Vec<Role>,
}

/// Validity window of issued certificates.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From now (minus a minute of clock-skew allowance) for `days`.
    pub fn days(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// Groups `(role, name)` pairs into one spec per name. A name asked for as both operator and
/// approver gets one certificate with both roles; an approver is always an operator too (approving
/// means reading the run first). A name asked for in two machine roles (agent, coordinator) or in a
/// machine role and a person role is refused: one key, one job.
pub fn group(requests: &[(Role, String)]) -> Result<Vec<CertSpec>, Error> {
    let mut by_name: BTreeMap<String, Vec<Role>> = BTreeMap::new();
    for (role, name) in requests {
        validate_name(name).map_err(Error::InvalidInput)?;
        let roles = by_name.entry(name.to_ascii_lowercase()).or_default();
        if !roles.contains(role) {
            roles.push(*role);
        }
        if *role == Role::Approver && !roles.contains(&Role::Operator) {
            roles.push(Role::Operator);
        }
    }
    let mut specs = Vec::new();
    for (name, mut roles) in by_name {
        roles.sort();
        let machine = roles
            .iter()
            .filter(|r| matches!(r, Role::Agent | Role::Coordinator))
            .count();
        if machine > 1 || (machine == 1 && roles.len() > 1) {
            let list: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
            return Err(Error::InvalidInput(format!(
                "name '{name}' was given for roles {}; an agent or coordinator certificate carries that one role only (use another name)",
                list.join(" and ")
            )));
        }
        specs.push(CertSpec { name, roles });
    }
    if specs.is_empty() {
        return Err(Error::InvalidInput(
            "no certificates requested (give --coordinator, --agent, --operator or --approver)"
                .into(),
        ));
    }
    Ok(specs)
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("cannot {what} '{}': {e}", path.display()))
}

fn write_file(path: &Path, contents: &str, private: bool, overwrite: bool) -> Result<(), Error> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(|e| io_err("write", path, e))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("write", path, e))
}

fn now_stamp() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond()
    )
}

fn rcgen_err(e: rcgen::Error) -> Error {
    Error::Internal(format!("certificate generation failed: {e}"))
}

/// Creates `dir` with a new CA and one certificate per spec. Refuses when `dir` already holds a
/// CA. Returns the files written.
pub fn init(dir: &Path, specs: &[CertSpec], validity: Validity) -> Result<Vec<PathBuf>, Error> {
    let ca_pem_path = dir.join("ca.pem");
    if ca_pem_path.exists() {
        return Err(Error::InvalidInput(format!(
            "'{}' already holds a CA; use `failbackctl certs add --dir {}` to issue more certificates",
            dir.display(),
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    // A distinct name per installation, so a certificate from another installation's CA fails
    // as "unknown issuer" rather than as a confusing signature mismatch.
    dn.push(
        DnType::CommonName,
        format!("failback installation CA {}", now_stamp()),
    );
    dn.push(DnType::OrganizationName, "failback");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(1);
    params.not_after = now + Duration::days(CA_DAYS);
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let cert = params.self_signed(&key).map_err(rcgen_err)?;
    // Key first: a ca.pem without its key would make the directory look initialised.
    let ca_key_path = dir.join("ca.key");
    write_file(&ca_key_path, &key.serialize_pem(), true, false)?;
    write_file(&ca_pem_path, &cert.pem(), false, false)?;
    let issuer = Issuer::new(params, key);
    let mut written = vec![ca_pem_path, ca_key_path];
    for spec in specs {
        written.extend(issue(dir, &issuer, spec, validity, false)?);
    }
    Ok(written)
}

/// Issues more certificates from the CA in `dir`. Refuses to replace an existing certificate
/// unless `overwrite`.
pub fn add(
    dir: &Path,
    specs: &[CertSpec],
    validity: Validity,
    overwrite: bool,
) -> Result<Vec<PathBuf>, Error> {
    let ca_pem_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let ca_pem = std::fs::read_to_string(&ca_pem_path)
        .map_err(|e| io_err("read CA certificate", &ca_pem_path, e))?;
    let ca_key = std::fs::read_to_string(&ca_key_path)
        .map_err(|e| io_err("read CA key", &ca_key_path, e))?;
    let key = KeyPair::from_pem(&ca_key).map_err(|e| {
        Error::InvalidInput(format!(
            "'{}' is not a private key: {e}",
            ca_key_path.display()
        ))
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| {
        Error::InvalidInput(format!(
            "'{}' is not a CA certificate: {e}",
            ca_pem_path.display()
        ))
    })?;
    let mut written = Vec::new();
    for spec in specs {
        written.extend(issue(dir, &issuer, spec, validity, overwrite)?);
    }
    Ok(written)
}

fn issue(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    spec: &CertSpec,
    validity: Validity,
    overwrite: bool,
) -> Result<Vec<PathBuf>, Error> {
    let cert_path = dir.join(format!("{}.pem", spec.name));
    let key_path = dir.join(format!("{}.key", spec.name));
    if !overwrite && (cert_path.exists() || key_path.exists()) {
        return Err(Error::InvalidInput(format!(
            "'{}' already exists; pass --force to replace it",
            cert_path.display()
        )));
    }
    let mut params = CertificateParams::new(vec![spec.name.clone()]).map_err(rcgen_err)?;
    for role in &spec.roles {
        let uri = role.uri().try_into().map_err(rcgen_err)?;
        params.subject_alt_names.push(SanType::URI(uri));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.name.clone());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if spec.roles.contains(&Role::Coordinator) {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let cert = params.signed_by(&key, issuer).map_err(rcgen_err)?;
    write_file(&key_path, &key.serialize_pem(), true, overwrite)?;
    write_file(&cert_path, &cert.pem(), false, overwrite)?;
    Ok(vec![cert_path, key_path])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn grouping() {
        let specs = group(&[
            (Role::Operator, "alice".into()),
            (Role::Approver, "alice".into()),
            (Role::Agent, "sql1".into()),
        ])
        .unwrap();
        assert_eq!(specs[0].roles, vec![Role::Operator, Role::Approver]);
        assert!(group(&[(Role::Agent, "x".into()), (Role::Coordinator, "x".into())]).is_err());
        assert!(group(&[(Role::Agent, "../x".into())]).is_err());
        assert!(group(&[]).is_err());
    }

    #[test]
    fn init_then_add_reads_back_roles() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("certs");
        init(
            &d,
            &group(&[(Role::Coordinator, "c1".into())]).unwrap(),
            Validity::days(1),
        )
        .unwrap();
        assert!(
            init(&d, &[], Validity::days(1)).is_err(),
            "second init must refuse"
        );
        add(
            &d,
            &group(&[(Role::Approver, "bob".into())]).unwrap(),
            Validity::days(1),
            false,
        )
        .unwrap();
        let pem = std::fs::read(d.join("bob.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let id = failback_proto::identity::identity_from_der(&der).unwrap();
        assert_eq!(id.name, "bob");
        assert_eq!(id.roles, vec![Role::Operator, Role::Approver]);
        assert!(
            add(
                &d,
                &group(&[(Role::Agent, "bob".into())]).unwrap(),
                Validity::days(1),
                false
            )
            .is_err()
        );
    }
}
