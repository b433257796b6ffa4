//! The topology file as written: serde structs that mirror the TOML exactly, with spans kept on
//! the values errors point at. Nothing here is validated beyond TOML types and unknown keys
//! (`deny_unknown_fields` everywhere, so a misspelt key is an error rather than a silently
//! missing setting); `validate` turns this into the checked [`super::Topology`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    /// `[[agent]]` tables.
    #[serde(default)]
    pub agent: Vec<Spanned<RawAgent>>,
    /// `[[pool]]` tables.
    #[serde(default)]
    pub pool: Vec<Spanned<RawPool>>,
}

/// One `[[agent]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Certificate name.
    pub id: Spanned<String>,
    /// Data center.
    pub datacenter: Spanned<String>,
}

/// One `[[pool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub fqdn: Spanned<String>,
    pub primary_dc: Spanned<String>,
    pub backup_dc: Spanned<String>,
    pub databases: Spanned<Vec<Spanned<String>>>,
    pub share: Spanned<String>,
    pub copy_dir: Spanned<String>,
    pub lync_shell: Spanned<BTreeMap<String, Vec<Spanned<String>>>>,
    pub sql: Spanned<RawSql>,
    pub chat_servers: Spanned<BTreeMap<String, Vec<Spanned<String>>>>,
}

/// `[pool.sql]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSql {
    pub primary: Spanned<RawInstance>,
    pub primary_mirror: Option<Spanned<RawInstance>>,
    pub backup: Spanned<RawInstance>,
    pub backup_mirror: Option<Spanned<RawInstance>>,
}

/// One SQL instance and its agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    pub agent: Spanned<String>,
    pub instance: Spanned<String>,
}
