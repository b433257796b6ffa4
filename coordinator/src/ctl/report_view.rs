//! `failbackctl report RUN`: the evidence report of a run, built from what `GetRun` returns (the
//! run record, each pool's per-step records, the audit trail). Markdown (tables) for the change
//! ticket and the post-incident review; JSON (one document, stable keys) for machines.
//!
//! Contents: the run (runbook, who started it, the operator's attestation when the run carries
//! one, status, start / end / duration, approval), per pool per step the status, attempts, start /
//! end / duration and the outputs that prove what happened ("facts": backup file, SHA-256, LSNs,
//! restored state, log shipping verification, latency measurements, active servers), a failover's
//! data-loss window (`loss_window` in a step output), every approval and every operator call with
//! the caller's certificate name, and each pool's final state.
//!
//! Decided: facts are picked by key from the step outputs (whatever the step, wherever in its
//! output), so a new step's evidence shows up without touching this file as long as it uses the
//! same words (`file`, `sha256`, `last_lsn`, …); the JSON also carries every output whole. Steps
//! are listed in the order they started, not by name. The attestation is the run's own typed
//! field (`RunSummary.attestation`, given with the start by the operator who started it; issue
//! #13 found the report guessing at it in three places of the audit details).

use failback_proto::pb;
use serde_json::{Map, Value, json};

use super::watch_view::clock;

/// Output keys that are evidence, with the label the Markdown shows.
const FACTS: &[(&str, &str)] = &[
    ("file", "file"),
    ("sha256", "SHA-256"),
    ("size", "size (bytes)"),
    ("first_lsn", "first LSN"),
    ("last_lsn", "last LSN"),
    ("checkpoint_lsn", "checkpoint LSN"),
    ("database_backup_lsn", "database backup LSN"),
    ("verified", "verified"),
    ("state", "state"),
    ("last_restored_file", "last restored log"),
    ("jobs", "jobs run"),
    ("previously_active", "previously active"),
    ("active_servers", "active servers"),
    ("activated", "activated"),
    ("endpoint", "endpoint"),
    ("measured", "latency measured"),
    ("refused", "refused"),
    ("not_measured", "not measured"),
    ("removed", "removed"),
    ("detail", "detail"),
    ("backup_frozen", "backup copy"),
    ("copied", "logs copied"),
    ("share_error", "share unreachable"),
    ("applied", "logs applied"),
    ("killed", "sessions ended"),
    ("drained_ms", "drained in (ms)"),
    ("checked", "checked"),
    ("already_configured", "already configured"),
    ("ended_sessions", "sessions ended"),
];

/// Keys of a `loss_window` object, with labels, in the order shown.
const LOSS_WINDOW: &[(&str, &str)] = &[
    ("last_restored_file", "Last restored log"),
    ("last_restored_lsn", "Last restored LSN"),
    ("last_restored_backup_time", "Last restored backup taken"),
    ("last_backup_known_file", "Last log backup known"),
    ("last_backup_known_time", "Last log backup known taken"),
    ("window_seconds", "Window (seconds)"),
    ("files_missing", "Files missing"),
    ("share_reachable", "Share reachable"),
    ("note", "Note"),
];

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// `2026-11-26 09:10:00 UTC` (empty for 0).
pub fn utc(ms: u64) -> String {
    if ms == 0 {
        return String::new();
    }
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2.1 s`, `1:05` (m:ss) from a minute on.
fn duration(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        clock(ms)
    }
}

fn u64_at(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn str_at<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Collects the evidence keys of `v` with their dotted paths (`seed.sha256`).
fn collect_facts(v: &Value, path: &str, out: &mut Map<String, Value>) {
    let Value::Object(m) = v else { return };
    for (k, x) in m {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if k == "loss_window" {
            continue;
        }
        if FACTS.iter().any(|(f, _)| f == k) {
            out.insert(here, x.clone());
        } else if x.is_object() {
            collect_facts(x, &here, out);
        }
    }
}

/// FO-3's loss window, typed (`records::AppliedLogs`): the one place a run records it (issue
/// #13: the report searched every output for a `loss_window` key). Null for a run without FO-3;
/// a record that does not read says so instead of vanishing.
fn loss_window(outputs: &Value) -> Value {
    use crate::runbook::records::{AppliedLogs, StepRecord};
    match outputs.get(AppliedLogs::STEP).and_then(|s| s.get("output")) {
        None => Value::Null,
        Some(o) if o.get("loss_window").is_none() => Value::Null,
        Some(o) => match AppliedLogs::from_output(o) {
            Ok(r) => serde_json::to_value(r.loss_window).unwrap_or(Value::Null),
            Err(e) => json!({ "note": e.message }),
        },
    }
}

/// A fact's value in words: lists joined, latency as `server 312 µs`, refusals with reasons.
fn words(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "none".into(),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::Object(o) if o.contains_key("job") => {
                    let job = o.get("job").map(words).unwrap_or_default();
                    match o.get("message").map(words) {
                        Some(m) if !m.is_empty() => format!("{job} ({m})"),
                        _ => job,
                    }
                }
                // Sessions ended in one database: `mgc: 1`.
                Value::Object(o) if o.contains_key("database") && o.contains_key("sessions") => {
                    format!(
                        "{}: {}",
                        o.get("database").map(words).unwrap_or_default(),
                        o.get("sessions").map(words).unwrap_or_default()
                    )
                }
                // A log backup copied or applied: its file name and LSN range.
                Value::Object(o) if o.contains_key("file") && o.contains_key("last_lsn") => {
                    format!(
                        "{} (LSN {}–{})",
                        file_name(o),
                        o.get("first_lsn").map(words).unwrap_or_default(),
                        o.get("last_lsn").map(words).unwrap_or_default()
                    )
                }
                Value::Object(o) if o.contains_key("file") => file_name(o),
                Value::Object(o) if o.contains_key("server") => {
                    let server = o.get("server").map(words).unwrap_or_default();
                    match (o.get("median_us"), o.get("reason")) {
                        (Some(us), Some(r)) => format!("{server} {} µs ({})", words(us), words(r)),
                        (Some(us), None) => format!("{server} {} µs", words(us)),
                        (None, Some(r)) => format!("{server} ({})", words(r)),
                        (None, None) => server,
                    }
                }
                other => words(other),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// The last component of an object's `file` path (drive, UNC or POSIX).
fn file_name(o: &Map<String, Value>) -> String {
    let file = o.get("file").map(words).unwrap_or_default();
    file.rsplit(['/', '\\']).next().unwrap_or(&file).to_string()
}

fn label(path: &str) -> String {
    let (prefix, key) = path.rsplit_once('.').unwrap_or(("", path));
    let name = FACTS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(key, |(_, l)| l);
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{} {name}", prefix.replace('.', " "))
    }
}

/// Where a fact goes in a cell: grouped by its parent path, then in [`FACTS`] order (file,
/// SHA-256, LSNs… reads better than alphabetical).
fn rank(path: &str) -> (String, usize) {
    let (prefix, key) = path.rsplit_once('.').unwrap_or(("", path));
    let i = FACTS
        .iter()
        .position(|(k, _)| *k == key)
        .unwrap_or(FACTS.len());
    (prefix.to_string(), i)
}

/// Markdown cells cannot hold `|` or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The attestation the run carries, if any: given at the start, by the operator who started it.
fn attestation(run: &pb::RunSummary) -> Option<Value> {
    (!run.attestation.is_empty()).then(|| {
        json!({ "text": run.attestation, "by": run.started_by, "at_unix_ms": run.created_unix_ms })
    })
}

fn is_operator(a: &pb::AuditEntry) -> bool {
    !a.caller.starts_with("coordinator:")
}

/// The report as one JSON document.
pub fn report_json(d: &pb::RunDetail) -> Value {
    let run = d.run.clone().unwrap_or_default();
    let finished_at = d
        .audit
        .iter()
        .rev()
        .find(|a| a.event == "run.finished" || a.event == "run.aborted")
        .map(|a| a.at_unix_ms)
        .or_else(|| {
            matches!(run.status.as_str(), "succeeded" | "failed" | "aborted")
                .then_some(run.updated_unix_ms)
        });
    let pools: Vec<Value> = d.pools.iter().map(pool_json).collect();
    let approvals: Vec<Value> = d
        .audit
        .iter()
        .filter(|a| a.event == "run.approved")
        .map(|a| {
            let det = parse(&a.details_json);
            json!({
                "by": a.caller, "at_unix_ms": a.at_unix_ms,
                "at_start": det.get("at_start").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect();
    let calls: Vec<Value> = d
        .audit
        .iter()
        .filter(|a| is_operator(a))
        .map(|a| {
            json!({
                "seq": a.seq, "at_unix_ms": a.at_unix_ms, "by": a.caller, "event": a.event,
                "details": parse(&a.details_json),
            })
        })
        .collect();
    json!({
        "report_version": 1,
        "run": {
            "run_id": run.run_id, "runbook": run.runbook, "status": run.status,
            "reason": run.reason, "started_by": run.started_by, "attestation": attestation(&run),
            "pools": run.pools, "max_parallel": run.max_parallel,
            "approved_at_start": run.approved_at_start,
            "started_unix_ms": run.created_unix_ms, "finished_unix_ms": finished_at,
            "duration_ms": finished_at.map(|f| f.saturating_sub(run.created_unix_ms)),
        },
        "pools": pools,
        "approvals": approvals,
        "leaders": super::report_leaders::leaders(&d.audit),
        "operator_calls": calls,
    })
}

/// What the systems looked like when the steps that set them verified them: the pool state,
/// its active servers, the `mgc` now in use, log shipping. Only what a step recorded; an
/// unfinished run shows what it reached.
fn systems(outputs: &Value) -> Map<String, Value> {
    let out_of = |step: &str| outputs.get(step).and_then(|r| r.get("output"));
    let first = |steps: &[&str], key: &str| {
        steps
            .iter()
            .find_map(|s| out_of(s).and_then(|o| o.get(key)).cloned())
    };
    let mut m = Map::new();
    if let Some(v) = first(&["fb7_pool_normal", "fo5_pool_failed_over"], "state") {
        m.insert("pool_state".into(), v);
    }
    if let Some(v) = first(&["fb6_activate", "fo7_activate"], "activated") {
        m.insert("active_servers".into(), v);
    }
    if let Some(v) = first(&["fb4_restore", "fo4_recover"], "state") {
        m.insert("mgc_state".into(), v);
    }
    if let Some(v) = first(&["fb4_restore", "fo3_apply_logs"], "last_lsn") {
        m.insert("mgc_last_lsn".into(), v);
    }
    if let Some(v) = out_of("fb5_log_shipping")
        .and_then(|o| o.get("cycle"))
        .and_then(|c| c.get("last_restored_file"))
        .cloned()
    {
        m.insert("log_shipping_last_restored".into(), v);
    }
    m
}

fn pool_json(p: &pb::PoolProgress) -> Value {
    let outputs = parse(&p.outputs_json);
    let mut steps: Vec<Value> = outputs
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, rec)| {
                    let output = rec.get("output").cloned().unwrap_or(Value::Null);
                    let mut facts = Map::new();
                    collect_facts(&output, "", &mut facts);
                    let (start, end) = (
                        u64_at(rec, "started_unix_ms"),
                        u64_at(rec, "finished_unix_ms"),
                    );
                    json!({
                        "step": name, "status": str_at(rec, "status"),
                        "attempts": u64_at(rec, "attempts"),
                        "started_unix_ms": start, "finished_unix_ms": end,
                        "duration_ms": end.saturating_sub(start),
                        "how": rec.get("how"), "error": rec.get("error"), "reason": rec.get("reason"),
                        "facts": facts, "output": output,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    // The step in progress has no record yet.
    if !p.step.is_empty()
        && p.step != crate::runbook::engine::END_STEP
        && !steps.iter().any(|s| s["step"] == p.step.as_str())
    {
        steps.push(json!({
            "step": p.step, "status": p.status, "attempts": p.attempt,
            "started_unix_ms": p.step_started_unix_ms, "finished_unix_ms": null,
            "duration_ms": null, "facts": {}, "output": null,
        }));
    }
    steps.sort_by_key(|s| {
        (
            s["started_unix_ms"].as_u64().unwrap_or(u64::MAX),
            s["step"].as_str().unwrap_or("").to_string(),
        )
    });
    let loss = loss_window(&outputs);
    json!({
        "pool": p.pool,
        "final_state": { "step": p.step, "status": p.status, "systems": systems(&outputs) },
        "steps": steps,
        "loss_window": loss,
    })
}

/// The report as Markdown.
pub fn report_md(d: &pb::RunDetail) -> String {
    let doc = report_json(d);
    let r = &doc["run"];
    let s = |v: &Value| words(v);
    let ms = |v: &Value| v.as_u64().map(utc).unwrap_or_else(|| "-".into());
    let mut out = format!("# Evidence report: run {}\n\n", s(&r["run_id"]));
    out.push_str("| | |\n|---|---|\n");
    let mut row = |k: &str, v: String| out.push_str(&format!("| {k} | {} |\n", cell(&v)));
    row("Runbook", s(&r["runbook"]));
    row("Status", {
        let reason = s(&r["reason"]);
        if reason.is_empty() {
            s(&r["status"])
        } else {
            format!("{}: {reason}", s(&r["status"]))
        }
    });
    row("Started by", s(&r["started_by"]));
    if let Some(a) = r["attestation"].as_object() {
        row(
            "Attestation",
            format!(
                "{} (by {}, {})",
                a.get("text").map(words).unwrap_or_default(),
                a.get("by").map(words).unwrap_or_default(),
                a.get("at_unix_ms")
                    .and_then(Value::as_u64)
                    .map(utc)
                    .unwrap_or_default()
            ),
        );
    }
    row("Pools", s(&r["pools"]));
    row("Started", ms(&r["started_unix_ms"]));
    row("Ended", ms(&r["finished_unix_ms"]));
    row(
        "Duration",
        r["duration_ms"].as_u64().map_or("-".into(), duration),
    );
    let approvals = doc["approvals"].as_array().cloned().unwrap_or_default();
    row(
        "Approval",
        if approvals.is_empty() {
            "none recorded".into()
        } else {
            approvals
                .iter()
                .map(|a| {
                    format!(
                        "{} at {}{}",
                        s(&a["by"]),
                        ms(&a["at_unix_ms"]),
                        if a["at_start"] == true {
                            " (--yes at start)"
                        } else {
                            ""
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    );
    let leaders = doc["leaders"].as_array().cloned().unwrap_or_default();
    row(
        "Coordinators",
        if leaders.is_empty() {
            "none recorded".into()
        } else {
            leaders
                .iter()
                .map(|l| {
                    format!(
                        "{} from {}{}",
                        s(&l["coordinator"]),
                        ms(&l["from_unix_ms"]),
                        if l["took_over"] == true {
                            format!(" (took over: {})", s(&l["first_event"]))
                        } else {
                            String::new()
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    );

    for p in doc["pools"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n## Pool {}\n\nFinal state: step `{}`, {}\n\n",
            s(&p["pool"]),
            s(&p["final_state"]["step"]),
            s(&p["final_state"]["status"]).replace('_', " ")
        ));
        let systems = p["final_state"]["systems"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if !systems.is_empty() {
            let say =
                |k: &str, label: &str| systems.get(k).map(|v| format!("{label} {}", words(v)));
            let parts: Vec<String> = [
                say("pool_state", "pool"),
                say("active_servers", "active servers"),
                say("mgc_state", "mgc"),
                say("mgc_last_lsn", "mgc last LSN"),
                say(
                    "log_shipping_last_restored",
                    "log shipping verified, last restored",
                ),
            ]
            .into_iter()
            .flatten()
            .collect();
            out.push_str(&format!(
                "Systems as the steps verified them: {}\n\n",
                parts.join("; ")
            ));
        }
        out.push_str("| Step | Status | Attempts | Started | Ended | Duration | Evidence |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for st in p["steps"].as_array().into_iter().flatten() {
            let mut facts: Vec<(&String, &Value)> = st["facts"]
                .as_object()
                .map(|f| f.iter().collect())
                .unwrap_or_default();
            facts.sort_by_key(|(k, _)| rank(k));
            let mut evidence: Vec<String> = facts
                .iter()
                .map(|(k, v)| format!("{}: {}", label(k), words(v)))
                .collect();
            for k in ["error", "reason"] {
                if let Some(t) = st[k].as_str() {
                    evidence.insert(0, format!("{k}: {t}"));
                }
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                s(&st["step"]),
                s(&st["status"]).replace('_', " "),
                s(&st["attempts"]),
                ms(&st["started_unix_ms"]),
                ms(&st["finished_unix_ms"]),
                st["duration_ms"].as_u64().map_or("-".into(), duration),
                cell(&evidence.join("<br>"))
            ));
        }
        if let Some(w) = p["loss_window"].as_object() {
            out.push_str("\n### Data-loss window\n\n| | |\n|---|---|\n");
            for (k, l) in LOSS_WINDOW {
                if let Some(v) = w.get(*k) {
                    out.push_str(&format!("| {l} | {} |\n", cell(&words(v))));
                }
            }
        }
    }

    out.push_str("\n## Operator calls\n\n| At | Caller | Event | Details |\n|---|---|---|---|\n");
    for c in doc["operator_calls"].as_array().into_iter().flatten() {
        let details = match &c["details"] {
            Value::Object(m) if m.is_empty() => String::new(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            ms(&c["at_unix_ms"]),
            cell(&s(&c["by"])),
            cell(&s(&c["event"])),
            cell(&details)
        ));
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-26 09:00:00 UTC.
    const T0: u64 = 1_795_683_600_000;

    fn audit(seq: u64, at: u64, caller: &str, event: &str, details: Value) -> pb::AuditEntry {
        pb::AuditEntry {
            seq,
            at_unix_ms: T0 + at,
            caller: caller.into(),
            event: event.into(),
            details_json: details.to_string(),
        }
    }

    fn failback() -> pb::RunDetail {
        let outputs = json!({
            "fb3_backup": {
                "status": "succeeded", "attempts": 1, "how": "acted",
                "started_unix_ms": T0 + 2_000, "finished_unix_ms": T0 + 5_500,
                "output": { "file": "/share/mgc_r1.bak", "sha256": "ab".repeat(32), "size": 4096,
                            "first_lsn": "31000000010000001", "last_lsn": "31000000020000001",
                            "verified": true, "files": [{ "logical_name": "mgc" }] },
            },
            "fb1_clear_active": {
                "status": "succeeded", "attempts": 2, "how": "acted",
                "started_unix_ms": T0 + 1_000, "finished_unix_ms": T0 + 2_000,
                "output": { "previously_active": ["pc01.dc2.lab"], "killed": [],
                            "agent_access_check": { "checked": false } },
            },
            "fb6_activate": {
                "status": "succeeded", "attempts": 1, "how": "acted",
                "started_unix_ms": T0 + 70_000, "finished_unix_ms": T0 + 71_000,
                "output": { "activated": ["pc01.dc1.lab"],
                            "measured": [{ "server": "pc01.dc1.lab", "median_us": 312 }],
                            "refused": [] },
            },
        });
        pb::RunDetail {
            run: Some(pb::RunSummary {
                run_id: "r-1".into(),
                runbook: "failback".into(),
                status: "succeeded".into(),
                pools: vec!["pchat01.lab.local".into()],
                started_by: "operator1".into(),
                created_unix_ms: T0,
                updated_unix_ms: T0 + 72_000,
                max_parallel: 1,
                ..Default::default()
            }),
            pools: vec![pb::PoolProgress {
                pool: "pchat01.lab.local".into(),
                step: "done".into(),
                attempt: 1,
                status: "succeeded".into(),
                outputs_json: outputs.to_string(),
                ..Default::default()
            }],
            audit: vec![
                audit(
                    1,
                    0,
                    "operator1",
                    "run.created",
                    json!({ "kind": "failback", "pools": ["pchat01.lab.local"] }),
                ),
                audit(
                    2,
                    1_000,
                    "coordinator:coord1",
                    "step.started",
                    json!({ "pool": "pchat01.lab.local", "step": "fb1_clear_active" }),
                ),
                audit(
                    3,
                    6_000,
                    "operator2",
                    "approve.denied",
                    json!({ "reason": "no approver role" }),
                ),
                audit(4, 9_000, "approver1", "run.approved", json!({})),
                audit(
                    5,
                    72_000,
                    "coordinator:coord1",
                    "run.finished",
                    json!({ "status": "succeeded" }),
                ),
            ],
        }
    }

    #[test]
    fn facts_read_as_words() {
        assert_eq!(
            words(
                &json!([{ "job": "LSBackup_mgc", "instance_id": 3, "message": "ok" }, { "job": "LSCopy_mgc" }])
            ),
            "LSBackup_mgc (ok), LSCopy_mgc"
        );
        assert_eq!(
            words(&json!([{ "server": "pc01", "median_us": 900, "reason": "above the limit" }])),
            "pc01 900 µs (above the limit)"
        );
        assert_eq!(words(&json!([])), "none");
        assert_eq!(label("cycle.last_restored_file"), "cycle last restored log");
        assert_eq!(utc(0), "");
    }

    #[test]
    fn json_carries_the_evidence_in_step_order() {
        let doc = report_json(&failback());
        assert_eq!(doc["run"]["duration_ms"], 72_000);
        assert_eq!(doc["run"]["attestation"], Value::Null);
        let steps = doc["pools"][0]["steps"].as_array().unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
        assert_eq!(names, ["fb1_clear_active", "fb3_backup", "fb6_activate"]);
        let fb3 = &steps[1];
        assert_eq!(fb3["duration_ms"], 3_500);
        assert_eq!(fb3["facts"]["file"], "/share/mgc_r1.bak");
        assert_eq!(fb3["facts"]["sha256"], "ab".repeat(32));
        assert_eq!(fb3["facts"]["last_lsn"], "31000000020000001");
        assert_eq!(fb3["output"]["files"][0]["logical_name"], "mgc");
        assert_eq!(
            steps[0]["facts"]["agent_access_check.checked"],
            Value::Bool(false)
        );
        assert_eq!(doc["approvals"][0]["by"], "approver1");
        assert_eq!(doc["approvals"][0]["at_start"], false);
        // Operator calls: every caller that is not the engine, the refused one included.
        let calls: Vec<&str> = doc["operator_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["event"].as_str().unwrap())
            .collect();
        assert_eq!(calls, ["run.created", "approve.denied", "run.approved"]);
        assert_eq!(doc["pools"][0]["loss_window"], Value::Null);
    }

    #[test]
    fn markdown_has_the_run_steps_and_calls_as_tables() {
        let md = report_md(&failback());
        for line in [
            "# Evidence report: run r-1",
            "| Started by | operator1 |",
            "| Started | 2026-11-26 09:00:00 UTC |",
            "| Ended | 2026-11-26 09:01:12 UTC |",
            "| Duration | 1:12 |",
            "| Approval | approver1 at 2026-11-26 09:00:09 UTC |",
            "Final state: step `done`, succeeded",
            "| fb1_clear_active | succeeded | 2 | 2026-11-26 09:00:01 UTC | 2026-11-26 09:00:02 UTC | 1.0 s | previously active: pc01.dc2.lab<br>sessions ended: none<br>agent_access_check checked: false |",
            "| fb6_activate | succeeded | 1 | 2026-11-26 09:01:10 UTC | 2026-11-26 09:01:11 UTC | 1.0 s | activated: pc01.dc1.lab<br>latency measured: pc01.dc1.lab 312 µs<br>refused: none |",
            "| 2026-11-26 09:00:06 UTC | operator2 | approve.denied | {\"reason\":\"no approver role\"} |",
        ] {
            assert!(md.lines().any(|l| l == line), "missing {line:?} in\n{md}");
        }
        let fb3 = md.lines().find(|l| l.starts_with("| fb3_backup ")).unwrap();
        assert!(fb3.contains("| 3.5 s |"), "{fb3}");
        assert!(
            fb3.contains(&format!("SHA-256: {}", "ab".repeat(32))),
            "{fb3}"
        );
        assert!(fb3.contains("first LSN: 31000000010000001"), "{fb3}");
        let systems = md
            .lines()
            .find(|l| l.starts_with("Systems as the steps verified them:"))
            .unwrap_or_else(|| panic!("no systems line in\n{md}"));
        assert!(systems.contains("active servers pc01.dc1.lab"), "{systems}");
        assert!(!md.contains("Attestation"), "{md}");
        assert!(!md.contains("Data-loss window"), "{md}");
    }

    #[test]
    fn a_failover_shows_its_attestation_loss_window_and_running_step() {
        let mut d = failback();
        let run = d.run.as_mut().unwrap();
        run.runbook = "failover".into();
        run.status = "running".into();
        run.attestation = "DC1 lost power at 08:50".into();
        // What the audit trail says is not where the report looks.
        d.audit[0].details_json =
            json!({ "kind": "failover", "options": { "attestation": "something else" } })
                .to_string();
        d.audit.truncate(4);
        d.pools[0].step = "fo4_recover".into();
        d.pools[0].status = "running".into();
        d.pools[0].step_started_unix_ms = T0 + 80_000;
        d.pools[0].outputs_json = json!({
            "fo3_apply_logs": {
                "status": "succeeded", "attempts": 1,
                "started_unix_ms": T0 + 10_000, "finished_unix_ms": T0 + 20_000,
                "output": { "applied": 3, "loss_window": {
                    "last_restored_file": "mgc_0830.trn", "last_restored_lsn": "42",
                    "last_restored_backup_time": "2026-11-26T08:30:00Z",
                    "last_backup_known_file": "mgc_0845.trn",
                    "last_backup_known_time": "2026-11-26T08:45:00Z",
                    "window_seconds": 900, "files_missing": ["mgc_0845.trn"], "share_reachable": false,
                } },
            },
        })
        .to_string();
        let doc = report_json(&d);
        assert_eq!(doc["run"]["attestation"]["text"], "DC1 lost power at 08:50");
        assert_eq!(doc["run"]["attestation"]["by"], "operator1");
        assert_eq!(doc["run"]["finished_unix_ms"], Value::Null);
        assert_eq!(doc["pools"][0]["loss_window"]["window_seconds"], 900);
        let steps = doc["pools"][0]["steps"].as_array().unwrap();
        assert_eq!(steps[1]["step"], "fo4_recover");
        assert_eq!(steps[1]["status"], "running");
        let md = report_md(&d);
        for line in [
            "| Attestation | DC1 lost power at 08:50 (by operator1, 2026-11-26 09:00:00 UTC) |",
            "### Data-loss window",
            "| Last restored log | mgc_0830.trn |",
            "| Window (seconds) | 900 |",
            "| Files missing | mgc_0845.trn |",
            "| Share reachable | false |",
            "| fo4_recover | running | 1 | 2026-11-26 09:01:20 UTC | - | - |  |",
        ] {
            assert!(md.lines().any(|l| l == line), "missing {line:?} in\n{md}");
        }
    }
}
