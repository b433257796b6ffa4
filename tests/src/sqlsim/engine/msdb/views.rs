//! msdb tables for SELECT (`msdb.dbo.sysjobs`, or `dbo.sysjobs` / `sysjobs` while in msdb):
//! `sysjobs`, `sysjobsteps`, `sysschedules`, `sysjobschedules`, `sysjobhistory`,
//! `sysjobactivity`, `syssessions`, the log shipping tables (`log_shipping_primary_databases`,
//! `_primary_secondaries`, `_monitor_primary`, `_secondary`, `_secondary_databases`,
//! `_monitor_secondary`, `_monitor_history_detail`, `_monitor_error_detail`) and the backup and
//! restore history (`restorehistory`; `backupset` and `backupmediafamily`, with a row for every
//! backup written and every set restored, as SQL Server keeps them). Column names and types
//! follow SQL Server's for the columns listed in pchat-dr.md §6.8-§6.9 plus their close
//! neighbours (`backup_size`, `compressed_backup_size`, `is_copy_only` for sizing backups).

use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::engine::query::Table;
use crate::sqlsim::engine::state::InstanceState;
use crate::sqlsim::sql::ast::ObjectName;
use crate::sqlsim::tokens::Column;
use crate::sqlsim::types::{SqlType, Value, parse_guid};

fn nv(name: &str, n: u16) -> Column {
    Column::new(name, SqlType::NVarChar(Some(n)))
}
fn int(name: &str) -> Column {
    Column::new(name, SqlType::Int)
}
fn bit(name: &str) -> Column {
    Column::new(name, SqlType::Bit)
}
fn guid(name: &str) -> Column {
    Column::new(name, SqlType::UniqueIdentifier)
}
fn dt(name: &str) -> Column {
    Column::new(name, SqlType::DateTime)
}
fn lsn(name: &str) -> Column {
    Column::new(name, SqlType::Numeric(25, 0))
}
fn g(text: &str) -> Value {
    parse_guid(text).map_or(Value::Null, Value::Guid)
}
fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}
fn os(text: &Option<String>) -> Value {
    text.clone().map_or(Value::Null, Value::Str)
}
/// msdb's date columns are the server's local time (sql-docs: `last_backup_date` vs
/// `last_backup_date_utc`, "expressed in Coordinated Universal Time"); state keeps UTC.
fn t(v: Timestamp) -> Value {
    Value::DateTime(v.local())
}
fn ot(v: Option<Timestamp>) -> Value {
    v.map_or(Value::Null, |v| Value::DateTime(v.local()))
}
/// The `_utc` columns.
fn t_utc(v: Timestamp) -> Value {
    Value::DateTime(v)
}
fn ot_utc(v: Option<Timestamp>) -> Value {
    v.map_or(Value::Null, Value::DateTime)
}
fn i(v: impl Into<i64>) -> Value {
    Value::Int(v.into())
}

/// The msdb table `name` refers to (from a session whose database is `current_db`), if any.
pub fn msdb_table(name: &ObjectName, st: &InstanceState, current_db: &str) -> Option<Table> {
    if name.parts.len() > 3 {
        return None;
    }
    let in_msdb = name
        .database()
        .map_or(current_db.eq_ignore_ascii_case("msdb"), |d| {
            d.eq_ignore_ascii_case("msdb")
        });
    if !in_msdb || !name.schema().is_none_or(|s| s.eq_ignore_ascii_case("dbo")) {
        return None;
    }
    let m = &st.msdb;
    let server = st.server_name.as_str();
    let (columns, rows): (Vec<Column>, Vec<Vec<Value>>) =
        match name.object().to_ascii_lowercase().as_str() {
            "sysjobs" => (
                vec![
                    guid("job_id"),
                    nv("originating_server", 128),
                    nv("name", 128),
                    Column::new("enabled", SqlType::TinyInt),
                    nv("description", 512),
                    int("start_step_id"),
                    nv("category_name", 128),
                    nv("owner_login_name", 128),
                    dt("date_created"),
                    dt("date_modified"),
                ],
                m.jobs
                    .iter()
                    .map(|j| {
                        vec![
                            g(&j.job_id),
                            s(server),
                            s(&j.name),
                            i(j.enabled as i64),
                            s(&j.description),
                            i(j.start_step_id),
                            s(&j.category),
                            s(&j.owner),
                            t(j.date_created),
                            t(j.date_modified),
                        ]
                    })
                    .collect(),
            ),
            "sysjobsteps" => (
                vec![
                    guid("job_id"),
                    int("step_id"),
                    nv("step_name", 128),
                    nv("subsystem", 40),
                    nv("command", 4000),
                    Column::new("on_success_action", SqlType::TinyInt),
                    int("on_success_step_id"),
                    Column::new("on_fail_action", SqlType::TinyInt),
                    int("on_fail_step_id"),
                    nv("database_name", 128),
                    int("retry_attempts"),
                    int("retry_interval"),
                    int("last_run_outcome"),
                    int("last_run_date"),
                    int("last_run_time"),
                ],
                m.jobs
                    .iter()
                    .flat_map(|j| {
                        j.steps.iter().map(move |st| {
                            vec![
                                g(&j.job_id),
                                i(st.step_id),
                                s(&st.step_name),
                                s(&st.subsystem),
                                s(&st.command),
                                i(st.on_success_action),
                                i(st.on_success_step_id),
                                i(st.on_fail_action),
                                i(st.on_fail_step_id),
                                s(&st.database_name),
                                i(st.retry_attempts),
                                i(st.retry_interval),
                                i(st.last_run_outcome),
                                i(st.last_run_date),
                                i(st.last_run_time),
                            ]
                        })
                    })
                    .collect(),
            ),
            "sysschedules" => (
                vec![
                    int("schedule_id"),
                    guid("schedule_uid"),
                    nv("name", 128),
                    bit("enabled"),
                    int("freq_type"),
                    int("freq_interval"),
                    int("freq_subday_type"),
                    int("freq_subday_interval"),
                    int("freq_relative_interval"),
                    int("freq_recurrence_factor"),
                    int("active_start_date"),
                    int("active_end_date"),
                    int("active_start_time"),
                    int("active_end_time"),
                    dt("date_created"),
                ],
                m.schedules
                    .iter()
                    .map(|x| {
                        vec![
                            i(x.schedule_id),
                            g(&x.schedule_uid),
                            s(&x.name),
                            Value::Bit(x.enabled),
                            i(x.freq_type),
                            i(x.freq_interval),
                            i(x.freq_subday_type),
                            i(x.freq_subday_interval),
                            i(x.freq_relative_interval),
                            i(x.freq_recurrence_factor),
                            i(x.active_start_date),
                            i(x.active_end_date),
                            i(x.active_start_time),
                            i(x.active_end_time),
                            t(x.date_created),
                        ]
                    })
                    .collect(),
            ),
            "sysjobschedules" => (
                vec![
                    int("schedule_id"),
                    guid("job_id"),
                    int("next_run_date"),
                    int("next_run_time"),
                ],
                m.job_schedules
                    .iter()
                    .map(|l| {
                        vec![
                            i(l.schedule_id),
                            g(&l.job_id),
                            i(l.next_run_date),
                            i(l.next_run_time),
                        ]
                    })
                    .collect(),
            ),
            "sysjobhistory" => (
                vec![
                    int("instance_id"),
                    guid("job_id"),
                    int("step_id"),
                    nv("step_name", 128),
                    int("sql_message_id"),
                    int("sql_severity"),
                    nv("message", 4000),
                    int("run_status"),
                    int("run_date"),
                    int("run_time"),
                    int("run_duration"),
                    int("retries_attempted"),
                    nv("server", 128),
                ],
                m.history
                    .iter()
                    .map(|h| {
                        vec![
                            i(h.instance_id),
                            g(&h.job_id),
                            i(h.step_id),
                            s(&h.step_name),
                            i(h.sql_message_id),
                            i(h.sql_severity),
                            s(&h.message),
                            i(h.run_status),
                            i(h.run_date),
                            i(h.run_time),
                            i(h.run_duration),
                            i(0),
                            s(&h.server),
                        ]
                    })
                    .collect(),
            ),
            "syssessions" => (
                vec![int("session_id"), dt("agent_start_date")],
                m.sessions
                    .iter()
                    .map(|x| vec![i(x.session_id), t(x.agent_start_date)])
                    .collect(),
            ),
            "sysjobactivity" => (
                vec![
                    int("session_id"),
                    guid("job_id"),
                    dt("run_requested_date"),
                    nv("run_requested_source", 128),
                    dt("queued_date"),
                    dt("start_execution_date"),
                    int("last_executed_step_id"),
                    dt("last_executed_step_date"),
                    dt("stop_execution_date"),
                    int("job_history_id"),
                    dt("next_scheduled_run_date"),
                ],
                m.activity
                    .iter()
                    .map(|a| {
                        vec![
                            i(a.session_id),
                            g(&a.job_id),
                            ot(a.run_requested_date),
                            os(&a.run_requested_source),
                            Value::Null,
                            ot(a.start_execution_date),
                            a.last_executed_step_id.map_or(Value::Null, i),
                            ot(a.last_executed_step_date),
                            ot(a.stop_execution_date),
                            a.job_history_id.map_or(Value::Null, Value::Int),
                            ot(a.next_scheduled_run_date),
                        ]
                    })
                    .collect(),
            ),
            "log_shipping_primary_databases" => (
                vec![
                    guid("primary_id"),
                    nv("primary_database", 128),
                    nv("backup_directory", 500),
                    nv("backup_share", 500),
                    int("backup_retention_period"),
                    guid("backup_job_id"),
                    nv("monitor_server", 128),
                    Column::new("monitor_server_security_mode", SqlType::Bit),
                    nv("last_backup_file", 500),
                    dt("last_backup_date"),
                    bit("user_specified_monitor"),
                    Column::new("backup_compression", SqlType::TinyInt),
                ],
                m.ls_primaries
                    .iter()
                    .map(|p| {
                        vec![
                            g(&p.primary_id),
                            s(&p.primary_database),
                            s(&p.backup_directory),
                            s(&p.backup_share),
                            i(p.backup_retention_period),
                            g(&p.backup_job_id),
                            s(&p.monitor_server),
                            Value::Bit(true),
                            os(&p.last_backup_file),
                            ot(p.last_backup_date),
                            Value::Bit(false),
                            i(p.backup_compression),
                        ]
                    })
                    .collect(),
            ),
            "log_shipping_primary_secondaries" => (
                vec![
                    guid("primary_id"),
                    nv("secondary_server", 128),
                    nv("secondary_database", 128),
                ],
                m.ls_primary_secondaries
                    .iter()
                    .map(|x| {
                        vec![
                            g(&x.primary_id),
                            s(&x.secondary_server),
                            s(&x.secondary_database),
                        ]
                    })
                    .collect(),
            ),
            "log_shipping_monitor_primary" => (
                vec![
                    guid("primary_id"),
                    nv("primary_server", 128),
                    nv("primary_database", 128),
                    int("backup_threshold"),
                    int("threshold_alert"),
                    bit("threshold_alert_enabled"),
                    nv("last_backup_file", 500),
                    dt("last_backup_date"),
                    dt("last_backup_date_utc"),
                    int("history_retention_period"),
                ],
                m.ls_primaries
                    .iter()
                    .map(|p| {
                        vec![
                            g(&p.primary_id),
                            s(server),
                            s(&p.primary_database),
                            i(p.backup_threshold),
                            i(p.threshold_alert),
                            Value::Bit(p.threshold_alert_enabled),
                            os(&p.last_backup_file),
                            ot(p.last_backup_date),
                            ot_utc(p.last_backup_date),
                            i(p.history_retention_period),
                        ]
                    })
                    .collect(),
            ),
            "log_shipping_secondary" => (
                vec![
                    guid("secondary_id"),
                    nv("primary_server", 128),
                    nv("primary_database", 128),
                    nv("backup_source_directory", 500),
                    nv("backup_destination_directory", 500),
                    int("file_retention_period"),
                    guid("copy_job_id"),
                    guid("restore_job_id"),
                    nv("monitor_server", 128),
                    Column::new("monitor_server_security_mode", SqlType::Bit),
                    bit("user_specified_monitor"),
                    nv("last_copied_file", 500),
                    dt("last_copied_date"),
                ],
                m.ls_secondaries
                    .iter()
                    .map(|x| {
                        vec![
                            g(&x.secondary_id),
                            s(&x.primary_server),
                            s(&x.primary_database),
                            s(&x.backup_source_directory),
                            s(&x.backup_destination_directory),
                            i(x.file_retention_period),
                            g(&x.copy_job_id),
                            g(&x.restore_job_id),
                            s(&x.monitor_server),
                            Value::Bit(true),
                            Value::Bit(false),
                            os(&x.last_copied_file),
                            ot(x.last_copied_date),
                        ]
                    })
                    .collect(),
            ),
            "log_shipping_secondary_databases" => (
                vec![
                    nv("secondary_database", 128),
                    guid("secondary_id"),
                    int("restore_delay"),
                    bit("restore_all"),
                    bit("restore_mode"),
                    bit("disconnect_users"),
                    int("block_size"),
                    int("buffer_count"),
                    int("max_transfer_size"),
                    nv("last_restored_file", 500),
                    dt("last_restored_date"),
                ],
                m.ls_secondary_databases
                    .iter()
                    .map(|d| {
                        vec![
                            s(&d.secondary_database),
                            g(&d.secondary_id),
                            i(d.restore_delay),
                            Value::Bit(d.restore_all),
                            i(d.restore_mode),
                            Value::Bit(d.disconnect_users),
                            i(d.block_size),
                            i(d.buffer_count),
                            i(d.max_transfer_size),
                            os(&d.last_restored_file),
                            ot(d.last_restored_date),
                        ]
                    })
                    .collect(),
            ),
            "log_shipping_monitor_secondary" => (
                vec![
                    nv("secondary_server", 128),
                    nv("secondary_database", 128),
                    guid("secondary_id"),
                    nv("primary_server", 128),
                    nv("primary_database", 128),
                    int("restore_threshold"),
                    int("threshold_alert"),
                    bit("threshold_alert_enabled"),
                    nv("last_copied_file", 500),
                    dt("last_copied_date"),
                    dt("last_copied_date_utc"),
                    nv("last_restored_file", 500),
                    dt("last_restored_date"),
                    dt("last_restored_date_utc"),
                    int("last_restored_latency"),
                    int("history_retention_period"),
                ],
                m.ls_secondary_databases
                    .iter()
                    .map(|d| {
                        let sec = m
                            .ls_secondaries
                            .iter()
                            .find(|x| x.secondary_id == d.secondary_id);
                        vec![
                            s(server),
                            s(&d.secondary_database),
                            g(&d.secondary_id),
                            sec.map_or(Value::Null, |x| s(&x.primary_server)),
                            sec.map_or(Value::Null, |x| s(&x.primary_database)),
                            i(d.restore_threshold),
                            i(d.threshold_alert),
                            Value::Bit(d.threshold_alert_enabled),
                            sec.map_or(Value::Null, |x| os(&x.last_copied_file)),
                            sec.map_or(Value::Null, |x| ot(x.last_copied_date)),
                            sec.map_or(Value::Null, |x| ot_utc(x.last_copied_date)),
                            os(&d.last_restored_file),
                            ot(d.last_restored_date),
                            ot_utc(d.last_restored_date),
                            d.last_restored_latency.map_or(Value::Null, i),
                            i(d.history_retention_period),
                        ]
                    })
                    .collect(),
            ),
            obj @ ("log_shipping_monitor_history_detail" | "log_shipping_monitor_error_detail") => {
                let errors = obj.ends_with("error_detail");
                (
                    vec![
                        guid("agent_id"),
                        Column::new("agent_type", SqlType::TinyInt),
                        int("session_id"),
                        nv("database_name", 128),
                        Column::new("session_status", SqlType::TinyInt),
                        dt("log_time"),
                        dt("log_time_utc"),
                        nv("message", 4000),
                    ],
                    m.ls_history
                        .iter()
                        .filter(|h| h.error == errors)
                        .map(|h| {
                            vec![
                                g(&h.agent_id),
                                i(h.agent_type),
                                i(h.session_id),
                                s(&h.database_name),
                                i(h.session_status),
                                t(h.log_time),
                                t_utc(h.log_time),
                                s(&h.message),
                            ]
                        })
                        .collect(),
                )
            }
            "restorehistory" => (
                vec![
                    int("restore_history_id"),
                    dt("restore_date"),
                    nv("destination_database_name", 128),
                    nv("user_name", 128),
                    int("backup_set_id"),
                    Column::new("restore_type", SqlType::NVarChar(Some(1))),
                ],
                m.restores
                    .iter()
                    .map(|r| {
                        vec![
                            i(r.restore_history_id),
                            t(r.restore_date),
                            s(&r.destination_database_name),
                            s("sa"),
                            i(r.backup_set_id),
                            s(&r.restore_type),
                        ]
                    })
                    .collect(),
            ),
            "backupset" => {
                let columns = vec![
                    int("backup_set_id"),
                    int("media_set_id"),
                    nv("database_name", 128),
                    nv("server_name", 128),
                    Column::new("type", SqlType::NVarChar(Some(1))),
                    lsn("first_lsn"),
                    lsn("last_lsn"),
                    dt("backup_start_date"),
                    dt("backup_finish_date"),
                    Column::new("time_zone", SqlType::SmallInt),
                    Column::new("backup_size", SqlType::Numeric(20, 0)),
                    Column::new("compressed_backup_size", SqlType::Numeric(20, 0)),
                    Column::new("is_copy_only", SqlType::Bit),
                ];
                let restored = m.restores.iter().map(|r| {
                    (
                        r.backup_set_id,
                        vec![
                            i(r.backup_set_id),
                            i(r.backup_set_id),
                            s(&r.database_name),
                            s(&r.server_name),
                            s(&r.backup_type),
                            Value::Numeric(r.first_lsn as i128, 0),
                            Value::Numeric(r.last_lsn as i128, 0),
                            // Copied from the backup header: already the writing server's
                            // local time (see backup/format.rs), not this server's.
                            Value::DateTime(r.backup_start_date),
                            Value::DateTime(r.backup_finish_date),
                            i(r.time_zone),
                            Value::Numeric(r.backup_size as i128, 0),
                            Value::Numeric(r.backup_size as i128, 0),
                            Value::Bit(false),
                        ],
                    )
                });
                let written = m.backups.iter().map(|b| {
                    (
                        b.backup_set_id,
                        vec![
                            i(b.backup_set_id),
                            i(b.backup_set_id),
                            s(&b.database_name),
                            s(&b.server_name),
                            s(&b.backup_type),
                            Value::Numeric(b.first_lsn as i128, 0),
                            Value::Numeric(b.last_lsn as i128, 0),
                            Value::DateTime(b.backup_start_date),
                            Value::DateTime(b.backup_finish_date),
                            i(b.time_zone),
                            Value::Numeric(b.backup_size as i128, 0),
                            Value::Numeric(b.compressed_backup_size as i128, 0),
                            Value::Bit(b.is_copy_only),
                        ],
                    )
                });
                let mut rows: Vec<(i64, Vec<Value>)> = restored.chain(written).collect();
                rows.sort_by_key(|(id, _)| *id);
                (columns, rows.into_iter().map(|(_, r)| r).collect())
            }
            "backupmediafamily" => {
                let columns = vec![
                    int("media_set_id"),
                    Column::new("family_sequence_number", SqlType::TinyInt),
                    nv("physical_device_name", 260),
                    Column::new("device_type", SqlType::TinyInt),
                ];
                let mut rows: Vec<(i64, &str)> = m
                    .restores
                    .iter()
                    .map(|r| (r.backup_set_id, r.physical_device_name.as_str()))
                    .chain(
                        m.backups
                            .iter()
                            .map(|b| (b.backup_set_id, b.physical_device_name.as_str())),
                    )
                    .collect();
                rows.sort_by_key(|(id, _)| *id);
                (
                    columns,
                    rows.into_iter()
                        .map(|(id, dev)| vec![i(id), i(1), s(dev), i(2)])
                        .collect(),
                )
            }
            _ => return None,
        };
    Some(Table { columns, rows })
}
