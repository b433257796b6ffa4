//! Executors of the typed operations, one module per backend. `files` and `lync` are plain async
//! Rust with their own domain types; `sql` and `host` return their wire outputs directly. The
//! dispatcher maps instructions onto them and their results onto the wire.
//!
//! - [`files`] — backup and log files under configured roots.
//! - [`sql`] — the local SQL Server instance through tiberius; all T-SQL from [`sql::tsql`].
//! - [`lync`] — the Lync / Skype for Business Management Shell through a configured command line.
//! - [`host`] — facts about this host's network position (connect latency).

pub mod files;
pub mod host;
pub mod lync;
pub mod sql;
