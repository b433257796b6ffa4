//! RESTORE DATABASE (from a full backup, or `WITH RECOVERY` alone) and RESTORE LOG. The order of
//! checks follows SQL Server: no user transaction (3021), the device and its media (3201 / 3241),
//! the backup set `FILE = n` (4038), the set itself (3169 written by a newer release, 3135 wrong
//! kind, 3187 `CHECKSUM` asked of a set without checksums), then the target (3104 mirroring
//! partner, 3101 in use, 3154 other database, 3159 tail of the log, 3117 already recovered,
//! 4305 / 4326 LSN gap or overlap), then where the files go (`plan`: 5133 / 1834 → 3156 → 3119),
//! then the payload (3183). Nothing changes before every check has passed, so a refused restore
//! leaves the database exactly as it was.

use std::path::Path;

use super::format::{self, BackupContent, BackupHeader, ReadError, SetInfo};
use super::{
    Refusal, Settings, outside_transaction, pages, plan, stats_messages, terminate, version,
};
use crate::sqlsim::engine::eval::Params;
use crate::sqlsim::engine::files::cannot_open_device;
use crate::sqlsim::engine::state::{Database, DbFile, DbState, RecoveryModel, new_guid};
use crate::sqlsim::engine::{Engine, ResultItem, SessionInfo, StatementResult, errors, lock};
use crate::sqlsim::sql::ast::{Restore, RestoreKind};
use crate::sqlsim::tokens::ServerMessage;

/// Exit code of the exit-mid-restore fault.
pub const FAULT_EXIT_CODE: i32 = 75;

/// How a restore leaves the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    Recovery,
    NoRecovery,
    Standby,
}

fn finish_of(set: &Settings) -> Finish {
    if set.standby.is_some() {
        Finish::Standby
    } else if set.has("NORECOVERY") {
        Finish::NoRecovery
    } else {
        Finish::Recovery
    }
}

fn apply_finish(db: &mut Database, finish: Finish) {
    let (state, standby) = match finish {
        Finish::Recovery => (DbState::Online, false),
        Finish::NoRecovery => (DbState::Restoring, false),
        Finish::Standby => (DbState::Online, true),
    };
    db.state = state;
    db.is_in_standby = standby;
    db.is_read_only = standby;
}

/// Maps a read failure to SQL Server's error.
pub(super) fn read_error(e: ReadError, device: &str, local: &Path, db: &str) -> ServerMessage {
    match e {
        ReadError::Open(io) => cannot_open_device(device, &io, local),
        ReadError::Malformed => errors::media_malformed(device),
        ReadError::Damaged | ReadError::Halted => errors::page_error(db),
    }
}

impl Engine {
    /// RESTORE DATABASE | LOG | VERIFYONLY | HEADERONLY | FILELISTONLY.
    pub(in crate::sqlsim::engine) async fn restore(
        &self,
        r: &Restore,
        session: &SessionInfo,
        params: &Params,
    ) -> StatementResult {
        let verb = r.kind.verb();
        let result = match r.kind {
            RestoreKind::Database | RestoreKind::Log if r.disks.is_empty() => {
                self.recover_only(r, session, params).map_err(Refusal::from)
            }
            RestoreKind::Database | RestoreKind::Log => self.restore_from(r, session, params).await,
            _ => self
                .inspect(r, session, params)
                .await
                .map_err(Refusal::from),
        };
        result.unwrap_or_else(|m| terminate(verb, m))
    }

    /// `RESTORE DATABASE x WITH RECOVERY` (no device): bring a RESTORING or STANDBY database
    /// online.
    fn recover_only(
        &self,
        r: &Restore,
        session: &SessionInfo,
        params: &Params,
    ) -> Result<StatementResult, ServerMessage> {
        let name = self.database_arg(r, session, params)?;
        let set = self.settings(&r.options, session, params)?;
        outside_transaction(session)?;
        let started = tokio::time::Instant::now();
        let finish = finish_of(&set);
        let mut st = lock(&self.state);
        let db = st
            .database_mut(&name)
            .ok_or_else(|| errors::database_not_found(&name))?;
        if db.mirroring.is_some() {
            return Err(errors::restore_mirrored(&db.name));
        }
        if db.state == DbState::Online && !db.is_in_standby {
            return Err(errors::already_recovered());
        }
        apply_finish(db, finish);
        if finish == Finish::Recovery {
            // Recovery starts a new fork: the database leaves the restore sequence.
            db.database_guid = new_guid();
        }
        self.persist(&st)?;
        let verb = if r.kind == RestoreKind::Log {
            "RESTORE LOG"
        } else {
            "RESTORE DATABASE"
        };
        Ok(messages_result(vec![errors::backup_done(
            verb,
            0,
            started.elapsed().as_secs_f64(),
        )]))
    }

    fn database_arg(
        &self,
        r: &Restore,
        session: &SessionInfo,
        params: &Params,
    ) -> Result<String, ServerMessage> {
        match &r.database {
            Some(e) => self.eval_text(e, session, params),
            None => Err(errors::syntax_near("RESTORE")),
        }
    }

    /// RESTORE DATABASE | LOG … FROM DISK = ….
    async fn restore_from(
        &self,
        r: &Restore,
        session: &SessionInfo,
        params: &Params,
    ) -> Result<StatementResult, Refusal> {
        let name = self.database_arg(r, session, params)?;
        let device = match r.disks.first() {
            Some(d) => self.eval_text(d, session, params)?,
            None => return Err(errors::syntax_near("FROM").into()),
        };
        let set = self.settings(&r.options, session, params)?;
        outside_transaction(session)?;
        if let Some(n) = lock(&self.faults).take_failure("restore") {
            return Err(errors::injected(n, &device, &name).into());
        }
        let started = tokio::time::Instant::now();
        let local = self.options.paths.resolve(&device);
        let (position, SetInfo { header, offset }) =
            self.open_set(&device, &local, &set, &name).await?;
        let log = r.kind == RestoreKind::Log;
        self.check_readable(&header)?;
        match (log, header.backup_type) {
            (false, 1) | (true, 2) => {}
            (false, _) => return Err(errors::wrong_backup_kind(&device, "BACKUP LOG").into()),
            (true, _) => {
                return Err(errors::wrong_backup_kind(&device, "BACKUP DATABASE").into());
            }
        }
        if set.has("CHECKSUM") && !header.has_checksums {
            return Err(errors::no_backup_checksums().into());
        }
        self.check_target(&name, &header, &set, log, session)?;
        let files = plan::target_files(&header, &set.moves);
        if !log {
            let missing = plan::missing_folders(&self.options.paths, &files);
            plan::check(&lock(&self.state), &name, &files, &missing)?;
        }
        let exit = lock(&self.faults).take_exit();
        let pacing = lock(&self.faults).pacing("restore");
        let spid = session.spid;
        let content = match format::read_payload(&local, &header, offset, pacing, exit, |p| {
            self.requests.progress(spid, p)
        })
        .await
        {
            Ok(c) => c,
            Err(ReadError::Halted) => self.exit_mid_restore(&name, &header),
            Err(e) => return Err(read_error(e, &device, &local, &name).into()),
        };
        if let Some(standby) = &set.standby {
            let undo = self.options.paths.resolve(standby);
            std::fs::write(&undo, b"sqlsim standby undo file\n")
                .map_err(|e| cannot_open_device(standby, &e, &undo))?;
        }
        let finish = finish_of(&set);
        let target = {
            let mut st = lock(&self.state);
            let name = if log {
                self.apply_log(&mut st, &name, &header, content, finish)?
            } else {
                apply_full(&mut st, &name, &header, content, files, finish)
            };
            crate::sqlsim::engine::msdb::record_restore(&mut st, &name, &header, &device);
            self.persist(&st)?;
            name
        };
        let mut msgs = stats_messages(set.stats);
        let total = if log {
            let n = pages(header.payload_len);
            msgs.push(errors::pages_processed(
                n,
                &target,
                &logical(&header, 'L'),
                position,
            ));
            n
        } else {
            let data = pages(header.payload_len);
            msgs.push(errors::pages_processed(
                data,
                &target,
                &logical(&header, 'D'),
                position,
            ));
            msgs.push(errors::pages_processed(
                2,
                &target,
                &logical(&header, 'L'),
                position,
            ));
            data + 2
        };
        let verb = if log {
            "RESTORE LOG"
        } else {
            "RESTORE DATABASE"
        };
        msgs.push(errors::backup_done(
            verb,
            total,
            started.elapsed().as_secs_f64(),
        ));
        Ok(messages_result(msgs))
    }

    /// Opens the device and picks backup set `FILE = n` (set 1 without FILE): its position and
    /// the set. 3201 / 3241 when the device cannot be read, 4038 when it holds no set n.
    pub(super) async fn open_set(
        &self,
        device: &str,
        local: &Path,
        set: &Settings,
        db: &str,
    ) -> Result<(usize, SetInfo), ServerMessage> {
        let media = format::read_media(local)
            .await
            .map_err(|e| read_error(e, device, local, db))?;
        let n = set.position();
        let found = media
            .set(n)
            .cloned()
            .ok_or_else(|| errors::no_such_backup_set(n, device))?;
        Ok((n as usize, found))
    }

    /// Whether this server can read the set at all: 3169 when a newer release wrote it.
    pub(super) fn check_readable(&self, header: &BackupHeader) -> Result<(), ServerMessage> {
        let server = {
            let st = lock(&self.state);
            version::parse(&st.product_version).unwrap_or((13, 0, 6300))
        };
        version::check(header.software_version, server)
    }

    /// The target-side checks, before any data is read.
    fn check_target(
        &self,
        name: &str,
        header: &BackupHeader,
        set: &Settings,
        log: bool,
        session: &SessionInfo,
    ) -> Result<(), ServerMessage> {
        let mut users = self.others_in(name, session.spid);
        if session.database.eq_ignore_ascii_case(name) {
            users.push(session.spid);
        }
        let st = lock(&self.state);
        let Some(db) = st.database(name) else {
            return if log {
                Err(errors::database_not_found(name))
            } else {
                Ok(())
            };
        };
        if db.name.eq_ignore_ascii_case("tempdb") {
            return Err(errors::tempdb_backup());
        }
        if db.mirroring.is_some() {
            return Err(errors::restore_mirrored(&db.name));
        }
        if !users.is_empty() {
            return Err(errors::exclusive_access());
        }
        let replace = set.has("REPLACE");
        if log {
            if db.state == DbState::Online && !db.is_in_standby {
                return Err(errors::nothing_to_rollforward());
            }
            if db.family_guid != header.family_guid {
                return Err(errors::other_database(&db.name));
            }
            if header.first_lsn > db.last_lsn {
                return Err(errors::log_too_recent(header.first_lsn, db.last_lsn));
            }
            if header.last_lsn <= db.last_lsn {
                return Err(errors::log_too_early(header.last_lsn, db.last_lsn));
            }
            return Ok(());
        }
        if !replace {
            if db.family_guid != header.family_guid {
                return Err(errors::other_database(&db.name));
            }
            if db.state == DbState::Online
                && db.recovery_model != RecoveryModel::Simple
                && db.log_chain_lsn.is_some()
            {
                return Err(errors::tail_not_backed_up(&db.name));
            }
        }
        for (logical, _) in &set.moves {
            if !header
                .files
                .iter()
                .any(|f| f.logical_name.eq_ignore_ascii_case(logical))
            {
                return Err(errors::logical_file_unknown(logical, name));
            }
        }
        Ok(())
    }

    /// Applies a log backup's rows from the database's current LSN on; returns its name.
    fn apply_log(
        &self,
        st: &mut crate::sqlsim::engine::state::InstanceState,
        name: &str,
        header: &BackupHeader,
        content: BackupContent,
        finish: Finish,
    ) -> Result<String, ServerMessage> {
        let db = st
            .database_mut(name)
            .ok_or_else(|| errors::database_not_found(name))?;
        // Re-check under the lock: another session may have applied this log meanwhile.
        if header.first_lsn > db.last_lsn {
            return Err(errors::log_too_recent(header.first_lsn, db.last_lsn));
        }
        if header.last_lsn <= db.last_lsn {
            return Err(errors::log_too_early(header.last_lsn, db.last_lsn));
        }
        let from = db.last_lsn;
        db.messages.extend(
            content
                .rows
                .into_iter()
                .filter(|m| m.lsn >= from && m.lsn < header.last_lsn),
        );
        db.next_message_id = db.next_message_id.max(content.next_message_id);
        db.last_lsn = header.last_lsn;
        db.log_chain_lsn = Some(header.last_lsn);
        apply_finish(db, finish);
        Ok(db.name.clone())
    }

    /// The exit-mid-restore fault: leave the target RESTORING on disk, as a crash would, and
    /// end the process.
    fn exit_mid_restore(&self, name: &str, header: &BackupHeader) -> ! {
        tracing::warn!(
            database = name,
            "fault: exiting the process in the middle of a restore"
        );
        let mut st = lock(&self.state);
        if st.database(name).is_none() {
            let id = st.next_database_id;
            st.next_database_id += 1;
            let (data, logp) = (st.default_data_path.clone(), st.default_log_path.clone());
            let mut db = Database::new(name, id, &data, &logp, false);
            db.family_guid = header.family_guid.clone();
            st.databases.push(db);
        }
        if let Some(db) = st.database_mut(name) {
            db.state = DbState::Restoring;
        }
        if let Err(m) = self.persist(&st) {
            tracing::error!(
                "failed to save the state before the fault exit: {}",
                m.message
            );
        }
        std::process::exit(FAULT_EXIT_CODE)
    }
}

/// Replaces (or creates) the target with the full backup's contents and the planned `files`;
/// returns its name.
fn apply_full(
    st: &mut crate::sqlsim::engine::state::InstanceState,
    name: &str,
    header: &BackupHeader,
    content: BackupContent,
    files: Vec<DbFile>,
    finish: Finish,
) -> String {
    let (id, db_name) = match st.database(name) {
        Some(d) => (d.database_id, d.name.clone()),
        None => {
            let id = st.next_database_id;
            st.next_database_id += 1;
            (id, name.to_string())
        }
    };
    let (data, logp) = (st.default_data_path.clone(), st.default_log_path.clone());
    let mut db = Database::new(&db_name, id, &data, &logp, false);
    db.files = files;
    db.recovery_model = header.recovery_model;
    db.user_access = content.user_access;
    db.create_date = header.database_creation_date;
    db.last_lsn = header.last_lsn;
    db.next_message_id = content.next_message_id;
    db.messages = content.rows;
    db.family_guid = header.family_guid.clone();
    db.last_full_backup_lsn = Some(header.checkpoint_lsn);
    db.log_chain_lsn = (header.recovery_model != RecoveryModel::Simple).then_some(header.last_lsn);
    apply_finish(&mut db, finish);
    st.databases.retain(|d| d.database_id != id);
    st.databases.push(db);
    st.databases.sort_by_key(|d| d.database_id);
    db_name
}

/// The logical name of the backup's first file of a kind.
fn logical(header: &BackupHeader, kind: char) -> String {
    header
        .files
        .iter()
        .find(|f| f.kind == kind)
        .map_or_else(|| header.database_name.clone(), |f| f.logical_name.clone())
}

/// A successful statement that only sends INFO messages.
fn messages_result(msgs: Vec<ServerMessage>) -> StatementResult {
    StatementResult {
        items: msgs.into_iter().map(ResultItem::Message).collect(),
        ..StatementResult::done()
    }
}
