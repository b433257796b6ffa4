//! The log chain (pchat-dr.md §6.11), as pure functions: the one module for it (issue #13 found
//! preflight and FO-3 each with their own, disagreeing on LSN signs, tie-breaking and file
//! names, though preflight promises that what it calls a gap is what FO-3 would stop at). Log
//! backups ordered by FirstLSN, the decision for each one against the database's restore point,
//! the walk preflight reports ([`walk`], built on FO-3's [`decide`]), the log shipping file
//! names, and the data-loss window a failover reports.
//!
//! The rule SQL Server applies to `RESTORE LOG` (and the one checked here before anything is
//! sent): a log backup applies when `FirstLSN <= restore point < LastLSN`; `LastLSN <= restore
//! point` means it is already applied (SQL Server: 4326); `FirstLSN > restore point` means a
//! log backup in between is missing (4305) — a gap, and nothing beyond it may be applied.
//!
//! Decisions (where the two copies disagreed):
//! - **LSN text**: digits only (`numeric(25,0)` as HEADERONLY prints it); `+5`, `-5`, `5.0`
//!   are unreadable, not 5.
//! - **Order**: FirstLSN, then LastLSN, then path, so equal LSNs order the same everywhere.
//! - **Unknown restore point**: FO-3 sends the oldest file and lets SQL Server decide (4326 or
//!   4305 answer); preflight cannot ask, so [`walk`] starts at the oldest file's FirstLSN — what
//!   FO-3 reaches when SQL Server takes that file — and checks continuity from there.
//! - **File names**: `<db>_<stamp>.trn` with a stamp of 14 digits or more (`yyyymmddhhmmss`, and
//!   longer stamps some versions write); the extension in either case.

use super::rfc3339;
use crate::runbook::records::LossWindowRecord;

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

/// The last component of a path written with `\` or `/`.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
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

/// The stamp of `name` when it is a log backup of database `db` (`<db>_<stamp>.trn`, the
/// database name case-insensitive): `mgccomp_….trn` is not one of `mgc`'s.
pub fn stamp_of<'a>(db: &str, name: &'a str) -> Option<&'a str> {
    let stamp = stamp(name)?;
    let prefix = name.get(..name.len() - stamp.len() - ".trn".len() - 1)?;
    (prefix.eq_ignore_ascii_case(db) && name.as_bytes().get(prefix.len()) == Some(&b'_'))
        .then_some(stamp)
}

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chain {
    /// Unbroken: `pending` files would be applied, reaching `reaches` (None = nothing pending).
    Unbroken {
        /// Files after the starting point.
        pending: usize,
        /// LastLSN of the last pending file.
        reaches: Option<u128>,
    },
    /// A log backup is missing between `after` (or the restored point) and `next`.
    Gap {
        /// The last file applied before the gap (None = the gap is right after the restored
        /// point).
        after: Option<String>,
        /// The LSN the next file should start at or before (the restore point then).
        expected: u128,
        /// The first file after the gap.
        next: String,
        /// Its FirstLSN.
        next_first: u128,
    },
}

/// Walks `files` (any order) from restore point `start` (None: unknown, from the oldest file)
/// with FO-3's own [`sort`] and [`decide`]: the files FO-3 would apply and where it would stop.
pub fn walk(start: Option<u128>, mut files: Vec<LogFile>) -> Chain {
    sort(&mut files);
    let mut point = start.or_else(|| files.first().map(|f| f.first_lsn));
    let mut after: Option<String> = None;
    let mut pending = 0;
    let mut reaches = None;
    for f in files {
        match decide(point, &f) {
            Decision::AlreadyApplied => {}
            Decision::Apply => {
                point = Some(f.last_lsn);
                reaches = Some(f.last_lsn);
                pending += 1;
                after = Some(f.path);
            }
            Decision::Gap { from, to } => {
                return Chain::Gap {
                    after,
                    expected: from,
                    next: f.path,
                    next_first: to,
                };
            }
        }
    }
    Chain::Unbroken { pending, reaches }
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

    /// The record the run keeps under `loss_window`.
    pub fn to_record(&self) -> LossWindowRecord {
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
        LossWindowRecord {
            last_restored_file: rf,
            last_restored_lsn: rl,
            last_restored_backup_time: rt,
            last_backup_known_file: kf,
            last_backup_known_time: kt,
            window_seconds: self.window_seconds(),
            files_missing: self.files_missing.clone(),
            share_reachable: self.share_reachable,
            note: note.to_string(),
            accepted_gap: None,
        }
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

    /// The cases where preflight's copy of the chain and FO-3's disagreed (issue #13), pinned:
    /// each answer is now the one module's.
    #[test]
    fn the_cases_the_two_copies_disagreed_on() {
        // Signs: the old preflight copy read "+300" as 300.
        assert_eq!(parse_lsn("+300"), None);
        assert_eq!(parse_lsn(" 300 "), Some(300));
        // Ties: equal FirstLSN and LastLSN order by path, whatever order they came in.
        let mut v = vec![f("b", 100, 200, 0), f("a", 100, 200, 0)];
        sort(&mut v);
        assert_eq!(v[0].path, "a");
        // Unknown start: the oldest file is taken as SQL Server would take it, and a gap among
        // the later files is still one.
        assert_eq!(
            walk(None, vec![f("c", 400, 500, 0), f("a", 100, 200, 0)]),
            Chain::Gap {
                after: Some("a".into()),
                expected: 200,
                next: "c".into(),
                next_first: 400
            }
        );
        // Names: a stamp longer than 14 digits is a log backup for preflight too (FO-2 copies
        // it), and the database prefix is exact.
        assert_eq!(
            stamp_of("mgc", "mgc_20261126090102123.trn"),
            Some("20261126090102123")
        );
        assert_eq!(
            stamp_of("mgc", "MGC_20261126090102.TRN"),
            Some("20261126090102")
        );
        assert_eq!(stamp_of("mgc", "mgccomp_20261126090102.trn"), None);
        assert_eq!(stamp_of("mgc", "xmgc_20261126090102.trn"), None);
        assert_eq!(stamp_of("mgc", "mgc_2026.trn"), None);
        assert_eq!(stamp_of("mgc", "mgc_full.bak"), None);
        assert_eq!(
            stamp_of("mg\u{e9}", "mg\u{e9}_20261126090102.trn"),
            Some("20261126090102")
        );
    }

    /// [`walk`] and FO-3's loop are one rule: for every restore point, the files walk counts
    /// are the ones `decide` applies, and its gap is where `decide` stops.
    #[test]
    fn walk_is_what_fo3_would_do() {
        let files = vec![
            f("a", 100, 200, 0),
            f("b", 200, 300, 0),
            f("e", 300, 300, 0),
            f("c", 300, 400, 0),
            f("d", 450, 500, 0),
        ];
        for start in [
            None,
            Some(50),
            Some(100),
            Some(150),
            Some(200),
            Some(300),
            Some(400),
            Some(450),
            Some(600),
        ] {
            let mut sorted = files.clone();
            sort(&mut sorted);
            let mut point = start.or(Some(100));
            let (mut applied, mut stop) = (0, None);
            for x in &sorted {
                match decide(point, x) {
                    Decision::AlreadyApplied => {}
                    Decision::Apply => {
                        applied += 1;
                        point = Some(x.last_lsn);
                    }
                    Decision::Gap { to, .. } => {
                        stop = Some(to);
                        break;
                    }
                }
            }
            match walk(start, files.clone()) {
                Chain::Unbroken { pending, .. } => {
                    assert_eq!((pending, stop), (applied, None), "start {start:?}")
                }
                Chain::Gap { next_first, .. } => {
                    assert_eq!(Some(next_first), stop, "start {start:?}")
                }
            }
        }
        assert_eq!(
            walk(
                Some(200),
                vec![
                    f("c", 300, 400, 0),
                    f("a", 100, 200, 0),
                    f("b", 200, 300, 0)
                ]
            ),
            Chain::Unbroken {
                pending: 2,
                reaches: Some(400)
            }
        );
        assert_eq!(
            walk(Some(5), vec![]),
            Chain::Unbroken {
                pending: 0,
                reaches: None
            }
        );
        assert!(matches!(
            walk(Some(100), vec![f("b", 200, 300, 0)]),
            Chain::Gap {
                after: None,
                expected: 100,
                ..
            }
        ));
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
        let j = w.to_record();
        assert_eq!(j.last_restored_lsn, "2");
        assert_eq!(j.last_backup_known_file, "/c/c.trn");
        assert_eq!(j.last_restored_backup_time, "1970-01-01T00:00:10Z");
        // A later backup without new log loses nothing.
        w.last_known = Some(f("/c/empty.trn", 2, 2, 90_000));
        assert_eq!(w.window_seconds(), 0);
        assert_eq!(w.to_record().last_backup_known_file, "/c/a.trn");
        w.last_known = None;
        assert_eq!(w.window_seconds(), 0);
        assert_eq!(w.to_record().last_backup_known_file, "/c/a.trn");
    }
}
