//! Fault switches and progress: `percent_complete` of a paced BACKUP / RESTORE moves as seen from a
//! second connection; each fault (delay, fail the Nth backup/restore, corrupt is in
//! sqlsim_backup.rs, drop the connection, exit mid-restore) acts as documented, from the command
//! line and from `EXEC sqlsim.fault`; a paced backup's file appears only once complete; and `sa`
//! cannot reach the sim-only procedures at all.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ADMIN_FLAGS, Sim, error_code, exec, ok, rows, sql_error_code};
use tiberius::Command;
use tokio::time::Instant;

fn flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = ADMIN_FLAGS.to_vec();
    v.extend_from_slice(extra);
    v
}

#[tokio::test]
async fn percent_complete_moves_during_backup_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        dir.path(),
        &flags(&["--db-size-mb", "4", "--fault", "delay backup 2500"]),
    );
    std::fs::create_dir_all(dir.path().join("fs/C/b")).unwrap();
    let mut c = sim.connect().await;
    ok(&mut c, "CREATE DATABASE mgc").await;
    let mut watcher = sim.connect().await;
    let backup = tokio::spawn(async move {
        ok(
            &mut c,
            r"BACKUP DATABASE mgc TO DISK = N'C:\b\mgc.bak' WITH STATS = 10",
        )
        .await;
        c
    });
    let seen = watch(&mut watcher, "BACKUP DATABASE", &backup).await;
    let mut c = backup.await.unwrap();
    assert_moving(&seen);

    let mut admin = sim.connect_admin().await;
    ok(&mut admin, "EXEC sqlsim.fault N'delay restore 2500'").await;
    let restore = tokio::spawn(async move {
        ok(
            &mut c,
            r"RESTORE DATABASE mgc2 FROM DISK = N'C:\b\mgc.bak' WITH RECOVERY, STATS = 10, MOVE N'mgc' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\mgc2.mdf', MOVE N'mgc_log' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\mgc2_log.ldf'",
        )
        .await;
        c
    });
    let seen = watch(&mut watcher, "RESTORE DATABASE", &restore).await;
    restore.await.unwrap();
    assert_moving(&seen);
    // Listing shows what is armed.
    let r = rows(&mut admin, "EXEC sqlsim.fault").await;
    let armed: Vec<&str> = r.iter().map(|r| r.get::<&str, _>(0).unwrap()).collect();
    assert_eq!(armed, vec!["delay backup 2500", "delay restore 2500"]);
}

/// A backup file appears under its name only once complete (written as `….writing`, then
/// renamed), as a reader on another instance must never copy a torn one (log shipping's copy
/// job did, and the restore job then failed on that file forever); a failed write leaves nothing.
#[tokio::test]
async fn a_backup_file_appears_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        dir.path(),
        &flags(&["--db-size-mb", "4", "--fault", "delay backup 1500"]),
    );
    let folder = dir.path().join("fs/C/b");
    std::fs::create_dir_all(&folder).unwrap();
    let mut c = sim.connect().await;
    ok(&mut c, "CREATE DATABASE mgc").await;
    let backup = tokio::spawn(async move {
        ok(&mut c, r"BACKUP DATABASE mgc TO DISK = N'C:\b\mgc.bak'").await;
        c
    });
    let names = |f: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(f)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    // The file may appear between the rename and the reply reaching us; once it is there it
    // must be whole: never beside its temporary file, and never growing after it appears.
    let mut seen_writing = false;
    let mut first_size: Option<u64> = None;
    while !backup.is_finished() {
        let now = names(&folder);
        let writing = now.iter().any(|n| n.ends_with(".writing"));
        if now.iter().any(|n| n == "mgc.bak") {
            assert!(!writing, "visible while still being written: {now:?}");
            let size = std::fs::metadata(folder.join("mgc.bak")).map_or(0, |m| m.len());
            assert_eq!(
                *first_size.get_or_insert(size),
                size,
                "mgc.bak changed after it appeared"
            );
        }
        seen_writing |= writing;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(size) = first_size {
        let done = std::fs::metadata(folder.join("mgc.bak")).unwrap().len();
        assert_eq!(size, done, "mgc.bak changed after it appeared");
    }
    let mut c = backup.await.unwrap();
    assert!(seen_writing);
    assert_eq!(names(&folder), vec!["mgc.bak".to_string()]);
    let r = rows(&mut c, r"RESTORE HEADERONLY FROM DISK = N'C:\b\mgc.bak'").await;
    assert_eq!(r.len(), 1);
    // A write that fails (the name is a folder) leaves no temporary file behind.
    std::fs::create_dir_all(folder.join("taken.bak")).unwrap();
    assert_eq!(
        error_code(&mut c, r"BACKUP DATABASE mgc TO DISK = N'C:\b\taken.bak'").await,
        3201
    );
    let mut left = names(&folder);
    left.sort();
    assert_eq!(left, vec!["mgc.bak".to_string(), "taken.bak".to_string()]);
}

/// Polls sys.dm_exec_requests for `command` until `task` ends; the percentages seen.
async fn watch<T>(
    c: &mut tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>,
    command: &str,
    task: &tokio::task::JoinHandle<T>,
) -> Vec<f32> {
    let mut seen = Vec::new();
    let sql = format!(
        "SELECT session_id, percent_complete, estimated_completion_time FROM sys.dm_exec_requests WHERE command = N'{command}' AND session_id <> @@SPID"
    );
    while !task.is_finished() {
        for r in rows(c, &sql).await {
            seen.push(r.get::<f32, _>("percent_complete").unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

fn assert_moving(seen: &[f32]) {
    let mut distinct = seen.to_vec();
    distinct.dedup();
    assert!(
        distinct.len() >= 3,
        "percent_complete did not move: {seen:?}"
    );
    assert!(distinct.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(distinct.iter().any(|p| *p > 0.0 && *p < 100.0), "{seen:?}");
}

#[tokio::test]
async fn sim_procedures_exist_only_for_the_admin_login() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &flags(&[]));
    let mut sa = sim.connect().await;
    assert_eq!(
        error_code(&mut sa, "EXEC sqlsim.fault N'delay select 1000'").await,
        2812
    );
    assert_eq!(
        error_code(&mut sa, "EXEC sqlsim.mirror N'mgc', N'B'").await,
        2812
    );
    // As an RPC by name, too.
    let mut cmd = Command::new("sqlsim.fault");
    cmd.bind_param("@spec", "clear");
    let err = match cmd.exec(&mut sa).await {
        Ok(s) => s.into_command_result().await.map(|_| ()).unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(sql_error_code(&err), Some(2812));
    // A sim without --admin-login has no admin at all.
    let dir2 = tempfile::tempdir().unwrap();
    let plain = Sim::start(dir2.path(), &[]);
    let mut c = plain.connect().await;
    assert_eq!(error_code(&mut c, "EXEC sqlsim.fault").await, 2812);
    // The admin gets a clear error for a bad spec.
    let mut admin = sim.connect_admin().await;
    assert_eq!(
        error_code(&mut admin, "EXEC sqlsim.fault N'explode now'").await,
        50000
    );
}

#[tokio::test]
async fn delay_fail_and_drop_faults() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &flags(&[]));
    std::fs::create_dir_all(dir.path().join("fs/C/b")).unwrap();
    let mut c = sim.connect().await;
    let mut admin = sim.connect_admin().await;
    ok(&mut c, "CREATE DATABASE mgc").await;

    // Delay per statement kind.
    ok(&mut admin, "EXEC sqlsim.fault N'delay insert 400'").await;
    let t = Instant::now();
    ok(
        &mut c,
        "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'b')",
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(400));
    let t = Instant::now();
    ok(&mut c, "SELECT 1").await;
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "only inserts wait"
    );
    ok(&mut admin, "EXEC sqlsim.fault N'delay insert 0'").await;

    // Fail the 2nd backup from now with 3201 (then 3013); the 3rd works again.
    ok(&mut admin, "EXEC sqlsim.fault N'fail backup 2 3201'").await;
    ok(&mut c, r"BACKUP DATABASE mgc TO DISK = N'C:\b\1.bak'").await;
    assert_eq!(
        error_code(&mut c, r"BACKUP DATABASE mgc TO DISK = N'C:\b\2.bak'").await,
        3201
    );
    ok(&mut c, r"BACKUP DATABASE mgc TO DISK = N'C:\b\3.bak'").await;
    ok(&mut admin, "EXEC sqlsim.fault N'fail restore 1 3183'").await;
    assert_eq!(
        error_code(&mut c, r"RESTORE DATABASE m2 FROM DISK = N'C:\b\1.bak' WITH REPLACE, MOVE N'mgc' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\m2.mdf', MOVE N'mgc_log' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\m2_log.ldf'").await,
        3183
    );
    ok(&mut c, r"RESTORE DATABASE m2 FROM DISK = N'C:\b\1.bak' WITH REPLACE, MOVE N'mgc' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\m2.mdf', MOVE N'mgc_log' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\m2_log.ldf'").await;

    // Drop the connection at the next SELECT; other connections keep working.
    ok(&mut admin, "EXEC sqlsim.fault N'drop select'").await;
    assert!(
        exec(&mut c, "SELECT 1").await.is_err(),
        "connection dropped"
    );
    let mut again = sim.connect().await;
    assert_eq!(rows(&mut again, "SELECT 1").await.len(), 1);
}

#[tokio::test]
async fn exit_mid_restore_leaves_the_database_restoring() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sim");
    let sim = Sim::start(&data, &["--db-size-mb", "1"]);
    std::fs::create_dir_all(data.join("fs/C/b")).unwrap();
    let mut c = sim.connect().await;
    ok(&mut c, "CREATE DATABASE mgc").await;
    ok(
        &mut c,
        "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'b')",
    )
    .await;
    ok(&mut c, r"BACKUP DATABASE mgc TO DISK = N'C:\b\mgc.bak'").await;
    drop(c);
    sim.stop();

    // Armed from the command line this time.
    let mut sim = Sim::start(&data, &["--fault", "exit-restore"]);
    let mut c = sim.connect().await;
    assert!(
        exec(&mut c, r"RESTORE DATABASE copy FROM DISK = N'C:\b\mgc.bak' WITH REPLACE, MOVE N'mgc' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\copy.mdf', MOVE N'mgc_log' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\copy_log.ldf'")
            .await
            .is_err()
    );
    assert_eq!(sim.wait_exit(Duration::from_secs(10)), Some(75));

    let sim = Sim::start(&data, &[]);
    let mut c = sim.connect().await;
    let r = rows(
        &mut c,
        "SELECT state_desc FROM sys.databases WHERE name = N'copy'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("RESTORING"));
    ok(
        &mut c,
        r"RESTORE DATABASE copy FROM DISK = N'C:\b\mgc.bak' WITH REPLACE, MOVE N'mgc' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\copy.mdf', MOVE N'mgc_log' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\copy_log.ldf', RECOVERY",
    )
    .await;
    let r = rows(&mut c, "SELECT COUNT(*) FROM copy.dbo.Messages").await;
    assert_eq!(r[0].get::<i32, _>(0), Some(1));
}
