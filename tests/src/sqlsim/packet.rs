//! TDS packet framing (MS-TDS 2.2.3): an 8-byte header (type, status, big-endian length including
//! the header, SPID, packet id, window) in front of each packet; a message is one or more packets of
//! the same type, the last one carrying the EOM status bit. Reading validates every header because
//! the bytes come from an untrusted socket: a bad length or type ends that connection with a
//! [`SimError::Protocol`], never a panic. Writing splits a response at the negotiated packet size.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{Result, SimError};

/// Bytes in a packet header.
pub const HEADER_LEN: usize = 8;
/// Largest packet TDS allows (the PacketSize ceiling of LOGIN7 and ENVCHANGE).
pub const MAX_PACKET_SIZE: usize = 32767;
/// Smallest packet size a client may negotiate.
pub const MIN_PACKET_SIZE: usize = 512;
/// Packet size before LOGIN7 negotiates one.
pub const DEFAULT_PACKET_SIZE: usize = 4096;
/// Cap on one reassembled client message, so a client cannot make the sim buffer without bound.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024 * 1024;

/// Status bit: last packet of the message.
pub const STATUS_EOM: u8 = 0x01;
/// Status bit: the client asks the server to ignore this message (sent after a client-side abort).
pub const STATUS_IGNORE: u8 = 0x02;

/// Packet types sqlsim understands (MS-TDS 2.2.3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// SQL batch text.
    SqlBatch,
    /// Remote procedure call (sp_executesql and friends).
    Rpc,
    /// Server response; every reply sqlsim sends uses it.
    TabularResult,
    /// Cancel the running request.
    Attention,
    /// Begin/commit/rollback requests.
    TransactionManager,
    /// Login record.
    Login7,
    /// Pre-login negotiation; also carries the TLS handshake.
    PreLogin,
}

impl PacketType {
    /// Maps the wire byte to a type; types sqlsim does not serve yield `None`.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => PacketType::SqlBatch,
            0x03 => PacketType::Rpc,
            0x04 => PacketType::TabularResult,
            0x06 => PacketType::Attention,
            0x0E => PacketType::TransactionManager,
            0x10 => PacketType::Login7,
            0x12 => PacketType::PreLogin,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            PacketType::SqlBatch => 0x01,
            PacketType::Rpc => 0x03,
            PacketType::TabularResult => 0x04,
            PacketType::Attention => 0x06,
            PacketType::TransactionManager => 0x0E,
            PacketType::Login7 => 0x10,
            PacketType::PreLogin => 0x12,
        }
    }
}

/// A decoded packet header.
#[derive(Clone, Copy, Debug)]
pub struct PacketHeader {
    /// Raw type byte.
    pub ty: u8,
    /// Status bits.
    pub status: u8,
    /// Total packet length including the header.
    pub length: usize,
}

impl PacketHeader {
    /// Decodes and validates a header: the length must cover the header and stay within TDS limits.
    pub fn parse(raw: &[u8; HEADER_LEN]) -> Result<Self> {
        let length = u16::from_be_bytes([raw[2], raw[3]]) as usize;
        if length < HEADER_LEN {
            return Err(SimError::protocol(format!(
                "packet length {length} is shorter than its header"
            )));
        }
        if length > MAX_PACKET_SIZE {
            return Err(SimError::protocol(format!(
                "packet length {length} exceeds {MAX_PACKET_SIZE}"
            )));
        }
        Ok(PacketHeader {
            ty: raw[0],
            status: raw[1],
            length,
        })
    }
}

/// One reassembled client message.
#[derive(Debug)]
pub struct Message {
    /// Packet type shared by all its packets.
    pub ty: PacketType,
    /// Status of the last packet (EOM, IGNORE, RESETCONNECTION bits).
    pub status: u8,
    /// Concatenated payloads.
    pub payload: Vec<u8>,
}

/// Reads one message. `Ok(None)` means the peer closed the socket cleanly between messages; a close
/// in the middle of a packet, an unknown type or a bad length is an error.
pub async fn read_message<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<Option<Message>> {
    let mut payload = Vec::new();
    let mut ty: Option<PacketType> = None;
    loop {
        let mut raw = [0u8; HEADER_LEN];
        let first = r.read(&mut raw[..1]).await?;
        if first == 0 {
            if ty.is_none() {
                return Ok(None);
            }
            return Err(SimError::protocol("connection closed inside a message"));
        }
        r.read_exact(&mut raw[1..]).await?;
        let header = PacketHeader::parse(&raw)?;
        let this_ty = PacketType::from_u8(header.ty).ok_or_else(|| {
            SimError::protocol(format!("unsupported packet type 0x{:02x}", header.ty))
        })?;
        match ty {
            None => ty = Some(this_ty),
            Some(t) if t != this_ty => {
                return Err(SimError::protocol("packet type changed inside a message"));
            }
            Some(_) => {}
        }
        let body_len = header.length - HEADER_LEN;
        if payload.len() + body_len > MAX_MESSAGE_LEN {
            return Err(SimError::protocol("message too large"));
        }
        let start = payload.len();
        payload.resize(start + body_len, 0);
        r.read_exact(&mut payload[start..]).await?;
        if header.status & STATUS_EOM != 0 {
            // `ty` was set above in this same iteration at the latest.
            let ty = ty.ok_or_else(|| SimError::protocol("message without a type"))?;
            return Ok(Some(Message {
                ty,
                status: header.status,
                payload,
            }));
        }
    }
}

/// Frames `payload` as packets of at most `packet_size` bytes (EOM on the last one).
pub fn frame(ty: PacketType, spid: u16, payload: &[u8], packet_size: usize) -> Vec<u8> {
    let packet_size = packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE);
    let max_body = packet_size - HEADER_LEN;
    let mut chunks: Vec<&[u8]> = payload.chunks(max_body).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let count = chunks.len();
    let mut out = Vec::with_capacity(payload.len() + count * HEADER_LEN);
    for (i, chunk) in chunks.into_iter().enumerate() {
        let status = if i + 1 == count { STATUS_EOM } else { 0 };
        let len = (chunk.len() + HEADER_LEN) as u16;
        out.push(ty.as_u8());
        out.push(status);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&spid.to_be_bytes());
        // Packet ids count from 1 and wrap, as SQL Server does.
        out.push(((i + 1) % 256) as u8);
        out.push(0);
        out.extend_from_slice(chunk);
    }
    out
}

/// Writes one message and flushes (a flush is what pushes bytes through TLS).
pub async fn write_message<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    ty: PacketType,
    spid: u16,
    payload: &[u8],
    packet_size: usize,
) -> Result<()> {
    let bytes = frame(ty, spid, payload, packet_size);
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_splits_at_packet_size_with_eom_last() {
        let payload = vec![7u8; 1000];
        let out = frame(PacketType::TabularResult, 51, &payload, 512);
        // 504 body bytes per packet -> 2 packets.
        assert_eq!(out.len(), 1000 + 2 * HEADER_LEN);
        assert_eq!(out[1], 0);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 512);
        assert_eq!(out[512 + 1], STATUS_EOM);
        assert_eq!(out[512 + 6], 2);
    }

    #[test]
    fn header_rejects_short_and_long_lengths() {
        assert!(PacketHeader::parse(&[1, 1, 0, 4, 0, 0, 0, 0]).is_err());
        assert!(PacketHeader::parse(&[1, 1, 0xFF, 0xFF, 0, 0, 0, 0]).is_err());
        assert!(PacketHeader::parse(&[1, 1, 0, 8, 0, 0, 0, 0]).is_ok());
    }

    #[tokio::test]
    async fn read_message_reassembles_and_detects_truncation() {
        let mut bytes = frame(PacketType::SqlBatch, 0, &[1, 2, 3, 4, 5], 512);
        let msg = read_message(&mut &bytes[..]).await.unwrap().unwrap();
        assert_eq!(msg.payload, vec![1, 2, 3, 4, 5]);
        bytes.truncate(bytes.len() - 2);
        assert!(read_message(&mut &bytes[..]).await.is_err());
        assert!(read_message(&mut &[][..]).await.unwrap().is_none());
    }
}
