//! The typed operation catalogue as the agent receives it: every field validated on receipt, so
//! the executors only ever see well-formed database names, FQDNs, paths and enums. Path *access*
//! (inside the configured roots, no symlink escape) is the files backend's check; here a path is
//! only refused for being empty, too long or containing control characters.

use crate::identity::validate_name;
use crate::model::logship::{JobName, LogShippingPrimary, LogShippingSecondary};
use crate::model::{DatabaseName, ProtocolError};
use crate::pb;

/// A path as sent by the coordinator (checked for shape only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathText(String);

impl PathText {
    /// Validates shape: 1 to 1024 characters, no control characters.
    pub fn new(field: &'static str, s: String) -> Result<Self, ProtocolError> {
        if s.is_empty() || s.len() > 1024 || s.chars().any(char::is_control) {
            return Err(ProtocolError::Invalid {
                field,
                reason: format!(
                    "'{}' must be 1 to 1024 characters without control characters",
                    s.escape_default()
                ),
            });
        }
        Ok(PathText(s))
    }

    /// The path text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A fully qualified host name (pool or server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fqdn(String);

impl Fqdn {
    /// Validates: a certificate-style name with at least one dot, lower-cased.
    pub fn new(field: &'static str, s: String) -> Result<Self, ProtocolError> {
        if validate_name(&s).is_err() || !s.contains('.') {
            return Err(ProtocolError::Invalid {
                field,
                reason: format!(
                    "'{}' is not a fully qualified domain name",
                    s.escape_default()
                ),
            });
        }
        Ok(Fqdn(s.to_ascii_lowercase()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Pool state of Set-/Get-CsPersistentChatState.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolStateValue {
    /// The pool uses its primary databases.
    Normal,
    /// The pool uses the backup databases.
    FailedOver,
}

/// How to change the active-server list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveServers {
    /// `@{Replace=...}`.
    Replace(Vec<Fqdn>),
    /// `@{Add=...}`.
    Add(Vec<Fqdn>),
    /// `@{Remove=...}`.
    Remove(Vec<Fqdn>),
    /// `$null`.
    Clear,
}

/// How a restore leaves the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Online, ready to use.
    Recovery,
    /// RESTORING: more backups to apply.
    NoRecovery,
    /// Read-only between restores, with this undo file.
    Standby(PathText),
}

/// A typed operation (DESIGN §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Dispatcher round trip.
    Ping,
    /// Version, edition, default paths, services.
    DescribeInstance,
    /// `sys.databases` rows for the names.
    DatabaseState(Vec<DatabaseName>),
    /// `sys.database_mirroring` rows for the names.
    MirroringState(Vec<DatabaseName>),
    /// `ALTER DATABASE … SET PARTNER OFF`.
    RemoveMirroring(DatabaseName),
    /// Sessions using the database.
    ListSessions(DatabaseName),
    /// End sessions in the database (optionally only those of some programs).
    KillSessions {
        /// Database.
        database: DatabaseName,
        /// Program names to end; empty = every session but ours.
        program_names: Vec<String>,
    },
    /// Full backup to a new file.
    BackupDatabase {
        /// Database.
        database: DatabaseName,
        /// Target file (must not exist).
        file: PathText,
        /// COPY_ONLY.
        copy_only: bool,
        /// COMPRESSION.
        compression: bool,
        /// Backup set name (≤ 128).
        name: String,
        /// Description (≤ 255).
        description: String,
    },
    /// Log backup to a new file.
    BackupLog {
        /// Database.
        database: DatabaseName,
        /// Target file.
        file: PathText,
    },
    /// HEADERONLY, then VERIFYONLY (CHECKSUM only when the set has checksums) + FILELISTONLY.
    VerifyBackup(PathText),
    /// HEADERONLY only (reading a log shipping `.trn`: no CHECKSUM, no full read).
    ReadBackupHeader(PathText),
    /// RESTORE DATABASE.
    RestoreDatabase {
        /// Database.
        database: DatabaseName,
        /// Backup file.
        file: PathText,
        /// End state.
        recovery: Recovery,
        /// REPLACE.
        replace: bool,
        /// Required SHA-256 of the file.
        expected_sha256: Option<String>,
    },
    /// RESTORE LOG.
    RestoreLog {
        /// Database.
        database: DatabaseName,
        /// Log backup file.
        file: PathText,
        /// End state.
        recovery: Recovery,
        /// Required SHA-256 of the file.
        expected_sha256: Option<String>,
    },
    /// RESTORE DATABASE … WITH RECOVERY.
    RecoverDatabase(DatabaseName),
    /// ALTER DATABASE … SET READ_ONLY (true) or READ_WRITE (false), ending other sessions.
    SetReadOnly {
        /// Database.
        database: DatabaseName,
        /// The wanted state.
        read_only: bool,
    },
    /// Monitor rows and this database's log shipping configuration.
    LogShippingStatus(DatabaseName),
    /// Make the database a log shipping primary.
    SetupLogShippingPrimary(Box<LogShippingPrimary>),
    /// Make the (RESTORING) database a log shipping secondary.
    SetupLogShippingSecondary(Box<LogShippingSecondary>),
    /// Remove the primary side (its secondaries first).
    RemoveLogShippingPrimary(DatabaseName),
    /// Remove the secondary side.
    RemoveLogShippingSecondary(DatabaseName),
    /// `sp_start_job` by name.
    RunJob(JobName),
    /// The newest outcome of a job after a history mark, and whether it runs.
    JobOutcome {
        /// The job.
        job_name: JobName,
        /// Outcomes with a higher instance_id only.
        after_instance_id: u64,
    },
    /// A one-off CmdExec job proving the Agent account can read and write folders.
    CheckAgentAccess {
        /// Folder to list.
        read_folder: PathText,
        /// Folder to write a probe file in.
        write_folder: PathText,
        /// Seconds to wait for the job (1..=600).
        timeout_seconds: u32,
    },
    /// A probe BACKUP of `model` proving the Database Engine's service account can write a
    /// folder (the share FB-3 and FB-5 back up to).
    CheckEngineShareWrite {
        /// Folder to write the probe backup in.
        directory: PathText,
    },
    /// File metadata.
    FileStat(PathText),
    /// SHA-256 of a file.
    FileChecksum(PathText),
    /// Files in a directory matching a pattern.
    FileList {
        /// Directory.
        directory: PathText,
        /// `*`/`?` pattern; empty = all.
        pattern: String,
    },
    /// Resumable, verified copy.
    FileCopy {
        /// Source file.
        source: PathText,
        /// Destination file.
        destination: PathText,
        /// Required SHA-256 (lower-case hex) of the source, if known.
        expected_sha256: Option<String>,
    },
    /// Delete one file.
    FileDelete(PathText),
    /// Free space on the volume holding the path.
    FreeSpace(PathText),
    /// Get-CsPersistentChatState for the pool.
    PoolState(Fqdn),
    /// Set-CsPersistentChatState.
    SetPoolState(Fqdn, PoolStateValue),
    /// Set-CsPersistentChatActiveServer.
    SetActiveServers(Fqdn, ActiveServers),
    /// The pool's servers and active list.
    PoolServers(Fqdn),
    /// TCP connect latency to `host:port`.
    TcpLatency {
        /// `host:port`.
        endpoint: String,
        /// 1..=20 samples.
        samples: u32,
    },
}

impl Operation {
    /// Short name for logs and the journal.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Ping => "ping",
            Operation::DescribeInstance => "describe_instance",
            Operation::DatabaseState(_) => "database_state",
            Operation::MirroringState(_) => "mirroring_state",
            Operation::RemoveMirroring(_) => "remove_mirroring",
            Operation::ListSessions(_) => "list_sessions",
            Operation::KillSessions { .. } => "kill_sessions",
            Operation::BackupDatabase { .. } => "backup_database",
            Operation::BackupLog { .. } => "backup_log",
            Operation::VerifyBackup(_) => "verify_backup",
            Operation::ReadBackupHeader(_) => "read_backup_header",
            Operation::RestoreDatabase { .. } => "restore_database",
            Operation::RestoreLog { .. } => "restore_log",
            Operation::RecoverDatabase(_) => "recover_database",
            Operation::SetReadOnly { .. } => "set_read_only",
            Operation::LogShippingStatus(_) => "log_shipping_status",
            Operation::SetupLogShippingPrimary(_) => "setup_log_shipping_primary",
            Operation::SetupLogShippingSecondary(_) => "setup_log_shipping_secondary",
            Operation::RemoveLogShippingPrimary(_) => "remove_log_shipping_primary",
            Operation::RemoveLogShippingSecondary(_) => "remove_log_shipping_secondary",
            Operation::RunJob(_) => "run_job",
            Operation::JobOutcome { .. } => "job_outcome",
            Operation::CheckAgentAccess { .. } => "check_agent_access",
            Operation::CheckEngineShareWrite { .. } => "check_engine_share_write",
            Operation::FileStat(_) => "file_stat",
            Operation::FileChecksum(_) => "file_checksum",
            Operation::FileList { .. } => "file_list",
            Operation::FileCopy { .. } => "file_copy",
            Operation::FileDelete(_) => "file_delete",
            Operation::FreeSpace(_) => "free_space",
            Operation::PoolState(_) => "pool_state",
            Operation::SetPoolState(..) => "set_pool_state",
            Operation::SetActiveServers(..) => "set_active_servers",
            Operation::PoolServers(_) => "pool_servers",
            Operation::TcpLatency { .. } => "tcp_latency",
        }
    }

    /// The backend an operation needs ("sql", "files", "lync", "host"), or `None` for Ping.
    pub fn capability(&self) -> Option<&'static str> {
        match self {
            Operation::Ping => None,
            Operation::DescribeInstance
            | Operation::DatabaseState(_)
            | Operation::MirroringState(_)
            | Operation::RemoveMirroring(_)
            | Operation::ListSessions(_)
            | Operation::KillSessions { .. }
            | Operation::BackupDatabase { .. }
            | Operation::BackupLog { .. }
            | Operation::VerifyBackup(_)
            | Operation::ReadBackupHeader(_)
            | Operation::RestoreDatabase { .. }
            | Operation::RestoreLog { .. }
            | Operation::RecoverDatabase(_)
            | Operation::SetReadOnly { .. }
            | Operation::LogShippingStatus(_)
            | Operation::SetupLogShippingPrimary(_)
            | Operation::SetupLogShippingSecondary(_)
            | Operation::RemoveLogShippingPrimary(_)
            | Operation::RemoveLogShippingSecondary(_)
            | Operation::RunJob(_)
            | Operation::JobOutcome { .. }
            | Operation::CheckAgentAccess { .. }
            | Operation::CheckEngineShareWrite { .. } => Some("sql"),
            Operation::FileStat(_)
            | Operation::FileChecksum(_)
            | Operation::FileList { .. }
            | Operation::FileCopy { .. }
            | Operation::FileDelete(_)
            | Operation::FreeSpace(_) => Some("files"),
            Operation::PoolState(_)
            | Operation::SetPoolState(..)
            | Operation::SetActiveServers(..)
            | Operation::PoolServers(_) => Some("lync"),
            Operation::TcpLatency { .. } => Some("host"),
        }
    }
}

fn db(field: &'static str, s: String) -> Result<DatabaseName, ProtocolError> {
    DatabaseName::new(s).map_err(|reason| ProtocolError::Invalid { field, reason })
}

fn dbs(field: &'static str, v: Vec<String>) -> Result<Vec<DatabaseName>, ProtocolError> {
    if v.is_empty() || v.len() > 16 {
        return Err(ProtocolError::Invalid {
            field,
            reason: "give 1 to 16 database names".into(),
        });
    }
    v.into_iter().map(|s| db(field, s)).collect()
}

fn fqdns(field: &'static str, v: Vec<String>) -> Result<Vec<Fqdn>, ProtocolError> {
    if v.is_empty() || v.len() > 64 {
        return Err(ProtocolError::Invalid {
            field,
            reason: "give 1 to 64 servers".into(),
        });
    }
    v.into_iter().map(|s| Fqdn::new(field, s)).collect()
}

fn sha(field: &'static str, s: String) -> Result<Option<String>, ProtocolError> {
    if s.is_empty() {
        Ok(None)
    } else if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(Some(s.to_ascii_lowercase()))
    } else {
        Err(ProtocolError::Invalid {
            field,
            reason: "must be 64 hexadecimal characters or empty".into(),
        })
    }
}

fn recovery(mode: i32, standby: String) -> Result<Recovery, ProtocolError> {
    match pb::RecoveryMode::try_from(mode) {
        Ok(pb::RecoveryMode::Recovery) => Ok(Recovery::Recovery),
        Ok(pb::RecoveryMode::Norecovery) => Ok(Recovery::NoRecovery),
        Ok(pb::RecoveryMode::Standby) => {
            Ok(Recovery::Standby(PathText::new("standby_file", standby)?))
        }
        _ => Err(ProtocolError::Invalid {
            field: "recovery",
            reason: format!("{mode} is not RECOVERY, NORECOVERY or STANDBY"),
        }),
    }
}

fn label(field: &'static str, s: String, max: usize) -> Result<String, ProtocolError> {
    if s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(ProtocolError::Invalid {
            field,
            reason: format!("at most {max} characters without control characters"),
        });
    }
    Ok(s)
}

fn pool_state(v: i32) -> Result<PoolStateValue, ProtocolError> {
    match pb::PoolStateValue::try_from(v) {
        Ok(pb::PoolStateValue::Normal) => Ok(PoolStateValue::Normal),
        Ok(pb::PoolStateValue::FailedOver) => Ok(PoolStateValue::FailedOver),
        _ => Err(ProtocolError::Invalid {
            field: "state",
            reason: format!("{v} is not Normal or FailedOver"),
        }),
    }
}

impl TryFrom<pb::operation::Kind> for Operation {
    type Error = ProtocolError;

    fn try_from(kind: pb::operation::Kind) -> Result<Self, Self::Error> {
        use pb::operation::Kind as K;
        Ok(match kind {
            K::Ping(_) => Operation::Ping,
            K::DescribeInstance(_) => Operation::DescribeInstance,
            K::DatabaseState(o) => Operation::DatabaseState(dbs("databases", o.databases)?),
            K::MirroringState(o) => Operation::MirroringState(dbs("databases", o.databases)?),
            K::RemoveMirroring(o) => Operation::RemoveMirroring(db("database", o.database)?),
            K::ListSessions(o) => Operation::ListSessions(db("database", o.database)?),
            K::KillSessions(o) => {
                for p in &o.program_names {
                    if p.is_empty() || p.len() > 128 || p.chars().any(char::is_control) {
                        return Err(ProtocolError::Invalid {
                            field: "program_names",
                            reason: format!(
                                "'{}' must be 1 to 128 characters without control characters",
                                p.escape_default()
                            ),
                        });
                    }
                }
                Operation::KillSessions {
                    database: db("database", o.database)?,
                    program_names: o.program_names,
                }
            }
            K::BackupDatabase(o) => Operation::BackupDatabase {
                database: db("database", o.database)?,
                file: PathText::new("file", o.file)?,
                copy_only: o.copy_only,
                compression: o.compression,
                name: label("name", o.name, 128)?,
                description: label("description", o.description, 255)?,
            },
            K::BackupLog(o) => Operation::BackupLog {
                database: db("database", o.database)?,
                file: PathText::new("file", o.file)?,
            },
            K::VerifyBackup(o) => Operation::VerifyBackup(PathText::new("file", o.file)?),
            K::ReadBackupHeader(o) => Operation::ReadBackupHeader(PathText::new("file", o.file)?),
            K::RestoreDatabase(o) => Operation::RestoreDatabase {
                database: db("database", o.database)?,
                file: PathText::new("file", o.file)?,
                recovery: recovery(o.recovery, o.standby_file)?,
                replace: o.replace,
                expected_sha256: sha("expected_sha256", o.expected_sha256)?,
            },
            K::RestoreLog(o) => Operation::RestoreLog {
                database: db("database", o.database)?,
                file: PathText::new("file", o.file)?,
                recovery: recovery(o.recovery, o.standby_file)?,
                expected_sha256: sha("expected_sha256", o.expected_sha256)?,
            },
            K::RecoverDatabase(o) => Operation::RecoverDatabase(db("database", o.database)?),
            K::SetReadOnly(o) => Operation::SetReadOnly {
                database: db("database", o.database)?,
                read_only: o.read_only,
            },
            K::LogShippingStatus(o) => Operation::LogShippingStatus(db("database", o.database)?),
            K::SetupLogShippingPrimary(o) => {
                Operation::SetupLogShippingPrimary(Box::new(o.try_into()?))
            }
            K::SetupLogShippingSecondary(o) => {
                Operation::SetupLogShippingSecondary(Box::new(o.try_into()?))
            }
            K::RemoveLogShippingPrimary(o) => {
                Operation::RemoveLogShippingPrimary(db("database", o.database)?)
            }
            K::RemoveLogShippingSecondary(o) => {
                Operation::RemoveLogShippingSecondary(db("database", o.database)?)
            }
            K::RunJob(o) => Operation::RunJob(JobName::new("job_name", o.job_name)?),
            K::JobOutcome(o) => Operation::JobOutcome {
                job_name: JobName::new("job_name", o.job_name)?,
                after_instance_id: o.after_instance_id,
            },
            K::CheckAgentAccess(o) => {
                let timeout_seconds = if o.timeout_seconds == 0 {
                    60
                } else {
                    o.timeout_seconds
                };
                if timeout_seconds > 600 {
                    return Err(ProtocolError::Invalid {
                        field: "timeout_seconds",
                        reason: "at most 600".into(),
                    });
                }
                Operation::CheckAgentAccess {
                    read_folder: PathText::new("read_folder", o.read_folder)?,
                    write_folder: PathText::new("write_folder", o.write_folder)?,
                    timeout_seconds,
                }
            }
            K::CheckEngineShareWrite(o) => Operation::CheckEngineShareWrite {
                directory: PathText::new("directory", o.directory)?,
            },
            K::FileStat(o) => Operation::FileStat(PathText::new("path", o.path)?),
            K::FileChecksum(o) => Operation::FileChecksum(PathText::new("path", o.path)?),
            K::FileList(o) => {
                if o.pattern.len() > 256
                    || o.pattern
                        .chars()
                        .any(|c| c.is_control() || c == '/' || c == '\\')
                {
                    return Err(ProtocolError::Invalid {
                        field: "pattern",
                        reason: "a file-name pattern of at most 256 characters, without separators"
                            .into(),
                    });
                }
                Operation::FileList {
                    directory: PathText::new("directory", o.directory)?,
                    pattern: o.pattern,
                }
            }
            K::FileCopy(o) => {
                let expected = if o.expected_sha256.is_empty() {
                    None
                } else if o.expected_sha256.len() == 64
                    && o.expected_sha256.chars().all(|c| c.is_ascii_hexdigit())
                {
                    Some(o.expected_sha256.to_ascii_lowercase())
                } else {
                    return Err(ProtocolError::Invalid {
                        field: "expected_sha256",
                        reason: "must be 64 hexadecimal characters or empty".into(),
                    });
                };
                Operation::FileCopy {
                    source: PathText::new("source", o.source)?,
                    destination: PathText::new("destination", o.destination)?,
                    expected_sha256: expected,
                }
            }
            K::FileDelete(o) => Operation::FileDelete(PathText::new("path", o.path)?),
            K::FreeSpace(o) => Operation::FreeSpace(PathText::new("path", o.path)?),
            K::PoolState(o) => Operation::PoolState(Fqdn::new("pool_fqdn", o.pool_fqdn)?),
            K::SetPoolState(o) => {
                Operation::SetPoolState(Fqdn::new("pool_fqdn", o.pool_fqdn)?, pool_state(o.state)?)
            }
            K::SetActiveServers(o) => {
                let pool = Fqdn::new("pool_fqdn", o.pool_fqdn)?;
                let change = match pb::ActiveServersChange::try_from(o.change) {
                    Ok(pb::ActiveServersChange::Replace) => {
                        ActiveServers::Replace(fqdns("servers", o.servers)?)
                    }
                    Ok(pb::ActiveServersChange::Add) => {
                        ActiveServers::Add(fqdns("servers", o.servers)?)
                    }
                    Ok(pb::ActiveServersChange::Remove) => {
                        ActiveServers::Remove(fqdns("servers", o.servers)?)
                    }
                    Ok(pb::ActiveServersChange::Clear) if o.servers.is_empty() => {
                        ActiveServers::Clear
                    }
                    Ok(pb::ActiveServersChange::Clear) => {
                        return Err(ProtocolError::Invalid {
                            field: "servers",
                            reason: "must be empty when clearing the list".into(),
                        });
                    }
                    _ => {
                        return Err(ProtocolError::Invalid {
                            field: "change",
                            reason: format!("{} is not Replace, Add, Remove or Clear", o.change),
                        });
                    }
                };
                Operation::SetActiveServers(pool, change)
            }
            K::PoolServers(o) => Operation::PoolServers(Fqdn::new("pool_fqdn", o.pool_fqdn)?),
            K::TcpLatency(o) => {
                let ok = o.endpoint.rsplit_once(':').is_some_and(|(h, p)| {
                    !h.is_empty()
                        && h.len() <= 253
                        && p.parse::<u16>().is_ok_and(|p| p > 0)
                        && !h.chars().any(char::is_control)
                });
                if !ok {
                    return Err(ProtocolError::Invalid {
                        field: "endpoint",
                        reason: format!("'{}' is not host:port", o.endpoint.escape_default()),
                    });
                }
                let samples = if o.samples == 0 { 3 } else { o.samples };
                if samples > 20 {
                    return Err(ProtocolError::Invalid {
                        field: "samples",
                        reason: "at most 20".into(),
                    });
                }
                Operation::TcpLatency {
                    endpoint: o.endpoint,
                    samples,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused() {
        use pb::operation::Kind as K;
        let bad = [
            K::RemoveMirroring(pb::RemoveMirroring {
                database: "mgc]; DROP DATABASE x --".into(),
            }),
            K::DatabaseState(pb::DatabaseState { databases: vec![] }),
            K::FileStat(pb::FileStat {
                path: "a\0b".into(),
            }),
            K::FileList(pb::FileList {
                directory: "/x".into(),
                pattern: "../*".into(),
            }),
            K::FileCopy(pb::FileCopy {
                source: "/a".into(),
                destination: "/b".into(),
                expected_sha256: "xyz".into(),
            }),
            K::PoolState(pb::PoolState {
                pool_fqdn: "pool'; Remove-Item x".into(),
            }),
            K::SetActiveServers(pb::SetActiveServers {
                pool_fqdn: "p.x.com".into(),
                change: 4,
                servers: vec!["a.x.com".into()],
            }),
            K::SetActiveServers(pb::SetActiveServers {
                pool_fqdn: "p.x.com".into(),
                change: 9,
                servers: vec![],
            }),
            K::SetPoolState(pb::SetPoolState {
                pool_fqdn: "p.x.com".into(),
                state: 0,
            }),
            K::TcpLatency(pb::TcpLatency {
                endpoint: "host".into(),
                samples: 1,
            }),
            K::CheckEngineShareWrite(pb::CheckEngineShareWrite {
                directory: String::new(),
            }),
            K::CheckEngineShareWrite(pb::CheckEngineShareWrite {
                directory: "\\\\fs\\ls\r\nx".into(),
            }),
        ];
        for k in bad {
            assert!(Operation::try_from(k.clone()).is_err(), "{k:?}");
        }
        let ok = Operation::try_from(K::SetActiveServers(pb::SetActiveServers {
            pool_fqdn: "P.X.com".into(),
            change: 4,
            servers: vec![],
        }))
        .unwrap();
        assert_eq!(
            ok,
            Operation::SetActiveServers(Fqdn("p.x.com".into()), ActiveServers::Clear)
        );
        assert_eq!(ok.capability(), Some("lync"));
    }
}
