//! `failbackctl preflight` against real processes: a coordinator (standalone), three agents, two
//! sqlsim instances with log shipping primary → backup running on 1-second schedules (set up with
//! the SSMS script of pchat-dr.md §6.7, as a DBA would), and lyncsim's CMS with the pool Normal.
//!
//! A healthy pool is ready in both directions (exit 0) and preflight changes nothing but for its
//! one documented write, the engine-account probe (a COPY_ONLY backup of model to the share,
//! deleted after). Then one
//! condition per test makes it not ready (exit 3) and the failing check names the problem and
//! what to fix: the backup instance's SQL Server Agent stopped; the Agent account denied the
//! share (the copy job, which runs as that account, fails); log shipping stale (the primary's
//! backup job disabled, `--max-log-age 20s`); a log backup missing between the last restored one
//! and the next (restore job disabled, one file deleted from the share and the copy folder); low
//! disk (`--free-space-factor` so large that no volume holds database size × factor); the backup
//! instance's Database Engine account denied the share (`sqlsim.engine_access`), which only the
//! failback direction's `engine_share_write` probe sees.
//!
//! The lab's share and copy folder are POSIX paths under the agents' files root, so the Agent
//! account's access is judged by the copy job's last outcome (check_agent_access needs drive or
//! UNC paths; its own test is in agent_logship.rs).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_tests::harness::fleet::OPERATOR;
use failback_tests::harness::normal_pool::{NormalPool, Options, POOL, PRIMARY, normal_pool};
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};
use failback_tests::harness::wait_for;
use serde_json::Value;

const ADMIN: &str = "simadmin";
const ADMIN_PW: &str = "Adm1n-Pa55!";
/// Staleness limit given to every preflight call: ample for 1-second log shipping.
const MAX_LOG_AGE: &str = "20s";
const DEADLINE: Duration = Duration::from_secs(90);

type Lab = NormalPool;

async fn sa(sim: &SqlSim, sql: &str) -> Vec<tiberius::Row> {
    sim.batch_as(("sa", SA_PASSWORD), "master", sql)
        .await
        .unwrap()
}

async fn admin(sim: &SqlSim, sql: &str) {
    sim.batch_as((ADMIN, ADMIN_PW), "master", sql)
        .await
        .unwrap();
}

/// A pool in the Normal state with log shipping running, every process started and connected,
/// and preflight reporting it ready.
async fn healthy_lab() -> Lab {
    let lab = normal_pool(Options {
        sim_args: ["--admin-login", ADMIN, "--admin-password", ADMIN_PW]
            .map(String::from)
            .to_vec(),
        seed_messages: vec!["hello".into()],
        ..Options::default()
    })
    .await
    .unwrap();
    // Ready, without a warning, once the first logs are backed up, copied and restored (before
    // that the copy job has no outcome and the copy folder is empty: warnings, exit 0).
    wait_preflight(&lab, &[], "the healthy pool to be ready", |code, doc| {
        code == 0 && !doc.to_string().contains("\"status\":\"warn\"")
    })
    .await;
    lab
}

/// `failbackctl preflight --pool POOL --max-log-age 20s --output json EXTRA…`: (exit code, doc).
async fn preflight(lab: &Lab, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "preflight",
        "--pool",
        POOL,
        "--max-log-age",
        MAX_LOG_AGE,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = lab.fleet.ctl(OPERATOR, &args).await.unwrap();
    let doc = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("preflight printed no JSON ({e}): {out:?}"));
    (out.code, doc)
}

/// Polls preflight until `done(code, doc)`; returns the last answer.
async fn wait_preflight(
    lab: &Lab,
    extra: &[&str],
    what: &str,
    done: impl Fn(i32, &Value) -> bool,
) -> (i32, Value) {
    let last = std::sync::Mutex::new((0, Value::Null));
    let r = wait_for(what, DEADLINE, || async {
        let (code, doc) = preflight(lab, extra).await;
        let hit = done(code, &doc);
        *last.lock().unwrap() = (code, doc.clone());
        hit.then_some((code, doc))
    })
    .await;
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}; last answer: {:#}", last.lock().unwrap().1),
    }
}

/// Every check of `direction` named `name`.
fn checks<'a>(doc: &'a Value, direction: &str, name: &str) -> Vec<&'a Value> {
    doc["pools"][0]["directions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["direction"] == direction)
        .flat_map(|d| d["checks"].as_array().unwrap())
        .filter(|c| c["name"] == name)
        .collect()
}

/// The failed check of `direction` named `name` whose target contains `target`, if any.
fn failed<'a>(doc: &'a Value, direction: &str, name: &str, target: &str) -> Option<&'a Value> {
    checks(doc, direction, name)
        .into_iter()
        .find(|c| c["status"] == "fail" && c["target"].as_str().unwrap().contains(target))
}

/// Waits until `name` fails, then checks the exit code, the fix and the human table.
async fn assert_fails(
    lab: &Lab,
    extra: &[&str],
    direction: &str,
    name: &str,
    target: &str,
) -> Value {
    let (code, doc) = wait_preflight(lab, extra, &format!("{name} to fail"), |_, d| {
        failed(d, direction, name, target).is_some()
    })
    .await;
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(doc["ready"], false, "{doc:#}");
    let c = failed(&doc, direction, name, target).unwrap().clone();
    assert!(!c["fix"].as_str().unwrap().is_empty(), "{c:#}");
    assert!(!c["observed"].as_str().unwrap().is_empty(), "{c:#}");
    // The table names the problem and the fix too. Polled like the JSON above: a job run
    // already under way when a test disabled its job (SQL Server does not stop it) can land
    // one more file between the two invocations and briefly make the pool ready again.
    let mut args = vec!["preflight", "--pool", POOL, "--max-log-age", MAX_LOG_AGE];
    args.extend_from_slice(extra);
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = lab.fleet.ctl(OPERATOR, &args).await.unwrap();
        if out.code == 3 && out.stdout.contains(&format!("FAIL {name}")) {
            break out;
        }
        if std::time::Instant::now() > until {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stdout.contains("NOT READY"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("FAIL {name}")),
        "{}",
        out.stdout
    );
    c
}

/// The one statement preflight sends that writes: the engine-account probe, FB-3's BACKUP
/// statement for `model` WITH COPY_ONLY to a probe file the agent deletes (the database is an
/// RPC parameter, so the logged text is the same as FB-3's; `probe_files` proves where it went).
fn is_probe(text: &str) -> bool {
    text.starts_with("BACKUP DATABASE @P1 TO DISK = @P2") && text.contains("COPY_ONLY")
}

/// Probe files left in the share.
fn probe_files(lab: &Lab) -> Vec<String> {
    std::fs::read_dir(&lab.share)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("failback_engine_probe_"))
        .collect()
}

/// Statements that change something (what preflight must never send), besides the probe.
fn writes(sim: &SqlSim, from: usize) -> Vec<String> {
    sim.statements()
        .into_iter()
        .skip(from)
        // The log shipping jobs keep running on their 1-second schedules while preflight
        // reads: what SQL Server Agent ran is the pool's own work, not preflight's.
        .filter(|s| s.kind != "agent")
        .map(|s| s.text)
        .filter(|t| !is_probe(t))
        .filter(|t| {
            let u = t.trim_start().to_ascii_uppercase();
            [
                "ALTER",
                "KILL",
                "DROP",
                "CREATE",
                "INSERT",
                "BACKUP",
                "RESTORE DATABASE",
                "RESTORE LOG",
            ]
            .iter()
            .any(|w| u.starts_with(w))
                || [
                    "SP_ADD",
                    "SP_DELETE",
                    "SP_UPDATE",
                    "SP_START_JOB",
                    "SET PARTNER",
                ]
                .iter()
                .any(|w| u.contains(w))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_pool_is_ready_and_nothing_changes() {
    let lab = healthy_lab().await;
    let (p0, b0) = (
        lab.primary.statements().len(),
        lab.backup.statements().len(),
    );
    let (code, doc) = preflight(&lab, &[]).await;
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["ready"], true, "{doc:#}");
    let pool = &doc["pools"][0];
    assert_eq!(pool["pool_state"], "Normal", "{doc:#}");
    let dirs = pool["directions"].as_array().unwrap();
    assert_eq!(dirs.len(), 2);
    assert_eq!(
        (&dirs[0]["direction"], &dirs[0]["next"]),
        (&Value::from("failover"), &Value::from(true))
    );
    assert_eq!(
        (&dirs[1]["direction"], &dirs[1]["next"]),
        (&Value::from("failback"), &Value::from(false))
    );
    // Every check the issue lists is there and ok for the direction the pool is in.
    for name in [
        "agent_connected",
        "pool_state",
        "active_servers",
        "sql_instance",
        "database",
        "mirroring",
        "sql_agent_service",
        "sql_agent_access",
        "log_backup",
        "log_copy",
        "log_restore",
        "restore_latency",
        "rpo_estimate",
        "uncopied_files",
        "lsn_chain",
        "free_space_copy",
    ] {
        let c = checks(&doc, "failover", name);
        assert!(!c.is_empty(), "{name}: {doc:#}");
        for c in c {
            assert_eq!(c["status"], "ok", "{name}: {c:#}");
        }
    }
    let chain = checks(&doc, "failover", "lsn_chain")[0];
    assert!(
        chain["observed"]
            .as_str()
            .unwrap()
            .contains("continue from mgc_"),
        "{chain:#}"
    );
    let space = checks(&doc, "failback", "free_space_full_backup")[0];
    assert_eq!(space["status"], "ok", "{space:#}");
    assert!(
        space["observed"]
            .as_str()
            .unwrap()
            .contains("newest full backup of mgc 2.0 MiB"),
        "sized by the seed the backup instance restored (the lab's 2 MB database): {space:#}"
    );
    assert!(
        space["threshold"]
            .as_str()
            .unwrap()
            .contains("FB-3's backup and FB-5's seed: 2 × 2.0 MiB"),
        "{space:#}"
    );
    // Failback applies after a failover: its state checks are skipped, the rest hold.
    assert_eq!(checks(&doc, "failback", "pool_state")[0]["status"], "skip");
    assert_eq!(checks(&doc, "failback", "log_backup").len(), 0);

    // Both engines wrote their probe backup of model to the share (FB-3's and FB-5's writer).
    for target in ["backup", "primary"] {
        let c = checks(&doc, "failback", "engine_share_write")
            .into_iter()
            .find(|c| c["target"].as_str().unwrap().contains(target))
            .unwrap();
        assert_eq!(c["status"], "ok", "{c:#}");
    }
    // Preflight only read, besides one probe backup per instance whose file is gone: no other
    // statement that changes anything reached either instance.
    assert_eq!(writes(&lab.primary, p0), Vec::<String>::new());
    assert_eq!(writes(&lab.backup, b0), Vec::<String>::new());
    for sim in [&lab.primary, &lab.backup] {
        let probes = sim
            .statements()
            .into_iter()
            .filter(|s| s.kind != "agent" && is_probe(&s.text))
            .count();
        assert!(probes >= 1, "the probe ran");
    }
    assert_eq!(probe_files(&lab), Vec::<String>::new(), "probes deleted");

    // --all selects the same pool; an unknown pool is invalid input (exit 2).
    let out = lab
        .fleet
        .ctl(
            OPERATOR,
            &["preflight", "--all", "--max-log-age", MAX_LOG_AGE],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("1 pool(s) ready"), "{}", out.stdout);
    let out = lab
        .fleet
        .ctl(OPERATOR, &["preflight", "--pool", "nope.lab.local"])
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("pchat01.lab.local"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_server_agent_stopped_is_not_ready() {
    let lab = healthy_lab().await;
    admin(
        &lab.backup,
        "EXEC sqlsim.service N'SQL Server Agent', N'Stopped'",
    )
    .await;
    let c = assert_fails(&lab, &[], "failover", "sql_agent_service", "backup").await;
    assert!(c["observed"].as_str().unwrap().contains("Stopped"), "{c:#}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("start SQL Server Agent"),
        "{c:#}"
    );
    // The same finding holds for failback (FB-5 runs Agent jobs).
    let (_, doc) = preflight(&lab, &[]).await;
    assert!(
        failed(&doc, "failback", "sql_agent_service", "backup").is_some(),
        "{doc:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_account_without_share_access_is_not_ready() {
    let lab = healthy_lab().await;
    admin(
        &lab.backup,
        &format!(
            "EXEC sqlsim.agent_access N'{}', N'none'",
            lab.share.display()
        ),
    )
    .await;
    let c = assert_fails(&lab, &[], "failover", "sql_agent_access", "backup").await;
    let observed = c["observed"].as_str().unwrap();
    assert!(
        observed.contains("LSCopy_sql01.dc1.lab_mgc")
            && observed.contains("failed")
            && observed.contains("the Agent account's access is the likely cause"),
        "{c:#}"
    );
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains("grant") && fix.contains(&lab.share.display().to_string()),
        "{c:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_account_without_share_write_is_not_ready() {
    let lab = healthy_lab().await;
    // The backup instance's Database Engine account may not write the share (the Agent
    // account still may: log shipping's copy job keeps working, so only the engine check
    // can see it).
    let share = lab.share.display().to_string();
    admin(
        &lab.backup,
        &format!("EXEC sqlsim.engine_access N'{share}', N'none'"),
    )
    .await;
    let c = assert_fails(&lab, &[], "failback", "engine_share_write", "backup").await;
    let observed = c["observed"].as_str().unwrap();
    assert!(
        observed.contains(r"NT Service\MSSQL")
            && observed.contains(&share)
            && observed.contains("Operating system error 5(Access is denied.)"),
        "{c:#}"
    );
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains(r"grant NT Service\MSSQL")
            && fix.contains("HOST$")
            && fix.contains(&format!("Modify on the share {share}"))
            && fix.contains("FB-3"),
        "{c:#}"
    );
    let (_, doc) = preflight(&lab, &[]).await;
    // The primary's engine still writes; failover has no engine write to the share.
    let primary = checks(&doc, "failback", "engine_share_write")
        .into_iter()
        .find(|c| c["target"].as_str().unwrap().contains("primary"))
        .unwrap();
    assert_eq!(primary["status"], "ok", "{primary:#}");
    assert!(checks(&doc, "failover", "engine_share_write").is_empty());
    assert_eq!(
        probe_files(&lab),
        Vec::<String>::new(),
        "nothing left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_log_shipping_is_not_ready() {
    let lab = healthy_lab().await;
    sa(
        &lab.primary,
        "EXEC msdb.dbo.sp_update_job @job_name = N'LSBackup_mgc', @enabled = 0",
    )
    .await;
    let c = assert_fails(&lab, &[], "failover", "log_backup", "primary").await;
    assert!(c["observed"].as_str().unwrap().contains("old"), "{c:#}");
    assert!(c["fix"].as_str().unwrap().contains("LSBackup_mgc"), "{c:#}");
    let (_, doc) = preflight(&lab, &[]).await;
    let rpo = checks(&doc, "failover", "rpo_estimate")[0];
    assert_eq!(rpo["status"], "fail", "{rpo:#}");
}

/// File names `mgc_*.trn` in a folder, sorted (their stamps sort by time).
fn trn_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mgc_") && n.ends_with(".trn"))
        .collect();
    v.sort();
    v
}

async fn last_restored(lab: &Lab) -> String {
    let r = sa(
        &lab.backup,
        "SELECT last_restored_file FROM msdb.dbo.log_shipping_secondary_databases",
    )
    .await;
    let path = r[0].get::<&str, _>(0).unwrap_or_default().to_string();
    path.rsplit('/').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn gap_in_the_log_chain_is_not_ready() {
    let lab = healthy_lab().await;
    // Restores stop; backups and copies go on.
    sa(
        &lab.backup,
        &format!(
            "EXEC msdb.dbo.sp_update_job @job_name = N'LSRestore_{PRIMARY}_mgc', @enabled = 0"
        ),
    )
    .await;
    // Once the restored point is stable and three later files are copied, delete the middle
    // one everywhere: the chain from the restored LSN now has a hole.
    let victim = wait_for("three unrestored copied files", DEADLINE, || async {
        let before = last_restored(&lab).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let restored = last_restored(&lab).await;
        if restored != before || restored.is_empty() {
            return None;
        }
        let later: Vec<String> = trn_files(&lab.copy)
            .into_iter()
            .filter(|n| n.as_str() > restored.as_str())
            .collect();
        (later.len() >= 3).then(|| later[1].clone())
    })
    .await
    .unwrap();
    std::fs::remove_file(lab.share.join(&victim)).unwrap();
    std::fs::remove_file(lab.copy.join(&victim)).unwrap();
    let c = assert_fails(&lab, &[], "failover", "lsn_chain", "").await;
    let observed = c["observed"].as_str().unwrap();
    assert!(observed.contains("gap after mgc_"), "{c:#}");
    assert!(c["fix"].as_str().unwrap().contains("missing"), "{c:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn low_disk_is_not_ready() {
    let lab = healthy_lab().await;
    // No volume holds 8 MiB × 10^12: the share is "too small" for FB-3's full backup.
    let c = assert_fails(
        &lab,
        &["--free-space-factor", "1e12"],
        "failback",
        "free_space_full_backup",
        &lab.share.display().to_string(),
    )
    .await;
    assert!(
        c["threshold"].as_str().unwrap().contains("× 1000000000000"),
        "{c:#}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("free at least"),
        "{c:#}"
    );
    // Out-of-range factors are refused as invalid input.
    let out = lab
        .fleet
        .ctl(
            OPERATOR,
            &["preflight", "--pool", POOL, "--free-space-factor", "0.5"],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{out:?}");
}
