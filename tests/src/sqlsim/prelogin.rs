//! PRELOGIN (MS-TDS 2.2.6.5): the client's option table is parsed for its ENCRYPTION wish, and the
//! reply carries VERSION, ENCRYPTION, INSTOPT and MARS exactly as the verified reference server does.
//! THREADID is never sent: tiberius `debug_assert!`s a zero thread id. The encryption answer follows
//! the table in tds-and-crates.md §1.2: NOT_SUP is echoed to NOT_SUP, and with a certificate an OFF
//! client gets TLS for LOGIN7 only while ON/REQ clients get TLS for the whole connection.

use super::error::{Result, SimError};
use super::wire::Reader;

const OPT_VERSION: u8 = 0x00;
const OPT_ENCRYPTION: u8 = 0x01;
const OPT_INSTOPT: u8 = 0x02;
const OPT_MARS: u8 = 0x04;
const OPT_TERMINATOR: u8 = 0xFF;

/// PRELOGIN encryption values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// 0: encrypt the login only.
    Off,
    /// 1: encrypt everything.
    On,
    /// 2: no TLS at all.
    NotSupported,
    /// 3: client requires encryption.
    Required,
}

impl Encryption {
    fn from_u8(b: u8) -> Result<Self> {
        // The high bit (ENCRYPT_CLIENT_CERT) only adds client certificates; ignore it.
        Ok(match b & 0x0F {
            0 => Encryption::Off,
            1 => Encryption::On,
            2 => Encryption::NotSupported,
            3 => Encryption::Required,
            other => {
                return Err(SimError::protocol(format!(
                    "unknown encryption value {other}"
                )));
            }
        })
    }

    fn as_u8(self) -> u8 {
        match self {
            Encryption::Off => 0,
            Encryption::On => 1,
            Encryption::NotSupported => 2,
            Encryption::Required => 3,
        }
    }
}

/// How much of the connection runs inside TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP throughout.
    None,
    /// TLS handshake, LOGIN7 over TLS, then back to plain TCP.
    LoginOnly,
    /// TLS handshake, then everything over TLS.
    Full,
}

/// What sqlsim needs from a client's PRELOGIN.
#[derive(Clone, Debug)]
pub struct PreloginRequest {
    /// The client's encryption wish (NOT_SUP when the option is absent).
    pub encryption: Encryption,
}

/// Parses the option table of a client PRELOGIN payload.
pub fn parse(payload: &[u8]) -> Result<PreloginRequest> {
    let mut r = Reader::new(payload);
    let mut encryption = Encryption::NotSupported;
    loop {
        let token = r.u8()?;
        if token == OPT_TERMINATOR {
            break;
        }
        let offset = u16::from_be_bytes([r.u8()?, r.u8()?]) as usize;
        let len = u16::from_be_bytes([r.u8()?, r.u8()?]) as usize;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > payload.len())
        {
            return Err(SimError::protocol(
                "PRELOGIN option points outside the packet",
            ));
        }
        if token == OPT_ENCRYPTION {
            if len != 1 {
                return Err(SimError::protocol("PRELOGIN ENCRYPTION must be one byte"));
            }
            encryption = Encryption::from_u8(payload[offset])?;
        }
    }
    Ok(PreloginRequest { encryption })
}

/// Decides the encryption answer and the TLS mode from the client's wish and whether a certificate
/// is configured.
pub fn negotiate(client: Encryption, tls_available: bool) -> (Encryption, TlsMode) {
    match (client, tls_available) {
        (_, false) => (Encryption::NotSupported, TlsMode::None),
        (Encryption::NotSupported, true) => (Encryption::NotSupported, TlsMode::None),
        (Encryption::Off, true) => (Encryption::Off, TlsMode::LoginOnly),
        (Encryption::On | Encryption::Required, true) => (Encryption::On, TlsMode::Full),
    }
}

/// Builds the PRELOGIN reply payload. `version` is (major, minor, build).
pub fn reply(encryption: Encryption, version: (u8, u8, u16)) -> Vec<u8> {
    let mut ver = vec![version.0, version.1];
    ver.extend_from_slice(&version.2.to_be_bytes());
    ver.extend_from_slice(&[0, 0]);
    let opts: [(u8, Vec<u8>); 4] = [
        (OPT_VERSION, ver),
        (OPT_ENCRYPTION, vec![encryption.as_u8()]),
        (OPT_INSTOPT, vec![0]),
        (OPT_MARS, vec![0]),
    ];
    let table_len = 5 * opts.len() + 1;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (token, value) in &opts {
        table.push(*token);
        table.extend_from_slice(&((table_len + data.len()) as u16).to_be_bytes());
        table.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    table.push(OPT_TERMINATOR);
    table.extend_from_slice(&data);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_roundtrips_through_parse() {
        let p = reply(Encryption::NotSupported, (13, 0, 6300));
        assert_eq!(parse(&p).unwrap().encryption, Encryption::NotSupported);
    }

    #[test]
    fn bad_offsets_are_protocol_errors() {
        assert!(parse(&[0x01, 0x00, 0xF0, 0x00, 0x01, 0xFF]).is_err());
        assert!(parse(&[0x01]).is_err());
    }

    #[test]
    fn negotiation_table() {
        assert_eq!(negotiate(Encryption::NotSupported, false).1, TlsMode::None);
        assert_eq!(
            negotiate(Encryption::Required, true),
            (Encryption::On, TlsMode::Full)
        );
        assert_eq!(negotiate(Encryption::Off, true).1, TlsMode::LoginOnly);
    }
}
