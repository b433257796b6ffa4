//! The one error type of sqlsim. It covers what can go wrong *around* SQL: sockets, malformed TDS,
//! TLS, and the state directory. SQL-level errors that a client should see (102, 208, 18456, …) are
//! not Rust errors: they are [`crate::sqlsim::tokens::ServerMessage`] values sent as ERROR tokens.
//! A `SimError` on a connection closes that connection only.

use std::path::PathBuf;

/// Everything that can fail in sqlsim outside the SQL answers themselves.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Socket or file I/O failed (includes a peer closing mid-packet).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not valid TDS; the connection is closed.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The TLS layer failed (handshake, certificate, record).
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS certificate or key files could not be used.
    #[error("tls configuration: {0}")]
    TlsConfig(String),
    /// The persisted instance state could not be read or written.
    #[error("state file {path}: {message}")]
    State {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A command-line option is invalid (bad fault switch, path mapping, …).
    #[error("configuration: {0}")]
    Config(String),
    /// A lock protecting shared state was poisoned by a panic in another task.
    #[error("internal lock poisoned")]
    Poisoned,
}

impl SimError {
    /// Shorthand for a [`SimError::Protocol`] with a message.
    pub fn protocol(message: impl Into<String>) -> Self {
        SimError::Protocol(message.into())
    }
}

/// Result alias used throughout sqlsim.
pub type Result<T, E = SimError> = std::result::Result<T, E>;
