//! SQL Server Agent jobs (pchat-dr.md §6.9): start a job by name, read its outcome, and the
//! one-off access-check job that proves what the Agent account (not the engine's) can do with
//! the log shipping share and the copy folder.
//!
//! Decisions: `run_job` refuses up front, with a sentence a person can act on, when the Agent
//! service is not Running (sys.dm_server_services) or the job already runs (sysjobactivity of
//! the Agent's latest session) — SQL Server's own 22022 says the same more obscurely and is
//! still passed through if the state changes in between. A job's outcome is the step_id 0 row of
//! sysjobhistory; `run_job` hands back the newest instance_id before the start, so the outcome
//! of *this* start is the first one above it. The access check deletes its job whatever
//! happened (history is read first), and its folders are checked before the job exists.
//!
//! Errors: Agent stopped — not retryable (someone must start it); job running — retryable (it
//! will finish); no such job — not retryable.

use std::time::Duration;

use failback_proto::model::PathText;
use failback_proto::pb;
use tiberius::Row;

use super::tsql::logship::{self as ls, CmdAction};
use super::{Conn, SqlBackend, guid_col, int, text, times};
use crate::error::Error;

/// How often a wait for a job outcome polls msdb.
const POLL: Duration = Duration::from_millis(250);

fn run_status(v: i64) -> pb::JobRunStatus {
    match v {
        0 => pb::JobRunStatus::Failed,
        1 => pb::JobRunStatus::Succeeded,
        2 => pb::JobRunStatus::Retry,
        3 => pb::JobRunStatus::Canceled,
        4 => pb::JobRunStatus::InProgress,
        _ => pb::JobRunStatus::Unspecified,
    }
}

/// A sysjobhistory row; run_date/run_time are this instance's local time at `offset` minutes
/// from UTC, reported as RFC 3339 UTC.
fn job_run(r: &Row, offset: i32) -> pb::JobRun {
    let date = int(r, "run_date").unwrap_or(0);
    let time = int(r, "run_time").unwrap_or(0);
    let dur = int(r, "run_duration").unwrap_or(0);
    pb::JobRun {
        instance_id: int(r, "instance_id")
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
        status: run_status(int(r, "run_status").unwrap_or(-1)).into(),
        message: text(r, "message"),
        started_at: times::agent_run_utc_text(date, time, offset),
        // run_duration is hhmmss as an int.
        duration_seconds: u32::try_from(dur / 10000 * 3600 + dur / 100 % 100 * 60 + dur % 100)
            .unwrap_or(0),
        step_id: int(r, "step_id")
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0),
        step_name: text(r, "step_name"),
    }
}

fn job_error(message: String, retryable: bool) -> Error {
    Error::Sql {
        number: None,
        message,
        retryable,
    }
}

impl SqlBackend {
    /// The job's id, or a not-found error.
    async fn job_id(conn: &mut Conn, name: &str) -> Result<String, Error> {
        let rows = Self::rows(conn, &ls::job_by_name(name)).await?;
        rows.first()
            .map(|r| guid_col(r, "job_id"))
            .ok_or_else(|| job_error(format!("no SQL Server Agent job named '{name}'"), false))
    }

    /// Whether the job runs now (started and not stopped in the Agent's latest session).
    async fn job_running(conn: &mut Conn, job_id: &str) -> Result<bool, Error> {
        let rows = Self::rows(conn, &ls::job_activity(job_id)).await?;
        let set =
            |r: &Row, c: &str| matches!(r.try_get::<chrono::NaiveDateTime, _>(c), Ok(Some(_)));
        Ok(rows
            .iter()
            .any(|r| set(r, "start_execution_date") && !set(r, "stop_execution_date")))
    }

    /// Refuses unless the SQL Server Agent service is Running.
    async fn require_agent(conn: &mut Conn) -> Result<(), Error> {
        let rows = Self::rows(conn, &super::tsql::services()).await?;
        let agent = rows
            .iter()
            .find(|r| text(r, "servicename").starts_with("SQL Server Agent"));
        match agent {
            Some(r) if text(r, "status_desc") == "Running" => Ok(()),
            Some(r) => Err(job_error(
                format!(
                    "the SQL Server Agent service ({}) is {}, not Running; start it before running jobs",
                    text(r, "servicename"),
                    text(r, "status_desc")
                ),
                false,
            )),
            None => Err(job_error(
                "sys.dm_server_services lists no SQL Server Agent service".into(),
                false,
            )),
        }
    }

    async fn last_outcome(conn: &mut Conn, job_id: &str) -> Result<u64, Error> {
        let rows = Self::rows(conn, &ls::last_outcome_id(job_id)).await?;
        Ok(rows
            .first()
            .and_then(|r| int(r, "last_id"))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0))
    }

    /// `sp_start_job` by name, after checking the Agent runs and the job does not.
    pub async fn run_job(&self, name: &str) -> Result<pb::JobStarted, Error> {
        let mut conn = self.connect(false).await?;
        let job_id = Self::job_id(&mut conn, name).await?;
        Self::require_agent(&mut conn).await?;
        if Self::job_running(&mut conn, &job_id).await? {
            return Err(job_error(
                format!("job '{name}' is already running; wait for its outcome"),
                true,
            ));
        }
        let after = Self::last_outcome(&mut conn, &job_id).await?;
        Self::call(&mut conn, &ls::start_job(name)).await?;
        Ok(pb::JobStarted {
            job_name: name.to_string(),
            job_id,
            after_instance_id: after,
        })
    }

    /// The newest outcome after `after` and whether the job runs now.
    pub async fn job_outcome(&self, name: &str, after: u64) -> Result<pb::JobOutcomeInfo, Error> {
        let mut conn = self.connect(false).await?;
        let job_id = Self::job_id(&mut conn, name).await?;
        let running = Self::job_running(&mut conn, &job_id).await?;
        let offset = times::own_offset(&mut conn).await?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = Self::rows(&mut conn, &ls::job_history(&job_id, after)).await?;
        let outcome = rows
            .iter()
            .find(|r| int(r, "step_id") == Some(0))
            .map(|r| job_run(r, offset));
        // The rows are newest first; the run's steps are those before its outcome row.
        let mut steps: Vec<pb::JobRun> = match &outcome {
            Some(o) => rows
                .iter()
                .map(|r| job_run(r, offset))
                .filter(|s| s.step_id > 0 && s.instance_id < o.instance_id)
                .collect(),
            None => Vec::new(),
        };
        steps.reverse();
        Ok(pb::JobOutcomeInfo {
            job_name: name.to_string(),
            running,
            outcome,
            steps,
        })
    }

    /// The one-off access-check job: create, start, wait, read, delete.
    pub async fn check_agent_access(
        &self,
        read_folder: &PathText,
        write_folder: &PathText,
        timeout: Duration,
    ) -> Result<pb::AgentAccess, Error> {
        let tag = format!("{:016x}", rand::random::<u64>());
        let write_dir = write_folder.as_str().trim_end_matches(['\\', '/']);
        let probe = format!("{write_dir}\\failback-probe-{tag}.tmp");
        let invalid = |reason: String| Error::InvalidInput {
            field: "folder",
            reason,
        };
        let read_cmd =
            ls::cmdexec_command(&[CmdAction::List(read_folder.as_str())]).map_err(invalid)?;
        let write_cmd = ls::cmdexec_command(&[CmdAction::Write(&probe), CmdAction::Delete(&probe)])
            .map_err(invalid)?;
        let mut conn = self.connect(false).await?;
        Self::require_agent(&mut conn).await?;
        let add = ls::add_job(
            &format!("failback_access_check_{tag}"),
            "failback: can the SQL Server Agent account read the share and write the copy folder? Deleted after its run.",
        );
        let job = Self::call(&mut conn, &add).await?.guid(&add, "@job_id")?;
        let result = Self::access_job(&mut conn, job, &read_cmd, &write_cmd, timeout).await;
        // The job goes whatever happened; a failure to delete it is reported only when the check
        // itself succeeded (an earlier error says more).
        let deleted = Self::call(&mut conn, &ls::delete_job(job)).await;
        let (outcome, steps) = result?;
        deleted?;
        let step_ok = |id: i32| {
            steps
                .iter()
                .any(|s| s.step_id == id && s.status() == pb::JobRunStatus::Succeeded)
        };
        Ok(pb::AgentAccess {
            read_folder: read_folder.as_str().to_string(),
            can_read: step_ok(1),
            write_folder: write_folder.as_str().to_string(),
            can_write: step_ok(2),
            outcome: Some(outcome),
            steps,
            commands: vec![
                read_cmd.as_str().to_string(),
                write_cmd.as_str().to_string(),
            ],
        })
    }

    async fn access_job(
        conn: &mut Conn,
        job: tiberius::Uuid,
        read_cmd: &ls::CmdExecCommand,
        write_cmd: &ls::CmdExecCommand,
        timeout: Duration,
    ) -> Result<(pb::JobRun, Vec<pb::JobRun>), Error> {
        Self::call(
            conn,
            &ls::add_cmdexec_step(job, 1, "list the read folder", read_cmd, false, true),
        )
        .await?;
        Self::call(
            conn,
            &ls::add_cmdexec_step(
                job,
                2,
                "write and delete a probe file",
                write_cmd,
                true,
                false,
            ),
        )
        .await?;
        Self::call(conn, &ls::add_jobserver(job)).await?;
        Self::call(conn, &ls::start_job_id(job)).await?;
        let id = super::guid_text(&job);
        let deadline = tokio::time::Instant::now() + timeout;
        let offset = times::own_offset(conn).await?;
        loop {
            let rows = Self::rows(conn, &ls::job_history(&id, 0)).await?;
            if let Some(outcome) = rows.iter().find(|r| int(r, "step_id") == Some(0)) {
                let mut steps: Vec<pb::JobRun> = rows
                    .iter()
                    .filter(|r| int(r, "step_id") != Some(0))
                    .map(|r| job_run(r, offset))
                    .collect();
                steps.sort_by_key(|s| s.step_id);
                return Ok((job_run(outcome, offset), steps));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(job_error(
                    format!(
                        "the access-check job gave no outcome within {}s (is the Agent busy?); it was deleted",
                        timeout.as_secs()
                    ),
                    true,
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
