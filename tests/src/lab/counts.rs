//! The drill's checks on messages and end state, and the numbers of the report.
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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::Lab;
use super::report::PhaseRow;
use super::sql;
use super::traffic::{Ack, Target};
use crate::harness::wait_for;

/// DATETIME rounding margin (see the module doc).
pub(super) const ROUNDING: chrono::TimeDelta = chrono::TimeDelta::milliseconds(5);
/// Messages per pool the traffic must write after a runbook before the drill goes on.
const RESUMED_MESSAGES: usize = 20;

/// When DC1 was lost, and per pool the newest log backup that had reached DC2 by then.
pub(super) struct Loss {
    /// The moment (lab clock).
    pub(super) at: Instant,
    /// The same moment in UTC.
    pub(super) utc: chrono::NaiveDateTime,
    /// Newest log backup in the copy folder per pool.
    pub(super) shipped: BTreeMap<String, Option<sql::RestoredLog>>,
}

/// Per pool, the start of the last log backup restored, as the failover run reported its loss
/// window (FO-3's `loss_window.last_restored_backup_time`).
pub(super) type Reported = BTreeMap<String, chrono::NaiveDateTime>;

/// The last component of a path, for short report lines.
pub(super) fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

pub(super) fn acks_of<'a>(acks: &'a [Ack], pool: &'a str) -> impl Iterator<Item = &'a Ack> + 'a {
    acks.iter().filter(move |a| a.pool == pool)
}

/// Counts what survived the failover, checks the loss is inside the window; returns per pool
/// the bodies found in the backup `mgc`.
pub(super) async fn count_after_failover(
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
            format!(
                "{} mgc is {}",
                p.backup,
                state.as_deref().unwrap_or("missing")
            ),
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
pub(super) async fn traffic_resumes(
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
pub(super) async fn chat_sessions_visible(lab: &mut Lab) -> anyhow::Result<()> {
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
            format!("sessions in {} mgc: {}", p.backup, seen.join(", ")),
        );
    }
    Ok(())
}

/// Every message that existed before FB-1 must be in the primary `mgc`.
pub(super) async fn count_after_failback(
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
pub(super) async fn count_after_traffic(lab: &mut Lab, since: Instant) -> anyhow::Result<()> {
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
pub(super) async fn final_state(lab: &mut Lab) -> anyhow::Result<()> {
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
            format!("{state}, active {}", active.join(", ")),
        );
        if lab.opts.mirrors {
            let role = sql::mirroring_role(&lab.sims[&p.backup]).await?;
            lab.report.check(
                format!("{}: backup mgc no longer mirrored", p.fqdn),
                role.is_none(),
                format!("mirroring role {}", role.as_deref().unwrap_or("none")),
            );
        }
        let ps = sql::database_state(&lab.sims[&p.primary], "mgc").await?;
        let bs = sql::database_state(&lab.sims[&p.backup], "mgc").await?;
        lab.report.check(
            format!("{}: primary mgc ONLINE, backup mgc RESTORING", p.fqdn),
            ps.as_deref() == Some("ONLINE") && bs.as_deref() == Some("RESTORING"),
            format!(
                "primary {}, backup {}",
                ps.as_deref().unwrap_or("missing"),
                bs.as_deref().unwrap_or("missing")
            ),
        );
    }
    // Log shipping's .trn files carry no backup checksums and SQL Server refuses CHECKSUM on
    // them (3187): no log restore and no header read may ask for it (issue #11). Parameters are
    // not in the statement log, so VERIFYONLY (which FB-3 and FB-5 run WITH CHECKSUM on their own
    // full backups) is not judged here; the agent reads .trn files with HEADERONLY only.
    let mut read = 0usize;
    let mut offending: Vec<String> = Vec::new();
    for (agent, sim) in &lab.sims {
        for st in sim.statements() {
            let text = st.text.to_ascii_uppercase();
            if st.kind == "agent" || !(text.contains("RESTORE LOG") || text.contains("HEADERONLY"))
            {
                continue;
            }
            read += 1;
            if text.contains("CHECKSUM") {
                offending.push(format!("{agent}: {}", st.text));
            }
        }
    }
    lab.report.check(
        "no log restore or backup header read asked for CHECKSUM",
        offending.is_empty() && read > 0,
        if offending.is_empty() {
            format!("{read} RESTORE LOG / HEADERONLY statements sent, none WITH CHECKSUM")
        } else {
            offending.join("; ")
        },
    );
    lab.report.end(t, "checked");
    Ok(())
}
