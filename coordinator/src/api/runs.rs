//! The run calls of the Control API: conversion between the engine's records and the wire
//! messages, and the handlers' bodies (the `Control` trait impl in `control.rs` delegates here).

use failback_proto::identity::{PeerIdentity, Role};
use failback_proto::pb;

use crate::error::Error;
use crate::registry::Registry;
use crate::runbook::engine::{Caller, Engine, Plan};
use crate::store::{AuditRecord, RunId, RunOptions, RunRecord, RunSnapshot, RunbookKind};

fn status_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The caller as the engine sees it.
pub fn caller(id: &PeerIdentity) -> Caller {
    Caller {
        name: id.name.clone(),
        approver: id.has(Role::Approver),
    }
}

fn kind(runbook: &str) -> Result<RunbookKind, Error> {
    match runbook {
        "" | "failback" => Ok(RunbookKind::Failback),
        "failover" => Ok(RunbookKind::Failover),
        "drill" => Ok(RunbookKind::Drill),
        other => Err(Error::InvalidInput(format!(
            "unknown runbook '{other}' (failback, failover, drill)"
        ))),
    }
}

fn pools(pools: Vec<String>, all: bool) -> Result<Vec<String>, Error> {
    match (pools.is_empty(), all) {
        (true, false) => Err(Error::InvalidInput(
            "name the pools (--pool P) or ask for --all".into(),
        )),
        (false, true) => Err(Error::InvalidInput(
            "give either pools or --all, not both".into(),
        )),
        _ => Ok(pools),
    }
}

fn run_id(s: &str) -> Result<RunId, Error> {
    RunId::new(s).map_err(Error::InvalidInput)
}

/// `RunRecord` → `RunSummary`.
pub fn summary(r: &RunRecord) -> pb::RunSummary {
    pb::RunSummary {
        run_id: r.id.to_string(),
        runbook: status_text(&r.spec.kind),
        status: status_text(&r.status),
        reason: r.reason.clone().unwrap_or_default(),
        pools: r.spec.pools.clone(),
        started_by: r.spec.started_by.clone(),
        created_unix_ms: r.created_unix_ms,
        updated_unix_ms: r.updated_unix_ms,
        max_parallel: r.spec.options.max_parallel,
        approved_at_start: r.spec.options.approved_at_start,
        attestation: r.spec.attestation.clone().unwrap_or_default(),
        accepted_gap_file: r
            .spec
            .accepted_gap
            .as_ref()
            .map(|g| g.file.clone())
            .unwrap_or_default(),
        accepted_gap_reason: r
            .spec
            .accepted_gap
            .as_ref()
            .map(|g| g.reason.clone())
            .unwrap_or_default(),
        accepted_gap_by: r
            .spec
            .accepted_gap
            .as_ref()
            .map(|g| g.accepted_by.clone())
            .unwrap_or_default(),
    }
}

/// When `step` of `pool` started: its first `step.started` (or, after a leader change with no
/// earlier record, `step.resumed`) in the audit trail. 0 when the trail has none.
fn step_started(audit: &[AuditRecord], pool: &str, step: &str) -> u64 {
    audit
        .iter()
        .find(|a| {
            (a.event == "step.started" || a.event == "step.resumed")
                && a.details.get("pool").and_then(|v| v.as_str()) == Some(pool)
                && a.details.get("step").and_then(|v| v.as_str()) == Some(step)
        })
        .map_or(0, |a| a.at_unix_ms)
}

/// Adds what only the leader's memory knows: the operation in flight and its percent.
fn live(mut p: pb::PoolProgress, registry: Option<&Registry>) -> pb::PoolProgress {
    if let Some(f) = registry.and_then(|r| r.in_flight(&p.op_ids)) {
        p.operation = f.operation;
        p.percent = f.percent;
        p.agent = f.agent;
        p.progress_message = f.message;
    }
    p
}

fn detail(
    snap: RunSnapshot,
    audit: Vec<AuditRecord>,
    registry: Option<&Registry>,
) -> pb::RunDetail {
    let pools = snap
        .run
        .spec
        .pools
        .iter()
        .map(|p| match snap.pools.get(p) {
            Some(s) => live(
                pb::PoolProgress {
                    pool: p.clone(),
                    step: s.step.clone(),
                    attempt: s.attempt,
                    status: status_text(&s.status),
                    op_ids: s.op_ids.clone(),
                    outputs_json: s.outputs.to_string(),
                    updated_unix_ms: s.updated_unix_ms,
                    step_started_unix_ms: step_started(&audit, p, &s.step),
                    ..Default::default()
                },
                registry,
            ),
            None => pb::PoolProgress {
                pool: p.clone(),
                status: "not_started".into(),
                ..Default::default()
            },
        })
        .collect();
    pb::RunDetail {
        run: Some(summary(&snap.run)),
        pools,
        audit: audit
            .into_iter()
            .map(|a| pb::AuditEntry {
                seq: a.seq,
                at_unix_ms: a.at_unix_ms,
                caller: a.caller,
                event: a.event,
                details_json: a.details.to_string(),
            })
            .collect(),
    }
}

/// StartRun.
pub async fn start(
    engine: &Engine,
    who: &PeerIdentity,
    req: pb::StartRunRequest,
) -> Result<pb::StartRunResponse, Error> {
    let kind = kind(&req.runbook)?;
    let pools = pools(req.pools, req.all)?;
    let options = RunOptions {
        max_parallel: req.max_parallel.max(1),
        approved_at_start: req.yes,
        continue_on_failure: req.continue_on_failure,
    };
    // Required for a failover, refused for the others: checked by the engine
    // (`check_attestation`), so every entry point gets the same answer.
    // An accepted gap (failover, approver role) likewise: `runbook::decisions::accepted_gap`.
    let decisions = crate::runbook::StartDecisions {
        attestation: Some(req.attestation).filter(|a| !a.is_empty()),
        accept_gap: (!req.accept_gap_file.is_empty() || !req.accept_gap_reason.is_empty())
            .then_some((req.accept_gap_file, req.accept_gap_reason)),
    };
    let id = engine
        .start_run_attested(&caller(who), kind, pools, options, decisions)
        .await?;
    Ok(pb::StartRunResponse {
        run_id: id.to_string(),
    })
}

/// GetRun (empty id = newest run). `registry` (the leader's) adds live progress.
pub async fn get(
    engine: &Engine,
    registry: Option<&Registry>,
    req: pb::GetRunRequest,
) -> Result<pb::RunDetail, Error> {
    let id = if req.run_id.is_empty() {
        engine
            .list(1)
            .await?
            .into_iter()
            .next()
            .map(|r| r.id)
            .ok_or_else(|| Error::NotFound("no run yet".into()))?
    } else {
        run_id(&req.run_id)?
    };
    let (snap, audit) = engine.get(&id).await?;
    Ok(detail(snap, audit, registry))
}

/// ListRuns.
pub async fn list(
    engine: &Engine,
    req: pb::ListRunsRequest,
) -> Result<pb::ListRunsResponse, Error> {
    let limit = if req.limit == 0 {
        50
    } else {
        req.limit.min(1000)
    };
    let runs = engine.list(usize::try_from(limit).unwrap_or(50)).await?;
    Ok(pb::ListRunsResponse {
        runs: runs.iter().map(summary).collect(),
    })
}

/// Which operator call.
#[derive(Debug, Clone, Copy)]
pub enum RunCall {
    /// Approve.
    Approve,
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Abort.
    Abort,
}

/// Approve / Pause / Resume / Abort.
pub async fn control(
    engine: &Engine,
    who: &PeerIdentity,
    call: RunCall,
    req: pb::RunRequest,
) -> Result<pb::RunAck, Error> {
    let id = run_id(&req.run_id)?;
    let c = caller(who);
    match call {
        RunCall::Approve => engine.approve(&c, &id).await?,
        RunCall::Pause => engine.pause(&c, &id).await?,
        RunCall::Resume => engine.resume(&c, &id).await?,
        RunCall::Abort => engine.abort(&c, &id).await?,
    }
    let (snap, _) = engine.get(&id).await?;
    Ok(pb::RunAck {
        run_id: id.to_string(),
        status: status_text(&snap.run.status),
    })
}

/// Plan.
pub fn plan(engine: &Engine, req: pb::PlanRequest) -> Result<pb::PlanResponse, Error> {
    let kind = kind(&req.runbook)?;
    let pools = pools(req.pools, req.all)?;
    let p: Plan = engine.plan(kind, pools, req.max_parallel.max(1))?;
    Ok(pb::PlanResponse {
        steps: p
            .steps
            .into_iter()
            .map(|s| pb::PlannedStep {
                pool: s.pool,
                step: s.step,
                title: s.title,
                destructive: s.destructive,
                operations: s
                    .operations
                    .into_iter()
                    .map(|o| pb::PlannedOperation {
                        agent: o.agent,
                        operation: o.operation,
                        detail: o.detail,
                    })
                    .collect(),
            })
            .collect(),
        findings: p.findings,
        waves: p
            .waves
            .into_iter()
            .map(|pools| pb::Wave { pools })
            .collect(),
    })
}
