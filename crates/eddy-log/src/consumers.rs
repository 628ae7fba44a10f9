//! Named consumer offsets, persisted as a small JSON file replaced atomically
//! (write temp → fsync → rename → fsync dir).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::{Error, Offset, Result};

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    consumers: BTreeMap<String, Offset>,
}

#[derive(Debug)]
pub(crate) struct Consumers {
    path: PathBuf,
    pub(crate) offsets: BTreeMap<String, Offset>,
}

impl Consumers {
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("consumers.json");
        let offsets = match std::fs::read(&path) {
            Ok(bytes) => {
                let f: File = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    position: 0,
                    reason: e.to_string(),
                })?;
                f.consumers
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).at(&path),
        };
        Ok(Self { path, offsets })
    }

    pub(crate) fn save(&self) -> Result<()> {
        let body = serde_json::to_vec_pretty(&File {
            version: 1,
            consumers: self.offsets.clone(),
        })
        .map_err(|e| Error::Unavailable(e.to_string()))?;
        write_atomic(&self.path, &body)
    }
}

/// Replaces `path` with `body` so that a crash leaves either the old or the new content.
pub(crate) fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).at(&tmp)?;
    f.write_all(body).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory so that created, renamed or removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
