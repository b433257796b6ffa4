//! The agent crate's one error type and its classification. Operation failures travel to the
//! coordinator as `OperationError { kind, retryable, message }` built by [`Error::to_operation_error`].
//!
//! Shell failures (the Lync backend) carry the shell's stderr, cleaned of PowerShell's CLIXML
//! wrapping and truncated to [`STDERR_LIMIT`] characters, and a [`ShellFailure`] class read from the
//! `CategoryInfo` line PowerShell prints with every error record; the class decides retryability.

use std::fmt;
use std::time::Duration;

use failback_proto::model::Epoch;
use failback_proto::pb;

/// Longest stderr / stdout excerpt (in characters) an error carries; the rest is cut with a marker.
pub const STDERR_LIMIT: usize = 2000;

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
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A value given to an operation is unacceptable (bad FQDN, control character in a PowerShell
    /// literal, empty server list); nothing was run.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which value.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The configured shell program could not be started.
    #[error("cannot start the Lync shell '{program}': {source}")]
    ShellSpawn {
        /// The program (first element of `[lync] command`).
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// The shell ran a script and failed (non-zero exit).
    #[error("Lync shell failed ({failure}, exit {exit}): {stderr}")]
    ShellFailed {
        /// The class of failure, read from the error record.
        failure: ShellFailure,
        /// Exit code as text (`1`, or `signal` when killed by one).
        exit: String,
        /// The shell's stderr, cleaned and truncated.
        stderr: String,
    },
    /// The shell did not finish within `[lync] timeout` and was killed. Whether the cmdlet took
    /// effect is unknown: the coordinator resolves it by probing, as for any interrupted step.
    #[error("Lync shell timed out after {}; killed; outcome unknown; stderr so far: {stderr}", humantime::format_duration(*.after))]
    ShellTimeout {
        /// The configured timeout.
        after: Duration,
        /// Whatever the shell wrote to stderr before it was killed.
        stderr: String,
    },
    /// The shell exited 0 but its output is not the JSON the script asks for.
    #[error("Lync shell output unusable: {reason}; stdout: {stdout}")]
    ShellOutput {
        /// What is wrong.
        reason: String,
        /// The shell's stdout, truncated.
        stdout: String,
    },
    /// The shell answered, but the answer does not let the operation proceed or does not show its
    /// effect: no or several matching pools, or a read-back that differs from what was set.
    #[error("Lync pool '{pool}': {reason}")]
    Lync {
        /// The pool FQDN the operation was for.
        pool: String,
        /// What is wrong.
        reason: String,
        /// Whether asking again may help (a read-back mismatch may; a missing pool will not).
        retryable: bool,
    },
}

/// Class of a failed shell script, from the `CategoryInfo : <Category>:` line of the PowerShell error
/// record (the `System.Management.Automation.ErrorCategory` names, which are stable across versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellFailure {
    /// `ObjectNotFound`: the Identity (pool, service) does not exist. Not retryable.
    UnknownIdentity,
    /// The script or its values were refused: unknown cmdlet (module not loaded), unknown parameter,
    /// bad value, parser error, permission. Not retryable: a person must change something.
    InvalidArgument,
    /// The shell could not reach what it needs (CMS, AD, SQL) or was busy: `ConnectionError`,
    /// `ResourceUnavailable`, `ResourceBusy`, `OperationTimeout`, `DeadlockDetected`. Retryable.
    Unavailable,
    /// Anything else, including a failure with no error record. Not retryable: an unexplained
    /// failure of a change to the pool needs a person's look more than a blind second attempt.
    Failed,
}

impl ShellFailure {
    /// Whether the same script may succeed later without a change by a person.
    pub fn is_retryable(self) -> bool {
        matches!(self, ShellFailure::Unavailable)
    }
}

impl fmt::Display for ShellFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShellFailure::UnknownIdentity => "unknown identity",
            ShellFailure::InvalidArgument => "invalid argument",
            ShellFailure::Unavailable => "unavailable",
            ShellFailure::Failed => "failed",
        })
    }
}

impl Error {
    /// Whether the same request may succeed later without a change by a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Session(_)
            | Error::NotLeader(_)
            | Error::Io { .. }
            | Error::ShellTimeout { .. } => true,
            Error::ShellFailed { failure, .. } => failure.is_retryable(),
            // NotFound / PermissionDenied: the command line is wrong; anything else (too many
            // processes, out of memory) may pass later.
            Error::ShellSpawn { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ),
            Error::Lync { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The wire form of this error as an operation outcome.
    pub fn to_operation_error(&self) -> pb::OperationError {
        let kind = match self {
            Error::StaleEpoch { .. } => pb::ErrorKind::StaleEpoch,
            Error::Protocol(_) | Error::Config { .. } | Error::InvalidInput { .. } => {
                pb::ErrorKind::InvalidArgument
            }
            Error::ShellTimeout { .. } => pb::ErrorKind::DeadlineExceeded,
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

/// `text` cut to at most `limit` characters (on a character boundary), with a marker saying how
/// much was left out.
pub fn truncate(text: &str, limit: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(limit) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… [{} more bytes]", &text[..cut], text.len() - cut),
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

    #[test]
    fn truncation_is_char_safe_and_marked() {
        assert_eq!(truncate("  abc \n", 10), "abc");
        let t = truncate("ééééé", 2);
        assert!(t.starts_with("éé…"), "{t}");
        assert!(t.contains("6 more bytes"), "{t}");
    }

    #[test]
    fn shell_errors_are_classified() {
        let failed = |failure| Error::ShellFailed {
            failure,
            exit: "1".into(),
            stderr: "x".into(),
        };
        assert!(!failed(ShellFailure::UnknownIdentity).is_retryable());
        assert!(!failed(ShellFailure::InvalidArgument).is_retryable());
        assert!(failed(ShellFailure::Unavailable).is_retryable());
        let t = Error::ShellTimeout {
            after: Duration::from_secs(3),
            stderr: String::new(),
        };
        assert!(t.is_retryable());
        assert_eq!(
            t.to_operation_error().kind(),
            pb::ErrorKind::DeadlineExceeded
        );
        assert!(t.to_string().contains("3s"), "{t}");
    }
}
