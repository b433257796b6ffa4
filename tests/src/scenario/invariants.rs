//! The DESIGN §9 invariants as checkers over a scenario's [`Evidence`]: each its own function,
//! each failure a sentence that names the invariant and where it broke ("§9.5: 2 RESTORE
//! DATABASE … REPLACE of mgc on sql01.dc1.lab in 1 attempt of fb4_restore"). They run after every
//! scenario, whatever its faults, so a scenario written for one defect still guards the rest.
//!
//! §9.8 (bad input) is checked by [`super::bad_input`], which also sends it; the input suites
//! (refusals, topology_check, sqlsim_robustness) judge the coordinator's own inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::evidence::{Evidence, JournalRecord};

/// One checker's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// DESIGN §9 number.
    pub invariant: u8,
    /// Short name.
    pub name: String,
    /// Held (or was not exercised).
    pub ok: bool,
    /// Whether the scenario exercised it (false: nothing it guards happened).
    pub exercised: bool,
    /// What was seen: the violation, or what held.
    pub detail: String,
}

pub(super) fn verdict(
    invariant: u8,
    name: &'static str,
    problems: Vec<String>,
    held: String,
    exercised: bool,
) -> Verdict {
    Verdict {
        invariant,
        name: name.to_string(),
        ok: problems.is_empty(),
        exercised,
        detail: if problems.is_empty() {
            held
        } else {
            problems.join("; ")
        },
    }
}

/// Every checker, in invariant order.
pub fn check_all(ev: &Evidence) -> Vec<Verdict> {
    vec![
        fencing(ev),
        no_restore_while_active(ev),
        checksums(ev),
        approvals(ev),
        no_blind_repeat(ev),
        no_message_lost(ev),
        one_writable_mgc(ev),
        super::bad_input::check(ev),
    ]
}

/// A destructive statement: what replaces, removes or takes a database out of service.
fn destructive(norm: &str) -> bool {
    (norm.starts_with("RESTORE DATABASE")
        && (norm.contains("REPLACE") || norm.contains("WITH RECOVERY")))
        || (norm.starts_with("ALTER DATABASE") && norm.contains("SET PARTNER OFF"))
        || norm.contains("SP_DELETE_LOG_SHIPPING")
}

/// §9.1: agents accept one leader's instructions at a time. Every agent's accepted instructions
/// (journal `started` records, in time order across all agents) carry non-decreasing epochs: once
/// any agent ran an instruction of epoch N, none runs one of an older epoch.
fn fencing(ev: &Evidence) -> Verdict {
    let mut all: Vec<(u64, u64, &str, &str)> = Vec::new();
    for (agent, records) in &ev.journals {
        for r in records {
            if let JournalRecord::Started {
                op, epoch, at_ms, ..
            } = r
            {
                all.push((*at_ms, *epoch, agent.as_str(), op.as_str()));
            }
        }
    }
    all.sort();
    let mut problems = Vec::new();
    let mut highest: Option<(u64, &str, &str)> = None;
    for (at, epoch, agent, op) in &all {
        if let Some((h, ha, hop)) = highest
            && *epoch < h
        {
            problems.push(format!(
                "§9.1: {agent} ran {op} of epoch {epoch} at {} after {ha} had run {hop} of epoch {h}",
                when(*at)
            ));
        }
        if highest.is_none_or(|(h, _, _)| *epoch > h) {
            highest = Some((*epoch, agent, op));
        }
    }
    let epochs: std::collections::BTreeSet<u64> = all.iter().map(|a| a.1).collect();
    verdict(
        1,
        "fencing",
        problems,
        format!("{} instructions, epochs {epochs:?} in order", all.len()),
        epochs.len() > 1,
    )
}

/// §9.2: no restore over the pool's database while a chat server of the pool is active. The
/// active list follows the Lync shell's script log (the lab starts with DC2's server active):
/// `-ActiveServers $null` clears it, any other Set-CsPersistentChatActiveServer sets it.
fn no_restore_while_active(ev: &Evidence) -> Verdict {
    let pool = ev.pool.to_ascii_lowercase();
    let mut changes: Vec<(u64, bool)> = ev
        .scripts
        .iter()
        .filter(|s| {
            s.script.contains("Set-CsPersistentChatActiveServer")
                && s.script.to_ascii_lowercase().contains(&pool)
        })
        .map(|s| {
            let cleared = s.script.lines().any(|l| {
                l.contains("Set-CsPersistentChatActiveServer") && l.contains("-ActiveServers $null")
            });
            (super::evidence::rfc3339_ms(&s.time), !cleared)
        })
        .collect();
    changes.sort();
    let mut problems = Vec::new();
    let mut n = 0;
    for s in ev
        .primary
        .starting("RESTORE DATABASE")
        .filter(|s| destructive(&s.norm))
    {
        n += 1;
        let active = changes
            .iter()
            .rev()
            .find(|(t, _)| *t <= s.at_ms)
            .is_none_or(|(_, a)| *a);
        if active {
            problems.push(format!(
                "§9.2: '{}' on {} at {} while a chat server of {} was active (last Set-CsPersistentChatActiveServer did not clear it)",
                s.raw.text,
                ev.primary.name,
                when(s.at_ms),
                ev.pool
            ));
        }
    }
    verdict(
        2,
        "no restore while a chat server is active",
        problems,
        format!("{n} restores, each after the active servers were cleared"),
        n > 0,
    )
}

/// Every (file, sha256) the run recorded in its outputs.
fn recorded_files(v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(f), Some(s)) = (
                m.get("file").and_then(|f| f.as_str()),
                m.get("sha256").and_then(|s| s.as_str()),
            ) {
                out.insert(f.to_string(), s.to_string());
            }
            m.values().for_each(|v| recorded_files(v, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| recorded_files(v, out)),
        _ => {}
    }
}

/// §9.3: no restore from a file whose checksum differs from the one recorded when it was
/// written. A file the scenario damaged counts as differing from its damage on; a file still
/// on disk is hashed again.
fn checksums(ev: &Evidence) -> Verdict {
    let mut recorded = BTreeMap::new();
    recorded_files(ev.outputs(), &mut recorded);
    let damaged: BTreeMap<&str, u64> = ev
        .fired
        .iter()
        .filter_map(|f| Some((f.damaged_file.as_deref()?, f.at_ms)))
        .collect();
    let mut problems = Vec::new();
    let mut n = 0;
    for inst in [&ev.primary, &ev.backup] {
        for s in inst
            .starting("RESTORE DATABASE")
            .filter(|s| s.param(2).is_some())
        {
            let Some(file) = s.param(2) else { continue };
            n += 1;
            if let Some(t) = damaged.get(file).filter(|t| **t <= s.at_ms) {
                problems.push(format!(
                    "§9.3: RESTORE DATABASE on {} at {} from '{file}', damaged at {} after its SHA-256 was recorded",
                    inst.name,
                    when(s.at_ms),
                    when(*t)
                ));
                continue;
            }
            if let (Some(want), Ok(bytes)) = (recorded.get(file), std::fs::read(file)) {
                let got = sha256_hex(&bytes);
                if !got.eq_ignore_ascii_case(want) && !damaged.contains_key(file) {
                    problems.push(format!(
                        "§9.3: RESTORE DATABASE on {} from '{file}' whose SHA-256 is {got}, recorded {want}",
                        inst.name
                    ));
                }
            }
        }
    }
    verdict(
        3,
        "no restore from a changed file",
        problems,
        format!("{n} restores from files, none damaged"),
        n > 0 || !damaged.is_empty(),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// §9.4: no destructive statement before the run was approved (`--yes` at start or an
/// `approve` in the audit trail).
fn approvals(ev: &Evidence) -> Verdict {
    let at_start = ev.detail["run"]["approved_at_start"]
        .as_bool()
        .unwrap_or(false);
    let approved_at = if at_start {
        Some(ev.started_ms)
    } else {
        ev.audit()
            .iter()
            .filter(|a| a["event"] == "run.approved")
            .filter_map(|a| a["at_unix_ms"].as_u64())
            .min()
    };
    let mut problems = Vec::new();
    let mut n = 0;
    for inst in [&ev.primary, &ev.backup] {
        for s in inst.statements.iter().filter(|s| destructive(&s.norm)) {
            n += 1;
            if approved_at.is_none_or(|t| s.at_ms < t) {
                problems.push(format!(
                    "§9.4: '{}' on {} at {} {}",
                    s.raw.text,
                    inst.name,
                    when(s.at_ms),
                    match approved_at {
                        Some(t) => format!("before the approval at {}", when(t)),
                        None => "in a run nobody approved".into(),
                    }
                ));
            }
        }
    }
    verdict(
        4,
        "no destructive step without approval",
        problems,
        format!(
            "{n} destructive statements, all after the approval{}",
            if at_start { " (--yes at start)" } else { "" }
        ),
        n > 0 || approved_at.is_none(),
    )
}

/// §9.5: a crash never repeats a destructive operation blindly: per instance, no more
/// `RESTORE … REPLACE` than the run started attempts of the step that sends it.
fn no_blind_repeat(ev: &Evidence) -> Verdict {
    let attempts = |step: &str| -> usize {
        ev.audit()
            .iter()
            .filter(|a| a["event"] == "step.started" && a["details"]["step"] == step)
            .count()
            .max(1)
    };
    let mut problems = Vec::new();
    let mut total = 0;
    for (inst, step) in [
        (&ev.primary, "fb4_restore"),
        (&ev.backup, "fb5_log_shipping"),
    ] {
        let replaces: Vec<_> = inst
            .starting("RESTORE DATABASE")
            .filter(|s| s.norm.contains("REPLACE"))
            .collect();
        total += replaces.len();
        let allowed = attempts(step);
        if replaces.len() > allowed {
            problems.push(format!(
                "§9.5: {} RESTORE DATABASE … REPLACE on {} in {allowed} attempt(s) of {step} of {}",
                replaces.len(),
                inst.name,
                ev.pool
            ));
        }
    }
    // An op id the journal shows started twice in one process was run again, not replayed.
    for (agent, records) in &ev.journals {
        let mut started: BTreeMap<&str, usize> = BTreeMap::new();
        for r in records {
            if let JournalRecord::Started { op, .. } = r {
                *started.entry(op.as_str()).or_default() += 1;
            }
        }
        for (op, n) in started.into_iter().filter(|(_, n)| *n > 1) {
            problems.push(format!("§9.5: {agent} started op {op} {n} times"));
        }
    }
    // No step result without its audit event (issue #12: one could be lost between the state
    // save and the append, when they were two writes).
    let mut results = 0;
    if let Some(outputs) = ev.outputs().as_object() {
        for (step, o) in outputs {
            let Some(status) = o["status"]
                .as_str()
                .filter(|s| ["succeeded", "skipped", "failed"].contains(s))
            else {
                continue;
            };
            results += 1;
            let event = format!("step.{status}");
            let audited = ev.audit().iter().any(|a| {
                a["event"] == event.as_str()
                    && a["details"]["step"] == step.as_str()
                    && a["details"]["pool"] == ev.pool.as_str()
            });
            if !audited {
                problems.push(format!(
                    "§9.5: {step} of {} is {status} in the run record, but the audit trail has no {event} for it",
                    ev.pool
                ));
            }
        }
    }
    verdict(
        5,
        "no blind repeat of a destructive operation",
        problems,
        format!(
            "{total} RESTORE … REPLACE, one per attempt; no op id run twice; {results} step results, each with its audit event"
        ),
        total > 0 || !ev.fired.is_empty(),
    )
}

/// §9.6: a finished failback loses no message written before FB-1.
fn no_message_lost(ev: &Evidence) -> Verdict {
    let succeeded = ev.detail["run"]["status"] == "succeeded";
    let mut problems = Vec::new();
    if succeeded {
        match ev.primary_messages {
            Some(n) if n >= ev.messages_before => {}
            Some(n) => problems.push(format!(
                "§9.6: the primary mgc of {} holds {n} messages after the failback, {} were written before FB-1",
                ev.pool, ev.messages_before
            )),
            None => problems.push(format!(
                "§9.6: the primary mgc of {} could not be counted after a succeeded failback",
                ev.pool
            )),
        }
        // Messages the chat servers wrote during the run (a scenario with traffic): each one
        // SQL Server acknowledged must be in the primary mgc, wherever it was written.
        if let Some(chat) = &ev.chat {
            match &chat.held {
                Some(held) => {
                    let lost: Vec<&str> = chat
                        .acked
                        .iter()
                        .filter(|(b, _)| !held.contains(b))
                        .map(|(b, _)| b.as_str())
                        .collect();
                    if !lost.is_empty() {
                        let to_backup = chat
                            .acked
                            .iter()
                            .filter(|(b, dc2)| *dc2 && !held.contains(b))
                            .count();
                        problems.push(format!(
                            "§9.6: {} of {} acknowledged chat messages are not in the primary mgc of {} after the failback ({to_backup} of them written to the backup mgc), e.g. '{}'",
                            lost.len(),
                            chat.acked.len(),
                            ev.pool,
                            lost[0]
                        ));
                    }
                }
                None => problems.push(format!(
                    "§9.6: the messages of the primary mgc of {} could not be read after a succeeded failback",
                    ev.pool
                )),
            }
        }
        // The failover half of §9.6 holds after a failback only if log shipping primary →
        // backup really works (issue #12, false proof): the backup mgc restoring, and a log
        // restored into it after its last full restore (FB-5's seed). Otherwise the next
        // failover loses every message written since the failback, whatever the report says.
        match &ev.backup_shipping {
            Some(b) if b.state == "RESTORING" && b.last_restore_type == "L" => {}
            Some(b) => problems.push(format!(
                "§9.6: the failback of {} succeeded but the backup mgc on {} is {} and its last restore was {}: no log shipped after the seed, so a failover now would lose every message written since",
                ev.pool,
                ev.backup.name,
                if b.state.is_empty() { "absent" } else { &b.state },
                match b.last_restore_type.as_str() {
                    "D" => "a full backup",
                    "" => "none",
                    other => other,
                }
            )),
            None => problems.push(format!(
                "§9.6: the backup mgc on {} could not be read after a succeeded failback",
                ev.backup.name
            )),
        }
    } else if let Some(chat) = &ev.chat {
        // A run that did not finish must not lose an acknowledged message either: each is in
        // the primary mgc or still in the backup mgc (which then remains the pool's database).
        let in_one = |b: &String| {
            chat.held.as_ref().is_some_and(|h| h.contains(b))
                || chat.held_backup.as_ref().is_some_and(|h| h.contains(b))
        };
        let lost: Vec<&str> = chat
            .acked
            .iter()
            .filter(|(b, _)| !in_one(b))
            .map(|(b, _)| b.as_str())
            .collect();
        if !lost.is_empty() {
            problems.push(format!(
                "§9.6: {} of {} acknowledged chat messages are in neither mgc of {} after the run ended {}, e.g. '{}'",
                lost.len(),
                chat.acked.len(),
                ev.pool,
                ev.detail["run"]["status"].as_str().unwrap_or("unknown"),
                lost[0]
            ));
        }
    }
    verdict(
        6,
        "no message lost",
        problems,
        if succeeded {
            format!(
                "{} messages on the primary, all {} written before the run among them{}; the backup mgc restoring, a log shipped after its seed",
                ev.primary_messages.unwrap_or(0),
                ev.messages_before,
                ev.chat.as_ref().map_or(String::new(), |c| format!(
                    "; all {} chat messages acknowledged during the run",
                    c.acked.len()
                ))
            )
        } else if let Some(c) = &ev.chat {
            format!(
                "the run did not finish a failback; all {} chat messages acknowledged during it are in one of the mgc copies",
                c.acked.len()
            )
        } else {
            "the run did not finish a failback".into()
        },
        succeeded || ev.chat.is_some(),
    )
}

/// §9.7: never two writable `mgc` for one pool. The primary's copy counts from its first
/// restore on (before, it is the empty database Topology Builder made, serving nobody); the
/// backup's copy must then be READ_ONLY or restoring: in its statement log the last change before
/// the primary's restore must be SET READ_ONLY, and no sample may show both writable.
fn one_writable_mgc(ev: &Evidence) -> Verdict {
    let mut problems = Vec::new();
    let restores: Vec<_> = ev
        .primary
        .starting("RESTORE DATABASE")
        .filter(|s| destructive(&s.norm))
        .collect();
    for r in &restores {
        let last = ev
            .backup
            .statements
            .iter()
            .filter(|s| s.at_ms <= r.at_ms)
            .rfind(|s| {
                s.norm.starts_with("ALTER DATABASE [MGC] SET READ_")
                    || (s.norm.starts_with("RESTORE DATABASE") && s.norm.contains("'MGC'"))
            });
        let frozen = last.is_some_and(|s| !s.norm.contains("READ_WRITE"));
        if !frozen {
            problems.push(format!(
                "§9.7: {} restored mgc at {} while the backup mgc on {} was writable",
                ev.primary.name,
                when(r.at_ms),
                ev.backup.name
            ));
        }
    }
    if let Some(first) = restores.first() {
        for s in ev.samples.iter().filter(|s| s.at_ms > first.at_ms) {
            let w = s.writable();
            if w.len() > 1 {
                problems.push(format!(
                    "§9.7: at {} both {w:?} had a writable mgc",
                    when(s.at_ms)
                ));
                break;
            }
        }
    }
    verdict(
        7,
        "never two writable mgc",
        problems,
        format!(
            "{} restores of the primary, each with the backup frozen; {} samples",
            restores.len(),
            ev.samples.len()
        ),
        !restores.is_empty(),
    )
}

/// A Unix-ms time as UTC time of day (`07:42:31.204Z`), for the checkers' messages.
pub(super) fn when(ms: u64) -> String {
    let (secs, milli) = (ms / 1000, ms % 1000);
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{milli:03}Z",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scenario::evidence::Instance;

    fn evidence(detail: serde_json::Value) -> Evidence {
        let none = |name: &str| Instance {
            name: name.into(),
            statements: Vec::new(),
        };
        Evidence {
            pool: "p.lab".into(),
            primary: none("sql01.dc1.lab"),
            backup: none("sql01.dc2.lab"),
            scripts: Vec::new(),
            journals: BTreeMap::new(),
            detail,
            fired: Vec::new(),
            samples: Vec::new(),
            primary_messages: None,
            chat: None,
            backup_shipping: None,
            messages_before: 0,
            started_ms: 0,
        }
    }

    #[test]
    fn a_step_result_without_its_audit_event_breaks_9_5() {
        let outputs = serde_json::json!({
            "fb1_clear_active": {"status": "succeeded"},
            "fb2_remove_mirroring": {"status": "skipped"},
        });
        let audited = |events: &[(&str, &str)]| {
            serde_json::json!({
                "pools": [{"pool": "p.lab", "outputs": outputs}],
                "audit": events.iter().map(|(e, s)| serde_json::json!({
                    "event": e, "details": {"pool": "p.lab", "step": s}
                })).collect::<Vec<_>>(),
            })
        };
        let all = no_blind_repeat(&evidence(audited(&[
            ("step.succeeded", "fb1_clear_active"),
            ("step.skipped", "fb2_remove_mirroring"),
        ])));
        assert!(all.ok, "{}", all.detail);
        assert!(all.detail.contains("2 step results"), "{}", all.detail);
        let lost = no_blind_repeat(&evidence(audited(&[(
            "step.succeeded",
            "fb1_clear_active",
        )])));
        assert!(!lost.ok);
        assert!(
            lost.detail
                .contains("§9.5: fb2_remove_mirroring of p.lab is skipped in the run record"),
            "{}",
            lost.detail
        );
    }
}
