//! What a failback stopped before its end leaves behind, in words an operator can act on: the
//! reason of an aborted run and of a failed one lists it (issue #12 found that an abort while
//! FB-4 waited for its approval left the backup `mgc` frozen and the pool without active chat
//! servers, and said only "aborted by"; a failure in FB-5 on a full share said only "disk
//! full"). Read from the steps the pool's record shows done; the step that failed says what it
//! left in its own error (FB-4's refusal, for one, says the backup stays frozen), so only its
//! predecessors are described.

use serde_json::Value;

use super::MGC;

/// The step reached its goal (acted, or found nothing to do).
fn done(outputs: &Value, step: &str) -> bool {
    outputs[step]["status"] == "succeeded" || outputs[step]["status"] == "skipped"
}

fn failed(outputs: &Value, step: &str) -> bool {
    outputs[step]["status"] == "failed"
}

/// The conditions a failback whose pool recorded `outputs` leaves, one sentence each (empty
/// when it changed nothing that stays changed).
pub fn left_behind(outputs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let cleared = done(outputs, "fb1_clear_active");
    let restored = done(outputs, "fb4_restore");
    if cleared && !done(outputs, "fb6_activate") {
        out.push(
            "no chat server of the pool is active (FB-1 cleared the list and FB-6 did not run): chat stays down until Set-CsPersistentChatActiveServer names the servers of the data center that holds the writable mgc"
                .to_string(),
        );
    }
    if done(outputs, "fb3_backup") && !restored && !failed(outputs, "fb4_restore") {
        out.push(format!(
            "the backup {MGC} is READ_ONLY since FB-3's freeze: to serve the pool from DC2 again, run ALTER DATABASE [{MGC}] SET READ_WRITE on the backup instance"
        ));
    }
    if restored && !done(outputs, "fb7_pool_normal") {
        out.push(format!(
            "the primary {MGC} was restored from FB-3's backup and the pool is still FailedOver in the CMS (FB-7 did not run): a new failback resumes from the primary's state"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_abort_awaiting_fb4s_approval_names_the_freeze_and_the_cleared_servers() {
        let o = json!({
            "fb1_clear_active": {"status": "succeeded"},
            "fb2_remove_mirroring": {"status": "skipped"},
            "fb3_backup": {"status": "succeeded"},
        });
        let left = left_behind(&o);
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[0].contains("no chat server"), "{left:?}");
        assert!(left[1].contains("SET READ_WRITE"), "{left:?}");
    }

    #[test]
    fn nothing_is_left_before_fb1_and_a_failed_fb4_speaks_for_itself() {
        assert!(left_behind(&json!({})).is_empty());
        let o = json!({
            "fb1_clear_active": {"status": "succeeded"},
            "fb3_backup": {"status": "succeeded"},
            "fb4_restore": {"status": "failed"},
        });
        let left = left_behind(&o);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(!left[0].contains("READ_ONLY"), "{left:?}");
    }
}
