//! Closed rollup windows, persisted as Parquet tables: `<dir>/<tenant>/metrics-<lo>-<hi>.parquet`
//! and `counts-<lo>-<hi>.parquet`, where `lo..=hi` are the tenant's flush numbers the file
//! holds (a flush writes `<n>-<n>`; merging small files writes their union).
//!
//! **Exactly once.** A flush is written (temp file, fsync, rename, fsync dir) *before* the
//! checkpoint that records its number (`TenantRollups::flush_seq`); so on start, files above the
//! checkpoint's number belong to a flush whose checkpoint never landed and are deleted (the
//! replay writes them again), and files whose range lies inside another file's are inputs of a
//! merge that finished its rename but not its deletions.
//!
//! **Tables.** `metrics` rows: `resolution` (`1m`/`1h`/`1d`), `window_start` (timestamp ns
//! UTC), `device_id` (null = all devices together, `""` = events without a device), `metric`,
//! `count`, `sum`, `min`, `max`, `avg`, `first`/`last` (value) with `first_time`/`last_time`
//! and `first_offset`/`last_offset`, `p50`, `p90`, `p95`, `p99`. `counts` rows: `resolution`,
//! `window_start`, `dimension` (`type`/`page_url`/`source`), `value`, `count`,
//! `distinct_users`. Each file's footer holds its earliest and latest `window_start`
//! (`eddy.min_start`, `eddy.max_start`), so a range read opens only the files it needs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow::datatypes::{
    DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit, TimestampNanosecondType, UInt64Type,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::rollup::{
    Closed, CountAgg, CountRow, Devices, Dimension, MetricAgg, MetricRow, Point, Resolution, Series,
};
use crate::{Error, Result};

/// A tenant's run of small files is merged into one once it is this long.
pub const MERGE_FANIN: usize = 16;
/// Files at least this large are not merged further.
pub const MERGE_MAX_BYTES: u64 = 8 << 20;

const MIN_START: &str = "eddy.min_start";
const MAX_START: &str = "eddy.max_start";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

static METRICS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    Arc::new(Schema::new(vec![
        f("resolution", DataType::Utf8, false),
        f("window_start", ts(), false),
        f("device_id", DataType::Utf8, true),
        f("metric", DataType::Utf8, false),
        f("count", DataType::UInt64, false),
        f("sum", DataType::Float64, false),
        f("min", DataType::Float64, false),
        f("max", DataType::Float64, false),
        f("avg", DataType::Float64, false),
        f("first", DataType::Float64, false),
        f("first_time", ts(), false),
        f("first_offset", DataType::UInt64, false),
        f("last", DataType::Float64, false),
        f("last_time", ts(), false),
        f("last_offset", DataType::UInt64, false),
        f("p50", DataType::Float64, true),
        f("p90", DataType::Float64, true),
        f("p95", DataType::Float64, true),
        f("p99", DataType::Float64, true),
    ]))
});

static COUNTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("resolution", DataType::Utf8, false),
        Field::new("window_start", ts(), false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("distinct_users", DataType::UInt64, false),
    ]))
});

/// Schema of the persisted metric windows (the `rollups` table).
pub fn metrics_schema() -> SchemaRef {
    METRICS.clone()
}

/// Schema of the persisted count windows.
pub fn counts_schema() -> SchemaRef {
    COUNTS.clone()
}

/// Which table a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Metrics,
    Counts,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Metrics, Kind::Counts];

    fn prefix(self) -> &'static str {
        match self {
            Kind::Metrics => "metrics",
            Kind::Counts => "counts",
        }
    }
}

/// One persisted file: its table and the flush numbers it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupFile {
    pub kind: Kind,
    pub lo: u64,
    pub hi: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub modified: Option<std::time::SystemTime>,
}

impl RollupFile {
    /// Whether another of `files` of the same table holds this one's flushes: this one is an
    /// input of a merge that renamed its output but has not deleted its inputs yet.
    pub fn merged_away(&self, files: &[RollupFile]) -> bool {
        files.iter().any(|g| {
            g.kind == self.kind
                && g.lo <= self.lo
                && self.hi <= g.hi
                && (g.lo, g.hi) != (self.lo, self.hi)
        })
    }
}

fn file_name(kind: Kind, lo: u64, hi: u64) -> String {
    format!("{}-{lo:012}-{hi:012}.parquet", kind.prefix())
}

fn parse_name(name: &str) -> Option<(Kind, u64, u64)> {
    let stem = name.strip_suffix(".parquet")?;
    let (prefix, range) = stem.split_once('-')?;
    let kind = Kind::ALL.into_iter().find(|k| k.prefix() == prefix)?;
    let (lo, hi) = range.split_once('-')?;
    let (lo, hi) = (lo.parse().ok()?, hi.parse().ok()?);
    (lo <= hi).then_some((kind, lo, hi))
}

/// The directory of `tenant`'s files (tenant ids are single path components: `default` or
/// generated `tn_…`; anything else is refused rather than joined).
pub fn tenant_dir(root: &Path, tenant: &str) -> Result<PathBuf> {
    let plain = !tenant.is_empty()
        && tenant != "."
        && tenant != ".."
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !plain {
        return Err(Error::Checkpoint(format!(
            "tenant id `{tenant}` cannot name a directory"
        )));
    }
    Ok(root.join(tenant))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The files of one tenant, by table then first flush number.
pub fn list(root: &Path, tenant: &str) -> Result<Vec<RollupFile>> {
    let dir = tenant_dir(root, tenant)?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name = entry.file_name();
        let Some((kind, lo, hi)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let meta = entry.metadata().ok();
        files.push(RollupFile {
            kind,
            lo,
            hi,
            path: entry.path(),
            bytes: meta.as_ref().map_or(0, |m| m.len()),
            modified: meta.and_then(|m| m.modified().ok()),
        });
    }
    files.sort_by_key(|f| (f.kind.prefix(), f.lo, std::cmp::Reverse(f.hi)));
    Ok(files)
}

/// Writes one flush of `tenant` (number `seq`): one file per table that has rows.
pub fn write_flush(root: &Path, tenant: &str, seq: u64, closed: &Closed) -> Result<()> {
    let dir = tenant_dir(root, tenant)?;
    let fresh = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if fresh {
        sync_dir(root)?;
    }
    write_closed(&dir, seq, seq, closed)?;
    sync_dir(&dir)
}

/// Writes the tables of `closed` that have rows as `<kind>-<lo>-<hi>.parquet`, rows sorted by
/// resolution, series and window (so row-group statistics prune reads of one series).
fn write_closed(dir: &Path, lo: u64, hi: u64, closed: &Closed) -> Result<()> {
    if !closed.metrics.is_empty() {
        let mut rows: Vec<&MetricRow> = closed.metrics.iter().collect();
        rows.sort_by(|a, b| {
            (a.resolution.name(), &a.metric, &a.device, a.start).cmp(&(
                b.resolution.name(),
                &b.metric,
                &b.device,
                b.start,
            ))
        });
        write_file(dir, Kind::Metrics, lo, hi, &metrics_batch(&rows)?)?;
    }
    if !closed.counts.is_empty() {
        let mut rows: Vec<&CountRow> = closed.counts.iter().collect();
        rows.sort_by(|a, b| {
            (a.resolution.name(), a.dimension.name(), &a.value, a.start).cmp(&(
                b.resolution.name(),
                b.dimension.name(),
                &b.value,
                b.start,
            ))
        });
        write_file(dir, Kind::Counts, lo, hi, &counts_batch(&rows)?)?;
    }
    Ok(())
}

/// Rows per row group: small enough that a read of one series skips most of a file by the
/// groups' statistics (rows are sorted by resolution, series, window). Pages are not
/// compressed: the parquet crate builds a zstd compressor and decompressor for every column
/// chunk it reads, which cost more than the reads themselves (bench/rollups.sh: 24 h by minute
/// from files p50 9 → 5 ms; files 1.8× larger, about 32 bytes per window).
const ROW_GROUP_ROWS: usize = 4096;

fn props(min_start: i64, max_start: i64) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(MIN_START.to_string(), min_start.to_string()),
            KeyValue::new(MAX_START.to_string(), max_start.to_string()),
        ]))
        .build()
}

/// Writes `batch` as `<dir>/<kind>-<lo>-<hi>.parquet` through a fsynced temp file and a
/// rename (the caller fsyncs the directory).
fn write_file(dir: &Path, kind: Kind, lo: u64, hi: u64, batch: &RecordBatch) -> Result<PathBuf> {
    let starts = batch
        .column(1)
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| Error::Checkpoint("window_start is not a timestamp".into()))?;
    let min = arrow::compute::min(starts).unwrap_or(0);
    let max = arrow::compute::max(starts).unwrap_or(0);
    let path = dir.join(file_name(kind, lo, hi));
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props(min, max)))
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", tmp.display())))?;
    w.write(batch)
        .and_then(|()| w.into_inner())
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", tmp.display())))
        .and_then(|f| f.sync_all().map_err(|e| Error::io(&tmp, e)))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

pub fn metrics_batch(rows: &[&MetricRow]) -> Result<RecordBatch> {
    let f64s = |get: fn(&MetricAgg) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| get(&r.agg)),
        ))
    };
    let times = |get: fn(&&MetricRow) -> i64| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from_iter_values(rows.iter().map(get)).with_timezone("UTC"),
        )
    };
    let u64s = |get: fn(&MetricAgg) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| get(&r.agg)),
        ))
    };
    let quantile = |i: usize| -> ArrayRef {
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| {
            let v = r.agg.quantiles().get(i).copied().unwrap_or(f64::NAN);
            (!v.is_nan()).then_some(v)
        })))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.resolution.name()),
        )),
        times(|r| r.start),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.device.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.metric.as_str()),
        )),
        u64s(|a| a.count),
        f64s(|a| a.sum),
        f64s(|a| a.min),
        f64s(|a| a.max),
        f64s(MetricAgg::avg),
        f64s(|a| a.first.value),
        times(|r| r.agg.first.time),
        u64s(|a| a.first.offset),
        f64s(|a| a.last.value),
        times(|r| r.agg.last.time),
        u64s(|a| a.last.offset),
        quantile(0),
        quantile(1),
        quantile(2),
        quantile(3),
    ];
    RecordBatch::try_new(metrics_schema(), columns).map_err(|e| Error::Checkpoint(e.to_string()))
}

pub fn counts_batch(rows: &[&CountRow]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.resolution.name()),
        )),
        Arc::new(
            TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.start))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.dimension.name()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.value.as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.agg.count),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.agg.distinct_users()),
        )),
    ];
    RecordBatch::try_new(counts_schema(), columns).map_err(|e| Error::Checkpoint(e.to_string()))
}

fn bad_file(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Checkpoint(format!("{}: {what}", path.display()))
}

/// Which persisted windows a read wants.
#[derive(Debug, Clone)]
pub enum Want {
    /// Every window.
    All,
    /// `series`' windows of one resolution starting in `[from, to)`.
    Range {
        resolution: Resolution,
        from: i64,
        to: i64,
        series: Series,
    },
    /// Windows ending after the given time, per resolution (1m, 1h, 1d): what memory holds.
    EndingAfter([i64; 3]),
}

impl Want {
    fn reads(&self, kind: Kind) -> bool {
        match (self, kind) {
            (Want::Range { series, .. }, Kind::Metrics) => matches!(series, Series::Metrics { .. }),
            (Want::Range { series, .. }, Kind::Counts) => matches!(series, Series::Dimension(_)),
            _ => true,
        }
    }

    fn overlaps(&self, min_start: i64, max_start: i64) -> bool {
        match self {
            Want::All => true,
            Want::Range { from, to, .. } => max_start >= *from && min_start < *to,
            Want::EndingAfter(after) => Resolution::ALL
                .into_iter()
                .zip(after)
                .any(|(r, a)| max_start.saturating_add(r.nanos()) > *a),
        }
    }

    /// Whether a row group whose statistics are `stats` may hold wanted rows.
    fn may_hold(&self, stats: &GroupStats<'_>) -> bool {
        let Want::Range {
            resolution,
            from,
            to,
            series,
        } = self
        else {
            return true;
        };
        let within = |range: Option<(&[u8], &[u8])>, v: &str| {
            range.is_none_or(|(lo, hi)| lo <= v.as_bytes() && v.as_bytes() <= hi)
        };
        let (key, device) = match series {
            Series::Metrics { metric, devices } => (metric.as_deref(), Some(devices)),
            Series::Dimension(d) => (Some(d.name()), None),
        };
        let device_ok = match device {
            Some(Devices::One(d)) => within(stats.device, d),
            // The all-devices series has a null device_id.
            Some(Devices::Together) => stats.device_nulls.is_none_or(|n| n > 0),
            Some(Devices::Each) => stats.device_nulls.is_none_or(|n| n < stats.rows),
            Some(Devices::Any) | None => true,
        };
        device_ok
            && within(stats.resolution, resolution.name())
            && key.is_none_or(|k| within(stats.key, k))
            && stats.start.is_none_or(|(lo, hi)| hi >= *from && lo < *to)
    }

    fn keeps(&self, r: Resolution, start: i64) -> bool {
        match self {
            Want::All => true,
            Want::Range {
                resolution,
                from,
                to,
                ..
            } => r == *resolution && (*from..*to).contains(&start),
            Want::EndingAfter(after) => {
                let i = Resolution::ALL.iter().position(|x| *x == r).unwrap_or(0);
                after
                    .get(i)
                    .is_some_and(|a| start.saturating_add(r.nanos()) > *a)
            }
        }
    }

    fn keeps_metric(&self, metric: &str, device: Option<&str>) -> bool {
        match self {
            Want::Range { series, .. } => series.has_metric(metric) && series.has_device(device),
            _ => true,
        }
    }

    fn keeps_dimension(&self, d: Dimension) -> bool {
        match self {
            Want::Range { series, .. } => series.has_dimension(d),
            _ => true,
        }
    }
}

/// Min/max statistics of one row group: resolution, the series key (metric or dimension) and
/// window start.
struct GroupStats<'a> {
    rows: u64,
    resolution: Option<(&'a [u8], &'a [u8])>,
    key: Option<(&'a [u8], &'a [u8])>,
    device: Option<(&'a [u8], &'a [u8])>,
    device_nulls: Option<u64>,
    start: Option<(i64, i64)>,
}

/// Positions of the columns [`GroupStats`] reads, looked up once per file.
struct StatsColumns {
    resolution: Option<usize>,
    key: Option<usize>,
    device: Option<usize>,
    start: Option<usize>,
}

impl StatsColumns {
    fn of(schema: &parquet::schema::types::SchemaDescriptor, kind: Kind) -> Self {
        let idx = |name: &str| (0..schema.num_columns()).find(|i| schema.column(*i).name() == name);
        StatsColumns {
            resolution: idx("resolution"),
            key: idx(match kind {
                Kind::Metrics => "metric",
                Kind::Counts => "dimension",
            }),
            device: idx("device_id"),
            start: idx("window_start"),
        }
    }
}

impl<'a> GroupStats<'a> {
    fn of(rg: &'a parquet::file::metadata::RowGroupMetaData, cols: &StatsColumns) -> Self {
        use parquet::file::statistics::Statistics;
        let column = |i: Option<usize>| rg.columns().get(i?)?.statistics();
        let bytes = |i: Option<usize>| {
            let s = column(i)?;
            Some((s.min_bytes_opt()?, s.max_bytes_opt()?))
        };
        let start = match column(cols.start) {
            Some(Statistics::Int64(s)) => s.min_opt().copied().zip(s.max_opt().copied()),
            _ => None,
        };
        GroupStats {
            rows: u64::try_from(rg.num_rows()).unwrap_or(0),
            device: bytes(cols.device),
            device_nulls: column(cols.device).and_then(|s| s.null_count_opt()),
            resolution: bytes(cols.resolution),
            key: bytes(cols.key),
            start,
        }
    }
}

/// Reads `tenant`'s persisted windows that `want` asks for. Files merged away meanwhile are
/// skipped (their rows are in the merged file, which the listing holds or a re-listing finds).
pub fn read(root: &Path, tenant: &str, want: &Want, footers: &Footers) -> Result<Closed> {
    let mut out = Closed::default();
    for attempt in 0..3 {
        out = Closed::default();
        let mut vanished = false;
        for f in list(root, tenant)? {
            match read_file(&f, want, footers, &mut out) {
                Ok(()) => {}
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempt < 2 =>
                {
                    vanished = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !vanished {
            break;
        }
    }
    Ok(out)
}

/// Parsed footers of rollup files (files never change once renamed into place; length and
/// modification time in the key guard against a path written again), so a range read does not
/// parse every file's metadata again. Bounded: emptied when it holds [`FOOTER_CACHE_FILES`].
#[derive(Debug, Default)]
pub struct Footers(std::sync::Mutex<std::collections::HashMap<FooterKey, ArrowReaderMetadata>>);

type FooterKey = (PathBuf, u64, Option<std::time::SystemTime>);

/// Most footers [`Footers`] keeps.
pub const FOOTER_CACHE_FILES: usize = 1024;

impl Footers {
    fn get(&self, f: &RollupFile, file: &std::fs::File) -> Result<ArrowReaderMetadata> {
        let key = (f.path.clone(), f.bytes, f.modified);
        if let Some(m) = self.0.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(m);
        }
        let m = ArrowReaderMetadata::load(file, Default::default())
            .map_err(|e| bad_file(&f.path, e))?;
        if let Ok(mut c) = self.0.lock() {
            if c.len() >= FOOTER_CACHE_FILES {
                c.clear();
            }
            c.insert(key, m.clone());
        }
        Ok(m)
    }
}

fn read_file(f: &RollupFile, want: &Want, footers: &Footers, out: &mut Closed) -> Result<()> {
    if !want.reads(f.kind) {
        return Ok(());
    }
    let file = std::fs::File::open(&f.path).map_err(|e| Error::io(&f.path, e))?;
    let meta = footers.get(f, &file)?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
    let kv = |key: &str| -> Option<i64> {
        builder
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|k| k.key == key)?
            .value
            .as_deref()?
            .parse()
            .ok()
    };
    if let (Some(lo), Some(hi)) = (kv(MIN_START), kv(MAX_START))
        && !want.overlaps(lo, hi)
    {
        return Ok(());
    }
    let cols = StatsColumns::of(builder.metadata().file_metadata().schema_descr(), f.kind);
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| want.may_hold(&GroupStats::of(rg, &cols)))
        .map(|(i, _)| i)
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    let reader = builder
        .with_row_groups(groups)
        .build()
        .map_err(|e| bad_file(&f.path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| bad_file(&f.path, e))?;
        match f.kind {
            Kind::Metrics => decode_metrics(&f.path, &batch, want, &mut out.metrics)?,
            Kind::Counts => decode_counts(&f.path, &batch, want, &mut out.counts)?,
        }
    }
    Ok(())
}

struct Columns<'a> {
    path: &'a Path,
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn col(&self, name: &str) -> Result<&'a ArrayRef> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| bad_file(self.path, format!("no column `{name}`")))
    }
    fn str(&self, name: &str) -> Result<&'a arrow::array::StringArray> {
        self.col(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| bad_file(self.path, format!("`{name}` is not text")))
    }
    fn f64(&self, name: &str) -> Result<&'a arrow::array::Float64Array> {
        self.col(name)?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| bad_file(self.path, format!("`{name}` is not float64")))
    }
    fn u64(&self, name: &str) -> Result<&'a arrow::array::UInt64Array> {
        self.col(name)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad_file(self.path, format!("`{name}` is not uint64")))
    }
    fn ts(&self, name: &str) -> Result<&'a arrow::array::TimestampNanosecondArray> {
        self.col(name)?
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| bad_file(self.path, format!("`{name}` is not a timestamp")))
    }
    fn resolution(&self, i: usize) -> Result<Resolution> {
        let v = self.str("resolution")?.value(i);
        Resolution::parse(v).ok_or_else(|| bad_file(self.path, format!("resolution `{v}`")))
    }
}

fn decode_metrics(
    path: &Path,
    batch: &RecordBatch,
    want: &Want,
    out: &mut Vec<MetricRow>,
) -> Result<()> {
    let c = Columns { path, batch };
    let (start, device, metric, count) = (
        c.ts("window_start")?,
        c.str("device_id")?,
        c.str("metric")?,
        c.u64("count")?,
    );
    let (sum, min, max) = (c.f64("sum")?, c.f64("min")?, c.f64("max")?);
    let (first, first_time, first_offset) =
        (c.f64("first")?, c.ts("first_time")?, c.u64("first_offset")?);
    let (last, last_time, last_offset) =
        (c.f64("last")?, c.ts("last_time")?, c.u64("last_offset")?);
    let qs = [c.f64("p50")?, c.f64("p90")?, c.f64("p95")?, c.f64("p99")?];
    for i in 0..batch.num_rows() {
        let r = c.resolution(i)?;
        let dev = (!device.is_null(i)).then(|| device.value(i));
        if !want.keeps(r, start.value(i)) || !want.keeps_metric(metric.value(i), dev) {
            continue;
        }
        let point = |v: &arrow::array::Float64Array,
                     t: &arrow::array::TimestampNanosecondArray,
                     o: &arrow::array::UInt64Array| Point {
            time: t.value(i),
            offset: o.value(i),
            value: v.value(i),
        };
        out.push(MetricRow {
            resolution: r,
            start: start.value(i),
            device: dev.map(str::to_string),
            metric: metric.value(i).to_string(),
            agg: MetricAgg::closed(
                count.value(i),
                sum.value(i),
                min.value(i),
                max.value(i),
                point(first, first_time, first_offset),
                point(last, last_time, last_offset),
                qs.map(|q| if q.is_null(i) { f64::NAN } else { q.value(i) }),
            ),
        });
    }
    Ok(())
}

fn decode_counts(
    path: &Path,
    batch: &RecordBatch,
    want: &Want,
    out: &mut Vec<CountRow>,
) -> Result<()> {
    let c = Columns { path, batch };
    let (start, dim, value, count, users) = (
        c.ts("window_start")?,
        c.str("dimension")?,
        c.str("value")?,
        c.u64("count")?,
        c.u64("distinct_users")?,
    );
    for i in 0..batch.num_rows() {
        let r = c.resolution(i)?;
        if !want.keeps(r, start.value(i)) {
            continue;
        }
        let d = dim.value(i);
        let dimension =
            Dimension::parse(d).ok_or_else(|| bad_file(path, format!("dimension `{d}`")))?;
        if !want.keeps_dimension(dimension) {
            continue;
        }
        out.push(CountRow {
            resolution: r,
            start: start.value(i),
            dimension,
            value: value.value(i).to_string(),
            agg: CountAgg::closed(count.value(i), users.value(i)),
        });
    }
    Ok(())
}

/// Brings `root` in line with a checkpoint whose flush numbers are `flushed(tenant)` (0 for a
/// tenant it does not hold): deletes files above it, files inside another file's range, temp
/// files and directories left empty. Returns how many files were deleted.
pub fn recover(root: &Path, flushed: impl Fn(&str) -> u64) -> Result<usize> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(root, e)),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let Some(tenant) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let dir = entry.path();
        if !dir.is_dir() || tenant_dir(root, &tenant).is_err() {
            continue;
        }
        for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = e.map_err(|e| Error::io(&dir, e))?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                deleted += 1;
            }
        }
        let seq = flushed(&tenant);
        let files = list(root, &tenant)?;
        for f in &files {
            let orphan = f.hi > seq;
            if orphan || f.merged_away(&files) {
                std::fs::remove_file(&f.path).map_err(|e| Error::io(&f.path, e))?;
                deleted += 1;
            }
        }
        if list(root, &tenant)?.is_empty() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        } else {
            sync_dir(&dir)?;
        }
    }
    sync_dir(root)?;
    Ok(deleted)
}

/// Deletes `tenant`'s files (the tenant was deleted).
pub fn remove_tenant(root: &Path, tenant: &str) -> Result<()> {
    let dir = tenant_dir(root, tenant)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => sync_dir(root),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&dir, e)),
    }
}

/// Merges the newest run of small files of each table of `tenant` into one once the run
/// reaches [`MERGE_FANIN`] files. The merged file is renamed into place before its inputs are
/// deleted; [`recover`] finishes the deletions after a crash. Returns the files merged.
pub fn merge_small(root: &Path, tenant: &str) -> Result<usize> {
    let dir = tenant_dir(root, tenant)?;
    let files = list(root, tenant)?;
    let mut merged = 0;
    for kind in Kind::ALL {
        let of_kind: Vec<&RollupFile> = files.iter().filter(|f| f.kind == kind).collect();
        let run: Vec<&RollupFile> = of_kind
            .iter()
            .rev()
            .take_while(|f| f.bytes < MERGE_MAX_BYTES)
            .copied()
            .collect();
        if run.len() < MERGE_FANIN {
            continue;
        }
        let (lo, hi) = (
            run.iter().map(|f| f.lo).min().unwrap_or(0),
            run.iter().map(|f| f.hi).max().unwrap_or(0),
        );
        let mut rows = Closed::default();
        for f in run.iter().rev() {
            read_file(f, &Want::All, &Footers::default(), &mut rows)?;
        }
        write_closed(&dir, lo, hi, &rows)?;
        sync_dir(&dir)?;
        for f in &run {
            std::fs::remove_file(&f.path).map_err(|e| Error::io(&f.path, e))?;
        }
        sync_dir(&dir)?;
        merged += run.len();
    }
    Ok(merged)
}
