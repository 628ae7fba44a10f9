//! What a checkpoint holds and how it is stored: the processor's state (rollups and alerts at a
//! log offset), its file `<dir>/checkpoint.zst` (written atomically, loaded on start), the queue
//! of closed windows and tenant deletions waiting for the rollup files ([`Flusher`]), and the
//! checkpoint in flight. Must not touch the log, the live feed or the processing loop.

use crate::FastMap as HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::alerts::TenantAlerts;
use crate::persist;
use crate::rollup::{Closed, TenantRollups};
use crate::{Error, Result, poisoned};

pub(crate) const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    /// Every record below this offset has been applied.
    pub(crate) offset: u64,
    pub(crate) tenants: HashMap<String, TenantRollups>,
    /// Rules, detectors and alerts per tenant (absent in checkpoints written before alerting:
    /// every tenant then starts with the default rule).
    #[serde(default)]
    pub(crate) alerts: HashMap<String, TenantAlerts>,
}

#[derive(Serialize)]
pub(crate) struct CheckpointRef<'a> {
    pub(crate) version: u32,
    #[serde(flatten)]
    pub(crate) state: &'a State,
}

#[derive(Deserialize)]
struct CheckpointOwned {
    version: u32,
    #[serde(flatten)]
    state: State,
}

/// Closed windows and tenant deletions waiting to reach the rollup files; the next checkpoint
/// writes them first (and keeps what failed for the one after).
#[derive(Debug, Default)]
pub(crate) struct Flusher {
    /// (tenant, flush number, windows), in order; an entry leaves once written.
    pub(crate) pending: std::sync::Mutex<Vec<(String, u64, Arc<Closed>)>>,
    /// Tenants deleted since the last checkpoint: their files go before new ones are written.
    pub(crate) deleted: std::sync::Mutex<Vec<String>>,
}

impl Flusher {
    /// A deleted tenant: drop its queued flushes, delete its files before the next writes.
    pub(crate) fn forget(&self, tenant: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|(t, _, _)| t != tenant);
        }
        if let Ok(mut d) = self.deleted.lock() {
            d.push(tenant.to_string());
        }
    }

    /// Whether some flush is not written yet.
    pub(crate) fn unwritten(&self) -> bool {
        self.pending.lock().map_or(true, |p| !p.is_empty())
    }

    /// Applies deletions, then writes pending flushes in order, each leaving the queue once
    /// its files are in place (so a window is always in memory, the queue or a file); what
    /// fails stays queued. Returns the tenants written to.
    pub(crate) fn persist(&self, root: &Path) -> Result<Vec<String>> {
        let deleted = std::mem::take(&mut *self.deleted.lock().map_err(|_| poisoned())?);
        for (i, t) in deleted.iter().enumerate() {
            if let Err(e) = persist::remove_tenant(root, t) {
                if let Ok(mut d) = self.deleted.lock() {
                    d.splice(0..0, deleted[i..].iter().cloned());
                }
                return Err(e);
            }
        }
        let pending = self.pending.lock().map_err(|_| poisoned())?.clone();
        let mut written = Vec::new();
        for (tenant, seq, closed) in pending {
            persist::write_flush(root, &tenant, seq, &closed)?;
            self.pending
                .lock()
                .map_err(|_| poisoned())?
                .retain(|(t, s, _)| !(*t == tenant && *s == seq));
            if !written.contains(&tenant) {
                written.push(tenant);
            }
        }
        Ok(written)
    }
}

/// A checkpoint being written: a snapshot of the state at `offset`, serialized and written on
/// a blocking thread while the loop goes on applying records.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) handle: tokio::task::JoinHandle<Result<()>>,
    pub(crate) offset: u64,
    pub(crate) started: Instant,
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.zst")
}

pub(crate) fn write_checkpoint(dir: &Path, json: &[u8]) -> Result<()> {
    let path = checkpoint_path(dir);
    let tmp = dir.join("checkpoint.zst.tmp");
    let compressed = zstd::encode_all(json, 3).map_err(|e| Error::io(&tmp, e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&compressed)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The offset the checkpoint in `dir` covers, if there is one.
pub fn checkpoint_offset(dir: &Path) -> Result<Option<u64>> {
    Ok(load_checkpoint(dir)?.map(|s| s.offset))
}

pub(crate) fn load_checkpoint(dir: &Path) -> Result<Option<State>> {
    let path = checkpoint_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let json = zstd::decode_all(bytes.as_slice()).map_err(|e| Error::io(&path, e))?;
    let c: CheckpointOwned = serde_json::from_slice(&json)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    if c.version != CHECKPOINT_VERSION {
        return Err(Error::Checkpoint(format!(
            "{}: unsupported version {}",
            path.display(),
            c.version
        )));
    }
    Ok(Some(c.state))
}
