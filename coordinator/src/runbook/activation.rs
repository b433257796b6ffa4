//! Activating a data center's chat servers behind a latency gate: the shared body of FB-6
//! (primary data center, after failback) and FO-7 (backup data center, after failover). Both
//! follow the reference's rule (pchat-dr.md §2 step 7, §3 step 6): the active servers must be in
//! the same data center as the database they will use, or have a low-latency link to it.
//!
//! - Candidates: the pool's `chat_servers` of the target data center (membership comes from the
//!   topology, DESIGN §2).
//! - Gate: from each candidate's own agent (agent id = server FQDN), `tcp_latency` to the target
//!   SQL instance's endpoint ([`sql_endpoint`]); a median above `latency_limit` refuses the
//!   server. A candidate whose agent is not connected is refused (its latency cannot be proven);
//!   a candidate without any agent is accepted on the same-data-center rule alone and listed as
//!   not measured. No candidate left → fatal.
//! - Probe: done when the active list is non-empty and holds only target-DC servers.
//! - Action: `Set-CsPersistentChatActiveServer -Identity <id> -ActiveServers @{Replace=…}
//!   -Force` (op `replace-active`) through a Lync shell agent of the target data center first.
//! - Verify: the active list equals the accepted servers (retried otherwise).
//!
//! Factored out of FB-6 without changing what it does; the steps keep their own names, titles
//! and doc comments.

use failback_proto::model::AgentId;
use failback_proto::pb;
use serde_json::{Value, json};

use super::failback::{expect_output, op, pool_servers, same_servers, shell_agents, sql};
use super::{PlannedOp, Probe, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// The TCP endpoint of a SQL instance string (`host,port`, `host\INSTANCE`, `host`).
pub fn sql_endpoint(instance: &str) -> String {
    let instance = instance.trim().trim_start_matches("tcp:");
    if let Some((host, port)) = instance.split_once(',') {
        return format!("{}:{}", host.trim(), port.trim());
    }
    let host = instance.split('\\').next().unwrap_or(instance);
    format!("{host}:1433")
}

/// The chat servers of data center `dc`.
pub fn candidates(pool: &Pool, dc: &str) -> Vec<String> {
    pool.chat_servers.get(dc).cloned().unwrap_or_default()
}

/// What activation would send, for `plan`.
pub fn plan(pool: &Pool, dc: &str, role: SqlRole) -> Vec<PlannedOp> {
    let mut ops = Vec::new();
    let endpoint = pool
        .sql
        .get(&role)
        .map(|p| sql_endpoint(&p.instance))
        .unwrap_or_default();
    for c in candidates(pool, dc) {
        if let Ok(agent) = AgentId::new(c.clone()) {
            ops.push(PlannedOp::new(
                &agent,
                "tcp_latency",
                format!("connect time to {endpoint} (if this server runs an agent)"),
            ));
        }
    }
    if let Some(shell) = shell_agents(pool, dc).first() {
        ops.push(PlannedOp::new(
            shell,
            "set_active_servers",
            format!(
                "Set-CsPersistentChatActiveServer -Identity <identity of {}> -ActiveServers @{{Replace={}}} -Force (servers that pass the gate)",
                pool.fqdn,
                candidates(pool, dc).join(",")
            ),
        ));
    }
    ops
}

/// Done when the active list is non-empty and holds only servers of `dc`.
pub async fn probe(ctx: &StepCtx, dc: &str) -> Result<Probe, StepError> {
    let shell = ctx.pick_agent(&shell_agents(&ctx.pool, dc))?;
    let servers = pool_servers(ctx, &shell).await?;
    let wanted = candidates(&ctx.pool, dc);
    let all_in_dc = servers
        .active_servers
        .iter()
        .all(|a| wanted.iter().any(|c| c.eq_ignore_ascii_case(a)));
    if !servers.active_servers.is_empty() && all_in_dc {
        return Ok(Probe::Done(json!({ "activated": servers.active_servers })));
    }
    Ok(Probe::Needed)
}

/// Measures, then replaces the active list with the servers of `dc` that pass the gate to the
/// pool's `role` instance.
pub async fn act(ctx: &StepCtx, dc: &str, role: SqlRole) -> Result<Value, StepError> {
    let target = sql(&ctx.pool, role)?;
    let endpoint = sql_endpoint(&target.instance);
    let limit_us = u64::try_from(ctx.config.latency_limit.as_micros()).unwrap_or(u64::MAX);
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut unmeasured = Vec::new();
    let mut measured = Vec::new();
    for c in candidates(&ctx.pool, dc) {
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
            "no chat server of {dc} passes the latency gate to {endpoint}: {}",
            Value::from(refused.clone())
        )));
    }
    let shell = ctx.pick_agent(&shell_agents(&ctx.pool, dc))?;
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

/// The active list equals the servers `act` activated.
pub async fn verify(ctx: &StepCtx, dc: &str, output: Value) -> Result<Value, StepError> {
    let shell = ctx.pick_agent(&shell_agents(&ctx.pool, dc))?;
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
