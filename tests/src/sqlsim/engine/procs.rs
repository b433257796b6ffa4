//! Stored procedures sqlsim knows besides sp_executesql: the two file-check extended procedures
//! of pchat-dr.md §6.10 (`xp_fileexist`, `xp_dirtree`), and the sim-only `sqlsim.*` procedures
//! (`sqlsim.fault`, `sqlsim.mirror`, `sqlsim.service`, `sqlsim.agent_access`, `sqlsim.engine_access`,
//! `sqlsim.system_task`, `sqlsim.parallel`). The latter exist only for the sim
//! administrator login (`--admin-login`): for anyone else, `sa` included, they are error 2812
//! "Could not find stored procedure", exactly what a real SQL Server answers, so the agent can
//! never reach them. Called as EXEC in a batch or as an RPC by name.

use super::files::{dir_tree, file_exist, is_proc};
use super::query::RowSet;
use super::{Engine, ProcArg, SessionInfo, StatementResult, errors, lock};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::sql::ast::ObjectName;
use crate::sqlsim::tokens::{Column, ServerMessage};
use crate::sqlsim::types::{SqlType, Value};

fn sim_error(text: impl Into<String>) -> ServerMessage {
    ServerMessage::new(50000, 1, 16, text)
}

impl Engine {
    /// Runs a procedure by name with evaluated arguments (names are ignored: positional).
    pub(super) async fn call_procedure(
        &self,
        procedure: &ObjectName,
        args: Vec<ProcArg>,
        session: &SessionInfo,
    ) -> StatementResult {
        if let Some(r) = self.msdb_procedure(procedure, &args, session) {
            return r;
        }
        let values: Vec<Value> = args.into_iter().map(|a| a.value).collect();
        let text = |i: usize| values.get(i).and_then(Value::to_text);
        let int = |i: usize, default: i64| values.get(i).and_then(Value::as_i64).unwrap_or(default);
        if is_proc(procedure, "xp_fileexist") {
            return match text(0) {
                Some(p) => StatementResult::rows(file_exist(&self.options.paths, &p)),
                None => StatementResult::failed(errors::syntax_near("xp_fileexist")),
            };
        }
        if is_proc(procedure, "xp_dirtree") {
            return match text(0) {
                Some(p) => StatementResult::rows(dir_tree(
                    &self.options.paths,
                    &p,
                    int(1, 0),
                    int(2, 0) != 0,
                )),
                None => StatementResult::failed(errors::syntax_near("xp_dirtree")),
            };
        }
        let sim_schema = procedure
            .schema()
            .is_some_and(|s| s.eq_ignore_ascii_case("sqlsim"));
        if sim_schema && session.is_admin {
            let result = match procedure.object().to_ascii_lowercase().as_str() {
                "fault" => self.fault_proc(text(0)),
                "mirror" => self.start_mirroring(&values),
                "service" => self.service_proc(&values),
                "agent_access" => self.agent_access_proc(&values),
                "engine_access" => self.engine_access_proc(&values),
                "system_task" => self.system_task_proc(&values),
                "parallel" => self.parallel_proc(&values),
                _ => Err(errors::procedure_not_found(&procedure.display())),
            };
            return result.unwrap_or_else(StatementResult::failed);
        }
        StatementResult::failed(errors::procedure_not_found(&procedure.display()))
    }

    /// `EXEC sqlsim.fault N'spec'` arms a fault; without an argument, lists the armed ones.
    fn fault_proc(&self, spec: Option<String>) -> Result<StatementResult, ServerMessage> {
        let mut faults = lock(&self.faults);
        if let Some(spec) = spec {
            faults
                .apply(&spec)
                .map_err(|e| sim_error(format!("sqlsim.fault: {e}")))?;
            tracing::info!(spec, "fault armed");
        }
        Ok(StatementResult::rows(RowSet {
            columns: vec![Column::new("fault", SqlType::NVarChar(Some(200)))],
            rows: faults
                .describe()
                .into_iter()
                .map(|f| vec![Value::Str(f)])
                .collect(),
        }))
    }

    /// `EXEC sqlsim.service N'SQL Server Agent', N'Stopped' [, N'Manual' [, N'account']]`:
    /// changes a service row of sys.dm_server_services (matched by name prefix).
    fn service_proc(&self, args: &[Value]) -> Result<StatementResult, ServerMessage> {
        let arg = |i: usize| args.get(i).and_then(Value::to_text);
        let (Some(name), Some(status)) = (arg(0), arg(1)) else {
            return Err(sim_error(
                "usage: EXEC sqlsim.service name, status [, startup_type [, account]]",
            ));
        };
        let mut st = lock(&self.state);
        let lower = name.to_lowercase();
        // The longest matching name wins, so "SQL Server" does not hit "SQL Server Agent".
        let svc = st
            .services
            .iter_mut()
            .filter(|s| s.servicename.to_lowercase().starts_with(&lower))
            .min_by_key(|s| s.servicename.len())
            .ok_or_else(|| sim_error(format!("sqlsim.service: no service '{name}'")))?;
        if !svc.status_desc.eq_ignore_ascii_case("Running")
            && status.eq_ignore_ascii_case("Running")
        {
            svc.last_startup_time = Timestamp::now();
        }
        svc.status_desc = status;
        if let Some(t) = arg(2) {
            svc.startup_type_desc = t;
        }
        if let Some(a) = arg(3) {
            svc.service_account = a;
        }
        self.persist(&st)?;
        Ok(StatementResult::done())
    }
}
