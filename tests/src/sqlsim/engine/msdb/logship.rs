//! The log shipping procedures of pchat-dr.md §6.7 and their removal counterparts, plus
//! `sp_help_log_shipping_monitor` (§6.8). They fill the msdb tables, create the jobs DISABLED
//! with the `sqllogship.exe` CmdExec steps and hand back job / agent ids as OUTPUT parameters.
//! `@overwrite = 1` (emitted by SSMS, undocumented) replaces an existing configuration instead
//! of failing. Errors are SQL Server's 32009-32025 (text from its message catalogue), 15010 for
//! a missing database, 32015 for a primary in SIMPLE recovery, 32022 for a job name taken by a
//! job outside the Log Shipping category. Monitor, alert job: the alert job (`LSAlert_<server>`,
//! T-SQL step `sys.sp_check_log_shipping_monitor_alert`, every 2 minutes) is created and its
//! step succeeds without raising 14420 / 14421.

use super::args::Bound;
use super::jobs::{ProcResult, create_job, finish, new_step};
use super::{LsPrimary, LsPrimarySecondary, LsSecondary, LsSecondaryDb, Msdb, Schedule};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::engine::query::RowSet;
use crate::sqlsim::engine::state::{InstanceState, RecoveryModel, new_guid};
use crate::sqlsim::engine::{Engine, ProcArg, ResultItem, SessionInfo, StatementResult, lock};
use crate::sqlsim::tokens::{Column, ServerMessage};
use crate::sqlsim::types::{SqlType, Value};

/// Where SQL Server 2016 installs sqllogship.exe; the job steps name it.
const SQLLOGSHIP: &str = r"C:\Program Files\Microsoft SQL Server\130\Tools\Binn\sqllogship.exe";
/// Category of the jobs these procedures create.
const CATEGORY: &str = "Log Shipping";

fn err(number: i32, text: impl Into<String>) -> ServerMessage {
    ServerMessage::new(number, 1, 16, text)
}

fn no_database(db: &str) -> ServerMessage {
    err(
        15010,
        format!(
            "The database '{db}' does not exist. Supply a valid database name. To see available databases, use sys.databases."
        ),
    )
}

const MONITOR: &[&str] = &[
    "@monitor_server",
    "@monitor_server_security_mode",
    "@monitor_server_login",
    "@monitor_server_password",
];

fn params(object: &str) -> Option<(&'static str, Vec<&'static str>)> {
    let mut p: Vec<&'static str>;
    let name = match object {
        "sp_add_log_shipping_primary_database" => {
            p = vec![
                "@database",
                "@backup_directory",
                "@backup_share",
                "@backup_job_name",
                "@backup_retention_period",
            ];
            p.extend_from_slice(MONITOR);
            p.extend([
                "@backup_threshold",
                "@threshold_alert",
                "@threshold_alert_enabled",
                "@history_retention_period",
                "@backup_job_id",
                "@primary_id",
                "@backup_compression",
                "@overwrite",
                "@ignoreremotemonitor",
                "@primary_connection_options",
            ]);
            "sp_add_log_shipping_primary_database"
        }
        "sp_add_log_shipping_primary_secondary" => {
            p = vec![
                "@primary_database",
                "@secondary_server",
                "@secondary_database",
                "@overwrite",
            ];
            "sp_add_log_shipping_primary_secondary"
        }
        "sp_add_log_shipping_alert_job" => {
            p = vec!["@alert_job_id"];
            "sp_add_log_shipping_alert_job"
        }
        "sp_add_log_shipping_secondary_primary" => {
            p = vec![
                "@primary_server",
                "@primary_database",
                "@backup_source_directory",
                "@backup_destination_directory",
                "@copy_job_name",
                "@restore_job_name",
                "@file_retention_period",
            ];
            p.extend_from_slice(MONITOR);
            p.extend([
                "@copy_job_id",
                "@restore_job_id",
                "@secondary_id",
                "@overwrite",
                "@ignoreremotemonitor",
            ]);
            "sp_add_log_shipping_secondary_primary"
        }
        "sp_add_log_shipping_secondary_database" => {
            p = vec![
                "@secondary_database",
                "@primary_server",
                "@primary_database",
                "@restore_delay",
                "@restore_all",
                "@restore_mode",
                "@disconnect_users",
                "@block_size",
                "@buffer_count",
                "@max_transfer_size",
                "@restore_threshold",
                "@threshold_alert",
                "@threshold_alert_enabled",
                "@history_retention_period",
                "@overwrite",
                "@ignoreremotemonitor",
            ];
            "sp_add_log_shipping_secondary_database"
        }
        "sp_delete_log_shipping_primary_secondary" => {
            p = vec![
                "@primary_database",
                "@secondary_server",
                "@secondary_database",
            ];
            "sp_delete_log_shipping_primary_secondary"
        }
        "sp_delete_log_shipping_primary_database" => {
            p = vec!["@database", "@ignoreremotemonitor"];
            "sp_delete_log_shipping_primary_database"
        }
        "sp_delete_log_shipping_secondary_database" => {
            p = vec!["@secondary_database", "@ignoreremotemonitor"];
            "sp_delete_log_shipping_secondary_database"
        }
        "sp_delete_log_shipping_secondary_primary" => {
            p = vec!["@primary_server", "@primary_database"];
            "sp_delete_log_shipping_secondary_primary"
        }
        "sp_delete_log_shipping_alert_job" => {
            p = vec![];
            "sp_delete_log_shipping_alert_job"
        }
        "sp_help_log_shipping_monitor" => {
            p = vec![];
            "sp_help_log_shipping_monitor"
        }
        "sp_check_log_shipping_monitor_alert" => {
            p = vec![];
            "sp_check_log_shipping_monitor_alert"
        }
        _ => return None,
    };
    Some((name, p))
}

/// A DISABLED log shipping job with one CmdExec step, on the local job server.
fn ls_job(
    msdb: &mut Msdb,
    name: &str,
    description: &str,
    step_name: &str,
    command: &str,
    overwrite: bool,
    owner: &str,
) -> Result<String, ServerMessage> {
    if let Some(j) = msdb.job_by_name(name) {
        if j.category != CATEGORY {
            return Err(err(
                32022,
                format!(
                    "Cannot add a log shipping job with name {name}. A job with same name already exists in the system and this job does not belong to log shipping category."
                ),
            ));
        }
        if !overwrite {
            return Err(err(
                14261,
                format!("The specified @job_name ('{name}') already exists."),
            ));
        }
        let id = j.job_id.clone();
        msdb.remove_job(&id, true, true);
    }
    let id = create_job(msdb, name, false, description, CATEGORY, owner)?;
    if let Some(j) = msdb.job_mut(&id) {
        j.steps.push(new_step(1, step_name, "CmdExec", command));
        j.has_server = true;
    }
    Ok(id)
}

impl Engine {
    /// Runs a log shipping procedure if `object` names one.
    pub(super) fn log_shipping_procedure(
        &self,
        object: &str,
        args: &[ProcArg],
        session: &SessionInfo,
    ) -> Option<StatementResult> {
        let (name, params) = params(object)?;
        let mut b = match Bound::bind(name, &params, args) {
            Ok(b) => b,
            Err(m) => {
                return Some(StatementResult {
                    return_status: Some(1),
                    ..StatementResult::failed(m)
                });
            }
        };
        if name == "sp_help_log_shipping_monitor" {
            let st = lock(&self.state);
            let rows = monitor_rows(&st);
            return Some(StatementResult {
                return_status: Some(0),
                ..StatementResult::rows(rows)
            });
        }
        let mut st = lock(&self.state);
        let mut stop = Vec::new();
        let r = ls_change(name, &mut st, &mut b, session, &mut stop);
        for job in &stop {
            self.agent.cancel(job, "User", &session.login);
        }
        let r = match r {
            Ok(items) => self.persist(&st).map(|()| items),
            Err(m) => Err(m),
        };
        Some(finish(b, r))
    }
}

/// The procedures that change msdb; `stop` collects deleted jobs that may be running.
fn ls_change(
    name: &str,
    st: &mut InstanceState,
    b: &mut Bound<'_>,
    session: &SessionInfo,
    stop: &mut Vec<String>,
) -> ProcResult {
    let server = st.server_name.clone();
    let overwrite = b.int_or("@overwrite", 0) != 0;
    match name {
        "sp_add_log_shipping_primary_database" => {
            let db_name = b.require("@database")?;
            let db = st.database(&db_name).ok_or_else(|| no_database(&db_name))?;
            let db_name = db.name.clone();
            if db.recovery_model == RecoveryModel::Simple {
                return Err(err(
                    32015,
                    format!(
                        "The primary database {db_name} cannot have SIMPLE recovery for log shipping to work properly."
                    ),
                ));
            }
            let backup_directory = b.require("@backup_directory")?;
            let backup_share = b.require("@backup_share")?;
            let job_name = b.require("@backup_job_name")?;
            let msdb = &mut st.msdb;
            if let Some(old) = msdb
                .ls_primaries
                .iter()
                .find(|p| p.primary_database.eq_ignore_ascii_case(&db_name))
                .cloned()
            {
                if !overwrite {
                    return Err(err(
                        32009,
                        format!(
                            "A log shipping primary entry already exists for database {db_name}."
                        ),
                    ));
                }
                msdb.ls_primaries.retain(|p| p.primary_id != old.primary_id);
                msdb.remove_job(&old.backup_job_id, true, true);
                stop.push(old.backup_job_id);
            }
            let primary_id = new_guid();
            let command = format!("\"{SQLLOGSHIP}\" -Backup {primary_id} -server {server}");
            let job_id = ls_job(
                msdb,
                &job_name,
                &format!("Log shipping backup log job for {server}.{db_name}."),
                "Log shipping backup log job step.",
                &command,
                overwrite,
                &session.login,
            )?;
            msdb.ls_primaries.push(LsPrimary {
                primary_id: primary_id.clone(),
                primary_database: db_name,
                backup_directory,
                backup_share,
                backup_retention_period: b.int_or("@backup_retention_period", 4320) as i32,
                backup_job_id: job_id.clone(),
                monitor_server: b.text("@monitor_server").unwrap_or_else(|| server.clone()),
                backup_compression: b.int_or("@backup_compression", 2) as i32,
                last_backup_file: None,
                last_backup_date: None,
                backup_threshold: b.int_or("@backup_threshold", 60) as i32,
                threshold_alert: b.int_or("@threshold_alert", 14420) as i32,
                threshold_alert_enabled: b.int_or("@threshold_alert_enabled", 1) != 0,
                history_retention_period: b.int_or("@history_retention_period", 14420) as i32,
            });
            b.set_guid_output("@backup_job_id", &job_id);
            b.set_guid_output("@primary_id", &primary_id);
        }
        "sp_add_log_shipping_alert_job" => {
            let msdb = &mut st.msdb;
            let job_name = format!("LSAlert_{server}");
            let id = match msdb.job_by_name(&job_name) {
                Some(j) => j.job_id.clone(),
                None => {
                    let id = create_job(
                        msdb,
                        &job_name,
                        true,
                        "Log shipping alert job.",
                        CATEGORY,
                        &session.login,
                    )?;
                    if let Some(j) = msdb.job_mut(&id) {
                        j.steps.push(new_step(
                            1,
                            "Log shipping alert job step.",
                            "TSQL",
                            "exec sys.sp_check_log_shipping_monitor_alert",
                        ));
                        j.has_server = true;
                    }
                    msdb.last_schedule_id += 1;
                    let sid = msdb.last_schedule_id;
                    msdb.schedules.push(Schedule {
                        schedule_id: sid,
                        schedule_uid: new_guid(),
                        name: "Log shipping alert job schedule.".into(),
                        enabled: true,
                        freq_type: 4,
                        freq_interval: 1,
                        freq_subday_type: 4,
                        freq_subday_interval: 2,
                        freq_relative_interval: 0,
                        freq_recurrence_factor: 0,
                        active_start_date: Timestamp::now_local().agent_date(),
                        active_end_date: 99_991_231,
                        active_start_time: 0,
                        active_end_time: 235_900,
                        date_created: Timestamp::now(),
                    });
                    msdb.job_schedules.push(super::JobSchedule {
                        job_id: id.clone(),
                        schedule_id: sid,
                        next_run_date: 0,
                        next_run_time: 0,
                    });
                    id
                }
            };
            b.set_guid_output("@alert_job_id", &id);
        }
        "sp_add_log_shipping_primary_secondary" => {
            let db = b.require("@primary_database")?;
            let sec_server = b.require("@secondary_server")?;
            let sec_db = b.require("@secondary_database")?;
            let msdb = &mut st.msdb;
            let p = msdb
                .ls_primaries
                .iter()
                .find(|p| p.primary_database.eq_ignore_ascii_case(&db))
                .ok_or_else(|| {
                    err(
                        32010,
                        format!("Database {db} does not exist as log shipping primary."),
                    )
                })?;
            let pid = p.primary_id.clone();
            let same = |x: &LsPrimarySecondary| {
                x.primary_id == pid
                    && x.secondary_server.eq_ignore_ascii_case(&sec_server)
                    && x.secondary_database.eq_ignore_ascii_case(&sec_db)
            };
            if msdb.ls_primary_secondaries.iter().any(same) {
                if !overwrite {
                    return Err(err(
                        32012,
                        format!("Secondary {sec_server}.{sec_db} already exists for primary {db}."),
                    ));
                }
                msdb.ls_primary_secondaries.retain(|x| !same(x));
            }
            msdb.ls_primary_secondaries.push(LsPrimarySecondary {
                primary_id: pid,
                secondary_server: sec_server,
                secondary_database: sec_db,
            });
        }
        "sp_add_log_shipping_secondary_primary" => {
            let pserver = b.require("@primary_server")?;
            let pdb = b.require("@primary_database")?;
            let src = b.require("@backup_source_directory")?;
            let dst = b.require("@backup_destination_directory")?;
            let copy_name = b.require("@copy_job_name")?;
            let restore_name = b.require("@restore_job_name")?;
            let msdb = &mut st.msdb;
            let same = |s: &LsSecondary| {
                s.primary_server.eq_ignore_ascii_case(&pserver)
                    && s.primary_database.eq_ignore_ascii_case(&pdb)
            };
            if let Some(old) = msdb.ls_secondaries.iter().find(|s| same(s)).cloned() {
                if !overwrite {
                    return Err(err(
                        32024,
                        format!(
                            "An entry for primary server {pserver}, primary database {pdb} already exists."
                        ),
                    ));
                }
                msdb.ls_secondaries.retain(|s| !same(s));
                for j in [&old.copy_job_id, &old.restore_job_id] {
                    msdb.remove_job(j, true, true);
                    stop.push(j.clone());
                }
            }
            let sid = new_guid();
            let copy_id = ls_job(
                msdb,
                &copy_name,
                &format!("Log shipping copy job for {pserver}:{pdb}."),
                "Log shipping copy job step.",
                &format!("\"{SQLLOGSHIP}\" -Copy {sid} -server {server}"),
                overwrite,
                &session.login,
            )?;
            let restore_id = ls_job(
                msdb,
                &restore_name,
                &format!("Log shipping restore log job for {pserver}:{pdb}."),
                "Log shipping restore log job step.",
                &format!("\"{SQLLOGSHIP}\" -Restore {sid} -server {server}"),
                overwrite,
                &session.login,
            )?;
            msdb.ls_secondaries.push(LsSecondary {
                secondary_id: sid.clone(),
                primary_server: pserver,
                primary_database: pdb,
                backup_source_directory: src,
                backup_destination_directory: dst,
                file_retention_period: b.int_or("@file_retention_period", 4320) as i32,
                copy_job_id: copy_id.clone(),
                restore_job_id: restore_id.clone(),
                monitor_server: b.text("@monitor_server").unwrap_or_else(|| server.clone()),
                last_copied_file: None,
                last_copied_date: None,
            });
            b.set_guid_output("@copy_job_id", &copy_id);
            b.set_guid_output("@restore_job_id", &restore_id);
            b.set_guid_output("@secondary_id", &sid);
        }
        "sp_add_log_shipping_secondary_database" => {
            let sdb = b.require("@secondary_database")?;
            let pserver = b.require("@primary_server")?;
            let pdb = b.require("@primary_database")?;
            let sdb = st
                .database(&sdb)
                .map(|d| d.name.clone())
                .ok_or_else(|| no_database(&sdb))?;
            let msdb = &mut st.msdb;
            let sid = msdb.ls_secondaries.iter()
                .find(|s| s.primary_server.eq_ignore_ascii_case(&pserver) && s.primary_database.eq_ignore_ascii_case(&pdb))
                .map(|s| s.secondary_id.clone())
                .ok_or_else(|| err(32023, format!("An entry for primary server {pserver}, primary database {pdb} does not exist on this secondary. Register the primary first.")))?;
            if msdb
                .ls_secondary_databases
                .iter()
                .any(|d| d.secondary_database.eq_ignore_ascii_case(&sdb))
            {
                if !overwrite {
                    return Err(err(
                        32013,
                        format!(
                            "A log shipping entry already exists for secondary database {sdb}."
                        ),
                    ));
                }
                msdb.ls_secondary_databases
                    .retain(|d| !d.secondary_database.eq_ignore_ascii_case(&sdb));
            }
            msdb.ls_secondary_databases.push(LsSecondaryDb {
                secondary_database: sdb,
                secondary_id: sid,
                restore_delay: b.int_or("@restore_delay", 0) as i32,
                restore_all: b.int_or("@restore_all", 1) != 0,
                restore_mode: b.int_or("@restore_mode", 0) as i32,
                disconnect_users: b.int_or("@disconnect_users", 0) != 0,
                block_size: b.int_or("@block_size", -1) as i32,
                buffer_count: b.int_or("@buffer_count", -1) as i32,
                max_transfer_size: b.int_or("@max_transfer_size", 0) as i32,
                last_restored_file: None,
                last_restored_date: None,
                last_restored_latency: None,
                restore_threshold: b.int_or("@restore_threshold", 45) as i32,
                threshold_alert: b.int_or("@threshold_alert", 14421) as i32,
                threshold_alert_enabled: b.int_or("@threshold_alert_enabled", 1) != 0,
                history_retention_period: b.int_or("@history_retention_period", 14420) as i32,
            });
        }
        "sp_delete_log_shipping_primary_secondary" => {
            let db = b.require("@primary_database")?;
            let sec_server = b.require("@secondary_server")?;
            let sec_db = b.require("@secondary_database")?;
            let msdb = &mut st.msdb;
            let pid = msdb
                .ls_primaries
                .iter()
                .find(|p| p.primary_database.eq_ignore_ascii_case(&db))
                .map(|p| p.primary_id.clone())
                .ok_or_else(|| {
                    err(
                        32010,
                        format!("Database {db} does not exist as log shipping primary."),
                    )
                })?;
            msdb.ls_primary_secondaries.retain(|x| {
                !(x.primary_id == pid
                    && x.secondary_server.eq_ignore_ascii_case(&sec_server)
                    && x.secondary_database.eq_ignore_ascii_case(&sec_db))
            });
        }
        "sp_delete_log_shipping_primary_database" => {
            let db = b.require("@database")?;
            let msdb = &mut st.msdb;
            let p = msdb
                .ls_primaries
                .iter()
                .find(|p| p.primary_database.eq_ignore_ascii_case(&db))
                .cloned()
                .ok_or_else(|| {
                    err(
                        32010,
                        format!("Database {db} does not exist as log shipping primary."),
                    )
                })?;
            if msdb
                .ls_primary_secondaries
                .iter()
                .any(|x| x.primary_id == p.primary_id)
            {
                return Err(err(
                    32011,
                    format!(
                        "Primary Database {db} has active log shipping secondary database(s). Drop the secondary database(s) first."
                    ),
                ));
            }
            msdb.ls_primaries.retain(|x| x.primary_id != p.primary_id);
            msdb.remove_job(&p.backup_job_id, true, true);
            stop.push(p.backup_job_id);
            msdb.ls_history.retain(|h| h.agent_id != p.primary_id);
            drop_alert_job_if_unused(msdb, &server, stop);
        }
        "sp_delete_log_shipping_secondary_database" => {
            let sdb = b.require("@secondary_database")?;
            let msdb = &mut st.msdb;
            let row = msdb
                .ls_secondary_databases
                .iter()
                .find(|d| d.secondary_database.eq_ignore_ascii_case(&sdb))
                .cloned()
                .ok_or_else(|| {
                    err(
                        32014,
                        format!("Database {sdb} does not exist as log shipping secondary."),
                    )
                })?;
            msdb.ls_secondary_databases
                .retain(|d| !d.secondary_database.eq_ignore_ascii_case(&sdb));
            if !msdb
                .ls_secondary_databases
                .iter()
                .any(|d| d.secondary_id == row.secondary_id)
                && let Some(s) = msdb
                    .ls_secondaries
                    .iter()
                    .find(|s| s.secondary_id == row.secondary_id)
                    .cloned()
            {
                delete_secondary_primary(msdb, &s, stop);
            }
            drop_alert_job_if_unused(msdb, &server, stop);
        }
        "sp_delete_log_shipping_secondary_primary" => {
            let pserver = b.require("@primary_server")?;
            let pdb = b.require("@primary_database")?;
            let msdb = &mut st.msdb;
            let Some(s) = msdb
                .ls_secondaries
                .iter()
                .find(|s| {
                    s.primary_server.eq_ignore_ascii_case(&pserver)
                        && s.primary_database.eq_ignore_ascii_case(&pdb)
                })
                .cloned()
            else {
                return Ok(Vec::new());
            };
            if msdb
                .ls_secondary_databases
                .iter()
                .any(|d| d.secondary_id == s.secondary_id)
            {
                return Err(err(
                    32025,
                    format!(
                        "Primary Server {pserver}, Database {pdb} has active log shipping secondary database(s) on the secondary. Drop the secondary database(s) first."
                    ),
                ));
            }
            delete_secondary_primary(msdb, &s, stop);
        }
        "sp_delete_log_shipping_alert_job" => drop_alert_job_if_unused(&mut st.msdb, &server, stop),
        // sp_check_log_shipping_monitor_alert: thresholds are not checked by the sim.
        _ => {}
    }
    Ok(Vec::<ResultItem>::new())
}

/// Removes a secondary's copy and restore jobs, its row and its monitor history.
fn delete_secondary_primary(msdb: &mut Msdb, s: &LsSecondary, stop: &mut Vec<String>) {
    msdb.ls_secondaries
        .retain(|x| x.secondary_id != s.secondary_id);
    for j in [&s.copy_job_id, &s.restore_job_id] {
        msdb.remove_job(j, true, true);
        stop.push(j.clone());
    }
    msdb.ls_history.retain(|h| h.agent_id != s.secondary_id);
}

/// The alert job goes when no log shipping configuration is left on this instance.
fn drop_alert_job_if_unused(msdb: &mut Msdb, server: &str, stop: &mut Vec<String>) {
    if msdb.ls_primaries.is_empty()
        && msdb.ls_secondaries.is_empty()
        && let Some(j) = msdb
            .job_by_name(&format!("LSAlert_{server}"))
            .map(|j| j.job_id.clone())
    {
        msdb.remove_job(&j, true, true);
        stop.push(j);
    }
}

/// Minutes since a moment, for the monitor (NULL when it never happened).
fn minutes_since(t: Option<Timestamp>, now: Timestamp) -> Value {
    t.map_or(Value::Null, |t| Value::Int(now.seconds_since(&t) / 60))
}

fn opt_text(s: &Option<String>) -> Value {
    s.clone().map_or(Value::Null, Value::Str)
}

/// `sp_help_log_shipping_monitor`: one row per primary and per secondary database.
pub fn monitor_rows(st: &InstanceState) -> RowSet {
    let nv = |n: &str, len: u16| Column::new(n, SqlType::NVarChar(Some(len)));
    let int = |n: &str| Column::new(n, SqlType::Int);
    let bit = |n: &str| Column::new(n, SqlType::Bit);
    let columns = vec![
        bit("status"),
        bit("is_primary"),
        nv("server", 128),
        nv("database_name", 128),
        int("time_since_last_backup"),
        nv("last_backup_file", 500),
        int("backup_threshold"),
        bit("is_backup_alert_enabled"),
        int("time_since_last_copy"),
        nv("last_copied_file", 500),
        int("time_since_last_restore"),
        nv("last_restored_file", 500),
        int("last_restored_latency"),
        int("restore_threshold"),
        bit("is_restore_alert_enabled"),
    ];
    let now = Timestamp::now();
    let late = |since: &Value, threshold: i32, enabled: bool| {
        enabled && since.as_i64().is_none_or(|m| m > threshold as i64)
    };
    let mut rows = Vec::new();
    for p in &st.msdb.ls_primaries {
        let since = minutes_since(p.last_backup_date, now);
        rows.push(vec![
            Value::Bit(late(&since, p.backup_threshold, p.threshold_alert_enabled)),
            Value::Bit(true),
            Value::Str(st.server_name.clone()),
            Value::Str(p.primary_database.clone()),
            since,
            opt_text(&p.last_backup_file),
            Value::Int(p.backup_threshold as i64),
            Value::Bit(p.threshold_alert_enabled),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
    }
    for d in &st.msdb.ls_secondary_databases {
        let s = st
            .msdb
            .ls_secondaries
            .iter()
            .find(|s| s.secondary_id == d.secondary_id);
        let since_restore = minutes_since(d.last_restored_date, now);
        rows.push(vec![
            Value::Bit(late(
                &since_restore,
                d.restore_threshold,
                d.threshold_alert_enabled,
            )),
            Value::Bit(false),
            Value::Str(st.server_name.clone()),
            Value::Str(d.secondary_database.clone()),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            minutes_since(s.and_then(|s| s.last_copied_date), now),
            s.map_or(Value::Null, |s| opt_text(&s.last_copied_file)),
            since_restore,
            opt_text(&d.last_restored_file),
            d.last_restored_latency
                .map_or(Value::Null, |l| Value::Int(l as i64)),
            Value::Int(d.restore_threshold as i64),
            Value::Bit(d.threshold_alert_enabled),
        ]);
    }
    RowSet { columns, rows }
}
