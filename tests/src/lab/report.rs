//! The drill's record and its final report: steps with timings, messages written / found / lost
//! per phase, RPO and RTO achieved, and every check with its verdict (the exit code is 0 only
//! when every check passed). Progress lines go to stdout as the drill runs.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

/// One timed step of the drill.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// What was done.
    pub name: String,
    /// How long it took.
    pub took: Duration,
    /// Short outcome.
    pub outcome: String,
}

/// Message counts of one phase (all pools).
#[derive(Debug, Clone, Default)]
pub struct PhaseRow {
    /// Phase name.
    pub name: String,
    /// Messages acknowledged that the phase's check covers.
    pub written: usize,
    /// Of those, found where they must be.
    pub found: usize,
    /// Of those, missing.
    pub lost: usize,
    /// What "lost" is allowed to be.
    pub allowed: String,
}

/// One pass/fail check.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Passed?
    pub ok: bool,
    /// Evidence or the reason it failed.
    pub detail: String,
}

/// Everything the drill recorded.
#[derive(Debug, Default)]
pub struct Report {
    /// Timed steps.
    pub steps: Vec<StepRow>,
    /// Message phases.
    pub phases: Vec<PhaseRow>,
    /// Checks.
    pub checks: Vec<Check>,
    /// Warnings (things that are not failures yet, e.g. a command not built yet).
    pub warnings: Vec<String>,
    /// Data-loss window of the failover (DC1 loss − start of the last log backup applied),
    /// worst pool.
    pub rpo: Option<Duration>,
    /// DC1 loss → first message acknowledged by the backup `mgc`, worst pool.
    pub rto_failover: Option<Duration>,
    /// Failback start → first message acknowledged by the primary `mgc`, worst pool.
    pub rto_failback: Option<Duration>,
}

/// A step being timed; [`Report::end`] closes it.
pub struct Timer {
    name: String,
    start: Instant,
}

impl Report {
    /// Prints the step's heading and starts its clock.
    pub fn begin(&self, name: &str) -> Timer {
        println!("\n== {name}");
        Timer {
            name: name.to_string(),
            start: Instant::now(),
        }
    }

    /// Records a finished step.
    pub fn end(&mut self, t: Timer, outcome: impl Into<String>) {
        let took = t.start.elapsed();
        let outcome = outcome.into();
        println!("   ({outcome}; {:.1} s)", took.as_secs_f64());
        self.steps.push(StepRow {
            name: t.name,
            took,
            outcome,
        });
    }

    /// Records a check and prints its verdict.
    pub fn check(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) -> bool {
        let (name, detail) = (name.into(), detail.into());
        println!("   [{}] {name}: {detail}", if ok { "ok" } else { "FAIL" });
        self.checks.push(Check { name, ok, detail });
        ok
    }

    /// Records a warning and prints it.
    pub fn warn(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("   WARNING: {text}");
        self.warnings.push(text);
    }

    /// Whether every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// The final report as text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "\n==================== failback lab report ===================="
        );
        let _ = writeln!(o, "{:<60} {:>8}  OUTCOME", "STEP", "SECONDS");
        for s in &self.steps {
            let _ = writeln!(
                o,
                "{:<60} {:>8.1}  {}",
                s.name,
                s.took.as_secs_f64(),
                s.outcome
            );
        }
        let _ = writeln!(
            o,
            "\n{:<34} {:>8} {:>8} {:>8}  ALLOWED LOSS",
            "MESSAGES", "WRITTEN", "FOUND", "LOST"
        );
        for p in &self.phases {
            let _ = writeln!(
                o,
                "{:<34} {:>8} {:>8} {:>8}  {}",
                p.name, p.written, p.found, p.lost, p.allowed
            );
        }
        let secs = |d: Option<Duration>| {
            d.map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "n/a".into())
        };
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "RPO achieved (failover loss window, worst pool): {}",
            secs(self.rpo)
        );
        let _ = writeln!(
            o,
            "RTO achieved, failover (DC1 lost -> chat writes again): {}",
            secs(self.rto_failover)
        );
        let _ = writeln!(
            o,
            "RTO achieved, failback (run start -> chat writes to DC1): {}",
            secs(self.rto_failback)
        );
        let _ = writeln!(o, "\nCHECKS");
        for c in &self.checks {
            let _ = writeln!(
                o,
                "  [{}] {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        for w in &self.warnings {
            let _ = writeln!(o, "  WARNING: {w}");
        }
        let passed = self.checks.iter().filter(|c| c.ok).count();
        let _ = writeln!(
            o,
            "\nRESULT: {} ({passed}/{} checks passed)",
            if self.passed() { "PASS" } else { "FAIL" },
            self.checks.len()
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_passes_only_with_checks_all_ok() {
        let mut r = Report::default();
        assert!(!r.passed(), "no check is no pass");
        r.check("a", true, "fine");
        assert!(r.passed());
        r.warn("not built yet");
        assert!(r.passed(), "a warning is not a failure");
        r.check("b", false, "broken");
        assert!(!r.passed());
        let text = r.render();
        assert!(text.contains("RESULT: FAIL (1/2 checks passed)"), "{text}");
        assert!(text.contains("[FAIL] b: broken"), "{text}");
    }
}
