//! System views, materialised from the instance state and the session registry on each query:
//! `sys.databases`, `sys.master_files`, `sys.database_mirroring`, `sys.dm_exec_sessions`,
//! `sys.sysprocesses` (also reachable as plain `sysprocesses`), `sys.dm_exec_requests`,
//! `sys.dm_server_services` and `sys.database_recovery_status`. Column names and types follow
//! SQL Server's; only the columns the runbooks read (pchat-dr.md §6) plus a few neighbours exist.

use super::query::Table;
use super::state::InstanceState;
use super::{EvalCtx, SessionInfo};
use crate::sqlsim::sql::ast::ObjectName;
use crate::sqlsim::tokens::Column;
use crate::sqlsim::types::{SqlType, Value, parse_guid};

/// Size shown for every file, in 8 KB pages (8 MB).
const FILE_PAGES: i64 = 1024;

/// The system view `name` refers to, if it is one.
pub fn system_view(name: &ObjectName, ctx: &EvalCtx<'_>) -> Option<Table> {
    if name.parts.len() > 3 {
        return None;
    }
    if let Some(t) = super::msdb::msdb_table(name, ctx.state, &ctx.session.database) {
        return Some(t);
    }
    let schema = name.schema();
    let is_sys = schema.is_some_and(|s| s.eq_ignore_ascii_case("sys"));
    let object = name.object().to_ascii_lowercase();
    Some(match object.as_str() {
        "databases" if is_sys => databases(ctx.state),
        "master_files" if is_sys => master_files(ctx.state),
        "database_mirroring" if is_sys => database_mirroring(ctx.state),
        "dm_exec_sessions" if is_sys => exec_sessions(ctx),
        "sysprocesses" if is_sys || schema.is_none() => sysprocesses(ctx),
        "dm_exec_requests" if is_sys => exec_requests(ctx),
        "dm_server_services" if is_sys => server_services(ctx.state),
        "database_recovery_status" if is_sys => recovery_status(ctx.state),
        _ => return None,
    })
}

fn text(s: &str) -> Value {
    Value::Str(s.to_string())
}

fn nvarchar(name: &str, n: u16) -> Column {
    Column::new(name, SqlType::NVarChar(Some(n)))
}

fn databases(state: &InstanceState) -> Table {
    let columns = vec![
        nvarchar("name", 128),
        Column::new("database_id", SqlType::Int),
        Column::new("create_date", SqlType::DateTime),
        Column::new("compatibility_level", SqlType::TinyInt),
        nvarchar("collation_name", 128),
        Column::new("user_access", SqlType::TinyInt),
        nvarchar("user_access_desc", 60),
        Column::new("is_read_only", SqlType::Bit),
        Column::new("state", SqlType::TinyInt),
        nvarchar("state_desc", 60),
        Column::new("is_in_standby", SqlType::Bit),
        Column::new("recovery_model", SqlType::TinyInt),
        nvarchar("recovery_model_desc", 60),
    ];
    let rows = state
        .databases
        .iter()
        .map(|d| {
            vec![
                text(&d.name),
                Value::Int(d.database_id as i64),
                Value::DateTime(d.create_date),
                Value::Int(130),
                text("SQL_Latin1_General_CP1_CI_AS"),
                Value::Int(d.user_access.code()),
                text(d.user_access.desc()),
                Value::Bit(d.is_read_only),
                Value::Int(d.state.code()),
                text(d.state.desc()),
                Value::Bit(d.is_in_standby),
                Value::Int(d.recovery_model.code()),
                text(d.recovery_model.desc()),
            ]
        })
        .collect();
    Table { columns, rows }
}

fn master_files(state: &InstanceState) -> Table {
    let columns = vec![
        Column::new("database_id", SqlType::Int),
        Column::new("file_id", SqlType::Int),
        Column::new("type", SqlType::TinyInt),
        nvarchar("type_desc", 60),
        Column::new("data_space_id", SqlType::Int),
        nvarchar("name", 128),
        nvarchar("physical_name", 260),
        Column::new("state", SqlType::TinyInt),
        nvarchar("state_desc", 60),
        Column::new("size", SqlType::Int),
    ];
    let mut rows = Vec::new();
    for d in &state.databases {
        for f in &d.files {
            let log = f.kind == 'L';
            rows.push(vec![
                Value::Int(d.database_id as i64),
                Value::Int(f.file_id as i64),
                Value::Int(log as i64),
                text(if log { "LOG" } else { "ROWS" }),
                Value::Int(if log { 0 } else { 1 }),
                text(&f.logical_name),
                text(&f.physical_name),
                Value::Int(d.state.code()),
                text(d.state.desc()),
                Value::Int(FILE_PAGES),
            ]);
        }
    }
    Table { columns, rows }
}

fn database_mirroring(state: &InstanceState) -> Table {
    let columns = vec![
        Column::new("database_id", SqlType::Int),
        Column::new("mirroring_guid", SqlType::UniqueIdentifier),
        Column::new("mirroring_state", SqlType::TinyInt),
        nvarchar("mirroring_state_desc", 60),
        Column::new("mirroring_role", SqlType::TinyInt),
        nvarchar("mirroring_role_desc", 60),
        Column::new("mirroring_safety_level", SqlType::TinyInt),
        nvarchar("mirroring_safety_level_desc", 60),
        nvarchar("mirroring_partner_name", 128),
        nvarchar("mirroring_partner_instance", 128),
        nvarchar("mirroring_witness_name", 128),
        Column::new("mirroring_witness_state", SqlType::TinyInt),
        nvarchar("mirroring_witness_state_desc", 60),
    ];
    let rows = state
        .databases
        .iter()
        .map(|d| {
            let mut row = vec![Value::Int(d.database_id as i64)];
            match &d.mirroring {
                // Not mirrored: every mirroring_* column is NULL.
                None => row.extend(std::iter::repeat_n(Value::Null, 12)),
                Some(m) => {
                    let state_code = match m.state.as_str() {
                        "SUSPENDED" => 0,
                        "DISCONNECTED" => 1,
                        "SYNCHRONIZING" => 2,
                        "PENDING_FAILOVER" => 3,
                        "SYNCHRONIZED" => 4,
                        _ => 5,
                    };
                    row.extend([
                        parse_guid(&m.guid).map_or(Value::Null, Value::Guid),
                        Value::Int(state_code),
                        text(&m.state),
                        Value::Int(if m.role == "PRINCIPAL" { 1 } else { 2 }),
                        text(&m.role),
                        Value::Int(if m.safety == "FULL" { 2 } else { 1 }),
                        text(&m.safety),
                        text(&m.partner_name),
                        text(&m.partner_instance),
                        text(""),
                        Value::Int(0),
                        text("UNKNOWN"),
                    ]);
                }
            }
            row
        })
        .collect();
    Table { columns, rows }
}

fn database_id(ctx: &EvalCtx<'_>, name: &str) -> Value {
    ctx.state
        .database(name)
        .map_or(Value::Null, |d| Value::Int(d.database_id as i64))
}

/// Status shown for a session: ours runs, background tasks are "background", others sleep.
fn session_status<'s>(ctx: &EvalCtx<'_>, s: &SessionInfo, running: &'s str) -> &'s str {
    if s.spid == ctx.session.spid {
        running
    } else if s.system_task.is_some() {
        "background"
    } else {
        "sleeping"
    }
}

/// One row per session, background tasks included (`is_user_process = 0`). `database_id` and
/// `open_transaction_count` exist from SQL Server 2012 (11.x); on an older `--product-version`
/// they are not columns, so a query naming them fails with 207 as on 2008 R2.
fn exec_sessions(ctx: &EvalCtx<'_>) -> Table {
    let since_2012 = ctx.state.version_triplet().0 >= 11;
    let mut columns = vec![
        Column::new("session_id", SqlType::SmallInt),
        Column::new("login_time", SqlType::DateTime),
        nvarchar("host_name", 128),
        nvarchar("program_name", 128),
        nvarchar("login_name", 128),
        nvarchar("status", 30),
        Column::new("is_user_process", SqlType::Bit),
    ];
    if since_2012 {
        columns.push(Column::new("database_id", SqlType::SmallInt));
        columns.push(Column::new("open_transaction_count", SqlType::Int));
    }
    let rows = ctx
        .sessions
        .iter()
        .map(|s| {
            let mut row = vec![
                Value::Int(s.spid as i64),
                Value::DateTime(s.login_time),
                text(&s.host_name),
                text(&s.program_name),
                text(&s.login),
                text(session_status(ctx, s, "running")),
                Value::Bit(s.system_task.is_none()),
            ];
            if since_2012 {
                row.push(database_id(ctx, &s.database));
                row.push(Value::Int(s.tran_count as i64));
            }
            row
        })
        .collect();
    Table { columns, rows }
}

/// One row per execution context: a parallel request repeats its SPID (ecid 0, 1, …), and the
/// background tasks are listed with their `cmd`.
fn sysprocesses(ctx: &EvalCtx<'_>) -> Table {
    let columns = vec![
        Column::new("spid", SqlType::SmallInt),
        Column::new("ecid", SqlType::SmallInt),
        Column::new("dbid", SqlType::SmallInt),
        nvarchar("loginame", 128),
        nvarchar("hostname", 128),
        nvarchar("program_name", 128),
        nvarchar("status", 30),
        nvarchar("cmd", 32),
        Column::new("open_tran", SqlType::SmallInt),
        Column::new("login_time", SqlType::DateTime),
        Column::new("last_batch", SqlType::DateTime),
    ];
    let mut rows = Vec::new();
    for s in ctx.sessions {
        let me = s.spid == ctx.session.spid;
        let cmd = match s.system_task {
            Some(task) => task,
            None if me => "SELECT",
            None => "AWAITING COMMAND",
        };
        for ecid in 0..s.exec_contexts.max(1) {
            rows.push(vec![
                Value::Int(s.spid as i64),
                Value::Int(ecid as i64),
                database_id(ctx, &s.database),
                text(&s.login),
                text(&s.host_name),
                text(&s.program_name),
                text(session_status(ctx, s, "runnable")),
                text(cmd),
                Value::Int(s.tran_count as i64),
                Value::DateTime(s.login_time),
                Value::DateTime(s.login_time),
            ]);
        }
    }
    Table { columns, rows }
}

fn exec_requests(ctx: &EvalCtx<'_>) -> Table {
    let columns = vec![
        Column::new("session_id", SqlType::SmallInt),
        Column::new("request_id", SqlType::Int),
        Column::new("start_time", SqlType::DateTime),
        nvarchar("status", 30),
        nvarchar("command", 32),
        Column::new("database_id", SqlType::SmallInt),
        Column::new("blocking_session_id", SqlType::SmallInt),
        nvarchar("wait_type", 60),
        Column::new("percent_complete", SqlType::Real),
        Column::new("estimated_completion_time", SqlType::BigInt),
        Column::new("total_elapsed_time", SqlType::Int),
    ];
    let now = crate::sqlsim::clock::Timestamp::now();
    let rows = ctx
        .requests
        .iter()
        .map(|r| {
            let me = r.spid == ctx.session.spid;
            let elapsed_ms = ((now.days - r.start_time.days) * 86_400_000
                + (now.ticks as i64 - r.start_time.ticks as i64) / 10_000)
                .max(0);
            let pct = r.percent_complete as f64;
            let remaining = if pct > 0.0 && pct < 100.0 {
                (elapsed_ms as f64 * (100.0 - pct) / pct) as i64
            } else {
                0
            };
            vec![
                Value::Int(r.spid as i64),
                Value::Int(0),
                Value::DateTime(r.start_time),
                text(if me { "running" } else { "suspended" }),
                text(&r.command),
                database_id(ctx, &r.database),
                Value::Int(0),
                if me {
                    Value::Null
                } else if r.command.starts_with("BACKUP") || r.command.starts_with("RESTORE") {
                    text("BACKUPIO")
                } else {
                    Value::Null
                },
                Value::Float(pct),
                Value::Int(remaining),
                Value::Int(elapsed_ms.min(i32::MAX as i64)),
            ]
        })
        .collect();
    Table { columns, rows }
}

fn server_services(state: &InstanceState) -> Table {
    let columns = vec![
        nvarchar("servicename", 256),
        Column::new("startup_type", SqlType::Int),
        nvarchar("startup_type_desc", 256),
        Column::new("status", SqlType::Int),
        nvarchar("status_desc", 256),
        Column::new("process_id", SqlType::Int),
        Column::new("last_startup_time", SqlType::DateTime2(7)),
        nvarchar("service_account", 256),
        nvarchar("filename", 256),
        nvarchar("is_clustered", 1),
        nvarchar("cluster_nodename", 256),
    ];
    let rows = state
        .services
        .iter()
        .map(|s| {
            let startup = match s.startup_type_desc.as_str() {
                "Automatic" => 2,
                "Manual" => 3,
                "Disabled" => 4,
                _ => 1,
            };
            let status = match s.status_desc.as_str() {
                "Stopped" => 1,
                "Running" => 4,
                "Paused" => 7,
                _ => 0,
            };
            let running = s.status_desc == "Running";
            vec![
                text(&s.servicename),
                Value::Int(startup),
                text(&s.startup_type_desc),
                Value::Int(status),
                text(&s.status_desc),
                if running {
                    Value::Int(std::process::id() as i64)
                } else {
                    Value::Null
                },
                Value::DateTime(s.last_startup_time),
                text(&s.service_account),
                text(if s.servicename.starts_with("SQL Server Agent") {
                    r#""C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\Binn\SQLAGENT.EXE" -i MSSQLSERVER"#
                } else {
                    r#""C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\Binn\sqlservr.exe" -sMSSQLSERVER"#
                }),
                text("N"),
                text(""),
            ]
        })
        .collect();
    Table { columns, rows }
}

fn recovery_status(state: &InstanceState) -> Table {
    let columns = vec![
        Column::new("database_id", SqlType::Int),
        Column::new("database_guid", SqlType::UniqueIdentifier),
        Column::new("family_guid", SqlType::UniqueIdentifier),
        Column::new("last_log_backup_lsn", SqlType::Numeric(25, 0)),
        Column::new("recovery_fork_guid", SqlType::UniqueIdentifier),
        Column::new("first_recovery_fork_guid", SqlType::UniqueIdentifier),
        Column::new("fork_point_lsn", SqlType::Numeric(25, 0)),
    ];
    let guid = |g: &str| parse_guid(g).map_or(Value::Null, Value::Guid);
    let rows = state
        .databases
        .iter()
        .map(|d| {
            let accessible = d.state == super::state::DbState::Online;
            vec![
                Value::Int(d.database_id as i64),
                if accessible {
                    guid(&d.database_guid)
                } else {
                    Value::Null
                },
                if accessible {
                    guid(&d.family_guid)
                } else {
                    Value::Null
                },
                d.log_chain_lsn
                    .filter(|_| accessible)
                    .map_or(Value::Null, |l| Value::Numeric(l as i128, 0)),
                guid(&d.family_guid),
                guid(&d.family_guid),
                Value::Null,
            ]
        })
        .collect();
    Table { columns, rows }
}
