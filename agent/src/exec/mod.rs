//! Executors of the typed operations, one module per backend. Each takes validated model types
//! and returns protobuf outputs or the crate's [`crate::error::Error`].

pub mod host;
