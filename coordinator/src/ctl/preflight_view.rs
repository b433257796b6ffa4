//! How `failbackctl preflight` prints readiness: per pool an aligned table (direction, check,
//! target, status, observed, threshold) followed by the fix of every check that is not ok, so the
//! operator reads what to do without widening the terminal; or one JSON document with stable
//! field names (`status` is `ok`, `warn`, `fail` or `skip`).

use failback_proto::pb;
use failback_proto::pb::PreflightStatus as St;
use serde_json::{Value, json};

use super::output::{Format, table};

/// The status word of a check.
pub fn status_word(s: St) -> &'static str {
    match s {
        St::Ok => "ok",
        St::Warn => "warn",
        St::Fail => "fail",
        St::Skip => "skip",
        St::Unspecified => "unknown",
    }
}

/// The response as JSON.
pub fn to_json(r: &pb::PreflightResponse) -> Value {
    json!({
        "ready": r.ready,
        "checked_unix_ms": r.checked_unix_ms,
        "pools": r.pools.iter().map(|p| json!({
            "pool": p.pool,
            "pool_state": p.pool_state,
            "ready": p.ready,
            "directions": p.directions.iter().map(|d| json!({
                "direction": d.direction,
                "next": d.next,
                "ready": d.ready,
                "checks": d.checks.iter().map(|c| json!({
                    "name": c.name,
                    "target": c.target,
                    "status": status_word(c.status()),
                    "observed": c.observed,
                    "threshold": c.threshold,
                    "fix": c.fix,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn ready_word(ready: bool) -> &'static str {
    if ready { "READY" } else { "NOT READY" }
}

/// Renders the answer.
pub fn render(r: &pb::PreflightResponse, format: Format) -> String {
    if format == Format::Json {
        return serde_json::to_string_pretty(&to_json(r))
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    }
    let mut out = Vec::new();
    for p in &r.pools {
        let dirs: Vec<String> = p
            .directions
            .iter()
            .map(|d| {
                format!(
                    "{}{} {}",
                    d.direction,
                    if d.next { " (next)" } else { "" },
                    ready_word(d.ready)
                )
            })
            .collect();
        out.push(format!(
            "pool {} ({}): {} — {}",
            p.pool,
            p.pool_state,
            ready_word(p.ready),
            dirs.join(", ")
        ));
        let mut rows = Vec::new();
        let mut fixes: Vec<(String, String)> = Vec::new();
        for d in &p.directions {
            for c in &d.checks {
                let status = c.status();
                rows.push(vec![
                    d.direction.clone(),
                    c.name.clone(),
                    if c.target.is_empty() {
                        "-".into()
                    } else {
                        short_target(&c.target)
                    },
                    status_word(status).to_uppercase(),
                    c.observed.clone(),
                    if c.threshold.is_empty() {
                        "-".into()
                    } else {
                        c.threshold.clone()
                    },
                ]);
                if matches!(status, St::Fail | St::Warn) && !c.fix.is_empty() {
                    // The same finding often holds for both directions: say it once.
                    let key = format!("{}|{}|{}", c.name, c.target, c.fix);
                    if !fixes.iter().any(|(k, _)| *k == key) {
                        let line = format!(
                            "  {} {}{}: {}",
                            status_word(status).to_uppercase(),
                            c.name,
                            if c.target.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", c.target)
                            },
                            c.fix
                        );
                        fixes.push((key, line));
                    }
                }
            }
        }
        out.push(table(
            &[
                "DIRECTION",
                "CHECK",
                "TARGET",
                "STATUS",
                "OBSERVED",
                "THRESHOLD",
            ],
            &rows,
        ));
        if !fixes.is_empty() {
            out.push("To fix:".into());
            out.extend(fixes.into_iter().map(|(_, l)| l));
        }
        out.push(String::new());
    }
    let failed: usize = r
        .pools
        .iter()
        .flat_map(|p| &p.directions)
        .flat_map(|d| &d.checks)
        .filter(|c| c.status() == St::Fail)
        .count();
    out.push(if r.ready {
        format!("{} pool(s) ready", r.pools.len())
    } else {
        format!(
            "NOT READY: {failed} failed check(s) in {} of {} pool(s)",
            r.pools.iter().filter(|p| !p.ready).count(),
            r.pools.len()
        )
    });
    out.join("\n")
}

/// The failed and warning checks of `direction` (`failover` / `failback`) as plan findings:
/// `preflight FAIL check (target): observed — fix: …`; for failover also the estimated
/// data-loss window (issue #7: the plan shows it).
pub fn findings(r: &pb::PreflightResponse, direction: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in &r.pools {
        for d in p.directions.iter().filter(|d| d.direction == direction) {
            for c in &d.checks {
                let st = c.status();
                // A failover plan always shows the data-loss window preflight estimates.
                if c.name == "rpo_estimate" && direction == "failover" && st == St::Ok {
                    out.push(format!(
                        "{}: data-loss window estimate: {}",
                        p.pool, c.observed
                    ));
                    continue;
                }
                if !matches!(st, St::Fail | St::Warn) {
                    continue;
                }
                out.push(format!(
                    "{}: preflight {} {}{}: {}{}",
                    p.pool,
                    status_word(st).to_uppercase(),
                    c.name,
                    if c.target.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", c.target)
                    },
                    c.observed,
                    if c.fix.is_empty() {
                        String::new()
                    } else {
                        format!(" — fix: {}", c.fix)
                    }
                ));
            }
        }
    }
    out
}

/// A target for the table: folder paths shortened to their last two components (`…/share/p1`),
/// so the table stays readable; the JSON and the "To fix" lines keep the full paths.
fn short_target(target: &str) -> String {
    target
        .split(' ')
        .map(|w| {
            let parts: Vec<&str> = w.split(['/', '\\']).filter(|x| !x.is_empty()).collect();
            if parts.len() > 2 && (w.starts_with('/') || w.contains('\\')) {
                format!("…/{}", parts[parts.len() - 2..].join("/"))
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_findings_are_the_failed_checks_of_the_direction() {
        let f = findings(&sample(), "failover");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("p.lab: preflight FAIL sql_agent_service (backup sql01)")
                && f[0].ends_with("— fix: start it"),
            "{f:?}"
        );
        assert!(findings(&sample(), "failback").is_empty());
    }

    #[test]
    fn long_paths_are_shortened_in_the_table() {
        assert_eq!(
            short_target("/tmp/lab/files/dc1/share/p1 → /tmp/lab/files/dc2/copy/p1"),
            "…/share/p1 → …/copy/p1"
        );
        assert_eq!(short_target(r"\\fs01\pchat\ls"), "…/pchat/ls");
        assert_eq!(short_target("mgc on primary sql01"), "mgc on primary sql01");
    }

    fn sample() -> pb::PreflightResponse {
        pb::PreflightResponse {
            ready: false,
            checked_unix_ms: 1,
            pools: vec![pb::PreflightPool {
                pool: "p.lab".into(),
                pool_state: "Normal".into(),
                ready: false,
                directions: vec![pb::PreflightDirection {
                    direction: "failover".into(),
                    ready: false,
                    next: true,
                    checks: vec![
                        pb::PreflightCheck {
                            name: "sql_agent_service".into(),
                            target: "backup sql01".into(),
                            status: St::Fail.into(),
                            observed: "Stopped".into(),
                            threshold: "Running".into(),
                            fix: "start it".into(),
                        },
                        pb::PreflightCheck {
                            name: "agent_connected".into(),
                            status: St::Ok.into(),
                            observed: "connected".into(),
                            ..Default::default()
                        },
                    ],
                }],
            }],
        }
    }

    #[test]
    fn table_lists_checks_and_fixes() {
        let t = render(&sample(), Format::Table);
        assert!(
            t.contains("pool p.lab (Normal): NOT READY — failover (next) NOT READY"),
            "{t}"
        );
        assert!(t.contains("FAIL"), "{t}");
        assert!(
            t.contains("To fix:\n  FAIL sql_agent_service (backup sql01): start it"),
            "{t}"
        );
        assert!(
            t.ends_with("NOT READY: 1 failed check(s) in 1 of 1 pool(s)"),
            "{t}"
        );
    }

    #[test]
    fn json_has_stable_names() {
        let j = to_json(&sample());
        let c = &j["pools"][0]["directions"][0]["checks"][0];
        assert_eq!(c["status"], "fail");
        assert_eq!(c["fix"], "start it");
        assert_eq!(j["ready"], false);
    }
}
