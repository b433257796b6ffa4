//! gRPC services of the coordinator: the agents' session ([`agent_session`]), the operators'
//! Control API ([`control`]), who the caller is ([`auth`]), and the one mapping from
//! [`crate::error::Error`] to `tonic::Status` ([`status`]).

pub mod agent_session;
pub mod auth;
pub mod control;
pub mod inspect;
pub mod runs;
pub mod status;
