//! The Lync / Skype for Business cmdlets lyncsim implements, over the [`Cms`]: the ones the agent
//! emits (pchat-dr.md §5.2–§5.4), with their documented parameters.
//!
//! - `Get-CsPersistentChatState [[-Identity] id] [-Filter glob] [-LocalStore]` → `{Identity, PoolState}`.
//! - `Set-CsPersistentChatState [-Identity] id -PoolState Normal|FailedOver -Force [-WhatIf] [-Confirm]`.
//! - `Set-CsPersistentChatActiveServer [-Identity] id (-ActiveServers list|@{Replace|Add|Remove=...}|$null | -Swap) -Force`.
//! - `Get-CsService -PersistentChatServer [-PoolFqdn fqdn] [[-Identity] id]` → `{Identity, PoolFqdn,
//!   SiteId, Role, ActiveServers}`.
//! - `Get-CsPool [[-Identity] fqdn]` → `{Identity, Fqdn, Site, Services, Computers}`.
//!
//! Behaviour chosen where the sources are silent (documented so the lab's assumptions are visible):
//! - Identities are compared ignoring case but otherwise exactly: `service: x` (with the space) is
//!   not `service:x`. The state Identity is the pool's `state_identity`; the active-server Identity
//!   is the service Identity `PersistentChatServer:<fqdn>`; `global` / `PChatServerCollection` are
//!   unknown identities.
//! - A change without `-Force` prompts for confirmation, which fails in -NonInteractive mode.
//! - Active servers must be computers of the pool, and at most 4 may be active (pchat-dr.md §1).
//! - The active list is exposed as the service's `ActiveServers` property: the name the agent's
//!   `ACTIVE_SERVERS_PROPERTY` assumes (VERIFY on a live system).

use super::eval::{ArgVal, PsError, Value, bind};
use super::store::{Cms, Pool};

/// Most active servers in a pool.
pub const MAX_ACTIVE: usize = 4;

const STATE_TYPE: &str =
    "Microsoft.Rtc.Management.WritableConfig.Settings.PersistentChat.PoolState";

/// Runs cmdlet `name` if lyncsim knows it (`None` otherwise).
pub fn invoke(
    cms: &mut Cms,
    name: &str,
    args: Vec<ArgVal>,
    _input: Vec<Value>,
) -> Option<Result<Vec<Value>, PsError>> {
    Some(match name.to_ascii_lowercase().as_str() {
        "get-cspersistentchatstate" => get_state(cms, args),
        "set-cspersistentchatstate" => set_state(cms, args),
        "set-cspersistentchatactiveserver" => set_active(cms, args),
        "get-csservice" => get_service(cms, args),
        "get-cspool" => get_pool(cms, args),
        _ => return None,
    })
}

fn not_found(cmd: &str, what: &str, id: &str) -> PsError {
    PsError::new(
        cmd,
        "ObjectNotFound",
        "ManagementException",
        &format!(
            "ObjectNotFound,Microsoft.Rtc.Management.{}",
            cmd.replace('-', "")
        ),
        id,
        format!("Management object not found for identity \"{id}\" ({what})."),
    )
}

fn invalid(cmd: &str, target: &str, message: String) -> PsError {
    PsError::new(
        cmd,
        "InvalidArgument",
        "ArgumentException",
        &format!(
            "InvalidArgument,Microsoft.Rtc.Management.{}",
            cmd.replace('-', "")
        ),
        target,
        message,
    )
}

fn needs_force(cmd: &str, force: bool) -> Result<(), PsError> {
    if force {
        return Ok(());
    }
    Err(PsError::new(
        cmd,
        "InvalidOperation",
        "PSInvalidOperationException",
        &format!(
            "HostFunctionPromptNotImplemented,Microsoft.Rtc.Management.{}",
            cmd.replace('-', "")
        ),
        "",
        "PowerShell is in NonInteractive mode. Read and Prompt functionality is not available."
            .into(),
    ))
}

fn identity(v: Option<&Value>) -> Option<String> {
    v.map(Value::to_ps_string)
}

/// `*` and `?` wildcards, ignoring case.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a.to_lowercase().eq(b.to_lowercase()) && go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    go(&p, &t)
}

fn state_object(p: &Pool) -> Value {
    Value::Map(vec![
        ("Identity".into(), Value::Str(p.state_identity.clone())),
        ("PoolState".into(), Value::Str(p.pool_state.clone())),
    ])
}

fn strs(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::Str).collect())
}

fn get_state(cms: &mut Cms, args: Vec<ArgVal>) -> Result<Vec<Value>, PsError> {
    const CMD: &str = "Get-CsPersistentChatState";
    let p = bind(
        CMD,
        args,
        &[("Identity", false), ("Filter", false), ("LocalStore", true)],
        &["Identity"],
    )?;
    if let Some(id) = identity(p.get("Identity")) {
        let pool = cms
            .pools
            .iter()
            .find(|x| x.state_identity.eq_ignore_ascii_case(&id))
            .ok_or_else(|| not_found(CMD, "PersistentChatState", &id))?;
        return Ok(vec![state_object(pool)]);
    }
    let filter = p.get("Filter").map(Value::to_ps_string);
    Ok(cms
        .pools
        .iter()
        .filter(|x| filter.as_deref().is_none_or(|f| glob(f, &x.state_identity)))
        .map(state_object)
        .collect())
}

fn set_state(cms: &mut Cms, args: Vec<ArgVal>) -> Result<Vec<Value>, PsError> {
    const CMD: &str = "Set-CsPersistentChatState";
    let p = bind(
        CMD,
        args,
        &[
            ("Identity", false),
            ("PoolState", false),
            ("Instance", false),
            ("Force", true),
            ("Confirm", true),
            ("WhatIf", true),
        ],
        &["Identity"],
    )?;
    let id = identity(p.get("Identity")).ok_or_else(|| {
        invalid(
            CMD,
            "",
            "lyncsim needs -Identity (the Identity Get-CsPersistentChatState returned).".into(),
        )
    })?;
    let state = match p.get("PoolState") {
        None => None,
        Some(v) => {
            let s = v.to_ps_string();
            let canonical = ["Normal", "FailedOver"]
                .into_iter()
                .find(|c| c.eq_ignore_ascii_case(s.trim()));
            Some(canonical.ok_or_else(|| {
                PsError::new(CMD, "InvalidArgument", "ParameterBindingException", &format!("CannotConvertArgumentNoMessage,Microsoft.Rtc.Management.{}", CMD.replace('-', "")), "", format!("Cannot bind parameter 'PoolState'. Cannot convert value \"{s}\" to type \"{STATE_TYPE}\". Error: \"Unable to match the identifier name {s} to a valid enumerator name. Specify one of the following enumerator names and try again: Normal, FailedOver\""))
            })?)
        }
    };
    let pool = cms
        .pools
        .iter_mut()
        .find(|x| x.state_identity.eq_ignore_ascii_case(&id))
        .ok_or_else(|| not_found(CMD, "PersistentChatState", &id))?;
    if p.has("WhatIf") {
        return Ok(Vec::new());
    }
    needs_force(CMD, p.has("Force"))?;
    if let Some(s) = state {
        pool.pool_state = s.to_string();
    }
    Ok(Vec::new())
}

/// The servers of a `PSListModifier` value: a string or an array of strings.
fn server_list(cmd: &str, v: &Value) -> Result<Vec<String>, PsError> {
    match v {
        Value::Str(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::Str(s) => Ok(s.clone()),
                other => Err(invalid(
                    cmd,
                    "",
                    format!("Cannot convert '{}' to Fqdn.", other.to_ps_string()),
                )),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(invalid(
            cmd,
            "",
            format!("Cannot convert '{}' to Fqdn.", other.to_ps_string()),
        )),
    }
}

fn set_active(cms: &mut Cms, args: Vec<ArgVal>) -> Result<Vec<Value>, PsError> {
    const CMD: &str = "Set-CsPersistentChatActiveServer";
    let p = bind(
        CMD,
        args,
        &[
            ("Identity", false),
            ("ActiveServers", false),
            ("Swap", true),
            ("Force", true),
            ("Confirm", true),
            ("WhatIf", true),
        ],
        &["Identity"],
    )?;
    let id = identity(p.get("Identity")).unwrap_or_else(|| "Global".into());
    let pool = cms
        .pools
        .iter_mut()
        .find(|x| x.service_identity().eq_ignore_ascii_case(&id))
        .ok_or_else(|| not_found(CMD, "PersistentChatActiveServer", &id))?;
    let canonical = |s: &str, pool: &Pool| -> Result<String, PsError> {
        pool.computers.iter().find(|c| c.fqdn.eq_ignore_ascii_case(s.trim())).map(|c| c.fqdn.clone()).ok_or_else(|| {
            invalid(CMD, s, format!("Cannot find computer \"{s}\" in Persistent Chat pool \"{}\"; only servers of the pool can be active.", pool.fqdn))
        })
    };
    let mut active = pool.active_servers.clone();
    match (p.get("ActiveServers"), p.has("Swap")) {
        (Some(_), true) | (None, false) => {
            return Err(PsError::new(CMD, "InvalidArgument", "ParameterBindingException", &format!("AmbiguousParameterSet,Microsoft.Rtc.Management.{}", CMD.replace('-', "")), "", "Parameter set cannot be resolved using the specified named parameters: give -ActiveServers or -Swap.".into()));
        }
        (None, true) => {
            active = pool
                .computers
                .iter()
                .map(|c| c.fqdn.clone())
                .filter(|c| !active.contains(c))
                .collect();
        }
        (Some(Value::Map(m)), false) => {
            for (k, v) in m {
                let servers: Result<Vec<String>, PsError> = server_list(CMD, v)?
                    .iter()
                    .map(|s| canonical(s, pool))
                    .collect();
                let servers = servers?;
                match k.to_ascii_lowercase().as_str() {
                    "replace" => active = servers,
                    "add" => active.extend(servers),
                    "remove" => active.retain(|a| !servers.contains(a)),
                    _ => {
                        return Err(invalid(
                            CMD,
                            k,
                            format!(
                                "The hash table key '{k}' is not valid for a list modifier; use Add, Remove or Replace."
                            ),
                        ));
                    }
                }
            }
        }
        (Some(v), false) => {
            let servers: Result<Vec<String>, PsError> = server_list(CMD, v)?
                .iter()
                .map(|s| canonical(s, pool))
                .collect();
            active = servers?;
        }
    }
    // Keep the pool's computer order, without duplicates.
    let active: Vec<String> = pool
        .computers
        .iter()
        .map(|c| c.fqdn.clone())
        .filter(|c| active.contains(c))
        .collect();
    if active.len() > MAX_ACTIVE {
        return Err(PsError::new(
            CMD,
            "InvalidOperation",
            "InvalidOperationException",
            &format!(
                "TooManyActiveServers,Microsoft.Rtc.Management.{}",
                CMD.replace('-', "")
            ),
            &pool.fqdn,
            format!(
                "A Persistent Chat pool can have at most {MAX_ACTIVE} active servers; {} requested.",
                active.len()
            ),
        ));
    }
    if p.has("WhatIf") {
        return Ok(Vec::new());
    }
    needs_force(CMD, p.has("Force"))?;
    pool.active_servers = active;
    Ok(Vec::new())
}

fn get_service(cms: &mut Cms, args: Vec<ArgVal>) -> Result<Vec<Value>, PsError> {
    const CMD: &str = "Get-CsService";
    let p = bind(
        CMD,
        args,
        &[
            ("Identity", false),
            ("PoolFqdn", false),
            ("PersistentChatServer", true),
            ("PersistentChatDatabase", true),
            ("PersistentChatComplianceDatabase", true),
            ("LocalStore", true),
        ],
        &["Identity"],
    )?;
    if !p.has("PersistentChatServer") {
        return Err(PsError::new(
            CMD,
            "NotImplemented",
            "NotImplementedException",
            "LyncsimNotSimulated",
            "",
            "lyncsim simulates only Get-CsService -PersistentChatServer.".into(),
        ));
    }
    let pool_filter = p.get("PoolFqdn").map(Value::to_ps_string);
    let id_filter = identity(p.get("Identity"));
    Ok(cms
        .pools
        .iter()
        .filter(|x| {
            pool_filter
                .as_deref()
                .is_none_or(|f| x.fqdn.eq_ignore_ascii_case(f))
        })
        .filter(|x| {
            id_filter
                .as_deref()
                .is_none_or(|i| x.service_identity().eq_ignore_ascii_case(i))
        })
        .map(|x| {
            Value::Map(vec![
                ("Identity".into(), Value::Str(x.service_identity())),
                ("PoolFqdn".into(), Value::Str(x.fqdn.clone())),
                ("SiteId".into(), Value::Str(format!("site:{}", x.site))),
                ("Role".into(), Value::Str("PersistentChatServer".into())),
                ("ActiveServers".into(), strs(&x.active_servers)),
            ])
        })
        .collect())
}

fn get_pool(cms: &mut Cms, args: Vec<ArgVal>) -> Result<Vec<Value>, PsError> {
    const CMD: &str = "Get-CsPool";
    let p = bind(
        CMD,
        args,
        &[("Identity", false), ("LocalStore", true)],
        &["Identity"],
    )?;
    let id = identity(p.get("Identity"));
    let pools: Vec<&Pool> = cms
        .pools
        .iter()
        .filter(|x| id.as_deref().is_none_or(|i| x.fqdn.eq_ignore_ascii_case(i)))
        .collect();
    if let Some(i) = &id
        && pools.is_empty()
    {
        return Err(not_found(CMD, "Pool", i));
    }
    Ok(pools
        .into_iter()
        .map(|x| {
            let computers: Vec<String> = x.computers.iter().map(|c| c.fqdn.clone()).collect();
            Value::Map(vec![
                ("Identity".into(), Value::Str(x.fqdn.clone())),
                ("Fqdn".into(), Value::Str(x.fqdn.clone())),
                ("Site".into(), Value::Str(format!("Site:{}", x.site))),
                ("Services".into(), strs(&[x.service_identity()])),
                ("Computers".into(), strs(&computers)),
            ])
        })
        .collect())
}
