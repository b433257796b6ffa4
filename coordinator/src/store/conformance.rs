//! The one test suite every [`RunStore`] implementation must pass (style rule 7; GreptimeDB's
//! shared `kv_backend::test` functions). The file store runs it in its unit tests; the etcd
//! store runs it in `tests/tests/run_store.rs` against a real etcd started by the harness.
//!
//! Each case gets a fresh, empty store from the caller's factory, already able to write (for
//! etcd: a leading fence). Fencing itself (a deposed leader's writes) is etcd-specific and
//! tested beside the etcd harness.
//!
//! Compiled for tests and with the `testing` feature only; a failed assertion is a failed test.
#![allow(clippy::unwrap_used, missing_docs)]

use std::future::Future;

use serde_json::json;

use super::{
    MAX_VALUE_BYTES, PoolState, RunId, RunOptions, RunSpec, RunStatus, RunStoreRef, RunbookKind,
    StepStatus,
};
use crate::error::Error;

/// A failback spec over `pools`, started by `operator1`.
pub fn spec(pools: &[&str]) -> RunSpec {
    RunSpec {
        kind: RunbookKind::Failback,
        pools: pools.iter().map(|p| p.to_string()).collect(),
        options: RunOptions::default(),
        started_by: "operator1".into(),
        attestation: None,
        accepted_gap: None,
    }
}

/// A pool state at `step`.
pub fn pool_state(pool: &str, step: &str, status: StepStatus) -> PoolState {
    PoolState {
        pool: pool.into(),
        step: step.into(),
        attempt: 1,
        op_ids: vec![format!("r/{pool}/{step}/1")],
        status,
        outputs: json!({ "file": "mgc_full.bak", "lsn": "42000000001600001" }),
        updated_unix_ms: 0,
    }
}

fn id(s: &str) -> RunId {
    RunId::new(s).unwrap()
}

/// Runs every case, each on a fresh store from `fresh`.
pub async fn run_all<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = RunStoreRef>,
{
    create_and_get(fresh().await).await;
    refuses_bad_runs(fresh().await).await;
    run_status(fresh().await).await;
    pool_states(fresh().await).await;
    pool_state_with_its_audit_record(fresh().await).await;
    audit_trail(fresh().await).await;
    concurrent_audit_appends(fresh().await).await;
    history_and_unfinished(fresh().await).await;
    prefix_ids_do_not_mix(fresh().await).await;
}

pub async fn create_and_get(store: RunStoreRef) {
    let r = id("run-1");
    assert_eq!(store.get_run(&r).await.unwrap(), None);
    let created = store.create_run(&r, spec(&["p1", "p2"])).await.unwrap();
    assert_eq!(created.status, RunStatus::Pending);
    assert_eq!(created.id, r);
    assert!(
        created.created_epoch.0 > 0,
        "the creating epoch is recorded"
    );
    let snap = store.get_run(&r).await.unwrap().unwrap();
    assert_eq!(snap.run, created);
    assert!(snap.pools.is_empty());
    let again = store.create_run(&r, spec(&["p1"])).await.unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)), "{again}");
    // The failed create changed nothing.
    assert_eq!(store.get_run(&r).await.unwrap().unwrap().run, created);
}

pub async fn refuses_bad_runs(store: RunStoreRef) {
    let r = id("run-bad");
    let mut no_caller = spec(&["p1"]);
    no_caller.started_by.clear();
    let mut zero_parallel = spec(&["p1"]);
    zero_parallel.options.max_parallel = 0;
    for bad in [
        spec(&[]),
        spec(&["p1", "p1"]),
        spec(&["a/b"]),
        no_caller,
        zero_parallel,
    ] {
        let e = store.create_run(&r, bad.clone()).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{bad:?}: {e}");
    }
    assert_eq!(store.get_run(&r).await.unwrap(), None);
    assert!(store.list_runs(10).await.unwrap().is_empty());
}

pub async fn run_status(store: RunStoreRef) {
    let r = id("run-s");
    let created = store.create_run(&r, spec(&["p1"])).await.unwrap();
    let updated = store
        .set_run_status(&r, RunStatus::Paused, Some("paused by operator1".into()))
        .await
        .unwrap();
    assert_eq!(updated.status, RunStatus::Paused);
    assert_eq!(updated.reason.as_deref(), Some("paused by operator1"));
    assert_eq!(updated.spec, created.spec);
    assert!(updated.updated_unix_ms >= created.updated_unix_ms);
    assert_eq!(store.get_run(&r).await.unwrap().unwrap().run, updated);
    let e = store
        .set_run_status(&id("nope"), RunStatus::Running, None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
}

pub async fn pool_states(store: RunStoreRef) {
    let r = id("run-p");
    store.create_run(&r, spec(&["p1", "p2"])).await.unwrap();
    store
        .save_pool_state(
            &r,
            pool_state("p1", "fb1_clear_active", StepStatus::Running),
        )
        .await
        .unwrap();
    let mut next = pool_state("p1", "fb2_remove_mirroring", StepStatus::Succeeded);
    next.attempt = 2;
    store.save_pool_state(&r, next.clone()).await.unwrap();
    store
        .save_pool_state(
            &r,
            pool_state("p2", "fb1_clear_active", StepStatus::Pending),
        )
        .await
        .unwrap();
    let snap = store.get_run(&r).await.unwrap().unwrap();
    assert_eq!(snap.pools.len(), 2);
    let p1 = &snap.pools["p1"];
    assert_eq!(p1.step, "fb2_remove_mirroring");
    assert_eq!(p1.attempt, 2);
    assert_eq!(p1.status, StepStatus::Succeeded);
    assert_eq!(p1.op_ids, next.op_ids);
    assert_eq!(p1.outputs, next.outputs);
    assert!(p1.updated_unix_ms > 0, "the store stamps the time");

    let e = store
        .save_pool_state(&r, pool_state("p9", "fb1", StepStatus::Pending))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    let e = store
        .save_pool_state(&id("nope"), pool_state("p1", "fb1", StepStatus::Pending))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    let mut big = pool_state("p1", "fb3", StepStatus::Running);
    big.outputs = json!({ "blob": "x".repeat(MAX_VALUE_BYTES) });
    let e = store.save_pool_state(&r, big).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    assert_eq!(
        store.get_run(&r).await.unwrap().unwrap().pools["p1"].step,
        "fb2_remove_mirroring",
        "refused writes change nothing"
    );
}

/// A pool's state and the audit record of the change are one write: both or neither.
pub async fn pool_state_with_its_audit_record(store: RunStoreRef) {
    let r = id("run-pa");
    store.create_run(&r, spec(&["p1"])).await.unwrap();
    store
        .append_audit(&r, "operator1", "run.created", json!({}))
        .await
        .unwrap();
    let rec = store
        .save_pool_state_audited(
            &r,
            pool_state("p1", "fb1_clear_active", StepStatus::Running),
            "engine",
            "step.started",
            json!({ "pool": "p1", "step": "fb1_clear_active" }),
        )
        .await
        .unwrap();
    assert_eq!((rec.seq, rec.event.as_str()), (2, "step.started"));
    let snap = store.get_run(&r).await.unwrap().unwrap();
    assert_eq!(snap.pools["p1"].step, "fb1_clear_active");
    assert!(snap.pools["p1"].updated_unix_ms > 0);
    assert_eq!(store.audit(&r).await.unwrap().last(), Some(&rec));

    // Refused state: no audit record either.
    let e = store
        .save_pool_state_audited(
            &r,
            pool_state("p9", "fb1", StepStatus::Pending),
            "engine",
            "step.started",
            json!({}),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    let mut big = pool_state("p1", "fb3", StepStatus::Running);
    big.outputs = json!({ "blob": "x".repeat(MAX_VALUE_BYTES) });
    let e = store
        .save_pool_state_audited(&r, big, "engine", "step.started", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    assert_eq!(
        store.audit(&r).await.unwrap().len(),
        2,
        "refused writes add no record"
    );
    assert_eq!(
        store.get_run(&r).await.unwrap().unwrap().pools["p1"].step,
        "fb1_clear_active"
    );
    let e = store
        .save_pool_state_audited(
            &id("nope"),
            pool_state("p1", "fb1", StepStatus::Pending),
            "engine",
            "x",
            json!({}),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
}

pub async fn audit_trail(store: RunStoreRef) {
    let r = id("run-a");
    store.create_run(&r, spec(&["p1"])).await.unwrap();
    assert!(store.audit(&r).await.unwrap().is_empty());
    let a = store
        .append_audit(&r, "operator1", "run.created", json!({ "pools": ["p1"] }))
        .await
        .unwrap();
    let b = store
        .append_audit(&r, "approver1", "approve", json!({}))
        .await
        .unwrap();
    assert_eq!((a.seq, b.seq), (1, 2));
    assert!(b.at_unix_ms >= a.at_unix_ms && a.at_unix_ms > 0);
    let trail = store.audit(&r).await.unwrap();
    assert_eq!(trail, vec![a, b]);
    assert_eq!(trail[1].caller, "approver1");
    assert_eq!(trail[0].details, json!({ "pools": ["p1"] }));
    let e = store
        .append_audit(&id("nope"), "operator1", "x", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
}

pub async fn concurrent_audit_appends(store: RunStoreRef) {
    let r = id("run-c");
    store.create_run(&r, spec(&["p1"])).await.unwrap();
    let appends = (0..6).map(|i| {
        let store = store.clone();
        let r = r.clone();
        async move {
            store
                .append_audit(&r, "coordinator:c1", "step.progress", json!({ "i": i }))
                .await
                .unwrap()
        }
    });
    let mut seqs: Vec<u64> = futures::future::join_all(appends)
        .await
        .into_iter()
        .map(|a| a.seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "no gaps, no duplicates");
    let trail = store.audit(&r).await.unwrap();
    assert_eq!(
        trail.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
}

pub async fn history_and_unfinished(store: RunStoreRef) {
    for n in 1..=3 {
        store
            .create_run(&id(&format!("run-{n}")), spec(&["p1"]))
            .await
            .unwrap();
    }
    store
        .set_run_status(&id("run-2"), RunStatus::Succeeded, None)
        .await
        .unwrap();
    store
        .save_pool_state(
            &id("run-3"),
            pool_state("p1", "fb4_restore", StepStatus::Running),
        )
        .await
        .unwrap();
    let all = store.list_runs(10).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["run-3", "run-2", "run-1"],
        "newest first"
    );
    let two = store.list_runs(2).await.unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two[0].id, id("run-3"));
    let open = store.load_unfinished().await.unwrap();
    assert_eq!(
        open.iter().map(|s| s.run.id.as_str()).collect::<Vec<_>>(),
        ["run-1", "run-3"],
        "unfinished, oldest first"
    );
    assert_eq!(open[1].pools["p1"].step, "fb4_restore");
}

pub async fn prefix_ids_do_not_mix(store: RunStoreRef) {
    store.create_run(&id("r1"), spec(&["p1"])).await.unwrap();
    store.create_run(&id("r10"), spec(&["p1"])).await.unwrap();
    store
        .save_pool_state(&id("r10"), pool_state("p1", "fb1", StepStatus::Running))
        .await
        .unwrap();
    store
        .append_audit(&id("r10"), "operator1", "x", json!({}))
        .await
        .unwrap();
    let r1 = store.get_run(&id("r1")).await.unwrap().unwrap();
    assert_eq!(r1.run.id, id("r1"));
    assert!(r1.pools.is_empty(), "r10's pools are not r1's");
    assert!(store.audit(&id("r1")).await.unwrap().is_empty());
    let a = store
        .append_audit(&id("r1"), "operator1", "x", json!({}))
        .await
        .unwrap();
    assert_eq!(a.seq, 1, "r10's trail does not number r1's");
}
