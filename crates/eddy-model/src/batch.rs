//! How a request body is framed, and why a body as a whole is refused (the body is parsed by
//! [`crate::parse::parse_body`]).

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON document.
    Json,
    /// Newline-delimited JSON, one event per line.
    Ndjson,
}

/// Why a body as a whole cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    #[error("body must be a JSON object, an array of objects or {{\"events\": [...]}}")]
    Shape,
    #[error("body holds no events")]
    Empty,
    #[error("the request holds no events")]
    NoEvents,
    #[error("batch holds {count} events, more than the limit of {max}")]
    TooMany { count: usize, max: usize },
}

/// Holds events that arrive already apart (a protocol with its own framing) to the rules of
/// a body: not none, at most `max_events`.
pub fn check_event_count(count: usize, max_events: usize) -> Result<(), BodyError> {
    if count == 0 {
        return Err(BodyError::NoEvents);
    }
    if count > max_events {
        return Err(BodyError::TooMany {
            count,
            max: max_events,
        });
    }
    Ok(())
}
