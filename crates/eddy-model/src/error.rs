use serde::Serialize;

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body as a whole is not what the route accepts.
    #[error("invalid body: {0}")]
    Body(String),
    /// A log record could not be decoded.
    #[error("cannot decode log entry: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A batch record's columns could not be written or read.
    #[error("log entry columns: {0}")]
    Columns(String),
}

/// Result alias of the model crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one event of a request was rejected: which event, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventError {
    /// Position of the event in the request (0 for a single-event body).
    pub index: usize,
    /// The offending field (JSON path within the event, e.g. `metrics.temperature`).
    pub field: String,
    /// Human-readable reason.
    pub reason: String,
}

impl EventError {
    /// An error of `field`; the index is set where the event's position is known.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            index: 0,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event {}: field `{}`: {}",
            self.index, self.field, self.reason
        )
    }
}
