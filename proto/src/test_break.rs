//! Test-only breakage ("mutations") that the reliability scenarios use to show that each DESIGN
//! §9 invariant has a scenario that catches it when it breaks (issue #12): a debug build reads
//! `FAILBACK_TEST_BREAK` (comma-separated names) and the named safety check is skipped.
//!
//! Why an environment variable and not a cargo feature: the scenarios run the very binaries the
//! lab and every other test use (`target/debug`), so a feature would mean a second build of the
//! workspace. Why it is safe to ship: in a release build (`debug_assertions` off) [`broken`] is a
//! constant `false` and the checks cannot be turned off; a debug build with a break active says
//! so on standard error at every use, so a mistaken setting is never silent.

/// The environment variable naming the checks to break.
pub const ENV: &str = "FAILBACK_TEST_BREAK";

// One name per break, used by the code it disables and by [`KNOWN`], so a misspelt name
// cannot silently disable nothing.
/// The `active-servers-guard` break.
pub const ACTIVE_SERVERS_GUARD: &str = "active-servers-guard";
/// The `agent-epoch-check` break.
pub const AGENT_EPOCH_CHECK: &str = "agent-epoch-check";
/// The `agent-journal-replay` break.
pub const AGENT_JOURNAL_REPLAY: &str = "agent-journal-replay";
/// The `approval-gate` break.
pub const APPROVAL_GATE: &str = "approval-gate";
/// The `fb4-checksum` break.
pub const FB4_CHECKSUM: &str = "fb4-checksum";
/// The `backup-freeze` break.
pub const BACKUP_FREEZE: &str = "backup-freeze";
/// The `fb5-stale-proof` break.
pub const FB5_STALE_PROOF: &str = "fb5-stale-proof";
/// The `keepalive-budget` break.
pub const KEEPALIVE_BUDGET: &str = "keepalive-budget";
/// The `leader-hint` break.
pub const LEADER_HINT: &str = "leader-hint";
/// The `backup-retention` break.
pub const BACKUP_RETENTION: &str = "backup-retention";
/// The `report-leaders` break.
pub const REPORT_LEADERS: &str = "report-leaders";
/// The `identifier-validation` break.
pub const IDENTIFIER_VALIDATION: &str = "identifier-validation";
/// The `agent-liveness` break.
pub const AGENT_LIVENESS: &str = "agent-liveness";
/// The `destructive-unknown-retry` break.
pub const DESTRUCTIVE_UNKNOWN_RETRY: &str = "destructive-unknown-retry";
/// The `refusal-keeps-freeze` break.
pub const REFUSAL_KEEPS_FREEZE: &str = "refusal-keeps-freeze";
/// The `wait-ignores-abort` break.
pub const WAIT_IGNORES_ABORT: &str = "wait-ignores-abort";
/// The `session-lost-waits` break.
pub const SESSION_LOST_WAITS: &str = "session-lost-waits";
/// The `audit-one-write` break.
pub const AUDIT_ONE_WRITE: &str = "audit-one-write";
/// The `free-space-data-size` break.
pub const FREE_SPACE_DATA_SIZE: &str = "free-space-data-size";

/// The breaks the code knows, with what each disables (for the scenario files' validation and
/// RELIABILITY.md).
pub const KNOWN: &[(&str, &str)] = &[
    (
        ACTIVE_SERVERS_GUARD,
        "FB-1 leaves the chat servers active and ignores clients that reconnect; FB-1 and FB-4 do not check the active list",
    ),
    (
        AGENT_EPOCH_CHECK,
        "the agent accepts instructions of any epoch (DESIGN §4 fencing)",
    ),
    (
        AGENT_JOURNAL_REPLAY,
        "the agent runs a repeated op id again instead of answering from its journal",
    ),
    (
        APPROVAL_GATE,
        "the coordinator runs destructive steps without an approval",
    ),
    (
        FB4_CHECKSUM,
        "FB-4 and the agent's RESTORE skip the comparison of the file's SHA-256 with FB-3's",
    ),
    (
        BACKUP_FREEZE,
        "FB-3 and FB-4 leave the backup mgc writable (no freeze before FB-3's backup or FB-4's restore)",
    ),
    (
        FB5_STALE_PROOF,
        "FB-5's probe takes any last_restored_file of the backup's monitor for working log shipping (the probe before issue #12)",
    ),
    (
        KEEPALIVE_BUDGET,
        "the etcd leader steps down when no keep-alive succeeded for half the TTL (the budget before issue #12)",
    ),
    (
        LEADER_HINT,
        "the leader hints before issue #12: a coordinator that cannot reach etcd keeps naming the last leader it saw, itself included, and agents follow every hint at once",
    ),
    (
        BACKUP_RETENTION,
        "FB-8 removes no earlier failback's backups from the share (as before issue #12)",
    ),
    (
        REPORT_LEADERS,
        "the run's report names only the first coordinator that drove it, not the leader changes (the report before issue #12)",
    ),
    (
        IDENTIFIER_VALIDATION,
        "DatabaseName accepts any text: the one validator of SQL identifiers is skipped, so a hostile name reaches the quoting module and SQL Server",
    ),
    (
        AGENT_LIVENESS,
        "agents ignore the Welcome's liveness timeout: a hung leader keeps them until HTTP/2 keepalive gives up (the agents before issue #12)",
    ),
    (
        DESTRUCTIVE_UNKNOWN_RETRY,
        "an operation whose outcome is unknown is retried as a new attempt, destructive or not (before issue #12 a dropped connection mid-RESTORE was retryable)",
    ),
    (
        REFUSAL_KEEPS_FREEZE,
        "FB-4 refusing FB-3's file leaves the backup mgc frozen READ_ONLY: the pool has no writable mgc (before issue #12 the freeze came before the check and stayed)",
    ),
    (
        WAIT_IGNORES_ABORT,
        "a step waiting for an agent's answer does not watch the abort: an aborted run holds its pools until the operation ends (the wait before issue #12)",
    ),
    (
        SESSION_LOST_WAITS,
        "a lost agent session leaves the operations waiting on it waiting, up to the step timeout (the registry before issue #12)",
    ),
    (
        AUDIT_ONE_WRITE,
        "a step's result and its audit event are two store writes, the event written 3 s after the result (the two writes before issue #12, their gap widened so a kill of the leader lands in it)",
    ),
    (
        FREE_SPACE_DATA_SIZE,
        "preflight sizes what failback writes to the share as the database's data files × the margin, once (the check before issue #12), not as FB-3's and FB-5's two full backups",
    ),
];

/// Whether the check `name` is broken for this process (always `false` in release builds).
pub fn broken(name: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        let on = std::env::var(ENV)
            .map(|v| v.split(',').any(|b| b.trim() == name))
            .unwrap_or(false);
        if on {
            eprintln!("WARNING: {ENV} breaks '{name}' in this process (test-only mutation)");
        }
        on
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}
