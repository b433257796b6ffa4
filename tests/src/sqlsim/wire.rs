//! Little helpers for the byte layouts TDS uses inside a message: a bounds-checked [`Reader`] for
//! client input (every read returns a protocol error instead of panicking, because the bytes come
//! from the network) and `put_*` writers for the length-prefixed UTF-16 strings of the server side.

use super::error::{Result, SimError};

/// A cursor over a received message payload. All reads are bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next byte without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consumes `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| SimError::protocol(format!("need {n} bytes at offset {}", self.pos)))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(|_| ())
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads a little-endian u16.
    pub fn u16_le(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Reads a little-endian u32.
    pub fn u32_le(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a little-endian u64.
    pub fn u64_le(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads `chars` UTF-16LE code units as a string.
    pub fn utf16(&mut self, chars: usize) -> Result<String> {
        let raw = self.bytes(
            chars
                .checked_mul(2)
                .ok_or_else(|| SimError::protocol("length overflow"))?,
        )?;
        decode_utf16(raw)
    }

    /// Reads a B_VARCHAR (u8 length in characters, then UTF-16LE).
    pub fn b_varchar(&mut self) -> Result<String> {
        let n = self.u8()? as usize;
        self.utf16(n)
    }

    /// Reads a US_VARCHAR (u16 length in characters, then UTF-16LE).
    pub fn us_varchar(&mut self) -> Result<String> {
        let n = self.u16_le()? as usize;
        self.utf16(n)
    }
}

/// Decodes UTF-16LE bytes; an odd length or an unpaired surrogate is a protocol error.
pub fn decode_utf16(raw: &[u8]) -> Result<String> {
    if !raw.len().is_multiple_of(2) {
        return Err(SimError::protocol("odd UTF-16 byte length"));
    }
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| SimError::protocol("invalid UTF-16 text"))
}

/// Encodes a string as UTF-16LE bytes.
pub fn utf16_bytes(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// UTF-16 code units of `s`, cut to at most `max` units (never inside a surrogate pair).
fn utf16_units_capped(s: &str, max: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for ch in s.chars() {
        let mut pair = [0u16; 2];
        let enc = ch.encode_utf16(&mut pair);
        if out.len() + enc.len() > max {
            break;
        }
        out.extend_from_slice(enc);
    }
    out
}

/// Appends a B_VARCHAR; text longer than 255 UTF-16 units is cut (TDS cannot carry more).
pub fn put_b_varchar(out: &mut Vec<u8>, s: &str) {
    let units = utf16_units_capped(s, u8::MAX as usize);
    out.push(units.len() as u8);
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

/// Appends a US_VARCHAR; text longer than 65535 UTF-16 units is cut.
pub fn put_us_varchar(out: &mut Vec<u8>, s: &str) {
    let units = utf16_units_capped(s, u16::MAX as usize);
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}
