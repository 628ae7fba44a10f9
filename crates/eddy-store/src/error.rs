use std::path::PathBuf;

/// Errors of the store crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("arrow: {0}")]
    Arrow(#[source] arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("query: {0}")]
    Query(#[source] datafusion::error::DataFusionError),
    #[error("the query needs more memory than its limit allows: {0}")]
    MemoryLimit(String),
    #[error("log: {0}")]
    Log(#[from] eddy_log::Error),
    #[error("manifest {path} is not readable: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("the store needs log offset {needed} but the log starts at {start}")]
    LogGap { needed: u64, start: u64 },
    #[error("query took longer than the limit of {0:?}")]
    Timeout(std::time::Duration),
    #[error("query result exceeds the limit of {0} rows; narrow the range or lower `limit`")]
    TooManyRows(usize),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("store task failed: {0}")]
    Task(String),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        match e.find_root() {
            datafusion::error::DataFusionError::ResourcesExhausted(m) => {
                Error::MemoryLimit(m.clone())
            }
            _ => Error::Query(e),
        }
    }
}

/// Result alias of the store crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
