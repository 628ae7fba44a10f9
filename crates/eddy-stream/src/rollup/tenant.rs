//! One tenant's rollups ([`TenantRollups`]): applying an event to its open windows, the
//! watermark, taking closed windows for the files, checkpoint and range copies, eviction and
//! freezing, and the reads of windows. Deterministic and free of I/O: must not touch files, the
//! log or the processor.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::FastMap as HashMap;

use cardinality_estimator::CardinalityEstimator;
use eddy_model::AsEventRef;
use serde::{Deserialize, Serialize};

use crate::rollup::agg::{CountAgg, MetricAgg, Point, Users};
use crate::rollup::closed::{Closed, CountRow, MetricRow};
use crate::rollup::pairs;
use crate::rollup::window::{Dimension, Resolution, Series};

/// Windows of one series or dimension value: (resolution, window start) → aggregate.
type Windows<A> = BTreeMap<(Resolution, i64), A>;

/// Rollups of one tenant. Nested by device, then metric (and by dimension, then value), so
/// that applying an event looks series up by `&str` and allocates only for a new series.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantRollups {
    max_event_time: Option<i64>,
    max_received_at: Option<i64>,
    /// device ("" for none) → metric → windows.
    metrics: HashMap<String, HashMap<String, WindowsOf<MetricAgg>>>,
    /// Number of (device, metric) series in `metrics`.
    #[serde(default)]
    series: usize,
    /// metric → windows over all devices together (what "all devices" time series read: one
    /// sketch per window straight from the samples, no merging at query time).
    all_devices: HashMap<String, WindowsOf<MetricAgg>>,
    /// dimension → value → windows.
    counts: BTreeMap<Dimension, HashMap<String, WindowsOf<CountAgg>>>,
    /// Events (per resolution) that arrived after their window closed.
    pub late: BTreeMap<Resolution, u64>,
    /// Windows that missed late events: their rollups are incomplete, so time series over
    /// them are answered from raw data.
    #[serde(with = "pairs")]
    incomplete: BTreeMap<(Resolution, i64), u64>,
    /// Every window ending at or before this time is closed for good and persisted (see
    /// [`crate::persist`]): it is no longer in checkpoints, and may leave memory.
    #[serde(default)]
    flushed_through: Option<i64>,
    /// Number of the last persisted flush of this tenant (files above it are orphans).
    #[serde(default)]
    flush_seq: u64,
    /// Incomplete windows ending at or before this are forgotten (see [`Self::evict`]).
    #[serde(default)]
    incomplete_cut: Option<i64>,
    /// Per resolution (1m, 1h, 1d): windows ending at or before this may have left memory
    /// (they are in the rollup files). Not checkpointed: set again when loading.
    #[serde(skip)]
    evicted_through: [Option<i64>; 3],
    /// Closed windows ending at or before this are frozen (the eviction pass freezes only
    /// those closed since). Not checkpointed: the first pass after loading freezes them all.
    #[serde(skip)]
    frozen_through: Option<i64>,
}

/// A [`Windows`] map that serializes as a list of pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct WindowsOf<A: Serialize + serde::de::DeserializeOwned>(#[serde(with = "pairs")] Windows<A>);

impl<A: Serialize + serde::de::DeserializeOwned> Default for WindowsOf<A> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Resolutions for which the event was late (window already closed).
    pub late: u8,
}

/// One eviction pass over a series' windows (see [`TenantRollups::evict`]).
struct Pass {
    /// Per resolution: windows ending at or before this leave memory.
    cut: [i64; 3],
    /// Windows ending after this and at or before `closed_through` closed since the last pass.
    frozen_since: i64,
    closed_through: i64,
}

impl Pass {
    /// Drops the windows past the cut and freezes the newly closed ones (minutes before hours
    /// before days: see [`freeze_metric`]), by key ranges; returns how many were dropped.
    fn run<A>(
        &self,
        windows: &mut Windows<A>,
        freeze: impl Fn(&mut Windows<A>, (Resolution, i64)),
    ) -> usize {
        let mut dropped = 0;
        for (r, cut) in Resolution::ALL.into_iter().zip(self.cut) {
            let n = r.nanos();
            dropped += windows
                .extract_if((r, i64::MIN)..=(r, cut.saturating_sub(n)), |_, _| true)
                .count();
            let lo = self.frozen_since.saturating_sub(n).saturating_add(1);
            let hi = self.closed_through.saturating_sub(n);
            if lo <= hi {
                let keys: Vec<_> = windows.range((r, lo)..=(r, hi)).map(|(k, _)| *k).collect();
                keys.into_iter().for_each(|k| freeze(windows, k));
            }
        }
        dropped
    }
}

/// Freezes the window at `key`; a pending minute's samples move into its hour and day windows
/// (which are still open: a window closes after every minute in it, and minutes freeze first).
fn freeze_metric(windows: &mut Windows<MetricAgg>, key: (Resolution, i64)) {
    let Some(held) = windows.get_mut(&key).and_then(MetricAgg::freeze) else {
        return;
    };
    for r in [Resolution::Hour, Resolution::Day] {
        if let Some(parent) = windows.get_mut(&(r, r.window_start(key.1))) {
            parent.absorb(&held);
        }
    }
}

fn freeze_count(windows: &mut Windows<CountAgg>, key: (Resolution, i64)) {
    if let Some(a) = windows.get_mut(&key) {
        a.freeze();
    }
}

/// What the window at `key` answers: an open hour or day window with the samples its pending
/// minutes still hold; any other window as it is.
fn answer<'a>(
    windows: &'a Windows<MetricAgg>,
    key: (Resolution, i64),
    agg: &'a MetricAgg,
) -> Cow<'a, MetricAgg> {
    if key.0 == Resolution::Minute || agg.is_frozen() {
        return Cow::Borrowed(agg);
    }
    let end = key.1.saturating_add(key.0.nanos());
    let mut pending = windows
        .range((Resolution::Minute, key.1)..(Resolution::Minute, end))
        .filter(|(_, m)| m.pending)
        .peekable();
    if pending.peek().is_none() {
        return Cow::Borrowed(agg);
    }
    let mut out = agg.clone();
    pending.for_each(|(_, m)| out.absorb(m));
    Cow::Owned(out)
}

/// `map[key]`, inserting a default under an owned copy of `key` only when it is missing.
fn slot<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    crate::slot_with(map, key, V::default)
}

/// Adds `p` to its open windows (`None` = late for that resolution). Its quantile sample goes
/// to the minute window only while that minute is pending (see [`MetricAgg::pending`]), and
/// straight to the hour and day windows otherwise (late for the minute, or a minute that was
/// frozen or held in an older checkpoint).
fn add_point(windows: &mut Windows<MetricAgg>, open: &[Option<(Resolution, i64)>; 3], p: Point) {
    let mut direct = true;
    if let Some(key) = open[0] {
        let minute = windows
            .entry(key)
            .and_modify(|a| a.add(p, true))
            .or_insert_with(|| MetricAgg::pending_minute(p));
        direct = !minute.pending;
    }
    for key in open[1..].iter().flatten() {
        windows
            .entry(*key)
            .and_modify(|a| a.add(p, direct))
            .or_insert_with(|| MetricAgg::new(p, direct));
    }
}

impl TenantRollups {
    /// The watermark for `lateness_ns`; `None` before the first event.
    pub fn watermark(&self, lateness_ns: i64) -> Option<i64> {
        Some(
            self.max_event_time?
                .min(self.max_received_at?)
                .saturating_sub(lateness_ns),
        )
    }

    /// Windows ending at or before this are closed: the watermark, or the persisted bound if
    /// later (a persisted window stays closed even if a restart lengthens the lateness).
    fn closed_through(&self, lateness_ns: i64) -> Option<i64> {
        match (self.watermark(lateness_ns), self.flushed_through) {
            (Some(w), Some(f)) => Some(w.max(f)),
            (w, f) => w.or(f),
        }
    }

    fn is_closed(&self, r: Resolution, window: i64, lateness_ns: i64) -> bool {
        self.closed_through(lateness_ns)
            .is_some_and(|w| w >= window.saturating_add(r.nanos()))
    }

    /// Every window ending at or before this is persisted.
    pub fn flushed_through(&self) -> Option<i64> {
        self.flushed_through
    }

    /// Number of the last flush of closed windows (0 = none).
    pub fn flush_seq(&self) -> u64 {
        self.flush_seq
    }

    /// Freezes the windows that closed since the last call and returns them with the flush
    /// number they get, for persistence; `None` when none closed. They stay in memory
    /// (queryable, frozen) until [`Self::evict`] drops them past the horizon, but leave
    /// checkpoints ([`Self::checkpoint_copy`]).
    pub fn take_closed(&mut self, lateness_ns: i64) -> Option<(u64, Closed)> {
        let w = self.closed_through(lateness_ns)?;
        let since = self.flushed_through.unwrap_or(i64::MIN);
        if w <= since {
            return None;
        }
        self.flushed_through = Some(w);
        // Windows with since < start + r <= w.
        let spans: Vec<(Resolution, std::ops::RangeInclusive<(Resolution, i64)>)> = Resolution::ALL
            .into_iter()
            .filter_map(|r| {
                let lo = since.saturating_sub(r.nanos()).saturating_add(1);
                let hi = w.saturating_sub(r.nanos());
                (lo <= hi).then_some((r, (r, lo)..=(r, hi)))
            })
            .collect();
        let mut out = Closed::default();
        // Spans in resolution order: a window's minutes freeze (into it) before it does.
        let mut metric_rows = |device: Option<&str>, metric: &str, w: &mut WindowsOf<MetricAgg>| {
            for (_, span) in &spans {
                let keys: Vec<_> = w.0.range(span.clone()).map(|(k, _)| *k).collect();
                for key in keys {
                    freeze_metric(&mut w.0, key);
                    let Some(a) = w.0.get(&key) else { continue };
                    out.metrics.push(MetricRow {
                        resolution: key.0,
                        start: key.1,
                        device: device.map(str::to_string),
                        metric: metric.to_string(),
                        agg: a.clone(),
                    });
                }
            }
        };
        for (device, metrics) in &mut self.metrics {
            for (metric, windows) in metrics {
                metric_rows(Some(device), metric, windows);
            }
        }
        for (metric, windows) in &mut self.all_devices {
            metric_rows(None, metric, windows);
        }
        for (dim, values) in &mut self.counts {
            for (value, windows) in values {
                for (_, span) in &spans {
                    for ((r, start), a) in windows.0.range_mut(span.clone()) {
                        a.freeze();
                        out.counts.push(CountRow {
                            resolution: *r,
                            start: *start,
                            dimension: *dim,
                            value: value.clone(),
                            agg: a.clone(),
                        });
                    }
                }
            }
        }
        if out.is_empty() {
            return None;
        }
        self.flush_seq += 1;
        Some((self.flush_seq, out))
    }

    /// A copy for the checkpoint: everything but the persisted windows (which are reloaded
    /// from their files on start). Per resolution, the windows ending after `flushed_through`
    /// are a key range: no walk over the persisted ones while the state is locked.
    pub fn checkpoint_copy(&self) -> TenantRollups {
        let ft = self.flushed_through.unwrap_or(i64::MIN);
        let spans = Resolution::ALL
            .map(|r| (r, ft.saturating_sub(r.nanos()).saturating_add(1))..=(r, i64::MAX));
        self.copy_of(&spans, None, false)
    }

    /// The windows not yet persisted (open ones with their current aggregates), as rows: what
    /// the rollup files do not hold yet.
    pub fn unpersisted(&self) -> Closed {
        let copy = self.checkpoint_copy();
        let mut out = Closed::default();
        let metric_rows =
            |out: &mut Closed, device: Option<&str>, metric: &str, w: WindowsOf<MetricAgg>| {
                out.metrics
                    .extend(w.0.iter().map(|(&(resolution, start), agg)| MetricRow {
                        resolution,
                        start,
                        device: device.map(str::to_string),
                        metric: metric.to_string(),
                        agg: answer(&w.0, (resolution, start), agg).into_owned(),
                    }));
            };
        for (device, metrics) in copy.metrics {
            for (metric, windows) in metrics {
                metric_rows(&mut out, Some(&device), &metric, windows);
            }
        }
        for (metric, windows) in copy.all_devices {
            metric_rows(&mut out, None, &metric, windows);
        }
        for (dimension, values) in copy.counts {
            for (value, windows) in values {
                out.counts
                    .extend(
                        windows
                            .0
                            .into_iter()
                            .map(|((resolution, start), agg)| CountRow {
                                resolution,
                                start,
                                dimension,
                                value: value.clone(),
                                agg,
                            }),
                    );
            }
        }
        out
    }

    /// A copy holding only `series`' windows of `r` starting in `[from, to)` (and the
    /// watermark, late counts and incomplete windows): the base of a view reaching past memory.
    pub fn range_copy(&self, r: Resolution, from: i64, to: i64, series: &Series) -> TenantRollups {
        let spans: Vec<_> = (from < to)
            .then(|| (r, from)..=(r, to.saturating_sub(1)))
            .into_iter()
            .collect();
        // The view holds no minutes for its hours or days: they answer what they hold.
        let mut copy = self.copy_of(&spans, Some(series), r != Resolution::Minute);
        // The view holds every window of its range (memory's and the files').
        copy.evicted_through = [None; 3];
        copy
    }

    /// A copy with the windows in `spans` of the series `series` wants (all without), and
    /// everything else that is not windows; `settle`: hour and day windows with their pending
    /// minutes' samples (see [`answer`]), for a copy that does not hold those minutes.
    fn copy_of(
        &self,
        spans: &[std::ops::RangeInclusive<(Resolution, i64)>],
        series: Option<&Series>,
        settle: bool,
    ) -> TenantRollups {
        fn select<A: Clone + Serialize + serde::de::DeserializeOwned>(
            w: &WindowsOf<A>,
            spans: &[std::ops::RangeInclusive<(Resolution, i64)>],
            copy: impl Fn(&Windows<A>, (Resolution, i64), &A) -> A,
        ) -> Option<WindowsOf<A>> {
            let kept: Windows<A> = spans
                .iter()
                .flat_map(|span| w.0.range(span.clone()))
                .map(|(k, a)| (*k, copy(&w.0, *k, a)))
                .collect();
            (!kept.is_empty()).then_some(WindowsOf(kept))
        }
        let copy_metric = |w: &Windows<MetricAgg>, k, a: &MetricAgg| match settle {
            true => answer(w, k, a).into_owned(),
            false => a.clone(),
        };
        let metrics_of = |m: &HashMap<String, WindowsOf<MetricAgg>>, device: Option<&str>| {
            m.iter()
                .filter(|(metric, _)| {
                    series.is_none_or(|s| s.has_metric(metric) && s.has_device(device))
                })
                .filter_map(|(k, w)| Some((k.clone(), select(w, spans, copy_metric)?)))
                .collect::<HashMap<_, _>>()
        };
        let mut copy = TenantRollups {
            max_event_time: self.max_event_time,
            max_received_at: self.max_received_at,
            metrics: self
                .metrics
                .iter()
                .map(|(d, m)| (d.clone(), metrics_of(m, Some(d))))
                .filter(|(_, m)| !m.is_empty())
                .collect(),
            series: 0,
            all_devices: metrics_of(&self.all_devices, None),
            counts: self
                .counts
                .iter()
                .filter(|(d, _)| series.is_none_or(|s| s.has_dimension(**d)))
                .map(|(d, m)| {
                    let values = m
                        .iter()
                        .filter_map(|(k, w)| {
                            Some((k.clone(), select(w, spans, |_, _, a| a.clone())?))
                        })
                        .collect::<HashMap<_, _>>();
                    (*d, values)
                })
                .filter(|(_, m)| !m.is_empty())
                .collect(),
            late: self.late.clone(),
            incomplete: self.incomplete.clone(),
            flushed_through: self.flushed_through,
            flush_seq: self.flush_seq,
            incomplete_cut: self.incomplete_cut,
            evicted_through: self.evicted_through,
            frozen_through: self.frozen_through,
        };
        copy.recount();
        copy
    }

    /// Adds persisted windows (on start, or to answer a range beyond memory) where no window
    /// is held already.
    pub fn insert_closed(&mut self, rows: Closed) {
        for row in rows.metrics {
            let windows = match &row.device {
                Some(d) => slot(slot(&mut self.metrics, d), &row.metric),
                None => slot(&mut self.all_devices, &row.metric),
            };
            windows
                .0
                .entry((row.resolution, row.start))
                .or_insert(row.agg);
        }
        for row in rows.counts {
            slot(self.counts.entry(row.dimension).or_default(), &row.value)
                .0
                .entry((row.resolution, row.start))
                .or_insert(row.agg);
        }
        self.recount();
    }

    /// Whether windows of `r` starting at `from` may have left memory: a range from there is
    /// answered with the persisted windows too.
    pub fn reaches_past_memory(&self, r: Resolution, from: i64) -> bool {
        self.evicted_through[r.index()].is_some_and(|e| from.saturating_add(r.nanos()) <= e)
    }

    /// Records that persisted windows of `r` ending at or before `end` are not in memory
    /// (after loading a checkpoint, which holds none of them, and the files' recent part).
    pub fn mark_evicted(&mut self, r: Resolution, end: i64) {
        let slot = &mut self.evicted_through[r.index()];
        *slot = Some(slot.map_or(end, |e| e.max(end)));
    }

    /// Applies one event at log `offset`.
    pub fn apply(&mut self, e: &impl AsEventRef, offset: u64, lateness_ns: i64) -> Applied {
        let e = e.as_event_ref();
        let mut applied = Applied::default();
        let mut open = [None; 3];
        for (i, r) in Resolution::ALL.into_iter().enumerate() {
            let window = r.window_start(e.time);
            if self.is_closed(r, window, lateness_ns) {
                applied.late += 1;
                *self.late.entry(r).or_default() += 1;
                *self.incomplete.entry((r, window)).or_default() += 1;
            } else {
                open[i] = Some((r, window));
            }
        }
        if !e.metrics.is_empty() {
            let device = slot(&mut self.metrics, e.device_id.unwrap_or(""));
            for (metric, value) in e.metrics.iter() {
                let p = Point {
                    time: e.time,
                    offset,
                    value,
                };
                let series = device.entry_ref(metric).or_insert_with(|| {
                    self.series += 1;
                    WindowsOf::default()
                });
                add_point(&mut series.0, &open, p);
                add_point(&mut slot(&mut self.all_devices, metric).0, &open, p);
            }
        }
        for d in Dimension::ALL {
            let Some(v) = d.of(&e) else { continue };
            let windows = &mut slot(self.counts.entry(d).or_default(), v).0;
            for key in open.iter().flatten() {
                let agg = windows.entry(*key).or_insert_with(|| CountAgg {
                    count: 0,
                    users: Users::Sketch(CardinalityEstimator::new()),
                });
                agg.count += 1;
                if let Some(u) = e.user_id
                    && let Users::Sketch(users) = &mut agg.users
                {
                    users.insert(u);
                }
            }
        }
        self.max_event_time = Some(self.max_event_time.map_or(e.time, |m| m.max(e.time)));
        self.max_received_at = Some(
            self.max_received_at
                .map_or(e.received_at, |m| m.max(e.received_at)),
        );
        applied
    }

    /// Drops persisted windows that ended more than `horizon(r)` before the watermark (and
    /// series left without windows), returning how many windows were dropped, and *freezes* the
    /// windows closed since the last pass: they keep their exact aggregates and [`QUANTILES`]
    /// but drop samples, sketches and user estimators (a closed window never changes again;
    /// late events are counted, not applied). Open and unpersisted windows are never dropped.
    /// Incomplete windows are remembered for the longest horizon. Each series costs a few
    /// key-range lookups plus the windows it drops or freezes: a pass does not walk the windows
    /// that stay as they are (it runs under the state's write lock).
    pub fn evict(&mut self, lateness_ns: i64, horizon: impl Fn(Resolution) -> i64) -> usize {
        let Some(w) = self.watermark(lateness_ns) else {
            return 0;
        };
        let flushed = self.flushed_through.unwrap_or(i64::MIN);
        // Windows ending at or before the cut leave memory: past the horizon, and persisted.
        let cut = Resolution::ALL.map(|r| w.saturating_sub(horizon(r)).min(flushed));
        for (r, c) in Resolution::ALL.into_iter().zip(cut) {
            self.mark_evicted(r, c);
        }
        let longest = Resolution::ALL.map(&horizon).into_iter().max().unwrap_or(0);
        let incomplete_cut = w.saturating_sub(longest);
        self.incomplete_cut = Some(
            self.incomplete_cut
                .map_or(incomplete_cut, |c| c.max(incomplete_cut)),
        );
        let pass = Pass {
            cut,
            frozen_since: self.frozen_through.unwrap_or(i64::MIN),
            closed_through: w,
        };
        self.frozen_through = Some(w.max(pass.frozen_since));
        let mut dropped = 0;
        for metrics in self.metrics.values_mut() {
            for windows in metrics.values_mut() {
                dropped += pass.run(&mut windows.0, freeze_metric);
            }
            metrics.retain(|_, windows| !windows.0.is_empty());
        }
        self.metrics.retain(|_, m| !m.is_empty());
        self.recount();
        for windows in self.all_devices.values_mut() {
            pass.run(&mut windows.0, freeze_metric);
        }
        self.all_devices.retain(|_, w| !w.0.is_empty());
        for r in Resolution::ALL {
            let last = incomplete_cut.saturating_sub(r.nanos());
            self.incomplete
                .extract_if((r, i64::MIN)..=(r, last), |_, _| true)
                .for_each(drop);
        }
        for values in self.counts.values_mut() {
            for windows in values.values_mut() {
                dropped += pass.run(&mut windows.0, freeze_count);
            }
            values.retain(|_, windows| !windows.0.is_empty());
        }
        dropped
    }

    /// Windows of `r` for `metric` starting in `[from, to)`, optionally of one device, ordered
    /// by device then window start.
    pub fn metric_windows<'a>(
        &'a self,
        r: Resolution,
        metric: &'a str,
        device_id: Option<&'a str>,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (&'a str, i64, Cow<'a, MetricAgg>)> + 'a {
        let mut devices: Vec<(&'a str, &'a WindowsOf<MetricAgg>)> = match device_id {
            Some(d) => self
                .metrics
                .get_key_value(d)
                .and_then(|(k, m)| Some((k.as_str(), m.get(metric)?)))
                .into_iter()
                .collect(),
            None => self
                .metrics
                .iter()
                .filter_map(|(k, m)| Some((k.as_str(), m.get(metric)?)))
                .collect(),
        };
        devices.sort_by_key(|(d, _)| *d);
        devices.into_iter().flat_map(move |(d, windows)| {
            windows
                .0
                .range((r, from)..(r, to.max(from)))
                .map(move |(k, a)| (d, k.1, answer(&windows.0, *k, a)))
        })
    }

    /// Recomputes derived counters (after loading a checkpoint).
    pub fn recount(&mut self) {
        self.series = self.metrics.values().map(HashMap::len).sum();
    }

    /// Number of (device, metric) series held.
    pub fn series_count(&self) -> usize {
        self.series
    }

    /// Whether the (device, metric) series is held (`""` = events without a device).
    pub fn has_series(&self, device_id: &str, metric: &str) -> bool {
        self.metrics
            .get(device_id)
            .is_some_and(|m| m.contains_key(metric))
    }

    /// Names of the metrics with windows, of one device or of any, sorted.
    pub fn metric_names(&self, device_id: Option<&str>) -> Vec<&str> {
        let mut names: Vec<&str> = match device_id {
            Some(d) => self
                .metrics
                .get(d)
                .into_iter()
                .flat_map(|m| m.keys())
                .map(String::as_str)
                .collect(),
            None => self.all_devices.keys().map(String::as_str).collect(),
        };
        names.sort_unstable();
        names
    }

    /// Windows of `r` for `metric` over all devices together, starting in `[from, to)`.
    pub fn all_devices_windows<'a>(
        &'a self,
        r: Resolution,
        metric: &'a str,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (i64, Cow<'a, MetricAgg>)> + 'a {
        self.all_devices.get(metric).into_iter().flat_map(move |w| {
            w.0.range((r, from)..(r, to.max(from)))
                .map(|(k, a)| (k.1, answer(&w.0, *k, a)))
        })
    }

    /// Count windows of `r` for `dim` starting in `[from, to)`, optionally of one value,
    /// ordered by value then window start.
    pub fn count_windows<'a>(
        &'a self,
        r: Resolution,
        dim: Dimension,
        value: Option<&'a str>,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (&'a str, i64, &'a CountAgg)> + 'a {
        let mut values: Vec<(&'a str, &'a WindowsOf<CountAgg>)> = self
            .counts
            .get(&dim)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| value.is_none_or(|v| v == k.as_str()))
            .map(|(k, w)| (k.as_str(), w))
            .collect();
        values.sort_by_key(|(v, _)| *v);
        values.into_iter().flat_map(move |(v, windows)| {
            windows
                .0
                .range((r, from)..(r, to.max(from)))
                .map(move |((_, s), a)| (v, *s, a))
        })
    }

    /// Number of windows held (all series, dimension values and resolutions).
    pub fn len(&self) -> usize {
        self.metrics
            .values()
            .flat_map(|m| m.values())
            .map(|w| w.0.len())
            .sum::<usize>()
            + self
                .counts
                .values()
                .flat_map(|m| m.values())
                .map(|w| w.0.len())
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.counts.is_empty()
    }

    /// Whether every window of `r` starting in `[from, to)` is here and holds every event of
    /// its range: none missed a late event (as far as remembered: see [`Self::evict`]), and
    /// none has left memory.
    pub fn complete(&self, r: Resolution, from: i64, to: i64) -> bool {
        let end = from.saturating_add(r.nanos());
        !self.reaches_past_memory(r, from)
            && self.incomplete_cut.is_none_or(|c| end > c)
            && self
                .incomplete
                .range((r, from)..(r, to.max(from)))
                .next()
                .is_none()
    }

    /// Starts of the windows of `r` in `[from, to)` that missed late events (their rollups
    /// lack those events; the raw store has them).
    pub fn incomplete_windows(
        &self,
        r: Resolution,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = i64> + '_ {
        self.incomplete
            .range((r, from)..(r, to.max(from)))
            .map(|((_, start), _)| *start)
    }

    /// Whether the window of `r` starting at `start` is closed.
    pub fn closed(&self, r: Resolution, start: i64, lateness_ns: i64) -> bool {
        self.is_closed(r, start, lateness_ns)
    }
}
