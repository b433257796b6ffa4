//! The drill's phases, in order: warm-up (traffic flowing, logs shipped) →
//! preflight → loss of DC1 → failover → count → rebuild DC1 → failback → count → final state.
//!
//! The checks themselves (what is counted, against what, and why) are in [`super::counts`].
//!
//! A phase that cannot go on (a run failed, a deadline passed) records a failed check and ends
//! the drill; the report still prints.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::Lab;
use super::counts::{
    Loss, ROUNDING, Reported, acks_of, chat_sessions_visible, count_after_failback,
    count_after_failover, count_after_traffic, file_name, final_state, traffic_resumes,
};
use super::runs::{self, Started};
use super::sql;
use super::topology::{SHELL_DC1, dc1_files};
use super::traffic::Target;
use crate::harness::fleet::OPERATOR;
use crate::harness::wait_for;

/// Messages per pool that must be in a log restored on the backup before DC1 is lost.
const WARM_UP_MESSAGES: usize = 20;

/// Runs every phase; a phase error becomes a failed check.
pub async fn run(lab: &mut Lab) {
    if let Err(e) = phases(lab).await {
        lab.report.check("drill completed", false, format!("{e:#}"));
    }
}

async fn phases(lab: &mut Lab) -> anyhow::Result<()> {
    warm_up(lab).await?;
    preflight(lab, "the failover").await?;
    let loss = lose_dc1(lab).await?;
    let Some(reported) = failover(lab).await? else {
        return Ok(());
    };
    let survivors = count_after_failover(lab, &loss, &reported).await?;
    lab.report.rto_failover = traffic_resumes(
        lab,
        Target::Backup,
        loss.at,
        "DC2 chat servers write to the backup mgc",
    )
    .await?;
    chat_sessions_visible(lab).await?;
    mirror_new_primary(lab).await?;
    rebuild_dc1(lab).await?;
    preflight(lab, "the failback").await?;
    let Some(fb_start) = failback(lab).await? else {
        return Ok(());
    };
    count_after_failback(lab, &survivors).await?;
    lab.report.rto_failback = traffic_resumes(
        lab,
        Target::Primary,
        fb_start,
        "DC1 chat servers write to the primary mgc again",
    )
    .await?;
    lab.traffic.stop().await;
    count_after_traffic(lab, fb_start).await?;
    final_state(lab).await
}

/// Waits until every pool's primary has acknowledged messages and the backup restored a log
/// taken after the first of them: log shipping carries chat traffic before DC1 is lost.
async fn warm_up(lab: &mut Lab) -> anyhow::Result<()> {
    let t = lab
        .report
        .begin("warm-up: chat traffic on the primaries, logs shipped to DC2");
    for p in lab.pools.clone() {
        let backup = &lab.sims[&p.backup];
        let ledger = lab.traffic.ledger.clone();
        let last = wait_for(
            &format!(
                "{}: a log backup holding chat messages restored on {}",
                p.fqdn, p.backup
            ),
            Duration::from_secs(90),
            || async {
                let acks = ledger.acks();
                let first = acks_of(&acks, &p.fqdn).nth(WARM_UP_MESSAGES)?.utc;
                let last = sql::last_restored_log(backup).await.ok()??;
                (last.backup_start > first + ROUNDING).then_some(last)
            },
        )
        .await?;
        println!(
            "   {}: {} messages written, last log restored on {}: {}",
            p.fqdn,
            acks_of(&lab.traffic.ledger.acks(), &p.fqdn).count(),
            p.backup,
            file_name(&last.file)
        );
    }
    let n = lab.traffic.ledger.acks().len();
    lab.report.end(t, format!("{n} messages written"));
    Ok(())
}

/// `failbackctl preflight --all` before a runbook (`when`: which one); ready or not is a check.
/// Decided: a failbackctl without the subcommand is a warning, not a failure, until it lands.
async fn preflight(lab: &mut Lab, when: &str) -> anyhow::Result<()> {
    let t = lab.report.begin(&format!(
        "preflight before {when}: failbackctl preflight --all"
    ));
    let out = lab.fleet.ctl(OPERATOR, &["preflight", "--all"]).await?;
    if runs::is_missing_subcommand(out.code, &out.stderr) {
        if !lab.report.warnings.iter().any(|w| w.contains("preflight")) {
            lab.report.warn(
                "failbackctl preflight is not built yet (unrecognized subcommand); the drill goes on without it",
            );
        }
        lab.report.end(t, "not available yet");
        return Ok(());
    }
    println!("{}", out.stdout.trim_end());
    if !out.stderr.trim().is_empty() {
        println!("{}", out.stderr.trim_end());
    }
    lab.report.check(
        format!("preflight before {when} says every pool is ready"),
        out.code == 0,
        format!("exit code {}", out.code),
    );
    lab.report.end(t, format!("exit code {}", out.code));
    Ok(())
}

/// FO-6 done by hand (see [`super::topology`]): mirror the new primary `mgc` (the backup
/// instance) to the backup mirror, unless the failover already did.
async fn mirror_new_primary(lab: &mut Lab) -> anyhow::Result<()> {
    if !lab.opts.mirrors {
        return Ok(());
    }
    let t = lab
        .report
        .begin("FO-6 by hand: mirror the new primary mgc to the backup mirror");
    let files = lab.fleet.files_root();
    for p in lab.pools.clone() {
        let Some(m) = &p.backup_mirror else { continue };
        let backup = &lab.sims[&p.backup];
        if sql::mirroring_role(backup).await?.is_some() {
            println!("   {}: already mirrored", p.fqdn);
            continue;
        }
        let seed = files.join("dc2").join("mirror-seed").join(&p.fqdn);
        sql::mirror_mgc(backup, &lab.sims[m], &seed).await?;
        println!("   {}: mgc mirrored {} -> {m}", p.fqdn, p.backup);
    }
    lab.report.end(t, "mirrored");
    Ok(())
}

/// The simulated hosts of DC1: its shell host and every pool's DC1 SQL instances.
fn dc1_hosts(lab: &Lab) -> Vec<String> {
    let mut dc1 = vec![SHELL_DC1.to_string()];
    for p in &lab.pools {
        dc1.extend(p.dc1_instances());
    }
    dc1
}

/// Kills DC1: its chat servers stop, its agents and SQL instances die (SIGKILL) and the share
/// that lived there is gone (renamed out of reach).
async fn lose_dc1(lab: &mut Lab) -> anyhow::Result<Loss> {
    let t = lab
        .report
        .begin("simulated loss of DC1 (SQL, agents, chat servers, share)");
    lab.traffic.set_dc_down("dc1", true);
    let mut loss = Loss {
        at: Instant::now(),
        utc: chrono::Utc::now().naive_utc(),
        shipped: BTreeMap::new(),
    };
    let dc1 = dc1_hosts(lab);
    for id in &dc1 {
        lab.fleet.kill_agent(id);
        if let Some(sim) = lab.sims.get_mut(id) {
            sim.kill();
        }
    }
    let files = lab.fleet.files_root();
    let lost = files.join(format!("dc1-lost-{}", std::process::id()));
    std::fs::rename(dc1_files(&files), &lost)?;
    println!(
        "   killed {}; share moved out of reach to {}",
        dc1.join(", "),
        lost.display()
    );
    for p in lab.pools.clone() {
        let newest = sql::newest_log_in(&lab.sims[&p.backup], &p.copy_dir).await?;
        println!(
            "   {}: newest log backup that reached DC2: {}",
            p.fqdn,
            newest.as_ref().map_or("none", |l| file_name(&l.file))
        );
        loss.shipped.insert(p.fqdn.clone(), newest);
    }
    lab.fleet
        .wait_connected(&dc1, false, Duration::from_secs(30))
        .await?;
    lab.report.end(t, format!("{} hosts down", dc1.len()));
    Ok(loss)
}

/// The loss windows a failover run reported (pools whose record has none are left out).
fn reported_windows(detail: &serde_json::Value) -> Reported {
    let mut out = Reported::new();
    for p in detail["pools"].as_array().into_iter().flatten() {
        let w = &p["outputs"]["fo3_apply_logs"]["output"]["loss_window"];
        let time = w["last_restored_backup_time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let (Some(pool), Some(time)) = (p["pool"].as_str(), time) {
            println!(
                "   {pool}: the run reports its loss window from {} ({} s of log backups known but not restored{})",
                time.format("%H:%M:%S%.3f"),
                w["window_seconds"],
                if w["share_reachable"] == false {
                    "; share unreachable"
                } else {
                    ""
                }
            );
            out.insert(pool.to_string(), time.naive_utc());
        }
    }
    out
}

/// The failover runbook. `Ok(None)`: it failed (recorded), the drill stops; otherwise the loss
/// windows the run reported.
async fn failover(lab: &mut Lab) -> anyhow::Result<Option<Reported>> {
    let t = lab
        .report
        .begin("failover (failbackctl run failover --all)");
    let started = runs::start(
        &lab.fleet,
        &[
            "run",
            "failover",
            "--all",
            "--attest-primary-down",
            "lab drill: DC1 lost",
            "--yes",
            "--max-parallel",
            "2",
        ],
    )
    .await?;
    match started {
        Started::Run(run) => {
            let detail = runs::follow(&lab.fleet, &run, Duration::from_secs(600)).await?;
            for (step, took, status) in runs::step_timings(&detail) {
                lab.report.steps.push(super::report::StepRow {
                    name: format!("  failover {step}"),
                    took,
                    outcome: status,
                });
            }
            let ok = detail["run"]["status"] == "succeeded";
            lab.report
                .check("failover run succeeded", ok, runs::reason(&detail));
            let reported = reported_windows(&detail);
            lab.report
                .end(t, format!("{} (run {run})", runs::reason(&detail)));
            Ok(ok.then_some(reported))
        }
        Started::Missing(msg) => {
            lab.report
                .check("failbackctl run failover exists", false, msg);
            lab.report
                .end(t, "failbackctl has no failover runbook".to_string());
            Ok(None)
        }
    }
}

/// Rebuilds DC1 as Topology Builder leaves it: fresh SQL instances (same names and ports) with
/// an empty `mgc` and `mgccomp`, an empty share, the agents reinstalled (fresh state).
async fn rebuild_dc1(lab: &mut Lab) -> anyhow::Result<()> {
    let t = lab
        .report
        .begin("rebuild DC1 (fresh SQL instances with an empty mgc, agents)");
    for p in lab.pools.clone() {
        let registry = lab
            .opts
            .mirrors
            .then(|| super::mirror_registry(&lab.fleet.dir, &p, "dc1", 1));
        for id in p.dc1_instances() {
            let old_port = lab.sims[&id].port;
            let dir = lab.fleet.dir.join("sql").join(format!("{id}-rebuilt"));
            let mut sim = sql::new_sim(
                &id,
                &dir,
                Some(old_port),
                lab.opts.db_size_mb,
                registry.as_deref(),
                super::topology::DC1_UTC_OFFSET_MINUTES,
            )?;
            sim.start().await?;
            if id == p.primary {
                sql::batch(
                    &sim,
                    "master",
                    "CREATE DATABASE mgc; CREATE DATABASE mgccomp",
                )
                .await?;
            }
            lab.sims.insert(id, sim);
        }
        std::fs::create_dir_all(&p.share)?;
    }
    let dc1 = dc1_hosts(lab);
    for id in &dc1 {
        let state = lab.fleet.dir.join("agents").join(id).join("state");
        let _ = std::fs::remove_dir_all(&state);
        lab.configure_agent(id)?;
        lab.fleet.start_agent(id)?;
    }
    lab.fleet
        .wait_connected(&dc1, true, Duration::from_secs(60))
        .await?;
    // The DC1 chat servers are back, but not on the active list: they stay idle.
    lab.traffic.set_dc_down("dc1", false);
    lab.report.end(t, format!("{} hosts rebuilt", dc1.len()));
    Ok(())
}

/// The failback runbook; `Ok(None)` when it failed (recorded).
async fn failback(lab: &mut Lab) -> anyhow::Result<Option<Instant>> {
    let t = lab
        .report
        .begin("failback (failbackctl run failback --all)");
    let start = Instant::now();
    let started = runs::start(
        &lab.fleet,
        &["run", "failback", "--all", "--yes", "--max-parallel", "2"],
    )
    .await?;
    let run = match started {
        Started::Run(r) => r,
        Started::Missing(m) => {
            lab.report
                .check("failback run started", false, format!("failbackctl: {m}"));
            lab.report.end(t, "failbackctl has no failback runbook");
            return Ok(None);
        }
    };
    let detail = runs::follow(&lab.fleet, &run, Duration::from_secs(600)).await?;
    for (step, took, status) in runs::step_timings(&detail) {
        lab.report.steps.push(super::report::StepRow {
            name: format!("  failback {step}"),
            took,
            outcome: status,
        });
    }
    let ok = detail["run"]["status"] == "succeeded";
    lab.report
        .check("failback run succeeded", ok, runs::reason(&detail));
    // With mirrors the backup mgc was mirrored while failed over: FB-2 must have removed it.
    if lab.opts.mirrors {
        for p in detail["pools"].as_array().into_iter().flatten() {
            let fb2 = &p["outputs"]["fb2_remove_mirroring"];
            lab.report.check(
                format!(
                    "{}: FB-2 removed the backup mgc's mirroring",
                    p["pool"].as_str().unwrap_or("?")
                ),
                fb2["status"] == "succeeded" && fb2["how"] == "acted",
                format!(
                    "FB-2 {} ({})",
                    fb2["status"].as_str().unwrap_or("?"),
                    fb2["how"].as_str().unwrap_or("?")
                ),
            );
        }
    }
    // The DC2 chat servers kept their idle connections after FB-1 cleared the list: FB-1 must
    // have waited for them and ended them.
    for p in detail["pools"].as_array().into_iter().flatten() {
        let fb1 = &p["outputs"]["fb1_clear_active"]["output"];
        let killed: u64 = fb1["killed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["sessions"].as_u64())
            .sum();
        lab.report.check(
            format!(
                "{}: FB-1 ended the idle chat server session(s)",
                p["pool"].as_str().unwrap_or("?")
            ),
            killed >= 1,
            format!(
                "{killed} killed after a {} ms drain",
                fb1["drained_ms"].as_u64().unwrap_or(0)
            ),
        );
    }
    lab.report
        .end(t, format!("{} (run {run})", runs::reason(&detail)));
    Ok(ok.then_some(start))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn reported_windows_are_read_from_fo3s_record() {
        let detail = json!({ "pools": [
            { "pool": "a", "outputs": { "fo3_apply_logs": { "output": { "loss_window": {
                "last_restored_backup_time": "2026-11-26T09:25:30.026Z",
                "window_seconds": 0, "share_reachable": false } } } } },
            { "pool": "b", "outputs": {} },
        ]});
        let r = reported_windows(&detail);
        assert_eq!(r.len(), 1, "a pool without a record reports nothing");
        assert_eq!(
            r["a"].format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            "2026-11-26 09:25:30.026"
        );
    }
}
