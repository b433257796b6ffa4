//! `check_engine_share_write`: can the **Database Engine's** service account create a backup file
//! in a folder? FB-3 (`BACKUP DATABASE [mgc] TO DISK = N'<share>\…'` on the backup instance) and
//! FB-5's seed (a full backup of the primary to the share) are written by the engine's account
//! (pchat-dr.md §6.2, §6.9), not by SQL Server Agent's account (which `check_agent_access`
//! proves) and not by this agent's own account; nothing else proves it before FB-3 tries.
//!
//! Decision — the probe is a real, tiny backup: `BACKUP DATABASE [model] TO DISK =
//! N'<folder>\failback_engine_probe_<random>.bak' WITH FORMAT, INIT, CHECKSUM, STATS = 10, NAME,
//! DESCRIPTION, COPY_ONLY` — the very statement FB-3 sends ([`tsql::backup_database`]), for
//! another database — after which the agent deletes the probe file. Options weighed:
//! - `xp_fileexist` / `xp_dirtree` (§6.10) run as the engine's account but only *read*: a
//!   share the account may list but not write passes them, and that is the usual mistake (Read
//!   granted, Modify forgotten). Both are undocumented and need sysadmin.
//! - `xp_create_subdir` writes, but creates a *folder* (NTFS "create folders" is a different
//!   right from "create files"), leaves it behind, and is undocumented.
//! - `BACKUP … TO DISK = 'NUL'` never touches the share: it proves nothing about it.
//! - Anything writing through the agent (files backend) or a CmdExec job runs as the wrong
//!   account.
//! - A BACKUP opens the device exactly as FB-3 will, as the engine's account, over the same SMB
//!   path (a virtual account such as `NT Service\MSSQLSERVER` reaches a share as the computer
//!   account `DOMAIN\HOST$`, which is the part people get wrong): it is the only probe whose
//!   success means FB-3 can open its file. Microsoft's own words: "the account under which the
//!   SQL Server service runs must have write permissions" on the backup device's file.
//!
//! Why `model`: it exists on every instance, is small (a few MB), is never log-shipped or
//! mirrored, and may be backed up by the same login that backs up `mgc` (BACKUP needs sysadmin,
//! db_owner or db_backupoperator; the agent's login is sysadmin for its other operations).
//! `COPY_ONLY` leaves model's backup chain as it was (no new differential base). What is left
//! behind: one row set in msdb's backup history (`backupset` / `backupmediafamily`, database
//! model, `is_copy_only` = 1, name `failback engine write probe`), which ages out with the
//! instance's own history cleanup — deleting it is not possible selectively
//! (`sp_delete_backuphistory` and `sp_delete_database_backuphistory` delete other backups'
//! history too), so it is named instead. The probe file is deleted by the agent's files backend
//! (documented file I/O, confined to the configured roots, hence the folder must be under them —
//! it is for the share, which FO-2 reads and FB-3 checksums); `xp_delete_file`, which would
//! delete as the engine's account, is undocumented and was not used. When the agent's own account
//! may not delete the file, the result says so (`probe_deleted` false, `cleanup` why) and the
//! probe, a few MB, is the one thing left for a person to remove (so is the file of a probe
//! interrupted between its BACKUP and the delete: every probe file is named
//! `failback_engine_probe_<16 hex>.bak`, so they are easy to find).
//!
//! Errors: a refused write is the *answer*, not an operation error — SQL Server's Msg 3201
//! ("Cannot open backup device '…'. Operating system error 5(Access is denied.).", then 3013) gives
//! `can_write = false` with the operating system error, SQL Server's text and the engine's
//! account, which preflight turns into a failed check naming the account, the folder and the
//! fix. Anything else (the folder outside the roots, no `[files]`, a login that may not back up
//! model, the instance unreachable) is an operation error with the usual retry class.

use failback_proto::model::{DatabaseName, PathText};
use failback_proto::pb;

use super::tsql::{self, BackupOptions};
use super::{SqlBackend, os_error, text};
use crate::error::Error;
use crate::exec::files::Files;

/// The database the probe backs up.
const PROBE_DATABASE: &str = "model";
/// BACKUP's NAME for the probe: what a DBA finds in msdb's backup history.
pub const PROBE_NAME: &str = "failback engine write probe";
/// File name prefix of probe files.
pub const PROBE_PREFIX: &str = "failback_engine_probe_";

/// The engine's row of `sys.dm_server_services` ("SQL Server (MSSQLSERVER)", "SQL Server
/// (PCHAT)"): not the Agent's ("SQL Server Agent (…)") nor Launchpad's ("SQL Server Launchpad (…)").
pub fn is_engine_service(name: &str) -> bool {
    name.starts_with("SQL Server (")
}

/// `dir` joined with `name` in the folder's own separator.
fn join(dir: &str, name: &str) -> String {
    let sep = if dir.contains('\\') { '\\' } else { '/' };
    format!("{}{sep}{name}", dir.trim_end_matches(['\\', '/']))
}

impl SqlBackend {
    /// The probe backup; see the module doc.
    pub async fn check_engine_share_write(
        &self,
        directory: &PathText,
        files: Option<&Files>,
    ) -> Result<pb::EngineShareWrite, Error> {
        let dir = directory.as_str();
        let files = files.ok_or_else(|| {
            Error::Unsupported(format!(
                "this agent has no [files] roots, so it could not delete the probe backup it would write in '{dir}'; add the folder to [files] roots"
            ))
        })?;
        // The folder must be under the roots and exist: the probe is deleted through the roots,
        // and a missing folder is a different problem from a refused one.
        let st = files.stat(dir).await?;
        if !st.exists || !st.is_dir {
            return Err(Error::InvalidInput {
                field: "directory",
                reason: format!("'{dir}' is not an existing folder as this agent sees it"),
            });
        }
        let probe = join(
            dir,
            &format!("{PROBE_PREFIX}{:016x}.bak", rand::random::<u64>()),
        );
        let mut conn = self.connect(true).await?;
        // The engine's account, for the finding; an instance without sys.dm_server_services
        // (before 2008 R2 SP1, error 208) still gets the probe.
        let (service, account) = match Self::rows(&mut conn, &tsql::services()).await {
            Ok(rows) => rows
                .iter()
                .find(|r| is_engine_service(&text(r, "servicename")))
                .map(|r| (text(r, "servicename"), text(r, "service_account")))
                .unwrap_or_default(),
            Err(Error::Sql {
                number: Some(208), ..
            }) => Default::default(),
            Err(e) => return Err(e),
        };
        let model = DatabaseName::new(PROBE_DATABASE).map_err(|reason| Error::InvalidInput {
            field: "database",
            reason,
        })?;
        let options = BackupOptions {
            copy_only: true,
            compression: false,
            name: PROBE_NAME.into(),
            description: format!(
                "failback preflight: can the Database Engine's service account write {dir}? The file is deleted after the probe."
            ),
        };
        let mut out = pb::EngineShareWrite {
            directory: dir.to_string(),
            service,
            account,
            probe_file: probe.clone(),
            ..Default::default()
        };
        match Self::exec(&mut conn, &tsql::backup_database(&model, &probe, &options)).await {
            Ok(()) => {
                out.can_write = true;
                match files.delete(&probe).await {
                    Ok(true) => out.probe_deleted = true,
                    Ok(false) => {
                        out.cleanup = format!(
                            "the probe file '{probe}' was not found after the backup that wrote it"
                        );
                    }
                    Err(e) => {
                        out.cleanup = format!(
                            "this agent's account could not delete the probe file '{probe}' ({e}); delete it by hand"
                        );
                    }
                }
                Ok(out)
            }
            Err(Error::Sql {
                number: Some(3201),
                message,
                ..
            }) => {
                out.sql_error = 3201;
                out.os_error = os_error(&message).unwrap_or(0);
                out.message = message;
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_row_and_paths() {
        assert!(is_engine_service("SQL Server (MSSQLSERVER)"));
        assert!(is_engine_service("SQL Server (PCHAT)"));
        assert!(!is_engine_service("SQL Server Agent (PCHAT)"));
        assert!(!is_engine_service("SQL Server Launchpad (PCHAT)"));
        assert_eq!(join(r"\\fs\ls\", "p.bak"), r"\\fs\ls\p.bak");
        assert_eq!(join("/srv/ls", "p.bak"), "/srv/ls/p.bak");
    }
}
