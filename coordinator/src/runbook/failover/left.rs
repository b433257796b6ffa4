//! What a failover stopped before its end leaves behind, in words an operator can act on: the
//! reason of an aborted or failed run lists it, as for a failback ([`super::super::failback::left`]).
//! A failover runs while the primary data center is lost, so each condition below is an outage
//! of the pool until a new failover run (which resumes from what its probes find) or a person
//! finishes the work. Read from the steps the pool's record shows done; the step that failed
//! says what it left in its own error, so only its predecessors are described.

use serde_json::Value;

use crate::runbook::failback::MGC;

fn done(outputs: &Value, step: &str) -> bool {
    outputs[step]["status"] == "succeeded" || outputs[step]["status"] == "skipped"
}

/// The conditions a failover whose pool recorded `outputs` leaves, one sentence each (empty
/// when it changed nothing that stays changed).
pub fn left_behind(outputs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let removed = done(outputs, "fo1_remove_log_shipping");
    let recovered = done(outputs, "fo4_recover");
    let failed_over = done(outputs, "fo5_pool_failed_over");
    if removed && !recovered {
        out.push(format!(
            "log shipping to the backup {MGC} is removed (FO-1) and the backup {MGC} is not recovered (FO-4 did not run): no database serves the pool; a new failover run goes on from the logs already applied"
        ));
    }
    if recovered && !failed_over {
        out.push(format!(
            "the backup {MGC} is recovered and writable (FO-4) but the pool is not FailedOver in the CMS (FO-5 did not run): the chat servers do not use it yet; a new failover run goes on with FO-5"
        ));
    }
    if failed_over && !done(outputs, "fo7_activate") {
        out.push(
            "the pool is FailedOver in the CMS but no chat server of the backup data center is active (FO-7 did not run): chat stays down until Set-CsPersistentChatActiveServer names them"
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_stop_names_the_outage_it_leaves() {
        let ok = json!({"status": "succeeded"});
        let mut o = json!({
            "fo1_capture": ok.clone(),
            "fo1_remove_log_shipping": ok.clone(),
            "fo2_copy_logs": ok.clone(),
        });
        let left = left_behind(&o);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].contains("no database serves the pool"), "{left:?}");
        o["fo3_apply_logs"] = ok.clone();
        o["fo4_recover"] = ok.clone();
        let left = left_behind(&o);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].contains("FO-5 did not run"), "{left:?}");
        o["fo5_pool_failed_over"] = ok.clone();
        let left = left_behind(&o);
        assert!(left[0].contains("FO-7 did not run"), "{left:?}");
        o["fo6_mirror"] = json!({"status": "skipped"});
        o["fo7_activate"] = ok;
        assert!(left_behind(&o).is_empty());
        assert!(left_behind(&json!({})).is_empty());
    }
}
