//! Sessions and database administration through tiberius: sys.sysprocesses / sys.dm_exec_sessions
//! show other connections with their host and program names, KILL ends one, ALTER DATABASE … SET
//! SINGLE_USER needs ROLLBACK IMMEDIATE while others are connected, PARTNER OFF on a database that
//! is not mirrored is 1416, and sys.master_files / sys.database_mirroring answer the runbook queries.
#![allow(clippy::unwrap_used)]

mod common;

use common::{PW, Sim, connect_with, error_code, rows};
use tiberius::EncryptionLevel;

#[tokio::test]
async fn sessions_kill_and_single_user() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let mut admin = sim.connect().await;
    admin
        .simple_query("CREATE DATABASE mgc")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();

    let mut cfg = sim.config(EncryptionLevel::NotSupported, PW);
    cfg.application_name("pchat-service");
    cfg.database("mgc");
    let mut user = connect_with(cfg).await.unwrap();
    let user_spid = rows(&mut user, "SELECT @@SPID").await[0]
        .get::<i16, _>(0)
        .unwrap();

    let r = rows(
        &mut admin,
        "SELECT spid, loginame, hostname, program_name FROM sys.sysprocesses WHERE dbid = DB_ID(N'mgc') AND spid <> @@SPID;",
    )
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<i16, _>("spid"), Some(user_spid));
    assert_eq!(r[0].get::<&str, _>("loginame"), Some("sa"));
    assert_eq!(r[0].get::<&str, _>("program_name"), Some("pchat-service"));
    let r = rows(
        &mut admin,
        "SELECT session_id, login_name, database_id FROM sys.dm_exec_sessions WHERE is_user_process = 1 ORDER BY session_id",
    )
    .await;
    assert_eq!(r.len(), 2);
    // The background tasks are sessions too, with system ids, and cannot be killed (6107).
    let r = rows(
        &mut admin,
        "SELECT session_id FROM sys.dm_exec_sessions WHERE is_user_process = 0",
    )
    .await;
    assert!(!r.is_empty());
    let task = r[0].get::<i16, _>(0).unwrap();
    assert!(task <= 50, "{task}");
    assert_eq!(error_code(&mut admin, &format!("KILL {task}")).await, 6107);

    // SINGLE_USER without ROLLBACK IMMEDIATE fails while the user is in mgc; with it, the user goes.
    assert_eq!(
        error_code(&mut admin, "ALTER DATABASE [mgc] SET SINGLE_USER").await,
        5070
    );
    admin
        .simple_query("ALTER DATABASE [mgc] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert!(
        user.simple_query("SELECT 1").await.is_err(),
        "killed session still answered"
    );
    let r = rows(
        &mut admin,
        "SELECT user_access_desc FROM sys.databases WHERE name = N'mgc'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("SINGLE_USER"));
    admin
        .simple_query("ALTER DATABASE mgc SET MULTI_USER")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();

    // KILL.
    let mut victim = sim.connect().await;
    let victim_spid = rows(&mut victim, "SELECT @@SPID").await[0]
        .get::<i16, _>(0)
        .unwrap();
    admin
        .simple_query(format!("KILL {victim_spid}"))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert!(victim.simple_query("SELECT 1").await.is_err());
    assert_eq!(error_code(&mut admin, "KILL 999").await, 6106);
    let me = rows(&mut admin, "SELECT @@SPID").await[0]
        .get::<i16, _>(0)
        .unwrap();
    assert_eq!(error_code(&mut admin, &format!("KILL {me}")).await, 6104);
    let r = rows(
        &mut admin,
        "SELECT COUNT(*) FROM sys.sysprocesses WHERE spid > 50",
    )
    .await;
    assert_eq!(r[0].get::<i32, _>(0), Some(1));
}

#[tokio::test]
async fn files_and_mirroring_views() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let mut c = sim.connect().await;
    c.simple_query("CREATE DATABASE mgc")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let r = rows(
        &mut c,
        "SELECT name, physical_name, type_desc FROM sys.master_files WHERE database_id = DB_ID(N'mgc') ORDER BY type_desc DESC",
    )
    .await;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].get::<&str, _>("name"), Some("mgc"));
    assert_eq!(r[0].get::<&str, _>("type_desc"), Some("ROWS"));
    assert!(
        r[0].get::<&str, _>("physical_name")
            .unwrap()
            .ends_with(r"\mgc.mdf")
    );
    assert_eq!(r[1].get::<&str, _>("name"), Some("mgc_log"));

    let r = rows(
        &mut c,
        "SELECT d.name, m.mirroring_guid, m.mirroring_role_desc, m.mirroring_state_desc, \
         m.mirroring_partner_name, m.mirroring_partner_instance, m.mirroring_witness_name, \
         m.mirroring_witness_state_desc, m.mirroring_safety_level_desc \
         FROM sys.database_mirroring AS m JOIN sys.databases AS d ON d.database_id = m.database_id \
         WHERE d.name IN (N'mgc', N'mgccomp');",
    )
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<&str, _>("name"), Some("mgc"));
    assert_eq!(r[0].get::<tiberius::Uuid, _>("mirroring_guid"), None);
    assert_eq!(r[0].get::<&str, _>("mirroring_role_desc"), None);
    assert_eq!(
        error_code(&mut c, "ALTER DATABASE [mgc] SET PARTNER OFF;").await,
        1416
    );
    assert_eq!(
        error_code(&mut c, "ALTER DATABASE nosuch SET MULTI_USER").await,
        5011
    );
    c.simple_query("ALTER DATABASE mgc SET RECOVERY SIMPLE")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let r = rows(
        &mut c,
        "SELECT recovery_model_desc FROM sys.databases WHERE name = 'mgc'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("SIMPLE"));
}

/// READ_ONLY stops writes (3906) and shows in sys.databases; it needs ROLLBACK IMMEDIATE while
/// another session is in the database (5070); READ_WRITE lets writes in again.
#[tokio::test]
async fn read_only_and_read_write() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let mut admin = sim.connect().await;
    rows(&mut admin, "CREATE DATABASE mgc").await;
    let mut cfg = sim.config(EncryptionLevel::NotSupported, PW);
    cfg.database("mgc");
    let mut user = connect_with(cfg).await.unwrap();
    rows(
        &mut user,
        "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'one')",
    )
    .await;

    assert_eq!(
        error_code(&mut admin, "ALTER DATABASE [mgc] SET READ_ONLY").await,
        5070
    );
    rows(
        &mut admin,
        "ALTER DATABASE [mgc] SET READ_ONLY WITH ROLLBACK IMMEDIATE",
    )
    .await;
    let r = rows(
        &mut admin,
        "SELECT is_read_only FROM sys.databases WHERE name = N'mgc'",
    )
    .await;
    assert_eq!(r[0].get::<bool, _>(0), Some(true));
    let mut cfg = sim.config(EncryptionLevel::NotSupported, PW);
    cfg.database("mgc");
    let mut user = connect_with(cfg).await.unwrap();
    assert_eq!(
        error_code(
            &mut user,
            "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'two')"
        )
        .await,
        3906
    );
    rows(
        &mut admin,
        "ALTER DATABASE [mgc] SET READ_WRITE WITH ROLLBACK IMMEDIATE",
    )
    .await;
    let mut cfg = sim.config(EncryptionLevel::NotSupported, PW);
    cfg.database("mgc");
    let mut user = connect_with(cfg).await.unwrap();
    rows(
        &mut user,
        "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'three')",
    )
    .await;
    let r = rows(&mut user, "SELECT COUNT(*) FROM dbo.Messages").await;
    assert_eq!(r[0].get::<i32, _>(0), Some(2));
}

/// `sys.sysprocesses` has one row per execution context and lists background tasks where they
/// work; `sys.dm_exec_sessions` has one row per session with `is_user_process`. The 2008 R2-era
/// query `… FROM sys.sysprocesses WHERE dbid = DB_ID(N'mgc')` therefore repeats a parallel
/// session and can list a task whose KILL is 6107; DISTINCT over the user sessions does not.
#[tokio::test]
async fn parallel_contexts_and_background_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &common::ADMIN_FLAGS);
    let mut admin = sim.connect_admin().await;
    rows(&mut admin, "CREATE DATABASE mgc").await;
    let mut cfg = sim.config(EncryptionLevel::NotSupported, PW);
    cfg.application_name("pchat-service");
    cfg.database("mgc");
    let mut user = connect_with(cfg).await.unwrap();
    let spid = rows(&mut user, "SELECT @@SPID").await[0]
        .get::<i16, _>(0)
        .unwrap();
    rows(
        &mut admin,
        &format!("EXEC sqlsim.parallel {spid}, 3; EXEC sqlsim.system_task N'CHECKPOINT', N'mgc'"),
    )
    .await;
    let old = rows(
        &mut admin,
        "SELECT spid, ecid, cmd FROM sys.sysprocesses WHERE dbid = DB_ID(N'mgc') ORDER BY spid, ecid",
    )
    .await;
    let listed: Vec<(i16, i16)> = old
        .iter()
        .map(|r| (r.get::<i16, _>(0).unwrap(), r.get::<i16, _>(1).unwrap()))
        .collect();
    let task = listed[0].0;
    assert_eq!(listed, vec![(task, 0), (spid, 0), (spid, 1), (spid, 2)]);
    assert_eq!(old[0].get::<&str, _>(2), Some("CHECKPOINT"));
    assert_eq!(error_code(&mut admin, &format!("KILL {task}")).await, 6107);

    let new = rows(
        &mut admin,
        "SELECT DISTINCT s.session_id AS spid, s.program_name AS program_name FROM sys.dm_exec_sessions AS s \
         WHERE s.database_id = DB_ID(N'mgc') AND s.is_user_process = 1 AND s.session_id <> @@SPID;",
    )
    .await;
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].get::<i16, _>(0), Some(spid));
    let legacy = rows(
        &mut admin,
        "SELECT DISTINCT p.spid, p.program_name FROM sys.sysprocesses AS p \
         JOIN sys.dm_exec_sessions AS s ON s.session_id = p.spid \
         WHERE p.dbid = DB_ID(N'mgc') AND s.is_user_process = 1 AND p.spid <> @@SPID;",
    )
    .await;
    assert_eq!(legacy.len(), 1);
    assert_eq!(
        legacy[0].get::<&str, _>(1).map(str::trim),
        Some("pchat-service")
    );
}
