//! Executors of the agent's typed operations, one module per backend. Each is plain async Rust with
//! its own domain types; the session layer maps wire messages onto them.

pub mod lync;
