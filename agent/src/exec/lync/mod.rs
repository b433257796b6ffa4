//! The Lync / Skype for Business Management Shell backend: the `lync` operations of DESIGN §6 as
//! plain async Rust. Each operation runs one or two short scripts through the configured command
//! line (see [`runner`]) and reads their JSON answer; the scripts are built in [`script`] from
//! constants and values quoted by [`literal::ps_literal`], and nothing else.
//!
//! Identity rules (pchat-dr.md §5.2, §5.3, §9.1):
//! - Pool state: `Get-CsPersistentChatState` is called with no arguments and the object whose
//!   Identity names the pool is picked (see [`identity_names_pool`]); that Identity string is then
//!   passed back to `Set-CsPersistentChatState` exactly as read, whatever its form (`service:fqdn`,
//!   `service: fqdn` with a space, `PersistentChatServer:fqdn`, ...). Zero matches and several
//!   matches are both errors (not retryable): the agent never guesses which pool is meant.
//! - Active servers: the Identity is the Persistent Chat *service* Identity as returned by
//!   `Get-CsService -PersistentChatServer -PoolFqdn <fqdn>` (`PersistentChatServer:<fqdn>`), also
//!   reused exactly. The doc examples' `global` and `PChatServerCollection` are not used: they do
//!   not name a pool, so with several pools in one CMS they cannot mean the one we want.
//!
//! Every change is read back in the same script and verified; a read-back that disagrees is a
//! retryable error (the change is idempotent, so another attempt is safe).

pub mod literal;
pub mod runner;
pub mod script;

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::config::LyncConfig;
use crate::error::{Error, STDERR_LIMIT, truncate};
use literal::fqdn;
use runner::Runner;
use script::{ACTIVE_SERVERS_PROPERTY, Scripts};

/// A Persistent Chat pool's state (`-PoolState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    /// The pool uses its primary databases.
    Normal,
    /// The pool uses the backup databases defined in the topology.
    FailedOver,
}

impl PoolState {
    /// The cmdlet's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Normal => "Normal",
            PoolState::FailedOver => "FailedOver",
        }
    }
}

impl fmt::Display for PoolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PoolState {
    type Err = String;
    /// Case-insensitive, as PowerShell parses enum values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            s if s.eq_ignore_ascii_case("Normal") => Ok(PoolState::Normal),
            s if s.eq_ignore_ascii_case("FailedOver") => Ok(PoolState::FailedOver),
            other => Err(format!(
                "unknown pool state '{}' (Normal or FailedOver)",
                other.escape_default()
            )),
        }
    }
}

/// A pool's state as `Get-CsPersistentChatState` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStateInfo {
    /// The Identity exactly as the cmdlet returned it; pass it back unchanged.
    pub identity: String,
    /// The state.
    pub pool_state: PoolState,
}

/// A change to a pool's active-server list (`-ActiveServers`, a `PSListModifier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveServersChange {
    /// The list becomes exactly these servers (`@{Replace=...}`).
    Replace(Vec<String>),
    /// These servers are added (`@{Add=...}`).
    Add(Vec<String>),
    /// These servers are removed (`@{Remove=...}`).
    Remove(Vec<String>),
    /// No server stays active (`$null`; failback step 1).
    Clear,
}

/// A pool's chat servers and active list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolServers {
    /// The pool FQDN as the CMS spells it.
    pub pool_fqdn: String,
    /// The Persistent Chat service Identity, as `Get-CsService` returned it.
    pub service_identity: String,
    /// The pool's computers (`Get-CsPool`'s `Computers`).
    pub computers: Vec<String>,
    /// The active servers, read from [`ACTIVE_SERVERS_PROPERTY`]. `None` when the shell returned no
    /// value: the list is empty, or the property does not exist under that name (VERIFY it on a
    /// live system); the two cannot be told apart through `[string[]]`.
    pub active_servers: Option<Vec<String>>,
}

/// The backend: a command line, a module, a timeout.
#[derive(Debug, Clone)]
pub struct LyncShell {
    runner: Runner,
    scripts: Scripts,
}

impl LyncShell {
    /// A backend for `[lync]`.
    pub fn new(config: &LyncConfig) -> Result<Self, Error> {
        config.validate().map_err(|message| Error::Config {
            path: "[lync]".into(),
            message,
        })?;
        Ok(LyncShell {
            runner: Runner {
                command: config.command.clone(),
                timeout: config.timeout,
            },
            scripts: Scripts::new(config.module())?,
        })
    }

    /// The state of `pool_fqdn` and its exact Identity.
    pub async fn pool_state(&self, pool_fqdn: &str) -> Result<PoolStateInfo, Error> {
        let pool = fqdn("pool", pool_fqdn)?;
        let out = self.runner.run(&self.scripts.states()).await?;
        let states = parse_states(&out)?;
        pick_pool_state(pool, states)
    }

    /// Sets the pool's state through the Identity read by [`LyncShell::pool_state`], then verifies
    /// the read-back. Returns the state read back.
    pub async fn set_pool_state(
        &self,
        pool_fqdn: &str,
        state: PoolState,
    ) -> Result<PoolStateInfo, Error> {
        let current = self.pool_state(pool_fqdn).await?;
        let out = self
            .runner
            .run(&self.scripts.set_state(&current.identity, state)?)
            .await?;
        let after = parse_states(&out)?;
        let err = |reason: String| Error::Lync {
            pool: pool_fqdn.to_string(),
            reason,
            retryable: true,
        };
        match after.as_slice() {
            [one] if one.pool_state == state => Ok(one.clone()),
            [one] => Err(err(format!(
                "set {state} through '{}' but read back {}",
                current.identity, one.pool_state
            ))),
            _ => Err(err(format!(
                "set {state} through '{}' but the read-back returned {} objects",
                current.identity,
                after.len()
            ))),
        }
    }

    /// The pool's computers and active-server list.
    pub async fn pool_servers(&self, pool_fqdn: &str) -> Result<PoolServers, Error> {
        let pool = fqdn("pool", pool_fqdn)?;
        let out = self.runner.run(&self.scripts.pool_servers(pool)?).await?;
        parse_pool_servers(pool, &out)
    }

    /// Changes the pool's active-server list through the service Identity (see the module doc),
    /// after checking that every named server is a computer of the pool; verifies and returns the
    /// read-back.
    pub async fn set_active_servers(
        &self,
        pool_fqdn: &str,
        change: &ActiveServersChange,
    ) -> Result<PoolServers, Error> {
        let pool = fqdn("pool", pool_fqdn)?;
        let servers: &[String] = match change {
            ActiveServersChange::Replace(s)
            | ActiveServersChange::Add(s)
            | ActiveServersChange::Remove(s) => s,
            ActiveServersChange::Clear => &[],
        };
        if servers.is_empty() && *change != ActiveServersChange::Clear {
            return Err(Error::InvalidInput {
                field: "servers",
                reason: "empty list; use Clear to deactivate every server".into(),
            });
        }
        for s in servers {
            fqdn("server", s)?;
        }
        let before = self.pool_servers(pool).await?;
        if let Some(stranger) = servers
            .iter()
            .find(|s| !before.computers.iter().any(|c| c.eq_ignore_ascii_case(s)))
        {
            return Err(Error::InvalidInput {
                field: "servers",
                reason: format!(
                    "'{stranger}' is not a computer of pool '{pool}' (computers: {})",
                    before.computers.join(", ")
                ),
            });
        }
        let script = self
            .scripts
            .set_active_servers(&before.service_identity, change, pool)?;
        let out = self.runner.run(&script).await?;
        let after = parse_pool_servers(pool, &out)?;
        verify_active(pool, change, &after)?;
        Ok(after)
    }
}

/// Whether a `Get-CsPersistentChatState` Identity names `pool`: the text after the last `:`, with
/// surrounding spaces removed, equals the FQDN ignoring ASCII case. This covers `service:fqdn`,
/// `service: fqdn` (the failback runbook's form, with a space), `PersistentChatServer:fqdn` and
/// `service:PersistentChatServer:fqdn`. It is deliberately stricter than "ends with": a pool
/// `pc.contoso.com` must not match `xpc.contoso.com` or `a.pc.contoso.com`.
pub fn identity_names_pool(identity: &str, pool: &str) -> bool {
    let tail = identity.rsplit(':').next().unwrap_or(identity);
    tail.trim().eq_ignore_ascii_case(pool)
}

fn pick_pool_state(pool: &str, states: Vec<PoolStateInfo>) -> Result<PoolStateInfo, Error> {
    let seen: Vec<String> = states.iter().map(|s| format!("'{}'", s.identity)).collect();
    let mut matching: Vec<PoolStateInfo> = states
        .into_iter()
        .filter(|s| identity_names_pool(&s.identity, pool))
        .collect();
    let err = |reason: String| Error::Lync {
        pool: pool.to_string(),
        reason,
        retryable: false,
    };
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(err(format!(
            "no Get-CsPersistentChatState object names this pool (identities: {})",
            if seen.is_empty() {
                "none".into()
            } else {
                seen.join(", ")
            }
        ))),
        _ => Err(err(format!(
            "several Get-CsPersistentChatState objects name this pool: {}",
            matching
                .iter()
                .map(|s| format!("'{}'", s.identity))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn verify_active(
    pool: &str,
    change: &ActiveServersChange,
    after: &PoolServers,
) -> Result<(), Error> {
    let err = |reason: String, retryable| Error::Lync {
        pool: pool.to_string(),
        reason,
        retryable,
    };
    let active: &[String] = match (&after.active_servers, change) {
        // An empty list comes back as null (see `script`), so nothing to check for these.
        (None, ActiveServersChange::Clear | ActiveServersChange::Remove(_)) => return Ok(()),
        (None, _) => {
            return Err(err(
                format!(
                    "the change was sent, but the active list cannot be read back: property \
                     '{ACTIVE_SERVERS_PROPERTY}' of Get-CsService is empty (VERIFY its name)"
                ),
                false,
            ));
        }
        (Some(a), _) => a,
    };
    let has = |s: &String| active.iter().any(|a| a.eq_ignore_ascii_case(s));
    let ok = match change {
        ActiveServersChange::Replace(want) => {
            want.iter().all(has)
                && active
                    .iter()
                    .all(|a| want.iter().any(|w| w.eq_ignore_ascii_case(a)))
        }
        ActiveServersChange::Add(want) => want.iter().all(has),
        ActiveServersChange::Remove(gone) => !gone.iter().any(has),
        ActiveServersChange::Clear => active.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(err(
            format!(
                "after {change:?} the active servers read back are [{}]",
                active.join(", ")
            ),
            true,
        ))
    }
}

/// The JSON document in the shell's stdout: its last non-empty line (warnings that a module import
/// prints to stdout come before it; `-Compress` keeps the document on one line).
fn last_json(stdout: &str) -> Result<Value, Error> {
    let bad = |reason: String| Error::ShellOutput {
        reason,
        stdout: truncate(stdout, STDERR_LIMIT),
    };
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| bad("no output".into()))?;
    serde_json::from_str(line.trim()).map_err(|e| bad(format!("not JSON: {e}")))
}

/// The elements of what should be an array. Tolerates the shapes Windows PowerShell 5.1 can
/// produce for one: a bare object (one element), `null` (none), and `{"value":[...],"Count":n}`
/// (an array wrapped in a PSObject).
fn rows(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        Value::Object(mut o)
            if o.contains_key("Count") && o.get("value").is_some_and(Value::is_array) =>
        {
            match o.remove("value") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            }
        }
        other => vec![other],
    }
}

fn str_field(row: &Value, name: &str) -> Option<String> {
    match row.get(name)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn list_field(row: &Value, name: &str) -> Option<Vec<String>> {
    match row.get(name)? {
        Value::Null => None,
        v => Some(
            rows(v.clone())
                .into_iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
        ),
    }
}

fn parse_states(stdout: &str) -> Result<Vec<PoolStateInfo>, Error> {
    let bad = |reason: String| Error::ShellOutput {
        reason,
        stdout: truncate(stdout, STDERR_LIMIT),
    };
    rows(last_json(stdout)?)
        .iter()
        .map(|row| {
            let identity = str_field(row, "Identity")
                .ok_or_else(|| bad("an object has no Identity".into()))?;
            let state = str_field(row, "PoolState")
                .ok_or_else(|| bad(format!("'{identity}' has no PoolState")))?;
            let pool_state = state
                .parse()
                .map_err(|e| bad(format!("'{identity}': {e}")))?;
            Ok(PoolStateInfo {
                identity,
                pool_state,
            })
        })
        .collect()
}

fn parse_pool_servers(pool: &str, stdout: &str) -> Result<PoolServers, Error> {
    let doc = last_json(stdout)?;
    let err = |reason: String| Error::Lync {
        pool: pool.to_string(),
        reason,
        retryable: false,
    };
    let services: Vec<Value> = rows(doc.get("Services").cloned().unwrap_or(Value::Null))
        .into_iter()
        .filter(|s| str_field(s, "PoolFqdn").is_some_and(|p| p.eq_ignore_ascii_case(pool)))
        .collect();
    let service = match services.as_slice() {
        [one] => one,
        [] => {
            return Err(err(
                "Get-CsService -PersistentChatServer returned no service for this pool".into(),
            ));
        }
        _ => {
            return Err(err(format!(
                "{} Persistent Chat services for this pool",
                services.len()
            )));
        }
    };
    let service_identity = str_field(service, "Identity")
        .ok_or_else(|| err("the Persistent Chat service has no Identity".into()))?;
    let pools: Vec<Value> = rows(doc.get("Pools").cloned().unwrap_or(Value::Null))
        .into_iter()
        .filter(|p| str_field(p, "Fqdn").is_some_and(|f| f.eq_ignore_ascii_case(pool)))
        .collect();
    let [pool_row] = pools.as_slice() else {
        return Err(err(format!(
            "Get-CsPool returned {} matching pools",
            pools.len()
        )));
    };
    Ok(PoolServers {
        pool_fqdn: str_field(pool_row, "Fqdn").unwrap_or_else(|| pool.to_string()),
        service_identity,
        computers: list_field(pool_row, "Computers").unwrap_or_default(),
        active_servers: list_field(service, "ActiveServers"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(identity: &str) -> PoolStateInfo {
        PoolStateInfo {
            identity: identity.into(),
            pool_state: PoolState::Normal,
        }
    }

    #[test]
    fn identity_matching() {
        let pool = "pc.contoso.com";
        for yes in [
            "service:pc.contoso.com",
            "service: PC.contoso.com",
            "PersistentChatServer:pc.contoso.com",
            "service:PersistentChatServer:pc.contoso.com ",
        ] {
            assert!(identity_names_pool(yes, pool), "{yes}");
        }
        for no in [
            "service:xpc.contoso.com",
            "service:a.pc.contoso.com",
            "global",
            "pc.contoso.com.evil",
        ] {
            assert!(!identity_names_pool(no, pool), "{no}");
        }
        let picked = pick_pool_state(
            pool,
            vec![
                info("service:other.contoso.com"),
                info("service: pc.contoso.com"),
            ],
        )
        .unwrap();
        assert_eq!(picked.identity, "service: pc.contoso.com");
        let e = pick_pool_state(
            pool,
            vec![
                info("service:pc.contoso.com"),
                info("PersistentChatServer:pc.contoso.com"),
            ],
        )
        .unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("several"),
            "{e}"
        );
        let e = pick_pool_state(pool, vec![]).unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
    }

    #[test]
    fn array_shapes() {
        let one = r#"{"Identity":"service:a.b","PoolState":"FailedOver"}"#;
        let many = format!("WARNING: something\n[{one},{one}]\n");
        let wrapped = format!(r#"{{"value":[{one}],"Count":1}}"#);
        assert_eq!(parse_states(one).unwrap().len(), 1);
        assert_eq!(parse_states(&many).unwrap().len(), 2);
        assert_eq!(
            parse_states(&wrapped).unwrap()[0].pool_state,
            PoolState::FailedOver
        );
        assert_eq!(parse_states("[]").unwrap().len(), 0);
        assert!(matches!(
            parse_states("oops"),
            Err(Error::ShellOutput { .. })
        ));
        assert!(matches!(
            parse_states(r#"[{"Identity":"x","PoolState":"Weird"}]"#),
            Err(Error::ShellOutput { .. })
        ));
        assert!(matches!(parse_states(""), Err(Error::ShellOutput { .. })));
    }
}
