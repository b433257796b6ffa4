//! FO-2: copy every log backup not yet copied from the share to the backup host's copy folder
//! (pchat-dr.md §2 step 2, §6.11 step 2), through the backup SQL host's agent (files backend:
//! resumable, SHA-256 verified, renamed into place).
//!
//! - Which files: `*.trn` on the share that are not in the copy folder (by name) and, when the
//!   names carry the backup job's UTC stamp (`<db>_yyyymmddhhmmss.trn`), not older than the
//!   last restored file FO-1a recorded (older ones are applied already; with a 72-hour
//!   retention the share holds hundreds). A name without a stamp is always copied: FO-3 reads
//!   its header and decides. Oldest first; op `copy-<name>` each.
//! - **Share unreachable** (it died with the primary data center, §2 automation notes): not a
//!   failure. The output says `share_reachable: false` with the agent's message, and FO-3
//!   applies what the copy folder holds; whatever existed only on the share is lost, which
//!   FO-3's loss window says. Decided: any error listing the share counts as unreachable (a
//!   dead file server, a share outside the agent's roots, a missing folder all mean the same to
//!   the operator: those files cannot be had), and the reason is recorded.
//! - Probe: always needed (the listing is the work).
//! - Verify: every copied file is in the copy folder with the size copied.
//!
//! Errors: the backup agent unreachable → asked again; a copy that fails retryably (the file
//! still being written, a share that drops mid-copy) → new attempt (3 in all; a repeated copy
//! of a file already in place writes nothing); the copy folder itself unreadable, or a copy
//! refused (a different file of the same name in the copy folder) → abort the pool's run.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use failback_proto::model::AgentId;
use failback_proto::pb;
use serde_json::{Value, json};

use super::chain::not_older;
use super::{Captured, file_name, label_part};
use crate::config::RunbookConfig;
use crate::runbook::failback::{expect_output, join_path, op, sql};
use crate::runbook::{ErrorClass, PlannedOp, Probe, Step, StepCtx, StepError};
use crate::topology::{Pool, SqlRole};

/// FO-2.
pub struct CopyLogs;

/// Pattern of log backup files.
pub const LOG_PATTERN: &str = "*.trn";

/// `*.trn` files of `dir` through `agent`.
pub async fn list_logs(
    ctx: &StepCtx,
    agent: &AgentId,
    dir: &str,
) -> Result<Vec<pb::FileInfo>, StepError> {
    let out = ctx
        .read(
            agent,
            op(pb::operation::Kind::FileList(pb::FileList {
                directory: dir.to_string(),
                pattern: LOG_PATTERN.into(),
            })),
        )
        .await?;
    Ok(expect_output!(out, FileListing, "file_list")?
        .files
        .into_iter()
        .filter(|f| !f.is_dir)
        .collect())
}

#[async_trait]
impl Step for CopyLogs {
    fn name(&self) -> &'static str {
        "fo2_copy_logs"
    }

    fn title(&self) -> &'static str {
        "FO-2 copy the log backups not yet copied from the share to the copy folder (when the share is reachable)"
    }

    fn timeout(&self, config: &RunbookConfig) -> Duration {
        config.data_step_timeout
    }

    fn plan(&self, pool: &Pool) -> Vec<PlannedOp> {
        let Some(b) = pool.sql.get(&SqlRole::Backup) else {
            return Vec::new();
        };
        vec![
            PlannedOp::new(
                &b.agent,
                "file_list",
                format!(
                    "{LOG_PATTERN} in the copy folder and on the share (paths recorded by FO-1a; topology: {} and {}); an unreachable share is reported and the run goes on with the copy folder",
                    pool.copy_dir, pool.share
                ),
            ),
            PlannedOp::new(
                &b.agent,
                "file_copy",
                "each log backup on the share that is not in the copy folder and not older than the last restored one (SHA-256 verified, renamed into place)",
            ),
        ]
    }

    async fn probe(&self, _ctx: &StepCtx) -> Result<Probe, StepError> {
        Ok(Probe::Needed)
    }

    async fn act(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        let cap = Captured::from_run(ctx)?;
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let in_copy: BTreeSet<String> = list_logs(ctx, &backup, &cap.copy_dir)
            .await?
            .iter()
            .map(|f| file_name(&f.path).to_string())
            .collect();
        let on_share = match list_logs(ctx, &backup, &cap.share).await {
            Ok(v) => v,
            Err(e) if matches!(e.class, ErrorClass::Retry | ErrorClass::Fatal) => {
                tracing::warn!(pool = %ctx.pool.fqdn, "the share {} is unreachable: {}", cap.share, e.message);
                return Ok(json!({
                    "share": cap.share,
                    "copy_dir": cap.copy_dir,
                    "share_reachable": false,
                    "share_error": e.message,
                    "copied": [],
                    "in_copy_dir": in_copy.len(),
                }));
            }
            Err(e) => return Err(e),
        };
        let restored = file_name(&cap.last_restored_file).to_string();
        let mut wanted: Vec<&pb::FileInfo> = on_share
            .iter()
            .filter(|f| {
                let name = file_name(&f.path);
                !in_copy.contains(name) && (restored.is_empty() || not_older(name, &restored))
            })
            .collect();
        wanted.sort_by(|a, b| file_name(&a.path).cmp(file_name(&b.path)));
        let mut copied = Vec::new();
        for f in wanted {
            let name = file_name(&f.path);
            let destination = join_path(&cap.copy_dir, name);
            let out = ctx
                .act(
                    &backup,
                    &format!("copy-{}", label_part(name)),
                    op(pb::operation::Kind::FileCopy(pb::FileCopy {
                        source: f.path.clone(),
                        destination: destination.clone(),
                        expected_sha256: String::new(),
                    })),
                    ctx.config.data_step_timeout,
                )
                .await?;
            let c = expect_output!(out, Copy, "file_copy")?;
            // `resumed_from`: a copy that an agent restart interrupted went on from its
            // verified `.partial` (the report shows it, so nobody wonders about the file).
            copied.push(json!({ "file": destination, "source": f.path, "sha256": c.sha256, "bytes": c.bytes, "resumed_from": c.resumed_from, "size": f.size }));
        }
        Ok(json!({
            "share": cap.share,
            "copy_dir": cap.copy_dir,
            "share_reachable": true,
            "on_share": on_share.len(),
            "in_copy_dir": in_copy.len(),
            "copied": copied,
        }))
    }

    async fn verify(&self, ctx: &StepCtx, output: Value) -> Result<Value, StepError> {
        let backup = sql(&ctx.pool, SqlRole::Backup)?.agent.clone();
        let copied = output
            .get("copied")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in copied {
            let file = c.get("file").and_then(Value::as_str).unwrap_or_default();
            let size = c.get("size").and_then(Value::as_u64).unwrap_or_default();
            let out = ctx
                .read(
                    &backup,
                    op(pb::operation::Kind::FileStat(pb::FileStat {
                        path: file.to_string(),
                    })),
                )
                .await?;
            let st = expect_output!(out, FileInfo, "file_stat")?;
            if !st.exists || st.size != size {
                return Err(StepError::retry(format!(
                    "copied log backup '{file}' reads back as {} ({} bytes, {size} expected)",
                    if st.exists { "present" } else { "absent" },
                    st.size
                )));
            }
        }
        Ok(output)
    }
}
