//! Session and database administration: `KILL spid` and `ALTER DATABASE … SET` (user access with
//! ROLLBACK IMMEDIATE / NO_WAIT, ONLINE/OFFLINE, recovery model, PARTNER OFF). Ending a session
//! cancels its connection's token, so the client sees its socket closed, as after a real KILL.
//! Where SQL Server would block (SINGLE_USER without ROLLBACK while others are connected), sqlsim
//! fails at once with 5070 instead.

use super::eval::{Scope, eval};
use super::state::{DbState, RecoveryModel, UserAccess};
use super::{Engine, EvalCtx, ResultItem, SessionInfo, StatementResult, errors, lock};
use crate::sqlsim::sql::ast::{AlterDatabase, Expr, Termination};
use crate::sqlsim::tokens::ServerMessage;

type AResult = Result<StatementResult, ServerMessage>;

/// A failed ALTER DATABASE: the cause, then 5069.
fn alter_error(cause: ServerMessage) -> StatementResult {
    let mut r = StatementResult::failed(cause);
    r.items.push(ResultItem::Message(errors::alter_failed()));
    r
}

impl Engine {
    /// Ends sessions, removing them from the registry at once so views no longer show them.
    pub(super) fn end_sessions(&self, spids: &[u16]) {
        let mut sessions = lock(&self.sessions);
        for spid in spids {
            if let Some(e) = sessions.remove(spid) {
                e.kill.cancel();
            }
        }
    }

    /// Other sessions whose current database is `db`.
    pub(super) fn others_in(&self, db: &str, me: u16) -> Vec<u16> {
        lock(&self.sessions)
            .values()
            .filter(|e| e.info.spid != me && e.info.database.eq_ignore_ascii_case(db))
            .map(|e| e.info.spid)
            .collect()
    }

    /// True when the database is SINGLE_USER and another session is already in it (error 924).
    pub(super) fn single_user_blocked(&self, db: &str, user_access: UserAccess, me: u16) -> bool {
        user_access == UserAccess::SingleUser && !self.others_in(db, me).is_empty()
    }

    /// KILL spid.
    pub(super) fn kill(&self, target: &Expr, session: &SessionInfo) -> AResult {
        let spid = {
            let st = lock(&self.state);
            let ctx = EvalCtx {
                state: &st,
                session,
                params: &Default::default(),
                sessions: &[],
                requests: &[],
            };
            eval(target, &ctx, &Scope::default())?
                .as_i64()
                .ok_or_else(|| errors::syntax_near("KILL"))?
        };
        if spid == session.spid as i64 {
            return Err(errors::kill_self());
        }
        if spid < super::FIRST_USER_SPID as i64 {
            return Err(errors::kill_system());
        }
        let Ok(spid16) = u16::try_from(spid) else {
            return Err(errors::kill_unknown(spid));
        };
        if !lock(&self.sessions).contains_key(&spid16) {
            return Err(errors::kill_unknown(spid));
        }
        tracing::info!(killer = session.spid, victim = spid16, "KILL");
        self.end_sessions(&[spid16]);
        Ok(StatementResult::done())
    }

    /// ALTER DATABASE name SET ….
    pub(super) fn alter_database(
        &self,
        name: &str,
        action: &AlterDatabase,
        session: &SessionInfo,
    ) -> StatementResult {
        match self.try_alter(name, action, session) {
            Ok(r) => r,
            Err(StatementFailure::Alter(m)) => alter_error(m),
            Err(StatementFailure::Plain(m)) => StatementResult::failed(m),
        }
    }

    fn try_alter(
        &self,
        name: &str,
        action: &AlterDatabase,
        session: &SessionInfo,
    ) -> Result<StatementResult, StatementFailure> {
        let (db_name, state, mirrored) = {
            let st = lock(&self.state);
            let db = st
                .database(name)
                .ok_or_else(|| StatementFailure::Alter(errors::cannot_alter(name)))?;
            (db.name.clone(), db.state, db.mirroring.is_some())
        };
        let mut result = StatementResult::done();
        // Options that need other users out of the database.
        let termination = match action {
            AlterDatabase::UserAccess(UserAccess::MultiUser, _) => None,
            AlterDatabase::UserAccess(_, t)
            | AlterDatabase::State(_, t)
            | AlterDatabase::ReadOnly(_, t) => Some(*t),
            _ => None,
        };
        if matches!(
            action,
            AlterDatabase::UserAccess(..)
                | AlterDatabase::State(DbState::Offline, _)
                | AlterDatabase::ReadOnly(..)
        ) && matches!(state, DbState::Restoring | DbState::Recovering)
        {
            return Err(StatementFailure::Alter(errors::cannot_alter(&db_name)));
        }
        if let Some(t) = termination {
            let others = self.others_in(&db_name, session.spid);
            if !others.is_empty() {
                if t != Termination::RollbackImmediate {
                    return Err(StatementFailure::Alter(errors::database_in_use_alter(
                        &db_name,
                    )));
                }
                self.end_sessions(&others);
                result
                    .items
                    .push(ResultItem::Message(errors::rolling_back()));
            }
        }
        // Manual failover disconnects the clients of the former principal's copy.
        if matches!(action, AlterDatabase::PartnerOther(c) if c.eq_ignore_ascii_case("PARTNER FAILOVER"))
        {
            let others = self.others_in(&db_name, session.spid);
            self.end_sessions(&others);
        }
        let mut st = lock(&self.state);
        let me = st.server_name.clone();
        let db = st
            .database_mut(&db_name)
            .ok_or_else(|| StatementFailure::Alter(errors::cannot_alter(&db_name)))?;
        match action {
            AlterDatabase::UserAccess(access, _) => db.user_access = *access,
            AlterDatabase::ReadOnly(read_only, _) => db.is_read_only = *read_only,
            AlterDatabase::State(new_state, _) => {
                if *new_state == DbState::Online
                    && db.state != DbState::Offline
                    && db.state != DbState::Online
                {
                    return Err(StatementFailure::Alter(errors::cannot_alter(&db_name)));
                }
                db.state = *new_state;
            }
            AlterDatabase::Recovery(model) => {
                // SIMPLE truncates the log: the log backup chain is broken until the next full
                // backup.
                if *model == RecoveryModel::Simple {
                    db.log_chain_lsn = None;
                }
                db.recovery_model = *model;
            }
            AlterDatabase::PartnerOff => {
                if !mirrored {
                    return Err(StatementFailure::Plain(errors::not_mirrored(&db_name)));
                }
                // The former mirror copy stays RESTORING; the principal stays ONLINE. Removing
                // the session from the shared registry clears the partner too.
                if let Some(m) = db.mirroring.take() {
                    self.end_mirroring_session(&m.guid)
                        .map_err(StatementFailure::Plain)?;
                }
            }
            AlterDatabase::PartnerOther(clause) => {
                // `SET PARTNER = 'TCP://host:port'` would open a session with a real endpoint;
                // sims have none, so the address is unreachable, as SQL Server reports it.
                if let Some(address) = clause
                    .strip_prefix("PARTNER = '")
                    .and_then(|a| a.strip_suffix('\''))
                {
                    return Err(StatementFailure::Plain(errors::partner_unreachable(
                        address,
                    )));
                }
                if !mirrored {
                    return Err(StatementFailure::Plain(errors::not_mirrored(&db_name)));
                }
                if clause.eq_ignore_ascii_case("PARTNER FAILOVER")
                    && let Some(m) = &db.mirroring
                {
                    let view = self
                        .fail_over_session(&m.guid, &me)
                        .map_err(StatementFailure::Plain)?;
                    db.state = DbState::Restoring;
                    db.mirroring = Some(view);
                }
            }
        }
        self.persist(&st).map_err(StatementFailure::Plain)?;
        Ok(result)
    }
}

/// How an ALTER DATABASE failure is reported: with the trailing 5069, or on its own.
enum StatementFailure {
    Alter(ServerMessage),
    Plain(ServerMessage),
}
