//! The log chain FO-3 walks (pchat-dr.md §6.11), as pure functions: log backups ordered by
//! FirstLSN, the decision for each one against the database's restore point, and the
//! data-loss window the run reports.
//!
//! The rule SQL Server applies to `RESTORE LOG` (and the one checked here before anything is
//! sent): a log backup applies when `FirstLSN <= restore point < LastLSN`; `LastLSN <= restore
//! point` means it is already applied (SQL Server: 4326); `FirstLSN > restore point` means a
//! log backup in between is missing (4305) — a gap, and nothing beyond it may be applied.

use serde_json::{Value, json};

use super::rfc3339;

/// One log backup as RESTORE HEADERONLY describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Path as the backup instance reads it.
    pub path: String,
    /// FirstLSN.
    pub first_lsn: u128,
    /// LastLSN.
    pub last_lsn: u128,
    /// BackupFinishDate, Unix milliseconds (0 = unknown).
    pub finish_unix_ms: u64,
}

/// What to do with the next log backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Its LastLSN is at or before the restore point.
    AlreadyApplied,
    /// It continues the chain (or the restore point is unknown: SQL Server decides).
    Apply,
    /// It starts after the restore point: the log between `from` and `to` is missing.
    Gap {
        /// The restore point (LastLSN of what was applied).
        from: u128,
        /// This file's FirstLSN.
        to: u128,
    },
}

/// An LSN as HEADERONLY prints it (numeric(25,0) as decimal text).
pub fn parse_lsn(s: &str) -> Option<u128> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Log backups in the order they must be applied (FirstLSN, then LastLSN).
pub fn sort(files: &mut [LogFile]) {
    files.sort_by(|a, b| {
        (a.first_lsn, a.last_lsn, &a.path).cmp(&(b.first_lsn, b.last_lsn, &b.path))
    });
}

/// The decision for `f` given the restore point (None = unknown).
pub fn decide(point: Option<u128>, f: &LogFile) -> Decision {
    match point {
        None => Decision::Apply,
        Some(p) if f.last_lsn <= p => Decision::AlreadyApplied,
        Some(p) if f.first_lsn <= p => Decision::Apply,
        Some(p) => Decision::Gap {
            from: p,
            to: f.first_lsn,
        },
    }
}

/// The `yyyymmddhhmmss…` stamp of a log shipping file name `<db>_<stamp>.trn` (what the
/// backup job writes, UTC), when the name has that shape.
pub fn stamp(name: &str) -> Option<&str> {
    let stem = name
        .strip_suffix(".trn")
        .or_else(|| name.strip_suffix(".TRN"))?;
    let (_, digits) = stem.rsplit_once('_')?;
    (digits.len() >= 14 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// Unix seconds of a name stamp (`yyyymmddhhmmss`, UTC as the backup job writes it).
pub fn stamp_seconds(stamp: &str) -> Option<i64> {
    let n = |a: usize, b: usize| stamp.get(a..b).and_then(|x| x.parse::<u32>().ok());
    let month = time::Month::try_from(u8::try_from(n(4, 6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(n(0, 4)?).ok()?,
        month,
        u8::try_from(n(6, 8)?).ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(n(8, 10)?).ok()?,
        u8::try_from(n(10, 12)?).ok()?,
        u8::try_from(n(12, 14)?).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Whether file `name` may hold log newer than (or equal to) file `than`, judging by the
/// backup job's name stamps; true whenever either name has no stamp (read its header).
pub fn not_older(name: &str, than: &str) -> bool {
    match (stamp(name), stamp(than)) {
        (Some(a), Some(b)) => a >= b,
        _ => true,
    }
}

/// The data-loss window of a failover: the last log backup restored into the backup `mgc`
/// against the newest log backup known to exist.
#[derive(Debug, Clone, Default)]
pub struct LossWindow {
    /// The last log backup applied (or found applied).
    pub last_restored: Option<LogFile>,
    /// The newest log backup whose header was read.
    pub last_known: Option<LogFile>,
    /// Missing log: file names known to exist but not found, and gaps by LSN range.
    pub files_missing: Vec<String>,
    /// Whether FO-2 could list the share.
    pub share_reachable: bool,
}

impl LossWindow {
    /// The newest log backup known that holds log past the restored one (else the restored
    /// one: a later backup without new log records loses nothing).
    fn newest(&self) -> Option<&LogFile> {
        match (&self.last_known, &self.last_restored) {
            (Some(k), Some(r)) if k.last_lsn <= r.last_lsn => Some(r),
            (Some(k), _) => Some(k),
            (None, r) => r.as_ref(),
        }
    }

    /// Seconds between the two backups' finish times (0 when nothing newer is known).
    pub fn window_seconds(&self) -> u64 {
        let restored = self.last_restored.as_ref().map_or(0, |f| f.finish_unix_ms);
        let known = self.newest().map_or(restored, |f| f.finish_unix_ms);
        known.saturating_sub(restored) / 1000
    }

    /// The JSON the run records under `loss_window` (key names are read by `failbackctl
    /// report`; keep them).
    pub fn to_json(&self) -> Value {
        let (rf, rl, rt) = self.last_restored.as_ref().map_or(
            (String::new(), String::new(), String::new()),
            |f| {
                (
                    f.path.clone(),
                    f.last_lsn.to_string(),
                    rfc3339(f.finish_unix_ms),
                )
            },
        );
        let (kf, kt) = self.newest().map_or((String::new(), String::new()), |f| {
            (f.path.clone(), rfc3339(f.finish_unix_ms))
        });
        let note = if self.share_reachable {
            "every log backup on the share and in the copy folder was considered; what the primary wrote after its last log backup is lost (at most one backup interval)"
        } else {
            "the share was unreachable: log backups that existed only there are lost and not counted, so the real window is larger (up to the moment the primary was lost)"
        };
        json!({
            "last_restored_file": rf,
            "last_restored_lsn": rl,
            "last_restored_backup_time": rt,
            "last_backup_known_file": kf,
            "last_backup_known_time": kt,
            "window_seconds": self.window_seconds(),
            "files_missing": self.files_missing,
            "share_reachable": self.share_reachable,
            "note": note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, first: u128, last: u128, ms: u64) -> LogFile {
        LogFile {
            path: path.into(),
            first_lsn: first,
            last_lsn: last,
            finish_unix_ms: ms,
        }
    }

    #[test]
    fn decisions_follow_sql_servers_rule() {
        let a = f("a", 100, 200, 0);
        assert_eq!(decide(None, &a), Decision::Apply);
        assert_eq!(decide(Some(150), &a), Decision::Apply);
        assert_eq!(decide(Some(100), &a), Decision::Apply);
        assert_eq!(decide(Some(200), &a), Decision::AlreadyApplied);
        assert_eq!(decide(Some(250), &a), Decision::AlreadyApplied);
        assert_eq!(decide(Some(90), &a), Decision::Gap { from: 90, to: 100 });
        // An empty log backup (FirstLSN = LastLSN = restore point) is already applied.
        assert_eq!(
            decide(Some(200), &f("e", 200, 200, 0)),
            Decision::AlreadyApplied
        );
    }

    #[test]
    fn order_names_and_lsns() {
        let mut v = vec![
            f("c", 300, 400, 0),
            f("a", 100, 200, 0),
            f("b", 200, 300, 0),
        ];
        sort(&mut v);
        let names: Vec<&str> = v.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(parse_lsn("37000000012300001"), Some(37_000_000_012_300_001));
        assert_eq!(parse_lsn("12a"), None);
        assert_eq!(parse_lsn(""), None);
        assert_eq!(stamp("mgc_20261126090102.trn"), Some("20261126090102"));
        assert_eq!(stamp("mgc_full.bak"), None);
        assert!(not_older(
            "mgc_20261126090103.trn",
            "mgc_20261126090102.trn"
        ));
        assert!(!not_older(
            "mgc_20261126090101.trn",
            "mgc_20261126090102.trn"
        ));
        assert!(not_older("odd.trn", "mgc_20261126090102.trn"));
        assert_eq!(
            stamp_seconds("20261126090102").zip(stamp_seconds("20261126085902")),
            Some((1_795_683_662, 1_795_683_542))
        );
        assert_eq!(stamp_seconds("20261399000000"), None);
    }

    #[test]
    fn window() {
        let mut w = LossWindow {
            last_restored: Some(f("/c/a.trn", 1, 2, 10_000)),
            last_known: Some(f("/c/c.trn", 3, 4, 70_000)),
            files_missing: vec!["LSN 2 to 3".into()],
            share_reachable: true,
        };
        assert_eq!(w.window_seconds(), 60);
        let j = w.to_json();
        assert_eq!(j["last_restored_lsn"], "2");
        assert_eq!(j["last_backup_known_file"], "/c/c.trn");
        assert_eq!(j["last_restored_backup_time"], "1970-01-01T00:00:10Z");
        // A later backup without new log loses nothing.
        w.last_known = Some(f("/c/empty.trn", 2, 2, 90_000));
        assert_eq!(w.window_seconds(), 0);
        assert_eq!(w.to_json()["last_backup_known_file"], "/c/a.trn");
        w.last_known = None;
        assert_eq!(w.window_seconds(), 0);
        assert_eq!(w.to_json()["last_backup_known_file"], "/c/a.trn");
    }
}
