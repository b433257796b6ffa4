//! Small accessors for operation results in tests: the output of a success, the error of a
//! failure, each panicking with the whole result when it is the other kind (a test failure that
//! shows what came back).

use failback_proto::pb;
use failback_proto::pb::operation_output::Kind as Out;

/// The output of a successful result.
///
/// # Panics
/// When the result is an error or empty (test helper).
pub fn output(r: pb::OperationResult) -> Out {
    match r.outcome {
        Some(pb::operation_result::Outcome::Output(pb::OperationOutput { kind: Some(k) })) => k,
        other => panic!("expected an output, got {other:?}"),
    }
}

/// The error of a failed result.
///
/// # Panics
/// When the result is a success or empty (test helper).
pub fn error(r: pb::OperationResult) -> pb::OperationError {
    match r.outcome {
        Some(pb::operation_result::Outcome::Error(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}
