//! T-SQL of log shipping and SQL Server Agent jobs (pchat-dr.md §6.7-§6.9). Stored procedures
//! are [`ProcCall`] values: sent as RPC requests BY NAME with typed input and OUTPUT parameters
//! (never as text batches with DECLARE / IF), so no value is ever parsed as T-SQL. Reads of the
//! msdb tables are [`Statement`]s with `@P` parameters like the rest of [`super`].
//!
//! The one exception to "values are parameters" is the command line of the access-check job: a
//! CmdExec step's `@command` is a parameter to SQL Server, but `cmd.exe` parses it when the
//! Agent runs it. [`cmdexec_command`] is the only place that builds such a line; see there why
//! it refuses rather than escapes.

use std::fmt;

use failback_proto::model::DatabaseName;
use failback_proto::model::logship::{Interval, LogShippingPrimary, LogShippingSecondary};
use tiberius::Uuid;

use super::{Param, Statement, nstring};
use crate::exec::files::path::{PathForm, WirePath};

/// An input value of a procedure call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcValue {
    /// NVARCHAR.
    Text(String),
    /// INT.
    Int(i32),
    /// UNIQUEIDENTIFIER.
    Guid(Uuid),
}

/// The type of an OUTPUT parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    /// UNIQUEIDENTIFIER.
    Guid,
    /// INT.
    Int,
}

/// A stored procedure call by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCall {
    /// Three-part procedure name.
    pub name: &'static str,
    /// Named inputs, in order.
    pub params: Vec<(&'static str, ProcValue)>,
    /// Named OUTPUT parameters.
    pub outputs: Vec<(&'static str, OutKind)>,
}

impl ProcCall {
    fn new(name: &'static str) -> Self {
        ProcCall {
            name,
            params: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn text(mut self, p: &'static str, v: impl Into<String>) -> Self {
        self.params.push((p, ProcValue::Text(v.into())));
        self
    }

    fn int(mut self, p: &'static str, v: i32) -> Self {
        self.params.push((p, ProcValue::Int(v)));
        self
    }

    fn guid(mut self, p: &'static str, v: Uuid) -> Self {
        self.params.push((p, ProcValue::Guid(v)));
        self
    }

    fn out(mut self, p: &'static str, k: OutKind) -> Self {
        self.outputs.push((p, k));
        self
    }
}

impl fmt::Display for ProcCall {
    /// As an operator reads it in a plan: `EXEC name @a = N'…', @b = 1, @c = @c OUTPUT;`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EXEC {}", self.name)?;
        let mut sep = " ";
        for (k, v) in &self.params {
            let v = match v {
                ProcValue::Text(s) => nstring(s),
                ProcValue::Int(n) => n.to_string(),
                ProcValue::Guid(g) => format!("'{}'", g.to_string().to_uppercase()),
            };
            write!(f, "{sep}{k} = {v}")?;
            sep = ", ";
        }
        for (k, _) in &self.outputs {
            write!(f, "{sep}{k} = {k} OUTPUT")?;
            sep = ", ";
        }
        f.write_str(";")
    }
}

fn db_text(db: &DatabaseName) -> String {
    db.as_str().to_string()
}

/// `sp_add_log_shipping_primary_database` with PChat's values (`@backup_compression = 2`:
/// the server default). `@overwrite = 1`: see `exec::sql::logship` for why.
pub fn add_primary_database(p: &LogShippingPrimary) -> ProcCall {
    ProcCall::new("master.dbo.sp_add_log_shipping_primary_database")
        .text("@database", db_text(&p.database))
        .text("@backup_directory", p.backup_directory.as_str())
        .text("@backup_share", p.backup_share.as_str())
        .text("@backup_job_name", backup_job_name(&p.database))
        .int("@backup_retention_period", p.backup_retention_minutes)
        .int("@backup_compression", 2)
        .int("@backup_threshold", p.backup_threshold_minutes)
        .int("@threshold_alert_enabled", 1)
        .int("@history_retention_period", p.history_retention_minutes)
        .int("@overwrite", 1)
        .out("@backup_job_id", OutKind::Guid)
        .out("@primary_id", OutKind::Guid)
}

/// SSMS' backup job name, `LSBackup_<db>`.
pub fn backup_job_name(db: &DatabaseName) -> String {
    format!("LSBackup_{db}")
}

/// `msdb.dbo.sp_add_schedule`: daily, every `interval`, all day (SSMS' form).
pub fn add_schedule(name: &str, interval: Interval) -> ProcCall {
    let (subday_type, subday_interval) = interval.subday();
    ProcCall::new("msdb.dbo.sp_add_schedule")
        .text("@schedule_name", name)
        .int("@enabled", 1)
        .int("@freq_type", 4)
        .int("@freq_interval", 1)
        .int("@freq_subday_type", subday_type)
        .int("@freq_subday_interval", subday_interval)
        .int("@freq_recurrence_factor", 0)
        .int("@active_start_date", 20000101)
        .int("@active_end_date", 99991231)
        .int("@active_start_time", 0)
        .int("@active_end_time", 235959)
        .out("@schedule_uid", OutKind::Guid)
        .out("@schedule_id", OutKind::Int)
}

/// `msdb.dbo.sp_attach_schedule`.
pub fn attach_schedule(job: Uuid, schedule_id: i32) -> ProcCall {
    ProcCall::new("msdb.dbo.sp_attach_schedule")
        .guid("@job_id", job)
        .int("@schedule_id", schedule_id)
}

/// `msdb.dbo.sp_update_job @enabled = 1`.
pub fn enable_job(job: Uuid) -> ProcCall {
    ProcCall::new("msdb.dbo.sp_update_job")
        .guid("@job_id", job)
        .int("@enabled", 1)
}

/// `sp_add_log_shipping_alert_job` (creates or reuses `LSAlert_<server>`).
pub fn add_alert_job() -> ProcCall {
    ProcCall::new("master.dbo.sp_add_log_shipping_alert_job")
}

/// `sp_add_log_shipping_primary_secondary`.
pub fn add_primary_secondary(p: &LogShippingPrimary) -> ProcCall {
    ProcCall::new("master.dbo.sp_add_log_shipping_primary_secondary")
        .text("@primary_database", db_text(&p.database))
        .text("@secondary_server", p.secondary_server.as_str())
        .text("@secondary_database", db_text(&p.secondary_database))
        .int("@overwrite", 1)
}

/// `sp_add_log_shipping_secondary_primary`.
pub fn add_secondary_primary(s: &LogShippingSecondary) -> ProcCall {
    ProcCall::new("master.dbo.sp_add_log_shipping_secondary_primary")
        .text("@primary_server", s.primary_server.as_str())
        .text("@primary_database", db_text(&s.primary_database))
        .text(
            "@backup_source_directory",
            s.backup_source_directory.as_str(),
        )
        .text(
            "@backup_destination_directory",
            s.backup_destination_directory.as_str(),
        )
        .text("@copy_job_name", s.copy_job_name())
        .text("@restore_job_name", s.restore_job_name())
        .int("@file_retention_period", s.file_retention_minutes)
        .int("@overwrite", 1)
        .out("@copy_job_id", OutKind::Guid)
        .out("@restore_job_id", OutKind::Guid)
        .out("@secondary_id", OutKind::Guid)
}

/// `sp_add_log_shipping_secondary_database` (PChat: delay 0, NORECOVERY, users not disconnected).
pub fn add_secondary_database(s: &LogShippingSecondary) -> ProcCall {
    ProcCall::new("master.dbo.sp_add_log_shipping_secondary_database")
        .text("@secondary_database", db_text(&s.database))
        .text("@primary_server", s.primary_server.as_str())
        .text("@primary_database", db_text(&s.primary_database))
        .int("@restore_delay", s.restore_delay_minutes)
        .int("@restore_mode", i32::from(s.standby))
        .int("@disconnect_users", 0)
        .int("@restore_threshold", s.restore_threshold_minutes)
        .int("@threshold_alert_enabled", 1)
        .int("@history_retention_period", s.history_retention_minutes)
        .int("@overwrite", 1)
}

/// `sp_delete_log_shipping_secondary_database`.
pub fn delete_secondary_database(db: &DatabaseName) -> ProcCall {
    ProcCall::new("master.dbo.sp_delete_log_shipping_secondary_database")
        .text("@secondary_database", db_text(db))
}

/// `sp_delete_log_shipping_primary_secondary`.
pub fn delete_primary_secondary(db: &DatabaseName, server: &str, sdb: &str) -> ProcCall {
    ProcCall::new("master.dbo.sp_delete_log_shipping_primary_secondary")
        .text("@primary_database", db_text(db))
        .text("@secondary_server", server)
        .text("@secondary_database", sdb)
}

/// `sp_delete_log_shipping_primary_database`.
pub fn delete_primary_database(db: &DatabaseName) -> ProcCall {
    ProcCall::new("master.dbo.sp_delete_log_shipping_primary_database")
        .text("@database", db_text(db))
}

/// `sp_help_log_shipping_monitor` (one row per primary and secondary database).
pub fn help_monitor() -> ProcCall {
    ProcCall::new("master.dbo.sp_help_log_shipping_monitor")
}

/// `msdb.dbo.sp_start_job @job_name`.
pub fn start_job(name: &str) -> ProcCall {
    ProcCall::new("msdb.dbo.sp_start_job").text("@job_name", name)
}

/// `msdb.dbo.sp_add_job` (enabled, owned by the caller), returning its id.
pub fn add_job(name: &str, description: &str) -> ProcCall {
    ProcCall::new("msdb.dbo.sp_add_job")
        .text("@job_name", name)
        .int("@enabled", 1)
        .text("@description", description)
        .out("@job_id", OutKind::Guid)
}

/// `msdb.dbo.sp_add_jobstep` of a CmdExec step. `next_on_failure`: go on to the next step
/// when this one fails (`@on_fail_action = 3`), else quit reporting failure (2); on success
/// go on when `last` is false (3), else quit reporting success (1).
pub fn add_cmdexec_step(
    job: Uuid,
    step_id: i32,
    name: &str,
    command: &CmdExecCommand,
    last: bool,
    next_on_failure: bool,
) -> ProcCall {
    ProcCall::new("msdb.dbo.sp_add_jobstep")
        .guid("@job_id", job)
        .int("@step_id", step_id)
        .text("@step_name", name)
        .text("@subsystem", "CmdExec")
        .text("@command", command.0.clone())
        .int("@on_success_action", if last { 1 } else { 3 })
        .int("@on_fail_action", if next_on_failure { 3 } else { 2 })
}

/// `msdb.dbo.sp_add_jobserver` (the local server).
pub fn add_jobserver(job: Uuid) -> ProcCall {
    ProcCall::new("msdb.dbo.sp_add_jobserver").guid("@job_id", job)
}

/// `msdb.dbo.sp_start_job @job_id`.
pub fn start_job_id(job: Uuid) -> ProcCall {
    ProcCall::new("msdb.dbo.sp_start_job").guid("@job_id", job)
}

/// `msdb.dbo.sp_delete_job` (history and unused schedules with it).
pub fn delete_job(job: Uuid) -> ProcCall {
    ProcCall::new("msdb.dbo.sp_delete_job").guid("@job_id", job)
}

fn one(text: &str, p: Param) -> Statement {
    Statement {
        text: text.into(),
        params: vec![p],
    }
}

fn dbp(db: &DatabaseName) -> Param {
    Param::Text(db_text(db))
}

/// The primary configuration of a database.
pub fn primary_config(db: &DatabaseName) -> Statement {
    one(
        "SELECT primary_id, primary_database, backup_directory, backup_share, backup_retention_period, backup_job_id, \
last_backup_file, last_backup_date FROM msdb.dbo.log_shipping_primary_databases WHERE primary_database = @P1;",
        dbp(db),
    )
}

/// The secondaries a primary lists.
pub fn primary_secondaries(primary_id: &str) -> Statement {
    one(
        "SELECT secondary_server, secondary_database FROM msdb.dbo.log_shipping_primary_secondaries WHERE primary_id = @P1;",
        Param::Text(primary_id.into()),
    )
}

/// The primary's monitor row (thresholds).
pub fn monitor_primary(db: &DatabaseName) -> Statement {
    one(
        "SELECT backup_threshold, history_retention_period FROM msdb.dbo.log_shipping_monitor_primary WHERE primary_database = @P1;",
        dbp(db),
    )
}

/// The secondary configuration of a database (its database row joined to its primary row).
pub fn secondary_config(db: &DatabaseName) -> Statement {
    one(
        "SELECT s.secondary_id, d.secondary_database, s.primary_server, s.primary_database, s.backup_source_directory, \
s.backup_destination_directory, s.file_retention_period, s.copy_job_id, s.restore_job_id, s.last_copied_file, \
s.last_copied_date, d.last_restored_file, d.last_restored_date, d.restore_delay, d.restore_mode \
FROM msdb.dbo.log_shipping_secondary_databases AS d JOIN msdb.dbo.log_shipping_secondary AS s ON s.secondary_id = d.secondary_id \
WHERE d.secondary_database = @P1;",
        dbp(db),
    )
}

/// The secondary's monitor row (thresholds).
pub fn monitor_secondary(db: &DatabaseName) -> Statement {
    one(
        "SELECT restore_threshold, history_retention_period FROM msdb.dbo.log_shipping_monitor_secondary WHERE secondary_database = @P1;",
        dbp(db),
    )
}

/// A job's enabled flag and its schedules' timing.
pub fn job_schedules(job_id: &str) -> Statement {
    one(
        "SELECT j.enabled AS job_enabled, s.enabled, s.freq_type, s.freq_subday_type, s.freq_subday_interval \
FROM msdb.dbo.sysjobs AS j JOIN msdb.dbo.sysjobschedules AS js ON js.job_id = j.job_id \
JOIN msdb.dbo.sysschedules AS s ON s.schedule_id = js.schedule_id WHERE j.job_id = @P1;",
        Param::Text(job_id.into()),
    )
}

/// A job by name.
pub fn job_by_name(name: &str) -> Statement {
    one(
        "SELECT job_id, name, enabled FROM msdb.dbo.sysjobs WHERE name = @P1;",
        Param::Text(name.into()),
    )
}

/// Whether a job runs now: its activity row in the Agent's latest session (pchat-dr.md §6.9).
pub fn job_activity(job_id: &str) -> Statement {
    one(
        "SELECT a.start_execution_date, a.stop_execution_date FROM msdb.dbo.sysjobactivity AS a \
WHERE a.session_id = (SELECT MAX(session_id) FROM msdb.dbo.syssessions) AND a.job_id = @P1;",
        Param::Text(job_id.into()),
    )
}

/// The newest job outcome's instance_id (the mark a later [`job_history`] starts after).
pub fn last_outcome_id(job_id: &str) -> Statement {
    one(
        "SELECT MAX(instance_id) AS last_id FROM msdb.dbo.sysjobhistory WHERE job_id = @P1 AND step_id = 0;",
        Param::Text(job_id.into()),
    )
}

/// A job's history rows (outcome and steps) after a mark, newest first.
pub fn job_history(job_id: &str, after_instance_id: i64) -> Statement {
    Statement {
        text: "SELECT instance_id, step_id, step_name, run_status, message, run_date, run_time, run_duration \
FROM msdb.dbo.sysjobhistory WHERE job_id = @P1 AND instance_id > @P2 ORDER BY instance_id DESC;"
            .into(),
        params: vec![
            Param::Text(job_id.into()),
            Param::Int(i32::try_from(after_instance_id).unwrap_or(i32::MAX)),
        ],
    }
}

/// A CmdExec command line built by [`cmdexec_command`]; only that function makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdExecCommand(String);

impl CmdExecCommand {
    /// The line.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One action of an access-check command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdAction<'a> {
    /// `dir "folder"`: needs read.
    List(&'a str),
    /// `echo text > "file"`: needs write.
    Write(&'a str),
    /// `del /q "file"`: needs write.
    Delete(&'a str),
}

/// Builds `cmd /c A && B && …` for a CmdExec step, every path in double quotes.
///
/// Why it refuses instead of escaping: inside a double-quoted argument cmd.exe has no escape
/// for `"` itself, and `%NAME%` (and `!NAME!` under delayed expansion) is expanded even inside
/// quotes, with no escape that works on a `cmd /c` line; the Agent replaces `$(…)` tokens in
/// the step text before cmd.exe sees it. So a path is accepted only when it parses like the
/// files backend's paths (absolute drive or UNC form, no `..`, no control characters, none of
/// `<>:"|?*`) and contains none of `%`, `!`, `^`, `&`, `$(`; anything else could change the
/// command and is refused before any job exists. POSIX paths are refused: a CmdExec step runs
/// under cmd.exe.
pub fn cmdexec_command(actions: &[CmdAction<'_>]) -> Result<CmdExecCommand, String> {
    let mut parts = Vec::new();
    for a in actions {
        let (verb, path) = match a {
            CmdAction::List(p) => ("dir", *p),
            CmdAction::Write(p) => ("echo failback access probe >", *p),
            CmdAction::Delete(p) => ("del /q", *p),
        };
        let wire =
            WirePath::parse(path).map_err(|r| format!("'{}': {r}", path.escape_default()))?;
        if matches!(wire.form(), PathForm::Posix) {
            return Err(format!(
                "'{}': a CmdExec step runs under cmd.exe; give a drive (X:\\…) or UNC (\\\\server\\share\\…) path",
                path.escape_default()
            ));
        }
        if let Some(c) = ['%', '!', '^', '&'].into_iter().find(|c| path.contains(*c)) {
            return Err(format!(
                "'{}': '{c}' would be interpreted by cmd.exe in a job step",
                path.escape_default()
            ));
        }
        if path.contains("$(") {
            return Err(format!(
                "'{}': '$(' starts a SQL Server Agent token in a job step",
                path.escape_default()
            ));
        }
        parts.push(format!("{verb} \"{}\"", path.trim_end_matches(['\\', '/'])));
    }
    if parts.is_empty() {
        return Err("no action".into());
    }
    Ok(CmdExecCommand(format!("cmd /c {}", parts.join(" && "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_or_refused() {
        let c = cmdexec_command(&[CmdAction::List(r"\\fileserver\pchat-ls")]).unwrap();
        assert_eq!(c.as_str(), r#"cmd /c dir "\\fileserver\pchat-ls""#);
        let c = cmdexec_command(&[
            CmdAction::Write(r"E:\PChatLSCopy\p.tmp"),
            CmdAction::Delete(r"E:\PChatLSCopy\p.tmp"),
        ])
        .unwrap();
        assert_eq!(
            c.as_str(),
            r#"cmd /c echo failback access probe > "E:\PChatLSCopy\p.tmp" && del /q "E:\PChatLSCopy\p.tmp""#
        );
        for bad in [
            r#"E:\x" && del C:\boot.ini"#,
            r"E:\%PATH%",
            r"E:\a&b",
            r"E:\a^b",
            r"E:\a!b!",
            r"E:\$(ESCAPE_NONE(JOBID))",
            r"E:\..\x",
            "E:\\a\nb",
            "/srv/share",
            r"relative\x",
            r"E:\a|b",
        ] {
            assert!(cmdexec_command(&[CmdAction::List(bad)]).is_err(), "{bad}");
        }
        // A lone `$` (admin shares) is fine.
        assert!(cmdexec_command(&[CmdAction::List(r"\\sql02\E$\PChatLSCopy")]).is_ok());
    }

    #[test]
    fn procedure_calls_display_like_ssms() {
        let db = DatabaseName::new("mgc").unwrap();
        assert_eq!(
            delete_secondary_database(&db).to_string(),
            "EXEC master.dbo.sp_delete_log_shipping_secondary_database @secondary_database = N'mgc';"
        );
        let s = add_schedule("LSBackupSchedule_mgc", Interval::Seconds(1)).to_string();
        assert!(
            s.contains("@freq_subday_type = 2, @freq_subday_interval = 1")
                && s.ends_with(
                    "@schedule_uid = @schedule_uid OUTPUT, @schedule_id = @schedule_id OUTPUT;"
                ),
            "{s}"
        );
    }
}
