//! BACKUP DATABASE / BACKUP LOG to a real file. Checks and the LSN bookkeeping happen under the
//! state lock; the file is written without it; the log chain moves only once the file is safely
//! on disk, so a failed write (3201) leaves the next log backup covering the same range.
//!
//! The file is written as `<name>.<backup_set_guid>.writing` in the target folder, synced, and
//! renamed to its name only when complete (a failed write removes it), so a reader on any
//! instance — sqllogship's copy job, RESTORE — sees no file or the finished one, never a torn
//! one. (On Windows SQL Server holds the device open while writing, so such a reader fails and
//! retries.) Before, the primary's log backup and the secondary's copy job, both due on the same
//! whole second, could meet mid-write: the copy took the header without the payload, recorded
//! the file as copied, and every restore run then failed on it with 3241.
//!
//! Media: `FORMAT` writes a new media header; `INIT` keeps the file's media header and replaces
//! its backup sets; `NOINIT` (the default) appends a set after the existing ones (the temporary
//! file starts as a copy of the old one). Appending needs every existing set readable to its end:
//! a damaged or torn file, or one that is not a backup, is 3266 unless INIT or FORMAT replace it.

use std::path::{Path, PathBuf};

use super::format::{self, BackupContent, BackupFile, BackupHeader, Base, MediaHeader, ReadError};
use super::{
    LOG_PAGES_IN_FULL, Refusal, Settings, outside_transaction, pages, stats_messages, terminate,
};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::engine::eval::Params;
use crate::sqlsim::engine::files::cannot_open_device;
use crate::sqlsim::engine::state::{DbState, RecoveryModel, UserAccess, new_guid};
use crate::sqlsim::engine::{Engine, ResultItem, SessionInfo, StatementResult, errors, lock};
use crate::sqlsim::sql::ast::{Backup, BackupKind};
use crate::sqlsim::tokens::ServerMessage;

/// Bytes in a MB.
const MB: u64 = 1 << 20;

impl Engine {
    /// BACKUP DATABASE | LOG.
    pub(in crate::sqlsim::engine) async fn backup(
        &self,
        b: &Backup,
        session: &SessionInfo,
        params: &Params,
    ) -> StatementResult {
        let verb = match b.kind {
            BackupKind::Database => "BACKUP DATABASE",
            BackupKind::Log => "BACKUP LOG",
        };
        match self.try_backup(b, verb, session, params).await {
            Ok(r) => r,
            Err(m) => terminate(verb, m),
        }
    }

    async fn try_backup(
        &self,
        b: &Backup,
        verb: &str,
        session: &SessionInfo,
        params: &Params,
    ) -> Result<StatementResult, Refusal> {
        let db_name = self.eval_text(&b.database, session, params)?;
        let device = match b.disks.first() {
            Some(d) => self.eval_text(d, session, params)?,
            None => return Err(errors::syntax_near("TO").into()),
        };
        let set = self.settings(&b.options, session, params)?;
        outside_transaction(session)?;
        if let Some(n) = lock(&self.faults).take_failure("backup") {
            return Err(errors::injected(n, &device, &db_name).into());
        }
        let started = tokio::time::Instant::now();
        let local = self.options.paths.resolve(&device);
        let (media, append) = media_for(&local, &device, &set).await?;
        let position = append.map_or(1, |existing| existing + 1);
        let (mut header, content, data_file, log_file) =
            self.snapshot_for_backup(b.kind, &db_name, &set, session)?;
        // The engine's service account creates the file (engine_access.rs): after the database
        // checks (a missing database or a SIMPLE-recovery log backup is reported as such) and, like
        // a write that fails, before any byte is written or the log chain moves.
        self.check_engine_write(&device, &local)?;
        let filler = match b.kind {
            BackupKind::Database => (self.options.db_size_mb as u64 * MB)
                .saturating_sub(content.rows.len() as u64 * 256),
            BackupKind::Log => (self.options.log_backup_mb as u64 * MB)
                .saturating_sub(content.rows.len() as u64 * 256),
        };
        let pacing = lock(&self.faults).pacing("backup");
        let spid = session.spid;
        // Written under a temporary name and renamed into place once complete (see the module
        // doc): nobody ever reads a half-written backup under its real name.
        let writing = writing_path(&local, &header.backup_set_guid);
        let base = match append {
            Some(_) => Base::Append(&local),
            None => Base::New(&media),
        };
        let written =
            format::write_backup(&writing, base, &mut header, &content, filler, pacing, |p| {
                self.requests.progress(spid, p)
            })
            .await;
        if let Err(e) = written {
            // A file that exists was opened: the write failed (3202, e.g. a full volume);
            // otherwise it could not be created (3201).
            let opened = writing.exists();
            let _ = std::fs::remove_file(&writing);
            return Err(if opened {
                crate::sqlsim::engine::files::write_failed(&device, &e, &local)
            } else {
                cannot_open_device(&device, &e, &local)
            }
            .into());
        }
        if let Some(part) = lock(&self.faults).take_corruption() {
            tracing::info!(file = %local.display(), ?part, "fault: corrupting the backup file");
            if let Err(e) = format::corrupt(&writing, part) {
                tracing::warn!("failed to corrupt {}: {e}", writing.display());
            }
        }
        if let Err(e) = std::fs::rename(&writing, &local) {
            let _ = std::fs::remove_file(&writing);
            return Err(cannot_open_device(&device, &e, &local).into());
        }
        self.commit_backup(b.kind, &db_name, &header, &set, &device)?;

        let mut msgs = stats_messages(set.stats);
        let total_pages = match b.kind {
            BackupKind::Database => {
                let data = pages(header.payload_len);
                msgs.push(errors::pages_processed(
                    data,
                    &header.database_name,
                    &data_file,
                    position,
                ));
                msgs.push(errors::pages_processed(
                    LOG_PAGES_IN_FULL,
                    &header.database_name,
                    &log_file,
                    position,
                ));
                data + LOG_PAGES_IN_FULL
            }
            BackupKind::Log => {
                let n = pages(header.payload_len);
                msgs.push(errors::pages_processed(
                    n,
                    &header.database_name,
                    &log_file,
                    position,
                ));
                n
            }
        };
        msgs.push(errors::backup_done(
            verb,
            total_pages,
            started.elapsed().as_secs_f64(),
        ));
        Ok(StatementResult {
            items: msgs.into_iter().map(ResultItem::Message).collect(),
            ..StatementResult::done()
        })
    }

    /// Checks the database, takes the backup's LSNs (the backup logs one record) and copies the
    /// rows. Returns the header, the content and the data / log logical file names.
    fn snapshot_for_backup(
        &self,
        kind: BackupKind,
        db_name: &str,
        set: &Settings,
        session: &SessionInfo,
    ) -> Result<(BackupHeader, BackupContent, String, String), ServerMessage> {
        let mut st = lock(&self.state);
        let server_name = st.server_name.clone();
        let machine_name = st.machine_name();
        let (major, minor, build) = st.version_triplet();
        let size_bytes = self.options.db_size_mb as u64 * MB;
        let db = st
            .database_mut(db_name)
            .ok_or_else(|| errors::database_not_found(db_name))?;
        if db.name.eq_ignore_ascii_case("tempdb") {
            return Err(errors::tempdb_backup());
        }
        let is_mirror = db.mirroring.as_ref().is_some_and(|m| m.role == "MIRROR");
        match db.state {
            DbState::Restoring | DbState::Recovering => {
                return Err(errors::database_restoring(&db.name));
            }
            DbState::Offline => return Err(errors::database_offline(&db.name)),
            _ if is_mirror => return Err(errors::database_restoring(&db.name)),
            _ => {}
        }
        let chain = db.log_chain_lsn;
        if kind == BackupKind::Log {
            if db.recovery_model == RecoveryModel::Simple {
                return Err(errors::log_backup_simple());
            }
            if chain.is_none() || db.last_full_backup_lsn.is_none() {
                return Err(errors::no_database_backup());
            }
        }
        let checkpoint = db.last_lsn;
        let first = match kind {
            BackupKind::Database => checkpoint,
            BackupKind::Log => chain.unwrap_or(checkpoint),
        };
        db.last_lsn += 1;
        let last = db.last_lsn;
        let rows = db
            .messages
            .iter()
            .filter(|m| kind == BackupKind::Database || (m.lsn >= first && m.lsn < last))
            .cloned()
            .collect();
        let files = db
            .files
            .iter()
            .map(|f| BackupFile {
                file_id: f.file_id,
                logical_name: f.logical_name.clone(),
                physical_name: f.physical_name.clone(),
                kind: f.kind,
                size_bytes: if f.kind == 'L' {
                    MB
                } else {
                    size_bytes.max(MB)
                },
            })
            .collect::<Vec<_>>();
        let logical = |k: char| {
            files
                .iter()
                .find(|f: &&BackupFile| f.kind == k)
                .map_or_else(|| db.name.clone(), |f| f.logical_name.clone())
        };
        let (data_file, log_file) = (logical('D'), logical('L'));
        let now = Timestamp::now();
        let header = BackupHeader {
            backup_type: match kind {
                BackupKind::Database => 1,
                BackupKind::Log => 2,
            },
            backup_name: set.name.clone(),
            description: set.description.clone(),
            database_name: db.name.clone(),
            server_name,
            machine_name,
            user_name: session.login.clone(),
            first_lsn: first,
            last_lsn: last,
            checkpoint_lsn: checkpoint,
            database_backup_lsn: db.last_full_backup_lsn.unwrap_or(0),
            start: now,
            finish: now,
            recovery_model: db.recovery_model,
            files,
            has_checksums: set.has("CHECKSUM"),
            is_copy_only: set.has("COPY_ONLY"),
            compressed: set.has("COMPRESSION"),
            begins_log_chain: kind == BackupKind::Log
                && db.last_full_backup_lsn.is_some_and(|f| chain == Some(f)),
            database_creation_date: db.create_date,
            family_guid: db.family_guid.clone(),
            backup_set_guid: new_guid(),
            software_version: (major as u32, minor as u32, build as u32),
            is_read_only: db.is_read_only,
            is_single_user: db.user_access == UserAccess::SingleUser,
            payload_len: 0,
            payload_crc: 0,
        };
        let content = BackupContent {
            rows,
            next_message_id: db.next_message_id,
            user_access: db.user_access,
        };
        // The backup's own log record is durable even if the file write fails later.
        self.persist(&st)?;
        Ok((header, content, data_file, log_file))
    }

    /// Records the backup in msdb and moves the log chain after a successful write; BACKUP LOG
    /// WITH NORECOVERY (a tail-log backup) leaves the database RESTORING.
    fn commit_backup(
        &self,
        kind: BackupKind,
        db_name: &str,
        header: &BackupHeader,
        set: &Settings,
        device: &str,
    ) -> Result<(), ServerMessage> {
        let mut st = lock(&self.state);
        crate::sqlsim::engine::msdb::record_backup(&mut st, header, device);
        let Some(db) = st.database_mut(db_name) else {
            return self.persist(&st);
        };
        match kind {
            BackupKind::Database if !header.is_copy_only => {
                db.last_full_backup_lsn = Some(header.checkpoint_lsn);
                if db.log_chain_lsn.is_none() && db.recovery_model != RecoveryModel::Simple {
                    db.log_chain_lsn = Some(header.first_lsn);
                }
            }
            BackupKind::Log => {
                if !header.is_copy_only {
                    db.log_chain_lsn = Some(header.last_lsn);
                }
                if set.has("NORECOVERY") {
                    db.state = DbState::Restoring;
                }
            }
            _ => {}
        }
        self.persist(&st)
    }
}

/// The media header the new file starts with and, for NOINIT onto an existing media set, how
/// many sets it already holds (the new one is appended after them).
async fn media_for(
    local: &Path,
    device: &str,
    set: &Settings,
) -> Result<(MediaHeader, Option<usize>), ServerMessage> {
    if set.has("FORMAT") {
        return Ok((MediaHeader::new(), None));
    }
    let init = set.has("INIT");
    match format::read_media(local).await {
        Ok(m) if init => Ok((m.media, None)),
        Ok(m) if m.complete => Ok((m.media, Some(m.sets.len()))),
        // No file yet, or one that cannot be opened: a new media set (the write then reports
        // why it cannot create the file, 3201).
        Err(ReadError::Open(_)) => Ok((MediaHeader::new(), None)),
        // INIT over a file that holds no readable media header starts a new one.
        Err(_) if init => Ok((MediaHeader::new(), None)),
        _ => Err(errors::media_end_malformed(device)),
    }
}

/// Where a backup to `local` is written until it is complete: beside it, with a name no reader
/// takes for a backup file (`*.bak` / `*.trn` patterns and log shipping's
/// `<db>_yyyymmddhhmmss.trn` never match it), unique per backup set.
fn writing_path(local: &Path, backup_set_guid: &str) -> PathBuf {
    let name = local
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    local.with_file_name(format!("{name}.{backup_set_guid}.writing"))
}
