//! The operators' `Control` API. Every call needs an `operator` or `approver` certificate and is
//! logged with the caller's certificate name. Leader-only calls answered by a non-leader fail with
//! UNAVAILABLE and the leader's endpoint in the `failback-leader` metadata.

use std::time::Duration;

use failback_proto::identity::{PeerIdentity, Role};
use failback_proto::pb;
use tonic::{Request, Response, Status};

use crate::api::auth;
use crate::error::Error;
use crate::leader::LeadershipRef;
use crate::registry::Registry;

/// The service implementation.
pub struct ControlService {
    /// Agent registry.
    pub registry: Registry,
    /// Who leads.
    pub leadership: LeadershipRef,
    /// Our certificate name.
    pub coordinator_id: String,
    /// Heartbeat interval agents keep.
    pub heartbeat_interval: Duration,
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
}
