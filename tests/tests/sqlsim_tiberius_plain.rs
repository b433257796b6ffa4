//! tiberius against sqlsim without TLS: login, every supported statement family with column
//! names, types and values, errors by number, RPC parameters, transactions, restart persistence
//! and the statement log.
#![allow(clippy::unwrap_used)]

mod common;

use common::{PW, Sim, connect_with, error_code, rows, sql_error_code};
use tiberius::{ColumnType, EncryptionLevel};

#[tokio::test]
async fn login_and_server_identity() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--server-name", r"SQLA\PCHAT"]);
    let mut c = sim.connect().await;

    let r = rows(
        &mut c,
        "SELECT @@VERSION AS v, @@SERVERNAME, @@SPID AS spid",
    )
    .await;
    let cols: Vec<_> = r[0]
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.column_type()))
        .collect();
    assert_eq!(cols[0], ("v".to_string(), ColumnType::NVarchar));
    assert_eq!(cols[1].0, "");
    assert_eq!(cols[2].1, ColumnType::Int2);
    assert!(
        r[0].get::<&str, _>(0)
            .unwrap()
            .starts_with("Microsoft SQL Server")
    );
    assert_eq!(r[0].get::<&str, _>(1), Some(r"SQLA\PCHAT"));
    assert!(r[0].get::<i16, _>(2).unwrap() >= 51);

    let r = rows(
        &mut c,
        "select SERVERPROPERTY('ProductVersion') pv, SERVERPROPERTY('Edition') ed, \
         SERVERPROPERTY('ServerName') sn, SERVERPROPERTY('InstanceDefaultDataPath') d, \
         SERVERPROPERTY('InstanceDefaultLogPath') l, SERVERPROPERTY('NoSuchThing') n",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>("pv"), Some("13.0.6300.2"));
    assert_eq!(r[0].get::<&str, _>("ed"), Some("Standard Edition (64-bit)"));
    assert_eq!(r[0].get::<&str, _>("sn"), Some(r"SQLA\PCHAT"));
    assert!(r[0].get::<&str, _>("d").unwrap().ends_with('\\'));
    assert!(r[0].get::<&str, _>("l").is_some());
    assert_eq!(r[0].get::<&str, _>("n"), None);

    let r = rows(
        &mut c,
        "SELECT DB_ID('master') AS m, DB_ID(N'nope') AS n, DB_ID() AS cur",
    )
    .await;
    assert_eq!(r[0].get::<i32, _>("m"), Some(1));
    assert_eq!(r[0].get::<i32, _>("n"), None);
    assert_eq!(r[0].get::<i32, _>("cur"), Some(1));
}

#[tokio::test]
async fn wrong_password_is_18456() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let err = connect_with(sim.config(EncryptionLevel::NotSupported, "wrong"))
        .await
        .err()
        .unwrap();
    assert_eq!(sql_error_code(&err), Some(18456), "{err:?}");
    assert!(
        err.to_string().contains("Login failed for user 'sa'."),
        "{err}"
    );
    // The sim is still serving.
    let mut c = sim.connect().await;
    assert_eq!(rows(&mut c, "select 1").await.len(), 1);
}

#[tokio::test]
async fn databases_messages_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let mut c = sim.connect().await;

    c.simple_query("CREATE DATABASE [mgc]; CREATE DATABASE mgccomp")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(error_code(&mut c, "CREATE DATABASE mgc").await, 1801);

    let r = rows(
        &mut c,
        "SELECT name, database_id, state_desc, recovery_model_desc, user_access_desc, is_in_standby \
         FROM sys.databases WHERE name IN (N'mgc', N'mgccomp') ORDER BY name",
    )
    .await;
    assert_eq!(r.len(), 2);
    let names: Vec<_> = r[0]
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "name",
            "database_id",
            "state_desc",
            "recovery_model_desc",
            "user_access_desc",
            "is_in_standby"
        ]
    );
    assert_eq!(r[0].get::<&str, _>("name"), Some("mgc"));
    assert_eq!(r[0].get::<i32, _>("database_id"), Some(5));
    assert_eq!(r[0].get::<&str, _>("state_desc"), Some("ONLINE"));
    assert_eq!(r[0].get::<&str, _>("recovery_model_desc"), Some("FULL"));
    assert_eq!(r[0].get::<&str, _>("user_access_desc"), Some("MULTI_USER"));
    assert_eq!(r[0].get::<bool, _>("is_in_standby"), Some(false));
    assert_eq!(r[0].columns()[5].column_type(), ColumnType::Bitn);

    // USE, inserts through a batch and through sp_executesql parameters.
    c.simple_query("USE mgc")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let res = c
        .execute(
            "INSERT INTO dbo.Messages (room, author, body) VALUES (N'lobby', N'ann', N'it''s up'), (N'lobby', N'bob', N'ok')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(res.total(), 2);
    let long_body = "x".repeat(6000);
    let res = c
        .execute(
            "INSERT INTO dbo.Messages (room, author, body) VALUES (@P1, @P2, @P3)",
            &[&"ops", &"carl", &long_body.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(res.total(), 1);

    let r = rows(
        &mut c,
        "SELECT COUNT(*) AS n, MAX(id) AS top_id FROM dbo.Messages",
    )
    .await;
    assert_eq!(r[0].get::<i32, _>("n"), Some(3));
    assert_eq!(r[0].get::<i64, _>("top_id"), Some(3));

    let r = c
        .query("SELECT id, room, author, body, posted_at FROM mgc.dbo.Messages WHERE room = @P1 ORDER BY id DESC", &[&"ops"])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    let types: Vec<_> = r[0].columns().iter().map(|c| c.column_type()).collect();
    assert_eq!(
        types,
        [
            ColumnType::Int8,
            ColumnType::NVarchar,
            ColumnType::NVarchar,
            ColumnType::NVarchar,
            ColumnType::Datetime2
        ]
    );
    assert_eq!(r[0].get::<&str, _>("body").map(str::len), Some(6000));
    let posted: tiberius::time::chrono::NaiveDateTime = r[0].get("posted_at").unwrap();
    assert!(posted.and_utc().timestamp() > 1_700_000_000);

    // Errors, by number.
    assert_eq!(error_code(&mut c, "SELEC 1").await, 2812);
    assert_eq!(error_code(&mut c, "SELECT * FROM dbo.Nope").await, 208);
    assert_eq!(error_code(&mut c, "SELECT 1 foo bar").await, 102);
    assert_eq!(error_code(&mut c, "SELECT FROM").await, 156);
    assert_eq!(error_code(&mut c, "USE nosuchdb").await, 911);
    assert_eq!(error_code(&mut c, "EXEC dbo.sp_nothing").await, 2812);
    assert_eq!(error_code(&mut c, "select 'abc").await, 105);
    assert_eq!(
        error_code(&mut c, "SELECT nosuchcol FROM sys.databases").await,
        207
    );
    assert_eq!(
        error_code(
            &mut c,
            "INSERT INTO dbo.Messages (id, room, author, body) VALUES (9, N'a', N'b', N'c')"
        )
        .await,
        544
    );
    assert_eq!(
        error_code(&mut c, "SELECT * FROM master.dbo.Messages").await,
        208
    );
    assert_eq!(error_code(&mut c, "DROP DATABASE master").await, 3708);
    // The session is in mgc: dropping it is refused, then allowed from master.
    assert_eq!(error_code(&mut c, "DROP DATABASE mgc").await, 3702);
    c.simple_query("USE master; DROP DATABASE mgc")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(error_code(&mut c, "DROP DATABASE mgc").await, 3701);
    // A syntax error anywhere means nothing in the batch ran.
    assert_eq!(
        error_code(&mut c, "CREATE DATABASE shouldnot; SELECT 1 1 1").await,
        102
    );
    let r = rows(
        &mut c,
        "SELECT COUNT(*) FROM sys.databases WHERE name = 'shouldnot'",
    )
    .await;
    assert_eq!(r[0].get::<i32, _>(0), Some(0));
    // The connection still works after all those errors.
    assert_eq!(
        rows(&mut c, "SELECT DB_NAME()").await[0].get::<&str, _>(0),
        Some("master")
    );
}

#[tokio::test]
async fn rpc_parameters_and_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let mut c = sim.connect().await;
    let r = c
        .query(
            "SELECT @P1 AS i, @P2 AS s, @P3 AS b, @P4 AS big",
            &[&42i32, &"héllo", &true, &9_000_000_000i64],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.get::<i32, _>("i"), Some(42));
    assert_eq!(r.get::<&str, _>("s"), Some("héllo"));
    assert_eq!(r.get::<bool, _>("b"), Some(true));
    assert_eq!(r.get::<i64, _>("big"), Some(9_000_000_000));

    // An error inside sp_executesql reaches the client with its number.
    let err = c
        .query("SELECT * FROM nope WHERE x = @P1", &[&1i32])
        .await
        .err();
    let err = match err {
        Some(e) => e,
        None => panic!("expected an error"),
    };
    assert_eq!(sql_error_code(&err), Some(208));

    // Transaction Manager requests.
    c.begin_transaction().await.unwrap();
    assert_eq!(
        rows(&mut c, "SELECT @@TRANCOUNT").await[0].get::<i32, _>(0),
        Some(1)
    );
    c.commit_transaction().await.unwrap();
    c.begin_transaction().await.unwrap();
    c.rollback_transaction().await.unwrap();
    assert_eq!(
        rows(&mut c, "SELECT @@TRANCOUNT").await[0].get::<i32, _>(0),
        Some(0)
    );
    assert_eq!(error_code(&mut c, "COMMIT").await, 3902);
    // SQL-level transactions.
    c.simple_query("BEGIN TRAN; SELECT 1; COMMIT TRAN")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    // Many rows force several packets.
    c.simple_query("CREATE DATABASE big; USE big")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    for _ in 0..5 {
        c.execute(
            "INSERT INTO dbo.Messages (room, author, body) VALUES (@P1, N'a', @P2), (@P1, N'b', @P2), (@P1, N'c', @P2)",
            &[&"r", &"y".repeat(3000).as_str()],
        )
        .await
        .unwrap();
    }
    let r = rows(&mut c, "SELECT * FROM dbo.Messages ORDER BY id").await;
    assert_eq!(r.len(), 15);
    assert_eq!(r[14].get::<i64, _>("id"), Some(15));
}

#[tokio::test]
async fn state_survives_restart_and_statements_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    {
        let mut c = sim.connect().await;
        c.simple_query("CREATE DATABASE mgc\nUSE mgc\nINSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'persist me')")
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
    }
    sim.stop();
    let sim = Sim::start(dir.path(), &[]);
    let mut c = sim.connect().await;
    let r = rows(&mut c, "SELECT body FROM mgc.dbo.Messages").await;
    assert_eq!(r[0].get::<&str, _>(0), Some("persist me"));
    let r = rows(
        &mut c,
        "SELECT state_desc FROM sys.databases WHERE name = N'mgc'",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>(0), Some("ONLINE"));
    c.query("SELECT @P1", &[&5i32])
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();

    let log = std::fs::read_to_string(dir.path().join("statements.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&"CREATE DATABASE mgc"), "{texts:?}");
    assert!(texts.contains(&"USE mgc"));
    let insert = lines
        .iter()
        .find(|l| l["text"].as_str().unwrap().starts_with("INSERT"))
        .unwrap();
    assert_eq!(insert["database"], "mgc");
    assert!(insert["spid"].as_u64().unwrap() >= 51);
    assert!(insert["time"].as_str().unwrap().ends_with('Z'));
    let rpc = lines.iter().find(|l| l["kind"] == "rpc").unwrap();
    assert_eq!(rpc["text"], "SELECT @P1");
    let _ = PW;
}
