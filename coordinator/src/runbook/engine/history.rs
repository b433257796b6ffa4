//! A pool's earlier runs as the run store recorded them, for the steps that clean up after
//! them (FB-8's backup retention): the runs of the same kind, other than the current one, in
//! which this pool finished every step, newest first, with this pool's step outputs.
//!
//! Decided: the store is read once per pool's part of a run, when a step first asks
//! (`StepCtx::earlier_runs`, only FB-8 does), at most [`HISTORY_LIMIT`] runs deep; a store that
//! cannot be read yields no history (logged), so a cleanup that depends on it does nothing
//! rather than guess.

use std::sync::Arc;

use super::END_STEP;
use crate::runbook::context::EarlierRun;
use crate::store::RunId;
use crate::store::{RunStoreRef, RunbookKind, StepStatus};

/// How many runs (of every kind and pool) are looked at.
const HISTORY_LIMIT: usize = 500;

/// The pool's earlier finished runs of `kind`, newest first.
pub(super) async fn earlier_runs(
    store: &RunStoreRef,
    current: &RunId,
    kind: RunbookKind,
    pool: &str,
) -> Arc<Vec<EarlierRun>> {
    let runs = match store.list_runs(HISTORY_LIMIT).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(pool, error = %e, "cannot read earlier runs: no retention this run");
            return Arc::new(Vec::new());
        }
    };
    let mut out = Vec::new();
    for r in runs {
        if &r.id == current
            || r.spec.kind != kind
            || !r.status.is_finished()
            || !r.spec.pools.iter().any(|p| p.eq_ignore_ascii_case(pool))
        {
            continue;
        }
        let snap = match store.get_run(&r.id).await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(pool, run = %r.id, error = %e, "cannot read an earlier run: no retention this run");
                return Arc::new(Vec::new());
            }
        };
        let Some(state) = snap
            .pools
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(pool))
            .map(|(_, s)| s)
        else {
            continue;
        };
        if state.step != END_STEP || state.status != StepStatus::Succeeded {
            continue;
        }
        let outputs = state
            .outputs
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.get("output").map(|o| (k.clone(), o.clone())))
                    .collect()
            })
            .unwrap_or_default();
        out.push(EarlierRun {
            id: r.id.clone(),
            created_unix_ms: r.created_unix_ms,
            outputs,
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.created_unix_ms));
    Arc::new(out)
}
