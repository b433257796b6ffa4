//! Turns the raw file into a [`Topology`], collecting every problem with its line.
//!
//! Decisions recorded here:
//! - Databases: Persistent Chat names its databases `mgc` and `mgccomp`; Topology Builder offers
//!   no other names, so anything else is a typo and refused. `mgc` is required.
//! - Mirrors are optional (FB-2 runs only where mirroring exists); primary and backup are not.
//! - Two pools cannot share a SQL instance: both databases would be named `mgc`.
//! - Paths (`share`, `copy_dir`) must be absolute (UNC `\\server\share`, a drive `D:\…`, or `/…`
//!   for the lab on Linux) and may not contain `..`: the agent confines file access to configured
//!   roots, and a relative or climbing path would mean something different on each host.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use failback_proto::identity::validate_name;
use failback_proto::model::{AgentId, DatabaseName};
use toml::Spanned;

use super::raw::{RawInstance, RawPool, RawTopology};
use super::{AgentEntry, Pool, Problem, SqlInstance, SqlRole, Topology};

struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text
            .get(..offset.min(self.text.len()))
            .map_or(1, |t| t.matches('\n').count() + 1)
    }

    fn at<T>(&mut self, place: &Spanned<T>, context: &str, message: impl Into<String>) {
        let line = self.line(place.span().start);
        self.problems.push(Problem {
            line: Some(line),
            context: context.to_string(),
            message: message.into(),
        });
    }
}

pub(super) fn parse(text: &str) -> Result<Topology, Vec<Problem>> {
    let raw: RawTopology = toml::from_str(text).map_err(|e| {
        let c = Checker {
            text,
            problems: vec![],
        };
        vec![Problem {
            line: e.span().map(|s| c.line(s.start)),
            context: String::new(),
            message: e.message().trim().to_string(),
        }]
    })?;
    let mut c = Checker {
        text,
        problems: vec![],
    };
    let agents = check_agents(&mut c, &raw);
    if raw.pool.is_empty() {
        c.problems.push(Problem {
            line: None,
            context: String::new(),
            message: "no [[pool]] tables: a topology describes at least one Persistent Chat pool"
                .into(),
        });
    }
    let mut pools = Vec::new();
    let mut seen_pools: HashMap<String, usize> = HashMap::new();
    let mut seen_instances: HashMap<String, String> = HashMap::new();
    for p in &raw.pool {
        let fqdn = p.get_ref().fqdn.get_ref().to_ascii_lowercase();
        let line = c.line(p.get_ref().fqdn.span().start);
        if let Some(first) = seen_pools.insert(fqdn.clone(), line) {
            c.at(
                &p.get_ref().fqdn,
                &format!("pool '{fqdn}'"),
                format!("duplicate pool (first defined on line {first})"),
            );
        }
        if let Some(pool) = check_pool(&mut c, p.get_ref(), &agents, &mut seen_instances) {
            pools.push(pool);
        }
    }
    if c.problems.is_empty() {
        Ok(Topology { agents, pools })
    } else {
        c.problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(c.problems)
    }
}

fn check_agents(c: &mut Checker<'_>, raw: &RawTopology) -> BTreeMap<AgentId, AgentEntry> {
    let mut agents = BTreeMap::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    for a in &raw.agent {
        let a = a.get_ref();
        let id_text = a.id.get_ref().to_ascii_lowercase();
        let ctx = format!("agent '{id_text}'");
        let id = match AgentId::new(id_text.clone()) {
            Ok(id) => id,
            Err(e) => {
                c.at(
                    &a.id,
                    &ctx,
                    format!("invalid agent id: {e} (agent ids are certificate names)"),
                );
                continue;
            }
        };
        let dc = a.datacenter.get_ref();
        if let Err(e) = validate_name(dc) {
            c.at(&a.datacenter, &ctx, format!("invalid datacenter: {e}"));
        }
        let line = c.line(a.id.span().start);
        if let Some(first) = lines.insert(id_text, line) {
            c.at(
                &a.id,
                &ctx,
                format!("duplicate agent id (first defined on line {first})"),
            );
            continue;
        }
        agents.insert(
            id,
            AgentEntry {
                datacenter: dc.clone(),
            },
        );
    }
    agents
}

fn known_agent(
    c: &mut Checker<'_>,
    agents: &BTreeMap<AgentId, AgentEntry>,
    name: &Spanned<String>,
    ctx: &str,
    want_dc: &str,
) -> Option<AgentId> {
    let lower = name.get_ref().to_ascii_lowercase();
    let found = AgentId::new(lower.clone())
        .ok()
        .filter(|id| agents.contains_key(id));
    let Some(id) = found else {
        let known: Vec<&str> = agents.keys().map(AgentId::as_str).collect();
        c.at(
            name,
            ctx,
            format!(
                "unknown agent '{}' (add an [[agent]] table for it; known agents: {})",
                name.get_ref(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
        return None;
    };
    let dc = &agents[&id].datacenter;
    if dc != want_dc {
        c.at(
            name,
            ctx,
            format!("agent '{id}' is in data center '{dc}', but this role is in '{want_dc}'"),
        );
    }
    Some(id)
}

fn check_path(c: &mut Checker<'_>, p: &Spanned<String>, ctx: &str) {
    let s = p.get_ref();
    let absolute = s.starts_with("\\\\")
        || s.starts_with('/')
        || (s.len() >= 3 && s.as_bytes()[0].is_ascii_alphabetic() && &s[1..3] == ":\\");
    if s.trim().is_empty() {
        c.at(p, ctx, "must not be empty");
    } else if !absolute {
        c.at(
            p,
            ctx,
            format!("'{s}' is not absolute (use \\\\server\\share, D:\\folder, or /folder)"),
        );
    } else if s.split(['/', '\\']).any(|part| part == "..") {
        c.at(p, ctx, format!("'{s}' contains '..'"));
    } else if s.chars().any(char::is_control) {
        c.at(p, ctx, "contains control characters");
    }
}

fn check_fqdn(c: &mut Checker<'_>, s: &Spanned<String>, ctx: &str, what: &str) -> bool {
    let ok = validate_name(s.get_ref()).is_ok() && s.get_ref().contains('.');
    if !ok {
        c.at(
            s,
            ctx,
            format!(
                "'{}' is not a fully qualified {what} name (like pchat01.contoso.com)",
                s.get_ref()
            ),
        );
    }
    ok
}

fn check_instance(c: &mut Checker<'_>, inst: &RawInstance, ctx: &str) -> bool {
    let s = inst.instance.get_ref();
    let (host, rest) = match s.split_once(['\\', ',']) {
        Some((h, r)) => (h, Some(r)),
        None => (s.as_str(), None),
    };
    let rest_ok = match (s.contains(','), rest) {
        (true, Some(port)) => port.parse::<u16>().is_ok_and(|p| p > 0),
        (false, Some(name)) => {
            !name.is_empty()
                && name.len() <= 16
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '$')
        }
        (_, None) => true,
    };
    let host_ok = validate_name(host).is_ok();
    if !host_ok || !rest_ok {
        c.at(
            &inst.instance,
            ctx,
            format!("'{s}' is not an instance name (write host, host\\INSTANCE or host,port)"),
        );
    }
    host_ok && rest_ok
}

fn check_pool(
    c: &mut Checker<'_>,
    p: &RawPool,
    agents: &BTreeMap<AgentId, AgentEntry>,
    seen_instances: &mut HashMap<String, String>,
) -> Option<Pool> {
    let before = c.problems.len();
    let fqdn = p.fqdn.get_ref().to_ascii_lowercase();
    let ctx = format!("pool '{fqdn}'");
    check_fqdn(c, &p.fqdn, &format!("{ctx}: fqdn"), "pool");
    let known_dcs: BTreeSet<&str> = agents.values().map(|a| a.datacenter.as_str()).collect();
    let (pdc, bdc) = (p.primary_dc.get_ref(), p.backup_dc.get_ref());
    for (field, dc) in [("primary_dc", &p.primary_dc), ("backup_dc", &p.backup_dc)] {
        if !known_dcs.contains(dc.get_ref().as_str()) {
            c.at(
                dc,
                &format!("{ctx}: {field}"),
                format!("no agent is in data center '{}'", dc.get_ref()),
            );
        }
    }
    if pdc == bdc {
        c.at(
            &p.backup_dc,
            &format!("{ctx}: backup_dc"),
            format!("the backup data center must differ from the primary ('{pdc}')"),
        );
    }

    let mut databases = Vec::new();
    for d in p.databases.get_ref() {
        match DatabaseName::new(d.get_ref().clone()) {
            Ok(name) if name.as_str() == "mgc" || name.as_str() == "mgccomp" => {
                if databases.contains(&name) {
                    c.at(
                        d,
                        &format!("{ctx}: databases"),
                        format!("'{name}' is listed twice"),
                    );
                }
                databases.push(name);
            }
            Ok(name) => c.at(
                d,
                &format!("{ctx}: databases"),
                format!("'{name}' is not a Persistent Chat database (only mgc and mgccomp)"),
            ),
            Err(e) => c.at(d, &format!("{ctx}: databases"), e),
        }
    }
    if !p.databases.get_ref().is_empty() && !databases.iter().any(|d| d.as_str() == "mgc") {
        c.at(
            &p.databases,
            &format!("{ctx}: databases"),
            "must include mgc",
        );
    } else if p.databases.get_ref().is_empty() {
        c.at(
            &p.databases,
            &format!("{ctx}: databases"),
            "must not be empty (mgc, and mgccomp where compliance is on)",
        );
    }
    check_path(c, &p.share, &format!("{ctx}: share"));
    check_path(c, &p.copy_dir, &format!("{ctx}: copy_dir"));

    let raw_sql = p.sql.get_ref();
    let mut sql = BTreeMap::new();
    let mut used_agents: HashMap<AgentId, &'static str> = HashMap::new();
    let roles = [
        (SqlRole::Primary, Some(&raw_sql.primary), pdc),
        (SqlRole::PrimaryMirror, raw_sql.primary_mirror.as_ref(), pdc),
        (SqlRole::Backup, Some(&raw_sql.backup), bdc),
        (SqlRole::BackupMirror, raw_sql.backup_mirror.as_ref(), bdc),
    ];
    for (role, inst, dc) in roles {
        let Some(inst) = inst else { continue };
        let inst = inst.get_ref();
        let rctx = format!("{ctx}: sql.{}", role.as_str());
        let agent = known_agent(c, agents, &inst.agent, &format!("{rctx}.agent"), dc);
        let inst_ok = check_instance(c, inst, &format!("{rctx}.instance"));
        if let Some(agent) = agent {
            if let Some(other) = used_agents.insert(agent.clone(), role.as_str()) {
                c.at(
                    &inst.agent,
                    &format!("{rctx}.agent"),
                    format!("agent '{agent}' already manages sql.{other} of this pool"),
                );
            }
            if inst_ok {
                let key = inst.instance.get_ref().to_ascii_lowercase();
                let owner = format!("sql.{} of pool '{fqdn}'", role.as_str());
                if let Some(first) = seen_instances.insert(key.clone(), owner) {
                    c.at(
                        &inst.instance,
                        &format!("{rctx}.instance"),
                        format!(
                            "instance '{key}' is already {first}; each role needs its own instance"
                        ),
                    );
                }
                sql.insert(
                    role,
                    SqlInstance {
                        agent,
                        instance: inst.instance.get_ref().clone(),
                    },
                );
            }
        }
    }

    let lync_shell = check_per_dc(
        c,
        &p.lync_shell,
        &format!("{ctx}: lync_shell"),
        pdc,
        bdc,
        |c, dc, a, lctx| known_agent(c, agents, a, lctx, dc).map(|id| id.as_str().to_string()),
    )
    .into_iter()
    .map(|(dc, list)| {
        (
            dc,
            list.into_iter()
                .filter_map(|s| AgentId::new(s).ok())
                .collect(),
        )
    })
    .collect();
    let mut seen_servers: HashMap<String, String> = HashMap::new();
    let chat_servers = check_per_dc(
        c,
        &p.chat_servers,
        &format!("{ctx}: chat_servers"),
        pdc,
        bdc,
        |c, dc, s, sctx| {
            if !check_fqdn(c, s, sctx, "server") {
                return None;
            }
            let lower = s.get_ref().to_ascii_lowercase();
            if let Some(first) = seen_servers.insert(lower.clone(), dc.to_string()) {
                c.at(
                    s,
                    sctx,
                    format!("chat server '{lower}' is already listed under '{first}'"),
                );
                return None;
            }
            Some(lower)
        },
    );

    (c.problems.len() == before).then(|| Pool {
        fqdn,
        primary_dc: pdc.clone(),
        backup_dc: bdc.clone(),
        databases,
        share: p.share.get_ref().clone(),
        copy_dir: p.copy_dir.get_ref().clone(),
        lync_shell,
        sql,
        chat_servers,
    })
}

/// Checks a `{ dc1 = [...], dc2 = [...] }` table: exactly the pool's two data centers, each with a
/// non-empty list whose items `item` checks.
fn check_per_dc(
    c: &mut Checker<'_>,
    table: &Spanned<BTreeMap<String, Vec<Spanned<String>>>>,
    ctx: &str,
    pdc: &str,
    bdc: &str,
    mut item: impl FnMut(&mut Checker<'_>, &str, &Spanned<String>, &str) -> Option<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (dc, list) in table.get_ref() {
        if dc != pdc && dc != bdc {
            c.at(
                table,
                ctx,
                format!(
                    "'{dc}' is neither the pool's primary_dc ('{pdc}') nor its backup_dc ('{bdc}')"
                ),
            );
            continue;
        }
        let dctx = format!("{ctx}.{dc}");
        if list.is_empty() {
            c.at(table, &dctx, "must list at least one");
        }
        let items: Vec<String> = list.iter().filter_map(|s| item(c, dc, s, &dctx)).collect();
        out.insert(dc.clone(), items);
    }
    for dc in [pdc, bdc] {
        if !table.get_ref().contains_key(dc) && pdc != bdc {
            c.at(table, ctx, format!("no entry for data center '{dc}'"));
        }
    }
    out
}
