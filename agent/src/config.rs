//! `agent.toml`: which coordinators to dial, with which certificate, where to keep local state.
//! Relative paths are resolved against the config file's directory. Example: `deploy/agent.toml`.
//! The agent's id is NOT configured: it is the name in its certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use failback_proto::endpoint::Endpoint;
use failback_proto::tls::TlsFiles;
use serde::Deserialize;

use crate::error::Error;
use crate::exec::files::roots::validate_root;

/// The agent's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Coordinators (`name@host:port`), tried in order; a leader hint overrides the order.
    pub coordinators: Vec<Endpoint>,
    /// Local state: the highest accepted epoch and, later, the operation journal.
    pub state_dir: PathBuf,
    /// Prometheus `/metrics` listen address; none = no metrics endpoint.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Reconnect backoff.
    #[serde(default)]
    pub reconnect: Reconnect,
    /// CA, certificate and key of this agent.
    pub tls: TlsFiles,
    /// The `files` backend; absent = no file roots, so every file operation is refused.
    #[serde(default)]
    pub files: Option<FilesConfig>,
    /// The `sql` backend; absent = no local instance, so every sql operation is refused.
    #[serde(default)]
    pub sql: Option<crate::exec::sql::config::SqlConfig>,
    /// The Lync Management Shell backend, on hosts that run Management Shell cmdlets.
    #[serde(default)]
    pub lync: Option<LyncConfig>,
}

/// `[files]`: where the `files` backend may read and write.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Absolute directories that every file operation is confined to: POSIX (`/srv/ls`), drive
    /// (`D:\PChatLogShipCopy`) or UNC (`\\fs01\pchat-ls`); Windows forms validate on every OS.
    /// Never resolved against the config file's directory: a relative root is an error, as are
    /// `..` and whole volumes (`/`, `D:\`). Roots need not exist at start (a share may be down).
    pub roots: Vec<String>,
    /// Caps each copy's rate, in bytes per second (at least [`MIN_COPY_BYTES_PER_SECOND`]):
    /// FO-2 copies log backups from the share across the WAN between the data centers, and a
    /// site link shared with the chat servers' own traffic may need the room. Default: as fast
    /// as the disks and the network allow.
    #[serde(default)]
    pub copy_bytes_per_second: Option<u64>,
}

/// The lowest `[files] copy_bytes_per_second` accepted (64 KiB/s): below it a day's log
/// backups of a busy pool would not copy in a day.
pub const MIN_COPY_BYTES_PER_SECOND: u64 = 64 << 10;

/// `[lync]`: how the agent runs Lync / Skype for Business Management Shell cmdlets.
///
/// ```toml
/// [lync]
/// product = "sfb2015"            # or "lync2013": chooses the module import line
/// # module = 'D:\Lync\Modules\Lync\Lync.psd1'   # explicit module path or name instead
/// # command = ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command"]
/// timeout = "2m"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LyncConfig {
    /// The command line before the script; the script is appended as ONE final argument and no
    /// shell sits in between. Default: [`LyncConfig::DEFAULT_COMMAND`].
    #[serde(default = "LyncConfig::default_command")]
    pub command: Vec<String>,
    /// Which product's module to import (pchat-dr.md §5.1).
    pub product: LyncProduct,
    /// Module path or name to import instead of the product's default path.
    #[serde(default)]
    pub module: Option<String>,
    /// Longest a script may run (module import included) before the shell is killed.
    #[serde(default = "LyncConfig::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// The Lync / Skype for Business Server product whose Management Shell module is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LyncProduct {
    /// Lync Server 2013.
    #[serde(rename = "lync2013")]
    Lync2013,
    /// Skype for Business Server 2015.
    #[serde(rename = "sfb2015")]
    Sfb2015,
}

impl LyncProduct {
    /// Where the product installs its Management Shell module (pchat-dr.md §5.1).
    pub fn default_module(self) -> &'static str {
        match self {
            LyncProduct::Lync2013 => {
                r"C:\Program Files\Common Files\Microsoft Lync Server 2013\Modules\Lync\Lync.psd1"
            }
            LyncProduct::Sfb2015 => {
                r"C:\Program Files\Common Files\Skype for Business Server 2015\Modules\SkypeForBusiness\SkypeForBusiness.psd1"
            }
        }
    }
}

impl LyncConfig {
    /// The default command line: Windows PowerShell, no profile (a profile could print to stdout or
    /// change preferences), never prompting, execution policy bypassed for this process only.
    pub const DEFAULT_COMMAND: [&str; 6] = [
        "powershell.exe",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-Command",
    ];

    fn default_command() -> Vec<String> {
        Self::DEFAULT_COMMAND
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn default_timeout() -> Duration {
        Duration::from_secs(120)
    }

    /// Defaults for `product`: the default command line, the product's module, a 2-minute timeout.
    pub fn for_product(product: LyncProduct) -> Self {
        LyncConfig {
            command: Self::default_command(),
            product,
            module: None,
            timeout: Self::default_timeout(),
        }
    }

    /// The module path or name to import.
    pub fn module(&self) -> &str {
        self.module
            .as_deref()
            .unwrap_or_else(|| self.product.default_module())
    }

    /// Checks what serde cannot: a program to run, a usable module, a positive timeout.
    pub fn validate(&self) -> Result<(), String> {
        match self.command.first() {
            None => return Err("lync.command: give at least the program".into()),
            Some(p) if p.trim().is_empty() => {
                return Err("lync.command: the program is empty".into());
            }
            Some(_) => {}
        }
        if self.module().trim().is_empty() {
            return Err("lync.module: empty".into());
        }
        if self.timeout.is_zero() {
            return Err("lync.timeout: must be > 0".into());
        }
        Ok(())
    }
}

/// Reconnect backoff: doubles from `initial` to `max`, each wait jittered by ±20 % so a fleet that
/// lost its coordinator at the same moment does not reconnect in lockstep.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reconnect {
    /// First wait after a failure.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Upper bound.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl AgentConfig {
    /// The backends this agent offers, announced in Hello: derived from what is configured, so
    /// the coordinator is never told about a backend that would refuse every operation.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps = Vec::new();
        if self.sql.is_some() {
            caps.push("sql".to_string());
        }
        if self.files.is_some() {
            caps.push("files".to_string());
        }
        if self.lync.is_some() {
            caps.push("lync".to_string());
        }
        caps.push("host".to_string());
        // Not a backend: tells the coordinator this agent checks its liveness (session.rs).
        caps.push("liveness".to_string());
        caps
    }

    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let err = |message: String| Error::Config {
            path: path.display().to_string(),
            message,
        };
        let mut c: AgentConfig =
            toml::from_str(text).map_err(|e| err(e.to_string().trim().to_string()))?;
        if c.coordinators.is_empty() {
            return Err(err(
                "coordinators: list at least one coordinator endpoint (name@host:port)".into(),
            ));
        }
        if let Some(l) = &c.lync {
            l.validate().map_err(err)?;
        }
        if c.reconnect.initial.is_zero() || c.reconnect.max < c.reconnect.initial {
            return Err(err(
                "reconnect: initial must be > 0 and max >= initial".into()
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(sql) = &mut c.sql {
            sql.validate().map_err(err)?;
            for p in [&mut sql.password_file, &mut sql.ca_file]
                .into_iter()
                .flatten()
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        if let Some(files) = &c.files {
            if files.roots.is_empty() {
                return Err(err(
                    "files.roots: list at least one absolute directory, or remove [files]".into(),
                ));
            }
            for root in &files.roots {
                validate_root(root)
                    .map_err(|why| err(format!("files.roots: '{root}' refused: {why}")))?;
            }
            if let Some(rate) = files.copy_bytes_per_second
                && rate < MIN_COPY_BYTES_PER_SECOND
            {
                return Err(err(format!(
                    "files.copy_bytes_per_second: {rate} is below the lowest accepted rate, {MIN_COPY_BYTES_PER_SECOND} bytes per second (remove it for no cap)"
                )));
            }
        }
        c.tls = c.tls.relative_to(base);
        if c.state_dir.is_relative() {
            c.state_dir = base.join(&c.state_dir);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let text = r#"
coordinators = ["c1@127.0.0.1:7443"]
state_dir = "state"
[tls]
ca = "ca.pem"
cert = "a.pem"
key = "a.key"
"#;
        let c = AgentConfig::parse(Path::new("/x/agent.toml"), text).unwrap();
        assert_eq!(c.state_dir, Path::new("/x/state"));
        assert_eq!(c.coordinators[0].name, "c1");
        let e = AgentConfig::parse(
            Path::new("a.toml"),
            &text.replace("c1@127.0.0.1:7443", "nope"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("a.toml"), "{e}");
        let e = AgentConfig::parse(
            Path::new("a.toml"),
            &text.replace("state_dir", "shell = \"bash\"\nstate_dir"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("shell"),
            "unknown keys are refused: {e}"
        );
    }

    #[test]
    fn file_roots_validated() {
        let base = r#"
coordinators = ["c1@127.0.0.1:7443"]
state_dir = "state"
[tls]
ca = "ca.pem"
cert = "a.pem"
key = "a.key"
"#;
        let with = |roots: &str| {
            AgentConfig::parse(
                Path::new("/x/agent.toml"),
                &format!("{base}[files]\nroots = {roots}\n"),
            )
        };
        let c = with(r"['/srv/ls', 'D:\PChatLogShipCopy', '\\fs01\pchat-ls']").unwrap();
        assert_eq!(c.files.map(|f| f.roots.len()), Some(3));
        let rate = |r: u64| with(&format!("['/srv/ls']\ncopy_bytes_per_second = {r}"));
        assert_eq!(
            rate(1 << 20).unwrap().files.unwrap().copy_bytes_per_second,
            Some(1 << 20)
        );
        let e = rate(1000).unwrap_err().to_string();
        assert!(
            e.contains("files.copy_bytes_per_second") && e.contains("1000"),
            "{e}"
        );
        let none = AgentConfig::parse(Path::new("/x/agent.toml"), base).unwrap();
        assert!(none.files.is_none());
        for (roots, needle) in [
            ("[]", "at least one"),
            ("['']", "empty"),
            ("['ls']", "relative"),
            ("['/srv/../etc']", "'..'"),
            (r"['C:\..\x']", "'..'"),
            ("['/']", "whole volume"),
            (r"['D:\']", "whole volume"),
            (r"['\\server']", "share"),
        ] {
            let e = with(roots).unwrap_err().to_string();
            assert!(
                e.contains("files.roots") && e.contains(needle),
                "{roots}: {e}"
            );
        }
    }

    #[test]
    fn lync_section_defaults_and_checks() {
        let base = "coordinators = [\"c1@127.0.0.1:7443\"]\nstate_dir = \"s\"\n\
                    [tls]\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n";
        let p = Path::new("a.toml");
        let c = AgentConfig::parse(p, &format!("{base}[lync]\nproduct = \"sfb2015\"\n")).unwrap();
        let l = c.lync.unwrap();
        assert_eq!(l.command, LyncConfig::DEFAULT_COMMAND);
        assert!(l.module().ends_with("SkypeForBusiness.psd1"));
        assert_eq!(l.timeout, Duration::from_secs(120));
        let c = AgentConfig::parse(
            p,
            &format!(
                "{base}[lync]\nproduct = \"lync2013\"\nmodule = \"Lync\"\ntimeout = \"5s\"\n\
                 command = [\"lyncsim\", \"-Command\"]\n"
            ),
        )
        .unwrap();
        let l = c.lync.unwrap();
        assert_eq!((l.module(), l.timeout), ("Lync", Duration::from_secs(5)));
        for bad in [
            "[lync]\nproduct = \"lync2010\"\n",
            "[lync]\nproduct = \"sfb2015\"\ncommand = []\n",
            "[lync]\nproduct = \"sfb2015\"\ntimeout = \"0s\"\n",
        ] {
            assert!(
                AgentConfig::parse(p, &format!("{base}{bad}")).is_err(),
                "{bad}"
            );
        }
    }
}
