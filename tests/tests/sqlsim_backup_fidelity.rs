//! sqlsim refuses BACKUP / RESTORE the way SQL Server does, message for message (number, state,
//! order, text), read off the wire with a bare TDS client because tiberius reports only a
//! batch's first error: `WITH CHECKSUM` on a set without checksums (3187), several backup sets per
//! file (NOINIT appends, INIT / FORMAT overwrite, `FILE = n`, 4038, 3266), where RESTORE puts the
//! files (5133 / 1834 → 3156 → 3119), no backup or restore inside a transaction (3021), a backup
//! from a newer release (3169, `--product-version`) and a stale `@@SERVERNAME`
//! (`--stale-server-name`). Each failure ends with 3013 "<verb> is terminating abnormally.".
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/tds_raw.rs"]
mod tds_raw;

use std::path::Path;

use common::{PW, Sim, ok, rows};
use tds_raw::{Msg, RawTds, errors};

/// The instance's default data folder (SERVERPROPERTY('InstanceDefaultDataPath')).
const DATA: &str = r"C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA";

/// A sim whose `\\fs\ls` share is `share`, with extra flags.
fn start(dir: &Path, share: &Path, extra: &[&str]) -> Sim {
    let map = format!(r"\\fs\ls={}", share.display());
    let mut flags = vec!["--path-map", &map, "--db-size-mb", "1"];
    flags.extend_from_slice(extra);
    Sim::start(dir, &flags)
}

async fn raw(sim: &Sim) -> RawTds {
    RawTds::login(sim.port(), "sa", PW, "master").await
}

fn texts(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.is_error)
        .map(|m| m.text.clone())
        .collect()
}

/// The messages of a batch that must succeed (no errors).
async fn fine(c: &mut RawTds, sql: &str) -> Vec<Msg> {
    let m = c.batch(sql).await;
    assert!(errors(&m).is_empty(), "{sql}: {m:?}");
    m
}

type Conn = tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>;

async fn count(c: &mut Conn, sql: &str) -> usize {
    rows(c, sql).await.len()
}

#[tokio::test]
async fn checksum_is_refused_on_sets_written_without_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let sim = start(&dir.path().join("a"), &share, &[]);
    let mut c = sim.connect().await;
    ok(&mut c, "CREATE DATABASE mgc").await;
    let mut r = raw(&sim).await;
    fine(
        &mut r,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\plain.bak'",
    )
    .await;
    fine(&mut r, r"BACKUP LOG mgc TO DISK = N'\\fs\ls\plain.trn'").await;
    fine(
        &mut r,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\summed.bak' WITH CHECKSUM",
    )
    .await;

    // HEADERONLY never needs CHECKSUM and shows the flag.
    for (file, sums) in [
        ("plain.bak", false),
        ("plain.trn", false),
        ("summed.bak", true),
    ] {
        let h = rows(
            &mut c,
            &format!(r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\{file}'"),
        )
        .await;
        assert_eq!(
            h[0].get::<bool, _>("HasBackupChecksums"),
            Some(sums),
            "{file}"
        );
    }

    let m = r
        .batch(r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\plain.bak' WITH CHECKSUM")
        .await;
    assert_eq!(errors(&m), vec![(3187, 1), (3013, 1)], "{m:?}");
    assert_eq!(
        texts(&m),
        vec![
            "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.",
            "VERIFY DATABASE is terminating abnormally.",
        ]
    );
    assert!(m.iter().all(|m| m.class == 16));
    let m = r
        .batch(r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\plain.bak' WITH REPLACE, NORECOVERY, CHECKSUM")
        .await;
    assert_eq!(errors(&m), vec![(3187, 1), (3013, 1)], "{m:?}");
    assert_eq!(texts(&m)[1], "RESTORE DATABASE is terminating abnormally.");
    let m = r
        .batch(r"RESTORE LOG mgc FROM DISK = N'\\fs\ls\plain.trn' WITH NORECOVERY, CHECKSUM")
        .await;
    assert_eq!(errors(&m), vec![(3187, 1), (3013, 1)], "{m:?}");
    assert_eq!(texts(&m)[1], "RESTORE LOG is terminating abnormally.");
    // The refused restores changed nothing: mgc is still ONLINE.
    let s = rows(
        &mut c,
        "SELECT state_desc FROM sys.databases WHERE name = N'mgc'",
    )
    .await;
    assert_eq!(s[0].get::<&str, _>(0), Some("ONLINE"));

    // Without CHECKSUM the same sets verify; with it, a set that has checksums verifies.
    let m = fine(
        &mut r,
        r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\plain.bak'",
    )
    .await;
    assert_eq!(m[0].number, 3262);
    assert_eq!(m[0].text, "The backup set on file 1 is valid.");
    fine(
        &mut r,
        r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\summed.bak' WITH CHECKSUM",
    )
    .await;
}

#[tokio::test]
async fn several_backup_sets_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let sim = start(&dir.path().join("a"), &share, &[]);
    let mut c = sim.connect().await;
    let mut r = raw(&sim).await;
    ok(&mut c, "CREATE DATABASE mgc").await;
    let insert = "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'x')";
    ok(&mut c, insert).await;
    fine(&mut r, r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\sets.bak'").await;
    ok(&mut c, insert).await;
    // NOINIT is the default: the second backup is appended as set 2 ("on file 2").
    let m = fine(&mut r, r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\sets.bak'").await;
    assert!(m[0].text.ends_with("on file 2."), "{m:?}");
    fine(
        &mut r,
        r"BACKUP LOG mgc TO DISK = N'\\fs\ls\sets.bak' WITH NOINIT",
    )
    .await;
    let h = rows(
        &mut c,
        r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\sets.bak'",
    )
    .await;
    let positions: Vec<(i16, i16)> = h
        .iter()
        .map(|r| {
            (
                r.get::<i16, _>("Position").unwrap(),
                r.get::<i16, _>("BackupType").unwrap(),
            )
        })
        .collect();
    assert_eq!(positions, vec![(1, 1), (2, 1), (3, 2)]);
    let h2 = rows(
        &mut c,
        r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\sets.bak' WITH FILE = 2",
    )
    .await;
    assert_eq!(h2.len(), 1);
    assert_eq!(h2[0].get::<i16, _>("Position"), Some(2));

    // FILE = n picks set n; without FILE, set 1.
    let m = fine(
        &mut r,
        r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\sets.bak' WITH FILE = 2",
    )
    .await;
    assert_eq!(m[0].text, "The backup set on file 2 is valid.");
    let to_new = |file: &str, name: &str| {
        format!(
            r"RESTORE DATABASE {name} FROM DISK = N'\\fs\ls\sets.bak' WITH {file}MOVE N'mgc' TO N'{DATA}\{name}.mdf', MOVE N'mgc_log' TO N'{DATA}\{name}_log.ldf'"
        )
    };
    let m = fine(&mut r, &to_new("FILE = 2, ", "two")).await;
    assert!(
        m.iter()
            .any(|m| m.text == "Processed 2 pages for database 'two', file 'mgc_log' on file 2."),
        "{m:?}"
    );
    fine(&mut r, &to_new("", "one")).await;
    assert_eq!(count(&mut c, "SELECT id FROM two.dbo.Messages").await, 2);
    assert_eq!(count(&mut c, "SELECT id FROM one.dbo.Messages").await, 1);
    // A log set is not a database backup, even in the same file.
    let m = r.batch(&to_new("FILE = 3, ", "three")).await;
    assert_eq!(errors(&m), vec![(3135, 2), (3013, 1)], "{m:?}");
    // Beyond the last set: 4038, then 3013.
    let m = r.batch(&to_new("FILE = 4, ", "four")).await;
    assert_eq!(errors(&m), vec![(4038, 1), (3013, 1)], "{m:?}");
    assert_eq!(
        texts(&m)[0],
        r"Cannot find file ID 4 on device '\\fs\ls\sets.bak'."
    );
    let m = r
        .batch(r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\sets.bak' WITH FILE = 9")
        .await;
    assert_eq!(errors(&m), vec![(4038, 1), (3013, 1)], "{m:?}");

    // INIT keeps the media but replaces the sets; FORMAT writes a new media set.
    fine(
        &mut r,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\sets.bak' WITH INIT",
    )
    .await;
    assert_eq!(
        count(
            &mut c,
            r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\sets.bak'"
        )
        .await,
        1
    );
    fine(&mut r, r"BACKUP LOG mgc TO DISK = N'\\fs\ls\sets.bak'").await;
    assert_eq!(
        count(
            &mut c,
            r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\sets.bak'"
        )
        .await,
        2
    );
    fine(
        &mut r,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\sets.bak' WITH FORMAT, INIT",
    )
    .await;
    assert_eq!(
        count(
            &mut c,
            r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\sets.bak'"
        )
        .await,
        1
    );

    // Appending to a file that is not a backup: 3266; INIT or FORMAT replace it.
    std::fs::write(share.join("junk.bak"), b"not a backup at all").unwrap();
    let m = r
        .batch(r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\junk.bak'")
        .await;
    assert_eq!(errors(&m), vec![(3266, 1), (3013, 1)], "{m:?}");
    assert_eq!(texts(&m)[1], "BACKUP DATABASE is terminating abnormally.");
    fine(
        &mut r,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\junk.bak' WITH INIT",
    )
    .await;
    assert_eq!(
        count(
            &mut c,
            r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\junk.bak'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn restore_planning_refuses_bad_file_locations() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let sim = start(&dir.path().join("a"), &share, &[]);
    let mut c = sim.connect().await;
    let mut r = raw(&sim).await;
    ok(&mut c, "CREATE DATABASE mgc").await;
    fine(&mut r, r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\mgc.bak'").await;

    // A MOVE into a folder that does not exist: 5133, 3156 state 3, 3119, 3013.
    let m = r
        .batch(&format!(
            r"RESTORE DATABASE copy FROM DISK = N'\\fs\ls\mgc.bak' WITH MOVE N'mgc' TO N'E:\NoSuch\copy.mdf', MOVE N'mgc_log' TO N'{DATA}\copy_log.ldf'"
        ))
        .await;
    assert_eq!(
        errors(&m),
        vec![(5133, 1), (3156, 3), (3119, 1), (3013, 1)],
        "{m:?}"
    );
    assert_eq!(
        texts(&m),
        vec![
            r#"Directory lookup for the file "E:\NoSuch\copy.mdf" failed with the operating system error 3(The system cannot find the path specified.)."#.to_string(),
            r"File 'mgc' cannot be restored to 'E:\NoSuch\copy.mdf'. Use WITH MOVE to identify a valid location for the file.".to_string(),
            "Problems were identified while planning for the RESTORE statement. Previous messages provide details.".to_string(),
            "RESTORE DATABASE is terminating abnormally.".to_string(),
        ]
    );

    // No MOVE while mgc still uses those files: 1834 then 3156 state 4 for each file.
    let m = r
        .batch(r"RESTORE DATABASE copy FROM DISK = N'\\fs\ls\mgc.bak'")
        .await;
    assert_eq!(
        errors(&m),
        vec![
            (1834, 1),
            (3156, 4),
            (1834, 1),
            (3156, 4),
            (3119, 1),
            (3013, 1)
        ],
        "{m:?}"
    );
    assert_eq!(
        texts(&m)[0],
        format!(
            r"The file '{DATA}\mgc.mdf' cannot be overwritten.  It is being used by database 'mgc'."
        )
    );
    assert_eq!(
        texts(&m)[3],
        format!(
            r"File 'mgc_log' cannot be restored to '{DATA}\mgc_log.ldf'. Use WITH MOVE to identify a valid location for the file."
        )
    );

    // One file moved onto mgc's log file (the file name's case and the separators do not
    // matter), the other to a missing folder: both reported, in file order.
    let m = r
        .batch(&format!(
            r"RESTORE DATABASE copy FROM DISK = N'\\fs\ls\mgc.bak' WITH MOVE N'mgc' TO N'{}/MGC_LOG.LDF', MOVE N'mgc_log' TO N'Q:\x\copy_log.ldf'",
            DATA.replace('\\', "/")
        ))
        .await;
    assert_eq!(
        errors(&m),
        vec![
            (1834, 1),
            (3156, 4),
            (5133, 1),
            (3156, 3),
            (3119, 1),
            (3013, 1)
        ],
        "{m:?}"
    );
    // Nothing was created by the refused restores.
    assert_eq!(
        count(
            &mut c,
            "SELECT name FROM sys.databases WHERE name = N'copy'"
        )
        .await,
        0
    );

    // Valid locations restore, and the files are where MOVE put them.
    fine(
        &mut r,
        &format!(
            r"RESTORE DATABASE copy FROM DISK = N'\\fs\ls\mgc.bak' WITH MOVE N'mgc' TO N'{DATA}\copy.mdf', MOVE N'mgc_log' TO N'{DATA}\copy_log.ldf'"
        ),
    )
    .await;
    let f = rows(
        &mut c,
        "SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID(N'copy') ORDER BY file_id",
    )
    .await;
    assert_eq!(
        f[0].get::<&str, _>(0),
        Some(format!(r"{DATA}\copy.mdf").as_str())
    );
    // Replacing a database in place may keep its own files.
    fine(
        &mut r,
        r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\mgc.bak' WITH REPLACE",
    )
    .await;
}

#[tokio::test]
async fn no_backup_or_restore_inside_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let sim = start(&dir.path().join("a"), &share, &[]);
    let mut c = sim.connect().await;
    ok(&mut c, "CREATE DATABASE mgc").await;
    ok(&mut c, r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\ok.bak'").await;
    let mut r = raw(&sim).await;
    let cases = [
        (
            r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\in_tran.bak'",
            "BACKUP DATABASE",
        ),
        (
            r"BACKUP LOG mgc TO DISK = N'\\fs\ls\in_tran.trn'",
            "BACKUP LOG",
        ),
        (
            r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\ok.bak' WITH REPLACE",
            "RESTORE DATABASE",
        ),
        (
            r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\ok.bak'",
            "VERIFY DATABASE",
        ),
    ];
    for (sql, verb) in cases {
        let m = r.batch(&format!("BEGIN TRAN; {sql}; ROLLBACK")).await;
        assert_eq!(errors(&m), vec![(3021, 1), (3013, 1)], "{sql}: {m:?}");
        assert_eq!(
            texts(&m),
            vec![
                "Cannot perform a backup or restore operation within a transaction.".to_string(),
                format!("{verb} is terminating abnormally."),
            ]
        );
    }
    assert!(!share.join("in_tran.bak").exists());
    assert!(!share.join("in_tran.trn").exists());
    // Outside the transaction the same statements run; HEADERONLY runs inside one too (scripts
    // read headers with INSERT … EXEC).
    fine(&mut r, r"BACKUP LOG mgc TO DISK = N'\\fs\ls\in_tran.trn'").await;
    let h = rows(
        &mut c,
        r"BEGIN TRAN; RESTORE HEADERONLY FROM DISK = N'\\fs\ls\ok.bak'",
    )
    .await;
    assert_eq!(h.len(), 1);
    ok(&mut c, "ROLLBACK").await;
}

#[tokio::test]
async fn a_backup_from_a_newer_release_does_not_restore() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let new = start(
        &dir.path().join("new"),
        &share,
        &["--server-name", "NEW", "--product-version", "15.0.2000.5"],
    );
    let old = start(&dir.path().join("old"), &share, &["--server-name", "OLD"]);
    let mut cn = new.connect().await;
    let mut co = old.connect().await;
    let v = rows(
        &mut cn,
        "SELECT SERVERPROPERTY('ProductVersion'), @@VERSION",
    )
    .await;
    assert_eq!(v[0].get::<&str, _>(0), Some("15.0.2000.5"));
    assert!(
        v[0].get::<&str, _>(1)
            .unwrap()
            .starts_with("Microsoft SQL Server 2019 ")
    );
    ok(&mut cn, "CREATE DATABASE mgc").await;
    ok(
        &mut cn,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\new.bak' WITH CHECKSUM",
    )
    .await;
    ok(&mut co, "CREATE DATABASE mgc").await;
    ok(
        &mut co,
        r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\old.bak' WITH CHECKSUM",
    )
    .await;

    // The old server reads the header (HEADERONLY, FILELISTONLY) ...
    let h = rows(
        &mut co,
        r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\new.bak'",
    )
    .await;
    assert_eq!(h[0].get::<i32, _>("SoftwareVersionMajor"), Some(15));
    assert_eq!(h[0].get::<i32, _>("SoftwareVersionMinor"), Some(0));
    assert_eq!(h[0].get::<i32, _>("SoftwareVersionBuild"), Some(2000));
    assert_eq!(h[0].get::<i32, _>("DatabaseVersion"), Some(904));
    assert_eq!(
        count(
            &mut co,
            r"RESTORE FILELISTONLY FROM DISK = N'\\fs\ls\new.bak'"
        )
        .await,
        2
    );
    // ... but neither restores nor verifies it: 3169, then 3013.
    let mut r = raw(&old).await;
    let text = "The database was backed up on a server running version 15.00.2000. That version is incompatible with this server, which is running version 13.00.6300. Either restore the database on a server that supports the backup, or use a backup that is compatible with this server.";
    for (sql, verb) in [
        (
            r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\new.bak' WITH REPLACE",
            "RESTORE DATABASE",
        ),
        (
            r"RESTORE VERIFYONLY FROM DISK = N'\\fs\ls\new.bak'",
            "VERIFY DATABASE",
        ),
    ] {
        let m = r.batch(sql).await;
        assert_eq!(errors(&m), vec![(3169, 1), (3013, 1)], "{sql}: {m:?}");
        assert_eq!(
            texts(&m),
            vec![
                text.to_string(),
                format!("{verb} is terminating abnormally.")
            ]
        );
    }
    // The other way round works: 2019 restores a 2016 backup.
    ok(
        &mut cn,
        r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\old.bak' WITH REPLACE",
    )
    .await;
}

#[tokio::test]
async fn stale_servername_differs_from_serverproperty() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        dir.path(),
        &[
            "--server-name",
            r"NEWHOST\PCHAT",
            "--stale-server-name",
            r"OLDHOST\PCHAT",
        ],
    );
    let mut c = sim.connect().await;
    let q = "SELECT @@SERVERNAME, SERVERPROPERTY('ServerName'), SERVERPROPERTY('MachineName')";
    let check = |r: &[tiberius::Row]| {
        (
            r[0].get::<&str, _>(0).unwrap().to_string(),
            r[0].get::<&str, _>(1).unwrap().to_string(),
            r[0].get::<&str, _>(2).unwrap().to_string(),
        )
    };
    let want = (
        r"OLDHOST\PCHAT".to_string(),
        r"NEWHOST\PCHAT".to_string(),
        "NEWHOST".to_string(),
    );
    assert_eq!(check(&rows(&mut c, q).await), want);
    // Kept in the instance state, like sys.servers: a restart without the flag keeps it.
    drop(c);
    sim.stop();
    let sim = Sim::start(dir.path(), &["--server-name", r"NEWHOST\PCHAT"]);
    let mut c = sim.connect().await;
    assert_eq!(check(&rows(&mut c, q).await), want);
}

/// The lab's builder methods start the binary with the same flags.
#[tokio::test]
async fn harness_builders_set_version_and_stale_name() {
    use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SqlSim::new(r"HOST2\PCHAT", dir.path())
        .unwrap()
        .with_product_version("14.0.3456.2")
        .with_stale_server_name(r"HOST1\PCHAT");
    sim.start().await.unwrap();
    let r = sim
        .batch_as(
            ("sa", SA_PASSWORD),
            "master",
            "SELECT @@SERVERNAME, SERVERPROPERTY('ProductVersion')",
        )
        .await
        .unwrap();
    assert_eq!(r[0].get::<&str, _>(0), Some(r"HOST1\PCHAT"));
    assert_eq!(r[0].get::<&str, _>(1), Some("14.0.3456.2"));
    sim.kill();
}
