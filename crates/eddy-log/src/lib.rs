//! Eddy's log: an ordered, durable sequence of records with named consumers.
//!
//! The [`Log`] trait is the seam between ingestion (which appends) and everything that reacts
//! to data (store writer, stream processor — ordinary named consumers that read from their
//! committed offset and commit as they apply). [`wal::Wal`] is the embedded implementation:
//! segment files, a CRC32C per record, group commit (one fsync covers every request that
//! arrived while the previous fsync ran), tail repair on open. A Kafka-protocol implementation
//! can sit behind the same trait.
//!
//! [`runner`] is the loop every consumer runs: read a batch, apply it, wait when caught up,
//! make everything durable on stop.
//!
//! Records are opaque bytes here; `eddy-model::codec` decides what they mean.

mod append_times;
mod consumers;
mod error;
pub mod runner;
pub mod wal;

use std::ops::Range;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

pub use error::{Error, Result};

/// Position of a record in the log. Offsets start at 0 and increase by one per record.
pub type Offset = u64;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: Offset,
    pub payload: Bytes,
}

/// A consumer's committed position: the next offset it will read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerOffset {
    pub name: String,
    pub next_offset: Offset,
}

/// Whether the log accepts appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogHealth {
    Ok,
    /// A write or fsync failed; no further append is acknowledged until restart.
    Failed(String),
    /// Shut down.
    Closed,
}

/// Resolves once the records of one append are durable (fsynced), with their offsets.
#[derive(Debug)]
pub struct AppendTicket {
    rx: oneshot::Receiver<Result<Range<Offset>>>,
}

impl AppendTicket {
    pub(crate) fn new(rx: oneshot::Receiver<Result<Range<Offset>>>) -> Self {
        Self { rx }
    }

    /// Waits for the fsync that covers these records.
    pub async fn durable(self) -> Result<Range<Offset>> {
        self.rx.await.map_err(|_| Error::Closed)?
    }
}

/// How finely [`Log::appended_ago`] tells append times apart.
pub const APPEND_AGE_GRANULARITY: std::time::Duration = std::time::Duration::from_millis(10);

/// An append-only, durable, ordered log with named consumer offsets.
pub trait Log: Send + Sync + std::fmt::Debug + 'static {
    /// Queues `records` for appending, in order and contiguously. Fails at once with
    /// [`Error::QueueFull`] when the bounded queue has no room, or [`Error::Unavailable`] when
    /// the log is failed or closed. Await the ticket for durability.
    fn append(&self, records: Vec<Bytes>) -> Result<AppendTicket>;

    /// Reads up to `max_records` durable records starting at `from`.
    fn read(&self, from: Offset, max_records: usize) -> Result<Vec<Record>>;

    /// The earliest offset still stored.
    fn start_offset(&self) -> Offset;

    /// The offset after the last durable record.
    fn end_offset(&self) -> Offset;

    /// Watches [`Log::end_offset`], for consumers that wait for new data.
    fn watch_end(&self) -> watch::Receiver<Offset>;

    /// Registers a consumer (idempotent) and returns its committed next offset; a new consumer
    /// starts at [`Log::start_offset`].
    fn register_consumer(&self, name: &str) -> Result<Offset>;

    /// Removes a consumer; it no longer holds back segment deletion.
    fn unregister_consumer(&self, name: &str) -> Result<()>;

    /// Durably records that consumer `name` has applied everything before `next_offset`.
    /// Segments every registered consumer has passed are deleted.
    fn commit(&self, name: &str, next_offset: Offset) -> Result<()>;

    /// All registered consumers and their committed offsets.
    fn consumers(&self) -> Vec<ConsumerOffset>;

    /// How long ago, at least, the record at `offset` was appended: within
    /// [`APPEND_AGE_GRANULARITY`] of its commit for records appended since the log opened,
    /// the time since opening for older ones; `None` when `offset` is at or past the end.
    /// A consumer at `offset` is this far behind (what backpressure and `/lag` go by).
    fn appended_ago(&self, offset: Offset) -> Option<std::time::Duration>;

    /// Whether appends are being acknowledged.
    fn health(&self) -> LogHealth;

    /// Bytes queued for the writer and not yet written.
    fn queued_bytes(&self) -> usize;

    /// Stops accepting appends, writes and fsyncs everything queued, and waits for that.
    fn shutdown(&self) -> Result<()>;
}
