//! The one module that writes T-SQL. Every statement the agent sends is built here, from typed
//! values only: database names are [`DatabaseName`]s (already restricted to SQL Server regular
//! identifiers) and are additionally bracket-quoted; string values are parameters wherever T-SQL
//! allows them (`sp_executesql` with `@P1`, `@P2`, …) and `N'…'` literals with doubled quotes only
//! where it does not. Only what T-SQL cannot parameterise (`ALTER DATABASE` names, `KILL`) is put in
//! the text, and only through [`quote_ident`] or as a validated integer.
//!
//! Statements are values ([`Statement`]) so a dry run can print exactly what a run would send.

use std::fmt;

use failback_proto::model::DatabaseName;

pub mod logship;

/// A parameter value of a [`Statement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// NVARCHAR.
    Text(String),
    /// INT.
    Int(i32),
}

/// One statement: text with `@P1…` placeholders and their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// T-SQL text.
    pub text: String,
    /// Values of `@P1`, `@P2`, … in order.
    pub params: Vec<Param>,
}

impl Statement {
    fn plain(text: impl Into<String>) -> Self {
        Statement {
            text: text.into(),
            params: Vec::new(),
        }
    }
}

impl fmt::Display for Statement {
    /// The statement as an operator reads it in a plan: the text, then the parameter values as
    /// T-SQL literals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        for (i, p) in self.params.iter().enumerate() {
            let v = match p {
                Param::Text(s) => nstring(s),
                Param::Int(n) => n.to_string(),
            };
            write!(
                f,
                "{}@P{} = {v}",
                if i == 0 { "  -- " } else { ", " },
                i + 1
            )?;
        }
        Ok(())
    }
}

/// `[name]`, with `]` doubled (a [`DatabaseName`] cannot contain one, but the quoting does not
/// rely on that).
pub fn quote_ident(name: &DatabaseName) -> String {
    format!("[{}]", name.as_str().replace(']', "]]"))
}

/// `N'text'`, with `'` doubled.
pub fn nstring(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("@P{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names(dbs: &[DatabaseName]) -> Vec<Param> {
    dbs.iter()
        .map(|d| Param::Text(d.as_str().to_string()))
        .collect()
}

/// Server identity and default paths. SERVERPROPERTY returns sql_variant; tiberius decodes its
/// base type (nvarchar for these properties), so no CAST is needed.
pub fn instance_properties() -> Statement {
    Statement::plain(
        "SELECT SERVERPROPERTY(N'ServerName') AS server_name, SERVERPROPERTY(N'ProductVersion') AS product_version, \
SERVERPROPERTY(N'Edition') AS edition, @@VERSION AS version_text, @@SERVERNAME AS at_servername, \
SERVERPROPERTY(N'InstanceDefaultDataPath') AS data_path, SERVERPROPERTY(N'InstanceDefaultLogPath') AS log_path;",
    )
}

/// Fallback for SQL Server 2008 R2 (InstanceDefault*Path is NULL there): the folders of master's
/// files. Decision: we do not read the registry (`xp_instance_regread`): it is undocumented, needs
/// sysadmin, and master's folder is where SSMS itself puts restored files on such instances.
pub fn master_files() -> Statement {
    Statement::plain("SELECT type, physical_name FROM sys.master_files WHERE database_id = 1;")
}

/// The SQL Server and SQL Server Agent services (SQL 2008 R2 SP1 and later).
pub fn services() -> Statement {
    Statement::plain(
        "SELECT servicename, startup_type_desc, status_desc, service_account FROM sys.dm_server_services;",
    )
}

/// `sys.databases` rows for the names (pchat-dr.md §6.6).
pub fn database_state(dbs: &[DatabaseName]) -> Statement {
    Statement {
        text: format!(
            "SELECT name, state_desc, user_access_desc, recovery_model_desc, is_in_standby, is_read_only FROM sys.databases WHERE name IN ({});",
            placeholders(dbs.len())
        ),
        params: names(dbs),
    }
}

/// Allocated pages of a database's data files (pchat-dr.md §6.5's `sys.master_files`; type 0 =
/// ROWS). No GROUP BY, one database per statement: simpler for every server version.
pub fn data_pages(db: &DatabaseName) -> Statement {
    Statement {
        text: "SELECT SUM(size) AS pages FROM sys.master_files WHERE database_id = DB_ID(@P1) AND type = 0;".into(),
        params: vec![Param::Text(db.as_str().to_string())],
    }
}

/// The newest full backup of a database msdb records (sizing a full backup before it is
/// written: preflight's free-space check). `backup_size` is numeric(20,0) bytes before
/// compression; the age is in hours on the server's clock (`backup_finish_date` is local time,
/// as is GETDATE()).
pub fn last_full_backup(db: &DatabaseName) -> Statement {
    Statement {
        text: "SELECT TOP (1) backup_size, DATEDIFF(HOUR, backup_finish_date, GETDATE()) AS age_hours \
FROM msdb.dbo.backupset WHERE database_name = @P1 AND type = 'D' ORDER BY backup_finish_date DESC;"
            .into(),
        params: vec![Param::Text(db.as_str().to_string())],
    }
}

/// Mirroring rows for the names (pchat-dr.md §6.1).
pub fn mirroring_state(dbs: &[DatabaseName]) -> Statement {
    Statement {
        text: format!(
            "SELECT d.name, m.mirroring_guid, m.mirroring_role_desc, m.mirroring_state_desc, m.mirroring_partner_name, \
m.mirroring_partner_instance, m.mirroring_witness_name, m.mirroring_safety_level_desc \
FROM sys.database_mirroring AS m JOIN sys.databases AS d ON d.database_id = m.database_id WHERE d.name IN ({});",
            placeholders(dbs.len())
        ),
        params: names(dbs),
    }
}

/// `SERVERPROPERTY('ProductVersion')`: which session catalog [`sessions`] may use.
pub fn product_version() -> Statement {
    Statement::plain("SELECT SERVERPROPERTY(N'ProductVersion') AS product_version;")
}

/// User sessions in a database other than our own, one row per session (pchat-dr.md §6.10,
/// issue #11 item 3). `sys.sysprocesses` has one row per execution context (a parallel request
/// repeats its SPID) and lists the background tasks, whose KILL is Msg 6107; so: from SQL
/// Server 2012 (major 11), `sys.dm_exec_sessions`, which has `database_id` there; on 2008 R2,
/// whose `dm_exec_sessions` lacks `database_id`, `sys.sysprocesses` joined to it for
/// `is_user_process`. Both DISTINCT, so a session is listed once whichever view repeats it.
pub fn sessions(db: &DatabaseName, major_version: u32) -> Statement {
    let text = if major_version >= 11 {
        "SELECT DISTINCT s.session_id AS spid, s.login_name AS loginame, s.host_name AS hostname, \
s.program_name AS program_name FROM sys.dm_exec_sessions AS s \
WHERE s.database_id = DB_ID(@P1) AND s.is_user_process = 1 AND s.session_id <> @@SPID;"
    } else {
        "SELECT DISTINCT p.spid, p.loginame, p.hostname, p.program_name FROM sys.sysprocesses AS p \
JOIN sys.dm_exec_sessions AS s ON s.session_id = p.spid \
WHERE p.dbid = DB_ID(@P1) AND s.is_user_process = 1 AND p.spid <> @@SPID;"
    };
    Statement {
        text: text.into(),
        params: vec![Param::Text(db.as_str().to_string())],
    }
}

/// `KILL n;` — KILL takes only a literal. `spid` must be a positive session id; user sessions
/// may have ids at or below 50 on SQL Server 2005 and later, so no threshold is assumed: the
/// session list holds only user processes, and a background task met in a race is refused by
/// the server with 6107, which the caller treats like 6106.
pub fn kill(spid: i32) -> Option<Statement> {
    (spid > 0).then(|| Statement::plain(format!("KILL {spid};")))
}

/// `ALTER DATABASE [db] SET PARTNER OFF;` (pchat-dr.md §6.1; names cannot be parameters here).
pub fn set_partner_off(db: &DatabaseName) -> Statement {
    Statement::plain(format!(
        "ALTER DATABASE {} SET PARTNER OFF;",
        quote_ident(db)
    ))
}

/// How a restore ends (the agent's own copy of the model's enum, with the undo file resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryClause {
    /// `RECOVERY`.
    Recovery,
    /// `NORECOVERY`.
    NoRecovery,
    /// `STANDBY = @Pn`.
    Standby(String),
}

/// Options of a full backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupOptions {
    /// COPY_ONLY.
    pub copy_only: bool,
    /// COMPRESSION (else the server default).
    pub compression: bool,
    /// NAME.
    pub name: String,
    /// DESCRIPTION.
    pub description: String,
}

/// Full backup (pchat-dr.md §6.2). Database, file, name and description are parameters: T-SQL
/// accepts variables for all four. FORMAT + INIT on a fresh file name: a new media set, nothing
/// appended to an old one.
pub fn backup_database(db: &DatabaseName, file: &str, o: &BackupOptions) -> Statement {
    let mut with = vec![
        "FORMAT",
        "INIT",
        "CHECKSUM",
        "STATS = 10",
        "NAME = @P3",
        "DESCRIPTION = @P4",
    ];
    if o.compression {
        with.push("COMPRESSION");
    }
    if o.copy_only {
        with.push("COPY_ONLY");
    }
    Statement {
        text: format!(
            "BACKUP DATABASE @P1 TO DISK = @P2 WITH {};",
            with.join(", ")
        ),
        params: vec![
            Param::Text(db.as_str().to_string()),
            Param::Text(file.to_string()),
            Param::Text(o.name.clone()),
            Param::Text(o.description.clone()),
        ],
    }
}

/// Log backup.
pub fn backup_log(db: &DatabaseName, file: &str) -> Statement {
    Statement {
        text: "BACKUP LOG @P1 TO DISK = @P2 WITH INIT, CHECKSUM, STATS = 10;".into(),
        params: vec![
            Param::Text(db.as_str().to_string()),
            Param::Text(file.to_string()),
        ],
    }
}

/// Whether a RESTORE asks SQL Server to verify backup checksums. `Checksum` only for a set whose
/// HEADERONLY says `HasBackupChecksums = 1`: SQL Server refuses `WITH CHECKSUM` on a set without
/// them (Msg 3187, then 3013), and log shipping's own `.trn` files (sqllogship.exe) normally have
/// none. Without the option SQL Server still verifies checksums where they are present
/// (pchat-dr.md §6.3), so `Default` loses no check on a set that has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// `WITH CHECKSUM`: the set has backup checksums and they must be verified.
    Checksum,
    /// No option: SQL Server's default (verify when present).
    Default,
}

impl Checksums {
    /// `Checksum` when the set has backup checksums.
    pub fn for_set(has_checksums: bool) -> Self {
        if has_checksums {
            Checksums::Checksum
        } else {
            Checksums::Default
        }
    }

    fn push(self, with: &mut Vec<String>) {
        if self == Checksums::Checksum {
            with.push("CHECKSUM".into());
        }
    }
}

/// `RESTORE VERIFYONLY` of backup set `position` (pchat-dr.md §6.3).
pub fn verify_only(file: &str, position: u32, checksums: Checksums) -> Statement {
    let mut with = vec![format!("FILE = {position}")];
    checksums.push(&mut with);
    Statement {
        text: format!(
            "RESTORE VERIFYONLY FROM DISK = @P1 WITH {};",
            with.join(", ")
        ),
        params: vec![Param::Text(file.to_string())],
    }
}

/// The instance's current UTC offset in minutes (local = UTC + offset; SQL Server 2008 and
/// later). One read of one clock, unlike `DATEDIFF(minute, GETUTCDATE(), GETDATE())`, whose two
/// reads can straddle a minute boundary.
pub fn utc_offset() -> Statement {
    Statement::plain("SELECT DATEPART(TZOFFSET, SYSDATETIMEOFFSET()) AS offset_minutes;")
}

/// The UTC offset, in 15-minute units, that msdb recorded for the newest backup set written by
/// `server` (backupset.time_zone: -48..48, 127 unknown). A restore copies the set's zone from
/// the media, so a secondary knows its primary's zone from the log backups it restored.
pub fn backupset_time_zone(server: &str) -> Statement {
    Statement {
        text: "SELECT TOP 1 time_zone FROM msdb.dbo.backupset WHERE server_name = @P1 \
AND time_zone >= -48 AND time_zone <= 48 ORDER BY backup_set_id DESC;"
            .into(),
        params: vec![Param::Text(server.to_string())],
    }
}

/// `RESTORE HEADERONLY`.
pub fn header_only(file: &str) -> Statement {
    Statement {
        text: "RESTORE HEADERONLY FROM DISK = @P1;".into(),
        params: vec![Param::Text(file.to_string())],
    }
}

/// `RESTORE FILELISTONLY` of backup set `position`.
pub fn file_list_only(file: &str, position: u32) -> Statement {
    Statement {
        text: format!("RESTORE FILELISTONLY FROM DISK = @P1 WITH FILE = {position};"),
        params: vec![Param::Text(file.to_string())],
    }
}

/// `ALTER DATABASE [db] SET SINGLE_USER WITH ROLLBACK IMMEDIATE;` (exclusive access before a
/// restore over an ONLINE database; names cannot be parameters here).
pub fn single_user(db: &DatabaseName) -> Statement {
    Statement::plain(format!(
        "ALTER DATABASE {} SET SINGLE_USER WITH ROLLBACK IMMEDIATE;",
        quote_ident(db)
    ))
}

/// `ALTER DATABASE [db] SET READ_ONLY | READ_WRITE WITH ROLLBACK IMMEDIATE;` (other sessions'
/// open transactions are rolled back: a database is read-only only once nobody can still write).
pub fn set_read_only(db: &DatabaseName, read_only: bool) -> Statement {
    Statement::plain(format!(
        "ALTER DATABASE {} SET {} WITH ROLLBACK IMMEDIATE;",
        quote_ident(db),
        if read_only { "READ_ONLY" } else { "READ_WRITE" }
    ))
}

/// `ALTER DATABASE [db] SET MULTI_USER;`.
pub fn multi_user(db: &DatabaseName) -> Statement {
    Statement::plain(format!(
        "ALTER DATABASE {} SET MULTI_USER;",
        quote_ident(db)
    ))
}

fn recovery_clause(r: &RecoveryClause, params: &mut Vec<Param>) -> String {
    match r {
        RecoveryClause::Recovery => "RECOVERY".into(),
        RecoveryClause::NoRecovery => "NORECOVERY".into(),
        RecoveryClause::Standby(undo) => {
            params.push(Param::Text(undo.clone()));
            format!("STANDBY = @P{}", params.len())
        }
    }
}

/// Which backup set of a file a RESTORE reads, and whether it verifies its checksums: both come
/// from the file's HEADERONLY (`Position`, `HasBackupChecksums`), never assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSet {
    /// `FILE = n` (HEADERONLY's `Position`).
    pub position: u32,
    /// `CHECKSUM` or SQL Server's default.
    pub checksums: Checksums,
}

/// `RESTORE DATABASE` from a file (pchat-dr.md §6.4) with every logical file MOVEd to its target
/// path; all names are parameters.
pub fn restore_database(
    db: &DatabaseName,
    file: &str,
    set: BackupSet,
    recovery: &RecoveryClause,
    replace: bool,
    moves: &[(String, String)],
) -> Statement {
    let mut params = vec![
        Param::Text(db.as_str().to_string()),
        Param::Text(file.to_string()),
    ];
    let mut with = vec![format!("FILE = {}", set.position)];
    if replace {
        with.push("REPLACE".into());
    }
    with.push(recovery_clause(recovery, &mut params));
    set.checksums.push(&mut with);
    with.push("STATS = 5".into());
    for (logical, physical) in moves {
        params.push(Param::Text(logical.clone()));
        params.push(Param::Text(physical.clone()));
        with.push(format!("MOVE @P{} TO @P{}", params.len() - 1, params.len()));
    }
    Statement {
        text: format!(
            "RESTORE DATABASE @P1 FROM DISK = @P2 WITH {};",
            with.join(", ")
        ),
        params,
    }
}

/// `RESTORE LOG` from a file (no `CHECKSUM` on a log shipping `.trn`: see [`Checksums`]).
pub fn restore_log(
    db: &DatabaseName,
    file: &str,
    set: BackupSet,
    recovery: &RecoveryClause,
) -> Statement {
    let mut params = vec![
        Param::Text(db.as_str().to_string()),
        Param::Text(file.to_string()),
    ];
    let mut with = vec![
        format!("FILE = {}", set.position),
        recovery_clause(recovery, &mut params),
    ];
    set.checksums.push(&mut with);
    with.push("STATS = 10".into());
    Statement {
        text: format!("RESTORE LOG @P1 FROM DISK = @P2 WITH {};", with.join(", ")),
        params,
    }
}

/// `RESTORE DATABASE @db WITH RECOVERY;`.
pub fn recover(db: &DatabaseName) -> Statement {
    Statement {
        text: "RESTORE DATABASE @P1 WITH RECOVERY;".into(),
        params: vec![Param::Text(db.as_str().to_string())],
    }
}

/// Progress of a session's request (`percent_complete` moves during BACKUP and RESTORE).
pub fn request_progress(spid: i32) -> Statement {
    Statement {
        text: "SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id = @P1;".into(),
        params: vec![Param::Int(spid)],
    }
}

/// Our own session id.
pub fn own_spid() -> Statement {
    Statement::plain("SELECT @@SPID AS spid;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_catalog_follows_the_major_version() {
        use failback_proto::model::sql_major_version as major_version;
        assert_eq!(major_version("13.0.6300.2"), Some(13));
        assert_eq!(major_version(" 10.50.6000.34 "), Some(10));
        assert_eq!(major_version(""), None);
        assert_eq!(major_version("x.1"), None);
        let db = DatabaseName::new("mgc").unwrap();
        assert!(
            sessions(&db, 11)
                .text
                .contains("FROM sys.dm_exec_sessions AS s WHERE")
        );
        assert!(
            sessions(&db, 10)
                .text
                .contains("FROM sys.sysprocesses AS p JOIN")
        );
        for v in [10, 13] {
            let t = sessions(&db, v).text;
            assert!(
                t.starts_with("SELECT DISTINCT") && t.contains("is_user_process = 1"),
                "{t}"
            );
        }
    }

    #[test]
    fn quoting() {
        let db = DatabaseName::new("mgc").unwrap();
        assert_eq!(quote_ident(&db), "[mgc]");
        assert_eq!(nstring("it's"), "N'it''s'");
        assert_eq!(
            nstring("x'; DROP DATABASE y --"),
            "N'x''; DROP DATABASE y --'"
        );
        assert_eq!(
            set_partner_off(&db).text,
            "ALTER DATABASE [mgc] SET PARTNER OFF;"
        );
        assert_eq!(kill(0), None);
        assert_eq!(kill(53).unwrap().text, "KILL 53;");
    }

    #[test]
    fn backup_and_restore_use_parameters() {
        let db = DatabaseName::new("mgc").unwrap();
        let o = BackupOptions {
            copy_only: false,
            compression: false,
            name: "n".into(),
            description: "d'x".into(),
        };
        let b = backup_database(&db, r"\\fs\ls\mgc.bak", &o);
        assert_eq!(
            b.text,
            "BACKUP DATABASE @P1 TO DISK = @P2 WITH FORMAT, INIT, CHECKSUM, STATS = 10, NAME = @P3, DESCRIPTION = @P4;"
        );
        let set = BackupSet {
            position: 1,
            checksums: Checksums::Checksum,
        };
        let r = restore_database(
            &db,
            "/x/mgc.bak",
            set,
            &RecoveryClause::Standby("/x/undo.tuf".into()),
            true,
            &[("mgc".into(), "/d/mgc.mdf".into())],
        );
        assert_eq!(
            r.text,
            "RESTORE DATABASE @P1 FROM DISK = @P2 WITH FILE = 1, REPLACE, STANDBY = @P3, CHECKSUM, STATS = 5, MOVE @P4 TO @P5;"
        );
        assert_eq!(r.params.len(), 5);
        // A log shipping .trn (no backup checksums, second set of its file): no CHECKSUM, the
        // set's position from HEADERONLY.
        let trn = BackupSet {
            position: 2,
            checksums: Checksums::for_set(false),
        };
        assert_eq!(
            restore_log(&db, "/c/mgc_1.trn", trn, &RecoveryClause::NoRecovery).text,
            "RESTORE LOG @P1 FROM DISK = @P2 WITH FILE = 2, NORECOVERY, STATS = 10;"
        );
        assert_eq!(
            verify_only("/c/mgc_1.trn", 2, trn.checksums).text,
            "RESTORE VERIFYONLY FROM DISK = @P1 WITH FILE = 2;"
        );
        assert_eq!(
            verify_only("/b/mgc.bak", 1, Checksums::for_set(true)).text,
            "RESTORE VERIFYONLY FROM DISK = @P1 WITH FILE = 1, CHECKSUM;"
        );
        assert_eq!(
            single_user(&db).text,
            "ALTER DATABASE [mgc] SET SINGLE_USER WITH ROLLBACK IMMEDIATE;"
        );
    }

    #[test]
    fn values_are_parameters() {
        let dbs = [
            DatabaseName::new("mgc").unwrap(),
            DatabaseName::new("mgccomp").unwrap(),
        ];
        let s = database_state(&dbs);
        assert!(s.text.ends_with("WHERE name IN (@P1, @P2);"));
        assert_eq!(
            s.params,
            vec![Param::Text("mgc".into()), Param::Text("mgccomp".into())]
        );
        assert!(s.to_string().ends_with("-- @P1 = N'mgc', @P2 = N'mgccomp'"));
    }
}
