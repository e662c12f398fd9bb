//! The crate's one error type. Model mistakes are never errors here: they are rejections
//! ([`crate::validate::Rejection`]) or error observations. `Err` is for infrastructure only.

/// Infrastructure failures of the pipeline (I/O, the dataset writer, a broken environment).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The codec refused to encode a conversation the pipeline built itself (a bug), or the
    /// tokenizer failed; the codec's error is the source.
    #[error("codec error while {context}")]
    Codec {
        context: &'static str,
        #[source]
        source: agentgen_codec::Error,
    },
    /// The environment crate failed to build an instance or task.
    #[error("environment error for {task}: {message}")]
    Environment { task: String, message: String },
    /// Reading or writing the dataset failed; the datasets crate's error is the source.
    #[error("dataset error")]
    Dataset(#[from] agentgen_datasets::Error),
    /// A policy failed in a way the rollout cannot turn into data (e.g. its engine is gone).
    #[error("policy error ({kind}): {message}")]
    Policy { kind: crate::PolicyFailure, message: String },
    /// A configuration value is invalid.
    #[error("invalid configuration: {message}")]
    Config { message: String },
    /// The output directory already holds data and `--resume` was not given.
    #[error("output directory {dir} already holds {what}; {hint}")]
    OutputNotEmpty { dir: String, what: String, hint: String },
    /// The output directory holds something that is not an agentgen dataset.
    #[error(
        "output directory {dir} is not empty and not an agentgen dataset (found {entry}); \
         choose a new or empty folder"
    )]
    ForeignFolder { dir: String, entry: String },
    /// Another process holds the output directory.
    #[error("output directory {dir} is in use by {holder}")]
    OutputBusy { dir: String, holder: String },
    /// `--resume` with a configuration other than the one that started the folder.
    #[error("--resume: {dir} was started with another configuration; differing: {fields}")]
    ResumeMismatch { dir: String, fields: String },
    /// Writing the dataset failed (disk full, file too large): the run stopped at once; the
    /// parts finished before stay valid.
    #[error("stopped: {message}")]
    WriteFailed { message: String },
    /// Too many policy requests failed (or every row was a policy failure): the run stopped.
    #[error("stopped: {message}")]
    PolicyFailing { message: String },
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

impl Error {
    /// This error and its causes, `: `-joined (rejection details and log lines keep the cause).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }

    /// The process exit code this error means (interfaces: 2 usage or unreadable input, 3
    /// busy or stopped by a limit).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::OutputBusy { .. }
            | Error::WriteFailed { .. }
            | Error::PolicyFailing { .. }
            | Error::Preflight { .. }
            | Error::Stopped { .. } => 3,
            _ => 2,
        }
    }
}

/// `Result` with the pipeline's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
