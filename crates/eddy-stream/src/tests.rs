//! Rollups against a naive recomputation over the same events (property tests), lateness, and
//! the processor's exactly-once recovery against a real WAL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::Log;
use eddy_log::wal::{Wal, WalConfig};
use eddy_model::{Entry, Event, LogEntry, codec};
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
        assert_window(got[0].2, samples);
        windows += 1;
        all_devices
            .entry((*r, metric.clone(), *w))
            .or_default()
            .extend(samples);
    }
    for ((r, metric, w), samples) in &all_devices {
        let got: Vec<_> = roll.all_devices_windows(*r, metric, *w, *w + 1).collect();
        assert_eq!(got.len(), 1, "all devices {r:?} {metric} {w}");
        assert_window(got[0].1, samples);
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

async fn append(wal: &Wal, events: &[Event]) {
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
    let mut offset = 0u64;
    for round in 0..5 {
        let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
        let p = Processor::open(config.clone(), wal.clone()).unwrap();
        p.start();
        for batch in 0..4 {
            let events: Vec<Event> = (0..50)
                .map(|i| {
                    let n = offset + i;
                    event(
                        n,
                        T0 + (n as i64) * SEC,
                        (n % 6) as u8,
                        (n % 17) as f64,
                        Some((n % 9) as u8),
                    )
                })
                .collect();
            for e in &events {
                naive.add(e, offset);
                offset += 1;
            }
            append(&wal, &events).await;
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
                Some(offset),
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
        let e = event(i, T0 + (i as i64 % 59) * SEC, 0, v, Some((i % 300) as u8));
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
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    for _ in 0..200 {
        if crate::processor::checkpoint_offset(&config.dir).unwrap() == Some(60) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no checkpoint after the directory came back");
}
