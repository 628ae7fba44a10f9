//! The single place where errors become HTTP responses.
//!
//! Every error body has the same shape: `{"error": "<stable code>", "message": "<human text>"}`
//! plus `"errors": [{"index", "field", "reason"}]` when individual events were rejected.
//! Internal details (paths, OS errors) are logged, never sent. Besides the domain errors of
//! [`eddy_service::Error`], two are HTTP's own: a content type or encoding it cannot read
//! (415) and a method the path does not have (405).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eddy_service::Error as Domain;
use serde_json::json;

/// An error answer of the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Domain(Domain),
    /// A `Content-Type` or `Content-Encoding` the route cannot read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The path exists, the method does not (the `Allow` header lists those that do).
    #[error("{0}")]
    MethodNotAllowed(String),
}

/// Result alias of the HTTP crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl<E: Into<Domain>> From<E> for Error {
    fn from(e: E) -> Self {
        Self::Domain(e.into())
    }
}

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        let e = match self {
            Self::Domain(e) => e,
            Self::UnsupportedMediaType(_) => return StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed(_) => return StatusCode::METHOD_NOT_ALLOWED,
        };
        match e {
            Domain::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            Domain::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Domain::NotFound(_) => StatusCode::NOT_FOUND,
            Domain::Conflict(_) => StatusCode::CONFLICT,
            Domain::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Domain::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Domain::ResourceExhausted { .. } => StatusCode::TOO_MANY_REQUESTS,
            // A query past its time limit is the server being too busy for it, not a gateway
            // timeout: 503 with Retry-After, as clients of the API already expect.
            Domain::Unavailable { .. } | Domain::DeadlineExceeded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Domain::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Domain(e) => match e {
                // Kept from before the service layer: clients match on these words.
                Domain::DeadlineExceeded(_) => "unavailable",
                other => other.code(),
            },
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::MethodNotAllowed(_) => "method_not_allowed",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        let retry = match &self {
            Self::Domain(e) => e.retry_after_secs(),
            Self::UnsupportedMediaType(_) | Self::MethodNotAllowed(_) => None,
        };
        match self {
            Self::Domain(Domain::InvalidArgument { errors, .. }) if !errors.is_empty() => {
                body["errors"] = json!(errors)
            }
            Self::Domain(Domain::Internal(msg)) => {
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
