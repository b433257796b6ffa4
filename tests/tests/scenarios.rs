//! The reliability scenarios of `tests/scenarios/` (issue #12, DESIGN §9), one test each, on
//! real processes: every scenario must end as it expects with every invariant held; and each
//! scenario that names a test-only break (`[[catches]]`) runs once more with that check broken,
//! where its invariant's checker must report the violation — the proof that the scenario would
//! catch the bug. Outcomes land in `target/scenarios/` for `failback-lab reliability`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use failback_tests::scenario::runner::run;
use failback_tests::scenario::spec::{Scenario, scenario_dir};

async fn scenario(name: &str) -> Scenario {
    Scenario::load(&scenario_dir().join(format!("{name}.toml"))).unwrap()
}

async fn holds(name: &str) {
    let s = scenario(name).await;
    let o = run(&s, None).await.unwrap();
    assert!(o.passed(), "{}", o.explain());
}

async fn catches(name: &str, break_name: &str) {
    let s = scenario(name).await;
    let all: Vec<_> = s
        .catches
        .iter()
        .filter(|c| c.break_name == break_name)
        .cloned()
        .collect();
    assert!(
        !all.is_empty(),
        "{name} does not list the break {break_name}"
    );
    let o = run(&s, Some(break_name)).await.unwrap();
    // Every entry naming this break must report it (one run serves them all).
    for c in all {
        if let Some(n) = c.invariant {
            let v = o.invariant(n).unwrap();
            assert!(
                !v.ok,
                "with {break_name} broken, §9.{n}'s checker saw nothing:\n{}",
                o.explain()
            );
            assert!(v.detail.contains(&format!("§9.{n}")), "{}", v.detail);
        }
        if let Some(k) = &c.expect {
            let e: Vec<_> = o
                .expectations
                .iter()
                .filter(|e| e.key == k.as_str())
                .collect();
            assert!(!e.is_empty(), "{name} does not check expect.{k}");
            assert!(
                e.iter().any(|e| !e.ok),
                "with {break_name} broken, expect.{k} still held:\n{}",
                o.explain()
            );
        }
    }
}

macro_rules! scenarios {
    ($($f:ident => $name:literal),* $(,)?) => {
        const NAMES: &[&str] = &[$($name),*];
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $f() {
                holds($name).await;
            }
        )*
    };
}

scenarios! {
    clean_failback => "clean-failback",
    agent_restart_mid_restore => "agent-restart-mid-restore",
    sql_killed_mid_restore => "sql-killed-mid-restore",
    abort_mid_restore => "abort-mid-restore",
    corrupt_backup => "corrupt-backup",
    truncated_backup => "truncated-backup",
    no_approval => "no-approval",
    kill_leader_after_fb1 => "kill-leader-after-fb1",
    kill_leader_after_fb2 => "kill-leader-after-fb2",
    kill_leader_after_fb3 => "kill-leader-after-fb3",
    kill_leader_after_fb4 => "kill-leader-after-fb4",
    kill_leader_fb3 => "kill-leader-fb3",
    kill_leader_fb4 => "kill-leader-fb4",
    stop_leader_fb4 => "stop-leader-fb4",
    etcd_leader_lost => "etcd-leader-lost",
    etcd_quorum_lost => "etcd-quorum-lost",
    zombie_leader => "zombie-leader",
    share_lost => "share-lost",
    stale_log_shipping => "stale-log-shipping",
    chat_traffic => "chat-traffic",
    cut_leader_from_etcd => "cut-leader-from-etcd",
    stubborn_chat_server => "stubborn-chat-server",
    stubborn_chat_server_late => "stubborn-chat-server-late",
    agent_account_without_access => "agent-account-without-access",
    hostile_instructions => "hostile-instructions",
    etcd_reelection_3s => "etcd-reelection-3s",
    backup_retention => "backup-retention",
    kill_leader_fb5 => "kill-leader-fb5",
    kill_leader_after_fb5 => "kill-leader-after-fb5",
    kill_leader_after_fb7 => "kill-leader-after-fb7",
    free_space_two_backups => "free-space-two-backups",
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_checksum_check_is_caught_by_corrupt_backup() {
    catches("corrupt-backup", "fb4-checksum").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_approval_gate_is_caught_by_no_approval() {
    catches("no-approval", "approval-gate").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_freeze_is_caught_by_clean_failback() {
    catches("clean-failback", "backup-freeze").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_left_writable_loses_a_late_chat_servers_messages_caught_by_stubborn_chat_server_late()
 {
    catches("stubborn-chat-server-late", "backup-freeze").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_fooled_by_a_stale_monitor_is_caught_by_stale_log_shipping() {
    catches("stale-log-shipping", "fb5-stale-proof").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_servers_left_active_are_caught_by_clean_failback() {
    catches("clean-failback", "active-servers-guard").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_accepts_an_older_epoch_is_caught_by_zombie_leader() {
    catches("zombie-leader", "agent-epoch-check").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_name_let_through_is_caught_by_hostile_instructions() {
    catches("hostile-instructions", "identifier-validation").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_keepalive_budget_is_caught_by_etcd_reelection_3s() {
    catches("etcd-reelection-3s", "keepalive-budget").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_leader_hints_storm_and_are_caught_by_etcd_quorum_lost() {
    catches("etcd-quorum-lost", "leader-hint").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_never_removed_are_caught_by_backup_retention() {
    catches("backup-retention", "backup-retention").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_without_leader_changes_is_caught_by_kill_leader_fb4() {
    catches("kill-leader-fb4", "report-leaders").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_that_runs_a_repeated_op_again_is_caught_by_kill_leader_fb4() {
    catches("kill-leader-fb4", "agent-journal-replay").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_free_space_check_by_data_size_is_caught_by_free_space_two_backups() {
    catches("free-space-two-backups", "free-space-data-size").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_saved_apart_from_its_audit_event_is_caught_by_kill_leader_after_fb3() {
    catches("kill-leader-after-fb3", "audit-one-write").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_that_ignore_the_liveness_timeout_are_caught_by_stop_leader_fb4() {
    catches("stop-leader-fb4", "agent-liveness").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blind_retry_of_an_unknown_restore_is_caught_by_sql_killed_mid_restore() {
    catches("sql-killed-mid-restore", "destructive-unknown-retry").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn waits_that_outlive_their_session_are_caught_by_agent_restart_mid_restore() {
    catches("agent-restart-mid-restore", "session-lost-waits").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_file_that_leaves_the_backup_frozen_is_caught_by_corrupt_backup() {
    catches("corrupt-backup", "refusal-keeps-freeze").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_deaf_to_the_abort_is_caught_by_abort_mid_restore() {
    catches("abort-mid-restore", "wait-ignores-abort").await;
}

/// Every scenario file has its test above, and every `[[catches]]` its break run.
#[test]
fn every_scenario_file_runs() {
    let mut files: Vec<String> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "toml")
                .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    files.sort();
    let mut listed: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "tests/scenarios/ and the scenarios! list differ"
    );
    let src = include_str!("scenarios.rs");
    for f in &files {
        let s = Scenario::load(&scenario_dir().join(format!("{f}.toml"))).unwrap();
        for c in &s.catches {
            assert!(
                src.contains(&format!("catches(\"{f}\", \"{}\")", c.break_name)),
                "{f} catches {} but no test runs it",
                c.break_name
            );
        }
    }
}
