//! The single mapping from the crate's [`Error`] to `tonic::Status`. Handlers return `Error` and
//! convert with `?`/`into()`; nothing else builds a `Status` from an error by hand.

use failback_proto::LEADER_HINT_METADATA;
use tonic::Status;

use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::Protocol(p) => p.into(),
            Error::InvalidInput(_) | Error::Config { .. } | Error::Topology(_) | Error::Tls(_) => {
                Status::invalid_argument(msg)
            }
            Error::PermissionDenied(_) => Status::permission_denied(msg),
            Error::Unauthenticated(_) => Status::unauthenticated(msg),
            Error::NotLeader { hint } => {
                let mut s = Status::unavailable(msg);
                if let Some(v) = hint.and_then(|h| h.parse().ok()) {
                    s.metadata_mut().insert(LEADER_HINT_METADATA, v);
                }
                s
            }
            Error::Deposed(_) => Status::failed_precondition(msg),
            Error::NotFound(_) => Status::not_found(msg),
            Error::AlreadyExists(_) => Status::already_exists(msg),
            Error::Store(_) => Status::unavailable(msg),
            Error::Unreachable(_) | Error::AgentUnavailable(_) => Status::unavailable(msg),
            Error::Remote { code, message } => Status::new(code, message),
            Error::Timeout(_) => Status::deadline_exceeded(msg),
            Error::Io { .. } | Error::Internal(_) => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_carries_hint() {
        let s: Status = Error::NotLeader {
            hint: Some("c2@10.0.0.2:7443".into()),
        }
        .into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(
            s.metadata().get(LEADER_HINT_METADATA).unwrap(),
            "c2@10.0.0.2:7443"
        );
        let s: Status = Error::PermissionDenied("no".into()).into();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
    }
}
