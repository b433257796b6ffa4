//! Log shipping (pchat-dr.md §4.2, §6.7, §6.8): the status a failover must capture before it
//! removes anything, setup of the primary and secondary sides by the procedures SSMS generates
//! (sent as RPCs by name, [`super::tsql::logship`]), and their removal.
//!
//! Decisions:
//! - Probe before acting. A side whose configuration already holds the requested values (paths,
//!   retention, thresholds, an enabled job on a matching schedule, the secondary registered)
//!   is left alone and reported `changed = false`; a primary that only lacks the secondary's
//!   registration gets just `sp_add_log_shipping_primary_secondary`.
//! - `@overwrite = 1` whenever something is sent. The probe has already shown the existing
//!   configuration differs (or is half made), and what differs is typically stale metadata a
//!   disaster left in a surviving msdb (pchat-dr.md §6.7, "Removal"): SSMS itself emits
//!   `@overwrite = 1` to replace it. Overwriting replaces the old jobs (their schedules and
//!   history go with them), so a repeated setup never accumulates jobs. The price: a setup with
//!   different values silently replaces a configuration someone made by hand. The runbook asks
//!   for `log_shipping_status` first, so that configuration is on record before it is replaced.
//! - Removal is a no-op with `changed = false` when the side is not configured; removing the
//!   primary first removes every secondary it lists (SQL Server refuses otherwise, 32011).
//!
//! Errors: SQL Server's own (15010 no database, 32015 SIMPLE recovery, 32022 job name taken…)
//! pass through with their numbers; a secondary database that is not RESTORING (or STANDBY) is
//! refused before anything is sent.

use failback_proto::model::DatabaseName;
use failback_proto::model::logship::{Interval, LogShippingPrimary, LogShippingSecondary};
use failback_proto::pb;
use tiberius::Row;

use super::tsql::{self, logship as ls};
use super::{Conn, SqlBackend, flag, guid_col, guid_text, int, text, times};
use crate::error::Error;

fn opt_i32(row: &Row, col: &str) -> Option<i32> {
    int(row, col).and_then(|v| i32::try_from(v).ok())
}

fn i32_or0(row: &Row, col: &str) -> i32 {
    opt_i32(row, col).unwrap_or(0)
}

fn monitor_row(r: &Row) -> pb::LogShippingMonitorRow {
    pb::LogShippingMonitorRow {
        alert: flag(r, "status"),
        is_primary: flag(r, "is_primary"),
        server: text(r, "server"),
        database: text(r, "database_name"),
        minutes_since_last_backup: opt_i32(r, "time_since_last_backup"),
        last_backup_file: text(r, "last_backup_file"),
        backup_threshold: opt_i32(r, "backup_threshold"),
        minutes_since_last_copy: opt_i32(r, "time_since_last_copy"),
        last_copied_file: text(r, "last_copied_file"),
        minutes_since_last_restore: opt_i32(r, "time_since_last_restore"),
        last_restored_file: text(r, "last_restored_file"),
        last_restored_latency: opt_i32(r, "last_restored_latency"),
        restore_threshold: opt_i32(r, "restore_threshold"),
    }
}

/// Whether a job is enabled and runs daily on the wanted interval.
async fn job_on_schedule(conn: &mut Conn, job_id: &str, interval: Interval) -> Result<bool, Error> {
    let want = interval.subday();
    let rows = SqlBackend::rows(conn, &ls::job_schedules(job_id)).await?;
    Ok(rows.iter().any(|r| {
        flag(r, "job_enabled")
            && flag(r, "enabled")
            && opt_i32(r, "freq_type") == Some(4)
            && (
                i32_or0(r, "freq_subday_type"),
                i32_or0(r, "freq_subday_interval"),
            ) == want
    }))
}

/// Adds a daily schedule on `interval` and attaches it to a job.
async fn attach_new_schedule(
    conn: &mut Conn,
    job: tiberius::Uuid,
    schedule_name: &str,
    interval: Interval,
) -> Result<(), Error> {
    let add = ls::add_schedule(schedule_name, interval);
    let schedule_id = SqlBackend::call(conn, &add)
        .await?
        .int(&add, "@schedule_id")?;
    SqlBackend::call(conn, &ls::attach_schedule(job, schedule_id)).await?;
    Ok(())
}

impl SqlBackend {
    async fn primary_config(
        conn: &mut Conn,
        db: &DatabaseName,
    ) -> Result<Option<pb::LogShippingPrimaryConfig>, Error> {
        let rows = Self::rows(conn, &ls::primary_config(db)).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        // last_backup_date is this instance's local time (its own backup job wrote it).
        let offset = times::own_offset(conn).await?;
        let primary_id = guid_col(r, "primary_id");
        let secondaries = Self::rows(conn, &ls::primary_secondaries(&primary_id))
            .await?
            .iter()
            .map(|s| pb::LogShippingPeer {
                server: text(s, "secondary_server"),
                database: text(s, "secondary_database"),
            })
            .collect();
        Ok(Some(pb::LogShippingPrimaryConfig {
            primary_id,
            database: text(r, "primary_database"),
            backup_directory: text(r, "backup_directory"),
            backup_share: text(r, "backup_share"),
            backup_retention_minutes: i32_or0(r, "backup_retention_period"),
            backup_job_id: guid_col(r, "backup_job_id"),
            last_backup_file: text(r, "last_backup_file"),
            last_backup_date: times::col_utc_text(r, "last_backup_date", offset),
            secondaries,
        }))
    }

    async fn secondary_config(
        conn: &mut Conn,
        db: &DatabaseName,
    ) -> Result<Option<pb::LogShippingSecondaryConfig>, Error> {
        let rows = Self::rows(conn, &ls::secondary_config(db)).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        // last_copied_date / last_restored_date: this instance's local time (its own jobs).
        let offset = times::own_offset(conn).await?;
        Ok(rows.first().map(|r| pb::LogShippingSecondaryConfig {
            secondary_id: guid_col(r, "secondary_id"),
            database: text(r, "secondary_database"),
            primary_server: text(r, "primary_server"),
            primary_database: text(r, "primary_database"),
            backup_source_directory: text(r, "backup_source_directory"),
            backup_destination_directory: text(r, "backup_destination_directory"),
            file_retention_minutes: i32_or0(r, "file_retention_period"),
            copy_job_id: guid_col(r, "copy_job_id"),
            restore_job_id: guid_col(r, "restore_job_id"),
            last_copied_file: text(r, "last_copied_file"),
            last_copied_date: times::col_utc_text(r, "last_copied_date", offset),
            last_restored_file: text(r, "last_restored_file"),
            last_restored_date: times::col_utc_text(r, "last_restored_date", offset),
            restore_delay_minutes: i32_or0(r, "restore_delay"),
            standby: flag(r, "restore_mode"),
        }))
    }

    /// Monitor rows of the instance and `db`'s configuration on either side.
    pub async fn log_shipping_status(
        &self,
        db: &DatabaseName,
    ) -> Result<pb::LogShippingStatusInfo, Error> {
        let mut conn = self.connect(false).await?;
        let monitor = Self::call(&mut conn, &ls::help_monitor())
            .await?
            .rows
            .first()
            .map(|rows| rows.iter().map(monitor_row).collect())
            .unwrap_or_default();
        Ok(pb::LogShippingStatusInfo {
            monitor,
            primary: Self::primary_config(&mut conn, db).await?,
            secondary: Self::secondary_config(&mut conn, db).await?,
        })
    }

    /// The primary side (probe, then the SSMS primary script by RPC).
    pub async fn setup_log_shipping_primary(
        &self,
        p: &LogShippingPrimary,
    ) -> Result<pb::LogShippingSetup, Error> {
        let mut conn = self.connect(false).await?;
        if let Some(cur) = Self::primary_config(&mut conn, &p.database).await? {
            let monitor = Self::rows(&mut conn, &ls::monitor_primary(&p.database)).await?;
            let same_thresholds = monitor.first().is_some_and(|m| {
                opt_i32(m, "backup_threshold") == Some(p.backup_threshold_minutes)
                    && opt_i32(m, "history_retention_period") == Some(p.history_retention_minutes)
            });
            let same = cur.backup_directory == p.backup_directory.as_str()
                && cur.backup_share == p.backup_share.as_str()
                && cur.backup_retention_minutes == p.backup_retention_minutes
                && same_thresholds
                && job_on_schedule(&mut conn, &cur.backup_job_id, p.interval).await?;
            if same {
                let registered = cur.secondaries.iter().any(|s| {
                    s.server.eq_ignore_ascii_case(p.secondary_server.as_str())
                        && s.database
                            .eq_ignore_ascii_case(p.secondary_database.as_str())
                });
                if !registered {
                    Self::call(&mut conn, &ls::add_primary_secondary(p)).await?;
                }
                return Ok(pb::LogShippingSetup {
                    changed: !registered,
                    detail: if registered {
                        format!(
                            "{} already ships to {} with these values",
                            p.database,
                            p.secondary_server.as_str()
                        )
                    } else {
                        format!(
                            "{} registered as a secondary of {}",
                            p.secondary_server.as_str(),
                            p.database
                        )
                    },
                    primary_id: cur.primary_id,
                    backup_job_id: cur.backup_job_id,
                    ..Default::default()
                });
            }
        }
        let add = ls::add_primary_database(p);
        let out = Self::call(&mut conn, &add).await?;
        let job = out.guid(&add, "@backup_job_id")?;
        let primary_id = out.guid(&add, "@primary_id")?;
        attach_new_schedule(
            &mut conn,
            job,
            &format!("LSBackupSchedule_{}", p.database),
            p.interval,
        )
        .await?;
        Self::call(&mut conn, &ls::enable_job(job)).await?;
        Self::call(&mut conn, &ls::add_alert_job()).await?;
        Self::call(&mut conn, &ls::add_primary_secondary(p)).await?;
        Ok(pb::LogShippingSetup {
            changed: true,
            detail: format!(
                "{} is a log shipping primary for {}",
                p.database,
                p.secondary_server.as_str()
            ),
            primary_id: guid_text(&primary_id),
            backup_job_id: guid_text(&job),
            ..Default::default()
        })
    }

    /// The secondary side (the database must already be RESTORING, or in STANDBY).
    pub async fn setup_log_shipping_secondary(
        &self,
        s: &LogShippingSecondary,
    ) -> Result<pb::LogShippingSetup, Error> {
        let mut conn = self.connect(false).await?;
        let state = Self::rows(
            &mut conn,
            &tsql::database_state(std::slice::from_ref(&s.database)),
        )
        .await?;
        let ready = state.first().is_some_and(|r| {
            text(r, "state_desc") == "RESTORING" || (s.standby && flag(r, "is_in_standby"))
        });
        if !ready {
            return Err(Error::Sql {
                number: None,
                message: format!(
                    "{} must exist on this instance in RESTORING{} state before it can be a log shipping secondary (restore a full backup WITH NORECOVERY first); it is {}",
                    s.database,
                    if s.standby { " or STANDBY" } else { "" },
                    state
                        .first()
                        .map_or("absent".to_string(), |r| text(r, "state_desc")),
                ),
                retryable: false,
            });
        }
        if let Some(cur) = Self::secondary_config(&mut conn, &s.database).await? {
            let monitor = Self::rows(&mut conn, &ls::monitor_secondary(&s.database)).await?;
            let same = cur
                .primary_server
                .eq_ignore_ascii_case(s.primary_server.as_str())
                && cur
                    .primary_database
                    .eq_ignore_ascii_case(s.primary_database.as_str())
                && cur.backup_source_directory == s.backup_source_directory.as_str()
                && cur.backup_destination_directory == s.backup_destination_directory.as_str()
                && cur.file_retention_minutes == s.file_retention_minutes
                && cur.restore_delay_minutes == s.restore_delay_minutes
                && cur.standby == s.standby
                && monitor.first().is_some_and(|m| {
                    opt_i32(m, "restore_threshold") == Some(s.restore_threshold_minutes)
                        && opt_i32(m, "history_retention_period")
                            == Some(s.history_retention_minutes)
                })
                && job_on_schedule(&mut conn, &cur.copy_job_id, s.interval).await?
                && job_on_schedule(&mut conn, &cur.restore_job_id, s.interval).await?;
            if same {
                return Ok(pb::LogShippingSetup {
                    changed: false,
                    detail: format!(
                        "{} already restores from {} with these values",
                        s.database,
                        s.primary_server.as_str()
                    ),
                    secondary_id: cur.secondary_id,
                    copy_job_id: cur.copy_job_id,
                    restore_job_id: cur.restore_job_id,
                    ..Default::default()
                });
            }
        }
        let add = ls::add_secondary_primary(s);
        let out = Self::call(&mut conn, &add).await?;
        let copy = out.guid(&add, "@copy_job_id")?;
        let restore = out.guid(&add, "@restore_job_id")?;
        let secondary_id = out.guid(&add, "@secondary_id")?;
        attach_new_schedule(&mut conn, copy, "DefaultCopyJobSchedule", s.interval).await?;
        attach_new_schedule(&mut conn, restore, "DefaultRestoreJobSchedule", s.interval).await?;
        Self::call(&mut conn, &ls::add_secondary_database(s)).await?;
        Self::call(&mut conn, &ls::enable_job(copy)).await?;
        Self::call(&mut conn, &ls::enable_job(restore)).await?;
        Ok(pb::LogShippingSetup {
            changed: true,
            detail: format!(
                "{} is a log shipping secondary of {}",
                s.database,
                s.primary_server.as_str()
            ),
            secondary_id: guid_text(&secondary_id),
            copy_job_id: guid_text(&copy),
            restore_job_id: guid_text(&restore),
            ..Default::default()
        })
    }

    /// `sp_delete_log_shipping_secondary_database`, when `db` is a secondary.
    pub async fn remove_log_shipping_secondary(
        &self,
        db: &DatabaseName,
    ) -> Result<pb::Done, Error> {
        let mut conn = self.connect(false).await?;
        let Some(cur) = Self::secondary_config(&mut conn, db).await? else {
            return Ok(pb::Done {
                changed: false,
                detail: format!("{db} is not a log shipping secondary"),
            });
        };
        Self::call(&mut conn, &ls::delete_secondary_database(db)).await?;
        Ok(pb::Done {
            changed: true,
            detail: format!(
                "{db} no longer restores from {} (copy and restore jobs deleted)",
                cur.primary_server
            ),
        })
    }

    /// Every secondary registration, then the primary itself, when `db` is a primary.
    pub async fn remove_log_shipping_primary(&self, db: &DatabaseName) -> Result<pb::Done, Error> {
        let mut conn = self.connect(false).await?;
        let Some(cur) = Self::primary_config(&mut conn, db).await? else {
            return Ok(pb::Done {
                changed: false,
                detail: format!("{db} is not a log shipping primary"),
            });
        };
        for s in &cur.secondaries {
            Self::call(
                &mut conn,
                &ls::delete_primary_secondary(db, &s.server, &s.database),
            )
            .await?;
        }
        Self::call(&mut conn, &ls::delete_primary_database(db)).await?;
        Ok(pb::Done {
            changed: true,
            detail: format!(
                "{db} is no longer a log shipping primary (secondaries removed: {}; backup job deleted)",
                if cur.secondaries.is_empty() {
                    "none".to_string()
                } else {
                    cur.secondaries
                        .iter()
                        .map(|s| format!("{}/{}", s.server, s.database))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        })
    }
}
