//! The `sql` backend: the agent's local SQL Server instance through tiberius. Every statement comes
//! from [`tsql`]; each operation opens its own connection (the instance is local, a login costs
//! milliseconds, and no state can leak between operations), and long operations disable
//! tiberius' command timeout so a quiet RESTORE is not cut off.
//!
//! Errors: SQL Server errors keep their number ([`Error::Sql`]); connection failures and the
//! classic transient numbers (1205 deadlock, 3101 exclusive access while sessions drain, 4060,
//! 40613) are retryable, and so is 3201 (cannot open backup device) when its operating system
//! error is a network one (53, 64, 67, 121, 1231: the share's server is briefly unreachable);
//! 3201 with a missing file or folder (2, 3) or access denied (5) is not: nothing changes it
//! without a person. Everything else is not retryable. This is the one place that decides
//! ([`retryable`]); the module docs of `backup` and `restore` refer to it. A change whose goal already holds is not an error: it
//! reports `changed = false`.
//!
//! Modules: `backup` / `restore` (BACKUP, RESTORE and their inspection), `engine_access` (the
//! engine account's write probe), `logship` (log shipping
//! status, setup and removal), `jobs` (SQL Server Agent jobs and the access check), [`tsql`]
//! (every statement; stored procedures are `tsql::logship::ProcCall`s sent by `SqlBackend::call`
//! as RPC requests by name, never as text batches).

mod backup;
pub use backup::PercentSink;
pub mod config;
mod engine_access;
mod jobs;
mod logship;
mod restore;
mod times;
pub use restore::RestoreRequest;
mod tls;
pub mod tsql;

use failback_proto::model::DatabaseName;
use failback_proto::pb;
use tiberius::{AuthMethod, Client, EncryptionLevel, Row};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use self::config::{Secret, SqlAuth, SqlConfig, SqlEncryption};
use self::tsql::logship::{OutKind, ProcCall, ProcValue};
use self::tsql::{Param, Statement};
use crate::error::Error;

pub(crate) type Conn = Client<Compat<TcpStream>>;

/// SQL Server errors after which trying again can succeed without a change by a person.
const TRANSIENT: [u32; 4] = [1205, 3101, 40613, 4060];

/// Windows network errors a 3201 can carry ("Operating system error 53(The network path was not
/// found.)"): the share's server or the path to it is down for now.
const NETWORK_OS_ERRORS: [u32; 5] = [53, 64, 67, 121, 1231];

/// Whether SQL Server error `number` with text `message` may succeed when tried again unchanged.
pub(crate) fn retryable(number: u32, message: &str) -> bool {
    if TRANSIENT.contains(&number) {
        return true;
    }
    if number == 3201 {
        return os_error(message).is_some_and(|e| NETWORK_OS_ERRORS.contains(&e));
    }
    false
}

/// The number in "Operating system error N(…)" of a message, if any.
fn os_error(message: &str) -> Option<u32> {
    let rest =
        &message[message.find("Operating system error ")? + "Operating system error ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub(crate) fn sql_error(context: &str, e: tiberius::error::Error) -> Error {
    match e {
        tiberius::error::Error::Server(t) => Error::Sql {
            number: Some(t.code()),
            message: format!("{context}: SQL Server error {}: {}", t.code(), t.message()),
            retryable: retryable(t.code(), t.message()),
        },
        tiberius::error::Error::Io { kind, message } => Error::Sql {
            number: None,
            message: format!("{context}: connection failed ({kind:?}): {message}"),
            retryable: true,
        },
        other => Error::Sql {
            number: None,
            message: format!("{context}: {other}"),
            retryable: matches!(
                other,
                tiberius::error::Error::Tls(_) | tiberius::error::Error::Routing { .. }
            ),
        },
    }
}

/// `e` from a statement that changes data (`what`), once it was sent: a lost connection
/// (`Sql` without a number, retryable: the I/O class of [`sql_error`]) means the statement may
/// have run, so it becomes [`Error::OutcomeUnknown`]; SQL Server's own refusals stay as they are.
pub(crate) fn outcome_unknown(what: &str, e: Error) -> Error {
    match e {
        Error::Sql {
            number: None,
            retryable: true,
            message,
        } => Error::OutcomeUnknown(format!(
            "the connection to SQL Server ended while {what} ran; its outcome is unknown (probe the database before acting again): {message}"
        )),
        other => other,
    }
}

pub(crate) fn text(row: &Row, col: &str) -> String {
    row.try_get::<&str, _>(col)
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn flag(row: &Row, col: &str) -> bool {
    row.try_get::<bool, _>(col)
        .ok()
        .flatten()
        .or_else(|| int(row, col).map(|v| v != 0))
        .unwrap_or(false)
}

pub(crate) fn int(row: &Row, col: &str) -> Option<i64> {
    if let Ok(Some(v)) = row.try_get::<i32, _>(col) {
        return Some(i64::from(v));
    }
    if let Ok(Some(v)) = row.try_get::<i16, _>(col) {
        return Some(i64::from(v));
    }
    if let Ok(Some(v)) = row.try_get::<i64, _>(col) {
        return Some(v);
    }
    if let Ok(Some(v)) = row.try_get::<u8, _>(col) {
        return Some(i64::from(v));
    }
    None
}

/// The first words of a statement, to say which one failed (`BACKUP DATABASE`, not the
/// `@P1` placeholder that follows: an operator cannot read a parameter name).
fn context_of(stmt: &Statement) -> String {
    stmt.text
        .split_whitespace()
        .take(3)
        .take_while(|w| !w.starts_with('@'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a procedure call returned.
#[derive(Debug, Default)]
pub(crate) struct ProcResult {
    /// OUTPUT uniqueidentifiers that were not NULL.
    pub guids: Vec<(&'static str, tiberius::Uuid)>,
    /// OUTPUT ints that were not NULL.
    pub ints: Vec<(&'static str, i32)>,
    /// Result sets.
    pub rows: Vec<Vec<Row>>,
}

impl ProcResult {
    /// An OUTPUT uniqueidentifier, or an error naming the procedure.
    pub fn guid(&self, call: &ProcCall, name: &str) -> Result<tiberius::Uuid, Error> {
        self.guids
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, g)| *g)
            .ok_or_else(|| Error::Sql {
                number: None,
                message: format!("{} returned no {name}", call.name),
                retryable: false,
            })
    }

    /// An OUTPUT int, or an error naming the procedure.
    pub fn int(&self, call: &ProcCall, name: &str) -> Result<i32, Error> {
        self.ints
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, n)| *n)
            .ok_or_else(|| Error::Sql {
                number: None,
                message: format!("{} returned no {name}", call.name),
                retryable: false,
            })
    }
}

/// A uniqueidentifier as SQL Server prints it (upper case).
pub(crate) fn guid_text(g: &tiberius::Uuid) -> String {
    g.to_string().to_uppercase()
}

/// A uniqueidentifier column as text (empty when NULL).
pub(crate) fn guid_col(row: &Row, col: &str) -> String {
    match row.try_get::<tiberius::Uuid, _>(col) {
        Ok(Some(g)) => guid_text(&g),
        _ => text(row, col).to_uppercase(),
    }
}

/// The backend.
pub struct SqlBackend {
    config: SqlConfig,
    password: Option<Secret>,
}

impl std::fmt::Debug for SqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBackend")
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .finish_non_exhaustive()
    }
}

impl SqlBackend {
    /// Validates the settings and reads the password once.
    pub fn new(config: SqlConfig) -> Result<Self, String> {
        config.validate()?;
        let password = match config.auth {
            SqlAuth::Sql => Some(config.password()?),
            SqlAuth::Integrated => None,
        };
        Ok(SqlBackend { config, password })
    }

    /// Opens a connection to `master`. `long` disables the command timeout (BACKUP/RESTORE).
    ///
    /// TLS runs on SChannel in the Windows build and on rustls elsewhere (chosen in
    /// `agent/Cargo.toml`; why, and what each does with SQL Server 2012/2014 before their TLS 1.2
    /// update, in [`tls`]). A failed handshake becomes an error naming the cause and the fix
    /// ([`tls::tls_error`]), not retryable when only a person can fix it.
    pub(crate) async fn connect(&self, long: bool) -> Result<Conn, Error> {
        let c = &self.config;
        let mut cfg = tiberius::Config::new();
        cfg.host(&c.host);
        cfg.port(c.port);
        cfg.database("master");
        cfg.application_name("failback-agent");
        match (c.auth, &self.password) {
            (SqlAuth::Sql, Some(pw)) => cfg.authentication(AuthMethod::sql_server(
                c.user.clone().unwrap_or_default(),
                pw.expose(),
            )),
            #[cfg(windows)]
            (SqlAuth::Integrated, _) => cfg.authentication(AuthMethod::Integrated),
            _ => {
                return Err(Error::Sql {
                    number: None,
                    message: "no usable authentication configured".into(),
                    retryable: false,
                });
            }
        }
        cfg.encryption(match c.encryption {
            SqlEncryption::Required => EncryptionLevel::Required,
            SqlEncryption::Off => EncryptionLevel::Off,
            SqlEncryption::NotSupported => EncryptionLevel::NotSupported,
        });
        if c.trust_server_certificate {
            cfg.trust_cert();
        } else if let Some(ca) = &c.ca_file {
            cfg.trust_cert_ca(ca.display());
        }
        cfg.command_timeout(if long {
            None
        } else {
            Some(std::time::Duration::from_secs(60))
        });
        let target = format!("{}:{}", c.host, c.port);
        let tcp = tokio::time::timeout(c.connect_timeout, TcpStream::connect(&target))
            .await
            .map_err(|_| Error::Sql {
                number: None,
                message: format!(
                    "connect to SQL Server at {target} timed out after {:?}",
                    c.connect_timeout
                ),
                retryable: true,
            })?
            .map_err(|e| Error::Sql {
                number: None,
                message: format!("cannot connect to SQL Server at {target}: {e}"),
                retryable: true,
            })?;
        let _ = tcp.set_nodelay(true);
        tokio::time::timeout(c.connect_timeout, Client::connect(cfg, tcp.compat_write()))
            .await
            .map_err(|_| Error::Sql {
                number: None,
                message: format!(
                    "login to SQL Server at {target} timed out after {:?}",
                    c.connect_timeout
                ),
                retryable: true,
            })?
            .map_err(|e| {
                let at = tls::Target {
                    instance: &target,
                    host: &c.host,
                    ca_file: c.ca_file.as_deref().filter(|_| !c.trust_server_certificate),
                };
                let tls_on = c.encryption != SqlEncryption::NotSupported;
                tls::tls_error(&at, &e, tls_on)
                    .unwrap_or_else(|| sql_error(&format!("login to SQL Server at {target}"), e))
            })
    }

    /// Sends a statement: a plain batch without parameters (as SSMS would), `sp_executesql`
    /// with them. Returns the stream and a short context for error messages.
    async fn send<'c>(
        conn: &'c mut Conn,
        stmt: &Statement,
    ) -> Result<tiberius::QueryStream<'c>, Error> {
        let result = if stmt.params.is_empty() {
            conn.simple_query(stmt.text.as_str()).await
        } else {
            let params: Vec<&dyn tiberius::ToSql> = stmt
                .params
                .iter()
                .map(|p| match p {
                    Param::Text(s) => s as &dyn tiberius::ToSql,
                    Param::Int(n) => n as &dyn tiberius::ToSql,
                })
                .collect();
            conn.query(stmt.text.as_str(), &params).await
        };
        result.map_err(|e| sql_error(&context_of(stmt), e))
    }

    /// Runs a statement and returns its first result set.
    pub(crate) async fn rows(conn: &mut Conn, stmt: &Statement) -> Result<Vec<Row>, Error> {
        Self::send(conn, stmt)
            .await?
            .into_first_result()
            .await
            .map_err(|e| sql_error(&context_of(stmt), e))
    }

    /// Runs a statement that returns no rows (all its result sets drained).
    pub(crate) async fn exec(conn: &mut Conn, stmt: &Statement) -> Result<(), Error> {
        Self::send(conn, stmt)
            .await?
            .into_results()
            .await
            .map_err(|e| sql_error(&context_of(stmt), e))?;
        Ok(())
    }

    /// Calls a stored procedure by name (an RPC request with typed and OUTPUT parameters). A
    /// non-zero return code without a SQL Server error is a failure too. Returns the OUTPUT
    /// values and the procedure's result sets.
    pub(crate) async fn call(conn: &mut Conn, call: &ProcCall) -> Result<ProcResult, Error> {
        let mut cmd = tiberius::Command::new(call.name);
        for (k, v) in &call.params {
            match v {
                ProcValue::Text(s) => cmd.bind_param(*k, s.clone()),
                ProcValue::Int(n) => cmd.bind_param(*k, *n),
                ProcValue::Guid(g) => cmd.bind_param(*k, *g),
            }
        }
        for (k, kind) in &call.outputs {
            match kind {
                OutKind::Guid => cmd.bind_out_param(*k, Option::<tiberius::Uuid>::None),
                OutKind::Int => cmd.bind_out_param(*k, Option::<i32>::None),
            }
        }
        let res = cmd
            .exec(conn)
            .await
            .map_err(|e| sql_error(call.name, e))?
            .into_command_result()
            .await
            .map_err(|e| sql_error(call.name, e))?;
        if res.return_code() != 0 {
            return Err(Error::Sql {
                number: None,
                message: format!("{} returned {}", call.name, res.return_code()),
                retryable: false,
            });
        }
        let mut out = ProcResult::default();
        for (k, kind) in &call.outputs {
            match kind {
                OutKind::Guid => {
                    if let Ok(Some(g)) = res.try_return_value::<tiberius::Uuid>(k) {
                        out.guids.push((k, g));
                    }
                }
                OutKind::Int => {
                    if let Ok(Some(n)) = res.try_return_value::<i32>(k) {
                        out.ints.push((k, n));
                    }
                }
            }
        }
        out.rows = res.into_iter().collect();
        Ok(out)
    }

    /// Version, edition, default paths (with the 2008 R2 fallback) and services.
    pub async fn describe_instance(&self) -> Result<pb::InstanceInfo, Error> {
        let mut conn = self.connect(false).await?;
        let rows = Self::rows(&mut conn, &tsql::instance_properties()).await?;
        let row = rows.first().ok_or_else(|| Error::Sql {
            number: None,
            message: "SERVERPROPERTY returned no row".into(),
            retryable: false,
        })?;
        let mut info = pb::InstanceInfo {
            server_name: text(row, "server_name"),
            product_version: text(row, "product_version"),
            edition: text(row, "edition"),
            version_text: text(row, "version_text"),
            default_data_path: text(row, "data_path"),
            default_log_path: text(row, "log_path"),
            paths_source: "serverproperty".into(),
            services: Vec::new(),
            at_servername: text(row, "at_servername"),
        };
        if info.default_data_path.is_empty() || info.default_log_path.is_empty() {
            let files = Self::rows(&mut conn, &tsql::master_files()).await?;
            for f in &files {
                let path = text(f, "physical_name");
                let dir = path
                    .rsplit_once(['\\', '/'])
                    .map(|(d, _)| d.to_string())
                    .unwrap_or_default();
                match int(f, "type") {
                    Some(0) if info.default_data_path.is_empty() => info.default_data_path = dir,
                    Some(1) if info.default_log_path.is_empty() => info.default_log_path = dir,
                    _ => {}
                }
            }
            info.paths_source = "master files".into();
        }
        // sys.dm_server_services exists from SQL Server 2008 R2 SP1; without it (error 208) the
        // services are reported as unknown rather than failing the whole description.
        match Self::rows(&mut conn, &tsql::services()).await {
            Ok(rows) => {
                info.services = rows
                    .iter()
                    .map(|r| pb::ServiceInfo {
                        name: text(r, "servicename"),
                        status: text(r, "status_desc"),
                        startup_type: text(r, "startup_type_desc"),
                        account: text(r, "service_account"),
                    })
                    .collect();
            }
            Err(Error::Sql {
                number: Some(208), ..
            }) => {}
            Err(e) => return Err(e),
        }
        Ok(info)
    }

    /// One entry per requested name, `exists = false` for a missing database.
    pub async fn database_state(&self, dbs: &[DatabaseName]) -> Result<pb::DatabaseStates, Error> {
        let mut conn = self.connect(false).await?;
        let rows = Self::rows(&mut conn, &tsql::database_state(dbs)).await?;
        let mut out = Vec::with_capacity(dbs.len());
        for d in dbs {
            let info = match rows
                .iter()
                .find(|r| text(r, "name").eq_ignore_ascii_case(d.as_str()))
            {
                Some(r) => {
                    let (last_full_backup_bytes, last_full_backup_age_hours) =
                        Self::last_full_backup(&mut conn, d).await;
                    pb::DatabaseInfo {
                        name: d.to_string(),
                        exists: true,
                        state: text(r, "state_desc"),
                        recovery_model: text(r, "recovery_model_desc"),
                        user_access: text(r, "user_access_desc"),
                        is_in_standby: flag(r, "is_in_standby"),
                        is_read_only: flag(r, "is_read_only"),
                        data_size_bytes: Self::data_size(&mut conn, d).await,
                        last_full_backup_bytes,
                        last_full_backup_age_hours,
                    }
                }
                None => pb::DatabaseInfo {
                    name: d.to_string(),
                    exists: false,
                    ..Default::default()
                },
            };
            out.push(info);
        }
        Ok(pb::DatabaseStates { databases: out })
    }

    /// Data files' allocated size in bytes; 0 when it cannot be read (a size is a planning aid
    /// for preflight's free-space check, never a reason to fail the state read).
    async fn data_size(conn: &mut Conn, db: &DatabaseName) -> u64 {
        match Self::rows(conn, &tsql::data_pages(db)).await {
            Ok(rows) => rows
                .first()
                .and_then(|r| int(r, "pages"))
                .and_then(|p| u64::try_from(p).ok())
                .map_or(0, |p| p.saturating_mul(8192)),
            Err(e) => {
                tracing::debug!(database = %db, "data file size unknown: {e}");
                0
            }
        }
    }

    /// Size (bytes) and age (hours) of the newest full backup msdb records; (0, 0) when there is
    /// none or msdb cannot be read (a planning aid, like [`Self::data_size`]).
    async fn last_full_backup(conn: &mut Conn, db: &DatabaseName) -> (u64, u32) {
        match Self::rows(conn, &tsql::last_full_backup(db)).await {
            Ok(rows) => rows.first().map_or((0, 0), |r| {
                let size = r
                    .try_get::<tiberius::numeric::Numeric, _>("backup_size")
                    .ok()
                    .flatten()
                    .and_then(|n| u64::try_from(n.value()).ok())
                    .unwrap_or(0);
                let age = int(r, "age_hours")
                    .and_then(|h| u32::try_from(h).ok())
                    .unwrap_or(0);
                (size, age)
            }),
            Err(e) => {
                tracing::debug!(database = %db, "last full backup unknown: {e}");
                (0, 0)
            }
        }
    }

    /// Mirroring per requested name; a database absent from the instance is reported unmirrored.
    pub async fn mirroring_state(
        &self,
        dbs: &[DatabaseName],
    ) -> Result<pb::MirroringStates, Error> {
        let mut conn = self.connect(false).await?;
        let rows = Self::rows(&mut conn, &tsql::mirroring_state(dbs)).await?;
        Ok(pb::MirroringStates {
            databases: dbs
                .iter()
                .map(|d| {
                    let row = rows
                        .iter()
                        .find(|r| text(r, "name").eq_ignore_ascii_case(d.as_str()));
                    let mirrored = row.is_some_and(|r| {
                        matches!(
                            r.try_get::<tiberius::Uuid, _>("mirroring_guid"),
                            Ok(Some(_))
                        )
                    });
                    match (row, mirrored) {
                        (Some(r), true) => pb::MirroringInfo {
                            database: d.to_string(),
                            mirrored: true,
                            role: text(r, "mirroring_role_desc"),
                            state: text(r, "mirroring_state_desc"),
                            partner_name: text(r, "mirroring_partner_name"),
                            partner_instance: text(r, "mirroring_partner_instance"),
                            witness_name: text(r, "mirroring_witness_name"),
                            safety_level: text(r, "mirroring_safety_level_desc"),
                        },
                        _ => pb::MirroringInfo {
                            database: d.to_string(),
                            mirrored: false,
                            ..Default::default()
                        },
                    }
                })
                .collect(),
        })
    }

    async fn sessions_in(
        conn: &mut Conn,
        db: &DatabaseName,
    ) -> Result<Vec<pb::SessionInfo>, Error> {
        let version = Self::rows(conn, &tsql::product_version()).await?;
        let version = version
            .first()
            .map(|r| text(r, "product_version"))
            .unwrap_or_default();
        let major = failback_proto::model::sql_major_version(&version).ok_or_else(|| Error::Sql {
            number: None,
            message: format!(
                "SERVERPROPERTY('ProductVersion') returned {version:?}, not a version: cannot tell which session catalog to read"
            ),
            retryable: false,
        })?;
        let rows = Self::rows(conn, &tsql::sessions(db, major)).await?;
        Ok(rows
            .iter()
            .map(|r| pb::SessionInfo {
                spid: int(r, "spid")
                    .and_then(|v| i32::try_from(v).ok())
                    .unwrap_or(0),
                login: text(r, "loginame").trim().to_string(),
                host_name: text(r, "hostname").trim().to_string(),
                program_name: text(r, "program_name").trim().to_string(),
            })
            .collect())
    }

    /// Sessions using `db` (not counting ours).
    pub async fn list_sessions(&self, db: &DatabaseName) -> Result<pb::Sessions, Error> {
        let mut conn = self.connect(false).await?;
        Ok(pb::Sessions {
            sessions: Self::sessions_in(&mut conn, db).await?,
        })
    }

    /// Ends the sessions in `db` (only those of `programs` when given). A session that ended by
    /// itself in between (error 6106, "process ID is not an active process ID") counts as ended;
    /// one that turned out to be a background task (6107, "Only user processes can be killed",
    /// possible only if the id was reused between listing and KILL) is left alone and not
    /// reported as killed: nothing of ours can end it, and FB-1's verify lists user sessions
    /// only.
    pub async fn kill_sessions(
        &self,
        db: &DatabaseName,
        programs: &[String],
    ) -> Result<pb::Killed, Error> {
        let mut conn = self.connect(false).await?;
        let victims: Vec<pb::SessionInfo> = Self::sessions_in(&mut conn, db)
            .await?
            .into_iter()
            .filter(|s| {
                programs.is_empty()
                    || programs
                        .iter()
                        .any(|p| p.eq_ignore_ascii_case(&s.program_name))
            })
            .collect();
        let mut killed = Vec::new();
        for v in victims {
            let Some(stmt) = tsql::kill(v.spid) else {
                continue;
            };
            match conn.simple_query(stmt.text.as_str()).await {
                Ok(s) => {
                    s.into_results().await.map_err(|e| sql_error("KILL", e))?;
                }
                Err(tiberius::error::Error::Server(t)) if t.code() == 6106 => {}
                Err(tiberius::error::Error::Server(t)) if t.code() == 6107 => {
                    tracing::warn!(spid = v.spid, "KILL refused: a background task (6107)");
                    continue;
                }
                Err(e) => return Err(sql_error("KILL", e)),
            }
            killed.push(v);
        }
        Ok(pb::Killed { sessions: killed })
    }

    /// `SET PARTNER OFF` when `db` is mirrored; `changed = false` when it already is not.
    pub async fn remove_mirroring(&self, db: &DatabaseName) -> Result<pb::Done, Error> {
        let before = self.mirroring_state(std::slice::from_ref(db)).await?;
        if !before.databases.first().is_some_and(|m| m.mirrored) {
            return Ok(pb::Done {
                changed: false,
                detail: format!("{db} is not mirrored"),
            });
        }
        let mut conn = self.connect(false).await?;
        Self::exec(&mut conn, &tsql::set_partner_off(db)).await?;
        let after = self.mirroring_state(std::slice::from_ref(db)).await?;
        if after.databases.first().is_some_and(|m| m.mirrored) {
            return Err(Error::Sql {
                number: None,
                message: format!("{db} is still mirrored after SET PARTNER OFF"),
                retryable: true,
            });
        }
        Ok(pb::Done {
            changed: true,
            detail: format!("mirroring removed from {db}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::retryable;

    #[test]
    fn error_classes() {
        assert!(retryable(1205, "deadlock"));
        assert!(retryable(3101, "Exclusive access could not be obtained"));
        assert!(retryable(
            3201,
            r"Cannot open backup device '\\fs\ls\mgc.bak'. Operating system error 53(The network path was not found.)."
        ));
        assert!(!retryable(
            3201,
            r"Cannot open backup device '\\fs\ls\mgc.bak'. Operating system error 5(Access is denied.)."
        ));
        assert!(!retryable(
            3201,
            "Cannot open backup device '/c/mgc.trn'. Operating system error 2(The system cannot find the file specified.)."
        ));
        assert!(!retryable(3201, "Cannot open backup device 'x'."));
        assert!(!retryable(
            3187,
            "RESTORE WITH CHECKSUM cannot be specified"
        ));
        assert!(!retryable(4305, "too recent to apply"));
    }
}
