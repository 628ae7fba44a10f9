//! Deduplication of client-given event ids per tenant within a time window.
//!
//! Entries are 128-bit hashes of (tenant, event_id) with the receive time and a tenant hash
//! (so a deleted tenant's entries can be dropped). The index is bounded by `max_entries`: the
//! oldest entries go first, so under extreme load the effective window shrinks rather than
//! memory growing; the `eddy_dedup_entries` gauge shows how full it is. It is rebuilt from the
//! log on start ([`MemoryDedup::rebuild_from_log`]), so a client retrying after a crash is still
//! recognised.
//!
//! The ingest service sees only the [`DedupIndex`] seam: a role without a local index (an
//! ingest node in front of a shared log) can implement it differently.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use eddy_log::Log;
use eddy_model::Entry;
use eddy_model::codec::{self, Decoded};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::{Error, Result};

/// Hash identifying (tenant, event_id).
pub type DedupKey = u128;

/// The dedup seam of the ingest path.
pub trait DedupIndex: Send + Sync + std::fmt::Debug {
    /// Marks each key seen unless it already is and returns, per key, whether it is new
    /// (`None` keys are always new). Runs `append` with those flags while the reservation is
    /// still exclusive, so reserving and enqueueing into the log are one step for concurrent
    /// requests; when `append` fails, the reservations are undone and its error returned.
    fn reserve_and_append(
        &self,
        tenant: &str,
        keys: &[Option<DedupKey>],
        now_ns: i64,
        append: &mut dyn FnMut(&[bool]) -> Result<()>,
    ) -> Result<Vec<bool>>;

    /// Forgets keys whose events did not become durable after all.
    fn release(&self, keys: &[DedupKey]);

    /// Drops every entry of a tenant.
    fn drop_tenant(&self, tenant: &str);

    /// Number of ids held (for the `eddy_dedup_entries` gauge).
    fn len(&self) -> usize;

    /// True when no id is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bounded, windowed set of seen event ids, in memory.
#[derive(Debug)]
pub struct MemoryDedup {
    window_ns: i64,
    max_entries: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashMap<DedupKey, (i64, u64)>,
    order: VecDeque<(i64, DedupKey)>,
}

/// The key of an event id within a tenant.
pub fn dedup_key(tenant: &str, event_id: &str) -> DedupKey {
    let mut buf = Vec::with_capacity(tenant.len() + event_id.len() + 1);
    buf.extend_from_slice(tenant.as_bytes());
    buf.push(0);
    buf.extend_from_slice(event_id.as_bytes());
    xxh3_128(&buf)
}

impl MemoryDedup {
    /// A window of `window_ns` holding at most `max_entries` ids (0 disables deduplication).
    pub fn new(window_ns: i64, max_entries: usize) -> Self {
        Self {
            window_ns,
            max_entries,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves only a cache of seen ids behind; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks each key seen unless it already is. Returns, per key, whether it is new.
    /// Runs `then` while still holding the lock, with the new/duplicate flags, so that
    /// reservation and enqueueing into the log are one step for concurrent requests; when
    /// `then` fails, the reservations are undone.
    fn reserve_then<T, E>(
        &self,
        tenant: &str,
        keys: &[Option<DedupKey>],
        now_ns: i64,
        then: impl FnOnce(&[bool]) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut g = self.lock();
        self.evict(&mut g, now_ns);
        let th = xxh3_64(tenant.as_bytes());
        let mut fresh = Vec::with_capacity(keys.len());
        let mut added = Vec::new();
        for k in keys {
            match k {
                Some(k) if self.max_entries > 0 => {
                    if g.seen.contains_key(k) {
                        fresh.push(false);
                    } else {
                        g.seen.insert(*k, (now_ns, th));
                        g.order.push_back((now_ns, *k));
                        added.push(*k);
                        fresh.push(true);
                    }
                }
                _ => fresh.push(true),
            }
        }
        let out = then(&fresh);
        if out.is_err() {
            for k in added {
                g.seen.remove(&k);
            }
        }
        self.enforce_bound(&mut g);
        metrics::gauge!("eddy_dedup_entries").set(g.seen.len() as f64);
        out
    }

    /// Adds an id found in the log during recovery.
    pub fn insert_recovered(&self, tenant: &str, event_id: &str, received_at: i64, now_ns: i64) {
        if self.max_entries == 0 || received_at < now_ns.saturating_sub(self.window_ns) {
            return;
        }
        let mut g = self.lock();
        let k = dedup_key(tenant, event_id);
        g.seen.insert(k, (received_at, xxh3_64(tenant.as_bytes())));
        g.order.push_back((received_at, k));
        self.enforce_bound(&mut g);
    }

    /// Rebuilds the index from the ids of events still in `log` (received within the window),
    /// dropping deleted tenants' ids. Returns the number of records scanned.
    pub fn rebuild_from_log(&self, log: &dyn Log, now_ns: i64) -> Result<u64> {
        let mut from = log.start_offset();
        let mut scanned = 0u64;
        loop {
            let batch = log.read(from, 8192).map_err(|e| {
                Error::Internal(format!("reading the log to rebuild the dedup index: {e}"))
            })?;
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            for rec in &batch {
                scanned += 1;
                match codec::decode(&rec.payload) {
                    Ok(Decoded::Event(ev)) if ev.client_id => {
                        self.insert_recovered(&ev.tenant, &ev.event_id, ev.received_at, now_ns)
                    }
                    Ok(Decoded::Events(cols)) => {
                        let (ids, client, received) =
                            (cols.event_ids(), cols.client_ids(), cols.received());
                        for i in (0..cols.len()).filter(|i| client.value(*i)) {
                            self.insert_recovered(
                                &cols.tenant,
                                ids.value(i),
                                received.value(i),
                                now_ns,
                            );
                        }
                    }
                    Ok(Decoded::Other(Entry::TenantDeleted(t))) => self.drop_tenant(&t.tenant),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(offset = rec.offset, error = %e, "undecodable log entry skipped by dedup rebuild")
                    }
                }
            }
        }
        Ok(scanned)
    }

    fn evict(&self, g: &mut Inner, now_ns: i64) {
        let horizon = now_ns.saturating_sub(self.window_ns);
        while let Some(&(t, k)) = g.order.front() {
            if t >= horizon {
                break;
            }
            g.order.pop_front();
            if g.seen.get(&k).is_some_and(|(seen_at, _)| *seen_at == t) {
                g.seen.remove(&k);
            }
        }
    }

    fn enforce_bound(&self, g: &mut Inner) {
        while g.seen.len() > self.max_entries {
            let Some((t, k)) = g.order.pop_front() else {
                break;
            };
            if g.seen.get(&k).is_some_and(|(seen_at, _)| *seen_at == t) {
                g.seen.remove(&k);
                metrics::counter!("eddy_dedup_evicted_total").increment(1);
            }
        }
        // Stale order entries (released keys) are dropped lazily; keep the deque bounded too.
        if g.order.len() > self.max_entries.saturating_mul(2).max(1024) {
            let Inner { seen, order } = g;
            order.retain(|(t, k)| seen.get(k).is_some_and(|(s, _)| s == t));
        }
    }
}

impl DedupIndex for MemoryDedup {
    fn reserve_and_append(
        &self,
        tenant: &str,
        keys: &[Option<DedupKey>],
        now_ns: i64,
        append: &mut dyn FnMut(&[bool]) -> Result<()>,
    ) -> Result<Vec<bool>> {
        self.reserve_then(tenant, keys, now_ns, |fresh| {
            append(fresh)?;
            Ok(fresh.to_vec())
        })
    }

    fn release(&self, keys: &[DedupKey]) {
        let mut g = self.lock();
        for k in keys {
            g.seen.remove(k);
        }
    }

    fn drop_tenant(&self, tenant: &str) {
        let th = xxh3_64(tenant.as_bytes());
        let mut g = self.lock();
        g.seen.retain(|_, (_, t)| *t != th);
        let Inner { seen, order } = &mut *g;
        order.retain(|(_, k)| seen.contains_key(k));
    }

    fn len(&self) -> usize {
        self.lock().seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;

    fn reserve(d: &MemoryDedup, tenant: &str, ids: &[&str], now: i64) -> Vec<bool> {
        let keys: Vec<_> = ids.iter().map(|i| Some(dedup_key(tenant, i))).collect();
        d.reserve_then(tenant, &keys, now, |f| Ok::<_, ()>(f.to_vec()))
            .unwrap()
    }

    #[test]
    fn window_tenants_and_rollback() {
        let d = MemoryDedup::new(24 * H, 1000);
        assert_eq!(
            reserve(&d, "a", &["1", "2", "1"], 0),
            vec![true, true, false]
        );
        assert_eq!(
            reserve(&d, "b", &["1"], H),
            vec![true],
            "tenants are separate"
        );
        assert_eq!(reserve(&d, "a", &["1"], 23 * H), vec![false]);
        assert_eq!(
            reserve(&d, "a", &["1"], 25 * H),
            vec![true],
            "window passed"
        );
        let k = [Some(dedup_key("a", "x"))];
        let r: Result<(), ()> = d.reserve_then("a", &k, 25 * H, |_| Err(()));
        assert!(r.is_err());
        assert_eq!(
            reserve(&d, "a", &["x"], 25 * H),
            vec![true],
            "failed enqueue released the id"
        );
        d.drop_tenant("a");
        assert_eq!(reserve(&d, "a", &["x"], 25 * H), vec![true]);
        assert_eq!(reserve(&d, "b", &["1"], 2 * H), vec![false]);
    }

    #[test]
    fn bounded() {
        let d = MemoryDedup::new(24 * H, 100);
        for i in 0..1000 {
            reserve(&d, "a", &[&i.to_string()], i);
        }
        assert_eq!(d.len(), 100);
    }
}
