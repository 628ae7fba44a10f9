//! The store's log consumer: applies decoded events to the per-tenant buffers, persists them in
//! the background and commits the log offset once the files and the manifest are durable, and
//! drops a deleted tenant's data. Must not touch query sessions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use eddy_log::Record;
use eddy_log::runner::{Consumer, ReadErrors, RunConfig, Step, run_consumer};
use eddy_model::codec::{self, Decoded};
use eddy_model::{Entry, columns};

use crate::files::{Persisted, write_files};
use crate::schema::{self, BatchBuilder};
use crate::store::{CONSUMER, EmbeddedStore, poisoned};
use crate::{Error, Result};

/// How the writer reads the log: 8192 records at a time, a look at its timers at least every
/// 100 ms while idle; a read error stops it (the next start replays from the manifest).
const RUN: RunConfig = RunConfig {
    name: "store writer",
    batch_records: 8192,
    poll: Duration::from_millis(100),
    read_errors: ReadErrors::Stop,
};

/// (`events`, `metric_samples`) batches per tenant, not in the buffers yet.
type Pending = HashMap<String, Vec<(RecordBatch, RecordBatch)>>;

/// The writer loop's state between rounds of [`run_consumer`].
struct Writer<'a> {
    store: &'a EmbeddedStore,
    /// Rows of single-event records (format 1), per tenant.
    builders: HashMap<String, BatchBuilder>,
    /// Batch records' rows (format 2), per tenant, as they came.
    pending: Pending,
    /// The persist running in the background, if any.
    persist: Option<tokio::task::JoinHandle<Result<Persisted>>>,
    last_retention: Instant,
}

impl Consumer for Writer<'_> {
    type Error = Error;

    /// Upkeep first (retired files, compaction and retention, never beside a persist), then a
    /// completed persist; over the buffer cap, waits for the persist in flight or reads nothing.
    async fn before_read(&mut self) -> Result<Step> {
        let store = self.store;
        store.reap_retired();
        if self.persist.is_none() {
            match store.compact_once().await {
                Ok(true) => return Ok(Step::Again),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "compaction failed; will retry"),
            }
        }
        if self.persist.is_none()
            && self.last_retention.elapsed() >= store.config.retention_interval
        {
            self.last_retention = Instant::now();
            if let Err(e) = store.enforce_retention() {
                tracing::error!(error = %e, "retention failed; will retry");
            }
            store
                .retention_passes
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        // Finish a completed persistence first: it frees memory and lets the log shrink.
        if self.persist.as_ref().is_some_and(|p| p.is_finished())
            && let Some(p) = self.persist.take()
        {
            store.finish_persist(p).await;
        }
        let over_cap = store.state.read().map_err(|_| poisoned())?.buffered_bytes()
            >= store.config.max_buffer_bytes;
        if over_cap && let Some(p) = self.persist.take() {
            store.finish_persist(p).await;
            return Ok(Step::Again);
        }
        Ok(if over_cap { Step::Hold } else { Step::Read })
    }

    async fn apply(&mut self, records: &[Record]) -> Result<()> {
        let store = self.store;
        for rec in records {
            match codec::decode(&rec.payload) {
                Ok(Decoded::Event(ev)) => self
                    .builders
                    .entry(ev.tenant.clone())
                    .or_default()
                    .push(&ev, columns::position(rec.offset, 0))?,
                Ok(Decoded::Events(cols)) => match schema::from_columns(&cols.batch, rec.offset) {
                    Ok(rows) => self.pending.entry(cols.tenant).or_default().push(rows),
                    Err(e) => {
                        tracing::warn!(offset = rec.offset, error = %e, "unusable batch record skipped by the store")
                    }
                },
                Ok(Decoded::Other(Entry::TenantDeleted(t))) => {
                    // Apply what came before the tombstone, then drop the tenant everywhere.
                    store.apply(&mut self.builders, &mut self.pending, rec.offset)?;
                    if let Some(p) = self.persist.take() {
                        store.finish_persist(p).await;
                    }
                    store.drop_tenant(&t.tenant)?;
                }
                // Rule changes and alert actions are the stream processor's business.
                Ok(Decoded::Other(_) | Decoded::Unknown) => {}
                Err(e) => {
                    tracing::warn!(offset = rec.offset, error = %e, "undecodable log entry skipped by the store")
                }
            }
        }
        if let Some(last) = records.last() {
            store.apply(&mut self.builders, &mut self.pending, last.offset + 1)?;
        }
        self.start_persist_if_due()
    }

    async fn idle(&mut self) -> Result<()> {
        self.start_persist_if_due()
    }

    /// Graceful stop: persist everything so a restart has nothing to replay.
    async fn finish(&mut self) -> Result<()> {
        if let Some(p) = self.persist.take() {
            self.store.finish_persist(p).await;
        }
        if let Some(p) = self.store.start_persist(true)? {
            self.store.finish_persist(p).await;
        }
        Ok(())
    }
}

impl Writer<'_> {
    fn start_persist_if_due(&mut self) -> Result<()> {
        if self.persist.is_none() && self.store.persist_due() {
            self.persist = self.store.start_persist(false)?;
        }
        Ok(())
    }
}

impl EmbeddedStore {
    /// The writer loop: from the applied offset until the stop signal (see [`Writer`]).
    pub(crate) async fn run_writer(&self) -> Result<()> {
        let mut writer = Writer {
            store: self,
            builders: HashMap::new(),
            pending: HashMap::new(),
            persist: None,
            last_retention: Instant::now(),
        };
        run_consumer(
            self.log.as_ref(),
            &mut writer,
            self.applied_offset(),
            self.task.stop_signal(),
            RUN,
        )
        .await
    }

    /// Moves built rows into the active buffers (one pair of batches per tenant and round)
    /// and advances the applied offset to `next`.
    fn apply(
        &self,
        builders: &mut HashMap<String, BatchBuilder>,
        pending: &mut Pending,
        next: u64,
    ) -> Result<()> {
        for (tenant, b) in builders.iter_mut() {
            if b.rows() > 0 {
                let rows = b.finish()?;
                pending.entry(tenant.clone()).or_default().push(rows);
            }
        }
        let mut built = Vec::with_capacity(pending.len());
        for (tenant, parts) in pending.drain() {
            // Concatenated: fewer, owned batches (a decoded record's columns may point into
            // the log read's memory).
            let e = arrow::compute::concat_batches(
                &schema::events_schema(),
                parts.iter().map(|(e, _)| e),
            )
            .map_err(Error::Arrow)?;
            let s = arrow::compute::concat_batches(
                &schema::samples_schema(),
                parts.iter().map(|(_, s)| s),
            )
            .map_err(Error::Arrow)?;
            built.push((tenant, e, s));
        }
        let mut st = self.state.write().map_err(|_| poisoned())?;
        if !built.is_empty() && st.active_since.is_none() {
            st.active_since = Some(Instant::now());
        }
        for (tenant, e, s) in built {
            st.active.entry(tenant).or_default().add(e, s);
        }
        st.applied = next;
        metrics::gauge!("eddy_store_applied_offset").set(next as f64);
        Ok(())
    }

    fn persist_due(&self) -> bool {
        let Ok(st) = self.state.read() else {
            return false;
        };
        let bytes: usize = st.active.values().map(|b| b.bytes).sum();
        bytes > 0
            && (bytes >= self.config.persist_bytes
                || st
                    .active_since
                    .is_some_and(|t| t.elapsed() >= self.config.persist_age))
    }

    /// Swaps the active buffers out (they stay visible as "persisting") and writes them in the
    /// background. With `force`, runs even below the thresholds.
    fn start_persist(
        &self,
        force: bool,
    ) -> Result<Option<tokio::task::JoinHandle<Result<Persisted>>>> {
        let (snapshot, manifest, upto) = {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            if st.active.is_empty() && !(force && st.applied > st.manifest.persisted_offset) {
                return Ok(None);
            }
            let snap = std::mem::take(&mut st.active);
            st.persisting = snap.clone();
            st.active_since = None;
            (snap, st.manifest.clone(), st.applied)
        };
        let dir = self.config.dir.clone();
        let digests = self.digests.clone();
        let late = self.config.late_after_ns;
        let (partitioning, now) = (self.config.partitioning, self.now_ns());
        Ok(Some(tokio::task::spawn_blocking(move || {
            write_files(
                &dir,
                snapshot,
                &manifest,
                upto,
                &digests,
                late,
                partitioning,
                now,
            )
        })))
    }

    async fn finish_persist(&self, task: tokio::task::JoinHandle<Result<Persisted>>) {
        let result = task
            .await
            .map_err(|e| Error::Task(e.to_string()))
            .and_then(|r| r);
        match result {
            Ok((manifest, built)) => {
                let upto = manifest.persisted_offset;
                if let Ok(mut st) = self.state.write() {
                    self.install(&mut st, manifest, built);
                    st.persisting.clear();
                }
                if let Err(e) = self.log.commit(CONSUMER, upto) {
                    tracing::warn!(error = %e, "cannot commit the store's log offset");
                }
                metrics::counter!("eddy_store_persists_total").increment(1);
            }
            Err(e) => {
                // Keep the data visible and try again later: put it back in front of the
                // active buffers.
                tracing::error!(error = %e, "persisting the store failed; will retry");
                metrics::counter!("eddy_store_persist_failures_total").increment(1);
                if let Ok(mut st) = self.state.write() {
                    let failed = std::mem::take(&mut st.persisting);
                    for (tenant, mut old) in failed {
                        let newer = st.active.remove(&tenant).unwrap_or_default();
                        old.events.extend(newer.events);
                        old.samples.extend(newer.samples);
                        old.bytes += newer.bytes;
                        st.active.insert(tenant, old);
                    }
                    st.active_since = Some(Instant::now());
                }
            }
        }
    }

    fn drop_tenant(&self, tenant: &str) -> Result<()> {
        let (doomed, manifest) = {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            st.active.remove(tenant);
            st.persisting.remove(tenant);
            let mut m = (*st.manifest).clone();
            let (gone, kept): (Vec<_>, Vec<_>) =
                m.files.into_iter().partition(|f| f.tenant == tenant);
            m.files = kept;
            m.save(&self.config.dir)?;
            self.install(&mut st, m.clone(), vec![]);
            self.digests.drop_tenant(tenant);
            (gone, m)
        };
        self.retire(doomed.iter().map(|f| self.config.dir.join(&f.path)));
        tracing::info!(
            tenant,
            files = doomed.len(),
            remaining = manifest.files.len(),
            "store dropped a deleted tenant's data"
        );
        Ok(())
    }
}
