//! Digests of metric samples: for one `metric_samples` file, the count, sum, minimum and
//! maximum of `value` per metric and device — what per-device and per-metric aggregates of a
//! range (`count`, `sum`, `avg`, `min`, `max` grouped by `device_id` and/or `metric`) add up.
//!
//! They sit beside the events files' digests ([`crate::digest`]) in the same registry and
//! memory budget, are built the same way (when a file is written, and after a restart by a
//! background pass) and are never persisted. Files are sorted by (metric, device, time), so a
//! file's digest is one entry per run of rows, and a digest's series are kept in that order,
//! so the series of one metric are found by binary search.
//!
//! Counts, minima and maxima are exact. Sums are of `f64`s, added per file in row order and
//! then file by file: they may differ from a scan's sum in the last bits, as two scans with
//! different partitioning do (values are finite: ingest accepts nothing else).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;

use crate::rows::strings;
use crate::{Error, Result};

/// The columns a samples digest is built from.
pub(crate) const COLUMNS: [&str; 3] = ["metric", "device_id", "value"];

/// Count, sum, minimum and maximum of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Stats {
    fn of(v: f64) -> Self {
        Self {
            count: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds `other`'s values.
    pub(crate) fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// The samples of one metric of one device (`None`: of events without a device).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) metric: Arc<str>,
    pub(crate) device: Option<Arc<str>>,
    pub(crate) stats: Stats,
}

/// Exact aggregates of a set of metric samples (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SampleDigest {
    /// Sorted by (metric, device), one per pair.
    series: Vec<Series>,
}

type Key = (Arc<str>, Option<Arc<str>>);

/// Folds batches of samples into a [`SampleDigest`].
#[derive(Debug, Default)]
pub(crate) struct SampleFold {
    by_key: HashMap<Key, Stats>,
    /// Names already allocated, shared by the series that carry them.
    names: HashMap<Box<str>, Arc<str>>,
}

impl SampleFold {
    /// Adds the rows of `batch` (which has at least [`COLUMNS`]), in any order. Each run of
    /// one (metric, device) — a whole file is such runs — costs one lookup.
    pub(crate) fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let metrics = strings(batch, "metric")?;
        let devices = strings(batch, "device_id")?;
        let values = batch
            .column_by_name("value")
            .and_then(|c| c.as_primitive_opt::<Float64Type>())
            .ok_or_else(|| Error::Task("column value is missing or not a float".into()))?;
        let device = |r: usize| (!devices.is_null(r)).then(|| devices.value(r));
        let mut r = 0;
        while r < n {
            let (metric, dev) = (metrics.value(r), device(r));
            let mut stats = Stats::of(values.value(r));
            r += 1;
            while r < n && metrics.value(r) == metric && device(r) == dev {
                stats.add(values.value(r));
                r += 1;
            }
            let key = (self.intern(metric), dev.map(|d| self.intern(d)));
            self.by_key
                .entry(key)
                .and_modify(|s| s.merge(&stats))
                .or_insert(stats);
        }
        Ok(())
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        match self.names.get(name) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = name.into();
                self.names.insert(name.into(), a.clone());
                a
            }
        }
    }

    pub(crate) fn finish(self) -> SampleDigest {
        let mut series: Vec<Series> = self
            .by_key
            .into_iter()
            .map(|((metric, device), stats)| Series {
                metric,
                device,
                stats,
            })
            .collect();
        series.sort_unstable_by(|a, b| (&a.metric, &a.device).cmp(&(&b.metric, &b.device)));
        SampleDigest { series }
    }
}

impl SampleDigest {
    /// The digest of `batches` (which have at least [`COLUMNS`]), in any row order.
    pub(crate) fn of<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>) -> Result<Self> {
        let mut fold = SampleFold::default();
        for b in batches {
            fold.add(b)?;
        }
        Ok(fold.finish())
    }

    /// Every series, of `metric` only when given, in (metric, device) order.
    pub(crate) fn series(&self, metric: Option<&str>) -> &[Series] {
        match metric {
            None => &self.series,
            Some(m) => {
                let lo = self.series.partition_point(|s| &*s.metric < m);
                let hi = self.series.partition_point(|s| &*s.metric <= m);
                &self.series[lo..hi]
            }
        }
    }

    /// Approximate heap size, for the memory budget (names are shared within a digest).
    pub(crate) fn bytes(&self) -> usize {
        let mut names: std::collections::HashSet<*const u8> = Default::default();
        let mut bytes = 64 + self.series.len() * std::mem::size_of::<Series>();
        for s in &self.series {
            for name in std::iter::once(&s.metric).chain(s.device.as_ref()) {
                if names.insert(name.as_ptr()) {
                    bytes += name.len() + 16;
                }
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(rows: &[(&str, Option<&str>, f64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("metric", DataType::Utf8, false),
            Field::new("device_id", DataType::Utf8, true),
            Field::new("value", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    /// Naive: every (metric, device) with its values, then their stats.
    fn naive(rows: &[(&str, Option<&str>, f64)]) -> Vec<(String, Option<String>, u64, f64, f64)> {
        let mut m: std::collections::BTreeMap<(String, Option<String>), Vec<f64>> =
            Default::default();
        for (metric, dev, v) in rows {
            m.entry((metric.to_string(), dev.map(str::to_string)))
                .or_default()
                .push(*v);
        }
        m.into_iter()
            .map(|((metric, dev), vs)| {
                let min = vs.iter().copied().fold(f64::INFINITY, f64::min);
                let max = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (metric, dev, vs.len() as u64, min, max)
            })
            .collect()
    }

    fn flat(d: &SampleDigest) -> Vec<(String, Option<String>, u64, f64, f64)> {
        d.series(None)
            .iter()
            .map(|s| {
                (
                    s.metric.to_string(),
                    s.device.as_deref().map(str::to_string),
                    s.stats.count,
                    s.stats.min,
                    s.stats.max,
                )
            })
            .collect()
    }

    #[test]
    fn runs_interleaved_keys_and_null_devices_add_up_per_series() {
        // Runs, a key that comes back after others, a null device between named ones, and
        // a second batch continuing the first one's last run.
        let first = [
            ("temp", Some("a"), 1.0),
            ("temp", Some("a"), 3.0),
            ("hum", Some("a"), 40.0),
            ("temp", None, -2.5),
            ("temp", Some("b"), 7.0),
            ("temp", Some("a"), -1.0),
        ];
        let second = [("temp", Some("a"), 10.0), ("hum", None, 1.0)];
        let d = SampleDigest::of([&batch(&first), &batch(&second)]).unwrap();
        let all: Vec<_> = first.iter().chain(&second).copied().collect();
        assert_eq!(flat(&d), naive(&all));
        let temp_a = &d.series(Some("temp"))[1];
        assert_eq!(temp_a.device.as_deref(), Some("a"));
        assert_eq!(temp_a.stats.sum, 13.0);
        assert_eq!(d.series(Some("temp")).len(), 3);
        assert_eq!(d.series(Some("hum")).len(), 2);
        assert!(d.series(Some("pressure")).is_empty());
        assert!(d.series(Some("a")).is_empty());
        assert_eq!(
            SampleDigest::of([&batch(&[])]).unwrap(),
            SampleDigest::default()
        );
    }

    #[test]
    fn merged_stats_equal_stats_of_all_values() {
        let mut a = Stats::of(2.0);
        a.add(-4.0);
        let mut b = Stats::of(9.5);
        b.add(1.0);
        a.merge(&b);
        assert_eq!(
            a,
            Stats {
                count: 4,
                sum: 8.5,
                min: -4.0,
                max: 9.5
            }
        );
    }
}
