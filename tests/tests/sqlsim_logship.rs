//! Log shipping between two sims on one machine (pchat-dr.md §4, §6.7-§6.9): the share is a
//! folder both map `\\fileserver\pchat-ls` to, the copy folder `E:\PChatLSCopy` is local to the
//! secondary. Configured with the calls SSMS generates, as text batches and as RPCs by name
//! with OUTPUT parameters; 1-second schedules (sqlsim's lab-only `--lab-short-schedules`: SQL
//! Server's minimum is 10 s) ship rows within seconds; the monitor tables and
//! `sp_help_log_shipping_monitor` follow; removal deletes the secondary's jobs while the
//! primary keeps backing up until its own removal; an Agent account without read access to the
//! share makes the copy job (and an access-check job) fail with the reason in the history; a
//! restart keeps jobs, schedules, history and the configuration.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ADMIN_FLAGS, Sim, ok, rows, scalar_i64, wait_for};
use failback_tests::harness::sqlsim::LAB_SHORT_SCHEDULES;
use failback_tests::harness::ssms::LogShipping;
use tiberius::{Client, Command, Uuid};
use tokio::net::TcpStream;
use tokio_util::compat::Compat;

type Conn = Client<Compat<TcpStream>>;

const DEADLINE: Duration = Duration::from_secs(40);
const PRIMARY: &str = r"SQLPRIMARY01\INST";
const SECONDARY: &str = r"SQLBACKUP01\INST";

/// The SSMS scripts of pchat-dr.md §6.7 for this pair, with 1-second schedules.
fn ssms() -> LogShipping {
    LogShipping::new(
        "mgc",
        r"\\fileserver\pchat-ls",
        r"E:\PChatLSCopy",
        PRIMARY,
        SECONDARY,
    )
}

/// Two sims sharing `\\fileserver\pchat-ls`; the secondary holds mgc RESTORING. Both run with
/// `--lab-short-schedules` for the 1-second schedules.
async fn pair(root: &Path) -> (Sim, Sim, Vec<String>, Vec<String>) {
    let share = root.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let map = format!(r"\\fileserver\pchat-ls={}", share.display());
    let mut pflags: Vec<String> = ADMIN_FLAGS.iter().map(|s| s.to_string()).collect();
    pflags.extend([
        "--server-name".into(),
        PRIMARY.into(),
        "--path-map".into(),
        map.clone(),
        LAB_SHORT_SCHEDULES.into(),
    ]);
    let mut sflags: Vec<String> = ADMIN_FLAGS.iter().map(|s| s.to_string()).collect();
    sflags.extend([
        "--server-name".into(),
        SECONDARY.into(),
        "--path-map".into(),
        map,
        LAB_SHORT_SCHEDULES.into(),
    ]);
    let p = Sim::start(
        &root.join("primary"),
        &pflags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let s = Sim::start(
        &root.join("secondary"),
        &sflags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // The copy folder exists on the secondary, as the DBA creates it.
    std::fs::create_dir_all(root.join("secondary/fs/E/PChatLSCopy")).unwrap();
    let mut pc = p.connect().await;
    ok(&mut pc, "CREATE DATABASE mgc").await;
    ok(
        &mut pc,
        "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'before')",
    )
    .await;
    ok(
        &mut pc,
        r"BACKUP DATABASE [mgc] TO DISK = N'\\fileserver\pchat-ls\mgc_full.bak' WITH INIT",
    )
    .await;
    let mut sc = s.connect().await;
    ok(
        &mut sc,
        r"RESTORE DATABASE [mgc] FROM DISK = N'\\fileserver\pchat-ls\mgc_full.bak' WITH NORECOVERY",
    )
    .await;
    (p, s, pflags, sflags)
}

/// The highest LastLSN of a log restored into mgc (msdb restore history).
const RESTORED_LSN: &str = "SELECT MAX(b.last_lsn) FROM msdb.dbo.restorehistory r JOIN msdb.dbo.backupset b ON b.backup_set_id = r.backup_set_id WHERE r.destination_database_name = N'mgc' AND r.restore_type = N'L'";

async fn restored_lsn(c: &mut Conn) -> Option<i64> {
    let r = rows(c, RESTORED_LSN).await;
    r.first()?
        .try_get::<tiberius::numeric::Numeric, _>(0)
        .ok()
        .flatten()
        .map(|n| n.value() as i64)
}

/// Inserts a row on the primary; an LSN below which every log backup holding it ends.
async fn insert_and_mark(pc: &mut Conn, body: &str) -> i64 {
    ok(
        pc,
        &format!(
            "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'{body}')"
        ),
    )
    .await;
    let r = rows(pc, "SELECT last_log_backup_lsn FROM sys.database_recovery_status WHERE database_id = DB_ID(N'mgc')").await;
    r[0].get::<tiberius::numeric::Numeric, _>(0)
        .unwrap()
        .value() as i64
}

async fn wait_restored_past(s: &Sim, lsn: i64) {
    wait_for(
        DEADLINE,
        "the secondary's restored LSN range to pass the insert",
        || async {
            let mut c = s.connect().await;
            restored_lsn(&mut c).await.filter(|l| *l > lsn)
        },
    )
    .await;
}

#[tokio::test]
async fn ssms_batches_ship_rows_monitor_reports_and_restart_keeps_it() {
    let root = tempfile::tempdir().unwrap();
    let (p, s, _pflags, sflags) = pair(root.path()).await;
    let mut pc = p.connect().await;
    let r = rows(&mut pc, &ssms().primary_script()).await;
    assert_eq!(r[0].get::<i32, _>("rc"), Some(0));
    let backup_job: Uuid = r[0].get("backup_job_id").unwrap();
    assert!(r[0].get::<Uuid, _>("primary_id").is_some());
    let r = rows(
        &mut pc,
        &format!("SELECT name, enabled FROM msdb.dbo.sysjobs WHERE job_id = '{backup_job}'"),
    )
    .await;
    assert_eq!(r[0].get::<&str, _>("name"), Some("LSBackup_mgc"));
    assert_eq!(r[0].get::<u8, _>("enabled"), Some(1));
    let mut sc = s.connect().await;
    let r = rows(&mut sc, &ssms().secondary_script()).await;
    assert_eq!(r[0].get::<i32, _>("rc"), Some(0));
    let secondary_id: Uuid = r[0].get("secondary_id").unwrap();
    let r = rows(&mut sc, "SELECT copy_job_id, restore_job_id, backup_source_directory FROM msdb.dbo.log_shipping_secondary").await;
    assert_eq!(r[0].get::<&str, _>(2), Some(r"\\fileserver\pchat-ls"));
    let r = rows(&mut sc, "SELECT command FROM msdb.dbo.sysjobsteps s JOIN msdb.dbo.sysjobs j ON j.job_id = s.job_id WHERE j.name = N'LSCopy_SQLPRIMARY01\\INST_mgc'").await;
    let command = r[0].get::<&str, _>(0).unwrap().to_string();
    assert!(
        command.contains(&format!(
            "-Copy {}",
            secondary_id.to_string().to_uppercase()
        )),
        "{command}"
    );

    // Rows inserted after the configuration reach the secondary within a few cycles.
    let lsn = insert_and_mark(&mut pc, "shipped").await;
    wait_restored_past(&s, lsn).await;

    // Monitor tables and sp_help_log_shipping_monitor on both sides.
    let r = rows(&mut pc, "SELECT last_backup_file FROM msdb.dbo.log_shipping_monitor_primary WHERE primary_database = N'mgc'").await;
    let f = r[0].get::<&str, _>(0).unwrap();
    assert!(
        f.starts_with(r"\\fileserver\pchat-ls\mgc_") && f.ends_with(".trn"),
        "{f}"
    );
    let r = rows(&mut pc, "EXEC master.dbo.sp_help_log_shipping_monitor").await;
    assert_eq!(r[0].get::<bool, _>("is_primary"), Some(true));
    assert!(r[0].get::<&str, _>("last_backup_file").is_some());
    assert_eq!(r[0].get::<i32, _>("backup_threshold"), Some(60));
    let r = rows(&mut sc, "SELECT last_copied_file, last_restored_file, last_restored_latency FROM msdb.dbo.log_shipping_monitor_secondary").await;
    assert!(
        r[0].get::<&str, _>(0)
            .unwrap()
            .starts_with(r"E:\PChatLSCopy\mgc_")
    );
    assert!(
        r[0].get::<&str, _>(1)
            .unwrap()
            .starts_with(r"E:\PChatLSCopy\mgc_")
    );
    let r = rows(&mut sc, "SELECT last_restored_file, last_restored_date FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = N'mgc'").await;
    assert!(r[0].get::<&str, _>(0).is_some());
    let r = rows(&mut sc, "EXEC sp_help_log_shipping_monitor").await;
    assert_eq!(r[0].get::<bool, _>("is_primary"), Some(false));
    assert_eq!(r[0].get::<&str, _>("database_name"), Some("mgc"));
    assert!(r[0].get::<&str, _>("last_copied_file").is_some());
    assert!(r[0].get::<&str, _>("last_restored_file").is_some());
    assert_eq!(r[0].get::<bool, _>("status"), Some(false));
    let copies = "SELECT COUNT(*) FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id WHERE j.name = N'LSCopy_SQLPRIMARY01\\INST_mgc' AND h.step_id = 0 AND h.run_status = 1";
    assert!(scalar_i64(&mut sc, copies).await.unwrap() >= 1);
    let r = rows(
        &mut sc,
        "SELECT state_desc FROM sys.databases WHERE name = N'mgc'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("RESTORING"));

    // A restarted secondary keeps jobs, schedules, history and the configuration, and goes on.
    let jobs = scalar_i64(&mut sc, "SELECT COUNT(*) FROM msdb.dbo.sysjobs").await;
    let schedules = scalar_i64(&mut sc, "SELECT COUNT(*) FROM msdb.dbo.sysjobschedules").await;
    drop(sc);
    let data = s.data_dir.clone();
    s.stop();
    let s = Sim::start(
        &data,
        &sflags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut sc = s.connect().await;
    assert_eq!(
        scalar_i64(&mut sc, "SELECT COUNT(*) FROM msdb.dbo.sysjobs").await,
        jobs
    );
    assert_eq!(
        scalar_i64(&mut sc, "SELECT COUNT(*) FROM msdb.dbo.sysjobschedules").await,
        schedules
    );
    assert!(scalar_i64(&mut sc, copies).await.unwrap() >= 1);
    assert_eq!(
        scalar_i64(
            &mut sc,
            "SELECT COUNT(*) FROM msdb.dbo.log_shipping_secondary_databases"
        )
        .await,
        Some(1)
    );
    let lsn = insert_and_mark(&mut pc, "after restart").await;
    wait_restored_past(&s, lsn).await;
}

/// Runs a procedure by name with named parameters; (return code, OUTPUT uniqueidentifiers).
async fn rpc(
    c: &mut Conn,
    name: &str,
    params: &[(&str, &str)],
    ints: &[(&str, i32)],
    outs: &[&str],
) -> (u32, Vec<Option<Uuid>>) {
    let mut cmd = Command::new(name.to_string());
    for (k, v) in params {
        cmd.bind_param(k.to_string(), v.to_string());
    }
    for (k, v) in ints {
        cmd.bind_param(k.to_string(), *v);
    }
    for k in outs {
        cmd.bind_out_param(k.to_string(), Option::<Uuid>::None);
    }
    let res = cmd
        .exec(c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    let vals = outs
        .iter()
        .map(|k| res.try_return_value::<Uuid>(k).unwrap())
        .collect();
    (res.return_code(), vals)
}

/// A 1-second schedule attached to a job, by RPC.
async fn schedule(c: &mut Conn, name: &str, job: Uuid) {
    let mut cmd = Command::new("msdb.dbo.sp_add_schedule");
    cmd.bind_param("@schedule_name", name.to_string());
    for (k, v) in [
        ("@enabled", 1),
        ("@freq_type", 4),
        ("@freq_interval", 1),
        ("@freq_subday_type", 2),
        ("@freq_subday_interval", 1),
    ] {
        cmd.bind_param(k, v);
    }
    cmd.bind_out_param("@schedule_uid", Option::<Uuid>::None);
    cmd.bind_out_param("@schedule_id", Option::<i32>::None);
    let res = cmd
        .exec(c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    let id: i32 = res.try_return_value("@schedule_id").unwrap().unwrap();
    let mut cmd = Command::new("msdb.dbo.sp_attach_schedule");
    cmd.bind_param("@job_id", job);
    cmd.bind_param("@schedule_id", id);
    cmd.exec(c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    let mut cmd = Command::new("msdb.dbo.sp_update_job");
    cmd.bind_param("@job_id", job);
    cmd.bind_param("@enabled", 1i32);
    cmd.exec(c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
}

/// The newest outcome (step_id 0) and step 1 rows of a job.
async fn last_run(c: &mut Conn, job: &str) -> Option<(i32, String, i32, String)> {
    let r = rows(c, &format!("SELECT TOP 2 h.step_id, h.run_status, h.message FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id WHERE j.name = N'{job}' ORDER BY h.instance_id DESC")).await;
    if r.len() < 2 || r[0].get::<i32, _>(0) != Some(0) {
        return None;
    }
    Some((
        r[0].get::<i32, _>(1).unwrap(),
        r[0].get::<&str, _>(2).unwrap().to_string(),
        r[1].get::<i32, _>(1).unwrap(),
        r[1].get::<&str, _>(2).unwrap().to_string(),
    ))
}

#[tokio::test]
async fn rpc_configuration_access_denied_and_removal() {
    let root = tempfile::tempdir().unwrap();
    let (p, s, _, _) = pair(root.path()).await;
    let mut pc = p.connect().await;
    let mut sc = s.connect().await;
    // Primary by RPC with OUTPUT parameters.
    let (rc, out) = rpc(
        &mut pc,
        "master.dbo.sp_add_log_shipping_primary_database",
        &[
            ("@database", "mgc"),
            ("@backup_directory", r"\\fileserver\pchat-ls"),
            ("@backup_share", r"\\fileserver\pchat-ls"),
            ("@backup_job_name", "LSBackup_mgc"),
        ],
        &[
            ("@backup_retention_period", 4320),
            ("@backup_compression", 2),
            ("@overwrite", 1),
        ],
        &["@backup_job_id", "@primary_id"],
    )
    .await;
    assert_eq!(rc, 0);
    let backup_job = out[0].unwrap();
    assert!(out[1].is_some());
    schedule(&mut pc, "LSBackupSchedule_mgc", backup_job).await;
    let (rc, _) = rpc(
        &mut pc,
        "master.dbo.sp_add_log_shipping_primary_secondary",
        &[
            ("@primary_database", "mgc"),
            ("@secondary_server", SECONDARY),
            ("@secondary_database", "mgc"),
        ],
        &[("@overwrite", 1)],
        &[],
    )
    .await;
    assert_eq!(rc, 0);
    // Secondary by RPC.
    let (rc, out) = rpc(
        &mut sc,
        "master.dbo.sp_add_log_shipping_secondary_primary",
        &[
            ("@primary_server", PRIMARY),
            ("@primary_database", "mgc"),
            ("@backup_source_directory", r"\\fileserver\pchat-ls"),
            ("@backup_destination_directory", r"E:\PChatLSCopy"),
            ("@copy_job_name", r"LSCopy_SQLPRIMARY01\INST_mgc"),
            ("@restore_job_name", r"LSRestore_SQLPRIMARY01\INST_mgc"),
        ],
        &[("@file_retention_period", 4320), ("@overwrite", 1)],
        &["@copy_job_id", "@restore_job_id", "@secondary_id"],
    )
    .await;
    assert_eq!(rc, 0);
    let (copy_job, restore_job) = (out[0].unwrap(), out[1].unwrap());
    schedule(&mut sc, "DefaultCopyJobSchedule", copy_job).await;
    schedule(&mut sc, "DefaultRestoreJobSchedule", restore_job).await;
    let (rc, _) = rpc(
        &mut sc,
        "master.dbo.sp_add_log_shipping_secondary_database",
        &[
            ("@secondary_database", "mgc"),
            ("@primary_server", PRIMARY),
            ("@primary_database", "mgc"),
        ],
        &[
            ("@restore_delay", 0),
            ("@restore_mode", 0),
            ("@disconnect_users", 0),
            ("@overwrite", 1),
        ],
        &[],
    )
    .await;
    assert_eq!(rc, 0);
    let lsn = insert_and_mark(&mut pc, "rpc").await;
    wait_restored_past(&s, lsn).await;

    // The Agent account loses read access to the share: the copy job fails and says why.
    let mut admin = s.connect_admin().await;
    ok(
        &mut admin,
        r"EXEC sqlsim.agent_access N'\\fileserver\pchat-ls', N'none'",
    )
    .await;
    let copy = r"LSCopy_SQLPRIMARY01\INST_mgc";
    let (status, _, step_status, step_msg) = wait_for(DEADLINE, "a failed copy run", || async {
        let mut c = s.connect().await;
        last_run(&mut c, copy).await.filter(|r| r.0 == 0)
    })
    .await;
    assert_eq!((status, step_status), (0, 0));
    assert!(
        step_msg.contains(r"Access to the path '\\fileserver\pchat-ls' is denied."),
        "{step_msg}"
    );
    assert!(step_msg.contains(r"NT Service\SQLAgent$INST"), "{step_msg}");
    // An access-check job sees the same.
    let r = rows(&mut sc, r#"
DECLARE @id uniqueidentifier;
EXEC msdb.dbo.sp_add_job @job_name = N'AccessCheck', @job_id = @id OUTPUT;
EXEC msdb.dbo.sp_add_jobstep @job_id = @id, @step_name = N'probe', @subsystem = N'CmdExec',
     @command = N'cmd /c dir "\\fileserver\pchat-ls" && echo probe > "E:\PChatLSCopy\probe.tmp" && del "E:\PChatLSCopy\probe.tmp"';
EXEC msdb.dbo.sp_add_jobserver @job_id = @id;
EXEC msdb.dbo.sp_start_job @job_id = @id;
SELECT @id AS id;"#).await;
    assert!(r[0].get::<Uuid, _>(0).is_some());
    let (status, _, _, step_msg) = wait_for(DEADLINE, "the access check's outcome", || async {
        let mut c = s.connect().await;
        last_run(&mut c, "AccessCheck").await
    })
    .await;
    assert_eq!(status, 0);
    assert!(
        step_msg.contains("Access is denied.") && step_msg.contains("Process Exit Code 1"),
        "{step_msg}"
    );
    // Access back: the check passes (its probe file is gone again) and copying resumes.
    ok(
        &mut admin,
        r"EXEC sqlsim.agent_access N'\\fileserver\pchat-ls', N'default'",
    )
    .await;
    ok(
        &mut sc,
        "EXEC msdb.dbo.sp_start_job @job_name = N'AccessCheck'",
    )
    .await;
    wait_for(DEADLINE, "a successful access check", || async {
        let mut c = s.connect().await;
        last_run(&mut c, "AccessCheck").await.filter(|r| r.0 == 1)
    })
    .await;
    assert!(
        !root
            .path()
            .join("secondary/fs/E/PChatLSCopy/probe.tmp")
            .exists()
    );
    let lsn = insert_and_mark(&mut pc, "after access restored").await;
    wait_restored_past(&s, lsn).await;

    // Removal: the secondary's jobs go; the primary's backup job runs on until its own removal.
    ok(&mut pc, r"EXEC master.dbo.sp_delete_log_shipping_primary_secondary @primary_database = N'mgc', @secondary_server = N'SQLBACKUP01\INST', @secondary_database = N'mgc';").await;
    ok(
        &mut sc,
        "EXEC master.dbo.sp_delete_log_shipping_secondary_database @secondary_database = N'mgc';",
    )
    .await;
    assert_eq!(scalar_i64(&mut sc, "SELECT COUNT(*) FROM msdb.dbo.sysjobs WHERE name IN (N'LSCopy_SQLPRIMARY01\\INST_mgc', N'LSRestore_SQLPRIMARY01\\INST_mgc')").await, Some(0));
    assert_eq!(
        scalar_i64(
            &mut sc,
            "SELECT COUNT(*) FROM msdb.dbo.log_shipping_secondary"
        )
        .await,
        Some(0)
    );
    assert_eq!(
        scalar_i64(
            &mut sc,
            "SELECT COUNT(*) FROM msdb.dbo.log_shipping_secondary_databases"
        )
        .await,
        Some(0)
    );
    let backups = "SELECT MAX(h.instance_id) FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id WHERE j.name = N'LSBackup_mgc' AND h.step_id = 0 AND h.run_status = 1";
    let before = scalar_i64(&mut pc, backups).await.unwrap();
    wait_for(
        DEADLINE,
        "another backup after the secondary's removal",
        || async {
            let mut c = p.connect().await;
            scalar_i64(&mut c, backups).await.filter(|n| *n > before)
        },
    )
    .await;
    ok(
        &mut pc,
        "EXEC master.dbo.sp_delete_log_shipping_primary_database @database = N'mgc';",
    )
    .await;
    assert_eq!(
        scalar_i64(
            &mut pc,
            "SELECT COUNT(*) FROM msdb.dbo.sysjobs WHERE name = N'LSBackup_mgc'"
        )
        .await,
        Some(0)
    );
    assert_eq!(
        scalar_i64(
            &mut pc,
            "SELECT COUNT(*) FROM msdb.dbo.log_shipping_primary_databases"
        )
        .await,
        Some(0)
    );
    assert_eq!(
        scalar_i64(
            &mut pc,
            "SELECT COUNT(*) FROM msdb.dbo.log_shipping_monitor_primary"
        )
        .await,
        Some(0)
    );
    // Errors of a second removal are SQL Server's.
    assert_eq!(
        common::error_code(
            &mut pc,
            "EXEC master.dbo.sp_delete_log_shipping_primary_database @database = N'mgc'"
        )
        .await,
        32010
    );
    assert_eq!(
        common::error_code(
            &mut sc,
            "EXEC master.dbo.sp_delete_log_shipping_secondary_database @secondary_database = N'mgc'"
        )
        .await,
        32014
    );
}
