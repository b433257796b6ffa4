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

/// The breaks the code knows, with what each disables (for the scenario files' validation and
/// RELIABILITY.md).
pub const KNOWN: &[(&str, &str)] = &[
    (
        "active-servers-guard",
        "FB-1 leaves the chat servers active and FB-1 and FB-4 do not check the active list",
    ),
    (
        "agent-epoch-check",
        "the agent accepts instructions of any epoch (DESIGN §4 fencing)",
    ),
    (
        "agent-journal-replay",
        "the agent runs a repeated op id again instead of answering from its journal",
    ),
    (
        "approval-gate",
        "the coordinator runs destructive steps without an approval",
    ),
    (
        "fb4-checksum",
        "FB-4 and the agent's RESTORE skip the comparison of the file's SHA-256 with FB-3's",
    ),
    (
        "fb4-freeze",
        "FB-4 leaves the backup mgc writable while it restores the primary",
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
