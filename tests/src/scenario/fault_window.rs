//! What the runner watches while a scenario's first fault lasts (from its firing to its first
//! restore), for expectations that are about that time and not about the run's end: how many
//! agent sessions the coordinators refused (issue #12's reconnect storm) and what
//! `failbackctl leader` said (issue #12's truth finding: a stale leader named during a quorum
//! loss). Read from the real processes — the coordinators' `/metrics` and the operator's CLI.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::runner::Check;
use super::spec::Expect;
use crate::harness::failed_over::FailedOverLab;
use crate::harness::fleet::OPERATOR;

/// `failback_agent_session_errors_total`: agent sessions refused or ended abnormally.
const REFUSED: &str = "failback_agent_session_errors_total";

/// One answer of `failbackctl leader` during the fault.
#[derive(Debug, Clone)]
struct LeaderSeen {
    /// When it was asked, since the fault fired.
    after: Duration,
    /// The leader it named ("" = none known), or why it did not answer.
    leader: Result<String, String>,
}

/// The first fault's window.
#[derive(Debug)]
pub struct FaultWindow {
    watch_refused: bool,
    watch_leader: bool,
    opened: Option<(Instant, f64)>,
    closed: Option<(Instant, f64)>,
    leaders: Arc<Mutex<Vec<LeaderSeen>>>,
    /// Asks `failbackctl leader` every 250 ms on its own task: the runner's loop slows down
    /// while etcd has no quorum (its status calls wait), and the looks must not.
    poller: Option<JoinHandle<()>>,
}

impl Drop for FaultWindow {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
    }
}

impl FaultWindow {
    /// A window watching what `expect` asks about.
    pub fn new(expect: &Expect) -> FaultWindow {
        FaultWindow {
            watch_refused: expect.max_refused_sessions_per_second.is_some(),
            watch_leader: expect.leader_unknown_without_quorum,
            opened: None,
            closed: None,
            leaders: Arc::default(),
            poller: None,
        }
    }

    async fn refused(&self, lab: &FailedOverLab) -> f64 {
        if self.watch_refused {
            lab.fleet.coordinators_metric(REFUSED).await
        } else {
            0.0
        }
    }

    /// The first fault is about to fire.
    pub async fn open(&mut self, lab: &FailedOverLab) {
        if self.opened.is_some() {
            return;
        }
        let t0 = Instant::now();
        self.opened = Some((t0, self.refused(lab).await));
        if self.watch_leader {
            let ctl = lab.fleet.ctl_target(OPERATOR);
            let seen = self.leaders.clone();
            self.poller = Some(tokio::spawn(async move {
                loop {
                    let after = t0.elapsed();
                    let leader = match ctl.run(&["leader", "--output", "json"]).await {
                        Ok(out) if out.code == 0 => {
                            serde_json::from_str::<serde_json::Value>(&out.stdout)
                                .map(|v| v["leader_id"].as_str().unwrap_or_default().to_string())
                                .map_err(|e| format!("unreadable answer: {e}"))
                        }
                        Ok(out) => Err(out.stderr.trim().to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Ok(mut v) = seen.lock() {
                        v.push(LeaderSeen { after, leader });
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }));
        }
    }

    /// A restore is about to be performed: the first one ends the window.
    pub async fn close(&mut self, lab: &FailedOverLab) {
        if self.opened.is_some() && self.closed.is_none() {
            if let Some(p) = self.poller.take() {
                p.abort();
            }
            self.closed = Some((Instant::now(), self.refused(lab).await));
        }
    }

    /// The checks `expect` asks for, over what the window saw; `ttl` is the lease TTL.
    pub fn checks(&self, expect: &Expect, ttl: Duration) -> Vec<Check> {
        let mut out = Vec::new();
        if let Some(max) = expect.max_refused_sessions_per_second {
            let (ok, seen) = match (self.opened, self.closed) {
                (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                    let n = (n1 - n0).max(0.0);
                    let secs = (t1 - t0).as_secs_f64();
                    (
                        n / secs <= max,
                        format!("{n} refused in {secs:.1} s ({:.1}/s)", n / secs),
                    )
                }
                _ => (
                    false,
                    "no window measured (the first fault has no restore)".into(),
                ),
            };
            out.push(Check {
                key: "max_refused_sessions_per_second".into(),
                what: format!("at most {max} agent sessions refused per second during the fault"),
                ok,
                seen,
            });
        }
        if expect.leader_unknown_without_quorum {
            // Deposed after 3/4 of the TTL, the observer's re-check every TTL/4: by one TTL
            // no coordinator can confirm a leader; one second more for the CLI's own round trip.
            let settled = ttl + Duration::from_secs(1);
            let all = self.leaders.lock().map(|v| v.clone()).unwrap_or_default();
            let late: Vec<&LeaderSeen> = all.iter().filter(|l| l.after >= settled).collect();
            let named: Vec<String> = late
                .iter()
                .filter_map(|l| match &l.leader {
                    Ok(id) if !id.is_empty() => {
                        Some(format!("{id} at +{:.1} s", l.after.as_secs_f64()))
                    }
                    _ => None,
                })
                .collect();
            let unknown = late
                .iter()
                .filter(|l| matches!(&l.leader, Ok(id) if id.is_empty()))
                .count();
            out.push(Check {
                key: "leader_unknown_without_quorum".into(),
                what: format!(
                    "from {:.0} s into the quorum loss on, failbackctl leader names no leader",
                    settled.as_secs_f64()
                ),
                ok: named.is_empty() && unknown > 0,
                seen: if named.is_empty() {
                    format!(
                        "{unknown} of {} answers after {:.0} s said no leader known ({} looks in all)",
                        late.len(),
                        settled.as_secs_f64(),
                        all.len()
                    )
                } else {
                    format!("named {}", named.join(", "))
                },
            });
        }
        out
    }
}
