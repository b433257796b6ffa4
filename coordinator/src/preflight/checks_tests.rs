//! Unit tests of the facts → checks rules on synthetic facts: a healthy Normal pool is ready in
//! both directions; a failed-over pool skips the log shipping checks and checks failback's
//! databases; single faults (a disconnected agent, a gap, a mirrored primary before failback, a
//! chat server Lync does not know, a stale share, a share the engine's account cannot write) fail
//! the right check with a fix.

use std::collections::BTreeMap;

use failback_proto::model::{AgentId, DatabaseName};
use failback_proto::pb;
use failback_proto::pb::PreflightStatus as St;

use super::Settings;
use super::checks::evaluate;
use super::facts::{AgentFact, Facts, SqlFacts};
use crate::topology::{Pool, SqlInstance, SqlRole};

const NOW: u64 = 1_800_000_000_000;

fn id(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

fn pool() -> Pool {
    let mut sql = BTreeMap::new();
    sql.insert(
        SqlRole::Primary,
        SqlInstance {
            agent: id("sql01.dc1.lab"),
            instance: "sql01.dc1.lab".into(),
        },
    );
    sql.insert(
        SqlRole::Backup,
        SqlInstance {
            agent: id("sql01.dc2.lab"),
            instance: "sql01.dc2.lab".into(),
        },
    );
    Pool {
        fqdn: "pchat01.lab.local".into(),
        primary_dc: "dc1".into(),
        backup_dc: "dc2".into(),
        databases: vec![DatabaseName::new("mgc").unwrap()],
        share: "/lab/share".into(),
        copy_dir: "/lab/copy".into(),
        lync_shell: BTreeMap::from([("dc1".to_string(), vec![id("fe01.dc1.lab")])]),
        sql,
        chat_servers: BTreeMap::from([
            ("dc1".to_string(), vec!["pc01.dc1.lab".to_string()]),
            ("dc2".to_string(), vec!["pc01.dc2.lab".to_string()]),
        ]),
    }
}

fn db(state: &str) -> pb::DatabaseInfo {
    pb::DatabaseInfo {
        name: "mgc".into(),
        exists: true,
        state: state.into(),
        recovery_model: "FULL".into(),
        user_access: "MULTI_USER".into(),
        data_size_bytes: 8 << 20,
        ..Default::default()
    }
}

fn instance() -> pb::InstanceInfo {
    pb::InstanceInfo {
        server_name: "x".into(),
        at_servername: "x".into(),
        product_version: "13.0.6300.2".into(),
        services: vec![pb::ServiceInfo {
            name: "SQL Server Agent (MSSQLSERVER)".into(),
            status: "Running".into(),
            startup_type: "Automatic".into(),
            account: "NT Service\\SQLSERVERAGENT".into(),
        }],
        ..Default::default()
    }
}

fn sql(role: SqlRole, agent: &str, state: &str, ls: pb::LogShippingStatusInfo) -> SqlFacts {
    SqlFacts {
        role,
        agent: id(agent),
        instance: agent.into(),
        info: Ok(instance()),
        databases: Ok(vec![db(state)]),
        mirroring: Ok(vec![pb::MirroringInfo {
            database: "mgc".into(),
            ..Default::default()
        }]),
        log_shipping: Ok(ls),
    }
}

fn file(name: &str, age_s: u64) -> pb::FileInfo {
    pb::FileInfo {
        path: format!("/x/{name}"),
        exists: true,
        size: 1000,
        modified_unix_ms: NOW - age_s * 1000,
        ..Default::default()
    }
}

fn header(first: u128, last: u128) -> Result<pb::BackupHeader, String> {
    Ok(pb::BackupHeader {
        database: "mgc".into(),
        backup_type: 2,
        first_lsn: first.to_string(),
        last_lsn: last.to_string(),
        ..Default::default()
    })
}

/// A Normal pool with log shipping one second behind.
fn healthy() -> Facts {
    let primary_ls = pb::LogShippingStatusInfo {
        monitor: vec![pb::LogShippingMonitorRow {
            is_primary: true,
            database: "mgc".into(),
            minutes_since_last_backup: Some(0),
            backup_threshold: Some(60),
            ..Default::default()
        }],
        primary: Some(pb::LogShippingPrimaryConfig::default()),
        secondary: None,
    };
    let backup_ls = pb::LogShippingStatusInfo {
        monitor: vec![pb::LogShippingMonitorRow {
            database: "mgc".into(),
            minutes_since_last_copy: Some(0),
            minutes_since_last_restore: Some(0),
            last_restored_latency: Some(0),
            restore_threshold: Some(45),
            ..Default::default()
        }],
        primary: None,
        secondary: Some(pb::LogShippingSecondaryConfig {
            primary_server: "sql01.dc1.lab".into(),
            primary_database: "mgc".into(),
            last_copied_file: "/lab/copy/mgc_20261126090002.trn".into(),
            last_restored_file: "/lab/copy/mgc_20261126090001.trn".into(),
            ..Default::default()
        }),
    };
    let names = ["mgc_20261126090001.trn", "mgc_20261126090002.trn"];
    Facts {
        pool: pool(),
        now_ms: NOW,
        agents: ["sql01.dc1.lab", "sql01.dc2.lab", "fe01.dc1.lab"]
            .iter()
            .map(|a| AgentFact {
                id: a.to_string(),
                what: "x".into(),
                connected: true,
                optional: false,
            })
            .collect(),
        pool_state: Ok(pb::PoolStateInfo {
            state: pb::PoolStateValue::Normal.into(),
            ..Default::default()
        }),
        pool_servers: Ok(pb::PoolServersInfo {
            servers: vec!["pc01.dc1.lab".into(), "pc01.dc2.lab".into()],
            active_servers: vec!["pc01.dc1.lab".into()],
            ..Default::default()
        }),
        sql: vec![
            sql(SqlRole::Primary, "sql01.dc1.lab", "ONLINE", primary_ls),
            sql(SqlRole::Backup, "sql01.dc2.lab", "RESTORING", backup_ls),
        ],
        share_files: Ok(vec![file(names[0], 2), file(names[1], 1)]),
        copy_files: Ok(vec![file(names[0], 2), file(names[1], 1)]),
        share_space: Ok(pb::Space {
            available_bytes: 1 << 30,
            ..Default::default()
        }),
        copy_space: Ok(pb::Space {
            available_bytes: 1 << 30,
            ..Default::default()
        }),
        copy_job: Some((
            "LSCopy_sql01.dc1.lab_mgc".into(),
            Ok(pb::JobOutcomeInfo {
                outcome: Some(pb::JobRun {
                    status: pb::JobRunStatus::Succeeded.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )),
        agent_access: None,
        engine_write: vec![
            (SqlRole::Backup, Ok(engine_write(true))),
            (SqlRole::Primary, Ok(engine_write(true))),
        ],
        restored: Some(("/lab/copy/mgc_20261126090001.trn".into(), header(100, 200))),
        headers: vec![("mgc_20261126090002.trn".into(), header(200, 300))],
        headers_skipped: 0,
    }
}

/// A probe answer of `check_engine_share_write`: written and cleaned up, or refused with
/// Msg 3201 / operating system error 5.
fn engine_write(can_write: bool) -> pb::EngineShareWrite {
    pb::EngineShareWrite {
        directory: "/lab/share".into(),
        service: "SQL Server (MSSQLSERVER)".into(),
        account: "CONTOSO\\svc-sql".into(),
        can_write,
        probe_file: "/lab/share/failback_engine_probe_1.bak".into(),
        probe_deleted: can_write,
        sql_error: if can_write { 0 } else { 3201 },
        os_error: if can_write { 0 } else { 5 },
        message: if can_write {
            String::new()
        } else {
            "BACKUP DATABASE: SQL Server error 3201: Cannot open backup device '/lab/share/failback_engine_probe_1.bak'. Operating system error 5(Access is denied.).".into()
        },
        ..Default::default()
    }
}

fn settings() -> Settings {
    Settings {
        free_space_factor: 1.5,
        max_log_age_seconds: Some(20),
        reads_only: false,
    }
}

/// The status of check `name` (first whose target contains `target`) in `direction`.
fn status(p: &pb::PreflightPool, direction: &str, name: &str, target: &str) -> St {
    let c = p
        .directions
        .iter()
        .filter(|d| d.direction == direction)
        .flat_map(|d| &d.checks)
        .find(|c| c.name == name && c.target.contains(target))
        .unwrap_or_else(|| panic!("no {direction} {name} ({target}) in {p:#?}"));
    if matches!(c.status(), St::Fail | St::Warn) {
        assert!(!c.fix.is_empty(), "{c:?}");
    }
    c.status()
}

#[test]
fn healthy_normal_pool_is_ready() {
    let p = evaluate(&healthy(), &settings());
    assert!(p.ready, "{p:#?}");
    assert_eq!(p.pool_state, "Normal");
    assert!(p.directions[0].next && !p.directions[1].next);
    for d in &p.directions {
        for c in &d.checks {
            assert_ne!(c.status(), St::Fail, "{c:?}");
        }
    }
    assert_eq!(status(&p, "failover", "lsn_chain", ""), St::Ok);
    assert_eq!(status(&p, "failback", "database", ""), St::Skip);
}

#[test]
fn failed_over_pool_checks_failback() {
    let mut f = healthy();
    f.pool_state = Ok(pb::PoolStateInfo {
        state: pb::PoolStateValue::FailedOver.into(),
        ..Default::default()
    });
    f.pool_servers = Ok(pb::PoolServersInfo {
        servers: vec!["pc01.dc1.lab".into(), "pc01.dc2.lab".into()],
        active_servers: vec!["pc01.dc2.lab".into()],
        ..Default::default()
    });
    f.sql[1].databases = Ok(vec![db("ONLINE")]);
    f.sql[1].log_shipping = Ok(pb::LogShippingStatusInfo::default());
    f.copy_job = None;
    let p = evaluate(&f, &settings());
    assert!(p.ready, "{p:#?}");
    assert!(!p.directions[0].next && p.directions[1].next);
    assert_eq!(status(&p, "failover", "log_backup", ""), St::Skip);
    assert_eq!(status(&p, "failback", "database", "backup"), St::Ok);
    assert_eq!(status(&p, "failback", "active_servers", ""), St::Ok);

    // The primary mgc still a mirroring partner: FB-4 could not restore over it.
    f.sql[0].mirroring = Ok(vec![pb::MirroringInfo {
        database: "mgc".into(),
        mirrored: true,
        role: "PRINCIPAL".into(),
        state: "SYNCHRONIZED".into(),
        ..Default::default()
    }]);
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failback", "mirroring", ""), St::Fail);
    assert!(!p.ready);

    // The backup mgc still restoring after a "failover": FB-3 has nothing to back up.
    let mut g = f.clone();
    g.sql[1].databases = Ok(vec![db("RESTORING")]);
    assert_eq!(
        status(&evaluate(&g, &settings()), "failback", "database", "backup"),
        St::Fail
    );

    // The backup mgc frozen read-only by a failback that stopped after FB-4's freeze: the fix
    // is SET READ_WRITE, not a recovery.
    let mut g = f.clone();
    g.sql[1].databases = Ok(vec![pb::DatabaseInfo {
        is_read_only: true,
        ..db("ONLINE")
    }]);
    let p = evaluate(&g, &settings());
    assert_eq!(status(&p, "failback", "database", "backup"), St::Fail);
    let c = p.directions[1]
        .checks
        .iter()
        .find(|c| c.name == "database" && c.target.contains("backup"))
        .unwrap();
    assert!(
        c.fix.contains("SET READ_WRITE") && !c.fix.starts_with("finish the failover"),
        "{c:?}"
    );

    // The backup mgc is the MIRROR (its own mirror took over): failback must start from the
    // principal, so preflight fails the check and says how to swap the roles back.
    let mut g = f.clone();
    g.sql[0].mirroring = Ok(Vec::new());
    g.sql[1].mirroring = Ok(vec![pb::MirroringInfo {
        database: "mgc".into(),
        mirrored: true,
        role: "MIRROR".into(),
        state: "SYNCHRONIZED".into(),
        partner_instance: "sql01m.dc2.lab".into(),
        ..Default::default()
    }]);
    let p = evaluate(&g, &settings());
    assert_eq!(status(&p, "failback", "mirroring", ""), St::Fail);
    let c = p.directions[1]
        .checks
        .iter()
        .find(|c| c.name == "mirroring")
        .unwrap();
    assert!(
        c.observed.contains("MIRROR") && c.observed.contains("sql01m.dc2.lab"),
        "{c:?}"
    );
    assert!(
        c.fix.contains("SET PARTNER FAILOVER") && c.fix.contains("Invoke-CsDatabaseFailover"),
        "{c:?}"
    );
    assert!(!p.ready);
    // As PRINCIPAL it is fine: FB-2 removes the mirroring.
    if let Ok(m) = &mut g.sql[1].mirroring {
        m[0].role = "PRINCIPAL".into();
    }
    assert_eq!(
        status(&evaluate(&g, &settings()), "failback", "mirroring", ""),
        St::Ok
    );
}

#[test]
fn single_faults_fail_their_check() {
    let mut f = healthy();
    f.agents[2].connected = false;
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failover", "agent_connected", "fe01"), St::Fail);
    assert!(!p.ready);

    let mut f = healthy();
    f.headers = vec![
        ("mgc_20261126090002.trn".into(), header(200, 300)),
        ("mgc_20261126090004.trn".into(), header(400, 500)),
    ];
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failover", "lsn_chain", ""), St::Fail);
    let c = p.directions[0]
        .checks
        .iter()
        .find(|c| c.name == "lsn_chain")
        .unwrap();
    assert!(
        c.observed.contains("gap after mgc_20261126090002.trn"),
        "{c:?}"
    );
    assert!(c.fix.contains("LSN 300 to 400"), "{c:?}");

    let mut f = healthy();
    f.pool
        .chat_servers
        .insert("dc2".into(), vec!["pc09.dc2.lab".into()]);
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failover", "active_servers", ""), St::Fail);
    assert_eq!(status(&p, "failback", "active_servers", ""), St::Ok);

    // A Normal pool with no active server: chat is down, not ready in either direction.
    let mut f = healthy();
    f.pool_servers = Ok(pb::PoolServersInfo {
        servers: vec!["pc01.dc1.lab".into(), "pc01.dc2.lab".into()],
        active_servers: Vec::new(),
        ..Default::default()
    });
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failover", "active_servers", ""), St::Fail);
    assert_eq!(status(&p, "failback", "active_servers", ""), St::Fail);
    assert!(!p.ready);

    let mut f = healthy();
    f.share_files = Ok(vec![file("mgc_20261126090001.trn", 60)]);
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failover", "log_backup", ""), St::Fail);
    assert_eq!(status(&p, "failover", "rpo_estimate", ""), St::Fail);

    let mut f = healthy();
    f.sql[1].info = Ok(pb::InstanceInfo {
        services: vec![pb::ServiceInfo {
            name: "SQL Server Agent (MSSQLSERVER)".into(),
            status: "Stopped".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let p = evaluate(&f, &settings());
    assert_eq!(
        status(&p, "failback", "sql_agent_service", "backup"),
        St::Fail
    );
    assert_eq!(
        status(&p, "failover", "sql_agent_service", "primary"),
        St::Ok
    );

    let f = healthy();
    let p = evaluate(
        &f,
        &Settings {
            free_space_factor: 1e9,
            ..settings()
        },
    );
    assert_eq!(
        status(&p, "failback", "free_space_full_backup", ""),
        St::Fail
    );
}

#[test]
fn stale_server_name_and_version_skew() {
    // A rebuilt primary whose @@SERVERNAME still names the old host: failback (FB-5 registers
    // log shipping by that name) fails, failover only warns.
    let mut f = healthy();
    if let Ok(i) = &mut f.sql[0].info {
        i.at_servername = "OLDHOST".into();
    }
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failback", "server_name", "primary"), St::Fail);
    assert_eq!(status(&p, "failover", "server_name", "primary"), St::Warn);
    assert_eq!(status(&p, "failback", "server_name", "backup"), St::Ok);
    let c = p.directions[1]
        .checks
        .iter()
        .find(|c| c.name == "server_name" && c.target.contains("primary"))
        .unwrap();
    assert!(
        c.fix.contains("sp_dropserver N'OLDHOST'") && c.fix.contains("sp_addserver N'x', 'local'"),
        "{c:?}"
    );

    // Versions: the backup newer than the rebuilt primary: FB-4 could not restore (3169);
    // failover (primary → backup) is fine that way round.
    let mut f = healthy();
    if let Ok(i) = &mut f.sql[1].info {
        i.product_version = "14.0.3456.2".into();
    }
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failback", "sql_versions", ""), St::Fail);
    assert_eq!(status(&p, "failover", "sql_versions", ""), St::Ok);
    // The primary newer than the backup: both directions fail.
    let mut f = healthy();
    if let Ok(i) = &mut f.sql[0].info {
        i.product_version = "14.0.3456.2".into();
    }
    let p = evaluate(&f, &settings());
    assert_eq!(status(&p, "failback", "sql_versions", ""), St::Fail);
    assert_eq!(status(&p, "failover", "sql_versions", ""), St::Fail);
    assert_eq!(
        status(
            &evaluate(&healthy(), &settings()),
            "failback",
            "sql_versions",
            ""
        ),
        St::Ok
    );
}

#[test]
fn engine_account_that_cannot_write_the_share_fails_failback() {
    // Healthy: both engines wrote (and the agent deleted) their probe; failback only.
    let p = evaluate(&healthy(), &settings());
    assert_eq!(
        status(&p, "failback", "engine_share_write", "backup"),
        St::Ok
    );
    assert_eq!(
        status(&p, "failback", "engine_share_write", "primary"),
        St::Ok
    );
    assert!(
        p.directions[0]
            .checks
            .iter()
            .all(|c| c.name != "engine_share_write"),
        "no failover step writes the share as the engine"
    );

    // The backup's engine refused (3201, OS error 5): FB-3 would fail; the fix names the
    // account, the share and Modify on both the share and the folder.
    let mut f = healthy();
    f.engine_write[0].1 = Ok(engine_write(false));
    let p = evaluate(&f, &settings());
    assert!(!p.directions[1].ready);
    assert!(p.directions[0].ready, "failover is not affected");
    assert_eq!(
        status(&p, "failback", "engine_share_write", "backup"),
        St::Fail
    );
    assert_eq!(
        status(&p, "failback", "engine_share_write", "primary"),
        St::Ok
    );
    let c = p.directions[1]
        .checks
        .iter()
        .find(|c| c.name == "engine_share_write" && c.target.contains("backup"))
        .unwrap();
    assert!(
        c.observed.contains("CONTOSO\\svc-sql")
            && c.observed.contains("/lab/share")
            && c.observed
                .contains("Operating system error 5(Access is denied.)")
            && !c.observed.contains("BACKUP DATABASE:"),
        "{c:?}"
    );
    assert!(
        c.fix
            .contains("grant CONTOSO\\svc-sql Modify on the share /lab/share")
            && c.fix.contains("NTFS")
            && c.fix.contains("FB-3"),
        "{c:?}"
    );

    // A virtual account reaches the share as the computer account; the primary's check
    // names FB-5.
    let mut f = healthy();
    let mut w = engine_write(false);
    w.account = "NT Service\\MSSQLSERVER".into();
    f.engine_write[1].1 = Ok(w);
    let p = evaluate(&f, &settings());
    let c = p.directions[1]
        .checks
        .iter()
        .find(|c| c.name == "engine_share_write" && c.target.contains("primary"))
        .unwrap();
    assert_eq!(c.status(), St::Fail);
    assert!(c.fix.contains("HOST$") && c.fix.contains("FB-5"), "{c:?}");

    // Other operating system errors get their own fix.
    for (os, needle) in [(3, "does not exist"), (53, "cannot reach")] {
        let mut f = healthy();
        let mut w = engine_write(false);
        w.os_error = os;
        f.engine_write[0].1 = Ok(w);
        let p = evaluate(&f, &settings());
        let c = p.directions[1]
            .checks
            .iter()
            .find(|c| c.name == "engine_share_write" && c.target.contains("backup"))
            .unwrap();
        assert!(c.fix.contains(needle), "{os}: {c:?}");
    }

    // The probe could not run (e.g. the share outside the agent's roots): fail with the fix.
    let mut f = healthy();
    f.engine_write[0].1 =
        Err("check_engine_share_write on 'sql01.dc2.lab' failed: outside the roots".into());
    let p = evaluate(&f, &settings());
    assert_eq!(
        status(&p, "failback", "engine_share_write", "backup"),
        St::Fail
    );

    // Written but not cleaned up: a warning that names the file.
    let mut f = healthy();
    let mut w = engine_write(true);
    w.probe_deleted = false;
    w.cleanup = "permission denied".into();
    f.engine_write[0].1 = Ok(w);
    let p = evaluate(&f, &settings());
    assert_eq!(
        status(&p, "failback", "engine_share_write", "backup"),
        St::Warn
    );
    assert!(p.directions[1].ready);

    // A dry run (reads only) does not probe: skipped, with the reason.
    let mut f = healthy();
    f.engine_write.clear();
    let s = Settings {
        reads_only: true,
        ..settings()
    };
    let p = evaluate(&f, &s);
    assert_eq!(
        status(&p, "failback", "engine_share_write", "backup"),
        St::Skip
    );
    assert_eq!(
        status(&p, "failback", "engine_share_write", "primary"),
        St::Skip
    );
}
