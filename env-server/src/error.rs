//! The crate's error type: failures of the server's setup and of task lookup. A client's bad
//! request is an HTTP 4xx answer (see `http::ApiError`), never an `Err` of this type.

/// What can go wrong outside a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The family selection or a limit is unusable.
    #[error("invalid env server config: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// A task id that does not name a served task.
    #[error("task {id:?}: {reason}")]
    Task {
        /// The id asked for.
        id: String,
        /// Why it cannot be served.
        reason: String,
    },
    /// The environment could not build the task's instance (a package worker failed, a
    /// generated seed's reference did not pass).
    #[error("task {id:?}: the environment failed to build it: {reason}")]
    Build {
        /// The id asked for.
        id: String,
        /// What failed.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
