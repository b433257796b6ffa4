//! EXEC in its three shapes: `EXEC (N'…')` (dynamic SQL), `EXEC sp_executesql N'…', N'@p …', …`
//! (nested or from an RPC) and `EXEC procedure args` for the procedures sqlsim knows (`procs.rs`).
//! sp_executesql binds its values by name, or by position in declaration order as pytds sends
//! them, and fails with 8178 when a declared parameter is missing, like SQL Server.

use super::eval::{self, Params, Scope};
use super::{Engine, EvalCtx, ProcArg, SessionInfo, StatementResult, lock};
use crate::sqlsim::sql::ast::{ExecArg, Expr, ObjectName};
use crate::sqlsim::sql::lexer::{TokenKind, tokenize};
use crate::sqlsim::tokens::ServerMessage;
use crate::sqlsim::types::Value;

/// Nesting limit for dynamic SQL (SQL Server allows 32 levels; sqlsim needs far fewer).
const MAX_DEPTH: u32 = 8;

fn too_deep() -> StatementResult {
    StatementResult::failed(ServerMessage::new(
        217,
        1,
        16,
        "Maximum stored procedure, function, trigger, or view nesting level exceeded (limit 32).",
    ))
}

impl Engine {
    /// Evaluates an expression that needs no table (a literal, a variable, a function).
    pub(super) fn eval_scalar(
        &self,
        e: &Expr,
        session: &SessionInfo,
        params: &Params,
    ) -> Result<Value, ServerMessage> {
        let st = lock(&self.state);
        let ctx = EvalCtx {
            state: &st,
            session,
            params,
            sessions: &[],
            requests: &[],
        };
        eval::eval(e, &ctx, &Scope::default())
    }

    /// `EXEC (string)`.
    pub(super) async fn exec_string(
        &self,
        e: &Expr,
        session: &mut SessionInfo,
        params: &Params,
        depth: u32,
    ) -> Vec<StatementResult> {
        match self.eval_scalar(e, session, params) {
            Ok(v) if depth < MAX_DEPTH => {
                let text = v.to_text().unwrap_or_default();
                self.run_text(session, &text, &Params::new(), "dynamic", depth + 1)
                    .await
            }
            Ok(_) => vec![too_deep()],
            Err(m) => vec![StatementResult::failed(m)],
        }
    }

    /// `EXEC procedure args`.
    pub(super) async fn exec_procedure(
        &self,
        procedure: &ObjectName,
        args: &[ExecArg],
        session: &mut SessionInfo,
        params: &Params,
        depth: u32,
    ) -> Vec<StatementResult> {
        let values = args
            .iter()
            .map(|a| {
                let v = match &a.value {
                    Some(e) => self.eval_scalar(e, session, params)?,
                    None => Value::Null,
                };
                Ok(ProcArg {
                    name: a.name.clone(),
                    value: v,
                    output: a.output,
                })
            })
            .collect::<Result<Vec<_>, ServerMessage>>();
        let values = match values {
            Ok(v) => v,
            Err(m) => return vec![StatementResult::failed(m)],
        };
        if procedure.object().eq_ignore_ascii_case("sp_executesql") {
            if depth >= MAX_DEPTH {
                return vec![too_deep()];
            }
            let values = values.into_iter().map(|a| (a.name, a.value)).collect();
            return self.sp_executesql_nested(session, values, depth + 1).await;
        }
        vec![self.call_procedure(procedure, values, session).await]
    }

    /// Runs `sp_executesql` from an RPC: the first value is the statement, the second the
    /// parameter declarations, the rest the values (named, or positional in declaration order).
    pub async fn sp_executesql(
        &self,
        session: &mut SessionInfo,
        values: Vec<(Option<String>, Value)>,
    ) -> Vec<StatementResult> {
        let out = self.sp_executesql_nested(session, values, 0).await;
        self.requests.finish(session.spid);
        self.sync_session(session);
        out
    }

    /// Runs a procedure other than sp_executesql sent as an RPC by name (xp_fileexist, …).
    pub async fn rpc_procedure(
        &self,
        session: &mut SessionInfo,
        name: &str,
        values: Vec<ProcArg>,
    ) -> StatementResult {
        let procedure = ObjectName {
            parts: name
                .split('.')
                .map(|p| p.trim_matches(['[', ']']).to_string())
                .collect(),
        };
        self.log
            .record(session.spid, &session.database, "rpc", name);
        self.requests
            .start(session.spid, "EXECUTE", &session.database);
        let out = self.call_procedure(&procedure, values, session).await;
        self.requests.finish(session.spid);
        out
    }

    async fn sp_executesql_nested(
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
        self.run_text(session, &stmt, &params, "rpc", depth).await
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
}
