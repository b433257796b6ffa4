//! The simulated Central Management Store: one JSON file shared by every simulated host of a lab,
//! and the script log beside it.
//!
//! Concurrency: every read-modify-write holds an exclusive lock on `<store>.lock` (an OS file lock
//! through `fs4`, released when the file is closed, so a killed lyncsim cannot leave it held) and
//! writes the new state to `<store>.tmp`, fsyncs it and renames it over the store. Concurrent
//! agents therefore never lose each other's updates and never read a half-written file.
//!
//! The log, `<store>.scripts.jsonl`, gets one JSON line per script received — `{"time", "host",
//! "script"}` — appended under the same lock before the script runs, so tests can assert exactly
//! what the agent sent, even for a script that failed or timed out.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The product whose shell this CMS belongs to: it decides which module import works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Product {
    /// Lync Server 2013 (module `Lync`).
    #[serde(rename = "lync2013")]
    Lync2013,
    /// Skype for Business Server 2015 (module `SkypeForBusiness`).
    #[serde(rename = "sfb2015")]
    Sfb2015,
}

impl Product {
    /// The module name and the path the product installs it at (pchat-dr.md §5.1).
    pub fn module(self) -> (&'static str, &'static str) {
        match self {
            Product::Lync2013 => (
                "Lync",
                r"C:\Program Files\Common Files\Microsoft Lync Server 2013\Modules\Lync\Lync.psd1",
            ),
            Product::Sfb2015 => (
                "SkypeForBusiness",
                r"C:\Program Files\Common Files\Skype for Business Server 2015\Modules\SkypeForBusiness\SkypeForBusiness.psd1",
            ),
        }
    }
}

impl std::str::FromStr for Product {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lync2013" => Ok(Product::Lync2013),
            "sfb2015" => Ok(Product::Sfb2015),
            _ => anyhow::bail!("unknown product '{s}' (lync2013 or sfb2015)"),
        }
    }
}

/// The whole store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cms {
    /// Product of every host of this lab.
    pub product: Product,
    /// Persistent Chat pools.
    pub pools: Vec<Pool>,
}

/// One Persistent Chat pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// Pool FQDN.
    pub fqdn: String,
    /// The Identity `Get-CsPersistentChatState` reports and `Set-CsPersistentChatState` accepts
    /// (compared ignoring case, otherwise exactly: `service: x` with a space stays that way).
    pub state_identity: String,
    /// `Normal` or `FailedOver`.
    pub pool_state: String,
    /// Lync site (one per stretched pool).
    pub site: String,
    /// The pool's chat servers and the data center each is in (a lab fact; Lync cannot tell it).
    pub computers: Vec<Computer>,
    /// FQDNs of the active servers, spelled as in `computers`.
    pub active_servers: Vec<String>,
}

impl Pool {
    /// The Persistent Chat service Identity (`Get-CsService -PersistentChatServer`).
    pub fn service_identity(&self) -> String {
        format!("PersistentChatServer:{}", self.fqdn)
    }
}

/// A chat server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Computer {
    /// FQDN.
    pub fqdn: String,
    /// Data center label (`dc1`, `dc2`).
    pub dc: String,
}

/// One line of the script log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339 time the script was received.
    pub time: String,
    /// Host / agent label (`--host` or `LYNCSIM_HOST`).
    pub host: String,
    /// The script text exactly as received.
    pub script: String,
}

/// A store file and its lock and log beside it.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Store {
    /// The store at `path` (not read yet).
    pub fn new(path: &Path) -> Self {
        Store {
            path: path.to_path_buf(),
        }
    }

    /// The script log's path: `<store>.scripts.jsonl`.
    pub fn log_path(&self) -> PathBuf {
        sibling(&self.path, ".scripts.jsonl")
    }

    fn lock(&self) -> anyhow::Result<File> {
        let path = sibling(&self.path, ".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open lock file '{}'", path.display()))?;
        fs4::FileExt::lock(&f).with_context(|| format!("lock '{}'", path.display()))?;
        Ok(f)
    }

    fn read(&self) -> anyhow::Result<Option<Cms>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("store '{}' is not a CMS file", self.path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read store '{}'", self.path.display())),
        }
    }

    fn write(&self, cms: &Cms) -> anyhow::Result<()> {
        let tmp = sibling(&self.path, ".tmp");
        let mut f = File::create(&tmp).with_context(|| format!("create '{}'", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(cms)?.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replace store '{}'", self.path.display()))
    }

    /// Reads the store (under the lock).
    pub fn load(&self) -> anyhow::Result<Cms> {
        let _lock = self.lock()?;
        self.read()?.ok_or_else(|| {
            anyhow::anyhow!(
                "store '{}' does not exist; create it with `lyncsim --store {} init ...`",
                self.path.display(),
                self.path.display()
            )
        })
    }

    /// Runs `f` on the store under the lock (an empty store of `fresh` when it does not exist
    /// yet and `fresh` is given) and saves the result when `f` changed it.
    pub fn update<T>(
        &self,
        fresh: Option<Product>,
        f: impl FnOnce(&mut Cms) -> T,
    ) -> anyhow::Result<T> {
        let _lock = self.lock()?;
        let before = match (self.read()?, fresh) {
            (Some(cms), _) => cms,
            (None, Some(product)) => Cms {
                product,
                pools: Vec::new(),
            },
            (None, None) => anyhow::bail!(
                "store '{}' does not exist; create it with `lyncsim --store F init ...`",
                self.path.display()
            ),
        };
        let mut cms = before.clone();
        let out = f(&mut cms);
        if cms != before || !self.path.exists() {
            self.write(&cms)?;
        }
        Ok(out)
    }

    /// Appends a script to the log.
    pub fn log_script(&self, host: &str, script: &str) -> anyhow::Result<()> {
        let _lock = self.lock()?;
        let entry = LogEntry {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            host: host.to_string(),
            script: script.to_string(),
        };
        let path = self.log_path();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("open script log '{}'", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(&entry)?)?;
        Ok(())
    }

    /// Every logged script, oldest first.
    pub fn read_log(&self) -> anyhow::Result<Vec<LogEntry>> {
        let path = self.log_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("read '{}'", path.display())),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("bad log line: {l}")))
            .collect()
    }
}
