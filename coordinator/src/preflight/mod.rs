//! `Control.Preflight`: is each pool ready to fail over, and to fail back? Answered per pool and
//! per direction as a list of checks (name, status, observed value, threshold, and a `fix`
//! sentence for anything that is not ok), from typed read operations only.
//!
//! Layout:
//! - this file — the entry point, pool selection and the request's knobs ([`Settings`]).
//! - [`facts`] — reads everything once per pool through the agents (instance, databases,
//!   mirroring, log shipping status, the copy job's last outcome, the share and copy folder
//!   listings and free space, the Lync pool state and servers, backup headers for the chain).
//! - [`checks`] — turns the facts into checks for each direction; pure, unit-tested.
//! - [`logship`] — the failover direction's log shipping checks.
//! - the LSN chain and log backup names are `crate::runbook::failover::chain`'s, FO-3's own rule.
//! - [`engine_access`] — the failback direction's check that each engine account writes the share.
//!
//! Decisions (what an on-call DR operator would expect where the issue is silent):
//! - **Both directions are always reported.** Checks about the environment (agents connected,
//!   SQL Server Agent running, its account's access, free space, chat servers known to Lync)
//!   apply in both; checks about state (database states, log shipping, mirroring) apply to the
//!   direction the pool's state leads to (failover when `Normal`, failback when `FailedOver`) and
//!   are `skip` in the other, so a healthy pool is ready in both and exits 0.
//! - **Ready** = no check `fail`s. `warn` is shown (and carries a fix) but does not block: it
//!   marks things the runbooks survive (an optional mirror not synchronized, a file being copied).
//! - **Staleness** has two sources: msdb's own thresholds (`backup_threshold`,
//!   `restore_threshold`, in whole minutes, the same alert SQL Server raises) and, with second
//!   precision, the age of the newest log backup file on the share (its modification time as the
//!   agent reads it, compared with the coordinator's clock; hosts are NTP-synchronised in a
//!   domain). `max_log_age_seconds` tightens the second; 0 = the primary's backup threshold.
//! - **LSNs** come from the files' own headers (`read_backup_header` = a plain RESTORE HEADERONLY,
//!   read-only, never WITH CHECKSUM: log shipping's `.trn` files have no backup checksums and SQL
//!   Server refuses the option on them, Msg 3187), anchored at the header of msdb's
//!   `last_restored_file`: the same procedure a failover follows (pchat-dr.md §6.11), so what
//!   preflight calls a gap is what FO-3 would stop at.
//! - **Free space for the full backups** (FB-3's and FB-5's seed) = 2 × the newest full backup of
//!   `mgc` msdb records on the backup instance (`backupset.backup_size`), or without one its
//!   allocated data size, × `free_space_factor` (default 1.5), against the share's free space:
//!   the decisions are in [`space`]. A test or a cautious operator raises the factor.
//! - **The SQL Server Agent account's access** is proved by `check_agent_access` (a one-off Agent
//!   job that lists the share and writes then deletes a probe file in the copy folder; it leaves
//!   nothing behind — one of the two operations here that are not pure reads, named in the issue) when
//!   both folders are drive/UNC paths, as FB-1 does. Where they are not (a POSIX lab), the
//!   evidence is the log shipping copy job's last outcome: that job runs as the same account.
//! - **The Database Engine's account** writes FB-3's and FB-5's full backups to the share; it is
//!   proved by `check_engine_share_write` (a COPY_ONLY backup of `model` to a probe file the agent
//!   deletes: the least intrusive proof of a write by that account, see [`engine_access`]; it
//!   leaves one named row set in msdb's backup history of model), the other operation that is
//!   not a pure read, so it is skipped with `reads_only` too.

pub mod checks;
pub mod engine_access;
pub mod facts;
pub mod identity;
pub mod logship;
pub mod space;

#[cfg(test)]
mod checks_tests;

use failback_proto::model::Epoch;
use failback_proto::pb;

use crate::error::Error;
use crate::registry::Registry;
use crate::topology::{Pool, Topology};
pub use failback_proto::clock::unix_ms as now_ms;

/// Default multiple of a database's data size that must be free on the share.
pub const DEFAULT_FREE_SPACE_FACTOR: f64 = 1.5;

/// The request's knobs, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Free space needed = data size × this.
    pub free_space_factor: f64,
    /// Oldest acceptable newest log backup, seconds; `None` = the msdb backup threshold.
    pub max_log_age_seconds: Option<u64>,
    /// No one-off Agent job (a dry run changes nothing).
    pub reads_only: bool,
}

impl Settings {
    /// Validates the request's values (0 = default).
    pub fn from_request(req: &pb::PreflightRequest) -> Result<Self, Error> {
        let f = req.free_space_factor;
        let free_space_factor = if f == 0.0 {
            DEFAULT_FREE_SPACE_FACTOR
        } else if f.is_finite() && (1.0..=1e12).contains(&f) {
            f
        } else {
            return Err(Error::InvalidInput(format!(
                "free_space_factor {f} must be between 1 and 1e12 (0 = {DEFAULT_FREE_SPACE_FACTOR})"
            )));
        };
        Ok(Settings {
            free_space_factor,
            max_log_age_seconds: (req.max_log_age_seconds > 0)
                .then_some(u64::from(req.max_log_age_seconds)),
            reads_only: req.reads_only,
        })
    }
}

/// The pools a request names (every pool with `all`), in topology order for `all` and in the
/// given order otherwise; an unknown name is refused with the known ones listed.
pub fn select_pools<'a>(
    topology: &'a Topology,
    req: &pb::PreflightRequest,
) -> Result<Vec<&'a Pool>, Error> {
    if req.all && !req.pools.is_empty() {
        return Err(Error::InvalidInput(
            "give either pools or all, not both".into(),
        ));
    }
    if req.all || req.pools.is_empty() {
        if !req.all {
            return Err(Error::InvalidInput(
                "name at least one pool (--pool FQDN) or ask for --all".into(),
            ));
        }
        return Ok(topology.pools.iter().collect());
    }
    let mut out: Vec<&Pool> = Vec::new();
    for name in &req.pools {
        let pool = topology
            .pools
            .iter()
            .find(|p| p.fqdn.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "pool '{name}' is not in the topology (pools: {})",
                    topology
                        .pools
                        .iter()
                        .map(|p| p.fqdn.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if !out.iter().any(|p| p.fqdn == pool.fqdn) {
            out.push(pool);
        }
    }
    Ok(out)
}

/// Runs the preflight for the selected pools (one after the other: each pool's reads go to a
/// handful of agents, and sequential reads keep the load on production instances small).
pub async fn preflight(
    registry: &Registry,
    topology: &Topology,
    epoch: Epoch,
    caller: &str,
    req: &pb::PreflightRequest,
) -> Result<pb::PreflightResponse, Error> {
    let settings = Settings::from_request(req)?;
    let pools = select_pools(topology, req)?;
    let mut reader = facts::Reader::new(registry, epoch, caller);
    let mut out = Vec::with_capacity(pools.len());
    for pool in pools {
        let f = facts::gather(&mut reader, pool, settings.reads_only).await?;
        out.push(checks::evaluate(&f, &settings));
    }
    Ok(pb::PreflightResponse {
        ready: out.iter().all(|p| p.ready),
        pools: out,
        checked_unix_ms: now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_and_refusals() {
        let s = Settings::from_request(&pb::PreflightRequest::default()).unwrap();
        assert_eq!(s.free_space_factor, DEFAULT_FREE_SPACE_FACTOR);
        assert_eq!(s.max_log_age_seconds, None);
        for bad in [-1.0, 0.5, f64::NAN, f64::INFINITY, 1e13] {
            let r = pb::PreflightRequest {
                free_space_factor: bad,
                ..Default::default()
            };
            assert!(Settings::from_request(&r).is_err(), "{bad}");
        }
    }
}
