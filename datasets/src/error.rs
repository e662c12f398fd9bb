//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while writing or reading a dataset.
///
/// Every variant names the file it concerns, so a message printed by the CLI is actionable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"rename"`, ...).
        op: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not readable Parquet (truncated, corrupt footer, bad page, ...).
    #[error("{} is not a readable parquet file: {source}", path.display())]
    Parquet {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow failed while building or decoding a batch.
    #[error("arrow error in {}: {source}", path.display())]
    Arrow {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The parquet reader panicked on malformed data; caught and reported instead.
    #[error("{} is corrupt: the parquet decoder failed ({detail})", path.display())]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// A required column is missing.
    #[error("{} has no `{column}` column", path.display())]
    MissingColumn {
        /// The file concerned.
        path: PathBuf,
        /// The column that was looked for.
        column: String,
    },
    /// A column exists but has a type this reader cannot use.
    #[error("{}: column `{column}` has type {found}, expected {expected}", path.display())]
    ColumnType {
        /// The file concerned.
        path: PathBuf,
        /// The column.
        column: String,
        /// The type it has.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// The file was written with a different (or no) agentgen schema version.
    #[error(
        "{}: schema version {found:?}, this build reads version {expected}",
        path.display()
    )]
    SchemaVersion {
        /// The file concerned.
        path: PathBuf,
        /// The `agentgen.schema_version` value found, if any.
        found: Option<String>,
        /// [`crate::SCHEMA_VERSION`].
        expected: u32,
    },
    /// A value in a well-typed column is not valid (unknown role, null in a required field).
    #[error("{} row {row}: column `{column}`: {reason}", path.display())]
    InvalidValue {
        /// The file concerned.
        path: PathBuf,
        /// Row index within the file.
        row: usize,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// JSON (de)serialisation of a manifest failed.
    #[error("{}: invalid json: {source}", path.display())]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A batch of the file would decode to more bytes than a reader accepts (a dictionary or
    /// compression bomb, or rows far beyond any trajectory).
    #[error(
        "{} is refused: one batch of its rows decodes to {bytes} bytes, more than the {limit} \
         a reader accepts (a dictionary bomb?)",
        path.display()
    )]
    TooLarge {
        /// The file concerned.
        path: PathBuf,
        /// What the batch would expand to.
        bytes: u64,
        /// [`crate::MAX_BATCH_BYTES`].
        limit: u64,
    },
    /// A row group holds a page that would decompress to more bytes than a reader accepts,
    /// found from the page headers before anything is decompressed (a compression bomb in a
    /// plain-encoded page, or values far beyond any trajectory).
    #[error(
        "{} is refused: row group {row_group}: {what} decompresses to {bytes} bytes, more than \
         the {limit} a reader accepts (a compression bomb?)",
        path.display()
    )]
    PagesTooLarge {
        /// The file concerned.
        path: PathBuf,
        /// The row group (0-based).
        row_group: usize,
        /// Which pages: one column's page, or all the pages a reader holds at once.
        what: String,
        /// Their decompressed size, from the page headers.
        bytes: u64,
        /// [`crate::MAX_PAGE_BYTES`] or [`crate::MAX_BATCH_BYTES`].
        limit: u64,
    },
    /// Another process holds the output folder.
    #[error("{} is in use by {holder}", dir.display())]
    Busy {
        /// The folder.
        dir: PathBuf,
        /// Who holds it (`pid N on HOST`).
        holder: String,
    },
    /// A finished part could not be published to where the run sends its parts (an object
    /// store): the run stops, the part stays in the local staging folder.
    #[error("publishing {path}: {message}")]
    Publish {
        /// The part or object concerned.
        path: String,
        /// What went wrong (the store's error, a lost lease, ...).
        message: String,
    },
    /// Writer options that cannot work (zero rows per file, shard index out of range).
    #[error("invalid writer options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// A path given as a dataset folder is not a folder.
    #[error("{} is not a folder", path.display())]
    NotAFolder {
        /// The path.
        path: PathBuf,
    },
    /// A step of a larger job failed: `what` names the step, the cause is the source.
    #[error("{what}")]
    Step {
        /// The step (`listing DIR`, `reading manifest.json`, ...).
        what: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
    pub(crate) fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet { path: path.into(), source }
    }
    /// A failure while writing a file: the OS error when there is one (disk full, file too
    /// large), named with the file.
    pub(crate) fn write(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        let path = path.into();
        if let parquet::errors::ParquetError::External(e) = &source
            && let Some(io) = e.downcast_ref::<std::io::Error>()
        {
            let os = std::io::Error::new(io.kind(), io.to_string());
            return Error::Io { op: "write", path, source: os };
        }
        Error::Parquet { path, source }
    }
    pub(crate) fn arrow(path: impl Into<PathBuf>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow { path: path.into(), source }
    }
    /// This error as the cause of the step `what`.
    pub(crate) fn in_step(self, what: impl Into<String>) -> Self {
        Error::Step { what: what.into(), source: Box::new(self) }
    }
}
