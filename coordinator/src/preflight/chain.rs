//! Log backup files and their LSN chain (pchat-dr.md §6.11): which `.trn` files come after the
//! last restored one, and whether their headers form an unbroken sequence from the last restored
//! LSN. Pure functions over names and headers, so the rule is tested without processes.
//!
//! A log backup covers `[FirstLSN, LastLSN)`; the next one must start at or before the LSN where
//! the previous one ended (normally exactly there). A file that ends at or before the point
//! already reached is already applied and skipped; a file that starts after it is a gap: FO-3
//! would stop there and every later file is unusable.

/// The `yyyymmddhhmmss` stamp of `<db>_yyyymmddhhmmss.trn` (sqllogship's file name), when
/// `name` has that shape (case-insensitive).
pub fn stamp_of<'a>(db: &str, name: &'a str) -> Option<&'a str> {
    let prefix_len = db.len() + 1;
    let (head, rest) = (name.get(..prefix_len)?, name.get(prefix_len..)?);
    if !head.get(..db.len())?.eq_ignore_ascii_case(db) || !head.ends_with('_') {
        return None;
    }
    let stamp = rest
        .strip_suffix(".trn")
        .or_else(|| rest.strip_suffix(".TRN"))?;
    (stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit())).then_some(stamp)
}

/// The last component of a path written with `\` or `/`.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// Parses a decimal LSN (numeric(25,0) does not fit 64 bits).
pub fn lsn(s: &str) -> Option<u128> {
    s.trim().parse().ok()
}

/// One log backup as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// File name.
    pub name: String,
    /// FirstLSN.
    pub first: u128,
    /// LastLSN (the LSN after the last record).
    pub last: u128,
}

/// What the chain check found.
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
        /// The last file before the gap (None = the gap is right after the restored point).
        after: Option<String>,
        /// The LSN the next file should start at or before.
        expected: u128,
        /// The first file after the gap.
        next: String,
        /// Its FirstLSN.
        next_first: u128,
    },
}

/// Walks `links` (any order) from `start` (the last restored LastLSN; None = from the oldest
/// file, when the restored point is unknown).
pub fn walk(start: Option<u128>, mut links: Vec<Link>) -> Chain {
    links.sort_by(|a, b| a.first.cmp(&b.first).then(a.last.cmp(&b.last)));
    let mut expected = match (start, links.first()) {
        (Some(s), _) => s,
        (None, Some(l)) => l.first,
        (None, None) => {
            return Chain::Unbroken {
                pending: 0,
                reaches: None,
            };
        }
    };
    let mut after: Option<String> = None;
    let mut pending = 0;
    let mut reaches = None;
    for l in links {
        if l.last <= expected {
            continue;
        }
        if l.first > expected {
            return Chain::Gap {
                after,
                expected,
                next: l.name,
                next_first: l.first,
            };
        }
        expected = l.last;
        reaches = Some(l.last);
        pending += 1;
        after = Some(l.name);
    }
    Chain::Unbroken { pending, reaches }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, first: u128, last: u128) -> Link {
        Link {
            name: name.into(),
            first,
            last,
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            stamp_of("mgc", "mgc_20261126090000.trn"),
            Some("20261126090000")
        );
        assert_eq!(
            stamp_of("mgc", "MGC_20261126090000.TRN"),
            Some("20261126090000")
        );
        assert_eq!(stamp_of("mgc", "mgccomp_20261126090000.trn"), None);
        assert_eq!(stamp_of("mgc", "mgc_2026.trn"), None);
        assert_eq!(stamp_of("mgc", "mgc_full.bak"), None);
        assert_eq!(stamp_of("mgc", "mg\u{e9}_20261126090000.trn"), None);
        assert_eq!(file_name(r"E:\copy\mgc_1.trn"), "mgc_1.trn");
        assert_eq!(file_name("/lab/copy/mgc_1.trn"), "mgc_1.trn");
        assert_eq!(lsn("123000000001"), Some(123_000_000_001));
        assert_eq!(lsn("x"), None);
    }

    #[test]
    fn unbroken_skips_applied_files() {
        let c = walk(
            Some(200),
            vec![
                link("c", 300, 400),
                link("a", 100, 200),
                link("b", 200, 300),
            ],
        );
        assert_eq!(
            c,
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
    }

    #[test]
    fn gap_names_both_sides() {
        let c = walk(Some(200), vec![link("b", 200, 300), link("d", 400, 500)]);
        assert_eq!(
            c,
            Chain::Gap {
                after: Some("b".into()),
                expected: 300,
                next: "d".into(),
                next_first: 400
            }
        );
        let c = walk(Some(100), vec![link("b", 200, 300)]);
        assert!(matches!(
            c,
            Chain::Gap {
                after: None,
                expected: 100,
                ..
            }
        ));
        // Unknown starting point: continuity among the files only.
        let c = walk(None, vec![link("b", 200, 300), link("c", 300, 350)]);
        assert_eq!(
            c,
            Chain::Unbroken {
                pending: 2,
                reaches: Some(350)
            }
        );
    }
}
