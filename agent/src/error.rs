//! The agent crate's one error type and its classification. Operation failures travel to the
//! coordinator as `OperationError { kind, retryable, message }` built by [`Error::to_operation_error`].

use failback_proto::model::Epoch;
use failback_proto::pb;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is missing or invalid.
    #[error("config '{path}': {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] failback_proto::tls::TlsError),
    /// An instruction from a leader older than one we already obeyed.
    #[error(
        "stale epoch: instruction carries epoch {got}, but this agent has accepted epoch {highest}; a newer leader exists"
    )]
    StaleEpoch {
        /// Epoch of the refused instruction.
        got: Epoch,
        /// Highest accepted.
        highest: Epoch,
    },
    /// The coordinator sent something that breaks the protocol.
    #[error(transparent)]
    Protocol(#[from] failback_proto::model::ProtocolError),
    /// The session could not be opened or broke; the text explains the cause.
    #[error("{0}")]
    Session(String),
    /// The coordinator is not the leader and named one.
    #[error("coordinator is not the leader; the leader is {0}")]
    NotLeader(failback_proto::endpoint::Endpoint),
    /// The operation needs a backend this agent does not have.
    #[error("{0}")]
    Unsupported(String),
    /// A backend operation failed; the text names what and why.
    #[error("{message}")]
    Backend {
        /// What failed, with the backend's own words (never secrets).
        message: String,
        /// Whether trying again later can succeed.
        retryable: bool,
    },
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the same request may succeed later without a change by a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Session(_) | Error::NotLeader(_) | Error::Io { .. } => true,
            Error::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The wire form of this error as an operation outcome.
    pub fn to_operation_error(&self) -> pb::OperationError {
        let kind = match self {
            Error::StaleEpoch { .. } => pb::ErrorKind::StaleEpoch,
            Error::Protocol(_) | Error::Config { .. } => pb::ErrorKind::InvalidArgument,
            Error::Unsupported(_) => pb::ErrorKind::Unsupported,
            _ => pb::ErrorKind::Backend,
        };
        pb::OperationError {
            kind: kind.into(),
            retryable: self.is_retryable(),
            message: self.to_string(),
        }
    }

    /// Helper for I/O errors with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_epoch_names_both() {
        let e = Error::StaleEpoch {
            got: Epoch(6),
            highest: Epoch(7),
        };
        let op = e.to_operation_error();
        assert_eq!(op.kind(), pb::ErrorKind::StaleEpoch);
        assert!(!op.retryable);
        assert!(op.message.contains('6') && op.message.contains('7'));
    }
}
