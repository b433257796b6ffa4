//! The real agent's sql backend against sqlsim over TDS with TLS required (the production
//! default): each read operation, ending sessions, the probe-before-act of remove_mirroring, the
//! exact T-SQL in sqlsim's statement log, and hostile database names never reaching the server.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;
use failback_proto::pb::operation_output::Kind as Out;
use failback_tests::harness::fake_coordinator::{FakeCoordinator, FakeSession};
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};
use failback_tests::harness::ops::output;
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim, tls_material};
use failback_tests::lab::sql::LAB_ADMIN;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio_util::compat::TokioAsyncWriteCompatExt;

const AGENT: &str = "sql01.dc1.lab";

async fn client(
    sim: &SqlSim,
    app: &str,
    db: &str,
) -> Client<tokio_util::compat::Compat<tokio::net::TcpStream>> {
    let mut c = Config::new();
    c.host("127.0.0.1");
    c.port(sim.port);
    c.authentication(AuthMethod::sql_server("sa", SA_PASSWORD));
    c.encryption(EncryptionLevel::NotSupported);
    c.application_name(app);
    c.database(db);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", sim.port))
        .await
        .unwrap();
    Client::connect(c, tcp.compat_write()).await.unwrap()
}

struct Setup {
    _fleet: Fleet,
    _fake: FakeCoordinator,
    session: FakeSession,
    sim: SqlSim,
}

async fn setup() -> Setup {
    setup_with(&[]).await
}

/// [`setup`] with extra sqlsim arguments.
async fn setup_with(extra: &[&str]) -> Setup {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    let (ca, cert, key) = tls_material(&fleet.dir.join("sqltls")).unwrap();
    let mut sim = SqlSim::new(AGENT, &fleet.dir.join("sql01"))
        .unwrap()
        .with_tls(cert, key)
        .with_args(&[
            "--admin-login",
            LAB_ADMIN.0,
            "--admin-password",
            LAB_ADMIN.1,
        ])
        .with_args(extra);
    sim.start().await.unwrap();
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, format!("{SA_PASSWORD}\n")).unwrap();
    fleet
        .configure_agent(
            AGENT,
            &format!(
                "[sql]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"sa\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
                sim.port,
                pw.display(),
                ca.display()
            ),
        )
        .unwrap();
    let mut fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(AGENT).unwrap();
    let session = fake.next_session(Duration::from_secs(20)).await.unwrap();
    session.welcome(2).await.unwrap();
    let mut c = client(&sim, "setup", "master").await;
    c.simple_query("CREATE DATABASE mgc")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    Setup {
        _fleet: fleet,
        _fake: fake,
        session,
        sim,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_operations_against_sqlsim_with_tls() {
    let Setup {
        mut session,
        sim,
        _fleet,
        _fake,
    } = setup().await;

    let Out::Instance(i) = output(
        session
            .call(
                "s/describe",
                2,
                K::DescribeInstance(pb::DescribeInstance {}),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(i.server_name, AGENT);
    assert!(
        !i.product_version.is_empty()
            && !i.default_data_path.is_empty()
            && !i.default_log_path.is_empty(),
        "{i:?}"
    );

    let Out::DatabaseStates(d) = output(
        session
            .call(
                "s/state",
                2,
                K::DatabaseState(pb::DatabaseState {
                    databases: vec!["mgc".into(), "mgccomp".into()],
                }),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert!(
        d.databases[0].exists && d.databases[0].state == "ONLINE",
        "{d:?}"
    );
    assert!(!d.databases[1].exists);
    // No full backup recorded yet; after one, its size and age (preflight sizes FB-3's and
    // FB-5's backups by it).
    assert_eq!(d.databases[0].last_full_backup_bytes, 0, "{d:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mgc_full.bak");
    let mut c = client(&sim, "test", "master").await;
    c.simple_query(format!(
        "BACKUP DATABASE mgc TO DISK = N'{}' WITH INIT",
        file.display()
    ))
    .await
    .unwrap()
    .into_results()
    .await
    .unwrap();
    let Out::DatabaseStates(d) = output(
        session
            .call(
                "s/state2",
                2,
                K::DatabaseState(pb::DatabaseState {
                    databases: vec!["mgc".into()],
                }),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    let on_disk = std::fs::metadata(&file).unwrap().len();
    let recorded = d.databases[0].last_full_backup_bytes;
    assert!(
        recorded > 0 && recorded.abs_diff(on_disk) < on_disk / 10,
        "backup_size {recorded} for a {on_disk}-byte file: {d:?}"
    );
    assert_eq!(d.databases[0].last_full_backup_age_hours, 0);
    let sent: Vec<String> = sim.statements().into_iter().map(|s| s.text).collect();
    assert!(
        sent.iter().any(|t| t.starts_with("SELECT TOP (1) backup_size, DATEDIFF(HOUR, backup_finish_date, GETDATE()) AS age_hours FROM msdb.dbo.backupset WHERE database_name = @P1 AND type = 'D'")),
        "{sent:#?}"
    );
    assert!(
        sent.iter().any(|t| t
            == "SELECT name, state_desc, user_access_desc, recovery_model_desc, is_in_standby, is_read_only FROM sys.databases WHERE name IN (@P1, @P2)"),
        "{sent:#?}"
    );

    let Out::MirroringStates(m) = output(
        session
            .call(
                "s/mirror",
                2,
                K::MirroringState(pb::MirroringState {
                    databases: vec!["mgc".into()],
                }),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert!(!m.databases[0].mirrored);

    // Probe before act: mgc is not mirrored, so no ALTER DATABASE is sent.
    let Out::Done(done) = output(
        session
            .call(
                "s/unmirror",
                2,
                K::RemoveMirroring(pb::RemoveMirroring {
                    database: "mgc".into(),
                }),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert!(!done.changed);
    assert!(
        !sim.statements()
            .iter()
            .any(|s| s.text.contains("ALTER DATABASE"))
    );

    // A chat server's session in mgc is listed, then ended. It runs a parallel request (three
    // rows in sys.sysprocesses) and a background task works in mgc meanwhile (KILL of it is
    // 6107): the list still holds each user session once and no background task.
    let mut chat = client(&sim, "PersistentChatService", "mgc").await;
    let mut other = client(&sim, "SSMS", "mgc").await;
    let chat_spid = chat
        .simple_query("SELECT @@SPID")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap()
        .get::<i16, _>(0)
        .unwrap();
    sim.batch_as(
        LAB_ADMIN,
        "master",
        &format!(
            "EXEC sqlsim.parallel {chat_spid}, 3; EXEC sqlsim.system_task N'CHECKPOINT', N'mgc'"
        ),
    )
    .await
    .unwrap();
    let Out::Sessions(s) = output(
        session
            .call(
                "s/sessions",
                2,
                K::ListSessions(pb::ListSessions {
                    database: "mgc".into(),
                }),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(s.sessions.len(), 2, "{s:?}");
    assert!(s.sessions.iter().all(|x| x.spid > 50), "{s:?}");
    let Out::Killed(k) = output(
        session
            .call(
                "s/kill",
                2,
                K::KillSessions(pb::KillSessions {
                    database: "mgc".into(),
                    program_names: vec!["PersistentChatService".into()],
                }),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(k.sessions.len(), 1);
    assert_eq!(k.sessions[0].program_name, "PersistentChatService");
    assert!(
        chat.simple_query("SELECT 1").await.is_err(),
        "the chat server's connection is gone"
    );
    other
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    // sqlsim logs each statement of a batch on its own, without the terminating semicolon.
    assert!(
        sim.statements()
            .iter()
            .any(|s| s.text == format!("KILL {}", k.sessions[0].spid))
    );
    // Every program: the remaining user session goes, the background task is never killed.
    let Out::Killed(k) = output(
        session
            .call(
                "s/kill-all",
                2,
                K::KillSessions(pb::KillSessions {
                    database: "mgc".into(),
                    program_names: Vec::new(),
                }),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(k.sessions.len(), 1, "{k:?}");
    assert_eq!(k.sessions[0].program_name, "SSMS");
    assert!(
        !sim.statements()
            .iter()
            .filter_map(|s| s.text.strip_prefix("KILL ")?.parse::<u16>().ok())
            .any(|spid| spid <= 50),
        "no KILL of a system session id"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_database_names_never_reach_sql_server() {
    // Bind every field: a `..` here would drop the fleet (and kill the agent) at once.
    let Setup {
        mut session,
        sim,
        _fleet,
        _fake,
    } = setup().await;
    let hostile = [
        "mgc]; DROP DATABASE mgc --",
        "mgc'; SHUTDOWN --",
        "mgc/*",
        "x".repeat(200).leak() as &str,
        "",
    ];
    for (n, name) in hostile.iter().enumerate() {
        let r = session
            .call(
                &format!("h/{n}"),
                2,
                K::RemoveMirroring(pb::RemoveMirroring {
                    database: (*name).to_string(),
                }),
            )
            .await
            .unwrap();
        match r.outcome {
            Some(pb::operation_result::Outcome::Error(e)) => {
                assert_eq!(e.kind(), pb::ErrorKind::InvalidArgument, "{name}: {e:?}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let sent = sim.statements();
    assert!(
        !sent
            .iter()
            .any(|s| s.text.contains("DROP") || s.text.contains("SHUTDOWN")),
        "{sent:#?}"
    );
}

/// On SQL Server 2008 R2 `sys.dm_exec_sessions` has no `database_id`: the agent lists sessions
/// from `sys.sysprocesses` joined to it for `is_user_process`, still one row per user session.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_on_sql_server_2008_r2() {
    let Setup {
        mut session,
        sim,
        _fleet,
        _fake,
    } = setup_with(&["--product-version", "10.50.6000.34"]).await;
    let _chat = client(&sim, "PersistentChatService", "mgc").await;
    let mut probe = client(&sim, "probe", "master").await;
    // The 2012+ statement fails here, as on 2008 R2 (207, invalid column name).
    let err = probe
        .simple_query("SELECT database_id FROM sys.dm_exec_sessions")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, tiberius::error::Error::Server(ref t) if t.code() == 207),
        "{err:?}"
    );
    let chat_spid = {
        let r = sim
            .batch_as(
                ("sa", SA_PASSWORD),
                "master",
                "SELECT spid FROM sys.sysprocesses WHERE program_name = N'PersistentChatService'",
            )
            .await
            .unwrap();
        r[0].get::<i16, _>(0).unwrap()
    };
    sim.batch_as(
        LAB_ADMIN,
        "master",
        &format!(
            "EXEC sqlsim.parallel {chat_spid}, 2; EXEC sqlsim.system_task N'CHECKPOINT', N'mgc'"
        ),
    )
    .await
    .unwrap();
    let Out::Sessions(s) = output(
        session
            .call(
                "r2/sessions",
                2,
                K::ListSessions(pb::ListSessions {
                    database: "mgc".into(),
                }),
            )
            .await
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(s.sessions.len(), 1, "{s:?}");
    assert_eq!(s.sessions[0].program_name, "PersistentChatService");
    assert!(
        sim.statements().iter().any(|x| x
            .text
            .contains("FROM sys.sysprocesses AS p JOIN sys.dm_exec_sessions AS s")),
        "the 2008 R2 statement was used"
    );
}
