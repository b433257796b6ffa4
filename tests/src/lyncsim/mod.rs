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

#[cfg(test)]
use std::path::Path;
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

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "pc.contoso.com";

    async fn lab() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("cms.json"));
        let args = [
            "--pool",
            POOL,
            "--servers",
            "a1.contoso.com,a2.contoso.com,a3.contoso.com",
            "--servers-dc2",
            "b1.contoso.com,b2.contoso.com",
        ];
        init(&store, args.iter().map(|s| s.to_string()).collect()).unwrap();
        (dir, store)
    }

    async fn sh(store: &Store, script: &str) -> Outcome {
        run_script(store, "t", Duration::ZERO, script).await
    }

    fn state(store: &Store) -> String {
        store.load().unwrap().pools[0].pool_state.clone()
    }

    const SET: &str = "Set-CsPersistentChatState -Identity 'service:pc.contoso.com' -PoolState 'FailedOver' -Force";

    #[tokio::test]
    async fn error_action_preference_decides_whether_a_script_goes_on() {
        let (_d, store) = lab().await;
        let script = format!("Import-Module Lync; Get-CsPool -Identity 'nope.contoso.com'; {SET}");
        let out = sh(&store, &script).await;
        assert_eq!(out.code, 0, "the last statement succeeded");
        assert!(out.stderr.contains("ObjectNotFound"), "{}", out.stderr);
        assert_eq!(state(&store), "FailedOver");

        let (_d, store) = lab().await;
        let out = sh(&store, &format!("$ErrorActionPreference='Stop'\n{script}")).await;
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("At line:2 char:1"), "{}", out.stderr);
        assert_eq!(state(&store), "Normal");
    }

    #[tokio::test]
    async fn parse_errors_run_nothing() {
        let (_d, store) = lab().await;
        let out = sh(
            &store,
            &format!("Import-Module Lync; {SET}; Get-CsPool -Identity 'x"),
        )
        .await;
        assert_eq!(out.code, 1);
        assert!(
            out.stderr.contains("TerminatorExpectedAtEndOfString"),
            "{}",
            out.stderr
        );
        assert_eq!(state(&store), "Normal");
        assert_eq!(store.read_log().unwrap().len(), 1, "logged all the same");
    }

    #[tokio::test]
    async fn json_shapes_follow_powershell() {
        let (_d, store) = lab().await;
        let one = sh(&store, "Import-Module Lync; ConvertTo-Json -Compress -InputObject @(Get-CsPersistentChatState)").await;
        assert_eq!(
            one.stdout, "[{\"Identity\":\"service:pc.contoso.com\",\"PoolState\":\"Normal\"}]\n",
            "{}",
            one.stderr
        );
        let piped = sh(
            &store,
            "Import-Module Lync; Get-CsPersistentChatState | ConvertTo-Json -Compress",
        )
        .await;
        assert_eq!(
            piped.stdout,
            "{\"Identity\":\"service:pc.contoso.com\",\"PoolState\":\"Normal\"}\n"
        );
        let calc = sh(&store, "Import-Module Lync\nGet-CsPool 'PC.contoso.com' | Select-Object -Property Fqdn,@{Name='C';Expression={[string]$_.Computers}} | ConvertTo-Json -Compress").await;
        assert_eq!(
            calc.stdout,
            "{\"C\":\"a1.contoso.com a2.contoso.com a3.contoso.com b1.contoso.com b2.contoso.com\",\"Fqdn\":\"pc.contoso.com\"}\n",
            "{}",
            calc.stderr
        );
    }

    #[tokio::test]
    async fn active_server_rules() {
        let (_d, store) = lab().await;
        let set = |m: &str| {
            format!(
                "$ErrorActionPreference='Stop'; Import-Module Lync; Set-CsPersistentChatActiveServer 'PersistentChatServer:pc.contoso.com' -ActiveServers {m} -Force"
            )
        };
        let active = || store.load().unwrap().pools[0].active_servers.clone();
        let out = sh(&store, &set("@{Replace='a.b''; Remove-Item x'}")).await;
        assert_eq!(out.code, 1);
        assert!(
            out.stderr
                .contains("Cannot find computer \"a.b'; Remove-Item x\""),
            "{}",
            out.stderr
        );
        let out = sh(&store, &set("@{Add='b1.contoso.com','b2.contoso.com'}")).await;
        assert!(
            out.stderr.contains("at most 4 active servers"),
            "{}",
            out.stderr
        );
        assert_eq!(active().len(), 3);
        assert_eq!(sh(&store, &set("'B1.contoso.com'")).await.code, 0);
        assert_eq!(active(), ["b1.contoso.com"]);
        let swap = "Import-Module Lync; Set-CsPersistentChatActiveServer -Identity 'PersistentChatServer:pc.contoso.com' -Swap -Force";
        assert_eq!(sh(&store, swap).await.code, 0);
        assert_eq!(
            active(),
            [
                "a1.contoso.com",
                "a2.contoso.com",
                "a3.contoso.com",
                "b2.contoso.com"
            ]
        );
        assert_eq!(sh(&store, &set("$null")).await.code, 0);
        assert!(active().is_empty());
        let global = sh(&store, "Import-Module Lync; Set-CsPersistentChatActiveServer -Identity 'global' -ActiveServers $null -Force").await;
        assert!(
            global.stderr.contains("ObjectNotFound"),
            "{}",
            global.stderr
        );
        let no_force = sh(&store, "Import-Module Lync; Set-CsPersistentChatActiveServer -Identity 'PersistentChatServer:pc.contoso.com' -ActiveServers 'a1.contoso.com'").await;
        assert!(
            no_force.stderr.contains("NonInteractive mode"),
            "{}",
            no_force.stderr
        );
        assert!(active().is_empty());
    }

    #[tokio::test]
    async fn parameter_binding() {
        let (_d, store) = lab().await;
        let ok = sh(&store, "Import-Module Lync; Set-CsPersistentChatState 'SERVICE:pc.contoso.com' -PoolSt failedover -F").await;
        assert_eq!((ok.code, ok.stderr.as_str()), (0, ""));
        assert_eq!(state(&store), "FailedOver");
        for (script, want) in [
            ("Get-CsPool -Bogus", "NamedParameterNotFound"),
            ("Get-CsPool -Identity", "MissingArgument"),
            ("Get-CsPool 'a' 'b'", "PositionalParameterNotFound"),
            (
                "Set-CsPersistentChatState -Identity 'service:pc.contoso.com' -PoolState 'Broken' -Force",
                "Normal, FailedOver",
            ),
            ("Get-CsService", "only Get-CsService -PersistentChatServer"),
            ("Remove-Item 'x'", "CommandNotFoundException"),
        ] {
            let out = sh(&store, &format!("Import-Module Lync; {script}")).await;
            assert_eq!(out.code, 1, "{script}");
            assert!(out.stderr.contains(want), "{script}: {}", out.stderr);
        }
        let not_loaded = sh(&store, "Get-CsPool").await;
        assert!(
            not_loaded.stderr.contains("is not recognized"),
            "{}",
            not_loaded.stderr
        );
    }

    #[tokio::test]
    async fn command_line() {
        let (dir, _store) = lab().await;
        let store = dir.path().join("cms.json").display().to_string();
        let args = |a: &[&str]| -> Vec<String> {
            ["--store", store.as_str()]
                .iter()
                .chain(a)
                .map(|s| s.to_string())
                .collect()
        };
        let out = run(
            args(&[
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-Command",
                "Import-Module",
                "Lync;",
                "Get-CsPool",
                "|",
                "ConvertTo-Json",
                "-Compress",
            ]),
            None,
        )
        .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.contains("\"Fqdn\":\"pc.contoso.com\""));
        for bad in [
            &["-NoProfile", "-File", "x.ps1"][..],
            &["-ExecutionPolicy", "Whatever", "-Command", "x"],
            &["-NoProfile"],
            &["--bogus"],
        ] {
            assert_eq!(run(args(bad), None).await.code, 64, "{bad:?}");
        }
        assert_eq!(
            run(vec!["-Command".into(), "x".into()], None).await.code,
            64,
            "--store is required"
        );
        let out = run(
            args(&["init", "--pool", POOL, "--servers", "c1.contoso.com"]),
            None,
        )
        .await;
        assert!(out.stderr.contains("already exists"), "{}", out.stderr);
        let out = run(
            args(&["--host", "h9", "-Command", "$x='1'"]),
            Some("ignored".into()),
        )
        .await;
        assert_eq!(out.code, 0);
        let log = Store::new(Path::new(&store)).read_log().unwrap();
        assert_eq!(
            (log[1].host.as_str(), log[1].script.as_str()),
            ("h9", "$x='1'")
        );
    }
}
