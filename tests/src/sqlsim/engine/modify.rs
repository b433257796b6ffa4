//! Statements that change the instance: CREATE DATABASE, DROP DATABASE and INSERT into
//! `dbo.Messages`. Each validates first, then mutates the state under its lock and persists it
//! before answering, so an acknowledged change survives a crash of the process.

use super::eval::{Params, Scope, eval};
use super::query::{messages_columns, messages_database};
use super::state::{ChatMessage, Database};
use super::{Engine, EvalCtx, SessionInfo, StatementResult, errors, lock};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::sql::ast::Insert;
use crate::sqlsim::tokens::{ServerMessage, curcmd};
use crate::sqlsim::types::Value;

type MResult = Result<StatementResult, ServerMessage>;

impl Engine {
    /// CREATE DATABASE with default files in the instance's default paths.
    pub(super) fn create_database(&self, name: &str) -> MResult {
        let mut st = lock(&self.state);
        if st.database(name).is_some() {
            return Err(errors::database_exists(name));
        }
        let id = st.next_database_id;
        let db = Database::new(
            name,
            id,
            &st.default_data_path.clone(),
            &st.default_log_path.clone(),
            false,
        );
        st.databases.push(db);
        st.next_database_id += 1;
        self.persist(&st)?;
        Ok(StatementResult::done())
    }

    /// DROP DATABASE of one or more databases, in order; stops at the first failure.
    pub(super) fn drop_databases(&self, names: &[String], if_exists: bool) -> MResult {
        let in_use = self.databases_in_use();
        let mut st = lock(&self.state);
        for name in names {
            let Some(db) = st.database(name) else {
                if if_exists {
                    continue;
                }
                return Err(errors::cannot_drop_missing(name));
            };
            if db.is_system {
                return Err(errors::cannot_drop_system(&db.name));
            }
            if in_use.contains(&db.name.to_lowercase()) {
                return Err(errors::database_in_use_drop(&db.name));
            }
            let id = db.database_id;
            st.databases.retain(|d| d.database_id != id);
            self.persist(&st)?;
        }
        Ok(StatementResult::done())
    }

    /// INSERT … VALUES into `dbo.Messages`. `id` is an IDENTITY column; `posted_at` defaults to
    /// SYSUTCDATETIME(); the other columns are NOT NULL.
    pub(super) fn insert(&self, ins: &Insert, session: &SessionInfo, params: &Params) -> MResult {
        let mut st = lock(&self.state);
        let target = messages_database(&ins.table, &st, &session.database)?;
        if target.is_read_only {
            return Err(errors::read_only(&target.name));
        }
        let db_name = target.name.clone();
        let table_cols = messages_columns();
        let targets: Vec<String> = match &ins.columns {
            Some(cols) => cols.clone(),
            None => vec![
                "room".into(),
                "author".into(),
                "body".into(),
                "posted_at".into(),
            ],
        };
        let mut target_idx = Vec::new();
        for c in &targets {
            let idx = table_cols
                .iter()
                .position(|t| t.name.eq_ignore_ascii_case(c))
                .ok_or_else(|| errors::invalid_column(c))?;
            if idx == 0 {
                return Err(errors::identity_insert("Messages"));
            }
            target_idx.push(idx);
        }
        let full_name = format!("{db_name}.dbo.Messages");
        let mut new_rows = Vec::new();
        {
            let ctx = EvalCtx {
                state: &st,
                session,
                params,
                sessions: &[],
                requests: &[],
            };
            for row in &ins.rows {
                if row.len() != targets.len() {
                    return Err(match ins.columns {
                        Some(_) => errors::insert_values_mismatch(targets.len() > row.len()),
                        None => errors::insert_column_count(),
                    });
                }
                let mut vals = vec![Value::Null; table_cols.len()];
                for (expr, idx) in row.iter().zip(&target_idx) {
                    vals[*idx] = eval(expr, &ctx, &Scope::default())?;
                }
                let text = |i: usize| -> Result<String, ServerMessage> {
                    vals[i]
                        .to_text()
                        .ok_or_else(|| errors::null_not_allowed(&table_cols[i].name, &full_name))
                };
                let posted_at = match &vals[4] {
                    Value::Null if !target_idx.contains(&4) => Timestamp::now(),
                    Value::Null => return Err(errors::null_not_allowed("posted_at", &full_name)),
                    Value::DateTime(t) => *t,
                    Value::Str(s) => Timestamp::parse(s).ok_or_else(errors::datetime_conversion)?,
                    _ => return Err(errors::datetime_conversion()),
                };
                new_rows.push((text(1)?, text(2)?, text(3)?, posted_at));
            }
        }
        let count = new_rows.len() as u64;
        let db = st
            .database_mut(&db_name)
            .ok_or_else(|| errors::invalid_object(&ins.table.display()))?;
        for (room, author, body, posted_at) in new_rows {
            let id = db.next_message_id;
            db.next_message_id += 1;
            // Every logged change takes the next LSN and advances the end of the log.
            let lsn = db.last_lsn;
            db.last_lsn += 1;
            db.messages.push(ChatMessage {
                id,
                room,
                author,
                body,
                posted_at,
                lsn,
            });
        }
        self.persist(&st)?;
        Ok(StatementResult {
            count: Some(count),
            curcmd: curcmd::INSERT,
            ..StatementResult::done()
        })
    }
}
