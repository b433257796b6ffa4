//! failback's wire contract and the rules both sides of it share.
//!
//! Layout (a table of contents; each module's own doc says why it exists):
//! - [`pb`] — code generated from `proto/failback/v1/failback.proto`. It never leaves this crate's
//!   API surface unwrapped: handlers convert to [`model`] types with `TryFrom` on receipt.
//! - [`model`] — hand-written, validated types (typed ids, the epoch, Hello, instructions).
//! - [`identity`] — how a certificate carries its role, and reading it from a peer.
//! - [`tls`] — rustls configurations and the mTLS connector used by agents and failbackctl.
//! - [`endpoint`] — `name@host:port` coordinator endpoints.
//! - [`telemetry`] — tracing setup and the Prometheus `/metrics` HTTP endpoint.
//!
//! When you change the `.proto`, also touch: [`model`] conversions, [`PROTOCOL_VERSION`] if an older
//! peer could misread the new contract, and the coordinator's `api/` handlers.

pub mod clock;
pub mod endpoint;
pub mod identity;
pub mod model;
pub mod telemetry;
pub mod test_break;
pub mod tls;

/// Generated protobuf and gRPC code for package `failback.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("failback.v1");

    /// Encoded file descriptor set, served through gRPC reflection so `grpcurl` works.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("failback_descriptor");
}

/// Version of the agent-session contract. Sent in every Hello; the coordinator refuses any other
/// value with `FAILED_PRECONDITION` naming both. 0 means "unset" (an agent that predates the field).
pub const PROTOCOL_VERSION: u32 = 1;

/// Metadata key in which a non-leader coordinator names the leader's endpoint.
pub const LEADER_HINT_METADATA: &str = "failback-leader";

/// Installs aws-lc-rs as the process-wide rustls provider. tiberius' rustls feature forces aws-lc,
/// so every rustls user in a process must agree on it; call once at the top of every binary and
/// test harness. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
