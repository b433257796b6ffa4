//! TLS to the local SQL Server, and what the agent says when the handshake fails. SQL Server
//! encrypts at least the LOGIN7 packet of every login, so every `encryption` setting except
//! `not_supported` runs a TLS handshake inside PRELOGIN. The stack is chosen per target in
//! `agent/Cargo.toml` (issue #11 item 9): on Windows tiberius' `native-tls` feature, i.e. SChannel,
//! the OS stack SSMS uses, which still speaks TLS 1.0 to SQL Server 2012/2014 builds without their
//! TLS 1.2 update (KB3135244) where the machine's SChannel policy allows it (native-tls is pinned to
//! 0.2.14 because later versions ask SChannel for TLS 1.2 and up only); everywhere else rustls,
//! which speaks TLS 1.2 and 1.3 only. Such an unpatched server answers a TLS 1.2-only ClientHello by
//! closing the connection (Microsoft documents "forcibly closed by the remote host", 10054, and a
//! capture in which the server answers the Client Hello by closing), by an alert, or with a TLS 1.0
//! ServerHello. The other common failure is the certificate: a Lync back end usually presents the
//! self-signed certificate SQL Server generates when none is configured, which no CA vouches for.
//!
//! [`tls_error`] turns those failures into an [`Error::Sql`] that names the instance, the cause
//! and the fix (the update, `ca_file`, `trust_server_certificate`, `host`). tiberius carries TLS
//! errors as text only (`Error::Tls` / `Error::Io` messages rendered from rustls or SChannel), so
//! the classification matches the text rustls 0.23 renders and the Windows error codes
//! SChannel's messages end with ("(os error -2146893019)"): the message words are localised, the
//! codes are not. A wrong version or an untrusted certificate is not retryable: the same request
//! fails the same way until a person changes the server or the config. A connection closed during
//! the handshake is ambiguous (an unpatched server, or one restarting), so it stays retryable and
//! its message names the likely cause.

use std::path::Path;

use crate::error::Error;

/// What the agent knows about where it connected, for the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// `host:port` as configured.
    pub instance: &'a str,
    /// `sql.host`: the name the certificate is checked against.
    pub host: &'a str,
    /// `sql.ca_file`, when set.
    pub ca_file: Option<&'a Path>,
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The server offered (or insisted on) TLS 1.0/1.1, or no version/cipher suite was common.
    OldProtocol,
    /// No CA this agent trusts signed the certificate (self-signed, or another CA).
    Untrusted,
    /// The certificate is not for the name the agent connected to.
    NameMismatch,
    /// The certificate is expired or not valid yet.
    Expired,
    /// Another certificate rejection.
    OtherCertificate,
    /// The server closed or reset the connection during the login handshake.
    Closed,
}

/// Windows error codes (HRESULTs as `std::io::Error` prints them, `(os error N)`) SChannel returns.
const SCHANNEL: [(i64, Cause); 10] = [
    (-2146893019, Cause::Untrusted),        // SEC_E_UNTRUSTED_ROOT
    (-2146762487, Cause::Untrusted),        // CERT_E_UNTRUSTEDROOT
    (-2146762486, Cause::Untrusted),        // CERT_E_CHAINING
    (-2146893022, Cause::NameMismatch),     // SEC_E_WRONG_PRINCIPAL
    (-2146762481, Cause::NameMismatch),     // CERT_E_CN_NO_MATCH
    (-2146762495, Cause::Expired),          // CERT_E_EXPIRED
    (-2146893016, Cause::Expired),          // SEC_E_CERT_EXPIRED
    (-2146893007, Cause::OldProtocol),      // SEC_E_ALGORITHM_MISMATCH
    (-2146893054, Cause::OldProtocol),      // SEC_E_UNSUPPORTED_FUNCTION
    (-2146893018, Cause::OtherCertificate), // SEC_E_ILLEGAL_MESSAGE (a malformed certificate)
];

/// The cause of a failed login, when it is a TLS one. `tls_on` is whether the connection ran a
/// handshake at all (`encryption` other than `not_supported`).
pub(crate) fn classify(e: &tiberius::error::Error, tls_on: bool) -> Option<Cause> {
    use tiberius::error::{Error as T, IoErrorKind as K};
    let text = match e {
        T::Tls(m) => m.as_str(),
        T::Io { message, .. } => message.as_str(),
        _ => return None,
    };
    if let Some(code) = os_error(text)
        && let Some((_, cause)) = SCHANNEL.iter().find(|(c, _)| *c == code)
    {
        return Some(cause.clone());
    }
    // rustls: `PeerIncompatible::ServerDoesNotSupportTls12Or13` is its answer to a TLS 1.0/1.1
    // ServerHello; the alerts are what a server sends when it finds nothing in common.
    if text.contains("ServerDoesNotSupportTls12Or13")
        || text.contains("received fatal alert: ProtocolVersion")
        || text.contains("received fatal alert: HandshakeFailure")
        || text.contains("received fatal alert: InsufficientSecurity")
    {
        return Some(Cause::OldProtocol);
    }
    // rustls renders "invalid peer certificate: …"; tiberius rewrites certificate errors into
    // "the server's certificate was rejected during the TLS handshake: …" with its own advice.
    if text.contains("invalid peer certificate") || text.contains("certificate was rejected") {
        return Some(
            if text.contains("UnknownIssuer") || text.contains("BadSignature") {
                Cause::Untrusted
            } else if text.contains("not valid for name") || text.contains("NotValidForName") {
                Cause::NameMismatch
            } else if text.contains("expired")
                || text.contains("Expired")
                || text.contains("not valid yet")
                || text.contains("NotValidYet")
            {
                Cause::Expired
            } else {
                Cause::OtherCertificate
            },
        );
    }
    // tokio-rustls' "tls handshake eof", or a reset or EOF anywhere in the login while TLS is on.
    let closed = match e {
        T::Io { kind, .. } => matches!(
            kind,
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
        ),
        _ => text.contains("handshake eof"),
    };
    (tls_on && closed).then_some(Cause::Closed)
}

/// The error as shown to a person: tiberius' advice on certificate errors names its own API
/// (`Config::trust_cert()` and so on), not the agent's config, so it is cut off.
fn detail(e: &tiberius::error::Error) -> String {
    let text = e.to_string();
    match text.find(" To connect anyway") {
        Some(cut) => text[..cut].trim_end_matches('.').to_string(),
        None => text,
    }
}

/// The number in "(os error N)", if any.
fn os_error(text: &str) -> Option<i64> {
    let rest = &text[text.rfind("(os error ")? + "(os error ".len()..];
    rest.split(')').next()?.trim().parse().ok()
}

/// What to tell a person about an old protocol, for this build's TLS stack.
fn protocol_fix() -> &'static str {
    if cfg!(windows) {
        "SQL Server 2012/2014 without its TLS 1.2 update speaks only TLS 1.0: install the TLS 1.2 \
         update for SQL Server (KB3135244), or allow TLS 1.0 for clients in this host's SChannel \
         settings"
    } else {
        "SQL Server 2012/2014 without its TLS 1.2 update speaks only TLS 1.0, and this agent's TLS \
         stack (rustls) speaks TLS 1.2 and 1.3 only: install the TLS 1.2 update for SQL Server \
         (KB3135244), or run the agent's Windows build, which uses the OS TLS stack (SChannel) and \
         can still speak TLS 1.0 where the host allows it"
    }
}

/// The agent's error for a failed login, when the failure is a TLS one; `None` leaves it to the
/// generic mapping.
pub(crate) fn tls_error(t: &Target<'_>, e: &tiberius::error::Error, tls_on: bool) -> Option<Error> {
    let cause = classify(e, tls_on)?;
    let i = t.instance;
    let e = detail(e);
    let trust = match t.ca_file {
        Some(ca) => format!(
            "is not signed by the CA in ca_file '{}' (self-signed?)",
            ca.display()
        ),
        None => "is not signed by a CA this host trusts (self-signed? SQL Server presents its own \
                 self-signed certificate when none is configured)"
            .to_string(),
    };
    let (message, retryable) = match cause {
        Cause::OldProtocol => (
            format!(
                "TLS handshake with SQL Server at {i} failed: the server offered only TLS 1.0/1.1 \
                 or nothing this agent accepts ({e}); {}",
                protocol_fix()
            ),
            false,
        ),
        Cause::Untrusted => (
            format!(
                "the certificate of SQL Server at {i} is not trusted: it {trust} ({e}); add the CA \
                 that issued it to `ca_file`, or set `trust_server_certificate = true` in the \
                 agent's [sql] config"
            ),
            false,
        ),
        Cause::NameMismatch => (
            format!(
                "the certificate of SQL Server at {i} is not valid for the name '{}' ({e}); set \
                 `host` in the agent's [sql] config to a name the certificate carries, or set \
                 `trust_server_certificate = true` there",
                t.host
            ),
            false,
        ),
        Cause::Expired => (
            format!(
                "the certificate of SQL Server at {i} is expired or not valid yet ({e}); renew the \
                 instance's certificate (SQL Server Configuration Manager), or set \
                 `trust_server_certificate = true` in the agent's [sql] config"
            ),
            false,
        ),
        Cause::OtherCertificate => (
            format!(
                "the certificate of SQL Server at {i} was rejected ({e}); configure a valid \
                 certificate for the instance, add its CA to `ca_file`, or set \
                 `trust_server_certificate = true` in the agent's [sql] config"
            ),
            false,
        ),
        Cause::Closed => (
            format!(
                "SQL Server at {i} closed the connection during the encrypted login ({e}); if it \
                 is restarting, this passes; if it happens every time, the likely cause is TLS: {}",
                protocol_fix()
            ),
            true,
        ),
    };
    Some(Error::Sql {
        number: None,
        message,
        retryable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::error::{Error as T, IoErrorKind as K};

    fn io(kind: K, message: &str) -> T {
        T::Io {
            kind,
            message: message.into(),
        }
    }

    const TARGET: Target<'static> = Target {
        instance: "127.0.0.1:1433",
        host: "127.0.0.1",
        ca_file: None,
    };

    #[test]
    fn rustls_texts_are_classified() {
        let old = io(
            K::InvalidData,
            "peer is incompatible: ServerDoesNotSupportTls12Or13",
        );
        assert_eq!(classify(&old, true), Some(Cause::OldProtocol));
        let alert = io(K::InvalidData, "received fatal alert: ProtocolVersion");
        assert_eq!(classify(&alert, true), Some(Cause::OldProtocol));
        let hs = io(K::InvalidData, "received fatal alert: HandshakeFailure");
        assert_eq!(classify(&hs, true), Some(Cause::OldProtocol));
        // tiberius rewrites rustls certificate errors into Error::Tls with its own advice.
        let unknown = T::Tls("the server's certificate was rejected during the TLS handshake: UnknownIssuer. To connect anyway you can: (1) trust".into());
        assert_eq!(classify(&unknown, true), Some(Cause::Untrusted));
        assert_eq!(
            detail(&unknown),
            "Error forming TLS connection: the server's certificate was rejected during the TLS handshake: UnknownIssuer"
        );
        let name = T::Tls("the server's certificate was rejected during the TLS handshake: invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"other\")".into());
        assert_eq!(classify(&name, true), Some(Cause::NameMismatch));
        let exp = T::Tls("rejected: invalid peer certificate: certificate expired: verification time 2 (UNIX), but certificate is not valid after 1 (1 seconds ago)".into());
        assert_eq!(classify(&exp, true), Some(Cause::Expired));
        let other = T::Tls("invalid peer certificate: UnsupportedCertVersion".into());
        assert_eq!(classify(&other, true), Some(Cause::OtherCertificate));
    }

    #[test]
    fn schannel_codes_are_classified_whatever_the_language() {
        let untrusted = T::Tls("Die Zertifikatkette wurde von einer nicht vertrauenswürdigen Zertifizierungsstelle ausgestellt. (os error -2146893019)".into());
        assert_eq!(classify(&untrusted, true), Some(Cause::Untrusted));
        let name = T::Tls("The target principal name is incorrect. (os error -2146893022)".into());
        assert_eq!(classify(&name, true), Some(Cause::NameMismatch));
        let alg = T::Tls("The client and server cannot communicate, because they do not possess a common algorithm. (os error -2146893007)".into());
        assert_eq!(classify(&alg, true), Some(Cause::OldProtocol));
        assert_eq!(os_error("x (os error 10054)"), Some(10054));
        assert_eq!(os_error("no code"), None);
    }

    #[test]
    fn closed_connections_only_count_with_tls_and_other_errors_are_left_alone() {
        let eof = io(K::UnexpectedEof, "tls handshake eof");
        assert_eq!(classify(&eof, true), Some(Cause::Closed));
        assert_eq!(classify(&eof, false), None, "no TLS, no TLS cause");
        let reset = io(
            K::ConnectionReset,
            "Connection reset by peer (os error 104)",
        );
        assert_eq!(classify(&reset, true), Some(Cause::Closed));
        let refused = io(K::ConnectionRefused, "Connection refused (os error 111)");
        assert_eq!(classify(&refused, true), None);
        assert_eq!(classify(&T::Protocol("bad token".into()), true), None);
    }

    #[test]
    fn messages_name_instance_cause_and_fix_and_are_not_retryable() {
        let old = tls_error(
            &TARGET,
            &io(
                K::InvalidData,
                "peer is incompatible: ServerDoesNotSupportTls12Or13",
            ),
            true,
        )
        .unwrap();
        let text = old.to_string();
        assert!(
            text.contains("127.0.0.1:1433") && text.contains("TLS 1.0"),
            "{text}"
        );
        assert!(text.contains("KB3135244"), "{text}");
        assert!(!old.is_retryable());
        assert!(!old.to_operation_error().retryable);

        let ca = Path::new("/etc/failback/sql-ca.pem");
        let with_ca = Target {
            ca_file: Some(ca),
            ..TARGET
        };
        let untrusted = tls_error(
            &with_ca,
            &T::Tls("invalid peer certificate: UnknownIssuer".into()),
            true,
        )
        .unwrap();
        let text = untrusted.to_string();
        assert!(
            text.contains("not trusted") && text.contains("/etc/failback/sql-ca.pem"),
            "{text}"
        );
        assert!(
            text.contains("`trust_server_certificate = true`") && text.contains("`ca_file`"),
            "{text}"
        );
        assert!(!untrusted.is_retryable());

        let name = tls_error(
            &TARGET,
            &T::Tls("invalid peer certificate: NotValidForName".into()),
            true,
        )
        .unwrap();
        assert!(
            name.to_string()
                .contains("not valid for the name '127.0.0.1'")
        );
        assert!(!name.is_retryable());

        let closed = tls_error(&TARGET, &io(K::UnexpectedEof, "tls handshake eof"), true).unwrap();
        assert!(closed.to_string().contains("KB3135244"));
        assert!(closed.is_retryable(), "a restarting server closes too");
    }
}
