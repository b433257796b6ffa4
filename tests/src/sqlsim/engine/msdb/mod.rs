//! msdb as SQL Server Agent and log shipping see it: jobs, steps, schedules, history, Agent
//! sessions and activity, the log shipping configuration and monitor tables, and the backup /
//! restore history. It is part of the persisted instance state (`InstanceState::msdb`), so a
//! restarted sim keeps its jobs, schedules, history and log shipping configuration.
//!
//! | module | role |
//! |---|---|
//! | `args` | binding EXEC / RPC arguments to a procedure's parameters, OUTPUT values |
//! | `jobs` | `sp_add_job` … `sp_stop_job` (msdb.dbo) |
//! | `schedules` | schedule parameters and sp_verify_schedule's checks (the 10-second rule, `--lab-short-schedules`) |
//! | `agent` | the Agent: scheduler, job runs, history rows, sysjobactivity |
//! | `steps` | what a step does: T-SQL, the CmdExec subset, `sqllogship.exe` |
//! | `access` | the Agent account's folder access table (`sqlsim.agent_access`) |
//! | `logship` | `sp_add_log_shipping_*`, `sp_delete_log_shipping_*`, `sp_help_log_shipping_monitor` |
//! | `sqllogship` | the backup, copy and restore agents the log shipping jobs run |
//! | `views` | msdb tables as SELECT sees them |

pub mod access;
mod agent;
mod args;
mod jobs;
mod logship;
mod schedules;
mod sqllogship;
mod steps;
mod views;

pub use agent::AgentRuntime;
pub use views::msdb_table;

use serde::{Deserialize, Serialize};

use crate::sqlsim::clock::Timestamp;

/// Most history rows kept in all (SQL Server Agent's default `jobhistory_max_rows`).
pub const HISTORY_MAX_ROWS: usize = 1000;
/// Most history rows kept per job (`jobhistory_max_rows_per_job`).
pub const HISTORY_MAX_ROWS_PER_JOB: usize = 100;

/// One job step (`sysjobsteps`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStep {
    /// `step_id`, from 1.
    pub step_id: i32,
    /// `step_name`.
    pub step_name: String,
    /// `subsystem`: `TSQL` or `CmdExec` (others fail when run).
    pub subsystem: String,
    /// `command`.
    pub command: String,
    /// `database_name` for T-SQL steps.
    pub database_name: String,
    /// 1 quit with success, 2 quit with failure, 3 next step, 4 go to `on_success_step_id`.
    pub on_success_action: i32,
    /// Target of action 4 on success.
    pub on_success_step_id: i32,
    /// Same codes as `on_success_action`.
    pub on_fail_action: i32,
    /// Target of action 4 on failure.
    pub on_fail_step_id: i32,
    /// `retry_attempts` (recorded, not used).
    pub retry_attempts: i32,
    /// `retry_interval` in minutes (recorded, not used).
    pub retry_interval: i32,
    /// Outcome of the last run: `last_run_outcome` (0 failed, 1 succeeded, 3 canceled, 5 unknown).
    pub last_run_outcome: i32,
    /// `last_run_date` / `last_run_time` as ints (0 when never run).
    pub last_run_date: i64,
    /// See `last_run_date`.
    pub last_run_time: i64,
}

/// A job (`sysjobs`) with its steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// `job_id` as upper-case GUID text.
    pub job_id: String,
    /// `name`.
    pub name: String,
    /// `enabled`.
    pub enabled: bool,
    /// `description`.
    pub description: String,
    /// `start_step_id`.
    pub start_step_id: i32,
    /// Category name (`Log Shipping` for the jobs the log shipping procedures create).
    pub category: String,
    /// Owner login.
    pub owner: String,
    /// `date_created`.
    pub date_created: Timestamp,
    /// `date_modified`.
    pub date_modified: Timestamp,
    /// Targeted at the local server (`sp_add_jobserver`).
    pub has_server: bool,
    /// Steps in step_id order.
    pub steps: Vec<JobStep>,
}

/// A schedule (`sysschedules`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// `schedule_id`.
    pub schedule_id: i32,
    /// `schedule_uid` as GUID text.
    pub schedule_uid: String,
    /// `name`.
    pub name: String,
    /// `enabled`.
    pub enabled: bool,
    /// 1 once, 4 daily, 8 weekly, 16/32 monthly, 64 when the Agent starts, 128 when idle.
    pub freq_type: i32,
    /// Days between runs for daily schedules (other meanings for weekly / monthly).
    pub freq_interval: i32,
    /// 1 at the start time, 2 seconds, 4 minutes, 8 hours.
    pub freq_subday_type: i32,
    /// Units of `freq_subday_type` between runs.
    pub freq_subday_interval: i32,
    /// `freq_relative_interval`.
    pub freq_relative_interval: i32,
    /// `freq_recurrence_factor`.
    pub freq_recurrence_factor: i32,
    /// `active_start_date` yyyymmdd.
    pub active_start_date: i64,
    /// `active_end_date` yyyymmdd.
    pub active_end_date: i64,
    /// `active_start_time` hhmmss.
    pub active_start_time: i64,
    /// `active_end_time` hhmmss.
    pub active_end_time: i64,
    /// `date_created`.
    pub date_created: Timestamp,
}

/// A job ↔ schedule link (`sysjobschedules`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSchedule {
    /// The job.
    pub job_id: String,
    /// The schedule.
    pub schedule_id: i32,
    /// `next_run_date` yyyymmdd (0 until the scheduler computed it).
    pub next_run_date: i64,
    /// `next_run_time` hhmmss.
    pub next_run_time: i64,
}

/// A `sysjobhistory` row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// `instance_id` (identity).
    pub instance_id: i64,
    /// `job_id`.
    pub job_id: String,
    /// `step_id`; 0 is the job outcome row.
    pub step_id: i32,
    /// `step_name` (`(Job outcome)` for step 0).
    pub step_name: String,
    /// `sql_message_id`.
    pub sql_message_id: i32,
    /// `sql_severity`.
    pub sql_severity: i32,
    /// `message`.
    pub message: String,
    /// 0 failed, 1 succeeded, 2 retry, 3 canceled, 4 in progress.
    pub run_status: i32,
    /// `run_date` yyyymmdd.
    pub run_date: i64,
    /// `run_time` hhmmss.
    pub run_time: i64,
    /// `run_duration` hhmmss.
    pub run_duration: i64,
    /// `server`.
    pub server: String,
}

/// A `syssessions` row: one per Agent service start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSession {
    /// `session_id`.
    pub session_id: i32,
    /// `agent_start_date`.
    pub agent_start_date: Timestamp,
}

/// A `sysjobactivity` row: one per job per Agent session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// `session_id`.
    pub session_id: i32,
    /// `job_id`.
    pub job_id: String,
    /// `run_requested_date`.
    pub run_requested_date: Option<Timestamp>,
    /// `run_requested_source` (1 scheduler, 4 user).
    pub run_requested_source: Option<String>,
    /// `start_execution_date`.
    pub start_execution_date: Option<Timestamp>,
    /// `last_executed_step_id`.
    pub last_executed_step_id: Option<i32>,
    /// `last_executed_step_date`.
    pub last_executed_step_date: Option<Timestamp>,
    /// `stop_execution_date`.
    pub stop_execution_date: Option<Timestamp>,
    /// `job_history_id`: the outcome row of the last run.
    pub job_history_id: Option<i64>,
    /// `next_scheduled_run_date`.
    pub next_scheduled_run_date: Option<Timestamp>,
}

/// `log_shipping_primary_databases` + `log_shipping_monitor_primary` (one row each per primary).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LsPrimary {
    /// `primary_id`.
    pub primary_id: String,
    /// `primary_database`.
    pub primary_database: String,
    /// `backup_directory`.
    pub backup_directory: String,
    /// `backup_share`.
    pub backup_share: String,
    /// `backup_retention_period` (minutes).
    pub backup_retention_period: i32,
    /// `backup_job_id`.
    pub backup_job_id: String,
    /// `monitor_server` (the primary itself when none is configured).
    pub monitor_server: String,
    /// `backup_compression` 0/1/2.
    pub backup_compression: i32,
    /// `last_backup_file`.
    pub last_backup_file: Option<String>,
    /// `last_backup_date` (UTC in the sim; SQL Server keeps local time here).
    pub last_backup_date: Option<Timestamp>,
    /// `backup_threshold` (minutes).
    pub backup_threshold: i32,
    /// `threshold_alert` (error number).
    pub threshold_alert: i32,
    /// `threshold_alert_enabled`.
    pub threshold_alert_enabled: bool,
    /// `history_retention_period` (minutes).
    pub history_retention_period: i32,
}

/// `log_shipping_primary_secondaries`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LsPrimarySecondary {
    /// `primary_id`.
    pub primary_id: String,
    /// `secondary_server`.
    pub secondary_server: String,
    /// `secondary_database`.
    pub secondary_database: String,
}

/// `log_shipping_secondary` (one per primary server + database this instance copies from).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LsSecondary {
    /// `secondary_id`.
    pub secondary_id: String,
    /// `primary_server`.
    pub primary_server: String,
    /// `primary_database`.
    pub primary_database: String,
    /// `backup_source_directory` (the share).
    pub backup_source_directory: String,
    /// `backup_destination_directory` (the copy folder).
    pub backup_destination_directory: String,
    /// `file_retention_period` (minutes).
    pub file_retention_period: i32,
    /// `copy_job_id`.
    pub copy_job_id: String,
    /// `restore_job_id`.
    pub restore_job_id: String,
    /// `monitor_server`.
    pub monitor_server: String,
    /// `last_copied_file`.
    pub last_copied_file: Option<String>,
    /// `last_copied_date`.
    pub last_copied_date: Option<Timestamp>,
}

/// `log_shipping_secondary_databases` + `log_shipping_monitor_secondary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LsSecondaryDb {
    /// `secondary_database`.
    pub secondary_database: String,
    /// `secondary_id`.
    pub secondary_id: String,
    /// `restore_delay` (minutes).
    pub restore_delay: i32,
    /// `restore_all`.
    pub restore_all: bool,
    /// 0 NORECOVERY, 1 STANDBY.
    pub restore_mode: i32,
    /// `disconnect_users`.
    pub disconnect_users: bool,
    /// `block_size`, `buffer_count`, `max_transfer_size` (recorded only).
    pub block_size: i32,
    /// See `block_size`.
    pub buffer_count: i32,
    /// See `block_size`.
    pub max_transfer_size: i32,
    /// `last_restored_file`.
    pub last_restored_file: Option<String>,
    /// `last_restored_date`.
    pub last_restored_date: Option<Timestamp>,
    /// `last_restored_latency` (minutes from backup to restore).
    pub last_restored_latency: Option<i32>,
    /// `restore_threshold` (minutes).
    pub restore_threshold: i32,
    /// `threshold_alert`.
    pub threshold_alert: i32,
    /// `threshold_alert_enabled`.
    pub threshold_alert_enabled: bool,
    /// `history_retention_period` (minutes).
    pub history_retention_period: i32,
}

/// A `log_shipping_monitor_history_detail` row (or, with `error`, an `_error_detail` one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LsHistory {
    /// `agent_id`: primary_id or secondary_id.
    pub agent_id: String,
    /// 0 backup, 1 copy, 2 restore.
    pub agent_type: i32,
    /// `session_id` (one per agent run).
    pub session_id: i32,
    /// `database_name`.
    pub database_name: String,
    /// 0 starting, 1 running, 2 success, 3 error, 4 warning.
    pub session_status: i32,
    /// `log_time` (UTC).
    pub log_time: Timestamp,
    /// `message`.
    pub message: String,
    /// True for an error detail row.
    pub error: bool,
}

/// `backupset` + `backupmediafamily` + `restorehistory`, one row per restore.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// `restorehistory.restore_history_id`.
    pub restore_history_id: i64,
    /// `backup_set_id` (shared by the three tables).
    pub backup_set_id: i64,
    /// `restore_date`.
    pub restore_date: Timestamp,
    /// `destination_database_name`.
    pub destination_database_name: String,
    /// `restore_type`: `D` database, `L` log.
    pub restore_type: String,
    /// `backupset.database_name`.
    pub database_name: String,
    /// `backupset.first_lsn`.
    pub first_lsn: u64,
    /// `backupset.last_lsn`.
    pub last_lsn: u64,
    /// `backupset.time_zone`: the writer's UTC offset in 15-minute intervals (127 unknown).
    #[serde(default = "unknown_zone")]
    pub time_zone: i32,
    /// `backupset.backup_start_date` (from the backup header: the writer's local time).
    pub backup_start_date: Timestamp,
    /// `backupset.backup_finish_date`.
    pub backup_finish_date: Timestamp,
    /// `backupset.type`: `D` or `L`.
    pub backup_type: String,
    /// `backupset.server_name`.
    pub server_name: String,
    /// `backupmediafamily.physical_device_name`.
    pub physical_device_name: String,
    /// `backupset.backup_size` of the restored set.
    #[serde(default)]
    pub backup_size: u64,
}

/// `backupset` + `backupmediafamily`, one row per successful BACKUP (SQL Server records every
/// backup it writes there, as it does every restore; the backup's size is what preflight sizes
/// the next full backup by).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// `backup_set_id` (one counter with the restores' rows).
    pub backup_set_id: i64,
    /// `database_name`.
    pub database_name: String,
    /// `server_name`.
    pub server_name: String,
    /// `type`: `D` database, `L` log.
    pub backup_type: String,
    /// `first_lsn`.
    pub first_lsn: u64,
    /// `last_lsn`.
    pub last_lsn: u64,
    /// `time_zone` (15-minute units, 127 unknown).
    pub time_zone: i32,
    /// `backup_start_date` (this server's local time).
    pub backup_start_date: Timestamp,
    /// `backup_finish_date`.
    pub backup_finish_date: Timestamp,
    /// `backup_size`: bytes of the set (pages written × 8 KB).
    pub backup_size: u64,
    /// `compressed_backup_size`: bytes on disk (the sim never compresses: = `backup_size`).
    pub compressed_backup_size: u64,
    /// `is_copy_only`.
    pub is_copy_only: bool,
    /// `backupmediafamily.physical_device_name`.
    pub physical_device_name: String,
}

/// One rule of the Agent account's access table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessRule {
    /// Folder as written (SQL Server form, mapped like every other path).
    pub path: String,
    /// The Agent account may list and read files under it.
    pub read: bool,
    /// The Agent account may create and delete files under it.
    pub write: bool,
}

/// Everything msdb holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Msdb {
    /// `sysjobs` + `sysjobsteps`.
    pub jobs: Vec<Job>,
    /// `sysschedules`.
    pub schedules: Vec<Schedule>,
    /// `sysjobschedules`.
    pub job_schedules: Vec<JobSchedule>,
    /// `sysjobhistory`.
    pub history: Vec<HistoryRow>,
    /// Last `instance_id` given.
    pub last_instance_id: i64,
    /// Last `schedule_id` given.
    pub last_schedule_id: i32,
    /// `syssessions`.
    pub sessions: Vec<AgentSession>,
    /// `sysjobactivity`.
    pub activity: Vec<Activity>,
    /// Log shipping, primary side.
    pub ls_primaries: Vec<LsPrimary>,
    /// Secondaries known to the primary.
    pub ls_primary_secondaries: Vec<LsPrimarySecondary>,
    /// Log shipping, secondary side.
    pub ls_secondaries: Vec<LsSecondary>,
    /// Secondary databases.
    pub ls_secondary_databases: Vec<LsSecondaryDb>,
    /// Monitor history and error detail.
    pub ls_history: Vec<LsHistory>,
    /// Last log shipping agent session id.
    pub last_ls_session_id: i32,
    /// Restore history.
    pub restores: Vec<RestoreRecord>,
    /// Backup history.
    #[serde(default)]
    pub backups: Vec<BackupRecord>,
    /// Last `backup_set_id` given (backups and restores).
    #[serde(default)]
    pub last_backup_set_id: i64,
    /// The Agent account's access table.
    pub agent_access: Vec<AccessRule>,
}

impl Msdb {
    /// The job with this id (text, case-insensitive).
    pub fn job(&self, job_id: &str) -> Option<&Job> {
        self.jobs
            .iter()
            .find(|j| j.job_id.eq_ignore_ascii_case(job_id))
    }

    /// Mutable [`Msdb::job`].
    pub fn job_mut(&mut self, job_id: &str) -> Option<&mut Job> {
        self.jobs
            .iter_mut()
            .find(|j| j.job_id.eq_ignore_ascii_case(job_id))
    }

    /// The job with this name (case-insensitive).
    pub fn job_by_name(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name.eq_ignore_ascii_case(name))
    }

    /// The current (latest) Agent session id.
    pub fn current_session(&self) -> Option<i32> {
        self.sessions.iter().map(|s| s.session_id).max()
    }

    /// Removes a job with its schedule links, activity and (optionally) history; schedules no
    /// other job uses go too when `drop_unused_schedules`.
    pub fn remove_job(&mut self, job_id: &str, drop_history: bool, drop_unused_schedules: bool) {
        let id = job_id.to_uppercase();
        self.jobs.retain(|j| j.job_id != id);
        let linked: Vec<i32> = self
            .job_schedules
            .iter()
            .filter(|l| l.job_id == id)
            .map(|l| l.schedule_id)
            .collect();
        self.job_schedules.retain(|l| l.job_id != id);
        if drop_unused_schedules {
            let still_used: Vec<i32> = self.job_schedules.iter().map(|l| l.schedule_id).collect();
            self.schedules.retain(|s| {
                !linked.contains(&s.schedule_id) || still_used.contains(&s.schedule_id)
            });
        }
        self.activity.retain(|a| a.job_id != id);
        if drop_history {
            self.history.retain(|h| h.job_id != id);
        }
    }

    /// Appends a history row (new `instance_id`), trimming to the Agent's limits; its id.
    pub fn add_history(&mut self, mut row: HistoryRow) -> i64 {
        self.last_instance_id += 1;
        row.instance_id = self.last_instance_id;
        let job = row.job_id.clone();
        self.history.push(row);
        let per_job = self.history.iter().filter(|h| h.job_id == job).count();
        if per_job > HISTORY_MAX_ROWS_PER_JOB {
            let mut extra = per_job - HISTORY_MAX_ROWS_PER_JOB;
            self.history.retain(|h| {
                if extra > 0 && h.job_id == job {
                    extra -= 1;
                    false
                } else {
                    true
                }
            });
        }
        if self.history.len() > HISTORY_MAX_ROWS {
            let extra = self.history.len() - HISTORY_MAX_ROWS;
            self.history.drain(..extra);
        }
        self.last_instance_id
    }

    /// A new `backup_set_id`: after every id a saved backup or restore row holds (state saved
    /// before the counter existed starts after its restores).
    pub fn next_backup_set_id(&mut self) -> i64 {
        let used = self
            .restores
            .iter()
            .map(|r| r.backup_set_id)
            .chain(self.backups.iter().map(|b| b.backup_set_id))
            .max()
            .unwrap_or(0);
        self.last_backup_set_id = self.last_backup_set_id.max(used) + 1;
        self.last_backup_set_id
    }

    /// Appends a log shipping monitor row, keeping the table bounded.
    pub fn add_ls_history(&mut self, row: LsHistory) {
        self.ls_history.push(row);
        if self.ls_history.len() > HISTORY_MAX_ROWS {
            let extra = self.ls_history.len() - HISTORY_MAX_ROWS;
            self.ls_history.drain(..extra);
        }
    }
}

/// Records a successful RESTORE in `restorehistory`, `backupset` and `backupmediafamily`.
pub fn record_restore(
    st: &mut crate::sqlsim::engine::state::InstanceState,
    target: &str,
    header: &crate::sqlsim::engine::backup::format::BackupHeader,
    device: &str,
) {
    let msdb = &mut st.msdb;
    let id = msdb.restores.last().map_or(1, |r| r.restore_history_id + 1);
    let set_id = msdb.next_backup_set_id();
    let kind = if header.backup_type == 2 { "L" } else { "D" };
    msdb.restores.push(RestoreRecord {
        restore_history_id: id,
        backup_set_id: set_id,
        restore_date: Timestamp::now(),
        destination_database_name: target.to_string(),
        restore_type: kind.to_string(),
        database_name: header.database_name.clone(),
        first_lsn: header.first_lsn,
        last_lsn: header.last_lsn,
        // backupset.time_zone: the writer's offset in 15-minute units, 127 = unknown.
        time_zone: crate::sqlsim::engine::backup::format::writer_offset(header)
            .map_or(127, |m| m.div_euclid(15)),
        backup_start_date: header.start,
        backup_finish_date: header.finish,
        backup_type: kind.to_string(),
        server_name: header.server_name.clone(),
        physical_device_name: device.to_string(),
        backup_size: crate::sqlsim::engine::backup::set_bytes(header),
    });
    if msdb.restores.len() > HISTORY_MAX_ROWS {
        msdb.restores.remove(0);
    }
}

/// Records a successful BACKUP in `backupset` and `backupmediafamily`.
pub fn record_backup(
    st: &mut crate::sqlsim::engine::state::InstanceState,
    header: &crate::sqlsim::engine::backup::format::BackupHeader,
    device: &str,
) {
    let size = crate::sqlsim::engine::backup::set_bytes(header);
    let msdb = &mut st.msdb;
    let id = msdb.next_backup_set_id();
    let kind = if header.backup_type == 2 { "L" } else { "D" };
    msdb.backups.push(BackupRecord {
        backup_set_id: id,
        database_name: header.database_name.clone(),
        server_name: header.server_name.clone(),
        backup_type: kind.to_string(),
        first_lsn: header.first_lsn,
        last_lsn: header.last_lsn,
        // Written here: this server's offset and local time (the in-memory header is UTC).
        time_zone: crate::sqlsim::clock::utc_offset_minutes().div_euclid(15),
        backup_start_date: header.start.local(),
        backup_finish_date: header.finish.local(),
        backup_size: size,
        compressed_backup_size: size,
        is_copy_only: header.is_copy_only,
        physical_device_name: device.to_string(),
    });
    if msdb.backups.len() > HISTORY_MAX_ROWS {
        msdb.backups.remove(0);
    }
}

/// backupset.time_zone's "unknown" (rows saved before the column existed).
fn unknown_zone() -> i32 {
    127
}
