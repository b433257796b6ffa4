//! The scenario file (`tests/scenarios/*.toml`): a fleet, one failback run, faults at named
//! points, and what must hold afterwards. Parsed with unknown keys refused and every value
//! checked here, so a typo in a scenario is an error naming the file and the key — never a fault
//! that silently does not fire.
//!
//! ```toml
//! about = "kill -9 of the leader while FB-4 restores"
//! defect = "takeover"                  # the issue #12 finding it covers (free text, optional)
//! [fleet]
//! etcd_members = 3                      # 0 = one standalone coordinator; else two on etcd
//! lease_ttl = "4s"
//! primary_sql_args = ["--fault", "delay restore 5000"]
//! [run]
//! yes = true                            # started with --yes by an approver
//! [[fault]]
//! at = "during fb4_restore"             # see `Point`
//! do = "kill-leader"                    # see `Action`
//! [expect]
//! status = "succeeded"
//! takeover_within_ttl_plus = "2s"
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// A parsed and checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// File stem: the scenario's name in results and RELIABILITY.md.
    pub name: String,
    /// One line: what the scenario does.
    pub about: String,
    /// The finding of issue #12 it covers, if any.
    pub defect: Option<String>,
    /// Fleet setup.
    pub fleet: FleetSpec,
    /// The run.
    pub run: RunSpec,
    /// Faults in firing order.
    pub faults: Vec<Fault>,
    /// What must hold.
    pub expect: Expect,
    /// Test-only breaks this scenario is known to catch (`FAILBACK_TEST_BREAK` names) and the
    /// invariant whose checker must then fail.
    pub catches: Vec<Catch>,
    /// The file it was read from (None: built in code, e.g. a `failback-lab --fault` drill).
    pub source: Option<std::path::PathBuf>,
}

/// A break the scenario catches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catch {
    /// The `FAILBACK_TEST_BREAK` name (one of `failback_proto::test_break::KNOWN`).
    #[serde(rename = "break")]
    pub break_name: String,
    /// The DESIGN §9 invariant (1–8) whose checker must report it.
    #[serde(default)]
    pub invariant: Option<u8>,
    /// Or the `[expect]` key that must then fail, for a defect that breaks no §9 invariant
    /// (e.g. `same_leader`: a healthy leader deposed by an etcd re-election).
    #[serde(default)]
    pub expect: Option<String>,
}

/// The `[expect]` keys a `[[catches]]` entry may name.
pub const EXPECT_KEYS: &[&str] = &[
    "status",
    "failed_step",
    "error_contains",
    "no_restore",
    "backup_writable",
    "max_refused_sessions_per_second",
    "same_leader",
    "report_names_takeover",
    "share_holds_failbacks",
    "leader_unknown_without_quorum",
    "takeover_within_ttl_plus",
    "preflight_fails",
    "reason_contains",
    "new_run_accepted",
];

impl Catch {
    /// What must report the break, as RELIABILITY.md shows it: `§9.N` or `expect.KEY`.
    pub fn target(&self) -> String {
        match (&self.invariant, &self.expect) {
            (Some(n), _) => format!("§9.{n}"),
            (None, Some(k)) => format!("expect.{k}"),
            (None, None) => "—".into(),
        }
    }
}

/// Fleet setup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetSpec {
    /// 0: one standalone coordinator; 1 or 3: two coordinators on an etcd of that size.
    pub etcd_members: usize,
    /// The leader lease TTL on etcd.
    #[serde(with = "humantime_serde_opt")]
    pub lease_ttl: Duration,
    /// Coordinator heartbeat interval.
    #[serde(with = "humantime_serde_opt")]
    pub heartbeat: Duration,
    /// Mirror the backup `mgc` to a third instance.
    pub mirrored: bool,
    /// Extra sqlsim arguments for the primary (DC1) instance (`{share}` and `{copy}` name the
    /// pool's folders).
    pub primary_sql_args: Vec<String>,
    /// Extra sqlsim arguments for the backup (DC2) instance (as for the primary's).
    pub backup_sql_args: Vec<String>,
    /// DC2 keeps the log shipping secondary configuration of before the disaster (a failover
    /// done by hand; `harness::stale_shipping`).
    pub stale_secondary: bool,
    /// Chat servers write to the pool throughout, as the CMS tells them (the lab's traffic):
    /// every message acknowledged must survive the failback (§9.6).
    pub traffic: bool,
    /// Chat servers (by FQDN) that keep writing to where they wrote first and reconnect when
    /// killed, whatever the CMS says (a stale CMS replica); implies `traffic`.
    pub stubborn_chat: Vec<String>,
    /// How long a stubborn chat server waits after a failed write before it connects again.
    #[serde(with = "humantime_serde_opt")]
    pub stubborn_reconnect_after: Duration,
    /// The coordinators' `[runbook] backup_retention_runs` (None: the product default).
    pub backup_retention_runs: Option<u32>,
    /// Every Management Shell script takes at least this long (lyncsim `--delay`), so the Lync
    /// steps (FB-7, then FB-6) last long enough for a fault to land in them.
    #[serde(with = "humantime_serde_opt")]
    pub lync_delay: Duration,
    /// The pool's share is a volume of its own with this many MiB free when the run starts (a
    /// tmpfs, in a mount namespace of the scenario's own: [`super::volume`]), so a backup that
    /// does not fit fails as on a full disk (SQL Server error 3202, OS error 112).
    pub share_free_mb: Option<u32>,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            etcd_members: 0,
            lease_ttl: Duration::from_secs(4),
            heartbeat: Duration::from_millis(1000),
            mirrored: false,
            primary_sql_args: Vec::new(),
            backup_sql_args: Vec::new(),
            stale_secondary: false,
            traffic: false,
            stubborn_chat: Vec::new(),
            stubborn_reconnect_after: Duration::ZERO,
            backup_retention_runs: None,
            lync_delay: Duration::ZERO,
            share_free_mb: None,
        }
    }
}

/// The run the scenario starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    /// `--yes` at start (by an approver); otherwise destructive steps wait for `approve`.
    pub yes: bool,
    /// Whole cycles the pool goes through before the scenario's failback: failed back, DC1
    /// lost, failed over, DC1 rebuilt ([`super::cycle`]).
    pub earlier_failbacks: usize,
    /// `failbackctl preflight --pool P` first, as the runbook tells an operator to; the run
    /// then starts whatever it said (an operator who did not read it), so the scenario shows
    /// both what preflight predicted and what happened.
    pub preflight: bool,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            yes: true,
            earlier_failbacks: 0,
            preflight: false,
        }
    }
}

/// Where a fault fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    /// As soon as the run exists.
    Start,
    /// While a step's long statement runs: its first statement reached the SQL instance.
    During(String),
    /// Once the step is recorded as finished.
    After(String),
    /// Once the run waits for an approval.
    AwaitingApproval,
    /// This long after the previous fault fired.
    Delay(Duration),
}

/// Steps that have a long statement to fire `during`, with the instance and the statement's
/// start.
pub const DURING: &[(&str, Role, &str)] = &[
    ("fb3_backup", Role::Backup, "BACKUP DATABASE 'MGC'"),
    (
        "fb4_restore",
        Role::Primary,
        "RESTORE DATABASE 'MGC' FROM DISK",
    ),
    // FB-5's seed: the only full backup the restored primary takes in a failback.
    ("fb5_log_shipping", Role::Primary, "BACKUP DATABASE 'MGC'"),
];

/// The failback steps, in order (the names `after` accepts).
pub const STEPS: &[&str] = &[
    "fb1_clear_active",
    "fb2_remove_mirroring",
    "fb3_backup",
    "fb4_restore",
    "fb5_log_shipping",
    "fb6_activate",
    "fb7_pool_normal",
    "fb8_prune_backups",
];

/// A SQL instance or agent of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// DC1.
    Primary,
    /// DC2.
    Backup,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// SIGKILL the leading coordinator; restarted `restart_after` later (it rejoins as follower).
    KillLeader {
        /// Delay before the restart.
        restart_after: Duration,
    },
    /// SIGSTOP the leader for `for_`, then SIGCONT.
    StopLeader {
        /// How long it stays stopped.
        for_: Duration,
    },
    /// SIGKILL an agent; restarted `restart_after` later.
    KillAgent {
        /// Which agent.
        role: Role,
        /// Delay before the restart.
        restart_after: Duration,
    },
    /// SIGKILL a SQL instance; restarted `restart_after` later.
    KillSql {
        /// Which instance.
        role: Role,
        /// Delay before the restart.
        restart_after: Duration,
    },
    /// SIGKILL one etcd member (the raft leader when `raft_leader`); restarted later.
    KillEtcdMember {
        /// The raft leader rather than member 0.
        raft_leader: bool,
        /// Delay before the restart.
        restart_after: Duration,
    },
    /// SIGKILL a majority of etcd members; restarted `restart_after` later.
    KillEtcdQuorum {
        /// Delay before the restart.
        restart_after: Duration,
    },
    /// Cut the leading coordinator off every etcd member for `for_` (its links to etcd go
    /// silent; its agents still reach it), then heal the links.
    CutLeaderEtcd {
        /// How long the links stay cut.
        for_: Duration,
        /// Cut just after one of the leader's lease keep-alives was answered (its
        /// `failback_leader_keepalives_total` rose), so the outage starts at a known point of
        /// the keep-alive budget: what an etcd re-election of exactly `for_` does to it.
        after_keepalive: bool,
    },
    /// Flip bytes in the middle of the file FB-3 wrote.
    CorruptBackup,
    /// Cut the file FB-3 wrote to half its length.
    TruncateBackup,
    /// A deposed leader comes back: every coordinator is killed, and a scripted coordinator
    /// with the first coordinator's certificate and port welcomes each agent with an epoch
    /// older than the one it accepted and sends it a ping (what a leader that missed its
    /// deposition would do); then the coordinators start again. Agents must refuse it (§9.1).
    ZombieLeader,
    /// Bad input at the last line (§9.8): every coordinator is killed, and a scripted one with
    /// the first coordinator's certificate and port welcomes each agent at the epoch it holds
    /// and sends it malformed instructions, then a valid ping ([`super::bad_input`]); then the
    /// coordinators start again.
    HostileInstructions,
    /// Rename the pool's share folder away (the share lost); it is not given back.
    LoseShare,
    /// `failbackctl approve` by an approver.
    Approve,
    /// `failbackctl abort`.
    Abort,
    /// Nothing: marks a point for the next fault's `+DELAY` (an operator who takes a while).
    Wait,
}

/// One fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Where it fires.
    pub at: Point,
    /// What it does.
    pub action: Action,
    /// The text of `at` and `do`, for reports.
    pub label: String,
}

/// What must hold after the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// The run's final status (`succeeded`, `failed`, `aborted`, `awaiting_approval`), or
    /// `ended`: any of the final three (an operator's `failback-lab --fault` drill, where the
    /// invariants are the verdict).
    pub status: String,
    /// Texts the failing step's error must contain.
    pub error_contains: Vec<String>,
    /// Texts the run's final reason (`failbackctl status`) must contain.
    pub reason_contains: Vec<String>,
    /// The step that failed (when `status = "failed"`).
    pub failed_step: Option<String>,
    /// The backup `mgc` must be writable at the end (availability after a refusal).
    pub backup_writable: Option<bool>,
    /// No RESTORE DATABASE reached the primary.
    pub no_restore: bool,
    /// At most this many agent sessions refused per second by all coordinators together while
    /// the first fault lasts (from its firing to its restore): no reconnect storm.
    pub max_refused_sessions_per_second: Option<f64>,
    /// The leader after the run has the same epoch as before (etcd member loss).
    pub same_leader: bool,
    /// The run's report (`failbackctl report RUN --format json`) names a coordinator that
    /// took over during the run (a leader killed or stopped).
    pub report_names_takeover: bool,
    /// After the run, the pool's share holds the `.bak` files of exactly the newest N
    /// failbacks (this one and the earlier ones of `[run] earlier_failbacks`).
    pub share_holds_failbacks: Option<usize>,
    /// While the first fault lasts (a quorum loss), `failbackctl leader` names no leader once
    /// one TTL and a second have passed: no coordinator can confirm who leads.
    pub leader_unknown_without_quorum: bool,
    /// When the run ends: the new leader's first completed agent operation came within the
    /// lease TTL plus this after the leader was killed or stopped.
    #[serde(with = "humantime_serde_opt_option")]
    pub takeover_within_ttl_plus: Option<Duration>,
    /// Once the run has ended, a new failback of the pool (what an operator starts next) is
    /// accepted at once: the ended run no longer holds the pool. The new run is aborted
    /// straight away, after every other expectation was checked.
    pub new_run_accepted: bool,
    /// Preflight's checks (by name) that must fail for the failback direction (needs
    /// `[run] preflight = true`).
    pub preflight_fails: Vec<String>,
    /// How long the run may take.
    #[serde(with = "humantime_serde_opt")]
    pub deadline: Duration,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            status: "succeeded".into(),
            error_contains: Vec::new(),
            reason_contains: Vec::new(),
            failed_step: None,
            backup_writable: None,
            no_restore: false,
            max_refused_sessions_per_second: None,
            same_leader: false,
            report_names_takeover: false,
            share_holds_failbacks: None,
            leader_unknown_without_quorum: false,
            takeover_within_ttl_plus: None,
            preflight_fails: Vec::new(),
            new_run_accepted: false,
            deadline: Duration::from_secs(180),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    about: String,
    #[serde(default)]
    defect: Option<String>,
    #[serde(default)]
    fleet: FleetSpec,
    #[serde(default)]
    run: RunSpec,
    #[serde(default)]
    fault: Vec<RawFault>,
    #[serde(default)]
    expect: Expect,
    #[serde(default)]
    catches: Vec<Catch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    #[serde(rename = "do")]
    action: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default, with = "humantime_serde_opt_option")]
    restart_after: Option<Duration>,
    #[serde(default, rename = "for", with = "humantime_serde_opt_option")]
    for_: Option<Duration>,
    #[serde(default)]
    raft_leader: bool,
    #[serde(default)]
    after_keepalive: bool,
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod humantime_serde_opt_option {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

fn parse_point(s: &str) -> anyhow::Result<Point> {
    let s = s.trim();
    if s == "start" {
        return Ok(Point::Start);
    }
    if s == "awaiting_approval" {
        return Ok(Point::AwaitingApproval);
    }
    if let Some(step) = s.strip_prefix("during ") {
        let step = step.trim();
        if !DURING.iter().any(|(n, _, _)| *n == step) {
            let known: Vec<&str> = DURING.iter().map(|d| d.0).collect();
            bail!("'during {step}': only these steps have a long statement to fire in: {known:?}");
        }
        return Ok(Point::During(step.into()));
    }
    if let Some(step) = s.strip_prefix("after ") {
        let step = step.trim();
        if !STEPS.contains(&step) {
            bail!("'after {step}': not a failback step (one of {STEPS:?})");
        }
        return Ok(Point::After(step.into()));
    }
    if let Some(d) = s.strip_prefix("+") {
        let d = humantime::parse_duration(d.trim())
            .with_context(|| format!("'{s}': not a delay like '+3s'"))?;
        return Ok(Point::Delay(d));
    }
    bail!(
        "'{s}' is not a point: use 'start', 'during STEP', 'after STEP', 'awaiting_approval' or '+DELAY'"
    )
}

fn parse_action(f: &RawFault) -> anyhow::Result<Action> {
    let restart = f.restart_after.unwrap_or(Duration::from_secs(3));
    let role = || {
        f.role
            .with_context(|| format!("'{}' needs role = \"primary\" or \"backup\"", f.action))
    };
    Ok(match f.action.as_str() {
        "kill-leader" => Action::KillLeader {
            restart_after: restart,
        },
        "stop-leader" => Action::StopLeader {
            for_: f
                .for_
                .context("'stop-leader' needs for = \"…\" (how long the leader stays stopped)")?,
        },
        "kill-agent" => Action::KillAgent {
            role: role()?,
            restart_after: restart,
        },
        "kill-sql" => Action::KillSql {
            role: role()?,
            restart_after: restart,
        },
        "kill-etcd-member" => Action::KillEtcdMember {
            raft_leader: f.raft_leader,
            restart_after: restart,
        },
        "kill-etcd-quorum" => Action::KillEtcdQuorum {
            restart_after: restart,
        },
        "cut-leader-etcd" => Action::CutLeaderEtcd {
            for_: f
                .for_
                .context("'cut-leader-etcd' needs for = \"…\" (how long the links stay cut)")?,
            after_keepalive: f.after_keepalive,
        },
        "corrupt-backup" => Action::CorruptBackup,
        "truncate-backup" => Action::TruncateBackup,
        "zombie-leader" => Action::ZombieLeader,
        "hostile-instructions" => Action::HostileInstructions,
        "lose-share" => Action::LoseShare,
        "approve" => Action::Approve,
        "abort" => Action::Abort,
        "wait" => Action::Wait,
        other => bail!(
            "'{other}' is not a fault: use kill-leader, stop-leader, kill-agent, kill-sql, kill-etcd-member, kill-etcd-quorum, cut-leader-etcd, zombie-leader, hostile-instructions, corrupt-backup, truncate-backup, lose-share, approve, abort or wait"
        ),
    })
}

impl Scenario {
    /// Parses and checks `text`; `name` is the file stem.
    pub fn parse(name: &str, text: &str) -> anyhow::Result<Scenario> {
        let raw: RawFile = toml::from_str(text).with_context(|| format!("scenario '{name}'"))?;
        let mut faults = Vec::new();
        for (i, f) in raw.fault.iter().enumerate() {
            let at = parse_point(&f.at)
                .with_context(|| format!("scenario '{name}': fault {} 'at'", i + 1))?;
            let action = parse_action(f)
                .with_context(|| format!("scenario '{name}': fault {} 'do'", i + 1))?;
            let needs_etcd = matches!(
                action,
                Action::KillEtcdMember { .. } | Action::KillEtcdQuorum { .. }
            );
            if needs_etcd && raw.fleet.etcd_members < 3 {
                bail!(
                    "scenario '{name}': fault {} needs fleet.etcd_members = 3",
                    i + 1
                );
            }
            faults.push(Fault {
                at,
                action,
                label: format!("{} @ {}", f.action, f.at),
            });
        }
        if ![0, 1, 3].contains(&raw.fleet.etcd_members) {
            bail!(
                "scenario '{name}': fleet.etcd_members is {}, use 0 (standalone), 1 or 3",
                raw.fleet.etcd_members
            );
        }
        const STATUSES: &[&str] = &[
            "succeeded",
            "failed",
            "aborted",
            "awaiting_approval",
            "ended",
        ];
        if !STATUSES.contains(&raw.expect.status.as_str()) {
            bail!(
                "scenario '{name}': expect.status '{}' is not one of {STATUSES:?}",
                raw.expect.status
            );
        }
        if !raw.expect.preflight_fails.is_empty() && !raw.run.preflight {
            bail!("scenario '{name}': expect.preflight_fails needs run.preflight = true");
        }
        if let Some(mb) = raw.fleet.share_free_mb
            && !(1..=1024).contains(&mb)
        {
            bail!("scenario '{name}': fleet.share_free_mb is {mb}, use 1 to 1024 (MiB)");
        }
        for c in &raw.catches {
            let known = failback_proto::test_break::KNOWN;
            if !known.iter().any(|(n, _)| *n == c.break_name) {
                let names: Vec<&str> = known.iter().map(|k| k.0).collect();
                bail!(
                    "scenario '{name}': catches break '{}', not one of {names:?}",
                    c.break_name
                );
            }
            match (c.invariant, &c.expect) {
                (Some(n), None) if (1..=8).contains(&n) => {}
                (Some(n), None) => {
                    bail!("scenario '{name}': catches invariant {n}, DESIGN §9 has 1–8")
                }
                (None, Some(k)) if EXPECT_KEYS.contains(&k.as_str()) => {}
                (None, Some(k)) => {
                    bail!("scenario '{name}': catches expect '{k}', not one of {EXPECT_KEYS:?}")
                }
                _ => bail!(
                    "scenario '{name}': catches break '{}' needs exactly one of invariant = N or expect = \"KEY\"",
                    c.break_name
                ),
            }
        }
        Ok(Scenario {
            name: name.to_string(),
            about: raw.about,
            defect: raw.defect,
            fleet: raw.fleet,
            run: raw.run,
            faults,
            expect: raw.expect,
            catches: raw.catches,
            source: None,
        })
    }

    /// Reads `path`.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{}: no file name", path.display()))?;
        let mut s = Scenario::parse(name, &text)?;
        s.source = Some(path.to_path_buf());
        Ok(s)
    }

    /// Whether the scenario runs on etcd.
    pub fn on_etcd(&self) -> bool {
        self.fleet.etcd_members > 0
    }
}

/// The scenario folder of the repository.
pub fn scenario_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_typos_and_unknown_values() {
        let e = Scenario::parse(
            "x",
            "about = \"a\"\n[[fault]]\nat = \"durin fb4_restore\"\ndo = \"kill-leader\"\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("not a point"), "{e:#}");
        let e = Scenario::parse(
            "x",
            "about = \"a\"\n[[fault]]\nat = \"during fb9\"\ndo = \"kill-leader\"\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("fb9"), "{e:#}");
        let e =
            Scenario::parse("x", "about = \"a\"\n[expect]\nstatuss = \"failed\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("statuss"), "{e:#}");
        let e = Scenario::parse(
            "x",
            "about = \"a\"\n[[fault]]\nat = \"start\"\ndo = \"kill-etcd-member\"\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("etcd_members = 3"), "{e:#}");
        let e = Scenario::parse(
            "x",
            "about = \"a\"\n[[catches]]\nbreak = \"nope\"\ninvariant = 1\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
    }

    #[test]
    fn every_scenario_file_parses() {
        let dir = scenario_dir();
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Scenario::load(&p).unwrap();
                n += 1;
            }
        }
        assert!(n > 0, "no scenarios in {}", dir.display());
    }
}
