//! Rollups against a naive recomputation over the same events (property tests), lateness, and
//! the processor's exactly-once recovery against a real WAL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::Log;
use eddy_log::wal::{Wal, WalConfig};
use eddy_model::{Entry, Event, LogEntry, codec, columns};
use proptest::prelude::*;

use crate::rollup::{Dimension, MetricAgg, Resolution, SKETCH_ALPHA, TenantRollups};
use crate::{Processor, StreamConfig};

const T0: i64 = 1_764_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;
const LATENESS: i64 = 300 * SEC;

fn event(i: u64, time: i64, device: u8, value: f64, user: Option<u8>) -> Event {
    let mut e = Event {
        tenant: "t".into(),
        event_id: format!("e{i}"),
        time,
        received_at: T0 + 10_000 * SEC,
        r#type: if device.is_multiple_of(2) {
            "reading"
        } else {
            "click"
        }
        .into(),
        device_id: Some(format!("dev-{device}")),
        user_id: user.map(|u| format!("user-{u}")),
        page_url: device
            .is_multiple_of(3)
            .then(|| format!("/p/{}", device % 2)),
        source: Some(["web", "ios"][(device % 2) as usize].into()),
        ..Default::default()
    };
    e.metrics.insert("temp".into(), value);
    if device.is_multiple_of(2) {
        e.metrics.insert("hum".into(), value * 2.0 + 1.0);
    }
    e
}

type SampleKey = (Resolution, String, String, i64);
/// `(time, offset, value)` of one window's samples.
type Samples = Vec<(i64, u64, f64)>;
type CountKey = (Resolution, Dimension, String, i64);

/// Naive per-window aggregates: all samples kept, computed at the end.
#[derive(Default)]
struct Naive {
    samples: BTreeMap<SampleKey, Samples>,
    counts: BTreeMap<CountKey, (u64, std::collections::BTreeSet<String>)>,
}

impl Naive {
    fn add(&mut self, e: &Event, offset: u64) {
        for r in Resolution::ALL {
            let w = r.window_start(e.time);
            for (m, v) in &e.metrics {
                self.samples
                    .entry((r, e.device_id.clone().unwrap_or_default(), m.clone(), w))
                    .or_default()
                    .push((e.time, offset, *v));
            }
            for (d, v) in [
                (Dimension::Type, Some(e.r#type.clone())),
                (Dimension::PageUrl, e.page_url.clone()),
                (Dimension::Source, e.source.clone()),
            ] {
                if let Some(v) = v {
                    let c = self.counts.entry((r, d, v, w)).or_default();
                    c.0 += 1;
                    if let Some(u) = &e.user_id {
                        c.1.insert(u.clone());
                    }
                }
            }
        }
    }
}

/// Exact (interpolated, as `percentile_cont`) up to `EXACT_SAMPLES` samples; beyond, the
/// sketch's bound: within α of the lower-rank value.
pub(crate) fn assert_quantile(est: f64, sorted: &[f64], q: f64) {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (sorted[pos.floor() as usize], sorted[pos.ceil() as usize]);
    let interpolated = lo + (pos - pos.floor()) * (hi - lo);
    if sorted.len() <= crate::rollup::EXACT_SAMPLES {
        assert!(
            (est - interpolated).abs() <= 1e-9 * interpolated.abs().max(1.0),
            "p{q}: {est} vs exact {interpolated}"
        );
    } else {
        assert!(
            (est - lo).abs() <= SKETCH_ALPHA * lo.abs() + 1e-9,
            "p{q}: sketch {est} vs rank value {lo}"
        );
    }
}

/// One window's aggregates against its samples `(time, offset, value)`.
fn assert_window(a: &MetricAgg, samples: &[(i64, u64, f64)]) {
    assert_eq!(a.count, samples.len() as u64);
    let sum: f64 = samples.iter().map(|s| s.2).sum();
    assert!(
        (a.sum - sum).abs() <= 1e-9 * sum.abs().max(1.0),
        "sum {} vs {sum}",
        a.sum
    );
    let min = samples.iter().map(|s| s.2).fold(f64::INFINITY, f64::min);
    let max = samples
        .iter()
        .map(|s| s.2)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!((a.min, a.max), (min, max));
    // First/last by time, ties by value (what the raw path answers).
    let by_time_value =
        |a: &&(i64, u64, f64), b: &&(i64, u64, f64)| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2));
    let first = samples.iter().min_by(by_time_value).unwrap();
    let last = samples.iter().max_by(by_time_value).unwrap();
    assert_eq!(a.first.value, first.2);
    assert_eq!(a.last.value, last.2);
    let mut sorted: Vec<f64> = samples.iter().map(|s| s.2).collect();
    sorted.sort_by(f64::total_cmp);
    for q in [0.5, 0.9, 0.95, 0.99] {
        assert_quantile(a.quantile(q).unwrap(), &sorted, q);
    }
}

fn assert_matches(roll: &TenantRollups, naive: &Naive) {
    let mut windows = 0;
    let mut all_devices: BTreeMap<(Resolution, String, i64), Samples> = BTreeMap::new();
    for ((r, dev, metric, w), samples) in &naive.samples {
        let got: Vec<_> = roll
            .metric_windows(*r, metric, Some(dev), *w, *w + 1)
            .collect();
        assert_eq!(got.len(), 1, "{r:?} {dev} {metric} {w}");
        assert_window(&got[0].2, samples);
        windows += 1;
        all_devices
            .entry((*r, metric.clone(), *w))
            .or_default()
            .extend(samples);
    }
    for ((r, metric, w), samples) in &all_devices {
        let got: Vec<_> = roll.all_devices_windows(*r, metric, *w, *w + 1).collect();
        assert_eq!(got.len(), 1, "all devices {r:?} {metric} {w}");
        assert_window(&got[0].1, samples);
    }
    let total: usize = Resolution::ALL
        .iter()
        .map(|r| {
            roll.metric_windows(*r, "temp", None, i64::MIN, i64::MAX)
                .count()
                + roll
                    .metric_windows(*r, "hum", None, i64::MIN, i64::MAX)
                    .count()
        })
        .sum();
    assert_eq!(total, windows, "no window the naive computation lacks");
    for ((r, d, v, w), (count, users)) in &naive.counts {
        let got: Vec<_> = roll.count_windows(*r, *d, Some(v), *w, *w + 1).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2.count, *count);
        let est = got[0].2.distinct_users() as f64;
        let exact = users.len() as f64;
        assert!(
            (est - exact).abs() <= 1.0 + 0.05 * exact,
            "distinct users {est} vs {exact}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random streams, in order or shuffled within the allowed lateness: the rollups equal the
    /// naive computation (exact aggregates exactly, quantiles within the sketch's bound).
    #[test]
    fn rollups_equal_a_naive_recomputation(
        raw in proptest::collection::vec((0i64..4 * 3600, 0u8..6, -50.0f64..150.0, proptest::option::of(0u8..20)), 1..400),
        jitter in proptest::collection::vec(0i64..LATENESS / SEC, 400),
    ) {
        // Times increase overall; each event is moved back by less than the lateness, so no
        // event is late.
        let mut sorted = raw.clone();
        sorted.sort_by_key(|r| r.0);
        let mut roll = TenantRollups::default();
        let mut naive = Naive::default();
        for (i, (t, dev, v, user)) in sorted.iter().enumerate() {
            let time = T0 + t * SEC - jitter[i] * SEC;
            let e = event(i as u64, time, *dev, (*v * 100.0).round() / 100.0, *user);
            let applied = roll.apply(&e, i as u64, LATENESS);
            prop_assert_eq!(applied.late, 0);
            naive.add(&e, i as u64);
        }
        assert_matches(&roll, &naive);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Hour and day quantiles are assembled from their minutes as those freeze (one sketch add
    /// per sample): the answers must not depend on when windows freeze, flush, or go through a
    /// checkpoint and a restart, with events late for their minute but not for their hour.
    #[test]
    fn answers_do_not_depend_on_when_windows_freeze_flush_or_restart(
        raw in proptest::collection::vec((0i64..3 * 3600, 0u8..4, -50.0f64..150.0), 1..600),
        late in proptest::collection::vec(0i64..2 * LATENESS / SEC, 600),
        ops in proptest::collection::vec(0u8..8, 600),
    ) {
        let mut sorted = raw.clone();
        sorted.sort_by_key(|r| r.0);
        let (mut plain, mut stepped) = (TenantRollups::default(), TenantRollups::default());
        // What the rollup files would hold: the restarted state reads them back.
        let mut files = Vec::new();
        let mut late_events = 0;
        for (i, (t, dev, v)) in sorted.iter().enumerate() {
            let time = T0 + t * SEC - late[i] * SEC;
            let e = event(i as u64, time, *dev, (*v * 100.0).round() / 100.0, None);
            let a = plain.apply(&e, i as u64, LATENESS);
            let b = stepped.apply(&e, i as u64, LATENESS);
            prop_assert_eq!(a.late, b.late);
            late_events += u64::from(a.late);
            match ops[i] {
                0 => {
                    stepped.evict(LATENESS, |_| i64::MAX / 4);
                }
                1 => files.extend(stepped.take_closed(LATENESS).map(|(_, c)| c)),
                2 => {
                    let json = serde_json::to_vec(&stepped.checkpoint_copy()).unwrap();
                    stepped = serde_json::from_slice(&json).unwrap();
                    files.iter().for_each(|c| stepped.insert_closed(c.clone()));
                }
                _ => {}
            }
        }
        plain.evict(LATENESS, |_| i64::MAX / 4);
        stepped.evict(LATENESS, |_| i64::MAX / 4);
        prop_assert_eq!(answers(&plain), answers(&stepped), "{} late", late_events);
    }
}

/// Every answer of every window, for comparing states.
fn answers(roll: &TenantRollups) -> Vec<String> {
    let mut out = Vec::new();
    for r in Resolution::ALL {
        for m in ["temp", "hum"] {
            for (d, s, a) in roll.metric_windows(r, m, None, i64::MIN, i64::MAX) {
                let q: Vec<_> = crate::rollup::QUANTILES
                    .iter()
                    .map(|q| a.quantile(*q))
                    .collect();
                out.push(format!(
                    "{r:?} {m} {d} {s} {} {} {} {} {} {} {q:?}",
                    a.count, a.sum, a.min, a.max, a.first.value, a.last.value
                ));
            }
        }
        for dim in Dimension::ALL {
            for (v, s, a) in roll.count_windows(r, dim, None, i64::MIN, i64::MAX) {
                out.push(format!(
                    "{r:?} {dim:?} {v} {s} {} {}",
                    a.count,
                    a.distinct_users()
                ));
            }
        }
    }
    out
}

/// Closed windows are frozen by the eviction pass: they answer exactly as before (aggregates,
/// p50/p90/p95/p99, distinct users), survive a checkpoint round trip, and take much less room.
#[test]
fn frozen_closed_windows_answer_the_same_in_less_space() {
    use rand::Rng;
    let mut roll = TenantRollups::default();
    let mut rng = rand::rng();
    for i in 0..20_000u64 {
        let t = T0 + (i as i64 % 7200) * SEC + rng.random_range(0..SEC);
        // Two busy devices: ~80 samples per minute window, so the windows hold sketches.
        let mut e = event(
            i,
            t,
            (i % 2) as u8,
            rng.random_range(0.0..100.0),
            Some((i % 200) as u8),
        );
        e.received_at = T0 + 7200 * SEC;
        roll.apply(&e, i, LATENESS);
    }
    let before = answers(&roll);
    let size_before = serde_json::to_vec(&roll).unwrap().len();
    let dropped = roll.evict(LATENESS, |_| i64::MAX / 4);
    assert_eq!(dropped, 0, "a long horizon drops nothing");
    assert_eq!(answers(&roll), before, "frozen windows answer the same");
    let json = serde_json::to_vec(&roll).unwrap();
    assert!(
        json.len() * 2 < size_before,
        "frozen state is much smaller: {} vs {size_before} bytes",
        json.len()
    );
    let back: TenantRollups = serde_json::from_slice(&json).unwrap();
    let after = answers(&back);
    let diff: Vec<_> = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a != b)
        .take(3)
        .collect();
    assert!(diff.is_empty(), "and survives a checkpoint: {diff:?}");
    assert_eq!(after.len(), before.len());
    // Open windows still take events.
    let mut e = event(99_999, T0 + 7199 * SEC, 0, 1.0, Some(1));
    e.received_at = T0 + 7200 * SEC;
    assert_eq!(roll.apply(&e, 99_999, LATENESS).late, 0);
}

#[test]
fn events_behind_the_watermark_are_late_per_resolution() {
    let mut roll = TenantRollups::default();
    roll.apply(&event(0, T0 + 3600 * SEC, 0, 1.0, None), 0, LATENESS);
    // Watermark is now T0 + 3600 s − 300 s. An event at T0 + 10 s: its minute and hour windows
    // have closed; its day window is open.
    let t_late = Resolution::Day.window_start(T0) + 10 * SEC;
    let applied = roll.apply(&event(1, t_late, 0, 5.0, None), 1, LATENESS);
    let closes = [Resolution::Minute, Resolution::Hour]
        .iter()
        .filter(|r| roll.closed(**r, r.window_start(t_late), LATENESS))
        .count();
    assert_eq!(u32::from(applied.late), closes as u32);
    assert!(closes >= 1);
    assert!(
        roll.metric_windows(Resolution::Minute, "temp", None, i64::MIN, i64::MAX)
            .all(|(_, _, a)| a.count == 1 && a.sum == 1.0)
    );
    let day: Vec<_> = roll
        .metric_windows(Resolution::Day, "temp", None, i64::MIN, i64::MAX)
        .map(|(_, s, a)| (s, a.count))
        .collect();
    let expected_days =
        if Resolution::Day.window_start(T0 + 3600 * SEC) == Resolution::Day.window_start(t_late) {
            vec![2]
        } else {
            vec![1, 1]
        };
    assert_eq!(day.iter().map(|d| d.1).collect::<Vec<_>>(), expected_days);
    assert_eq!(roll.late.get(&Resolution::Minute), Some(&1));
    // Within the lateness: on time everywhere.
    let applied = roll.apply(
        &event(2, T0 + 3600 * SEC - 200 * SEC, 0, 2.0, None),
        2,
        LATENESS,
    );
    assert_eq!(applied.late, 0);
}

#[test]
fn a_future_dated_event_does_not_close_windows() {
    let mut roll = TenantRollups::default();
    let mut e = event(0, T0 + 3600 * SEC, 0, 1.0, None);
    e.received_at = T0;
    roll.apply(&e, 0, LATENESS);
    let mut e = event(1, T0 - 60 * SEC, 0, 1.0, None);
    e.received_at = T0;
    assert_eq!(
        roll.apply(&e, 1, LATENESS).late,
        0,
        "watermark follows the receive time"
    );
}

/// Appends `events` as the ingest path does: each run of one tenant's events as batch records
/// (a run of one as a single-event record).
async fn append(wal: &Wal, events: &[Event]) {
    let mut recs = Vec::new();
    for run in events.chunk_by(|a, b| a.tenant == b.tenant) {
        recs.extend(codec::encode_events(&run[0].tenant, run).unwrap());
    }
    wal.append(recs).unwrap().durable().await.unwrap();
}

/// Appends `events` one record each (record format 1, as logs before batches hold them).
async fn append_singly(wal: &Wal, events: &[Event]) {
    let recs = events
        .iter()
        .map(|e| {
            Bytes::from(codec::encode_entry(&LogEntry {
                entry: Some(Entry::Event(e.clone())),
            }))
        })
        .collect();
    wal.append(recs).unwrap().durable().await.unwrap();
}

async fn caught_up(p: &Processor, wal: &Wal) {
    for _ in 0..1000 {
        if p.applied_offset() == wal.end_offset() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("processor did not catch up");
}

/// Crashes (no final checkpoint) at several points, reopens, replays: the rollups always equal
/// the naive computation over every appended event — nothing dropped, nothing counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_count_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::new(dir.path().join("stream"));
    config.checkpoint_interval = Duration::from_millis(20);
    let mut naive = Naive::default();
    let mut count = 0u64;
    for round in 0..5 {
        let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
        let p = Processor::open(config.clone(), wal.clone()).unwrap();
        p.start();
        for batch in 0..4 {
            let events: Vec<Event> = (0..50)
                .map(|i| {
                    let n = count + i;
                    event(
                        n,
                        T0 + (n as i64) * SEC,
                        (n % 6) as u8,
                        (n % 17) as f64,
                        Some((n % 9) as u8),
                    )
                })
                .collect();
            // Even rounds write batch records, odd ones single-event records: a log holds
            // both after an upgrade.
            let at = wal.end_offset();
            let batched = round % 2 == 0;
            for (i, e) in events.iter().enumerate() {
                let position = if batched {
                    columns::position(at, i)
                } else {
                    columns::position(at + i as u64, 0)
                };
                naive.add(e, position);
            }
            count += events.len() as u64;
            if batched {
                append(&wal, &events).await;
            } else {
                append_singly(&wal, &events).await;
            }
            if batch == 2 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        caught_up(&p, &wal).await;
        p.read("t", |r| assert_matches(r, &naive)).unwrap();
        if round % 2 == 0 {
            p.crash().await;
        } else {
            p.shutdown().await;
            assert_eq!(
                crate::processor::checkpoint_offset(&config.dir).unwrap(),
                Some(wal.end_offset()),
                "a graceful stop checkpoints everything"
            );
        }
        drop(p);
        wal.shutdown().unwrap();
    }
    let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
    let p = Processor::open(config, wal.clone()).unwrap();
    p.start();
    caught_up(&p, &wal).await;
    p.read("t", |r| assert_matches(r, &naive)).unwrap();
    p.read("nobody", |r| assert!(r.is_empty())).unwrap();
}

/// A window past `EXACT_SAMPLES` switches to the sketch; quantiles stay within its bound and
/// the exact aggregates stay exact (also with negative values and zeros).
#[test]
fn large_windows_use_the_sketch_within_its_error_bound() {
    let mut roll = TenantRollups::default();
    let mut naive = Naive::default();
    for i in 0..5000u64 {
        let v = ((i * 7919) % 2001) as f64 / 10.0 - 100.0;
        let e = event(i, T0 + (i as i64 % 59) * SEC, 0, v, Some((i % 200) as u8));
        roll.apply(&e, i, LATENESS);
        naive.add(&e, i);
    }
    const { assert!(crate::rollup::EXACT_SAMPLES < 5000) };
    assert_matches(&roll, &naive);
}

/// A checkpoint that cannot be written is retried; the processor keeps applying meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkpoint_is_retried_and_processing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::new(dir.path().join("stream"));
    config.checkpoint_interval = Duration::from_millis(20);
    let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
    let p = Processor::open(config.clone(), wal.clone()).unwrap();
    p.start();
    // The checkpoint directory becomes a file: every checkpoint fails.
    std::fs::remove_dir_all(&config.dir).unwrap();
    std::fs::write(&config.dir, b"not a directory").unwrap();
    let events: Vec<Event> = (0..50)
        .map(|i| event(i, T0 + i as i64 * SEC, 0, 1.0, None))
        .collect();
    append(&wal, &events).await;
    caught_up(&p, &wal).await;
    // Checkpoints fail (every 20 ms) while processing goes on.
    for _ in 0..3000 {
        if p.checkpoint_failures() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        p.checkpoint_failures() >= 2,
        "the checkpoints failed and were retried"
    );
    append(&wal, &events[..10]).await;
    caught_up(&p, &wal).await;
    p.read("t", |r| {
        let n: u64 = r
            .metric_windows(Resolution::Day, "temp", None, i64::MIN, i64::MAX)
            .map(|(_, _, a)| a.count)
            .sum();
        assert_eq!(n, 60, "still applying while checkpoints fail");
    })
    .unwrap();
    // Repaired: the next checkpoint covers everything.
    std::fs::remove_file(&config.dir).unwrap();
    std::fs::create_dir(&config.dir).unwrap();
    // A bound for a loaded machine, not a timing claim: the retry comes within one interval.
    for _ in 0..3000 {
        if crate::processor::checkpoint_offset(&config.dir).unwrap() == Some(wal.end_offset()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no checkpoint after the directory came back");
}

mod detection_quality {
    //! Detection quality, measured: series of Gaussian noise with injected spikes (5–10σ, 1%
    //! of points), level shifts (6σ) and linear drifts; precision and recall of spike
    //! detection for both detectors, and how they behave on shifts and drifts.

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::detect::{DetectorConfig, EWMA_ALPHA, Ewma, ZScore};

    fn normal(rng: &mut StdRng) -> f64 {
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// (values, is_spike) of one series around `level` with σ = `sd`.
    fn series(rng: &mut StdRng, n: usize, level: f64, sd: f64) -> (Vec<f64>, Vec<bool>) {
        let mut values = Vec::with_capacity(n);
        let mut spikes = Vec::with_capacity(n);
        for i in 0..n {
            let spike = i >= 30 && rng.random_bool(0.01);
            let mut x = level + sd * normal(rng);
            if spike {
                let k = rng.random_range(5.0..10.0);
                x += if rng.random_bool(0.5) { k } else { -k } * sd;
            }
            values.push(x);
            spikes.push(spike);
        }
        (values, spikes)
    }

    struct Score {
        tp: usize,
        fp: usize,
        fn_: usize,
    }

    impl Score {
        fn precision(&self) -> f64 {
            self.tp as f64 / (self.tp + self.fp).max(1) as f64
        }
        fn recall(&self) -> f64 {
            self.tp as f64 / (self.tp + self.fn_).max(1) as f64
        }
    }

    fn spike_quality(mut observe: impl FnMut(usize, f64) -> bool) -> Score {
        let mut rng = StdRng::seed_from_u64(7);
        let mut s = Score {
            tp: 0,
            fp: 0,
            fn_: 0,
        };
        for series_no in 0..50 {
            let (values, spikes) = series(&mut rng, 2000, 20.0 + series_no as f64, 0.5);
            for (x, spike) in values.into_iter().zip(spikes) {
                match (observe(series_no, x), spike) {
                    (true, true) => s.tp += 1,
                    (true, false) => s.fp += 1,
                    (false, true) => s.fn_ += 1,
                    (false, false) => {}
                }
            }
        }
        s
    }

    /// Recall at the default 3σ is ≥ 0.9 for both detectors. Precision at 3σ is bounded by
    /// the noise itself: 0.27% of Gaussian points lie beyond 3σ, so with 1% spikes precision
    /// cannot pass about 0.79 — measured and printed here, and recorded in docs. At 3.5σ
    /// (tail 0.047%) both pass 0.9 on precision and recall; the test asserts that.
    #[test]
    fn spikes_are_found_with_precision_and_recall_of_at_least_0_9() {
        let mut at_35 = Vec::new();
        for threshold in [3.0, 3.5, 4.0] {
            let config = DetectorConfig {
                threshold,
                ..DetectorConfig::default()
            };
            let mut z: Vec<ZScore> = (0..50).map(|_| ZScore::new(100, config)).collect();
            let zs = spike_quality(|i, x| z[i].observe(x).anomalous);
            let mut e: Vec<Ewma> = (0..50).map(|_| Ewma::new(EWMA_ALPHA, config)).collect();
            let es = spike_quality(|i, x| e[i].observe(x).anomalous);
            eprintln!(
                "spikes at {threshold}σ: z-score precision {:.3} recall {:.3} ({} tp, {} fp, {} fn); \
                 EWMA precision {:.3} recall {:.3} ({} tp, {} fp, {} fn)",
                zs.precision(),
                zs.recall(),
                zs.tp,
                zs.fp,
                zs.fn_,
                es.precision(),
                es.recall(),
                es.tp,
                es.fp,
                es.fn_
            );
            assert!(zs.tp > 500, "enough spikes to measure");
            if threshold == 3.0 {
                assert!(
                    zs.recall() >= 0.9 && es.recall() >= 0.9,
                    "recall at the default 3σ"
                );
            }
            if threshold == 3.5 {
                at_35 = vec![("z-score", zs), ("EWMA", es)];
            }
        }
        for (name, s) in &at_35 {
            assert!(
                s.precision() >= 0.9,
                "{name} precision {:.3} at 3.5σ",
                s.precision()
            );
            assert!(s.recall() >= 0.9, "{name} recall {:.3} at 3.5σ", s.recall());
        }
    }

    /// A 6σ level shift fires at once and settles once the baseline has moved over; a slow
    /// drift (0.01σ per point) fires no more than the noise alone would.
    #[test]
    fn level_shifts_fire_then_settle_and_slow_drifts_do_not_fire() {
        let config = DetectorConfig::default();
        let mut rng = StdRng::seed_from_u64(11);
        let mut z = ZScore::new(100, config);
        let mut e = Ewma::new(EWMA_ALPHA, config);
        let mut fired_after_shift = (Vec::new(), Vec::new());
        for i in 0..1000 {
            let x = if i < 500 { 10.0 } else { 13.0 } + 0.5 * normal(&mut rng);
            let (a, b) = (z.observe(x).anomalous, e.observe(x).anomalous);
            if i >= 500 {
                if a {
                    fired_after_shift.0.push(i - 500);
                }
                if b {
                    fired_after_shift.1.push(i - 500);
                }
            }
        }
        eprintln!(
            "level shift: z-score fired at {:?}; EWMA fired at {:?}",
            fired_after_shift.0, fired_after_shift.1
        );
        for fired in [&fired_after_shift.0, &fired_after_shift.1] {
            assert_eq!(fired.first(), Some(&0), "the shift is seen at once");
            // Then it settles: after 150 points no more than the noise's own rate (≤ 1%).
            let late = fired.iter().filter(|k| **k >= 150).count();
            assert!(late <= 4, "the detector settles: {fired:?}");
        }
        // The same noise with and without a drift: the drift may not fire much more often
        // than the noise alone does.
        let fires = |drift: f64, seed: u64| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut z = ZScore::new(100, config);
            let mut e = Ewma::new(EWMA_ALPHA, config);
            let mut fired = (0, 0);
            for i in 0..20_000 {
                let x = 10.0 + drift * i as f64 + 0.5 * normal(&mut rng);
                fired.0 += usize::from(z.observe(x).anomalous);
                fired.1 += usize::from(e.observe(x).anomalous);
            }
            fired
        };
        let (noise, drift) = (fires(0.0, 3), fires(0.0005, 3));
        eprintln!(
            "20000 points, noise alone / with a drift of 0.001σ per point: z-score fired {} / {}, EWMA {} / {}",
            noise.0, drift.0, noise.1, drift.1
        );
        assert!(
            drift.0 <= 2 * noise.0 + 5 && drift.1 <= 2 * noise.1 + 5,
            "a slow drift is not a stream of alerts: {drift:?} vs noise {noise:?}"
        );
    }

    /// A flat series (a sensor reporting the same value) is never anomalous, however long it
    /// runs: the rolling sums drifted by rounding until the mean differed from the value in
    /// the last bits and every point scored "infinitely many σ" (seen in the pipeline
    /// benchmark, whose devices repeat their readings: 1300 alerts open for ever).
    #[test]
    fn flat_series_never_fire_however_long_they_run() {
        let config = DetectorConfig::default();
        for value in [1024.77, 26.28, 45.3, 0.1, -17.07, 1.0e9 + 0.5, 0.0] {
            let mut z = ZScore::new(100, config);
            let mut e = Ewma::new(EWMA_ALPHA, config);
            for i in 0..200_000 {
                let (a, b) = (z.observe(value), e.observe(value));
                assert!(
                    !a.anomalous && !b.anomalous,
                    "flat {value} fired at point {i}: z-score {a:?}, EWMA {b:?}"
                );
            }
            // And a real change after it is still seen at once.
            assert!(
                z.observe(value + 1.0).anomalous,
                "a step after flat {value}"
            );
        }
    }
}

async fn append_entries(wal: &Wal, entries: Vec<Entry>) {
    let recs = entries
        .into_iter()
        .map(|e| Bytes::from(codec::encode_entry(&LogEntry { entry: Some(e) })))
        .collect();
    wal.append(recs).unwrap().durable().await.unwrap();
}

/// Alerts are part of the exactly-once state: a rule change and an acknowledgement that went
/// through the log, then a crash (no checkpoint) and a graceful restart, leave exactly the
/// same alerts — the replay neither opens a second alert nor forgets the acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_their_actions_survive_crashes_exactly_once() {
    use crate::alerts::{Status, Transition};
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::new(dir.path().join("stream"));
    config.checkpoint_interval = Duration::from_secs(3600);
    let wal_config = WalConfig::new(dir.path().join("wal"));
    let wal = Arc::new(Wal::open(wal_config.clone()).unwrap());
    let p = Processor::open(config.clone(), wal.clone()).unwrap();
    let mut notices = p.take_notices().unwrap();
    assert!(p.take_notices().is_none(), "one notifier");
    p.start();
    let rule = crate::RuleSpec {
        kind: Some("threshold".into()),
        op: Some(">".into()),
        value: Some(100.0),
        metrics: Some(vec!["temp".into()]),
        ..Default::default()
    }
    .validate("hot", T0, T0)
    .unwrap();
    append_entries(
        &wal,
        vec![Entry::RuleChange(eddy_model::RuleChange {
            tenant: "t".into(),
            rule_id: "hot".into(),
            rule_json: Some(serde_json::to_string(&rule).unwrap()),
            at: T0,
        })],
    )
    .await;
    let events: Vec<Event> = (0..10)
        .map(|i| {
            event(
                i,
                T0 + i as i64 * SEC,
                0,
                if i == 5 { 500.0 } else { 1.0 },
                None,
            )
        })
        .collect();
    append(&wal, &events).await;
    caught_up(&p, &wal).await;
    let opened = notices.recv().await.unwrap();
    assert_eq!(opened.transition, Transition::Opened);
    assert_eq!(opened.alert.rule_id, "hot");
    let id = opened.alert.id.clone();
    append_entries(
        &wal,
        vec![Entry::AlertAction(eddy_model::AlertAction {
            tenant: "t".into(),
            alert_id: id.clone(),
            action: "acknowledge".into(),
            at: T0 + 20 * SEC,
            note: Some("looking".into()),
        })],
    )
    .await;
    assert!(
        p.wait_applied(wal.end_offset(), Duration::from_secs(5))
            .await
    );
    let snapshot = |p: &Processor| {
        p.read_alerts("t", |a| {
            (
                a.alerts().cloned().collect::<Vec<_>>(),
                a.rules().cloned().collect::<Vec<_>>(),
            )
        })
        .unwrap()
    };
    let before = snapshot(&p);
    assert_eq!(before.0.len(), 1, "{:?}", before.0);
    assert_eq!(before.0[0].status, Status::Acknowledged);
    assert_eq!(before.1.len(), 2, "default rule and `hot`");
    p.crash().await;
    drop(p);
    for graceful in [false, true] {
        let p = Processor::open(config.clone(), wal.clone()).unwrap();
        p.start();
        caught_up(&p, &wal).await;
        assert_eq!(snapshot(&p), before, "graceful={graceful}");
        if graceful {
            p.shutdown().await;
        } else {
            p.crash().await;
        }
    }
    let p = Processor::open(config, wal.clone()).unwrap();
    assert_eq!(snapshot(&p), before, "restored from the checkpoint alone");
    wal.shutdown().unwrap();
}

/// `n` events `step` seconds apart from `T0`, each received when it happens (so windows
/// close as the stream goes on), over 4 devices and 7 users; the event at offset `i` has
/// event id `e<i>`.
fn steady(n: u64, step: i64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = event(
                i,
                T0 + i as i64 * step * SEC,
                (i % 4) as u8,
                (i % 13) as f64,
                Some((i % 7) as u8),
            );
            e.received_at = e.time;
            e
        })
        .collect()
}

/// No window appears twice among persisted ones (metric and count windows).
fn assert_each_window_once(closed: &crate::Closed) {
    let mut keys = std::collections::HashSet::new();
    for m in &closed.metrics {
        let key = format!("{:?} {:?} {} {}", m.resolution, m.device, m.metric, m.start);
        assert!(keys.insert(key), "a metric window persisted twice");
    }
    for c in &closed.counts {
        let key = format!(
            "{:?} {:?} {} {}",
            c.resolution, c.dimension, c.value, c.start
        );
        assert!(keys.insert(key), "a count window persisted twice");
    }
}

/// Applies `events` minute by minute (receive time = event time, so windows close as time goes
/// on), taking the closed windows after each minute as a checkpoint would.
fn flushes_of(events: &[Event], roll: &mut TenantRollups) -> Vec<(u64, crate::Closed)> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let mut e = e.clone();
        e.received_at = e.time;
        roll.apply(&e, i as u64, LATENESS);
        if i % 30 == 29 {
            out.extend(roll.take_closed(LATENESS));
        }
    }
    out
}

/// Closed windows leave the checkpoint once taken for the files; the checkpoint copy plus the
/// persisted windows answer exactly what the full state does.
#[test]
fn a_checkpoint_holds_only_windows_not_yet_persisted() {
    let events = steady(3000, 2);
    let mut roll = TenantRollups::default();
    let flushes = flushes_of(&events, &mut roll);
    assert!(
        flushes.len() > 50,
        "a flush per closing minute: {}",
        flushes.len()
    );
    let seqs: Vec<u64> = flushes.iter().map(|f| f.0).collect();
    assert_eq!(seqs, (1..=flushes.len() as u64).collect::<Vec<_>>());
    let copy = roll.checkpoint_copy();
    assert!(
        copy.len() * 10 < roll.len(),
        "{} of {} windows",
        copy.len(),
        roll.len()
    );
    let mut restored = copy;
    for (_, closed) in flushes {
        restored.insert_closed(closed);
    }
    assert_eq!(answers(&restored), answers(&roll));
    assert_eq!(restored.series_count(), roll.series_count());
}

/// Files above the checkpoint's flush number (a flush whose checkpoint never landed) and files
/// inside a merged file's range (a merge interrupted after its rename) are deleted on
/// recovery; a run of small files is merged into one; every window is read back once.
#[test]
fn rollup_files_merge_and_recover_to_exactly_the_checkpointed_flushes() {
    use crate::persist::{self, Want};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rollups");
    let events = steady(2400, 2);
    let mut roll = TenantRollups::default();
    let flushes = flushes_of(&events, &mut roll);
    let n = flushes.len() as u64;
    assert!(n >= 2 * persist::MERGE_FANIN as u64);
    for (seq, closed) in &flushes {
        persist::write_flush(&root, "t", *seq, closed).unwrap();
        persist::merge_small(&root, "t").unwrap();
    }
    let files = persist::list(&root, "t").unwrap();
    assert!(
        files.len() < 2 * persist::MERGE_FANIN,
        "small files were merged: {} files for {n} flushes",
        files.len()
    );
    assert!(files.iter().any(|f| f.lo < f.hi));
    let expect = |upto: u64| {
        let mut t = TenantRollups::default();
        for (_, c) in flushes.iter().filter(|f| f.0 <= upto) {
            t.insert_closed(c.clone());
        }
        answers(&t)
    };
    let read_all = || {
        let closed = persist::read(&root, "t", &Want::All, &Default::default()).unwrap();
        assert_each_window_once(&closed);
        let mut t = TenantRollups::default();
        t.insert_closed(closed);
        answers(&t)
    };
    assert_eq!(read_all(), expect(n));
    // A merge interrupted after its rename: an input file is still there.
    let merged = files.iter().find(|f| f.lo < f.hi).unwrap().clone();
    let (seq, closed) = &flushes[(merged.lo - 1) as usize];
    persist::write_flush(&root, "t", *seq, closed).unwrap();
    // A tenant the checkpoint does not know, and a temp file.
    persist::write_flush(&root, "ghost", 1, closed).unwrap();
    std::fs::write(root.join("t").join("metrics-x.parquet.tmp"), b"half").unwrap();
    // The checkpoint landed two flushes before the last one.
    let deleted = persist::recover(&root, |t| if t == "t" { n - 2 } else { 0 }).unwrap();
    assert!(deleted >= 4, "{deleted}");
    assert!(!root.join("ghost").exists());
    assert!(
        persist::list(&root, "t")
            .unwrap()
            .iter()
            .all(|f| f.hi <= n - 2)
    );
    // Unless the merge swallowed them, the last two flushes are gone; what remains is exact.
    let left = persist::list(&root, "t")
        .unwrap()
        .iter()
        .map(|f| f.hi)
        .max()
        .unwrap();
    assert_eq!(read_all(), expect(left));
    // Range reads return just the windows asked for.
    let (r, from) = (Resolution::Minute, T0 + 600 * SEC);
    let want = |series| Want::Range {
        resolution: r,
        from,
        to: from + 600 * SEC,
        series,
    };
    let footers = persist::Footers::default();
    let read = |w: &Want| persist::read(&root, "t", w, &footers).unwrap();
    let part = read(&want(crate::Series::Metrics {
        metric: None,
        devices: crate::Devices::Any,
    }));
    assert!(!part.metrics.is_empty());
    assert!(
        part.metrics
            .iter()
            .all(|m| m.resolution == r && (from..from + 600 * SEC).contains(&m.start))
    );
    assert!(part.counts.is_empty(), "metric reads skip the counts table");
    let to = from + 600 * SEC;
    let temp = read(&want(crate::Series::metric("temp", crate::Devices::Any)));
    let in_memory = roll.metric_windows(r, "temp", None, from, to).count()
        + roll.all_devices_windows(r, "temp", from, to).count();
    assert_eq!(temp.metrics.len(), in_memory);
    assert!(temp.metrics.iter().all(|m| m.metric == "temp"));
    let types = read(&want(crate::Series::Dimension(Dimension::Type)));
    // Twice: the second read uses the cached footers.
    assert_eq!(
        read(&want(crate::Series::Dimension(Dimension::Type)))
            .counts
            .len(),
        types.counts.len()
    );
    assert!(types.metrics.is_empty());
    assert_eq!(
        types.counts.len(),
        roll.count_windows(r, Dimension::Type, None, from, to)
            .count()
    );
    assert!(types.counts.iter().all(|c| c.dimension == Dimension::Type
        && c.resolution == r
        && (from..to).contains(&c.start)));
}

/// Against a real WAL, with crashes: closed windows are in the files exactly once, memory keeps
/// only the horizon (minute windows for 10 minutes here), and `read_range` answers older
/// windows from the files — memory and files together equal the naive computation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_windows_are_persisted_once_and_read_back_past_memory() {
    use crate::persist::{self, Want};
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::new(dir.path().join("stream"));
    config.checkpoint_interval = Duration::from_millis(20);
    config.horizon[0] = Duration::from_secs(600);
    let mut naive = Naive::default();
    let all = steady(1800, 6);
    let mut batches = all.chunks(100);
    for round in 0..6 {
        let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
        let p = Processor::open(config.clone(), wal.clone()).unwrap();
        p.start();
        for events in batches.by_ref().take(3) {
            for e in events {
                naive.add(e, e.event_id[1..].parse().unwrap());
            }
            append(&wal, events).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        caught_up(&p, &wal).await;
        if round % 2 == 0 {
            p.crash().await;
        } else {
            p.shutdown().await;
        }
        drop(p);
        wal.shutdown().unwrap();
    }
    let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
    let p = Processor::open(config.clone(), wal.clone()).unwrap();
    p.start();
    caught_up(&p, &wal).await;
    let root = config.rollups_dir();
    let persisted = persist::read(&root, "t", &Want::All, &Default::default()).unwrap();
    assert_each_window_once(&persisted);
    let minutes_in_naive = naive
        .samples
        .keys()
        .filter(|k| k.0 == Resolution::Minute)
        .count();
    let minutes_held = p
        .read("t", |r| {
            ["temp", "hum"]
                .iter()
                .map(|m| {
                    r.metric_windows(Resolution::Minute, m, None, i64::MIN, i64::MAX)
                        .count()
                })
                .sum::<usize>()
        })
        .unwrap();
    // After the restart, memory holds again every minute window ending within the horizon
    // (reloaded from the files).
    let watermark = p.read("t", |r| r.watermark(LATENESS)).unwrap().unwrap();
    let recent = naive
        .samples
        .keys()
        .filter(|k| k.0 == Resolution::Minute && k.3 + 60 * SEC > watermark - 600 * SEC)
        .count();
    assert!(recent > 0);
    assert!(
        minutes_held >= recent,
        "{minutes_held} held, {recent} within the horizon"
    );
    assert!(
        minutes_held * 4 < minutes_in_naive,
        "memory holds the horizon: {minutes_held} of {minutes_in_naive}"
    );
    let mut all = p.read("t", |r| r.clone()).unwrap();
    all.insert_closed(persisted);
    assert_matches(&all, &naive);
    // The same through read_range: every minute window, from memory and files.
    let found = p
        .read_range(
            "t",
            (Resolution::Minute, T0, T0 + 86_400 * SEC),
            crate::Series::Metrics {
                metric: None,
                devices: crate::Devices::Each,
            },
            |view| {
                assert!(view.complete(Resolution::Minute, T0, T0 + 3600 * SEC));
                ["temp", "hum"]
                    .iter()
                    .map(|m| {
                        view.metric_windows(Resolution::Minute, m, None, i64::MIN, i64::MAX)
                            .count()
                    })
                    .sum::<usize>()
            },
        )
        .await
        .unwrap();
    assert_eq!(found, minutes_in_naive);
    p.read("t", |r| {
        assert!(!r.complete(Resolution::Minute, T0, T0 + 3600 * SEC));
        assert!(r.reaches_past_memory(Resolution::Minute, T0));
    })
    .unwrap();
}

/// Every metric window of `naive`, read through `read_range` (memory and files), equals it.
async fn assert_matches_through_ranges(p: &Processor, naive: &Naive) {
    for r in Resolution::ALL {
        let span = (r, T0 - 2 * 86_400 * SEC, T0 + 30 * 86_400 * SEC);
        let all = crate::Series::Metrics {
            metric: None,
            devices: crate::Devices::Any,
        };
        p.read_range("t", span, all, |view| {
            let mut windows = 0;
            for ((res, dev, metric, w), samples) in &naive.samples {
                if *res != r {
                    continue;
                }
                let got: Vec<_> = view
                    .metric_windows(r, metric, Some(dev), *w, *w + 1)
                    .collect();
                assert_eq!(got.len(), 1, "{r:?} {dev} {metric} {w}");
                assert_window(&got[0].2, samples);
                windows += 1;
            }
            let held: usize = ["temp", "hum"]
                .iter()
                .map(|m| view.metric_windows(r, m, None, i64::MIN, i64::MAX).count())
                .sum();
            assert_eq!(
                held, windows,
                "{r:?}: no window the naive computation lacks"
            );
        })
        .await
        .unwrap();
    }
}

/// Over its window budget, the processor evicts closed windows before their horizon (halving
/// it pass by pass) — memory stays within the budget plus what cannot leave (open and
/// unpersisted windows) — and every window still reads back exactly through the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_the_window_budget_and_reads_reach_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamConfig::new(dir.path().join("stream"));
    config.checkpoint_interval = Duration::from_millis(20);
    config.evict_interval = Duration::from_millis(20);
    config.max_windows = 300;
    let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
    let p = Processor::open(config.clone(), wal.clone()).unwrap();
    p.start();
    let mut naive = Naive::default();
    let all = steady(2000, 6);
    for (i, e) in all.iter().enumerate() {
        naive.add(e, i as u64);
    }
    for events in all.chunks(200) {
        append(&wal, events).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    caught_up(&p, &wal).await;
    let naive_windows = naive.samples.len();
    let mut held = usize::MAX;
    for _ in 0..250 {
        held = p.read("t", |r| r.len()).unwrap();
        if held <= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        held <= 300,
        "{held} windows held, budget 300 (naive: {naive_windows})"
    );
    assert_matches_through_ranges(&p, &naive).await;
    // After a restart too (the budget applies again on the first pass).
    p.shutdown().await;
    drop(p);
    let p = Processor::open(config, wal.clone()).unwrap();
    p.start();
    caught_up(&p, &wal).await;
    assert_matches_through_ranges(&p, &naive).await;
}

/// Passes that freeze only what closed since the last one end up exactly where a single pass
/// over everything does (same answers, same frozen state), and drop what is past the cut.
#[test]
fn incremental_eviction_passes_equal_one_full_pass() {
    let events = steady(6000, 3);
    let (mut stepwise, mut once) = (TenantRollups::default(), TenantRollups::default());
    for (i, e) in events.iter().enumerate() {
        stepwise.apply(e, i as u64, LATENESS);
        once.apply(e, i as u64, LATENESS);
        if i % 97 == 0 {
            stepwise.evict(LATENESS, |_| i64::MAX / 4);
        }
    }
    stepwise.evict(LATENESS, |_| i64::MAX / 4);
    once.evict(LATENESS, |_| i64::MAX / 4);
    assert_eq!(answers(&stepwise), answers(&once));
    let size = |t: &TenantRollups| serde_json::to_vec(t).unwrap().len();
    assert_eq!(size(&stepwise), size(&once), "the same windows are frozen");
    // Persisted windows past a 1-hour horizon leave; the rest stay.
    let before = stepwise.len();
    stepwise.take_closed(LATENESS);
    let dropped = stepwise.evict(LATENESS, |_| 3600 * SEC);
    assert!(dropped > 0 && dropped < before, "{dropped} of {before}");
    assert_eq!(stepwise.len(), before - dropped);
    let w = stepwise.watermark(LATENESS).unwrap();
    assert!(
        stepwise
            .metric_windows(Resolution::Minute, "temp", None, i64::MIN, i64::MAX)
            .all(|(_, s, _)| s + 60 * SEC > w - 3600 * SEC)
    );
    assert!(stepwise.reaches_past_memory(Resolution::Minute, T0));
}
