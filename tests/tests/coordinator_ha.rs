//! Two real coordinator processes with `[etcd]` on a real 3-member etcd, driven by the real
//! `failbackctl`: exactly one leads and both say which one at the same epoch; leader-only
//! Control calls sent to the follower follow the leader hint; `kill -9` of the leader hands
//! leadership to the other within a few seconds at a higher epoch; the restarted coordinator
//! follows; SIGTERM of the leader (graceful: resign) hands over well before the lease TTL.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use failback_tests::harness::etcd::{EtcdCluster, unique_cluster};
use failback_tests::harness::fleet::{CtlOutput, Fleet, OPERATOR, run_ctl, three_agent_topology};
use failback_tests::harness::process::{Proc, bin};
use failback_tests::harness::{free_port, wait_for};

const HB: Duration = Duration::from_millis(1000);
const TTL: Duration = Duration::from_secs(4);

/// One coordinator process of the pair.
struct Coordinator {
    name: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Coordinator {
    fn endpoint(&self) -> String {
        format!("{}@127.0.0.1:{}", self.name, self.port)
    }

    fn write_config(fleet: &Fleet, name: &str, etcd: &EtcdCluster, cluster: &str) -> Self {
        let port = free_port().unwrap();
        let endpoints = etcd
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            r#"listen = "127.0.0.1:{port}"
topology = "topology.toml"
state_dir = "state/{name}"
heartbeat_interval = "{hb}ms"

[tls]
ca = "certs/ca.pem"
cert = "certs/{name}.pem"
key = "certs/{name}.key"

[etcd]
endpoints = [{endpoints}]
cluster = "{cluster}"
lease_ttl = "{ttl}s"
"#,
            hb = HB.as_millis(),
            ttl = TTL.as_secs()
        );
        let config = fleet.dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        Coordinator {
            name: name.to_string(),
            port,
            config,
            log: fleet.dir.join("logs").join(format!("{name}.log")),
            proc: None,
        }
    }

    async fn start(&mut self) {
        let p = Proc::spawn(
            &self.name,
            &bin("failback-coordinator").unwrap(),
            &["--config", &self.config.display().to_string()],
            &[],
            &self.log,
        )
        .unwrap();
        self.proc = Some(p);
        let addr = format!("127.0.0.1:{}", self.port);
        let ready = wait_for("the coordinator to listen", Duration::from_secs(20), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ()) }
        })
        .await;
        if let Err(e) = ready {
            panic!("{e}\n{} log:\n{}", self.name, self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(30)..].join("\n")
    }
}

/// failbackctl as the operator against `endpoint` only.
async fn ctl(fleet: &Fleet, endpoint: &str, args: &[&str]) -> CtlOutput {
    let certs = fleet.certs.display().to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_ctl(
        &fleet.dir,
        &args,
        &[
            ("FAILBACK_COORDINATORS", endpoint),
            ("FAILBACK_CERTS_DIR", &certs),
            ("FAILBACK_IDENTITY", OPERATOR),
        ],
    )
    .await
    .unwrap()
}

/// `failbackctl leader --output json` answered by `c` itself.
async fn leader_seen_by(fleet: &Fleet, c: &Coordinator) -> Option<serde_json::Value> {
    let out = ctl(fleet, &c.endpoint(), &["leader", "--output", "json"]).await;
    if out.code != 0 {
        return None;
    }
    serde_json::from_str(&out.stdout).ok()
}

/// Waits until both coordinators agree on a leader; returns (leader index, epoch).
async fn agreed_leader(fleet: &Fleet, coords: &[&Coordinator]) -> (usize, u64) {
    wait_for(
        "both coordinators to agree on a leader",
        Duration::from_secs(30),
        || async {
            let mut views = Vec::new();
            for c in coords {
                views.push(leader_seen_by(fleet, c).await?);
            }
            let leaders: Vec<usize> = (0..views.len())
                .filter(|&i| views[i]["answered_by_leader"] == true)
                .collect();
            if leaders.len() != 1 {
                return None;
            }
            let l = leaders[0];
            let agreed = views.iter().all(|v| {
                v["leader_id"] == coords[l].name.as_str()
                    && v["leader_endpoint"] == coords[l].endpoint().as_str()
                    && v["epoch"] == views[l]["epoch"]
                    && v["mode"] == "etcd"
            });
            agreed.then(|| (l, views[l]["epoch"].as_u64().unwrap_or(0)))
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_coordinators_lead_one_at_a_time_and_clients_follow_the_hint() {
    let Some(etcd) = EtcdCluster::start_or_skip(3, "coordinator_ha").await else {
        return;
    };
    failback_proto::install_crypto_provider();
    let (agents, topology) = three_agent_topology();
    let fleet = Fleet::create(None, agents, &topology, HB).await.unwrap();
    // The fleet issues certificates for both coordinators (coord1, coord2).
    let cluster = unique_cluster("coordinator-ha");
    let mut a = Coordinator::write_config(&fleet, "coord1", &etcd, &cluster);
    let mut b = Coordinator::write_config(&fleet, "coord2", &etcd, &cluster);
    a.start().await;
    b.start().await;

    let (l, epoch1) = agreed_leader(&fleet, &[&a, &b]).await;
    assert!(epoch1 > 0);
    let (leader, follower) = if l == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    // A leader-only call sent to the follower is answered by the leader through the hint.
    let agents = ctl(
        &fleet,
        &follower.endpoint(),
        &["agents", "--output", "json"],
    )
    .await;
    assert_eq!(agents.code, 0, "{}", agents.stderr);
    let doc: serde_json::Value = serde_json::from_str(&agents.stdout).unwrap();
    assert_eq!(doc["agents"].as_array().unwrap().len(), 3);

    // kill -9 of the leader: the follower leads within the lease TTL plus a few seconds.
    let killed = Instant::now();
    leader.proc.take().unwrap().kill();
    wait_for(
        "the survivor to lead",
        TTL + Duration::from_secs(8),
        || async {
            let v = leader_seen_by(&fleet, follower).await?;
            (v["answered_by_leader"] == true).then_some(())
        },
    )
    .await
    .unwrap();
    let took = killed.elapsed();
    assert!(
        took < TTL + Duration::from_secs(5),
        "failover took {took:?}"
    );

    // The killed coordinator comes back as a follower naming the new leader.
    leader.start().await;
    let (l2, epoch2) = agreed_leader(&fleet, &[leader, follower]).await;
    assert_eq!(l2, 1, "the survivor keeps leading");
    assert!(epoch2 > epoch1, "epoch {epoch2} > {epoch1}");
    let agents = ctl(&fleet, &leader.endpoint(), &["agents"]).await;
    assert_eq!(agents.code, 0, "{}", agents.stderr);

    // SIGTERM of the current leader: it resigns, so the other leads well before the TTL.
    let pid = follower.proc.as_ref().unwrap().pid().unwrap().to_string();
    let resigned = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("the other to lead after a graceful stop", TTL, || async {
        let v = leader_seen_by(&fleet, leader).await?;
        (v["answered_by_leader"] == true).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nlog of the stopped leader:\n{}", follower.log_tail()));
    let took = resigned.elapsed();
    assert!(
        took < TTL / 2 + Duration::from_secs(1),
        "hand-over took {took:?}"
    );
    let v = leader_seen_by(&fleet, leader).await.unwrap();
    assert!(v["epoch"].as_u64().unwrap() > epoch2);
    assert!(
        follower.log_tail().contains("resigned the election"),
        "{}",
        follower.log_tail()
    );
}
