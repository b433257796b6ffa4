//! Calendar arithmetic without a date crate: SQL Server encodes dates as day counts from
//! 0001-01-01 (DATETIME2) or 1900-01-01 (DATETIME), and the statement log wants RFC 3339 text.
//! [`Timestamp`] is the one in-memory form (UTC, 100 ns ticks); the civil-date conversions are
//! Howard Hinnant's well-known algorithms.
//!
//! Server-local time: SQL Server reports most times in the host's local time (GETDATE,
//! SYSDATETIME, CURRENT_TIMESTAMP, the backup header's BackupStartDate/BackupFinishDate, msdb's
//! date columns without `_utc`, Agent's run_date/run_time and schedules) and only a few in UTC
//! (GETUTCDATE, SYSUTCDATETIME, msdb's `_utc` columns). The sim keeps every [`Timestamp`] in UTC
//! and converts at the edges with [`Timestamp::local`]; the host's offset is
//! `--utc-offset-minutes` (a fixed offset: the sim has no daylight saving time). It is
//! process-wide, not per engine, because one sqlsim process is one instance; in-process unit
//! tests leave it at 0.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// 100 ns ticks in a day.
pub const TICKS_PER_DAY: u64 = 864_000_000_000;
/// Days from 0001-01-01 to 1970-01-01.
const UNIX_EPOCH_DAYS: i64 = 719_162;
/// Days from 0001-01-01 to 1900-01-01 (DATETIME's epoch).
pub const DATETIME_EPOCH_DAYS: i64 = 693_595;

/// The instance's local time minus UTC, in minutes (`--utc-offset-minutes`).
static UTC_OFFSET_MINUTES: AtomicI32 = AtomicI32::new(0);

/// Sets the instance's UTC offset (once, at start).
pub fn set_utc_offset_minutes(minutes: i32) {
    UTC_OFFSET_MINUTES.store(minutes, Ordering::Relaxed);
}

/// The instance's local time minus UTC, in minutes.
pub fn utc_offset_minutes() -> i32 {
    UTC_OFFSET_MINUTES.load(Ordering::Relaxed)
}

/// A UTC point in time: days since 0001-01-01 and 100 ns ticks since midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    /// Days since 0001-01-01.
    pub days: i64,
    /// 100 ns units since midnight (< [`TICKS_PER_DAY`]).
    pub ticks: u64,
}

impl Timestamp {
    /// The current UTC time.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let total_ticks = since.as_secs() as u128 * 10_000_000 + since.subsec_nanos() as u128 / 100;
        let days = (total_ticks / TICKS_PER_DAY as u128) as i64;
        Timestamp {
            days: UNIX_EPOCH_DAYS + days,
            ticks: (total_ticks % TICKS_PER_DAY as u128) as u64,
        }
    }

    /// The current server-local time (what GETDATE() says).
    pub fn now_local() -> Self {
        Timestamp::now().local()
    }

    /// This UTC instant on the server's local wall clock.
    #[must_use]
    pub fn local(&self) -> Timestamp {
        self.plus_seconds(i64::from(utc_offset_minutes()) * 60)
    }

    /// The UTC instant of this server-local wall-clock time.
    #[must_use]
    pub fn utc_from_local(&self) -> Timestamp {
        self.plus_seconds(-i64::from(utc_offset_minutes()) * 60)
    }

    /// Builds a timestamp from civil fields; `None` when a field is out of range.
    pub fn from_civil(
        y: i64,
        m: u32,
        d: u32,
        hh: u32,
        mm: u32,
        ss: u32,
        ticks_frac: u64,
    ) -> Option<Self> {
        if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        if hh > 23 || mm > 59 || ss > 59 || ticks_frac >= 10_000_000 {
            return None;
        }
        let ticks = ((hh as u64 * 60 + mm as u64) * 60 + ss as u64) * 10_000_000 + ticks_frac;
        Some(Timestamp {
            days: days_from_civil(y, m, d) - days_from_civil(1, 1, 1),
            ticks,
        })
    }

    /// Year, month, day of the date part.
    pub fn civil_date(&self) -> (i64, u32, u32) {
        civil_from_days(self.days + days_from_civil(1, 1, 1))
    }

    /// RFC 3339 text with microseconds, e.g. `2026-11-26T06:17:00.123456Z`.
    pub fn to_rfc3339(&self) -> String {
        let (y, m, d) = self.civil_date();
        let secs = self.ticks / 10_000_000;
        let micros = (self.ticks % 10_000_000) / 10;
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )
    }

    /// Seconds since midnight.
    pub fn second_of_day(&self) -> u32 {
        (self.ticks / 10_000_000) as u32
    }

    /// The date as SQL Server Agent stores it: `yyyymmdd` as an int.
    pub fn agent_date(&self) -> i64 {
        let (y, m, d) = self.civil_date();
        y * 10_000 + m as i64 * 100 + d as i64
    }

    /// The time of day as SQL Server Agent stores it: `hhmmss` as an int.
    pub fn agent_time(&self) -> i64 {
        let s = self.second_of_day() as i64;
        (s / 3600) * 10_000 + (s / 60 % 60) * 100 + s % 60
    }

    /// `yyyymmddhhmmss`, the stamp in log shipping file names.
    pub fn compact(&self) -> String {
        format!("{}{:06}", self.agent_date(), self.agent_time())
    }

    /// Whole seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn seconds_since(&self, earlier: &Timestamp) -> i64 {
        (self.days - earlier.days) * 86_400 + self.second_of_day() as i64
            - earlier.second_of_day() as i64
    }

    /// This instant plus `secs` seconds (sub-second part kept).
    #[must_use]
    pub fn plus_seconds(&self, secs: i64) -> Timestamp {
        let total = self.days as i128 * TICKS_PER_DAY as i128
            + self.ticks as i128
            + secs as i128 * 10_000_000;
        Timestamp {
            days: total.div_euclid(TICKS_PER_DAY as i128) as i64,
            ticks: total.rem_euclid(TICKS_PER_DAY as i128) as u64,
        }
    }

    /// Midnight of this instant's day.
    #[must_use]
    pub fn midnight(&self) -> Timestamp {
        Timestamp {
            days: self.days,
            ticks: 0,
        }
    }

    /// Parses `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM[:SS[.fffffff]]`, the
    /// forms SQL Server converts from character strings without a style.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim().trim_end_matches('Z');
        let (date, time) = match t.find(['T', ' ']) {
            Some(i) => (&t[..i], t[i + 1..].trim()),
            None => (t, ""),
        };
        let mut dp = date.split('-');
        let y: i64 = dp.next()?.parse().ok()?;
        let m: u32 = dp.next()?.parse().ok()?;
        let d: u32 = dp.next()?.parse().ok()?;
        if dp.next().is_some() {
            return None;
        }
        let (mut hh, mut mm, mut ss, mut frac) = (0, 0, 0, 0u64);
        if !time.is_empty() {
            let (hms, fraction) = match time.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (time, None),
            };
            let mut tp = hms.split(':');
            hh = tp.next()?.parse().ok()?;
            mm = tp.next()?.parse().ok()?;
            ss = match tp.next() {
                Some(s) => s.parse().ok()?,
                None => 0,
            };
            if let Some(f) = fraction {
                if f.is_empty() || f.len() > 7 || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                frac = f.parse::<u64>().ok()? * 10u64.pow(7 - f.len() as u32);
            }
        }
        Timestamp::from_civil(y, m, d, hh, mm, ss, frac)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_line_up() {
        assert_eq!(
            Timestamp::from_civil(1970, 1, 1, 0, 0, 0, 0).unwrap().days,
            UNIX_EPOCH_DAYS
        );
        assert_eq!(
            Timestamp::from_civil(1900, 1, 1, 0, 0, 0, 0).unwrap().days,
            DATETIME_EPOCH_DAYS
        );
    }

    #[test]
    fn agent_fields() {
        let t = Timestamp::parse("2024-02-29T03:04:05.5").unwrap();
        assert_eq!(t.agent_date(), 20240229);
        assert_eq!(t.agent_time(), 30405);
        assert_eq!(t.compact(), "20240229030405");
        let later = t.plus_seconds(86_400 + 61);
        assert_eq!(later.compact(), "20240301030506");
        assert_eq!(later.seconds_since(&t), 86_461);
    }

    #[test]
    fn parse_and_format_roundtrip() {
        let t = Timestamp::parse("2024-02-29T03:04:05.1234567").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-02-29T03:04:05.123456Z");
        assert!(Timestamp::parse("2023-02-29").is_none());
        assert!(Timestamp::parse("garbage").is_none());
    }
}
