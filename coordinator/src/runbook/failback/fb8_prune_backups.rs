//! FB-8: backup retention on the pool's share (issue #12, truth): every failback leaves two full
//! backups of `mgc` there (FB-3's file and FB-5's seed, plus one per failed attempt), and
//! nothing removed them, so the share filled up one failback at a time. Not in the Microsoft
//! runbook; the last step, after the pool is back in service.
//!
//! Decisions:
//! - Only files the run store names are deleted: FB-3's `file` and FB-5's `seed.file` recorded
//!   in this pool's earlier failbacks that finished every step, and the same step's earlier
//!   attempts (the recorded name ends in `_<attempt>.bak`; attempts 1 … n−1 are the same name
//!   with a smaller number). A file must lie in the pool's share and end in `.bak`. No listing
//!   of the share and no pattern: a file someone put there, or another pool's, is never touched.
//! - `RunbookConfig::backup_retention_runs` failbacks keep their files, this one included
//!   (default 3); 0 keeps everything (the step is then not applicable).
//! - Destructive (an old restore point is gone for good): covered by the run's approval.
//! - Probe: none of the candidate files exists (`file_stat` on the primary's agent, whose file
//!   roots hold the share: FB-4 reads FB-3's file through it) → done.
//! - Action: `file_delete` of each existing candidate (op `delete-<n>`); a file the agent cannot
//!   delete does not fail the failback, which is complete by now: it is listed under `left`
//!   with the agent's reason, which the report shows.
//! - Verify: what was deleted no longer exists.
//!
//! Errors: agent unreachable / no answer → asked again with the same op id; a refused delete
//! → recorded in `left`; nothing aborts the run.

use std::time::Duration;

use async_trait::async_trait;
use failback_proto::pb;
use serde_json::{Value, json};

use super::{SqlRole, expect_output, op, sql};
use crate::config::RunbookConfig;
use crate::runbook::context::EarlierRun;
use crate::runbook::records::{BackupRecord, StepRecord};
use crate::runbook::{PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::Pool;

/// FB-8.
pub struct PruneBackups;

/// The files of `earlier` (newest first) that retention removes when `keep` failbacks keep
/// theirs, this one included: those of the runs past the newest `keep - 1`, in the pool's share.
pub fn candidates(earlier: &[EarlierRun], keep: u32, share: &str) -> Vec<String> {
    // Test-only mutation (never in release builds): nothing is removed, as before issue #12.
    if keep == 0 || failback_proto::test_break::broken(failback_proto::test_break::BACKUP_RETENTION)
    {
        return Vec::new();
    }
    let skip = usize::try_from(keep - 1).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for run in earlier.iter().skip(skip) {
        // An earlier run's record that does not read removes nothing: keeping a file is the
        // safe side of retention.
        let recorded = [
            run.outputs
                .get(BackupRecord::STEP)
                .and_then(|o| BackupRecord::from_output(o).ok())
                .map(|r| r.file),
            run.outputs
                .get("fb5_log_shipping")
                .and_then(|o| o.get("seed"))
                .and_then(|s| s.get("file"))
                .and_then(Value::as_str)
                .map(str::to_string),
        ];
        for file in recorded.into_iter().flatten() {
            for f in with_earlier_attempts(&file) {
                if in_share(&f, share) && !out.contains(&f) {
                    out.push(f);
                }
            }
        }
    }
    out
}

/// `…_<n>.bak` and the same name for attempts 1 … n−1.
fn with_earlier_attempts(file: &str) -> Vec<String> {
    let Some(stem) = file.strip_suffix(".bak") else {
        return vec![file.to_string()];
    };
    let Some((base, n)) = stem.rsplit_once('_') else {
        return vec![file.to_string()];
    };
    match n.parse::<u32>() {
        Ok(n) if (1..=20).contains(&n) => (1..=n).map(|k| format!("{base}_{k}.bak")).collect(),
        _ => vec![file.to_string()],
    }
}

/// Whether `file` is a `.bak` directly in `share` (either separator; case-insensitive, as the
/// Windows file systems the shares live on).
fn in_share(file: &str, share: &str) -> bool {
    let norm = |s: &str| s.replace('\\', "/").to_ascii_lowercase();
    let (f, s) = (norm(file), norm(share));
    let s = s.trim_end_matches('/');
    f.ends_with(".bak")
        && f.strip_prefix(s)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| !name.is_empty() && !name.contains('/') && !name.contains(".."))
}

async fn exists(ctx: &StepCtx, file: &str) -> Result<bool, StepError> {
    let agent = sql(&ctx.pool, SqlRole::Primary)?.agent.clone();
    let out = ctx
        .read(
            &agent,
            op(pb::operation::Kind::FileStat(pb::FileStat {
                path: file.to_string(),
            })),
        )
        .await?;
    Ok(expect_output!(out, FileInfo, "file_stat")?.exists)
}

async fn existing(ctx: &StepCtx) -> Result<Vec<String>, StepError> {
    let mut out = Vec::new();
    let earlier = ctx.earlier_runs().await;
    for f in candidates(&earlier, ctx.config.backup_retention_runs, &ctx.pool.share) {
        if exists(ctx, &f).await? {
            out.push(f);
        }
    }
    Ok(out)
}

#[async_trait]
impl Step for PruneBackups {
    fn name(&self) -> &'static str {
        "fb8_prune_backups"
    }

    fn title(&self) -> &'static str {
        "FB-8 delete the failback backups of older failbacks from the share (retention)"
    }

    fn destructive(&self) -> bool {
        true
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        pool.sql
            .get(&SqlRole::Primary)
            .map(|p| {
                vec![PlannedOp::new(
                    &p.agent,
                    "file_delete",
                    format!(
                        "delete from {} the FB-3 files and FB-5 seeds that the run store records for this pool's older failbacks, past the newest (backup_retention_runs − 1)",
                        pool.share
                    ),
                )]
            })
            .unwrap_or_default()
    }

    async fn probe(&self, ctx: &StepCtx) -> Result<Probe, StepError> {
        if ctx.config.backup_retention_runs == 0 {
            return Ok(Probe::NotApplicable(
                "backup_retention_runs = 0: every failback backup stays on the share".into(),
            ));
        }
        if existing(ctx).await?.is_empty() {
            return Ok(Probe::Done(json!({
                "deleted": [],
                "left": [],
                "kept_runs": ctx.config.backup_retention_runs,
            })));
        }
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let agent = sql(&ctx.pool, SqlRole::Primary)?.agent.clone();
        let mut deleted = Vec::new();
        let mut left = Vec::new();
        for (i, f) in existing(ctx).await?.into_iter().enumerate() {
            let r = ctx
                .act(
                    &agent,
                    &format!("delete-{}", i + 1),
                    op(pb::operation::Kind::FileDelete(pb::FileDelete {
                        path: f.clone(),
                    })),
                    ctx.config.step_timeout,
                )
                .await;
            match r {
                Ok(_) => deleted.push(f),
                Err(e) => left.push(json!({ "file": f, "reason": e.message })),
            }
        }
        Ok(json!({
            "deleted": deleted,
            "left": left,
            "kept_runs": ctx.config.backup_retention_runs,
        }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let deleted: Vec<String> = output["deleted"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for f in &deleted {
            if exists(ctx, f).await? {
                return Err(StepError::retry(format!(
                    "'{f}' was reported deleted but still exists"
                )));
            }
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunId;

    fn run(id: &str, ms: u64, fb3: &str, seed: &str) -> EarlierRun {
        let mut outputs = serde_json::Map::new();
        outputs.insert("fb3_backup".into(), json!({ "file": fb3 }));
        outputs.insert(
            "fb5_log_shipping".into(),
            json!({ "seed": { "file": seed } }),
        );
        EarlierRun {
            id: RunId::new(id).unwrap_or_else(|e| panic!("{e}")),
            created_unix_ms: ms,
            outputs,
        }
    }

    #[test]
    fn the_newest_keep_minus_one_earlier_runs_keep_their_files() {
        let share = r"\\fs01\pchat01";
        let earlier = vec![
            run(
                "r3",
                3,
                r"\\fs01\pchat01\mgc_failback_r3_1.bak",
                r"\\fs01\pchat01\mgc_seed_r3_1.bak",
            ),
            run(
                "r2",
                2,
                r"\\fs01\pchat01\mgc_failback_r2_2.bak",
                r"\\fs01\pchat01\mgc_seed_r2_1.bak",
            ),
            run(
                "r1",
                1,
                r"\\fs01\pchat01\mgc_failback_r1_1.bak",
                r"\\other\share\mgc_seed_r1_1.bak",
            ),
        ];
        // keep 2: this run and r3; r2 (both attempts of its FB-3) and r1 go, but not r1's seed
        // outside the share.
        assert_eq!(
            candidates(&earlier, 2, share),
            [
                r"\\fs01\pchat01\mgc_failback_r2_1.bak",
                r"\\fs01\pchat01\mgc_failback_r2_2.bak",
                r"\\fs01\pchat01\mgc_seed_r2_1.bak",
                r"\\fs01\pchat01\mgc_failback_r1_1.bak",
            ]
        );
        assert!(candidates(&earlier, 0, share).is_empty());
        assert!(candidates(&earlier, 4, share).is_empty());
        assert_eq!(candidates(&earlier, 1, share).len(), 6);
    }

    #[test]
    fn only_bak_files_directly_in_the_share() {
        let s = "/lab/share/";
        assert!(in_share("/lab/share/mgc_failback_r_1.bak", s));
        assert!(in_share("/LAB/share/mgc_seed_r_1.BAK", s));
        assert!(!in_share("/lab/share/sub/mgc_failback_r_1.bak", s));
        assert!(!in_share("/lab/share/../etc/x.bak", s));
        assert!(!in_share("/lab/shared/mgc_failback_r_1.bak", s));
        assert!(!in_share("/lab/share/mgc_failback_r_1.trn", s));
    }
}
