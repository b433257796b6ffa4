//! Where RESTORE DATABASE puts each database file, checked before anything changes, as SQL
//! Server's restore planning does. Each file goes to its `MOVE … TO` path, or else where the
//! backup's source kept it. A file whose folder does not exist is Msg 5133 (OS error 3) then 3156
//! state 3; a file another database already uses is Msg 1834 then 3156 state 4. Every file is
//! checked and every problem reported, in file order, then 3119 (and 3013 from the caller), e.g.:
//!
//! ```text
//! Msg 1834 … The file 'D:\Data\x.mdf' cannot be overwritten.  It is being used by database 'x'.
//! Msg 3156 … File 'x' cannot be restored to 'D:\Data\x.mdf'. Use WITH MOVE to identify a valid location for the file.
//! Msg 1834 … (the log file) / Msg 3156 …
//! Msg 3119 … Problems were identified while planning for the RESTORE statement. …
//! Msg 3013 … RESTORE DATABASE is terminating abnormally.
//! ```
//!
//! sqlsim keeps no database files on disk, so "in use" means named in another database's
//! `sys.master_files`, and only folders are looked up (through the path map). The database being
//! replaced may keep its own files.

use super::Refusal;
use super::format::BackupHeader;
use crate::sqlsim::engine::errors;
use crate::sqlsim::engine::files::PathMap;
use crate::sqlsim::engine::state::{DbFile, InstanceState};

/// The files of the restored database: each backup file at its MOVE target or original path.
pub(super) fn target_files(header: &BackupHeader, moves: &[(String, String)]) -> Vec<DbFile> {
    header
        .files
        .iter()
        .map(|f| DbFile {
            file_id: f.file_id,
            logical_name: f.logical_name.clone(),
            physical_name: moves
                .iter()
                .find(|(l, _)| l.eq_ignore_ascii_case(&f.logical_name))
                .map_or_else(|| f.physical_name.clone(), |(_, p)| p.clone()),
            kind: f.kind,
        })
        .collect()
}

/// True when the folder that would hold `physical` exists.
fn folder_exists(paths: &PathMap, physical: &str) -> bool {
    paths
        .resolve(physical)
        .parent()
        .is_some_and(|dir| dir.is_dir())
}

/// The folders of `files` that do not exist (looked up without the state lock).
pub(super) fn missing_folders(paths: &PathMap, files: &[DbFile]) -> Vec<bool> {
    files
        .iter()
        .map(|f| !folder_exists(paths, &f.physical_name))
        .collect()
}

/// Paths compare as Windows does: case-insensitive, either separator.
fn same_path(a: &str, b: &str) -> bool {
    let norm = |p: &str| p.trim().replace('/', "\\").to_lowercase();
    norm(a) == norm(b)
}

/// The planning errors for restoring `files` into database `target` (`missing[i]`: file i's
/// folder does not exist), or `Ok` when every file can be placed.
pub(super) fn check(
    st: &InstanceState,
    target: &str,
    files: &[DbFile],
    missing: &[bool],
) -> Result<(), Refusal> {
    let mut problems = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if missing.get(i).copied().unwrap_or(false) {
            problems.push(errors::directory_lookup_failed(&f.physical_name));
            problems.push(errors::cannot_restore_file(
                &f.logical_name,
                &f.physical_name,
                3,
            ));
            continue;
        }
        let owner = st.databases.iter().find(|d| {
            !d.name.eq_ignore_ascii_case(target)
                && d.files
                    .iter()
                    .any(|o| same_path(&o.physical_name, &f.physical_name))
        });
        if let Some(owner) = owner {
            problems.push(errors::file_in_use(&f.physical_name, &owner.name));
            problems.push(errors::cannot_restore_file(
                &f.logical_name,
                &f.physical_name,
                4,
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.push(errors::restore_planning_failed());
    Err(Refusal(problems))
}
