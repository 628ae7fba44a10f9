//! What users did over time, computed from their events in order: funnels, retention and
//! sessions. Pure functions over plain values (the store fetches the rows, see
//! [`crate::analytics`]), each checked against a brute-force computation in the tests.
//!
//! Events of one user are ordered by `(time, log offset)`: two events at the same instant are
//! still in a definite order (the order they were appended), so "after" is always strict.

/// One event of a user in a funnel: when, and which steps it matches (bit `k` = step `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepEvent {
    pub time: i64,
    pub offset: u64,
    pub steps: u32,
}

/// How far one user got through a funnel of `n` steps: for each step reached, the time (ns)
/// from the entry of the chain that reached it to the step.
///
/// **Semantics (strict order).** Step `k` is reached when there are events `e0 < e1 < … < ek`
/// (in `(time, offset)` order), `ei` matching step `i`, with `time(ek) − time(e0) ≤ window`.
/// One event counts for at most one step of a chain, so a step repeated in the funnel
/// (`page_view → page_view`) needs two events; other events in between do not break a chain
/// (no "strict adjacency"). Repeating a step (three `page_view`s) neither helps nor hurts.
/// The time to step `k` is measured on the first event that completes step `k`, from the
/// latest entry that allows it (the shortest conversion ending there).
///
/// `events` must be sorted by `(time, offset)`. One pass: per step, the latest entry time of a
/// chain that has reached it (a later entry leaves more of the window; ClickHouse's
/// `windowFunnel` keeps the same state).
pub fn funnel_user(events: &[StepEvent], n: usize, window: i64) -> Vec<Option<i64>> {
    let mut entry: Vec<Option<i64>> = vec![None; n];
    let mut reached: Vec<Option<i64>> = vec![None; n];
    for e in events {
        // Highest step first, so one event cannot advance one chain by two steps.
        for k in (1..n).rev() {
            if e.steps & (1 << k) == 0 {
                continue;
            }
            if let Some(start) = entry[k - 1]
                && e.time.saturating_sub(start) <= window
            {
                entry[k] = Some(start);
                if reached[k].is_none() {
                    reached[k] = Some(e.time - start);
                }
            }
        }
        if n > 0 && e.steps & 1 != 0 {
            entry[0] = Some(e.time);
            if reached[0].is_none() {
                reached[0] = Some(0);
            }
        }
    }
    reached
}

/// Per step of a funnel over many users: how many reached it, and their times to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunnelTally {
    pub users: Vec<u64>,
    /// Times (ns) from entry to each step, one per user who reached it.
    pub durations: Vec<Vec<i64>>,
}

impl FunnelTally {
    pub fn new(n: usize) -> Self {
        Self {
            users: vec![0; n],
            durations: vec![Vec::new(); n],
        }
    }

    /// Adds one user's [`funnel_user`] result.
    pub fn add(&mut self, reached: &[Option<i64>]) {
        for (k, r) in reached.iter().enumerate() {
            if let Some(d) = r {
                self.users[k] += 1;
                self.durations[k].push(*d);
            }
        }
    }

    /// Adds another tally of other users.
    pub fn merge(&mut self, other: FunnelTally) {
        for (k, (u, d)) in other.users.into_iter().zip(other.durations).enumerate() {
            self.users[k] += u;
            self.durations[k].extend(d);
        }
    }

    /// The median time (ns) to step `k` (mean of the middle two for an even count, like
    /// `percentile_cont(0.5)`), `None` when nobody reached it.
    pub fn median(&mut self, k: usize) -> Option<f64> {
        median(&mut self.durations[k])
    }
}

/// Median of `v` (reorders it), `None` when empty.
pub fn median(v: &mut [i64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, hi, _) = v.select_nth_unstable(mid);
    let hi = *hi as f64;
    if v.len() % 2 == 1 {
        return Some(hi);
    }
    let lo = v[..mid].iter().copied().max().unwrap_or_default() as f64;
    Some((lo + hi) / 2.0)
}

/// Calendar buckets of retention: UTC days, or ISO weeks (Monday 00:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn nanos(self) -> i64 {
        match self {
            Period::Day => 86_400_000_000_000,
            Period::Week => 7 * 86_400_000_000_000,
        }
    }

    /// Where buckets are counted from: 1970-01-01 (a Thursday) for days, 1970-01-05 (a
    /// Monday) for weeks.
    pub fn origin(self) -> i64 {
        match self {
            Period::Day => 0,
            Period::Week => 4 * 86_400_000_000_000,
        }
    }

    /// Start of the bucket holding `t`.
    pub fn start(self, t: i64) -> i64 {
        let o = self.origin();
        o + (t - o).div_euclid(self.nanos()) * self.nanos()
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }
}

/// One cohort of a retention table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohort {
    /// Bucket start (ns).
    pub start: i64,
    pub users: u64,
    /// `returned[k]`: users of the cohort with a return event in bucket `start + k` — after
    /// their first event, so in bucket 0 only a later return counts.
    pub returned: Vec<u64>,
}

/// Builds cohorts: `first` gives each user's first cohort event (user index → time), `returns`
/// each (user index, bucket start, latest return event time in that bucket). Periods are
/// counted up to `periods` buckets after the cohort's (`returned` has `periods + 1` entries).
pub fn retention(
    first: &[(u32, i64)],
    returns: &[(u32, i64, i64)],
    period: Period,
    periods: usize,
) -> Vec<Cohort> {
    use std::collections::{BTreeMap, HashMap};
    let firsts: HashMap<u32, i64> = first.iter().copied().collect();
    let mut cohorts: BTreeMap<i64, Cohort> = BTreeMap::new();
    for &(_, t) in first {
        let start = period.start(t);
        cohorts
            .entry(start)
            .or_insert_with(|| Cohort {
                start,
                users: 0,
                returned: vec![0; periods + 1],
            })
            .users += 1;
    }
    for &(user, bucket, last) in returns {
        let Some(&f) = firsts.get(&user) else {
            continue;
        };
        let cohort = period.start(f);
        let bucket = period.start(bucket);
        if bucket < cohort || (bucket == cohort && last <= f) {
            continue;
        }
        let k = usize::try_from((bucket - cohort) / period.nanos()).unwrap_or(usize::MAX);
        if k <= periods
            && let Some(c) = cohorts.get_mut(&cohort)
        {
            c.returned[k] += 1;
        }
    }
    cohorts.into_values().collect()
}

/// A run of events without a gap longer than the inactivity limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Session {
    pub start: i64,
    pub end: i64,
    pub events: u64,
}

/// Splits sorted event times into sessions: a new one starts after more than `gap` ns of
/// inactivity.
pub fn sessions(times: &[i64], gap: i64) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::new();
    for &t in times {
        match out.last_mut() {
            Some(s) if t.saturating_sub(s.end) <= gap => {
                s.end = t;
                s.events += 1;
            }
            _ => out.push(Session {
                start: t,
                end: t,
                events: 1,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Brute force: every increasing chain of events, its entry and end; per step the earliest
    /// completing event and, there, the latest entry.
    fn naive_funnel(events: &[StepEvent], n: usize, window: i64) -> Vec<Option<i64>> {
        let mut best: Vec<Option<(usize, i64)>> = vec![None; n]; // (end index, duration)
        fn walk(
            events: &[StepEvent],
            chain: &mut Vec<usize>,
            n: usize,
            window: i64,
            best: &mut Vec<Option<(usize, i64)>>,
        ) {
            let k = chain.len() - 1;
            let (first, last) = (events[chain[0]], events[chain[k]]);
            if last.time - first.time > window {
                return;
            }
            let d = last.time - first.time;
            let end = chain[k];
            let better = match best[k] {
                None => true,
                Some((e, bd)) => end < e || (end == e && d < bd),
            };
            if better {
                best[k] = Some((end, d));
            }
            if k + 1 == n {
                return;
            }
            for j in end + 1..events.len() {
                if events[j].steps & (1 << (k + 1)) != 0 {
                    chain.push(j);
                    walk(events, chain, n, window, best);
                    chain.pop();
                }
            }
        }
        for i in 0..events.len() {
            if events[i].steps & 1 != 0 {
                walk(events, &mut vec![i], n, window, &mut best);
            }
        }
        best.into_iter().map(|b| b.map(|(_, d)| d)).collect()
    }

    fn user_events() -> impl Strategy<Value = Vec<StepEvent>> {
        // Few distinct times, so ties (same instant, ordered by offset) are common.
        prop::collection::vec((0i64..12, 0u32..16), 0..10).prop_map(|mut v| {
            v.sort_by_key(|(t, _)| *t);
            v.into_iter()
                .enumerate()
                .map(|(i, (t, steps))| StepEvent {
                    time: t * 10,
                    offset: i as u64,
                    steps,
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn funnel_matches_brute_force(events in user_events(), n in 1usize..5, window in 0i64..80) {
            prop_assert_eq!(funnel_user(&events, n, window), naive_funnel(&events, n, window));
        }

        #[test]
        fn sessions_cover_every_event_and_split_only_at_gaps(mut times in prop::collection::vec(0i64..1000, 0..40), gap in 0i64..100) {
            times.sort_unstable();
            let s = sessions(&times, gap);
            prop_assert_eq!(s.iter().map(|s| s.events).sum::<u64>(), times.len() as u64);
            for w in s.windows(2) {
                prop_assert!(w[1].start - w[0].end > gap);
            }
            for x in &s {
                let inside: Vec<i64> = times.iter().copied().filter(|t| *t >= x.start && *t <= x.end).collect();
                prop_assert_eq!(inside.len() as u64, x.events);
                for p in inside.windows(2) {
                    prop_assert!(p[1] - p[0] <= gap);
                }
            }
        }
    }

    fn ev(time: i64, steps: u32) -> Vec<StepEvent> {
        vec![StepEvent {
            time,
            offset: 0,
            steps,
        }]
    }

    fn seq(v: &[(i64, u32)]) -> Vec<StepEvent> {
        v.iter()
            .enumerate()
            .map(|(i, &(time, steps))| StepEvent {
                time,
                offset: i as u64,
                steps,
            })
            .collect()
    }

    #[test]
    fn funnel_edge_cases() {
        // Steps out of order do not convert.
        assert_eq!(
            funnel_user(&seq(&[(0, 0b10), (5, 0b01)]), 2, 100),
            vec![Some(0), None]
        );
        // A conversion outside the window does not count; a later re-entry that fits does,
        // and its time is measured from that re-entry.
        assert_eq!(
            funnel_user(&seq(&[(0, 0b01), (200, 0b01), (250, 0b10)]), 2, 100),
            vec![Some(0), Some(50)]
        );
        assert_eq!(
            funnel_user(&seq(&[(0, 0b01), (250, 0b10)]), 2, 100),
            vec![Some(0), None]
        );
        // The window is inclusive.
        assert_eq!(
            funnel_user(&seq(&[(0, 0b01), (100, 0b10)]), 2, 100),
            vec![Some(0), Some(100)]
        );
        // A repeated step needs two events: one event is not both.
        assert_eq!(funnel_user(&ev(0, 0b11), 2, 100), vec![Some(0), None]);
        assert_eq!(
            funnel_user(&seq(&[(0, 0b11), (0, 0b11)]), 2, 100),
            vec![Some(0), Some(0)]
        );
        // Events in between do not break the chain; repeating step 1 neither helps nor hurts.
        assert_eq!(
            funnel_user(
                &seq(&[(0, 0b001), (1, 0b001), (2, 0b100), (3, 0b010), (9, 0b100)]),
                3,
                100
            ),
            vec![Some(0), Some(2), Some(8)]
        );
        // Nothing before entry: no step at all.
        assert_eq!(
            funnel_user(&seq(&[(0, 0b10), (1, 0b100)]), 3, 100),
            vec![None, None, None]
        );
        assert_eq!(funnel_user(&[], 2, 100), vec![None, None]);
    }

    #[test]
    fn medians_interpolate_like_percentile_cont() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5]), Some(5.0));
        assert_eq!(median(&mut [9, 1, 4, 7]), Some(5.5));
        assert_eq!(median(&mut [3, 1, 2]), Some(2.0));
    }

    #[test]
    fn retention_counts_returns_after_the_first_event_by_calendar_bucket() {
        let day = Period::Day.nanos();
        let h = day / 24;
        // User 0: first on day 0 at 10:00, returns day 0 at 12:00 and day 2.
        // User 1: first on day 0 at 20:00, its only day-0 return is before that (09:00).
        // User 2: first on day 1, returns day 1 at the same instant (not after) and day 8.
        let first = [(0, 10 * h), (1, 20 * h), (2, day + 3 * h)];
        let returns = [
            (0, 0, 12 * h),
            (0, 2 * day, 2 * day + h),
            (1, 0, 9 * h),
            (2, day, day + 3 * h),
            (2, 8 * day, 8 * day + h),
            (7, 0, h), // not in any cohort
        ];
        let c = retention(&first, &returns, Period::Day, 3);
        assert_eq!(
            c,
            vec![
                Cohort {
                    start: 0,
                    users: 2,
                    returned: vec![1, 0, 1, 0]
                },
                Cohort {
                    start: day,
                    users: 1,
                    returned: vec![0, 0, 0, 0]
                },
            ]
        );
        // Weeks start on Monday: 1970-01-05.
        assert_eq!(Period::Week.start(4 * day), 4 * day);
        assert_eq!(Period::Week.start(4 * day - 1), -3 * day);
        assert_eq!(Period::Week.start(10 * day + 5), 4 * day);
    }

    #[test]
    fn sessions_split_after_the_gap_only() {
        let s = sessions(&[0, 10, 40, 41, 100], 30);
        assert_eq!(
            s,
            vec![
                Session {
                    start: 0,
                    end: 41,
                    events: 4
                },
                Session {
                    start: 100,
                    end: 100,
                    events: 1
                }
            ]
        );
        assert!(sessions(&[], 30).is_empty());
    }
}
