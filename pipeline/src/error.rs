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
        /// What the pipeline was doing.
        context: &'static str,
        /// The codec's error.
        #[source]
        source: agentgen_codec::Error,
    },
    /// The environment crate failed to build an instance or task.
    #[error("environment error for {task}: {message}")]
    Environment {
        /// The task.
        task: String,
        /// What failed.
        message: String,
    },
    /// Reading or writing the dataset failed; the datasets crate's error is the source.
    #[error("dataset error")]
    Dataset(#[from] agentgen_datasets::Error),
    /// A policy failed in a way the rollout cannot turn into data (e.g. its engine is gone).
    #[error("policy error ({kind}): {message}")]
    Policy {
        /// What failed (its rejection code is [`crate::PolicyFailure::code`]).
        kind: crate::PolicyFailure,
        /// What happened.
        message: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The output directory already holds data and `--resume` was not given.
    #[error("output directory {dir} already holds {what}; {hint}")]
    OutputNotEmpty {
        /// The folder.
        dir: String,
        /// What it holds.
        what: String,
        /// The flag that would go on (`--resume`, `--overwrite`).
        hint: String,
    },
    /// The output directory holds something that is not an agentgen dataset.
    #[error(
        "output directory {dir} is not empty and not an agentgen dataset (found {entry}); \
         choose a new or empty folder"
    )]
    ForeignFolder {
        /// The folder.
        dir: String,
        /// An entry that is not agentgen's.
        entry: String,
    },
    /// Another process holds the output directory.
    #[error("output directory {dir} is in use by {holder}")]
    OutputBusy {
        /// The folder.
        dir: String,
        /// Who holds its lock.
        holder: String,
    },
    /// `--resume` with a configuration other than the one that started the folder.
    #[error("--resume: {dir} was started with another configuration; differing: {fields}")]
    ResumeMismatch {
        /// The folder.
        dir: String,
        /// The configuration fields that differ.
        fields: String,
    },
    /// Writing the dataset failed (disk full, file too large): the run stopped at once; the
    /// parts finished before stay valid.
    #[error("stopped: {message}")]
    WriteFailed {
        /// What failed.
        message: String,
    },
    /// Too many policy requests failed (or every row was a policy failure): the run stopped.
    #[error("stopped: {message}")]
    PolicyFailing {
        /// The failure rate and the last failure.
        message: String,
    },
    /// An I/O error on a named path.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The endpoint preflight (`GET /v1/models`) found the endpoint or the model wrong.
    #[error("{message}")]
    Preflight {
        /// What is wrong, with the fix.
        message: String,
    },
    /// A run limit is spent (`--max-tokens-total`): no new request starts. The rollout that
    /// met it is not written, so `--resume` redoes it.
    #[error("stopped: {reason}")]
    Stopped {
        /// Which limit.
        reason: String,
    },
    /// A background task panicked or was cancelled.
    #[error("background task failed: {message}")]
    Join {
        /// The panic or cancellation.
        message: String,
    },
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
