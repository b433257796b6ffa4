//! Earlier disasters of a scenario's pool (`[run] earlier_failbacks = N`): before the scenario's
//! own failback, the pool goes N times round the whole cycle an estate lives through — failed
//! back, DC1 lost again (its SQL instance and both DC1 agents killed), failed over with the
//! operator's attestation, DC1 rebuilt (a new, empty instance on the same address, as Topology
//! Builder leaves it; the lost one's files are kept aside) and its agents back. Every step is a
//! real run through `failbackctl`; a run that does not succeed stops the scenario with its
//! reason. What the earlier runs leave is the point: their run records and the files FB-3 and
//! FB-5 wrote on the share (issue #12's retention finding).

use std::time::Duration;

use anyhow::{Context, bail};

use super::runner::Check;
use crate::harness::failed_over::{FailedOverLab, SHELL_DC1};
use crate::harness::fleet::APPROVER;
use crate::harness::sqlsim::SA_PASSWORD;

/// How long one earlier run may take.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `n` cycles; returns the run ids of the earlier failbacks, oldest first.
pub async fn earlier_failbacks(lab: &mut FailedOverLab, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for k in 1..=n {
        let pool = lab.pools[0].fqdn.clone();
        let run = lab
            .start_failback(APPROVER, &["--pool", &pool, "--yes"])
            .await
            .with_context(|| format!("earlier failback {k}"))?;
        succeeded(lab, &run, "failback").await?;
        ids.push(run);

        // DC1 lost again.
        let primary_agent = lab.pools[0].primary_agent.clone();
        lab.pools[0].primary.kill();
        lab.fleet.kill_agent(&primary_agent);
        lab.fleet.kill_agent(SHELL_DC1);
        let out = lab
            .fleet
            .ctl(
                APPROVER,
                &[
                    "run",
                    "failover",
                    "--pool",
                    &pool,
                    "--attest-primary-down",
                    "scenario: DC1 lost again after an earlier failback",
                    "--yes",
                    "--output",
                    "json",
                ],
            )
            .await?;
        if out.code != 0 {
            bail!(
                "earlier failover {k} refused ({}): {}",
                out.code,
                out.stderr
            );
        }
        let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
        let fo = v["run_id"]
            .as_str()
            .context("no run_id in the failover's answer")?
            .to_string();
        succeeded(lab, &fo, "failover").await?;

        // DC1 rebuilt: an empty instance where the lost one answered.
        let p = &mut lab.pools[0];
        let dir = p.primary.data_dir().to_path_buf();
        let lost = dir.with_extension(format!("lost-{k}"));
        std::fs::rename(&dir, &lost)
            .with_context(|| format!("keep the lost instance's files in {}", lost.display()))?;
        std::fs::create_dir_all(&dir)?;
        p.primary.start().await?;
        p.primary
            .batch_as(("sa", SA_PASSWORD), "master", "CREATE DATABASE mgc")
            .await?;
        p.setup_statements.0 = p.primary.statements().len();
        p.setup_statements.1 = p.backup.statements().len();
        lab.fleet.start_agent(&primary_agent)?;
        lab.fleet.start_agent(SHELL_DC1)?;
        lab.fleet
            .wait_connected(&[&primary_agent, SHELL_DC1], true, Duration::from_secs(60))
            .await
            .context("DC1's agents did not come back")?;
    }
    Ok(ids)
}

async fn succeeded(lab: &FailedOverLab, run: &str, what: &str) -> anyhow::Result<()> {
    let d = lab.wait_status(run, &[], RUN_DEADLINE).await?;
    let status = d["run"]["status"].as_str().unwrap_or_default();
    if status != "succeeded" {
        bail!(
            "earlier {what} {run} ended {status}: {}",
            d["run"]["reason"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// `share_holds_failbacks`: the pool's share holds `.bak` files of exactly the newest `keep`
/// of the failbacks `earlier` (oldest first) and `run`, read from the share's directory.
pub fn share_holds(lab: &FailedOverLab, earlier: &[String], run: &str, keep: usize) -> Check {
    let share = lab.share();
    let names: Vec<String> = std::fs::read_dir(&share)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".bak"))
                .collect()
        })
        .unwrap_or_default();
    let mut all: Vec<&str> = earlier.iter().map(String::as_str).collect();
    all.push(run);
    let holds = |id: &str| names.iter().any(|n| n.contains(id));
    let kept_from = all.len().saturating_sub(keep);
    let wrong: Vec<String> = all
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let want = i >= kept_from;
            (holds(id) != want).then(|| {
                format!(
                    "{id} {}",
                    if want {
                        "has no file"
                    } else {
                        "still has files"
                    }
                )
            })
        })
        .collect();
    Check {
        key: "share_holds_failbacks".into(),
        what: format!(
            "the share holds the backups of the newest {keep} of {} failbacks only",
            all.len()
        ),
        ok: wrong.is_empty(),
        seen: if wrong.is_empty() {
            format!("{} .bak files: {}", names.len(), names.join(", "))
        } else {
            format!("{}; on the share: {}", wrong.join("; "), names.join(", "))
        },
    }
}
