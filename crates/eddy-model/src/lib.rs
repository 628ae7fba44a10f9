//! Eddy's data model. No I/O lives here.
//!
//! Every accepted payload shape (native `/api/v1/events`, sensor readings, click events, device
//! telemetry, product events, gateway envelopes) is turned into one [`Event`] by
//! [`parse::parse_body`], which also validates it against [`Limits`]. Events travel
//! through the log as a [`LogEntry`] encoded with protobuf (see [`codec`]); protobuf's
//! field-number rules are how the record payload evolves without breaking old logs.
//!
//! Data flow: raw JSON bytes → [`parse::parse_body`] (serde visitors, no JSON tree) feeding
//! [`normalize`]'s rules (aliases, timestamps, limits) → [`Event`] → [`codec`] → log.

pub mod batch;
pub mod clock;
pub mod codec;
pub mod columns;
mod error;
pub mod event;
pub mod id;
pub mod normalize;
pub mod parse;
pub mod time;
pub mod view;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, EventError, Result};
pub use event::{
    AlertAction, Entry, Event, EventBatch, LogEntry, PropertyValue, RuleChange, TenantDeleted,
    Value,
};
pub use normalize::{EventFields, Limits, Scalar, TenantPolicy};
pub use view::{AsEventRef, EventRef, MetricsRef};
