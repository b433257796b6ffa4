//! The msdb.dbo job procedures: `sp_add_job`, `sp_add_jobstep`, `sp_add_jobserver`,
//! `sp_add_schedule`, `sp_attach_schedule`, `sp_add_jobschedule`, `sp_update_job`,
//! `sp_delete_job`, `sp_start_job`, `sp_stop_job`; and the dispatcher that routes every msdb /
//! log shipping procedure name to its implementation. Each returns 0 or 1 as its return code
//! (RETURNSTATUS, `EXEC @rc = …`) and fails with SQL Server's numbers: 14261 name already
//! exists, 14262 no such job / schedule, 14294 neither @job_id nor @job_name, 14256 no job
//! server, 22022 Agent not running / job already running / job not running; a schedule is
//! checked as msdb's sp_verify_schedule does (14278, 14266, 14295: `schedules.rs`, which also
//! holds the lab-only `--lab-short-schedules` deviation). Job procedures
//! live in msdb: unqualified, they exist only while the session's database is msdb (2812
//! elsewhere), as in SQL Server; the log shipping ones are reachable from any database.

use super::args::Bound;
use super::schedules::{LAB_MIN_SECONDS, SQL_SERVER_MIN_SECONDS, schedule_from, verify_schedule};
use super::{Job, JobSchedule, JobStep, Msdb, Schedule};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::engine::state::{InstanceState, new_guid};
use crate::sqlsim::engine::{Engine, ProcArg, ResultItem, SessionInfo, StatementResult, lock};
use crate::sqlsim::sql::ast::ObjectName;
use crate::sqlsim::tokens::ServerMessage;
use crate::sqlsim::types::{SqlType, Value};

/// What a procedure returns when it did not fail.
pub(super) type ProcResult = Result<Vec<ResultItem>, ServerMessage>;

fn err(number: i32, text: impl Into<String>) -> ServerMessage {
    ServerMessage::new(number, 1, 16, text)
}

/// 14262: "The specified @x ('y') does not exist."
pub(super) fn does_not_exist(param: &str, value: &str) -> ServerMessage {
    err(
        14262,
        format!("The specified {param} ('{value}') does not exist."),
    )
}

/// 22022: the Agent refuses a request.
pub(super) fn agent_error(text: impl Into<String>) -> ServerMessage {
    err(22022, text)
}

/// An informational message (severity 0), e.g. "Job 'x' started successfully.".
pub(super) fn info(number: i32, text: impl Into<String>) -> ResultItem {
    ResultItem::Message(ServerMessage::new(number, 1, 0, text))
}

/// A procedure outcome as a statement result with its return code and OUTPUT values.
pub(super) fn finish(bound: Bound<'_>, r: ProcResult) -> StatementResult {
    match r {
        Ok(items) => StatementResult {
            items,
            return_status: Some(0),
            outputs: bound.outputs,
            ..StatementResult::done()
        },
        Err(m) => StatementResult {
            return_status: Some(1),
            ..StatementResult::failed(m)
        },
    }
}

const JOB_PROCS: &[&str] = &[
    "sp_add_job",
    "sp_add_jobstep",
    "sp_add_jobserver",
    "sp_add_schedule",
    "sp_attach_schedule",
    "sp_add_jobschedule",
    "sp_update_job",
    "sp_delete_job",
    "sp_start_job",
    "sp_stop_job",
];

/// The job identified by `@job_id` or `@job_name`.
pub(super) fn resolve_job(msdb: &Msdb, b: &Bound<'_>) -> Result<String, ServerMessage> {
    match (b.text("@job_id"), b.text("@job_name")) {
        (Some(id), None) => {
            let g = b.guid("@job_id").unwrap_or(id.clone());
            msdb.job(&g)
                .map(|j| j.job_id.clone())
                .ok_or_else(|| does_not_exist("@job_id", &id))
        }
        (None, Some(name)) => msdb
            .job_by_name(&name)
            .map(|j| j.job_id.clone())
            .ok_or_else(|| does_not_exist("@job_name", &name)),
        _ => Err(err(
            14294,
            "Supply either @job_id or @job_name to identify the job.",
        )),
    }
}

/// Creates a job (the shared part of sp_add_job and the log shipping procedures).
pub(super) fn create_job(
    msdb: &mut Msdb,
    name: &str,
    enabled: bool,
    description: &str,
    category: &str,
    owner: &str,
) -> Result<String, ServerMessage> {
    if msdb.job_by_name(name).is_some() {
        return Err(err(
            14261,
            format!("The specified @job_name ('{name}') already exists."),
        ));
    }
    let now = Timestamp::now();
    let job_id = new_guid();
    msdb.jobs.push(Job {
        job_id: job_id.clone(),
        name: name.to_string(),
        enabled,
        description: description.to_string(),
        start_step_id: 1,
        category: category.to_string(),
        owner: owner.to_string(),
        date_created: now,
        date_modified: now,
        has_server: false,
        steps: Vec::new(),
    });
    Ok(job_id)
}

/// A step with SQL Server's defaults: quit with success / failure.
pub(super) fn new_step(step_id: i32, name: &str, subsystem: &str, command: &str) -> JobStep {
    JobStep {
        step_id,
        step_name: name.to_string(),
        subsystem: subsystem.to_string(),
        command: command.to_string(),
        database_name: "master".into(),
        on_success_action: 1,
        on_success_step_id: 0,
        on_fail_action: 2,
        on_fail_step_id: 0,
        retry_attempts: 0,
        retry_interval: 0,
        last_run_outcome: 5,
        last_run_date: 0,
        last_run_time: 0,
    }
}

/// Stores a schedule that passes sp_verify_schedule's checks (`schedules.rs`).
fn add_schedule(
    msdb: &mut Msdb,
    mut s: Schedule,
    min_seconds: i32,
) -> Result<(i32, String), ServerMessage> {
    verify_schedule(&mut s, min_seconds)?;
    msdb.last_schedule_id += 1;
    s.schedule_id = msdb.last_schedule_id;
    let out = (s.schedule_id, s.schedule_uid.clone());
    msdb.schedules.push(s);
    Ok(out)
}

fn attach(msdb: &mut Msdb, job_id: &str, schedule_id: i32) {
    if !msdb
        .job_schedules
        .iter()
        .any(|l| l.job_id == job_id && l.schedule_id == schedule_id)
    {
        msdb.job_schedules.push(JobSchedule {
            job_id: job_id.to_string(),
            schedule_id,
            next_run_date: 0,
            next_run_time: 0,
        });
    }
}

fn job_params() -> Vec<&'static str> {
    vec![
        "@job_name",
        "@enabled",
        "@description",
        "@start_step_id",
        "@category_name",
        "@category_id",
        "@owner_login_name",
        "@notify_level_eventlog",
        "@notify_level_email",
        "@notify_level_netsend",
        "@notify_level_page",
        "@notify_email_operator_name",
        "@notify_netsend_operator_name",
        "@notify_page_operator_name",
        "@delete_level",
        "@job_id",
        "@originating_server",
    ]
}

const SCHEDULE_PARAMS: &[&str] = &[
    "@enabled",
    "@freq_type",
    "@freq_interval",
    "@freq_subday_type",
    "@freq_subday_interval",
    "@freq_relative_interval",
    "@freq_recurrence_factor",
    "@active_start_date",
    "@active_end_date",
    "@active_start_time",
    "@active_end_time",
];

impl Engine {
    /// Runs an msdb or log shipping procedure if `procedure` names one; `None` otherwise.
    pub(crate) fn msdb_procedure(
        &self,
        procedure: &ObjectName,
        args: &[ProcArg],
        session: &SessionInfo,
    ) -> Option<StatementResult> {
        let object = procedure.object().to_ascii_lowercase();
        let schema_ok = procedure
            .schema()
            .is_none_or(|s| s.eq_ignore_ascii_case("dbo") || s.eq_ignore_ascii_case("sys"));
        if !schema_ok {
            return None;
        }
        if JOB_PROCS.contains(&object.as_str()) {
            let in_msdb = match procedure.database() {
                Some(d) => d.eq_ignore_ascii_case("msdb"),
                None => session.database.eq_ignore_ascii_case("msdb"),
            };
            if !in_msdb {
                return None;
            }
            return Some(self.job_procedure(&object, args, session));
        }
        self.log_shipping_procedure(&object, args, session)
    }

    fn job_procedure(
        &self,
        object: &str,
        args: &[ProcArg],
        session: &SessionInfo,
    ) -> StatementResult {
        let (name, params): (&'static str, Vec<&'static str>) = match object {
            "sp_add_job" => ("sp_add_job", job_params()),
            "sp_add_jobstep" => (
                "sp_add_jobstep",
                vec![
                    "@job_id",
                    "@job_name",
                    "@step_id",
                    "@step_name",
                    "@subsystem",
                    "@command",
                    "@additional_parameters",
                    "@cmdexec_success_code",
                    "@on_success_action",
                    "@on_success_step_id",
                    "@on_fail_action",
                    "@on_fail_step_id",
                    "@server",
                    "@database_name",
                    "@database_user_name",
                    "@retry_attempts",
                    "@retry_interval",
                    "@os_run_priority",
                    "@output_file_name",
                    "@flags",
                    "@proxy_id",
                    "@proxy_name",
                    "@step_uid",
                ],
            ),
            "sp_add_jobserver" => (
                "sp_add_jobserver",
                vec!["@job_id", "@job_name", "@server_name", "@automatic_post"],
            ),
            "sp_add_schedule" => {
                let mut p = vec!["@schedule_name"];
                p.extend_from_slice(SCHEDULE_PARAMS);
                p.extend([
                    "@owner_login_name",
                    "@schedule_uid",
                    "@schedule_id",
                    "@originating_server",
                ]);
                ("sp_add_schedule", p)
            }
            "sp_attach_schedule" => (
                "sp_attach_schedule",
                vec![
                    "@job_id",
                    "@job_name",
                    "@schedule_id",
                    "@schedule_name",
                    "@automatic_post",
                ],
            ),
            "sp_add_jobschedule" => {
                let mut p = vec!["@job_id", "@job_name", "@name"];
                p.extend_from_slice(SCHEDULE_PARAMS);
                p.extend(["@schedule_id", "@automatic_post", "@schedule_uid"]);
                ("sp_add_jobschedule", p)
            }
            "sp_update_job" => {
                let mut p = job_params();
                p.retain(|x| *x != "@originating_server");
                p.extend(["@new_name", "@automatic_post"]);
                ("sp_update_job", p)
            }
            "sp_delete_job" => (
                "sp_delete_job",
                vec![
                    "@job_id",
                    "@job_name",
                    "@originating_server",
                    "@delete_history",
                    "@delete_unused_schedule",
                ],
            ),
            "sp_start_job" => (
                "sp_start_job",
                vec![
                    "@job_name",
                    "@job_id",
                    "@error_flag",
                    "@server_name",
                    "@step_name",
                    "@output_flag",
                ],
            ),
            _ => (
                "sp_stop_job",
                vec![
                    "@job_name",
                    "@job_id",
                    "@originating_server",
                    "@server_name",
                ],
            ),
        };
        let mut b = match Bound::bind(name, &params, args) {
            Ok(b) => b,
            Err(m) => {
                return StatementResult {
                    return_status: Some(1),
                    ..StatementResult::failed(m)
                };
            }
        };
        let r = match name {
            "sp_start_job" => self.start_job(&b, session),
            "sp_stop_job" => self.stop_job(&b, session),
            _ => {
                // The lab-only deviation: `--lab-short-schedules` (schedules.rs).
                let min_seconds = if self.options.lab_short_schedules {
                    LAB_MIN_SECONDS
                } else {
                    SQL_SERVER_MIN_SECONDS
                };
                let mut st = lock(&self.state);
                let r = job_change(name, &mut st, &mut b, session, min_seconds);
                if let Ok(Some(stop)) = &r {
                    self.agent.cancel(stop, "User", &session.login);
                }
                match r {
                    Ok(_) => self.persist(&st).map(|()| Vec::new()),
                    Err(m) => Err(m),
                }
            }
        };
        finish(b, r)
    }

    /// sp_start_job: asks the Agent to run the job now (asynchronously).
    fn start_job(&self, b: &Bound<'_>, session: &SessionInfo) -> ProcResult {
        let (job_id, name, has_server) = {
            let st = lock(&self.state);
            let id = resolve_job(&st.msdb, b)?;
            let job = st
                .msdb
                .job(&id)
                .ok_or_else(|| does_not_exist("@job_id", &id))?;
            if !st.agent_running() {
                return Err(agent_error(
                    "SQLServerAgent is not currently running so it cannot be notified of this action.",
                ));
            }
            (id, job.name.clone(), job.has_server)
        };
        if !has_server {
            return Err(err(
                14256,
                format!(
                    "Cannot start job '{name}' (ID {job_id}) because it does not have any job server or servers defined. Associate the job with a job server by calling sp_add_jobserver."
                ),
            ));
        }
        let step = b.text("@step_name");
        self.agent
            .request_start(&job_id, super::agent::Invocation::User(session.login.clone()), step)
            .map_err(|by| agent_error(format!("SQLServerAgent Error: Request to run job {name} (from User {}) refused because the job is already running from a request by {by}.", session.login)))?;
        Ok(vec![info(
            14243,
            format!("Job '{name}' started successfully."),
        )])
    }

    /// sp_stop_job: cancels a running job.
    fn stop_job(&self, b: &Bound<'_>, session: &SessionInfo) -> ProcResult {
        let (job_id, name) = {
            let st = lock(&self.state);
            let id = resolve_job(&st.msdb, b)?;
            let name = st.msdb.job(&id).map(|j| j.name.clone()).unwrap_or_default();
            if !st.agent_running() {
                return Err(agent_error(
                    "SQLServerAgent is not currently running so it cannot be notified of this action.",
                ));
            }
            (id, name)
        };
        if !self.agent.cancel(&job_id, "User", &session.login) {
            return Err(agent_error(format!(
                "SQLServerAgent Error: Request to stop job {name} (from User {}) refused because the job is not currently running.",
                session.login
            )));
        }
        Ok(vec![info(
            14247,
            format!("Job '{name}' stopped successfully."),
        )])
    }
}

/// The procedures that only change msdb. `Ok(Some(job_id))` asks the caller to stop that job
/// (sp_delete_job of a running job). `min_seconds`: the shortest seconds-based schedule
/// interval accepted (10 as in SQL Server, 1 under `--lab-short-schedules`).
fn job_change(
    name: &str,
    st: &mut InstanceState,
    b: &mut Bound<'_>,
    session: &SessionInfo,
    min_seconds: i32,
) -> Result<Option<String>, ServerMessage> {
    let msdb = &mut st.msdb;
    match name {
        "sp_add_job" => {
            let job_name = b.require("@job_name")?;
            let id = create_job(
                msdb,
                &job_name,
                b.int_or("@enabled", 1) != 0,
                &b.text("@description")
                    .unwrap_or_else(|| "No description available.".into()),
                &b.text("@category_name")
                    .unwrap_or_else(|| "[Uncategorized (Local)]".into()),
                &b.text("@owner_login_name")
                    .unwrap_or_else(|| session.login.clone()),
            )?;
            if let Some(s) = b.int("@start_step_id")
                && let Some(j) = msdb.job_mut(&id)
            {
                j.start_step_id = s as i32;
            }
            b.set_guid_output("@job_id", &id);
        }
        "sp_add_jobstep" => {
            let id = resolve_job(msdb, b)?;
            let step_name = b.require("@step_name")?;
            let job = msdb
                .job_mut(&id)
                .ok_or_else(|| does_not_exist("@job_id", &id))?;
            if job
                .steps
                .iter()
                .any(|s| s.step_name.eq_ignore_ascii_case(&step_name))
            {
                return Err(err(
                    14261,
                    format!("The specified @step_name ('{step_name}') already exists."),
                ));
            }
            let count = job.steps.len() as i32;
            let step_id = b.int("@step_id").map_or(count + 1, |s| s as i32);
            if step_id < 1 || step_id > count + 1 {
                return Err(err(
                    14266,
                    format!(
                        "The specified '@step_id' is invalid (valid values are: 1..{}).",
                        count + 1
                    ),
                ));
            }
            let mut step = new_step(
                step_id,
                &step_name,
                &b.text("@subsystem").unwrap_or_else(|| "TSQL".into()),
                &b.text("@command").unwrap_or_default(),
            );
            step.database_name = b.text("@database_name").unwrap_or_else(|| "master".into());
            step.on_success_action = b.int_or("@on_success_action", 1) as i32;
            step.on_success_step_id = b.int_or("@on_success_step_id", 0) as i32;
            step.on_fail_action = b.int_or("@on_fail_action", 2) as i32;
            step.on_fail_step_id = b.int_or("@on_fail_step_id", 0) as i32;
            step.retry_attempts = b.int_or("@retry_attempts", 0) as i32;
            step.retry_interval = b.int_or("@retry_interval", 0) as i32;
            for s in job.steps.iter_mut().filter(|s| s.step_id >= step_id) {
                s.step_id += 1;
            }
            job.steps.push(step);
            job.steps.sort_by_key(|s| s.step_id);
            job.date_modified = Timestamp::now();
            b.set_guid_output("@step_uid", &new_guid());
        }
        "sp_add_jobserver" => {
            let id = resolve_job(msdb, b)?;
            if let Some(server) = b.text("@server_name")
                && !server.eq_ignore_ascii_case("(local)")
                && !server.eq_ignore_ascii_case(&st.server_name)
            {
                return Err(err(
                    14234,
                    format!(
                        "The specified '@server_name' is invalid (valid values are returned by sp_helpserver). ('{server}')"
                    ),
                ));
            }
            let msdb = &mut st.msdb;
            let job = msdb
                .job_mut(&id)
                .ok_or_else(|| does_not_exist("@job_id", &id))?;
            if job.has_server {
                return Err(err(
                    14269,
                    format!(
                        "Job '{}' is already targeted at server '{}'.",
                        job.name, st.server_name
                    ),
                ));
            }
            job.has_server = true;
        }
        "sp_add_schedule" => {
            let s = schedule_from(b, b.require("@schedule_name")?, 0);
            let (id, uid) = add_schedule(msdb, s, min_seconds)?;
            b.set_guid_output("@schedule_uid", &uid);
            b.set_output("@schedule_id", Value::Int(id as i64), SqlType::Int);
        }
        "sp_add_jobschedule" => {
            let id = resolve_job(msdb, b)?;
            let s = schedule_from(b, b.require("@name")?, 0);
            let (sid, uid) = add_schedule(msdb, s, min_seconds)?;
            attach(msdb, &id, sid);
            b.set_output("@schedule_id", Value::Int(sid as i64), SqlType::Int);
            b.set_guid_output("@schedule_uid", &uid);
        }
        "sp_attach_schedule" => {
            let id = resolve_job(msdb, b)?;
            let sid = match (b.int("@schedule_id"), b.text("@schedule_name")) {
                (Some(sid), _) => msdb
                    .schedules
                    .iter()
                    .find(|s| s.schedule_id as i64 == sid)
                    .map(|s| s.schedule_id)
                    .ok_or_else(|| does_not_exist("@schedule_id", &sid.to_string()))?,
                (None, Some(n)) => {
                    let found: Vec<i32> = msdb
                        .schedules
                        .iter()
                        .filter(|s| s.name.eq_ignore_ascii_case(&n))
                        .map(|s| s.schedule_id)
                        .collect();
                    match found.as_slice() {
                        [one] => *one,
                        [] => return Err(does_not_exist("@schedule_name", &n)),
                        _ => {
                            return Err(err(
                                14371,
                                format!(
                                    "There are two or more schedules named \"{n}\". Specify @schedule_id instead of @schedule_name to uniquely identify the schedule."
                                ),
                            ));
                        }
                    }
                }
                (None, None) => {
                    return Err(err(
                        14273,
                        "You must provide either @schedule_id or @schedule_name.",
                    ));
                }
            };
            attach(msdb, &id, sid);
        }
        "sp_update_job" => {
            let id = resolve_job(msdb, b)?;
            if let Some(new) = b.text("@new_name")
                && msdb
                    .jobs
                    .iter()
                    .any(|j| j.job_id != id && j.name.eq_ignore_ascii_case(&new))
            {
                return Err(err(
                    14261,
                    format!("The specified @new_name ('{new}') already exists."),
                ));
            }
            let job = msdb
                .job_mut(&id)
                .ok_or_else(|| does_not_exist("@job_id", &id))?;
            if let Some(e) = b.int("@enabled") {
                job.enabled = e != 0;
            }
            if let Some(n) = b.text("@new_name") {
                job.name = n;
            }
            if let Some(d) = b.text("@description") {
                job.description = d;
            }
            if let Some(s) = b.int("@start_step_id") {
                job.start_step_id = s as i32;
            }
            job.date_modified = Timestamp::now();
        }
        _ => {
            // sp_delete_job
            let id = resolve_job(msdb, b)?;
            msdb.remove_job(
                &id,
                b.int_or("@delete_history", 1) != 0,
                b.int_or("@delete_unused_schedule", 1) != 0,
            );
            return Ok(Some(id));
        }
    }
    Ok(None)
}
