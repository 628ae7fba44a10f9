//! The query side's own resources: the dedicated query runtime and the caches every query
//! session shares. Must not touch the store's state, files or the log.

use crate::Result;

/// See [`EmbeddedStore`]'s `caches`.
pub(crate) struct SharedCaches(
    pub(crate) datafusion::execution::cache::cache_manager::CacheManagerConfig,
);

impl std::fmt::Debug for SharedCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedCaches")
    }
}

/// A dedicated runtime for queries, so a heavy query does not starve ingest.
#[derive(Debug)]
pub(crate) struct QueryRuntime(pub(crate) Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Caches for every query session: footers (64 MiB) and file statistics (16 MiB).
pub(crate) fn shared_caches() -> Result<SharedCaches> {
    use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
    let config = CacheManagerConfig::default()
        .with_metadata_cache_limit(64 << 20)
        .with_file_statistics_cache_limit(16 << 20);
    let made = CacheManager::try_new(&config)?;
    Ok(SharedCaches(
        config
            .with_file_metadata_cache(Some(made.get_file_metadata_cache()))
            .with_file_statistics_cache(made.get_file_statistic_cache()),
    ))
}
