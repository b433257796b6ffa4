//! RESTORE VERIFYONLY, HEADERONLY and FILELISTONLY. HEADERONLY and FILELISTONLY read only the
//! headers (as SQL Server reads only the media and set headers), so they work on a set a newer
//! release wrote and inside a transaction (scripts run them through `INSERT … EXEC`); HEADERONLY
//! lists every set of the file (one row per `Position`) or, with `FILE = n`, set n. VERIFYONLY
//! reads set n (default 1) whole and checks the payload against its checksum, refusing what a
//! RESTORE would refuse before reading (3021, 4038, 3169, 3187). Column names and types are SQL Server 2016's
//! (pchat-dr.md §6.3): LSNs NUMERIC(25,0), dates DATETIME, BackupType SMALLINT, sizes
//! NUMERIC(20,0). `Type` of FILELISTONLY is CHAR(1) in SQL Server and NVARCHAR(1) here (sqlsim
//! has no CHAR type; clients read both as a string).

use super::format::{self, BackupHeader, SetInfo};
use super::restore::read_error;
use super::{outside_transaction, version};
use crate::sqlsim::engine::eval::Params;
use crate::sqlsim::engine::query::RowSet;
use crate::sqlsim::engine::{Engine, ResultItem, SessionInfo, StatementResult, errors, lock};
use crate::sqlsim::sql::ast::{Restore, RestoreKind};
use crate::sqlsim::tokens::{Column, ServerMessage};
use crate::sqlsim::types::{SqlType, Value, parse_guid};

fn nv(name: &str, n: u16) -> Column {
    Column::new(name, SqlType::NVarChar(Some(n)))
}

fn lsn_col(name: &str) -> Column {
    Column::new(name, SqlType::Numeric(25, 0))
}

fn lsn(v: u64) -> Value {
    Value::Numeric(v as i128, 0)
}

fn text(s: &str) -> Value {
    Value::Str(s.to_string())
}

fn opt_text(s: &Option<String>) -> Value {
    s.as_deref().map_or(Value::Null, text)
}

fn guid(s: &str) -> Value {
    parse_guid(s).map_or(Value::Null, Value::Guid)
}

impl Engine {
    /// The three inspection forms.
    pub(super) async fn inspect(
        &self,
        r: &Restore,
        session: &SessionInfo,
        params: &Params,
    ) -> Result<StatementResult, ServerMessage> {
        let device = match r.disks.first() {
            Some(d) => self.eval_text(d, session, params)?,
            None => return Err(errors::syntax_near("FROM")),
        };
        let set = self.settings(&r.options, session, params)?;
        let local = self.options.paths.resolve(&device);
        match r.kind {
            RestoreKind::HeaderOnly => {
                // Every set of the media, or only set n with FILE = n.
                let media = format::read_media(&local)
                    .await
                    .map_err(|e| read_error(e, &device, &local, ""))?;
                let sets: Vec<(usize, &SetInfo)> = match set.file {
                    Some(n) => {
                        let s = media
                            .set(n)
                            .ok_or_else(|| errors::no_such_backup_set(n, &device))?;
                        vec![(n as usize, s)]
                    }
                    None => media
                        .sets
                        .iter()
                        .enumerate()
                        .map(|(i, s)| (i + 1, s))
                        .collect(),
                };
                Ok(StatementResult::rows(header_only(&sets)))
            }
            RestoreKind::FileListOnly => {
                let (_, s) = self.open_set(&device, &local, &set, "").await?;
                Ok(StatementResult::rows(file_list_only(&s.header)))
            }
            _ => {
                outside_transaction(session)?;
                let (position, s) = self.open_set(&device, &local, &set, "").await?;
                self.check_readable(&s.header)?;
                if set.has("CHECKSUM") && !s.header.has_checksums {
                    return Err(errors::no_backup_checksums());
                }
                let pacing = lock(&self.faults).pacing("restore");
                let spid = session.spid;
                format::read_payload(&local, &s.header, s.offset, pacing, false, |p| {
                    self.requests.progress(spid, p)
                })
                .await
                .map_err(|e| read_error(e, &device, &local, &s.header.database_name))?;
                Ok(StatementResult {
                    items: vec![ResultItem::Message(errors::backup_set_valid(position))],
                    ..StatementResult::done()
                })
            }
        }
    }
}

/// HEADERONLY: one row per backup set, with its position on the device.
fn header_only(sets: &[(usize, &SetInfo)]) -> RowSet {
    let mut columns = Vec::new();
    let rows = sets
        .iter()
        .map(|(position, s)| {
            let (cols, row): (Vec<_>, Vec<_>) =
                header_row(&s.header, *position).into_iter().unzip();
            columns = cols;
            row
        })
        .collect();
    RowSet { columns, rows }
}

/// One HEADERONLY row: (column, value) pairs.
fn header_row(h: &BackupHeader, position: usize) -> Vec<(Column, Value)> {
    let size = h.payload_len;
    let (major, minor, build) = h.software_version;
    let recovery = h.recovery_model.desc();
    let cols_vals: Vec<(Column, Value)> = vec![
        (nv("BackupName", 128), opt_text(&h.backup_name)),
        (nv("BackupDescription", 255), opt_text(&h.description)),
        (
            Column::new("BackupType", SqlType::SmallInt),
            Value::Int(h.backup_type as i64),
        ),
        (
            Column::new("ExpirationDate", SqlType::DateTime),
            Value::Null,
        ),
        (
            Column::new("Compressed", SqlType::TinyInt),
            Value::Int(h.compressed as i64),
        ),
        (
            Column::new("Position", SqlType::SmallInt),
            Value::Int(position as i64),
        ),
        (Column::new("DeviceType", SqlType::TinyInt), Value::Int(2)),
        (nv("UserName", 128), text(&h.user_name)),
        (nv("ServerName", 128), text(&h.server_name)),
        (nv("DatabaseName", 128), text(&h.database_name)),
        (
            Column::new("DatabaseVersion", SqlType::Int),
            Value::Int(version::database_version(major)),
        ),
        (
            Column::new("DatabaseCreationDate", SqlType::DateTime),
            Value::DateTime(h.database_creation_date),
        ),
        (
            Column::new("BackupSize", SqlType::Numeric(20, 0)),
            Value::Numeric(size as i128, 0),
        ),
        (lsn_col("FirstLSN"), lsn(h.first_lsn)),
        (lsn_col("LastLSN"), lsn(h.last_lsn)),
        (lsn_col("CheckpointLSN"), lsn(h.checkpoint_lsn)),
        (lsn_col("DatabaseBackupLSN"), lsn(h.database_backup_lsn)),
        // As stored: the writing server's local time (format.rs), not this server's.
        (
            Column::new("BackupStartDate", SqlType::DateTime),
            Value::DateTime(h.start),
        ),
        (
            Column::new("BackupFinishDate", SqlType::DateTime),
            Value::DateTime(h.finish),
        ),
        (Column::new("SortOrder", SqlType::SmallInt), Value::Int(52)),
        (Column::new("CodePage", SqlType::SmallInt), Value::Int(0)),
        (
            Column::new("UnicodeLocaleId", SqlType::Int),
            Value::Int(1033),
        ),
        (
            Column::new("UnicodeComparisonStyle", SqlType::Int),
            Value::Int(196_609),
        ),
        (
            Column::new("CompatibilityLevel", SqlType::TinyInt),
            Value::Int(version::compatibility_level(major)),
        ),
        (
            Column::new("SoftwareVendorId", SqlType::Int),
            Value::Int(4608),
        ),
        (
            Column::new("SoftwareVersionMajor", SqlType::Int),
            Value::Int(major as i64),
        ),
        (
            Column::new("SoftwareVersionMinor", SqlType::Int),
            Value::Int(minor as i64),
        ),
        (
            Column::new("SoftwareVersionBuild", SqlType::Int),
            Value::Int(build as i64),
        ),
        (nv("MachineName", 128), text(&h.machine_name)),
        (
            Column::new("Flags", SqlType::Int),
            Value::Int(512 | if h.has_checksums { 16 } else { 0 }),
        ),
        (
            Column::new("BindingID", SqlType::UniqueIdentifier),
            guid(&h.family_guid),
        ),
        (
            Column::new("RecoveryForkID", SqlType::UniqueIdentifier),
            guid(&h.family_guid),
        ),
        (nv("Collation", 128), text("SQL_Latin1_General_CP1_CI_AS")),
        (
            Column::new("FamilyGUID", SqlType::UniqueIdentifier),
            guid(&h.family_guid),
        ),
        (
            Column::new("HasBulkLoggedData", SqlType::Bit),
            Value::Bit(false),
        ),
        (Column::new("IsSnapshot", SqlType::Bit), Value::Bit(false)),
        (
            Column::new("IsReadOnly", SqlType::Bit),
            Value::Bit(h.is_read_only),
        ),
        (
            Column::new("IsSingleUser", SqlType::Bit),
            Value::Bit(h.is_single_user),
        ),
        (
            Column::new("HasBackupChecksums", SqlType::Bit),
            Value::Bit(h.has_checksums),
        ),
        (Column::new("IsDamaged", SqlType::Bit), Value::Bit(false)),
        (
            Column::new("BeginsLogChain", SqlType::Bit),
            Value::Bit(h.begins_log_chain),
        ),
        (
            Column::new("HasIncompleteMetaData", SqlType::Bit),
            Value::Bit(false),
        ),
        (
            Column::new("IsForceOffline", SqlType::Bit),
            Value::Bit(false),
        ),
        (
            Column::new("IsCopyOnly", SqlType::Bit),
            Value::Bit(h.is_copy_only),
        ),
        (
            Column::new("FirstRecoveryForkID", SqlType::UniqueIdentifier),
            guid(&h.family_guid),
        ),
        (lsn_col("ForkPointLSN"), Value::Null),
        (nv("RecoveryModel", 60), text(recovery)),
        (
            lsn_col("DifferentialBaseLSN"),
            if h.backup_type == 1 {
                Value::Null
            } else {
                lsn(h.database_backup_lsn)
            },
        ),
        (
            Column::new("DifferentialBaseGUID", SqlType::UniqueIdentifier),
            Value::Null,
        ),
        (
            nv("BackupTypeDescription", 60),
            text(if h.backup_type == 1 {
                "Database"
            } else {
                "Transaction Log"
            }),
        ),
        (
            Column::new("BackupSetGUID", SqlType::UniqueIdentifier),
            guid(&h.backup_set_guid),
        ),
        (
            Column::new("CompressedBackupSize", SqlType::BigInt),
            Value::Int(size as i64),
        ),
        (Column::new("Containment", SqlType::TinyInt), Value::Int(0)),
        (nv("KeyAlgorithm", 32), Value::Null),
        (
            Column::new("EncryptorThumbprint", SqlType::VarBinary(Some(20))),
            Value::Null,
        ),
        (nv("EncryptorType", 32), Value::Null),
    ];
    cols_vals
}

/// One FILELISTONLY row per file.
fn file_list_only(h: &BackupHeader) -> RowSet {
    let columns = vec![
        nv("LogicalName", 128),
        nv("PhysicalName", 260),
        nv("Type", 1),
        nv("FileGroupName", 128),
        Column::new("Size", SqlType::Numeric(20, 0)),
        Column::new("MaxSize", SqlType::Numeric(20, 0)),
        Column::new("FileId", SqlType::BigInt),
        lsn_col("CreateLSN"),
        lsn_col("DropLSN"),
        Column::new("UniqueId", SqlType::UniqueIdentifier),
        lsn_col("ReadOnlyLSN"),
        lsn_col("ReadWriteLSN"),
        Column::new("BackupSizeInBytes", SqlType::BigInt),
        Column::new("SourceBlockSize", SqlType::Int),
        Column::new("FileGroupId", SqlType::Int),
        Column::new("LogGroupGUID", SqlType::UniqueIdentifier),
        lsn_col("DifferentialBaseLSN"),
        Column::new("DifferentialBaseGUID", SqlType::UniqueIdentifier),
        Column::new("IsReadOnly", SqlType::Bit),
        Column::new("IsPresent", SqlType::Bit),
        Column::new("TDEThumbprint", SqlType::VarBinary(Some(32))),
        nv("SnapshotUrl", 360),
    ];
    let rows = h
        .files
        .iter()
        .map(|f| {
            let data = f.kind == 'D';
            vec![
                text(&f.logical_name),
                text(&f.physical_name),
                text(&f.kind.to_string()),
                if data { text("PRIMARY") } else { Value::Null },
                Value::Numeric(f.size_bytes as i128, 0),
                Value::Numeric(35_184_372_080_640, 0),
                Value::Int(f.file_id as i64),
                lsn(0),
                lsn(0),
                guid(&h.family_guid),
                lsn(0),
                lsn(0),
                Value::Int(if data { h.payload_len as i64 } else { 0 }),
                Value::Int(512),
                Value::Int(if data { 1 } else { 0 }),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Bit(false),
                Value::Bit(true),
                Value::Null,
                Value::Null,
            ]
        })
        .collect();
    RowSet { columns, rows }
}
