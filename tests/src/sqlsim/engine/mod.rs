//! The SQL engine: executes parsed statements against the instance state and produces, per
//! statement, the tokens a client should see (result sets, ENVCHANGEs, INFO/ERROR messages) and the
//! DONE information (row count, error bit). It knows nothing about packets; `session.rs` turns a
//! [`StatementResult`] list into DONE or DONEINPROC tokens. Sessions are registered here so that
//! `@@SPID`, DROP DATABASE's in-use check (and later sysprocesses/KILL) see every connection.

mod admin;
pub mod catalog;
pub mod errors;
pub mod eval;
mod modify;
pub mod query;
pub mod state;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use self::eval::Params;
use self::query::{RowSet, run_select};
use self::state::{InstanceState, StateStore};
use super::clock::Timestamp;
use super::error::Result;
use super::sql::ast::{ExecArg, Statement};
use super::sql::lexer::{LexError, TokenKind, tokenize};
use super::sql::parser::{ParseError, parse_batch};
use super::statement_log::StatementLog;
use super::tokens::{EnvChange, ServerMessage, curcmd};
use super::types::Value;

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
    sa_password: String,
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
    /// Loads (or creates) the instance in `data_dir`.
    pub fn open(data_dir: &Path, server_name: Option<&str>, sa_password: &str) -> Result<Self> {
        let store = StateStore::open(data_dir)?;
        let state = store.load_or_init(server_name)?;
        let log = StatementLog::open(data_dir)?;
        Ok(Engine {
            state: Mutex::new(state),
            store,
            log,
            sessions: Mutex::new(BTreeMap::new()),
            sa_password: sa_password.to_string(),
        })
    }

    /// `@@SERVERNAME`.
    pub fn server_name(&self) -> String {
        lock(&self.state).server_name.clone()
    }

    /// Product version (major, minor, build).
    pub fn version(&self) -> (u8, u8, u16) {
        lock(&self.state).version_triplet()
    }

    /// Checks SQL authentication: the only login is `sa` (case-insensitive, like SQL Server's
    /// default collation) with the configured password (case-sensitive).
    pub fn check_login(&self, user: &str, password: &str) -> bool {
        user.eq_ignore_ascii_case("sa") && password == self.sa_password
    }

    /// Registers a logged-in connection. The initial database must exist and be usable; otherwise
    /// the login fails with 4060 (the caller then sends 18456).
    pub fn open_session(
        &self,
        login: &str,
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
    }

    /// Publishes a session's current database and transaction count to the registry.
    fn sync_session(&self, session: &SessionInfo) {
        if let Some(e) = lock(&self.sessions).get_mut(&session.spid) {
            e.info = session.clone();
        }
    }

    /// Runs a batch (or the statement text of an RPC when `kind` is `rpc`).
    pub fn execute_batch(
        &self,
        session: &mut SessionInfo,
        text: &str,
        params: &Params,
        kind: &str,
    ) -> Vec<StatementResult> {
        let out = self.run_text(session, text, params, kind, 0);
        self.sync_session(session);
        out
    }

    fn run_text(
        &self,
        session: &mut SessionInfo,
        text: &str,
        params: &Params,
        kind: &str,
        depth: u32,
    ) -> Vec<StatementResult> {
        let parsed = match parse_batch(text) {
            Ok(p) => p,
            Err(e) => {
                self.log.record(session.spid, &session.database, kind, text);
                return vec![StatementResult::failed(parse_error_message(&e))];
            }
        };
        let mut out = Vec::new();
        for p in parsed {
            let stmt_text = text.get(p.start..p.end).unwrap_or(text);
            self.log
                .record(session.spid, &session.database, kind, stmt_text);
            let line = line_of(text, p.start);
            let results = self.execute_statement(&p.stmt, session, params, depth);
            // Later statements (DROP DATABASE's in-use check) must see this one's USE.
            self.sync_session(session);
            let mut stop = false;
            for mut r in results {
                for item in &mut r.items {
                    if let ResultItem::Message(m) = item
                        && m.is_error()
                        && depth == 0
                    {
                        m.line = line;
                    }
                }
                stop |= r.error && r.aborts_batch;
                out.push(r);
            }
            if stop {
                break;
            }
        }
        out
    }

    fn execute_statement(
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
                // Snapshot sessions before locking the state: the two locks are never nested.
                let sessions = self.session_snapshot();
                let st = lock(&self.state);
                let ctx = EvalCtx {
                    state: &st,
                    session,
                    params,
                    sessions: &sessions,
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
                vec![self.alter_database(name, action, session)]
            }
            Statement::Commit => vec![self.commit_tran(session)],
            Statement::Rollback => vec![self.rollback_tran(session)],
            Statement::ExecString(e) => {
                let text = {
                    let st = lock(&self.state);
                    let ctx = EvalCtx {
                        state: &st,
                        session,
                        params,
                        sessions: &[],
                    };
                    eval::eval(e, &ctx, &eval::Scope::default())
                        .map(|v| v.to_text().unwrap_or_default())
                };
                match text {
                    Ok(t) if depth < 8 => {
                        self.run_text(session, &t, &Params::new(), "dynamic", depth + 1)
                    }
                    Ok(_) => vec![StatementResult::failed(ServerMessage::new(
                        217,
                        1,
                        16,
                        "Maximum stored procedure, function, trigger, or view nesting level exceeded (limit 32).",
                    ))],
                    Err(m) => vec![StatementResult::failed(m)],
                }
            }
            Statement::Exec {
                procedure, args, ..
            } => {
                if procedure.object().eq_ignore_ascii_case("sp_executesql") && depth < 8 {
                    let values = {
                        let st = lock(&self.state);
                        let ctx = EvalCtx {
                            state: &st,
                            session,
                            params,
                            sessions: &[],
                        };
                        args.iter()
                            .map(|a: &ExecArg| {
                                let v = match &a.value {
                                    Some(e) => eval::eval(e, &ctx, &eval::Scope::default())?,
                                    None => Value::Null,
                                };
                                Ok((a.name.clone(), v))
                            })
                            .collect::<std::result::Result<Vec<_>, ServerMessage>>()
                    };
                    return match values {
                        Ok(v) => self.sp_executesql_nested(session, v, depth + 1),
                        Err(m) => vec![StatementResult::failed(m)],
                    };
                }
                vec![StatementResult::failed(errors::procedure_not_found(
                    &procedure.display(),
                ))]
            }
        }
    }

    /// Runs `sp_executesql` from an RPC: the first value is the statement, the second the
    /// parameter declarations, the rest the values (named, or positional in declaration order).
    pub fn sp_executesql(
        &self,
        session: &mut SessionInfo,
        values: Vec<(Option<String>, Value)>,
    ) -> Vec<StatementResult> {
        let out = self.sp_executesql_nested(session, values, 0);
        self.sync_session(session);
        out
    }

    fn sp_executesql_nested(
        &self,
        session: &mut SessionInfo,
        values: Vec<(Option<String>, Value)>,
        depth: u32,
    ) -> Vec<StatementResult> {
        let mut it = values.into_iter();
        let Some((_, stmt)) = it.next() else {
            return vec![StatementResult::failed(ServerMessage::new(
                201,
                4,
                16,
                "Procedure or function 'sp_executesql' expects parameter '@statement', which was not supplied.",
            ))];
        };
        let stmt = stmt.to_text().unwrap_or_default();
        let decl = it.next().and_then(|(_, v)| v.to_text()).unwrap_or_default();
        let declared = declared_params(&decl);
        let mut params = Params::new();
        let mut positional = 0;
        for (name, value) in it {
            match name.filter(|n| !n.is_empty()) {
                Some(n) => {
                    let key = if n.starts_with('@') {
                        n.to_lowercase()
                    } else {
                        format!("@{}", n.to_lowercase())
                    };
                    params.insert(key, value);
                }
                None => {
                    if let Some(n) = declared.get(positional) {
                        params.insert(n.clone(), value);
                    }
                    positional += 1;
                }
            }
        }
        if let Some(missing) = declared.iter().find(|d| !params.contains_key(*d)) {
            return vec![StatementResult::failed(ServerMessage::new(
                8178,
                1,
                16,
                format!(
                    "The parameterized query '({decl}){stmt}' expects the parameter '{missing}', which was not supplied."
                ),
            ))];
        }
        self.run_text(session, &stmt, &params, "rpc", depth)
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

    /// BEGIN TRANSACTION (SQL or Transaction Manager request). Transactions are acknowledged and
    /// counted but not isolated or undone: sqlsim applies every change immediately.
    pub fn begin_tran(&self, session: &mut SessionInfo) -> StatementResult {
        session.tran_count += 1;
        let mut r = StatementResult::done();
        if session.tran_count == 1 {
            session.tran_serial += 1;
            session.tran_descriptor = ((session.spid as u64) << 32) | session.tran_serial as u64;
            r.items.push(ResultItem::Env(EnvChange::BeginTransaction(
                session.tran_descriptor,
            )));
        }
        self.sync_session(session);
        r
    }

    /// COMMIT.
    pub fn commit_tran(&self, session: &mut SessionInfo) -> StatementResult {
        if session.tran_count == 0 {
            return StatementResult::failed(errors::no_transaction(true));
        }
        session.tran_count -= 1;
        let mut r = StatementResult::done();
        if session.tran_count == 0 {
            r.items.push(ResultItem::Env(EnvChange::CommitTransaction(
                session.tran_descriptor,
            )));
            session.tran_descriptor = 0;
        }
        self.sync_session(session);
        r
    }

    /// ROLLBACK (always to the outermost transaction, as in SQL Server).
    pub fn rollback_tran(&self, session: &mut SessionInfo) -> StatementResult {
        if session.tran_count == 0 {
            return StatementResult::failed(errors::no_transaction(false));
        }
        session.tran_count = 0;
        let r = StatementResult {
            items: vec![ResultItem::Env(EnvChange::RollbackTransaction(
                session.tran_descriptor,
            ))],
            ..StatementResult::done()
        };
        session.tran_descriptor = 0;
        self.sync_session(session);
        r
    }

    /// Copies of all registered sessions, ordered by SPID.
    fn session_snapshot(&self) -> Vec<SessionInfo> {
        lock(&self.sessions)
            .values()
            .map(|e| e.info.clone())
            .collect()
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

/// Parameter names declared in an sp_executesql `@params` string, lower-cased, in order.
fn declared_params(decl: &str) -> Vec<String> {
    let Ok(toks) = tokenize(decl) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut expect_name = true;
    for t in toks {
        match &t.kind {
            TokenKind::Symbol("(") => depth += 1,
            TokenKind::Symbol(")") => depth -= 1,
            TokenKind::Symbol(",") if depth == 0 => expect_name = true,
            TokenKind::Variable(v) if expect_name && depth == 0 => {
                out.push(v.to_lowercase());
                expect_name = false;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_params_in_order() {
        assert_eq!(
            declared_params("@P1 int,@P2 nvarchar(4000), @x decimal(25, 0)"),
            vec!["@p1", "@p2", "@x"]
        );
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
