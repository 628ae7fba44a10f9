//! Live fan-out: every event the processor applies is offered to its tenant's subscribers
//! (server-sent events now; WebSocket next). One bounded broadcast channel per tenant, so a
//! subscriber can only ever see its own tenant's events, and a slow subscriber falls behind
//! (and is told so) instead of growing memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use eddy_model::Event;
use tokio::sync::broadcast;

/// Messages a subscriber may lag behind before it is dropped.
pub const FEED_CAPACITY: usize = 4096;

/// Per-tenant broadcast channels of applied events.
#[derive(Debug, Default)]
pub struct Feed {
    senders: RwLock<HashMap<String, broadcast::Sender<Arc<Event>>>>,
}

impl Feed {
    /// A receiver of `tenant`'s events from now on.
    pub fn subscribe(&self, tenant: &str) -> broadcast::Receiver<Arc<Event>> {
        if let Ok(s) = self.senders.read()
            && let Some(tx) = s.get(tenant)
        {
            return tx.subscribe();
        }
        match self.senders.write() {
            Ok(mut s) => s
                .entry(tenant.to_string())
                .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
                .subscribe(),
            // A poisoned map: hand out a receiver whose sender is gone (the stream ends).
            Err(_) => broadcast::channel(1).1,
        }
    }

    /// Offers `ev` to its tenant's subscribers (nothing is built when there are none).
    pub(crate) fn publish(&self, ev: &Event) {
        if let Ok(s) = self.senders.read()
            && let Some(tx) = s.get(&ev.tenant)
            && tx.receiver_count() > 0
        {
            let _ = tx.send(Arc::new(ev.clone()));
        }
    }

    /// Ends every subscription of a deleted tenant.
    pub(crate) fn drop_tenant(&self, tenant: &str) {
        if let Ok(mut s) = self.senders.write() {
            s.remove(tenant);
        }
    }
}
