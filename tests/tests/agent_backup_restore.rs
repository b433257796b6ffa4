//! The real agents' backup and restore operations against two sqlsim instances through sessions:
//! a full backup on one instance restored on the other (rows carried, SHA-256 recorded and
//! re-checked), a corrupted file refused, the same op id executed once (also across an agent
//! restart: sqlsim's statement log has one RESTORE), and a restore cut by an agent crash reported
//! as interrupted rather than run again.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;
use failback_proto::pb::operation_output::Kind as Out;
use failback_tests::harness::fake_coordinator::{FakeCoordinator, FakeSession};
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};
use failback_tests::harness::ops::{error, output};
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};

const PRIMARY: &str = "sql01.dc1.lab";
const BACKUP: &str = "sql01.dc2.lab";

async fn batch(sim: &SqlSim, db: &str, sql: &str) -> Vec<tiberius::Row> {
    sim.batch_as(("sa", SA_PASSWORD), db, sql).await.unwrap()
}

struct Lab {
    fleet: Fleet,
    fake: FakeCoordinator,
    primary: SqlSim,
    backup: SqlSim,
}

fn sql_section(sim: &SqlSim, pw: &std::path::Path) -> String {
    sim.agent_section(pw)
}

async fn lab(primary_faults: &[&str]) -> Lab {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    std::fs::create_dir_all(fleet.files_root().join("share")).unwrap();
    let mut primary = SqlSim::new(PRIMARY, &fleet.dir.join("sql-primary"))
        .unwrap()
        .with_args(primary_faults);
    let mut backup = SqlSim::new(BACKUP, &fleet.dir.join("sql-backup")).unwrap();
    primary.start().await.unwrap();
    backup.start().await.unwrap();
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, SA_PASSWORD).unwrap();
    fleet
        .configure_agent(PRIMARY, &sql_section(&primary, &pw))
        .unwrap();
    fleet
        .configure_agent(BACKUP, &sql_section(&backup, &pw))
        .unwrap();
    let fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(PRIMARY).unwrap();
    fleet.start_agent(BACKUP).unwrap();
    // The backup instance holds the pool's data (as after a failover).
    batch(
        &backup,
        "master",
        "CREATE DATABASE mgc; ALTER DATABASE mgc SET RECOVERY FULL",
    )
    .await;
    for i in 0..25 {
        batch(
            &backup,
            "mgc",
            &format!(
                "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'message {i}')"
            ),
        )
        .await;
    }
    Lab {
        fleet,
        fake,
        primary,
        backup,
    }
}

async fn session(fake: &mut FakeCoordinator, agent: &str) -> FakeSession {
    let s = fake
        .session_of(agent, Duration::from_secs(20))
        .await
        .unwrap();
    s.welcome(5).await.unwrap();
    s
}

fn restore_op(file: &str, sha: &str) -> K {
    K::RestoreDatabase(pb::RestoreDatabase {
        database: "mgc".into(),
        file: file.into(),
        recovery: pb::RecoveryMode::Recovery.into(),
        standby_file: String::new(),
        replace: true,
        expected_sha256: sha.into(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_on_one_instance_restores_on_the_other_exactly_once() {
    let Lab {
        mut fleet,
        mut fake,
        primary,
        backup,
    } = lab(&[]).await;
    let mut b = session(&mut fake, BACKUP).await;
    let mut p = session(&mut fake, PRIMARY).await;
    let file = fleet
        .files_root()
        .join("share/mgc_failback_1.bak")
        .display()
        .to_string();

    let backup_op = K::BackupDatabase(pb::BackupDatabase {
        database: "mgc".into(),
        file: file.clone(),
        copy_only: false,
        compression: false,
        name: "mgc failback full".into(),
        description: "test".into(),
    });
    let Out::Backup(taken) = output(b.call("run1/pool/fb3/1", 5, backup_op).await.unwrap()) else {
        panic!()
    };
    assert_eq!(taken.sha256.len(), 64, "{taken:?}");
    let header = taken.header.clone().unwrap();
    assert_eq!(header.database, "mgc");
    assert_eq!(header.backup_type, 1);
    assert!(
        !header.last_lsn.is_empty() && header.has_checksums,
        "{header:?}"
    );
    assert!(backup.statements().iter().any(|s| {
        s.text
            .starts_with("BACKUP DATABASE @P1 TO DISK = @P2 WITH FORMAT, INIT, CHECKSUM")
    }));

    let Out::Verify(v) = output(
        b.call(
            "run1/pool/fb3-verify/1",
            5,
            K::VerifyBackup(pb::VerifyBackup { file: file.clone() }),
        )
        .await
        .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(v.headers.len(), 1);
    assert!(!v.files.is_empty());

    let Out::Restore(r) = output(
        p.call("run1/pool/fb4/1", 5, restore_op(&file, &taken.sha256))
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(r.state, "ONLINE");
    assert_eq!(r.header.unwrap().last_lsn, header.last_lsn);
    let rows = batch(&primary, "mgc", "SELECT COUNT(*) AS n FROM dbo.Messages").await;
    assert_eq!(rows[0].get::<i32, _>("n"), Some(25));

    // The same op id again, and again after an agent restart: answered from the journal.
    let again = p
        .call("run1/pool/fb4/1", 5, restore_op(&file, &taken.sha256))
        .await
        .unwrap();
    assert!(again.replayed);
    fleet.kill_agent(PRIMARY);
    drop(p);
    fleet.start_agent(PRIMARY).unwrap();
    let mut p = session(&mut fake, PRIMARY).await;
    let again = p
        .call("run1/pool/fb4/1", 5, restore_op(&file, &taken.sha256))
        .await
        .unwrap();
    assert!(again.replayed);
    let restores = primary
        .statements()
        .iter()
        .filter(|s| s.text.starts_with("RESTORE DATABASE @P1 FROM DISK"))
        .count();
    assert_eq!(restores, 1, "exactly one RESTORE reached SQL Server");

    // A backup file that changed since it was recorded is never restored.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let e = error(
        p.call("run1/pool/fb4/2", 5, restore_op(&file, &taken.sha256))
            .await
            .unwrap(),
    );
    assert!(!e.retryable && e.message.contains("SHA-256"), "{e:?}");
    let restores = primary
        .statements()
        .iter()
        .filter(|s| s.text.starts_with("RESTORE DATABASE @P1 FROM DISK"))
        .count();
    assert_eq!(restores, 1, "the refused restore sent nothing");
    // And VERIFYONLY reports the damage with SQL Server's number.
    let e = error(
        b.call(
            "run1/pool/fb3-verify/2",
            5,
            K::VerifyBackup(pb::VerifyBackup { file: file.clone() }),
        )
        .await
        .unwrap(),
    );
    assert!(matches!(e.sql_error, 3183 | 3241 | 3013), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_cut_by_an_agent_crash_is_reported_interrupted_not_rerun() {
    // Bind every field: `..` would drop (and kill) the backup instance at once.
    let Lab {
        mut fleet,
        mut fake,
        primary,
        backup: _backup,
    } = lab(&["--fault", "delay restore 4000"]).await;
    let mut b = session(&mut fake, BACKUP).await;
    let p = session(&mut fake, PRIMARY).await;
    let file = fleet
        .files_root()
        .join("share/mgc_failback_2.bak")
        .display()
        .to_string();
    let backup_op = K::BackupDatabase(pb::BackupDatabase {
        database: "mgc".into(),
        file: file.clone(),
        copy_only: false,
        compression: false,
        name: "n".into(),
        description: "d".into(),
    });
    let Out::Backup(taken) = output(b.call("run2/pool/fb3/1", 5, backup_op).await.unwrap()) else {
        panic!()
    };

    p.instruct("run2/pool/fb4/1", 5, restore_op(&file, &taken.sha256))
        .await
        .unwrap();
    // Wait until the RESTORE reached SQL Server, then crash the agent.
    failback_tests::harness::wait_for("the RESTORE to start", Duration::from_secs(20), || async {
        primary
            .statements()
            .iter()
            .any(|s| s.text.starts_with("RESTORE DATABASE @P1 FROM DISK"))
            .then_some(())
    })
    .await
    .unwrap();
    fleet.kill_agent(PRIMARY);
    drop(p);
    fleet.start_agent(PRIMARY).unwrap();
    let mut p = session(&mut fake, PRIMARY).await;
    let e = error(
        p.call("run2/pool/fb4/1", 5, restore_op(&file, &taken.sha256))
            .await
            .unwrap(),
    );
    assert_eq!(e.kind(), pb::ErrorKind::Interrupted, "{e:?}");
    assert!(!e.retryable);
    let restores = primary
        .statements()
        .iter()
        .filter(|s| s.text.starts_with("RESTORE DATABASE @P1 FROM DISK"))
        .count();
    assert_eq!(restores, 1, "the interrupted restore was not run again");
}

/// A backup file may hold several sets (`NOINIT` appends): the agent reads the set's position
/// from HEADERONLY and restores `FILE = n`, and refuses, naming the positions, a file with two
/// sets of the kind it restores rather than guess (issue #11 item 5).
#[tokio::test(flavor = "multi_thread")]
async fn the_restored_set_is_found_by_position_and_an_ambiguous_file_is_refused() {
    let Lab {
        fleet,
        mut fake,
        primary,
        backup,
    } = lab(&[]).await;
    let mut p = session(&mut fake, PRIMARY).await;
    let share = fleet.files_root().join("share");
    let first = share.join("mgc_first.bak").display().to_string();
    let file = share.join("mgc_appended.bak").display().to_string();
    // A log backup at position 1, the full backup appended at position 2.
    batch(
        &backup,
        "master",
        &format!("BACKUP DATABASE mgc TO DISK = N'{first}' WITH INIT"),
    )
    .await;
    batch(
        &backup,
        "master",
        &format!("BACKUP LOG mgc TO DISK = N'{file}' WITH INIT"),
    )
    .await;
    batch(
        &backup,
        "master",
        &format!("BACKUP DATABASE mgc TO DISK = N'{file}' WITH NOINIT"),
    )
    .await;
    let Out::Restore(r) = output(p.call("pos/1", 5, restore_op(&file, "")).await.unwrap()) else {
        panic!()
    };
    assert_eq!(r.state, "ONLINE");
    assert!(
        primary
            .statements()
            .iter()
            .any(|s| s.text.starts_with("RESTORE DATABASE") && s.text.contains("FILE = 2")),
        "{:#?}",
        primary.statements()
    );
    let rows = batch(&primary, "mgc", "SELECT COUNT(*) AS n FROM dbo.Messages").await;
    assert_eq!(rows[0].get::<i32, _>("n"), Some(25));

    // A second full backup appended: two candidates, refused before any RESTORE is sent.
    batch(
        &backup,
        "master",
        &format!("BACKUP DATABASE mgc TO DISK = N'{file}' WITH NOINIT"),
    )
    .await;
    let restores = |sim: &SqlSim| {
        sim.statements()
            .iter()
            .filter(|s| s.text.starts_with("RESTORE DATABASE"))
            .count()
    };
    let before = restores(&primary);
    let e = error(p.call("pos/2", 5, restore_op(&file, "")).await.unwrap());
    assert!(!e.retryable, "{e:?}");
    assert!(
        e.message
            .contains("2 full database backups (positions 2, 3)"),
        "{e:?}"
    );
    assert_eq!(
        restores(&primary),
        before,
        "the refused restore sent nothing"
    );
}
