//! The backup file: what BACKUP writes and RESTORE reads. Layout (little-endian):
//!
//! ```text
//! "SQLSIMBK"  u32 format  u32 header_len  header (JSON, BackupHeader)  u32 crc32(header)
//! payload: u32 content_len  content (JSON, BackupContent)  filler…
//! ```
//!
//! The header carries what `RESTORE HEADERONLY` / `FILELISTONLY` report (database, backup type,
//! LSNs, dates, server, logical files, flags) plus the payload length and its CRC-32, so any
//! damage is found: a bad header is error 3241 (media family incorrectly formed), a payload that
//! does not match its checksum is 3183. The content holds the database's rows and state (a log
//! backup: only the rows of its LSN range); a full backup is padded with deterministic filler to
//! the configured database size so that backup and restore do real, measurable I/O.

use std::io::{ErrorKind, SeekFrom};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::engine::fault::CorruptPart;
use crate::sqlsim::engine::state::{ChatMessage, RecoveryModel, UserAccess};

/// First bytes of every sqlsim backup file.
pub const MAGIC: &[u8; 8] = b"SQLSIMBK";
/// Layout version.
pub const FORMAT: u32 = 1;
/// SQL Server page size; "Processed N pages" counts these.
pub const PAGE: u64 = 8192;
/// I/O unit; pacing and progress move per chunk.
const CHUNK: usize = 64 * 1024;
/// Longest header accepted (a damaged length must not make us allocate gigabytes).
const MAX_HEADER: usize = 1 << 20;

/// A database file as the backup records it (`RESTORE FILELISTONLY`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// FileId.
    pub file_id: i32,
    /// LogicalName.
    pub logical_name: String,
    /// PhysicalName on the source instance.
    pub physical_name: String,
    /// `D` data or `L` log.
    pub kind: char,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// Everything `RESTORE HEADERONLY` shows, plus the payload's length and checksum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// 1 = database (full), 2 = log.
    pub backup_type: u8,
    /// `NAME =`.
    pub backup_name: Option<String>,
    /// `DESCRIPTION =`.
    pub description: Option<String>,
    /// Source database name.
    pub database_name: String,
    /// Source `@@SERVERNAME`.
    pub server_name: String,
    /// Source machine name.
    pub machine_name: String,
    /// Login that ran the backup.
    pub user_name: String,
    /// FirstLSN.
    pub first_lsn: u64,
    /// LastLSN (the LSN of the next record after the set).
    pub last_lsn: u64,
    /// CheckpointLSN.
    pub checkpoint_lsn: u64,
    /// DatabaseBackupLSN (checkpoint LSN of the latest full backup before this one; 0 if none).
    pub database_backup_lsn: u64,
    /// BackupStartDate.
    pub start: Timestamp,
    /// BackupFinishDate.
    pub finish: Timestamp,
    /// Source recovery model.
    pub recovery_model: RecoveryModel,
    /// Source files.
    pub files: Vec<BackupFile>,
    /// `WITH CHECKSUM` was given.
    pub has_checksums: bool,
    /// `WITH COPY_ONLY`.
    pub is_copy_only: bool,
    /// `WITH COMPRESSION` (recorded; the sim does not compress).
    pub compressed: bool,
    /// First log backup after the chain started.
    pub begins_log_chain: bool,
    /// Source database creation date.
    pub database_creation_date: Timestamp,
    /// Source family GUID.
    pub family_guid: String,
    /// This backup set's GUID.
    pub backup_set_guid: String,
    /// Source product version (major, minor, build).
    pub software_version: (u32, u32, u32),
    /// Source was read-only.
    pub is_read_only: bool,
    /// Source was single-user.
    pub is_single_user: bool,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// CRC-32 of the payload.
    pub payload_crc: u32,
}

/// The database rows and state a backup carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupContent {
    /// Rows of `dbo.Messages` (a log backup: those inserted in its LSN range).
    pub rows: Vec<ChatMessage>,
    /// Next IDENTITY value at backup time.
    pub next_message_id: i64,
    /// User access at backup time.
    pub user_access: UserAccess,
}

/// Why a backup file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened (3201).
    Open(std::io::Error),
    /// Not a backup, truncated, or a damaged header (3241).
    Malformed,
    /// The payload does not match its checksum (3183).
    Damaged,
    /// The exit-mid-restore fault stopped the read halfway.
    Halted,
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// Incremental CRC-32 (IEEE): start with `!0`, finish with `!state`.
fn crc_update(mut c: u32, data: &[u8]) -> u32 {
    for b in data {
        c = CRC_TABLE[((c ^ *b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c
}

/// CRC-32 of a byte string.
pub fn crc32(data: &[u8]) -> u32 {
    !crc_update(!0, data)
}

/// Produces the payload chunk by chunk: the content, then filler from a seeded xorshift.
struct PayloadGen<'a> {
    content: &'a [u8],
    total: u64,
    pos: u64,
    seed: u64,
}

impl<'a> PayloadGen<'a> {
    fn new(content: &'a [u8], filler: u64, seed: u64) -> Self {
        PayloadGen {
            content,
            total: 4 + content.len() as u64 + filler,
            pos: 0,
            seed: seed | 1,
        }
    }

    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        if self.pos >= self.total {
            return false;
        }
        let want = CHUNK.min((self.total - self.pos) as usize);
        let head_len = 4 + self.content.len() as u64;
        while buf.len() < want {
            let p = self.pos + buf.len() as u64;
            if p < 4 {
                let len = (self.content.len() as u32).to_le_bytes();
                buf.push(len[p as usize]);
            } else if p < head_len {
                let from = (p - 4) as usize;
                let n = (want - buf.len()).min(self.content.len() - from);
                buf.extend_from_slice(&self.content[from..from + n]);
            } else {
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                let bytes = self.seed.to_le_bytes();
                let n = (want - buf.len()).min(8);
                buf.extend_from_slice(&bytes[..n]);
            }
        }
        self.pos += buf.len() as u64;
        true
    }
}

/// Sleep per chunk so that `total` pacing is spread over `chunks`.
fn per_chunk(pacing: Option<Duration>, total_bytes: u64) -> Option<Duration> {
    let chunks = total_bytes.div_ceil(CHUNK as u64).max(1);
    pacing.map(|p| p / chunks as u32)
}

/// Writes a backup file; fills in `header.payload_len` / `payload_crc`. `progress` gets the
/// percentage done after each chunk. Returns the file size.
pub async fn write_backup(
    path: &Path,
    header: &mut BackupHeader,
    content: &BackupContent,
    filler: u64,
    pacing: Option<Duration>,
    mut progress: impl FnMut(f32),
) -> std::io::Result<u64> {
    let content = serde_json::to_vec(content).map_err(std::io::Error::other)?;
    let seed = crc32(header.backup_set_guid.as_bytes()) as u64 | ((header.last_lsn) << 32);
    // First pass: the checksum (the filler is regenerated, never held in memory).
    let mut gen_ = PayloadGen::new(&content, filler, seed);
    let mut buf = Vec::with_capacity(CHUNK);
    let mut crc = !0u32;
    while gen_.next_chunk(&mut buf) {
        crc = crc_update(crc, &buf);
    }
    header.payload_len = gen_.total;
    header.payload_crc = !crc;
    let head = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    let mut file = tokio::fs::File::create(path).await?;
    let mut pre = Vec::with_capacity(head.len() + 20);
    pre.extend_from_slice(MAGIC);
    pre.extend_from_slice(&FORMAT.to_le_bytes());
    pre.extend_from_slice(&(head.len() as u32).to_le_bytes());
    pre.extend_from_slice(&head);
    pre.extend_from_slice(&crc32(&head).to_le_bytes());
    file.write_all(&pre).await?;
    let sleep = per_chunk(pacing, header.payload_len);
    let mut gen_ = PayloadGen::new(&content, filler, seed);
    let mut done = 0u64;
    while gen_.next_chunk(&mut buf) {
        file.write_all(&buf).await?;
        done += buf.len() as u64;
        progress(done as f32 * 100.0 / header.payload_len.max(1) as f32);
        if let Some(d) = sleep {
            tokio::time::sleep(d).await;
        }
    }
    file.sync_all().await?;
    Ok(pre.len() as u64 + header.payload_len)
}

/// Reads and checks the header; returns it with the payload's offset in the file.
pub async fn read_header(path: &Path) -> Result<(BackupHeader, u64), ReadError> {
    let mut file = tokio::fs::File::open(path).await.map_err(ReadError::Open)?;
    if file.metadata().await.map_err(ReadError::Open)?.is_dir() {
        return Err(ReadError::Open(std::io::Error::from(
            ErrorKind::PermissionDenied,
        )));
    }
    let mut fixed = [0u8; 16];
    file.read_exact(&mut fixed)
        .await
        .map_err(|_| ReadError::Malformed)?;
    if &fixed[..8] != MAGIC || fixed[8..12] != FORMAT.to_le_bytes() {
        return Err(ReadError::Malformed);
    }
    let len = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as usize;
    if len > MAX_HEADER {
        return Err(ReadError::Malformed);
    }
    let mut head = vec![0u8; len + 4];
    file.read_exact(&mut head)
        .await
        .map_err(|_| ReadError::Malformed)?;
    let (json, crc) = head.split_at(len);
    if crc32(json).to_le_bytes() != crc {
        return Err(ReadError::Malformed);
    }
    let header: BackupHeader = serde_json::from_slice(json).map_err(|_| ReadError::Malformed)?;
    Ok((header, 16 + len as u64 + 4))
}

/// Reads the payload, checking its length and checksum. With `halt_at_half`, stops with
/// [`ReadError::Halted`] once half is read (the exit-mid-restore fault).
pub async fn read_payload(
    path: &Path,
    header: &BackupHeader,
    offset: u64,
    pacing: Option<Duration>,
    halt_at_half: bool,
    mut progress: impl FnMut(f32),
) -> Result<BackupContent, ReadError> {
    let mut file = tokio::fs::File::open(path).await.map_err(ReadError::Open)?;
    file.seek(SeekFrom::Start(offset))
        .await
        .map_err(|_| ReadError::Malformed)?;
    let sleep = per_chunk(pacing, header.payload_len);
    let mut crc = !0u32;
    let mut head: Vec<u8> = Vec::new();
    let mut content_len: Option<usize> = None;
    let mut need = 4usize;
    let mut done = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while done < header.payload_len {
        let want = CHUNK.min((header.payload_len - done) as usize);
        file.read_exact(&mut buf[..want])
            .await
            .map_err(|_| ReadError::Malformed)?;
        let chunk = &buf[..want];
        crc = crc_update(crc, chunk);
        // Keep the bytes up to the end of the content JSON.
        let mut used = 0;
        while head.len() < need && used < chunk.len() {
            let take = (need - head.len()).min(chunk.len() - used);
            head.extend_from_slice(&chunk[used..used + take]);
            used += take;
            if content_len.is_none() && head.len() >= 4 {
                let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                if n as u64 + 4 > header.payload_len {
                    return Err(ReadError::Damaged);
                }
                content_len = Some(n);
                need = 4 + n;
            }
        }
        done += want as u64;
        progress(done as f32 * 100.0 / header.payload_len.max(1) as f32);
        if let Some(d) = sleep {
            tokio::time::sleep(d).await;
        }
        if halt_at_half && done * 2 >= header.payload_len {
            return Err(ReadError::Halted);
        }
    }
    let mut extra = [0u8; 1];
    if file.read(&mut extra).await.unwrap_or(0) != 0 || !crc != header.payload_crc {
        return Err(ReadError::Damaged);
    }
    let n = content_len.ok_or(ReadError::Damaged)?;
    serde_json::from_slice(head.get(4..4 + n).ok_or(ReadError::Damaged)?)
        .map_err(|_| ReadError::Damaged)
}

/// Damages a written backup file (the `corrupt` fault): flips 16 bytes in the middle of the
/// payload, or of the header.
pub fn corrupt(path: &Path, part: CorruptPart) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let header_len = bytes
        .get(12..16)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let payload_start = 16 + header_len + 4;
    let at = match part {
        CorruptPart::Header => 16 + header_len / 2,
        CorruptPart::Payload => payload_start + (bytes.len().saturating_sub(payload_start)) / 2,
    };
    for b in bytes.iter_mut().skip(at).take(16) {
        *b ^= 0xA5;
    }
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BackupHeader {
        BackupHeader {
            backup_type: 1,
            backup_name: None,
            description: None,
            database_name: "mgc".into(),
            server_name: "A".into(),
            machine_name: "A".into(),
            user_name: "sa".into(),
            first_lsn: 10,
            last_lsn: 11,
            checkpoint_lsn: 10,
            database_backup_lsn: 0,
            start: Timestamp::now(),
            finish: Timestamp::now(),
            recovery_model: RecoveryModel::Full,
            files: Vec::new(),
            has_checksums: true,
            is_copy_only: false,
            compressed: false,
            begins_log_chain: false,
            database_creation_date: Timestamp::now(),
            family_guid: "F".into(),
            backup_set_guid: "G".into(),
            software_version: (13, 0, 6300),
            is_read_only: false,
            is_single_user: false,
            payload_len: 0,
            payload_crc: 0,
        }
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[tokio::test]
    async fn roundtrip_and_damage_detection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bak");
        let content = BackupContent {
            rows: Vec::new(),
            next_message_id: 7,
            user_access: UserAccess::MultiUser,
        };
        let mut h = header();
        let size = write_backup(&path, &mut h, &content, 200_000, None, |_| {})
            .await
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        let (back, off) = read_header(&path).await.unwrap();
        assert_eq!(back, h);
        let c = read_payload(&path, &back, off, None, false, |_| {})
            .await
            .unwrap();
        assert_eq!(c, content);
        corrupt(&path, CorruptPart::Payload).unwrap();
        assert!(matches!(
            read_payload(&path, &back, off, None, false, |_| {}).await,
            Err(ReadError::Damaged)
        ));
        corrupt(&path, CorruptPart::Header).unwrap();
        assert!(matches!(
            read_header(&path).await,
            Err(ReadError::Malformed)
        ));
        assert!(matches!(
            read_header(&dir.path().join("missing.bak")).await,
            Err(ReadError::Open(_))
        ));
    }
}
