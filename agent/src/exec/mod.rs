//! Executors of the typed operations, one plain-Rust module per backend (no protobuf types in
//! `files`; `host` returns its small wire output directly). The dispatcher maps instructions onto
//! them and their results onto the wire.
//!
//! - [`files`] — backup and log files under configured roots.
//! - [`sql`] — the local SQL Server instance through tiberius; all T-SQL from [`sql::tsql`].
//! - [`host`] — facts about this host's network position (connect latency).

pub mod files;
pub mod host;
pub mod sql;
