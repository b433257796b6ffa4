//! The SQL engine: executes parsed statements against the instance state and produces, per
//! statement, the tokens a client should see (result sets, ENVCHANGEs, INFO/ERROR messages) and the
//! DONE information (row count, error bit). It knows nothing about packets; `session.rs` turns a
//! [`StatementResult`] list into DONE or DONEINPROC tokens. Sessions are registered here so that
//! `@@SPID`, DROP DATABASE's in-use check, sysprocesses and KILL see every connection, and the
//! requests in flight so that `sys.dm_exec_requests` can show a BACKUP's progress from another
//! connection. Execution is async: BACKUP and RESTORE do real, optionally paced, file I/O, and no
//! lock is ever held across an await.

mod admin;
pub mod backup;
pub mod catalog;
mod engine_access;
pub mod errors;
pub mod eval;
mod exec;
pub mod fault;
pub mod files;
pub mod mirror;
mod modify;
pub mod msdb;
mod procs;
pub mod query;
pub mod requests;
pub mod state;
pub mod system;
mod tran;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use self::eval::Params;
use self::fault::FaultSet;
use self::files::PathMap;
use self::query::{RowSet, run_select};
use self::requests::Requests;
use self::state::{InstanceState, StateStore};
use super::clock::Timestamp;
use super::error::Result;
use super::sql::ast::Statement;
use super::sql::ast::{ExecArg, Expr, Parsed};
use super::sql::lexer::LexError;
use super::sql::parser::{ParseError, parse_batch};
use super::statement_log::StatementLog;
use super::tokens::{EnvChange, ServerMessage, curcmd};
use super::types::{SqlType, Value};

/// A boxed future of statement results (recursion through dynamic SQL needs the box).
type Results<'a> = Pin<Box<dyn Future<Output = Vec<StatementResult>> + Send + 'a>>;
/// A boxed future that runs a statement list and says whether the batch must stop.
type Stops<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Where one batch's statements run: its text (for logging and line numbers), its variables
/// (RPC parameters plus DECLAREd ones, and `@@error`) and its nesting depth.
struct BatchRun<'a> {
    text: &'a str,
    kind: &'a str,
    depth: u32,
    vars: Params,
    out: Vec<StatementResult>,
}

/// What the engine needs beyond the data directory (the server fills it from its [`Config`]).
///
/// [`Config`]: crate::sqlsim::Config
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Password of `sa`, the normal sysadmin login the agent uses.
    pub sa_password: String,
    /// `(login, password)` of the sim administrator: the only login that may run `sqlsim.*`
    /// procedures (faults, mirroring, services). `None`: sim-only statements exist for nobody.
    pub admin: Option<(String, String)>,
    /// Size of a full backup's payload in MB (rows plus filler), so backup I/O is real.
    pub db_size_mb: u32,
    /// Size of a log backup's payload in MB (rows plus filler; 0: the rows only), for a busy
    /// pool's hourly log whose copy takes long enough to be interrupted.
    pub log_backup_mb: u32,
    /// Lab-only deviation from SQL Server (`--lab-short-schedules`): schedules may run every
    /// second instead of msdb's minimum of 10 (see `msdb/schedules.rs`).
    pub lab_short_schedules: bool,
    /// How SQL Server paths (`C:\…`, `\\server\share\…`) map to local directories.
    pub paths: PathMap,
    /// File shared by sims that mirror each other (see [`mirror`]).
    pub mirror_registry: Option<PathBuf>,
    /// Fault switches armed from the command line (same syntax as `EXEC sqlsim.fault`).
    pub faults: Vec<String>,
    /// Agent account access rules from the command line (`PATH=MODE`, see `msdb/access.rs`).
    pub agent_access: Vec<String>,
    /// `--product-version`: the SQL Server build this instance is (kept in its state).
    pub product_version: Option<String>,
    /// `--stale-server-name`: what `@@SERVERNAME` says (kept in its state; see
    /// [`InstanceState::stale_server_name`]).
    pub stale_server_name: Option<String>,
}

/// First SPID handed to a user connection (1-50 are system sessions in SQL Server).
pub const FIRST_USER_SPID: u16 = 51;

/// What the engine knows about one connection.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// Session id.
    pub spid: u16,
    /// Login name.
    pub login: String,
    /// Client host name from LOGIN7.
    pub host_name: String,
    /// Application name from LOGIN7.
    pub program_name: String,
    /// Current database.
    pub database: String,
    /// When the session logged in.
    pub login_time: Timestamp,
    /// `@@TRANCOUNT`.
    pub tran_count: u32,
    /// Descriptor of the open transaction (0 when none).
    pub tran_descriptor: u64,
    /// Counter that makes transaction descriptors unique within the session.
    pub tran_serial: u32,
    /// Logged in as the sim administrator (may run `sqlsim.*` procedures).
    pub is_admin: bool,
    /// A background task's `cmd` (a system session, [`system`]); `None` for a user session.
    pub system_task: Option<&'static str>,
    /// Execution contexts (rows in `sys.sysprocesses`): more than 1 while running in parallel.
    pub exec_contexts: u16,
}

/// Everything an expression may read.
pub struct EvalCtx<'a> {
    /// Instance state (locked for the statement).
    pub state: &'a InstanceState,
    /// The running session.
    pub session: &'a SessionInfo,
    /// Variables.
    pub params: &'a Params,
    /// Snapshot of all sessions (for sys.dm_exec_sessions / sys.sysprocesses).
    pub sessions: &'a [SessionInfo],
    /// Snapshot of the requests in flight (for sys.dm_exec_requests).
    pub requests: &'a [requests::RequestInfo],
}

/// One thing a statement sends before its DONE.
#[derive(Debug)]
pub enum ResultItem {
    /// An ENVCHANGE.
    Env(EnvChange),
    /// INFO or ERROR.
    Message(ServerMessage),
    /// COLMETADATA + ROWs.
    Rows(RowSet),
}

impl std::fmt::Debug for RowSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RowSet({} columns, {} rows)",
            self.columns.len(),
            self.rows.len()
        )
    }
}

/// The outcome of one statement.
#[derive(Debug, Default)]
pub struct StatementResult {
    /// Tokens before the DONE.
    pub items: Vec<ResultItem>,
    /// Row count for DONE_COUNT, if any.
    pub count: Option<u64>,
    /// DONE_ERROR.
    pub error: bool,
    /// DONE CurCmd.
    pub curcmd: u16,
    /// The error also ends the batch (compile-time errors such as 208 in SQL Server).
    pub aborts_batch: bool,
    /// A fault switch asks to drop the connection here, without answering.
    pub disconnect: bool,
    /// A procedure's return code (`EXEC @rc = …`, RETURNSTATUS of an RPC).
    pub return_status: Option<i32>,
    /// Values of OUTPUT parameters, by argument position.
    pub outputs: Vec<OutputValue>,
}

/// One argument of a procedure call: an EXEC argument in a batch or an RPC parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcArg {
    /// `@name` if the caller named it.
    pub name: Option<String>,
    /// The value (NULL for DEFAULT).
    pub value: Value,
    /// Passed as OUTPUT (by reference).
    pub output: bool,
}

/// The value an OUTPUT parameter takes back to the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputValue {
    /// Position of the argument in the call.
    pub arg: usize,
    /// Its new value.
    pub value: Value,
    /// Its declared type in the procedure (RETURNVALUE's TYPE_INFO).
    pub ty: SqlType,
}

impl StatementResult {
    /// A statement that succeeded without a row count.
    pub fn done() -> Self {
        Self::default()
    }

    /// A failed statement.
    pub fn failed(msg: ServerMessage) -> Self {
        // These errors stop the rest of the batch in SQL Server; the others end the statement only.
        let aborts_batch = matches!(
            msg.number,
            102 | 105 | 113 | 137 | 156 | 195 | 207 | 208 | 209 | 8120
        );
        StatementResult {
            items: vec![ResultItem::Message(msg)],
            error: true,
            aborts_batch,
            ..Self::default()
        }
    }

    /// A result set (DONE_COUNT with its row count).
    pub fn rows(set: RowSet) -> Self {
        let n = set.rows.len() as u64;
        StatementResult {
            items: vec![ResultItem::Rows(set)],
            count: Some(n),
            curcmd: curcmd::SELECT,
            ..Self::default()
        }
    }
}

struct SessionEntry {
    info: SessionInfo,
    /// Cancelled to end the connection (KILL, shutdown).
    kill: CancellationToken,
}

/// The engine shared by all connections.
pub struct Engine {
    state: Mutex<InstanceState>,
    store: StateStore,
    log: StatementLog,
    sessions: Mutex<BTreeMap<u16, SessionEntry>>,
    options: EngineOptions,
    requests: Requests,
    faults: Mutex<FaultSet>,
    /// SQL Server Agent: running jobs and the start queue.
    agent: msdb::AgentRuntime,
    /// Background tasks and parallel requests ([`system`]).
    system: Mutex<system::SystemSessions>,
    /// When the engine started (the background tasks' login time).
    started: Timestamp,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-written on disk (saves are
    // atomic), so recovering the guard is safe and keeps other connections working.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Maps a parse failure to SQL Server's message.
fn parse_error_message(e: &ParseError) -> ServerMessage {
    match e {
        ParseError::Lex(LexError::UnclosedQuote(s)) => errors::unclosed_quote(s),
        ParseError::Lex(LexError::UnclosedComment) => errors::missing_end_comment(),
        ParseError::Lex(LexError::Unexpected(c)) => errors::syntax_near(c),
        ParseError::Syntax {
            near,
            keyword: true,
        } => errors::syntax_near_keyword(near),
        ParseError::Syntax {
            near,
            keyword: false,
        } => errors::syntax_near(near),
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> i32 {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() as i32 + 1)
}

impl Engine {
    /// Loads (or creates) the instance in `data_dir`. A fault given in `options.faults` that
    /// does not parse is an error here, so a typo on the command line stops the start.
    pub fn open(
        data_dir: &Path,
        server_name: Option<&str>,
        options: EngineOptions,
    ) -> Result<Self> {
        let store = StateStore::open(data_dir)?;
        let mut state = store.load_or_init(server_name)?;
        if state.apply_identity(
            options.product_version.as_deref(),
            options.stale_server_name.as_deref(),
        )? {
            store.save(&state)?;
        }
        let log = StatementLog::open(data_dir)?;
        // The instance's default folders exist, as after a SQL Server setup.
        for p in [&state.default_data_path, &state.default_log_path] {
            let local = options.paths.resolve(p);
            if let Err(e) = std::fs::create_dir_all(&local) {
                tracing::warn!("failed to create {}: {e}", local.display());
            }
        }
        let mut faults = FaultSet::default();
        for spec in &options.faults {
            faults
                .apply(spec)
                .map_err(|e| super::error::SimError::Config(format!("--fault {spec}: {e}")))?;
        }
        let access = options.agent_access.clone();
        let engine = Engine {
            state: Mutex::new(state),
            store,
            log,
            sessions: Mutex::new(BTreeMap::new()),
            options,
            requests: Requests::default(),
            faults: Mutex::new(faults),
            system: Mutex::new(system::SystemSessions::default()),
            started: Timestamp::now(),
            agent: msdb::AgentRuntime::default(),
        };
        engine
            .apply_agent_access_flags(&access)
            .map_err(super::error::SimError::Config)?;
        Ok(engine)
    }

    /// `@@SERVERNAME`.
    pub fn server_name(&self) -> String {
        lock(&self.state).server_name.clone()
    }

    /// Product version (major, minor, build).
    pub fn version(&self) -> (u8, u8, u16) {
        lock(&self.state).version_triplet()
    }

    /// Checks SQL authentication: `sa` (case-insensitive, like SQL Server's default collation)
    /// with the configured password (case-sensitive), or the sim administrator login.
    pub fn check_login(&self, user: &str, password: &str) -> bool {
        (user.eq_ignore_ascii_case("sa") && password == self.options.sa_password)
            || self.is_admin_login(user, password)
    }

    /// True for the configured sim administrator login and password.
    pub fn is_admin_login(&self, user: &str, password: &str) -> bool {
        self.options
            .admin
            .as_ref()
            .is_some_and(|(l, p)| l.eq_ignore_ascii_case(user) && p == password)
    }

    /// Registers a logged-in connection. The initial database must exist and be usable; otherwise
    /// the login fails with 4060 (the caller then sends 18456).
    pub fn open_session(
        &self,
        login: &str,
        is_admin: bool,
        host_name: &str,
        program_name: &str,
        database: &str,
    ) -> std::result::Result<(SessionInfo, CancellationToken), ServerMessage> {
        let database = if database.is_empty() {
            "master"
        } else {
            database
        };
        let db_name = {
            let st = lock(&self.state);
            let db = st
                .database(database)
                .ok_or_else(|| errors::cannot_open_login_database(database))?;
            query::check_accessible(db)
                .map_err(|_| errors::cannot_open_login_database(database))?;
            db.name.clone()
        };
        let mut sessions = lock(&self.sessions);
        let spid = (FIRST_USER_SPID..=u16::MAX)
            .find(|s| !sessions.contains_key(s))
            .ok_or_else(|| ServerMessage::new(17809, 1, 20, "Could not connect because the maximum number of user connections has already been reached."))?;
        let info = SessionInfo {
            spid,
            login: login.to_string(),
            host_name: host_name.to_string(),
            program_name: program_name.to_string(),
            database: db_name,
            login_time: Timestamp::now(),
            tran_count: 0,
            tran_descriptor: 0,
            tran_serial: 0,
            is_admin,
            system_task: None,
            exec_contexts: 1,
        };
        let kill = CancellationToken::new();
        sessions.insert(
            spid,
            SessionEntry {
                info: info.clone(),
                kill: kill.clone(),
            },
        );
        Ok((info, kill))
    }

    /// Removes a connection's session.
    pub fn close_session(&self, spid: u16) {
        lock(&self.sessions).remove(&spid);
        lock(&self.system).session_ended(spid);
        self.requests.finish(spid);
    }

    /// Publishes a session's current database and transaction count to the registry.
    fn sync_session(&self, session: &SessionInfo) {
        if let Some(e) = lock(&self.sessions).get_mut(&session.spid) {
            e.info = session.clone();
        }
    }

    /// Runs a batch (or the statement text of an RPC when `kind` is `rpc`).
    pub async fn execute_batch(
        &self,
        session: &mut SessionInfo,
        text: &str,
        params: &Params,
        kind: &str,
    ) -> Vec<StatementResult> {
        let out = self.run_text(session, text, params, kind, 0).await;
        self.requests.finish(session.spid);
        self.sync_session(session);
        out
    }

    fn run_text<'a>(
        &'a self,
        session: &'a mut SessionInfo,
        text: &'a str,
        params: &'a Params,
        kind: &'a str,
        depth: u32,
    ) -> Results<'a> {
        Box::pin(async move {
            let parsed = match parse_batch(text) {
                Ok(p) => p,
                Err(e) => {
                    self.log.record(session.spid, &session.database, kind, text);
                    return vec![StatementResult::failed(parse_error_message(&e))];
                }
            };
            let mut run = BatchRun {
                text,
                kind,
                depth,
                vars: params.clone(),
                out: Vec::new(),
            };
            self.run_list(&parsed, session, &mut run).await;
            run.out
        })
    }

    /// Runs statements in order (a batch, or the body of IF / BEGIN … END); true when the
    /// batch must stop (an error that aborts it, or a dropped connection).
    fn run_list<'a>(
        &'a self,
        list: &'a [Parsed],
        session: &'a mut SessionInfo,
        run: &'a mut BatchRun<'_>,
    ) -> Stops<'a> {
        Box::pin(async move {
            for p in list {
                let stmt_text = run.text.get(p.start..p.end).unwrap_or(run.text);
                let line = line_of(run.text, p.start);
                match &p.stmt {
                    Statement::Declare(vars) => {
                        for (name, init) in vars {
                            let v = match init {
                                Some(e) => match self.eval_scalar(e, session, &run.vars) {
                                    Ok(v) => v,
                                    Err(m) => {
                                        if self.push_results(
                                            run,
                                            vec![StatementResult::failed(m)],
                                            line,
                                        ) {
                                            return true;
                                        }
                                        continue;
                                    }
                                },
                                None => Value::Null,
                            };
                            run.vars.insert(name.to_lowercase(), v);
                        }
                        run.vars.insert("@@error".into(), Value::Int(0));
                        continue;
                    }
                    Statement::SetVariable { name, value } => {
                        match self.eval_scalar(value, session, &run.vars) {
                            Ok(v) => {
                                run.vars.insert(name.to_lowercase(), v);
                                run.vars.insert("@@error".into(), Value::Int(0));
                            }
                            Err(m) => {
                                if self.push_results(run, vec![StatementResult::failed(m)], line) {
                                    return true;
                                }
                            }
                        }
                        continue;
                    }
                    Statement::If {
                        condition,
                        then,
                        otherwise,
                    } => {
                        let branch = match self.eval_scalar(condition, session, &run.vars) {
                            Ok(v) if eval::truth(&v) == Some(true) => then,
                            Ok(_) => otherwise,
                            Err(m) => {
                                if self.push_results(run, vec![StatementResult::failed(m)], line) {
                                    return true;
                                }
                                continue;
                            }
                        };
                        if self.run_list(branch, session, run).await {
                            return true;
                        }
                        continue;
                    }
                    Statement::Block(inner) => {
                        if self.run_list(inner, session, run).await {
                            return true;
                        }
                        continue;
                    }
                    _ => {}
                }
                self.log.record_with(
                    session.spid,
                    &session.database,
                    run.kind,
                    stmt_text,
                    &run.vars,
                );
                self.requests.start(
                    session.spid,
                    requests::command_of(&p.stmt),
                    &session.database,
                );
                let action = lock(&self.faults).before_statement(p.stmt.kind());
                if action.disconnect {
                    tracing::info!(spid = session.spid, "fault: dropping the connection");
                    run.out.push(StatementResult {
                        disconnect: true,
                        ..StatementResult::done()
                    });
                    return true;
                }
                if let Some(d) = action.delay {
                    tokio::time::sleep(d).await;
                }
                let results = self
                    .execute_statement(&p.stmt, session, &run.vars, run.depth)
                    .await;
                if let Statement::Exec {
                    return_var, args, ..
                } = &p.stmt
                {
                    assign_outputs(&mut run.vars, return_var.as_deref(), args, &results);
                }
                // Later statements (DROP DATABASE's in-use check) must see this one's USE.
                self.sync_session(session);
                if self.push_results(run, results, line) {
                    return true;
                }
            }
            false
        })
    }

    /// Adds a statement's results to the batch output, sets `@@ERROR`; true when the batch
    /// must stop.
    fn push_results(
        &self,
        run: &mut BatchRun<'_>,
        results: Vec<StatementResult>,
        line: i32,
    ) -> bool {
        let mut stop = false;
        let mut error = 0;
        for mut r in results {
            for item in &mut r.items {
                if let ResultItem::Message(m) = item
                    && m.is_error()
                {
                    if error == 0 {
                        error = m.number;
                    }
                    if run.depth == 0 {
                        m.line = line;
                    }
                }
            }
            stop |= (r.error && r.aborts_batch) || r.disconnect;
            run.out.push(r);
        }
        run.vars.insert("@@error".into(), Value::Int(error as i64));
        stop
    }

    async fn execute_statement(
        &self,
        stmt: &Statement,
        session: &mut SessionInfo,
        params: &Params,
        depth: u32,
    ) -> Vec<StatementResult> {
        let one = |r: std::result::Result<StatementResult, ServerMessage>| {
            vec![r.unwrap_or_else(StatementResult::failed)]
        };
        match stmt {
            Statement::Use(name) => one(self.use_database(session, name)),
            Statement::SetOption(_) => vec![StatementResult::done()],
            Statement::Select(sel) => {
                self.sync_mirroring();
                // Snapshot sessions before locking the state: the two locks are never nested.
                let sessions = self.session_snapshot();
                let requests = self.requests.snapshot();
                let st = lock(&self.state);
                let ctx = EvalCtx {
                    state: &st,
                    session,
                    params,
                    sessions: &sessions,
                    requests: &requests,
                };
                one(run_select(sel, &ctx).map(StatementResult::rows))
            }
            Statement::Insert(ins) => one(self.insert(ins, session, params)),
            Statement::CreateDatabase(name) => one(self.create_database(name)),
            Statement::DropDatabase { names, if_exists } => {
                one(self.drop_databases(names, *if_exists))
            }
            Statement::BeginTran => vec![self.begin_tran(session)],
            Statement::Kill(target) => one(self.kill(target, session)),
            Statement::AlterDatabase { name, action } => {
                self.sync_mirroring();
                vec![self.alter_database(name, action, session)]
            }
            Statement::Commit => vec![self.commit_tran(session)],
            Statement::Rollback => vec![self.rollback_tran(session)],
            Statement::ExecString(e) => self.exec_string(e, session, params, depth).await,
            Statement::Exec {
                procedure, args, ..
            } => {
                self.exec_procedure(procedure, args, session, params, depth)
                    .await
            }
            Statement::Backup(b) => vec![self.backup(b, session, params).await],
            Statement::Restore(r) => {
                self.sync_mirroring();
                vec![self.restore(r, session, params).await]
            }
            // Control flow and variables are handled by `run_list`.
            Statement::Declare(_)
            | Statement::SetVariable { .. }
            | Statement::If { .. }
            | Statement::Block(_) => vec![StatementResult::done()],
        }
    }

    fn use_database(
        &self,
        session: &mut SessionInfo,
        name: &str,
    ) -> std::result::Result<StatementResult, ServerMessage> {
        let st = lock(&self.state);
        let db = st
            .database(name)
            .ok_or_else(|| errors::database_not_found(name))?;
        query::check_accessible(db)?;
        if !db.name.eq_ignore_ascii_case(&session.database)
            && self.single_user_blocked(&db.name, db.user_access, session.spid)
        {
            return Err(errors::single_user_taken(&db.name));
        }
        let old = std::mem::replace(&mut session.database, db.name.clone());
        Ok(StatementResult {
            items: vec![
                ResultItem::Env(EnvChange::Database {
                    new: db.name.clone(),
                    old,
                }),
                ResultItem::Message(errors::changed_database(&db.name)),
            ],
            ..StatementResult::done()
        })
    }

    /// Copies of all sessions, ordered by SPID: the background tasks, then the users' (with
    /// their execution contexts). Only the catalog views see the tasks.
    fn session_snapshot(&self) -> Vec<SessionInfo> {
        let system = lock(&self.system);
        let mut all = system.tasks(self.started);
        all.extend(lock(&self.sessions).values().map(|e| SessionInfo {
            exec_contexts: system.contexts(e.info.spid),
            ..e.info.clone()
        }));
        all
    }

    /// Databases some session currently uses.
    fn databases_in_use(&self) -> Vec<String> {
        lock(&self.sessions)
            .values()
            .map(|e| e.info.database.to_lowercase())
            .collect()
    }

    /// Saves the state after a change; a failure is reported to the client as an I/O error.
    fn persist(&self, st: &InstanceState) -> std::result::Result<(), ServerMessage> {
        self.store.save(st).map_err(|e| {
            tracing::error!("failed to save instance state: {e}");
            ServerMessage::new(
                823,
                2,
                16,
                format!(
                    "The operating system returned an error while writing the instance state: {e}."
                ),
            )
        })
    }

    /// Ends every session (used at shutdown).
    pub fn kill_all_sessions(&self) {
        for e in lock(&self.sessions).values() {
            e.kill.cancel();
        }
    }
}

/// After `EXEC [@rc =] proc … @x OUTPUT`: the return code and OUTPUT values land in the batch's
/// variables.
fn assign_outputs(
    vars: &mut Params,
    return_var: Option<&str>,
    args: &[ExecArg],
    results: &[StatementResult],
) {
    let Some(last) = results.last() else {
        return;
    };
    if let Some(rv) = return_var {
        let status = last.return_status.unwrap_or(if last.error { 1 } else { 0 });
        if last.return_status.is_some() || !last.error {
            vars.insert(rv.to_lowercase(), Value::Int(status as i64));
        }
    }
    for o in &last.outputs {
        if let Some(ExecArg {
            value: Some(Expr::Variable(v)),
            output: true,
            ..
        }) = args.get(o.arg)
        {
            vars.insert(v.to_lowercase(), o.value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
