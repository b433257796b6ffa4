//! FB-6: make the primary data center's chat servers the active servers (pchat-dr.md §3 step 6,
//! §5.2), behind a latency gate.
//!
//! - Candidates: the pool's `chat_servers` of its primary data center (the reference's rule:
//!   same data center as the new primary, or low latency to it; data-center membership comes
//!   from the topology, DESIGN §2).
//! - Latency gate: from each candidate's own agent (agent id = server FQDN), `tcp_latency` to the
//!   primary SQL endpoint (`host,port` → that port; `host` or `host\INSTANCE` → 1433: write named
//!   instances as `host,port` in the topology for an exact measurement); a median above
//!   `latency_limit` refuses the server. Decisions: a candidate with an agent that is not
//!   connected is refused (its latency cannot be proven); a candidate without any agent is
//!   accepted on the same-data-center rule alone, and the output says it was not measured.
//!   No candidate left → the pool's run aborts.
//! - Probe: done when the active list is non-empty and holds only primary-DC servers.
//! - Action: `Set-CsPersistentChatActiveServer -Identity <id> -ActiveServers @{Replace=…} -Force`
//!   (op `replace-active`).
//! - Verify: the active list equals the accepted servers.
//!
//! Errors: latency reads and shell calls are asked again while the agent is unreachable; a
//! retryable cmdlet failure → new attempt (3 in all); a list that differs at verify → retried;
//! no acceptable server or a refused cmdlet → abort the pool's run.

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::AgentId;
use failback_proto::pb;
use serde_json::{Value, json};

use super::{expect_output, op, pool_servers, same_servers, shell_agents, sql};
use crate::config::RunbookConfig;
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FB-6.
pub struct ActivateServers;

/// The TCP endpoint of a SQL instance string (`host,port`, `host\INSTANCE`, `host`).
pub fn sql_endpoint(instance: &str) -> String {
    let instance = instance.trim().trim_start_matches("tcp:");
    if let Some((host, port)) = instance.split_once(',') {
        return format!("{}:{}", host.trim(), port.trim());
    }
    let host = instance.split('\\').next().unwrap_or(instance);
    format!("{host}:1433")
}

fn candidates(pool: &Pool) -> Vec<String> {
    pool.chat_servers
        .get(&pool.primary_dc)
        .cloned()
        .unwrap_or_default()
}

#[async_trait]
impl Step for ActivateServers {
    fn name(&self) -> &'static str {
        "fb6_activate"
    }

    fn title(&self) -> &'static str {
        "FB-6 latency gate, then make the primary data center's chat servers active"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let mut ops = Vec::new();
        let endpoint = pool
            .sql
            .get(&SqlRole::Primary)
            .map(|p| sql_endpoint(&p.instance))
            .unwrap_or_default();
        for c in candidates(pool) {
            if let Ok(agent) = AgentId::new(c.clone()) {
                ops.push(PlannedOp::new(
                    &agent,
                    "tcp_latency",
                    format!("connect time to {endpoint} (if this server runs an agent)"),
                ));
            }
        }
        if let Some(shell) = shell_agents(pool, &pool.primary_dc).first() {
            ops.push(PlannedOp::new(
                shell,
                "set_active_servers",
                format!(
                    "Set-CsPersistentChatActiveServer -Identity <identity of {}> -ActiveServers @{{Replace={}}} -Force (servers that pass the gate)",
                    pool.fqdn,
                    candidates(pool).join(",")
                ),
            ));
        }
        ops
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        let shell = ctx.pick_agent(&shell_agents(&ctx.pool, &ctx.pool.primary_dc))?;
        let servers = pool_servers(ctx, &shell).await?;
        let dc = candidates(&ctx.pool);
        let all_primary = servers
            .active_servers
            .iter()
            .all(|a| dc.iter().any(|c| c.eq_ignore_ascii_case(a)));
        if !servers.active_servers.is_empty() && all_primary {
            return Ok(Probe::Done(json!({ "activated": servers.active_servers })));
        }
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let primary = sql(&ctx.pool, SqlRole::Primary)?;
        let endpoint = sql_endpoint(&primary.instance);
        let limit_us = u64::try_from(ctx.config.latency_limit.as_micros()).unwrap_or(u64::MAX);
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        let mut unmeasured = Vec::new();
        let mut measured = Vec::new();
        for c in candidates(&ctx.pool) {
            let agent = AgentId::new(c.clone())
                .ok()
                .filter(|a| ctx.pool_has_agent(a));
            let Some(agent) = agent else {
                unmeasured.push(c);
                continue;
            };
            if !ctx.is_connected(&agent) {
                refused.push(
                    json!({ "server": c, "reason": "its agent is not connected: latency unknown" }),
                );
                continue;
            }
            let out = ctx
                .read(
                    &agent,
                    op(pb::operation::Kind::TcpLatency(pb::TcpLatency {
                        endpoint: endpoint.clone(),
                        samples: 5,
                    })),
                )
                .await;
            match out.and_then(|o| expect_output!(o, Latency, "tcp_latency")) {
                Ok(l) if u64::from(l.median_us) <= limit_us => {
                    measured.push(json!({ "server": c, "median_us": l.median_us }));
                    accepted.push(c);
                }
                Ok(l) => refused.push(json!({ "server": c, "median_us": l.median_us, "reason": format!("above the limit of {limit_us} µs") })),
                Err(e) => refused.push(json!({ "server": c, "reason": e.message })),
            }
        }
        accepted.extend(unmeasured.iter().cloned());
        if accepted.is_empty() {
            return Err(StepError::fatal(format!(
                "no chat server of {} passes the latency gate to {endpoint}: {}",
                ctx.pool.primary_dc,
                Value::from(refused.clone())
            )));
        }
        let shell = ctx.pick_agent(&shell_agents(&ctx.pool, &ctx.pool.primary_dc))?;
        ctx.act(
            &shell,
            "replace-active",
            op(pb::operation::Kind::SetActiveServers(
                pb::SetActiveServers {
                    pool_fqdn: ctx.pool.fqdn.clone(),
                    change: pb::ActiveServersChange::Replace as i32,
                    servers: accepted.clone(),
                },
            )),
            ctx.config.step_timeout,
        )
        .await?;
        Ok(json!({
            "endpoint": endpoint,
            "activated": accepted,
            "measured": measured,
            "refused": refused,
            "not_measured": unmeasured,
        }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let shell = ctx.pick_agent(&shell_agents(&ctx.pool, &ctx.pool.primary_dc))?;
        let servers = pool_servers(ctx, &shell).await?;
        let want: Vec<String> = output
            .get("activated")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if !same_servers(&servers.active_servers, &want) {
            return Err(StepError::retry(format!(
                "active servers read back as [{}], expected [{}]",
                servers.active_servers.join(", "),
                want.join(", ")
            )));
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(sql_endpoint("127.0.0.1,14330"), "127.0.0.1:14330");
        assert_eq!(sql_endpoint(r"sql01.dc1\PCHAT"), "sql01.dc1:1433");
        assert_eq!(sql_endpoint("sql01"), "sql01:1433");
    }
}
