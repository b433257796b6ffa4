//! Test harness: starts the real `sqlsim` binary on a free loopback port (it binds port 0 and
//! announces the address on stdout), kills it on drop, and connects tiberius to it. The child's
//! stderr is appended to `sim.log` in its data directory for post-mortems.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

/// The sa password every test instance uses.
pub const PW: &str = "Sim-Pa55!";

/// The sim administrator login (`--admin-login`), allowed to run `sqlsim.*` procedures.
pub const ADMIN: &str = "simadmin";
/// Its password.
pub const ADMIN_PW: &str = "Adm1n-Pa55!";

/// Flags that configure the sim administrator login.
pub const ADMIN_FLAGS: [&str; 4] = ["--admin-login", ADMIN, "--admin-password", ADMIN_PW];

/// How long a sim may take to announce its address.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running sqlsim process.
pub struct Sim {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl Sim {
    /// Starts sqlsim on `data_dir` with extra flags; waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Sim {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("sim.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sqlsim"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(["--sa-password", PW])
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(READY_DEADLINE) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(data_dir.join("sim.log")).unwrap_or_default();
                panic!("sqlsim did not announce its address ({e}); log:\n{log}");
            }
        };
        let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
        Sim {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// tiberius config for this sim with the given encryption.
    pub fn config(&self, enc: EncryptionLevel, password: &str) -> Config {
        let mut c = Config::new();
        c.host("127.0.0.1");
        c.port(self.port());
        c.authentication(AuthMethod::sql_server("sa", password));
        c.encryption(enc);
        c
    }

    /// Connects tiberius without TLS.
    pub async fn connect(&self) -> Client<Compat<TcpStream>> {
        connect_with(self.config(EncryptionLevel::NotSupported, PW))
            .await
            .unwrap()
    }

    /// Connects as the sim administrator (the sim must run with [`ADMIN_FLAGS`]).
    pub async fn connect_admin(&self) -> Client<Compat<TcpStream>> {
        let mut c = self.config(EncryptionLevel::NotSupported, PW);
        c.authentication(AuthMethod::sql_server(ADMIN, ADMIN_PW));
        connect_with(c).await.unwrap()
    }

    /// Waits up to `deadline` for the process to exit on its own; its exit code.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        None
    }

    /// Stops the process.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects with a prepared config.
pub async fn connect_with(config: Config) -> tiberius::Result<Client<Compat<TcpStream>>> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

/// The SQL error number inside a tiberius error, if it is one.
pub fn sql_error_code(e: &tiberius::error::Error) -> Option<u32> {
    match e {
        tiberius::error::Error::Server(t) => Some(t.code()),
        _ => None,
    }
}

/// Runs a batch and returns all rows of its first result set.
pub async fn rows(client: &mut Client<Compat<TcpStream>>, sql: &str) -> Vec<tiberius::Row> {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap()
}

/// Runs a batch that must fail and returns the error number.
pub async fn error_code(client: &mut Client<Compat<TcpStream>>, sql: &str) -> u32 {
    let result = match client.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = result.expect_err(sql);
    sql_error_code(&err).unwrap_or_else(|| panic!("not a server error: {err:?}"))
}

/// Runs a batch to completion (all result sets drained).
pub async fn exec(client: &mut Client<Compat<TcpStream>>, sql: &str) -> tiberius::Result<()> {
    client.simple_query(sql).await?.into_results().await?;
    Ok(())
}

/// Runs a batch that must succeed.
pub async fn ok(client: &mut Client<Compat<TcpStream>>, sql: &str) {
    if let Err(e) = exec(client, sql).await {
        panic!("{sql}: {e:?}");
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first column of the first row as an i64 (int or bigint), or None when NULL / no row.
pub async fn scalar_i64(client: &mut Client<Compat<TcpStream>>, sql: &str) -> Option<i64> {
    let r = rows(client, sql).await;
    let row = r.first()?;
    row.try_get::<i32, _>(0)
        .ok()
        .flatten()
        .map(i64::from)
        .or_else(|| row.try_get::<i64, _>(0).ok().flatten())
}
