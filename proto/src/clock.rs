//! Wall-clock time for records (audit events, journal entries, heartbeats shown to operators):
//! Unix milliseconds, one function for the whole workspace (issue #13 counted eight copies).
//! Durations, timeouts and deadlines use `tokio::time`, never this.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970, `u64::MAX` past the
/// year 584 million).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
