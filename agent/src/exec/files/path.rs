//! Syntax of the paths the coordinator sends: a path string from the network is parsed here,
//! on every OS, into a [`WirePath`] — a form (POSIX `/`, drive `D:\`, UNC `\\server\share\`)
//! plus plain name components — before anything touches the disk. Windows forms are understood
//! on Linux too, so a hostile `C:\..\x` is refused with the same words everywhere, and the
//! deploy example's Windows roots validate on a Linux CI machine.
//!
//! Decisions (one policy on every OS, the strictest of both):
//! - Refused outright: empty or relative paths, drive-relative `D:x` and rooted-without-drive
//!   `\x`, any `..` component, NUL and control characters, more than [`MAX_PATH_BYTES`] bytes or
//!   a component of more than [`MAX_COMPONENT_BYTES`], the characters Windows forbids in names
//!   (`<>:"|?*` — so no alternate data streams), names ending in `.` or space (Win32 silently
//!   strips them, so two spellings would name one file), DOS device names (`CON`, `NUL`,
//!   `COM1`…, also with an extension), a backslash inside a POSIX path, and the device namespace
//!   (`\\.\`, `\??\`, `\\?\GLOBALROOT`, `\\?\Volume{…}`).
//! - Normalized: the verbatim prefix `\\?\D:\…` becomes `D:\…` and `\\?\UNC\s\sh\…` becomes
//!   `\\s\sh\…` (Windows' own `canonicalize` produces these forms, so refusing them would be
//!   unfriendly); inside a verbatim path `/` is a literal character, not a separator, so it is
//!   refused. Empty and `.` components are dropped; Windows forms accept `/` as a separator.
//! - Comparison: Windows forms compare ASCII case-insensitively, POSIX forms exactly. An 8.3
//!   short name (`PCHATL~1`) of a root does not match the root lexically, so it is refused: the
//!   safe side; inside a root short names resolve normally.
//! - On the host, Windows paths become verbatim (`\\?\D:\…`, `\\?\UNC\…`): after the checks above
//!   the verbatim form names the same file and is not limited to 260 characters.

use std::fmt;
use std::path::PathBuf;

/// Longest path accepted from the network, in bytes of UTF-8.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single component (file or directory name), in bytes of UTF-8.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Characters Windows forbids in file names; refused on every OS.
const FORBIDDEN_CHARS: &[char] = &['<', '>', ':', '"', '|', '?', '*'];
/// DOS device names; refused with or without an extension, in any case.
const DEVICE_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$",
    "CONOUT$",
];

/// Which kind of absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathForm {
    /// `/a/b`: the form of Linux agents (the lab).
    Posix,
    /// `D:\a\b`; the letter is stored upper-case.
    Drive(char),
    /// `\\server\share\a\b`.
    Unc {
        /// Server name (host or FQDN).
        server: String,
        /// Share name.
        share: String,
    },
}

/// A syntactically valid absolute path: a form and plain name components (never `.`, `..` or
/// empty). Built only by [`WirePath::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WirePath {
    form: PathForm,
    components: Vec<String>,
}

impl WirePath {
    /// Parses `input`. The error is the reason, in words, without the input (the caller names it).
    pub fn parse(input: &str) -> Result<WirePath, String> {
        if input.is_empty() {
            return Err("empty path".into());
        }
        if input.len() > MAX_PATH_BYTES {
            return Err(format!("longer than {MAX_PATH_BYTES} bytes"));
        }
        if input.contains('\0') {
            return Err("contains a NUL character".into());
        }
        if input.chars().any(char::is_control) {
            return Err("contains a control character".into());
        }
        let chars: Vec<char> = input.chars().take(4).collect();
        let is_sep = |c: Option<&char>| matches!(c, Some('\\') | Some('/'));
        if input.starts_with(r"\??\") {
            return Err(r"NT object-manager paths (\??\) are not accepted".into());
        }
        if is_sep(chars.first()) && is_sep(chars.get(1)) {
            // `\\?\`, `\\.\` and their slash spellings are the device namespace.
            if matches!(chars.get(2), Some('?') | Some('.'))
                && (chars.len() == 3 || is_sep(chars.get(3)))
            {
                return match input.strip_prefix(r"\\?\") {
                    Some(rest) => Self::parse_verbatim(rest),
                    None => Err(r"device paths (\\.\, //./, //?/) are not accepted".into()),
                };
            }
            return Self::parse_unc(&input[2..], &['\\', '/']);
        }
        if let [letter, ':', ..] = chars.as_slice()
            && letter.is_ascii_alphabetic()
        {
            if !is_sep(chars.get(2)) {
                return Err(format!(
                    "'{letter}:' without a separator is relative to that drive's current directory"
                ));
            }
            return Self::from_parts(
                PathForm::Drive(letter.to_ascii_uppercase()),
                input[3..].split(['\\', '/']),
            );
        }
        match chars.first() {
            Some('/') => {
                if input.contains('\\') {
                    return Err("a backslash inside a POSIX path is ambiguous".into());
                }
                Self::from_parts(PathForm::Posix, input[1..].split('/'))
            }
            Some('\\') => {
                Err("rooted without a drive letter: relative to the current drive".into())
            }
            _ => Err("relative path; an absolute path is required".into()),
        }
    }

    /// `rest` follows `\\?\`: only `X:\…` and `UNC\server\share\…` are accepted.
    fn parse_verbatim(rest: &str) -> Result<WirePath, String> {
        if rest.contains('/') {
            return Err(r"'/' inside a \\?\ path is a literal character, not a separator".into());
        }
        let b = rest.as_bytes();
        if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\' {
            let letter = char::from(b[0]).to_ascii_uppercase();
            return Self::from_parts(PathForm::Drive(letter), rest[3..].split('\\'));
        }
        if b.len() >= 4 && b[..4].eq_ignore_ascii_case(br"UNC\") {
            return Self::parse_unc(&rest[4..], &['\\']);
        }
        Err(r"only \\?\X:\ and \\?\UNC\ verbatim paths are accepted (no volume GUIDs, no GLOBALROOT)".into())
    }

    /// `rest` follows the two leading separators of a UNC path.
    fn parse_unc(rest: &str, seps: &[char]) -> Result<WirePath, String> {
        let mut parts = rest.split(seps);
        let server = parts.next().unwrap_or_default();
        let share = parts.next().unwrap_or_default();
        if server.is_empty() || share.is_empty() {
            return Err(r"a UNC path needs a server and a share (\\server\share\...)".into());
        }
        for name in [server, share] {
            check_name(name)?;
        }
        let form = PathForm::Unc {
            server: server.to_string(),
            share: share.to_string(),
        };
        Self::from_parts(form, parts)
    }

    fn from_parts<'a>(
        form: PathForm,
        parts: impl Iterator<Item = &'a str>,
    ) -> Result<WirePath, String> {
        let mut components = Vec::new();
        for part in parts {
            match part {
                "" | "." => {}
                ".." => return Err("'..' components are not accepted".into()),
                name => {
                    check_name(name)?;
                    components.push(name.to_string());
                }
            }
        }
        Ok(WirePath { form, components })
    }

    /// The form.
    pub fn form(&self) -> &PathForm {
        &self.form
    }

    /// The name components below the form's root.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// Whether this is a Windows form (drive or UNC).
    pub fn is_windows(&self) -> bool {
        !matches!(self.form, PathForm::Posix)
    }

    /// Whether `self` is `root` or below it. Windows forms compare ASCII case-insensitively.
    pub fn starts_with(&self, root: &WirePath) -> bool {
        let same = |a: &str, b: &str| {
            if self.is_windows() {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let form_matches = match (&self.form, &root.form) {
            (PathForm::Posix, PathForm::Posix) => true,
            (PathForm::Drive(a), PathForm::Drive(b)) => a == b,
            (
                PathForm::Unc { server, share },
                PathForm::Unc {
                    server: rs,
                    share: rsh,
                },
            ) => same(server, rs) && same(share, rsh),
            _ => false,
        };
        form_matches
            && self.components.len() >= root.components.len()
            && self
                .components
                .iter()
                .zip(&root.components)
                .all(|(a, b)| same(a, b))
    }

    /// The same path with `suffix` appended to its last name (`x.bak` → `x.bak.partial`).
    /// `None` when there is no last name or the result would not be a valid name.
    pub fn with_name_suffix(&self, suffix: &str) -> Option<WirePath> {
        let mut out = self.clone();
        let last = out.components.last_mut()?;
        last.push_str(suffix);
        check_name(last).ok()?;
        Some(out)
    }

    /// The parent directory, or `None` at the form's root.
    pub fn parent(&self) -> Option<WirePath> {
        let mut out = self.clone();
        out.components.pop()?;
        Some(out)
    }

    /// The path as this host's OS spells it; the error says why this form cannot exist here.
    pub fn to_host_path(&self) -> Result<PathBuf, String> {
        host_path(self)
    }
}

#[cfg(not(windows))]
fn host_path(p: &WirePath) -> Result<PathBuf, String> {
    match &p.form {
        PathForm::Posix => {
            let mut out = PathBuf::from("/");
            out.extend(&p.components);
            Ok(out)
        }
        _ => Err("a Windows path cannot exist on this non-Windows agent".into()),
    }
}

#[cfg(windows)]
fn host_path(p: &WirePath) -> Result<PathBuf, String> {
    let mut s = match &p.form {
        PathForm::Drive(letter) => format!(r"\\?\{letter}:\"),
        PathForm::Unc { server, share } => format!(r"\\?\UNC\{server}\{share}\"),
        PathForm::Posix => {
            return Err(
                "a POSIX path is relative to the current drive on this Windows agent".into(),
            );
        }
    };
    s.push_str(&p.components.join(r"\"));
    Ok(PathBuf::from(s))
}

impl fmt::Display for WirePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.form {
            PathForm::Posix => write!(f, "/{}", self.components.join("/")),
            PathForm::Drive(letter) => write!(f, r"{letter}:\{}", self.components.join(r"\")),
            PathForm::Unc { server, share } => {
                write!(f, r"\\{server}\{share}")?;
                for c in &self.components {
                    write!(f, r"\{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// Checks one name (a component, a server or a share) against the rules in the module doc.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_COMPONENT_BYTES {
        return Err(format!("a name is longer than {MAX_COMPONENT_BYTES} bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is not a name"));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN_CHARS.contains(c)) {
        return Err(format!(
            "name '{name}' contains '{c}', which Windows forbids in names"
        ));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(format!(
            "name '{name}' ends with a dot or space, which Windows strips"
        ));
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if DEVICE_NAMES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        return Err(format!("name '{name}' is a reserved DOS device name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> WirePath {
        WirePath::parse(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
    }

    fn refused(s: &str, needle: &str) {
        let e = WirePath::parse(s).expect_err(s);
        assert!(e.contains(needle), "{s:?}: {e:?} lacks {needle:?}");
    }

    #[test]
    fn forms_parse_and_normalize() {
        assert_eq!(ok("/srv//ls/./a.trn").to_string(), "/srv/ls/a.trn");
        assert_eq!(ok(r"d:\PChat/Copy\").to_string(), r"D:\PChat\Copy");
        assert_eq!(ok(r"\\fs01\pchat-ls\x").to_string(), r"\\fs01\pchat-ls\x");
        assert_eq!(ok(r"\\?\D:\PChat").to_string(), r"D:\PChat");
        assert_eq!(ok(r"\\?\unc\fs01\ls\a").to_string(), r"\\fs01\ls\a");
        assert_eq!(ok("//fs01/ls/a").to_string(), r"\\fs01\ls\a");
        assert_eq!(ok("/").components().len(), 0);
    }

    #[test]
    fn hostile_forms_refused() {
        refused("", "empty");
        refused("a/b", "relative");
        refused(r"..\x", "relative");
        refused("/srv/../etc", "'..'");
        refused(r"C:\..\x", "'..'");
        refused(r"\\server\share\..\..", "'..'");
        refused(r"\\?\C:\a\..\b", "'..'");
        refused("/srv/a\0b", "NUL");
        refused("/srv/a\nb", "control");
        refused("/srv/a\u{1b}b", "control");
        refused(r"C:x", "relative to that drive");
        refused(r"C:", "relative to that drive");
        refused(r"\Windows", "without a drive");
        refused(r"\\server", "server and a share");
        refused(r"\\server\\x", "server and a share");
        refused(r"\\.\PhysicalDrive0", "device");
        refused("//./pipe/x", "device");
        refused("//?/C:/x", "device");
        refused(r"\??\C:\x", "object-manager");
        refused(r"\\?\GLOBALROOT\Device\x", "GLOBALROOT");
        refused(r"\\?\Volume{0000}\x", "verbatim");
        refused(r"\\?\C:\a/b", "literal");
        refused(r"C:\x\file.bak:stream", "':'");
        refused(r"C:\x\CON", "device");
        refused(r"C:\x\nul.txt", "device");
        refused(r"C:\x\a.", "dot or space");
        refused("/srv/a ", "dot or space");
        refused("/srv/a\\b", "backslash");
        refused(&format!("/srv/{}", "a".repeat(300)), "255");
        refused(&format!("/srv{}", "/abc".repeat(1100)), "4096");
    }

    #[test]
    fn containment_is_lexical_and_case_aware() {
        let root = ok(r"D:\PChat\Copy");
        assert!(ok(r"d:\pchat\copy\x.trn").starts_with(&root));
        assert!(ok(r"D:\PChat\Copy").starts_with(&root));
        assert!(!ok(r"D:\PChat\CopyX\x").starts_with(&root));
        assert!(!ok(r"E:\PChat\Copy\x").starts_with(&root));
        assert!(!ok(r"\\h\D$\PChat\Copy\x").starts_with(&root));
        let unc = ok(r"\\FS01\ls");
        assert!(ok(r"\\fs01\LS\a").starts_with(&unc));
        assert!(!ok(r"\\fs02\ls\a").starts_with(&unc));
        let posix = ok("/srv/ls");
        assert!(ok("/srv/ls/a").starts_with(&posix));
        assert!(!ok("/srv/LS/a").starts_with(&posix));
        assert!(!ok("/srv/lsx").starts_with(&posix));
    }

    #[test]
    fn suffix_and_parent() {
        let p = ok("/srv/ls/a.bak");
        assert_eq!(
            p.with_name_suffix(".partial").map(|p| p.to_string()),
            Some("/srv/ls/a.bak.partial".into())
        );
        assert_eq!(p.parent().map(|p| p.to_string()), Some("/srv/ls".into()));
        assert!(ok("/").with_name_suffix(".partial").is_none());
        assert!(ok("/").parent().is_none());
    }

    #[cfg(not(windows))]
    #[test]
    fn host_paths_on_unix() {
        assert_eq!(
            ok("/srv/ls/a").to_host_path(),
            Ok(PathBuf::from("/srv/ls/a"))
        );
        assert!(ok(r"D:\x").to_host_path().is_err());
    }
}
