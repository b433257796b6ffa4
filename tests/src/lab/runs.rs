//! Runbooks through the real `failbackctl`: start a run as the lab's approver, follow it with
//! `failbackctl status RUN --output json` until it ends (printing each pool's step as it moves),
//! and read per-step timings from the run record.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::fleet::LabFleet;
use crate::harness::fleet::{APPROVER, OPERATOR};

/// How a `failbackctl run …` call went.
pub enum Started {
    /// The run id.
    Run(String),
    /// failbackctl does not know this subcommand (not built yet): its message.
    Missing(String),
}

/// Whether a failbackctl answer means "no such subcommand" (clap's usage error).
pub fn is_missing_subcommand(code: i32, stderr: &str) -> bool {
    code == 2 && stderr.contains("unrecognized subcommand")
}

/// Starts `failbackctl <args> --output json` as the approver (so `--yes` counts).
pub async fn start(fleet: &LabFleet, args: &[&str]) -> anyhow::Result<Started> {
    println!("   $ failbackctl {}", args.join(" "));
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output", "json"]);
    let out = fleet.ctl(APPROVER, &all).await?;
    if is_missing_subcommand(out.code, &out.stderr) {
        return Ok(Started::Missing(
            out.stderr.lines().next().unwrap_or_default().to_string(),
        ));
    }
    anyhow::ensure!(
        out.code == 0,
        "failbackctl {} failed ({}): {}",
        args.join(" "),
        out.code,
        out.stderr.trim()
    );
    let doc: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| anyhow::anyhow!("failbackctl printed no JSON ({e}): {}", out.stdout))?;
    let run = doc["run_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no run_id in {doc}"))?
        .to_string();
    println!("   run {run} started");
    Ok(Started::Run(run))
}

/// Follows `run` until it succeeded, failed or was aborted (or `deadline` passed); returns the
/// last `status --output json` document.
pub async fn follow(fleet: &LabFleet, run: &str, deadline: Duration) -> anyhow::Result<Value> {
    let start = tokio::time::Instant::now();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut last = Value::Null;
    loop {
        let out = fleet
            .ctl(OPERATOR, &["status", run, "--output", "json"])
            .await?;
        if let Ok(doc) = serde_json::from_str::<Value>(&out.stdout) {
            for p in doc["pools"].as_array().into_iter().flatten() {
                let pool = p["pool"].as_str().unwrap_or_default().to_string();
                let now = format!(
                    "{} ({})",
                    p["step"].as_str().unwrap_or("-"),
                    p["status"].as_str().unwrap_or("-")
                );
                if seen.get(&pool) != Some(&now) {
                    println!(
                        "   [{:>6.1} s] {pool}: {now}",
                        start.elapsed().as_secs_f64()
                    );
                    seen.insert(pool, now);
                }
            }
            let status = doc["run"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            last = doc;
            if ["succeeded", "failed", "aborted"].contains(&status.as_str()) {
                // The run record stays in the workdir for whoever reads the report.
                let dir = fleet.dir.join("runs");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(
                    dir.join(format!("{run}.json")),
                    serde_json::to_string_pretty(&last)?,
                )?;
                return Ok(last);
            }
        }
        if start.elapsed() > deadline {
            anyhow::bail!("run {run} did not end within {deadline:?}; last status: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Per step (in the order first seen), the longest time any pool spent in it.
pub fn step_timings(detail: &Value) -> Vec<(String, Duration, String)> {
    let mut out: Vec<(String, Duration, String)> = Vec::new();
    for p in detail["pools"].as_array().into_iter().flatten() {
        let Some(outputs) = p["outputs"].as_object() else {
            continue;
        };
        let mut steps: Vec<(&String, &Value)> = outputs.iter().collect();
        steps.sort_by_key(|(_, v)| v["started_unix_ms"].as_u64().unwrap_or(0));
        for (name, v) in steps {
            let (s, f) = (
                v["started_unix_ms"].as_u64().unwrap_or(0),
                v["finished_unix_ms"].as_u64().unwrap_or(0),
            );
            let took = Duration::from_millis(f.saturating_sub(s));
            let status = v["status"].as_str().unwrap_or("-").to_string();
            match out.iter_mut().find(|(n, _, _)| n == name) {
                Some(e) => {
                    e.1 = e.1.max(took);
                    if status != "succeeded" {
                        e.2 = status;
                    }
                }
                None => out.push((name.clone(), took, status)),
            }
        }
    }
    out
}

/// The reason a run ended as it did, for the report.
pub fn reason(detail: &Value) -> String {
    let mut parts = vec![detail["run"]["status"].as_str().unwrap_or("?").to_string()];
    if let Some(r) = detail["run"]["reason"].as_str().filter(|r| !r.is_empty()) {
        parts.push(r.to_string());
    }
    for p in detail["pools"].as_array().into_iter().flatten() {
        if p["status"] != "succeeded" {
            parts.push(format!(
                "{} at {}: {}",
                p["pool"].as_str().unwrap_or("?"),
                p["step"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?")
            ));
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_clap_usage_errors_mean_a_missing_subcommand() {
        assert!(is_missing_subcommand(
            2,
            "error: unrecognized subcommand 'failover'\n\nUsage: …"
        ));
        assert!(!is_missing_subcommand(2, "error: topology refused"));
        assert!(!is_missing_subcommand(1, "unrecognized subcommand"));
    }

    #[test]
    fn step_timings_keep_the_order_steps_started_and_the_slowest_pool() {
        let detail = json!({ "pools": [
            { "pool": "a", "outputs": {
                "fb3": { "status": "succeeded", "started_unix_ms": 2000, "finished_unix_ms": 2500 },
                "fb1": { "status": "succeeded", "started_unix_ms": 1000, "finished_unix_ms": 2000 },
            }},
            { "pool": "b", "outputs": {
                "fb1": { "status": "succeeded", "started_unix_ms": 5000, "finished_unix_ms": 8000 },
                "fb3": { "status": "failed", "started_unix_ms": 8000, "finished_unix_ms": 8100 },
            }},
        ]});
        let t = step_timings(&detail);
        let names: Vec<&str> = t.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["fb1", "fb3"]);
        assert_eq!(t[0].1, Duration::from_millis(3000));
        assert_eq!(t[1].1, Duration::from_millis(500));
        assert_eq!(t[1].2, "failed");
    }
}
