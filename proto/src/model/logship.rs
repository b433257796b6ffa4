//! Validated forms of the log shipping and SQL Server Agent operations (pchat-dr.md §6.7-§6.9):
//! instance names, job names, schedule intervals and the setup parameters with PChat's
//! prescribed defaults filled in, so the agent never sees a zero that means "default".
//!
//! Decision: an instance name is restricted to what SQL Server setup allows (`HOST` or
//! `HOST\INSTANCE`, letters, digits, `-`, `_`, `.`, and `$` in the instance part). It travels
//! as a parameter, never as text, but it also becomes part of job names
//! (`LSCopy_<primary>_<db>`), so it is kept plain.

use crate::model::{DatabaseName, PathText, ProtocolError};
use crate::pb;

/// SSMS' default job interval (15 minutes), in seconds.
pub const DEFAULT_INTERVAL_SECONDS: u32 = 900;
/// Backup / copied file retention (SSMS default 72 h), minutes.
pub const DEFAULT_FILE_RETENTION_MINUTES: u32 = 4320;
/// "Alert if no backup occurs within" (SSMS default), minutes.
pub const DEFAULT_BACKUP_THRESHOLD_MINUTES: u32 = 60;
/// "Alert if no restore occurs within" (SSMS default), minutes.
pub const DEFAULT_RESTORE_THRESHOLD_MINUTES: u32 = 45;
/// History retention SSMS emits, minutes.
pub const DEFAULT_HISTORY_RETENTION_MINUTES: u32 = 5760;

/// A SQL Server instance name: `HOST` or `HOST\INSTANCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName(String);

impl ServerName {
    /// Validates the shape (at most 128 characters in all).
    pub fn new(field: &'static str, s: String) -> Result<Self, ProtocolError> {
        let host_ok = |h: &str| {
            !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let inst_ok = |i: &str| {
            !i.is_empty()
                && i.len() <= 16
                && i.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$'))
        };
        let ok = s.len() <= 128
            && match s.split_once('\\') {
                Some((h, i)) => host_ok(h) && inst_ok(i),
                None => host_ok(&s),
            };
        if !ok {
            return Err(ProtocolError::Invalid {
                field,
                reason: format!(
                    "'{}' is not a SQL Server instance name (HOST or HOST\\INSTANCE)",
                    s.escape_default()
                ),
            });
        }
        Ok(ServerName(s))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A SQL Server Agent job name (sysname: 1 to 128 characters, no control characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobName(String);

impl JobName {
    /// Validates the shape.
    pub fn new(field: &'static str, s: String) -> Result<Self, ProtocolError> {
        if s.trim().is_empty() || s.chars().count() > 128 || s.chars().any(char::is_control) {
            return Err(ProtocolError::Invalid {
                field,
                reason: format!(
                    "'{}' must be 1 to 128 characters without control characters",
                    s.escape_default()
                ),
            });
        }
        Ok(JobName(s))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SQL Server Agent's shortest seconds-based schedule (`MIN_SCHEDULE_GRANULARITY`): msdb's
/// `sp_verify_schedule` refuses `@freq_subday_type = 2` with an interval under this (Msg 14278).
pub const MIN_INTERVAL_SECONDS: u32 = 10;

/// How often a log shipping job runs.
///
/// Decided (issue #11 item 4): an interval SQL Server would refuse is refused here, at
/// validation time, with the field and the rule named, rather than by msdb half-way through a
/// setup. There is no lab or test switch for shorter intervals: the product never needs one,
/// since FB-5 asks for PChat's 15-minute default and runs one backup / copy / restore cycle
/// itself (`run_job`) instead of waiting for a schedule. Only the lab's stand-in for the DBA's
/// pre-existing setup (tests' `harness/ssms.rs`) uses 1-2 s schedules, on sqlsim instances
/// started with its lab-only `--lab-short-schedules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// `@freq_subday_type = 2`.
    Seconds(u32),
    /// `@freq_subday_type = 4`.
    Minutes(u32),
}

impl Interval {
    /// Whole minutes are scheduled in minutes, anything else in seconds; 0 = 15 minutes.
    /// 1 to 9 seconds is refused ([`MIN_INTERVAL_SECONDS`]), as is more than a day.
    pub fn from_seconds(field: &'static str, s: u32) -> Result<Self, ProtocolError> {
        let s = if s == 0 { DEFAULT_INTERVAL_SECONDS } else { s };
        if s < MIN_INTERVAL_SECONDS {
            return Err(ProtocolError::Invalid {
                field,
                reason: format!(
                    "{s} s is shorter than SQL Server Agent allows: a schedule needs at least {MIN_INTERVAL_SECONDS} seconds (msdb refuses a shorter one with Msg 14278); give {MIN_INTERVAL_SECONDS} or more, or 0 for PChat's 15 minutes"
                ),
            });
        }
        if s > 86_400 {
            return Err(ProtocolError::Invalid {
                field,
                reason: "at most one day (86400 seconds)".into(),
            });
        }
        Ok(if s % 60 == 0 {
            Interval::Minutes(s / 60)
        } else {
            Interval::Seconds(s)
        })
    }

    /// `(@freq_subday_type, @freq_subday_interval)`.
    pub fn subday(self) -> (i32, i32) {
        match self {
            Interval::Seconds(n) => (2, n as i32),
            Interval::Minutes(n) => (4, n as i32),
        }
    }
}

fn minutes(field: &'static str, v: u32, default: u32) -> Result<i32, ProtocolError> {
    let v = if v == 0 { default } else { v };
    i32::try_from(v)
        .ok()
        .filter(|m| *m <= 525_600)
        .ok_or_else(|| ProtocolError::Invalid {
            field,
            reason: "at most 525600 minutes (one year)".into(),
        })
}

fn db(field: &'static str, s: String) -> Result<DatabaseName, ProtocolError> {
    DatabaseName::new(s).map_err(|reason| ProtocolError::Invalid { field, reason })
}

fn db_or(
    field: &'static str,
    s: String,
    default: &DatabaseName,
) -> Result<DatabaseName, ProtocolError> {
    if s.is_empty() {
        Ok(default.clone())
    } else {
        db(field, s)
    }
}

/// The primary side of log shipping, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogShippingPrimary {
    /// The primary database.
    pub database: DatabaseName,
    /// `@backup_directory`.
    pub backup_directory: PathText,
    /// `@backup_share`.
    pub backup_share: PathText,
    /// The secondary instance.
    pub secondary_server: ServerName,
    /// The secondary database.
    pub secondary_database: DatabaseName,
    /// Backup job schedule.
    pub interval: Interval,
    /// `@backup_retention_period`.
    pub backup_retention_minutes: i32,
    /// `@backup_threshold`.
    pub backup_threshold_minutes: i32,
    /// `@history_retention_period`.
    pub history_retention_minutes: i32,
}

impl TryFrom<pb::SetupLogShippingPrimary> for LogShippingPrimary {
    type Error = ProtocolError;

    fn try_from(o: pb::SetupLogShippingPrimary) -> Result<Self, ProtocolError> {
        let database = db("database", o.database)?;
        let backup_directory = PathText::new("backup_directory", o.backup_directory)?;
        let backup_share = if o.backup_share.is_empty() {
            backup_directory.clone()
        } else {
            PathText::new("backup_share", o.backup_share)?
        };
        Ok(LogShippingPrimary {
            secondary_database: db_or("secondary_database", o.secondary_database, &database)?,
            database,
            backup_directory,
            backup_share,
            secondary_server: ServerName::new("secondary_server", o.secondary_server)?,
            interval: Interval::from_seconds(
                "schedule_interval_seconds",
                o.schedule_interval_seconds,
            )?,
            backup_retention_minutes: minutes(
                "backup_retention_minutes",
                o.backup_retention_minutes,
                DEFAULT_FILE_RETENTION_MINUTES,
            )?,
            backup_threshold_minutes: minutes(
                "backup_threshold_minutes",
                o.backup_threshold_minutes,
                DEFAULT_BACKUP_THRESHOLD_MINUTES,
            )?,
            history_retention_minutes: minutes(
                "history_retention_minutes",
                o.history_retention_minutes,
                DEFAULT_HISTORY_RETENTION_MINUTES,
            )?,
        })
    }
}

/// The secondary side of log shipping, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogShippingSecondary {
    /// The secondary database.
    pub database: DatabaseName,
    /// The primary instance.
    pub primary_server: ServerName,
    /// The primary database.
    pub primary_database: DatabaseName,
    /// `@backup_source_directory`.
    pub backup_source_directory: PathText,
    /// `@backup_destination_directory`.
    pub backup_destination_directory: PathText,
    /// Copy and restore job schedule.
    pub interval: Interval,
    /// `@file_retention_period`.
    pub file_retention_minutes: i32,
    /// `@restore_threshold`.
    pub restore_threshold_minutes: i32,
    /// `@history_retention_period`.
    pub history_retention_minutes: i32,
    /// `@restore_delay`.
    pub restore_delay_minutes: i32,
    /// `@restore_mode = 1` (STANDBY) instead of 0 (NORECOVERY).
    pub standby: bool,
}

impl LogShippingSecondary {
    /// SSMS' copy job name, `LSCopy_<primary server>_<primary database>`.
    pub fn copy_job_name(&self) -> String {
        format!(
            "LSCopy_{}_{}",
            self.primary_server.as_str(),
            self.primary_database
        )
    }

    /// SSMS' restore job name, `LSRestore_<primary server>_<primary database>`.
    pub fn restore_job_name(&self) -> String {
        format!(
            "LSRestore_{}_{}",
            self.primary_server.as_str(),
            self.primary_database
        )
    }
}

impl TryFrom<pb::SetupLogShippingSecondary> for LogShippingSecondary {
    type Error = ProtocolError;

    fn try_from(o: pb::SetupLogShippingSecondary) -> Result<Self, ProtocolError> {
        let database = db("database", o.database)?;
        Ok(LogShippingSecondary {
            primary_database: db_or("primary_database", o.primary_database, &database)?,
            database,
            primary_server: ServerName::new("primary_server", o.primary_server)?,
            backup_source_directory: PathText::new(
                "backup_source_directory",
                o.backup_source_directory,
            )?,
            backup_destination_directory: PathText::new(
                "backup_destination_directory",
                o.backup_destination_directory,
            )?,
            interval: Interval::from_seconds(
                "schedule_interval_seconds",
                o.schedule_interval_seconds,
            )?,
            file_retention_minutes: minutes(
                "file_retention_minutes",
                o.file_retention_minutes,
                DEFAULT_FILE_RETENTION_MINUTES,
            )?,
            restore_threshold_minutes: minutes(
                "restore_threshold_minutes",
                o.restore_threshold_minutes,
                DEFAULT_RESTORE_THRESHOLD_MINUTES,
            )?,
            history_retention_minutes: minutes(
                "history_retention_minutes",
                o.history_retention_minutes,
                DEFAULT_HISTORY_RETENTION_MINUTES,
            )?,
            restore_delay_minutes: i32::try_from(o.restore_delay_minutes)
                .ok()
                .filter(|m| *m <= 525_600)
                .ok_or(ProtocolError::Invalid {
                    field: "restore_delay_minutes",
                    reason: "at most 525600 minutes".into(),
                })?,
            standby: o.standby,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_intervals() {
        assert!(ServerName::new("s", r"SQLPRIMARY01\INST".into()).is_ok());
        assert!(ServerName::new("s", "sql01.dc1.lab".into()).is_ok());
        for bad in ["", r"a\b\c", "x'; DROP", "a b", r"host\", "a]b", "a\"b"] {
            assert!(ServerName::new("s", bad.into()).is_err(), "{bad}");
        }
        assert!(JobName::new("j", "a\nb".into()).is_err());
        assert_eq!(
            Interval::from_seconds("i", 0).unwrap(),
            Interval::Minutes(15)
        );
        assert_eq!(Interval::from_seconds("i", 10).unwrap().subday(), (2, 10));
        assert_eq!(Interval::from_seconds("i", 45).unwrap().subday(), (2, 45));
        assert_eq!(Interval::from_seconds("i", 120).unwrap().subday(), (4, 2));
        assert!(Interval::from_seconds("i", 90_000).is_err());
    }

    #[test]
    fn intervals_under_ten_seconds_are_refused_naming_field_and_rule() {
        for s in [1, 2, 9] {
            let e = Interval::from_seconds("schedule_interval_seconds", s).unwrap_err();
            let ProtocolError::Invalid { field, reason } = &e else {
                panic!("{e:?}");
            };
            assert_eq!(*field, "schedule_interval_seconds");
            assert!(
                reason.contains("at least 10 seconds") && reason.contains("14278"),
                "{reason}"
            );
            assert!(e.to_string().contains("schedule_interval_seconds"), "{e}");
        }
        // Through the operations the agent validates.
        let e = LogShippingSecondary::try_from(pb::SetupLogShippingSecondary {
            database: "mgc".into(),
            primary_server: r"SQLPRIMARY01\INST".into(),
            backup_source_directory: r"\\fileserver\pchat-ls".into(),
            backup_destination_directory: r"E:\PChatLSCopy".into(),
            schedule_interval_seconds: 2,
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                ProtocolError::Invalid {
                    field: "schedule_interval_seconds",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = LogShippingPrimary::try_from(pb::SetupLogShippingPrimary {
            database: "mgc".into(),
            backup_directory: r"\\fileserver\pchat-ls".into(),
            secondary_server: r"SQLBACKUP01\INST".into(),
            schedule_interval_seconds: 5,
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                ProtocolError::Invalid {
                    field: "schedule_interval_seconds",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn defaults_are_pchat_values() {
        let p = LogShippingPrimary::try_from(pb::SetupLogShippingPrimary {
            database: "mgc".into(),
            backup_directory: r"\\fileserver\pchat-ls".into(),
            secondary_server: r"SQLBACKUP01\INST".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.backup_share.as_str(), r"\\fileserver\pchat-ls");
        assert_eq!(p.secondary_database.as_str(), "mgc");
        assert_eq!(
            (
                p.backup_retention_minutes,
                p.backup_threshold_minutes,
                p.history_retention_minutes
            ),
            (4320, 60, 5760)
        );
        let s = LogShippingSecondary::try_from(pb::SetupLogShippingSecondary {
            database: "mgc".into(),
            primary_server: r"SQLPRIMARY01\INST".into(),
            backup_source_directory: r"\\fileserver\pchat-ls".into(),
            backup_destination_directory: r"E:\PChatLSCopy".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.copy_job_name(), r"LSCopy_SQLPRIMARY01\INST_mgc");
        assert_eq!(s.restore_threshold_minutes, 45);
        assert!(!s.standby);
    }
}
