//! Per-tenant ingest quotas: a token bucket (governor's GCRA) per tenant, refilled at the
//! tenant's events/s with a burst of one second's worth or one full batch, whichever is larger,
//! so that every batch the server accepts can pass eventually.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// All tenants' rate limiters.
#[derive(Debug)]
pub struct Quotas {
    max_batch: u32,
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl Quotas {
    /// `max_batch` sets the smallest burst.
    pub fn new(max_batch: usize) -> Self {
        Self {
            max_batch: u32::try_from(max_batch).unwrap_or(u32::MAX),
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` events from the tenant's bucket at `rate` events/s (0 = unlimited).
    /// On refusal, returns how long to wait.
    pub fn check(&self, tenant: &str, rate: u32, n: usize) -> Result<(), Duration> {
        let (Some(rate_nz), Some(n)) = (
            NonZeroU32::new(rate),
            NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)),
        ) else {
            return Ok(());
        };
        let limiter = {
            let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(tenant) {
                Some((r, l)) if *r == rate => l.clone(),
                _ => {
                    let burst = NonZeroU32::new(rate.max(self.max_batch)).unwrap_or(rate_nz);
                    let l = Arc::new(RateLimiter::direct(
                        Quota::per_second(rate_nz).allow_burst(burst),
                    ));
                    map.insert(tenant.to_string(), (rate, l.clone()));
                    l
                }
            }
        };
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            // More than the burst can ever hold: cannot happen for batches within max_batch.
            Err(_) => Err(Duration::from_secs(1)),
        }
    }

    /// Forgets a tenant's bucket.
    pub fn drop_tenant(&self, tenant: &str) {
        self.limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }
}
