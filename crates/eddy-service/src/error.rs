//! The one domain error kind of every operation. Protocol front ends map it once each (HTTP
//! status and JSON body in `eddy-server::error`; gRPC status next); engines' errors become it
//! here, so no front end sees a store, stream or log error.

use eddy_model::EventError;

/// What went wrong, in terms a client of any protocol can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong: a parameter, the body, or individual events (`errors`, each with
    /// its index, field and reason). `code` is stable (e.g. `invalid_parameter`,
    /// `validation_failed`).
    #[error("{message}")]
    InvalidArgument {
        code: &'static str,
        message: String,
        errors: Vec<EventError>,
    },
    /// The request is larger than a configured limit (body, batch, decompressed size).
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (a name in use, an alert already
    /// resolved, the default tenant).
    #[error("{0}")]
    Conflict(String),
    /// No key, or an unknown or revoked one.
    #[error("{0}")]
    Unauthenticated(String),
    /// The key lacks the scope the operation needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// A quota or a bounded queue is full; retry after the given time.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after_secs: u64,
    },
    /// A dependency (log, store) cannot take the request now; retry after the given time.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// The operation ran past its time limit.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or an I/O failure; the detail is logged, clients see a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of the service crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A wrong parameter or body, with a stable code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// Rejected events, each with its index, field and reason.
    pub fn rejected(message: impl Into<String>, errors: Vec<EventError>) -> Self {
        Self::InvalidArgument {
            code: "validation_failed",
            message: message.into(),
            errors,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidArgument { code, .. } => code,
            Self::TooLarge(_) => "payload_too_large",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Unauthenticated(_) => "unauthorized",
            Self::PermissionDenied(_) => "forbidden",
            Self::ResourceExhausted { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::Internal(_) => "internal",
        }
    }

    /// How long a client should wait before retrying, when retrying can help.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::ResourceExhausted {
                retry_after_secs, ..
            }
            | Self::Unavailable {
                retry_after_secs, ..
            } => Some((*retry_after_secs).max(1)),
            Self::DeadlineExceeded(_) => Some(1),
            _ => None,
        }
    }
}

impl From<eddy_log::Error> for Error {
    fn from(e: eddy_log::Error) -> Self {
        match e {
            eddy_log::Error::QueueFull { .. } => Self::ResourceExhausted {
                message: "ingest queue is full; retry later".into(),
                retry_after_secs: 1,
            },
            eddy_log::Error::Unavailable(_) | eddy_log::Error::Closed => {
                tracing::error!(error = %e, "log unavailable");
                Self::Unavailable {
                    message: "the log is not accepting writes; nothing was stored".into(),
                    retry_after_secs: 5,
                }
            }
            other => {
                tracing::error!(error = %other, "log error");
                Self::Internal("log error".into())
            }
        }
    }
}

impl From<eddy_store::Error> for Error {
    fn from(e: eddy_store::Error) -> Self {
        use eddy_store::Error as S;
        match e {
            S::InvalidQuery(m) => Self::invalid("invalid_query", m),
            S::TooManyRows(_) => Self::invalid("result_too_large", e.to_string()),
            S::Timeout(_) => Self::DeadlineExceeded(e.to_string()),
            S::MemoryLimit(_) => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs: 1,
            },
            other => {
                tracing::error!(error = %other, "store error");
                Self::Internal("store error".into())
            }
        }
    }
}

impl From<eddy_stream::Error> for Error {
    fn from(e: eddy_stream::Error) -> Self {
        use eddy_stream::Error as S;
        match e {
            // The log refusing an append is the client's to retry, like on ingest.
            S::Log(log) => log.into(),
            other => {
                tracing::error!(error = %other, "stream processor error");
                Self::Internal("stream processor error".into())
            }
        }
    }
}
