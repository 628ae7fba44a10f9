//! Partitions: the time range a file covers. Recent data is written to hour partitions, older
//! data to day partitions, and history to month partitions (UTC), so importing months of
//! readings writes a few files per month instead of one per hour; as data ages, compaction rolls
//! a partition's files into the wider partition that now holds them. Widths nest (an hour lies
//! in one day, a day in one month), so every file lies in exactly one partition of each wider
//! width. Plain data; must not touch files.

use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Nanoseconds in an hour.
pub const HOUR_NS: i64 = 3_600_000_000_000;
/// Nanoseconds in a day.
pub const DAY_NS: i64 = 24 * HOUR_NS;

/// How wide a partition is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Width {
    /// Every manifest before widths lists hour partitions only.
    #[default]
    Hour,
    Day,
    Month,
}

impl Width {
    /// The start of the partition of this width holding `t` (ns).
    pub fn start(self, t: i64) -> i64 {
        match self {
            Width::Hour => t.div_euclid(HOUR_NS) * HOUR_NS,
            Width::Day => t.div_euclid(DAY_NS) * DAY_NS,
            Width::Month => month_start(t),
        }
    }
}

/// The first instant of the UTC month holding `t`.
fn month_start(t: i64) -> i64 {
    let day = Utc.timestamp_nanos(t.div_euclid(DAY_NS) * DAY_NS);
    Utc.with_ymd_and_hms(day.year(), day.month(), 1, 0, 0, 0)
        .single()
        .and_then(|m| m.timestamp_nanos_opt())
        // Outside chrono's ns range (±292 years): a day partition is as good.
        .unwrap_or_else(|| t.div_euclid(DAY_NS) * DAY_NS)
}

/// Which width data gets by its age: an hour whose end is within `hours_for` of now stays an
/// hour partition; a day whose end is within `days_for`, a day partition; older data goes to
/// month partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioning {
    pub hours_for: Duration,
    pub days_for: Duration,
}

impl Default for Partitioning {
    fn default() -> Self {
        Self {
            hours_for: Duration::from_secs(48 * 3600),
            days_for: Duration::from_secs(62 * 24 * 3600),
        }
    }
}

impl Partitioning {
    /// The width for data at `t` when the time is `now` (ns). The same for every instant of
    /// one hour, and never narrower for an older hour.
    pub fn width(&self, t: i64, now: i64) -> Width {
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let hour_end = Width::Hour.start(t).saturating_add(HOUR_NS);
        let day_end = Width::Day.start(t).saturating_add(DAY_NS);
        if hour_end > now.saturating_sub(ns(self.hours_for)) {
            Width::Hour
        } else if day_end > now.saturating_sub(ns(self.days_for)) {
            Width::Day
        } else {
            Width::Month
        }
    }
}

/// The partition (width, start) of each row time, remembering the last hour's answer (rows come
/// in runs of one hour).
#[derive(Debug)]
pub struct Assigner {
    rules: Partitioning,
    now: i64,
    last: Option<(i64, (Width, i64))>,
}

impl Assigner {
    pub fn new(rules: Partitioning, now: i64) -> Self {
        Self {
            rules,
            now,
            last: None,
        }
    }

    /// The partition of a row at `t`.
    pub fn of(&mut self, t: i64) -> (Width, i64) {
        let hour = t.div_euclid(HOUR_NS);
        if let Some((h, p)) = self.last
            && h == hour
        {
            return p;
        }
        let w = self.rules.width(t, self.now);
        let p = (w, w.start(t));
        self.last = Some((hour, p));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn widths_follow_age_and_nest() {
        let p = Partitioning::default();
        let now = ts("2026-12-03T12:30:00Z");
        assert_eq!(p.width(ts("2026-12-03T11:10:00Z"), now), Width::Hour);
        assert_eq!(p.width(ts("2026-12-01T13:00:00Z"), now), Width::Hour);
        assert_eq!(p.width(ts("2026-12-01T11:59:59Z"), now), Width::Day);
        assert_eq!(p.width(ts("2026-10-03T00:00:00Z"), now), Width::Day);
        assert_eq!(p.width(ts("2026-09-30T23:00:00Z"), now), Width::Month);
        assert_eq!(
            Width::Month.start(ts("2026-02-28T23:59:59Z")),
            ts("2026-02-01T00:00:00Z")
        );
        assert_eq!(
            Width::Month.start(ts("1969-12-31T23:00:00Z")),
            ts("1969-12-01T00:00:00Z")
        );
        assert_eq!(
            Width::Day.start(ts("2026-02-28T23:59:59Z")),
            ts("2026-02-28T00:00:00Z")
        );
        // Every instant of an hour gets one partition; older hours never a narrower one.
        let mut a = Assigner::new(p, now);
        let mut last = Width::Hour;
        let mut t = now;
        while t > now - 400 * DAY_NS {
            let (w, start) = a.of(t);
            assert!(w >= last, "narrower partition for older data at {t}");
            assert_eq!(a.of(Width::Hour.start(t)), (w, start));
            assert!(start <= t && Width::Hour.start(t) >= start);
            last = w;
            t -= 7 * 60 * 1_000_000_000;
        }
        assert_eq!(last, Width::Month);
    }
}
