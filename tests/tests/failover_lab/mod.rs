//! The failover tests' lab: a pool in the normal state with log shipping running
//! ([`normal_pool`]), messages written on the primary, and the moves those tests make on it
//! (wait for a log backup or restore past a mark, stop a job, lose DC1). Shared by
//! failover_e2e and failover_faults.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use failback_tests::harness::failed_over::FAST_RUNBOOK;
use failback_tests::harness::fleet::{CtlOutput, Fleet, OPERATOR};
use failback_tests::harness::normal_pool::{
    NormalPool, Options, POOL, PRIMARY, SHELL_DC1, normal_pool,
};
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};
use failback_tests::harness::wait_for;

/// How long the lab waits for log shipping.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub async fn batch(sim: &SqlSim, db: &str, sql: &str) -> Vec<tiberius::Row> {
    sim.batch_as(("sa", SA_PASSWORD), db, sql).await.unwrap()
}

pub fn numeric(row: &tiberius::Row, col: usize) -> i64 {
    row.try_get::<tiberius::numeric::Numeric, _>(col)
        .ok()
        .flatten()
        .map_or(0, |n| n.value() as i64)
}

pub struct Lab {
    pub fleet: Fleet,
    pub primary: SqlSim,
    pub backup: SqlSim,
    pub share: PathBuf,
    pub copy: PathBuf,
    pub written: usize,
}

impl Lab {
    /// Writes `n` numbered messages on the primary; returns the primary's last log backup LSN
    /// right after them (a log backup that ends later holds them).
    pub async fn write(&mut self, n: usize) -> i64 {
        for _ in 0..n {
            batch(
                &self.primary,
                "mgc",
                &format!(
                    "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'message {}')",
                    self.written
                ),
            )
            .await;
            self.written += 1;
        }
        let r = batch(&self.primary, "master", "SELECT last_log_backup_lsn FROM sys.database_recovery_status WHERE database_id = DB_ID(N'mgc')").await;
        numeric(&r[0], 0)
    }

    /// Waits until the primary's backup job has written a log backup past `mark`.
    pub async fn backed_up(&self, mark: i64) {
        wait_for("a log backup on the share past the mark", DEADLINE, || async {
            let r = batch(&self.primary, "master", "SELECT last_log_backup_lsn FROM sys.database_recovery_status WHERE database_id = DB_ID(N'mgc')").await;
            (numeric(&r[0], 0) > mark).then_some(())
        })
        .await
        .unwrap();
    }

    /// Waits until the backup instance has restored a log past `mark`.
    pub async fn restored(&self, mark: i64) {
        wait_for("the backup to restore a log past the mark", DEADLINE, || async {
            let r = batch(&self.backup, "master", "SELECT MAX(b.last_lsn) FROM msdb.dbo.restorehistory r JOIN msdb.dbo.backupset b ON b.backup_set_id = r.backup_set_id WHERE r.destination_database_name = N'mgc' AND r.restore_type = N'L'").await;
            r.first().is_some_and(|row| numeric(row, 0) > mark).then_some(())
        })
        .await
        .unwrap();
    }

    /// Enables or disables one of the backup instance's log shipping jobs.
    pub async fn backup_job(&self, job: &str, enabled: bool) {
        batch(
            &self.backup,
            "master",
            &format!(
                "EXEC msdb.dbo.sp_update_job @job_name = N'{job}_{PRIMARY}_mgc', @enabled = {}",
                u8::from(enabled)
            ),
        )
        .await;
    }

    /// DC1 is lost: the primary instance and both DC1 agents are killed.
    pub async fn lose_dc1(&mut self) {
        self.primary.kill();
        self.fleet.kill_agent(PRIMARY);
        self.fleet.kill_agent(SHELL_DC1);
        self.fleet
            .wait_connected(&[PRIMARY, SHELL_DC1], false, DEADLINE)
            .await
            .unwrap();
    }

    /// Messages in the backup `mgc`.
    pub async fn backup_messages(&self) -> usize {
        let r = batch(&self.backup, "mgc", "SELECT COUNT(*) FROM dbo.Messages").await;
        r[0].get::<i32, _>(0).unwrap() as usize
    }

    pub async fn backup_state(&self) -> String {
        let r = batch(
            &self.backup,
            "master",
            "SELECT state_desc FROM sys.databases WHERE name = 'mgc'",
        )
        .await;
        r[0].get::<&str, _>(0).unwrap().to_string()
    }

    /// FirstLSN and LastLSN of a log backup, by a plain RESTORE HEADERONLY on the backup instance.
    pub async fn lsns_of(&self, path: &std::path::Path) -> (i64, i64) {
        let r = batch(
            &self.backup,
            "master",
            &format!("RESTORE HEADERONLY FROM DISK = N'{}'", path.display()),
        )
        .await;
        let col = |name: &str| {
            r[0].columns()
                .iter()
                .position(|c| c.name() == name)
                .unwrap()
        };
        (
            numeric(&r[0], col("FirstLSN")),
            numeric(&r[0], col("LastLSN")),
        )
    }

    /// `.trn` file names in a folder, sorted.
    pub fn logs(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".trn"))
            .collect();
        v.sort();
        v
    }
}

/// A pool in the normal state, log shipping primary → backup running (the backup `mgc` in
/// STANDBY between restores when `standby`), `m` messages shipped.
pub async fn normal_lab(m: usize, standby: bool) -> Lab {
    normal_lab_with(
        m,
        Options {
            standby,
            ..Options::default()
        },
    )
    .await
}

/// [`normal_lab`] built with `opts` (the fast runbook settings added to its coordinator TOML).
pub async fn normal_lab_with(m: usize, opts: Options) -> Lab {
    let NormalPool {
        fleet,
        primary,
        backup,
        share,
        copy,
    } = normal_pool(Options {
        coordinator_extra: format!("{FAST_RUNBOOK}{}", opts.coordinator_extra),
        ..opts
    })
    .await
    .unwrap();
    let mut lab = Lab {
        fleet,
        primary,
        backup,
        share,
        copy,
        written: 0,
    };
    let mark = lab.write(m).await;
    lab.restored(mark).await;
    lab
}

pub async fn status(fleet: &Fleet, run: &str) -> serde_json::Value {
    let out = fleet
        .ctl(OPERATOR, &["status", run, "--output", "json"])
        .await
        .unwrap();
    // 3 = the run failed or was aborted (still a status).
    assert!(out.code == 0 || out.code == 3, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

/// Polls the run until it finished; returns the last detail.
pub async fn finished(fleet: &Fleet, run: &str) -> serde_json::Value {
    let last = std::sync::Mutex::new(serde_json::Value::Null);
    let r = wait_for(
        &format!("run {run} to finish"),
        Duration::from_secs(120),
        || async {
            let d = status(fleet, run).await;
            let s = d["run"]["status"].as_str().unwrap_or_default().to_string();
            *last.lock().unwrap() = d.clone();
            ["succeeded", "failed", "aborted"]
                .contains(&s.as_str())
                .then_some(d)
        },
    )
    .await;
    match r {
        Ok(d) => d,
        Err(e) => panic!("{e}: last status {:#}", last.lock().unwrap()),
    }
}

/// `run failover --attest-primary-down <attest> … [extra] --yes` as `who`: the command's output.
pub async fn failover_ctl(fleet: &Fleet, who: &str, attest: &str, extra: &[&str]) -> CtlOutput {
    let mut args = vec![
        "run",
        "failover",
        "--pool",
        POOL,
        "--attest-primary-down",
        attest,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--yes", "--output", "json"]);
    fleet.ctl(who, &args).await.unwrap()
}
