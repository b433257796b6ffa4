//! The instance state that survives a restart: server identity, databases (state, recovery model,
//! user access, files, LSN counter) and each user database's `dbo.Messages` rows. It lives in
//! `<data-dir>/state.json`, rewritten atomically (write a temp file, fsync, rename) after every
//! statement that changes it, so a crash leaves either the old or the new file, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sqlsim::clock::Timestamp;
use crate::sqlsim::error::{Result, SimError};

/// Version of the state file layout.
pub const STATE_FORMAT: u32 = 1;
/// SERVERPROPERTY('ProductVersion') of a new instance: SQL Server 2016 SP3 (plus GDR).
pub const DEFAULT_PRODUCT_VERSION: &str = "13.0.6300.2";
/// First database_id given to a user database (1-4 are master, tempdb, model, msdb).
pub const FIRST_USER_DATABASE_ID: i32 = 5;

/// `state_desc` of sys.databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DbState {
    /// 0
    Online,
    /// 1
    Restoring,
    /// 2
    Recovering,
    /// 3
    RecoveryPending,
    /// 4
    Suspect,
    /// 5
    Emergency,
    /// 6
    Offline,
}

impl DbState {
    /// The `state` code.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The `state_desc` text.
    pub fn desc(self) -> &'static str {
        match self {
            DbState::Online => "ONLINE",
            DbState::Restoring => "RESTORING",
            DbState::Recovering => "RECOVERING",
            DbState::RecoveryPending => "RECOVERY_PENDING",
            DbState::Suspect => "SUSPECT",
            DbState::Emergency => "EMERGENCY",
            DbState::Offline => "OFFLINE",
        }
    }
}

/// `recovery_model_desc` of sys.databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecoveryModel {
    /// 1
    Full,
    /// 2
    BulkLogged,
    /// 3
    Simple,
}

impl RecoveryModel {
    /// The `recovery_model` code.
    pub fn code(self) -> i64 {
        match self {
            RecoveryModel::Full => 1,
            RecoveryModel::BulkLogged => 2,
            RecoveryModel::Simple => 3,
        }
    }

    /// The `recovery_model_desc` text.
    pub fn desc(self) -> &'static str {
        match self {
            RecoveryModel::Full => "FULL",
            RecoveryModel::BulkLogged => "BULK_LOGGED",
            RecoveryModel::Simple => "SIMPLE",
        }
    }
}

/// `user_access_desc` of sys.databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserAccess {
    /// 0
    MultiUser,
    /// 1
    SingleUser,
    /// 2
    RestrictedUser,
}

impl UserAccess {
    /// The `user_access` code.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The `user_access_desc` text.
    pub fn desc(self) -> &'static str {
        match self {
            UserAccess::MultiUser => "MULTI_USER",
            UserAccess::SingleUser => "SINGLE_USER",
            UserAccess::RestrictedUser => "RESTRICTED_USER",
        }
    }
}

/// A database file (sys.master_files row).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbFile {
    /// file_id (1 = data, 2 = log).
    pub file_id: i32,
    /// Logical name.
    pub logical_name: String,
    /// Physical path (shown, not created: the sim stores rows in state.json).
    pub physical_name: String,
    /// `D` data or `L` log.
    pub kind: char,
}

/// One chat message in `dbo.Messages`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// IDENTITY value.
    pub id: i64,
    /// Chat room.
    pub room: String,
    /// Author.
    pub author: String,
    /// Message text.
    pub body: String,
    /// When it was posted (UTC).
    pub posted_at: Timestamp,
    /// LSN of the log record that inserted it (log backups carry the rows of their LSN range).
    #[serde(default)]
    pub lsn: u64,
}

/// A database mirroring session as one partner sees it (set up by the lab, not by T-SQL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirroring {
    /// `mirroring_guid` as text.
    pub guid: String,
    /// `PRINCIPAL` or `MIRROR`.
    pub role: String,
    /// `SYNCHRONIZED`, `SUSPENDED`, `DISCONNECTED`, …
    pub state: String,
    /// `FULL` or `OFF`.
    pub safety: String,
    /// `TCP://host:port` of the partner endpoint.
    pub partner_name: String,
    /// The partner's server instance name.
    pub partner_instance: String,
}

/// A database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Database {
    /// Name as created.
    pub name: String,
    /// database_id.
    pub database_id: i32,
    /// State.
    pub state: DbState,
    /// Recovery model.
    pub recovery_model: RecoveryModel,
    /// User access.
    pub user_access: UserAccess,
    /// `is_in_standby`.
    pub is_in_standby: bool,
    /// `is_read_only`.
    pub is_read_only: bool,
    /// `create_date`.
    pub create_date: Timestamp,
    /// Files.
    pub files: Vec<DbFile>,
    /// Current end of the log (numeric(25,0) in SQL Server's views).
    pub last_lsn: u64,
    /// System databases have no `dbo.Messages` table.
    pub is_system: bool,
    /// Next IDENTITY value of `dbo.Messages`.
    pub next_message_id: i64,
    /// Rows of `dbo.Messages`.
    pub messages: Vec<ChatMessage>,
    /// Mirroring session, if this database is a partner.
    #[serde(default)]
    pub mirroring: Option<Mirroring>,
    /// Where the next log backup starts (`None`: no log chain yet, BACKUP LOG fails with 4214).
    #[serde(default)]
    pub log_chain_lsn: Option<u64>,
    /// Checkpoint LSN of the latest full backup (`DatabaseBackupLSN` of later backups).
    #[serde(default)]
    pub last_full_backup_lsn: Option<u64>,
    /// `family_guid`: set at creation, kept by backups and restores (RESTORE checks it, 3154).
    #[serde(default)]
    pub family_guid: String,
    /// `database_guid`: new for every creation or restore.
    #[serde(default)]
    pub database_guid: String,
}

/// A new random GUID in SQL Server's text form (upper-case, 8-4-4-4-12).
pub fn new_guid() -> String {
    let a = fastrand::u128(..);
    let h = format!("{a:032X}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A Windows service of the instance, as `sys.dm_server_services` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// `servicename`, e.g. `SQL Server Agent (MSSQLSERVER)`.
    pub servicename: String,
    /// `Automatic`, `Manual`, `Disabled` or `Other`.
    pub startup_type_desc: String,
    /// `Stopped`, `Running`, `Paused`, …
    pub status_desc: String,
    /// `service_account`.
    pub service_account: String,
    /// `last_startup_time`.
    pub last_startup_time: Timestamp,
}

/// LSN of a newly created database's first log record; looks like a real one (VLF 34, block 16).
pub const INITIAL_LSN: u64 = 34_000_000_001_600_001;

impl Database {
    /// A new database with default files under the instance's default paths.
    pub fn new(
        name: &str,
        database_id: i32,
        data_path: &str,
        log_path: &str,
        is_system: bool,
    ) -> Self {
        let (data_logical, log_logical) = if name.eq_ignore_ascii_case("tempdb") {
            ("tempdev".to_string(), "templog".to_string())
        } else if name.eq_ignore_ascii_case("master") {
            ("master".to_string(), "mastlog".to_string())
        } else if name.eq_ignore_ascii_case("model") {
            ("modeldev".to_string(), "modellog".to_string())
        } else if name.eq_ignore_ascii_case("msdb") {
            ("MSDBData".to_string(), "MSDBLog".to_string())
        } else {
            (name.to_string(), format!("{name}_log"))
        };
        Database {
            name: name.to_string(),
            database_id,
            state: DbState::Online,
            recovery_model: if is_system && !name.eq_ignore_ascii_case("msdb") {
                RecoveryModel::Simple
            } else {
                RecoveryModel::Full
            },
            user_access: UserAccess::MultiUser,
            is_in_standby: false,
            is_read_only: false,
            create_date: Timestamp::now(),
            files: vec![
                DbFile {
                    file_id: 1,
                    physical_name: format!("{data_path}{name}.mdf"),
                    logical_name: data_logical,
                    kind: 'D',
                },
                DbFile {
                    file_id: 2,
                    physical_name: format!("{log_path}{name}_log.ldf"),
                    logical_name: log_logical,
                    kind: 'L',
                },
            ],
            last_lsn: INITIAL_LSN,
            is_system,
            next_message_id: 1,
            messages: Vec::new(),
            mirroring: None,
            log_chain_lsn: None,
            last_full_backup_lsn: None,
            family_guid: new_guid(),
            database_guid: new_guid(),
        }
    }
}

/// Everything persisted about the instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Layout version ([`STATE_FORMAT`]).
    pub format: u32,
    /// SERVERPROPERTY('ServerName') (and `@@SERVERNAME` unless `stale_server_name` is set).
    pub server_name: String,
    /// `@@SERVERNAME` when it differs from the real name: the name in `sys.servers` of a host that
    /// was renamed or rebuilt from an image without `sp_dropserver` / `sp_addserver`, where
    /// `@@SERVERNAME` keeps the old name while SERVERPROPERTY('ServerName') reports the real one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_server_name: Option<String>,
    /// SERVERPROPERTY('ProductVersion').
    pub product_version: String,
    /// SERVERPROPERTY('ProductLevel').
    pub product_level: String,
    /// SERVERPROPERTY('Edition').
    pub edition: String,
    /// SERVERPROPERTY('InstanceDefaultDataPath'), with a trailing separator.
    pub default_data_path: String,
    /// SERVERPROPERTY('InstanceDefaultLogPath'), with a trailing separator.
    pub default_log_path: String,
    /// Next database_id for CREATE DATABASE.
    pub next_database_id: i32,
    /// Databases, system ones first.
    pub databases: Vec<Database>,
    /// The SQL Server and SQL Server Agent services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// msdb: Agent jobs, schedules, history, log shipping, restore history, Agent access.
    #[serde(default)]
    pub msdb: crate::sqlsim::engine::msdb::Msdb,
    /// Folders the Database Engine's service account may not write (`engine_access.rs`).
    #[serde(default)]
    pub engine_access: Vec<crate::sqlsim::engine::msdb::AccessRule>,
}

impl InstanceState {
    /// A fresh instance: SQL Server 2016 SP3 Standard with the four system databases.
    pub fn fresh(server_name: &str) -> Self {
        let data =
            r"C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\".to_string();
        let databases = ["master", "tempdb", "model", "msdb"]
            .iter()
            .enumerate()
            .map(|(i, n)| Database::new(n, i as i32 + 1, &data, &data, true))
            .collect();
        InstanceState {
            format: STATE_FORMAT,
            server_name: server_name.to_string(),
            stale_server_name: None,
            product_version: DEFAULT_PRODUCT_VERSION.into(),
            product_level: "SP3".into(),
            edition: "Standard Edition (64-bit)".into(),
            default_data_path: data.clone(),
            default_log_path: data,
            next_database_id: FIRST_USER_DATABASE_ID,
            databases,
            services: Vec::new(),
            msdb: Default::default(),
            engine_access: Vec::new(),
        }
        .with_services()
    }

    /// `INST` of `HOST\INST`, or `MSSQLSERVER` for a default instance.
    pub fn instance_name(&self) -> String {
        self.server_name
            .split_once('\\')
            .map_or_else(|| "MSSQLSERVER".to_string(), |(_, i)| i.to_string())
    }

    /// The SQL Server Agent service row.
    pub fn agent_service(&self) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.servicename.starts_with("SQL Server Agent"))
    }

    /// True while the SQL Server Agent service is running.
    pub fn agent_running(&self) -> bool {
        self.agent_service()
            .is_some_and(|s| s.status_desc.eq_ignore_ascii_case("Running"))
    }

    /// The account the Agent (and its job steps) runs as.
    pub fn agent_account(&self) -> String {
        self.agent_service()
            .map_or_else(String::new, |s| s.service_account.clone())
    }

    /// `HOST` of `HOST\INST`.
    pub fn machine_name(&self) -> String {
        self.server_name
            .split_once('\\')
            .map_or_else(|| self.server_name.clone(), |(m, _)| m.to_string())
    }

    /// Adds the two services if they are missing (a fresh instance, or a state file written
    /// before they existed).
    #[must_use]
    pub fn with_services(mut self) -> Self {
        if self.services.is_empty() {
            let inst = self.instance_name();
            let (engine_acct, agent_acct) = if inst == "MSSQLSERVER" {
                (
                    r"NT Service\MSSQLSERVER".to_string(),
                    r"NT Service\SQLSERVERAGENT".to_string(),
                )
            } else {
                (
                    format!(r"NT Service\MSSQL${inst}"),
                    format!(r"NT Service\SQLAgent${inst}"),
                )
            };
            let now = Timestamp::now();
            self.services = vec![
                Service {
                    servicename: format!("SQL Server ({inst})"),
                    startup_type_desc: "Automatic".into(),
                    status_desc: "Running".into(),
                    service_account: engine_acct,
                    last_startup_time: now,
                },
                Service {
                    servicename: format!("SQL Server Agent ({inst})"),
                    startup_type_desc: "Automatic".into(),
                    status_desc: "Running".into(),
                    service_account: agent_acct,
                    last_startup_time: now,
                },
            ];
        }
        self
    }

    /// `(major, minor, build)` parsed from the product version, for PRELOGIN and LOGINACK.
    pub fn version_triplet(&self) -> (u8, u8, u16) {
        let mut it = self
            .product_version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let major = it.next().unwrap_or(13) as u8;
        let minor = it.next().unwrap_or(0) as u8;
        let build = it.next().unwrap_or(0) as u16;
        (major, minor, build)
    }

    /// The `@@VERSION` text (the release name follows the product version).
    pub fn version_text(&self) -> String {
        let (major, minor, _) = self.version_triplet();
        format!(
            "Microsoft SQL Server {} ({}) - {} (X64) \n\tAug  7 2021 01:20:37 \n\tCopyright (c) Microsoft Corporation\n\t{} on Windows Server 2016 Standard 10.0 <X64> (Build 14393: ) (Hypervisor)\n",
            crate::sqlsim::engine::backup::version::release_name(major as u32, minor as u32),
            self.product_level,
            self.product_version,
            self.edition
        )
    }

    /// `@@SERVERNAME`: the stale `sys.servers` name if there is one, else the real name.
    pub fn at_at_servername(&self) -> &str {
        self.stale_server_name
            .as_deref()
            .unwrap_or(&self.server_name)
    }

    /// Applies `--product-version` (`major.minor.build[.revision]`) and `--stale-server-name`;
    /// true when the state changed (and must be saved).
    pub fn apply_identity(
        &mut self,
        product_version: Option<&str>,
        stale_server_name: Option<&str>,
    ) -> Result<bool> {
        let mut changed = false;
        if let Some(v) = product_version {
            if crate::sqlsim::engine::backup::version::parse(v).is_none() {
                return Err(SimError::Config(format!(
                    "--product-version {v}: expected major.minor.build[.revision], e.g. {DEFAULT_PRODUCT_VERSION}"
                )));
            }
            if self.product_version != v {
                self.product_version = v.to_string();
                changed = true;
            }
        }
        if let Some(n) = stale_server_name {
            let n = (!n.eq_ignore_ascii_case(&self.server_name)).then(|| n.to_string());
            if self.stale_server_name != n {
                self.stale_server_name = n;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Finds a database by name (case-insensitive, as the default collation compares).
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// Mutable [`InstanceState::database`].
    pub fn database_mut(&mut self, name: &str) -> Option<&mut Database> {
        self.databases
            .iter_mut()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }
}

/// Reads and writes `state.json` in the data directory.
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// The store for `data_dir` (created if missing).
    pub fn open(data_dir: &Path) -> Result<Self> {
        fs::create_dir_all(data_dir).map_err(|e| SimError::State {
            path: data_dir.to_path_buf(),
            message: format!("create data dir: {e}"),
        })?;
        Ok(StateStore {
            path: data_dir.join("state.json"),
        })
    }

    /// Loads the saved state, or a fresh one named `server_name` on first start. A given
    /// `server_name` overrides the saved one (the lab may rename an instance).
    pub fn load_or_init(&self, server_name: Option<&str>) -> Result<InstanceState> {
        let err = |message: String| SimError::State {
            path: self.path.clone(),
            message,
        };
        let mut state = match fs::read(&self.path) {
            Ok(bytes) => {
                let state: InstanceState =
                    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                if state.format != STATE_FORMAT {
                    return Err(err(format!("unsupported state format {}", state.format)));
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = InstanceState::fresh(server_name.unwrap_or("SQLSIM"));
                self.save(&s)?;
                s
            }
            Err(e) => return Err(err(e.to_string())),
        };
        if let Some(name) = server_name
            && name != state.server_name
        {
            state.server_name = name.to_string();
        }
        let mut state = state.with_services();
        // This process is the SQL Server service starting now.
        if let Some(engine) = state.services.first_mut() {
            engine.status_desc = "Running".into();
            engine.last_startup_time = Timestamp::now();
        }
        for db in &mut state.databases {
            if db.family_guid.is_empty() {
                db.family_guid = new_guid();
                db.database_guid = new_guid();
            }
        }
        self.save(&state)?;
        Ok(state)
    }

    /// Writes the state atomically.
    pub fn save(&self, state: &InstanceState) -> Result<()> {
        let err = |message: String| SimError::State {
            path: self.path.clone(),
            message,
        };
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| err(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f =
            fs::File::create(&tmp).map_err(|e| err(format!("create {}: {e}", tmp.display())))?;
        f.write_all(&bytes).map_err(|e| err(e.to_string()))?;
        f.sync_all().map_err(|e| err(e.to_string()))?;
        fs::rename(&tmp, &self.path).map_err(|e| err(format!("rename: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrips_and_keeps_saved_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut s = store.load_or_init(Some("A")).unwrap();
        s.databases
            .push(Database::new("mgc", 5, "d\\", "l\\", false));
        store.save(&s).unwrap();
        let again = store.load_or_init(None).unwrap();
        assert_eq!(again.databases, s.databases);
        assert_eq!(again.version_triplet(), (13, 0, 6300));
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("state.json"), b"{nope").unwrap();
        assert!(
            StateStore::open(dir.path())
                .unwrap()
                .load_or_init(None)
                .is_err()
        );
    }
}
