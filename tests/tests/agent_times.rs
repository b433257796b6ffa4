//! The real agent reports backup times in UTC from instances whose hosts run other time zones:
//! sqlsim with `--utc-offset-minutes` (the backup instance at UTC-5, the primary at UTC+1). A
//! backup's BackupFinishDate is the writer's local clock; the agent subtracts the writer's
//! offset, so the reported finish is now in UTC (the old `and_utc()` read of the local time was
//! five hours early here). Read on the other instance, the same header converts with the
//! writer's zone once that instance has restored the writer's backups (msdb backupset.time_zone),
//! as a log shipping secondary has — the FO-3 case.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;
use failback_proto::pb::operation_output::Kind as Out;
use failback_tests::harness::fake_coordinator::{FakeCoordinator, FakeSession};
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};
use failback_tests::harness::ops::output;
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};

const PRIMARY: &str = "sql01.dc1.lab";
const BACKUP: &str = "sql01.dc2.lab";
const PRIMARY_OFFSET: i32 = 60;
const BACKUP_OFFSET: i32 = -300;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn session(fake: &mut FakeCoordinator, agent: &str) -> FakeSession {
    let s = fake
        .session_of(agent, Duration::from_secs(20))
        .await
        .unwrap();
    s.welcome(5).await.unwrap();
    s
}

/// `ms` is within 10 s of `around` (DATETIME rounding, test pace).
fn near(ms: u64, around: u64, what: &str) {
    let off = ms.abs_diff(around);
    assert!(
        off < 10_000,
        "{what}: {ms} is {} s from {around}",
        off / 1000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_times_are_reported_in_utc_across_time_zones() {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    std::fs::create_dir_all(fleet.files_root().join("share")).unwrap();
    let mut primary = SqlSim::new(PRIMARY, &fleet.dir.join("sql-primary"))
        .unwrap()
        .with_utc_offset_minutes(PRIMARY_OFFSET);
    let mut backup = SqlSim::new(BACKUP, &fleet.dir.join("sql-backup"))
        .unwrap()
        .with_utc_offset_minutes(BACKUP_OFFSET);
    primary.start().await.unwrap();
    backup.start().await.unwrap();
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, SA_PASSWORD).unwrap();
    fleet
        .configure_agent(PRIMARY, &primary.agent_section(&pw))
        .unwrap();
    fleet
        .configure_agent(BACKUP, &backup.agent_section(&pw))
        .unwrap();
    let mut fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(PRIMARY).unwrap();
    fleet.start_agent(BACKUP).unwrap();
    backup
        .batch_as(
            ("sa", SA_PASSWORD),
            "master",
            "CREATE DATABASE mgc; ALTER DATABASE mgc SET RECOVERY FULL",
        )
        .await
        .unwrap();
    let mut b = session(&mut fake, BACKUP).await;
    let mut p = session(&mut fake, PRIMARY).await;
    let file = fleet
        .files_root()
        .join("share/mgc_times.bak")
        .display()
        .to_string();

    let backup_op = K::BackupDatabase(pb::BackupDatabase {
        database: "mgc".into(),
        file: file.clone(),
        copy_only: false,
        compression: false,
        name: "mgc times".into(),
        description: "test".into(),
    });
    let Out::Backup(taken) = output(b.call("t/fb3/1", 5, backup_op).await.unwrap()) else {
        panic!()
    };
    let h = taken.header.clone().unwrap();
    near(h.finish_unix_ms, now_ms(), "finish reported by the writer");
    near(h.start_unix_ms, now_ms(), "start reported by the writer");

    // The primary restores it (its msdb learns the writer's zone), then reads the header again:
    // the same instant, though its own clock is six hours ahead of the writer's.
    let restore = K::RestoreDatabase(pb::RestoreDatabase {
        database: "mgc".into(),
        file: file.clone(),
        recovery: pb::RecoveryMode::Norecovery.into(),
        standby_file: String::new(),
        replace: true,
        expected_sha256: taken.sha256.clone(),
    });
    output(p.call("t/fb4/1", 5, restore).await.unwrap());
    let Out::Verify(v) = output(
        p.call(
            "t/read/1",
            5,
            K::ReadBackupHeader(pb::ReadBackupHeader { file: file.clone() }),
        )
        .await
        .unwrap(),
    ) else {
        panic!()
    };
    let there = &v.headers[0];
    assert_eq!(
        there.finish_unix_ms, h.finish_unix_ms,
        "read on the primary with the writer's zone from backupset.time_zone"
    );
    drop(fleet);
}
