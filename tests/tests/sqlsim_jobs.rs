//! SQL Server Agent jobs in sqlsim: the msdb procedures as a text batch (DECLARE, `EXEC @rc =`,
//! OUTPUT variables, `IF (@@ERROR = 0 AND @rc = 0) BEGIN … END`) and as RPCs by name with
//! OUTPUT parameters (tiberius `Command`), seconds-level schedules, history rows (step rows and
//! the step_id 0 outcome), sp_start_job / sp_stop_job with SQL Server's refusals, the Agent
//! service switched by the sim admin, and everything kept across a restart. Schedules are
//! checked as msdb does: a seconds interval under 10 is Msg 14278, unless the sim runs with its
//! lab-only `--lab-short-schedules` (which the 1-second schedule here needs).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ADMIN_FLAGS, Sim, error_code, ok, rows, scalar_i64, wait_for};
use tiberius::{Command, Uuid};

const DEADLINE: Duration = Duration::from_secs(30);

/// A job whose one T-SQL step takes about 4 s (a BACKUP paced by the `delay backup` fault).
const SLOW_JOB: &str = r"
DECLARE @id uniqueidentifier, @rc int;
EXEC @rc = msdb.dbo.sp_add_job @job_name = N'slow', @enabled = 1, @job_id = @id OUTPUT;
IF (@@ERROR = 0 AND @rc = 0)
BEGIN
  EXEC msdb.dbo.sp_add_jobstep @job_id = @id, @step_name = N'backup', @subsystem = N'TSQL',
       @command = N'BACKUP DATABASE [mgc] TO DISK = N''C:\Backup\slow.bak'' WITH INIT', @database_name = N'master';
  EXEC msdb.dbo.sp_add_jobserver @job_id = @id;
END
SELECT @rc AS rc, @id AS job_id;";

#[tokio::test]
async fn jobs_schedules_history_and_agent_control() {
    let dir = tempfile::tempdir().unwrap();
    let mut flags: Vec<&str> = ADMIN_FLAGS.to_vec();
    flags.extend([
        "--server-name",
        r"SQLJOBS\INST",
        "--fault",
        "delay backup 4000",
        "--lab-short-schedules",
    ]);
    let sim = Sim::start(dir.path(), &flags);
    // C:\Backup of the slow job's BACKUP, under the sim's mapped file system.
    std::fs::create_dir_all(dir.path().join("fs/C/Backup")).unwrap();
    let mut c = sim.connect().await;
    ok(&mut c, "CREATE DATABASE mgc").await;

    // A one-step job on a 1-second schedule, created by RPCs by name with OUTPUT parameters.
    let mut cmd = Command::new("msdb.dbo.sp_add_job");
    cmd.bind_param("@job_name", "tick");
    cmd.bind_out_param("@job_id", Option::<Uuid>::None);
    let res = cmd
        .exec(&mut c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    assert_eq!(res.return_code(), 0);
    let job_id: Uuid = res.try_return_value("@job_id").unwrap().unwrap();
    let mut cmd = Command::new("msdb.dbo.sp_add_jobstep");
    cmd.bind_param("@job_id", job_id);
    cmd.bind_param("@step_name", "select");
    cmd.bind_param("@subsystem", "TSQL");
    cmd.bind_param("@command", "SELECT @@SERVERNAME");
    cmd.exec(&mut c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    let mut cmd = Command::new("msdb.dbo.sp_add_jobserver");
    cmd.bind_param("@job_name", "tick");
    cmd.exec(&mut c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    let mut cmd = Command::new("msdb.dbo.sp_add_schedule");
    cmd.bind_param("@schedule_name", "every second");
    cmd.bind_param("@freq_type", 4i32);
    cmd.bind_param("@freq_interval", 1i32);
    cmd.bind_param("@freq_subday_type", 2i32);
    cmd.bind_param("@freq_subday_interval", 1i32);
    cmd.bind_out_param("@schedule_uid", Option::<Uuid>::None);
    cmd.bind_out_param("@schedule_id", Option::<i32>::None);
    let res = cmd
        .exec(&mut c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    let schedule_id: i32 = res.try_return_value("@schedule_id").unwrap().unwrap();
    assert!(
        res.try_return_value::<Uuid>("@schedule_uid")
            .unwrap()
            .is_some()
    );
    let mut cmd = Command::new("msdb.dbo.sp_attach_schedule");
    cmd.bind_param("@job_id", job_id);
    cmd.bind_param("@schedule_id", schedule_id);
    let res = cmd
        .exec(&mut c)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    assert_eq!(res.return_code(), 0);

    // It runs on its own, and its history has a step row and the step_id 0 outcome row.
    let outcome = "SELECT COUNT(*) FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id WHERE j.name = N'tick' AND h.step_id = 0 AND h.run_status = 1";
    wait_for(DEADLINE, "two scheduled runs of 'tick'", || async {
        let mut c = sim.connect().await;
        scalar_i64(&mut c, outcome).await.filter(|n| *n >= 2)
    })
    .await;
    let r = rows(&mut c, "SELECT TOP 2 h.step_id, h.step_name, h.run_status, h.run_date, h.run_time, h.message FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id WHERE j.name = N'tick' ORDER BY h.instance_id").await;
    assert_eq!(r[0].get::<i32, _>("step_id"), Some(1));
    assert!(
        r[0].get::<&str, _>("message")
            .unwrap()
            .contains("The step succeeded."),
        "{:?}",
        r[0].get::<&str, _>("message")
    );
    assert_eq!(r[1].get::<i32, _>("step_id"), Some(0));
    assert_eq!(r[1].get::<&str, _>("step_name"), Some("(Job outcome)"));
    let msg = r[1].get::<&str, _>("message").unwrap();
    assert!(
        msg.starts_with("The job succeeded.  The Job was invoked by Schedule"),
        "{msg}"
    );
    let run_date = r[1].get::<i32, _>("run_date").unwrap();
    assert!((20240101..=99991231).contains(&run_date));
    assert!(r[1].get::<i32, _>("run_time").unwrap() <= 235959);

    // The SSMS-style text batch; sp_start_job runs it, a second start is refused (22022).
    let r = rows(&mut c, SLOW_JOB).await;
    assert_eq!(r[0].get::<i32, _>("rc"), Some(0));
    assert!(r[0].get::<Uuid, _>("job_id").is_some());
    ok(&mut c, "EXEC msdb.dbo.sp_start_job @job_name = N'slow'").await;
    assert_eq!(
        error_code(&mut c, "EXEC msdb.dbo.sp_start_job @job_name = N'slow'").await,
        22022
    );
    let running = "SELECT COUNT(*) FROM msdb.dbo.sysjobactivity a JOIN msdb.dbo.sysjobs j ON j.job_id = a.job_id WHERE a.session_id = (SELECT MAX(session_id) FROM msdb.dbo.syssessions) AND j.name = N'slow' AND a.start_execution_date IS NOT NULL AND a.stop_execution_date IS NULL";
    // sp_start_job is asynchronous: the run shows in sysjobactivity once the Agent starts it.
    wait_for(DEADLINE, "'slow' running in sysjobactivity", || async {
        let mut c = sim.connect().await;
        scalar_i64(&mut c, running).await.filter(|n| *n == 1)
    })
    .await;
    ok(&mut c, "EXEC msdb.dbo.sp_stop_job @job_name = N'slow'").await;
    let canceled = "SELECT COUNT(*) FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id WHERE j.name = N'slow' AND h.step_id = 0 AND h.run_status = 3";
    wait_for(DEADLINE, "the canceled outcome of 'slow'", || async {
        let mut c = sim.connect().await;
        scalar_i64(&mut c, canceled).await.filter(|n| *n == 1)
    })
    .await;
    assert_eq!(scalar_i64(&mut c, running).await, Some(0));
    assert_eq!(
        error_code(&mut c, "EXEC msdb.dbo.sp_stop_job @job_name = N'slow'").await,
        22022
    );
    assert_eq!(
        error_code(&mut c, "EXEC msdb.dbo.sp_start_job @job_name = N'nope'").await,
        14262
    );
    assert_eq!(
        error_code(&mut c, "EXEC msdb.dbo.sp_add_job @job_name = N'slow'").await,
        14261
    );
    // Job procedures live in msdb.
    assert_eq!(
        error_code(&mut c, "EXEC sp_start_job @job_name = N'slow'").await,
        2812
    );
    // A disabled job does not run on its schedule but can still be started.
    ok(
        &mut c,
        "EXEC msdb.dbo.sp_update_job @job_name = N'tick', @enabled = 0",
    )
    .await;
    let r = rows(
        &mut c,
        "SELECT enabled FROM msdb.dbo.sysjobs WHERE name = N'tick'",
    )
    .await;
    assert_eq!(r[0].get::<u8, _>(0), Some(0));

    // With the Agent service stopped, jobs cannot start.
    let mut admin = sim.connect_admin().await;
    ok(
        &mut admin,
        "EXEC sqlsim.service N'SQL Server Agent', N'Stopped'",
    )
    .await;
    let code = error_code(&mut c, "EXEC msdb.dbo.sp_start_job @job_name = N'tick'").await;
    assert_eq!(code, 22022);
    ok(
        &mut admin,
        "EXEC sqlsim.service N'SQL Server Agent', N'Running'",
    )
    .await;
    wait_for(DEADLINE, "a second Agent session", || async {
        let mut c = sim.connect().await;
        scalar_i64(&mut c, "SELECT COUNT(*) FROM msdb.dbo.syssessions")
            .await
            .filter(|n| *n >= 2)
    })
    .await;
    ok(&mut c, "EXEC msdb.dbo.sp_start_job @job_name = N'tick'").await;

    // A restart keeps jobs, steps, schedules and history; the Agent opens a new session.
    let history = scalar_i64(&mut c, "SELECT COUNT(*) FROM msdb.dbo.sysjobhistory")
        .await
        .unwrap();
    let data = sim.data_dir.clone();
    drop((c, admin));
    sim.stop();
    let sim = Sim::start(&data, &ADMIN_FLAGS);
    let mut c = sim.connect().await;
    let r = rows(&mut c, "USE msdb; SELECT j.name, s.name AS schedule, s.freq_subday_type, s.freq_subday_interval FROM sysjobs j JOIN sysjobschedules js ON js.job_id = j.job_id JOIN sysschedules s ON s.schedule_id = js.schedule_id").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<&str, _>("name"), Some("tick"));
    assert_eq!(r[0].get::<i32, _>("freq_subday_type"), Some(2));
    assert!(
        scalar_i64(&mut c, "SELECT COUNT(*) FROM msdb.dbo.sysjobhistory")
            .await
            .unwrap()
            >= history
    );
    assert_eq!(
        scalar_i64(&mut c, "SELECT COUNT(*) FROM msdb.dbo.sysjobsteps").await,
        Some(2)
    );
    wait_for(DEADLINE, "the Agent session after the restart", || async {
        let mut c = sim.connect().await;
        scalar_i64(&mut c, "SELECT COUNT(*) FROM msdb.dbo.syssessions")
            .await
            .filter(|n| *n >= 3)
    })
    .await;
    ok(&mut c, "EXEC msdb.dbo.sp_delete_job @job_name = N'tick'").await;
    assert_eq!(
        scalar_i64(&mut c, "SELECT COUNT(*) FROM msdb.dbo.sysschedules").await,
        Some(0)
    );
}

/// msdb's refusal of a seconds interval under 10 (sp_verify_schedule: 14278 with the reason
/// FORMATMESSAGE(14200, '@freq_subday_interval')).
const INVALID_INTERVAL: &str = "The schedule for this job is invalid (reason: The specified '@freq_subday_interval' is invalid.).";

/// `sp_add_schedule` of a daily schedule every `seconds` seconds (`@freq_type` as given).
fn add_schedule(name: &str, freq_type: i32, seconds: i32) -> String {
    format!(
        "EXEC msdb.dbo.sp_add_schedule @schedule_name = N'{name}', @enabled = 1, @freq_type = {freq_type}, @freq_interval = 1, @freq_subday_type = 2, @freq_subday_interval = {seconds}"
    )
}

/// Runs a batch that must fail; the server's error.
async fn server_error(
    c: &mut tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>,
    sql: &str,
) -> tiberius::error::TokenError {
    let result = match c.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Err(tiberius::error::Error::Server(t)) => t,
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn seconds_schedules_under_ten_are_refused_unless_the_lab_flag_relaxes_it() {
    let dir = tempfile::tempdir().unwrap();
    // Default: SQL Server's rule.
    let sim = Sim::start(&dir.path().join("default"), &[]);
    let mut c = sim.connect().await;
    for n in [1, 9] {
        let e = server_error(&mut c, &add_schedule(&format!("every {n} s"), 4, n)).await;
        assert_eq!(
            (e.code(), e.class(), e.state()),
            (14278, 16, 1),
            "{n} s: {e:?}"
        );
        assert_eq!(e.message(), INVALID_INTERVAL, "{n} s");
    }
    // sp_add_jobschedule checks the same way, and a refused schedule leaves nothing behind.
    ok(&mut c, "EXEC msdb.dbo.sp_add_job @job_name = N'j'").await;
    let e = server_error(
        &mut c,
        "EXEC msdb.dbo.sp_add_jobschedule @job_name = N'j', @name = N'js', @freq_type = 4, @freq_interval = 1, @freq_subday_type = 2, @freq_subday_interval = 5",
    )
    .await;
    assert_eq!((e.code(), e.message()), (14278, INVALID_INTERVAL));
    let count = "SELECT COUNT(*) FROM msdb.dbo.sysschedules";
    assert_eq!(scalar_i64(&mut c, count).await, Some(0));
    assert_eq!(
        scalar_i64(&mut c, "SELECT COUNT(*) FROM msdb.dbo.sysjobschedules").await,
        Some(0)
    );
    // 10 seconds is SQL Server's minimum and is stored as given.
    ok(&mut c, &add_schedule("every 10 s", 4, 10)).await;
    let r = rows(&mut c, "SELECT freq_subday_type, freq_subday_interval FROM msdb.dbo.sysschedules WHERE name = N'every 10 s'").await;
    assert_eq!(
        (r[0].get::<i32, _>(0), r[0].get::<i32, _>(1)),
        (Some(2), Some(10))
    );
    // A one-time schedule's subday fields are zeroed before the check, as msdb does.
    ok(&mut c, &add_schedule("once", 1, 1)).await;
    let r = rows(&mut c, "SELECT freq_subday_type, freq_subday_interval FROM msdb.dbo.sysschedules WHERE name = N'once'").await;
    assert_eq!(
        (r[0].get::<i32, _>(0), r[0].get::<i32, _>(1)),
        (Some(0), Some(0))
    );

    // The lab-only deviation: 1 second accepted, less still refused.
    let lab = Sim::start(&dir.path().join("lab"), &["--lab-short-schedules"]);
    let mut c = lab.connect().await;
    ok(&mut c, &add_schedule("every 1 s", 4, 1)).await;
    let r = rows(
        &mut c,
        "SELECT freq_subday_interval FROM msdb.dbo.sysschedules WHERE name = N'every 1 s'",
    )
    .await;
    assert_eq!(r[0].get::<i32, _>(0), Some(1));
    let e = server_error(&mut c, &add_schedule("every 0 s", 4, 0)).await;
    assert_eq!((e.code(), e.message()), (14278, INVALID_INTERVAL));
}
