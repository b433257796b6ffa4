//! A failed-over pool's backup instance as a failover done by hand leaves it (issue #12, false
//! proof): before the disaster DC1 shipped `mgc` to DC2 with the configuration SSMS makes
//! with PChat's defaults (15-minute jobs, the values FB-5 asks for), and the operator who failed
//! over ran `RESTORE DATABASE … WITH RECOVERY` on DC2 but not
//! `sp_delete_log_shipping_secondary_database`. DC2's msdb still holds that secondary
//! configuration, and its monitor still names the last log restored before the disaster.
//!
//! Built with real statements against real sims: a stand-in for the old DC1 instance (same
//! server name as the rebuilt one, its own process and data, killed when the disaster strikes)
//! backs up and ships to the backup instance; each job is started by hand
//! (`sp_start_job`) because PChat's 15-minute schedules would not run within a test.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::sqlsim::{SA_PASSWORD, SqlSim};
use super::ssms::LogShipping;
use super::wait_for;

/// PChat's log shipping interval (pchat-dr.md §4.2): what FB-5 configures, so the agent finds
/// the stale configuration equal to the one it would make and leaves it (and its monitor row)
/// in place.
const PCHAT_INTERVAL_S: u32 = 900;

/// How long one hand-started job may take.
const JOB_DEADLINE: Duration = Duration::from_secs(30);

/// Where the pool's files are and what to write.
pub struct Stage<'a> {
    /// The primary's server name (the rebuilt DC1 has the same one).
    pub primary_name: &'a str,
    /// Data folder for the stand-in of the old DC1 instance.
    pub old_dc1_dir: &'a Path,
    /// DC1's UTC offset.
    pub dc1_utc_offset_minutes: i32,
    /// The pool's share (log shipping backup folder).
    pub share: &'a Path,
    /// The backup's copy folder.
    pub copy_dir: &'a Path,
    /// Messages in `mgc` when the lab is ready: written at DC1 before and after the seed, the
    /// rest at DC2 after the failover.
    pub messages: usize,
}

fn insert(m: usize) -> String {
    format!("INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'message {m}')")
}

/// The first text column of the first row of `sql` on `sim`, if not NULL.
async fn scalar(sim: &SqlSim, sql: &str) -> Option<String> {
    let rows = sim
        .batch_as(("sa", SA_PASSWORD), "master", sql)
        .await
        .ok()?;
    rows.first()
        .and_then(|r| r.get::<&str, _>(0))
        .map(str::to_string)
}

/// Starts `job` on `sim` and waits until `done` (a query) returns a value other than `before`.
async fn run_job(sim: &SqlSim, job: &str, done: &str) -> anyhow::Result<String> {
    let before = scalar(sim, done).await;
    sim.batch_as(
        ("sa", SA_PASSWORD),
        "msdb",
        &format!("EXEC msdb.dbo.sp_start_job @job_name = N'{job}'"),
    )
    .await
    .with_context(|| format!("sp_start_job {job}"))?;
    wait_for(&format!("job {job} to finish"), JOB_DEADLINE, || async {
        scalar(sim, done)
            .await
            .filter(|v| Some(v) != before.as_ref())
    })
    .await
}

/// Builds the backup instance's `mgc` and msdb as the module doc says, writing `messages`
/// messages; the backup instance must be running and empty. Returns the stale
/// `last_restored_file` its monitor keeps.
pub async fn stage(s: &Stage<'_>, backup: &SqlSim) -> anyhow::Result<String> {
    let sa = ("sa", SA_PASSWORD);
    let mut old = SqlSim::new(s.primary_name, s.old_dc1_dir)?
        .with_utc_offset_minutes(s.dc1_utc_offset_minutes);
    old.start().await?;
    old.batch_as(
        sa,
        "master",
        "CREATE DATABASE mgc; ALTER DATABASE mgc SET RECOVERY FULL",
    )
    .await?;
    let half = s.messages / 2;
    for m in 0..half {
        old.batch_as(sa, "mgc", &insert(m)).await?;
    }
    let seed = s.share.join("mgc_before_the_disaster.bak");
    let seed = seed.display().to_string().replace('\'', "''");
    old.batch_as(
        sa,
        "master",
        &format!("BACKUP DATABASE [mgc] TO DISK = N'{seed}' WITH INIT, CHECKSUM"),
    )
    .await?;
    backup
        .batch_as(
            sa,
            "master",
            &format!("RESTORE DATABASE [mgc] FROM DISK = N'{seed}' WITH NORECOVERY"),
        )
        .await?;
    let ls = LogShipping::new(
        "mgc",
        &s.share.display().to_string(),
        &s.copy_dir.display().to_string(),
        s.primary_name,
        &backup.name,
    )
    .every(PCHAT_INTERVAL_S, PCHAT_INTERVAL_S, PCHAT_INTERVAL_S);
    for (sim, script, side) in [
        (&old, ls.primary_script(), "primary"),
        (backup, ls.secondary_script(), "secondary"),
    ] {
        let r = sim.batch_as(sa, "master", &script).await?;
        let rc = r.first().and_then(|row| row.get::<i32, _>("rc"));
        anyhow::ensure!(rc == Some(0), "log shipping {side} setup returned {rc:?}");
    }
    old.batch_as(sa, "mgc", &insert(half)).await?;
    let monitor = |col: &str, table: &str, key: &str| {
        format!("SELECT {col} FROM msdb.dbo.{table} WHERE {key} = N'mgc'")
    };
    run_job(
        &old,
        "LSBackup_mgc",
        &monitor(
            "last_backup_file",
            "log_shipping_monitor_primary",
            "primary_database",
        ),
    )
    .await?;
    run_job(
        backup,
        &format!("LSCopy_{}_mgc", s.primary_name),
        &monitor(
            "last_copied_file",
            "log_shipping_monitor_secondary",
            "primary_database",
        ),
    )
    .await?;
    let restored = run_job(
        backup,
        &format!("LSRestore_{}_mgc", s.primary_name),
        &monitor(
            "last_restored_file",
            "log_shipping_monitor_secondary",
            "secondary_database",
        ),
    )
    .await?;
    // The disaster: DC1 is gone. The failover by hand: recovery on DC2, chat resumes there.
    old.kill();
    backup
        .batch_as(sa, "master", "RESTORE DATABASE [mgc] WITH RECOVERY")
        .await?;
    for m in half + 1..s.messages {
        backup.batch_as(sa, "mgc", &insert(m)).await?;
    }
    Ok(restored)
}
