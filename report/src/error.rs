//! The report crate's one error type.

use std::path::PathBuf;

/// Why statistics or a report could not be produced. Unreadable input is an error; odd rows
/// (a missing value, an unparsable JSON cell) are not: they are shown or counted as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a dataset file failed (not Parquet, truncated, wrong types, ...).
    #[error(transparent)]
    Dataset(#[from] agentgen_datasets::Error),
    /// A file or folder could not be read or written.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An input path holds nothing the report can read.
    #[error("{}: {reason}", path.display())]
    Input {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSONL line is not a JSON object.
    #[error("{}:{line}: {reason}", path.display())]
    Jsonl {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse error.
        reason: String,
    },
    /// The tokenizer could not be loaded.
    #[error(transparent)]
    Codec(#[from] agentgen_codec::Error),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io { op, path: path.to_owned(), source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
