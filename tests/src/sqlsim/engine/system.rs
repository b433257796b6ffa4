//! The sessions SQL Server has besides its users' (issue #11 item 3): background tasks with
//! system SPIDs, and user requests running in parallel.
//!
//! A real instance lists its background tasks (LAZY WRITER, LOG WRITER, CHECKPOINT, …) in
//! `sys.sysprocesses` and in `sys.dm_exec_sessions` with `is_user_process = 0`; `KILL` of one
//! is Msg 6107. A task's `dbid` is the database it works on (CHECKPOINT shows the database it
//! is checkpointing), so a query for "the sessions in mgc" can meet one. And `sys.sysprocesses`
//! has one row per execution context: a parallel request repeats its SPID (ecid 0, 1, …), while
//! `sys.dm_exec_sessions` has one row per session. sqlsim lists a fixed set of tasks in master;
//! the sim administrator moves one into a database or gives a user session parallel contexts:
//!
//! ```sql
//! EXEC sqlsim.system_task N'CHECKPOINT', N'mgc';   -- the task now works in mgc
//! EXEC sqlsim.parallel 53, 4;                      -- session 53 shows 4 execution contexts
//! ```

use std::collections::BTreeMap;

use super::{Engine, SessionInfo, StatementResult, errors, lock};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::tokens::ServerMessage;
use crate::sqlsim::types::Value;

/// The background tasks sqlsim lists (SPID, `cmd`), as a SQL Server 2016 instance shows the
/// first of its own; all below [`super::FIRST_USER_SPID`].
const TASKS: &[(u16, &str)] = &[
    (1, "XIO_RETRY_WORKER"),
    (2, "XE TIMER"),
    (3, "XE DISPATCHER"),
    (4, "RECOVERY WRITER"),
    (5, "LAZY WRITER"),
    (6, "LOG WRITER"),
    (7, "LOCK MONITOR"),
    (8, "SIGNAL HANDLER"),
    (9, "TASK MANAGER"),
    (10, "RESOURCE MONITOR"),
    (11, "CHECKPOINT"),
    (12, "BRKR EVENT HNDLR"),
    (13, "GHOST CLEANUP"),
];

/// Where each background task works and which user sessions run in parallel.
#[derive(Debug, Default)]
pub struct SystemSessions {
    /// Task SPID → database it works in (master when absent).
    task_database: BTreeMap<u16, String>,
    /// User SPID → number of execution contexts (1 when absent).
    parallel: BTreeMap<u16, u16>,
}

impl SystemSessions {
    /// Execution contexts of a user session.
    pub fn contexts(&self, spid: u16) -> u16 {
        self.parallel.get(&spid).copied().unwrap_or(1)
    }

    /// Forgets a session that ended.
    pub fn session_ended(&mut self, spid: u16) {
        self.parallel.remove(&spid);
    }

    /// The background tasks as sessions (login `sa`, no host or program).
    pub fn tasks(&self, since: Timestamp) -> Vec<SessionInfo> {
        TASKS
            .iter()
            .map(|(spid, cmd)| SessionInfo {
                spid: *spid,
                login: "sa".into(),
                host_name: String::new(),
                program_name: String::new(),
                database: self
                    .task_database
                    .get(spid)
                    .cloned()
                    .unwrap_or_else(|| "master".into()),
                login_time: since,
                tran_count: 0,
                tran_descriptor: 0,
                tran_serial: 0,
                is_admin: false,
                system_task: Some(cmd),
                exec_contexts: 1,
            })
            .collect()
    }
}

fn sim_error(text: impl Into<String>) -> ServerMessage {
    ServerMessage::new(50000, 1, 16, text)
}

impl Engine {
    /// `EXEC sqlsim.system_task N'CHECKPOINT', N'mgc'` (sim administrator only).
    pub(super) fn system_task_proc(
        &self,
        args: &[Value],
    ) -> Result<StatementResult, ServerMessage> {
        let arg = |i: usize| args.get(i).and_then(Value::to_text);
        let (Some(task), Some(database)) = (arg(0), arg(1)) else {
            return Err(sim_error("usage: EXEC sqlsim.system_task task, database"));
        };
        let Some((spid, _)) = TASKS.iter().find(|(_, c)| c.eq_ignore_ascii_case(&task)) else {
            return Err(sim_error(format!("sqlsim.system_task: no task '{task}'")));
        };
        let name = lock(&self.state)
            .database(&database)
            .map(|d| d.name.clone())
            .ok_or_else(|| errors::database_not_found(&database))?;
        lock(&self.system).task_database.insert(*spid, name);
        Ok(StatementResult::done())
    }

    /// `EXEC sqlsim.parallel spid, contexts` (sim administrator only; 1 ends the parallelism).
    pub(super) fn parallel_proc(&self, args: &[Value]) -> Result<StatementResult, ServerMessage> {
        let int = |i: usize| args.get(i).and_then(Value::as_i64);
        let (Some(spid), Some(n)) = (int(0), int(1)) else {
            return Err(sim_error("usage: EXEC sqlsim.parallel spid, contexts"));
        };
        let (Ok(spid), Ok(n)) = (u16::try_from(spid), u16::try_from(n)) else {
            return Err(sim_error(
                "sqlsim.parallel: spid and contexts must be 1..65535",
            ));
        };
        if n == 0 || !lock(&self.sessions).contains_key(&spid) {
            return Err(sim_error(format!(
                "sqlsim.parallel: no user session {spid}, or contexts 0"
            )));
        }
        lock(&self.system).parallel.insert(spid, n);
        Ok(StatementResult::done())
    }
}
