//! The query service's own logic against in-memory fakes of the store and the rollups: when a
//! time series comes from rollups, how windows that missed late events are corrected, scopes
//! and ranges.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::auth::{Principal, Scope};
use crate::ops::{PipelineStatus, StoreStatus};
use crate::query::*;
use crate::test_store::FakeStore;
use crate::{Error, Result};

const MIN: i64 = 60_000_000_000;

fn stats(values: &[(i64, f64)]) -> WindowStats {
    let n = values.len() as f64;
    let sum: f64 = values.iter().map(|v| v.1).sum();
    WindowStats {
        count: values.len() as u64,
        sum,
        min: values.iter().map(|v| v.1).fold(f64::INFINITY, f64::min),
        max: values.iter().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max),
        avg: sum / n,
        first: values[0].1,
        first_time: values[0].0,
        last: values[values.len() - 1].1,
        last_time: values[values.len() - 1].0,
        p50: None,
        p90: None,
        p95: None,
        p99: None,
    }
}

fn window(device: Option<&str>, start: i64, values: &[(i64, f64)], complete: bool) -> MetricWindow {
    MetricWindow {
        metric: "temp".into(),
        device_id: device.map(str::to_string),
        start,
        stats: stats(values),
        closed: true,
        complete,
    }
}

/// Rollups holding fixed windows (all devices together for series reads), `complete` or not,
/// with `incomplete` window starts.
#[derive(Debug, Default)]
pub(crate) struct FakeRollups {
    windows: Vec<MetricWindow>,
    together: Vec<MetricWindow>,
    counts: Vec<CountWindow>,
    incomplete: BTreeSet<i64>,
    series_reads: AtomicU64,
}

#[async_trait]
impl RollupReader for FakeRollups {
    async fn metric_windows(
        &self,
        _: &str,
        q: MetricWindowsQuery,
    ) -> Result<Windows<MetricWindow>> {
        Ok(Windows {
            watermark: Some(10 * MIN),
            windows: self.windows.iter().take(q.limit).cloned().collect(),
            incomplete: self.incomplete.clone(),
            metrics: vec!["temp".into()],
        })
    }
    async fn count_windows(&self, _: &str, q: CountWindowsQuery) -> Result<Windows<CountWindow>> {
        Ok(Windows {
            watermark: Some(10 * MIN),
            windows: self.counts.iter().take(q.limit).cloned().collect(),
            incomplete: self.incomplete.clone(),
            metrics: vec![],
        })
    }
    async fn series_windows(
        &self,
        _: &str,
        q: SeriesWindowsQuery,
    ) -> Result<Option<Vec<MetricWindow>>> {
        self.series_reads.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .incomplete
            .is_empty()
            .then(|| self.together.iter().take(q.limit).cloned().collect()))
    }
    fn sql_tables(&self, _: &str) -> Result<Vec<eddy_store::ExtraTable>> {
        let table = |name: &str| eddy_store::ExtraTable {
            name: name.into(),
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            files: vec![],
            batches: vec![],
        };
        Ok(vec![table("rollups"), table("rollup_counts")])
    }
}

/// Store and processor progress, set by the test.
#[derive(Debug, Default)]
struct Progress {
    store: AtomicU64,
    stream: AtomicU64,
}

impl PipelineStatus for Progress {
    fn store(&self) -> StoreStatus {
        StoreStatus {
            applied_offset: self.store.load(Ordering::Relaxed),
            ..Default::default()
        }
    }
    fn stream_applied_offset(&self) -> u64 {
        self.stream.load(Ordering::Relaxed)
    }
}

fn reader() -> Principal {
    Principal {
        tenant_id: "t1".into(),
        key_id: "k1".into(),
        scopes: BTreeSet::from([Scope::Read]),
    }
}

fn service(store: FakeStore, rollups: Arc<FakeRollups>, progress: Arc<Progress>) -> QueryService {
    QueryService::new(Arc::new(store), rollups, progress, 1000)
}

fn temp_query(from: i64, to: i64, bucket_secs: u64) -> TimeseriesQuery {
    TimeseriesQuery {
        metric: "temp".into(),
        device_id: None,
        from,
        to,
        bucket_secs,
        aggs: vec![Agg::Count, Agg::Avg],
        group_by_device: false,
    }
}

#[tokio::test]
async fn timeseries_comes_from_rollups_only_when_they_give_the_raw_answer() {
    // Raw samples: 2 in minute 0, 1 in minute 1. The rollups say otherwise (count 5), so an
    // answer from rollups is told apart from a raw one by its numbers.
    let store = FakeStore {
        samples: vec![
            (Some("d1"), "temp", 10_000_000_000, 1.0),
            (Some("d1"), "temp", 20_000_000_000, 3.0),
            (Some("d2"), "temp", MIN + 1, 5.0),
        ],
        ..Default::default()
    };
    let five = [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (5, 1.0)];
    let rollups = Arc::new(FakeRollups {
        together: vec![window(None, 0, &five, true)],
        ..Default::default()
    });
    let progress = Arc::new(Progress::default());
    let svc = service(store, rollups.clone(), progress.clone());
    let p = reader();
    let count = |a: &TimeseriesAnswer| a.series.series[0].buckets[0].values[0];

    // Caught up, 1-minute buckets, nothing cut: rollups.
    let a = svc
        .timeseries(&p, temp_query(0, 2 * MIN, 60), SourceChoice::Auto)
        .await
        .unwrap();
    assert_eq!((a.source, count(&a)), (Source::Rollups, Some(5.0)));

    // Asked for raw: raw, and the rollups are not read.
    let reads = rollups.series_reads.load(Ordering::Relaxed);
    let a = svc
        .timeseries(&p, temp_query(0, 2 * MIN, 60), SourceChoice::Raw)
        .await
        .unwrap();
    assert_eq!((a.source, count(&a)), (Source::Raw, Some(2.0)));
    assert_eq!(a.series.series[0].buckets.len(), 2);
    assert_eq!(rollups.series_reads.load(Ordering::Relaxed), reads);

    // A bucket that is no rollup resolution: raw.
    let a = svc
        .timeseries(&p, temp_query(0, 2 * MIN, 30), SourceChoice::Auto)
        .await
        .unwrap();
    assert_eq!(a.source, Source::Raw);

    // `from` cuts the window after its first sample (at 1 ns): the window holds a sample
    // outside the range, so raw.
    let a = svc
        .timeseries(&p, temp_query(3, 2 * MIN, 60), SourceChoice::Auto)
        .await
        .unwrap();
    assert_eq!(a.source, Source::Raw);

    // The store shows more than the rollups applied: raw.
    progress.store.store(7, Ordering::Relaxed);
    progress.stream.store(6, Ordering::Relaxed);
    let a = svc
        .timeseries(&p, temp_query(0, 2 * MIN, 60), SourceChoice::Auto)
        .await
        .unwrap();
    assert_eq!(a.source, Source::Raw);
}

#[tokio::test]
async fn timeseries_refuses_what_no_path_can_answer() {
    let svc = service(
        FakeStore::default(),
        Arc::default(),
        Arc::new(Progress::default()),
    );
    let p = reader();
    let code = |e: Error| match e {
        Error::InvalidArgument { code, .. } => code,
        other => panic!("{other:?}"),
    };
    let mut q = temp_query(0, MIN, 60);
    q.metric.clear();
    let e = svc.timeseries(&p, q, SourceChoice::Auto).await.unwrap_err();
    assert_eq!(code(e), "invalid_parameter");
    let e = svc
        .timeseries(&p, temp_query(MIN, MIN, 60), SourceChoice::Auto)
        .await
        .unwrap_err();
    assert_eq!(code(e), "invalid_parameter");
    // 1001 one-second buckets with at most 1000 rows.
    let e = svc
        .timeseries(
            &p,
            temp_query(0, 1001 * 1_000_000_000, 1),
            SourceChoice::Raw,
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), "result_too_large");
}

#[tokio::test]
async fn rollup_windows_that_missed_late_events_are_reaggregated_from_raw_data() {
    // Minute 1 missed late events: raw data has 3 samples of d1 there (the rollups 1), and
    // one each of d0 and d2, whose every event was late (no rollup series at all; d0's row
    // must sort first).
    let store = FakeStore {
        samples: vec![
            (Some("d1"), "temp", 5, 1.0),
            (Some("d1"), "temp", MIN + 1, 2.0),
            (Some("d1"), "temp", MIN + 2, 4.0),
            (Some("d1"), "temp", MIN + 3, 6.0),
            (Some("d2"), "temp", MIN + 4, 9.0),
            (Some("d0"), "temp", MIN + 5, 7.0),
        ],
        ..Default::default()
    };
    let rollups = Arc::new(FakeRollups {
        windows: vec![
            window(Some("d1"), 0, &[(5, 1.0)], true),
            window(Some("d1"), MIN, &[(MIN + 1, 2.0)], false),
        ],
        incomplete: BTreeSet::from([MIN]),
        ..Default::default()
    });
    let svc = service(store, rollups, Arc::new(Progress::default()));
    let q = RollupsQuery {
        resolution: Resolution::Minute,
        from: 0,
        to: 2 * MIN,
        target: RollupTarget::Metric {
            metric: Some("temp".into()),
            device_id: None,
        },
    };
    let a = svc.rollups(&reader(), q).await.unwrap();
    let RollupRows::Metrics(rows) = a.data else {
        panic!("metric rows expected")
    };
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.device_id.as_deref(), r.time, r.count, r.avg, r.corrected))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("d0"), MIN, 1, 7.0, true),
            (Some("d1"), 0, 1, 1.0, false),
            (Some("d1"), MIN, 3, 4.0, true),
            (Some("d2"), MIN, 1, 9.0, true),
        ]
    );
    assert!(
        rows.iter()
            .filter(|r| r.corrected)
            .all(|r| r.complete && r.closed)
    );
}

#[tokio::test]
async fn count_windows_that_missed_late_events_are_recounted_from_raw_events() {
    let store = FakeStore {
        types: vec![
            ("click", MIN + 1, "u1"),
            ("click", MIN + 2, "u2"),
            ("click", MIN + 3, "u2"),
            ("view", MIN + 4, "u3"),
        ],
        ..Default::default()
    };
    let rollups = Arc::new(FakeRollups {
        counts: vec![CountWindow {
            value: "click".into(),
            start: MIN,
            count: 1,
            distinct_users: 1,
            closed: true,
            complete: false,
        }],
        incomplete: BTreeSet::from([MIN]),
        ..Default::default()
    });
    let svc = service(store, rollups, Arc::new(Progress::default()));
    let q = RollupsQuery {
        resolution: Resolution::Minute,
        from: 0,
        to: 2 * MIN,
        target: RollupTarget::Dimension {
            dimension: Dimension::Type,
            value: None,
        },
    };
    let RollupRows::Counts(rows) = svc.rollups(&reader(), q).await.unwrap().data else {
        panic!("count rows expected")
    };
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.value.as_str(), r.count, r.distinct_users, r.corrected))
        .collect();
    assert_eq!(got, vec![("click", 3, 2, true), ("view", 1, 1, true)]);
}

#[tokio::test]
async fn queries_need_the_read_scope_and_say_what_is_missing() {
    let svc = service(
        FakeStore::default(),
        Arc::default(),
        Arc::new(Progress::default()),
    );
    let writer = Principal {
        scopes: BTreeSet::from([Scope::Write]),
        ..reader()
    };
    let e = svc
        .events(&writer, EventFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e:?}");
    let e = svc
        .timeseries(&writer, temp_query(0, MIN, 60), SourceChoice::Auto)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e:?}");
    let backwards = EventFilter {
        from: Some(2),
        to: Some(1),
        ..Default::default()
    };
    let e = svc.events(&reader(), backwards).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    let e = svc.device_metrics(&reader(), "d9", 20).await.unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(m) if m.contains("d9")),
        "{e:?}"
    );
}

#[test]
fn a_reading_takes_the_metric_named_value_else_the_only_metric() {
    let event = |metrics: &[(&str, f64)]| StoredEvent {
        device_id: Some("s1".into()),
        event_id: "e1".into(),
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        page_url: None,
        properties: Default::default(),
        received_at: 0,
        source: None,
        time: 0,
        r#type: "reading".into(),
        user_id: None,
        offset: 0,
    };
    assert_eq!(Reading::from(event(&[("temp", 2.0)])).value, Some(2.0));
    assert_eq!(
        Reading::from(event(&[("temp", 2.0), ("value", 7.0)])).value,
        Some(7.0)
    );
    assert_eq!(
        Reading::from(event(&[("temp", 2.0), ("hum", 7.0)])).value,
        None
    );
}

#[test]
fn answers_serialise_in_the_api_shape() {
    let answer = |grouped: bool| TimeseriesAnswer {
        series: Timeseries {
            aggs: vec![Agg::Count, Agg::Avg],
            grouped,
            series: vec![SeriesBuckets {
                device_id: None,
                buckets: vec![Bucket {
                    time: 0,
                    values: vec![Some(3.0), Some(f64::NAN)],
                }],
            }],
        },
        source: Source::Raw,
    };
    let flat = serde_json::to_value(answer(false)).unwrap();
    let row = &flat["data"][0];
    assert_eq!(row["time"], "1970-01-01T00:00:00Z");
    assert!(row["count"].is_u64(), "{row}");
    assert!(row["avg"].is_null(), "{row}");
    let grouped = serde_json::to_value(answer(true)).unwrap();
    assert!(grouped["series"][0]["device_id"].is_null(), "{grouped}");
    assert_eq!(grouped["series"][0]["data"][0]["count"], 3);

    let rollup = serde_json::to_value(RollupsAnswer {
        resolution: "1m",
        watermark: None,
        data: RollupRows::Metrics(vec![metric_row(window(Some("d1"), 0, &[(5, 1.0)], true))]),
    })
    .unwrap();
    assert!(rollup["watermark"].is_null());
    let row = &rollup["data"][0];
    assert_eq!(row["final"], true);
    assert!(row.get("corrected").is_none(), "{row}");
}
