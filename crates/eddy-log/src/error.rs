use std::path::PathBuf;

/// Errors of the log crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("log I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "log directory {0} is locked by another process (is another eddy running on this data dir?)"
    )]
    Locked(PathBuf),
    #[error("log queue is full ({queued} bytes queued, limit {limit}); retry later")]
    QueueFull { queued: usize, limit: usize },
    #[error("log is not accepting writes: {0}")]
    Unavailable(String),
    #[error("log is closed")]
    Closed,
    #[error("record of {size} bytes exceeds the maximum of {max}")]
    RecordTooLarge { size: usize, max: usize },
    #[error("offset {requested} was deleted; the log starts at {start}")]
    OffsetDeleted { requested: u64, start: u64 },
    #[error("log corrupt in {path} at byte {position}: {reason} (not the tail; refusing to guess)")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("unknown consumer `{0}`")]
    UnknownConsumer(String),
    #[error("consumer `{name}` cannot commit {offset}: beyond the log end {end}")]
    CommitBeyondEnd { name: String, offset: u64, end: u64 },
}

/// Result alias of the log crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
