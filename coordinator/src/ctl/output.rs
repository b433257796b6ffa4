//! How failbackctl prints answers: aligned tables for people, JSON (stable field names) for
//! scripts. Times are shown as ages ("1.2s ago") because an operator at 3 a.m. wants "is it
//! alive", not an epoch timestamp; JSON carries both.

use failback_proto::clock::unix_ms as now_ms;
use failback_proto::pb;
use serde::Serialize;

/// Output format chosen with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

/// One agent as `agents --output json` prints it.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct AgentRow {
    /// Certificate name.
    pub id: String,
    /// Data center.
    pub datacenter: String,
    /// Topology roles.
    pub roles: Vec<String>,
    /// Live session now.
    pub connected: bool,
    /// Last heartbeat, Unix ms (null = never).
    pub last_heartbeat_unix_ms: Option<u64>,
    /// Age of the last heartbeat in ms (null = never).
    pub last_heartbeat_age_ms: Option<u64>,
    /// Agent version (null = never connected).
    pub version: Option<String>,
    /// Configured backends.
    pub capabilities: Vec<String>,
    /// Peer address of the current or last session.
    pub peer_address: Option<String>,
}

/// The whole `agents --output json` document.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct AgentsDoc {
    /// Coordinator that answered.
    pub coordinator: String,
    /// Heartbeat interval in force.
    pub heartbeat_interval_ms: u32,
    /// Agents, sorted by id.
    pub agents: Vec<AgentRow>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Builds the document from the answer.
pub fn agents_doc(coordinator: &str, resp: &pb::ListAgentsResponse) -> AgentsDoc {
    let now = now_ms();
    AgentsDoc {
        coordinator: coordinator.to_string(),
        heartbeat_interval_ms: resp.heartbeat_interval_ms,
        agents: resp
            .agents
            .iter()
            .map(|a| {
                let hb = (a.last_heartbeat_unix_ms > 0).then_some(a.last_heartbeat_unix_ms);
                AgentRow {
                    id: a.id.clone(),
                    datacenter: a.datacenter.clone(),
                    roles: a.roles.clone(),
                    connected: a.connected,
                    last_heartbeat_unix_ms: hb,
                    last_heartbeat_age_ms: hb.map(|t| now.saturating_sub(t)),
                    version: non_empty(&a.version),
                    capabilities: a.capabilities.clone(),
                    peer_address: non_empty(&a.peer_address),
                }
            })
            .collect(),
    }
}

fn age(ms: Option<u64>) -> String {
    match ms {
        None => "never".to_string(),
        Some(ms) if ms < 60_000 => format!("{:.1}s ago", ms as f64 / 1000.0),
        Some(ms) if ms < 3_600_000 => format!("{}m ago", ms / 60_000),
        Some(ms) => format!("{}h ago", ms / 3_600_000),
    }
}

/// Renders rows as aligned columns with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    out
}

/// Renders the agents document as a table (or JSON).
pub fn render_agents(doc: &AgentsDoc, format: Format) -> String {
    match format {
        Format::Json => {
            serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = doc
                .agents
                .iter()
                .map(|a| {
                    vec![
                        a.id.clone(),
                        a.datacenter.clone(),
                        if a.connected {
                            "yes".into()
                        } else {
                            "NO".into()
                        },
                        age(a.last_heartbeat_age_ms),
                        a.version.clone().unwrap_or_else(|| "-".into()),
                        if a.roles.is_empty() {
                            "-".into()
                        } else {
                            a.roles.join(",")
                        },
                    ]
                })
                .collect();
            let connected = doc.agents.iter().filter(|a| a.connected).count();
            format!(
                "{}\n{connected} of {} agents connected to {} (heartbeat every {} ms)",
                table(
                    &[
                        "AGENT",
                        "DC",
                        "CONNECTED",
                        "LAST HEARTBEAT",
                        "VERSION",
                        "ROLES"
                    ],
                    &rows
                ),
                doc.agents.len(),
                doc.coordinator,
                doc.heartbeat_interval_ms
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y");
        assert_eq!(age(None), "never");
        assert_eq!(age(Some(1500)), "1.5s ago");
    }
}
