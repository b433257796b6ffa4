//! LOGIN7 (MS-TDS 2.2.6.4): the fixed part and the offset/length table of variable fields. Every
//! offset is checked against the payload because a hostile client controls them. The password is
//! de-obfuscated (XOR 0xA5, then nibble swap) so it can be compared with the configured login.

use super::error::{Result, SimError};
use super::wire::{Reader, decode_utf16};

/// The fields sqlsim uses from a LOGIN7 record.
#[derive(Clone, Debug)]
pub struct Login7 {
    /// TDS version the client asks for (the little-endian u32 as sent, e.g. 0x74000004).
    pub tds_version: u32,
    /// Requested packet size (0 = server default).
    pub packet_size: u32,
    /// Client host name.
    pub host_name: String,
    /// SQL login name.
    pub user_name: String,
    /// Clear-text password (never logged).
    pub password: String,
    /// Application name (`program_name` in session views).
    pub app_name: String,
    /// Initial database; empty means the login's default (master).
    pub database: String,
}

/// Byte offset of the first offset/length pair (HostName).
const VAR_TABLE: usize = 36;

/// Parses a LOGIN7 payload.
pub fn parse(payload: &[u8]) -> Result<Login7> {
    let mut r = Reader::new(payload);
    let _length = r.u32_le()?;
    let tds_version = r.u32_le()?;
    let packet_size = r.u32_le()?;
    if payload.len() < VAR_TABLE + 9 * 4 {
        return Err(SimError::protocol("LOGIN7 shorter than its fixed part"));
    }
    // Fields in table order: HostName, UserName, Password, AppName, ServerName, Extension,
    // CltIntName, Language, Database.
    let field = |idx: usize| -> Result<&[u8]> {
        let at = VAR_TABLE + 4 * idx;
        let off = u16::from_le_bytes([payload[at], payload[at + 1]]) as usize;
        let chars = u16::from_le_bytes([payload[at + 2], payload[at + 3]]) as usize;
        let end = off + 2 * chars;
        if chars > 0 && (off < VAR_TABLE || end > payload.len()) {
            return Err(SimError::protocol(format!(
                "LOGIN7 field {idx} outside the record"
            )));
        }
        Ok(if chars == 0 { &[] } else { &payload[off..end] })
    };
    let password_raw: Vec<u8> = field(2)?
        .iter()
        .map(|b| {
            let x = b ^ 0xA5;
            x.rotate_left(4)
        })
        .collect();
    Ok(Login7 {
        tds_version,
        packet_size,
        host_name: decode_utf16(field(0)?)?,
        user_name: decode_utf16(field(1)?)?,
        password: decode_utf16(&password_raw)?,
        app_name: decode_utf16(field(3)?)?,
        database: decode_utf16(field(8)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlsim::wire::utf16_bytes;

    /// Builds a LOGIN7 like a client would (used by unit tests only).
    fn build(user: &str, pw: &str, db: &str) -> Vec<u8> {
        let fields = ["host", user, pw, "app", "srv", "", "lib", "", db];
        let mut fixed = vec![0u8; VAR_TABLE + 9 * 4 + 6 + 4 * 4];
        fixed[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
        fixed[8..12].copy_from_slice(&4096u32.to_le_bytes());
        let mut data = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            let mut b = utf16_bytes(f);
            if i == 2 {
                b = b.iter().map(|x| x.rotate_left(4) ^ 0xA5).collect();
            }
            let off = (fixed.len() + data.len()) as u16;
            let at = VAR_TABLE + 4 * i;
            fixed[at..at + 2].copy_from_slice(&off.to_le_bytes());
            fixed[at + 2..at + 4].copy_from_slice(&(f.encode_utf16().count() as u16).to_le_bytes());
            data.extend(b);
        }
        let total = (fixed.len() + data.len()) as u32;
        fixed[0..4].copy_from_slice(&total.to_le_bytes());
        fixed.extend(data);
        fixed
    }

    #[test]
    fn parses_user_password_and_database() {
        let l = parse(&build("sa", "Secr3t!", "mgc")).unwrap();
        assert_eq!(l.user_name, "sa");
        assert_eq!(l.password, "Secr3t!");
        assert_eq!(l.database, "mgc");
        assert_eq!(l.tds_version, 0x7400_0004);
    }

    #[test]
    fn rejects_out_of_range_offsets() {
        let mut p = build("sa", "pw", "");
        p[VAR_TABLE + 4] = 0xFF;
        p[VAR_TABLE + 5] = 0xFF;
        assert!(parse(&p).is_err());
        assert!(parse(&p[..20]).is_err());
    }
}
