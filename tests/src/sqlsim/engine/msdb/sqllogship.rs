//! `sqllogship.exe`, the program the log shipping jobs run (as the Agent account):
//!
//! - `-backup <primary_id>`: `BACKUP LOG [db] TO DISK = N'<backup_directory>\<db>_yyyymmddhhmmss.trn'`
//!   (UTC stamp: the behaviour sqlsim has always had and what the lead recalls of SQL Server
//!   2008 and later; no Microsoft page found states it either way, so it stays, and nothing in
//!   failback parses the stamp — the agent orders files by HEADERONLY LSNs), then deletes this database's `.trn` files in that folder older than
//!   backup_retention_period; records last_backup_file / date.
//! - `-copy <secondary_id>`: lists `<db>_*.trn` in backup_source_directory (Agent read access),
//!   copies those newer than last_copied_file and not yet in backup_destination_directory
//!   (write access), oldest first; records last_copied_file / date.
//! - `-restore <secondary_id>`: for each secondary database of that id, reads the headers of
//!   the copied files (as the engine), sorts them by FirstLSN, skips those already applied,
//!   applies the next ones `WITH NORECOVERY` (restore_mode 0) or `STANDBY` (1, kicking users
//!   out first when disconnect_users), honours restore_delay and restore_all, and stops at a
//!   gap with "The file … is too recent to apply"; records last_restored_file / date / latency.
//!
//! Output imitates sqllogship's log lines (`yyyy-mm-dd hh:mm:ss.ss\t…`, errors as
//! `*** Error: …(mscorlib) ***`, last line `Exit Status: 0 (Success)` or `1 (Error)`), which is
//! what the job history row shows; each run also writes log_shipping_monitor_history_detail
//! rows (and _error_detail rows on failure).

use super::LsHistory;
use super::access::{self, Access};
use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::engine::backup::format;
use crate::sqlsim::engine::{Engine, ResultItem, lock};

/// sqllogship's log of one run.
struct RunLog {
    lines: Vec<String>,
    history: Vec<(i32, String, bool)>,
}

impl RunLog {
    fn new() -> Self {
        RunLog {
            lines: Vec::new(),
            history: Vec::new(),
        }
    }

    fn line(&mut self, text: impl Into<String>) {
        // The program prints the host's local clock.
        let t = Timestamp::now_local().to_rfc3339();
        let text = text.into();
        self.lines
            .push(format!("{} {}\t{text}", &t[..10], &t[11..22]));
        self.history.push((1, text, false));
    }

    fn error(&mut self, text: impl Into<String>, source: &str) -> i32 {
        let text = text.into();
        self.line(format!("*** Error: {text}({source}) ***"));
        self.history.push((3, text, true));
        1
    }
}

/// `[name]` with `]` doubled.
fn quote_ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `N'text'` with `'` doubled.
fn quote_str(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// A file name inside a folder written the way the folder is written.
pub fn join_sql(dir: &str, name: &str) -> String {
    if dir.ends_with('\\') || dir.ends_with('/') {
        format!("{dir}{name}")
    } else if dir.starts_with('/') {
        format!("{dir}/{name}")
    } else {
        format!("{dir}\\{name}")
    }
}

/// The timestamp part of `<db>_yyyymmddhhmmss.trn`, when the name has that shape.
fn stamp_of<'a>(db: &str, file: &'a str) -> Option<&'a str> {
    let lower = file.to_lowercase();
    let prefix = format!("{}_", db.to_lowercase());
    if !lower.starts_with(&prefix) || !lower.ends_with(".trn") {
        return None;
    }
    let stamp = &file[prefix.len()..file.len() - 4];
    (stamp.len() >= 14 && stamp.bytes().all(|b| b.is_ascii_digit())).then_some(stamp)
}

/// `yyyymmddhhmmss` back to a timestamp.
fn parse_stamp(s: &str) -> Option<Timestamp> {
    let n = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<u32>().ok());
    Timestamp::from_civil(
        n(0, 4)? as i64,
        n(4, 6)?,
        n(6, 8)?,
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
        0,
    )
}

impl Engine {
    /// Runs sqllogship with its arguments; (exit code, output).
    pub(super) async fn sqllogship(&self, args: &[String]) -> (i32, String) {
        let mut op = None;
        let mut server = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let flag = a.to_ascii_lowercase();
            match flag.as_str() {
                "-backup" | "-copy" | "-restore" => op = Some((flag.clone(), it.next().cloned())),
                "-server" => server = it.next().cloned(),
                "-verboselevel" | "-logintimeout" | "-querytimeout" => {
                    it.next();
                }
                _ => {}
            }
        }
        let mut log = RunLog::new();
        let me = lock(&self.state).server_name.clone();
        let (agent_type, agent_id, code) = match (op, server) {
            (Some((_, None)), _) | (None, _) => {
                let c = log.error("Invalid arguments. Usage: sqllogship -backup|-copy|-restore <id> -server <instance>", "sqllogship");
                (-1, String::new(), c)
            }
            (_, None) => {
                let c = log.error("The -server argument is required.", "sqllogship");
                (-1, String::new(), c)
            }
            (Some(_), Some(s)) if !s.eq_ignore_ascii_case(&me) => {
                let c = log.error(format!("Could not connect to server '{s}': sqlsim instance '{me}' only runs its own log shipping."), "Microsoft.SqlServer.ConnectionInfo");
                (-1, String::new(), c)
            }
            (Some((op, Some(id))), Some(_)) => {
                let id = id.to_uppercase();
                match op.as_str() {
                    "-backup" => (0, id.clone(), self.ls_backup(&id, &mut log).await),
                    "-copy" => (1, id.clone(), self.ls_copy(&id, &mut log)),
                    _ => (2, id.clone(), self.ls_restore(&id, &mut log).await),
                }
            }
        };
        let status = if code == 0 {
            "0 (Success)"
        } else {
            "1 (Error)"
        };
        let mut out = log.lines.join("\n");
        out.push_str(&format!("\nExit Status: {status}"));
        if agent_type >= 0 {
            self.record_ls_history(agent_type, &agent_id, code, log.history);
        }
        (code, out)
    }

    fn record_ls_history(
        &self,
        agent_type: i32,
        agent_id: &str,
        code: i32,
        rows: Vec<(i32, String, bool)>,
    ) {
        let mut st = lock(&self.state);
        let msdb = &mut st.msdb;
        msdb.last_ls_session_id += 1;
        let session_id = msdb.last_ls_session_id;
        let database_name = match agent_type {
            0 => msdb
                .ls_primaries
                .iter()
                .find(|p| p.primary_id == agent_id)
                .map(|p| p.primary_database.clone()),
            _ => msdb
                .ls_secondaries
                .iter()
                .find(|s| s.secondary_id == agent_id)
                .map(|s| s.primary_database.clone()),
        }
        .unwrap_or_default();
        let now = Timestamp::now();
        let mut push = |status: i32, message: String, error: bool| {
            msdb.add_ls_history(LsHistory {
                agent_id: agent_id.to_string(),
                agent_type,
                session_id,
                database_name: database_name.clone(),
                session_status: status,
                log_time: now,
                message,
                error,
            })
        };
        for (status, message, error) in rows {
            push(status, message, error);
        }
        push(
            if code == 0 { 2 } else { 3 },
            format!(
                "Operation {}.",
                if code == 0 { "succeeded" } else { "failed" }
            ),
            false,
        );
        if let Err(m) = self.persist(&st) {
            tracing::warn!("failed to save log shipping history: {}", m.message);
        }
    }

    /// Runs T-SQL in a session of the log shipping agent; the error messages when it fails.
    async fn ls_sql(&self, sql: &str) -> Result<(), String> {
        let (account, host) = {
            let st = lock(&self.state);
            (st.agent_account(), st.machine_name())
        };
        let (mut session, _kill) = self
            .open_session(
                &account,
                false,
                &host,
                "Microsoft SQL Server Log Shipping",
                "master",
            )
            .map_err(|m| m.message)?;
        let results = self
            .execute_batch(&mut session, sql, &Default::default(), "agent")
            .await;
        self.close_session(session.spid);
        let errors: Vec<String> = results
            .iter()
            .flat_map(|r| &r.items)
            .filter_map(|i| match i {
                ResultItem::Message(m) if m.is_error() => Some(m.message.clone()),
                _ => None,
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join(" "))
        }
    }

    async fn ls_backup(&self, primary_id: &str, log: &mut RunLog) -> i32 {
        log.line("----- START OF TRANSACTION LOG BACKUP   -----");
        let cfg = lock(&self.state)
            .msdb
            .ls_primaries
            .iter()
            .find(|p| p.primary_id == primary_id)
            .cloned();
        let Some(cfg) = cfg else {
            return log.error(
                format!("Could not retrieve backup settings for primary ID '{primary_id}'."),
                "Microsoft.SqlServer.Management.LogShipping",
            );
        };
        let db = cfg.primary_database.clone();
        log.line(format!(
            "Retrieving backup settings. Primary ID: '{primary_id}'"
        ));
        let now = Timestamp::now();
        let mut at = now;
        let mut file = join_sql(&cfg.backup_directory, &format!("{db}_{}.trn", at.compact()));
        while self.options.paths.resolve(&file).exists() {
            at = at.plus_seconds(1);
            file = join_sql(&cfg.backup_directory, &format!("{db}_{}.trn", at.compact()));
        }
        log.line(format!(
            "Backing up transaction log. Primary Database: '{db}', Log Backup File: '{file}'"
        ));
        let compression = if cfg.backup_compression == 1 {
            ", COMPRESSION"
        } else {
            ""
        };
        let sql = format!(
            "BACKUP LOG {} TO DISK = {} WITH NOINIT, SKIP, NAME = {}{compression}",
            quote_ident(&db),
            quote_str(&file),
            quote_str(&format!("{db}-Transaction Log Backup")),
        );
        if let Err(e) = self.ls_sql(&sql).await {
            return log.error(e, ".Net SqlClient Data Provider");
        }
        log.line("Backup file verified.");
        {
            let mut st = lock(&self.state);
            if let Some(p) = st
                .msdb
                .ls_primaries
                .iter_mut()
                .find(|p| p.primary_id == primary_id)
            {
                p.last_backup_file = Some(file.clone());
                p.last_backup_date = Some(Timestamp::now());
            }
            if let Err(m) = self.persist(&st) {
                return log.error(m.message, "msdb");
            }
        }
        self.delete_old_backups(&cfg.backup_directory, &db, cfg.backup_retention_period, log);
        log.line("----- END OF TRANSACTION LOG BACKUP     -----");
        0
    }

    /// Retention: this database's log backups older than `minutes` go (failures only logged).
    fn delete_old_backups(&self, dir: &str, db: &str, minutes: i32, log: &mut RunLog) {
        let rules = lock(&self.state).msdb.agent_access.clone();
        let Ok(local) = access::check(&rules, &self.options.paths, dir, Access::Write) else {
            log.line(format!(
                "Skipping retention cleanup: access to '{dir}' is denied."
            ));
            return;
        };
        let cutoff = Timestamp::now().plus_seconds(-(minutes.max(0) as i64) * 60);
        let Ok(entries) = std::fs::read_dir(&local) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(t) = stamp_of(db, &name).and_then(parse_stamp)
                && t < cutoff
                && std::fs::remove_file(e.path()).is_ok()
            {
                log.line(format!(
                    "Deleted old log backup file '{}'",
                    join_sql(dir, &name)
                ));
            }
        }
    }

    fn ls_copy(&self, secondary_id: &str, log: &mut RunLog) -> i32 {
        log.line("----- START OF TRANSACTION LOG COPY     -----");
        let (cfg, rules) = {
            let st = lock(&self.state);
            (
                st.msdb
                    .ls_secondaries
                    .iter()
                    .find(|s| s.secondary_id == secondary_id)
                    .cloned(),
                st.msdb.agent_access.clone(),
            )
        };
        let Some(cfg) = cfg else {
            return log.error(
                format!("Could not retrieve copy settings for secondary ID '{secondary_id}'."),
                "Microsoft.SqlServer.Management.LogShipping",
            );
        };
        log.line(format!(
            "Retrieving copy settings. Secondary ID: '{secondary_id}'"
        ));
        let paths = &self.options.paths;
        let src = &cfg.backup_source_directory;
        let dst = &cfg.backup_destination_directory;
        let src_local = match access::check(&rules, paths, src, Access::Read) {
            Ok(l) => l,
            Err(e) => return log.error(e, "mscorlib"),
        };
        let entries = match std::fs::read_dir(&src_local) {
            Ok(e) => e,
            Err(e) => {
                return log.error(
                    format!("Could not find a part of the path '{src}'. ({e})"),
                    "mscorlib",
                );
            }
        };
        let db = &cfg.primary_database;
        let last = cfg
            .last_copied_file
            .as_deref()
            .and_then(|f| f.rsplit(['\\', '/']).next())
            .and_then(|f| stamp_of(db, f).map(str::to_string));
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| stamp_of(db, n).is_some_and(|s| last.as_deref().is_none_or(|l| s > l)))
            .collect();
        files.sort_by(|a, b| stamp_of(db, a).cmp(&stamp_of(db, b)));
        log.line(format!("Found {} files to copy in '{src}'", files.len()));
        let dst_local = match access::check(&rules, paths, dst, Access::Write) {
            Ok(l) => l,
            Err(e) if !files.is_empty() => return log.error(e, "mscorlib"),
            Err(_) => paths.resolve(dst),
        };
        for name in files {
            let from = src_local.join(&name);
            let to = dst_local.join(&name);
            if !to.exists() {
                let tmp = dst_local.join(format!("{name}.tmp"));
                let copied = std::fs::copy(&from, &tmp).and_then(|_| std::fs::rename(&tmp, &to));
                if let Err(e) = copied {
                    let _ = std::fs::remove_file(&tmp);
                    return log.error(
                        format!(
                            "Could not copy '{}' to '{}': {e}",
                            join_sql(src, &name),
                            join_sql(dst, &name)
                        ),
                        "mscorlib",
                    );
                }
                log.line(format!(
                    "Copying {} to {}",
                    join_sql(src, &name),
                    join_sql(dst, &name)
                ));
            }
            let mut st = lock(&self.state);
            if let Some(s) = st
                .msdb
                .ls_secondaries
                .iter_mut()
                .find(|s| s.secondary_id == secondary_id)
            {
                s.last_copied_file = Some(join_sql(dst, &name));
                s.last_copied_date = Some(Timestamp::now());
            }
            if let Err(m) = self.persist(&st) {
                return log.error(m.message, "msdb");
            }
        }
        log.line("----- END OF TRANSACTION LOG COPY       -----");
        0
    }

    async fn ls_restore(&self, secondary_id: &str, log: &mut RunLog) -> i32 {
        log.line("----- START OF TRANSACTION LOG RESTORE  -----");
        let (cfg, dbs, rules) = {
            let st = lock(&self.state);
            let m = &st.msdb;
            (
                m.ls_secondaries
                    .iter()
                    .find(|s| s.secondary_id == secondary_id)
                    .cloned(),
                m.ls_secondary_databases
                    .iter()
                    .filter(|d| d.secondary_id == secondary_id)
                    .cloned()
                    .collect::<Vec<_>>(),
                m.agent_access.clone(),
            )
        };
        let Some(cfg) = cfg else {
            return log.error(
                format!("Could not retrieve restore settings for secondary ID '{secondary_id}'."),
                "Microsoft.SqlServer.Management.LogShipping",
            );
        };
        let dir = &cfg.backup_destination_directory;
        let local = match access::check(&rules, &self.options.paths, dir, Access::Read) {
            Ok(l) => l,
            Err(e) => return log.error(e, "mscorlib"),
        };
        let names: Vec<String> = std::fs::read_dir(&local)
            .map(|e| {
                e.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        // Headers of the candidate files, read as the engine would for RESTORE HEADERONLY.
        let mut candidates = Vec::new();
        for n in names
            .iter()
            .filter(|n| stamp_of(&cfg.primary_database, n).is_some())
        {
            if let Ok((h, _)) = format::read_header(&local.join(n)).await
                && h.backup_type == 2
                && h.database_name.eq_ignore_ascii_case(&cfg.primary_database)
            {
                candidates.push((h, join_sql(dir, n)));
            }
        }
        candidates.sort_by_key(|(h, _)| h.first_lsn);
        for sdb in dbs {
            let name = sdb.secondary_database.clone();
            log.line(format!(
                "Retrieved database restore settings for secondary database '{name}'"
            ));
            for (h, file) in &candidates {
                let db_lsn = match lock(&self.state).database(&name) {
                    Some(d) => d.last_lsn,
                    None => {
                        return log.error(
                            format!("The database '{name}' does not exist."),
                            "Microsoft.SqlServer.Management.LogShipping",
                        );
                    }
                };
                if h.last_lsn <= db_lsn {
                    continue;
                }
                if h.first_lsn > db_lsn {
                    return log.error(format!("The file '{file}' is too recent to apply to the secondary database '{name}'."), "Microsoft.SqlServer.Management.LogShipping");
                }
                // The delay counts from the backup's creation. The header's finish time is the
                // primary's local clock (another data center may have another offset): undo the
                // writer's offset the file records, else trust the name's UTC stamp, else read
                // the header as this server's local time.
                let made = format::writer_offset(h)
                    .map(|m| h.finish.plus_seconds(-i64::from(m) * 60))
                    .or_else(|| {
                        file.rsplit(['\\', '/'])
                            .next()
                            .and_then(|n| stamp_of(&cfg.primary_database, n))
                            .and_then(parse_stamp)
                    })
                    .unwrap_or_else(|| h.finish.utc_from_local());
                if sdb.restore_delay > 0
                    && made.plus_seconds(sdb.restore_delay as i64 * 60) > Timestamp::now()
                {
                    log.line(format!("Skipped log backup file '{file}': restore delay of {} minutes not reached.", sdb.restore_delay));
                    break;
                }
                let finish = if sdb.restore_mode == 1 {
                    if sdb.disconnect_users {
                        let others = self.others_in(&name, 0);
                        self.end_sessions(&others);
                    }
                    let undo = join_sql(dir, &format!("{name}_{}.tuf", Timestamp::now().compact()));
                    format!("STANDBY = {}", quote_str(&undo))
                } else {
                    "NORECOVERY".to_string()
                };
                log.line(format!(
                    "Restoring log backup file '{file}' to secondary database '{name}'"
                ));
                let sql = format!(
                    "RESTORE LOG {} FROM DISK = {} WITH FILE = 1, {finish}",
                    quote_ident(&name),
                    quote_str(file)
                );
                if let Err(e) = self.ls_sql(&sql).await {
                    return log.error(e, ".Net SqlClient Data Provider");
                }
                let mut st = lock(&self.state);
                if let Some(d) = st
                    .msdb
                    .ls_secondary_databases
                    .iter_mut()
                    .find(|d| d.secondary_database.eq_ignore_ascii_case(&name))
                {
                    let now = Timestamp::now();
                    d.last_restored_file = Some(file.clone());
                    d.last_restored_date = Some(now);
                    d.last_restored_latency = Some((now.seconds_since(&h.start) / 60) as i32);
                }
                if let Err(m) = self.persist(&st) {
                    return log.error(m.message, "msdb");
                }
                if !sdb.restore_all {
                    break;
                }
            }
        }
        log.line("----- END OF TRANSACTION LOG RESTORE    -----");
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_stamps() {
        assert_eq!(
            stamp_of("mgc", "MGC_20240101120000.trn"),
            Some("20240101120000")
        );
        assert_eq!(stamp_of("mgc", "mgc_x.trn"), None);
        assert_eq!(stamp_of("mgc", "mgccomp_20240101120000.trn"), None);
        assert_eq!(
            parse_stamp("20240101120000").unwrap().compact(),
            "20240101120000"
        );
        assert_eq!(join_sql(r"\\fs\ls", "a.trn"), r"\\fs\ls\a.trn");
        assert_eq!(join_sql("/srv/ls/", "a.trn"), "/srv/ls/a.trn");
        assert_eq!(quote_ident("a]b"), "[a]]b]");
    }
}
