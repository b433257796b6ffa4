//! Which coordinator drove a run when, for the evidence report (issue #12, truth: the report
//! left out leader changes). Read from the audit trail: every transition a coordinator makes is
//! recorded under its own name (`coordinator:<id>`), so a change of caller between two such
//! records is a change of leader, and the first record of the new one says where it took over.

use failback_proto::pb;
use serde_json::{Value, json};

/// The coordinators in the order they drove the run, each with the time and event of its
/// first record in a stretch (a coordinator that leads twice appears twice).
pub fn leaders(audit: &[pb::AuditEntry]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut current: Option<&str> = None;
    // Test-only mutation (never in release builds): the report before issue #12 named no
    // leader change.
    let one = failback_proto::test_break::broken(failback_proto::test_break::REPORT_LEADERS);
    for a in audit {
        if one && !out.is_empty() {
            break;
        }
        let Some(id) = a.caller.strip_prefix("coordinator:") else {
            continue;
        };
        if current == Some(id) {
            continue;
        }
        current = Some(id);
        out.push(json!({
            "coordinator": id,
            "from_unix_ms": a.at_unix_ms,
            "first_event": a.event,
            "took_over": !out.is_empty(),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: u64, caller: &str, event: &str) -> pb::AuditEntry {
        pb::AuditEntry {
            seq: at,
            at_unix_ms: at,
            caller: caller.into(),
            event: event.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_change_of_caller_is_a_change_of_leader() {
        let audit = [
            entry(1, "alice", "run.created"),
            entry(2, "coordinator:coord1", "step.started"),
            entry(3, "coordinator:coord1", "step.succeeded"),
            entry(4, "bob", "run.approved"),
            entry(5, "coordinator:coord2", "step.resumed"),
            entry(6, "coordinator:coord1", "step.started"),
        ];
        let l = leaders(&audit);
        let ids: Vec<&str> = l
            .iter()
            .map(|v| v["coordinator"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["coord1", "coord2", "coord1"]);
        assert_eq!(l[1]["first_event"], "step.resumed");
        assert_eq!(l[1]["took_over"], true);
        assert_eq!(l[0]["took_over"], false);
        assert!(leaders(&audit[..1]).is_empty());
    }
}
