//! Reads of the rollups that reach the rollup files: the two SQL tables (files plus the windows
//! not in them yet) and range reads past what memory holds. Must not touch the processing loop
//! or the checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use crate::persist::{self, Want};
use crate::processor::{Processor, RollupTable};
use crate::rollup::{Closed, Resolution, Series, TenantRollups};
use crate::{Error, Result, poisoned};

impl Processor {
    /// `tenant`'s rollups as two tables for SQL — metric windows (the `rollups` table) and
    /// count windows (`rollup_counts`): the persisted files plus, in memory, every window the
    /// files do not hold yet (open ones, and flushes not written yet). Same schemas as the files
    /// ([`persist::metrics_schema`], [`persist::counts_schema`]).
    pub fn rollup_tables(&self, tenant: &str) -> Result<[RollupTable; 2]> {
        let root = self.config.rollups_dir();
        // A window is in memory, then queued, then in a file (merged files replace their
        // inputs). Memory and queue are read together (a checkpoint moves windows between them
        // under both locks); files listed afterwards are used up to the flush number seen
        // then, and a queued flush a listed file holds is skipped. A merge or flush racing the
        // listing past that number makes it start over.
        for _ in 0..3 {
            let (mut rows, pending, seq) = {
                let s = self.state.read().map_err(|_| poisoned())?;
                let pending = self.flusher.pending.lock().map_err(|_| poisoned())?;
                let (rows, seq) = s
                    .tenants
                    .get(tenant)
                    .map_or((Closed::default(), 0), |t| (t.unpersisted(), t.flush_seq()));
                let queued: Vec<(u64, Arc<Closed>)> = pending
                    .iter()
                    .filter(|(t, _, _)| t == tenant)
                    .map(|(_, n, c)| (*n, c.clone()))
                    .collect();
                (rows, queued, seq)
            };
            let mut files = persist::list(&root, tenant)?;
            if files.iter().any(|f| f.hi > seq) {
                continue;
            }
            let all = files.clone();
            files.retain(|f| !f.merged_away(&all));
            let in_file = |kind: persist::Kind, n: u64| {
                files
                    .iter()
                    .any(|f| f.kind == kind && (f.lo..=f.hi).contains(&n))
            };
            for (n, closed) in &pending {
                if !in_file(persist::Kind::Metrics, *n) {
                    rows.metrics.extend(closed.metrics.iter().cloned());
                }
                if !in_file(persist::Kind::Counts, *n) {
                    rows.counts.extend(closed.counts.iter().cloned());
                }
            }
            let paths = |kind: persist::Kind| -> Vec<PathBuf> {
                files
                    .iter()
                    .filter(|f| f.kind == kind)
                    .map(|f| f.path.clone())
                    .collect()
            };
            return Ok([
                RollupTable {
                    name: "rollups",
                    schema: persist::metrics_schema(),
                    files: paths(persist::Kind::Metrics),
                    batch: persist::metrics_batch(&rows.metrics.iter().collect::<Vec<_>>())?,
                },
                RollupTable {
                    name: "rollup_counts",
                    schema: persist::counts_schema(),
                    files: paths(persist::Kind::Counts),
                    batch: persist::counts_batch(&rows.counts.iter().collect::<Vec<_>>())?,
                },
            ]);
        }
        Err(Error::Task(
            "rollup files kept changing while being listed; try again".into(),
        ))
    }

    /// Runs `f` on `tenant`'s windows of `series` and `r` starting in `[from, to)`, wherever
    /// they are: in memory, or — for a range reaching past what memory holds — also read back
    /// from the rollup files (into a view holding just those windows).
    pub async fn read_range<T>(
        &self,
        tenant: &str,
        (r, from, to): (Resolution, i64, i64),
        series: Series,
        f: impl FnOnce(&TenantRollups) -> T,
    ) -> Result<T> {
        if !self.read(tenant, |t| t.reaches_past_memory(r, from))? {
            return self.read(tenant, f);
        }
        let (root, owner, footers) = (
            self.config.rollups_dir(),
            tenant.to_string(),
            self.footers.clone(),
        );
        let want = Want::Range {
            resolution: r,
            from,
            to,
            series: series.clone(),
        };
        let history =
            tokio::task::spawn_blocking(move || persist::read(&root, &owner, &want, &footers))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        metrics::counter!("eddy_stream_rollup_file_reads_total").increment(1);
        self.read(tenant, |t| {
            let mut view = t.range_copy(r, from, to, &series);
            view.insert_closed(history);
            f(&view)
        })
    }
}
