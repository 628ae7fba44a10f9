//! The one time-range rule of every question: `to` defaults to now, `from` to a default span
//! before `to` (the last 24 hours unless a question says otherwise), and `from` must be before
//! `to`.

use crate::{Error, Result};

/// One day in ns.
pub const DAY_NS: i64 = 86_400_000_000_000;

/// A range as asked: either end may be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    /// Inclusive, ns.
    pub from: Option<i64>,
    /// Exclusive, ns.
    pub to: Option<i64>,
    /// The instant the request's relative times (`now`, `-1h`) were read against; the
    /// defaults use it too, so one request sees one clock reading. `None`: the service's
    /// clock at resolution.
    pub now: Option<i64>,
}

impl TimeRange {
    /// `[from, to)`: `to` defaults to now, `from` to `default_span` before `to`.
    pub fn resolve(self, clock_now: i64, default_span: i64) -> Result<(i64, i64)> {
        let to = self.to.unwrap_or(self.now.unwrap_or(clock_now));
        let from = self.from.unwrap_or(to.saturating_sub(default_span));
        ordered(from, to)
    }

    /// `[from, to)` defaulting to all time.
    pub fn resolve_all_time(self) -> Result<(i64, i64)> {
        ordered(self.from.unwrap_or(i64::MIN), self.to.unwrap_or(i64::MAX))
    }
}

fn ordered(from: i64, to: i64) -> Result<(i64, i64)> {
    if from >= to {
        return Err(Error::invalid(
            "invalid_parameter",
            "`from` must be before `to`",
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_order() {
        let r = TimeRange::default();
        assert_eq!(r.resolve(100, 30).unwrap(), (70, 100));
        let r = TimeRange {
            to: Some(50),
            ..TimeRange::default()
        };
        assert_eq!(r.resolve(100, 30).unwrap(), (20, 50));
        // The request's own instant wins over the clock's later one.
        let r = TimeRange {
            now: Some(90),
            ..TimeRange::default()
        };
        assert_eq!(r.resolve(100, 30).unwrap(), (60, 90));
        let r = TimeRange {
            from: Some(50),
            to: Some(50),
            now: None,
        };
        assert!(r.resolve(100, 30).is_err());
        assert!(r.resolve_all_time().is_err());
        assert_eq!(
            TimeRange::default().resolve_all_time().unwrap(),
            (i64::MIN, i64::MAX)
        );
    }
}
