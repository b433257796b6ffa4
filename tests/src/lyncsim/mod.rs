//! `lyncsim`: a stand-in for the Lync Server 2013 / Skype for Business Server 2015 Management Shell,
//! as the lab's Lync hosts run it. The agent's real code path runs against it unchanged: it takes
//! exactly the command line the agent uses, parses the script with a real (small) PowerShell
//! tokenizer and parser, runs the cmdlets against a Central Management Store file shared by every
//! simulated host of one lab, and fails like the real shell (non-zero exit, an error record on
//! stderr).
//!
//! Command line:
//!
//! ```text
//! lyncsim --store cms.json [--host LABEL] [--delay 5s] -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command <script>
//! lyncsim --store cms.json init --pool pc.contoso.com --servers a,b [--servers-dc2 c,d]
//!         [--identity 'service: pc.contoso.com'] [--product lync2013|sfb2015] [--site Redmond] [--active a,b]
//! lyncsim --store cms.json show
//! ```
//!
//! - lyncsim's own options come first. `--host` (or `LYNCSIM_HOST`) labels the script log entries;
//!   `--delay` is a fault switch: the shell sleeps after logging the script and before running it
//!   (a slow module import), so an agent timeout kills it before anything changes.
//! - Then powershell.exe's flags, case-insensitive, in any order: `-NoProfile`, `-NonInteractive`,
//!   `-NoLogo`, `-ExecutionPolicy <policy>`, and `-Command`, which takes every remaining argument
//!   joined with spaces (as powershell.exe does). Any other flag is refused.
//! - `init` creates the store (or adds a pool to it): state `Normal`, the `--servers` (data center
//!   `dc1`) active unless `--active` says otherwise (`--active ''` = none), state Identity
//!   `service:<pool>` unless `--identity` gives another form. `show` prints the store.
//!
//! Files: the store (see [`store`]), `<store>.lock`, and the script log `<store>.scripts.jsonl`.
//!
//! Layout: [`token`] → [`parse`] → [`eval`] (built-ins, binding, values) → [`cmdlets`] (the Cs*
//! cmdlets) over [`store`].

pub mod cmdlets;
pub mod eval;
pub mod parse;
pub mod store;
pub mod token;

use std::path::PathBuf;
use std::time::Duration;

use store::{Computer, Pool, Product, Store};

/// Environment variable naming the host in the script log when `--host` is not given.
pub const ENV_HOST: &str = "LYNCSIM_HOST";

/// What a run printed and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    fn usage(message: impl std::fmt::Display) -> Self {
        Outcome {
            code: 64,
            stdout: String::new(),
            stderr: format!("lyncsim: {message}\n"),
        }
    }

    fn failed(message: impl std::fmt::Display) -> Self {
        Outcome {
            code: 1,
            stdout: String::new(),
            stderr: format!("lyncsim: {message}\n"),
        }
    }
}

/// What the command line asks for.
enum Mode {
    Shell(String),
    Init(Vec<String>),
    Show,
}

/// Runs lyncsim with `args` (without the program name); `env_host` is `LYNCSIM_HOST`.
pub async fn run(args: Vec<String>, env_host: Option<String>) -> Outcome {
    let mut store: Option<PathBuf> = None;
    let mut host = env_host.unwrap_or_else(|| "unknown".into());
    let mut delay = Duration::ZERO;
    let mut it = args.into_iter();
    let mode = loop {
        let Some(arg) = it.next() else {
            return Outcome::usage("nothing to do: give -Command <script>, init or show");
        };
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--store" => match value("--store") {
                Ok(v) => store = Some(PathBuf::from(v)),
                Err(e) => return Outcome::usage(e),
            },
            "--host" => match value("--host") {
                Ok(v) => host = v,
                Err(e) => return Outcome::usage(e),
            },
            "--delay" => match value("--delay")
                .and_then(|v| humantime::parse_duration(&v).map_err(|e| format!("--delay: {e}")))
            {
                Ok(d) => delay = d,
                Err(e) => return Outcome::usage(e),
            },
            "init" => break Mode::Init(it.collect()),
            "show" => break Mode::Show,
            a if a.starts_with('-') && !a.starts_with("--") => {
                match powershell_flags(std::iter::once(arg).chain(it.by_ref())) {
                    Ok(script) => break Mode::Shell(script),
                    Err(e) => return Outcome::usage(e),
                }
            }
            other => return Outcome::usage(format!("unknown argument '{other}'")),
        }
    };
    let Some(path) = store else {
        return Outcome::usage("--store <cms.json> is required");
    };
    let store = Store::new(&path);
    match mode {
        Mode::Shell(script) => run_script(&store, &host, delay, &script).await,
        Mode::Init(args) => match init(&store, args) {
            Ok(()) => Outcome {
                code: 0,
                stdout: String::new(),
                stderr: String::new(),
            },
            Err(e) => Outcome::failed(format!("{e:#}")),
        },
        Mode::Show => match store
            .load()
            .and_then(|c| Ok(serde_json::to_string_pretty(&c)?))
        {
            Ok(text) => Outcome {
                code: 0,
                stdout: text + "\n",
                stderr: String::new(),
            },
            Err(e) => Outcome::failed(format!("{e:#}")),
        },
    }
}

/// powershell.exe's flags; returns the script (`-Command` and everything after it).
fn powershell_flags(args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut it = args;
    while let Some(flag) = it.next() {
        match flag.to_ascii_lowercase().as_str() {
            "-noprofile" | "-noninteractive" | "-nologo" => {}
            "-executionpolicy" => {
                let policy = it.next().ok_or("-ExecutionPolicy needs a value")?;
                const POLICIES: [&str; 7] = [
                    "Bypass",
                    "Unrestricted",
                    "RemoteSigned",
                    "AllSigned",
                    "Restricted",
                    "Default",
                    "Undefined",
                ];
                if !POLICIES.iter().any(|p| p.eq_ignore_ascii_case(&policy)) {
                    return Err(format!("-ExecutionPolicy: unknown policy '{policy}'"));
                }
            }
            "-command" => {
                let script: Vec<String> = it.collect();
                if script.is_empty() {
                    return Err("-Command needs a script".into());
                }
                return Ok(script.join(" "));
            }
            _ => {
                return Err(format!(
                    "unknown PowerShell flag '{flag}' (lyncsim accepts -NoProfile, -NonInteractive, -NoLogo, -ExecutionPolicy, -Command)"
                ));
            }
        }
    }
    Err("no -Command given".into())
}

/// Parses and runs one script against the store; every script is logged first.
pub async fn run_script(store: &Store, host: &str, delay: Duration, script: &str) -> Outcome {
    if let Err(e) = store.log_script(host, script) {
        return Outcome::failed(format!("{e:#}"));
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let stmts = match token::tokenize(script).and_then(parse::parse) {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                code: 1,
                stdout: String::new(),
                stderr: format!("{e}\n"),
            };
        }
    };
    let result = store.update(None, |cms| {
        let mut shell = eval::Shell::new(cms);
        let code = shell.run(&stmts);
        Outcome {
            code,
            stdout: shell.stdout,
            stderr: shell.stderr,
        }
    });
    result.unwrap_or_else(|e| Outcome::failed(format!("{e:#}")))
}

fn init(store: &Store, args: Vec<String>) -> anyhow::Result<()> {
    let mut pool: Option<String> = None;
    let mut identity: Option<String> = None;
    let mut product: Option<Product> = None;
    let mut site = "Site1".to_string();
    let mut dc1: Vec<String> = Vec::new();
    let mut dc2: Vec<String> = Vec::new();
    let mut active: Option<Vec<String>> = None;
    let list = |v: String| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pool" => pool = Some(v),
            "--identity" => identity = Some(v),
            "--product" => product = Some(v.parse()?),
            "--site" => site = v,
            "--servers" => dc1 = list(v),
            "--servers-dc2" => dc2 = list(v),
            "--active" => active = Some(list(v)),
            other => anyhow::bail!("init: unknown option '{other}'"),
        }
    }
    let fqdn = pool.ok_or_else(|| anyhow::anyhow!("init: --pool is required"))?;
    if dc1.is_empty() {
        anyhow::bail!("init: --servers needs at least one server");
    }
    for name in std::iter::once(&fqdn).chain(&dc1).chain(&dc2) {
        if name.is_empty()
            || !name.contains('.')
            || name
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            anyhow::bail!("init: '{name}' is not an FQDN");
        }
    }
    let active = active.unwrap_or_else(|| dc1.clone());
    let computers: Vec<Computer> = dc1
        .iter()
        .map(|f| Computer {
            fqdn: f.clone(),
            dc: "dc1".into(),
        })
        .chain(dc2.iter().map(|f| Computer {
            fqdn: f.clone(),
            dc: "dc2".into(),
        }))
        .collect();
    if let Some(a) = active
        .iter()
        .find(|a| !computers.iter().any(|c| c.fqdn.eq_ignore_ascii_case(a)))
    {
        anyhow::bail!("init: active server '{a}' is not one of the pool's servers");
    }
    let new = Pool {
        state_identity: identity.unwrap_or_else(|| format!("service:{fqdn}")),
        fqdn,
        pool_state: "Normal".into(),
        site,
        computers,
        active_servers: active,
    };
    store.update(Some(product.unwrap_or(Product::Lync2013)), |cms| {
        if let Some(p) = product
            && p != cms.product
        {
            anyhow::bail!("init: the store is for {:?}, not {p:?}", cms.product);
        }
        if cms
            .pools
            .iter()
            .any(|p| p.fqdn.eq_ignore_ascii_case(&new.fqdn))
        {
            anyhow::bail!("init: pool '{}' already exists", new.fqdn);
        }
        cms.pools.push(new);
        Ok(())
    })?
}
