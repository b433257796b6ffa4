//! Backups and their inspection: `BACKUP DATABASE` / `BACKUP LOG` to a new file and
//! `RESTORE VERIFYONLY | HEADERONLY | FILELISTONLY` (pchat-dr.md §6.2-§6.3).
//!
//! Decisions: a backup never overwrites — when the target is under the agent's file roots and
//! already exists, the operation is refused (runs name their files uniquely, and a repeated
//! instruction is answered by the journal, not by a second backup). The result carries the
//! HEADERONLY facts (LSNs, dates) and the file's SHA-256 when the agent can read the file, so the
//! run records in one step what a later restore must re-check (DESIGN §9 invariant 3). COMPRESSION
//! is only sent when asked: editions without it fail the backup.
//!
//! Checksums: `BACKUP … WITH CHECKSUM` for what the agent writes; a read or restore asks for
//! `CHECKSUM` only where HEADERONLY says the set has backup checksums (log shipping's `.trn` files
//! have none, and SQL Server refuses the option on them with 3187), see [`tsql::Checksums`].
//!
//! Errors ([`super::retryable`] decides): connection failures and 3201 with a network operating
//! system error (the share's server briefly unreachable) are retryable; 3201 for a missing file or
//! denied access (the engine's service account), damaged media (3241/3183), 3187 and the rest are
//! not.

use std::sync::Arc;

use failback_proto::model::DatabaseName;
use failback_proto::pb;
use tiberius::Row;

use super::tsql::{self, BackupOptions};
use super::{Conn, SqlBackend, flag, int, text, times};
use crate::error::Error;
use crate::exec::files::Files;

/// A progress sink: percent complete (0..=100).
pub type PercentSink = Arc<dyn Fn(u32) + Send + Sync>;

fn lsn(row: &Row, col: &str) -> String {
    if let Ok(Some(n)) = row.try_get::<tiberius::numeric::Numeric, _>(col) {
        let v = n.value();
        let scale = u32::from(n.scale());
        return (v / 10i128.pow(scale)).to_string();
    }
    int(row, col).map(|v| v.to_string()).unwrap_or_default()
}

/// A HEADERONLY row as the wire type; its dates are the writing server's local time at
/// `writer_offset` minutes from UTC (see [`times`]), reported in UTC.
pub(crate) fn header(row: &Row, writer_offset: i32) -> pb::BackupHeader {
    let when = |row: &Row, col: &str| times::col_unix_ms(row, col, writer_offset);
    pb::BackupHeader {
        database: text(row, "DatabaseName"),
        backup_type: int(row, "BackupType")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        first_lsn: lsn(row, "FirstLSN"),
        last_lsn: lsn(row, "LastLSN"),
        checkpoint_lsn: lsn(row, "CheckpointLSN"),
        database_backup_lsn: lsn(row, "DatabaseBackupLSN"),
        server_name: text(row, "ServerName"),
        start_unix_ms: when(row, "BackupStartDate"),
        finish_unix_ms: when(row, "BackupFinishDate"),
        has_checksums: flag(row, "HasBackupChecksums"),
        is_copy_only: flag(row, "IsCopyOnly"),
        position: int(row, "Position")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1),
        name: text(row, "BackupName"),
    }
}

/// Runs `stmt` on `conn` while a second connection reports `percent_complete` of it to `sink`
/// about once a second (BACKUP and RESTORE send nothing readable by tiberius while they work).
pub(crate) async fn with_progress(
    backend: &SqlBackend,
    conn: &mut Conn,
    stmt: &tsql::Statement,
    sink: PercentSink,
) -> Result<(), Error> {
    let spid = SqlBackend::rows(conn, &tsql::own_spid())
        .await?
        .first()
        .and_then(|r| int(r, "spid"))
        .and_then(|v| i32::try_from(v).ok());
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = spid.map(|spid| {
        let stop = stop.clone();
        let sink = sink.clone();
        let mut watch_conn_fut = Box::pin(backend.connect(false));
        async move {
            let Ok(mut watch) = watch_conn_fut.as_mut().await else { return };
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        if let Ok(rows) = SqlBackend::rows(&mut watch, &tsql::request_progress(spid)).await
                            && let Some(p) = rows.first().and_then(|r| r.try_get::<f32, _>("percent_complete").ok().flatten())
                        {
                            sink(p.clamp(0.0, 100.0) as u32);
                        }
                    }
                }
            }
        }
    });
    let work = SqlBackend::exec(conn, stmt);
    let result = match watcher {
        Some(w) => {
            let (r, ()) = tokio::join!(
                async {
                    let r = work.await;
                    stop.cancel();
                    r
                },
                w
            );
            r
        }
        None => work.await,
    };
    if result.is_ok() {
        sink(100);
    }
    result
}

/// HEADERONLY `BackupType` of a full database backup.
pub(crate) const FULL: u32 = 1;
/// HEADERONLY `BackupType` of a log backup.
pub(crate) const LOG: u32 = 2;

/// The one backup set of type `kind` in `file` (its HEADERONLY rows), as RESTORE must name it:
/// `FILE = Position`, `CHECKSUM` only when the set has backup checksums.
///
/// Decision: a file holding several sets of that type is refused rather than guessed at (the
/// newest? all in order?). Runs write each backup to a new file and log shipping writes one log
/// backup per file, so several sets mean someone appended by hand (`NOINIT`); the operator is
/// told the positions found.
pub(crate) fn one_set<'h>(
    file: &str,
    headers: &'h [pb::BackupHeader],
    kind: u32,
) -> Result<(&'h pb::BackupHeader, tsql::BackupSet), Error> {
    let what = if kind == LOG {
        "log backup"
    } else {
        "full database backup"
    };
    let sets: Vec<&pb::BackupHeader> = headers.iter().filter(|h| h.backup_type == kind).collect();
    match sets.as_slice() {
        [h] => Ok((
            h,
            tsql::BackupSet {
                position: h.position.max(1),
                checksums: tsql::Checksums::for_set(h.has_checksums),
            },
        )),
        [] => Err(Error::Sql {
            number: None,
            message: format!(
                "backup file '{file}' holds no {what} (its backup sets: {}); not restoring",
                describe_sets(headers)
            ),
            retryable: false,
        }),
        _ => Err(Error::Sql {
            number: None,
            message: format!(
                "backup file '{file}' holds {} {what}s (positions {}); the agent restores a file with exactly one, not guessing which; not restoring",
                sets.len(),
                sets.iter()
                    .map(|h| h.position.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            retryable: false,
        }),
    }
}

fn describe_sets(headers: &[pb::BackupHeader]) -> String {
    if headers.is_empty() {
        return "none".into();
    }
    headers
        .iter()
        .map(|h| {
            format!(
                "position {} type {} of {}",
                h.position, h.backup_type, h.database
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl SqlBackend {
    /// Reads HEADERONLY of `file` (every backup set; no CHECKSUM option, so it works on log
    /// shipping's `.trn` files, which have no backup checksums).
    ///
    /// Dates come back in UTC: a set this instance wrote converts with its own offset, a set
    /// another server wrote with that server's zone from msdb's backupset when this instance
    /// has restored its backups, else with this instance's offset ([`times`] says why).
    pub(crate) async fn headers(
        conn: &mut Conn,
        file: &str,
    ) -> Result<Vec<pb::BackupHeader>, Error> {
        let rows = Self::rows(conn, &tsql::header_only(file)).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let own = times::own_offset(conn).await?;
        // HEADERONLY's ServerName is the writer's name; match either of ours (they differ on a
        // host renamed without fixing sys.servers).
        let me: Vec<String> = Self::rows(conn, &tsql::instance_properties())
            .await?
            .first()
            .map(|r| vec![text(r, "server_name"), text(r, "at_servername")])
            .unwrap_or_default();
        let mut zones: Vec<(String, i32)> = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let writer = text(r, "ServerName");
            let offset = if writer.is_empty() || me.iter().any(|m| m.eq_ignore_ascii_case(&writer))
            {
                own
            } else if let Some((_, z)) = zones.iter().find(|(s, _)| s.eq_ignore_ascii_case(&writer))
            {
                *z
            } else {
                let z = times::writer_offset(conn, &writer).await?.unwrap_or(own);
                zones.push((writer.clone(), z));
                z
            };
            out.push(header(r, offset));
        }
        Ok(out)
    }

    /// FILELISTONLY of backup set `position` of `file`.
    pub(crate) async fn file_list(
        conn: &mut Conn,
        file: &str,
        position: u32,
    ) -> Result<Vec<pb::BackupFileEntry>, Error> {
        Ok(Self::rows(conn, &tsql::file_list_only(file, position))
            .await?
            .iter()
            .map(|r| pb::BackupFileEntry {
                logical_name: text(r, "LogicalName"),
                physical_name: text(r, "PhysicalName"),
                r#type: text(r, "Type"),
            })
            .collect())
    }

    /// Reads HEADERONLY of `file`, and FILELISTONLY of its last backup set.
    pub(crate) async fn inspect_backup(
        conn: &mut Conn,
        file: &str,
    ) -> Result<(Vec<pb::BackupHeader>, Vec<pb::BackupFileEntry>), Error> {
        let headers = Self::headers(conn, file).await?;
        let position = headers.iter().map(|h| h.position).max().unwrap_or(1).max(1);
        let files = Self::file_list(conn, file, position).await?;
        Ok((headers, files))
    }

    async fn refuse_existing(files: Option<&Files>, file: &str) -> Result<(), Error> {
        if let Some(f) = files
            && let Ok(st) = f.stat(file).await
            && st.exists
        {
            return Err(Error::Sql {
                number: None,
                message: format!(
                    "backup file '{file}' already exists; backups are written to new, uniquely named files"
                ),
                retryable: false,
            });
        }
        Ok(())
    }

    async fn finish_backup(
        conn: &mut Conn,
        files: Option<&Files>,
        file: &str,
    ) -> Result<pb::BackupResult, Error> {
        let (headers, _) = Self::inspect_backup(conn, file).await?;
        let mut result = pb::BackupResult {
            file: file.to_string(),
            header: headers.into_iter().next(),
            sha256: String::new(),
            size: 0,
        };
        if let Some(f) = files
            && let Ok(sum) = f.checksum(file, |_| {}).await
        {
            result.sha256 = sum.sha256;
            result.size = sum.size;
        }
        Ok(result)
    }

    /// Full backup to a new file (FB-3).
    pub async fn backup_database(
        &self,
        db: &DatabaseName,
        file: &str,
        options: &BackupOptions,
        files: Option<&Files>,
        sink: PercentSink,
    ) -> Result<pb::BackupResult, Error> {
        Self::refuse_existing(files, file).await?;
        let mut conn = self.connect(true).await?;
        with_progress(
            self,
            &mut conn,
            &tsql::backup_database(db, file, options),
            sink,
        )
        .await?;
        Self::finish_backup(&mut conn, files, file).await
    }

    /// Log backup to a new file.
    pub async fn backup_log(
        &self,
        db: &DatabaseName,
        file: &str,
        files: Option<&Files>,
        sink: PercentSink,
    ) -> Result<pb::BackupResult, Error> {
        Self::refuse_existing(files, file).await?;
        let mut conn = self.connect(true).await?;
        with_progress(self, &mut conn, &tsql::backup_log(db, file), sink).await?;
        Self::finish_backup(&mut conn, files, file).await
    }

    /// HEADERONLY, then VERIFYONLY of every backup set in the file (`WITH CHECKSUM` for a set
    /// that has backup checksums, SQL Server's default otherwise: see [`tsql::Checksums`]), and
    /// FILELISTONLY.
    pub async fn verify_backup(&self, file: &str) -> Result<pb::VerifyResult, Error> {
        let mut conn = self.connect(true).await?;
        let (headers, files) = Self::inspect_backup(&mut conn, file).await?;
        if headers.is_empty() {
            return Err(Error::Sql {
                number: None,
                message: format!("backup file '{file}' holds no backup set"),
                retryable: false,
            });
        }
        for h in &headers {
            let stmt = tsql::verify_only(
                file,
                h.position.max(1),
                tsql::Checksums::for_set(h.has_checksums),
            );
            Self::exec(&mut conn, &stmt).await?;
        }
        Ok(pb::VerifyResult {
            file: file.to_string(),
            headers,
            files,
        })
    }

    /// HEADERONLY alone: how a log shipping `.trn` is read (its LSNs and dates), without the
    /// full read of VERIFYONLY and without CHECKSUM (pchat-dr.md §6.3).
    pub async fn read_backup_header(&self, file: &str) -> Result<pb::VerifyResult, Error> {
        let mut conn = self.connect(true).await?;
        let headers = Self::headers(&mut conn, file).await?;
        Ok(pb::VerifyResult {
            file: file.to_string(),
            headers,
            files: Vec::new(),
        })
    }
}
