//! When records were appended, in bounded memory: what [`crate::Log::appended_ago`] answers
//! from. Commits within [`APPEND_AGE_GRANULARITY`] of each other share one entry, and at most
//! [`MAX_ENTRIES`] are kept (the oldest go first; records before the oldest kept entry count as
//! appended by its time), so ages are lower bounds accurate to the granularity.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{APPEND_AGE_GRANULARITY, Offset};

/// At 10 ms per entry: at least 10 minutes of history in 1 MiB.
pub(crate) const MAX_ENTRIES: usize = 65_536;

/// Every record below `end` was appended at or before `at`; the entry took commits from
/// `since` on. Ends increase.
#[derive(Debug, Clone, Copy)]
struct Entry {
    end: Offset,
    since: Instant,
    at: Instant,
}

#[derive(Debug)]
pub(crate) struct AppendTimes {
    entries: Mutex<VecDeque<Entry>>,
}

impl AppendTimes {
    /// Records below `end` exist already (appended before the log opened, at `opened` or
    /// earlier).
    pub(crate) fn new(end: Offset, opened: Instant) -> Self {
        let mut entries = VecDeque::new();
        if end > 0 {
            entries.push_back(Entry {
                end,
                since: opened,
                at: opened,
            });
        }
        Self {
            entries: Mutex::new(entries),
        }
    }

    /// Records below `end` were committed at `at` (or before).
    pub(crate) fn committed(&self, end: Offset, at: Instant) {
        let Ok(mut e) = self.entries.lock() else {
            return;
        };
        match e.back_mut() {
            Some(last) if at.saturating_duration_since(last.since) < APPEND_AGE_GRANULARITY => {
                last.end = last.end.max(end);
                last.at = at;
            }
            _ => {
                e.push_back(Entry { end, since: at, at });
                if e.len() > MAX_ENTRIES {
                    e.pop_front();
                }
            }
        }
    }

    /// How long ago, at least, the record at `offset` was appended (`None`: not appended).
    pub(crate) fn ago(&self, offset: Offset, now: Instant) -> Option<Duration> {
        let e = self.entries.lock().ok()?;
        // The first entry whose end is past `offset` covers it.
        let i = e.partition_point(|x| x.end <= offset);
        Some(now.saturating_duration_since(e.get(i)?.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_follow_commits() {
        let t0 = Instant::now();
        let times = AppendTimes::new(10, t0);
        let ms = Duration::from_millis;
        assert_eq!(times.ago(3, t0 + ms(500)), Some(ms(500)));
        assert_eq!(times.ago(10, t0), None);
        times.committed(20, t0 + ms(100));
        // Coalesced into the entry above: within the granularity of its first commit.
        times.committed(25, t0 + ms(105));
        times.committed(30, t0 + ms(300));
        let now = t0 + ms(1000);
        assert_eq!(times.ago(9, now), Some(ms(1000)));
        assert_eq!(times.ago(10, now), Some(ms(895)));
        assert_eq!(times.ago(24, now), Some(ms(895)));
        assert_eq!(times.ago(25, now), Some(ms(700)));
        assert_eq!(times.ago(29, now), Some(ms(700)));
        assert_eq!(times.ago(30, now), None);
        // Commits every 4 ms do not stretch one entry for ever.
        for i in 1..=10 {
            times.committed(30 + i, t0 + ms(300 + 4 * i));
        }
        assert!(times.ago(31, now).unwrap() >= ms(650));
    }

    #[test]
    fn memory_is_bounded_and_old_records_stay_old() {
        let t0 = Instant::now();
        let times = AppendTimes::new(0, t0);
        for i in 0..(MAX_ENTRIES as u64 + 100) {
            times.committed(i + 1, t0 + Duration::from_millis(20 * i));
        }
        assert_eq!(times.entries.lock().unwrap().len(), MAX_ENTRIES);
        let now = t0 + Duration::from_secs(100_000);
        // Record 0's entry left; it counts as appended by the oldest kept time.
        let oldest = times.ago(0, now).unwrap();
        assert_eq!(oldest, times.ago(100, now).unwrap());
        assert!(oldest > times.ago(101, now).unwrap());
    }
}
