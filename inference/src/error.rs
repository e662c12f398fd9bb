//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running the engine.
///
/// Mistakes of the *model* (bad DSML, unknown tools) are not errors here: the engine only
/// produces tokens. These are failures of inputs the caller controls (files, configs,
/// requests) and of the compute backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` is not a valid DeepSeek-V3.2 config.
    #[error("invalid config {path}: {message}")]
    Config {
        /// The config file (or `<preset>`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A safetensors file is malformed.
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("missing tensor `{name}` in checkpoint {dir}")]
    MissingTensor {
        /// HF tensor name.
        name: String,
        /// The checkpoint folder.
        dir: PathBuf,
    },
    /// A tensor has a shape other than the config implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// HF tensor name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has a dtype the loader does not handle.
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// HF tensor name.
        name: String,
        /// The dtype as written in the header.
        dtype: String,
    },
    /// A request is invalid (empty prompt, token id out of range, bad sampling params).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The engine thread has stopped.
    #[error("the engine has shut down")]
    EngineStopped,
    /// The binary was built without the `cuda` feature.
    #[error("CUDA requested but this binary was built without the `cuda` feature")]
    CudaNotCompiled,
    /// A golden file is malformed (missing tensor, wrong shape).
    #[error("invalid goldens file {path}: {message}")]
    Goldens {
        /// The goldens file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The compute backend failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
