//! The SQL Server Agent inside the sim. [`AgentRuntime`] knows which jobs are running (so
//! sp_start_job can refuse a second run and sp_stop_job can cancel one) and hands start requests
//! to the Agent task, which `server::run` starts with [`Engine::run_agent`]. That task ticks
//! every 200 ms while the `SQL Server Agent` service row is Running: it opens a `syssessions`
//! row when the service starts, runs enabled jobs (with a job server) whose schedules are due,
//! and cancels running jobs when the service stops. A run writes one `sysjobhistory` row per
//! step and the step_id 0 outcome row ("The job succeeded.  The Job was invoked by Schedule 3
//! (…).  The last step to run was step 1 (…)."), and keeps `sysjobactivity` current.
//!
//! Schedules: freq_type 1 (once), 4 (daily, every freq_interval days), 8 (weekly, freq_interval
//! day bitmask) and 64 (when the Agent starts); within a day, freq_subday_type 1 (at
//! active_start_time), 2 (seconds), 4 (minutes), 8 (hours) between active_start_time and
//! active_end_time. Monthly (16, 32) and idle (128) schedules never fire. The sim's clock is
//! UTC where SQL Server Agent uses local time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Activity, AgentSession, HistoryRow, Job, Schedule};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::engine::{Engine, lock};

/// Who asked for a run.
#[derive(Clone, Debug)]
pub enum Invocation {
    /// A schedule came due: (schedule_id, name).
    Schedule(i32, String),
    /// `sp_start_job` by this login.
    User(String),
    /// The Agent started (freq_type 64).
    AgentStart,
}

impl Invocation {
    fn describe(&self) -> String {
        match self {
            Invocation::Schedule(id, name) => format!("Schedule {id} ({name})"),
            Invocation::User(u) => format!("User {u}"),
            Invocation::AgentStart => "the Scheduler".to_string(),
        }
    }

    fn source(&self) -> &'static str {
        match self {
            Invocation::Schedule(..) | Invocation::AgentStart => "1",
            Invocation::User(_) => "4",
        }
    }
}

struct Running {
    cancel: CancellationToken,
    requested_by: String,
    /// Who stopped it (`User sa`, `Shutdown Sequence 0`).
    stopped_by: Option<String>,
}

/// A request to run a job.
pub struct StartRequest {
    job_id: String,
    invocation: Invocation,
    step_name: Option<String>,
    cancel: CancellationToken,
}

/// Running jobs and the channel to the Agent task.
pub struct AgentRuntime {
    running: Mutex<HashMap<String, Running>>,
    tx: mpsc::UnboundedSender<StartRequest>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<StartRequest>>>,
}

impl Default for AgentRuntime {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        AgentRuntime {
            running: Mutex::new(HashMap::new()),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl AgentRuntime {
    /// Marks the job running and queues it; `Err(who started it)` when it already runs.
    pub fn request_start(
        &self,
        job_id: &str,
        invocation: Invocation,
        step_name: Option<String>,
    ) -> Result<(), String> {
        let mut running = lock(&self.running);
        if let Some(r) = running.get(job_id) {
            return Err(r.requested_by.clone());
        }
        let cancel = CancellationToken::new();
        running.insert(
            job_id.to_string(),
            Running {
                cancel: cancel.clone(),
                requested_by: invocation.describe(),
                stopped_by: None,
            },
        );
        let _ = self.tx.send(StartRequest {
            job_id: job_id.to_string(),
            invocation,
            step_name,
            cancel,
        });
        Ok(())
    }

    /// Cancels a running job; false when it is not running.
    pub fn cancel(&self, job_id: &str, kind: &str, who: &str) -> bool {
        let mut running = lock(&self.running);
        match running.get_mut(job_id) {
            Some(r) => {
                r.stopped_by = Some(format!("{kind} {who}"));
                r.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// True while the job runs.
    pub fn is_running(&self, job_id: &str) -> bool {
        lock(&self.running).contains_key(job_id)
    }

    fn cancel_all(&self, why: &str) {
        for r in lock(&self.running).values_mut() {
            r.stopped_by = Some(why.to_string());
            r.cancel.cancel();
        }
    }

    fn finished(&self, job_id: &str) -> Option<String> {
        lock(&self.running)
            .remove(job_id)
            .and_then(|r| r.stopped_by)
    }
}

/// The next run of a schedule strictly after `after`, if any within a week and a day.
pub fn next_run(s: &Schedule, after: Timestamp, agent_start: bool) -> Option<Timestamp> {
    if !s.enabled {
        return None;
    }
    if s.freq_type == 64 {
        return agent_start.then_some(after);
    }
    let date_of = |d: i64| {
        Timestamp::from_civil(
            d / 10_000,
            (d / 100 % 100) as u32,
            (d % 100) as u32,
            0,
            0,
            0,
            0,
        )
    };
    let start_day = date_of(s.active_start_date).map_or(0, |t| t.days);
    let end_day = date_of(s.active_end_date).map_or(i64::MAX, |t| t.days);
    let secs = |t: i64| (t / 10_000) * 3600 + (t / 100 % 100) * 60 + t % 100;
    let (first, last) = (secs(s.active_start_time), secs(s.active_end_time));
    let step = match s.freq_subday_type {
        2 => s.freq_subday_interval as i64,
        4 => s.freq_subday_interval as i64 * 60,
        8 => s.freq_subday_interval as i64 * 3600,
        _ => 0,
    };
    for day in after.days..=after.days + 8 {
        if day < start_day || day > end_day {
            continue;
        }
        let matches_day = match s.freq_type {
            1 => day == start_day,
            4 => (day - start_day) % (s.freq_interval.max(1) as i64) == 0,
            // 1 = Sunday … 64 = Saturday; day 0 (0001-01-01) was a Monday.
            8 => s.freq_interval & (1 << ((day + 1) % 7)) != 0,
            _ => false,
        };
        if !matches_day {
            continue;
        }
        let midnight = Timestamp {
            days: day,
            ticks: 0,
        };
        let mut t = first;
        while t <= last {
            let at = midnight.plus_seconds(t);
            if at > after {
                return Some(at);
            }
            if step <= 0 {
                break;
            }
            t += step;
        }
    }
    None
}

/// Run duration as SQL Server Agent stores it: `hhmmss` of the elapsed seconds.
pub fn duration_int(secs: i64) -> i64 {
    let s = secs.max(0);
    (s / 3600) * 10_000 + (s / 60 % 60) * 100 + s % 60
}

impl Engine {
    /// The Agent task: start requests and schedules, until `shutdown`.
    pub async fn run_agent(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut rx) = lock(&self.agent.rx).take() else {
            return;
        };
        let mut next: HashMap<(String, i32), Timestamp> = HashMap::new();
        // The service's last start time: a stop and start between two ticks is still a restart.
        let mut seen_start: Option<Timestamp> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.agent.cancel_all("Shutdown Sequence 0");
                    return;
                }
                req = rx.recv() => {
                    let Some(req) = req else { return };
                    let engine = Arc::clone(&self);
                    tokio::spawn(async move { engine.run_job(req).await });
                }
                _ = tick.tick() => {
                    let (running, started_at) = {
                        let st = lock(&self.state);
                        (st.agent_running(), st.agent_service().map(|s| s.last_startup_time))
                    };
                    let just_started = running && seen_start != started_at;
                    if just_started {
                        if seen_start.is_some() {
                            self.agent.cancel_all("the stop of the SQLServerAgent service");
                        }
                        next.clear();
                        self.agent_started();
                        seen_start = started_at;
                    } else if !running && seen_start.is_some() {
                        self.agent.cancel_all("the stop of the SQLServerAgent service");
                        tracing::info!("SQL Server Agent stopped");
                        seen_start = None;
                    }
                    if running {
                        self.fire_due_schedules(&mut next, just_started);
                    }
                }
            }
        }
    }

    /// A new `syssessions` row and its `sysjobactivity` rows.
    fn agent_started(&self) {
        let mut st = lock(&self.state);
        let id = st.msdb.current_session().unwrap_or(0) + 1;
        let now = Timestamp::now();
        st.msdb.sessions.push(AgentSession {
            session_id: id,
            agent_start_date: now,
        });
        let jobs: Vec<String> = st.msdb.jobs.iter().map(|j| j.job_id.clone()).collect();
        for job_id in jobs {
            st.msdb.activity.push(blank_activity(id, &job_id));
        }
        // Activity of older sessions is history; keep the table small.
        st.msdb.activity.retain(|a| a.session_id + 10 > id);
        if let Err(m) = self.persist(&st) {
            tracing::warn!("failed to save the Agent session: {}", m.message);
        }
        tracing::info!(session_id = id, "SQL Server Agent started");
    }

    fn fire_due_schedules(&self, next: &mut HashMap<(String, i32), Timestamp>, just_started: bool) {
        // Schedules (active_start_time, next_run_date/time) are the host's local wall clock, as
        // SQL Server Agent's are: `next` holds local times.
        let now = Timestamp::now_local();
        let mut due = Vec::new();
        {
            let mut st = lock(&self.state);
            let msdb = &mut st.msdb;
            let jobs: HashMap<String, &Job> =
                msdb.jobs.iter().map(|j| (j.job_id.clone(), j)).collect();
            let schedules: HashMap<i32, &Schedule> =
                msdb.schedules.iter().map(|s| (s.schedule_id, s)).collect();
            for link in &mut msdb.job_schedules {
                let (Some(job), Some(s)) =
                    (jobs.get(&link.job_id), schedules.get(&link.schedule_id))
                else {
                    continue;
                };
                let key = (link.job_id.clone(), link.schedule_id);
                let at = match next.get(&key) {
                    Some(t) => Some(*t),
                    None => {
                        let t = next_run(s, now, just_started);
                        if let Some(t) = t {
                            next.insert(key.clone(), t);
                        }
                        t
                    }
                };
                let Some(at) = at else { continue };
                if at <= now {
                    if job.enabled && job.has_server {
                        due.push((
                            job.job_id.clone(),
                            s.schedule_id,
                            s.name.clone(),
                            s.freq_type == 64,
                        ));
                    }
                    match next_run(s, now, false) {
                        Some(t) => {
                            next.insert(key, t);
                        }
                        None => {
                            next.remove(&key);
                        }
                    }
                }
                if let Some(t) = next.get(&(link.job_id.clone(), link.schedule_id)) {
                    link.next_run_date = t.agent_date();
                    link.next_run_time = t.agent_time();
                }
            }
        }
        for (job_id, sid, name, at_start) in due {
            let inv = if at_start {
                Invocation::AgentStart
            } else {
                Invocation::Schedule(sid, name)
            };
            // A job still running when its schedule comes due skips that run, as the Agent does.
            let _ = self.agent.request_start(&job_id, inv, None);
        }
    }

    /// One run of a job: its steps, their history rows, the outcome row, sysjobactivity.
    async fn run_job(&self, req: StartRequest) {
        let started = Timestamp::now();
        let job = {
            let mut st = lock(&self.state);
            let session_id = st.msdb.current_session().unwrap_or(0);
            let job = st.msdb.job(&req.job_id).cloned();
            if job.is_some() {
                let a = activity_mut(&mut st.msdb.activity, session_id, &req.job_id);
                a.run_requested_date = Some(started);
                a.run_requested_source = Some(req.invocation.source().to_string());
                a.start_execution_date = Some(started);
                a.stop_execution_date = None;
                a.last_executed_step_id = None;
                a.last_executed_step_date = None;
            }
            job
        };
        let Some(job) = job else {
            self.agent.finished(&req.job_id);
            return;
        };
        tracing::info!(job = job.name, "job started");
        let mut step_id = req
            .step_name
            .as_ref()
            .and_then(|n| {
                job.steps
                    .iter()
                    .find(|s| s.step_name.eq_ignore_ascii_case(n))
            })
            .map_or(job.start_step_id, |s| s.step_id);
        let mut last: Option<(i32, String)> = None;
        let mut outcome = 0;
        let mut canceled = false;
        for _ in 0..100 {
            let Some(step) = job.steps.iter().find(|s| s.step_id == step_id).cloned() else {
                break;
            };
            let step_start = Timestamp::now();
            let result = tokio::select! {
                r = self.run_step(&job, &step) => Some(r),
                _ = req.cancel.cancelled() => None,
            };
            let end = Timestamp::now();
            last = Some((step.step_id, step.step_name.clone()));
            let (status, message, msg_id, severity) = match &result {
                Some(r) => (
                    if r.ok { 1 } else { 0 },
                    r.message.clone(),
                    r.sql_message_id,
                    r.sql_severity,
                ),
                None => {
                    canceled = true;
                    (
                        3,
                        "The step was cancelled (stopped) as the result of a stop job request."
                            .to_string(),
                        0,
                        0,
                    )
                }
            };
            self.record_step(
                &job, &step, step_start, end, status, message, msg_id, severity,
            );
            let Some(r) = result else { break };
            let (action, target) = if r.ok {
                (step.on_success_action, step.on_success_step_id)
            } else {
                (step.on_fail_action, step.on_fail_step_id)
            };
            match action {
                3 if job.steps.iter().any(|s| s.step_id == step_id + 1) => step_id += 1,
                3 => {
                    outcome = if r.ok { 1 } else { 0 };
                    break;
                }
                4 => step_id = target,
                2 => {
                    outcome = 0;
                    break;
                }
                _ => {
                    outcome = 1;
                    break;
                }
            }
        }
        let stopped_by = self.agent.finished(&req.job_id);
        let end = Timestamp::now();
        let last_text = last.map_or_else(
            || "No step was run.".to_string(),
            |(id, name)| format!("The last step to run was step {id} ({name})."),
        );
        let invoked = req.invocation.describe();
        let (status, message) = if canceled {
            let by = stopped_by.unwrap_or_else(|| "User".into());
            (
                3,
                format!(
                    "The job was stopped prior to completion by {by}.  The Job was invoked by {invoked}.  {last_text}"
                ),
            )
        } else if outcome == 1 {
            (
                1,
                format!("The job succeeded.  The Job was invoked by {invoked}.  {last_text}"),
            )
        } else {
            (
                0,
                format!("The job failed.  The Job was invoked by {invoked}.  {last_text}"),
            )
        };
        let mut st = lock(&self.state);
        if st.msdb.job(&job.job_id).is_none() {
            return;
        }
        let server = st.server_name.clone();
        let id = st.msdb.add_history(HistoryRow {
            instance_id: 0,
            job_id: job.job_id.clone(),
            step_id: 0,
            step_name: "(Job outcome)".into(),
            sql_message_id: 0,
            sql_severity: 0,
            message,
            run_status: status,
            run_date: started.local().agent_date(),
            run_time: started.local().agent_time(),
            run_duration: duration_int(end.seconds_since(&started)),
            server,
        });
        let session_id = st.msdb.current_session().unwrap_or(0);
        let a = activity_mut(&mut st.msdb.activity, session_id, &job.job_id);
        a.stop_execution_date = Some(end);
        a.job_history_id = Some(id);
        if let Err(m) = self.persist(&st) {
            tracing::warn!("failed to save job history: {}", m.message);
        }
        tracing::info!(job = job.name, status, "job finished");
    }

    #[allow(clippy::too_many_arguments)]
    fn record_step(
        &self,
        job: &Job,
        step: &super::JobStep,
        start: Timestamp,
        end: Timestamp,
        status: i32,
        message: String,
        msg_id: i32,
        severity: i32,
    ) {
        let mut st = lock(&self.state);
        let server = st.server_name.clone();
        let Some(j) = st.msdb.job_mut(&job.job_id) else {
            return;
        };
        if let Some(s) = j.steps.iter_mut().find(|s| s.step_id == step.step_id) {
            s.last_run_outcome = status;
            s.last_run_date = start.local().agent_date();
            s.last_run_time = start.local().agent_time();
        }
        st.msdb.add_history(HistoryRow {
            instance_id: 0,
            job_id: job.job_id.clone(),
            step_id: step.step_id,
            step_name: step.step_name.clone(),
            sql_message_id: msg_id,
            sql_severity: severity,
            message,
            run_status: status,
            run_date: start.local().agent_date(),
            run_time: start.local().agent_time(),
            run_duration: duration_int(end.seconds_since(&start)),
            server,
        });
        let session_id = st.msdb.current_session().unwrap_or(0);
        let a = activity_mut(&mut st.msdb.activity, session_id, &job.job_id);
        a.last_executed_step_id = Some(step.step_id);
        a.last_executed_step_date = Some(start);
        if let Err(m) = self.persist(&st) {
            tracing::warn!("failed to save job history: {}", m.message);
        }
    }
}

fn blank_activity(session_id: i32, job_id: &str) -> Activity {
    Activity {
        session_id,
        job_id: job_id.to_string(),
        run_requested_date: None,
        run_requested_source: None,
        start_execution_date: None,
        last_executed_step_id: None,
        last_executed_step_date: None,
        stop_execution_date: None,
        job_history_id: None,
        next_scheduled_run_date: None,
    }
}

fn activity_mut<'a>(
    rows: &'a mut Vec<Activity>,
    session_id: i32,
    job_id: &str,
) -> &'a mut Activity {
    let pos = rows
        .iter()
        .position(|a| a.session_id == session_id && a.job_id == job_id);
    let i = match pos {
        Some(i) => i,
        None => {
            rows.push(blank_activity(session_id, job_id));
            rows.len() - 1
        }
    };
    &mut rows[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(freq_type: i32, subday: i32, n: i32) -> Schedule {
        Schedule {
            schedule_id: 1,
            schedule_uid: String::new(),
            name: "s".into(),
            enabled: true,
            freq_type,
            freq_interval: 1,
            freq_subday_type: subday,
            freq_subday_interval: n,
            freq_relative_interval: 0,
            freq_recurrence_factor: 0,
            active_start_date: 20240101,
            active_end_date: 99991231,
            active_start_time: 0,
            active_end_time: 235959,
            date_created: Timestamp::now(),
        }
    }

    #[test]
    fn schedules_fire_on_their_grid() {
        let t = Timestamp::parse("2024-03-05T10:07:30.5").unwrap();
        let n = next_run(&sched(4, 2, 1), t, false).unwrap();
        assert_eq!(n.compact(), "20240305100731");
        let n = next_run(&sched(4, 4, 15), t, false).unwrap();
        assert_eq!(n.compact(), "20240305101500");
        let mut once = sched(4, 1, 0);
        once.active_start_time = 23000;
        assert_eq!(
            next_run(&once, t, false).unwrap().compact(),
            "20240306023000"
        );
        // 2024-03-05 is a Tuesday (bit 4); weekly on Mondays (bit 2) runs 2024-03-11.
        let mut weekly = sched(8, 1, 0);
        weekly.freq_interval = 2;
        assert_eq!(
            next_run(&weekly, t, false).unwrap().compact(),
            "20240311000000"
        );
        assert!(next_run(&sched(16, 1, 0), t, false).is_none());
        assert_eq!(duration_int(3725), 10205);
    }
}
