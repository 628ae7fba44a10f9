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
///
/// Stopped by [`QueryRuntime::stop`] (the store's shutdown), which waits for its threads: a
/// runtime left to `shutdown_background` still has threads unwinding tasks when `main`
/// returns, and the allocator's exit-time cleanup running beside them is a crash at exit.
#[derive(Debug)]
pub(crate) struct QueryRuntime(std::sync::Mutex<Option<tokio::runtime::Runtime>>);

/// How long the query runtime's threads get to finish on shutdown (a query past it is
/// abandoned, as it would be by the process ending).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl QueryRuntime {
    pub(crate) fn new(rt: tokio::runtime::Runtime) -> Self {
        Self(std::sync::Mutex::new(Some(rt)))
    }

    /// A handle to spawn on; an error once stopped.
    pub(crate) fn handle(&self) -> Result<tokio::runtime::Handle> {
        self.0
            .lock()
            .ok()
            .and_then(|rt| rt.as_ref().map(|rt| rt.handle().clone()))
            .ok_or_else(|| crate::Error::Task("query runtime stopped".into()))
    }

    /// Stops the runtime and waits (at most [`STOP_WAIT`], on a blocking thread) for its
    /// threads to end; queries after it answer "query runtime stopped".
    pub(crate) async fn stop(&self) {
        let rt = self.0.lock().ok().and_then(|mut rt| rt.take());
        if let Some(rt) = rt {
            // A JoinError here is the blocking pool shutting down too: nothing left to wait for.
            let _ = tokio::task::spawn_blocking(move || rt.shutdown_timeout(STOP_WAIT)).await;
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        let rt = self.0.get_mut().ok().and_then(|rt| rt.take());
        if let Some(rt) = rt {
            // Dropped without a shutdown (tests): a runtime must not block inside another.
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(STOP_WAIT);
            }
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
