//! The crate's error type: failures of the server itself (binding, serving, the backend),
//! never of a client's request (those are HTTP 4xx responses, see `api::ApiError`).

use std::net::SocketAddr;

/// What can stop the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("server failed: {source}")]
    Serve {
        /// The cause.
        source: std::io::Error,
    },
    /// The backend could not start a generation (the engine thread stopped, ...).
    #[error("backend: {message}")]
    Backend {
        /// What went wrong.
        message: String,
    },
    /// The codec (tokenizer) failed to load.
    #[error("codec: {0}")]
    Codec(#[from] agentgen_codec::Error),
    /// The server configuration is invalid.
    #[error("invalid server config: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
