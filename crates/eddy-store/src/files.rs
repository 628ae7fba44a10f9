//! The store's Parquet files: writing buffered rows as per-(tenant, table, partition) files, merging a
//! partition's files into one, the order of rows inside a file, the writer settings, and the
//! removal of orphan files after a crash. Pure file work on a directory and a manifest value:
//! must not touch the store's state, the log or a query session.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::row::{RowConverter, SortField};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::buffer::Buffer;
use crate::digest::{self, Digests};
use crate::error::io;
use crate::manifest::{FileMeta, Manifest, Table, sync_dir};
use crate::partition::{Assigner, Partitioning, Width};
use crate::schema::{events_schema, samples_schema};
use crate::{Error, Result};

/// Parquet settings of every file the store writes (format 2.0 pages). Columns whose values are
/// (nearly) unique — times, log offsets, event ids — skip the dictionary, which would only grow
/// as large as the data, and use delta encodings instead: sorted times and offsets shrink to a
/// few bits per row, and ids of one writer share long prefixes (see `eddy_model::id`).
fn write_props() -> WriterProperties {
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;
    let mut b = WriterProperties::builder()
        .set_writer_version(parquet::file::properties::WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(128 * 1024));
    for (column, encoding) in [
        ("time", Encoding::DELTA_BINARY_PACKED),
        ("received_at", Encoding::DELTA_BINARY_PACKED),
        ("offset", Encoding::DELTA_BINARY_PACKED),
        ("event_id", Encoding::DELTA_BYTE_ARRAY),
    ] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), encoding);
    }
    b.build()
}

/// The order of rows inside a table's files. Events are clustered by `type`: the page index
/// then lets scans that filter on types (funnels, retention, `WHERE type = …`) skip the pages of
/// every other type without decoding them; inside a type, rows are in time order, so page
/// statistics still prune by time. Samples are by series, then time (which the samples
/// digests rely on). Nothing reading events files relies on their order (files written before
/// this order are in time order).
pub(crate) fn file_order(table: Table) -> &'static [&'static str] {
    match table {
        Table::Events => &["type", "time"],
        Table::MetricSamples => &["metric", "device_id", "time"],
    }
}

/// Sorts `batch` by the given columns (see [`sort_by_keys`]).
fn sort_by(batch: &RecordBatch, columns: &[&str]) -> Result<RecordBatch> {
    sort_by_keys(batch, std::iter::empty(), columns)
}

/// At most this many sort keys go through [`rank_keys`]; more take Arrow's row format.
const RANK_KEYS: usize = 4;

/// Sorts `batch` by the `computed` keys (arrays of its length), then by its `columns`, in
/// ascending order with nulls first (Arrow's default). Up to [`RANK_KEYS`] keys of the kinds
/// the store sorts by (integers, timestamps, strings) are turned into integer ranks and sorted
/// as fixed-size arrays: profiling showed the row format's memcmp per comparison at ~6% of
/// the server's time under batched ingest. Other keys fall back to the row format.
fn sort_by_keys(
    batch: &RecordBatch,
    computed: impl Iterator<Item = arrow::array::ArrayRef>,
    columns: &[&str],
) -> Result<RecordBatch> {
    let mut cols: Vec<arrow::array::ArrayRef> = computed.collect();
    for c in columns {
        cols.push(
            batch
                .column(batch.schema().index_of(c).map_err(Error::Arrow)?)
                .clone(),
        );
    }
    let idx = if cols.len() == 1 {
        arrow::compute::sort_to_indices(&cols[0], None, None).map_err(Error::Arrow)?
    } else if let Some(keys) = rank_keys(&cols, batch.num_rows()) {
        let mut order: Vec<([u64; RANK_KEYS], u32)> = keys.into_iter().zip(0..).collect();
        order.sort_unstable();
        arrow::array::UInt32Array::from_iter_values(order.into_iter().map(|(_, i)| i))
    } else {
        row_format_order(&cols, batch.num_rows())?
    };
    take_record_batch(batch, &idx).map_err(Error::Arrow)
}

/// The order of `rows` rows by `cols` through Arrow's row format (one memcmp per comparison).
fn row_format_order(
    cols: &[arrow::array::ArrayRef],
    rows: usize,
) -> Result<arrow::array::UInt32Array> {
    let fields = cols
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let converted = RowConverter::new(fields)
        .and_then(|conv| conv.convert_columns(cols))
        .map_err(Error::Arrow)?;
    let mut order: Vec<u32> = (0..rows as u32).collect();
    order.sort_unstable_by(|a, b| converted.row(*a as usize).cmp(&converted.row(*b as usize)));
    Ok(arrow::array::UInt32Array::from(order))
}

/// Per row, the sort keys as integers that order like the values: signed integers and
/// timestamps flipped into unsigned order, strings by their rank among the column's distinct
/// values (0 for null, so nulls come first). `None` when a column is of another kind, has
/// nulls where ranks cannot show them, or there are too many columns.
fn rank_keys(cols: &[arrow::array::ArrayRef], rows: usize) -> Option<Vec<[u64; RANK_KEYS]>> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int64Type, TimestampNanosecondType, UInt64Type};
    if cols.len() > RANK_KEYS || rows > u32::MAX as usize {
        return None;
    }
    let flip = |v: i64| (v as u64) ^ (1 << 63);
    let mut keys = vec![[0u64; RANK_KEYS]; rows];
    for (k, col) in cols.iter().enumerate() {
        match col.data_type() {
            DataType::Int64 if col.null_count() == 0 => {
                let a = col.as_primitive::<Int64Type>();
                keys.iter_mut()
                    .zip(a.values())
                    .for_each(|(key, v)| key[k] = flip(*v));
            }
            DataType::Timestamp(_, _) if col.null_count() == 0 => {
                let a = col.as_primitive_opt::<TimestampNanosecondType>()?;
                keys.iter_mut()
                    .zip(a.values())
                    .for_each(|(key, v)| key[k] = flip(*v));
            }
            DataType::UInt64 if col.null_count() == 0 => {
                let a = col.as_primitive::<UInt64Type>();
                keys.iter_mut()
                    .zip(a.values())
                    .for_each(|(key, v)| key[k] = *v);
            }
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                let mut rank: HashMap<&str, u64, foldhash::fast::RandomState> = HashMap::default();
                for v in a.iter().flatten() {
                    rank.entry(v).or_insert(0);
                }
                let mut distinct: Vec<&str> = rank.keys().copied().collect();
                distinct.sort_unstable();
                for (r, v) in distinct.into_iter().enumerate() {
                    rank.insert(v, r as u64 + 1);
                }
                for (key, v) in keys.iter_mut().zip(a.iter()) {
                    key[k] = v.and_then(|v| rank.get(v).copied()).unwrap_or(0);
                }
            }
            _ => return None,
        }
    }
    Some(keys)
}

fn time_column(batch: &RecordBatch) -> Result<&arrow::array::TimestampNanosecondArray> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::TimestampNanosecondArray>()
        .ok_or_else(|| Error::Task("time column has an unexpected type".into()))
}

/// A persist's new manifest and the digests of its new files.
pub(crate) type Persisted = (Manifest, Vec<digest::Built>);

/// Writes every buffered batch into per-(tenant, table, partition) Parquet files (partitions
/// by the rows' age at `now`, see `partition`) and returns the manifest that lists them with
/// `persisted_offset = upto`, saved atomically.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_files(
    dir: &Path,
    snapshot: HashMap<String, Buffer>,
    manifest: &Manifest,
    upto: u64,
    digests: &Digests,
    late_after_ns: i64,
    partitioning: Partitioning,
    now: i64,
) -> Result<Persisted> {
    let mut assign = Assigner::new(partitioning, now);
    let start = Instant::now();
    let mut next = manifest.clone();
    let mut built = Vec::new();
    let mut written = 0u64;
    for (tenant, buf) in snapshot {
        for (table, schema, batches) in [
            (Table::Events, events_schema(), buf.events),
            (Table::MetricSamples, samples_schema(), buf.samples),
        ] {
            if batches.is_empty() {
                continue;
            }
            // One sort (and one copy of the rows) by partition, then the file order inside it.
            // (Partition starts are unique per persist: widths grow with age and nest.)
            let all = concat_batches(&schema, &batches).map_err(Error::Arrow)?;
            let starts = arrow::array::Int64Array::from_iter_values(
                time_column(&all)?.values().iter().map(|t| assign.of(*t).1),
            );
            let all = sort_by_keys(
                &all,
                std::iter::once(Arc::new(starts) as _),
                file_order(table),
            )?;
            let times = time_column(&all)?;
            let mut start_row = 0;
            while start_row < all.num_rows() {
                let part = assign.of(times.value(start_row));
                let mut end_row = start_row;
                while end_row < all.num_rows() && assign.of(times.value(end_row)).1 == part.1 {
                    end_row += 1;
                }
                let len = end_row - start_row;
                let slice = all.slice(start_row, len);
                let part_times = times.slice(start_row, len);
                let meta = write_one(
                    dir,
                    &tenant,
                    table,
                    part,
                    &slice,
                    arrow::compute::min(&part_times).unwrap_or(part.1),
                    arrow::compute::max(&part_times).unwrap_or(part.1),
                )?;
                written += meta.bytes;
                built.extend(digest::build(digests, &meta, &slice, late_after_ns)?);
                next.files.push(meta);
                start_row = end_row;
            }
        }
    }
    next.persisted_offset = upto;
    next.save(dir)?;
    metrics::counter!("eddy_store_written_bytes_total").increment(written);
    metrics::histogram!("eddy_store_persist_duration_seconds")
        .record(start.elapsed().as_secs_f64());
    tracing::debug!(
        upto,
        bytes = written,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "store persisted"
    );
    Ok((next, built))
}

/// Reads `files` (all inside partition `target`) and writes them as one sorted file of that
/// partition, with its digest.
pub(crate) fn merge_files(
    dir: &Path,
    files: &[FileMeta],
    target: (Width, i64),
    digests: &Digests,
    late_after_ns: i64,
) -> Result<(FileMeta, Vec<digest::Built>)> {
    let first = files
        .first()
        .ok_or_else(|| Error::Task("nothing to compact".into()))?;
    let schema = match first.table {
        Table::Events => events_schema(),
        Table::MetricSamples => samples_schema(),
    };
    let mut batches = Vec::new();
    for f in files {
        let path = dir.join(&f.path);
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .build()?;
        for b in reader {
            batches.push(b.map_err(Error::Arrow)?);
        }
    }
    let all = concat_batches(&schema, &batches).map_err(Error::Arrow)?;
    let sorted = sort_by(&all, file_order(first.table))?;
    let min_time = files
        .iter()
        .map(|f| f.min_time)
        .min()
        .unwrap_or(first.min_time);
    let max_time = files
        .iter()
        .map(|f| f.max_time)
        .max()
        .unwrap_or(first.max_time);
    let meta = write_one(
        dir,
        &first.tenant,
        first.table,
        target,
        &sorted,
        min_time,
        max_time,
    )?;
    let built = digest::build(digests, &meta, &sorted, late_after_ns)?
        .into_iter()
        .collect();
    Ok((meta, built))
}

fn write_one(
    dir: &Path,
    tenant: &str,
    table: Table,
    (width, partition): (Width, i64),
    batch: &RecordBatch,
    min_time: i64,
    max_time: i64,
) -> Result<FileMeta> {
    let rel_dir = PathBuf::from(tenant)
        .join(table.name())
        .join(partition.to_string());
    let abs_dir = dir.join(&rel_dir);
    let fresh_dir = !abs_dir.exists();
    std::fs::create_dir_all(&abs_dir).map_err(io(&abs_dir))?;
    let name = format!("{}.parquet", uuid::Uuid::now_v7().simple());
    let path = abs_dir.join(&name);
    let file = std::fs::File::create(&path).map_err(io(&path))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(write_props()))?;
    w.write(batch)?;
    let file = w.into_inner()?;
    file.sync_all().map_err(io(&path))?;
    let bytes = file.metadata().map_err(io(&path))?.len();
    sync_dir(&abs_dir)?;
    if fresh_dir {
        // New directories must be durable too, up to the store dir.
        for d in [
            abs_dir.parent(),
            abs_dir.parent().and_then(Path::parent),
            Some(dir),
        ]
        .into_iter()
        .flatten()
        {
            sync_dir(d)?;
        }
    }
    Ok(FileMeta {
        tenant: tenant.into(),
        table,
        partition,
        width,
        path: rel_dir.join(name).to_string_lossy().into_owned(),
        rows: batch.num_rows() as u64,
        bytes,
        min_time,
        max_time,
    })
}

/// Deletes Parquet files the manifest does not list (left by a crash before the manifest swap).
pub(crate) fn remove_orphans(dir: &Path, manifest: &Manifest) -> Result<()> {
    let listed: std::collections::HashSet<PathBuf> =
        manifest.files.iter().map(|f| dir.join(&f.path)).collect();
    let mut stack = vec![dir.to_path_buf()];
    let mut removed = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") && !listed.contains(&p) {
                std::fs::remove_file(&p).map_err(io(&p))?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed Parquet files not in the manifest (left by an interrupted persist)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod sort_tests {
    use super::*;
    use crate::schema::BatchBuilder;
    use eddy_model::Event;

    #[test]
    fn samples_sort_by_metric_device_time_with_nulls() {
        let mut b = BatchBuilder::default();
        for (i, (dev, metric, t)) in [
            (Some("b"), "temp", 3),
            (None, "temp", 1),
            (Some("a"), "hum", 9),
            (Some("a"), "temp", 2),
            (Some("b"), "temp", 1),
        ]
        .into_iter()
        .enumerate()
        {
            let mut ev = Event {
                event_id: i.to_string(),
                time: t,
                r#type: "reading".into(),
                device_id: dev.map(Into::into),
                ..Default::default()
            };
            ev.metrics.insert(metric.into(), i as f64);
            b.push(&ev, i as u64).unwrap();
        }
        let (_, samples) = b.finish().unwrap();
        let sorted = sort_by(&samples, &["metric", "device_id", "time"]).unwrap();
        let values: Vec<f64> = sorted
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap()
            .values()
            .to_vec();
        // hum/a, then temp: null device first, a, b@1, b@3.
        assert_eq!(values, vec![2.0, 1.0, 3.0, 4.0, 0.0]);
    }

    /// The integer ranks order rows exactly like Arrow's row format (nulls first, strings by
    /// bytes, negative times before positive ones), on random columns with many ties.
    #[test]
    fn rank_keys_order_like_the_row_format() {
        use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
        // A seeded xorshift: below `n`.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut below = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..50 {
            let n = 1 + below(400);
            let hours: ArrayRef = Arc::new(Int64Array::from_iter_values(
                (0..n).map(|_| below(6) as i64 - 3),
            ));
            let names = ["", "a", "ab", "b", "é", "a\u{0}"];
            let metric: ArrayRef = Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| names[below(names.len())]),
            ));
            let device: ArrayRef = Arc::new(StringArray::from_iter((0..n).map(|_| {
                let i = below(names.len() + 1);
                names.get(i).copied()
            })));
            let time: ArrayRef = Arc::new(TimestampNanosecondArray::from_iter_values(
                (0..n).map(|_| (below(10) as i64 - 5) * 1_000_000_007),
            ));
            let cols = [hours, metric, device, time];
            let keys = rank_keys(&cols, n).unwrap();
            let mut order: Vec<([u64; RANK_KEYS], u32)> = keys.into_iter().zip(0..).collect();
            order.sort_unstable();
            let ranked =
                arrow::array::UInt32Array::from_iter_values(order.into_iter().map(|(_, i)| i));
            let by_rows = row_format_order(&cols, n).unwrap();
            for c in &cols {
                // Tied rows may come in either order, so compare the sorted keys, not indexes.
                let a = arrow::compute::take(c.as_ref(), &ranked, None).unwrap();
                let b = arrow::compute::take(c.as_ref(), &by_rows, None).unwrap();
                assert_eq!(a.as_ref(), b.as_ref());
            }
        }
    }
}
