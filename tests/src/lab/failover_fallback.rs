//! TEMPORARY: the failover done by the lab itself, used only while `failbackctl run failover`
//! does not exist yet (the failover runbook FO-1…FO-7 is being built in parallel; the drill
//! calls it first and falls back to this when failbackctl answers that the subcommand is
//! unknown, saying so loudly in the progress and the report). Delete this file when the
//! runbook lands.
//!
//! It does per pool what pchat-dr.md §2 orders and the failback e2e fixture assumes: read the
//! secondary's log-shipping metadata, `sp_delete_log_shipping_secondary_database`, copy what the
//! share still holds (nothing when the share was lost with DC1), apply the copied logs not yet
//! restored in LSN order and stop at a gap (§6.11), end the sessions in `mgc`, `RESTORE DATABASE
//! [mgc] WITH RECOVERY`, then in the Lync shell `Set-CsPersistentChatState … FailedOver` and the
//! DC2 chat servers active. It runs as the lab's admin, directly against sqlsim and lyncsim —
//! not through agents, which is why it must not outlive the runbook.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::sql::{batch, last_restored_log, lit};
use super::topology::PoolLayout;
use crate::harness::process::bin;
use crate::harness::sqlsim::SqlSim;

/// What the fallback did for one pool.
#[derive(Debug, Clone, Default)]
pub struct FallbackOutcome {
    /// Log files copied from the share (0 when it was unreachable).
    pub copied: usize,
    /// Whether the share could be read.
    pub share_reachable: bool,
    /// Log files restored during the failover.
    pub applied: Vec<String>,
    /// The first file after a gap in the LSN chain, if one was found (nothing beyond it applied).
    pub gap: Option<String>,
}

fn numeric(row: &tiberius::Row, col: &str) -> anyhow::Result<i128> {
    row.try_get::<tiberius::numeric::Numeric, _>(col)?
        .map(|n| n.value())
        .with_context(|| format!("HEADERONLY column {col} is NULL"))
}

fn trn_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("trn")))
        .collect();
    out.sort();
    out
}

/// Fails the pool over to its backup instance (module doc). `cms` is the lab's store.
pub async fn fail_over_pool(
    p: &PoolLayout,
    backup: &SqlSim,
    cms: &Path,
) -> anyhow::Result<FallbackOutcome> {
    let mut out = FallbackOutcome::default();
    // FO-1: capture the metadata before deleting it (sp_delete_* drops these rows and jobs).
    let rows = batch(
        backup,
        "master",
        "SELECT backup_source_directory, backup_destination_directory FROM msdb.dbo.log_shipping_secondary WHERE primary_database = N'mgc'",
    )
    .await?;
    let row = rows
        .first()
        .context("the backup instance has no log shipping configuration for mgc")?;
    let source = PathBuf::from(row.get::<&str, _>(0).unwrap_or_default());
    let dest = PathBuf::from(row.get::<&str, _>(1).unwrap_or_default());
    let mut applied: i128 = match last_restored_log(backup).await? {
        Some(l) => l.last_lsn,
        None => 0,
    };
    batch(
        backup,
        "master",
        "EXEC master.dbo.sp_delete_log_shipping_secondary_database @secondary_database = N'mgc'",
    )
    .await?;
    // FO-2: copy what the share still has.
    out.share_reachable = source.is_dir();
    for f in trn_files(&source) {
        let Some(name) = f.file_name() else { continue };
        let to = dest.join(name);
        if !to.exists() {
            std::fs::copy(&f, &to).with_context(|| format!("copy {}", f.display()))?;
            out.copied += 1;
        }
    }
    // FO-3: apply in LSN order, stop at a gap.
    let mut headers = Vec::new();
    for f in trn_files(&dest) {
        let file = f.display().to_string();
        let h = batch(
            backup,
            "master",
            &format!("RESTORE HEADERONLY FROM DISK = {}", lit(&file)),
        )
        .await?;
        let Some(h) = h.first() else { continue };
        headers.push((numeric(h, "FirstLSN")?, numeric(h, "LastLSN")?, file));
    }
    headers.sort();
    for (first, last, file) in headers {
        if last <= applied {
            continue;
        }
        if first > applied {
            out.gap = Some(file);
            break;
        }
        batch(
            backup,
            "master",
            &format!(
                "RESTORE LOG [mgc] FROM DISK = {} WITH NORECOVERY",
                lit(&file)
            ),
        )
        .await?;
        applied = last;
        out.applied.push(file);
    }
    // FO-4: end the sessions, bring mgc online.
    let sessions = batch(
        backup,
        "master",
        "SELECT spid FROM sys.sysprocesses WHERE dbid = DB_ID(N'mgc') AND spid <> @@SPID",
    )
    .await?;
    for s in sessions {
        if let Some(spid) = s.get::<i16, _>(0) {
            let _ = batch(backup, "master", &format!("KILL {spid}")).await;
        }
    }
    batch(backup, "master", "RESTORE DATABASE [mgc] WITH RECOVERY").await?;
    // FO-5, FO-7 in the Lync shell.
    let script = format!(
        "Import-Module 'SkypeForBusiness'; \
         Set-CsPersistentChatState -Identity 'service:{pool}' -PoolState FailedOver -Force; \
         Set-CsPersistentChatActiveServer -Identity 'PersistentChatServer:{pool}' -ActiveServers {server} -Force",
        pool = p.fqdn,
        server = p.chat_dc2
    );
    lync_admin(cms, &script).await?;
    Ok(out)
}

/// Runs a script in lyncsim against the lab's store, as an administrator would in the shell.
pub async fn lync_admin(cms: &Path, script: &str) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(bin("lyncsim")?)
        .args([
            "--store",
            &cms.display().to_string(),
            "--host",
            "lab-admin",
            "-NoProfile",
            "-Command",
            script,
        ])
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "lyncsim: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
