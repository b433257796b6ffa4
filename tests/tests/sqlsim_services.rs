//! `sys.dm_server_services` (both services, persisted across a restart, changed by the sim admin)
//! and the file checks of pchat-dr.md §6.10, `xp_fileexist` and `xp_dirtree`, in a batch and as
//! an RPC by name, acting on the engine's own (mapped) file system.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_FLAGS, Sim, ok, rows};
use tiberius::Command;

const SERVICES: &str = "SELECT servicename, startup_type_desc, status_desc, service_account, last_startup_time FROM sys.dm_server_services;";

#[tokio::test]
async fn server_services_are_listed_changed_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut flags: Vec<&str> = ADMIN_FLAGS.to_vec();
    flags.extend(["--server-name", r"PCHATSQL\PCHAT"]);
    let sim = Sim::start(dir.path(), &flags);
    let mut c = sim.connect().await;
    let r = rows(&mut c, SERVICES).await;
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[0].get::<&str, _>("servicename"),
        Some("SQL Server (PCHAT)")
    );
    assert_eq!(
        r[1].get::<&str, _>("servicename"),
        Some("SQL Server Agent (PCHAT)")
    );
    assert_eq!(r[1].get::<&str, _>("status_desc"), Some("Running"));
    assert_eq!(r[1].get::<&str, _>("startup_type_desc"), Some("Automatic"));
    assert_eq!(
        r[1].get::<&str, _>("service_account"),
        Some(r"NT Service\SQLAgent$PCHAT")
    );
    assert!(
        r[0].get::<tiberius::time::chrono::NaiveDateTime, _>("last_startup_time")
            .is_some()
    );
    let mut admin = sim.connect_admin().await;
    ok(
        &mut admin,
        r"EXEC sqlsim.service N'SQL Server Agent', N'Stopped', N'Manual', N'CONTOSO\svc-agent'",
    )
    .await;
    let data = sim.data_dir.clone();
    drop((c, admin));
    sim.stop();
    let sim = Sim::start(&data, &[]);
    let mut c = sim.connect().await;
    let r = rows(
        &mut c,
        "SELECT status_desc, startup_type_desc, service_account FROM sys.dm_server_services WHERE servicename = N'SQL Server Agent (PCHAT)'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("Stopped"));
    assert_eq!(r[0].get::<&str, _>(1), Some("Manual"));
    assert_eq!(r[0].get::<&str, _>(2), Some(r"CONTOSO\svc-agent"));
}

#[tokio::test]
async fn xp_fileexist_and_xp_dirtree() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(share.join("sub/deeper")).unwrap();
    std::fs::write(share.join("mgc.bak"), b"x").unwrap();
    std::fs::write(share.join("sub/a.trn"), b"x").unwrap();
    let map = format!(r"\\fileserver\pchat-ls={}", share.display());
    let sim = Sim::start(&dir.path().join("sim"), &["--path-map", &map]);
    let mut c = sim.connect().await;

    let check = |r: &[tiberius::Row]| {
        (
            r[0].get::<i32, _>("File Exists").unwrap(),
            r[0].get::<i32, _>("File is a Directory").unwrap(),
            r[0].get::<i32, _>("Parent Directory Exists").unwrap(),
        )
    };
    let r = rows(
        &mut c,
        r"EXEC master.dbo.xp_fileexist N'\\fileserver\pchat-ls\mgc.bak';",
    )
    .await;
    assert_eq!(check(&r), (1, 0, 1));
    let r = rows(
        &mut c,
        r"EXEC master.dbo.xp_fileexist N'\\fileserver\pchat-ls\sub'",
    )
    .await;
    assert_eq!(check(&r), (0, 1, 1));
    let r = rows(
        &mut c,
        r"EXEC master.dbo.xp_fileexist N'\\fileserver\pchat-ls\sub\nul'",
    )
    .await;
    assert_eq!(check(&r), (1, 0, 1));
    let r = rows(&mut c, r"EXEC xp_fileexist N'\\fileserver\nope\x.bak'").await;
    assert_eq!(check(&r), (0, 0, 0));

    let r = rows(
        &mut c,
        r"EXEC master.sys.xp_dirtree N'\\fileserver\pchat-ls', 1, 1;",
    )
    .await;
    let listed: Vec<(String, i32, i32)> = r
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>("subdirectory").unwrap().to_string(),
                r.get::<i32, _>("depth").unwrap(),
                r.get::<i32, _>("file").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![("mgc.bak".to_string(), 1, 1), ("sub".to_string(), 1, 0)]
    );
    // Without the third argument only folders, at every requested depth.
    let r = rows(
        &mut c,
        r"EXEC master.sys.xp_dirtree N'\\fileserver\pchat-ls', 0",
    )
    .await;
    let names: Vec<&str> = r.iter().map(|r| r.get::<&str, _>(0).unwrap()).collect();
    assert_eq!(names, vec!["sub", "deeper"]);
    assert_eq!(r[0].columns().len(), 2);

    // As an RPC by name (tiberius' Command API, as the agent calls procedures).
    let mut cmd = Command::new("master.dbo.xp_fileexist");
    cmd.bind_param("@FileName", r"\\fileserver\pchat-ls\mgc.bak");
    let result = cmd
        .exec(&mut c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    let r = result.to_query_result(0).unwrap();
    assert_eq!(check(r), (1, 0, 1));
}
