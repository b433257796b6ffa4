//! How `failbackctl inspect` prints an agent's view: one line per fact for people, a JSON document
//! with stable field names for scripts. Failed items are shown with their error in place, so a
//! partial view is still a view.

use failback_proto::pb;
use failback_proto::pb::operation_output::Kind as Out;
use serde_json::{Value, json};

use super::output::{Format, table};

fn state_name(v: i32) -> &'static str {
    match pb::PoolStateValue::try_from(v) {
        Ok(pb::PoolStateValue::Normal) => "Normal",
        Ok(pb::PoolStateValue::FailedOver) => "FailedOver",
        _ => "unknown",
    }
}

/// One item as (label, human text, JSON).
fn item(i: &pb::InspectItem) -> (String, String, Value) {
    let label = i.operation.clone();
    let outcome = i.result.as_ref().and_then(|r| r.outcome.clone());
    match outcome {
        Some(pb::operation_result::Outcome::Error(e)) => (
            label,
            format!("ERROR ({:?}{}): {}", e.kind(), if e.retryable { ", retryable" } else { "" }, e.message),
            json!({"error": {"kind": format!("{:?}", e.kind()), "retryable": e.retryable, "message": e.message, "sql_error": e.sql_error}}),
        ),
        None => (label, "no result".into(), json!({"error": {"message": "no result"}})),
        Some(pb::operation_result::Outcome::Output(o)) => match o.kind {
            Some(Out::Instance(x)) => {
                let services: Vec<String> = x.services.iter().map(|s| format!("{} {} ({}, {})", s.name, s.status, s.startup_type, s.account)).collect();
                (
                    "instance".into(),
                    format!(
                        "{} {} {}; data {} log {} (from {}){}",
                        x.server_name,
                        x.product_version,
                        x.edition,
                        x.default_data_path,
                        x.default_log_path,
                        x.paths_source,
                        if services.is_empty() { "; services unknown".to_string() } else { format!("; {}", services.join("; ")) }
                    ),
                    json!({"server_name": x.server_name, "product_version": x.product_version, "edition": x.edition,
                           "default_data_path": x.default_data_path, "default_log_path": x.default_log_path,
                           "paths_source": x.paths_source,
                           "services": x.services.iter().map(|s| json!({"name": s.name, "status": s.status, "startup_type": s.startup_type, "account": s.account})).collect::<Vec<_>>()}),
                )
            }
            Some(Out::DatabaseStates(x)) => (
                "databases".into(),
                x.databases
                    .iter()
                    .map(|d| {
                        if d.exists {
                            format!("{} {} {} {}{}", d.name, d.state, d.recovery_model, d.user_access, if d.is_in_standby { " standby" } else { "" })
                        } else {
                            format!("{} absent", d.name)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" | "),
                Value::Array(
                    x.databases
                        .iter()
                        .map(|d| json!({"name": d.name, "exists": d.exists, "state": d.state, "recovery_model": d.recovery_model,
                                         "user_access": d.user_access, "is_in_standby": d.is_in_standby, "is_read_only": d.is_read_only}))
                        .collect(),
                ),
            ),
            Some(Out::MirroringStates(x)) => (
                "mirroring".into(),
                x.databases
                    .iter()
                    .map(|m| if m.mirrored { format!("{} {} {} partner {}", m.database, m.role, m.state, m.partner_instance) } else { format!("{} not mirrored", m.database) })
                    .collect::<Vec<_>>()
                    .join(" | "),
                Value::Array(
                    x.databases
                        .iter()
                        .map(|m| json!({"database": m.database, "mirrored": m.mirrored, "role": m.role, "state": m.state,
                                         "partner_name": m.partner_name, "partner_instance": m.partner_instance, "safety_level": m.safety_level}))
                        .collect(),
                ),
            ),
            Some(Out::Sessions(x)) => (
                format!("sessions {}", i.target),
                if x.sessions.is_empty() {
                    "none".into()
                } else {
                    x.sessions.iter().map(|s| format!("{} {}@{} ({})", s.spid, s.login, s.host_name, s.program_name)).collect::<Vec<_>>().join(", ")
                },
                Value::Array(
                    x.sessions
                        .iter()
                        .map(|s| json!({"spid": s.spid, "login": s.login, "host_name": s.host_name, "program_name": s.program_name}))
                        .collect(),
                ),
            ),
            Some(Out::PoolState(x)) => (
                format!("pool {}", x.pool_fqdn),
                format!("{} (identity '{}')", state_name(x.state), x.identity),
                json!({"pool_fqdn": x.pool_fqdn, "state": state_name(x.state), "identity": x.identity}),
            ),
            Some(Out::PoolServers(x)) => (
                format!("servers {}", x.pool_fqdn),
                x.servers
                    .iter()
                    .map(|s| if x.active_servers.iter().any(|a| a.eq_ignore_ascii_case(s)) { format!("{s} (active)") } else { s.clone() })
                    .collect::<Vec<_>>()
                    .join(", "),
                json!({"pool_fqdn": x.pool_fqdn, "service_identity": x.service_identity, "servers": x.servers, "active_servers": x.active_servers}),
            ),
            Some(Out::LogShipping(x)) => {
                let mut parts = Vec::new();
                if let Some(p) = &x.primary {
                    let peers: Vec<String> = p.secondaries.iter().map(|s| format!("{}/{}", s.server, s.database)).collect();
                    parts.push(format!(
                        "primary of {} to {} (last backup {} at {})",
                        p.database,
                        if peers.is_empty() { "-".into() } else { peers.join(", ") },
                        if p.last_backup_file.is_empty() { "-" } else { &p.last_backup_file },
                        if p.last_backup_date.is_empty() { "-" } else { &p.last_backup_date }
                    ));
                }
                if let Some(s) = &x.secondary {
                    parts.push(format!(
                        "secondary of {}/{} (last copied {}, last restored {} at {})",
                        s.primary_server,
                        s.primary_database,
                        if s.last_copied_file.is_empty() { "-" } else { &s.last_copied_file },
                        if s.last_restored_file.is_empty() { "-" } else { &s.last_restored_file },
                        if s.last_restored_date.is_empty() { "-" } else { &s.last_restored_date }
                    ));
                }
                if x.monitor.iter().any(|m| m.alert) {
                    parts.push("ALERT: a log shipping threshold is exceeded".into());
                }
                (
                    format!("log shipping {}", i.target),
                    if parts.is_empty() { "not configured".into() } else { parts.join("; ") },
                    json!({
                        "primary": x.primary.as_ref().map(|p| json!({"database": p.database, "backup_directory": p.backup_directory, "backup_share": p.backup_share,
                            "last_backup_file": p.last_backup_file, "last_backup_date": p.last_backup_date,
                            "secondaries": p.secondaries.iter().map(|s| json!({"server": s.server, "database": s.database})).collect::<Vec<_>>()})),
                        "secondary": x.secondary.as_ref().map(|s| json!({"database": s.database, "primary_server": s.primary_server, "primary_database": s.primary_database,
                            "backup_source_directory": s.backup_source_directory, "backup_destination_directory": s.backup_destination_directory,
                            "last_copied_file": s.last_copied_file, "last_copied_date": s.last_copied_date,
                            "last_restored_file": s.last_restored_file, "last_restored_date": s.last_restored_date, "standby": s.standby})),
                        "alert": x.monitor.iter().any(|m| m.alert),
                    }),
                )
            }
            other => (label, format!("{other:?}"), json!({"raw": format!("{other:?}")})),
        },
    }
}

/// Renders the view.
pub fn render(view: &pb::InspectResponse, format: Format) -> String {
    let items: Vec<(String, String, Value)> = view.items.iter().map(item).collect();
    match format {
        Format::Json => {
            let doc = json!({
                "agent": view.agent_id,
                "datacenter": view.datacenter,
                "roles": view.roles,
                "capabilities": view.capabilities,
                "items": view.items.iter().zip(&items).map(|(i, (_, _, v))| json!({"operation": i.operation, "target": i.target, "result": v})).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
        Format::Table => {
            let head = format!(
                "agent {} in {}; roles: {}; backends: {}",
                view.agent_id,
                view.datacenter,
                if view.roles.is_empty() {
                    "-".into()
                } else {
                    view.roles.join(", ")
                },
                view.capabilities.join(", ")
            );
            let rows: Vec<Vec<String>> = items.into_iter().map(|(l, t, _)| vec![l, t]).collect();
            format!("{head}\n{}", table(&["WHAT", "STATE"], &rows))
        }
    }
}
