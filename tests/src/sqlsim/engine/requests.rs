//! The requests in flight, one per session at most, as `sys.dm_exec_requests` shows them. A
//! statement registers itself when it starts; BACKUP and RESTORE update `percent_complete` as they
//! copy data, so another connection can watch a long backup move (SQL Server reports progress for
//! exactly these commands and 0 for the others).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::lock;
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::sql::ast::{BackupKind, RestoreKind, Statement};

/// One running request.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// The session running it.
    pub spid: u16,
    /// `command` as SQL Server names it (`SELECT`, `BACKUP DATABASE`, `RESTORE LOG`, …).
    pub command: String,
    /// Database the session was in when the request started.
    pub database: String,
    /// When it started.
    pub start_time: Timestamp,
    /// Progress of BACKUP / RESTORE, 0 to 100.
    pub percent_complete: f32,
}

/// The registry.
#[derive(Default)]
pub struct Requests {
    running: Mutex<BTreeMap<u16, RequestInfo>>,
}

impl Requests {
    /// Registers (or replaces) the session's request.
    pub fn start(&self, spid: u16, command: &str, database: &str) {
        lock(&self.running).insert(
            spid,
            RequestInfo {
                spid,
                command: command.to_string(),
                database: database.to_string(),
                start_time: Timestamp::now(),
                percent_complete: 0.0,
            },
        );
    }

    /// Updates the progress of the session's request.
    pub fn progress(&self, spid: u16, percent: f32) {
        if let Some(r) = lock(&self.running).get_mut(&spid) {
            r.percent_complete = percent.clamp(0.0, 100.0);
        }
    }

    /// The session's request ended.
    pub fn finish(&self, spid: u16) {
        lock(&self.running).remove(&spid);
    }

    /// Copies of all requests, by session id.
    pub fn snapshot(&self) -> Vec<RequestInfo> {
        lock(&self.running).values().cloned().collect()
    }
}

/// `sys.dm_exec_requests.command` for a statement.
pub fn command_of(stmt: &Statement) -> &'static str {
    match stmt {
        Statement::Select(_) => "SELECT",
        Statement::Insert(_) => "INSERT",
        Statement::CreateDatabase(_) => "CREATE DATABASE",
        Statement::DropDatabase { .. } => "DROP DATABASE",
        Statement::AlterDatabase { .. } => "ALTER DATABASE",
        Statement::Kill(_) => "KILL",
        Statement::Backup(b) => match b.kind {
            BackupKind::Database => "BACKUP DATABASE",
            BackupKind::Log => "BACKUP LOG",
        },
        Statement::Restore(r) => match r.kind {
            RestoreKind::Database => "RESTORE DATABASE",
            RestoreKind::Log => "RESTORE LOG",
            RestoreKind::VerifyOnly => "RESTORE VERIFYONLY",
            RestoreKind::HeaderOnly => "RESTORE HEADERONLY",
            RestoreKind::FileListOnly => "RESTORE FILELISTONLY",
        },
        Statement::Exec { .. } | Statement::ExecString(_) => "EXECUTE",
        Statement::BeginTran => "BEGIN TRANSACTION",
        Statement::Commit => "COMMIT TRANSACTION",
        Statement::Rollback => "ROLLBACK TRANSACTION",
        Statement::Use(_) | Statement::SetOption(_) => "SET OPTION ON",
        Statement::Declare(_) | Statement::SetVariable { .. } => "DECLARE",
        Statement::If { .. } | Statement::Block(_) => "COND WITH",
    }
}
