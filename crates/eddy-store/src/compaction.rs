//! Upkeep of the persisted files, run by the writer loop between persists: compaction of a
//! partition's small files into one, retention (expired partitions leave the manifest), and
//! the deletion of retired files once no query can still read them. Must not touch the log or
//! the buffers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::files::merge_files;
use crate::manifest::{FileMeta, Table};
use crate::partition::Width;
use crate::store::{EmbeddedStore, poisoned};
use crate::{Error, Result};

impl EmbeddedStore {
    /// Deletes every persisted partition whose newest row is older than its tenant's
    /// retention. Runs in the writer loop, never beside a persist (whose manifest would
    /// otherwise bring the files back). Returns how many files went.
    pub(crate) fn enforce_retention(&self) -> Result<usize> {
        let Some(policy) = self.retention.lock().ok().and_then(|r| r.clone()) else {
            return Ok(0);
        };
        let now = policy.now_ns();
        let mut horizons: HashMap<String, i64> = HashMap::new();
        let doomed = {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            let mut m = (*st.manifest).clone();
            let (gone, kept): (Vec<_>, Vec<_>) = m.files.into_iter().partition(|f| {
                let horizon = *horizons.entry(f.tenant.clone()).or_insert_with(|| {
                    match policy.retention_ns(&f.tenant) {
                        0 => i64::MIN,
                        r => now.saturating_sub(r),
                    }
                });
                f.max_time < horizon
            });
            m.files = kept;
            if gone.is_empty() {
                return Ok(0);
            }
            m.save(&self.config.dir)?;
            self.install(&mut st, m, vec![]);
            gone
        };
        self.retire(doomed.iter().map(|f| self.config.dir.join(&f.path)));
        metrics::counter!("eddy_store_expired_files_total").increment(doomed.len() as u64);
        tracing::info!(files = doomed.len(), "retention deleted expired partitions");
        Ok(doomed.len())
    }

    /// Merges the small files (below `compact_small_bytes` and `compact_small_rows`) of one
    /// partition into one: a (tenant, table, partition) group with at least
    /// `compact_min_files` of them, at most `compact_max_bytes` and `compact_max_rows`
    /// together, or —
    /// as data ages into a wider partition (hours into a day, days into a month) — any two or
    /// more such files of which one is narrower than the partition now holding it. Smallest
    /// files first, so big files are not rewritten again and again. Crash-safe: the new file
    /// is written and fsynced first, then the manifest swaps atomically; the old files are
    /// retired. Returns whether it compacted something.
    pub(crate) async fn compact_once(&self) -> Result<bool> {
        let now = self.now_ns();
        let rules = self.config.partitioning;
        let (group, target): (Vec<FileMeta>, (Width, i64)) = {
            let st = self.state.read().map_err(|_| poisoned())?;
            let mut groups: HashMap<(&str, Table, Width, i64), Vec<&FileMeta>> = HashMap::new();
            for f in &st.manifest.files {
                let w = f.width.max(rules.width(f.max_time, now));
                groups
                    .entry((f.tenant.as_str(), f.table, w, w.start(f.partition)))
                    .or_default()
                    .push(f);
            }
            let mut chosen = None;
            for ((_, _, w, start), mut g) in groups {
                // Only small files take part: a file from a full persist is big enough, and
                // merging it again would spend the CPU ingest needs (a quarter of it, measured).
                let c = &self.config;
                g.retain(|f| f.bytes < c.compact_small_bytes && f.rows < c.compact_small_rows);
                g.sort_by_key(|f| f.bytes);
                let (mut bytes, mut rows) = (0u64, 0u64);
                let small: Vec<&FileMeta> = g
                    .into_iter()
                    .take_while(|f| {
                        bytes += f.bytes;
                        rows += f.rows;
                        bytes <= c.compact_max_bytes && rows <= c.compact_max_rows
                    })
                    .collect();
                let rolls = small.iter().any(|f| f.width < w);
                let enough = if rolls {
                    2
                } else {
                    self.config.compact_min_files.max(2)
                };
                if small.len() >= enough {
                    chosen = Some((small.into_iter().cloned().collect(), (w, start)));
                    break;
                }
            }
            match chosen {
                Some(c) => c,
                None => return Ok(false),
            }
        };
        let dir = self.config.dir.clone();
        let inputs = group.clone();
        let digests = self.digests.clone();
        let late = self.config.late_after_ns;
        let (merged, built) =
            tokio::task::spawn_blocking(move || merge_files(&dir, &inputs, target, &digests, late))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        let old: std::collections::HashSet<&str> = group.iter().map(|f| f.path.as_str()).collect();
        {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            let mut m = (*st.manifest).clone();
            m.files.retain(|f| !old.contains(f.path.as_str()));
            m.files.push(merged);
            m.save(&self.config.dir)?;
            self.install(&mut st, m, built);
        }
        self.retire(group.iter().map(|f| self.config.dir.join(&f.path)));
        metrics::counter!("eddy_store_compactions_total").increment(1);
        tracing::debug!(files = group.len(), "compacted a partition");
        Ok(true)
    }

    /// Queues files that left the manifest for deletion once every query that may have listed
    /// them is over (the query timeout, plus a margin). A crash meanwhile leaves orphans, which
    /// opening removes.
    pub(crate) fn retire(&self, paths: impl Iterator<Item = PathBuf>) {
        let due = Instant::now() + self.config.query_timeout + Duration::from_secs(1);
        if let Ok(mut r) = self.retired.lock() {
            r.extend(paths.map(|p| (due, p)));
        }
    }

    /// Unlinks retired files whose grace period is over.
    pub(crate) fn reap_retired(&self) {
        let now = Instant::now();
        let due: Vec<PathBuf> = match self.retired.lock() {
            Ok(mut r) => {
                let (due, keep): (Vec<_>, Vec<_>) = r.drain(..).partition(|(t, _)| *t <= now);
                *r = keep;
                due.into_iter().map(|(_, p)| p).collect()
            }
            Err(_) => return,
        };
        for path in due {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a retired file");
            }
            // Empty hour, table and tenant directories go too; a non-empty one stays.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != self.config.dir.as_path()) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
}
