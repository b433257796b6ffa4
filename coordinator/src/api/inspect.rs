//! `Control.Inspect`: a read-only view of what one agent manages, built only from its typed read
//! operations — never a change. What to read follows the agent's announced capabilities and its
//! topology roles: a SQL agent reports its instance, the pool databases it holds (state,
//! mirroring, sessions); a Lync shell agent reports each of its pools' state and servers.
//!
//! Every item is gathered even when an earlier one failed, because an operator looking at a
//! broken host needs every fact that can still be had; a failed item carries its error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failback_proto::model::{AgentId, Epoch, OpId};
use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;

use crate::error::Error;
use crate::registry::Registry;
use crate::topology::Topology;

/// How long each read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The databases the topology gives `agent` through its SQL roles (mgc first), or the Persistent
/// Chat defaults when it has none.
fn databases_of(topology: &Topology, agent: &AgentId) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for pool in &topology.pools {
        if pool.sql.values().any(|i| &i.agent == agent) {
            for d in &pool.databases {
                if !out.iter().any(|x| x == d.as_str()) {
                    out.push(d.to_string());
                }
            }
        }
    }
    if out.is_empty() {
        out = vec!["mgc".into(), "mgccomp".into()];
    }
    out
}

/// Gathers the view.
pub async fn inspect(
    registry: &Registry,
    topology: &Topology,
    epoch: Epoch,
    caller: &str,
    agent: &AgentId,
) -> Result<pb::InspectResponse, Error> {
    let agents = registry.list();
    let known: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    let info = agents
        .into_iter()
        .find(|a| a.id == agent.as_str())
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "agent '{agent}' is not in the topology; its agents are: {}",
                known.join(", ")
            ))
        })?;
    if !info.connected {
        return Err(Error::AgentUnavailable(format!(
            "agent '{agent}' is not connected"
        )));
    }
    let has = |c: &str| info.capabilities.iter().any(|x| x == c);
    let mut plan: Vec<(String, K)> = Vec::new();
    if has("sql") {
        let dbs = databases_of(topology, agent);
        plan.push((String::new(), K::DescribeInstance(pb::DescribeInstance {})));
        plan.push((
            dbs.join(","),
            K::DatabaseState(pb::DatabaseState {
                databases: dbs.clone(),
            }),
        ));
        plan.push((
            dbs.join(","),
            K::MirroringState(pb::MirroringState {
                databases: dbs.clone(),
            }),
        ));
        for d in &dbs {
            plan.push((
                d.clone(),
                K::ListSessions(pb::ListSessions {
                    database: d.clone(),
                }),
            ));
        }
        // Log shipping carries mgc only (pchat-dr.md §4.4: mgccomp is not shipped).
        plan.push((
            "mgc".into(),
            K::LogShippingStatus(pb::LogShippingStatus {
                database: "mgc".into(),
            }),
        ));
    }
    if has("lync") {
        for pool in topology
            .pools
            .iter()
            .filter(|p| p.lync_shell.values().flatten().any(|a| a == agent))
        {
            plan.push((
                pool.fqdn.clone(),
                K::PoolState(pb::PoolState {
                    pool_fqdn: pool.fqdn.clone(),
                }),
            ));
            plan.push((
                pool.fqdn.clone(),
                K::PoolServers(pb::PoolServers {
                    pool_fqdn: pool.fqdn.clone(),
                }),
            ));
        }
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut items = Vec::new();
    for (i, (target, kind)) in plan.into_iter().enumerate() {
        let op = pb::Operation { kind: Some(kind) };
        let name = crate::runbook::operation_name(&op);
        let op_id = OpId::new(format!("inspect/{agent}/{caller}/{stamp}-{n}/{i}-{name}"))
            .map_err(Error::Internal)?;
        let result = match registry
            .instruct(agent, &op_id, epoch, op, READ_TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(e) => pb::OperationResult {
                op_id: op_id.to_string(),
                outcome: Some(pb::operation_result::Outcome::Error(pb::OperationError {
                    kind: pb::ErrorKind::Backend.into(),
                    retryable: e.is_retryable(),
                    message: e.to_string(),
                    sql_error: 0,
                })),
                replayed: false,
            },
        };
        items.push(pb::InspectItem {
            operation: name.to_string(),
            target,
            result: Some(result),
        });
    }
    Ok(pb::InspectResponse {
        agent_id: agent.to_string(),
        datacenter: info.datacenter,
        roles: info.roles,
        capabilities: info.capabilities,
        items,
    })
}
