//! FB-8's backup retention through the engine: the run store's earlier succeeded failbacks of
//! the pool name the files that go, and nothing else on the share is touched.

use std::collections::BTreeSet;

use serde_json::json;

use super::fake::*;
use crate::config::RunbookConfig;
use crate::store::{RunId, RunStatus};

/// Fails the pool over again (the world as the tests start it, the share as it is) and back.
async fn failback(s: &Setup) -> RunId {
    {
        let mut w = s.fake.world.lock().unwrap();
        let files = std::mem::take(&mut w.files);
        *w = World::default();
        w.files = files;
    }
    let id = start(s, &approver(), true).await;
    wait_status(&s.store, &id, RunStatus::Succeeded).await;
    id
}

fn share_files(s: &Setup) -> BTreeSet<String> {
    s.fake.world.lock().unwrap().files.keys().cloned().collect()
}

#[tokio::test]
async fn the_third_failback_deletes_the_first_ones_backup_when_two_are_kept() {
    let config = RunbookConfig {
        backup_retention_runs: 2,
        ..config()
    };
    let s = setup_configured(None, topology(), config).await;
    // Someone else's file on the share: not recorded by any run, never touched.
    s.fake
        .world
        .lock()
        .unwrap()
        .files
        .insert("/lab/share/mgc_by_hand.bak".into(), 7);
    let first = failback(&s).await;
    let file = |id: &RunId| format!("/lab/share/mgc_failback_{id}_1.bak");
    assert!(share_files(&s).contains(&file(&first)));

    // The second keeps the first's file (two failbacks kept, this one included).
    let second = failback(&s).await;
    assert!(s.fake.executed("file_delete").is_empty());
    let snap = s.store.get_run(&second).await.unwrap().unwrap();
    assert_eq!(
        snap.pools["pchat01.lab.local"].outputs["fb8_prune_backups"]["output"]["deleted"],
        json!([])
    );

    // The third deletes the first's, and only that.
    let third = failback(&s).await;
    let files = share_files(&s);
    assert!(!files.contains(&file(&first)), "{files:?}");
    assert!(files.contains(&file(&second)), "{files:?}");
    assert!(files.contains(&file(&third)), "{files:?}");
    assert!(files.contains("/lab/share/mgc_by_hand.bak"), "{files:?}");
    assert_eq!(s.fake.executed("file_delete").len(), 1);
    let snap = s.store.get_run(&third).await.unwrap().unwrap();
    let out = &snap.pools["pchat01.lab.local"].outputs["fb8_prune_backups"]["output"];
    assert_eq!(out["deleted"], json!([file(&first)]), "{out}");
    assert_eq!(out["left"], json!([]), "{out}");
}

#[tokio::test]
async fn retention_zero_keeps_every_backup() {
    let config = RunbookConfig {
        backup_retention_runs: 0,
        ..config()
    };
    let s = setup_configured(None, topology(), config).await;
    let first = failback(&s).await;
    failback(&s).await;
    let third = failback(&s).await;
    assert!(s.fake.executed("file_delete").is_empty());
    assert!(share_files(&s).contains(&format!("/lab/share/mgc_failback_{first}_1.bak")));
    let snap = s.store.get_run(&third).await.unwrap().unwrap();
    assert_eq!(
        snap.pools["pchat01.lab.local"].outputs["fb8_prune_backups"]["status"],
        json!("skipped")
    );
}
