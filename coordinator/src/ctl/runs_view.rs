//! How failbackctl prints runs, run details and plans: aligned text for people, JSON (the proto
//! field names; `outputs` and `details` decoded) for scripts.

use failback_proto::pb;
use serde_json::{Value, json};

use super::output::Format;

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn summary_json(r: &pb::RunSummary) -> Value {
    json!({
        "run_id": r.run_id, "runbook": r.runbook, "status": r.status, "reason": r.reason,
        "pools": r.pools, "started_by": r.started_by, "created_unix_ms": r.created_unix_ms,
        "updated_unix_ms": r.updated_unix_ms, "max_parallel": r.max_parallel,
        "approved_at_start": r.approved_at_start, "attestation": r.attestation,
        "accepted_gap": (!r.accepted_gap_file.is_empty()).then(|| json!({
            "file": r.accepted_gap_file, "reason": r.accepted_gap_reason, "by": r.accepted_gap_by,
        })),
    })
}

/// `history`.
pub fn render_history(runs: &pb::ListRunsResponse, format: Format) -> String {
    match format {
        Format::Json => {
            json!({ "runs": runs.runs.iter().map(summary_json).collect::<Vec<_>>() }).to_string()
        }
        Format::Table => {
            if runs.runs.is_empty() {
                return "no runs yet".into();
            }
            let mut out = format!(
                "{:<24} {:<9} {:<18} {:<14} POOLS\n",
                "RUN", "RUNBOOK", "STATUS", "STARTED BY"
            );
            for r in &runs.runs {
                out.push_str(&format!(
                    "{:<24} {:<9} {:<18} {:<14} {}\n",
                    r.run_id,
                    r.runbook,
                    r.status,
                    r.started_by,
                    r.pools.join(",")
                ));
            }
            out.trim_end().to_string()
        }
    }
}

/// `status [RUN]`.
pub fn render_run(d: &pb::RunDetail, format: Format) -> String {
    let run = d.run.clone().unwrap_or_default();
    match format {
        Format::Json => json!({
            "run": summary_json(&run),
            "pools": d.pools.iter().map(|p| json!({
                "pool": p.pool, "step": p.step, "attempt": p.attempt, "status": p.status,
                "op_ids": p.op_ids, "outputs": parse(&p.outputs_json), "updated_unix_ms": p.updated_unix_ms,
                "operation": p.operation, "percent": p.percent, "agent": p.agent,
                "step_started_unix_ms": p.step_started_unix_ms, "progress_message": p.progress_message,
            })).collect::<Vec<_>>(),
            "audit": d.audit.iter().map(|a| json!({
                "seq": a.seq, "at_unix_ms": a.at_unix_ms, "caller": a.caller, "event": a.event,
                "details": parse(&a.details_json),
            })).collect::<Vec<_>>(),
        })
        .to_string(),
        Format::Table => {
            let mut out = format!(
                "run {} ({}) {}{}\nstarted by {}; pools {}; max parallel {}{}{}{}\n\n",
                run.run_id,
                run.runbook,
                run.status,
                if run.reason.is_empty() { String::new() } else { format!(": {}", run.reason) },
                run.started_by,
                run.pools.join(", "),
                run.max_parallel,
                if run.approved_at_start { "; approved at start" } else { "" },
                if run.attestation.is_empty() {
                    String::new()
                } else {
                    format!("\nattested primary down: {}", run.attestation)
                },
                if run.accepted_gap_file.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\naccepted the loss of the log chain's gap at {} ({}): {}",
                        run.accepted_gap_file, run.accepted_gap_by, run.accepted_gap_reason
                    )
                },
            );
            out.push_str(&format!("{:<28} {:<26} {:<8} STATUS\n", "POOL", "STEP", "ATTEMPT"));
            for p in &d.pools {
                // Live progress (leader's memory): the operation in flight, with its percent.
                let live = if p.operation.is_empty() {
                    String::new()
                } else {
                    let pct = p.percent.map(|x| format!(" {x}%")).unwrap_or_default();
                    format!(" ({}{pct} on {})", p.operation, p.agent)
                };
                out.push_str(&format!("{:<28} {:<26} {:<8} {}{live}\n", p.pool, p.step, p.attempt, p.status));
                if let Value::Object(steps) = parse(&p.outputs_json) {
                    // In the order they ran (FB-7 runs before FB-6 by default), not by name.
                    let started = |r: &Value| r.get("started_unix_ms").and_then(Value::as_u64).unwrap_or(u64::MAX);
                    let mut steps: Vec<(&String, &Value)> = steps.iter().collect();
                    steps.sort_by_key(|(_, r)| started(r));
                    for (name, rec) in steps {
                        let status = rec.get("status").and_then(Value::as_str).unwrap_or("");
                        let ms = rec.get("finished_unix_ms").and_then(Value::as_u64).unwrap_or(0)
                            .saturating_sub(rec.get("started_unix_ms").and_then(Value::as_u64).unwrap_or(0));
                        let why = rec.get("error").or_else(|| rec.get("reason")).and_then(Value::as_str).map(|s| format!(" — {s}")).unwrap_or_default();
                        out.push_str(&format!("    {name:<26} {status:<10} {ms} ms{why}\n"));
                    }
                }
            }
            out.push_str("\naudit:\n");
            for a in &d.audit {
                out.push_str(&format!(
                    "  {:>3} {} {:<28} {:<30} {}\n",
                    a.seq,
                    super::report_view::utc(a.at_unix_ms),
                    a.event,
                    a.caller,
                    a.details_json
                ));
            }
            out.trim_end().to_string()
        }
    }
}

/// `plan`.
pub fn render_plan(p: &pb::PlanResponse, format: Format) -> String {
    match format {
        Format::Json => json!({
            "waves": p.waves.iter().map(|w| w.pools.clone()).collect::<Vec<_>>(),
            "steps": p.steps.iter().map(|s| json!({
                "pool": s.pool, "step": s.step, "title": s.title, "destructive": s.destructive,
                "operations": s.operations.iter().map(|o| json!({ "agent": o.agent, "operation": o.operation, "detail": o.detail })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "findings": p.findings,
        })
        .to_string(),
        Format::Table => {
            let mut out = String::from("plan (dry run: nothing was changed)\n");
            for (i, w) in p.waves.iter().enumerate() {
                out.push_str(&format!("wave {}: {}\n", i + 1, w.pools.join(", ")));
            }
            let mut pool = "";
            for s in &p.steps {
                if s.pool != pool {
                    pool = &s.pool;
                    out.push_str(&format!("\npool {pool}\n"));
                }
                out.push_str(&format!("  {}{}\n", s.title, if s.destructive { "  [destructive: needs approval]" } else { "" }));
                for o in &s.operations {
                    out.push_str(&format!("    {} {}: {}\n", o.agent, o.operation, o.detail));
                }
            }
            out.push_str("\nfindings:\n");
            if p.findings.is_empty() {
                out.push_str("  none\n");
            }
            for f in &p.findings {
                out.push_str(&format!("  - {f}\n"));
            }
            out.trim_end().to_string()
        }
    }
}
