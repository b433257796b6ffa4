//! The real agents' log shipping and Agent job operations against two sqlsim instances through
//! sessions: an interval SQL Server Agent refuses (under 10 s) refused before anything is sent;
//! setup of both sides with 10-second schedules, SQL Server's minimum, on sims that enforce it
//! (probe before act: a repeat changes nothing); rows shipped by one backup / copy / restore
//! cycle run with `run_job` as FB-5 runs it, `log_shipping_status` reporting the last backup,
//! copy and restore files, removal that is idempotent; `run_job` / `job_outcome`, a stopped
//! Agent refused; `check_agent_access` with the Agent account denied the share, and a hostile
//! folder refused before any job is created. sqlsim logs an RPC by name as the procedure name
//! only, so parameters are checked through the msdb rows they produce.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;
use failback_proto::pb::operation_output::Kind as Out;
use failback_proto::pb::operation_result::Outcome;
use failback_tests::harness::fake_coordinator::{FakeCoordinator, FakeSession};
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};
use failback_tests::harness::ops::{error, output};
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};

const PRIMARY: &str = "sql01.dc1.lab";
const SECONDARY: &str = "sql01.dc2.lab";
const SHARE: &str = r"\\fileserver\pchat-ls";
const COPY: &str = r"E:\PChatLSCopy";
const ADMIN: &str = "simadmin";
const ADMIN_PW: &str = "Adm1n-Pa55!";
const DEADLINE: Duration = Duration::from_secs(40);
/// The jobs' schedule: SQL Server Agent's shortest seconds interval. The cycle below does not
/// wait for it; it only proves what the agent writes into msdb.
const EVERY_S: u32 = 10;

async fn batch_as(sim: &SqlSim, login: (&str, &str), sql: &str) -> Vec<tiberius::Row> {
    sim.batch_as(login, "master", sql).await.unwrap()
}

async fn batch(sim: &SqlSim, sql: &str) -> Vec<tiberius::Row> {
    batch_as(sim, ("sa", SA_PASSWORD), sql).await
}

async fn admin(sim: &SqlSim, sql: &str) {
    batch_as(sim, (ADMIN, ADMIN_PW), sql).await;
}

async fn count(sim: &SqlSim, sql: &str) -> i64 {
    let r = batch(sim, sql).await;
    r[0].try_get::<i32, _>(0)
        .ok()
        .flatten()
        .map(i64::from)
        .or_else(|| r[0].try_get::<i64, _>(0).ok().flatten())
        .unwrap()
}

struct Lab {
    _fleet: Fleet,
    _fake: FakeCoordinator,
    primary: SqlSim,
    secondary: SqlSim,
    p: FakeSession,
    s: FakeSession,
}

fn sql_section(sim: &SqlSim, pw: &Path) -> String {
    sim.agent_section(pw)
}

/// Two sims sharing `\\fileserver\pchat-ls`, each with an agent; the copy folder exists on the
/// secondary; mgc exists on the primary (FULL recovery, one row).
async fn lab() -> Lab {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    let share = fleet.dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let map = format!("{SHARE}={}", share.display());
    let args = [
        "--path-map",
        &map,
        "--admin-login",
        ADMIN,
        "--admin-password",
        ADMIN_PW,
    ];
    let mut primary = SqlSim::new(PRIMARY, &fleet.dir.join("sql-primary"))
        .unwrap()
        .with_args(&args);
    let mut secondary = SqlSim::new(SECONDARY, &fleet.dir.join("sql-secondary"))
        .unwrap()
        .with_args(&args);
    primary.start().await.unwrap();
    secondary.start().await.unwrap();
    std::fs::create_dir_all(secondary.data_dir.join("fs/E/PChatLSCopy")).unwrap();
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, SA_PASSWORD).unwrap();
    fleet
        .configure_agent(PRIMARY, &sql_section(&primary, &pw))
        .unwrap();
    fleet
        .configure_agent(SECONDARY, &sql_section(&secondary, &pw))
        .unwrap();
    let mut fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(PRIMARY).unwrap();
    fleet.start_agent(SECONDARY).unwrap();
    let p = fake
        .session_of(PRIMARY, Duration::from_secs(20))
        .await
        .unwrap();
    p.welcome(3).await.unwrap();
    let s = fake
        .session_of(SECONDARY, Duration::from_secs(20))
        .await
        .unwrap();
    s.welcome(3).await.unwrap();
    batch(
        &primary,
        "CREATE DATABASE mgc; ALTER DATABASE mgc SET RECOVERY FULL; INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'before')",
    )
    .await;
    Lab {
        _fleet: fleet,
        _fake: fake,
        primary,
        secondary,
        p,
        s,
    }
}

fn rpc_names(sim: &SqlSim) -> Vec<String> {
    sim.statements()
        .into_iter()
        .map(|s| s.text)
        .filter(|t| t.contains(".dbo.sp_"))
        .collect()
}

fn primary_op_every(seconds: u32) -> K {
    K::SetupLogShippingPrimary(pb::SetupLogShippingPrimary {
        database: "mgc".into(),
        backup_directory: SHARE.into(),
        secondary_server: SECONDARY.into(),
        schedule_interval_seconds: seconds,
        ..Default::default()
    })
}

fn primary_op() -> K {
    primary_op_every(EVERY_S)
}

fn secondary_op_every(seconds: u32) -> K {
    K::SetupLogShippingSecondary(pb::SetupLogShippingSecondary {
        database: "mgc".into(),
        primary_server: PRIMARY.into(),
        backup_source_directory: SHARE.into(),
        backup_destination_directory: COPY.into(),
        schedule_interval_seconds: seconds,
        ..Default::default()
    })
}

fn secondary_op() -> K {
    secondary_op_every(EVERY_S)
}

/// Runs `job` once through the agent as FB-5 does (`run_job`, then `job_outcome` until this
/// start's outcome): `true` when it succeeded, `false` when the start was refused as retryable
/// because a scheduled run of the job was under way (the caller runs the cycle again). A run
/// that ends otherwise fails the test.
async fn run_job_once(s: &mut FakeSession, op: &str, job: &str) -> bool {
    let r = s
        .call(
            op,
            3,
            K::RunJob(pb::RunJob {
                job_name: job.into(),
            }),
        )
        .await
        .unwrap();
    let started = match r.outcome {
        Some(Outcome::Output(pb::OperationOutput {
            kind: Some(Out::JobStarted(j)),
        })) => j,
        Some(Outcome::Error(e)) if e.retryable && e.message.contains("already running") => {
            return false;
        }
        other => panic!("run_job {job}: {other:?}"),
    };
    let t0 = tokio::time::Instant::now();
    loop {
        let o = match output(
            s.call(
                &format!("{op}/out/{}", t0.elapsed().as_millis()),
                3,
                K::JobOutcome(pb::JobOutcome {
                    job_name: job.into(),
                    after_instance_id: started.after_instance_id,
                }),
            )
            .await
            .unwrap(),
        ) {
            Out::JobOutcome(o) => o,
            other => panic!("{other:?}"),
        };
        if let (false, Some(run)) = (o.running, o.outcome) {
            assert_eq!(run.status(), pb::JobRunStatus::Succeeded, "{job}: {run:?}");
            return true;
        }
        assert!(t0.elapsed() < DEADLINE, "no outcome of {job}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn setup(r: pb::OperationResult) -> pb::LogShippingSetup {
    match output(r) {
        Out::LogShippingSetup(s) => s,
        other => panic!("{other:?}"),
    }
}

fn done(r: pb::OperationResult) -> pb::Done {
    match output(r) {
        Out::Done(d) => d,
        other => panic!("{other:?}"),
    }
}

async fn status(s: &mut FakeSession, op: &str) -> pb::LogShippingStatusInfo {
    match output(
        s.call(
            op,
            3,
            K::LogShippingStatus(pb::LogShippingStatus {
                database: "mgc".into(),
            }),
        )
        .await
        .unwrap(),
    ) {
        Out::LogShipping(l) => l,
        other => panic!("{other:?}"),
    }
}

/// The highest LastLSN of a log restored into mgc on the secondary.
async fn restored_lsn(sim: &SqlSim) -> i64 {
    let r = batch(sim, "SELECT MAX(b.last_lsn) FROM msdb.dbo.restorehistory r JOIN msdb.dbo.backupset b ON b.backup_set_id = r.backup_set_id WHERE r.destination_database_name = N'mgc' AND r.restore_type = N'L'").await;
    r.first()
        .and_then(|r| r.try_get::<tiberius::numeric::Numeric, _>(0).ok().flatten())
        .map_or(0, |n| n.value() as i64)
}

#[tokio::test(flavor = "multi_thread")]
async fn log_shipping_between_two_agents_ships_reports_and_removes() {
    let Lab {
        _fleet,
        _fake,
        primary,
        secondary,
        mut p,
        mut s,
    } = lab().await;
    // Seed the secondary (FB-5): full backup to the share, restored WITH NORECOVERY.
    batch(
        &primary,
        &format!(r"BACKUP DATABASE [mgc] TO DISK = N'{SHARE}\mgc_full.bak' WITH INIT"),
    )
    .await;
    // A secondary that is not RESTORING is refused before anything is sent.
    let e = error(s.call("ls/s/early", 3, secondary_op()).await.unwrap());
    assert!(e.message.contains("RESTORING"), "{e:?}");
    batch(
        &secondary,
        &format!(r"RESTORE DATABASE [mgc] FROM DISK = N'{SHARE}\mgc_full.bak' WITH NORECOVERY"),
    )
    .await;

    // An interval SQL Server Agent refuses (msdb: Msg 14278) is refused by the agent's
    // validation, naming the field, before any procedure is sent.
    let (np, ns) = (rpc_names(&primary).len(), rpc_names(&secondary).len());
    let e = error(p.call("ls/p/short", 3, primary_op_every(1)).await.unwrap());
    assert_eq!(e.kind(), pb::ErrorKind::InvalidArgument, "{e:?}");
    assert!(
        e.message.contains("schedule_interval_seconds")
            && e.message.contains("at least 10 seconds"),
        "{e:?}"
    );
    let e = error(
        s.call("ls/s/short", 3, secondary_op_every(9))
            .await
            .unwrap(),
    );
    assert_eq!(e.kind(), pb::ErrorKind::InvalidArgument, "{e:?}");
    assert_eq!(
        (rpc_names(&primary).len(), rpc_names(&secondary).len()),
        (np, ns)
    );

    let before = rpc_names(&primary).len();
    let ps = setup(p.call("ls/p/1", 3, primary_op()).await.unwrap());
    assert!(
        ps.changed && !ps.backup_job_id.is_empty() && !ps.primary_id.is_empty(),
        "{ps:?}"
    );
    assert_eq!(
        rpc_names(&primary)[before..],
        [
            "master.dbo.sp_add_log_shipping_primary_database",
            "msdb.dbo.sp_add_schedule",
            "msdb.dbo.sp_attach_schedule",
            "msdb.dbo.sp_update_job",
            "master.dbo.sp_add_log_shipping_alert_job",
            "master.dbo.sp_add_log_shipping_primary_secondary",
        ]
    );
    let before = rpc_names(&secondary).len();
    let ss = setup(s.call("ls/s/1", 3, secondary_op()).await.unwrap());
    assert!(
        ss.changed && !ss.copy_job_id.is_empty() && !ss.secondary_id.is_empty(),
        "{ss:?}"
    );
    assert_eq!(
        rpc_names(&secondary)[before..],
        [
            "master.dbo.sp_add_log_shipping_secondary_primary",
            "msdb.dbo.sp_add_schedule",
            "msdb.dbo.sp_attach_schedule",
            "msdb.dbo.sp_add_schedule",
            "msdb.dbo.sp_attach_schedule",
            "master.dbo.sp_add_log_shipping_secondary_database",
            "msdb.dbo.sp_update_job",
            "msdb.dbo.sp_update_job",
        ]
    );
    // The parameters as msdb recorded them: PChat's values, 10-second schedules, enabled jobs.
    let r = batch(&primary, "SELECT backup_directory, backup_share, backup_retention_period, backup_compression FROM msdb.dbo.log_shipping_primary_databases").await;
    assert_eq!(r[0].get::<&str, _>(0), Some(SHARE));
    assert_eq!(r[0].get::<&str, _>(1), Some(SHARE));
    assert_eq!(r[0].get::<i32, _>(2), Some(4320));
    let r = batch(&primary, "SELECT s.freq_subday_type, s.freq_subday_interval, j.enabled FROM msdb.dbo.sysjobs j JOIN msdb.dbo.sysjobschedules js ON js.job_id = j.job_id JOIN msdb.dbo.sysschedules s ON s.schedule_id = js.schedule_id WHERE j.name = N'LSBackup_mgc'").await;
    assert_eq!(
        (r[0].get::<i32, _>(0), r[0].get::<i32, _>(1)),
        (Some(2), Some(EVERY_S as i32))
    );
    let r = batch(
        &secondary,
        "SELECT restore_delay, restore_mode FROM msdb.dbo.log_shipping_secondary_databases",
    )
    .await;
    assert_eq!(r[0].get::<i32, _>(0), Some(0));
    assert_eq!(count(&secondary, "SELECT COUNT(*) FROM msdb.dbo.sysjobs WHERE name = N'LSCopy_sql01.dc1.lab_mgc' AND enabled = 1").await, 1);

    // Probe before act: a repeat sends no procedure and reports the same ids.
    let (np, ns) = (rpc_names(&primary).len(), rpc_names(&secondary).len());
    let again = setup(p.call("ls/p/2", 3, primary_op()).await.unwrap());
    assert!(!again.changed, "{again:?}");
    assert_eq!(again.backup_job_id, ps.backup_job_id);
    let again = setup(s.call("ls/s/2", 3, secondary_op()).await.unwrap());
    assert!(!again.changed, "{again:?}");
    assert_eq!(again.copy_job_id, ss.copy_job_id);
    assert_eq!(
        (rpc_names(&primary).len(), rpc_names(&secondary).len()),
        (np, ns)
    );

    // Rows inserted now reach the secondary through one backup / copy / restore cycle, run as
    // FB-5 runs it rather than by waiting for the schedules; a cycle that met a scheduled run
    // of one of its jobs is run again.
    batch(
        &primary,
        "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'shipped')",
    )
    .await;
    let r = batch(&primary, "SELECT last_log_backup_lsn FROM sys.database_recovery_status WHERE database_id = DB_ID(N'mgc')").await;
    let mark = r[0]
        .get::<tiberius::numeric::Numeric, _>(0)
        .unwrap()
        .value() as i64;
    let copy_job = format!("LSCopy_{PRIMARY}_mgc");
    let restore_job = format!("LSRestore_{PRIMARY}_mgc");
    let t0 = tokio::time::Instant::now();
    let mut cycle = 0;
    while restored_lsn(&secondary).await <= mark {
        assert!(
            t0.elapsed() < DEADLINE,
            "the insert was not restored on the secondary after {cycle} cycles"
        );
        cycle += 1;
        let ran = run_job_once(&mut p, &format!("cycle/{cycle}/backup"), "LSBackup_mgc").await
            && run_job_once(&mut s, &format!("cycle/{cycle}/copy"), &copy_job).await
            && run_job_once(&mut s, &format!("cycle/{cycle}/restore"), &restore_job).await;
        if !ran {
            // A scheduled run was under way: let it finish.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Status on both sides, as the failover runbook captures it.
    let st = status(&mut p, "ls/p/status").await;
    let pc = st.primary.as_ref().unwrap();
    assert_eq!(pc.backup_share, SHARE);
    assert_eq!(pc.secondaries[0].server, SECONDARY);
    assert!(
        pc.last_backup_file.starts_with(SHARE) && pc.last_backup_file.ends_with(".trn"),
        "{pc:?}"
    );
    assert!(!pc.last_backup_date.is_empty());
    assert!(st.secondary.is_none());
    assert!(
        st.monitor[0].is_primary && !st.monitor[0].last_backup_file.is_empty(),
        "{st:?}"
    );
    assert_eq!(st.monitor[0].backup_threshold, Some(60));
    let st = status(&mut s, "ls/s/status").await;
    let sc = st.secondary.as_ref().unwrap();
    assert_eq!(
        (
            sc.primary_server.as_str(),
            sc.backup_source_directory.as_str()
        ),
        (PRIMARY, SHARE)
    );
    assert_eq!(sc.backup_destination_directory, COPY);
    assert!(sc.last_copied_file.starts_with(COPY), "{sc:?}");
    assert!(sc.last_restored_file.starts_with(COPY), "{sc:?}");
    assert!(!sc.standby && !sc.last_restored_date.is_empty());
    let m = &st.monitor[0];
    assert!(
        !m.is_primary && m.database == "mgc" && !m.last_restored_file.is_empty(),
        "{m:?}"
    );
    assert_eq!(m.restore_threshold, Some(45));

    // Removal: secondary, then primary; each a no-op the second time.
    let d = done(
        s.call(
            "ls/s/rm1",
            3,
            K::RemoveLogShippingSecondary(pb::RemoveLogShippingSecondary {
                database: "mgc".into(),
            }),
        )
        .await
        .unwrap(),
    );
    assert!(d.changed, "{d:?}");
    assert_eq!(
        count(
            &secondary,
            "SELECT COUNT(*) FROM msdb.dbo.sysjobs WHERE name = N'LSCopy_sql01.dc1.lab_mgc'"
        )
        .await,
        0
    );
    let d = done(
        s.call(
            "ls/s/rm2",
            3,
            K::RemoveLogShippingSecondary(pb::RemoveLogShippingSecondary {
                database: "mgc".into(),
            }),
        )
        .await
        .unwrap(),
    );
    assert!(!d.changed, "{d:?}");
    let before = rpc_names(&primary).len();
    let d = done(
        p.call(
            "ls/p/rm1",
            3,
            K::RemoveLogShippingPrimary(pb::RemoveLogShippingPrimary {
                database: "mgc".into(),
            }),
        )
        .await
        .unwrap(),
    );
    assert!(d.changed, "{d:?}");
    assert_eq!(
        rpc_names(&primary)[before..],
        [
            "master.dbo.sp_delete_log_shipping_primary_secondary",
            "master.dbo.sp_delete_log_shipping_primary_database",
        ]
    );
    assert_eq!(
        count(
            &primary,
            "SELECT COUNT(*) FROM msdb.dbo.sysjobs WHERE name = N'LSBackup_mgc'"
        )
        .await,
        0
    );
    let d = done(
        p.call(
            "ls/p/rm2",
            3,
            K::RemoveLogShippingPrimary(pb::RemoveLogShippingPrimary {
                database: "mgc".into(),
            }),
        )
        .await
        .unwrap(),
    );
    assert!(!d.changed, "{d:?}");
    let st = status(&mut p, "ls/p/status2").await;
    assert!(st.primary.is_none() && st.monitor.is_empty(), "{st:?}");
}

fn access_op(read: &str, write: &str) -> K {
    K::CheckAgentAccess(pb::CheckAgentAccess {
        read_folder: read.into(),
        write_folder: write.into(),
        timeout_seconds: 30,
    })
}

fn access(r: pb::OperationResult) -> pb::AgentAccess {
    match output(r) {
        Out::AgentAccess(a) => a,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_report_and_agent_access_is_checked() {
    let Lab {
        _fleet,
        _fake,
        primary: _primary,
        secondary,
        p: _p,
        mut s,
    } = lab().await;

    // Full access: both steps succeed; the job and its probe file are gone afterwards.
    let jobs = count(&secondary, "SELECT COUNT(*) FROM msdb.dbo.sysjobs").await;
    let a = access(s.call("acc/1", 3, access_op(SHARE, COPY)).await.unwrap());
    assert!(a.can_read && a.can_write, "{a:?}");
    assert_eq!(a.outcome.unwrap().status(), pb::JobRunStatus::Succeeded);
    assert_eq!(a.commands[0], format!("cmd /c dir \"{SHARE}\""));
    assert_eq!(
        count(&secondary, "SELECT COUNT(*) FROM msdb.dbo.sysjobs").await,
        jobs
    );
    assert_eq!(
        std::fs::read_dir(secondary.data_dir.join("fs/E/PChatLSCopy"))
            .unwrap()
            .count(),
        0
    );

    // The Agent account denied the share: reported per folder, with the Agent's message.
    admin(
        &secondary,
        &format!("EXEC sqlsim.agent_access N'{SHARE}', N'none'"),
    )
    .await;
    let a = access(s.call("acc/2", 3, access_op(SHARE, COPY)).await.unwrap());
    assert!(!a.can_read && a.can_write, "{a:?}");
    let step1 = a.steps.iter().find(|x| x.step_id == 1).unwrap();
    assert!(step1.message.contains("Access is denied."), "{step1:?}");
    assert_eq!(
        count(&secondary, "SELECT COUNT(*) FROM msdb.dbo.sysjobs").await,
        jobs
    );

    // Hostile folders are refused before any job exists.
    let adds = |sim: &SqlSim| {
        rpc_names(sim)
            .iter()
            .filter(|n| n.as_str() == "msdb.dbo.sp_add_job")
            .count()
    };
    let n = adds(&secondary);
    for (i, bad) in [
        r#"E:\x" && del "E:\y"#,
        r"E:\%COMSPEC%",
        r"E:\a & whoami",
        r"E:\$(ESCAPE_NONE(JOBID))",
        r"E:\..\Windows",
        "/srv/share",
    ]
    .iter()
    .enumerate()
    {
        let e = error(
            s.call(&format!("acc/bad/{i}"), 3, access_op(bad, COPY))
                .await
                .unwrap(),
        );
        assert_eq!(e.kind(), pb::ErrorKind::InvalidArgument, "{bad}: {e:?}");
    }
    assert_eq!(adds(&secondary), n);

    // run_job + job_outcome on a job of our own.
    batch(&secondary, r#"
DECLARE @id uniqueidentifier;
EXEC msdb.dbo.sp_add_job @job_name = N'ListShare', @job_id = @id OUTPUT;
EXEC msdb.dbo.sp_add_jobstep @job_id = @id, @step_name = N'list', @subsystem = N'CmdExec', @command = N'cmd /c dir "E:\PChatLSCopy"';
EXEC msdb.dbo.sp_add_jobserver @job_id = @id;"#).await;
    let started = match output(
        s.call(
            "job/1",
            3,
            K::RunJob(pb::RunJob {
                job_name: "ListShare".into(),
            }),
        )
        .await
        .unwrap(),
    ) {
        Out::JobStarted(j) => j,
        other => panic!("{other:?}"),
    };
    assert!(
        rpc_names(&secondary)
            .iter()
            .any(|n| n == "msdb.dbo.sp_start_job")
    );
    let t0 = tokio::time::Instant::now();
    let outcome = loop {
        let o = match output(
            s.call(
                &format!("job/out/{}", t0.elapsed().as_millis()),
                3,
                K::JobOutcome(pb::JobOutcome {
                    job_name: "ListShare".into(),
                    after_instance_id: started.after_instance_id,
                }),
            )
            .await
            .unwrap(),
        ) {
            Out::JobOutcome(o) => o,
            other => panic!("{other:?}"),
        };
        if let Some(run) = o.outcome {
            assert!(!o.running);
            break run;
        }
        assert!(t0.elapsed() < DEADLINE, "no outcome");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(outcome.status(), pb::JobRunStatus::Succeeded, "{outcome:?}");
    assert!(
        outcome.message.contains("The job succeeded."),
        "{outcome:?}"
    );
    let e = error(
        s.call(
            "job/none",
            3,
            K::RunJob(pb::RunJob {
                job_name: "NoSuchJob".into(),
            }),
        )
        .await
        .unwrap(),
    );
    assert!(
        e.message
            .contains("no SQL Server Agent job named 'NoSuchJob'"),
        "{e:?}"
    );

    // The Agent service stopped: refused clearly, nothing started.
    admin(
        &secondary,
        "EXEC sqlsim.service N'SQL Server Agent', N'Stopped'",
    )
    .await;
    let starts = rpc_names(&secondary)
        .iter()
        .filter(|n| n.as_str() == "msdb.dbo.sp_start_job")
        .count();
    let e = error(
        s.call(
            "job/2",
            3,
            K::RunJob(pb::RunJob {
                job_name: "ListShare".into(),
            }),
        )
        .await
        .unwrap(),
    );
    assert!(
        e.message.contains("is Stopped, not Running") && !e.retryable,
        "{e:?}"
    );
    assert_eq!(
        rpc_names(&secondary)
            .iter()
            .filter(|n| n.as_str() == "msdb.dbo.sp_start_job")
            .count(),
        starts
    );
}
