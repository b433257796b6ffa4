//! The failover runbook (DESIGN §1, pchat-dr.md §2): one file per step.
//!
//! | step | file | where |
//! |---|---|---|
//! | FO-1a | [`fo1_capture`] | backup SQL (read only): log shipping metadata, before anything is removed |
//! | FO-1b | [`fo1_remove_log_shipping`] | backup SQL (destructive) |
//! | FO-2 | [`fo2_copy_logs`] | backup SQL host: share → copy folder |
//! | FO-3 | [`fo3_apply_logs`] | backup SQL: `RESTORE LOG … WITH NORECOVERY` in LSN order; the loss window |
//! | FO-4 | [`fo4_recover`] | backup SQL (destructive): end sessions, `RESTORE DATABASE [mgc] WITH RECOVERY` |
//! | FO-5 | [`fo5_pool_failed_over`] | Lync shell: `Set-CsPersistentChatState -PoolState FailedOver` |
//! | FO-6 | [`fo6_mirror`] | optional mirror of the new primary: skipped, see its doc |
//! | FO-7 | [`fo7_activate`] | Lync shell, chat servers: the backup data center's servers, latency-gated |
//!
//! Decisions:
//! - **Order** is the Microsoft topic's (remove log shipping, copy, apply, recover; pchat-dr.md
//!   §9 item 4), with the automation note applied: FO-1 is split so the metadata that
//!   `sp_delete_log_shipping_secondary_database` deletes (share, copy folder, last copied and
//!   restored file) is *persisted in the run* by a read-only step before the destructive one
//!   runs. A leader change between the two can no longer lose it.
//! - **Attestation**: a failover run cannot start without the operator's attestation that the
//!   primary data center is down (`Engine::start_run_attested`). The runbook adds a check of
//!   its own where it can (DESIGN §9 invariant 7, never two writable `mgc`): if an agent of the
//!   primary (or its mirror) is connected and reports `mgc` ONLINE, FO-1a and FO-4 refuse — the
//!   attestation is contradicted by what the coordinator can see.
//! - **Paths**: FO-2/FO-3 use the share and copy folder that msdb recorded (what the jobs really
//!   used, as the backup host writes them) and fall back to the topology's `share`/`copy_dir`
//!   when log shipping was already removed (a second run after a failed first one).
//! - `mgccomp` is not failed over (pchat-dr.md §2 premise): no step touches it.
//! - Destructive (approval needed): FO-1b (removing log shipping deletes the copy/restore jobs
//!   and their metadata) and FO-4 (WITH RECOVERY ends the restore sequence for good).

pub mod chain;
pub mod fo1_capture;
pub mod fo1_remove_log_shipping;
pub mod fo2_copy_logs;
pub mod fo3_apply_logs;
pub mod fo4_recover;
pub mod fo5_pool_failed_over;
pub mod fo6_mirror;
pub mod fo7_activate;
pub mod left;

use std::sync::Arc;

use failback_proto::model::AgentId;
use failback_proto::pb;
use serde_json::{Value, json};

use super::failback::{MGC, database_states, expect_output, mgc, op};
use super::{StepCtx, StepError, StepRef};
use crate::config::RunbookConfig;
use crate::topology::SqlRole;

/// The failover steps in execution order.
pub fn steps(_config: &RunbookConfig) -> Vec<StepRef> {
    vec![
        Arc::new(fo1_capture::CaptureLogShipping),
        Arc::new(fo1_remove_log_shipping::RemoveLogShipping),
        Arc::new(fo2_copy_logs::CopyLogs),
        Arc::new(fo3_apply_logs::ApplyLogs),
        Arc::new(fo4_recover::RecoverBackup),
        Arc::new(fo5_pool_failed_over::PoolFailedOver),
        Arc::new(fo6_mirror::MirrorNewPrimary),
        Arc::new(fo7_activate::ActivateBackupServers),
    ]
}

/// The log shipping secondary's configuration on the backup instance (None when `mgc` is no
/// secondary there any more).
pub async fn secondary_config(
    ctx: &StepCtx,
    backup: &AgentId,
) -> Result<
    (
        Option<pb::LogShippingSecondaryConfig>,
        Vec<pb::LogShippingMonitorRow>,
    ),
    StepError,
> {
    let out = ctx
        .read(
            backup,
            op(pb::operation::Kind::LogShippingStatus(
                pb::LogShippingStatus {
                    database: MGC.into(),
                },
            )),
        )
        .await?;
    let st = expect_output!(out, LogShipping, "log_shipping_status")?;
    let monitor = st
        .monitor
        .into_iter()
        .filter(|m| m.database.eq_ignore_ascii_case(MGC))
        .collect();
    Ok((st.secondary, monitor))
}

/// `mgc` on the instance of `agent` (`None` when it does not exist there).
pub async fn mgc_info(
    ctx: &StepCtx,
    agent: &AgentId,
) -> Result<Option<pb::DatabaseInfo>, StepError> {
    let states = database_states(ctx, agent, &[mgc()]).await?;
    Ok(states
        .into_iter()
        .find(|d| d.name.eq_ignore_ascii_case(MGC) && d.exists))
}

/// Whether a database is recovered and writable: ONLINE and not a log-shipping STANDBY copy
/// (which reads ONLINE too, read-only between restores).
pub fn recovered(d: &pb::DatabaseInfo) -> bool {
    d.state == "ONLINE" && !d.is_in_standby
}

/// How a state reads in messages (`RESTORING`, `ONLINE (STANDBY)`…).
pub fn describe_state(d: &pb::DatabaseInfo) -> String {
    if d.is_in_standby {
        format!("{} (STANDBY)", d.state)
    } else {
        d.state.clone()
    }
}

/// What FO-1a recorded, with the topology as the fallback for the paths.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// Log-shipping share (msdb `backup_source_directory`, else the topology's `share`).
    pub share: String,
    /// Copy folder (msdb `backup_destination_directory`, else the topology's `copy_dir`).
    pub copy_dir: String,
    /// Newest log backup the copy job copied (empty when unknown).
    pub last_copied_file: String,
    /// Newest log backup the restore job restored (empty when unknown).
    pub last_restored_file: String,
}

impl Captured {
    /// FO-1a's record (a run without one fails: the steps run in order).
    pub fn from_run(ctx: &StepCtx) -> Result<Self, StepError> {
        let c = ctx.prior(fo1_capture::NAME).ok_or_else(|| {
            StepError::fatal("FO-1a recorded no log shipping metadata for this pool")
        })?;
        let s = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let or = |v: String, fallback: &str| {
            if v.is_empty() {
                fallback.to_string()
            } else {
                v
            }
        };
        Ok(Captured {
            share: or(s("share"), &ctx.pool.share),
            copy_dir: or(s("copy_dir"), &ctx.pool.copy_dir),
            last_copied_file: s("last_copied_file"),
            last_restored_file: s("last_restored_file"),
        })
    }
}

/// DESIGN §9 invariant 7 (never two writable `mgc`), as far as the coordinator can see: for the
/// primary and its mirror, an agent that is connected is asked for `mgc`'s state, and ONLINE
/// refuses the failover. An agent that is not connected, or cannot read its instance, is what
/// the operator attested; the result records what was seen.
pub async fn primary_not_serving(ctx: &StepCtx) -> Result<Value, StepError> {
    let mut seen = Vec::new();
    for role in [SqlRole::Primary, SqlRole::PrimaryMirror] {
        let Some(inst) = ctx.pool.sql.get(&role) else {
            continue;
        };
        if !ctx.is_connected(&inst.agent) {
            seen.push(json!({ "role": role.as_str(), "agent": inst.agent.as_str(), "seen": "agent not connected" }));
            continue;
        }
        match mgc_info(ctx, &inst.agent).await {
            Ok(Some(d)) if recovered(&d) => {
                return Err(StepError::fatal(format!(
                    "the {} instance {} is reachable through its agent and reports {MGC} ONLINE: the primary data center is not down, and failing over would make a second writable {MGC} (stop the primary's {MGC} first, or fail back instead)",
                    role.as_str(),
                    inst.instance
                )));
            }
            Ok(d) => seen.push(json!({ "role": role.as_str(), "agent": inst.agent.as_str(), "seen": format!("{MGC} is {}", d.map_or_else(|| "absent".into(), |d| describe_state(&d))) })),
            Err(e) if matches!(e.class, super::ErrorClass::Retry | super::ErrorClass::Fatal) => {
                seen.push(json!({ "role": role.as_str(), "agent": inst.agent.as_str(), "seen": format!("cannot read its instance: {}", e.message) }));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Value::from(seen))
}

/// A name safe for an op-id label (`[A-Za-z0-9._-]`, others become `_`).
pub fn label_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect()
}

pub use chain::file_name;

/// Unix milliseconds as RFC 3339 UTC (empty for 0 = unknown).
pub fn rfc3339(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return String::new();
    }
    let nanos = i128::from(unix_ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(|t| {
            let ms = t.millisecond();
            let frac = if ms == 0 {
                String::new()
            } else {
                format!(".{ms:03}")
            };
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(label_part("mgc_2026 x.trn"), "mgc_2026_x.trn");
        assert_eq!(file_name(r"E:\copy\mgc_1.trn"), "mgc_1.trn");
        assert_eq!(file_name("/lab/copy/mgc_1.trn"), "mgc_1.trn");
        assert_eq!(rfc3339(0), "");
        assert_eq!(rfc3339(1_000), "1970-01-01T00:00:01Z");
        let names: Vec<&str> = steps(&RunbookConfig::default())
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(
            names,
            [
                "fo1_capture",
                "fo1_remove_log_shipping",
                "fo2_copy_logs",
                "fo3_apply_logs",
                "fo4_recover",
                "fo5_pool_failed_over",
                "fo6_mirror",
                "fo7_activate"
            ]
        );
    }
}
