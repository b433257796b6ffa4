//! The Database Engine service account's access to folders — the account that opens BACKUP's
//! files (pchat-dr.md §6.2, §6.9), as `msdb/access.rs` models the SQL Server Agent account's.
//! Each instance keeps a table of folders that account may not write: `EXEC sqlsim.engine_access
//! N'path', N'mode'` (admin login only; without arguments it lists the table; mode `default`
//! removes the rule). Modes as for the Agent's table: `rw` (the default for any folder without a
//! rule), `read`, `write`, `none`. Rules compare mapped local paths (so `\\fileserver\pchat-ls`
//! and the directory it maps to are one folder); the longest matching rule wins. The table is
//! part of the instance's state (NTFS permissions outlive a service restart).
//!
//! What it changes: BACKUP to a file in a folder the account may not write fails as SQL Server
//! does when CreateFile is refused — Msg 3201 state 1 ("create backup file", per the
//! MSSQLSERVER_3201 page) `Cannot open backup device '<device>'. Operating system error
//! 5(Access is denied.).`, then 3013 `BACKUP DATABASE is terminating abnormally.` — after the
//! database checks (911, 4208 and the like come first) and before any byte is written, so, as
//! with any failed write (`backup/create.rs`), the log chain does not move.
//! Not modelled yet: the `read` half (RESTORE, xp_fileexist and xp_dirtree still read any folder).

use std::path::Path;

use super::files::PathMap;
use super::msdb::AccessRule;
use super::msdb::access::{self, Access};
use super::{Engine, StatementResult, lock};
use crate::sqlsim::tokens::ServerMessage;
use crate::sqlsim::types::Value;

fn sim_error(text: impl Into<String>) -> ServerMessage {
    ServerMessage::new(50000, 1, 16, text)
}

/// Whether the engine's account may create a file at `local` (a mapped path).
pub fn may_write(rules: &[AccessRule], paths: &PathMap, local: &Path) -> bool {
    access::allows(rules, paths, local, Access::Write)
}

/// Msg 3201 for a backup file the engine's account may not create (state 1: create backup file).
pub fn access_denied(device: &str) -> ServerMessage {
    ServerMessage::new(
        3201,
        1,
        16,
        format!(
            "Cannot open backup device '{device}'. Operating system error 5(Access is denied.)."
        ),
    )
}

impl Engine {
    /// Refuses BACKUP to `device` (mapped to `local`) when the engine's account may not write
    /// its folder.
    pub(super) fn check_engine_write(
        &self,
        device: &str,
        local: &Path,
    ) -> Result<(), ServerMessage> {
        let st = lock(&self.state);
        if may_write(&st.engine_access, &self.options.paths, local) {
            Ok(())
        } else {
            Err(access_denied(device))
        }
    }

    /// `EXEC sqlsim.engine_access [N'path', N'rw|read|write|none|default']`.
    pub(super) fn engine_access_proc(
        &self,
        args: &[Value],
    ) -> Result<StatementResult, ServerMessage> {
        let arg = |i: usize| args.get(i).and_then(Value::to_text);
        let mut st = lock(&self.state);
        match (arg(0), arg(1)) {
            (Some(path), Some(mode)) => {
                access::set_rule(&mut st.engine_access, &path, &mode)
                    .map_err(|e| sim_error(format!("sqlsim.engine_access: {e}")))?;
                self.persist(&st)?;
                tracing::info!(path, mode, "engine account access changed");
            }
            (None, None) => {}
            _ => {
                return Err(sim_error(
                    "usage: EXEC sqlsim.engine_access [path, rw|read|write|none|default]",
                ));
            }
        }
        Ok(StatementResult::rows(access::rules_table(
            &st.engine_access,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_rule_wins_and_default_is_write() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        let paths = PathMap::new(dir.path().to_path_buf())
            .with_rule(&format!(r"\\fs\share={}", share.display()))
            .unwrap();
        let rule = |p: &str, write: bool| AccessRule {
            path: p.into(),
            read: true,
            write,
        };
        let rules = vec![rule(r"\\fs\share", false), rule(r"\\fs\share\ok", true)];
        assert!(!may_write(&rules, &paths, &share.join("x.bak")));
        assert!(may_write(&rules, &paths, &share.join("ok").join("x.bak")));
        assert!(may_write(&rules, &paths, &dir.path().join("elsewhere.bak")));
        assert!(may_write(&[], &paths, &share.join("x.bak")));
        let m = access_denied(r"\\fs\share\x.bak");
        assert_eq!(m.number, 3201);
        assert!(
            m.message
                .ends_with("Operating system error 5(Access is denied.).")
        );
    }
}
