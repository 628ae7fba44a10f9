//! Eddy's stream processor: an ordinary named consumer of the log (like the store writer) that
//! keeps, per tenant, event-time rollups continuously up to date and checkpoints them with the
//! log offset they reflect, so a crash neither drops nor double-counts an acknowledged event.
//!
//! - [`rollup`]: windows, aggregates, sketches, watermark and lateness (pure, no I/O);
//! - [`processor`]: the log consumer, checkpoints, recovery;
//! - [`reads`]: typed reads of the rollups (plain rows, nothing run under the processor's lock);
//! - [`persist`]: closed windows as Parquet tables (written once, before the checkpoint);
//! - [`detect`]: anomaly detectors per series (rolling z-score, EWMA);
//! - [`alerts`]: rules (z-score, EWMA, threshold, dead-man) and alerts with their lifecycle;
//! - [`feed`]: live fan-out (events, rollup updates, alert transitions) per tenant.

pub mod alerts;
mod checkpoint;
mod consume;
pub mod detect;
pub mod feed;
pub mod persist;
pub mod processor;
pub mod reads;
pub mod rollup;
mod tables;

pub use alerts::{Alert, AlertNotice, Rule, RuleSpec, TenantAlerts};
pub use feed::{Channel, Filter, Live, Subscription};
pub use processor::{Processor, StreamConfig};
pub use rollup::{Closed, Devices, Dimension, MetricAgg, Resolution, Series, TenantRollups};

use std::path::{Path, PathBuf};

/// Errors of the stream processor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("log: {0}")]
    Log(#[from] eddy_log::Error),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error(
        "the log no longer holds offset {needed} (starts at {start}); the stream checkpoint is older than the log"
    )]
    LogGap { needed: u64, start: u64 },
    #[error("{0}")]
    Task(String),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The error of a poisoned lock on the processor's state.
/// The hash map of per-series state (rollups, alert state), keyed by device, metric or rule:
/// foldhash (randomly seeded per map, like hashbrown's default) instead of SipHash, which
/// profiling showed at ~4% of the server's time hashing the same names again and again; and
/// hashbrown's map for `entry_ref`, which finds or inserts a series by `&str` in one lookup
/// (std's needs two, or an owned key for every event).
pub(crate) type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// `map[key]`, inserted by `make` when missing: one hash lookup, and the key copied only for a
/// new entry.
pub(crate) fn slot_with<'m, V>(
    map: &'m mut FastMap<String, V>,
    key: &str,
    make: impl FnOnce() -> V,
) -> &'m mut V {
    map.entry_ref(key).or_insert_with(make)
}

pub(crate) fn poisoned() -> Error {
    Error::Task("stream state lock poisoned".into())
}

#[cfg(test)]
mod tests;
