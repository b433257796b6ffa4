//! The one place that knows the etcd key layout (DESIGN §7). Everything else asks [`Keys`] for a
//! key and never formats one itself, so the layout can change in one file.
//!
//! ```text
//! /failback/<cluster>/leader                      election name (keys below it: one per candidate)
//! /failback/<cluster>/runs/<run-id>               RunRecord (spec, status)
//! /failback/<cluster>/runs/<run-id>/pools/<pool>  PoolState (step, attempt, op ids, outputs)
//! /failback/<cluster>/audit/<run-id>/<seq>        AuditRecord; seq zero-padded to 20 digits so
//!                                                 key order is numeric order
//! /failback/<cluster>/agents/<agent-id>           reserved: last seen, version
//! ```
//!
//! Run ids and pool names are validated to contain no `/` ([`validate_segment`]), so a key parses
//! back unambiguously.

use super::RunId;

/// Width of the zero-padded audit sequence number (u64::MAX has 20 digits).
const SEQ_WIDTH: usize = 20;

/// Checks an installation name: 1..=64 of `[A-Za-z0-9._-]`.
pub fn validate_cluster(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("'{name}' must be 1 to 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "'{name}' contains '{c}'; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Checks a key segment taken from outside (a pool name): non-empty, at most 255 bytes, no `/`,
/// no control characters.
pub fn validate_segment(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 {
        return Err(format!("{what} '{s}' must be 1 to 255 bytes"));
    }
    if s.contains('/') || s.chars().any(char::is_control) || s == "." || s == ".." {
        return Err(format!(
            "{what} '{s}' must not contain '/' or control characters"
        ));
    }
    Ok(())
}

/// A parsed key under the runs prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunKey {
    /// `/runs/<run-id>`.
    Run(RunId),
    /// `/runs/<run-id>/pools/<pool>`.
    Pool(RunId, String),
}

/// Key builder for one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// Keys under `/failback/<cluster>` (`cluster` as validated by [`validate_cluster`]).
    pub fn new(cluster: &str) -> Self {
        Keys {
            root: format!("/failback/{cluster}"),
        }
    }

    /// The election name.
    pub fn election(&self) -> String {
        format!("{}/leader", self.root)
    }

    /// Prefix of every run and pool key.
    pub fn runs_prefix(&self) -> String {
        format!("{}/runs/", self.root)
    }

    /// A run's record.
    pub fn run(&self, id: &RunId) -> String {
        format!("{}/runs/{id}", self.root)
    }

    /// Prefix of a run's record and its pools (a prefix read also returns runs whose id extends
    /// this one: filter with [`Keys::parse_run_key`]).
    pub fn run_and_pools_prefix(&self, id: &RunId) -> String {
        self.run(id)
    }

    /// A pool's state within a run.
    pub fn pool(&self, id: &RunId, pool: &str) -> String {
        format!("{}/runs/{id}/pools/{pool}", self.root)
    }

    /// Prefix of a run's audit records.
    pub fn audit_prefix(&self, id: &RunId) -> String {
        format!("{}/audit/{id}/", self.root)
    }

    /// One audit record.
    pub fn audit(&self, id: &RunId, seq: u64) -> String {
        format!("{}/audit/{id}/{seq:0SEQ_WIDTH$}", self.root)
    }

    /// An agent's record (reserved).
    pub fn agent(&self, agent: &str) -> String {
        format!("{}/agents/{agent}", self.root)
    }

    /// Parses a key under [`Keys::runs_prefix`]; `None` for anything else.
    pub fn parse_run_key(&self, key: &[u8]) -> Option<RunKey> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&self.runs_prefix())?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [id] => Some(RunKey::Run(RunId::new(*id).ok()?)),
            [id, "pools", pool] if validate_segment("pool", pool).is_ok() => {
                Some(RunKey::Pool(RunId::new(*id).ok()?, (*pool).to_string()))
            }
            _ => None,
        }
    }

    /// Parses the sequence number of an audit key of `id`.
    pub fn parse_audit_seq(&self, id: &RunId, key: &[u8]) -> Option<u64> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(&self.audit_prefix(id))?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let k = Keys::new("prod");
        let id = RunId::new("20260101-120000-abcd").unwrap();
        assert_eq!(k.election(), "/failback/prod/leader");
        assert_eq!(k.run(&id), "/failback/prod/runs/20260101-120000-abcd");
        assert_eq!(
            k.pool(&id, "pchat01.contoso.com"),
            "/failback/prod/runs/20260101-120000-abcd/pools/pchat01.contoso.com"
        );
        assert_eq!(
            k.audit(&id, 42),
            "/failback/prod/audit/20260101-120000-abcd/00000000000000000042"
        );
        assert_eq!(k.agent("sql01"), "/failback/prod/agents/sql01");
        assert_eq!(
            k.parse_run_key(k.run(&id).as_bytes()),
            Some(RunKey::Run(id.clone()))
        );
        assert_eq!(
            k.parse_run_key(k.pool(&id, "p1").as_bytes()),
            Some(RunKey::Pool(id.clone(), "p1".into()))
        );
        assert_eq!(k.parse_run_key(b"/failback/prod/runs/a/b"), None);
        assert_eq!(k.parse_run_key(b"/failback/other/runs/a"), None);
        assert_eq!(k.parse_audit_seq(&id, k.audit(&id, 7).as_bytes()), Some(7));
        // Zero padding keeps key order numeric.
        assert!(k.audit(&id, 9) < k.audit(&id, 10));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_cluster("prod-1.dc_a").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_cluster(bad).is_err(), "{bad}");
        }
        assert!(validate_segment("pool", "pchat01.contoso.com").is_ok());
        for bad in ["", "a/b", "..", "a\nb"] {
            assert!(validate_segment("pool", bad).is_err(), "{bad:?}");
        }
    }
}
