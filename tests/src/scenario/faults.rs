//! Firing a scenario's faults on the real processes of a failed-over lab: SIGKILL and
//! SIGSTOP/SIGCONT of the leading coordinator, SIGKILL of an agent, a SQL instance or etcd
//! members (each restarted later), the leader cut off etcd (its links silent, then healed), a deposed leader coming back (a scripted coordinator with a
//! stale epoch), bad instructions from a scripted coordinator at the agents' own epoch (§9.8), damage to the backup file FB-3 wrote or the loss of its share, and the
//! operator's approve/abort. Restarts are returned as [`Later`] actions the runner performs when due, so the
//! runner's one loop keeps sampling and watching the run while a process is down.

use std::time::Duration;

use anyhow::{Context, bail};

use super::evidence::{Evidence, Fired, now_ms, read_journals};
use super::spec::{Action, Fault, Role};
use crate::harness::etcd::EtcdCluster;
use crate::harness::failed_over::FailedOverLab;
use crate::harness::fleet::APPROVER;

/// Something to do later (a restart, a SIGCONT).
#[derive(Debug, Clone)]
pub enum Later {
    /// Start this coordinator again.
    StartCoordinator(String),
    /// SIGCONT this pid.
    Continue(u32),
    /// Start this agent again.
    StartAgent(String),
    /// Start this SQL instance again.
    StartSql(Role),
    /// Restart these etcd members.
    StartEtcd(Vec<usize>),
    /// Heal this coordinator's links to etcd.
    HealEtcd(String),
}

/// Sends `signal` (`STOP`, `CONT`) to `pid` with kill(1): no libc binding needed for two
/// signals.
fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let st = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .context("run kill(1)")?;
    if !st.success() {
        bail!("kill -{signal} {pid} failed: {st}");
    }
    Ok(())
}

/// The raft leader among the running members of `etcd`.
async fn raft_leader(etcd: &EtcdCluster) -> anyhow::Result<usize> {
    for i in 0..etcd.endpoints().len() {
        let Ok(mut c) = etcd_client::Client::connect([etcd.endpoint(i)], None).await else {
            continue;
        };
        let Ok(s) = c.status().await else { continue };
        let me = s.header().map(|h| h.member_id()).unwrap_or(0);
        if me != 0 && s.leader() == me {
            return Ok(i);
        }
    }
    bail!("no etcd member says it is the raft leader")
}

/// Returns once `leader`'s count of answered lease keep-alives rises (polled every 10 ms, so
/// the fault lands within a few ms of the answer).
async fn after_next_keepalive(lab: &FailedOverLab, leader: &str) -> anyhow::Result<()> {
    const KEEPALIVES: &str = "failback_leader_keepalives_total";
    let first = lab
        .fleet
        .coordinator_metric(leader, KEEPALIVES)
        .await
        .with_context(|| format!("{leader} does not answer /metrics"))?;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < until {
        if lab
            .fleet
            .coordinator_metric(leader, KEEPALIVES)
            .await
            .is_some_and(|n| n > first)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("{leader}'s {KEEPALIVES} stayed at {first} for 10 s")
}

/// Fires `fault`; returns what fired and what to do later (at the given delay).
pub async fn fire(
    fault: &Fault,
    lab: &mut FailedOverLab,
    etcd: Option<&mut EtcdCluster>,
    run: &str,
    detail: &serde_json::Value,
) -> anyhow::Result<(Fired, Vec<(Duration, Later)>)> {
    let at_ms = now_ms();
    let mut fired = Fired {
        label: fault.label.clone(),
        at_ms,
        note: String::new(),
        epoch_before: None,
        damaged_file: None,
        probes: None,
    };
    let mut later = Vec::new();
    let pool = &lab.pools[0];
    let agent_of = |r: Role| match r {
        Role::Primary => pool.primary_agent.clone(),
        Role::Backup => pool.backup_agent.clone(),
    };
    match &fault.action {
        Action::KillLeader { restart_after } => {
            let leader = lab.fleet.leader(Duration::from_secs(10)).await?;
            fired.epoch_before = Some(Evidence::epoch_before(&read_journals(&lab.fleet), at_ms));
            lab.fleet.kill_coordinator_named(&leader);
            fired.note = format!("killed {leader}");
            later.push((*restart_after, Later::StartCoordinator(leader)));
        }
        Action::StopLeader { for_ } => {
            let leader = lab.fleet.leader(Duration::from_secs(10)).await?;
            let pid = lab
                .fleet
                .coordinator_pid(&leader)
                .with_context(|| format!("{leader} is not running"))?;
            fired.epoch_before = Some(Evidence::epoch_before(&read_journals(&lab.fleet), at_ms));
            signal(pid, "STOP")?;
            fired.note = format!("stopped {leader} (pid {pid})");
            later.push((*for_, Later::Continue(pid)));
        }
        Action::CutLeaderEtcd {
            for_,
            after_keepalive,
        } => {
            let leader = lab.fleet.leader(Duration::from_secs(10)).await?;
            let links = lab
                .etcd_links
                .get(&leader)
                .with_context(|| format!("{leader} has no cuttable links to etcd"))?;
            if *after_keepalive {
                after_next_keepalive(lab, &leader).await?;
            }
            fired.epoch_before = Some(Evidence::epoch_before(&read_journals(&lab.fleet), at_ms));
            // Healed on the links' own timer: the runner's loop can be slow while the leader is
            // cut (its status calls wait on etcd), and a heal it performs late would lengthen
            // the outage. The later HealEtcd only records it.
            links.iter().for_each(|l| l.cut_for(*for_));
            fired.note = format!("cut {leader} off {} etcd members", links.len());
            later.push((*for_, Later::HealEtcd(leader)));
        }
        Action::KillAgent {
            role,
            restart_after,
        } => {
            let id = agent_of(*role);
            lab.fleet.kill_agent(&id);
            fired.note = format!("killed agent {id}");
            later.push((*restart_after, Later::StartAgent(id)));
        }
        Action::KillSql {
            role,
            restart_after,
        } => {
            let p = &mut lab.pools[0];
            let sim = match role {
                Role::Primary => &mut p.primary,
                Role::Backup => &mut p.backup,
            };
            sim.kill();
            fired.note = format!("killed sqlsim {}", sim.name);
            later.push((*restart_after, Later::StartSql(*role)));
        }
        Action::KillEtcdMember {
            raft_leader: leader,
            restart_after,
        } => {
            let etcd = etcd.context("no etcd in this scenario")?;
            let i = if *leader { raft_leader(etcd).await? } else { 0 };
            etcd.kill(i);
            fired.note = format!(
                "killed etcd member {i}{}",
                if *leader { " (raft leader)" } else { "" }
            );
            later.push((*restart_after, Later::StartEtcd(vec![i])));
        }
        Action::KillEtcdQuorum { restart_after } => {
            let etcd = etcd.context("no etcd in this scenario")?;
            etcd.kill(0);
            etcd.kill(1);
            fired.note = "killed etcd members 0 and 1 of 3".into();
            later.push((*restart_after, Later::StartEtcd(vec![0, 1])));
        }
        Action::CorruptBackup | Action::TruncateBackup => {
            let file = backup_file(detail)?;
            let mut bytes =
                std::fs::read(&file).with_context(|| format!("read FB-3's file {file}"))?;
            if bytes.is_empty() {
                bail!("FB-3's file {file} is empty");
            }
            if fault.action == Action::CorruptBackup {
                let mid = bytes.len() / 2;
                let end = (mid + 64).min(bytes.len());
                bytes[mid..end].iter_mut().for_each(|b| *b ^= 0xA5);
                fired.note = format!("flipped {} bytes of {file}", end - mid);
            } else {
                let half = bytes.len() / 2;
                bytes.truncate(half);
                fired.note = format!("cut {file} to {half} bytes");
            }
            std::fs::write(&file, bytes).with_context(|| format!("write {file}"))?;
            fired.damaged_file = Some(file);
        }
        Action::ZombieLeader => {
            let (names, first, port, highest) = vacate_coordinators(lab, at_ms)?;
            let stale = highest.saturating_sub(1);
            fired.epoch_before = Some(highest);
            let answered = zombie(lab, &first, port, stale).await?;
            fired.note = format!(
                "killed {names:?}; a scripted {first} offered epoch {stale} (agents had {highest}): {answered}"
            );
            for n in names {
                later.push((Duration::ZERO, Later::StartCoordinator(n)));
            }
        }
        Action::HostileInstructions => {
            let (names, first, port, highest) = vacate_coordinators(lab, at_ms)?;
            fired.epoch_before = Some(highest);
            let probes = super::bad_input::send(lab, &first, port, highest).await?;
            fired.note = format!(
                "killed {names:?}; a scripted {first} at the agents' epoch {highest} sent {} bad instructions",
                probes.probes.len()
            );
            fired.probes = Some(probes);
            for n in names {
                later.push((Duration::ZERO, Later::StartCoordinator(n)));
            }
        }
        Action::LoseShare => {
            let share = lab.share();
            let lost = share.with_extension("lost");
            std::fs::rename(&share, &lost)
                .with_context(|| format!("rename {} away", share.display()))?;
            fired.note = format!("renamed {} to {}", share.display(), lost.display());
        }
        Action::Approve | Action::Abort => {
            let verb = if fault.action == Action::Approve {
                "approve"
            } else {
                "abort"
            };
            let out = lab.fleet.ctl(APPROVER, &[verb, run]).await?;
            if out.code != 0 {
                bail!(
                    "failbackctl {verb} {run} failed ({}): {}",
                    out.code,
                    out.stderr
                );
            }
            fired.note = format!("failbackctl {verb} by {APPROVER}");
        }
        Action::Wait => fired.note = "waited (no action)".into(),
    }
    Ok((fired, later))
}

/// Kills every coordinator so a scripted one can take the first one's place: returns their
/// names, the first one's name and port, and the highest epoch the agents had accepted by
/// `at_ms`.
fn vacate_coordinators(
    lab: &mut FailedOverLab,
    at_ms: u64,
) -> anyhow::Result<(Vec<String>, String, u16, u64)> {
    let names = lab.fleet.coordinator_names();
    let first = names.first().context("no coordinator")?.clone();
    let port = lab
        .fleet
        .coordinator_port_of(&first)
        .context("no port for the first coordinator")?;
    let highest = Evidence::epoch_before(&read_journals(&lab.fleet), at_ms);
    for n in &names {
        lab.fleet.kill_coordinator_named(n);
    }
    Ok((names, first, port, highest))
}

/// Plays a deposed leader on `port` with `name`'s certificate for a few seconds: each agent
/// that opens a session is welcomed at `stale` and sent a ping at that epoch. Returns what each
/// agent did (refused, or answered — which would break fencing).
async fn zombie(lab: &FailedOverLab, name: &str, port: u16, stale: u64) -> anyhow::Result<String> {
    use crate::harness::fake_coordinator::FakeCoordinator;
    let mut fake = FakeCoordinator::start_in_place_of(&lab.fleet.certs, name, port).await?;
    let agents: Vec<String> = lab.fleet.agent_specs.iter().map(|a| a.id.clone()).collect();
    let mut seen = std::collections::BTreeMap::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    while seen.len() < agents.len() && tokio::time::Instant::now() < until {
        let Ok(mut session) = fake.next_session(Duration::from_secs(2)).await else {
            continue;
        };
        if seen.contains_key(&session.agent) {
            continue;
        }
        let op = format!("zombie/{}/ping", session.agent);
        let outcome = match session.welcome(stale).await {
            Err(_) => "refused the Welcome".to_string(),
            Ok(()) => match session.ping(&op, stale).await {
                Err(_) => "closed the session".to_string(),
                Ok(()) => answer(&mut session).await,
            },
        };
        seen.insert(session.agent.clone(), outcome);
    }
    Ok(seen
        .iter()
        .map(|(a, o)| format!("{a} {o}"))
        .collect::<Vec<_>>()
        .join("; "))
}

/// What an agent answered the zombie's ping (its heartbeats skipped).
async fn answer(session: &mut crate::harness::fake_coordinator::FakeSession) -> String {
    use failback_proto::pb::{agent_message::Body, operation_result::Outcome};
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, session.rx.message()).await {
            Ok(Ok(Some(m))) => match m.body {
                Some(Body::Result(r)) if matches!(r.outcome, Some(Outcome::Output(_))) => {
                    return "ran the ping".into();
                }
                Some(Body::Result(_)) => return "refused the ping".into(),
                _ => continue,
            },
            Ok(_) => return "closed the session".into(),
            Err(_) => return "did not answer".into(),
        }
    }
}

/// The file FB-3 wrote, from the run record.
fn backup_file(detail: &serde_json::Value) -> anyhow::Result<String> {
    detail["pools"][0]["outputs"]["fb3_backup"]["output"]["file"]
        .as_str()
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .context("FB-3 recorded no backup file yet")
}

/// Performs a [`Later`].
pub async fn perform(
    later: &Later,
    lab: &mut FailedOverLab,
    etcd: Option<&mut EtcdCluster>,
) -> anyhow::Result<String> {
    Ok(match later {
        Later::StartCoordinator(n) => {
            lab.fleet.start_coordinator_named(n).await?;
            format!("started {n} again")
        }
        Later::HealEtcd(name) => {
            if let Some(links) = lab.etcd_links.get(name) {
                links.iter().for_each(crate::harness::net_cut::Link::heal);
            }
            format!("healed {name}'s links to etcd")
        }
        Later::Continue(pid) => {
            signal(*pid, "CONT")?;
            format!("continued pid {pid}")
        }
        Later::StartAgent(id) => {
            lab.fleet.start_agent(id)?;
            format!("started agent {id} again")
        }
        Later::StartSql(role) => {
            let p = &mut lab.pools[0];
            let sim = match role {
                Role::Primary => &mut p.primary,
                Role::Backup => &mut p.backup,
            };
            sim.start().await?;
            format!("started sqlsim {} again", sim.name)
        }
        Later::StartEtcd(members) => {
            let etcd = etcd.context("no etcd in this scenario")?;
            // Start every member before waiting on any: one alone has no quorum to be ready.
            for i in members {
                etcd.start_member(*i)?;
            }
            for i in members {
                etcd.wait_ready(*i).await?;
            }
            format!("started etcd members {members:?} again")
        }
    })
}
