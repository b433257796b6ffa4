//! What a person decides when starting a run, beyond which pools and how: a failover's
//! attestation that the primary data center is down, and an approver's acceptance of the data
//! loss of one gap in the log chain. Both are recorded in the run's spec and audit trail with the
//! caller's certificate name; this module holds their validation, shared by the engine (refusing
//! the start) and the run store (refusing a bad record).
//!
//! Decision (issue #11, FO-3): recovering past a gap is never an option of the step itself. The
//! first run stops at FO-3 and names the gap's file; a person who accepts the loss starts a new
//! failover run naming that file (`--accept-gap FILE --gap-reason TEXT`), with an approver's
//! certificate since it throws away shipped log. Naming the file binds the decision to the loss
//! it accepts: a gap anywhere else (a different file, a new hole) still stops the run.

use crate::error::Error;
use crate::store::{AcceptedGap, MAX_ATTESTATION_CHARS, RunbookKind};

/// Longest file name an accepted gap may name (a Windows path component).
pub const MAX_GAP_FILE_CHARS: usize = 255;

/// What the caller decided at the start of a run (both optional here; the engine checks them
/// against the runbook).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartDecisions {
    /// The operator's statement that the primary data center is down (failover: required).
    pub attestation: Option<String>,
    /// `(file, reason)`: accept the loss of the gap FO-3 reported at `file` (failover, approver).
    pub accept_gap: Option<(String, String)>,
}

impl StartDecisions {
    /// Only an attestation.
    pub fn attested(attestation: Option<impl Into<String>>) -> Self {
        StartDecisions {
            attestation: attestation.map(Into::into),
            accept_gap: None,
        }
    }
}

/// A free-text statement a run records: 1 to [`MAX_ATTESTATION_CHARS`] characters, no control
/// characters.
pub fn check_statement(what: &str, text: &str) -> Result<(), Error> {
    if text.trim().is_empty()
        || text.chars().count() > MAX_ATTESTATION_CHARS
        || text.chars().any(char::is_control)
    {
        return Err(Error::InvalidInput(format!(
            "{what} must be 1 to {MAX_ATTESTATION_CHARS} characters without control characters"
        )));
    }
    Ok(())
}

/// The file an accepted gap names: a bare file name (FO-3 reports names; a path is reduced to its
/// last component by [`accepted_gap`] first), 1 to [`MAX_GAP_FILE_CHARS`] characters, no control
/// characters, no separators.
pub fn check_gap_file(file: &str) -> Result<(), Error> {
    if file.trim().is_empty()
        || file.chars().count() > MAX_GAP_FILE_CHARS
        || file
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(Error::InvalidInput(format!(
            "--accept-gap '{file}': give the file name FO-3 reported as the gap (1 to {MAX_GAP_FILE_CHARS} characters, no control characters)"
        )));
    }
    Ok(())
}

/// Validates an acceptance request of `caller` for a run of `kind`: failover only, approver
/// role, both the file and the reason given. Returns what the run records.
pub fn accepted_gap(
    kind: RunbookKind,
    request: Option<(String, String)>,
    caller: &str,
    caller_is_approver: bool,
) -> Result<Option<AcceptedGap>, Error> {
    let Some((file, reason)) = request else {
        return Ok(None);
    };
    let file = file.trim();
    let reason = reason.trim();
    if kind != RunbookKind::Failover {
        return Err(Error::InvalidInput(format!(
            "--accept-gap belongs to failover runs (FO-3's log chain); a {kind:?} run takes none"
        )));
    }
    if file.is_empty() || reason.is_empty() {
        return Err(Error::InvalidInput(
            "accepting a gap needs both the file FO-3 reported (--accept-gap FILE) and why the loss is acceptable (--gap-reason TEXT)".into(),
        ));
    }
    if !caller_is_approver {
        return Err(Error::PermissionDenied(format!(
            "certificate '{caller}' does not have the approver role; accepting the loss of shipped log (--accept-gap) needs it"
        )));
    }
    let file = file.rsplit(['/', '\\']).next().unwrap_or(file).to_string();
    check_gap_file(&file)?;
    check_statement("the gap's reason (--gap-reason)", reason)?;
    Ok(Some(AcceptedGap {
        file,
        reason: reason.to_string(),
        accepted_by: caller.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(file: &str, reason: &str) -> Option<(String, String)> {
        Some((file.into(), reason.into()))
    }

    #[test]
    fn an_accepted_gap_is_a_failover_approvers_named_file() {
        let g = accepted_gap(
            RunbookKind::Failover,
            req(r"D:\LSCopy\mgc_20261126095758.trn", " share lost with DC1 "),
            "bob",
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(g.file, "mgc_20261126095758.trn");
        assert_eq!(g.reason, "share lost with DC1");
        assert_eq!(g.accepted_by, "bob");
        assert_eq!(
            accepted_gap(RunbookKind::Failover, None, "bob", false).unwrap(),
            None
        );
        for (kind, r, approver) in [
            (RunbookKind::Failback, req("mgc_1.trn", "x"), true),
            (RunbookKind::Failover, req("mgc_1.trn", " "), true),
            (RunbookKind::Failover, req("", "x"), true),
            (RunbookKind::Failover, req("mgc_1.trn", "x"), false),
            (RunbookKind::Failover, req("mgc\n.trn", "x"), true),
            (RunbookKind::Failover, req("mgc_1.trn", "a\u{7}b"), true),
        ] {
            assert!(
                accepted_gap(kind, r.clone(), "alice", approver).is_err(),
                "{r:?}"
            );
        }
    }
}
