//! The SQL side of a lab pool: its two sqlsim instances, the pool's normal state as Topology
//! Builder and a DBA leave it (`mgc` and `mgccomp` ONLINE on the primary, `mgccomp` on the
//! backup, log shipping primary → backup), and the reads the drill checks with (message bodies,
//! the last log restored into the backup `mgc`).
//!
//! Log shipping is configured the way a DBA following pchat-dr.md §6.7 does it: seed the backup
//! with a full backup restored WITH NORECOVERY, then the SSMS-generated primary script
//! (`sp_add_log_shipping_primary_database`, schedule, enable, alert job,
//! `sp_add_log_shipping_primary_secondary`) and the secondary script
//! (`sp_add_log_shipping_secondary_primary`, schedules, `sp_add_log_shipping_secondary_database`,
//! enable), as text batches to sqlsim's procedures (the scripts: [`crate::harness::ssms`]).
//! Decided: the lab's schedules are 1 s for the backup and copy jobs and 2 s for the restore job
//! (production: 15 min each), so the drill's loss window is seconds, the whole drill takes
//! minutes, and at the moment DC1 is lost the copy folder usually holds a log not restored yet —
//! the failover has to apply it (FO-3).
//!
//! SQL Server refuses a seconds interval under 10 (msdb's sp_verify_schedule, Msg 14278).
//! Decided (issue #11 item 4): the short schedules stay a lab-only sqlsim deviation,
//! `--lab-short-schedules`, given only to each pool's first primary and backup instances,
//! which receive this DBA-made setup ([`crate::lab`] starts them with it). The product gets no
//! such switch: failback_proto refuses an interval under 10 s, FB-5 asks for PChat's 15-minute
//! default and runs the backup, copy and restore jobs once itself (`run_job`) instead of waiting
//! for a schedule, so the rebuilt DC1 instances, which only the product configures, run
//! without the flag, as SQL Server would.

use std::path::Path;

use anyhow::Context;

use super::topology::{self, PoolLayout};
use crate::harness::sqlsim::{SA_PASSWORD, SqlSim};
use crate::harness::ssms::LogShipping;

/// Seconds between log backups on the primary.
pub const BACKUP_EVERY_S: u32 = 1;
/// Seconds between copy job runs on the backup.
pub const COPY_EVERY_S: u32 = 1;
/// Seconds between restore job runs on the backup.
pub const RESTORE_EVERY_S: u32 = 2;

/// Runs a batch as `sa` in `db`; returns its first result set.
pub async fn batch(sim: &SqlSim, db: &str, sql: &str) -> anyhow::Result<Vec<tiberius::Row>> {
    sim.batch_as(("sa", SA_PASSWORD), db, sql)
        .await
        .with_context(|| format!("on {}: {}", sim.name, first_line(sql)))
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

/// T-SQL string literal (`N'…'`, quotes doubled): the lab's values are its own paths and
/// names, quoted anyway.
pub fn lit(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

/// The sim administrator login of the lab's instances: the only login that may run the
/// sim-only `sqlsim.mirror` (real mirroring setup needs endpoints sqlsim does not have). The
/// agents log in as `sa` and cannot reach it.
pub const LAB_ADMIN: (&str, &str) = ("labadmin", "Lab-Adm1n-Pa55!");

/// A fresh, not yet started sqlsim instance for `name` under `dir`, on `port` when given (a
/// rebuilt host keeps its address), with `--db-size-mb`, the lab's admin login and, for a
/// mirroring pair, the registry file both partners share.
pub fn new_sim(
    name: &str,
    dir: &Path,
    port: Option<u16>,
    db_size_mb: u32,
    mirror_registry: Option<&Path>,
    utc_offset_minutes: i32,
) -> anyhow::Result<SqlSim> {
    let size = db_size_mb.to_string();
    let mut args = vec![
        "--db-size-mb".to_string(),
        size,
        "--admin-login".into(),
        LAB_ADMIN.0.into(),
        "--admin-password".into(),
        LAB_ADMIN.1.into(),
    ];
    if let Some(r) = mirror_registry {
        args.extend(["--mirror-registry".into(), r.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sim = SqlSim::new(name, dir)?
        .with_args(&args)
        .with_utc_offset_minutes(utc_offset_minutes);
    if let Some(p) = port {
        sim.port = p;
    }
    Ok(sim)
}

/// Mirrors `mgc` from `principal` to `mirror` the way a DBA seeds a mirror: a COPY_ONLY full
/// backup (so the log-shipping chain is untouched) into `seed_dir`, restored WITH NORECOVERY
/// on the mirror, then the session (sim administrator; see [`LAB_ADMIN`]).
pub async fn mirror_mgc(
    principal: &SqlSim,
    mirror: &SqlSim,
    seed_dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(seed_dir)?;
    let seed = seed_dir.join(format!("mgc_mirror_seed_{}.bak", mirror.name));
    let seed = lit(&seed.display().to_string());
    batch(
        principal,
        "master",
        &format!("BACKUP DATABASE [mgc] TO DISK = {seed} WITH COPY_ONLY, INIT, CHECKSUM"),
    )
    .await?;
    batch(
        mirror,
        "master",
        &format!("RESTORE DATABASE [mgc] FROM DISK = {seed} WITH REPLACE, NORECOVERY"),
    )
    .await?;
    principal
        .batch_as(
            LAB_ADMIN,
            "master",
            &format!("EXEC sqlsim.mirror N'mgc', {}", lit(&mirror.name)),
        )
        .await
        .with_context(|| format!("mirror mgc from {} to {}", principal.name, mirror.name))?;
    Ok(())
}

/// `mirroring_role_desc` of `mgc` on `sim` (`None`: not mirrored).
pub async fn mirroring_role(sim: &SqlSim) -> anyhow::Result<Option<String>> {
    let rows = batch(
        sim,
        "master",
        "SELECT m.mirroring_role_desc FROM sys.database_mirroring AS m JOIN sys.databases AS d ON d.database_id = m.database_id WHERE d.name = N'mgc'",
    )
    .await?;
    Ok(rows
        .first()
        .and_then(|r| r.get::<&str, _>(0))
        .map(str::to_string))
}

/// Creates the pool's databases as Topology Builder leaves them on a new primary and backup
/// back end: `mgc` (FULL recovery) and `mgccomp` on the primary, `mgccomp` on the backup.
pub async fn install_databases(primary: &SqlSim, backup: &SqlSim) -> anyhow::Result<()> {
    batch(
        primary,
        "master",
        "CREATE DATABASE mgc; ALTER DATABASE mgc SET RECOVERY FULL; CREATE DATABASE mgccomp",
    )
    .await?;
    batch(backup, "master", "CREATE DATABASE mgccomp").await?;
    Ok(())
}

/// Seeds the backup `mgc` and configures log shipping primary → backup (module doc).
pub async fn configure_log_shipping(
    p: &PoolLayout,
    primary: &SqlSim,
    backup: &SqlSim,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&p.share)?;
    std::fs::create_dir_all(&p.copy_dir)?;
    let seed = p.share.join("mgc_lab_seed.bak");
    batch(
        primary,
        "master",
        &format!(
            "BACKUP DATABASE [mgc] TO DISK = {} WITH INIT, CHECKSUM",
            lit(&seed.display().to_string())
        ),
    )
    .await?;
    batch(
        backup,
        "master",
        &format!(
            "RESTORE DATABASE [mgc] FROM DISK = {} WITH NORECOVERY",
            lit(&seed.display().to_string())
        ),
    )
    .await?;
    let ls = LogShipping::new(
        "mgc",
        &p.share.display().to_string(),
        &p.copy_dir.display().to_string(),
        &p.primary,
        &p.backup,
    )
    .every(BACKUP_EVERY_S, COPY_EVERY_S, RESTORE_EVERY_S);
    let r = batch(primary, "master", &ls.primary_script()).await?;
    let rc = r.first().and_then(|row| row.get::<i32, _>("rc"));
    anyhow::ensure!(
        rc == Some(0),
        "sp_add_log_shipping_primary_database on {} returned {rc:?}",
        p.primary
    );
    let r = batch(backup, "master", &ls.secondary_script()).await?;
    let rc = r.first().and_then(|row| row.get::<i32, _>("rc"));
    anyhow::ensure!(
        rc == Some(0),
        "sp_add_log_shipping_secondary_database on {} returned {rc:?}",
        p.backup
    );
    Ok(())
}

/// A server-local time at `offset_minutes` from UTC, in UTC.
fn to_utc(local: chrono::NaiveDateTime, offset_minutes: i32) -> chrono::NaiveDateTime {
    local - chrono::TimeDelta::minutes(i64::from(offset_minutes))
}

/// A log backup restored into the backup `mgc` (msdb restore history).
#[derive(Debug, Clone)]
pub struct RestoredLog {
    /// The file restored.
    pub file: String,
    /// When that log backup started (UTC): every transaction committed before it is in it.
    pub backup_start: chrono::NaiveDateTime,
    /// Its last LSN.
    pub last_lsn: i128,
}

fn lsn(row: &tiberius::Row, col: usize) -> anyhow::Result<i128> {
    row.try_get::<tiberius::numeric::Numeric, _>(col)?
        .map(|n| n.value())
        .with_context(|| format!("LSN column {col} is NULL"))
}

/// The newest log backup restored into `mgc` on `sim`, if any.
pub async fn last_restored_log(sim: &SqlSim) -> anyhow::Result<Option<RestoredLog>> {
    let rows = batch(
        sim,
        "master",
        "SELECT TOP 1 m.physical_device_name, b.backup_start_date, b.last_lsn, b.time_zone \
         FROM msdb.dbo.restorehistory r \
         JOIN msdb.dbo.backupset b ON b.backup_set_id = r.backup_set_id \
         JOIN msdb.dbo.backupmediafamily m ON m.media_set_id = b.media_set_id \
         WHERE r.destination_database_name = N'mgc' AND r.restore_type = N'L' \
         ORDER BY b.last_lsn DESC",
    )
    .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let file = row.get::<&str, _>(0).unwrap_or_default().to_string();
    let backup_start = row
        .try_get::<chrono::NaiveDateTime, _>(1)?
        .context("backupset.backup_start_date is NULL")?;
    let last_lsn = lsn(row, 2)?;
    // backup_start_date is the writer's local clock; backupset.time_zone says its offset in
    // 15-minute units (127 unknown: then the writer is taken to be DC1's primary).
    let zone = row
        .try_get::<i16, _>(3)
        .ok()
        .flatten()
        .filter(|z| (-48..=48).contains(z))
        .map_or(topology::DC1_UTC_OFFSET_MINUTES, |z| i32::from(z) * 15);
    Ok(Some(RestoredLog {
        file,
        backup_start: to_utc(backup_start, zone),
        last_lsn,
    }))
}

/// `state_desc` of `db` on `sim` (`None` when the database does not exist).
pub async fn database_state(sim: &SqlSim, db: &str) -> anyhow::Result<Option<String>> {
    let rows = batch(
        sim,
        "master",
        &format!(
            "SELECT state_desc FROM sys.databases WHERE name = {}",
            lit(db)
        ),
    )
    .await?;
    Ok(rows
        .first()
        .and_then(|r| r.get::<&str, _>(0))
        .map(str::to_string))
}

/// Every message body in `mgc` on `sim`.
pub async fn message_bodies(sim: &SqlSim) -> anyhow::Result<Vec<String>> {
    let rows = batch(sim, "mgc", "SELECT body FROM dbo.Messages").await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<&str, _>(0).map(str::to_string))
        .collect())
}

/// The newest complete log backup of `mgc` among the `.trn` files in `dir` (as `sim` reads
/// them with RESTORE HEADERONLY; a file it cannot read — still being copied — does not count).
pub async fn newest_log_in(sim: &SqlSim, dir: &Path) -> anyhow::Result<Option<RestoredLog>> {
    let mut best: Option<RestoredLog> = None;
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("trn")))
        .collect();
    for f in files {
        let file = f.display().to_string();
        let sql = format!("RESTORE HEADERONLY FROM DISK = {}", lit(&file));
        let Ok(rows) = batch(sim, "master", &sql).await else {
            continue;
        };
        let Some(row) = rows.first() else { continue };
        let last_lsn = row
            .try_get::<tiberius::numeric::Numeric, _>("LastLSN")?
            .map(|n| n.value())
            .context("HEADERONLY LastLSN is NULL")?;
        let backup_start = row
            .try_get::<chrono::NaiveDateTime, _>("BackupStartDate")?
            .context("HEADERONLY BackupStartDate is NULL")?;
        if best.as_ref().is_none_or(|b| b.last_lsn < last_lsn) {
            best = Some(RestoredLog {
                file,
                // HEADERONLY shows the writer's clock: DC1's primary wrote every log backup.
                backup_start: to_utc(backup_start, topology::DC1_UTC_OFFSET_MINUTES),
                last_lsn,
            });
        }
    }
    Ok(best)
}
