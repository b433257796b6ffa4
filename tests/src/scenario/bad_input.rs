//! DESIGN §9.8 (bad input gets a clear error, changes nothing, crashes nothing) as a scenario
//! fault and its checker. The fault plays a coordinator that holds the leader's certificate and
//! the agents' current epoch — the most trusted sender an agent has — and sends each agent
//! instructions no correct coordinator would: database names that are not SQL identifiers, a
//! pool FQDN carrying PowerShell, paths outside the files roots or with control characters, an
//! unknown enum value, a malformed op id, no operation at all; then one valid ping. The checker
//! reads what each agent answered, the SQL statement logs and the Lync shell's script log.
//!
//! Why through a scripted coordinator: the real coordinator validates its own inputs (topology,
//! API) before anything reaches an agent, and those refusals have their own suites (`refusals`,
//! `topology_check`); the agent is the last line, and only a sender that skips the coordinator's
//! checks can show that it holds. The catalogue holds only what the agent promises to refuse
//! today; issue #15's least-privilege rules (SQL paths under the roots, REPLACE only with an
//! expected SHA-256, only the pool's databases) add their cases when they land.

use std::collections::BTreeMap;
use std::time::Duration;

use failback_proto::pb;
use serde::{Deserialize, Serialize};

use super::evidence::{Evidence, now_ms};
use super::invariants::Verdict;
use crate::harness::failed_over::FailedOverLab;
use crate::harness::fake_coordinator::{FakeCoordinator, FakeSession};

/// What an agent did with one bad instruction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// An error result.
    Refused {
        /// `ErrorKind` name.
        kind: String,
        /// Its message.
        message: String,
    },
    /// An output: the agent ran it.
    Ran(String),
    /// No result (the session closed, or no answer in time).
    Silent(String),
}

/// One bad instruction and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// The agent.
    pub agent: String,
    /// What is wrong with it.
    pub what: String,
    /// The bad input, as `field = value`.
    pub input: String,
    /// The error must contain one of these (the field's name or the value), so an operator can
    /// tell which input was refused.
    pub names: Vec<String>,
    /// Its op id.
    pub op_id: String,
    /// What the agent answered.
    pub answer: Answer,
}

/// Everything the fault sent and saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probes {
    /// When the first bad instruction was sent (Unix ms).
    pub from_ms: u64,
    /// When the last answer came (Unix ms).
    pub to_ms: u64,
    /// The bad instructions.
    pub probes: Vec<Probe>,
    /// Agent → whether it answered a valid ping after them.
    pub alive: BTreeMap<String, bool>,
}

/// One case of the catalogue: an instruction whose op id and epoch the sender fills in.
struct Case {
    what: &'static str,
    input: String,
    names: &'static [&'static str],
    /// `None`: send the instruction without an operation.
    kind: Option<pb::operation::Kind>,
    /// Replaces the op id (a malformed one).
    op_id: Option<&'static str>,
}

fn case(
    what: &'static str,
    input: String,
    names: &'static [&'static str],
    kind: pb::operation::Kind,
) -> Case {
    Case {
        what,
        input,
        names,
        kind: Some(kind),
        op_id: None,
    }
}

/// The bad instructions for an agent with `caps` in a lab whose pool is `pool`.
fn catalogue(caps: &[String], pool: &str) -> Vec<Case> {
    use pb::operation::Kind as K;
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut v = vec![
        Case {
            what: "an op id with spaces",
            input: "op_id = 'hostile op id'".into(),
            names: &["op id", "op_id"],
            kind: Some(K::Ping(pb::Ping {})),
            op_id: Some("hostile op id"),
        },
        Case {
            what: "no operation",
            input: "operation = (none)".into(),
            names: &["operation"],
            kind: None,
            op_id: None,
        },
    ];
    if has("sql") {
        let injected = "mgc]; DROP DATABASE [mgc";
        v.push(case(
            "a database name that closes its quoting",
            format!("databases = '{injected}'"),
            &["database"],
            K::DatabaseState(pb::DatabaseState {
                databases: vec![injected.into()],
            }),
        ));
        let quoted = "mgc' OR 1=1 --";
        v.push(case(
            "a database name with a quote and a comment",
            format!("database = '{quoted}'"),
            &["database"],
            K::SetReadOnly(pb::SetReadOnly {
                database: quoted.into(),
                read_only: true,
            }),
        ));
    }
    if has("files") {
        v.push(case(
            "a path outside the files roots",
            "path = '/etc/hostname'".into(),
            &["/etc/hostname"],
            K::FileDelete(pb::FileDelete {
                path: "/etc/hostname".into(),
            }),
        ));
        v.push(case(
            "a path with a control character",
            "path = 'share\\u{7}/x.bak'".into(),
            &["path"],
            K::FileStat(pb::FileStat {
                path: "share\u{7}/x.bak".into(),
            }),
        ));
    }
    if has("lync") {
        let fqdn = format!("{pool}'; Remove-CsPersistentChatPool -Identity '{pool}");
        v.push(case(
            "a pool FQDN carrying PowerShell",
            format!("pool_fqdn = \"{fqdn}\""),
            &["pool_fqdn"],
            K::SetActiveServers(pb::SetActiveServers {
                pool_fqdn: fqdn,
                change: pb::ActiveServersChange::Clear.into(),
                servers: vec![],
            }),
        ));
        let server = "pc01.dc1.lab\"; Stop-Computer; \"";
        v.push(case(
            "a server name carrying PowerShell",
            format!("servers = '{server}'"),
            &["servers"],
            K::SetActiveServers(pb::SetActiveServers {
                pool_fqdn: pool.into(),
                change: pb::ActiveServersChange::Replace.into(),
                servers: vec![server.into()],
            }),
        ));
        v.push(case(
            "a pool state outside the enum",
            "state = POOL_STATE_VALUE_UNSPECIFIED".into(),
            &["state"],
            K::SetPoolState(pb::SetPoolState {
                pool_fqdn: pool.into(),
                state: pb::PoolStateValue::Unspecified.into(),
            }),
        ));
    }
    v
}

fn deadline_ms() -> u64 {
    now_ms() + 60_000
}

async fn ask(session: &mut FakeSession, op_id: &str, epoch: u64, c: &Case) -> Answer {
    let i = pb::Instruction {
        op_id: op_id.into(),
        epoch,
        deadline_unix_ms: deadline_ms(),
        operation: c.kind.clone().map(|k| pb::Operation { kind: Some(k) }),
    };
    if let Err(e) = session.send_raw(i).await {
        return Answer::Silent(e.to_string());
    }
    match session.result(op_id, Duration::from_secs(10)).await {
        Err(e) => Answer::Silent(e.to_string()),
        Ok(r) => match r.outcome {
            Some(pb::operation_result::Outcome::Error(e)) => Answer::Refused {
                kind: e.kind().as_str_name().to_string(),
                message: e.message,
            },
            Some(pb::operation_result::Outcome::Output(o)) => {
                let mut out = format!("{o:?}");
                if out.len() > 200 {
                    out = format!("{}…", out.chars().take(200).collect::<String>());
                }
                Answer::Ran(out)
            }
            None => Answer::Silent("a result without an outcome".into()),
        },
    }
}

/// Plays the trusted sender on `port` with `name`'s certificate at `epoch` (the agents' own)
/// until every agent of the lab has had the catalogue and a valid ping.
pub async fn send(
    lab: &FailedOverLab,
    name: &str,
    port: u16,
    epoch: u64,
) -> anyhow::Result<Probes> {
    let mut fake = FakeCoordinator::start_in_place_of(&lab.fleet.certs, name, port).await?;
    let pool = lab.pools[0].fqdn.clone();
    let agents: Vec<String> = lab.fleet.agent_specs.iter().map(|a| a.id.clone()).collect();
    let from_ms = now_ms();
    let mut probes = Vec::new();
    let mut alive = BTreeMap::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while alive.len() < agents.len() && tokio::time::Instant::now() < until {
        let Ok(mut session) = fake.next_session(Duration::from_secs(2)).await else {
            continue;
        };
        if alive.contains_key(&session.agent) {
            continue;
        }
        let agent = session.agent.clone();
        if session.welcome(epoch).await.is_err() {
            continue;
        }
        for (n, c) in catalogue(&session.hello.capabilities, &pool)
            .iter()
            .enumerate()
        {
            let op_id = c
                .op_id
                .map_or_else(|| format!("hostile/{agent}/{n}"), str::to_string);
            let answer = ask(&mut session, &op_id, epoch, c).await;
            probes.push(Probe {
                agent: agent.clone(),
                what: c.what.into(),
                input: c.input.clone(),
                names: c.names.iter().map(|s| (*s).to_string()).collect(),
                op_id,
                answer,
            });
        }
        let ping = format!("hostile/{agent}/ping-after");
        let pong = matches!(
            session
                .call(&ping, epoch, pb::operation::Kind::Ping(pb::Ping {}))
                .await,
            Ok(pb::OperationResult {
                outcome: Some(pb::operation_result::Outcome::Output(_)),
                ..
            })
        );
        alive.insert(agent, pong);
    }
    for a in &agents {
        alive.entry(a.clone()).or_insert(false);
    }
    Ok(Probes {
        from_ms,
        to_ms: now_ms(),
        probes,
        alive,
    })
}

/// §9.8: every bad instruction refused with an error that names its input, no SQL statement
/// and no Lync script while they were sent, and every agent still answering afterwards.
pub fn check(ev: &Evidence) -> Verdict {
    let sent: Vec<&Probes> = ev.fired.iter().filter_map(|f| f.probes.as_ref()).collect();
    let mut problems = Vec::new();
    let mut count = 0;
    for p in &sent {
        for probe in &p.probes {
            count += 1;
            let Probe {
                agent, what, input, ..
            } = probe;
            match &probe.answer {
                Answer::Ran(out) => problems.push(format!(
                    "§9.8: {agent} ran {what} ({input}) instead of refusing it: {out}"
                )),
                Answer::Silent(why) => problems.push(format!(
                    "§9.8: {agent} did not answer {what} ({input}): {why}"
                )),
                Answer::Refused { message, .. } => {
                    if !probe.names.iter().any(|n| message.contains(n.as_str())) {
                        problems.push(format!(
                            "§9.8: {agent} refused {what} ({input}) without naming the input (one of {:?}): '{message}'",
                            probe.names
                        ));
                    }
                }
            }
        }
        for (agent, up) in &p.alive {
            if !up {
                problems.push(format!(
                    "§9.8: {agent} did not answer a valid ping after the bad instructions"
                ));
            }
        }
        for inst in [&ev.primary, &ev.backup] {
            // SQL Server Agent's own job steps (log shipping's schedule) are not ours to stop.
            for s in inst
                .statements
                .iter()
                .filter(|s| s.raw.kind != "agent" && s.at_ms >= p.from_ms && s.at_ms <= p.to_ms)
            {
                problems.push(format!(
                    "§9.8: {} received '{}' at {} while only bad instructions were sent",
                    inst.name,
                    s.raw.text,
                    super::invariants::when(s.at_ms)
                ));
            }
        }
        for s in &ev.scripts {
            let at = super::evidence::rfc3339_ms(&s.time);
            if at >= p.from_ms && at <= p.to_ms {
                problems.push(format!(
                    "§9.8: the Lync shell ran '{}' on {} at {} while only bad instructions were sent",
                    s.script.trim(),
                    s.host,
                    super::invariants::when(at)
                ));
            }
        }
    }
    let agents: usize = sent.iter().map(|p| p.alive.len()).sum();
    super::invariants::verdict(
        8,
        "bad input",
        problems,
        if sent.is_empty() {
            "not exercised here (no bad instructions sent); the input suites (refusals, topology_check, sqlsim_robustness) judge the rest".into()
        } else {
            format!(
                "{count} bad instructions to {agents} agents refused, each naming its input; no statement or script ran meanwhile; every agent answered a ping afterwards"
            )
        },
        !sent.is_empty(),
    )
}
