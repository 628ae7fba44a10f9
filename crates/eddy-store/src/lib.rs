//! Eddy's embedded columnar store.
//!
//! The store writer is an ordinary consumer (`store`) of the log: it decodes events into
//! per-tenant Arrow buffers, which queries see at once, and persists them as zstd Parquet files
//! partitioned by tenant, table and hour. A manifest, replaced atomically, lists the files and
//! the log offset they cover; after a crash the writer replays the log from exactly there.
//!
//! Queries run in a DataFusion session that holds only the calling tenant's tables
//! ([`store::EmbeddedStore::session`]), on a runtime of their own, with a timeout, a memory
//! limit and a row limit. [`query`] holds the questions the REST API asks; the [`Store`]
//! trait is the seam a PostgreSQL store can implement later.

pub mod analytics;
mod api;
mod buffer;
mod compaction;
mod digest;
mod digest_sql;
mod digested;
mod error;
mod exprs;
mod files;
mod funnel_pass;
pub mod journeys;
pub mod manifest;
pub mod partition;
pub mod query;
pub mod rows;
mod runtime;
mod sample_digest;
pub mod schema;
mod session;
pub mod store;
pub mod timeseries;
mod writer;

pub use error::{Error, Result};
pub use query::{ExtraTable, SqlAnswer, SqlQuery, Store};
pub use store::{EmbeddedStore, RetentionPolicy, Scan, StoreConfig};

#[cfg(test)]
mod tests;
