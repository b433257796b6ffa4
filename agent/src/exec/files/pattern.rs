//! Name patterns for `list` and retention: `*` matches any run of characters (also none), `?`
//! exactly one; everything else is literal (no `[...]` classes, no `**`: listing is never
//! recursive). A pattern is a name, not a path, so separators and `..` cannot appear in it.
//! Matching is ASCII case-insensitive on Windows (its file systems are) and exact elsewhere.

use crate::error::FilesError;

/// Longest pattern accepted, in bytes.
const MAX_PATTERN_BYTES: usize = 255;

/// A validated name pattern.
#[derive(Debug, Clone)]
pub struct NamePattern {
    chars: Vec<char>,
    case_insensitive: bool,
}

impl NamePattern {
    /// Parses `pattern` with this host's case rule.
    pub fn parse(pattern: &str) -> Result<NamePattern, FilesError> {
        Self::parse_with_case(pattern, cfg!(windows))
    }

    /// Parses `pattern` with an explicit case rule.
    pub fn parse_with_case(
        pattern: &str,
        case_insensitive: bool,
    ) -> Result<NamePattern, FilesError> {
        let refuse = |reason: &str| FilesError::InvalidPattern {
            pattern: pattern.chars().filter(|c| !c.is_control()).collect(),
            reason: reason.to_string(),
        };
        if pattern.is_empty() {
            return Err(refuse("empty pattern; use '*' for every name"));
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(refuse("longer than 255 bytes"));
        }
        if pattern.chars().any(char::is_control) {
            return Err(refuse("contains a NUL or control character"));
        }
        if pattern.contains(['/', '\\']) {
            return Err(refuse(
                "a pattern matches names in one directory; it cannot contain a separator",
            ));
        }
        if pattern == "." || pattern == ".." {
            return Err(refuse("'.' and '..' are not names"));
        }
        Ok(NamePattern {
            chars: pattern.chars().collect(),
            case_insensitive,
        })
    }

    /// Whether `name` matches. Linear-time wildcard matching with one backtrack point, so a
    /// hostile pattern like `*a*a*a*b` cannot blow up.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let eq = |p: char, n: char| {
            p == '?' || p == n || (self.case_insensitive && p.eq_ignore_ascii_case(&n))
        };
        let (mut p, mut n) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            if p < self.chars.len() && self.chars[p] == '*' {
                star = Some((p, n));
                p += 1;
            } else if p < self.chars.len() && eq(self.chars[p], name[n]) {
                p += 1;
                n += 1;
            } else if let Some((sp, sn)) = star {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        self.chars[p..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        NamePattern::parse_with_case(pattern, false)
            .unwrap()
            .matches(name)
    }

    #[test]
    fn wildcards() {
        assert!(m("*", "anything.trn"));
        assert!(m("*", ""));
        assert!(m("mgc_*.trn", "mgc_20240101120000.trn"));
        assert!(!m("mgc_*.trn", "mgc_20240101120000.trn.partial"));
        assert!(m("mgc_????.bak", "mgc_0001.bak"));
        assert!(!m("mgc_????.bak", "mgc_001.bak"));
        assert!(m("*a*b", "xxaxxab"));
        assert!(!m("*a*a*a*a*b", &"a".repeat(200)));
        assert!(!m("*.TRN", "x.trn"));
        assert!(
            NamePattern::parse_with_case("*.TRN", true)
                .unwrap()
                .matches("x.trn")
        );
    }

    #[test]
    fn refused() {
        for bad in ["", "../*", "a/b", r"a\b", "..", "a\0b", &"x".repeat(300)] {
            let e = NamePattern::parse(bad).unwrap_err();
            assert!(matches!(e, FilesError::InvalidPattern { .. }), "{e}");
        }
    }
}
