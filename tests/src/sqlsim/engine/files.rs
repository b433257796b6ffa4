//! The engine's own file access: SQL Server paths (`C:\Backup\x.bak`, `\\fileserver\share\x.bak`)
//! mapped to local directories, and the two undocumented procedures that look at files as the
//! Database Engine service account does, `xp_fileexist` and `xp_dirtree` (pchat-dr.md §6.10).
//!
//! Mapping: a POSIX absolute path (`/tmp/…`) is used as is. Otherwise the longest `--path-map
//! PREFIX=DIR` rule whose PREFIX (case-insensitive, `\` or `/`) starts the path wins; without one,
//! `X:\a\b` maps to `<data-dir>/fs/X/a/b` and `\\server\share\a` to `<data-dir>/fs/unc/server/share/a`.
//! `.` and `..` components are dropped, so a SQL path can never climb out of its mapped root.
//! Two sims that share a backup folder get the same `--path-map` rule for it.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::sqlsim::sql::ast::ObjectName;
use crate::sqlsim::tokens::{Column, ServerMessage};
use crate::sqlsim::types::{SqlType, Value};

use super::query::RowSet;

/// SQL Server path → local path rules.
#[derive(Clone, Debug, Default)]
pub struct PathMap {
    /// `(prefix as written, lower-cased with \ separators and no trailing \, directory)`,
    /// longest prefix first.
    rules: Vec<(String, PathBuf)>,
    /// Where unmapped Windows paths go.
    root: PathBuf,
}

fn normalize(prefix: &str) -> String {
    prefix
        .replace('/', "\\")
        .trim_end_matches('\\')
        .to_lowercase()
}

fn components(rest: &str) -> impl Iterator<Item = &str> {
    rest.split(['\\', '/'])
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
}

impl PathMap {
    /// A map with no rules; unmapped Windows paths go under `root`.
    pub fn new(root: PathBuf) -> Self {
        PathMap {
            rules: Vec::new(),
            root,
        }
    }

    /// Adds a `PREFIX=DIR` rule.
    pub fn with_rule(mut self, spec: &str) -> Result<Self, String> {
        let (prefix, dir) = spec
            .split_once('=')
            .ok_or_else(|| format!("path map '{spec}' is not PREFIX=DIR"))?;
        if prefix.trim().is_empty() || dir.trim().is_empty() {
            return Err(format!("path map '{spec}' has an empty side"));
        }
        self.rules
            .push((normalize(prefix.trim()), PathBuf::from(dir.trim())));
        self.rules.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(self)
    }

    /// The local path for a path as SQL Server would see it.
    pub fn resolve(&self, sql_path: &str) -> PathBuf {
        let p = sql_path.trim();
        if p.starts_with('/') && !p.starts_with("//") {
            return PathBuf::from(p);
        }
        let norm = p.replace('/', "\\");
        let lower = norm.to_lowercase();
        for (prefix, dir) in &self.rules {
            if lower.starts_with(prefix.as_str())
                && (lower.len() == prefix.len() || lower[prefix.len()..].starts_with('\\'))
            {
                let mut out = dir.clone();
                out.extend(components(&norm[prefix.len()..]));
                return out;
            }
        }
        let mut out = self.root.clone();
        if let Some(unc) = norm.strip_prefix("\\\\") {
            out.push("unc");
            out.extend(components(unc));
        } else if norm.len() >= 2 && norm.as_bytes()[1] == b':' {
            out.push(norm[..1].to_uppercase());
            out.extend(components(&norm[2..]));
        } else {
            out.extend(components(&norm));
        }
        out
    }
}

/// The Windows error code and text SQL Server quotes for an I/O failure.
pub fn os_error(e: &std::io::Error, path: &Path) -> (u32, &'static str) {
    match e.kind() {
        ErrorKind::NotFound if path.parent().is_some_and(|p| !p.is_dir()) => {
            (3, "The system cannot find the path specified.")
        }
        ErrorKind::NotFound => (2, "The system cannot find the file specified."),
        ErrorKind::PermissionDenied | ErrorKind::IsADirectory => (5, "Access is denied."),
        // Windows' ERROR_DISK_FULL, which SQL Server prints for a full volume (POSIX ENOSPC).
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            (112, "There is not enough space on the disk.")
        }
        _ => (
            1117,
            "The request could not be performed because of an I/O device error.",
        ),
    }
}

/// 3201: a backup device could not be opened.
pub fn cannot_open_device(device: &str, e: &std::io::Error, local: &Path) -> ServerMessage {
    let (code, text) = os_error(e, local);
    ServerMessage::new(
        3201,
        2,
        16,
        format!("Cannot open backup device '{device}'. Operating system error {code}({text})."),
    )
}

/// 3202: a write to a backup device that was opened failed, e.g. `Write on "X" failed:
/// 112(There is not enough space on the disk.)` (state 1, then 3013), as SQL Server reports a
/// full backup volume.
pub fn write_failed(device: &str, e: &std::io::Error, local: &Path) -> ServerMessage {
    let (code, text) = os_error(e, local);
    ServerMessage::new(
        3202,
        1,
        16,
        format!("Write on \"{device}\" failed: {code}({text})."),
    )
}

/// True when `name` is the procedure `proc` (`xp_fileexist`, `master.dbo.xp_fileexist`,
/// `master..xp_fileexist`, `master.sys.xp_fileexist`).
pub fn is_proc(name: &ObjectName, proc: &str) -> bool {
    name.object().eq_ignore_ascii_case(proc)
        && name
            .database()
            .is_none_or(|d| d.eq_ignore_ascii_case("master"))
        && name
            .schema()
            .is_none_or(|s| s.eq_ignore_ascii_case("dbo") || s.eq_ignore_ascii_case("sys"))
}

/// `xp_fileexist path`: one row `File Exists`, `File is a Directory`, `Parent Directory Exists`.
pub fn file_exist(paths: &PathMap, sql_path: &str) -> RowSet {
    let local = paths.resolve(sql_path);
    // `…\nul` is the classic folder test: it "exists" when the folder does.
    let (exists, is_dir, parent) = if local
        .file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("nul"))
    {
        let dir = local.parent().is_some_and(Path::is_dir);
        (dir, false, dir)
    } else {
        (
            local.is_file(),
            local.is_dir(),
            local.parent().is_some_and(Path::is_dir),
        )
    };
    RowSet {
        columns: vec![
            Column::new("File Exists", SqlType::Int),
            Column::new("File is a Directory", SqlType::Int),
            Column::new("Parent Directory Exists", SqlType::Int),
        ],
        rows: vec![vec![
            Value::Int(exists as i64),
            Value::Int(is_dir as i64),
            Value::Int(parent as i64),
        ]],
    }
}

/// `xp_dirtree path, depth, files`: `subdirectory`, `depth`, and `file` (1 = file) when `files`
/// is non-zero; depth 0 means every level. A missing folder gives an empty result, as in SQL
/// Server.
pub fn dir_tree(paths: &PathMap, sql_path: &str, depth: i64, files: bool) -> RowSet {
    let mut columns = vec![
        Column::new("subdirectory", SqlType::NVarChar(Some(260))),
        Column::new("depth", SqlType::Int),
    ];
    if files {
        columns.push(Column::new("file", SqlType::Int));
    }
    let mut rows = Vec::new();
    walk(&paths.resolve(sql_path), 1, depth, files, &mut rows);
    RowSet { columns, rows }
}

fn walk(dir: &Path, level: i64, max: i64, files: bool, rows: &mut Vec<Vec<Value>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(String, bool)> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    entries.sort_by_key(|(n, _)| n.to_lowercase());
    for (name, is_dir) in entries {
        if !is_dir && !files {
            continue;
        }
        let mut row = vec![Value::Str(name.clone()), Value::Int(level)];
        if files {
            row.push(Value::Int(!is_dir as i64));
        }
        rows.push(row);
        if is_dir && (max <= 0 || level < max) {
            walk(&dir.join(&name), level + 1, max, files, rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_volume_is_sql_servers_3202_with_os_error_112() {
        let full = std::io::Error::from(ErrorKind::StorageFull);
        let m = write_failed(r"\\fs\share\mgc.bak", &full, Path::new("/tmp/x/mgc.bak"));
        assert_eq!((m.number, m.state, m.class), (3202, 1, 16));
        assert_eq!(
            m.message,
            r#"Write on "\\fs\share\mgc.bak" failed: 112(There is not enough space on the disk.)."#
        );
        // What ENOSPC arrives as from the kernel.
        let enospc = std::io::Error::from_raw_os_error(28);
        assert_eq!(os_error(&enospc, Path::new("/tmp")).0, 112);
    }

    #[test]
    fn windows_paths_map_under_root_or_rules() {
        let m = PathMap::new(PathBuf::from("/d/fs"))
            .with_rule(r"\\fileserver\pchat-ls=/srv/share")
            .unwrap();
        assert_eq!(
            m.resolve(r"\\FileServer\pchat-ls\mgc.bak"),
            PathBuf::from("/srv/share/mgc.bak")
        );
        assert_eq!(
            m.resolve(r"\\other\s\..\..\x.bak"),
            PathBuf::from("/d/fs/unc/other/s/x.bak")
        );
        assert_eq!(
            m.resolve(r"C:\Backup\a.bak"),
            PathBuf::from("/d/fs/C/Backup/a.bak")
        );
        assert_eq!(m.resolve("/tmp/x.bak"), PathBuf::from("/tmp/x.bak"));
        assert!(PathMap::default().with_rule("nope").is_err());
    }
}
