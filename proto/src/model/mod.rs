//! Hand-written model types: typed ids and the validated forms of the messages each side receives.
//!
//! Conversion happens on the receiving side only (`TryFrom<pb::X>`): required fields become
//! non-optional, ids are checked, and a bad message becomes a [`ProtocolError`] that names the
//! field, which maps to `INVALID_ARGUMENT`. Sending sides build `pb` types with `From`.

pub mod logship;
mod operation;

use std::fmt;

pub use operation::{ActiveServers, Fqdn, Operation, PathText, PoolStateValue, Recovery};

use crate::pb;

/// A protocol-level problem with a received message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A required field or oneof was absent.
    #[error("missing field '{0}'")]
    Missing(&'static str),
    /// A field had a value we do not accept.
    #[error("invalid field '{field}': {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: the agent speaks version {theirs}, this coordinator speaks version {ours}; upgrade the older side"
    )]
    Version {
        /// Version the peer sent (0 = unset).
        theirs: u32,
        /// Our [`crate::PROTOCOL_VERSION`].
        ours: u32,
    },
}

impl From<ProtocolError> for tonic::Status {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Version { .. } => tonic::Status::failed_precondition(e.to_string()),
            _ => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// An agent's id: the name in its certificate (see [`crate::identity`]).
    ///
    /// ```compile_fail
    /// # use failback_proto::model::{AgentId, OpId};
    /// fn takes_agent(_: AgentId) {}
    /// let op: OpId = OpId::new("r/p/s/1").unwrap();
    /// takes_agent(op); // an OpId is not an AgentId
    /// ```
    AgentId
);
string_id!(
    /// An operation id, deterministic per run/pool/step/attempt so the agent journal can dedupe.
    OpId
);

impl AgentId {
    /// Validates a certificate name as an agent id.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        crate::identity::validate_name(&s)?;
        Ok(AgentId(s))
    }
}

impl OpId {
    /// An op id is 1 to 512 printable ASCII characters without spaces.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        if s.is_empty() || s.len() > 512 || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "op id '{}' must be 1 to 512 printable ASCII characters without spaces",
                s.escape_default()
            ));
        }
        Ok(OpId(s))
    }
}

/// The leader's fencing epoch: the create revision of its etcd leader key (or the standalone
/// store's counter). Strictly increasing across leaders; 0 means "none".
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A database name accepted anywhere in failback: a SQL Server *regular identifier* (first a
/// letter or `_`, then letters, digits, `_`, `@`, `$`, `#`; 1 to 128 characters). Refusing
/// everything else here means the quoting module never has to make a hostile name safe, only to
/// quote a safe one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DatabaseName(String);

impl DatabaseName {
    /// Validates `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok =
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '$' | '#'));
        // Test-only mutation (never in release builds): DESIGN §9.8's scenario.
        if (!first_ok || !rest_ok || s.len() > 128)
            && !crate::test_break::broken(crate::test_break::IDENTIFIER_VALIDATION)
        {
            return Err(format!(
                "'{}' is not a valid database name (a letter or '_' first, then letters, digits, '_', '@', '$' or '#'; at most 128 characters)",
                s.escape_default()
            ));
        }
        Ok(DatabaseName(s))
    }

    /// The name as text (unquoted).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DatabaseName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DatabaseName::new(s).map_err(serde::de::Error::custom)
    }
}

/// A validated Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Agent binary version.
    pub agent_version: String,
    /// Configured backends.
    pub capabilities: Vec<String>,
    /// Highest epoch the agent accepted.
    pub highest_epoch_seen: Epoch,
}

/// The major version in a SQL Server `ProductVersion` text (`13.0.6300.2` → 13, `10.50.6000.34`
/// → 10); `None` when it is not a version. The agent (which session catalog to read) and the
/// coordinator (version checks before a restore or log shipping) read versions the same way.
pub fn sql_major_version(product_version: &str) -> Option<u32> {
    product_version.trim().split('.').next()?.parse().ok()
}

/// What an agent may announce: its backends, and `liveness` (it checks the coordinator's
/// heartbeats, see `Welcome.liveness_timeout_ms`). A coordinator refuses names it does not know,
/// so coordinators are upgraded before agents.
pub const CAPABILITIES: [&str; 5] = ["sql", "files", "lync", "host", "liveness"];

impl TryFrom<pb::Hello> for Hello {
    type Error = ProtocolError;
    fn try_from(h: pb::Hello) -> Result<Self, Self::Error> {
        if h.protocol_version != crate::PROTOCOL_VERSION {
            return Err(ProtocolError::Version {
                theirs: h.protocol_version,
                ours: crate::PROTOCOL_VERSION,
            });
        }
        if h.agent_version.is_empty() || h.agent_version.len() > 64 {
            return Err(ProtocolError::Invalid {
                field: "agent_version",
                reason: "must be 1 to 64 characters".into(),
            });
        }
        for c in &h.capabilities {
            if !CAPABILITIES.contains(&c.as_str()) {
                return Err(ProtocolError::Invalid {
                    field: "capabilities",
                    reason: format!("unknown capability '{}'", c.escape_default()),
                });
            }
        }
        Ok(Hello {
            agent_version: h.agent_version,
            capabilities: h.capabilities,
            highest_epoch_seen: Epoch(h.highest_epoch_seen),
        })
    }
}

/// A validated instruction, as the agent receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Deterministic op id.
    pub op_id: OpId,
    /// Epoch of the leader that sent it.
    pub epoch: Epoch,
    /// Absolute deadline in Unix milliseconds.
    pub deadline_unix_ms: u64,
    /// What to do.
    pub operation: Operation,
}

impl TryFrom<pb::Instruction> for Instruction {
    type Error = ProtocolError;
    fn try_from(i: pb::Instruction) -> Result<Self, Self::Error> {
        let op_id = OpId::new(i.op_id).map_err(|reason| ProtocolError::Invalid {
            field: "op_id",
            reason,
        })?;
        if i.epoch == 0 {
            return Err(ProtocolError::Missing("epoch"));
        }
        let kind = i
            .operation
            .and_then(|o| o.kind)
            .ok_or(ProtocolError::Missing("operation"))?;
        let operation = Operation::try_from(kind)?;
        Ok(Instruction {
            op_id,
            epoch: Epoch(i.epoch),
            deadline_unix_ms: i.deadline_unix_ms,
            operation,
        })
    }
}

/// A validated Welcome, as the agent receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The coordinator's certificate name.
    pub coordinator_id: String,
    /// Leader epoch.
    pub epoch: Epoch,
    /// Heartbeat interval to keep.
    pub heartbeat_interval: std::time::Duration,
    /// Our id as the coordinator read it.
    pub agent_id: String,
    /// Our data center per the topology.
    pub datacenter: String,
    /// End the session after this long without a coordinator message (`None`: no check).
    pub liveness_timeout: Option<std::time::Duration>,
}

impl TryFrom<pb::Welcome> for Welcome {
    type Error = ProtocolError;
    fn try_from(w: pb::Welcome) -> Result<Self, Self::Error> {
        if w.epoch == 0 {
            return Err(ProtocolError::Missing("epoch"));
        }
        if !(50..=600_000).contains(&w.heartbeat_interval_ms) {
            return Err(ProtocolError::Invalid {
                field: "heartbeat_interval_ms",
                reason: format!("{} is outside 50..=600000", w.heartbeat_interval_ms),
            });
        }
        // 0 = no check; otherwise long enough for a beat every third of it over a real network.
        if w.liveness_timeout_ms != 0 && !(300..=600_000).contains(&w.liveness_timeout_ms) {
            return Err(ProtocolError::Invalid {
                field: "liveness_timeout_ms",
                reason: format!("{} is outside 300..=600000 (or 0)", w.liveness_timeout_ms),
            });
        }
        Ok(Welcome {
            coordinator_id: w.coordinator_id,
            epoch: Epoch(w.epoch),
            heartbeat_interval: std::time::Duration::from_millis(u64::from(
                w.heartbeat_interval_ms,
            )),
            agent_id: w.agent_id,
            datacenter: w.datacenter,
            liveness_timeout: (w.liveness_timeout_ms != 0)
                .then(|| std::time::Duration::from_millis(u64::from(w.liveness_timeout_ms))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        assert!(DatabaseName::new("mgc").is_ok());
        assert!(DatabaseName::new("_x$1").is_ok());
        for bad in [
            "",
            "1db",
            "a]b",
            "a'b",
            "a;b",
            "a b",
            "a--b",
            &"x".repeat(129),
        ] {
            assert!(DatabaseName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hello_version_checked() {
        let h = pb::Hello {
            protocol_version: 0,
            agent_version: "1".into(),
            ..Default::default()
        };
        let e = Hello::try_from(h).unwrap_err();
        assert!(matches!(e, ProtocolError::Version { theirs: 0, .. }));
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::FailedPrecondition
        );
    }

    #[test]
    fn instruction_requires_fields() {
        let i = pb::Instruction {
            op_id: "r/p/s/1".into(),
            epoch: 3,
            deadline_unix_ms: 0,
            operation: None,
        };
        assert_eq!(
            Instruction::try_from(i),
            Err(ProtocolError::Missing("operation"))
        );
    }
}
