//! Digests: exact, mergeable aggregates of one Parquet file's events, kept in memory so that
//! summaries and top lists of long ranges add up a few digests instead of scanning every row.
//!
//! A [`Digest`] holds what [`crate::analytics::Summary`] and the top lists of `type`,
//! `page_url` and `source` need: counts, error and late counts, and the distinct users and
//! devices overall and per value, as roaring bitmaps of ids from the tenant's [`Dictionary`].
//! Pages and sources are also kept per event type, for SQL counts filtered by one type
//! ([`crate::digest_sql`]).
//! Bitmaps make distinct counts exact and mergeable: the union of two digests' users is the
//! set of users of both files, so a range's distinct users are never double counted.
//!
//! A query uses the digest of every file wholly inside its range and folds the rest (files
//! that straddle an edge, files without a digest yet, the unpersisted buffers) row by row
//! into a digest of the same kind, so both paths share one definition of every figure.
//!
//! The registry ([`Digests`]) also keeps the digests of `metric_samples` files
//! ([`crate::sample_digest`]), under the same budget.
//!
//! Digests are built when a file is written (persist, compaction) and, after a restart, by a
//! background pass over the manifest, newest first. They are never persisted: the files are
//! the truth and a digest can always be rebuilt. Memory is bounded by a budget; over it the
//! digests of the oldest hours are dropped and those files are scanned instead. Dictionaries
//! only grow (an id is never reused while a digest may hold it); they go with their tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;
use futures_util::StreamExt;
use roaring::{MultiOps, RoaringBitmap};

use crate::api::{Count, Field, Group, Summary, Top};
use crate::exprs::{events_in, in_range};
use crate::manifest::{FileMeta, Manifest, Table};
use crate::rows::strings;
use crate::sample_digest::SampleDigest;
use crate::{Error, Result};

/// The columns a digest is built from.
pub(crate) const COLUMNS: [&str; 7] = [
    "time",
    "received_at",
    "type",
    "page_url",
    "source",
    "user_id",
    "device_id",
];

/// A tenant's ids of user and device names (one namespace: a bitmap only ever holds ids of
/// one column, so sharing ids costs nothing and saves a second copy of equal names).
#[derive(Debug, Default)]
pub(crate) struct Dictionary {
    ids: Names<u32>,
    /// Approximate heap size, kept as names are added (the budget reads it on every insert).
    bytes: usize,
}

/// A map by name with a fast, per-process seeded hash (folding hashes names of every row).
type Names<T> = HashMap<Box<str>, T, foldhash::fast::RandomState>;

impl Dictionary {
    fn id(&mut self, name: &str) -> Result<u32> {
        if let Some(id) = self.ids.get(name) {
            return Ok(*id);
        }
        let id = u32::try_from(self.ids.len())
            .map_err(|_| Error::Task("more than 2^32 distinct user and device ids".into()))?;
        self.ids.insert(name.into(), id);
        self.bytes += name.len() + 40;
        Ok(id)
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Events and distinct users of one value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    pub(crate) users: RoaringBitmap,
}

/// The pages and sources of one event type's events.
#[derive(Debug, Default, Clone)]
pub(crate) struct Typed {
    pages: Names<Tally>,
    sources: Names<Tally>,
}

/// What part of a digest a question needs: merging leaves the rest out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    /// Everything but the per-type pages and sources (a summary).
    All,
    /// The event count and one field's values (a top list, a series).
    Field(Field),
    /// The event count, the types, and one type's values of `page_url` or `source`.
    OfType(String, Field),
}

/// Exact aggregates of a set of events (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Digest {
    /// The lateness `late` was counted with.
    late_after_ns: i64,
    events: u64,
    errors: u64,
    late: u64,
    users: RoaringBitmap,
    devices: RoaringBitmap,
    types: Names<Tally>,
    pages: Names<Tally>,
    sources: Names<Tally>,
    /// Pages and sources per event type.
    typed: Names<Typed>,
}

impl Digest {
    pub(crate) fn new(late_after_ns: i64) -> Self {
        Self {
            late_after_ns,
            events: 0,
            errors: 0,
            late: 0,
            users: RoaringBitmap::new(),
            devices: RoaringBitmap::new(),
            types: Names::default(),
            pages: Names::default(),
            sources: Names::default(),
            typed: Names::default(),
        }
    }

    /// The lateness this digest counted `late` with.
    pub(crate) fn late_after_ns(&self) -> i64 {
        self.late_after_ns
    }

    /// Whether the digest can answer for `field`.
    pub(crate) fn covers(field: &Field) -> bool {
        matches!(field, Field::Type | Field::PageUrl | Field::Source)
    }

    /// Adds the rows of `batch` (which has at least [`COLUMNS`]), interning names in `dict`.
    pub(crate) fn fold(&mut self, batch: &RecordBatch, dict: &Mutex<Dictionary>) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let times = timestamps(batch, "time")?;
        let received = timestamps(batch, "received_at")?;
        let types = strings(batch, "type")?;
        let pages = strings(batch, "page_url")?;
        let sources = strings(batch, "source")?;
        let users = strings(batch, "user_id")?;
        let devices = strings(batch, "device_id")?;
        let mut dict = dict
            .lock()
            .map_err(|_| Error::Task("digest dictionary lock poisoned".into()))?;
        for r in 0..n {
            self.events += 1;
            let kind = types.value(r);
            if kind == "error" {
                self.errors += 1;
            }
            if received.value(r).saturating_sub(times.value(r)) > self.late_after_ns {
                self.late += 1;
            }
            let user = if users.is_null(r) {
                None
            } else {
                Some(dict.id(users.value(r))?)
            };
            if let Some(u) = user {
                self.users.insert(u);
            }
            if !devices.is_null(r) {
                self.devices.insert(dict.id(devices.value(r))?);
            }
            tally(&mut self.types, kind, user);
            let typed = match self.typed.get_mut(kind) {
                Some(t) => t,
                None => self.typed.entry(kind.into()).or_default(),
            };
            if !pages.is_null(r) {
                tally(&mut self.pages, pages.value(r), user);
                tally(&mut typed.pages, pages.value(r), user);
            }
            if !sources.is_null(r) {
                tally(&mut self.sources, sources.value(r), user);
                tally(&mut typed.sources, sources.value(r), user);
            }
        }
        Ok(())
    }

    /// Adds another digest's events (of the same tenant).
    pub(crate) fn merge(&mut self, other: &Digest) {
        self.events += other.events;
        self.errors += other.errors;
        self.late += other.late;
        self.users |= &other.users;
        self.devices |= &other.devices;
        merge_tallies(&mut self.types, &other.types);
        merge_tallies(&mut self.pages, &other.pages);
        merge_tallies(&mut self.sources, &other.sources);
        for (kind, theirs) in &other.typed {
            let mine = self.typed.entry(kind.clone()).or_default();
            merge_tallies(&mut mine.pages, &theirs.pages);
            merge_tallies(&mut mine.sources, &theirs.sources);
        }
    }

    /// The digest of `parts` together (of one tenant), with only the `part` a question needs
    /// (and always the event counts). Each set is one k-way union of the parts' bitmaps, far
    /// cheaper than merging them one by one.
    pub(crate) fn merge_all(late_after_ns: i64, parts: &[&Digest], part: &Part) -> Self {
        let mut d = Digest::new(late_after_ns);
        for p in parts {
            d.events += p.events;
            d.errors += p.errors;
            d.late += p.late;
        }
        if *part == Part::All {
            d.users = parts.iter().map(|p| &p.users).union();
            d.devices = parts.iter().map(|p| &p.devices).union();
        }
        for field in [Field::Type, Field::PageUrl, Field::Source] {
            let wanted = match part {
                Part::All => true,
                Part::Field(f) => *f == field,
                Part::OfType(..) => field == Field::Type,
            };
            if wanted {
                let merged = union_tallies(parts.iter().filter_map(|p| p.tallies(&field)));
                *d.tallies_mut(&field) = merged;
            }
        }
        if let Part::OfType(kind, field) = part {
            let typed = parts
                .iter()
                .filter_map(|p| p.typed.get(kind.as_str())?.tallies(field));
            let mut t = Typed::default();
            match field {
                Field::PageUrl => t.pages = union_tallies(typed),
                _ => t.sources = union_tallies(typed),
            }
            d.typed.insert(kind.as_str().into(), t);
        }
        d
    }

    /// Approximate heap size, for the memory budget.
    pub(crate) fn bytes(&self) -> usize {
        let tallies = |m: &Names<Tally>| -> usize {
            m.iter()
                .map(|(k, t)| k.len() + 64 + t.users.serialized_size())
                .sum()
        };
        let typed: usize = self
            .typed
            .iter()
            .map(|(k, t)| k.len() + 64 + tallies(&t.pages) + tallies(&t.sources))
            .sum();
        200 + self.users.serialized_size()
            + self.devices.serialized_size()
            + tallies(&self.types)
            + tallies(&self.pages)
            + tallies(&self.sources)
            + typed
    }

    fn tallies(&self, field: &Field) -> Option<&Names<Tally>> {
        match field {
            Field::Type => Some(&self.types),
            Field::PageUrl => Some(&self.pages),
            Field::Source => Some(&self.sources),
            _ => None,
        }
    }

    fn tallies_mut(&mut self, field: &Field) -> &mut Names<Tally> {
        match field {
            Field::Type => &mut self.types,
            Field::PageUrl => &mut self.pages,
            _ => &mut self.sources,
        }
    }

    /// Events counted.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// Distinct non-null `user_id`s.
    pub(crate) fn distinct_users(&self) -> u64 {
        self.users.len()
    }

    /// Distinct non-null `device_id`s.
    pub(crate) fn distinct_devices(&self) -> u64 {
        self.devices.len()
    }

    /// Every non-null value of `field` with its events and distinct users, of the events of
    /// type `of_type` when given (`page_url` and `source` only); `None` for a field digests do
    /// not keep.
    pub(crate) fn values(
        &self,
        field: &Field,
        of_type: Option<&str>,
    ) -> Option<impl Iterator<Item = (&str, &Tally)>> {
        let tallies = match of_type {
            None => self.tallies(field)?,
            Some(kind) => match self.typed.get(kind) {
                Some(t) => t.tallies(field)?,
                None => &EMPTY,
            },
        };
        Some(tallies.iter().map(|(v, t)| (&**v, t)))
    }

    /// The `limit` most frequent values of `field` (ties by value), with totals; `None` for a
    /// field digests do not keep.
    pub(crate) fn top(&self, field: &Field, limit: usize) -> Option<Top> {
        let tallies = self.tallies(field)?;
        let with_value: u64 = tallies.values().map(|t| t.count).sum();
        let mut ranked: Vec<(&Box<str>, &Tally)> = tallies.iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        Some(Top {
            rows: ranked
                .into_iter()
                .take(limit)
                .map(|(v, t)| Count {
                    value: serde_json::Value::String(v.to_string()),
                    count: t.count,
                    users: t.users.len(),
                })
                .collect(),
            with_value,
            without_value: self.events - with_value,
            distinct: tallies.len() as u64,
        })
    }

    /// The summary of these events, with top lists of `top` values.
    pub(crate) fn summary(&self, top: usize) -> Summary {
        let rows = |field: &Field, limit: usize| {
            self.top(field, limit).map(|t| t.rows).unwrap_or_default()
        };
        Summary {
            events: self.events,
            users: self.users.len(),
            devices: self.devices.len(),
            errors: self.errors,
            late: self.late,
            by_type: rows(&Field::Type, 1000),
            top_pages: rows(&Field::PageUrl, top),
            top_sources: rows(&Field::Source, top),
        }
    }
}

/// The series of `field`'s values over `buckets` (in bucket order): events or distinct users
/// per bucket for the `limit` values with the most over the whole range (ties by value), and
/// one "other" series for the rest — what [`crate::analytics::grouped`] answers by scanning.
pub(crate) fn grouped(
    buckets: &[(i64, Digest)],
    field: &Field,
    distinct_users: bool,
    limit: usize,
) -> Vec<Group> {
    let measure = |tallies: &[&Tally]| -> u64 {
        if distinct_users {
            tallies.iter().map(|t| &t.users).union().len()
        } else {
            tallies.iter().map(|t| t.count).sum()
        }
    };
    let mut by_value: HashMap<&str, Vec<&Tally>> = HashMap::new();
    for (_, d) in buckets {
        for (v, t) in d.tallies(field).into_iter().flatten() {
            by_value.entry(v).or_default().push(t);
        }
    }
    let mut order: Vec<(&str, u64)> = by_value
        .iter()
        .map(|(v, tallies)| (*v, measure(tallies)))
        .collect();
    order.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let limit = limit.min(order.len());
    let (top, rest) = order.split_at(limit);
    let index: HashMap<&str, usize> = top.iter().enumerate().map(|(i, (v, _))| (*v, i)).collect();
    let mut groups: Vec<Group> = top
        .iter()
        .map(|(v, total)| Group {
            value: Some(serde_json::Value::String(v.to_string())),
            total: *total,
            points: vec![],
        })
        .collect();
    if !rest.is_empty() {
        let others: Vec<&Tally> = rest.iter().flat_map(|(v, _)| by_value[v].clone()).collect();
        groups.push(Group {
            value: None,
            total: measure(&others),
            points: vec![],
        });
    }
    for (bucket, d) in buckets {
        let mut others: Vec<&Tally> = Vec::new();
        for (v, t) in d.tallies(field).into_iter().flatten() {
            match index.get(&**v) {
                Some(i) => groups[*i].points.push((*bucket, measure(&[t]) as f64)),
                None => others.push(t),
            }
        }
        if !others.is_empty()
            && let Some(other) = groups.last_mut().filter(|g| g.value.is_none())
        {
            other.points.push((*bucket, measure(&others) as f64));
        }
    }
    groups
}

/// The bucket of a time: the start of its `bucket_ns` bucket from the epoch, or 0 for all
/// (`None`). A bucket must be a positive multiple of an hour, so that an hour file lies in one.
pub(crate) fn bucketing(bucket_ns: Option<i64>) -> Result<impl Fn(i64) -> i64 + Copy> {
    const HOUR_NS: i64 = 3_600_000_000_000;
    if let Some(b) = bucket_ns
        && (b <= 0 || b % HOUR_NS != 0)
    {
        return Err(Error::InvalidQuery(format!(
            "digest buckets must be whole hours, got {b} ns"
        )));
    }
    Ok(move |t: i64| bucket_ns.map_or(0, |b| t.div_euclid(b) * b))
}

/// Folds `batch` into the digest of each row's bucket (see [`bucketing`]).
pub(crate) fn fold_by_bucket(
    buckets: &mut HashMap<i64, Digest>,
    batch: &RecordBatch,
    dict: &Mutex<Dictionary>,
    late_after_ns: i64,
    bucket_ns: Option<i64>,
) -> Result<()> {
    let bucket_of = bucketing(bucket_ns)?;
    let times = timestamps(batch, "time")?;
    let mut seen: Vec<i64> = times.values().iter().map(|t| bucket_of(*t)).collect();
    let per_row = seen.clone();
    seen.sort_unstable();
    seen.dedup();
    for b in seen {
        let rows = if per_row.iter().all(|x| *x == b) {
            batch.clone()
        } else {
            let mask: arrow::array::BooleanArray = per_row.iter().map(|x| Some(*x == b)).collect();
            arrow::compute::filter_record_batch(batch, &mask).map_err(Error::Arrow)?
        };
        buckets
            .entry(b)
            .or_insert_with(|| Digest::new(late_after_ns))
            .fold(&rows, dict)?;
    }
    Ok(())
}

/// No values.
static EMPTY: std::sync::LazyLock<Names<Tally>> = std::sync::LazyLock::new(Names::default);

impl Typed {
    fn tallies(&self, field: &Field) -> Option<&Names<Tally>> {
        match field {
            Field::PageUrl => Some(&self.pages),
            Field::Source => Some(&self.sources),
            _ => None,
        }
    }
}

/// Adds `theirs` into `mine`.
fn merge_tallies(mine: &mut Names<Tally>, theirs: &Names<Tally>) {
    for (value, t) in theirs {
        match mine.get_mut(value) {
            Some(m) => {
                m.count += t.count;
                m.users |= &t.users;
            }
            None => {
                mine.insert(value.clone(), t.clone());
            }
        }
    }
}

/// The tallies of `parts` added up per value, each value's users one k-way union.
fn union_tallies<'a>(parts: impl Iterator<Item = &'a Names<Tally>>) -> Names<Tally> {
    let mut by_value: HashMap<&str, (u64, Vec<&RoaringBitmap>)> = HashMap::new();
    for tallies in parts {
        for (value, t) in tallies {
            let e = by_value.entry(value).or_default();
            e.0 += t.count;
            e.1.push(&t.users);
        }
    }
    by_value
        .into_iter()
        .map(|(value, (count, users))| {
            let users = users.into_iter().union();
            (value.into(), Tally { count, users })
        })
        .collect()
}

fn tally(m: &mut Names<Tally>, value: &str, user: Option<u32>) {
    let t = match m.get_mut(value) {
        Some(t) => t,
        None => m.entry(value.into()).or_default(),
    };
    t.count += 1;
    if let Some(u) = user {
        t.users.insert(u);
    }
}

fn timestamps<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::PrimitiveArray<TimestampNanosecondType>> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| Error::Task(format!("column {name} is missing or not a timestamp")))
}

/// The digest of one file, of the kind its table has.
#[derive(Debug, Clone)]
pub(crate) enum FileDigest {
    Events(Arc<Digest>),
    Samples(Arc<SampleDigest>),
}

impl FileDigest {
    fn bytes(&self) -> usize {
        match self {
            FileDigest::Events(d) => d.bytes(),
            FileDigest::Samples(d) => d.bytes(),
        }
    }
}

/// One file's digest and the hour partition it belongs to.
#[derive(Debug)]
struct Entry {
    hour: i64,
    bytes: usize,
    digest: FileDigest,
}

#[derive(Debug, Default)]
struct Inner {
    /// By the file's path relative to the store dir.
    files: HashMap<String, Entry>,
    dicts: HashMap<String, Arc<Mutex<Dictionary>>>,
    bytes: usize,
}

/// The digests of the store's files and the tenants' dictionaries, within a memory budget.
#[derive(Debug)]
pub(crate) struct Digests {
    budget: usize,
    inner: Mutex<Inner>,
}

impl Digests {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| Error::Task("digest registry lock poisoned".into()))
    }

    /// Whether digests are kept at all (a zero budget turns them off).
    pub(crate) fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The dictionary of `tenant`.
    pub(crate) fn dictionary(&self, tenant: &str) -> Result<Arc<Mutex<Dictionary>>> {
        Ok(self.lock()?.dicts.entry(tenant.into()).or_default().clone())
    }

    /// How many files have a digest.
    pub(crate) fn len(&self) -> usize {
        self.lock().map(|i| i.files.len()).unwrap_or(0)
    }

    /// The digest of the file at `path`, if there is one.
    pub(crate) fn file(&self, path: &str) -> Option<FileDigest> {
        self.lock().ok()?.files.get(path).map(|e| e.digest.clone())
    }

    /// Keeps `digest` for the file at `path`; over the budget, drops the oldest hours' digests.
    pub(crate) fn insert(&self, path: String, hour: i64, digest: FileDigest) -> Result<()> {
        let mut inner = self.lock()?;
        let bytes = digest.bytes();
        if let Some(old) = inner.files.insert(
            path,
            Entry {
                hour,
                bytes,
                digest,
            },
        ) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        if inner.bytes + dict_bytes(&inner) > self.budget {
            let mut by_age: Vec<(i64, String)> = inner
                .files
                .iter()
                .map(|(p, e)| (e.hour, p.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, p) in by_age {
                if inner.bytes + dict_bytes(&inner) <= self.budget {
                    break;
                }
                if let Some(e) = inner.files.remove(&p) {
                    inner.bytes -= e.bytes;
                    metrics::counter!("eddy_store_digests_evicted_total").increment(1);
                }
            }
        }
        metrics::gauge!("eddy_store_digest_bytes").set(inner.bytes as f64);
        Ok(())
    }

    /// Drops the digests of files the manifest no longer lists.
    pub(crate) fn retain(&self, manifest: &Manifest) {
        let listed: std::collections::HashSet<&str> =
            manifest.files.iter().map(|f| f.path.as_str()).collect();
        let Ok(mut inner) = self.lock() else {
            return;
        };
        let Inner { files, bytes, .. } = &mut *inner;
        files.retain(|p, e| {
            let keep = listed.contains(p.as_str());
            if !keep {
                *bytes -= e.bytes;
            }
            keep
        });
        metrics::gauge!("eddy_store_digest_bytes").set(*bytes as f64);
    }

    /// Drops the dictionary of a deleted tenant.
    pub(crate) fn drop_tenant(&self, tenant: &str) {
        if let Ok(mut inner) = self.lock() {
            inner.dicts.remove(tenant);
        }
    }
}

fn dict_bytes(inner: &Inner) -> usize {
    inner
        .dicts
        .values()
        .map(|d| d.lock().map(|d| d.bytes()).unwrap_or(0))
        .sum()
}

/// A digest built for a new file, kept once the manifest lists the file.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) path: String,
    pub(crate) hour: i64,
    pub(crate) digest: FileDigest,
}

/// The digest of the file `meta` whose rows are `batch` (`None` with digests off).
pub(crate) fn build(
    digests: &Digests,
    meta: &FileMeta,
    batch: &RecordBatch,
    late_after_ns: i64,
) -> Result<Option<Built>> {
    if !digests.enabled() {
        return Ok(None);
    }
    let digest = match meta.table {
        Table::Events => {
            let dict = digests.dictionary(&meta.tenant)?;
            let mut digest = Digest::new(late_after_ns);
            digest.fold(batch, &dict)?;
            FileDigest::Events(Arc::new(digest))
        }
        Table::MetricSamples => FileDigest::Samples(Arc::new(SampleDigest::of([batch])?)),
    };
    Ok(Some(Built {
        path: meta.path.clone(),
        hour: meta.partition,
        digest,
    }))
}

/// The digest of the file `meta` under `dir`, read from disk (only the columns its kind of
/// digest is built from).
pub(crate) fn build_from_file(
    digests: &Digests,
    dir: &std::path::Path,
    meta: &FileMeta,
    late_after_ns: i64,
) -> Result<Option<Built>> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    if !digests.enabled() {
        return Ok(None);
    }
    let path = dir.join(&meta.path);
    let file = std::fs::File::open(&path).map_err(crate::error::io(&path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.parquet_schema();
    let columns: &[&str] = match meta.table {
        Table::Events => &COLUMNS,
        Table::MetricSamples => &crate::sample_digest::COLUMNS,
    };
    let roots: Vec<usize> = columns
        .iter()
        .filter_map(|c| builder.schema().fields().iter().position(|f| f.name() == c))
        .collect();
    let mask = ProjectionMask::roots(schema, roots);
    let batches = builder
        .with_projection(mask)
        .build()?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::Arrow)?;
    let digest = match meta.table {
        Table::Events => {
            let dict = digests.dictionary(&meta.tenant)?;
            let mut digest = Digest::new(late_after_ns);
            for b in &batches {
                digest.fold(b, &dict)?;
            }
            FileDigest::Events(Arc::new(digest))
        }
        Table::MetricSamples => FileDigest::Samples(Arc::new(SampleDigest::of(&batches)?)),
    };
    Ok(Some(Built {
        path: meta.path.clone(),
        hour: meta.partition,
        digest,
    }))
}

/// The digests of the events in `[from, to)` of `ctx` per bucket (see
/// [`bucketing`]), folded row by row, one task per partition.
pub(crate) async fn digest_rows(
    ctx: datafusion::prelude::SessionContext,
    from: i64,
    to: i64,
    late_after_ns: i64,
    dict: Arc<Mutex<Dictionary>>,
    bucket_ns: Option<i64>,
) -> Result<HashMap<i64, Digest>> {
    let streams = events_in(&ctx, in_range(from, to))
        .await?
        .select_columns(&COLUMNS)?
        .execute_stream_partitioned()
        .await?;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let dict = dict.clone();
            tokio::spawn(async move {
                let mut buckets: HashMap<i64, Digest> = HashMap::new();
                while let Some(b) = stream.next().await {
                    fold_by_bucket(&mut buckets, &b?, &dict, late_after_ns, bucket_ns)?;
                }
                Ok::<_, Error>(buckets)
            })
        })
        .collect();
    let mut acc: HashMap<i64, Digest> = HashMap::new();
    for t in tasks {
        for (b, d) in t.await.map_err(|e| Error::Task(e.to_string()))?? {
            match acc.get_mut(&b) {
                Some(mine) => mine.merge(&d),
                None => {
                    acc.insert(b, d);
                }
            }
        }
    }
    Ok(acc)
}
