//! Throughput of the rollup engine: events/s applied to one tenant's rollups (all three
//! resolutions, metric aggregates with quantiles, dimension counts with distinct users), alone
//! and together with the default anomaly rule, for the benchmark mix of bench/gen_events.py
//! (70% readings of 1000 devices, 30% product events).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eddy_model::Event;
use eddy_model::columns::{ColumnsBuilder, EventColumns};
use eddy_stream::{TenantAlerts, TenantRollups};

const SEC: i64 = 1_000_000_000;

fn events(n: usize) -> Vec<Event> {
    let t0 = 1_764_000_000 * SEC;
    (0..n)
        .map(|i| {
            let time = t0 + (i as i64) * 8_640_000; // 10M events a day
            let mut e = Event {
                tenant: "t".into(),
                event_id: format!("e{i}"),
                time,
                received_at: time,
                ..Default::default()
            };
            if i % 10 < 7 {
                e.r#type = "reading".into();
                e.device_id = Some(format!("sensor-{:05}", (i * 7919) % 1000));
                for (k, v) in [
                    ("temperature", 21.5),
                    ("humidity", 40.1),
                    ("pressure", 1011.2),
                ] {
                    e.metrics.insert(k.into(), v + (i % 17) as f64 / 10.0);
                }
            } else {
                e.r#type = ["page_view", "click", "signup"][i % 3].into();
                e.user_id = Some(format!("user-{}", (i * 31) % 10_000));
                e.page_url = Some(format!("https://shop.example.com/products/{}", i % 200));
                e.source = Some(["web", "ios", "android"][i % 3].into());
            }
            e
        })
        .collect()
}

fn apply(c: &mut Criterion) {
    let evs = events(200_000);
    let mut g = c.benchmark_group("rollups");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    g.bench_function("apply_200k_mixed_events", |b| {
        b.iter(|| {
            let mut r = TenantRollups::default();
            for (i, e) in evs.iter().enumerate() {
                r.apply(e, i as u64, 300 * SEC);
            }
            r.len()
        })
    });
    // The processor's whole per-event work: rollups plus the default z-score rule on every
    // metric (detector state per series, alert bookkeeping).
    g.bench_function("apply_and_detect_200k_mixed_events", |b| {
        b.iter(|| {
            let mut r = TenantRollups::default();
            let mut a = TenantAlerts::with_default_rule(0);
            let mut notices = Vec::new();
            for (i, e) in evs.iter().enumerate() {
                r.apply(e, i as u64, 300 * SEC);
                a.observe(e, &mut notices);
            }
            (r.len(), notices.len())
        })
    });
    // What a checkpoint costs for the state those events leave (serialize + compress).
    let mut state = TenantRollups::default();
    for (i, e) in evs.iter().enumerate() {
        state.apply(e, i as u64, 300 * SEC);
    }
    let json = serde_json::to_vec(&state).map(|j| j.len()).unwrap_or(0);
    // The processor's eviction pass freezes closed windows (every 5 s); checkpoint that.
    state.evict(300 * SEC, |_| i64::MAX / 4);
    let frozen = serde_json::to_vec(&state).map(|j| j.len()).unwrap_or(0);
    eprintln!(
        "state after 200k events: {} windows, {json} bytes of JSON; {frozen} once closed windows are frozen",
        state.len()
    );
    // A snapshot for a checkpoint written off the processor's loop.
    g.bench_function("clone_state_of_200k_events", |b| {
        b.iter(|| state.clone().len())
    });
    g.bench_function("checkpoint_state_of_200k_events", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(&state).unwrap_or_default();
            zstd::encode_all(json.as_slice(), 3)
                .map(|z| z.len())
                .unwrap_or(0)
        })
    });
    // With closed windows persisted: the checkpoint copies and writes only the open ones.
    let mut flushed = state.clone();
    let closed = flushed
        .take_closed(300 * SEC)
        .map(|(_, c)| c)
        .unwrap_or_default();
    let copy = flushed.checkpoint_copy();
    eprintln!(
        "persisted: {} metric + {} count windows; the checkpoint keeps {} windows, {} bytes of JSON",
        closed.metrics.len(),
        closed.counts.len(),
        copy.len(),
        serde_json::to_vec(&copy).map(|j| j.len()).unwrap_or(0)
    );
    g.bench_function("checkpoint_copy_of_200k_events", |b| {
        b.iter(|| flushed.checkpoint_copy().len())
    });
    g.bench_function("checkpoint_after_persisting_closed_windows", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(&copy).unwrap_or_default();
            zstd::encode_all(json.as_slice(), 3)
                .map(|z| z.len())
                .unwrap_or(0)
        })
    });
    let dir = tempfile::tempdir().ok();
    g.bench_function("write_closed_windows_of_200k_events_as_parquet", |b| {
        b.iter(|| {
            dir.as_ref()
                .map(|d| eddy_stream::persist::write_flush(d.path(), "t", 1, &closed).is_ok())
        })
    });
    g.finish();
}

/// Readings as `bench/pipeline.sh` sends them: 1000 devices × 3 metrics, ~200 readings per
/// device and minute (so minute, hour and day windows all hold sketches), over 3 minutes of
/// event time, with the processor's periodic work every 10 s of it (taking closed windows for
/// the files, the eviction pass that freezes them).
fn readings(c: &mut Criterion) {
    let n = 600_000usize;
    let t0 = 1_764_000_000 * SEC;
    let step = 180 * SEC / n as i64;
    let evs: Vec<Event> = (0..n)
        .map(|i| {
            let time = t0 + i as i64 * step;
            let mut e = Event {
                tenant: "t".into(),
                event_id: format!("r{i}"),
                time,
                received_at: time,
                r#type: "reading".into(),
                device_id: Some(format!("sensor-{:04}", (i * 7919) % 1000)),
                ..Default::default()
            };
            let x = (i % 97) as f64;
            for (k, v) in [
                ("temperature", 20.0 + x / 20.0),
                ("humidity", 40.0 + x / 10.0),
                ("power", x),
            ] {
                e.metrics.insert(k.into(), v);
            }
            e
        })
        .collect();
    let mut g = c.benchmark_group("rollups");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("apply_600k_readings_of_1000_devices_over_3_minutes", |b| {
        b.iter(|| {
            let mut r = TenantRollups::default();
            let mut next = t0 + 10 * SEC;
            for (i, e) in evs.iter().enumerate() {
                r.apply(e, i as u64, 5 * SEC);
                if e.time >= next {
                    next += 10 * SEC;
                    r.take_closed(5 * SEC);
                    r.evict(5 * SEC, |_| i64::MAX / 4);
                }
            }
            r.len()
        })
    });
    // What the processor does with a batch record of 1000 readings: rollups and the default
    // rule for every row, read from the batch's columns either as owned events (how the
    // processor read them before session 21) or as borrowed rows (how it reads them now).
    let batches: Vec<EventColumns> = evs
        .chunks(1000)
        .filter_map(|chunk| {
            let mut b = ColumnsBuilder::default();
            chunk.iter().try_for_each(|e| b.push(e)).ok()?;
            Some(EventColumns {
                tenant: "t".into(),
                batch: b.finish().ok()?,
            })
        })
        .collect();
    assert_eq!(batches.len(), n / 1000);
    let detect = |owned: bool| {
        let mut r = TenantRollups::default();
        let mut a = TenantAlerts::with_default_rule(0);
        let mut notices = Vec::new();
        let mut i = 0u64;
        for cols in &batches {
            if owned {
                for e in cols.events() {
                    r.apply(&e, i, 5 * SEC);
                    a.observe(&e, &mut notices);
                    i += 1;
                }
            } else {
                for e in cols.rows() {
                    r.apply(&e, i, 5 * SEC);
                    a.observe(&e, &mut notices);
                    i += 1;
                }
            }
        }
        (r.len(), notices.len())
    };
    g.bench_function(
        "apply_and_detect_600k_readings_from_batches_as_owned_events",
        |b| b.iter(|| detect(true)),
    );
    g.bench_function("apply_and_detect_600k_readings_from_batches_as_rows", |b| {
        b.iter(|| detect(false))
    });
    g.finish();
}

criterion_group!(benches, apply, readings);
criterion_main!(benches);
