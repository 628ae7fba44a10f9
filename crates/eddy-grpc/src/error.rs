//! The one mapping of the domain error to gRPC: status code, Eddy's message, and the standard
//! details clients act on — `google.rpc.ErrorInfo` (Eddy's stable code as `reason`),
//! `google.rpc.BadRequest` (one field violation per rejected event, `events[INDEX].FIELD`) and
//! `google.rpc.RetryInfo` (how long to wait) — plus `retry-after` metadata for clients that
//! read no details.

use std::collections::HashMap;
use std::time::Duration;

use eddy_service::Error as Domain;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// What can go wrong running the gRPC front end itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("gRPC listener: {0}")]
    Listener(#[from] std::io::Error),
    #[error("gRPC reflection could not read the descriptor sets: {0}")]
    Reflection(String),
}

/// The gRPC code of a domain error.
pub(crate) fn code(e: &Domain) -> Code {
    match e {
        Domain::InvalidArgument { .. } => Code::InvalidArgument,
        Domain::TooLarge(_) | Domain::ResourceExhausted { .. } => Code::ResourceExhausted,
        Domain::NotFound(_) => Code::NotFound,
        Domain::Conflict(_) => Code::FailedPrecondition,
        Domain::Unauthenticated(_) => Code::Unauthenticated,
        Domain::PermissionDenied(_) => Code::PermissionDenied,
        Domain::Unavailable { .. } => Code::Unavailable,
        Domain::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Domain::Internal(_) => Code::Internal,
    }
}

/// Where a rejected event's field sits in a request.
pub(crate) fn violation_field(index: usize, field: &str) -> String {
    if field.is_empty() {
        format!("events[{index}]")
    } else {
        format!("events[{index}].{field}")
    }
}

/// The status a domain error is answered with.
pub(crate) fn status(e: Domain) -> Status {
    status_naming(e, violation_field)
}

/// The status of a single-event call: a rejected field is `event.FIELD`.
pub(crate) fn single_event_status(e: Domain) -> Status {
    status_naming(e, |_, field| {
        if field.is_empty() {
            "event".to_string()
        } else {
            format!("event.{field}")
        }
    })
}

/// The status, with rejected events' fields named by `field_name(index, field)`.
fn status_naming(e: Domain, field_name: impl Fn(usize, &str) -> String) -> Status {
    let code = code(&e);
    let mut details = ErrorDetails::new();
    details.set_error_info(e.code(), "eddy", HashMap::new());
    if let Domain::InvalidArgument { errors, .. } = &e {
        for v in errors {
            details.add_bad_request_violation(field_name(v.index, &v.field), v.reason.clone());
        }
    }
    let retry = e.retry_after_secs();
    if let Some(secs) = retry {
        details.set_retry_info(Some(Duration::from_secs(secs)));
    }
    let message = match &e {
        // The detail is logged where it happened; clients get no internals.
        Domain::Internal(_) => "internal error; see the server log".to_string(),
        other => other.to_string(),
    };
    let mut status = Status::with_error_details(code, message, details);
    if let Some(secs) = retry
        && let Ok(v) = secs.to_string().parse()
    {
        status.metadata_mut().insert("retry-after", v);
    }
    status
}

#[cfg(test)]
mod tests {
    use eddy_model::EventError;

    use super::*;

    #[test]
    fn rejected_events_become_field_violations() {
        let e = Domain::rejected(
            "1 of 2 events were rejected",
            vec![EventError {
                index: 1,
                field: "metrics.t".into(),
                reason: "must be a finite number".into(),
            }],
        );
        let s = status(e);
        assert_eq!(s.code(), Code::InvalidArgument);
        let d = s.get_error_details();
        let v = &d.bad_request().unwrap().field_violations[0];
        assert_eq!(v.field, "events[1].metrics.t");
        assert_eq!(v.description, "must be a finite number");
        assert_eq!(d.error_info().unwrap().reason, "validation_failed");
    }

    #[test]
    fn retryable_errors_say_when() {
        let s = status(Domain::ResourceExhausted {
            message: "quota".into(),
            retry_after_secs: 3,
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        let d = s.get_error_details();
        assert_eq!(
            d.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(3))
        );
        assert_eq!(s.metadata().get("retry-after").unwrap(), "3");
        let s = status(Domain::Internal("disk on fire at /secret/path".into()));
        assert!(!s.message().contains("secret"));
    }
}
