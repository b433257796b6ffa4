//! A bare TDS 7.4 client for tests that must see every message of a batch in order: tiberius
//! reports only the first error of a batch (and drops INFO messages), but SQL Server's answer to
//! a failed RESTORE is several errors (e.g. 1834, 3156, 3119, 3013) whose numbers, states and
//! order are the point. It logs in with SQL authentication and no encryption (PRELOGIN
//! NOT_SUP), sends SQL batches, and returns their INFO / ERROR tokens; a batch that returns rows
//! is not supported (it panics naming the token).
#![allow(dead_code, clippy::unwrap_used)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One INFO or ERROR token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Error number.
    pub number: i32,
    /// State.
    pub state: u8,
    /// Severity class (0-10 INFO, 11+ ERROR).
    pub class: u8,
    /// Text.
    pub text: String,
    /// Sent as an ERROR token (0xAA) rather than INFO (0xAB).
    pub is_error: bool,
}

/// A logged-in connection.
pub struct RawTds {
    stream: TcpStream,
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// LOGIN7's password obfuscation: swap the nibbles of each byte, then XOR with 0xA5.
fn obfuscate(pw: &str) -> Vec<u8> {
    utf16(pw)
        .into_iter()
        .map(|b| b.rotate_right(4) ^ 0xA5)
        .collect()
}

fn packet(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() + 8) as u16;
    let mut p = vec![kind, 0x01];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 0]);
    p.extend_from_slice(payload);
    p
}

fn login7(user: &str, password: &str, database: &str) -> Vec<u8> {
    let fields: Vec<Vec<u8>> = vec![
        utf16("rawtds-host"),
        utf16(user),
        obfuscate(password),
        utf16("rawtds"),
        utf16("127.0.0.1"),
        Vec::new(),
        utf16("rawtds"),
        Vec::new(),
        utf16(database),
    ];
    const FIXED: usize = 94;
    let mut fixed = Vec::with_capacity(FIXED);
    fixed.extend_from_slice(&[0; 4]); // length, filled below
    fixed.extend_from_slice(&0x7400_0004u32.to_le_bytes());
    fixed.extend_from_slice(&4096u32.to_le_bytes());
    fixed.extend_from_slice(&7u32.to_le_bytes());
    fixed.extend_from_slice(&std::process::id().to_le_bytes());
    fixed.extend_from_slice(&0u32.to_le_bytes());
    fixed.extend_from_slice(&[0xE0, 0x03, 0x00, 0x00]);
    fixed.extend_from_slice(&0i32.to_le_bytes());
    fixed.extend_from_slice(&0x0409u32.to_le_bytes());
    let mut data = Vec::new();
    for f in &fields {
        let off = (FIXED + data.len()) as u16;
        fixed.extend_from_slice(&off.to_le_bytes());
        fixed.extend_from_slice(&((f.len() / 2) as u16).to_le_bytes());
        data.extend_from_slice(f);
    }
    fixed.extend_from_slice(&[1, 2, 3, 4, 5, 6]); // ClientID
    let end = (FIXED + data.len()) as u16;
    for _ in 0..3 {
        // SSPI, AtchDBFile, ChangePassword: empty.
        fixed.extend_from_slice(&end.to_le_bytes());
        fixed.extend_from_slice(&0u16.to_le_bytes());
    }
    fixed.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(fixed.len(), FIXED);
    fixed.extend_from_slice(&data);
    let len = fixed.len() as u32;
    fixed[..4].copy_from_slice(&len.to_le_bytes());
    fixed
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn utf16_text(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// The INFO / ERROR tokens of a reply, in order.
fn messages(b: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let token = b[i];
        i += 1;
        match token {
            0xAA | 0xAB => {
                let len = u16_at(b, i);
                let t = &b[i + 2..i + 2 + len];
                let number = i32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                let (state, class) = (t[4], t[5]);
                let n = u16_at(t, 6);
                let text = utf16_text(&t[8..8 + n * 2]);
                out.push(Msg {
                    number,
                    state,
                    class,
                    text,
                    is_error: token == 0xAA,
                });
                i += 2 + len;
            }
            // LOGINACK, ENVCHANGE, ORDER, FEATUREEXTACK-free 7.4 login: u16 length.
            0xAD | 0xE3 | 0xA9 => i += 2 + u16_at(b, i),
            // DONE, DONEPROC, DONEINPROC: status, curcmd, row count (u64).
            0xFD..=0xFF => i += 12,
            // RETURNSTATUS.
            0x79 => i += 4,
            other => panic!("rawtds: token 0x{other:02X} not supported (a batch with rows?)"),
        }
    }
    out
}

impl RawTds {
    /// Connects to `port` on 127.0.0.1 and logs in as `user` to `database`.
    pub async fn login(port: u16, user: &str, password: &str, database: &str) -> RawTds {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = RawTds { stream };
        // PRELOGIN: VERSION, ENCRYPTION = NOT_SUP (2), terminator.
        let mut pre = vec![0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xFF];
        pre.extend_from_slice(&[0, 0, 0, 0, 0, 0, 2]);
        c.stream.write_all(&packet(0x12, &pre)).await.unwrap();
        c.reply().await;
        c.stream
            .write_all(&packet(0x10, &login7(user, password, database)))
            .await
            .unwrap();
        let msgs = messages(&c.reply().await);
        assert!(
            !msgs.iter().any(|m| m.is_error),
            "rawtds login failed: {msgs:?}"
        );
        c
    }

    /// The payload of the next reply (all its packets).
    async fn reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut head = [0u8; 8];
            self.stream.read_exact(&mut head).await.unwrap();
            let len = u16::from_be_bytes([head[2], head[3]]) as usize;
            let mut body = vec![0u8; len - 8];
            self.stream.read_exact(&mut body).await.unwrap();
            out.extend_from_slice(&body);
            if head[1] & 0x01 != 0 {
                return out;
            }
        }
    }

    /// Runs a batch (no rows) and returns its INFO / ERROR messages in order.
    pub async fn batch(&mut self, sql: &str) -> Vec<Msg> {
        // ALL_HEADERS with a transaction descriptor header (no transaction).
        let mut payload = Vec::new();
        payload.extend_from_slice(&22u32.to_le_bytes());
        payload.extend_from_slice(&18u32.to_le_bytes());
        payload.extend_from_slice(&2u16.to_le_bytes());
        payload.extend_from_slice(&0u64.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&utf16(sql));
        self.stream
            .write_all(&packet(0x01, &payload))
            .await
            .unwrap();
        messages(&self.reply().await)
    }
}

/// `(number, state)` of each error (INFO messages left out), in order.
pub fn errors(msgs: &[Msg]) -> Vec<(i32, u8)> {
    msgs.iter()
        .filter(|m| m.is_error)
        .map(|m| (m.number, m.state))
        .collect()
}
