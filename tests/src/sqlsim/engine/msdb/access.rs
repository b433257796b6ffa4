//! The Agent account's access to folders. Job steps (CmdExec, `sqllogship.exe -copy`) run as
//! the SQL Server Agent service account, not as the engine, so each instance keeps a table of
//! folders that account may read and write: `--agent-access PATH=MODE` at start, or
//! `EXEC sqlsim.agent_access N'path', N'mode'` (admin login only; without arguments it lists the
//! table; mode `default` removes the rule). Modes: `rw` (the default for any folder without a
//! rule), `read`, `write`, `none`. Rules compare mapped local paths, so `\\fileserver\pchat-ls`
//! and the directory it maps to are the same folder; the longest matching rule wins. The
//! table lives in msdb state and survives a restart. xp_fileexist / xp_dirtree, BACKUP and
//! RESTORE act as the engine account and ignore it.

use std::path::{Path, PathBuf};

use super::AccessRule;
use crate::sqlsim::engine::files::PathMap;
use crate::sqlsim::engine::query::RowSet;
use crate::sqlsim::engine::{Engine, StatementResult, lock};
use crate::sqlsim::tokens::{Column, ServerMessage};
use crate::sqlsim::types::{SqlType, Value};

/// What the Agent account wants to do with a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// List a folder, read a file.
    Read,
    /// Create, overwrite or delete a file.
    Write,
}

/// Parses `rw` / `read` / `write` / `none` into (read, write).
pub fn parse_mode(mode: &str) -> Option<(bool, bool)> {
    match mode.trim().to_ascii_lowercase().as_str() {
        "rw" | "readwrite" | "full" => Some((true, true)),
        "read" | "r" | "ro" => Some((true, false)),
        "write" | "w" => Some((false, true)),
        "none" | "deny" => Some((false, false)),
        _ => None,
    }
}

fn mode_text(r: &AccessRule) -> &'static str {
    match (r.read, r.write) {
        (true, true) => "rw",
        (true, false) => "read",
        (false, true) => "write",
        (false, false) => "none",
    }
}

/// Whether the rules let the account do `want` at the mapped local path `local`: the longest
/// matching rule decides, no rule means allowed. Shared by the Agent's table and the engine's
/// (`engine/engine_access.rs`).
pub fn allows(rules: &[AccessRule], paths: &PathMap, local: &Path, want: Access) -> bool {
    rules
        .iter()
        .map(|r| (paths.resolve(&r.path), r))
        .filter(|(root, _)| local.starts_with(root))
        .max_by_key(|(root, _)| root.components().count())
        .is_none_or(|(_, r)| match want {
            Access::Read => r.read,
            Access::Write => r.write,
        })
}

/// The table as `sqlsim.*_access` lists it.
pub fn rules_table(rules: &[AccessRule]) -> RowSet {
    RowSet {
        columns: vec![
            Column::new("path", SqlType::NVarChar(Some(400))),
            Column::new("access", SqlType::NVarChar(Some(10))),
        ],
        rows: rules
            .iter()
            .map(|r| vec![Value::Str(r.path.clone()), Value::Str(mode_text(r).into())])
            .collect(),
    }
}

/// Checks a SQL Server path against the rules; the local path when allowed.
pub fn check(
    rules: &[AccessRule],
    paths: &PathMap,
    sql_path: &str,
    want: Access,
) -> Result<PathBuf, String> {
    let local = paths.resolve(sql_path);
    let allowed = allows(rules, paths, &local, want);
    if allowed {
        Ok(local)
    } else {
        Err(format!("Access to the path '{sql_path}' is denied."))
    }
}

/// Adds, changes or (mode `default`) removes the rule for `path`.
pub fn set_rule(rules: &mut Vec<AccessRule>, path: &str, mode: &str) -> Result<(), String> {
    rules.retain(|r| !same_path(&r.path, path));
    if mode.trim().eq_ignore_ascii_case("default") {
        return Ok(());
    }
    let (read, write) = parse_mode(mode)
        .ok_or_else(|| format!("mode '{mode}' is not rw, read, write, none or default"))?;
    rules.push(AccessRule {
        path: path.to_string(),
        read,
        write,
    });
    Ok(())
}

fn same_path(a: &str, b: &str) -> bool {
    let norm = |p: &str| p.replace('/', "\\").trim_end_matches('\\').to_lowercase();
    norm(a) == norm(b)
}

impl Engine {
    /// `EXEC sqlsim.agent_access [N'path', N'rw|read|write|none|default']`.
    pub(crate) fn agent_access_proc(
        &self,
        args: &[Value],
    ) -> Result<StatementResult, ServerMessage> {
        let arg = |i: usize| args.get(i).and_then(Value::to_text);
        let mut st = lock(&self.state);
        match (arg(0), arg(1)) {
            (Some(path), Some(mode)) => {
                set_rule(&mut st.msdb.agent_access, &path, &mode).map_err(|e| {
                    ServerMessage::new(50000, 1, 16, format!("sqlsim.agent_access: {e}"))
                })?;
                self.persist(&st)?;
                tracing::info!(path, mode, "agent access changed");
            }
            (None, None) => {}
            _ => {
                return Err(ServerMessage::new(
                    50000,
                    1,
                    16,
                    "usage: EXEC sqlsim.agent_access [path, rw|read|write|none|default]",
                ));
            }
        }
        Ok(StatementResult::rows(rules_table(&st.msdb.agent_access)))
    }

    /// Applies `--agent-access PATH=MODE` rules given at start.
    pub(crate) fn apply_agent_access_flags(&self, specs: &[String]) -> Result<(), String> {
        if specs.is_empty() {
            return Ok(());
        }
        let mut st = lock(&self.state);
        for spec in specs {
            let (path, mode) = spec
                .rsplit_once('=')
                .ok_or_else(|| format!("--agent-access '{spec}' is not PATH=MODE"))?;
            set_rule(&mut st.msdb.agent_access, path.trim(), mode)?;
        }
        self.persist(&st).map_err(|m| m.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_rule_wins_and_default_is_rw() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PathMap::new(dir.path().to_path_buf())
            .with_rule(&format!(
                r"\\fs\share={}",
                dir.path().join("share").display()
            ))
            .unwrap();
        let mut rules = Vec::new();
        set_rule(&mut rules, r"\\fs\share", "none").unwrap();
        set_rule(&mut rules, r"\\FS\share\open", "read").unwrap();
        assert!(check(&rules, &paths, r"\\fs\share\x.trn", Access::Read).is_err());
        assert!(check(&rules, &paths, r"\\fs\share\open\x.trn", Access::Read).is_ok());
        assert!(check(&rules, &paths, r"\\fs\share\open\x.trn", Access::Write).is_err());
        assert!(check(&rules, &paths, r"E:\copy\x.trn", Access::Write).is_ok());
        let local = dir.path().join("share").display().to_string();
        assert!(check(&rules, &paths, &local, Access::Read).is_err());
        set_rule(&mut rules, r"\\fs\share\", "default").unwrap();
        assert_eq!(rules.len(), 1);
        assert!(set_rule(&mut rules, "x", "bogus").is_err());
    }
}
