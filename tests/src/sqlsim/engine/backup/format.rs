//! The backup file: what BACKUP writes and RESTORE reads. One file is one media set holding one
//! or more backup sets, as on SQL Server: `BACKUP … WITH NOINIT` (the default) appends a set,
//! `INIT` drops the sets but keeps the media header, `FORMAT` writes a new media header.
//! Layout (little-endian):
//!
//! ```text
//! "SQLSIMBK"  u32 format  u32 media_len  media header (JSON, MediaHeader)  u32 crc32(media)
//! per set:    u32 header_len  header (JSON, BackupHeader)  u32 crc32(header)
//!             payload: u32 content_len  content (JSON, BackupContent)  filler…
//! ```
//!
//! A set's header carries what `RESTORE HEADERONLY` / `FILELISTONLY` report (database, backup
//! type, LSNs, dates, server, logical files, flags) plus its payload's length and CRC-32, so any
//! damage is found: a bad media or set header is error 3241 (media family incorrectly formed), a
//! payload that does not match its checksum is 3183. Sets are found by walking the headers
//! (`Position` = 1, 2, … in file order). The content holds the database's rows and state (a log
//! backup: only the rows of its LSN range); a full backup is padded with deterministic filler to
//! the configured database size so that backup and restore do real, measurable I/O.
//!
//! Dates: the header holds BackupStartDate, BackupFinishDate and DatabaseCreationDate as the
//! writing server's local wall clock, without an offset, as SQL Server's datetime columns do, so
//! HEADERONLY (and msdb's backupset after a restore) shows the writer's local time wherever the
//! file is read. [`write_backup`] converts the in-memory UTC times at that edge. The header also
//! records the writer's UTC offset (sql-docs backupset.time_zone: "difference between local time
//! (where the backup operation is taking place) and UTC … at the time the backup operation
//! started"), which a restoring server copies into its backupset row. It sits in the file's
//! JSON next to the header's fields, not in [`BackupHeader`] (whose literal lives in create.rs,
//! another change's file); reading a set notes it per BackupSetGUID, see [`writer_offset`].
//!
//! Format 1 (one set, no media header, before multiple sets existed) is refused like any file
//! that is not a backup (3241), with the reason in sqlsim's log: those files came from test
//! runs, never from a real server, so reading them has no value worth a second code path.

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
/// Layout version (2: media header and several backup sets per file).
pub const FORMAT: u32 = 2;
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

/// The media header: written by `FORMAT` (or the first backup to a file), kept by `INIT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaHeader {
    /// The media set's GUID (`backupmediaset.media_uuid`).
    pub media_set_guid: String,
    /// When the media was formatted.
    pub created: Timestamp,
}

impl MediaHeader {
    /// A new media set.
    pub fn new() -> Self {
        MediaHeader {
            media_set_guid: crate::sqlsim::engine::state::new_guid(),
            created: Timestamp::now(),
        }
    }
}

impl Default for MediaHeader {
    fn default() -> Self {
        Self::new()
    }
}

/// One backup set found in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct SetInfo {
    /// Its header.
    pub header: BackupHeader,
    /// Where its payload starts.
    pub offset: u64,
}

/// A media set as read from a file: its header and its backup sets in file order
/// (`Position` = index + 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Media {
    /// The media header.
    pub media: MediaHeader,
    /// The backup sets.
    pub sets: Vec<SetInfo>,
    /// False when the last set's payload runs past the end of the file (a torn copy): its
    /// header still lists, reading it fails, and nothing may be appended after it.
    pub complete: bool,
}

impl Media {
    /// Set `FILE = position` (1-based), if the file holds it.
    pub fn set(&self, position: i64) -> Option<&SetInfo> {
        usize::try_from(position)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .and_then(|i| self.sets.get(i))
    }
}

/// What a new backup set is written after.
#[derive(Debug)]
pub enum Base<'a> {
    /// A new file holding this media header (`FORMAT`, `INIT`, or no file yet).
    New(&'a MediaHeader),
    /// A copy of this existing, complete media set (`NOINIT`: the set is appended).
    Append(&'a Path),
}

/// Writes a file holding `base` and then one new backup set; fills in `header.payload_len` /
/// `payload_crc`. `progress` gets the percentage of the new set done after each chunk. Returns
/// the file size.
#[allow(clippy::too_many_arguments)]
pub async fn write_backup(
    path: &Path,
    base: Base<'_>,
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
    let on_disk = BackupHeader {
        start: header.start.local(),
        finish: header.finish.local(),
        database_creation_date: header.database_creation_date.local(),
        ..header.clone()
    };
    let head = serde_json::to_vec(&OnDisk {
        header: &on_disk,
        writer_utc_offset_minutes: Some(crate::sqlsim::clock::utc_offset_minutes()),
    })
    .map_err(std::io::Error::other)?;
    let mut pre = Vec::with_capacity(head.len() + 256);
    let mut file = match base {
        Base::New(media) => {
            let m = serde_json::to_vec(media).map_err(std::io::Error::other)?;
            pre.extend_from_slice(MAGIC);
            pre.extend_from_slice(&FORMAT.to_le_bytes());
            push_block(&mut pre, &m);
            tokio::fs::File::create(path).await?
        }
        Base::Append(from) => {
            tokio::fs::copy(from, path).await?;
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .await?
        }
    };
    push_block(&mut pre, &head);
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
    Ok(file.metadata().await?.len())
}

/// `u32 len, bytes, u32 crc32(bytes)`.
fn push_block(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(&crc32(bytes).to_le_bytes());
}

/// Reads a `push_block` block at the file's position; `None` if short, too long or damaged.
async fn read_block(file: &mut tokio::fs::File) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    file.read_exact(&mut len).await.ok()?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_HEADER {
        return None;
    }
    let mut block = vec![0u8; len + 4];
    file.read_exact(&mut block).await.ok()?;
    let (json, crc) = block.split_at(len);
    (crc32(json).to_le_bytes() == crc).then(|| json.to_vec())
}

/// Reads the media header and walks every backup set's header.
pub async fn read_media(path: &Path) -> Result<Media, ReadError> {
    let mut file = tokio::fs::File::open(path).await.map_err(ReadError::Open)?;
    let meta = file.metadata().await.map_err(ReadError::Open)?;
    if meta.is_dir() {
        return Err(ReadError::Open(std::io::Error::from(
            ErrorKind::PermissionDenied,
        )));
    }
    let total = meta.len();
    let mut fixed = [0u8; 12];
    file.read_exact(&mut fixed)
        .await
        .map_err(|_| ReadError::Malformed)?;
    if &fixed[..8] != MAGIC {
        return Err(ReadError::Malformed);
    }
    if fixed[8..12] != FORMAT.to_le_bytes() {
        let found = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        tracing::warn!(
            file = %path.display(),
            "backup file has sqlsim format {found}, this sqlsim reads format {FORMAT} only; refused as 3241"
        );
        return Err(ReadError::Malformed);
    }
    let media: MediaHeader = read_block(&mut file)
        .await
        .and_then(|m| serde_json::from_slice(&m).ok())
        .ok_or(ReadError::Malformed)?;
    let mut pos = file
        .stream_position()
        .await
        .map_err(|_| ReadError::Malformed)?;
    let mut sets = Vec::new();
    let mut complete = true;
    while pos < total {
        let json = read_block(&mut file).await.ok_or(ReadError::Malformed)?;
        let header: BackupHeader =
            serde_json::from_slice(&json).map_err(|_| ReadError::Malformed)?;
        note_writer_offset(&header, &json);
        let offset = pos + 8 + json.len() as u64;
        let end = offset.saturating_add(header.payload_len);
        sets.push(SetInfo { header, offset });
        if end > total {
            complete = false;
            break;
        }
        file.seek(SeekFrom::Start(end))
            .await
            .map_err(|_| ReadError::Malformed)?;
        pos = end;
    }
    if sets.is_empty() {
        return Err(ReadError::Malformed);
    }
    Ok(Media {
        media,
        sets,
        complete,
    })
}

/// The first backup set's header and the payload's offset (what `FILE = 1` reads).
pub async fn read_header(path: &Path) -> Result<(BackupHeader, u64), ReadError> {
    let media = read_media(path).await?;
    let first = media.sets.into_iter().next().ok_or(ReadError::Malformed)?;
    Ok((first.header, first.offset))
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
    if !crc != header.payload_crc {
        return Err(ReadError::Damaged);
    }
    let n = content_len.ok_or(ReadError::Damaged)?;
    serde_json::from_slice(head.get(4..4 + n).ok_or(ReadError::Damaged)?)
        .map_err(|_| ReadError::Damaged)
}

/// A set header as written: the header's fields plus the writer's UTC offset.
#[derive(Serialize)]
struct OnDisk<'a> {
    #[serde(flatten)]
    header: &'a BackupHeader,
    writer_utc_offset_minutes: Option<i32>,
}

/// The writer's offset as read back (absent in files written before it was recorded).
#[derive(Deserialize)]
struct WriterZone {
    #[serde(default)]
    writer_utc_offset_minutes: Option<i32>,
}

/// Writer offsets of the sets this process has read, by BackupSetGUID.
static WRITER_OFFSETS: std::sync::Mutex<Option<std::collections::HashMap<String, i32>>> =
    std::sync::Mutex::new(None);

fn note_writer_offset(header: &BackupHeader, json: &[u8]) {
    let Ok(WriterZone {
        writer_utc_offset_minutes: Some(m),
    }) = serde_json::from_slice::<WriterZone>(json)
    else {
        return;
    };
    let mut map = WRITER_OFFSETS.lock().unwrap_or_else(|p| p.into_inner());
    map.get_or_insert_with(Default::default)
        .insert(header.backup_set_guid.clone(), m);
}

/// The UTC offset (minutes) of the server that wrote the set `header` describes, when the file
/// recorded it and this process has read that set.
pub fn writer_offset(header: &BackupHeader) -> Option<i32> {
    let map = WRITER_OFFSETS.lock().unwrap_or_else(|p| p.into_inner());
    map.as_ref()?.get(&header.backup_set_guid).copied()
}

/// `(header start, header length, payload start, payload length)` of the last set in `bytes`.
fn last_set(bytes: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let len_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let mut pos = 12 + 4 + len_at(12)? + 4;
    let mut last = None;
    while pos < bytes.len() {
        let hlen = len_at(pos)?;
        let json = bytes.get(pos + 4..pos + 4 + hlen)?;
        let header: BackupHeader = serde_json::from_slice(json).ok()?;
        let payload = pos + 4 + hlen + 4;
        last = Some((pos + 4, hlen, payload, header.payload_len as usize));
        pos = payload + header.payload_len as usize;
    }
    last
}

/// Damages a written backup file (the `corrupt` fault): flips 16 bytes in the middle of the
/// last set's payload, or of its header.
pub fn corrupt(path: &Path, part: CorruptPart) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let (hstart, hlen, pstart, plen) =
        last_set(&bytes).ok_or_else(|| std::io::Error::other("not a sqlsim backup file"))?;
    let at = match part {
        CorruptPart::Header => hstart + hlen / 2,
        CorruptPart::Payload => pstart + plen / 2,
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
        let media = MediaHeader::new();
        let size = write_backup(
            &path,
            Base::New(&media),
            &mut h,
            &content,
            200_000,
            None,
            |_| {},
        )
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

    #[tokio::test]
    async fn sets_append_and_a_torn_last_set_is_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("1.bak"), dir.path().join("2.bak"));
        let content = BackupContent {
            rows: Vec::new(),
            next_message_id: 3,
            user_access: UserAccess::MultiUser,
        };
        let media = MediaHeader::new();
        let mut a = header();
        write_backup(
            &one,
            Base::New(&media),
            &mut a,
            &content,
            1000,
            None,
            |_| {},
        )
        .await
        .unwrap();
        let mut b = header();
        b.backup_type = 2;
        b.backup_set_guid = "H".into();
        write_backup(&two, Base::Append(&one), &mut b, &content, 0, None, |_| {})
            .await
            .unwrap();
        let m = read_media(&two).await.unwrap();
        assert_eq!(m.media, media);
        assert!(m.complete);
        assert_eq!(m.sets.len(), 2);
        assert_eq!((m.sets[0].header.clone(), m.sets[1].header.clone()), (a, b));
        for s in &m.sets {
            let c = read_payload(&two, &s.header, s.offset, None, false, |_| {})
                .await
                .unwrap();
            assert_eq!(c, content);
        }
        assert!(m.set(3).is_none() && m.set(0).is_none() && m.set(-1).is_none());
        // The fault damages the last set only.
        corrupt(&two, CorruptPart::Payload).unwrap();
        let first = &m.sets[0];
        assert!(
            read_payload(&two, &first.header, first.offset, None, false, |_| {})
                .await
                .is_ok()
        );
        // A copy cut short: the last set still lists, but the media is incomplete.
        let len = std::fs::metadata(&two).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&two).unwrap();
        f.set_len(len - 10).unwrap();
        let m = read_media(&two).await.unwrap();
        assert_eq!(m.sets.len(), 2);
        assert!(!m.complete);
        // A format-1 file is refused.
        let mut old = std::fs::read(&one).unwrap();
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&one, old).unwrap();
        assert!(matches!(read_media(&one).await, Err(ReadError::Malformed)));
    }
}
