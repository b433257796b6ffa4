//! The failback runbook end to end in standalone mode, with real processes: a coordinator (no
//! etcd), three agents, two sqlsim instances and lyncsim's CMS. The pool is built in the
//! failed-over state (the backup instance holds `mgc` with messages, the primary was rebuilt with
//! an empty `mgc`, the pool is FailedOver with the DC2 chat server active); `failbackctl run
//! failback` brings it back: the primary `mgc` ONLINE with every message, the pool Normal with
//! the DC1 chat server active, one BACKUP on the backup instance and one RESTORE on the primary.
//! A second test: without `--yes` the run waits for approval before FB-4; an operator-only
//! certificate cannot approve, the approver can.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_tests::harness::fleet::{APPROVER, Fleet, OPERATOR, three_agent_topology};
use failback_tests::harness::process::bin;
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};
use failback_tests::harness::wait_for;

const PRIMARY: &str = "sql01.dc1.lab";
const BACKUP: &str = "sql01.dc2.lab";
const SHELL_DC1: &str = "fe01.dc1.lab";
const POOL: &str = "pchat01.lab.local";
const MESSAGES: usize = 20;

async fn batch(sim: &SqlSim, db: &str, sql: &str) -> Vec<tiberius::Row> {
    sim.batch_as(("sa", SA_PASSWORD), db, sql).await.unwrap()
}

fn sql_section(sim: &SqlSim, pw: &std::path::Path) -> String {
    sim.agent_section(pw)
}

/// Runs a script in lyncsim against the fleet's CMS (as an administrator would in the shell).
async fn lync(fleet: &Fleet, script: &str) {
    let out = tokio::process::Command::new(bin("lyncsim").unwrap())
        .args([
            "--store",
            &fleet.cms_store().display().to_string(),
            "--host",
            "admin",
            "-NoProfile",
            "-Command",
            script,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "lyncsim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Lab {
    fleet: Fleet,
    primary: SqlSim,
    backup: SqlSim,
}

/// A pool in the failed-over state, every process running and connected.
async fn failed_over_lab() -> Lab {
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    // The share and copy folders live under the agents' files root (the files backend hashes
    // the backup there; sqlsim reads and writes the same paths).
    let files = fleet.files_root();
    let topology = topology
        .replace("/lab/share", &files.join("share").display().to_string())
        .replace("/lab/copy", &files.join("copy").display().to_string());
    std::fs::write(fleet.dir.join("topology.toml"), topology).unwrap();
    std::fs::create_dir_all(files.join("share")).unwrap();
    std::fs::create_dir_all(files.join("copy")).unwrap();
    // Short drain and retry pauses: nothing is connected to the backup databases.
    let coord = fleet.dir.join("coordinator.toml");
    let mut text = std::fs::read_to_string(&coord).unwrap();
    text.push_str("\n[runbook]\ndrain_grace = \"2s\"\ndrain_poll = \"200ms\"\nretry_backoff = \"500ms\"\nlatency_limit = \"500ms\"\n");
    std::fs::write(&coord, text).unwrap();

    let mut primary = SqlSim::new(PRIMARY, &fleet.dir.join("sql-primary")).unwrap();
    let mut backup = SqlSim::new(BACKUP, &fleet.dir.join("sql-backup")).unwrap();
    primary.start().await.unwrap();
    backup.start().await.unwrap();
    let pw = fleet.dir.join("sql-password");
    std::fs::write(&pw, SA_PASSWORD).unwrap();
    fleet
        .configure_agent(PRIMARY, &sql_section(&primary, &pw))
        .unwrap();
    // sql01.dc2.lab is both the backup SQL agent and the DC2 Lync shell.
    let backup_extra = format!(
        "{}\n{}",
        sql_section(&backup, &pw),
        fleet.lync_section(BACKUP).unwrap()
    );
    fleet.configure_agent(BACKUP, &backup_extra).unwrap();
    let shell = fleet.lync_section(SHELL_DC1).unwrap();
    fleet.configure_agent(SHELL_DC1, &shell).unwrap();

    // Failed over: the backup instance holds the pool's data, the primary was rebuilt empty.
    batch(
        &backup,
        "master",
        "CREATE DATABASE mgc; ALTER DATABASE mgc SET RECOVERY FULL",
    )
    .await;
    for i in 0..MESSAGES {
        batch(
            &backup,
            "mgc",
            &format!(
                "INSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'a', N'message {i}')"
            ),
        )
        .await;
    }
    batch(&primary, "master", "CREATE DATABASE mgc").await;
    fleet
        .init_cms(POOL, &["pc01.dc1.lab"], &["pc01.dc2.lab"])
        .await
        .unwrap();
    let (state_id, service_id) = (
        format!("service:{POOL}"),
        format!("PersistentChatServer:{POOL}"),
    );
    lync(
        &fleet,
        &format!(
            "Import-Module 'SkypeForBusiness'; \
             Set-CsPersistentChatState -Identity '{state_id}' -PoolState FailedOver -Force; \
             Set-CsPersistentChatActiveServer -Identity '{service_id}' -ActiveServers pc01.dc2.lab -Force"
        ),
    )
    .await;

    fleet.start_coordinator().await.unwrap();
    fleet.start_agents().unwrap();
    fleet
        .wait_connected(&[PRIMARY, BACKUP, SHELL_DC1], true, Duration::from_secs(30))
        .await
        .unwrap();
    Lab {
        fleet,
        primary,
        backup,
    }
}

/// `failbackctl status RUN --output json`, parsed.
async fn status(fleet: &Fleet, run: &str) -> serde_json::Value {
    let out = fleet
        .ctl(OPERATOR, &["status", run, "--output", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

/// Polls the run until its status is one of `wanted` (or it finished), returns the last detail.
async fn wait_status(fleet: &Fleet, run: &str, wanted: &[&str]) -> serde_json::Value {
    let last = std::sync::Mutex::new(serde_json::Value::Null);
    let r = wait_for(
        &format!("run {run} to reach {wanted:?}"),
        Duration::from_secs(120),
        || async {
            let d = status(fleet, run).await;
            let s = d["run"]["status"].as_str().unwrap_or_default().to_string();
            *last.lock().unwrap() = d.clone();
            (wanted.contains(&s.as_str())
                || ["succeeded", "failed", "aborted"].contains(&s.as_str()))
            .then_some(d)
        },
    )
    .await;
    match r {
        Ok(d) => d,
        Err(e) => panic!("{e}: last status {:#}", last.lock().unwrap()),
    }
}

/// Everything the failback must leave behind.
async fn assert_failed_back(lab: &Lab, detail: &serde_json::Value) {
    assert_eq!(detail["run"]["status"], "succeeded", "{detail:#}");
    // The run record: FB-4 restored exactly the file FB-3 wrote (same SHA-256 and last LSN).
    let o = &detail["pools"][0]["outputs"];
    assert_eq!(o["fb3_backup"]["status"], "succeeded", "{detail:#}");
    assert_eq!(o["fb4_restore"]["status"], "succeeded", "{detail:#}");
    assert_eq!(
        o["fb3_backup"]["output"]["sha256"], o["fb4_restore"]["output"]["sha256"],
        "{detail:#}"
    );
    assert_eq!(
        o["fb3_backup"]["output"]["last_lsn"], o["fb4_restore"]["output"]["last_lsn"],
        "{detail:#}"
    );
    // The lab's share and copy folder are POSIX paths: FB-1's Agent-job access check (a CmdExec
    // job) cannot run there and says so.
    assert_eq!(
        o["fb1_clear_active"]["output"]["agent_access_check"]["checked"], false,
        "{detail:#}"
    );
    for step in ["fb1_clear_active", "fb6_activate", "fb7_pool_normal"] {
        assert_eq!(o[step]["status"], "succeeded", "{step}: {detail:#}");
    }
    let rows = batch(&lab.primary, "mgc", "SELECT COUNT(*) FROM dbo.Messages").await;
    let n: i32 = rows[0].get(0).unwrap();
    assert_eq!(n as usize, MESSAGES, "{detail:#}");
    let rows = batch(
        &lab.primary,
        "master",
        "SELECT state_desc FROM sys.databases WHERE name = 'mgc'",
    )
    .await;
    assert_eq!(rows[0].get::<&str, _>(0), Some("ONLINE"));

    let out = lab
        .fleet
        .ctl(OPERATOR, &["inspect", SHELL_DC1, "--output", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let items = doc["items"].as_array().unwrap();
    let item = |name: &str| {
        items
            .iter()
            .find(|i| i["operation"] == name)
            .unwrap_or_else(|| panic!("{doc:#}"))
            .clone()
    };
    assert_eq!(item("pool_state")["result"]["state"], "Normal", "{doc:#}");
    assert_eq!(
        item("pool_servers")["result"]["active_servers"],
        serde_json::json!(["pc01.dc1.lab"]),
        "{doc:#}"
    );

    let count = |sim: &SqlSim, prefix: &str| {
        sim.statements()
            .iter()
            .filter(|s| s.text.trim_start().to_ascii_uppercase().starts_with(prefix))
            .count()
    };
    assert_eq!(count(&lab.backup, "BACKUP DATABASE"), 1);
    assert_eq!(count(&lab.primary, "RESTORE DATABASE"), 1);
    // FB-5: one seed backup of the primary, restored once WITH NORECOVERY on the backup.
    let seed = |sim: &SqlSim, prefix: &str| {
        sim.statements()
            .into_iter()
            .filter(|s| s.text.trim_start().to_ascii_uppercase().starts_with(prefix))
            .collect::<Vec<_>>()
    };
    let seeds = seed(&lab.primary, "BACKUP DATABASE");
    assert_eq!(seeds.len(), 1, "{seeds:#?}");
    assert!(
        seeds[0].text.to_ascii_uppercase().contains("COPY_ONLY"),
        "{seeds:#?}"
    );
    let seeded = seed(&lab.backup, "RESTORE DATABASE");
    assert_eq!(seeded.len(), 1, "{seeded:#?}");
    assert!(
        seeded[0].text.to_ascii_uppercase().contains("NORECOVERY"),
        "{seeded:#?}"
    );

    // FB-5: log shipping primary → backup configured, one cycle restored a log on the backup.
    let fb5 = &o["fb5_log_shipping"];
    assert_eq!(fb5["status"], "succeeded", "{detail:#}");
    let restored = fb5["output"]["cycle"]["last_restored_file"]
        .as_str()
        .unwrap_or_default();
    assert!(!restored.is_empty(), "{detail:#}");
    let rows = batch(
        &lab.backup,
        "master",
        "SELECT state_desc FROM sys.databases WHERE name = 'mgc'",
    )
    .await;
    assert_eq!(rows[0].get::<&str, _>(0), Some("RESTORING"));
    let out = lab
        .fleet
        .ctl(OPERATOR, &["inspect", BACKUP, "--output", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ls = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["operation"] == "log_shipping_status")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(
        ls["result"]["secondary"]["primary_server"], PRIMARY,
        "{ls:#}"
    );
    assert_eq!(
        ls["result"]["secondary"]["last_restored_file"], restored,
        "{ls:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_failback_with_yes() {
    let lab = failed_over_lab().await;
    let out = lab
        .fleet
        .ctl(
            APPROVER,
            &[
                "run", "failback", "--pool", POOL, "--yes", "--output", "json",
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let run: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let run = run["run_id"].as_str().unwrap().to_string();
    let detail = wait_status(&lab.fleet, &run, &[]).await;
    assert_failed_back(&lab, &detail).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_failback_waits_for_an_approver() {
    let lab = failed_over_lab().await;
    let out = lab
        .fleet
        .ctl(
            OPERATOR,
            &["run", "failback", "--pool", POOL, "--output", "json"],
        )
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let run: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let run = run["run_id"].as_str().unwrap().to_string();
    let detail = wait_status(&lab.fleet, &run, &["awaiting_approval"]).await;
    assert_eq!(detail["run"]["status"], "awaiting_approval", "{detail:#}");
    let pool = &detail["pools"][0];
    assert_eq!(pool["step"], "fb4_restore", "{detail:#}");
    assert_eq!(
        lab.primary
            .statements()
            .iter()
            .filter(|s| s.text.to_ascii_uppercase().contains("RESTORE DATABASE"))
            .count(),
        0
    );

    let out = lab.fleet.ctl(OPERATOR, &["approve", &run]).await.unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    let d = status(&lab.fleet, &run).await;
    assert_eq!(d["run"]["status"], "awaiting_approval", "{d:#}");

    let out = lab.fleet.ctl(APPROVER, &["approve", &run]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let detail = wait_status(&lab.fleet, &run, &[]).await;
    assert_failed_back(&lab, &detail).await;
}
