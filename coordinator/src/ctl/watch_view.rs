//! What `failbackctl watch` draws: one line per pool (step i/n and name, a progress bar with the
//! percent of a backup / restore / copy when the agent reports one, what the pool waits for, the
//! step's elapsed time) under a header line for the run, and the closing line when the run ends.
//! Pure functions of a `RunDetail` and "now", so they are tested on fixed inputs; the polling
//! loop is in `watch.rs`.
//!
//! Decided: an awaiting-approval pool names the command that unblocks it (`failbackctl approve
//! RUN`), and a paused run names `failbackctl resume RUN`, because the person watching at 3 a.m.
//! is the one who has to type it.

use failback_proto::pb;
use serde_json::Value;

/// Width of the progress bar in characters (between the brackets).
const BAR: usize = 20;

/// One pool's line, split so a non-TTY watcher can tell a change from the clock moving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLine {
    /// Pool FQDN.
    pub pool: String,
    /// Everything but the elapsed time (with the percent rounded down to tens, so a plain log
    /// gets a line per 10 %, not per poll).
    pub key: String,
    /// The full line as drawn.
    pub text: String,
    /// One line per finished step (`1/7 fb1_clear_active  succeeded in 0.1 s`), in the order
    /// they started: a log prints the ones it has not printed yet, so a step that began and ended
    /// between two polls still shows up.
    pub finished: Vec<(String, String)>,
}

/// A whole frame: the header line and one line per pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Run id, runbook, status, elapsed.
    pub header: String,
    /// One per pool, in the run's pool order.
    pub pools: Vec<PoolLine>,
}

/// How a watched run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The closing line.
    pub text: String,
    /// Process exit code: 0 succeeded, 3 failed or aborted (failbackctl's documented scheme).
    pub code: u8,
}

/// `5.9 s` under a minute, then `1:05`, `12:00`, `1:02:03`.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        // Short runs are common in drills: tenths, not a rounded-down 0:05 for 5.9 s.
        return format!("{}.{} s", s, (ms % 1000) / 100);
    }
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `[#####...............]  25%`.
pub fn bar(percent: u32) -> String {
    let p = usize::try_from(percent.min(100)).unwrap_or(100);
    let filled = p * BAR / 100;
    format!(
        "[{}{}] {:>3}%",
        "#".repeat(filled),
        ".".repeat(BAR - filled),
        p
    )
}

fn outputs(p: &pb::PoolProgress) -> Value {
    serde_json::from_str(&p.outputs_json).unwrap_or(Value::Null)
}

/// Where the pool is in the runbook: `3/7 fb3_backup`; `7/7 done`; `?/7` before it started.
fn position(p: &pb::PoolProgress, steps: &[String]) -> String {
    let n = if steps.is_empty() {
        "?".to_string()
    } else {
        steps.len().to_string()
    };
    if p.step == crate::runbook::engine::END_STEP {
        return format!("{n}/{n} done");
    }
    if p.step.is_empty() {
        return format!("0/{n} not started");
    }
    match steps.iter().position(|s| *s == p.step) {
        Some(i) => format!("{}/{n} {}", i + 1, p.step),
        None => format!("?/{n} {}", p.step),
    }
}

/// What the pool is doing or waiting for, in words.
fn state(run: &pb::RunSummary, p: &pb::PoolProgress) -> String {
    let o = outputs(p);
    match p.status.as_str() {
        "awaiting_approval" => format!("awaiting approval: failbackctl approve {}", run.run_id),
        "failed" => {
            let why = o
                .get(&p.step)
                .and_then(|r| r.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("see `failbackctl status`");
            format!("FAILED: {why}")
        }
        "not_started" => "waiting for its wave".into(),
        _ if p.step == crate::runbook::engine::END_STEP => "done".into(),
        _ if run.status == "paused" => format!("paused: failbackctl resume {}", run.run_id),
        "running" if !p.operation.is_empty() => {
            format!("running {} on {}", p.operation, p.agent)
        }
        other => other.replace('_', " "),
    }
}

/// How long the pool's current step has run (or, once done, the pool took in all).
fn elapsed(p: &pb::PoolProgress, now_ms: u64) -> Option<u64> {
    if p.step == crate::runbook::engine::END_STEP || p.status == "failed" {
        let o = outputs(p);
        let recs = o.as_object()?;
        let start = recs
            .values()
            .filter_map(|r| r.get("started_unix_ms").and_then(Value::as_u64))
            .min()?;
        let end = recs
            .values()
            .filter_map(|r| r.get("finished_unix_ms").and_then(Value::as_u64))
            .max()?;
        return Some(end.saturating_sub(start));
    }
    (p.step_started_unix_ms > 0).then(|| now_ms.saturating_sub(p.step_started_unix_ms))
}

/// The finished-step lines of `p`, keyed by step name.
fn finished(p: &pb::PoolProgress, steps: &[String], pos_width: usize) -> Vec<(String, String)> {
    let o = outputs(p);
    let Some(recs) = o.as_object() else {
        return Vec::new();
    };
    let mut done: Vec<(&String, &Value)> = recs.iter().collect();
    done.sort_by_key(|(name, r)| (r.get("started_unix_ms").and_then(Value::as_u64), *name));
    let n = if steps.is_empty() {
        "?".to_string()
    } else {
        steps.len().to_string()
    };
    done.into_iter()
        .map(|(name, r)| {
            let i = steps
                .iter()
                .position(|s| s == name)
                .map_or("?".to_string(), |i| (i + 1).to_string());
            let pos = format!("{i}/{n} {name}");
            let took = r
                .get("finished_unix_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .saturating_sub(
                    r.get("started_unix_ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                );
            let status = r.get("status").and_then(Value::as_str).unwrap_or("");
            let why = r
                .get("error")
                .or_else(|| r.get("reason"))
                .and_then(Value::as_str)
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            (
                name.clone(),
                format!(
                    "{}  {pos:<pos_width$}  {status} in {:.1} s{why}",
                    p.pool,
                    took as f64 / 1000.0
                ),
            )
        })
        .collect()
}

/// The frame for `d` at `now_ms`; `steps` are the runbook's step names in order (empty when
/// unknown: the position then shows `?`).
pub fn frame(d: &pb::RunDetail, steps: &[String], now_ms: u64) -> Frame {
    let run = d.run.clone().unwrap_or_default();
    let width = d.pools.iter().map(|p| p.pool.len()).max().unwrap_or(0);
    // Wide enough for every step, so lines of successive frames (a log) stay aligned.
    let longest_step = steps.iter().map(String::len).max().unwrap_or(0);
    let pos_width = d
        .pools
        .iter()
        .map(|p| position(p, steps).len())
        .chain([2 * steps.len().to_string().len() + 2 + longest_step])
        .max()
        .unwrap_or(0);
    let running = !matches!(run.status.as_str(), "succeeded" | "failed" | "aborted");
    let header = format!(
        "run {} ({}) {}{}",
        run.run_id,
        run.runbook,
        run.status.replace('_', " "),
        if running && run.created_unix_ms > 0 {
            format!(
                ", {} elapsed",
                clock(now_ms.saturating_sub(run.created_unix_ms))
            )
        } else {
            String::new()
        }
    );
    let pools = d
        .pools
        .iter()
        .map(|p| {
            let pos = position(p, steps);
            let shown = (p.status == "running").then_some(p.percent).flatten();
            let progress = shown.map_or_else(|| " ".repeat(BAR + 7), bar);
            let what = state(&run, p);
            let key = format!(
                "{} {pos} {} {what}",
                p.pool,
                shown
                    .map(|x| x / 10 * 10)
                    .map_or(String::new(), |x| format!("{x}%"))
            );
            let el = elapsed(p, now_ms).map(clock).unwrap_or_default();
            let text = format!(
                "{:<width$}  {pos:<pos_width$}  {progress}  {el:>7}  {what}",
                p.pool
            );
            PoolLine {
                pool: p.pool.clone(),
                key,
                text: text.trim_end().to_string(),
                finished: finished(p, steps, pos_width),
            }
        })
        .collect();
    Frame { header, pools }
}

/// The closing line and exit code when the run has ended; `None` while it goes on.
pub fn end(d: &pb::RunDetail) -> Option<End> {
    let run = d.run.as_ref()?;
    let took = run.updated_unix_ms.saturating_sub(run.created_unix_ms);
    let reason = if run.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", run.reason)
    };
    let (word, code) = match run.status.as_str() {
        "succeeded" => ("succeeded", 0),
        "failed" => ("FAILED", 3),
        "aborted" => ("was ABORTED", 3),
        _ => return None,
    };
    Some(End {
        text: format!(
            "run {} {word} after {}{reason} (evidence: failbackctl report {})",
            run.run_id,
            clock(took),
            run.run_id
        ),
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<String> {
        [
            "fb1_clear_active",
            "fb2_remove_mirroring",
            "fb3_backup",
            "fb4_restore",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn detail(status: &str, pools: Vec<pb::PoolProgress>) -> pb::RunDetail {
        pb::RunDetail {
            run: Some(pb::RunSummary {
                run_id: "r-1".into(),
                runbook: "failback".into(),
                status: status.into(),
                created_unix_ms: 1_000,
                updated_unix_ms: 61_000,
                ..Default::default()
            }),
            pools,
            audit: vec![],
        }
    }

    #[test]
    fn bars_and_clocks() {
        assert_eq!(bar(25), "[#####...............]  25%");
        assert_eq!(bar(150), "[####################] 100%");
        assert_eq!(clock(65_000), "1:05");
        assert_eq!(clock(3_723_000), "1:02:03");
    }

    #[test]
    fn a_backup_in_progress_shows_its_percent_and_elapsed_time() {
        let d = detail(
            "running",
            vec![pb::PoolProgress {
                pool: "pchat01.lab.local".into(),
                step: "fb3_backup".into(),
                status: "running".into(),
                operation: "backup_database".into(),
                agent: "sql01.dc2.lab".into(),
                percent: Some(42),
                step_started_unix_ms: 10_000,
                ..Default::default()
            }],
        );
        let f = frame(&d, &steps(), 22_000);
        assert_eq!(f.header, "run r-1 (failback) running, 21.0 s elapsed");
        assert_eq!(
            f.pools[0].text,
            "pchat01.lab.local  3/4 fb3_backup            [########............]  42%   12.0 s  running backup_database on sql01.dc2.lab"
        );
        // The key ignores the clock and rounds the percent: same key a second later at 47 %.
        let mut later = d.clone();
        later.pools[0].percent = Some(47);
        assert_eq!(frame(&later, &steps(), 23_000).pools[0].key, f.pools[0].key);
        later.pools[0].percent = Some(50);
        assert_ne!(frame(&later, &steps(), 23_000).pools[0].key, f.pools[0].key);
        assert_eq!(end(&d), None);
    }

    #[test]
    fn waiting_pools_say_what_unblocks_them() {
        let d = detail(
            "awaiting_approval",
            vec![
                pb::PoolProgress {
                    pool: "a.lab".into(),
                    step: "fb4_restore".into(),
                    status: "awaiting_approval".into(),
                    ..Default::default()
                },
                pb::PoolProgress {
                    pool: "b.lab".into(),
                    status: "not_started".into(),
                    ..Default::default()
                },
            ],
        );
        let f = frame(&d, &steps(), 5_000);
        assert!(f.pools[0].text.contains("4/4 fb4_restore"), "{f:?}");
        assert!(
            f.pools[0]
                .text
                .ends_with("awaiting approval: failbackctl approve r-1"),
            "{f:?}"
        );
        assert!(f.pools[1].text.contains("0/4 not started"), "{f:?}");
        assert!(f.pools[1].text.ends_with("waiting for its wave"), "{f:?}");
        let mut paused = d.clone();
        paused.run.as_mut().unwrap().status = "paused".into();
        paused.pools[0].status = "running".into();
        let f = frame(&paused, &steps(), 5_000);
        assert!(
            f.pools[0].text.ends_with("paused: failbackctl resume r-1"),
            "{f:?}"
        );
    }

    #[test]
    fn a_failed_run_ends_with_code_3_and_the_reason() {
        let d = detail(
            "failed",
            vec![pb::PoolProgress {
                pool: "a.lab".into(),
                step: "fb3_backup".into(),
                status: "failed".into(),
                outputs_json: r#"{"fb3_backup":{"status":"failed","error":"disk full","started_unix_ms":2000,"finished_unix_ms":9000}}"#.into(),
                ..Default::default()
            }],
        );
        let f = frame(&d, &steps(), 99_000);
        assert_eq!(f.header, "run r-1 (failback) failed");
        assert!(
            f.pools[0].text.ends_with("7.0 s  FAILED: disk full"),
            "{f:?}"
        );
        assert_eq!(
            f.pools[0].finished,
            [(
                "fb3_backup".to_string(),
                "a.lab  3/4 fb3_backup            failed in 7.0 s: disk full".to_string()
            )]
        );
        let mut d = d;
        d.run.as_mut().unwrap().reason = "a.lab: fb3_backup: disk full".into();
        let e = end(&d).unwrap();
        assert_eq!(e.code, 3);
        assert_eq!(
            e.text,
            "run r-1 FAILED after 1:00: a.lab: fb3_backup: disk full (evidence: failbackctl report r-1)"
        );
        d.run.as_mut().unwrap().status = "succeeded".into();
        assert_eq!(end(&d).unwrap().code, 0);
    }
}
