//! The coordinator crate's one error type, its classification, and (in `api::status`) its single
//! mapping to `tonic::Status`.
//!
//! Classification: [`Error::is_retryable`] says whether the same request may succeed later
//! without anyone changing anything (a restart, a leader election, a reconnect); everything else
//! needs a person or a fix.

use failback_proto::model::ProtocolError;

use crate::topology::TopologyError;

/// Everything that can go wrong in the coordinator and failbackctl.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file is missing, unreadable or invalid.
    #[error("config '{path}': {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The topology file is invalid.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] failback_proto::tls::TlsError),
    /// Input from an operator or a file was refused (names the input and the problem).
    #[error("{0}")]
    InvalidInput(String),
    /// A peer sent a message that breaks the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The caller's certificate does not allow this call.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller could not be identified (no verified certificate).
    #[error("{0}")]
    Unauthenticated(String),
    /// This coordinator is not the leader; `hint` names the leader's endpoint when known.
    #[error("this coordinator is not the leader{}", .hint.as_ref().map(|h| format!("; the leader is {h}")).unwrap_or_default())]
    NotLeader {
        /// The leader's `name@host:port`, when known.
        hint: Option<String>,
    },
    /// A newer leader exists than the one this coordinator believes in (fencing said so): a run
    /// store write whose leader-key comparison failed, or an agent that has seen a newer epoch.
    /// Leader-only work must stop; retrying on this coordinator cannot succeed this term.
    #[error("deposed: {0}")]
    Deposed(String),
    /// A record the caller named does not exist (a run id, a pool of a run).
    #[error("{0}")]
    NotFound(String),
    /// A record that must be new already exists (a run id used twice).
    #[error("{0}")]
    AlreadyExists(String),
    /// The state store (etcd) failed or could not be reached; the write may or may not have
    /// happened only where the message says so.
    #[error("state store: {0}")]
    Store(String),
    /// The agent needed for an operation has no session.
    #[error("{0}")]
    AgentUnavailable(String),
    /// No coordinator could be reached (the text explains the TLS or network cause).
    #[error("{0}")]
    Unreachable(String),
    /// A coordinator answered a call with an error status.
    #[error("coordinator: {message}")]
    Remote {
        /// gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// A peer or dependency did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing ("write epoch file '…'").
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A bug or an impossible state; the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Coarse kind of an [`Error`], for metrics labels and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad config, topology, arguments or message: fix the input.
    Input,
    /// Not allowed or not identified.
    Auth,
    /// Try again (elsewhere or later).
    Unavailable,
    /// Everything else.
    Internal,
}

impl Error {
    /// Coarse classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. }
            | Error::Topology(_)
            | Error::Tls(_)
            | Error::InvalidInput(_)
            | Error::Protocol(_)
            | Error::NotFound(_)
            | Error::AlreadyExists(_) => ErrorKind::Input,
            Error::PermissionDenied(_) | Error::Unauthenticated(_) => ErrorKind::Auth,
            Error::NotLeader { .. }
            | Error::Deposed(_)
            | Error::Store(_)
            | Error::Timeout(_)
            | Error::Unreachable(_)
            | Error::AgentUnavailable(_) => ErrorKind::Unavailable,
            Error::Remote { code, .. } => match code {
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => ErrorKind::Auth,
                tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition
                | tonic::Code::NotFound => ErrorKind::Input,
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            Error::Io { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether retrying the same request later can succeed without a change by a person.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    /// Helper for I/O errors with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(Error::NotLeader { hint: None }.is_retryable());
        assert!(!Error::PermissionDenied("x".into()).is_retryable());
        assert_eq!(Error::InvalidInput("x".into()).kind(), ErrorKind::Input);
        assert_eq!(
            Error::NotLeader {
                hint: Some("c2@h:1".into())
            }
            .to_string(),
            "this coordinator is not the leader; the leader is c2@h:1"
        );
    }
}
