//! The drill's phases and their checks, in order: warm-up (traffic flowing, logs shipped) →
//! preflight → loss of DC1 → failover → count → rebuild DC1 → failback → count → final state.
//!
//! What is checked, and why that way:
//! - **Failover loses nothing beyond the last shipped log** (DESIGN §9 invariant 6). At the
//!   loss, the lab notes the newest log backup that had reached DC2 (the copy folder, read with
//!   RESTORE HEADERONLY; the share died with DC1). After the failover, the last log restored
//!   into the backup `mgc` (msdb `restorehistory` ⋈ `backupset`) must reach that log's LSN —
//!   everything shipped was applied — and every message acknowledged by the primary before
//!   that log backup began must be in the backup `mgc`; only messages acknowledged after it
//!   (the window: DC1 loss − that start, the RPO achieved) may be lost. A 5 ms margin absorbs
//!   DATETIME's 1/300 s rounding.
//! - **Failback loses nothing written before FB-1.** Every message found after the failover
//!   plus every message the backup `mgc` acknowledged while failed over must be in the primary
//!   `mgc` after the failback (FB-1 stops the writers before FB-3's backup).
//! - Traffic resumes where the pool state says after each runbook (RTO achieved), the final
//!   state is Normal with the DC1 chat servers active, primary `mgc` ONLINE and the backup `mgc`
//!   RESTORING (log shipping re-established by FB-5).
//!
//! A phase that cannot go on (a run failed, a deadline passed) records a failed check and ends
//! the drill; the report still prints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::Lab;
use super::failover_fallback;
use super::report::PhaseRow;
use super::runs::{self, Started};
use super::sql;
use super::topology::{SHELL_DC1, dc1_files};
use super::traffic::{Ack, Target};
use crate::harness::fleet::OPERATOR;
use crate::harness::wait_for;

/// DATETIME rounding margin (see the module doc).
const ROUNDING: chrono::TimeDelta = chrono::TimeDelta::milliseconds(5);

/// Messages per pool that must be in a log restored on the backup before DC1 is lost.
const WARM_UP_MESSAGES: usize = 20;
/// Messages per pool the traffic must write after a runbook before the drill goes on.
const RESUMED_MESSAGES: usize = 20;

/// When DC1 was lost, and per pool the newest log backup that had reached DC2 by then.
struct Loss {
    at: Instant,
    utc: chrono::NaiveDateTime,
    shipped: BTreeMap<String, Option<sql::RestoredLog>>,
}

/// Runs every phase; a phase error becomes a failed check.
pub async fn run(lab: &mut Lab) {
    if let Err(e) = phases(lab).await {
        lab.report.check("drill completed", false, format!("{e:#}"));
    }
}

async fn phases(lab: &mut Lab) -> anyhow::Result<()> {
    warm_up(lab).await?;
    preflight(lab).await?;
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
    rebuild_dc1(lab).await?;
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

/// The last component of a path, for short report lines.
fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn acks_of<'a>(acks: &'a [Ack], pool: &'a str) -> impl Iterator<Item = &'a Ack> + 'a {
    acks.iter().filter(move |a| a.pool == pool)
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

async fn preflight(lab: &mut Lab) -> anyhow::Result<()> {
    let t = lab.report.begin("preflight: failbackctl preflight --all");
    let out = lab.fleet.ctl(OPERATOR, &["preflight", "--all"]).await?;
    if runs::is_missing_subcommand(out.code, &out.stderr) {
        lab.report.warn(
            "failbackctl preflight is not built yet (unrecognized subcommand); the drill goes on without it",
        );
        lab.report.end(t, "not available yet");
        return Ok(());
    }
    println!("{}", out.stdout.trim_end());
    if !out.stderr.trim().is_empty() {
        println!("{}", out.stderr.trim_end());
    }
    lab.report.check(
        "preflight says every pool is ready",
        out.code == 0,
        format!("exit code {}", out.code),
    );
    lab.report.end(t, format!("exit code {}", out.code));
    Ok(())
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
    let mut dc1 = vec![SHELL_DC1.to_string()];
    dc1.extend(lab.pools.iter().map(|p| p.primary.clone()));
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

/// Per pool, the start of the last log backup restored, as the failover run reported its loss
/// window (FO-3's `loss_window.last_restored_backup_time`).
type Reported = BTreeMap<String, chrono::NaiveDateTime>;

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

/// The failover runbook, or the temporary fallback while it does not exist. `Ok(None)`: it
/// failed (recorded), the drill stops; otherwise the loss windows the run reported.
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
            lab.report.end(t, runs::reason(&detail));
            Ok(ok.then_some(reported))
        }
        Started::Missing(msg) => {
            lab.report.warn(format!(
                "failbackctl run failover is not built yet ({msg}); the lab failed over with its TEMPORARY fallback (failover_fallback.rs)"
            ));
            let mut outcomes = Vec::new();
            for p in lab.pools.clone() {
                let o = failover_fallback::fail_over_pool(
                    &p,
                    &lab.sims[&p.backup],
                    &lab.fleet.cms_store(),
                )
                .await?;
                println!(
                    "   {}: share {}, {} log(s) copied, {} applied{}",
                    p.fqdn,
                    if o.share_reachable {
                        "reachable"
                    } else {
                        "lost"
                    },
                    o.copied,
                    o.applied.len(),
                    o.gap
                        .as_deref()
                        .map(|g| format!(", GAP before {g}"))
                        .unwrap_or_default()
                );
                outcomes.push(o);
            }
            let gaps = outcomes.iter().filter(|o| o.gap.is_some()).count();
            lab.report.end(
                t,
                format!("TEMPORARY lab fallback; {gaps} pool(s) stopped at a gap"),
            );
            Ok(Some(Reported::new()))
        }
    }
}

/// Counts what survived the failover, checks the loss is inside the window; returns per pool
/// the bodies found in the backup `mgc`.
async fn count_after_failover(
    lab: &mut Lab,
    loss: &Loss,
    reported: &Reported,
) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let t = lab.report.begin("count messages after failover");
    let acks = lab.traffic.ledger.acks();
    let mut survivors = BTreeMap::new();
    let mut row = PhaseRow {
        name: "before DC1 loss -> backup mgc".into(),
        ..PhaseRow::default()
    };
    let (mut window_msgs, mut bad) = (0usize, Vec::new());
    let mut rpo = Duration::ZERO;
    for p in lab.pools.clone() {
        let backup = &lab.sims[&p.backup];
        let state = sql::database_state(backup, "mgc").await?;
        lab.report.check(
            format!("{}: backup mgc ONLINE after failover", p.fqdn),
            state.as_deref() == Some("ONLINE"),
            format!("{} mgc is {state:?}", p.backup),
        );
        let bodies: BTreeSet<String> = sql::message_bodies(backup).await?.into_iter().collect();
        let last = sql::last_restored_log(backup).await?;
        let shipped = loss.shipped.get(&p.fqdn).cloned().flatten();
        let applied_all = match (&shipped, &last) {
            (Some(s), Some(l)) => l.last_lsn >= s.last_lsn,
            (None, _) => true,
            (Some(_), None) => false,
        };
        lab.report.check(
            format!("{}: failover applied every log that reached DC2", p.fqdn),
            applied_all,
            format!(
                "newest in DC2 {} (LastLSN {}), last restored {} (LastLSN {})",
                shipped.as_ref().map_or("none", |l| file_name(&l.file)),
                shipped.as_ref().map_or(0, |l| l.last_lsn),
                last.as_ref().map_or("none", |l| file_name(&l.file)),
                last.as_ref().map_or(0, |l| l.last_lsn)
            ),
        );
        let written: Vec<&Ack> = acks_of(&acks, &p.fqdn)
            .filter(|a| a.target == Target::Primary && a.at < loss.at)
            .collect();
        let lost: Vec<&&Ack> = written
            .iter()
            .filter(|a| !bodies.contains(&a.body))
            .collect();
        let start = shipped.as_ref().map(|l| l.backup_start);
        let in_window = |a: &Ack| start.is_none_or(|s| a.utc + ROUNDING >= s);
        let pool_window = written.iter().filter(|a| in_window(a)).count();
        let outside: Vec<&&&Ack> = lost.iter().filter(|a| !in_window(a)).collect();
        if let Some(s) = start {
            let w = (loss.utc - s).to_std().unwrap_or_default();
            rpo = rpo.max(w);
        }
        println!(
            "   {}: {} written before the loss, {} found, {} lost; newest shipped log began {}, {} messages after it",
            p.fqdn,
            written.len(),
            written.len() - lost.len(),
            lost.len(),
            start.map_or("-".into(), |s| s.format("%H:%M:%S%.3f").to_string()),
            pool_window
        );
        if let Some(r) = reported.get(&p.fqdn) {
            let beyond = lost.iter().filter(|a| a.utc + ROUNDING < *r).count();
            lab.report.check(
                format!(
                    "{}: loss within the window the failover run reported",
                    p.fqdn
                ),
                beyond == 0,
                format!(
                    "{} lost, {} of them acknowledged before the reported start {}",
                    lost.len(),
                    beyond,
                    r.format("%H:%M:%S%.3f")
                ),
            );
        }
        if let Some(a) = outside.first() {
            bad.push(format!(
                "{}: {} lost outside the window (e.g. {} acknowledged {})",
                p.fqdn,
                outside.len(),
                a.body,
                a.utc.format("%H:%M:%S%.3f")
            ));
        }
        row.written += written.len();
        row.lost += lost.len();
        row.found += written.len() - lost.len();
        window_msgs += pool_window;
        survivors.insert(p.fqdn.clone(), bodies);
    }
    row.allowed = format!("<= {window_msgs} (written after the last shipped log began)");
    lab.report.check(
        "failover lost nothing beyond the last log shipped to DC2",
        bad.is_empty(),
        if bad.is_empty() {
            format!(
                "{} lost of {} written, all after the last shipped log backup began",
                row.lost, row.written
            )
        } else {
            bad.join("; ")
        },
    );
    lab.report.rpo = Some(rpo);
    lab.report.phases.push(row);
    lab.report.end(t, "counted");
    Ok(survivors)
}

/// Waits until every pool has acknowledged writes to `target` after `since`; returns the worst
/// pool's delay from `since` to its first one (the RTO achieved).
async fn traffic_resumes(
    lab: &mut Lab,
    target: Target,
    since: Instant,
    what: &str,
) -> anyhow::Result<Option<Duration>> {
    let ledger = lab.traffic.ledger.clone();
    let pools: Vec<String> = lab.pools.iter().map(|p| p.fqdn.clone()).collect();
    let r = wait_for(what, Duration::from_secs(60), || async {
        let acks = ledger.acks();
        let mut worst = Duration::ZERO;
        for p in &pools {
            let after: Vec<&Ack> = acks_of(&acks, p)
                .filter(|a| a.target == target && a.at > since)
                .collect();
            if after.len() < RESUMED_MESSAGES {
                return None;
            }
            worst = worst.max(after[0].at - since);
        }
        Some(worst)
    })
    .await;
    match r {
        Ok(d) => {
            lab.report.check(
                what,
                true,
                format!("first write {:.1} s after the start", d.as_secs_f64()),
            );
            Ok(Some(d))
        }
        Err(e) => {
            lab.report.check(what, false, format!("{e:#}"));
            Ok(None)
        }
    }
}

/// The chat servers' sessions show in `sys.sysprocesses` under their own names, as FB-1's
/// session check lists them (host name and program name from LOGIN7).
async fn chat_sessions_visible(lab: &mut Lab) -> anyhow::Result<()> {
    for p in lab.pools.clone() {
        let rows = sql::batch(
            &lab.sims[&p.backup],
            "master",
            "SELECT hostname, program_name FROM sys.sysprocesses WHERE dbid = DB_ID(N'mgc')",
        )
        .await?;
        let seen: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r.get::<&str, _>(0).unwrap_or_default().trim(),
                    r.get::<&str, _>(1).unwrap_or_default().trim()
                )
            })
            .collect();
        let want = format!("{}/ChatServer.exe", p.chat_dc2);
        lab.report.check(
            format!("{}: the DC2 chat server's session shows as {want}", p.fqdn),
            seen.contains(&want),
            format!("sessions in {} mgc: {seen:?}", p.backup),
        );
    }
    Ok(())
}

/// Rebuilds DC1 as Topology Builder leaves it: fresh SQL instances (same names and ports) with
/// an empty `mgc` and `mgccomp`, an empty share, the agents reinstalled (fresh state).
async fn rebuild_dc1(lab: &mut Lab) -> anyhow::Result<()> {
    let t = lab
        .report
        .begin("rebuild DC1 (fresh SQL instances with an empty mgc, agents)");
    for p in lab.pools.clone() {
        let old_port = lab.sims[&p.primary].port;
        let dir = lab
            .fleet
            .dir
            .join("sql")
            .join(format!("{}-rebuilt", p.primary));
        let mut sim = sql::new_sim(&p.primary, &dir, Some(old_port), lab.opts.db_size_mb)?;
        sim.start().await?;
        sql::batch(
            &sim,
            "master",
            "CREATE DATABASE mgc; CREATE DATABASE mgccomp",
        )
        .await?;
        std::fs::create_dir_all(&p.share)?;
        lab.sims.insert(p.primary.clone(), sim);
    }
    let mut dc1 = vec![SHELL_DC1.to_string()];
    dc1.extend(lab.pools.iter().map(|p| p.primary.clone()));
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
    lab.report.end(t, runs::reason(&detail));
    Ok(ok.then_some(start))
}

/// Every message that existed before FB-1 must be in the primary `mgc`.
async fn count_after_failback(
    lab: &mut Lab,
    survivors: &BTreeMap<String, BTreeSet<String>>,
) -> anyhow::Result<()> {
    let t = lab.report.begin("count messages after failback");
    let acks = lab.traffic.ledger.acks();
    let mut during = PhaseRow {
        name: "while failed over -> primary mgc".into(),
        allowed: "0".into(),
        ..PhaseRow::default()
    };
    let mut all = PhaseRow {
        name: "all before FB-1 -> primary mgc".into(),
        allowed: "0".into(),
        ..PhaseRow::default()
    };
    for p in lab.pools.clone() {
        let primary = &lab.sims[&p.primary];
        let bodies: BTreeSet<String> = sql::message_bodies(primary).await?.into_iter().collect();
        let failed_over: BTreeSet<&str> = acks_of(&acks, &p.fqdn)
            .filter(|a| a.target == Target::Backup)
            .map(|a| a.body.as_str())
            .collect();
        let mut expected: BTreeSet<&str> = failed_over.clone();
        if let Some(s) = survivors.get(&p.fqdn) {
            expected.extend(s.iter().map(String::as_str));
        }
        let missing = expected.iter().filter(|b| !bodies.contains(**b)).count();
        let missing_fo = failed_over.iter().filter(|b| !bodies.contains(**b)).count();
        println!(
            "   {}: {} expected on the primary ({} written while failed over), {} found, {} missing",
            p.fqdn,
            expected.len(),
            failed_over.len(),
            expected.len() - missing,
            missing
        );
        during.written += failed_over.len();
        during.lost += missing_fo;
        during.found += failed_over.len() - missing_fo;
        all.written += expected.len();
        all.lost += missing;
        all.found += expected.len() - missing;
    }
    lab.report.check(
        "failback lost no message written before FB-1",
        all.lost == 0,
        format!("{} of {} found on the primaries", all.found, all.written),
    );
    lab.report.phases.push(during);
    lab.report.phases.push(all);
    lab.report.end(t, "counted");
    Ok(())
}

/// After the traffic stopped: every write the primaries acknowledged after the failback is
/// there.
async fn count_after_traffic(lab: &mut Lab, since: Instant) -> anyhow::Result<()> {
    let acks = lab.traffic.ledger.acks();
    let mut row = PhaseRow {
        name: "after failback -> primary mgc".into(),
        allowed: "0".into(),
        ..PhaseRow::default()
    };
    for p in lab.pools.clone() {
        let bodies: BTreeSet<String> = sql::message_bodies(&lab.sims[&p.primary])
            .await?
            .into_iter()
            .collect();
        for a in acks_of(&acks, &p.fqdn).filter(|a| a.target == Target::Primary && a.at > since) {
            row.written += 1;
            if bodies.contains(&a.body) {
                row.found += 1;
            } else {
                row.lost += 1;
            }
        }
    }
    lab.report.check(
        "messages written after the failback are on the primary",
        row.lost == 0,
        format!("{} of {}", row.found, row.written),
    );
    lab.report.phases.push(row);
    let failed = lab.traffic.ledger.failed();
    println!(
        "   chat writes refused or unacknowledged during the drill: {failed} (not counted as written)"
    );
    Ok(())
}

/// Pools Normal with the DC1 chat servers active, primary `mgc` ONLINE, backup `mgc`
/// RESTORING (shipping again).
async fn final_state(lab: &mut Lab) -> anyhow::Result<()> {
    let t = lab.report.begin("final state");
    let store = crate::lyncsim::store::Store::new(&lab.fleet.cms_store());
    let cms = tokio::task::spawn_blocking(move || store.load()).await??;
    for p in lab.pools.clone() {
        let pool = cms.pools.iter().find(|x| x.fqdn == p.fqdn);
        let (state, active) = pool.map_or((String::new(), Vec::new()), |x| {
            (x.pool_state.clone(), x.active_servers.clone())
        });
        lab.report.check(
            format!("{}: pool Normal, DC1 chat server active", p.fqdn),
            state == "Normal" && active == vec![p.chat_dc1.clone()],
            format!("{state}, active {active:?}"),
        );
        let ps = sql::database_state(&lab.sims[&p.primary], "mgc").await?;
        let bs = sql::database_state(&lab.sims[&p.backup], "mgc").await?;
        lab.report.check(
            format!("{}: primary mgc ONLINE, backup mgc RESTORING", p.fqdn),
            ps.as_deref() == Some("ONLINE") && bs.as_deref() == Some("RESTORING"),
            format!("primary {ps:?}, backup {bs:?}"),
        );
    }
    lab.report.end(t, "checked");
    Ok(())
}
