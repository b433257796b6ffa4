//! The operators' `Control` API. Every call needs an `operator` or `approver` certificate and is
//! logged with the caller's certificate name. Leader-only calls answered by a non-leader fail with
//! UNAVAILABLE and the leader's endpoint in the `failback-leader` metadata.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failback_proto::identity::{PeerIdentity, Role};
use failback_proto::model::{AgentId, OpId};
use failback_proto::pb;
use tonic::{Request, Response, Status};

use crate::api::auth;
use crate::api::runs::{self, RunCall};
use crate::error::Error;
use crate::leader::LeadershipRef;
use crate::registry::Registry;

/// The service implementation.
pub struct ControlService {
    /// Agent registry.
    pub registry: Registry,
    /// The topology in force.
    pub topology: std::sync::Arc<crate::topology::Topology>,
    /// Who leads.
    pub leadership: LeadershipRef,
    /// Our certificate name.
    pub coordinator_id: String,
    /// Heartbeat interval agents keep.
    pub heartbeat_interval: Duration,
    /// The runbook engine (run calls).
    pub engine: crate::runbook::engine::Engine,
}

const OPERATORS: &[Role] = &[Role::Operator, Role::Approver];

impl ControlService {
    fn caller<T>(&self, request: &Request<T>, call: &str) -> Result<PeerIdentity, Error> {
        let id = auth::require(request, OPERATORS, "the Control API")?;
        tracing::info!(caller = %id.name, call, "control call");
        Ok(id)
    }

    fn leader_only(&self) -> Result<(), Error> {
        let view = self.leadership.view();
        if view.is_leader {
            Ok(())
        } else {
            Err(Error::NotLeader {
                hint: view.leader_endpoint,
            })
        }
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn leader(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        self.caller(&request, "Leader")?;
        let view = self.leadership.view();
        Ok(Response::new(pb::LeaderResponse {
            leader_id: view.leader_id.unwrap_or_default(),
            leader_endpoint: view.leader_endpoint.unwrap_or_default(),
            epoch: view.epoch.0,
            answered_by: self.coordinator_id.clone(),
            answered_by_leader: view.is_leader,
            mode: view.mode.to_string(),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.caller(&request, "ListAgents")?;
        self.leader_only()?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: self.registry.list(),
            heartbeat_interval_ms: u32::try_from(self.heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
        }))
    }

    async fn inspect(
        &self,
        request: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let caller = self.caller(&request, "Inspect")?;
        self.leader_only()?;
        let agent = AgentId::new(request.into_inner().agent_id)
            .map_err(|e| Error::InvalidInput(format!("agent id: {e}")))?;
        let epoch = self.leadership.view().epoch;
        let view =
            super::inspect::inspect(&self.registry, &self.topology, epoch, &caller.name, &agent)
                .await?;
        Ok(Response::new(view))
    }

    async fn ping_agent(
        &self,
        request: Request<pb::PingAgentRequest>,
    ) -> Result<Response<pb::PingAgentResponse>, Status> {
        let caller = self.caller(&request, "PingAgent")?;
        self.leader_only()?;
        let agent = AgentId::new(request.into_inner().agent_id)
            .map_err(|e| Error::InvalidInput(format!("agent id: {e}")))?;
        let epoch = self.leadership.view().epoch;
        let n = PING_SEQ.fetch_add(1, Ordering::Relaxed);
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let op_id = OpId::new(format!("ping/{agent}/{}/{millis}-{n}", caller.name))
            .map_err(Error::Internal)?;
        let start = tokio::time::Instant::now();
        let op = pb::Operation {
            kind: Some(pb::operation::Kind::Ping(pb::Ping {})),
        };
        let result = self
            .registry
            .instruct(&agent, &op_id, epoch, op, PING_TIMEOUT)
            .await?;
        let rtt = start.elapsed();
        match result.outcome {
            Some(pb::operation_result::Outcome::Output(_)) => {
                Ok(Response::new(pb::PingAgentResponse {
                    agent_id: agent.to_string(),
                    round_trip_ms: u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX),
                    epoch: epoch.0,
                }))
            }
            Some(pb::operation_result::Outcome::Error(e)) => Err(Error::Internal(format!(
                "agent '{agent}' answered the ping with {:?}: {}",
                e.kind(),
                e.message
            ))
            .into()),
            None => Err(
                Error::Protocol(failback_proto::model::ProtocolError::Missing("outcome")).into(),
            ),
        }
    }

    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::StartRunResponse>, Status> {
        let who = self.caller(&request, "StartRun")?;
        self.leader_only()?;
        // Body first, then respond: errors map through the one Error → Status mapping.
        let body = runs::start(&self.engine, &who, request.into_inner()).await?;
        Ok(Response::new(body))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunDetail>, Status> {
        let _who = self.caller(&request, "GetRun")?;
        self.leader_only()?;
        // Body first, then respond: errors map through the one Error → Status mapping.
        let body = runs::get(&self.engine, Some(&self.registry), request.into_inner()).await?;
        Ok(Response::new(body))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let _who = self.caller(&request, "ListRuns")?;
        self.leader_only()?;
        // Body first, then respond: errors map through the one Error → Status mapping.
        let body = runs::list(&self.engine, request.into_inner()).await?;
        Ok(Response::new(body))
    }

    async fn approve(
        &self,
        request: Request<pb::RunRequest>,
    ) -> Result<Response<pb::RunAck>, Status> {
        let who = self.caller(&request, "Approve")?;
        self.leader_only()?;
        // Body first, then respond: errors map through the one Error → Status mapping.
        let body =
            runs::control(&self.engine, &who, RunCall::Approve, request.into_inner()).await?;
        Ok(Response::new(body))
    }

    async fn pause(
        &self,
        request: Request<pb::RunRequest>,
    ) -> Result<Response<pb::RunAck>, Status> {
        let who = self.caller(&request, "Pause")?;
        self.leader_only()?;
        // Body first, then respond: errors map through the one Error → Status mapping.
        let body = runs::control(&self.engine, &who, RunCall::Pause, request.into_inner()).await?;
        Ok(Response::new(body))
    }

    async fn resume(
        &self,
        request: Request<pb::RunRequest>,
    ) -> Result<Response<pb::RunAck>, Status> {
        let who = self.caller(&request, "Resume")?;
        self.leader_only()?;
        // Body first, then respond: errors map through the one Error → Status mapping.
        let body = runs::control(&self.engine, &who, RunCall::Resume, request.into_inner()).await?;
        Ok(Response::new(body))
    }

    async fn abort(
        &self,
        request: Request<pb::RunRequest>,
    ) -> Result<Response<pb::RunAck>, Status> {
        let who = self.caller(&request, "Abort")?;
        self.leader_only()?;
        // Body first, then respond: errors map through the one Error → Status mapping.
        let body = runs::control(&self.engine, &who, RunCall::Abort, request.into_inner()).await?;
        Ok(Response::new(body))
    }

    async fn plan(
        &self,
        request: Request<pb::PlanRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        let _who = self.caller(&request, "Plan")?;
        self.leader_only()?;
        // Body first, then respond: errors map through the one Error → Status mapping.
        let body = runs::plan(&self.engine, request.into_inner())?;
        Ok(Response::new(body))
    }

    async fn preflight(
        &self,
        request: Request<pb::PreflightRequest>,
    ) -> Result<Response<pb::PreflightResponse>, Status> {
        // Operators only (checked by `caller`); read operations only (see `crate::preflight`).
        let who = self.caller(&request, "Preflight")?;
        self.leader_only()?;
        let epoch = self.leadership.view().epoch;
        let body = crate::preflight::preflight(
            &self.registry,
            &self.topology,
            epoch,
            &who.name,
            &request.into_inner(),
        )
        .await?;
        Ok(Response::new(body))
    }
}

/// How long a ping waits for its result.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
static PING_SEQ: AtomicU64 = AtomicU64::new(0);
