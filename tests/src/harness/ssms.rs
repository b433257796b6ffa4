//! The log shipping setup scripts a DBA runs, as the SSMS "Transaction Log Shipping" dialog
//! generates them (pchat-dr.md §6.7): one parameterised copy of the primary half
//! (`sp_add_log_shipping_primary_database`, the backup schedule, enable, the alert job,
//! `sp_add_log_shipping_primary_secondary`) and the secondary half
//! (`sp_add_log_shipping_secondary_primary`, copy and restore schedules,
//! `sp_add_log_shipping_secondary_database`, enable), for every test and the lab that configures
//! log shipping the way production does, so that they all exercise the same script.
//!
//! Each script ends with one `SELECT` of the return code (`rc`) and the OUTPUT ids, which SSMS
//! does not emit: it lets the caller assert `rc = 0` and find the jobs the procedures created.
//!
//! Decided: intervals are given in seconds (the lab and the tests ship every second or two;
//! production every 15 minutes) and written the way SQL Server Agent stores them: whole hours
//! as `@freq_subday_type = 8`, whole minutes as `4` (SSMS's own form), anything else as `2`
//! (seconds). The active window ends at 23:59:59 rather than SSMS's 23:59:00 so that a
//! 1-second schedule has no silent minute before midnight in which a test would wait in vain.
//!
//! SQL Server refuses a seconds interval under 10 (msdb's sp_verify_schedule, Msg 14278), so
//! the 1-2 s scripts are for sqlsim instances started with its lab-only
//! `--lab-short-schedules` ([`super::sqlsim::SqlSim::with_lab_short_schedules`]); against
//! SQL Server, or a sim without the flag, their `sp_add_schedule` fails with 14278. Only this
//! stand-in for the DBA's own setup uses them: the product schedules PChat's 15 minutes and
//! runs a cycle itself when it needs one (FB-5).

/// One log shipping configuration: the values an operator types into the SSMS dialog.
#[derive(Debug, Clone)]
pub struct LogShipping {
    /// The shipped database (`mgc`).
    pub database: String,
    /// Backup folder on the primary, also its share name: the secondary's copy job reads it.
    pub share: String,
    /// The secondary's copy destination folder.
    pub copy_dir: String,
    /// Primary server (instance) name: part of the copy and restore job names.
    pub primary_server: String,
    /// Secondary server (instance) name.
    pub secondary_server: String,
    /// Seconds between log backups on the primary.
    pub backup_every_s: u32,
    /// Seconds between copy job runs on the secondary.
    pub copy_every_s: u32,
    /// Seconds between restore job runs on the secondary.
    pub restore_every_s: u32,
    /// Minutes without a log backup before the primary's alert (`@backup_threshold`).
    pub backup_threshold_min: u32,
    /// Minutes without a restore before the secondary's alert (`@restore_threshold`).
    pub restore_threshold_min: u32,
    /// `@restore_mode`: 0 NORECOVERY, 1 STANDBY.
    pub restore_mode: u8,
}

/// File retention on the share and in the copy folder, minutes (SSMS default: 72 h).
const FILE_RETENTION_MIN: u32 = 4320;
/// History retention in msdb, minutes (SSMS default: 96 h).
const HISTORY_RETENTION_MIN: u32 = 5760;

impl LogShipping {
    /// `database` shipped from `primary_server` (backing up to `share`) to `secondary_server`
    /// (copying into `copy_dir`), with the PChat document's thresholds (backup 60 min, restore
    /// 45 min), NORECOVERY, and every job running each second (needs a sim with
    /// `--lab-short-schedules`, module doc).
    pub fn new(
        database: &str,
        share: &str,
        copy_dir: &str,
        primary_server: &str,
        secondary_server: &str,
    ) -> Self {
        LogShipping {
            database: database.into(),
            share: share.into(),
            copy_dir: copy_dir.into(),
            primary_server: primary_server.into(),
            secondary_server: secondary_server.into(),
            backup_every_s: 1,
            copy_every_s: 1,
            restore_every_s: 1,
            backup_threshold_min: 60,
            restore_threshold_min: 45,
            restore_mode: 0,
        }
    }

    /// The same with the backup, copy and restore jobs every so many seconds.
    pub fn every(mut self, backup_s: u32, copy_s: u32, restore_s: u32) -> Self {
        self.backup_every_s = backup_s;
        self.copy_every_s = copy_s;
        self.restore_every_s = restore_s;
        self
    }

    /// The same with the secondary in STANDBY (`true`) or NORECOVERY between restores.
    pub fn standby(mut self, standby: bool) -> Self {
        self.restore_mode = u8::from(standby);
        self
    }

    /// The primary half, run on the primary instance (the secondary must already hold the
    /// database RESTORING). Result columns: `rc`, `backup_job_id`, `primary_id`, `schedule_id`.
    pub fn primary_script(&self) -> String {
        let db = lit(&self.database);
        let share = lit(&self.share);
        let job = lit(&format!("LSBackup_{}", self.database));
        let schedule = schedule(
            &format!("LSBackupSchedule_{}", self.database),
            self.backup_every_s,
            "@sched_uid",
            "@sched_id",
        );
        let secondary = lit(&self.secondary_server);
        let (threshold, retention, history) = (
            self.backup_threshold_min,
            FILE_RETENTION_MIN,
            HISTORY_RETENTION_MIN,
        );
        format!(
            r"
DECLARE @LS_BackupJobId uniqueidentifier, @LS_PrimaryId uniqueidentifier, @rc int;
EXEC @rc = master.dbo.sp_add_log_shipping_primary_database
     @database = {db},
     @backup_directory = {share},
     @backup_share = {share},
     @backup_job_name = {job},
     @backup_retention_period = {retention},
     @backup_compression = 2,
     @backup_threshold = {threshold}, @threshold_alert_enabled = 1,
     @history_retention_period = {history},
     @backup_job_id = @LS_BackupJobId OUTPUT,
     @primary_id = @LS_PrimaryId OUTPUT,
     @overwrite = 1;
IF (@@ERROR = 0 AND @rc = 0)
BEGIN
  DECLARE @sched_uid uniqueidentifier, @sched_id int;
  {schedule}
  EXEC msdb.dbo.sp_attach_schedule @job_id = @LS_BackupJobId, @schedule_id = @sched_id;
  EXEC msdb.dbo.sp_update_job @job_id = @LS_BackupJobId, @enabled = 1;
END
EXEC master.dbo.sp_add_log_shipping_alert_job;
EXEC master.dbo.sp_add_log_shipping_primary_secondary
     @primary_database = {db}, @secondary_server = {secondary}, @secondary_database = {db},
     @overwrite = 1;
SELECT @rc AS rc, @LS_BackupJobId AS backup_job_id, @LS_PrimaryId AS primary_id, @sched_id AS schedule_id;"
        )
    }

    /// The secondary half, run on the secondary instance once it holds the database RESTORING
    /// (or STANDBY). Result columns: `rc`, `copy_job_id`, `restore_job_id`, `secondary_id`.
    pub fn secondary_script(&self) -> String {
        let db = lit(&self.database);
        let (primary, share, copy) = (
            lit(&self.primary_server),
            lit(&self.share),
            lit(&self.copy_dir),
        );
        let copy_job = lit(&format!("LSCopy_{}_{}", self.primary_server, self.database));
        let restore_job = lit(&format!(
            "LSRestore_{}_{}",
            self.primary_server, self.database
        ));
        let copy_schedule = schedule("DefaultCopyJobSchedule", self.copy_every_s, "@cu", "@ci");
        let restore_schedule = schedule(
            "DefaultRestoreJobSchedule",
            self.restore_every_s,
            "@ru",
            "@ri",
        );
        let (mode, threshold, retention, history) = (
            self.restore_mode,
            self.restore_threshold_min,
            FILE_RETENTION_MIN,
            HISTORY_RETENTION_MIN,
        );
        format!(
            r"
DECLARE @copy_id uniqueidentifier, @restore_id uniqueidentifier, @secondary_id uniqueidentifier, @rc int;
EXEC @rc = master.dbo.sp_add_log_shipping_secondary_primary
     @primary_server = {primary}, @primary_database = {db},
     @backup_source_directory = {share},
     @backup_destination_directory = {copy},
     @copy_job_name = {copy_job}, @restore_job_name = {restore_job},
     @file_retention_period = {retention}, @overwrite = 1,
     @copy_job_id = @copy_id OUTPUT, @restore_job_id = @restore_id OUTPUT, @secondary_id = @secondary_id OUTPUT;
IF (@@ERROR = 0 AND @rc = 0)
BEGIN
  DECLARE @cu uniqueidentifier, @ci int, @ru uniqueidentifier, @ri int;
  {copy_schedule}
  EXEC msdb.dbo.sp_attach_schedule @job_id = @copy_id, @schedule_id = @ci;
  {restore_schedule}
  EXEC msdb.dbo.sp_attach_schedule @job_id = @restore_id, @schedule_id = @ri;
  EXEC @rc = master.dbo.sp_add_log_shipping_secondary_database
       @secondary_database = {db}, @primary_server = {primary}, @primary_database = {db},
       @restore_delay = 0, @restore_mode = {mode},
       @disconnect_users = 0, @restore_threshold = {threshold}, @threshold_alert_enabled = 1,
       @history_retention_period = {history}, @overwrite = 1;
  EXEC msdb.dbo.sp_update_job @job_id = @copy_id, @enabled = 1;
  EXEC msdb.dbo.sp_update_job @job_id = @restore_id, @enabled = 1;
END
SELECT @rc AS rc, @copy_id AS copy_job_id, @restore_id AS restore_job_id, @secondary_id AS secondary_id;"
        )
    }
}

/// `EXEC msdb.dbo.sp_add_schedule` for a daily schedule running every `every_s` seconds all
/// day, its uid and id into the variables named (module doc: how the interval is written).
fn schedule(name: &str, every_s: u32, uid_var: &str, id_var: &str) -> String {
    let (subday_type, subday_interval) = match every_s {
        s if s > 0 && s % 3600 == 0 => (8, s / 3600),
        s if s > 0 && s % 60 == 0 => (4, s / 60),
        s => (2, s),
    };
    format!(
        r"EXEC msdb.dbo.sp_add_schedule @schedule_name = {}, @enabled = 1, @freq_type = 4,
       @freq_interval = 1, @freq_subday_type = {subday_type}, @freq_subday_interval = {subday_interval}, @freq_recurrence_factor = 0,
       @active_start_date = 20240101, @active_end_date = 99991231, @active_start_time = 0, @active_end_time = 235959,
       @schedule_uid = {uid_var} OUTPUT, @schedule_id = {id_var} OUTPUT;",
        lit(name)
    )
}

/// A T-SQL Unicode string literal, quotes doubled (paths and server names are the caller's,
/// quoted anyway).
fn lit(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_use_the_coarsest_whole_unit() {
        assert!(
            schedule("s", 1, "@u", "@i")
                .contains("@freq_subday_type = 2, @freq_subday_interval = 1,")
        );
        assert!(
            schedule("s", 900, "@u", "@i")
                .contains("@freq_subday_type = 4, @freq_subday_interval = 15,")
        );
        assert!(
            schedule("s", 7200, "@u", "@i")
                .contains("@freq_subday_type = 8, @freq_subday_interval = 2,")
        );
    }

    #[test]
    fn names_are_quoted_and_jobs_named_as_ssms_does() {
        let ls = LogShipping::new("mgc", r"\\fs\it's", r"E:\Copy", r"SQL1\INST", "SQL2");
        let p = ls.primary_script();
        assert!(p.contains(r"@backup_directory = N'\\fs\it''s'"), "{p}");
        assert!(p.contains("@backup_job_name = N'LSBackup_mgc'"), "{p}");
        assert!(p.contains("@secondary_server = N'SQL2'"), "{p}");
        let s = ls.clone().standby(true).secondary_script();
        assert!(
            s.contains(r"@copy_job_name = N'LSCopy_SQL1\INST_mgc'"),
            "{s}"
        );
        assert!(
            s.contains(r"@restore_job_name = N'LSRestore_SQL1\INST_mgc'"),
            "{s}"
        );
        assert!(s.contains("@restore_mode = 1,"), "{s}");
        assert!(ls.secondary_script().contains("@restore_mode = 0,"));
    }
}
