//! `failback-lab --fault KIND@POINT`: an operator's fault drill, built in memory as a scenario
//! and run by the same runner and invariant checkers as `tests/scenarios/`, so what an operator
//! drills is exactly what the suite proves.
//!
//! `KIND` is a scenario `do` (`kill-leader`, `stop-leader`, `kill-agent:primary`,
//! `kill-sql:backup`, `kill-etcd-member`, `kill-etcd-quorum`, `corrupt-backup`,
//! `truncate-backup`, `abort`). `POINT` is a scenario `at`, or a bare step name as shorthand:
//! `fb4_restore` means "during fb4_restore" for the steps with a long statement, "after STEP"
//! for the others. Decisions, since an operator gives only the fault:
//! - leader and etcd faults need two coordinators, so those drills run on a three-member etcd;
//! - a fault *during* a step slows that step's statement in sqlsim (5 s) so the fault lands in it;
//! - the run's end state is not prescribed (`status = "ended"`): a drill that aborts or refuses
//!   is fine, and its verdict is every DESIGN §9 invariant holding (and for a leader fault the
//!   takeover budget, TTL + 2 s, so the drill prints the measured takeover);
//! - damage to the backup file happens while FB-4 waits for approval (the only moment the file
//!   is written and not yet restored), so those drills start without `--yes` and approve after it.

use anyhow::bail;

use super::spec::{DURING, STEPS, Scenario};

/// Builds the drill for `faults` (each `KIND@POINT`).
pub fn scenario(faults: &[String]) -> anyhow::Result<Scenario> {
    if faults.is_empty() {
        bail!("--fault: give at least one KIND@POINT, e.g. --fault kill-leader@fb4_restore");
    }
    let mut etcd = false;
    let mut leader_fault = false;
    let mut yes = true;
    let mut primary_args: Vec<&str> = Vec::new();
    let mut backup_args: Vec<&str> = Vec::new();
    let mut blocks = String::new();
    for f in faults {
        let Some((kind, point)) = f.split_once('@') else {
            bail!("--fault '{f}': expected KIND@POINT, e.g. kill-leader@fb4_restore");
        };
        let (kind, role) = match kind.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (kind, None),
        };
        if let Some(r) = role
            && !matches!(r, "primary" | "backup")
        {
            bail!("--fault '{f}': '{r}' is not a role (primary or backup)");
        }
        if kind.contains(['"', '\\', '\n']) || point.contains(['"', '\\', '\n']) {
            bail!("--fault '{f}': quotes, backslashes and newlines are not part of any fault");
        }
        if matches!(
            kind,
            "kill-leader"
                | "stop-leader"
                | "cut-leader-etcd"
                | "kill-etcd-member"
                | "kill-etcd-quorum"
        ) {
            etcd = true;
        }
        leader_fault |= matches!(kind, "kill-leader" | "stop-leader" | "cut-leader-etcd");
        let at = if STEPS.contains(&point) {
            match DURING.iter().find(|(n, _, _)| *n == point) {
                Some(_) => format!("during {point}"),
                None => format!("after {point}"),
            }
        } else {
            point.to_string()
        };
        match at.as_str() {
            "during fb4_restore" => primary_args.extend(["--fault", "delay restore 5000"]),
            "during fb3_backup" => backup_args.extend(["--fault", "delay backup 5000"]),
            // FB-5's seed is the restored primary's only full backup in a failback.
            "during fb5_log_shipping" => primary_args.extend(["--fault", "delay backup 3000"]),
            _ => {}
        }
        let damage = matches!(kind, "corrupt-backup" | "truncate-backup");
        let at = if damage {
            yes = false;
            "awaiting_approval".to_string()
        } else {
            at
        };
        blocks.push_str(&format!("\n[[fault]]\nat = \"{at}\"\ndo = \"{kind}\"\n"));
        if let Some(r) = role {
            blocks.push_str(&format!("role = \"{r}\"\n"));
        }
        if matches!(kind, "stop-leader" | "cut-leader-etcd") {
            blocks.push_str("for = \"10s\"\n");
        }
        if damage {
            blocks.push_str("\n[[fault]]\nat = \"+0s\"\ndo = \"approve\"\n");
        }
    }
    if !yes && blocks.matches("do = \"approve\"").count() == 0 {
        blocks.push_str("\n[[fault]]\nat = \"awaiting_approval\"\ndo = \"approve\"\n");
    }
    let list = |a: &[&str]| {
        a.iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "about = \"failback-lab drill: {}\"\n\n[fleet]\netcd_members = {}\nprimary_sql_args = [{}]\nbackup_sql_args = [{}]\n\n[run]\nyes = {yes}\n{blocks}\n[expect]\nstatus = \"ended\"\n{}",
        faults.join(", "),
        if etcd { 3 } else { 0 },
        list(&primary_args),
        list(&backup_args),
        // The issue #12 budget, so the drill prints the measured takeover.
        if leader_fault {
            "takeover_within_ttl_plus = \"2s\"\n"
        } else {
            ""
        },
    );
    Scenario::parse("drill", &text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_step_means_during_a_long_one_and_after_the_others() {
        let s = scenario(&[
            "kill-leader@fb4_restore".into(),
            "abort@fb6_activate".into(),
        ])
        .unwrap();
        assert_eq!(s.fleet.etcd_members, 3);
        assert_eq!(s.faults[0].label, "kill-leader @ during fb4_restore");
        assert_eq!(s.faults[1].label, "abort @ after fb6_activate");
        assert_eq!(s.fleet.primary_sql_args, ["--fault", "delay restore 5000"]);
        let s = scenario(&["kill-leader@fb5_log_shipping".into()]).unwrap();
        assert_eq!(s.faults[0].label, "kill-leader @ during fb5_log_shipping");
        assert_eq!(s.fleet.primary_sql_args, ["--fault", "delay backup 3000"]);
    }

    #[test]
    fn damage_waits_for_the_approval_and_approves() {
        let s = scenario(&["corrupt-backup@fb4_restore".into()]).unwrap();
        assert!(!s.run.yes);
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.fleet.etcd_members, 0);
    }

    #[test]
    fn bad_faults_are_refused_by_name() {
        for (f, says) in [
            ("kill-leader", "KIND@POINT"),
            ("kill-agent:dc3@start", "not a role"),
            ("melt@start", "melt"),
            ("kill-leader@fb9", "fb9"),
            ("kill-leader@\"x", "quotes"),
        ] {
            let e = format!("{:#}", scenario(&[f.into()]).unwrap_err());
            assert!(e.contains(says), "{f}: {e}");
        }
    }
}
