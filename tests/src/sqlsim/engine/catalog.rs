//! System views, materialised from the instance state and the session registry on each query:
//! `sys.databases`, `sys.master_files`, `sys.database_mirroring`, `sys.dm_exec_sessions` and
//! `sys.sysprocesses` (also reachable as plain `sysprocesses`). Column names and types follow
//! SQL Server's; only the columns the runbooks read (pchat-dr.md §6) plus a few neighbours exist.

use super::EvalCtx;
use super::query::Table;
use super::state::InstanceState;
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
    let schema = name.schema();
    let is_sys = schema.is_some_and(|s| s.eq_ignore_ascii_case("sys"));
    let object = name.object().to_ascii_lowercase();
    Some(match object.as_str() {
        "databases" if is_sys => databases(ctx.state),
        "master_files" if is_sys => master_files(ctx.state),
        "database_mirroring" if is_sys => database_mirroring(ctx.state),
        "dm_exec_sessions" if is_sys => exec_sessions(ctx),
        "sysprocesses" if is_sys || schema.is_none() => sysprocesses(ctx),
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

fn exec_sessions(ctx: &EvalCtx<'_>) -> Table {
    let columns = vec![
        Column::new("session_id", SqlType::SmallInt),
        Column::new("login_time", SqlType::DateTime),
        nvarchar("host_name", 128),
        nvarchar("program_name", 128),
        nvarchar("login_name", 128),
        nvarchar("status", 30),
        Column::new("database_id", SqlType::SmallInt),
        Column::new("is_user_process", SqlType::Bit),
        Column::new("open_transaction_count", SqlType::Int),
    ];
    let rows = ctx
        .sessions
        .iter()
        .map(|s| {
            let me = s.spid == ctx.session.spid;
            vec![
                Value::Int(s.spid as i64),
                Value::DateTime(s.login_time),
                text(&s.host_name),
                text(&s.program_name),
                text(&s.login),
                text(if me { "running" } else { "sleeping" }),
                database_id(ctx, &s.database),
                Value::Bit(true),
                Value::Int(s.tran_count as i64),
            ]
        })
        .collect();
    Table { columns, rows }
}

fn sysprocesses(ctx: &EvalCtx<'_>) -> Table {
    let columns = vec![
        Column::new("spid", SqlType::SmallInt),
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
    let rows = ctx
        .sessions
        .iter()
        .map(|s| {
            let me = s.spid == ctx.session.spid;
            vec![
                Value::Int(s.spid as i64),
                database_id(ctx, &s.database),
                text(&s.login),
                text(&s.host_name),
                text(&s.program_name),
                text(if me { "runnable" } else { "sleeping" }),
                text(if me { "SELECT" } else { "AWAITING COMMAND" }),
                Value::Int(s.tran_count as i64),
                Value::DateTime(s.login_time),
                Value::DateTime(s.login_time),
            ]
        })
        .collect();
    Table { columns, rows }
}
