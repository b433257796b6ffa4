//! The agent crate's one error type and its classification. Operation failures travel to the
//! coordinator as `OperationError { kind, retryable, message }` built by [`Error::to_operation_error`].
//! The `files` backend's failures are a nested [`FilesError`], each variant classified retryable or
//! not by [`FilesError::is_retryable`].
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
    /// The coordinator of an open session sent nothing for its liveness timeout: hung (SIGSTOP,
    /// a wedged process) or cut off. The agent leaves it for the next coordinator.
    #[error(
        "no message from coordinator {coordinator} for {after:?} (hung or cut off); trying the next coordinator"
    )]
    CoordinatorSilent {
        /// Its id.
        coordinator: String,
        /// The liveness timeout it gave in its Welcome.
        after: std::time::Duration,
    },
    /// A statement that changes data was sent and the connection to SQL Server ended before
    /// its answer (the instance died or the network cut): whether it ran is unknown. Reported
    /// as `INTERRUPTED`, never retryable, so the coordinator probes instead of sending it again
    /// (issue #12, blind repeat).
    #[error("{0}")]
    OutcomeUnknown(String),
    /// SQL Server refused or the connection to it failed.
    #[error("{message}")]
    Sql {
        /// SQL Server's error number, when it answered with one.
        number: Option<u32>,
        /// What failed (never the password).
        message: String,
        /// Whether trying again later can succeed.
        retryable: bool,
    },
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
    /// A `files` backend operation failed.
    #[error(transparent)]
    Files(#[from] FilesError),
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

/// What went wrong in the `files` backend. Every message names the path exactly as it was
/// received, and none quotes file contents (hashes and sizes only).
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The path is malformed or hostile (relative, `..`, control characters, too long, …).
    #[error("path '{}' refused: {reason}", shown(path))]
    InvalidPath {
        /// The path as received (escaped and shortened when displayed).
        path: String,
        /// Why.
        reason: String,
    },
    /// The path is not under any configured root.
    #[error("path '{path}' refused: it is outside every configured file root ({roots})")]
    OutsideRoots {
        /// The path as received.
        path: String,
        /// The configured roots, comma separated.
        roots: String,
    },
    /// The path leaves its root through a link or junction, or through a dangling link.
    #[error("path '{path}' refused: {reason} (root '{root}')")]
    SymlinkEscape {
        /// The path as received.
        path: String,
        /// The root it is lexically under.
        root: String,
        /// What was found.
        reason: String,
    },
    /// A configured root is invalid (configuration error).
    #[error("file root '{root}' is invalid: {reason}")]
    InvalidRoot {
        /// The root as configured.
        root: String,
        /// Why.
        reason: String,
    },
    /// A configured root cannot be reached now (share down, directory missing).
    #[error("file root '{root}' is unavailable: {source}")]
    RootUnavailable {
        /// The root.
        root: String,
        /// The error.
        source: std::io::Error,
    },
    /// A name pattern for `list` or retention is invalid.
    #[error("pattern '{pattern}' refused: {reason}")]
    InvalidPattern {
        /// The pattern as received.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// Another argument is invalid (e.g. an expected SHA-256 that is not 64 hex digits).
    #[error("{what} for '{path}' refused: {reason}")]
    InvalidArgument {
        /// The path the operation was about.
        path: String,
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The path does not exist.
    #[error("'{path}' does not exist")]
    NotFound {
        /// The path as received.
        path: String,
    },
    /// The path exists but is the wrong kind of entry.
    #[error("'{path}' is not {expected}")]
    WrongType {
        /// The path as received.
        path: String,
        /// What it should be ("a regular file", "a directory").
        expected: &'static str,
    },
    /// A copy's destination already holds a different file; it is never overwritten.
    #[error(
        "destination '{path}' already exists with different content (SHA-256 {existing}, source {source_sha256}); delete it first"
    )]
    DestinationExists {
        /// The destination as received.
        path: String,
        /// SHA-256 of the existing file.
        existing: String,
        /// SHA-256 of the source.
        source_sha256: String,
    },
    /// The file's SHA-256 is not the expected one (corrupted or replaced source).
    #[error("'{path}' has SHA-256 {actual}, but {expected} was expected; nothing was copied")]
    ChecksumMismatch {
        /// The path as received.
        path: String,
        /// What the caller expected.
        expected: String,
        /// What the file holds.
        actual: String,
    },
    /// The source changed (size or modification time) while it was read.
    #[error("'{path}' changed while it was read ({what}); retry when it is stable")]
    SourceChanged {
        /// The path as received.
        path: String,
        /// What changed.
        what: String,
    },
    /// Re-reading the written file did not give the source's SHA-256.
    #[error(
        "copy to '{path}' wrote data with SHA-256 {written}, but the source read as {source_sha256}; the partial file was removed"
    )]
    VerifyFailed {
        /// The destination as received.
        path: String,
        /// SHA-256 of the source as read.
        source_sha256: String,
        /// SHA-256 of the written file as re-read.
        written: String,
    },
    /// The copy stopped before the end (test hook or cancellation); the `.partial` is kept.
    #[error(
        "copy to '{path}' stopped after {copied} bytes; the partial file is kept and the next copy resumes"
    )]
    Interrupted {
        /// The destination as received.
        path: String,
        /// Bytes in the `.partial` file.
        copied: u64,
    },
    /// Another copy to the same destination is running in this agent.
    #[error("a copy to '{path}' is already running; retry when it has finished")]
    Busy {
        /// The destination as received.
        path: String,
    },
    /// Local or share I/O failed.
    #[error("{op} '{path}': {source}")]
    Io {
        /// The verb ("read", "create", "rename", …).
        op: &'static str,
        /// The path as received.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl FilesError {
    /// Whether the same request may succeed later without a change by a person. Refusals,
    /// missing files and checksum mismatches are final; unreachable roots, sources still being
    /// written, interrupted copies and transient I/O are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            FilesError::RootUnavailable { .. }
            | FilesError::SourceChanged { .. }
            | FilesError::VerifyFailed { .. }
            | FilesError::Interrupted { .. }
            | FilesError::Busy { .. } => true,
            FilesError::Io { source, .. } => io_is_transient(source),
            FilesError::InvalidPath { .. }
            | FilesError::OutsideRoots { .. }
            | FilesError::SymlinkEscape { .. }
            | FilesError::InvalidRoot { .. }
            | FilesError::InvalidPattern { .. }
            | FilesError::InvalidArgument { .. }
            | FilesError::NotFound { .. }
            | FilesError::WrongType { .. }
            | FilesError::DestinationExists { .. }
            | FilesError::ChecksumMismatch { .. } => false,
        }
    }

    /// Whether the request itself is wrong (as opposed to the world).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            FilesError::InvalidPath { .. }
                | FilesError::OutsideRoots { .. }
                | FilesError::SymlinkEscape { .. }
                | FilesError::InvalidPattern { .. }
                | FilesError::InvalidArgument { .. }
        )
    }
}

/// A refused path as it appears in messages: control characters escaped, at most 200 characters.
fn shown(path: &str) -> String {
    let mut escaped = String::new();
    for c in path.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    match escaped.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

/// I/O failures that may pass by themselves (a share that blinks, a busy file).
fn io_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ResourceBusy
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::NotConnected
            | K::BrokenPipe
            | K::NetworkDown
            | K::NetworkUnreachable
            | K::HostUnreachable
            | K::StaleNetworkFileHandle
    )
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
            | Error::CoordinatorSilent { .. }
            | Error::Io { .. }
            | Error::ShellTimeout { .. } => true,
            Error::Backend { retryable, .. } | Error::Sql { retryable, .. } => *retryable,
            Error::Files(f) => f.is_retryable(),
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
            Error::Unsupported(_) => pb::ErrorKind::Unsupported,
            Error::Files(f) if f.is_invalid_argument() => pb::ErrorKind::InvalidArgument,
            Error::Files(FilesError::Interrupted { .. }) | Error::OutcomeUnknown(_) => {
                pb::ErrorKind::Interrupted
            }
            Error::ShellTimeout { .. } => pb::ErrorKind::DeadlineExceeded,
            _ => pb::ErrorKind::Backend,
        };
        pb::OperationError {
            kind: kind.into(),
            retryable: self.is_retryable(),
            message: self.to_string(),
            sql_error: match self {
                Error::Sql {
                    number: Some(n), ..
                } => *n,
                _ => 0,
            },
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
    fn files_errors_are_classified() {
        let refused = Error::from(FilesError::InvalidPath {
            path: "/srv/../etc".into(),
            reason: "'..' components are not accepted".into(),
        });
        let op = refused.to_operation_error();
        assert_eq!(op.kind(), pb::ErrorKind::InvalidArgument);
        assert!(!op.retryable);
        assert!(op.message.contains("/srv/../etc"), "{}", op.message);
        let mismatch = Error::from(FilesError::ChecksumMismatch {
            path: "/srv/a".into(),
            expected: "00".into(),
            actual: "11".into(),
        });
        assert!(!mismatch.is_retryable());
        assert_eq!(mismatch.to_operation_error().kind(), pb::ErrorKind::Backend);
        let io = |kind| FilesError::Io {
            op: "read",
            path: "/srv/a".into(),
            source: std::io::Error::from(kind),
        };
        assert!(io(std::io::ErrorKind::Interrupted).is_retryable());
        assert!(!io(std::io::ErrorKind::PermissionDenied).is_retryable());
        assert!(
            !FilesError::NotFound {
                path: "/srv/a".into()
            }
            .is_retryable()
        );
        let cut = Error::from(FilesError::Interrupted {
            path: "/srv/a".into(),
            copied: 5,
        });
        assert!(cut.is_retryable());
        assert_eq!(cut.to_operation_error().kind(), pb::ErrorKind::Interrupted);
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
