//! Runs one scenario end to end with real processes: builds the failed-over lab (on etcd when
//! the scenario asks; in namespaces of its own when the share must be a small volume,
//! [`super::volume`]), runs preflight if asked ([`super::preflight`]), starts the failback,
//! then one loop every [`TICK`] that samples which `mgc`
//! copies are writable, fires the next fault when its point is reached, performs due restarts,
//! and watches the run until it ends. Then it reads the evidence the processes left, runs every
//! invariant checker and the scenario's expectations, and writes the outcome as JSON for
//! RELIABILITY.md.
//!
//! With a test-only break (`FAILBACK_TEST_BREAK`) the same scenario shows that its checker
//! catches the broken invariant: the outcome then records whether it did.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::evidence::{
    ChatSeen, Evidence, Fired, Instance, Sample, ShippingSeen, now_ms, read_journals, read_scripts,
};
use super::fault_window::FaultWindow;
use super::faults::{Later, fire, perform};
use super::invariants::{Verdict, check_all};
use super::spec::{Action, DURING, Point, Role, Scenario};
use crate::harness::etcd::{EtcdCluster, unique_cluster};
use crate::harness::failed_over::{FailedOverLab, MESSAGES, Options, failed_over};
use crate::harness::fleet::{APPROVER, OPERATOR};
use crate::harness::sqlsim::{SA_PASSWORD, SqlSim};
use crate::lab::topology::PoolLayout;
use crate::lab::traffic::{Ledger, PoolTarget, Target, Traffic};

/// The loop's period.
const TICK: Duration = Duration::from_millis(250);
/// How long an `awaiting_approval` run is watched for a destructive statement before the
/// scenario ends.
const SETTLE: Duration = Duration::from_secs(3);

/// A measured takeover.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Takeover {
    /// The fault.
    pub fault: String,
    /// From the fault to the new leader's first completed agent operation, ms.
    pub ms: Option<u64>,
    /// That operation.
    pub first_op: Option<String>,
    /// The lease TTL, ms.
    pub ttl_ms: u64,
}

/// One expectation's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// The `[expect]` key it checks (what a `[[catches]]` entry's `expect` names).
    pub key: String,
    /// What was expected.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub seen: String,
}

/// What a scenario run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// Scenario name.
    pub scenario: String,
    /// Its one-line description.
    pub about: String,
    /// The issue #12 finding it covers.
    pub defect: Option<String>,
    /// The test-only break active, if any.
    #[serde(rename = "break")]
    pub break_name: Option<String>,
    /// The run's final status.
    pub status: String,
    /// Run duration, ms.
    pub duration_ms: u64,
    /// Faults as fired, with restarts.
    pub fired: Vec<Fired>,
    /// Invariant verdicts.
    pub invariants: Vec<Verdict>,
    /// Expectation results.
    pub expectations: Vec<Check>,
    /// Takeover measurements.
    pub takeovers: Vec<Takeover>,
}

impl Outcome {
    /// Every invariant held and every expectation held.
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|v| v.ok) && self.expectations.iter().all(|c| c.ok)
    }

    /// The verdict of invariant `n`.
    pub fn invariant(&self, n: u8) -> Option<&Verdict> {
        self.invariants.iter().find(|v| v.invariant == n)
    }

    /// A readable account for a failing test.
    pub fn explain(&self) -> String {
        let mut s = format!("scenario {} (status {}):\n", self.scenario, self.status);
        for v in &self.invariants {
            s.push_str(&format!(
                "  §9.{} {}: {} — {}\n",
                v.invariant,
                v.name,
                if v.ok { "held" } else { "BROKEN" },
                v.detail
            ));
        }
        for c in &self.expectations {
            s.push_str(&format!(
                "  expect {}: {} — {}\n",
                c.what,
                if c.ok { "ok" } else { "FAILED" },
                c.seen
            ));
        }
        for f in &self.fired {
            s.push_str(&format!("  fired {} at {}: {}\n", f.label, f.at_ms, f.note));
        }
        s
    }
}

/// Where outcomes are written: `target/scenarios` (next to the binaries the scenarios ran).
pub fn results_dir() -> anyhow::Result<PathBuf> {
    let bin = crate::harness::process::bin_dir()?;
    Ok(bin
        .parent()
        .map_or_else(|| bin.join("scenarios"), |t| t.join("scenarios")))
}

async fn mgc_state(sim: &SqlSim) -> Option<(String, bool)> {
    let q = sim.batch_as(
        ("sa", SA_PASSWORD),
        "master",
        "SELECT state_desc, is_read_only FROM sys.databases WHERE name = 'mgc'",
    );
    let rows = tokio::time::timeout(Duration::from_secs(2), q)
        .await
        .ok()?
        .ok()?;
    let r = rows.first()?;
    Some((r.get::<&str, _>(0)?.to_string(), r.get::<bool, _>(1)?))
}

async fn sample(lab: &FailedOverLab) -> Sample {
    let p = &lab.pools[0];
    let mut mgc = BTreeMap::new();
    for sim in [&p.primary, &p.backup] {
        if let Some(s) = mgc_state(sim).await {
            mgc.insert(sim.name.clone(), s);
        }
    }
    Sample {
        at_ms: now_ms(),
        mgc,
    }
}

fn step_done(detail: &serde_json::Value, step: &str) -> bool {
    let s = &detail["pools"][0]["outputs"][step]["status"];
    s == "succeeded" || s == "skipped"
}

fn reached(
    point: &Point,
    lab: &FailedOverLab,
    detail: &serde_json::Value,
    last_fire: Instant,
) -> bool {
    match point {
        Point::Start => true,
        Point::AwaitingApproval => detail["run"]["status"] == "awaiting_approval",
        Point::After(step) => step_done(detail, step),
        Point::Delay(d) => last_fire.elapsed() >= *d,
        Point::During(step) => {
            let Some((_, role, prefix)) = DURING.iter().find(|(n, _, _)| n == step) else {
                return false;
            };
            let p = &lab.pools[0];
            let (sim, skip) = match role {
                Role::Primary => (&p.primary, p.setup_statements.0),
                Role::Backup => (&p.backup, p.setup_statements.1),
            };
            Instance::read(&sim.name, sim, skip)
                .starting(prefix)
                .next()
                .is_some()
        }
    }
}

const FINAL: &[&str] = &["succeeded", "failed", "aborted"];

/// Runs `s`, with test-only break `breaks` if given.
pub async fn run(s: &Scenario, break_name: Option<&str>) -> anyhow::Result<Outcome> {
    if s.fleet.share_free_mb.is_some() && !super::volume::inside() {
        return super::volume::run_isolated(s, break_name).await;
    }
    let mut etcd = if s.on_etcd() {
        Some(
            EtcdCluster::start(s.fleet.etcd_members)
                .await
                .with_context(|| {
                    format!(
                        "scenario {}: start a {}-member etcd (Debian's etcd-server)",
                        s.name, s.fleet.etcd_members
                    )
                })?,
        )
    } else {
        None
    };
    let env = break_name
        .map(|b| vec![(failback_proto::test_break::ENV.to_string(), b.to_string())])
        .unwrap_or_default();
    let mut lab = failed_over(Options {
        etcd: etcd
            .as_ref()
            .map(|e| (e.endpoints(), unique_cluster(&s.name), s.fleet.lease_ttl)),
        primary_args: vec![(0, s.fleet.primary_sql_args.clone())],
        backup_args: vec![(0, s.fleet.backup_sql_args.clone())],
        heartbeat: s.fleet.heartbeat,
        mirrored: s.fleet.mirrored,
        stale_secondary: s.fleet.stale_secondary,
        cuttable_etcd: s
            .faults
            .iter()
            .any(|f| matches!(f.action, Action::CutLeaderEtcd { .. })),
        env,
        lync_delay: s.fleet.lync_delay,
        runbook_extra: s
            .fleet
            .backup_retention_runs
            .map(|n| format!("backup_retention_runs = {n}\n"))
            .unwrap_or_default(),
        ..Options::default()
    })
    .await
    .with_context(|| format!("scenario {}: build the failed-over lab", s.name))?;
    if etcd.is_some() {
        lab.fleet.leader(Duration::from_secs(30)).await?;
    }
    let earlier = super::cycle::earlier_failbacks(&mut lab, s.run.earlier_failbacks)
        .await
        .with_context(|| format!("scenario {}: earlier failbacks", s.name))?;
    let pool = lab.pools[0].fqdn.clone();
    let volume = match s.fleet.share_free_mb {
        Some(mb) => Some(
            super::volume::shrink(&lab.share(), mb)
                .with_context(|| format!("scenario {}: a share with {mb} MiB free", s.name))?,
        ),
        None => None,
    };
    let preflight = if s.run.preflight {
        super::preflight::run(&lab, &pool)
            .await
            .with_context(|| format!("scenario {}: preflight", s.name))?
    } else {
        Vec::new()
    };
    let started_ms = now_ms();
    let began = Instant::now();
    let mut args = vec!["--pool", pool.as_str()];
    if s.run.yes {
        args.push("--yes");
    }
    let mut traffic =
        (s.fleet.traffic || !s.fleet.stubborn_chat.is_empty()).then(|| chat_traffic(&lab, s));
    let run = lab.start_failback(APPROVER, &args).await?;

    let mut samples = Vec::new();
    let mut fired: Vec<Fired> = Vec::new();
    let mut pending: Vec<(Instant, Later)> = Vec::new();
    let mut next = 0;
    let mut last_fire = Instant::now();
    let mut detail = serde_json::Value::Null;
    let mut settled: Option<Instant> = None;
    let mut window = FaultWindow::new(&s.expect);
    loop {
        samples.push(sample(&lab).await);
        if let Ok(d) = lab.status(&run).await {
            detail = d;
        }
        let now = Instant::now();
        let due: Vec<Later> = pending
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, l)| l.clone())
            .collect();
        pending.retain(|(t, _)| *t > now);
        for l in due {
            window.close(&lab).await;
            let note = perform(&l, &mut lab, etcd.as_mut()).await?;
            fired.push(Fired {
                label: "restore".into(),
                at_ms: now_ms(),
                note,
                epoch_before: None,
                damaged_file: None,
                probes: None,
            });
        }
        if let Some(f) = s.faults.get(next)
            && reached(&f.at, &lab, &detail, last_fire)
        {
            if next == 0 {
                window.open(&lab).await;
            }
            let (done, later) = fire(f, &mut lab, etcd.as_mut(), &run, &detail)
                .await
                .with_context(|| format!("scenario {}: fire {}", s.name, f.label))?;
            fired.push(done);
            pending.extend(later.into_iter().map(|(d, l)| (Instant::now() + d, l)));
            last_fire = Instant::now();
            next += 1;
            continue;
        }
        let status = detail["run"]["status"].as_str().unwrap_or_default();
        let faults_done = next == s.faults.len() && pending.is_empty();
        if FINAL.contains(&status) && (faults_done || pending.is_empty()) {
            break;
        }
        if faults_done && s.expect.status == "awaiting_approval" && status == "awaiting_approval" {
            let t = *settled.get_or_insert_with(Instant::now);
            if t.elapsed() >= SETTLE {
                break;
            }
        }
        if began.elapsed() > s.expect.deadline {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    // Whatever is still down comes back before the evidence is read.
    for (_, l) in std::mem::take(&mut pending) {
        let _ = perform(&l, &mut lab, etcd.as_mut()).await;
    }
    if let Ok(d) = lab.status(&run).await {
        detail = d;
    }
    samples.push(sample(&lab).await);
    let duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);

    let p = &lab.pools[0];
    let primary_messages = p
        .primary
        .batch_as(
            ("sa", SA_PASSWORD),
            "mgc",
            "SELECT COUNT(*) FROM dbo.Messages",
        )
        .await
        .ok()
        .and_then(|r| r.first().and_then(|r| r.get::<i32, _>(0)))
        .and_then(|n| usize::try_from(n).ok());
    let backup_shipping = shipping_seen(&p.backup).await;
    let chat = match traffic.as_mut() {
        Some(t) => {
            t.stop().await;
            Some(chat_seen(&t.ledger, &p.primary, &p.backup).await)
        }
        None => None,
    };
    let ev = Evidence {
        pool: pool.clone(),
        primary: Instance::read(&p.primary.name, &p.primary, p.setup_statements.0),
        backup: Instance::read(&p.backup.name, &p.backup, p.setup_statements.1),
        scripts: read_scripts(&lab.fleet.cms_store()),
        journals: read_journals(&lab.fleet),
        detail: detail.clone(),
        fired: fired.clone(),
        samples,
        primary_messages,
        backup_shipping,
        chat,
        messages_before: MESSAGES,
        started_ms,
    };
    let invariants = check_all(&ev);
    let (mut expectations, takeovers) = expectations(s, &lab, &ev, &window).await;
    if let Some(keep) = s.expect.share_holds_failbacks {
        expectations.push(super::cycle::share_holds(&lab, &earlier, &run, keep));
    }
    expectations.extend(super::preflight::fails(
        &s.expect.preflight_fails,
        &preflight,
    ));
    if let (Some(mb), Some(v)) = (s.fleet.share_free_mb, &volume) {
        // The setup itself is checked: a volume that did not take would make the scenario
        // pass or fail for the wrong reason.
        let want = u64::from(mb) << 20;
        expectations.push(Check {
            key: "share_free_mb".into(),
            what: format!("the share's volume has {mb} MiB free when the run starts"),
            ok: v.free_bytes.abs_diff(want) <= 64 << 10,
            seen: format!(
                "{} bytes free, {} bytes of the lab's files on it",
                v.free_bytes, v.used_bytes
            ),
        });
    }
    // Last: a new run changes what the checks above read.
    if s.expect.new_run_accepted {
        expectations.push(new_run_accepted(&lab, &pool).await);
    }
    let outcome = Outcome {
        scenario: s.name.clone(),
        about: s.about.clone(),
        defect: s.defect.clone(),
        break_name: break_name.map(str::to_string),
        status: detail["run"]["status"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        duration_ms,
        fired,
        invariants,
        expectations,
        takeovers,
    };
    write_outcome(&outcome)?;
    if let Some(v) = volume {
        v.release();
    }
    drop(lab);
    drop(etcd);
    Ok(outcome)
}

/// Where the outcome of `scenario` (with `break_name`) is written.
pub fn outcome_path(scenario: &str, break_name: Option<&str>) -> anyhow::Result<PathBuf> {
    let name = match break_name {
        Some(b) => format!("{scenario}+{b}.json"),
        None => format!("{scenario}.json"),
    };
    Ok(results_dir()?.join(name))
}

fn write_outcome(o: &Outcome) -> anyhow::Result<()> {
    let path = outcome_path(&o.scenario, o.break_name.as_deref())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(o)?)?;
    Ok(())
}

/// `new_run_accepted`: a failback of `pool` started now (without `--yes`, so nothing destructive
/// runs) is accepted; it is aborted at once.
async fn new_run_accepted(lab: &FailedOverLab, pool: &str) -> Check {
    let seen = match lab.start_failback(APPROVER, &["--pool", pool]).await {
        Ok(run) => {
            let abort = lab.fleet.ctl(APPROVER, &["abort", &run]).await;
            format!(
                "started {run} (then aborted: {})",
                match abort {
                    Ok(o) if o.code == 0 => "ok".to_string(),
                    Ok(o) => o.stderr.trim().to_string(),
                    Err(e) => e.to_string(),
                }
            )
        }
        Err(e) => format!("refused: {e:#}"),
    };
    Check {
        key: "new_run_accepted".into(),
        what: "a new failback of the pool is accepted once the run has ended".into(),
        ok: seen.starts_with("started"),
        seen,
    }
}

/// `report_names_takeover`: the report's `leaders` list a coordinator that took over.
async fn report_names_takeover(lab: &FailedOverLab, ev: &Evidence) -> Check {
    let run = ev.detail["run"]["run_id"].as_str().unwrap_or_default();
    let leaders = match lab
        .fleet
        .ctl(OPERATOR, &["report", run, "--format", "json"])
        .await
    {
        Ok(o) if o.code == 0 => serde_json::from_str::<serde_json::Value>(&o.stdout)
            .map(|v| v["leaders"].clone())
            .map_err(|e| format!("unreadable report: {e}")),
        Ok(o) => Err(format!(
            "failbackctl report failed ({}): {}",
            o.code,
            o.stderr.trim()
        )),
        Err(e) => Err(e.to_string()),
    };
    let took: Vec<&str> = leaders
        .as_ref()
        .ok()
        .and_then(|l| l.as_array())
        .map(|a| {
            a.iter()
                .filter(|l| l["took_over"] == true)
                .filter_map(|l| l["coordinator"].as_str())
                .collect()
        })
        .unwrap_or_default();
    Check {
        key: "report_names_takeover".into(),
        what: "the run's report names the coordinator that took over".into(),
        ok: !took.is_empty(),
        seen: match &leaders {
            Ok(l) => format!("leaders {l}"),
            Err(e) => e.clone(),
        },
    }
}

async fn expectations(
    s: &Scenario,
    lab: &FailedOverLab,
    ev: &Evidence,
    window: &FaultWindow,
) -> (Vec<Check>, Vec<Takeover>) {
    let e = &s.expect;
    let mut out = Vec::new();
    let status = ev.detail["run"]["status"].as_str().unwrap_or("unknown");
    out.push(Check {
        key: "status".into(),
        what: format!("run ends {}", e.status),
        ok: status == e.status || (e.status == "ended" && FINAL.contains(&status)),
        seen: format!(
            "{status} {}",
            ev.detail["run"]["reason"].as_str().unwrap_or_default()
        ),
    });
    let fault_fires = ev.fired.iter().filter(|f| f.label != "restore").count();
    out.push(Check {
        key: "faults".into(),
        what: format!("all {} faults fire", s.faults.len()),
        ok: fault_fires == s.faults.len(),
        seen: format!("{fault_fires} fired"),
    });
    if let Some(step) = &e.failed_step {
        let o = &ev.outputs()[step.as_str()];
        out.push(Check {
            key: "failed_step".into(),
            what: format!("{step} failed"),
            ok: o["status"] == "failed",
            seen: o["status"].to_string(),
        });
    }
    if !e.error_contains.is_empty() {
        let errors: Vec<String> = ev
            .outputs()
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|o| o["error"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let all = errors.join(" | ");
        for want in &e.error_contains {
            out.push(Check {
                key: "error_contains".into(),
                what: format!("the error says '{want}'"),
                ok: all.contains(want.as_str()),
                seen: all.clone(),
            });
        }
    }
    let reason = ev.detail["run"]["reason"].as_str().unwrap_or_default();
    for want in &e.reason_contains {
        out.push(Check {
            key: "reason_contains".into(),
            what: format!("the run's reason says '{want}'"),
            ok: reason.contains(want.as_str()),
            seen: reason.to_string(),
        });
    }
    if e.no_restore {
        let n = ev.primary.starting("RESTORE DATABASE").count();
        out.push(Check {
            key: "no_restore".into(),
            what: "no RESTORE DATABASE reached the primary".into(),
            ok: n == 0,
            seen: format!("{n}"),
        });
    }
    if let Some(want) = e.backup_writable {
        let st = mgc_state(&lab.pools[0].backup).await;
        let writable = st.as_ref().is_some_and(|(s, ro)| s == "ONLINE" && !ro);
        out.push(Check {
            key: "backup_writable".into(),
            what: format!(
                "the backup mgc is {}writable at the end",
                if want { "" } else { "not " }
            ),
            ok: writable == want,
            seen: format!("{st:?}"),
        });
    }
    out.extend(window.checks(e, s.fleet.lease_ttl));
    if e.report_names_takeover {
        out.push(report_names_takeover(lab, ev).await);
    }
    if e.same_leader {
        let epochs: std::collections::BTreeSet<u64> = ev
            .journals
            .values()
            .flatten()
            .filter_map(|r| match r {
                super::evidence::JournalRecord::Started { epoch, at_ms, .. }
                    if *at_ms >= ev.started_ms =>
                {
                    Some(*epoch)
                }
                _ => None,
            })
            .collect();
        out.push(Check {
            key: "same_leader".into(),
            what: "one leader epoch for the whole run".into(),
            ok: epochs.len() == 1,
            seen: format!("{epochs:?}"),
        });
    }
    let mut takeovers = Vec::new();
    let ttl_ms = u64::try_from(s.fleet.lease_ttl.as_millis()).unwrap_or(u64::MAX);
    for f in ev.fired.iter().filter(|f| f.epoch_before.is_some()) {
        let first = ev.first_finished_after(f.at_ms, f.epoch_before.unwrap_or(0));
        let t = Takeover {
            fault: f.label.clone(),
            ms: first.as_ref().map(|x| x.2.saturating_sub(f.at_ms)),
            first_op: first.map(|x| format!("{} on {}", x.1, x.0)),
            ttl_ms,
        };
        if let Some(plus) = e.takeover_within_ttl_plus {
            let limit = ttl_ms + u64::try_from(plus.as_millis()).unwrap_or(0);
            out.push(Check {
                key: "takeover_within_ttl_plus".into(),
                what: format!(
                    "takeover after {} within TTL + {} ms",
                    f.label,
                    plus.as_millis()
                ),
                ok: t.ms.is_some_and(|ms| ms <= limit),
                seen: format!("{:?} ms ({:?})", t.ms, t.first_op),
            });
        }
        takeovers.push(t);
    }
    (out, takeovers)
}

/// The backup `mgc` as log shipping leaves it: its state and what the last restore into it
/// restored (msdb restorehistory); None when the instance does not answer.
async fn shipping_seen(sim: &SqlSim) -> Option<ShippingSeen> {
    let text = |rows: Vec<tiberius::Row>| {
        rows.first()
            .and_then(|r| r.get::<&str, _>(0))
            .unwrap_or_default()
            .to_string()
    };
    let sa = ("sa", SA_PASSWORD);
    let state = sim
        .batch_as(
            sa,
            "master",
            "SELECT state_desc FROM sys.databases WHERE name = N'mgc'",
        )
        .await
        .ok()?;
    let last = sim
        .batch_as(
            sa,
            "master",
            "SELECT TOP 1 restore_type FROM msdb.dbo.restorehistory WHERE destination_database_name = N'mgc' ORDER BY restore_history_id DESC",
        )
        .await
        .ok()?;
    Some(ShippingSeen {
        state: text(state),
        last_restore_type: text(last),
    })
}

/// Chat servers writing to the pool as the CMS tells them (the lab's traffic): DC2's while the
/// pool is failed over and it is active, DC1's once FB-6/FB-7 make the pool normal again.
/// The servers of the scenario's `stubborn_chat` ignore the CMS once they write.
fn chat_traffic(lab: &FailedOverLab, s: &Scenario) -> Traffic {
    let p = &lab.pools[0];
    let dir = lab.fleet.files_root().join("pool01");
    let layout = PoolLayout {
        index: 1,
        fqdn: p.fqdn.clone(),
        primary: p.primary_agent.clone(),
        backup: p.backup_agent.clone(),
        primary_mirror: None,
        backup_mirror: None,
        chat_dc1: "pc01.dc1.lab".into(),
        chat_dc2: "pc01.dc2.lab".into(),
        share: dir.join("share"),
        copy_dir: dir.join("copy"),
    };
    let stubborn: Vec<&str> = s.fleet.stubborn_chat.iter().map(String::as_str).collect();
    Traffic::start_with(
        lab.fleet.cms_store(),
        &[PoolTarget {
            layout,
            primary_port: p.primary.port,
            backup_port: p.backup.port,
        }],
        &stubborn,
        s.fleet.stubborn_reconnect_after,
    )
}

/// The messages SQL Server acknowledged to the chat servers, and which of them the primary and
/// the backup `mgc` hold at the end.
async fn chat_seen(ledger: &Ledger, primary: &SqlSim, backup: &SqlSim) -> ChatSeen {
    let acked: Vec<(String, bool)> = ledger
        .acks()
        .into_iter()
        .map(|a| (a.body, a.target == Target::Backup))
        .collect();
    ChatSeen {
        acked,
        held: bodies(primary).await,
        held_backup: bodies(backup).await,
    }
}

async fn bodies(sim: &SqlSim) -> Option<std::collections::BTreeSet<String>> {
    sim.batch_as(("sa", SA_PASSWORD), "mgc", "SELECT body FROM dbo.Messages")
        .await
        .ok()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r.get::<&str, _>(0).map(str::to_string))
                .collect()
        })
}
