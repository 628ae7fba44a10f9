//! Answers from the files' digests: which files a digest may stand for, and the digest of a
//! range (those digests merged with a scan of the rest, run as a query), for summaries and for
//! SQL aggregates. Must not touch the writer, the files or the buffers beyond reading them.

use std::sync::Arc;

use datafusion::prelude::SessionContext;

use crate::Result;
use crate::digest::{self, Digest};
use crate::manifest::{FileMeta, Table};
use crate::sample_digest::{SampleDigest, SampleFold};
use crate::store::{EmbeddedStore, Scan, Snapshot, poisoned};

impl EmbeddedStore {
    /// What `tenant`'s events in `[from, to)` add up to, as one digest: the digests of the files
    /// wholly inside the range (counted with `late_after_ns`) merged with a scan of the rest
    /// (files across an edge or without a digest, and the buffers). Only the `part` the question
    /// needs. Runs as a query.
    pub(crate) async fn digest(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
        late_after_ns: i64,
        part: digest::Part,
    ) -> Result<Digest> {
        let mut buckets = self
            .digest_buckets(tenant, from, to, late_after_ns, None, part)
            .await?;
        Ok(buckets
            .pop()
            .map_or_else(|| Digest::new(late_after_ns), |(_, d)| d))
    }

    /// `plan` with its aggregate answered from digests, when it is one they answer (see
    /// [`crate::digest_sql`]) and they hold most of its range; `None`: run `plan` as it is.
    pub(crate) async fn digest_plan(
        self: &Arc<Self>,
        tenant: &str,
        ctx: &SessionContext,
        plan: &datafusion::logical_expr::LogicalPlan,
    ) -> Result<Option<datafusion::logical_expr::LogicalPlan>> {
        use crate::digest_sql::{DigestAggregate, Needs};
        let late = self.config.late_after_ns;
        let events = ctx.table_provider("events").await?;
        let samples = ctx.table_provider("metric_samples").await?;
        let (events, samples) = (events.get_logical_plan(), samples.get_logical_plan());
        let Some(agg) =
            DigestAggregate::find(&ctx.state(), plan, events.as_deref(), samples.as_deref())
        else {
            return Ok(None);
        };
        let (from, to) = agg.range();
        let answered = match agg.needs() {
            Needs::Events(part) => {
                if !self.digests_cover_most(tenant, Table::Events, from, to, late)? {
                    return Ok(None);
                }
                let digest = self.digest(tenant, from, to, late, part).await?;
                agg.answer_events(&digest)?
            }
            Needs::Samples => {
                if !self.digests_cover_most(tenant, Table::MetricSamples, from, to, late)? {
                    return Ok(None);
                }
                agg.answer_samples(&self.sample_digests(tenant, from, to).await?)?
            }
        };
        if answered.is_some() {
            metrics::counter!("eddy_sql_digest_answers_total").increment(1);
        }
        Ok(answered)
    }

    /// Whether digests hold most of `tenant`'s persisted rows of `table` in `[from, to)`: at
    /// least 7/8 of the rows of its files are in files wholly inside the range with a digest
    /// (events digests counted with `late_after_ns`). Otherwise folding the rest row by row
    /// into a digest costs more than a DataFusion aggregation would.
    pub(crate) fn digests_cover_most(
        &self,
        tenant: &str,
        table: Table,
        from: i64,
        to: i64,
        late_after_ns: i64,
    ) -> Result<bool> {
        let s = self.state.read().map_err(|_| poisoned())?;
        let (mut digested, mut total) = (0u64, 0u64);
        for f in s.manifest.files_for(tenant, table, from, to) {
            total += f.rows;
            let inside = f.min_time >= from && f.max_time < to;
            let usable = match self.digests.file(&f.path) {
                Some(digest::FileDigest::Events(d)) => d.late_after_ns() == late_after_ns,
                Some(digest::FileDigest::Samples(_)) => true,
                None => false,
            };
            if inside && usable {
                digested += f.rows;
            }
        }
        Ok(digested > 0 && digested.saturating_mul(8) >= total.saturating_mul(7))
    }

    /// `tenant`'s files of `table` in `[from, to)` split into the digests `usable` takes of
    /// those wholly inside the range, and a snapshot of the rest (files across an edge or
    /// without a usable digest) with the table's buffers, to be folded row by row.
    fn split_digested<T>(
        &self,
        tenant: &str,
        table: Table,
        from: i64,
        to: i64,
        usable: impl Fn(&FileMeta, digest::FileDigest) -> Option<T>,
    ) -> Result<(Vec<T>, Snapshot)> {
        let s = self.state.read().map_err(|_| poisoned())?;
        let mut kept = Vec::new();
        let mut rest = Snapshot {
            events_files: vec![],
            samples_files: vec![],
            events: vec![],
            samples: vec![],
        };
        let (files, buffered) = match table {
            Table::Events => (&mut rest.events_files, &mut rest.events),
            Table::MetricSamples => (&mut rest.samples_files, &mut rest.samples),
        };
        for f in s.manifest.files_for(tenant, table, from, to) {
            let inside = f.min_time >= from && f.max_time < to;
            match self
                .digests
                .file(&f.path)
                .filter(|_| inside)
                .and_then(|d| usable(f, d))
            {
                Some(d) => kept.push(d),
                None => files.push(self.config.dir.join(&f.path)),
            }
        }
        for b in [s.persisting.get(tenant), s.active.get(tenant)]
            .into_iter()
            .flatten()
        {
            buffered.extend(match table {
                Table::Events => b.events.iter().cloned(),
                Table::MetricSamples => b.samples.iter().cloned(),
            });
        }
        metrics::counter!("eddy_store_digest_files_total", "use" => "digest")
            .increment(kept.len() as u64);
        metrics::counter!("eddy_store_digest_files_total", "use" => "scan")
            .increment(files.len() as u64);
        Ok((kept, rest))
    }

    /// The samples digests of `tenant`'s metric samples in `[from, to)`: those of the files
    /// wholly inside the range, and one folded from the rest (files across an edge or without
    /// a digest, and the buffers). Runs as a query.
    pub(crate) async fn sample_digests(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Arc<SampleDigest>>> {
        let (mut kept, rest) =
            self.split_digested(tenant, Table::MetricSamples, from, to, |_, d| match d {
                digest::FileDigest::Samples(d) => Some(d),
                digest::FileDigest::Events(_) => None,
            })?;
        if rest.samples_files.is_empty() && rest.samples.is_empty() {
            return Ok(kept);
        }
        let store = Arc::clone(self);
        self.run_query(async move {
            let ctx = store.session_of(rest, Scan::Selective).await?;
            let mut rows = ctx
                .table("metric_samples")
                .await?
                .filter(crate::exprs::in_range(from, to))?
                .select_columns(&crate::sample_digest::COLUMNS)?
                .execute_stream()
                .await?;
            let mut fold = SampleFold::default();
            while let Some(b) = futures_util::StreamExt::next(&mut rows).await {
                fold.add(&b?)?;
            }
            kept.push(Arc::new(fold.finish()));
            Ok(kept)
        })
        .await
    }

    /// Like [`EmbeddedStore::digest`], one digest per bucket of `bucket_ns` from the epoch (a
    /// multiple of an hour, so a file's hour lies in one bucket), in bucket order; `None`: one
    /// bucket for the whole range. Buckets without events are left out.
    pub(crate) async fn digest_buckets(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
        late_after_ns: i64,
        bucket_ns: Option<i64>,
        part: digest::Part,
    ) -> Result<Vec<(i64, Digest)>> {
        let bucket_of = digest::bucketing(bucket_ns)?;
        let (kept, rest) =
            self.split_digested(tenant, Table::Events, from, to, |f, d| match d {
                digest::FileDigest::Events(d) if d.late_after_ns() == late_after_ns => {
                    // A file over more than one bucket (a day or month partition read in
                    // hours) is scanned instead.
                    let bucket = bucket_of(f.min_time);
                    (bucket == bucket_of(f.max_time)).then_some((bucket, d))
                }
                _ => None,
            })?;
        // Ids must come from the tenant's dictionary only when they meet digests' ids.
        let dict = if kept.is_empty() {
            Arc::new(std::sync::Mutex::new(digest::Dictionary::default()))
        } else {
            self.digests.dictionary(tenant)?
        };
        let store = Arc::clone(self);
        self.run_query(async move {
            let ctx = store.session_of(rest, Scan::Selective).await?;
            let rows =
                crate::digest::digest_rows(ctx, from, to, late_after_ns, dict, bucket_ns).await?;
            let mut parts: std::collections::BTreeMap<i64, Vec<&Digest>> = Default::default();
            for (b, d) in &kept {
                parts.entry(*b).or_default().push(d);
            }
            for (b, d) in &rows {
                parts.entry(*b).or_default().push(d);
            }
            Ok(parts
                .into_iter()
                .map(|(b, p)| (b, Digest::merge_all(late_after_ns, &p, &part)))
                .collect())
        })
        .await
    }
}
