//! Writers for the server's response tokens (MS-TDS 2.2.7): LOGINACK, ENVCHANGE, INFO/ERROR,
//! COLMETADATA, ROW, RETURNSTATUS and the three DONE flavours. A response is built in a
//! [`TokenWriter`] and then framed into packets by `packet::write_message`. The byte layouts match
//! `reference/tds_min_server.py`, which tiberius, FreeTDS and pytds all accepted.

use super::types::{COLLATION, SqlType, Value, write_type_info, write_value};
use super::wire::{put_b_varchar, put_us_varchar};

/// DONE status: more results follow in this response.
pub const DONE_MORE: u16 = 0x0001;
/// DONE status: the statement failed.
pub const DONE_ERROR: u16 = 0x0002;
/// DONE status: the row count is valid.
pub const DONE_COUNT: u16 = 0x0010;
/// DONE status: acknowledges an Attention.
pub const DONE_ATTN: u16 = 0x0020;

/// CurCmd values SQL Server puts in DONE tokens (clients ignore them; kept for realism).
pub mod curcmd {
    /// SELECT.
    pub const SELECT: u16 = 0xC1;
    /// INSERT.
    pub const INSERT: u16 = 0xC3;
    /// Everything else sqlsim runs.
    pub const OTHER: u16 = 0;
}

/// Which DONE token to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoneKind {
    /// End of a statement in a batch (0xFD).
    Done,
    /// End of an RPC (0xFE).
    DoneProc,
    /// End of a statement inside an RPC (0xFF).
    DoneInProc,
}

/// ENVCHANGE kinds sqlsim sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvChange {
    /// Type 1: current database changed.
    Database {
        /// New database.
        new: String,
        /// Previous database.
        old: String,
    },
    /// Type 4: packet size.
    PacketSize(u32),
    /// Type 7: collation.
    Collation,
    /// Type 8: a transaction began; carries its 8-byte descriptor.
    BeginTransaction(u64),
    /// Type 9: the transaction committed.
    CommitTransaction(u64),
    /// Type 10: the transaction rolled back.
    RollbackTransaction(u64),
}

/// An INFO or ERROR message (class > 10 is an ERROR token, as SQL Server does it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMessage {
    /// Error number (e.g. 208).
    pub number: i32,
    /// State.
    pub state: u8,
    /// Severity class.
    pub class: u8,
    /// Message text.
    pub message: String,
    /// Procedure name, empty for batches.
    pub procedure: String,
    /// Line number in the batch.
    pub line: i32,
}

impl ServerMessage {
    /// A message with line 1 and no procedure.
    pub fn new(number: i32, state: u8, class: u8, message: impl Into<String>) -> Self {
        ServerMessage {
            number,
            state,
            class,
            message: message.into(),
            procedure: String::new(),
            line: 1,
        }
    }

    /// True when this is sent as an ERROR token.
    pub fn is_error(&self) -> bool {
        self.class > 10
    }
}

/// A result-set column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name (may be empty for unnamed expressions).
    pub name: String,
    /// Type.
    pub ty: SqlType,
}

impl Column {
    /// Shorthand constructor.
    pub fn new(name: impl Into<String>, ty: SqlType) -> Self {
        Column {
            name: name.into(),
            ty,
        }
    }
}

/// Accumulates response tokens.
#[derive(Default)]
pub struct TokenWriter {
    buf: Vec<u8>,
}

impl TokenWriter {
    /// An empty response.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded tokens.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Writes a token whose body is prefixed by a u16 length.
    fn with_len(&mut self, token: u8, body: &[u8]) {
        self.buf.push(token);
        // Bodies built here (messages, env changes) are far below 64 KiB; cut defensively.
        let len = body.len().min(u16::MAX as usize);
        self.buf.extend_from_slice(&(len as u16).to_le_bytes());
        self.buf.extend_from_slice(&body[..len]);
    }

    /// ENVCHANGE (0xE3).
    pub fn env_change(&mut self, change: &EnvChange) {
        let mut b = Vec::new();
        let var_bytes = |b: &mut Vec<u8>, v: &[u8]| {
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        };
        match change {
            EnvChange::Database { new, old } => {
                b.push(1);
                put_b_varchar(&mut b, new);
                put_b_varchar(&mut b, old);
            }
            EnvChange::PacketSize(size) => {
                b.push(4);
                put_b_varchar(&mut b, &size.to_string());
                put_b_varchar(&mut b, &size.to_string());
            }
            EnvChange::Collation => {
                b.push(7);
                var_bytes(&mut b, &COLLATION);
                var_bytes(&mut b, &[]);
            }
            EnvChange::BeginTransaction(d) => {
                b.push(8);
                var_bytes(&mut b, &d.to_le_bytes());
                var_bytes(&mut b, &[]);
            }
            EnvChange::CommitTransaction(d) | EnvChange::RollbackTransaction(d) => {
                b.push(if matches!(change, EnvChange::CommitTransaction(_)) {
                    9
                } else {
                    10
                });
                var_bytes(&mut b, &[]);
                var_bytes(&mut b, &d.to_le_bytes());
            }
        }
        self.with_len(0xE3, &b);
    }

    /// INFO (0xAB) or ERROR (0xAA) depending on the class.
    pub fn message(&mut self, m: &ServerMessage, server_name: &str) {
        let mut b = Vec::new();
        b.extend_from_slice(&m.number.to_le_bytes());
        b.push(m.state);
        b.push(m.class);
        put_us_varchar(&mut b, &m.message);
        put_b_varchar(&mut b, server_name);
        put_b_varchar(&mut b, &m.procedure);
        b.extend_from_slice(&m.line.to_le_bytes());
        self.with_len(if m.is_error() { 0xAA } else { 0xAB }, &b);
    }

    /// LOGINACK (0xAD). `tds_version` is written big-endian as the spec requires; the body length
    /// is 10 + 2 × name length, which pytds relies on.
    pub fn login_ack(&mut self, tds_version: u32, prog_name: &str, version: (u8, u8, u16)) {
        let mut b = vec![1u8];
        b.extend_from_slice(&tds_version.to_be_bytes());
        put_b_varchar(&mut b, prog_name);
        b.push(version.0);
        b.push(version.1);
        b.extend_from_slice(&version.2.to_be_bytes());
        self.with_len(0xAD, &b);
    }

    /// COLMETADATA (0x81).
    pub fn col_metadata(&mut self, columns: &[Column]) {
        self.buf.push(0x81);
        self.buf
            .extend_from_slice(&(columns.len() as u16).to_le_bytes());
        for c in columns {
            // UserType 0, Flags 0x0001 (nullable), as in the verified reference server.
            self.buf.extend_from_slice(&0u32.to_le_bytes());
            self.buf.extend_from_slice(&0x0001u16.to_le_bytes());
            write_type_info(&mut self.buf, c.ty);
            put_b_varchar(&mut self.buf, &c.name);
        }
    }

    /// ROW (0xD1); values beyond the column count are ignored, missing ones sent as NULL.
    pub fn row(&mut self, columns: &[Column], values: &[Value]) {
        self.buf.push(0xD1);
        for (i, c) in columns.iter().enumerate() {
            write_value(&mut self.buf, c.ty, values.get(i).unwrap_or(&Value::Null));
        }
    }

    /// RETURNSTATUS (0x79).
    pub fn return_status(&mut self, status: i32) {
        self.buf.push(0x79);
        self.buf.extend_from_slice(&status.to_le_bytes());
    }

    /// RETURNVALUE (0xAC): an OUTPUT parameter's value (MS-TDS 2.2.7.18).
    pub fn return_value(&mut self, ordinal: u16, name: &str, ty: SqlType, value: &Value) {
        self.buf.push(0xAC);
        self.buf.extend_from_slice(&ordinal.to_le_bytes());
        put_b_varchar(&mut self.buf, name);
        // Status 0x01: the value of an output parameter (0x02 would be a UDF's).
        self.buf.push(0x01);
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.buf.extend_from_slice(&0x0001u16.to_le_bytes());
        write_type_info(&mut self.buf, ty);
        write_value(&mut self.buf, ty, value);
    }

    /// DONE / DONEPROC / DONEINPROC with a 64-bit row count (TDS >= 7.2).
    pub fn done(&mut self, kind: DoneKind, status: u16, curcmd: u16, rows: u64) {
        self.buf.push(match kind {
            DoneKind::Done => 0xFD,
            DoneKind::DoneProc => 0xFE,
            DoneKind::DoneInProc => 0xFF,
        });
        self.buf.extend_from_slice(&status.to_le_bytes());
        self.buf.extend_from_slice(&curcmd.to_le_bytes());
        self.buf.extend_from_slice(&rows.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_ack_length_matches_pytds_rule() {
        let mut w = TokenWriter::new();
        w.login_ack(0x7400_0004, "Microsoft SQL Server", (13, 0, 6300));
        let b = w.into_bytes();
        let len = u16::from_le_bytes([b[1], b[2]]) as usize;
        assert_eq!(len, 10 + 2 * "Microsoft SQL Server".len());
        assert_eq!(&b[4..8], &[0x74, 0, 0, 4]);
    }

    #[test]
    fn done_layout() {
        let mut w = TokenWriter::new();
        w.done(
            DoneKind::DoneInProc,
            DONE_MORE | DONE_COUNT,
            curcmd::SELECT,
            3,
        );
        assert_eq!(
            w.into_bytes(),
            vec![0xFF, 0x11, 0, 0xC1, 0, 3, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
