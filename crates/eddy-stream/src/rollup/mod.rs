//! Event-time rollups of one tenant: tumbling windows of 1 minute, 1 hour and 1 day.
//!
//! - per (device, metric): count, sum, min, max, avg, first, last and quantiles: exact while a
//!   window has at most [`EXACT_SAMPLES`] samples, then from a DDSketch (relative accuracy
//!   [`SKETCH_ALPHA`]: a reported pN is within ±1% of the exact value at rank ⌊q·(n−1)⌋ of the
//!   window's sorted samples);
//! - per event type, page_url and source: event count and distinct users from a HyperLogLog++
//!   estimator (exact up to 128 distinct users per window, then about 1.6% standard error:
//!   precision 12, 4096 registers).
//!
//! **Watermark.** `min(max event time, max receive time) − allowed lateness`. Receive time caps
//! it so that a future-dated event (accepted within the skew limit) cannot close windows early.
//! A window `[s, s + w)` is closed once the watermark reaches `s + w`; an event whose window is
//! closed is *late* for that resolution: counted, not applied (the raw store still has it, and
//! a closed window's rollup is recomputed from the store when corrected). A day window stays
//! open while its minute windows close, so an event can be late for 1m and on time for 1d.
//!
//! Everything here is deterministic and free of I/O, so the processor can checkpoint it.
//!
//! Files, in their one-way order: `pairs` (the checkpoint's encoding of maps with composite
//! keys), `window` (resolutions, dimensions, which series a read wants), `agg` (a window's
//! aggregates: metric values with quantiles, counts with distinct users), `closed` (closed
//! windows as rows, what the rollup files hold), `tenant` (one tenant's rollups: apply,
//! watermark, taking closed windows, eviction, reads). This file only re-exports them.

mod agg;
mod closed;
pub(crate) mod pairs;
mod tenant;
mod window;

pub use agg::{CountAgg, EXACT_SAMPLES, MetricAgg, Point, QUANTILES, SKETCH_ALPHA};
pub use closed::{Closed, CountRow, MetricRow};
pub use tenant::{Applied, TenantRollups};
pub use window::{Devices, Dimension, Resolution, Series};
