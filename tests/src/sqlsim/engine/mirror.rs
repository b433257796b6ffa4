//! Database mirroring between sim instances, through a registry file the partners share
//! (`--mirror-registry FILE`, the same path given to both). Real mirroring setup (endpoints,
//! certificates, `SET PARTNER = 'TCP://…'`) is out of scope; the sim administrator starts a
//! session on the principal with
//!
//! ```sql
//! EXEC sqlsim.mirror N'mgc', N'PARTNER-SERVER-NAME' [, N'SYNCHRONIZED' [, N'FULL']];
//! ```
//!
//! which needs `mgc` ONLINE and in FULL recovery here, writes the session (guid, database,
//! principal and mirror server names, state, safety) to the registry, and makes this side the
//! PRINCIPAL. Calling it again with another state (`SUSPENDED`, `DISCONNECTED`, …) changes the
//! state both sides show. Each sim reconciles with the registry before statements that read or
//! change mirroring (SELECT, ALTER DATABASE, RESTORE): the partner whose `@@SERVERNAME` is the
//! session's mirror adopts the MIRROR role and keeps its copy RESTORING (it should have been
//! restored WITH NORECOVERY first; if it does not exist, nothing is adopted); a session that left
//! the registry is dropped locally. `ALTER DATABASE x SET PARTNER FAILOVER` on a SYNCHRONIZED
//! principal swaps the roles (its copy becomes the RESTORING mirror, the partner's comes ONLINE;
//! the data itself is not streamed between sims, so the new principal holds what its copy held).
//! `ALTER DATABASE x SET PARTNER OFF` on either side removes the
//! session from the registry, so both sides clear, and the mirror copy stays RESTORING
//! (pchat-dr.md §6.1). Writes are atomic renames; setup and PARTNER OFF are rare, operator-driven
//! events, so concurrent writers are not arbitrated.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::state::{DbState, Mirroring, RecoveryModel, new_guid};
use super::{Engine, StatementResult, errors, lock};
use crate::sqlsim::tokens::ServerMessage;
use crate::sqlsim::types::Value;

/// Port shown in partner endpoint names.
const ENDPOINT_PORT: u16 = 5022;

/// One mirroring session in the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSession {
    /// `mirroring_guid`.
    pub guid: String,
    /// Database name (the same on both partners).
    pub database: String,
    /// `@@SERVERNAME` of the principal.
    pub principal: String,
    /// `@@SERVERNAME` of the mirror.
    pub mirror: String,
    /// `mirroring_state_desc`.
    pub state: String,
    /// `mirroring_safety_level_desc`.
    pub safety: String,
}

/// The registry file's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    /// Active sessions.
    pub sessions: Vec<MirrorSession>,
}

/// Reads the registry (a missing file is an empty registry).
pub fn load(path: &Path) -> Result<Registry, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the registry atomically.
pub fn save(path: &Path, reg: &Registry) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(reg).map_err(|e| e.to_string())?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn endpoint(server: &str) -> String {
    let host = server.split('\\').next().unwrap_or(server);
    format!("TCP://{host}:{ENDPOINT_PORT}")
}

/// This side's view of a session.
fn local_view(s: &MirrorSession, me_principal: bool) -> Mirroring {
    let partner = if me_principal {
        &s.mirror
    } else {
        &s.principal
    };
    Mirroring {
        guid: s.guid.clone(),
        role: if me_principal { "PRINCIPAL" } else { "MIRROR" }.into(),
        state: s.state.clone(),
        safety: s.safety.clone(),
        partner_name: endpoint(partner),
        partner_instance: partner.clone(),
    }
}

fn sim_error(text: impl Into<String>) -> ServerMessage {
    ServerMessage::new(50000, 1, 16, text)
}

impl Engine {
    /// Reconciles local mirroring roles with the registry (no-op without a registry).
    pub(super) fn sync_mirroring(&self) {
        let Some(path) = &self.options.mirror_registry else {
            return;
        };
        let reg = match load(path) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("failed to read the mirroring registry: {e}");
                return;
            }
        };
        let mut st = lock(&self.state);
        let me = st.server_name.clone();
        let mut changed = false;
        for db in &mut st.databases {
            let session = reg.sessions.iter().find(|s| {
                s.database.eq_ignore_ascii_case(&db.name) && (s.principal == me || s.mirror == me)
            });
            let wanted = session.map(|s| local_view(s, s.principal == me));
            if db.mirroring != wanted {
                let was = db.mirroring.as_ref().map(|m| m.role.as_str());
                match wanted.as_ref().map(|m| m.role.as_str()) {
                    // The mirror copy is never readable while the session lasts; a principal that
                    // lost its role to a manual failover becomes the RESTORING mirror.
                    Some("MIRROR") if was != Some("MIRROR") => db.state = DbState::Restoring,
                    // The mirror took over (SET PARTNER FAILOVER on its partner): its copy is
                    // the live database now.
                    Some("PRINCIPAL") if was == Some("MIRROR") => db.state = DbState::Online,
                    _ => {}
                }
                db.mirroring = wanted;
                changed = true;
            }
        }
        if changed && let Err(m) = self.persist(&st) {
            tracing::error!("failed to save mirroring changes: {}", m.message);
        }
    }

    /// `SET PARTNER OFF`: removes the session from the registry (both sides then clear).
    pub(super) fn end_mirroring_session(&self, guid: &str) -> Result<(), ServerMessage> {
        let Some(path) = &self.options.mirror_registry else {
            return Ok(());
        };
        let mut reg = load(path).map_err(sim_error)?;
        reg.sessions.retain(|s| s.guid != guid);
        save(path, &reg).map_err(sim_error)
    }

    /// `SET PARTNER FAILOVER` on the principal: the partners swap roles in the registry (the
    /// partner adopts PRINCIPAL at its next reconcile). Manual failover needs a SYNCHRONIZED
    /// session with SAFETY FULL and is issued on the principal; SQL Server's own error numbers for
    /// the refused cases are not modelled, so sqlsim refuses them with a 50000 naming itself
    /// rather than pretend. failback never sends FAILOVER: tests and the lab use it to put a
    /// backup instance in the MIRROR role, as a real takeover by its mirror does.
    pub(super) fn fail_over_session(
        &self,
        guid: &str,
        me: &str,
    ) -> Result<Mirroring, ServerMessage> {
        let Some(path) = &self.options.mirror_registry else {
            return Err(sim_error("sqlsim: no --mirror-registry configured"));
        };
        let mut reg = load(path).map_err(sim_error)?;
        let Some(s) = reg.sessions.iter_mut().find(|s| s.guid == guid) else {
            return Err(sim_error("sqlsim: the mirroring session left the registry"));
        };
        if s.principal != me {
            return Err(sim_error(
                "sqlsim: SET PARTNER FAILOVER is modelled only on the principal",
            ));
        }
        if s.state != "SYNCHRONIZED" || s.safety != "FULL" {
            return Err(sim_error(format!(
                "sqlsim: manual failover is modelled only for a SYNCHRONIZED session with SAFETY FULL (this one is {} with SAFETY {})",
                s.state, s.safety
            )));
        }
        std::mem::swap(&mut s.principal, &mut s.mirror);
        let view = local_view(s, false);
        save(path, &reg).map_err(sim_error)?;
        Ok(view)
    }

    /// `EXEC sqlsim.mirror db, partner [, state [, safety]]` (sim administrator only).
    pub(super) fn start_mirroring(&self, args: &[Value]) -> Result<StatementResult, ServerMessage> {
        let Some(path) = &self.options.mirror_registry else {
            return Err(sim_error("sqlsim: no --mirror-registry configured"));
        };
        let arg = |i: usize| args.get(i).and_then(Value::to_text);
        let (Some(database), Some(partner)) = (arg(0), arg(1)) else {
            return Err(sim_error(
                "usage: EXEC sqlsim.mirror db, partner [, state [, safety]]",
            ));
        };
        let state = arg(2)
            .unwrap_or_else(|| "SYNCHRONIZED".into())
            .to_uppercase();
        let safety = arg(3).unwrap_or_else(|| "FULL".into()).to_uppercase();
        let me = {
            let st = lock(&self.state);
            let db = st
                .database(&database)
                .ok_or_else(|| errors::database_not_found(&database))?;
            if db.state != DbState::Online || db.recovery_model != RecoveryModel::Full {
                return Err(ServerMessage::new(
                    1465,
                    1,
                    16,
                    format!(
                        "Database \"{}\" is not in FULL recovery mode on each of the server instances. The full recovery model is required for a database to participate in database mirroring or in an availability group.",
                        db.name
                    ),
                ));
            }
            st.server_name.clone()
        };
        let mut reg = load(path).map_err(sim_error)?;
        let existing = reg
            .sessions
            .iter_mut()
            .find(|s| s.database.eq_ignore_ascii_case(&database) && s.principal == me);
        match existing {
            Some(s) => {
                s.state = state;
                s.safety = safety;
            }
            None => reg.sessions.push(MirrorSession {
                guid: new_guid(),
                database,
                principal: me,
                mirror: partner,
                state,
                safety,
            }),
        }
        save(path, &reg).map_err(sim_error)?;
        self.sync_mirroring();
        Ok(StatementResult::done())
    }
}
