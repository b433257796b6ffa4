//! BACKUP and RESTORE through tiberius, across two sim instances sharing a backup folder: a full
//! backup of A restored on B carries the rows and LSNs; a log chain applies in order and refuses
//! gaps (4305) and repeats (4326) without changing anything; HEADERONLY / FILELISTONLY columns
//! read by name with SQL Server's types; damaged or missing files fail with 3183 / 3241 / 3201
//! followed by 3013; and the state survives a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Sim, error_code, exec, ok, rows};
use tiberius::numeric::Numeric;
use tiberius::{Client, Query};
use tokio::net::TcpStream;
use tokio_util::compat::Compat;

type Conn = Client<Compat<TcpStream>>;

/// Starts a sim whose `\\fs\ls` share is `share`.
fn start(dir: &Path, share: &Path, name: &str) -> Sim {
    let map = format!(r"\\fs\ls={}", share.display());
    Sim::start(
        dir,
        &[
            "--server-name",
            name,
            "--path-map",
            &map,
            "--db-size-mb",
            "1",
        ],
    )
}

async fn insert(c: &mut Conn, from: i32, to: i32) {
    for i in from..=to {
        ok(
            c,
            &format!(
                "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'message {i}')"
            ),
        )
        .await;
    }
}

async fn bodies(c: &mut Conn) -> Vec<String> {
    rows(c, "SELECT body FROM mgc.dbo.Messages ORDER BY id")
        .await
        .iter()
        .map(|r| r.get::<&str, _>(0).unwrap().to_string())
        .collect()
}

async fn db_state(c: &mut Conn) -> (String, bool) {
    let r = rows(
        c,
        "SELECT state_desc, is_in_standby FROM sys.databases WHERE name = N'mgc'",
    )
    .await;
    (
        r[0].get::<&str, _>(0).unwrap().to_string(),
        r[0].get::<bool, _>(1).unwrap(),
    )
}

/// HEADERONLY through sp_executesql with the file as a parameter, as the agent sends it.
async fn header(c: &mut Conn, file: &str) -> tiberius::Row {
    let mut q = Query::new("RESTORE HEADERONLY FROM DISK = @P1");
    q.bind(file);
    let mut r = q.query(c).await.unwrap().into_first_result().await.unwrap();
    assert_eq!(r.len(), 1);
    r.remove(0)
}

fn lsn(row: &tiberius::Row, col: &str) -> i128 {
    row.get::<Numeric, _>(col).unwrap().value()
}

#[tokio::test]
async fn full_backup_round_trip_across_instances() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let a = start(&dir.path().join("a"), &share, "SRVA");
    let b = start(&dir.path().join("b"), &share, "SRVB");
    let mut ca = a.connect().await;
    ok(&mut ca, "CREATE DATABASE mgc").await;
    insert(&mut ca, 1, 5).await;
    ok(
        &mut ca,
        r"BACKUP DATABASE [mgc] TO DISK = N'\\fs\ls\mgc_full.bak' WITH FORMAT, INIT, CHECKSUM, COMPRESSION, STATS = 10, NAME = N'mgc failback full', DESCRIPTION = N'PChat failback'",
    )
    .await;
    let file = share.join("mgc_full.bak");
    assert!(
        std::fs::metadata(&file).unwrap().len() > 1_000_000,
        "filler written"
    );

    let h = header(&mut ca, r"\\fs\ls\mgc_full.bak").await;
    assert_eq!(h.get::<&str, _>("DatabaseName"), Some("mgc"));
    assert_eq!(h.get::<&str, _>("ServerName"), Some("SRVA"));
    assert_eq!(h.get::<&str, _>("BackupName"), Some("mgc failback full"));
    assert_eq!(
        h.get::<&str, _>("BackupDescription"),
        Some("PChat failback")
    );
    assert_eq!(h.get::<i16, _>("BackupType"), Some(1));
    assert_eq!(h.get::<i16, _>("Position"), Some(1));
    assert_eq!(h.get::<&str, _>("BackupTypeDescription"), Some("Database"));
    assert_eq!(h.get::<&str, _>("RecoveryModel"), Some("FULL"));
    assert_eq!(h.get::<bool, _>("HasBackupChecksums"), Some(true));
    assert_eq!(h.get::<bool, _>("IsCopyOnly"), Some(false));
    assert_eq!(h.get::<u8, _>("Compressed"), Some(1));
    assert!(
        h.get::<tiberius::time::chrono::NaiveDateTime, _>("BackupStartDate")
            .is_some()
    );
    let (first, last) = (lsn(&h, "FirstLSN"), lsn(&h, "LastLSN"));
    assert_eq!(lsn(&h, "CheckpointLSN"), first);
    assert!(last > first);

    let mut q = Query::new("RESTORE FILELISTONLY FROM DISK = @P1 WITH FILE = 1");
    q.bind(r"\\fs\ls\mgc_full.bak");
    let files = q
        .query(&mut ca)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].get::<&str, _>("LogicalName"), Some("mgc"));
    assert_eq!(files[0].get::<&str, _>("Type"), Some("D"));
    assert_eq!(files[1].get::<&str, _>("LogicalName"), Some("mgc_log"));
    assert_eq!(files[1].get::<&str, _>("Type"), Some("L"));
    assert!(files[0].get::<Numeric, _>("Size").unwrap().value() > 0);
    assert_eq!(files[0].get::<i64, _>("FileId"), Some(1));

    let mut cb = b.connect().await;
    // An unrelated mgc on B: without REPLACE the restore refuses (another database, 3154).
    ok(&mut cb, "CREATE DATABASE mgc").await;
    assert_eq!(
        error_code(
            &mut cb,
            r"RESTORE DATABASE [mgc] FROM DISK = N'\\fs\ls\mgc_full.bak' WITH RECOVERY",
        )
        .await,
        3154
    );
    // A session inside mgc blocks the restore (3101).
    let mut user = b.connect().await;
    ok(&mut user, "USE mgc").await;
    assert_eq!(
        error_code(
            &mut cb,
            r"RESTORE DATABASE [mgc] FROM DISK = N'\\fs\ls\mgc_full.bak' WITH REPLACE",
        )
        .await,
        3101
    );
    drop(user);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // MOVE targets must be folders that exist on B (else 5133, see sqlsim_backup_fidelity).
    for d in ["fs/D/Data", "fs/L/Log"] {
        std::fs::create_dir_all(b.data_dir.join(d)).unwrap();
    }
    // The parameter form: database and file as sp_executesql parameters.
    let mut q = Query::new(
        r"RESTORE DATABASE @P1 FROM DISK = @P2 WITH FILE = 1, REPLACE, RECOVERY, CHECKSUM, STATS = 10, MOVE N'mgc' TO N'D:\Data\mgc.mdf', MOVE N'mgc_log' TO N'L:\Log\mgc_log.ldf'",
    );
    q.bind("mgc");
    q.bind(r"\\fs\ls\mgc_full.bak");
    q.execute(&mut cb).await.unwrap();
    assert_eq!(bodies(&mut cb).await, bodies(&mut ca).await);
    assert_eq!(db_state(&mut cb).await, ("ONLINE".to_string(), false));
    let r = rows(
        &mut cb,
        "SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID(N'mgc') ORDER BY file_id",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some(r"D:\Data\mgc.mdf"));
    assert_eq!(r[1].get::<&str, _>(0), Some(r"L:\Log\mgc_log.ldf"));

    // B stands at A's LSN: its next backup starts where A's ended, and the family is A's.
    let mut q = Query::new("BACKUP DATABASE @P1 TO DISK = @P2 WITH COPY_ONLY, CHECKSUM");
    q.bind("mgc");
    q.bind(r"\\fs\ls\mgc_b.bak");
    q.execute(&mut cb).await.unwrap();
    let hb = header(&mut cb, r"\\fs\ls\mgc_b.bak").await;
    assert_eq!(lsn(&hb, "FirstLSN"), last);
    assert_eq!(hb.get::<&str, _>("ServerName"), Some("SRVB"));
    assert_eq!(
        hb.get::<tiberius::Uuid, _>("FamilyGUID"),
        h.get::<tiberius::Uuid, _>("FamilyGUID")
    );
    assert_eq!(hb.get::<bool, _>("IsCopyOnly"), Some(true));

    // Restoring again over an ONLINE FULL-recovery database with a log chain needs REPLACE.
    assert_eq!(
        error_code(
            &mut cb,
            r"RESTORE DATABASE [mgc] FROM DISK = N'\\fs\ls\mgc_full.bak' WITH RECOVERY",
        )
        .await,
        3159
    );

    // State survives a restart of B.
    let b_dir = b.data_dir.clone();
    drop(cb);
    b.stop();
    let b = start(&b_dir, &share, "SRVB");
    let mut cb = b.connect().await;
    assert_eq!(bodies(&mut cb).await.len(), 5);
    let hb2 = header(&mut cb, r"\\fs\ls\mgc_b.bak").await;
    assert_eq!(lsn(&hb2, "LastLSN"), lsn(&hb, "LastLSN"));
}

#[tokio::test]
async fn log_chain_in_order_and_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let a = start(&dir.path().join("a"), &share, "SRVA");
    let b = start(&dir.path().join("b"), &share, "SRVB");
    let mut ca = a.connect().await;
    ok(&mut ca, "CREATE DATABASE mgc").await;
    // No full backup yet: 4214; SIMPLE recovery: 4208.
    assert_eq!(
        error_code(&mut ca, r"BACKUP LOG mgc TO DISK = N'\\fs\ls\x.trn'").await,
        4214
    );
    ok(&mut ca, "ALTER DATABASE mgc SET RECOVERY SIMPLE").await;
    assert_eq!(
        error_code(&mut ca, r"BACKUP LOG mgc TO DISK = N'\\fs\ls\x.trn'").await,
        4208
    );
    ok(&mut ca, "ALTER DATABASE mgc SET RECOVERY FULL").await;
    insert(&mut ca, 1, 2).await;
    ok(
        &mut ca,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\full.bak' WITH INIT",
    )
    .await;
    insert(&mut ca, 3, 4).await;
    ok(
        &mut ca,
        r"BACKUP LOG mgc TO DISK = N'\\fs\ls\log1.trn' WITH CHECKSUM",
    )
    .await;
    insert(&mut ca, 5, 6).await;
    ok(
        &mut ca,
        r"BACKUP LOG mgc TO DISK = N'\\fs\ls\log2.trn' WITH CHECKSUM",
    )
    .await;
    insert(&mut ca, 7, 7).await;
    ok(
        &mut ca,
        r"BACKUP LOG mgc TO DISK = N'\\fs\ls\log3.trn' WITH CHECKSUM",
    )
    .await;
    let h1 = header(&mut ca, r"\\fs\ls\log1.trn").await;
    let h2 = header(&mut ca, r"\\fs\ls\log2.trn").await;
    assert_eq!(h1.get::<i16, _>("BackupType"), Some(2));
    assert_eq!(
        h1.get::<&str, _>("BackupTypeDescription"),
        Some("Transaction Log")
    );
    assert_eq!(
        lsn(&h2, "FirstLSN"),
        lsn(&h1, "LastLSN"),
        "contiguous chain"
    );

    let mut cb = b.connect().await;
    ok(
        &mut cb,
        r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\full.bak' WITH NORECOVERY, STATS = 10",
    )
    .await;
    assert_eq!(db_state(&mut cb).await, ("RESTORING".to_string(), false));
    assert_eq!(
        error_code(&mut cb, "SELECT COUNT(*) FROM mgc.dbo.Messages").await,
        927
    );
    // Out of order: log2 before log1 is a gap (4305) and changes nothing.
    assert_eq!(
        error_code(
            &mut cb,
            r"RESTORE LOG mgc FROM DISK = N'\\fs\ls\log2.trn' WITH NORECOVERY",
        )
        .await,
        4305
    );
    assert_eq!(db_state(&mut cb).await, ("RESTORING".to_string(), false));
    ok(
        &mut cb,
        r"RESTORE LOG mgc FROM DISK = N'\\fs\ls\log1.trn' WITH NORECOVERY",
    )
    .await;
    // Applying log1 again: too early (4326).
    assert_eq!(
        error_code(
            &mut cb,
            r"RESTORE LOG mgc FROM DISK = N'\\fs\ls\log1.trn' WITH NORECOVERY",
        )
        .await,
        4326
    );
    // log2 in STANDBY: readable, read-only.
    ok(
        &mut cb,
        r"RESTORE LOG mgc FROM DISK = N'\\fs\ls\log2.trn' WITH STANDBY = N'\\fs\ls\mgc_undo.tuf'",
    )
    .await;
    assert_eq!(db_state(&mut cb).await, ("ONLINE".to_string(), true));
    assert!(share.join("mgc_undo.tuf").exists());
    assert_eq!(bodies(&mut cb).await.len(), 6);
    assert_eq!(
        error_code(
            &mut cb,
            "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'x')",
        )
        .await,
        3906
    );
    ok(
        &mut cb,
        r"RESTORE LOG mgc FROM DISK = N'\\fs\ls\log3.trn' WITH NORECOVERY",
    )
    .await;
    ok(&mut cb, "RESTORE DATABASE mgc WITH RECOVERY").await;
    assert_eq!(db_state(&mut cb).await, ("ONLINE".to_string(), false));
    assert_eq!(bodies(&mut cb).await, bodies(&mut ca).await);
    // Recovered: no more logs (3117), no second recovery (3153).
    assert_eq!(
        error_code(
            &mut cb,
            r"RESTORE LOG mgc FROM DISK = N'\\fs\ls\log3.trn' WITH NORECOVERY",
        )
        .await,
        3117
    );
    assert_eq!(
        error_code(&mut cb, "RESTORE DATABASE mgc WITH RECOVERY").await,
        3153
    );
    // A log backup given to RESTORE DATABASE is the wrong kind (3135).
    assert_eq!(
        error_code(
            &mut cb,
            r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\log1.trn' WITH REPLACE",
        )
        .await,
        3135
    );
}

#[tokio::test]
async fn damaged_missing_and_unwritable_files() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let mut flags = vec![
        "--path-map".to_string(),
        format!(r"\\fs\ls={}", share.display()),
    ];
    flags.extend(common::ADMIN_FLAGS.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = Sim::start(&dir.path().join("a"), &flags);
    let mut c = a.connect().await;
    let mut admin = a.connect_admin().await;
    ok(&mut c, "CREATE DATABASE mgc").await;
    insert(&mut c, 1, 3).await;

    // The corrupt fault damages the payload of the next backup file.
    ok(&mut admin, "EXEC sqlsim.fault N'corrupt 1'").await;
    ok(
        &mut c,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\bad.bak' WITH CHECKSUM",
    )
    .await;
    assert_eq!(
        error_code(
            &mut c,
            r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\bad.bak' WITH FILE = 1, CHECKSUM",
        )
        .await,
        3183
    );
    assert_eq!(
        error_code(
            &mut c,
            r"RESTORE DATABASE mgc2 FROM DISK = N'\\fs\ls\bad.bak' WITH RECOVERY, MOVE N'mgc' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\mgc2.mdf', MOVE N'mgc_log' TO N'C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\mgc2_log.ldf'",
        )
        .await,
        3183
    );
    let r = rows(
        &mut c,
        "SELECT name FROM sys.databases WHERE name = N'mgc2'",
    )
    .await;
    assert!(r.is_empty(), "a failed restore created nothing");

    // A damaged header, or a file that is not a backup: 3241.
    ok(&mut admin, "EXEC sqlsim.fault N'corrupt 1 header'").await;
    ok(
        &mut c,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\badhead.bak'",
    )
    .await;
    assert_eq!(
        error_code(
            &mut c,
            r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\badhead.bak'"
        )
        .await,
        3241
    );
    std::fs::write(share.join("junk.bak"), b"not a backup at all").unwrap();
    assert_eq!(
        error_code(
            &mut c,
            r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\junk.bak'"
        )
        .await,
        3241
    );

    // A good backup verifies.
    ok(
        &mut c,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\good.bak' WITH CHECKSUM",
    )
    .await;
    ok(
        &mut c,
        r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\good.bak' WITH CHECKSUM",
    )
    .await;
    assert_eq!(
        error_code(
            &mut c,
            r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\good.bak' WITH FILE = 2"
        )
        .await,
        4038
    );

    // Missing file, missing folder: 3201, and the statement ends with 3013.
    assert_eq!(
        error_code(
            &mut c,
            r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\missing.bak'"
        )
        .await,
        3201
    );
    assert_eq!(
        error_code(
            &mut c,
            r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\no\such\dir\x.bak'"
        )
        .await,
        3201
    );
    let err = exec(
        &mut c,
        r"BACKUP DATABASE nosuchdb TO DISK = N'\\fs\ls\y.bak'",
    )
    .await
    .unwrap_err();
    assert_eq!(common::sql_error_code(&err), Some(911));
}

/// SQL Server records every backup it writes in msdb (`backupset` with `backup_size`,
/// `compressed_backup_size`, `is_copy_only`; `backupmediafamily` with the device), as it does a
/// restored set: what preflight sizes the next full backup by (issue #12).
#[tokio::test]
async fn backups_and_restores_are_recorded_in_backupset_with_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let a = start(&dir.path().join("a"), &share, "SRVA");
    let b = start(&dir.path().join("b"), &share, "SRVB");
    let mut ca = a.connect().await;
    ok(&mut ca, "CREATE DATABASE mgc").await;
    ok(&mut ca, "ALTER DATABASE mgc SET RECOVERY FULL").await;
    insert(&mut ca, 1, 3).await;
    ok(
        &mut ca,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\full.bak' WITH INIT",
    )
    .await;
    ok(
        &mut ca,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\copy.bak' WITH INIT, COPY_ONLY",
    )
    .await;
    ok(&mut ca, r"BACKUP LOG mgc TO DISK = N'\\fs\ls\log1.trn'").await;
    let q = "SELECT s.type, s.backup_size, s.compressed_backup_size, s.is_copy_only, s.server_name, f.physical_device_name \
FROM msdb.dbo.backupset AS s JOIN msdb.dbo.backupmediafamily AS f ON f.media_set_id = s.media_set_id \
WHERE s.database_name = N'mgc' ORDER BY s.backup_set_id";
    let got = rows(&mut ca, q).await;
    let kinds: Vec<(&str, bool, &str)> = got
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>("type").unwrap(),
                r.get::<bool, _>("is_copy_only").unwrap(),
                r.get::<&str, _>("physical_device_name").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("D", false, r"\\fs\ls\full.bak"),
            ("D", true, r"\\fs\ls\copy.bak"),
            ("L", false, r"\\fs\ls\log1.trn"),
        ]
    );
    let size = |r: &tiberius::Row, c: &str| r.get::<Numeric, _>(c).unwrap().value() as u64;
    let on_disk = std::fs::metadata(share.join("full.bak")).unwrap().len();
    let full = size(&got[0], "backup_size");
    assert!(
        full > 1_000_000 && full.abs_diff(on_disk) < on_disk / 10,
        "backup_size {full} for a file of {on_disk} bytes"
    );
    assert_eq!(size(&got[0], "compressed_backup_size"), full);
    assert!(
        size(&got[2], "backup_size") < full / 10,
        "a log backup is small"
    );

    // The restoring instance records the restored set with the same size.
    let mut cb = b.connect().await;
    ok(
        &mut cb,
        r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\full.bak' WITH RECOVERY",
    )
    .await;
    let r = rows(
        &mut cb,
        "SELECT b.backup_size, b.server_name FROM msdb.dbo.restorehistory AS r JOIN msdb.dbo.backupset AS b ON b.backup_set_id = r.backup_set_id WHERE r.destination_database_name = N'mgc'",
    )
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(size(&r[0], "backup_size"), full);
    assert_eq!(r[0].get::<&str, _>("server_name"), Some("SRVA"));
}
