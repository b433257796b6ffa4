//! Transactions: `BEGIN TRAN`, `COMMIT`, `ROLLBACK` (from SQL or Transaction Manager requests).
//! They are counted and reported with ENVCHANGE tokens, but sqlsim applies every change at once
//! and never undoes one: the runbooks never rely on a rollback.

use super::{Engine, ResultItem, SessionInfo, StatementResult, errors};
use crate::sqlsim::tokens::EnvChange;

impl Engine {
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
}
