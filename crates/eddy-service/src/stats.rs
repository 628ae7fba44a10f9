//! Ingest counters per tenant since the process started (answered by `GET /stats`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// All tenants' counters.
#[derive(Debug, Default)]
pub struct TenantStats {
    map: Mutex<HashMap<String, Arc<Counters>>>,
}

/// One tenant's counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub deduplicated: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Serialize, PartialEq, Eq, Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CountersSnapshot {
    pub requests: u64,
    pub events_accepted: u64,
    pub events_rejected: u64,
    pub events_deduplicated: u64,
    pub requests_rate_limited: u64,
}

impl TenantStats {
    /// The counters of a tenant (created on first use).
    pub fn get(&self, tenant: &str) -> Arc<Counters> {
        // Counters only: a panic elsewhere while holding the lock leaves nothing inconsistent.
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(tenant.to_string()).or_default().clone()
    }

    /// Forgets a tenant.
    pub fn drop_tenant(&self, tenant: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }
}

impl Counters {
    /// A consistent-enough snapshot for reporting.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            events_accepted: self.accepted.load(Ordering::Relaxed),
            events_rejected: self.rejected.load(Ordering::Relaxed),
            events_deduplicated: self.deduplicated.load(Ordering::Relaxed),
            requests_rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}
