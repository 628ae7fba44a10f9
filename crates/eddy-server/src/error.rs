//! The single place where errors become HTTP responses.
//!
//! Every error body has the same shape: `{"error": "<stable code>", "message": "<human text>"}`
//! plus `"errors": [{"index", "field", "reason"}]` when individual events were rejected.
//! Internal details (paths, OS errors) are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eddy_model::EventError;
use serde_json::json;

/// Errors of the server crate, each with one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Validation {
        message: String,
        errors: Vec<EventError>,
    },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of the server crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } | Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::BadRequest { code, .. } => code,
            Self::Validation { .. } => "validation_failed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Conflict(_) => "conflict",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<eddy_log::Error> for Error {
    fn from(e: eddy_log::Error) -> Self {
        match e {
            eddy_log::Error::QueueFull { .. } => Self::TooManyRequests {
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

impl From<eddy_stream::Error> for Error {
    fn from(e: eddy_stream::Error) -> Self {
        tracing::error!(error = %e, "stream processor error");
        Self::Internal("stream processor error".into())
    }
}

impl From<eddy_store::Error> for Error {
    fn from(e: eddy_store::Error) -> Self {
        use eddy_store::Error as S;
        match e {
            S::InvalidQuery(m) => Self::bad_request("invalid_query", m),
            S::TooManyRows(_) => Self::bad_request("result_too_large", e.to_string()),
            S::Timeout(_) => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs: 1,
            },
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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        let retry = match &self {
            Self::TooManyRequests {
                retry_after_secs, ..
            }
            | Self::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        match self {
            Self::Validation { errors, .. } => body["errors"] = json!(errors),
            Self::Internal(msg) => {
                tracing::error!(%msg, "internal error");
                body["message"] = json!("internal error; see the server log");
            }
            _ => {}
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry
            && let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
