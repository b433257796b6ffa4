//! `sqlsim` as a process owned by a test or the lab: a fixed port (so a restart keeps it), a data
//! directory, output appended to `sqlsim.log` there, killed on drop; plus the statement log that
//! tests read to assert exactly what the agent sent, and TLS material for encrypted logins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::free_port;
use super::process::{Proc, bin};

/// The `sa` password lab instances use.
pub const SA_PASSWORD: &str = "Lab-Pa55word!";

/// sqlsim's flag for its lab-only short schedules (see `sqlsim` module doc).
pub const LAB_SHORT_SCHEDULES: &str = "--lab-short-schedules";

/// One running (or stopped) sqlsim instance.
pub struct SqlSim {
    /// Server name (@@SERVERNAME).
    pub name: String,
    /// TCP port.
    pub port: u16,
    /// Data directory (state, statement log, process log).
    pub data_dir: PathBuf,
    tls: Option<(PathBuf, PathBuf)>,
    extra: Vec<String>,
    proc: Option<Proc>,
}

/// One line of sqlsim's statement log.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LoggedStatement {
    /// When sqlsim received it (RFC 3339, UTC).
    #[serde(default)]
    pub time: String,
    /// Session id.
    pub spid: i64,
    /// Database in use.
    pub database: String,
    /// `batch`, `rpc`, `dynamic`, or `agent` for what SQL Server Agent's own job steps ran
    /// (log shipping's BACKUP LOG / RESTORE LOG on their schedules).
    #[serde(default)]
    pub kind: String,
    /// The statement text.
    pub text: String,
    /// Its `@Pn` parameters as text.
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
}

impl SqlSim {
    /// Prepares an instance (not started) in `data_dir`.
    pub fn new(name: &str, data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        Ok(SqlSim {
            name: name.to_string(),
            port: free_port()?,
            data_dir: data_dir.to_path_buf(),
            tls: None,
            extra: Vec::new(),
            proc: None,
        })
    }

    /// Serves TLS with this certificate and key (PEM).
    #[must_use]
    pub fn with_tls(mut self, cert: PathBuf, key: PathBuf) -> Self {
        self.tls = Some((cert, key));
        self
    }

    /// Starts with `--lab-short-schedules`, the lab-only deviation from SQL Server that lets
    /// job schedules run every second (SQL Server refuses under 10 s with Msg 14278). Only for
    /// instances that get the harness's own SSMS-style log shipping on 1-2 s schedules
    /// ([`super::ssms`]); what the product configures needs no such flag.
    #[must_use]
    pub fn with_lab_short_schedules(self) -> Self {
        self.with_args(&[LAB_SHORT_SCHEDULES])
    }

    /// Starts as SQL Server build `version` (`--product-version`, e.g. `15.0.2000.5`): its
    /// backups record that version, and a backup from a newer release does not restore on it
    /// (Msg 3169), as between real releases. Without it an instance is 13.0.6300.2.
    #[must_use]
    pub fn with_product_version(self, version: &str) -> Self {
        self.with_args(&["--product-version", version])
    }

    /// Starts with `@@SERVERNAME` answering `name` (`--stale-server-name HOST\INST`) while
    /// SERVERPROPERTY('ServerName') answers the real name: a host rebuilt or renamed without
    /// fixing `sys.servers`.
    #[must_use]
    pub fn with_stale_server_name(self, name: &str) -> Self {
        self.with_args(&["--stale-server-name", name])
    }

    /// Starts with the host's clock `minutes` ahead of UTC (`--utc-offset-minutes`, negative
    /// west of Greenwich): GETDATE(), HEADERONLY's dates and msdb's local columns show local time.
    #[must_use]
    pub fn with_utc_offset_minutes(self, minutes: i32) -> Self {
        let m = minutes.to_string();
        self.with_args(&["--utc-offset-minutes", &m])
    }

    /// Extra command-line flags (fault switches, path maps), applied at every start.
    #[must_use]
    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Starts the process and waits until it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let listen = format!("127.0.0.1:{}", self.port);
        let data = self.data_dir.display().to_string();
        let mut args = vec![
            "--listen",
            &listen,
            "--data-dir",
            &data,
            "--sa-password",
            SA_PASSWORD,
            "--server-name",
            &self.name,
        ];
        let tls: Option<(String, String)> = self
            .tls
            .as_ref()
            .map(|(c, k)| (c.display().to_string(), k.display().to_string()));
        if let Some((c, k)) = &tls {
            args.extend(["--tls-cert", c, "--tls-key", k]);
        }
        args.extend(self.extra.iter().map(String::as_str));
        let p = Proc::spawn(
            &format!("sqlsim {}", self.name),
            &bin("sqlsim")?,
            &args,
            &[],
            &self.data_dir.join("sqlsim.log"),
        )?;
        self.proc = Some(p);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(&listen).await.is_ok() {
                return Ok(());
            }
            let proc = self
                .proc
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("sqlsim process vanished"))?;
            if !proc.is_running() {
                anyhow::bail!(
                    "sqlsim {} exited during start; its log:\n{}",
                    self.name,
                    proc.log_tail(20)
                );
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "sqlsim {} did not listen on {listen} within 20 s; its log:\n{}",
                    self.name,
                    proc.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A tiberius client logged in as `login` (name, password) to `db`, without TLS.
    pub async fn client_as(
        &self,
        login: (&str, &str),
        db: &str,
    ) -> anyhow::Result<tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>> {
        use tokio_util::compat::TokioAsyncWriteCompatExt;
        let mut c = tiberius::Config::new();
        c.host("127.0.0.1");
        c.port(self.port);
        c.authentication(tiberius::AuthMethod::sql_server(login.0, login.1));
        c.encryption(tiberius::EncryptionLevel::NotSupported);
        c.database(db);
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        Ok(tiberius::Client::connect(c, tcp.compat_write()).await?)
    }

    /// Runs a batch as `login` in `db` and returns its first result set.
    pub async fn batch_as(
        &self,
        login: (&str, &str),
        db: &str,
        sql: &str,
    ) -> anyhow::Result<Vec<tiberius::Row>> {
        let mut client = self.client_as(login, db).await?;
        Ok(client.simple_query(sql).await?.into_first_result().await?)
    }

    /// The `[sql]` section of an agent that manages this instance (SQL login `sa`, no TLS: the
    /// lab's setting; production keeps encryption required).
    pub fn agent_section(&self, password_file: &Path) -> String {
        format!(
            "[sql]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"sa\"\npassword_file = \"{}\"\nencryption = \"not_supported\"\n",
            self.port,
            password_file.display()
        )
    }

    /// Kills the process (the state stays on disk).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// The instance's data directory (its databases and statement log).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Every statement received so far.
    pub fn statements(&self) -> Vec<LoggedStatement> {
        std::fs::read_to_string(self.data_dir.join("statements.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Writes a CA and a server certificate for 127.0.0.1/localhost into `dir`; returns
/// (ca.pem, server.pem, server.key).
pub fn tls_material(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sqlsim lab CA");
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?.pem();
    let paths = (
        dir.join("sql-ca.pem"),
        dir.join("sql-server.pem"),
        dir.join("sql-server.key"),
    );
    std::fs::write(&paths.0, ca_pem)?;
    std::fs::write(&paths.1, cert)?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}
