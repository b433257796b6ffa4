//! The run-store conformance suite against a real etcd (the file store runs the same suite in
//! the coordinator's unit tests), plus the etcd-only property: a write whose leader key is gone
//! fails with `Deposed` and changes nothing.
//!
//! Each case gets its own cluster name (key prefix) and a fence made the way a leader's is: a
//! key under the election name, attached to a lease, whose create revision is the epoch.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use etcd_client::{Client, PutOptions};
use failback_coordinator::config::EtcdConfig;
use failback_coordinator::error::Error;
use failback_coordinator::etcd::Members;
use failback_coordinator::leader::state::Fence;
use failback_coordinator::store::etcd::EtcdRunStore;
use failback_coordinator::store::keys::Keys;
use failback_coordinator::store::{RunId, RunStore, RunStoreRef, StepStatus, conformance};
use failback_proto::model::Epoch;
use failback_tests::harness::etcd::{EtcdCluster, unique_cluster};
use tokio::sync::watch;

/// Store connections to `etcd`.
async fn members(etcd: &EtcdCluster) -> Members {
    let config = EtcdConfig {
        endpoints: etcd.endpoints(),
        cluster: "unused".into(),
        lease_ttl: std::time::Duration::from_secs(5),
    };
    Members::connect(&config).await.unwrap()
}

/// A leader-like fence for `cluster`: a leased key under its election name.
async fn fence(client: &mut Client, cluster: &str) -> Fence {
    let lease = client.lease_grant(60, None).await.unwrap().id();
    let key = format!("{}/{lease:x}", Keys::new(cluster).election());
    client
        .put(
            key.clone(),
            "test@127.0.0.1:1",
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    let rev = client.get(key.clone(), None).await.unwrap().kvs()[0].create_revision();
    Fence {
        key: key.into_bytes(),
        epoch: Epoch(u64::try_from(rev).unwrap()),
        lease,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_store_passes_the_conformance_suite() {
    let Some(etcd) = EtcdCluster::start_or_skip(1, "etcd_store_passes_the_conformance_suite").await
    else {
        return;
    };
    let client = etcd.client().await.unwrap();
    let members = members(&etcd).await;
    // Senders kept alive for the whole suite (a dropped sender keeps the last value anyway).
    let keep = Arc::new(std::sync::Mutex::new(Vec::new()));
    conformance::run_all(|| {
        let mut client = client.clone();
        let members = members.clone();
        let keep = keep.clone();
        async move {
            let cluster = unique_cluster("conformance");
            let f = fence(&mut client, &cluster).await;
            let (tx, rx) = watch::channel(Some(f));
            keep.lock().unwrap().push(tx);
            Arc::new(EtcdRunStore::new(members, &cluster, rx)) as RunStoreRef
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_without_our_leader_key_is_deposed_and_changes_nothing() {
    let Some(etcd) = EtcdCluster::start_or_skip(1, "deposed_writes").await else {
        return;
    };
    let mut client = etcd.client().await.unwrap();
    let cluster = unique_cluster("deposed");
    let f = fence(&mut client, &cluster).await;
    let (tx, rx) = watch::channel(Some(f.clone()));
    let store = EtcdRunStore::new(members(&etcd).await, &cluster, rx);
    let id = RunId::new("run-1").unwrap();
    store
        .create_run(&id, conformance::spec(&["p1"]))
        .await
        .unwrap();

    // Our key disappears (lease revoked: what happens when a newer leader won), but this
    // coordinator has not noticed: its fence is unchanged. etcd refuses every write.
    client.lease_revoke(f.lease).await.unwrap();
    let writes: Vec<Result<(), Error>> = vec![
        store
            .create_run(&RunId::new("run-2").unwrap(), conformance::spec(&["p1"]))
            .await
            .map(drop),
        store
            .set_run_status(&id, failback_coordinator::store::RunStatus::Running, None)
            .await
            .map(drop),
        store
            .save_pool_state(
                &id,
                conformance::pool_state("p1", "fb1", StepStatus::Running),
            )
            .await,
        store
            .append_audit(&id, "operator1", "x", serde_json::json!({}))
            .await
            .map(drop),
    ];
    for w in writes {
        let e = w.unwrap_err();
        assert!(matches!(e, Error::Deposed(_)), "{e}");
        assert!(e.to_string().contains("newer leader"), "{e}");
    }
    let snap = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(
        snap.run.status,
        failback_coordinator::store::RunStatus::Pending
    );
    assert!(snap.pools.is_empty());
    assert!(store.audit(&id).await.unwrap().is_empty());
    assert_eq!(store.list_runs(10).await.unwrap().len(), 1);

    // Having noticed (no fence), the store refuses without asking etcd.
    tx.send_replace(None);
    let e = store
        .append_audit(&id, "operator1", "x", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Deposed(_)), "{e}");
}
