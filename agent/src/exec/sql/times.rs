//! Server-local times to UTC. SQL Server reports most times in its host's local time, without
//! an offset: GETDATE(), RESTORE HEADERONLY's BackupStartDate/BackupFinishDate, msdb's date
//! columns without `_utc`, and SQL Server Agent's run_date/run_time. The agent reports UTC (Unix
//! milliseconds, or RFC 3339 text ending in `Z`), so the coordinator can compare times taken in
//! two data centers whose hosts run different time zones.
//!
//! Which offset (decided here):
//! - Times this instance wrote itself (its msdb rows, its job history, its own backups): the
//!   instance's offset, read once per operation with `DATEPART(TZOFFSET, SYSDATETIMEOFFSET())`
//!   ([`tsql::utc_offset`]).
//! - A backup header is the *writing* server's clock, wherever the file is read: FO-3 reads on
//!   the backup instance log backups the primary wrote, possibly in another time zone. msdb's
//!   backupset records, per set, the writer's offset (`time_zone`, 15-minute units, "at the time
//!   the backup operation started"), and a secondary has a backupset row for every log backup
//!   its restore job applied from that primary. So a header whose ServerName differs from this
//!   instance takes the newest `time_zone` msdb has for that server
//!   ([`tsql::backupset_time_zone`]); without one (nothing of that server ever restored here)
//!   it falls back to this instance's offset, which is right when both hosts share a zone.
//!
//! Daylight saving time: an offset read now converts a time recorded before the last DST change
//! with the wrong hour. Where that can happen and why it is acceptable: msdb's last_*_date and
//! Agent history shown in reports and preflight messages (minutes to hours old; near a change
//! an hour off in a displayed time, never in a decision), and backup headers (FO-3's loss
//! window is the difference between two headers of the same writer, both converted with the same
//! offset, so the window itself is exact; only its printed start may be an hour off for backups
//! from before the change). Backupset's `time_zone` is per backup set, so a writer's zone read
//! from a recent set is the zone of recent backups — the ones FO-3 applies.

use chrono::NaiveDateTime;
use tiberius::Row;

use super::tsql;
use super::{Conn, SqlBackend, int};
use crate::error::Error;

/// Offsets beyond ±14 h do not exist; a value outside is a misread, treated as unknown.
const MAX_OFFSET_MINUTES: i64 = 14 * 60;

/// This instance's current offset from UTC in minutes (local = UTC + offset).
pub(crate) async fn own_offset(conn: &mut Conn) -> Result<i32, Error> {
    let rows = SqlBackend::rows(conn, &tsql::utc_offset()).await?;
    Ok(rows
        .first()
        .and_then(|r| int(r, "offset_minutes"))
        .filter(|m| m.abs() <= MAX_OFFSET_MINUTES)
        .and_then(|m| i32::try_from(m).ok())
        .unwrap_or(0))
}

/// The offset msdb recorded for the newest backup set `server` wrote, if any.
pub(crate) async fn writer_offset(conn: &mut Conn, server: &str) -> Result<Option<i32>, Error> {
    let rows = SqlBackend::rows(conn, &tsql::backupset_time_zone(server)).await?;
    Ok(rows
        .first()
        .and_then(|r| int(r, "time_zone"))
        .filter(|z| (-48..=48).contains(z))
        .and_then(|z| i32::try_from(z * 15).ok()))
}

/// A server-local time at `offset_minutes` as Unix milliseconds (0 before 1970).
pub(crate) fn local_to_unix_ms(t: NaiveDateTime, offset_minutes: i32) -> u64 {
    let utc = t.and_utc() - chrono::TimeDelta::minutes(i64::from(offset_minutes));
    u64::try_from(utc.timestamp_millis()).unwrap_or(0)
}

/// A server-local time at `offset_minutes` as RFC 3339 UTC text, e.g. `2026-12-02T17:00:00Z`.
pub(crate) fn local_to_utc_text(t: NaiveDateTime, offset_minutes: i32) -> String {
    let utc = t.and_utc() - chrono::TimeDelta::minutes(i64::from(offset_minutes));
    utc.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A local datetime column as Unix milliseconds (0 when NULL).
pub(crate) fn col_unix_ms(row: &Row, col: &str, offset_minutes: i32) -> u64 {
    row.try_get::<NaiveDateTime, _>(col)
        .ok()
        .flatten()
        .map_or(0, |t| local_to_unix_ms(t, offset_minutes))
}

/// A local datetime column as RFC 3339 UTC text (empty when NULL).
pub(crate) fn col_utc_text(row: &Row, col: &str, offset_minutes: i32) -> String {
    row.try_get::<NaiveDateTime, _>(col)
        .ok()
        .flatten()
        .map(|t| local_to_utc_text(t, offset_minutes))
        .unwrap_or_default()
}

/// SQL Server Agent's `run_date` (yyyymmdd) and `run_time` (hhmmss) ints, local time, as RFC
/// 3339 UTC text; empty when they do not form a date (a job that never ran has 0).
pub(crate) fn agent_run_utc_text(date: i64, time: i64, offset_minutes: i32) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(date / 10_000).unwrap_or(0),
        u32::try_from(date / 100 % 100).unwrap_or(0),
        u32::try_from(date % 100).unwrap_or(0),
    );
    let t = chrono::NaiveTime::from_hms_opt(
        u32::try_from(time / 10_000).unwrap_or(99),
        u32::try_from(time / 100 % 100).unwrap_or(99),
        u32::try_from(time % 100).unwrap_or(99),
    );
    match (d, t) {
        (Some(d), Some(t)) => local_to_utc_text(d.and_time(t), offset_minutes),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn local_times_shift_by_the_offset() {
        // 18:00 at UTC+1 and 12:00 at UTC-5 are the same instant, 17:00Z.
        let a = local_to_unix_ms(t("2026-12-02 18:00:00"), 60);
        let b = local_to_unix_ms(t("2026-12-02 12:00:00"), -300);
        assert_eq!(a, b);
        assert_eq!(
            local_to_utc_text(t("2026-12-02 12:00:00"), -300),
            "2026-12-02T17:00:00Z"
        );
        assert_eq!(
            agent_run_utc_text(20261202, 1500, 60),
            "2026-12-01T23:15:00Z"
        );
        assert_eq!(agent_run_utc_text(0, 0, 0), "");
    }
}
