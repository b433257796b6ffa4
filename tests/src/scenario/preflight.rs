//! `[run] preflight = true`: the scenario runs `failbackctl preflight --pool P` before the
//! failback, as the runbook tells an operator to, and keeps what it said for the failback
//! direction; `[expect] preflight_fails` then names the checks that must have failed. The run
//! starts whatever preflight said, so a scenario shows a prediction and what came of it side by
//! side (e.g. a share preflight calls too small, then FB-5 running out of space on it).

use anyhow::Context;
use serde_json::Value;

use super::runner::Check;
use crate::harness::failed_over::FailedOverLab;
use crate::harness::fleet::OPERATOR;

/// One check of preflight's answer for the failback direction.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Check name (e.g. `free_space_full_backup`).
    pub name: String,
    /// `ok`, `warn`, `fail`, `skip`.
    pub status: String,
    /// Observed, threshold and fix, for the outcome.
    pub text: String,
}

/// Runs preflight for `pool` and returns its failback checks.
pub async fn run(lab: &FailedOverLab, pool: &str) -> anyhow::Result<Vec<Seen>> {
    let out = lab
        .fleet
        .ctl(OPERATOR, &["preflight", "--pool", pool, "--output", "json"])
        .await?;
    // 0: ready; 3: a check failed (what a scenario may expect); anything else is an error.
    if out.code != 0 && out.code != 3 {
        anyhow::bail!(
            "failbackctl preflight failed ({}): {}",
            out.code,
            out.stderr.trim()
        );
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("preflight's JSON answer: {}", out.stdout))?;
    let checks = v["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["pool"] == pool)
        .flat_map(|p| p["directions"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["direction"] == "failback")
        .flat_map(|d| d["checks"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            Seen {
                name: s("name"),
                status: s("status"),
                text: format!(
                    "{}: {} (needs {}){}",
                    s("status"),
                    s("observed"),
                    s("threshold"),
                    if s("fix").is_empty() {
                        String::new()
                    } else {
                        format!("; fix: {}", s("fix"))
                    }
                ),
            }
        })
        .collect();
    Ok(checks)
}

/// `preflight_fails`: each named check failed.
pub fn fails(names: &[String], seen: &[Seen]) -> Vec<Check> {
    names
        .iter()
        .map(|n| {
            let c = seen.iter().find(|c| &c.name == n);
            Check {
                key: "preflight_fails".into(),
                what: format!("preflight's {n} fails"),
                ok: c.is_some_and(|c| c.status == "fail"),
                seen: c.map_or_else(
                    || format!("no check {n} among {} for failback", seen.len()),
                    |c| c.text.clone(),
                ),
            }
        })
        .collect()
}
