//! Typed step records (issue #13): what a step records as its output and a later step, the
//! report or the lab reads back. A record is written with [`StepRecord::to_output`] and read with
//! `StepCtx::prior_record`, so a renamed field is a compile error in every reader instead of an
//! empty string at run time (FB-4's checksum check read FB-3's `sha256` by string key).
//!
//! Decisions:
//! - **The stored form is unchanged**: records serialize to the JSON objects the run store
//!   already holds, field for field (a test pins the keys), so runs recorded before this module
//!   read the same, and `failbackctl report` and the lab keep working while they move over.
//! - **Every field has a default** (`#[serde(default)]`): a record written by an older version
//!   that lacks a field still reads; whether a field is required is the reader's decision, said
//!   in its own error (FB-4 refuses a record without a file or SHA-256).
//! - A record that is there but does not parse is an error naming the step and the field, never
//!   taken as absent.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StepError;

/// A step's typed output.
pub trait StepRecord: Serialize + DeserializeOwned {
    /// The step that records it.
    const STEP: &'static str;

    /// The output as the run store holds it.
    fn to_output(&self) -> Result<Value, StepError> {
        serde_json::to_value(self).map_err(|e| {
            StepError::fatal(format!("{}'s record cannot be written: {e}", Self::STEP))
        })
    }

    /// Reads the record from a step's recorded output.
    fn from_output(output: &Value) -> Result<Self, StepError> {
        Self::deserialize(output).map_err(|e| {
            StepError::fatal(format!(
                "{}'s recorded output cannot be read ({e}); start a new run",
                Self::STEP
            ))
        })
    }
}

/// FB-3's full backup of the backup `mgc`: the file FB-4 restores and checks, and the LSNs the
/// restore must reproduce.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupRecord {
    /// The backup file as the instances read it.
    pub file: String,
    /// Its SHA-256 (lower-case hex), as the agent computed it after writing.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The database of the backup set.
    pub database: String,
    /// RESTORE HEADERONLY's BackupType (1 = database).
    pub backup_type: u32,
    /// Whether the set carries page checksums (`WITH CHECKSUM`).
    pub has_checksums: bool,
    /// FirstLSN, decimal.
    pub first_lsn: String,
    /// LastLSN, decimal.
    pub last_lsn: String,
    /// CheckpointLSN, decimal.
    pub checkpoint_lsn: String,
    /// DatabaseBackupLSN, decimal.
    pub database_backup_lsn: String,
    /// The instance that wrote it.
    pub server: String,
    /// When the backup finished, Unix ms.
    pub finish_unix_ms: u64,
    /// RESTORE VERIFYONLY passed.
    pub verified: bool,
    /// What the freeze of the backup `mgc` before the backup reported.
    pub backup_frozen: String,
    /// The set's database files (FILELISTONLY).
    pub files: Vec<BackupFile>,
}

/// One database file of a backup set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupFile {
    /// Logical name.
    pub logical_name: String,
    /// `D` data, `L` log, …
    #[serde(rename = "type")]
    pub kind: String,
}

impl StepRecord for BackupRecord {
    const STEP: &'static str = "fb3_backup";
}

/// A failover's data-loss window as FO-3 records it (`loss_window` of its output), and as the
/// report and the lab show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossWindowRecord {
    /// The last log backup restored into the backup `mgc` (or found restored).
    pub last_restored_file: String,
    /// Its LastLSN, decimal.
    pub last_restored_lsn: String,
    /// When it was taken, RFC 3339 UTC.
    pub last_restored_backup_time: String,
    /// The newest log backup known to exist with log past it (else the restored one).
    pub last_backup_known_file: String,
    /// When that one was taken, RFC 3339 UTC.
    pub last_backup_known_time: String,
    /// Seconds between the two: the log lost at least.
    pub window_seconds: u64,
    /// Log backups known but missing or unreadable, and gaps by LSN range.
    pub files_missing: Vec<String>,
    /// Whether FO-2 could list the share (if not, the real window is larger).
    pub share_reachable: bool,
    /// What the window counts and what it cannot.
    pub note: String,
    /// A gap the run was started to accept (`--accept-gap`), when FO-3 stopped at it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_gap: Option<AcceptedGap>,
}

/// A gap in the log chain an approver accepted the loss of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AcceptedGap {
    /// The first log backup not applied (the gap's file, as accepted).
    pub file: String,
    /// The approver's reason.
    pub reason: String,
    /// The approver.
    pub accepted_by: String,
    /// What is missing there.
    pub missing: String,
    /// The log backups not applied because of it.
    pub not_applied: Vec<String>,
}

/// The part of FO-3's output others read: its loss window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppliedLogs {
    /// The data-loss window.
    pub loss_window: LossWindowRecord,
}

impl StepRecord for AppliedLogs {
    const STEP: &'static str = "fo3_apply_logs";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The keys are the stored form (runs on disk, the report, the lab): renaming a field must
    /// fail here.
    #[test]
    fn the_backup_record_keeps_its_stored_keys() {
        let r = BackupRecord {
            file: "/s/mgc.bak".into(),
            sha256: "a".repeat(64),
            files: vec![BackupFile {
                logical_name: "mgc".into(),
                kind: "D".into(),
            }],
            ..BackupRecord::default()
        };
        let v = r.to_output().unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "backup_frozen",
                "backup_type",
                "checkpoint_lsn",
                "database",
                "database_backup_lsn",
                "file",
                "files",
                "finish_unix_ms",
                "first_lsn",
                "has_checksums",
                "last_lsn",
                "server",
                "sha256",
                "size",
                "verified"
            ]
        );
        assert_eq!(v["files"][0], json!({"logical_name": "mgc", "type": "D"}));
        assert_eq!(BackupRecord::from_output(&v).unwrap(), r);
    }

    #[test]
    fn the_loss_window_keeps_its_stored_keys() {
        let w = LossWindowRecord::default();
        let v = serde_json::to_value(&w).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "files_missing",
                "last_backup_known_file",
                "last_backup_known_time",
                "last_restored_backup_time",
                "last_restored_file",
                "last_restored_lsn",
                "note",
                "share_reachable",
                "window_seconds"
            ]
        );
        let with_gap = LossWindowRecord {
            accepted_gap: Some(AcceptedGap {
                file: "mgc_5.trn".into(),
                ..AcceptedGap::default()
            }),
            ..w
        };
        let v = serde_json::to_value(&with_gap).unwrap();
        assert_eq!(v["accepted_gap"]["file"], "mgc_5.trn");
        // FO-3's whole output reads as AppliedLogs, the rest ignored.
        let out = json!({"applied": [], "loss_window": v});
        assert_eq!(
            AppliedLogs::from_output(&out).unwrap().loss_window,
            with_gap
        );
    }

    #[test]
    fn an_old_record_reads_and_a_wrong_one_is_an_error() {
        // Written before a field existed: the rest reads.
        let old = BackupRecord::from_output(&json!({"file": "/s/x.bak", "sha256": "b"})).unwrap();
        assert_eq!((old.file.as_str(), old.size), ("/s/x.bak", 0));
        let e = BackupRecord::from_output(&json!({"file": 5})).unwrap_err();
        assert!(
            e.message.contains("fb3_backup") && e.message.contains("invalid type"),
            "{}",
            e.message
        );
    }
}
