//! The manifest: which Parquet files make up the persisted store, and the log offset they cover.
//!
//! `<store-dir>/manifest.json`, format version 1. It is replaced atomically (temp file, fsync,
//! rename, fsync dir) and is the only source of truth: a Parquet file not listed is an orphan of
//! a crash and deleted on open; every event with a log offset below `persisted_offset` is in a
//! listed file, and none at or above it is.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::{Error, Result};

const VERSION: u32 = 1;

/// Which table a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Events,
    MetricSamples,
}

impl Table {
    /// The table's name in SQL and on disk.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::MetricSamples => "metric_samples",
        }
    }
}

/// One Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub tenant: String,
    pub table: Table,
    /// Start of the file's partition, ns since the epoch (named `hour` in the manifest: every
    /// partition was an hour before widths).
    #[serde(rename = "hour")]
    pub partition: i64,
    /// The partition's width (`hour` when absent, as in manifests before widths).
    #[serde(default)]
    pub width: crate::partition::Width,
    /// Path relative to the store dir.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// The persisted state of the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Every event with a log offset below this is in `files`.
    pub persisted_offset: u64,
    pub files: Vec<FileMeta>,
}

impl Manifest {
    fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// Loads the manifest of `dir` (empty if there is none yet).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Manifest {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                if m.version != VERSION {
                    return Err(Error::Manifest {
                        path,
                        reason: format!("unsupported version {}", m.version),
                    });
                }
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: VERSION,
                ..Default::default()
            }),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Writes the manifest atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join("manifest.json.tmp");
        let body = serde_json::to_vec(self).map_err(|e| Error::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(dir)
    }

    /// Files of a tenant's table that may hold rows in `[from, to)`.
    pub fn files_for(
        &self,
        tenant: &str,
        table: Table,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = &FileMeta> {
        self.files.iter().filter(move |f| {
            f.tenant == tenant && f.table == table && f.max_time >= from && f.min_time < to
        })
    }
}

/// Fsyncs a directory so entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}
