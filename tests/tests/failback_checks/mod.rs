//! What a finished failback must leave behind, checked by every process-level failback test
//! (standalone, etcd with coordinator crashes, fleets in waves).
#![allow(dead_code, clippy::unwrap_used)]

use failback_tests::harness::failed_over::{FailedOverLab, MESSAGES};
use failback_tests::harness::fleet::OPERATOR;
use failback_tests::harness::sqlsim::{SA_PASSWORD, SqlSim};

async fn batch(sim: &SqlSim, db: &str, sql: &str) -> Vec<tiberius::Row> {
    sim.batch_as(("sa", SA_PASSWORD), db, sql).await.unwrap()
}

/// Everything the failback must leave behind.
pub async fn assert_failed_back(lab: &FailedOverLab, index: usize, detail: &serde_json::Value) {
    let pool = &lab.pools[index];
    let (shell_dc1, primary, dc1_server) = (
        "fe01.dc1.lab",
        pool.primary_agent.as_str(),
        format!("pc{:02}.dc1.lab", index + 1),
    );
    assert_eq!(detail["run"]["status"], "succeeded", "{detail:#}");
    // The run record: FB-4 restored exactly the file FB-3 wrote (same SHA-256 and last LSN).
    let o = &detail["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pool"] == pool.fqdn.as_str())
        .unwrap_or_else(|| panic!("{} not in {detail:#}", pool.fqdn))["outputs"];
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
    // FB-5's proof: the last restored log ends after the seed (issue #12, false proof).
    let fb5 = &o["fb5_log_shipping"];
    assert_eq!(fb5["status"], "succeeded", "{detail:#}");
    assert!(
        !fb5["output"]["cycle"]["last_restored_file"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{detail:#}"
    );
    for step in ["fb1_clear_active", "fb6_activate", "fb7_pool_normal"] {
        assert_eq!(o[step]["status"], "succeeded", "{step}: {detail:#}");
    }
    let rows = batch(&pool.primary, "mgc", "SELECT COUNT(*) FROM dbo.Messages").await;
    let n: i32 = rows[0].get(0).unwrap();
    assert_eq!(n as usize, MESSAGES, "{detail:#}");
    let rows = batch(
        &pool.primary,
        "master",
        "SELECT state_desc FROM sys.databases WHERE name = 'mgc'",
    )
    .await;
    assert_eq!(rows[0].get::<&str, _>(0), Some("ONLINE"));

    let out = lab
        .fleet
        .ctl(OPERATOR, &["inspect", shell_dc1, "--output", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let items = doc["items"].as_array().unwrap();
    let item = |name: &str| {
        items
            .iter()
            .find(|i| i["operation"] == name && i["result"]["pool_fqdn"] == pool.fqdn.as_str())
            .unwrap_or_else(|| panic!("{doc:#}"))
            .clone()
    };
    assert_eq!(item("pool_state")["result"]["state"], "Normal", "{doc:#}");
    assert_eq!(
        item("pool_servers")["result"]["active_servers"],
        serde_json::json!([dc1_server]),
        "{doc:#}"
    );

    // Only what the run sent: the fixture's own setup statements come first in each log.
    let sent = |primary: bool, prefix: &str| {
        let (sim, skip) = if primary {
            (&pool.primary, pool.setup_statements.0)
        } else {
            (&pool.backup, pool.setup_statements.1)
        };
        sim.statements()
            .into_iter()
            .skip(skip)
            .filter(|s| s.text.trim_start().to_ascii_uppercase().starts_with(prefix))
            .collect::<Vec<_>>()
    };
    // FB-1's engine-account probe is a COPY_ONLY backup of model with the same statement text
    // as FB-3's (the database is an RPC parameter): one probe and one FB-3 backup.
    let backups = sent(false, "BACKUP DATABASE");
    assert_eq!(backups.len(), 2, "FB-1's probe and FB-3: {backups:#?}");
    assert_eq!(sent(true, "RESTORE DATABASE").len(), 1);
    // FB-2 removed the backup's mirroring once, where the fixture mirrored it.
    if pool.mirror.is_some() {
        assert_eq!(sent(false, "ALTER DATABASE [MGC] SET PARTNER OFF").len(), 1);
    }
    // FB-4 froze the backup copy once; FB-5: one seed backup of the primary, restored once
    // WITH NORECOVERY on the backup.
    assert_eq!(sent(false, "ALTER DATABASE [MGC] SET READ_ONLY").len(), 1);
    let seed = |sim: &SqlSim, prefix: &str| sent(std::ptr::eq(sim, &pool.primary), prefix);
    // On the primary: FB-1's engine-account probe and FB-5's seed, both COPY_ONLY.
    let seeds = seed(&pool.primary, "BACKUP DATABASE");
    assert_eq!(seeds.len(), 2, "{seeds:#?}");
    assert!(
        seeds
            .iter()
            .all(|s| s.text.to_ascii_uppercase().contains("COPY_ONLY")),
        "{seeds:#?}"
    );
    let seeded = seed(&pool.backup, "RESTORE DATABASE");
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
        &pool.backup,
        "master",
        "SELECT state_desc FROM sys.databases WHERE name = 'mgc'",
    )
    .await;
    assert_eq!(rows[0].get::<&str, _>(0), Some("RESTORING"));
    let out = lab
        .fleet
        .ctl(
            OPERATOR,
            &["inspect", &pool.backup_agent, "--output", "json"],
        )
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
        ls["result"]["secondary"]["primary_server"], primary,
        "{ls:#}"
    );
    assert_eq!(
        ls["result"]["secondary"]["last_restored_file"], restored,
        "{ls:#}"
    );
}
