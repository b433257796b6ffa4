//! The real agent's `check_engine_share_write` against sqlsim through a session: the probe (a
//! COPY_ONLY backup of model to a uniquely named file in the share, deleted by the agent) succeeds
//! and leaves no file; with the Database Engine's account denied the share
//! (`sqlsim.engine_access … none`) the answer is `can_write = false` with SQL Server's 3201 and
//! operating system error 5 and the engine's service account, not an operation error, and nothing
//! is left in the folder; BACKUP itself is refused there with 3201 then 3013; a folder outside the
//! agent's roots is refused before anything reaches SQL Server.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;
use failback_proto::pb::operation_output::Kind as Out;
use failback_tests::harness::fake_coordinator::FakeCoordinator;
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};
use failback_tests::harness::ops::{error, output};
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};

const BACKUP: &str = "sql01.dc2.lab";
const ADMIN: &str = "simadmin";
const ADMIN_PW: &str = "Adm1n-Pa55!";

fn probe(dir: &str) -> K {
    K::CheckEngineShareWrite(pb::CheckEngineShareWrite {
        directory: dir.into(),
    })
}

fn answer(r: pb::OperationResult) -> pb::EngineShareWrite {
    match output(r) {
        Out::EngineShareWrite(w) => w,
        other => panic!("{other:?}"),
    }
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_account_write_is_probed_and_refusal_is_a_finding() {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    // The share is a POSIX folder under the agent's files root (the agent deletes its probe
    // through the roots), which sqlsim uses as is.
    let share = fleet.files_root().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let share_text = share.display().to_string();
    let mut sim = SqlSim::new(BACKUP, &fleet.dir.join("sql-backup"))
        .unwrap()
        .with_args(&["--admin-login", ADMIN, "--admin-password", ADMIN_PW]);
    sim.start().await.unwrap();
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, SA_PASSWORD).unwrap();
    fleet
        .configure_agent(BACKUP, &sim.agent_section(&pw))
        .unwrap();
    let mut fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(BACKUP).unwrap();
    let mut s = fake
        .session_of(BACKUP, Duration::from_secs(20))
        .await
        .unwrap();
    s.welcome(3).await.unwrap();

    // Allowed: written by the engine, deleted by the agent; the statement is FB-3's, for model.
    let before = sim.statements().len();
    let w = answer(s.call("eng/1", 3, probe(&share_text)).await.unwrap());
    assert!(w.can_write && w.probe_deleted, "{w:?}");
    assert_eq!(w.service, "SQL Server (MSSQLSERVER)", "{w:?}");
    assert_eq!(w.account, r"NT Service\MSSQLSERVER", "{w:?}");
    assert!(
        w.probe_file.starts_with(&share_text) && w.probe_file.contains("failback_engine_probe_"),
        "{w:?}"
    );
    assert_eq!(
        entries(&share),
        Vec::<String>::new(),
        "no probe left behind"
    );
    let backups: Vec<String> = sim.statements()[before..]
        .iter()
        .map(|s| s.text.clone())
        .filter(|t| t.contains("BACKUP DATABASE"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].contains("COPY_ONLY"), "{backups:?}");

    // The engine's account denied the share: a finding with SQL Server's words, not an error.
    sim.batch_as(
        (ADMIN, ADMIN_PW),
        "master",
        &format!("EXEC sqlsim.engine_access N'{share_text}', N'none'"),
    )
    .await
    .unwrap();
    let w = answer(s.call("eng/2", 3, probe(&share_text)).await.unwrap());
    assert!(!w.can_write && !w.probe_deleted, "{w:?}");
    assert_eq!((w.sql_error, w.os_error), (3201, 5), "{w:?}");
    assert!(
        w.message
            .contains("Operating system error 5(Access is denied.).")
            && w.message.contains(&w.probe_file),
        "{w:?}"
    );
    assert_eq!(w.account, r"NT Service\MSSQLSERVER", "{w:?}");
    assert_eq!(
        entries(&share),
        Vec::<String>::new(),
        "a refused BACKUP writes nothing"
    );

    // BACKUP itself is refused there as SQL Server refuses it (3201, then 3013 closes it).
    let file = share.join("mgc.bak");
    let e = sim
        .batch_as(
            ("sa", SA_PASSWORD),
            "master",
            &format!("BACKUP DATABASE model TO DISK = N'{}'", file.display()),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("3201") && e.contains("Access is denied."), "{e}");
    // The rule removed: the engine writes again.
    sim.batch_as(
        (ADMIN, ADMIN_PW),
        "master",
        &format!("EXEC sqlsim.engine_access N'{share_text}', N'default'"),
    )
    .await
    .unwrap();
    let w = answer(s.call("eng/3", 3, probe(&share_text)).await.unwrap());
    assert!(w.can_write && w.probe_deleted, "{w:?}");

    // Outside the agent's roots: refused before anything reaches SQL Server.
    let before = sim.statements().len();
    let e = error(s.call("eng/4", 3, probe("/etc")).await.unwrap());
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("/etc"), "{e:?}");
    assert_eq!(sim.statements().len(), before);
}
