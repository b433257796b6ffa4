//! Chat traffic that behaves like the pools' Persistent Chat servers.
//!
//! One writer task per chat server. Like the real service it follows the Central Management
//! Store (lyncsim's store file, read every 100 ms by one watcher task): a server writes only
//! while it is on its pool's active list, to the primary `mgc` when the pool is `Normal` and to
//! the backup `mgc` when it is `FailedOver`. It logs in with its own FQDN as the LOGIN7 host
//! name (tiberius' `client_name`) and `ChatServer.exe` as the program name, so
//! `sys.sysprocesses` — what FB-1's session check reads — shows it as the chat server it stands
//! for. A server taken off the active list stops writing but keeps its open connection, as
//! the reference says servers not on the list do (pchat-dr.md §5.2), so FB-1's drain-and-kill
//! is exercised. A server in a data center the drill has "lost" holds nothing.
//!
//! A *stubborn* server (the scenario of a chat server that will not disconnect, issue #12)
//! stands for one whose copy of the CMS stopped replicating: it keeps writing where it wrote
//! first, whatever the store says later, and reconnects at once when its session is killed.
//!
//! Each insert is a numbered message (`<pool>#<seq> <server>`); the [`Ledger`] keeps every one
//! SQL Server acknowledged, with the time, so the drill can count written / found / lost per
//! phase. A write whose acknowledgement never arrived is not in the ledger (it may or may not
//! have committed, as for a real client) and is counted as a failed attempt.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tokio_util::sync::CancellationToken;

use super::topology::PoolLayout;
use crate::harness::sqlsim::SA_PASSWORD;
use crate::lyncsim::store::{Cms, Store};

/// Pause between two messages of one chat server.
const WRITE_EVERY: Duration = Duration::from_millis(100);
/// Longest a connect or insert may take before the writer gives up on that connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Which `mgc` a message went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The primary instance's (DC1).
    Primary,
    /// The backup instance's (DC2).
    Backup,
}

/// One acknowledged message.
#[derive(Debug, Clone)]
pub struct Ack {
    /// Pool FQDN.
    pub pool: String,
    /// The chat server that wrote it.
    pub server: String,
    /// The message body (unique in the lab).
    pub body: String,
    /// Where it was written.
    pub target: Target,
    /// When the acknowledgement arrived (lab clock).
    pub at: Instant,
    /// The same moment in UTC, to compare with msdb's backup dates.
    pub utc: chrono::NaiveDateTime,
}

/// Every acknowledged message, in order.
#[derive(Debug, Default)]
pub struct Ledger {
    acks: Mutex<Vec<Ack>>,
    failed: AtomicU64,
}

impl Ledger {
    /// A copy of the acknowledged messages.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Writes that failed or were never acknowledged.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn push(&self, ack: Ack) {
        self.acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ack);
    }
}

/// The SQL ports a pool's chat servers write to.
#[derive(Debug, Clone)]
pub struct PoolTarget {
    /// The pool.
    pub layout: PoolLayout,
    /// Port of the primary instance.
    pub primary_port: u16,
    /// Port of the backup instance.
    pub backup_port: u16,
}

/// The running traffic.
pub struct Traffic {
    /// What was acknowledged.
    pub ledger: Arc<Ledger>,
    dc_down: Arc<Mutex<BTreeMap<String, bool>>>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Starts one writer per chat server of every pool, following the store at `cms`.
    pub fn start(cms: PathBuf, pools: &[PoolTarget]) -> Self {
        Self::start_with(cms, pools, &[], Duration::ZERO)
    }

    /// [`Traffic::start`] with the servers named in `stubborn` ignoring every change of the
    /// store after the first in which they write (a stale CMS replica), reconnecting
    /// `reconnect_after` after a failed write.
    pub fn start_with(
        cms: PathBuf,
        pools: &[PoolTarget],
        stubborn: &[&str],
        reconnect_after: Duration,
    ) -> Self {
        let ledger = Arc::new(Ledger::default());
        let stop = CancellationToken::new();
        let dc_down = Arc::new(Mutex::new(BTreeMap::new()));
        let (tx, rx) = watch::channel::<Option<Cms>>(None);
        let mut tasks = Vec::new();
        let watch_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let store = Store::new(&cms);
            while !watch_stop.is_cancelled() {
                let s = store.clone();
                if let Ok(Ok(c)) = tokio::task::spawn_blocking(move || s.load()).await {
                    tx.send_replace(Some(c));
                }
                tokio::select! {
                    () = watch_stop.cancelled() => break,
                    () = tokio::time::sleep(WRITE_EVERY) => {}
                }
            }
        }));
        for p in pools {
            let seq = Arc::new(AtomicU64::new(1));
            for (server, dc) in [
                (p.layout.chat_dc1.clone(), "dc1"),
                (p.layout.chat_dc2.clone(), "dc2"),
            ] {
                let w = Writer {
                    pool: p.clone(),
                    stubborn: stubborn.iter().any(|s| s.eq_ignore_ascii_case(&server)),
                    reconnect_after,
                    server,
                    dc,
                    seq: seq.clone(),
                    ledger: ledger.clone(),
                    dc_down: dc_down.clone(),
                    cms: rx.clone(),
                };
                tasks.push(tokio::spawn(w.run(stop.clone())));
            }
        }
        Traffic {
            ledger,
            dc_down,
            stop,
            tasks,
        }
    }

    /// Marks a data center lost (its chat servers stop at once) or back.
    pub fn set_dc_down(&self, dc: &str, down: bool) {
        self.dc_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dc.to_string(), down);
    }

    /// Stops every writer and waits for them.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What a chat server does at one tick.
enum Duty {
    /// Its data center is lost: nothing, no connection.
    Gone,
    /// Not on the active list: no writes, no new connection, the old one kept.
    Idle,
    /// Write to this `mgc`.
    Write(Target),
}

type Conn = tiberius::Client<Compat<tokio::net::TcpStream>>;

struct Writer {
    pool: PoolTarget,
    server: String,
    stubborn: bool,
    reconnect_after: Duration,
    dc: &'static str,
    seq: Arc<AtomicU64>,
    ledger: Arc<Ledger>,
    dc_down: Arc<Mutex<BTreeMap<String, bool>>>,
    cms: watch::Receiver<Option<Cms>>,
}

impl Writer {
    /// What this server does now.
    fn duty(&self) -> Duty {
        let down = self
            .dc_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(self.dc)
            .copied()
            .unwrap_or(false);
        if down {
            return Duty::Gone;
        }
        let cms = self.cms.borrow();
        let Some(pool) = cms.as_ref().and_then(|c| {
            c.pools
                .iter()
                .find(|p| p.fqdn.eq_ignore_ascii_case(&self.pool.layout.fqdn))
        }) else {
            return Duty::Idle;
        };
        if !pool
            .active_servers
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&self.server))
        {
            return Duty::Idle;
        }
        Duty::Write(if pool.pool_state.eq_ignore_ascii_case("FailedOver") {
            Target::Backup
        } else {
            Target::Primary
        })
    }

    async fn connect(&self, target: Target) -> anyhow::Result<Conn> {
        let port = match target {
            Target::Primary => self.pool.primary_port,
            Target::Backup => self.pool.backup_port,
        };
        let mut c = tiberius::Config::new();
        c.host("127.0.0.1");
        c.port(port);
        c.authentication(tiberius::AuthMethod::sql_server("sa", SA_PASSWORD));
        c.encryption(tiberius::EncryptionLevel::NotSupported);
        c.database("mgc");
        c.client_name(&self.server);
        c.application_name("ChatServer.exe");
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(tiberius::Client::connect(c, tcp.compat_write()).await?)
    }

    async fn run(self, stop: CancellationToken) {
        let mut conn: Option<(Target, Conn)> = None;
        // A stubborn server's frozen view: the first target it wrote to.
        let mut frozen: Option<Target> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(WRITE_EVERY) => {}
            }
            let duty = match (self.duty(), frozen) {
                (Duty::Gone, _) => Duty::Gone,
                (_, Some(t)) => Duty::Write(t),
                (d, None) => d,
            };
            if self.stubborn
                && let Duty::Write(t) = duty
            {
                frozen = Some(t);
            }
            let target = match duty {
                Duty::Write(t) => t,
                // A server taken off the active list stops writing but keeps the connection it
                // has (pchat-dr.md §5.2): FB-1 must drain or kill it.
                Duty::Idle => continue,
                Duty::Gone => {
                    conn = None;
                    continue;
                }
            };
            if conn.as_ref().is_some_and(|(t, _)| *t != target) {
                conn = None;
            }
            if conn.is_none() {
                match tokio::time::timeout(IO_TIMEOUT, self.connect(target)).await {
                    Ok(Ok(c)) => conn = Some((target, c)),
                    _ => continue,
                }
            }
            let Some((_, client)) = conn.as_mut() else {
                continue;
            };
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let body = format!("{}#{n:06} {}", self.pool.layout.fqdn, self.server);
            let sql = format!(
                "INSERT INTO dbo.Messages (room, author, body) VALUES (N'lab', N'{}', N'{body}')",
                self.server
            );
            let ok = matches!(
                tokio::time::timeout(IO_TIMEOUT, async {
                    client.simple_query(sql).await?.into_results().await
                })
                .await,
                Ok(Ok(_))
            );
            if ok {
                self.ledger.push(Ack {
                    pool: self.pool.layout.fqdn.clone(),
                    server: self.server.clone(),
                    body,
                    target,
                    at: Instant::now(),
                    utc: chrono::Utc::now().naive_utc(),
                });
            } else {
                self.ledger.failed.fetch_add(1, Ordering::Relaxed);
                conn = None;
                if self.stubborn && !self.reconnect_after.is_zero() {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(self.reconnect_after) => {}
                    }
                }
            }
        }
    }
}
