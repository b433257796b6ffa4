//! The agent's typed operation backends. Each backend is a plain-Rust library module (no
//! protobuf types); the session maps instructions onto it and its results onto the wire.
//!
//! - [`files`] — backup and log files under configured roots.

pub mod files;
