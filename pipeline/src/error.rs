//! The crate's one error type. Model mistakes are never errors here: they are rejections
//! ([`crate::validate::Rejection`]) or error observations. `Err` is for infrastructure only.

/// Infrastructure failures of the pipeline (I/O, the dataset writer, a broken environment).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The codec refused to encode a conversation the pipeline built itself (a bug).
    #[error("codec error while {context}: {message}")]
    Codec { context: &'static str, message: String },
    /// The environment crate failed to build an instance or task.
    #[error("environment error for {task}: {message}")]
    Environment { task: String, message: String },
    /// Reading or writing the dataset failed.
    #[error("dataset error: {message}")]
    Dataset { message: String },
    /// A policy failed in a way the rollout cannot turn into data (e.g. its engine is gone).
    #[error("policy error ({kind}): {message}")]
    Policy { kind: &'static str, message: String },
    /// A configuration value is invalid.
    #[error("invalid configuration: {message}")]
    Config { message: String },
    /// The output directory already holds data and `--resume` was not given.
    #[error("output directory {dir} already holds a dataset; pass --resume to continue it")]
    OutputNotEmpty { dir: String },
    /// An I/O error on a named path.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The endpoint preflight (`GET /v1/models`) found the endpoint or the model wrong.
    #[error("{message}")]
    Preflight { message: String },
    /// A run limit is spent (`--max-tokens-total`): no new request starts. The rollout that
    /// met it is not written, so `--resume` redoes it.
    #[error("stopped: {reason}")]
    Stopped { reason: String },
    /// A background task panicked or was cancelled.
    #[error("background task failed: {message}")]
    Join { message: String },
}

/// `Result` with the pipeline's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
