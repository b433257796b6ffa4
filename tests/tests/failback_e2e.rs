//! The failback runbook end to end in standalone mode, with real processes: a coordinator (no
//! etcd), three agents, two sqlsim instances and lyncsim's CMS. The pool is built in the
//! failed-over state (the backup instance holds `mgc` with messages, the primary was rebuilt with
//! an empty `mgc`, the pool is FailedOver with the DC2 chat server active); `failbackctl run
//! failback` brings it back: the primary `mgc` ONLINE with every message, the pool Normal with
//! the DC1 chat server active, one BACKUP on the backup instance and one RESTORE on the primary.
//! A second test: without `--yes` the run waits for approval before FB-4; an operator-only
//! certificate cannot approve, the approver can. A third: while the backup instance is the
//! mirroring MIRROR (its own mirror took over), preflight fails and the failback refuses before
//! any change, with what to do; likewise with a stale `@@SERVERNAME` on the primary or a backup
//! instance on a newer major version.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

mod failback_checks;

use failback_checks::assert_failed_back;
use failback_tests::harness::failed_over::{
    FailedOverLab, Options, failed_over, statements_starting,
};
use failback_tests::harness::fleet::{APPROVER, OPERATOR};
use failback_tests::harness::sqlsim::SA_PASSWORD;
use failback_tests::lab::sql::mirroring_role;

const POOL: &str = "pchat01.lab.local";
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn standalone_failback_with_yes() {
    let lab = failed_over(Options::default()).await.unwrap();
    let run = lab
        .start_failback(APPROVER, &["--pool", POOL, "--yes"])
        .await
        .unwrap();
    let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
    assert_failed_back(&lab, 0, &detail).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_failback_waits_for_an_approver() {
    let lab = failed_over(Options::default()).await.unwrap();
    let run = lab
        .start_failback(OPERATOR, &["--pool", POOL])
        .await
        .unwrap();
    let detail = lab
        .wait_status(&run, &["awaiting_approval"], DEADLINE)
        .await
        .unwrap();
    assert_eq!(detail["run"]["status"], "awaiting_approval", "{detail:#}");
    assert_eq!(detail["pools"][0]["step"], "fb4_restore", "{detail:#}");
    let primary = &lab.pools[0].primary;
    assert!(statements_starting(primary, "RESTORE DATABASE").is_empty());

    let out = lab.fleet.ctl(OPERATOR, &["approve", &run]).await.unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    let d = lab.status(&run).await.unwrap();
    assert_eq!(d["run"]["status"], "awaiting_approval", "{d:#}");

    let out = lab.fleet.ctl(APPROVER, &["approve", &run]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
    assert_failed_back(&lab, 0, &detail).await;
}

/// The backup instance is the mirroring MIRROR of `mgc` (its own mirror took over): SET PARTNER
/// OFF there would strand the live data on the mirror. Preflight fails the mirroring check, and
/// the failback refuses in FB-1, before its first change, saying how to make the backup the
/// principal again (issue #11 item 2). Without the check, FB-1 cleared the active servers and
/// FB-2 ran SET PARTNER OFF on the mirror.
#[tokio::test(flavor = "multi_thread")]
async fn failback_refuses_while_the_backup_is_the_mirror() {
    let lab = failed_over(Options {
        mirrored: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let pool = &lab.pools[0];
    let mirror = pool.mirror.as_ref().unwrap();
    // The backup's mirror takes over, as a manual failover (or a witness) does.
    pool.backup
        .batch_as(
            ("sa", SA_PASSWORD),
            "master",
            "ALTER DATABASE [mgc] SET PARTNER FAILOVER",
        )
        .await
        .unwrap();
    assert_eq!(
        mirroring_role(&pool.backup).await.unwrap().as_deref(),
        Some("MIRROR")
    );
    assert_eq!(
        mirroring_role(mirror).await.unwrap().as_deref(),
        Some("PRINCIPAL")
    );

    let out = lab
        .fleet
        .ctl(OPERATOR, &["preflight", "--pool", POOL, "--output", "json"])
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let check = doc["pools"][0]["directions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["direction"] == "failback")
        .flat_map(|d| d["checks"].as_array().unwrap())
        .find(|c| c["name"] == "mirroring")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(check["status"], "fail", "{doc:#}");
    assert!(
        check["observed"].as_str().unwrap().contains("MIRROR"),
        "{check:#}"
    );
    assert_ne!(out.code, 0, "{out:?}");

    let before = statement_counts(&lab);
    let run = lab
        .start_failback(APPROVER, &["--pool", POOL, "--yes"])
        .await
        .unwrap();
    let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
    assert_eq!(detail["run"]["status"], "failed", "{detail:#}");
    let fb1 = &detail["pools"][0]["outputs"]["fb1_clear_active"];
    assert_eq!(fb1["status"], "failed", "{detail:#}");
    let msg = fb1["error"].as_str().unwrap();
    for needle in [
        "MIRROR",
        mirror.name.as_str(),
        "nothing was changed",
        "SET PARTNER FAILOVER",
        "Invoke-CsDatabaseFailover",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    assert_nothing_changed(&lab, before).await;
    assert_eq!(
        mirroring_role(&pool.backup).await.unwrap().as_deref(),
        Some("MIRROR")
    );
}

/// Extra sqlsim arguments per pool index, as `Options` takes them.
type SimArgs = Vec<(usize, Vec<String>)>;

fn statement_counts(lab: &FailedOverLab) -> (usize, usize) {
    let pool = &lab.pools[0];
    (
        pool.backup.statements().len(),
        pool.primary.statements().len(),
    )
}

/// No statement but reads on either instance since `before`; the pool still FailedOver with
/// the DC2 chat server active.
async fn assert_nothing_changed(lab: &FailedOverLab, before: (usize, usize)) {
    let pool = &lab.pools[0];
    for (sim, from) in [(&pool.backup, before.0), (&pool.primary, before.1)] {
        let changes: Vec<String> = sim.statements()[from..]
            .iter()
            .map(|s| s.text.trim_start().to_ascii_uppercase())
            .filter(|t| {
                ["ALTER", "BACKUP", "RESTORE", "KILL", "EXEC", "DROP"]
                    .iter()
                    .any(|w| t.starts_with(w))
            })
            .collect();
        assert!(changes.is_empty(), "{}: {changes:#?}", sim.name);
    }
    let out = lab
        .fleet
        .ctl(OPERATOR, &["inspect", "fe01.dc1.lab", "--output", "json"])
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let servers = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["operation"] == "pool_servers" && i["result"]["pool_fqdn"] == POOL)
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(
        servers["result"]["active_servers"],
        serde_json::json!(["pc01.dc2.lab"]),
        "{doc:#}"
    );
}

/// The failback-direction preflight check `name` (first of that name).
async fn failback_check(lab: &FailedOverLab, name: &str) -> serde_json::Value {
    let out = lab
        .fleet
        .ctl(OPERATOR, &["preflight", "--pool", POOL, "--output", "json"])
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("preflight printed no JSON ({e}): {out:?}"));
    doc["pools"][0]["directions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["direction"] == "failback")
        .flat_map(|d| d["checks"].as_array().unwrap())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{doc:#}"))
        .clone()
}

/// A rebuilt primary whose `@@SERVERNAME` still names the old host, and a backup instance on a
/// newer major version than the rebuilt primary: preflight fails the check and the failback
/// refuses in FB-1, before its first change, naming the fix (issue #11 item 7). Without the
/// gate, FB-5 would register log shipping under a name that does not exist, and FB-4 would fail
/// with 3169 after FB-1..FB-3 had run.
#[tokio::test(flavor = "multi_thread")]
async fn failback_refuses_a_stale_server_name_and_a_version_skew() {
    let cases: [(&str, SimArgs, SimArgs, [&str; 2]); 2] = [
        (
            "server_name",
            vec![(
                0,
                vec!["--stale-server-name".into(), r"OLDSQL01\PCHAT".into()],
            )],
            Vec::new(),
            [
                r"sp_dropserver N'OLDSQL01\PCHAT'",
                "sp_addserver N'sql01.dc1.lab', 'local'",
            ],
        ),
        (
            "sql_versions",
            Vec::new(),
            vec![(0, vec!["--product-version".into(), "14.0.3456.2".into()])],
            ["same major version", "3169"],
        ),
    ];
    for (check, primary_args, backup_args, needles) in cases {
        let lab = failed_over(Options {
            primary_args,
            backup_args,
            ..Options::default()
        })
        .await
        .unwrap();
        let c = failback_check(&lab, check).await;
        assert_eq!(c["status"], "fail", "{c:#}");
        let before = statement_counts(&lab);
        let run = lab
            .start_failback(APPROVER, &["--pool", POOL, "--yes"])
            .await
            .unwrap();
        let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
        assert_eq!(detail["run"]["status"], "failed", "{check}: {detail:#}");
        let fb1 = &detail["pools"][0]["outputs"]["fb1_clear_active"];
        let msg = fb1["error"].as_str().unwrap_or_default();
        for needle in needles.iter().chain(&["nothing was changed"]) {
            assert!(msg.contains(needle), "{check}: {needle:?} not in {msg}");
        }
        assert_nothing_changed(&lab, before).await;
    }
}

/// FB-3's file changed before FB-4: FB-4 refuses it and lifts FB-3's freeze, so the pool keeps
/// a writable database (issue #12, availability). Before the fix the refused restore left no
/// writable copy. The backup `mgc` is READ_ONLY while the run waits for the approval (FB-3
/// froze it before its backup: a chat server that will not disconnect).
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_backup_file_is_refused_and_the_backup_mgc_left_writable() {
    let lab = failed_over(Options::default()).await.unwrap();
    let run = lab
        .start_failback(APPROVER, &["--pool", POOL])
        .await
        .unwrap();
    let detail = lab
        .wait_status(&run, &["awaiting_approval"], DEADLINE)
        .await
        .unwrap();
    assert_eq!(detail["pools"][0]["step"], "fb4_restore", "{detail:#}");
    let file = detail["pools"][0]["outputs"]["fb3_backup"]["output"]["file"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let out = lab.fleet.ctl(APPROVER, &["approve", &run]).await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let detail = lab.wait_status(&run, &[], DEADLINE).await.unwrap();
    assert_eq!(detail["run"]["status"], "failed", "{detail:#}");
    let msg = detail["pools"][0]["outputs"]["fb4_restore"]["error"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains("SHA-256") && msg.contains("set READ_WRITE again"),
        "{msg}"
    );
    let pool = &lab.pools[0];
    // Frozen once, by FB-3 before its backup; thawed by FB-4's refusal.
    assert_eq!(
        statements_starting(&pool.backup, "ALTER DATABASE [mgc] SET READ_ONLY").len(),
        1
    );
    assert_eq!(
        statements_starting(&pool.backup, "ALTER DATABASE [mgc] SET READ_WRITE").len(),
        1
    );
    assert!(statements_starting(&pool.primary, "RESTORE DATABASE").is_empty());
    let rows = pool
        .backup
        .batch_as(
            ("sa", SA_PASSWORD),
            "master",
            "SELECT is_read_only FROM sys.databases WHERE name = N'mgc'",
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<bool, _>(0), Some(false));
}
