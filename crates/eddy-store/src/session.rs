//! DataFusion sessions of one tenant: what a query sees (a snapshot of files and buffers), the
//! session over it, and running queries on the query runtime within the timeout. Must not touch
//! the writer, the manifest or the files beyond reading them.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use crate::manifest::Table;
use crate::schema::{events_schema, samples_schema};
use crate::store::{EmbeddedStore, Scan, Snapshot, poisoned};
use crate::{Error, Result};

impl EmbeddedStore {
    /// What `tenant` has in `[from, to)` right now.
    pub fn snapshot(&self, tenant: &str, from: i64, to: i64) -> Result<Snapshot> {
        let s = self.state.read().map_err(|_| poisoned())?;
        let paths = |t: Table| {
            s.manifest
                .files_for(tenant, t, from, to)
                .map(|f| self.config.dir.join(&f.path))
                .collect::<Vec<_>>()
        };
        let mut snap = Snapshot {
            events_files: paths(Table::Events),
            samples_files: paths(Table::MetricSamples),
            events: vec![],
            samples: vec![],
        };
        for b in [s.persisting.get(tenant), s.active.get(tenant)]
            .into_iter()
            .flatten()
        {
            snap.events.extend(b.events.iter().cloned());
            snap.samples.extend(b.samples.iter().cloned());
        }
        Ok(snap)
    }

    /// A DataFusion session holding only `tenant`'s `events` and `metric_samples` in
    /// `[from, to)` (files outside the range are left out; rows are filtered by the query).
    pub async fn session(
        &self,
        tenant: &str,
        from: i64,
        to: i64,
        scan: Scan,
    ) -> Result<SessionContext> {
        self.session_of(self.snapshot(tenant, from, to)?, scan)
            .await
    }

    /// A session over exactly the files and buffers of `snap`.
    pub(crate) async fn session_of(&self, snap: Snapshot, scan: Scan) -> Result<SessionContext> {
        let mut config = SessionConfig::new()
            .with_target_partitions(self.config.query_threads.max(1))
            .with_information_schema(false);
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        config.options_mut().execution.parquet.pushdown_filters = scan == Scan::Selective;
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(self.caches.0.clone())
            .with_memory_limit(self.config.query_memory_bytes, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        register(
            &ctx,
            "events",
            events_schema(),
            snap.events_files,
            snap.events,
        )
        .await?;
        register(
            &ctx,
            "metric_samples",
            samples_schema(),
            snap.samples_files,
            snap.samples,
        )
        .await?;
        Ok(ctx)
    }

    /// Builds `tenant`'s session for `[from, to)` and runs `f` in it, both on the query runtime
    /// and both inside the query timeout (opening Parquet footers is part of a query's cost).
    /// Filters are applied while decoding ([`Scan::Selective`]).
    pub async fn query<T, F, Fut>(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(SessionContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        self.query_scan(tenant, from, to, Scan::Selective, f).await
    }

    /// [`EmbeddedStore::query`] with the given way of scanning.
    pub async fn query_scan<T, F, Fut>(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
        scan: Scan,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(SessionContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let store = Arc::clone(self);
        let tenant = tenant.to_string();
        self.run_query(async move {
            let ctx = store.session(&tenant, from, to, scan).await?;
            f(ctx).await
        })
        .await
    }

    /// Spawns `f` on the query runtime, without a timeout (a stream's feeder).
    pub fn spawn_query_task(
        &self,
        f: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.query_rt.handle()?.spawn(f);
        Ok(())
    }

    /// Runs `f` on the query runtime with the configured timeout.
    pub async fn run_query<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let rt = self.query_rt.handle()?;
        let limit = self.config.query_timeout;
        let handle = rt.spawn(async move { tokio::time::timeout(limit, f).await });
        match handle.await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Timeout(limit)),
            Err(e) => Err(Error::Task(format!("query task failed: {e}"))),
        }
    }
}

/// Registers `name` in `ctx`: `files` (Parquet) and `batches` together, with `schema`.
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    files: Vec<PathBuf>,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    // Strings are read as `Utf8View`: decoding a Parquet page then points into its buffers
    // instead of copying every value, and grouping hashes the inline views (SQL group-bys took
    // half the time, docs/benchmarks.md). Nested map keys and values stay `Utf8`.
    let schema = map_string_types(&schema, |t| {
        (*t == DataType::Utf8).then_some(DataType::Utf8View)
    });
    let batches = batches
        .iter()
        .map(|b| cast_to(b, &schema))
        .collect::<Result<Vec<_>>>()?;
    let mem = Arc::new(MemTable::try_new(schema.clone(), vec![batches])?);
    if files.is_empty() {
        ctx.register_table(name, mem)?;
        return Ok(());
    }
    let paths: Vec<String> = files
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let persisted = ctx
        .read_parquet(paths, ParquetReadOptions::default().schema(&schema))
        .await?;
    let all = persisted.union(ctx.read_table(mem)?)?;
    ctx.register_table(name, all.into_view())?;
    Ok(())
}

/// `schema` with the top-level fields whose type `f` maps changed to that type (nested fields
/// are left alone).
pub(crate) fn map_string_types(
    schema: &SchemaRef,
    f: impl Fn(&DataType) -> Option<DataType>,
) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|field| match f(field.data_type()) {
                Some(t) => Arc::new(field.as_ref().clone().with_data_type(t)),
                None => field.clone(),
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// `batch` cast column by column to `schema` (same fields, other types).
pub(crate) fn cast_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::Arrow)?;
    RecordBatch::try_new(schema.clone(), cols).map_err(Error::Arrow)
}
