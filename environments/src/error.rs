//! The crate's error type. Model mistakes (bad tool calls) are never errors: they become
//! [`crate::ToolResult`] error observations. `Err` is for bad seeds, ids and broken specs.

/// Everything that can go wrong outside a tool call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No family of that name is registered.
    #[error("unknown family {name:?} (known: {known})")]
    UnknownFamily { name: String, known: String },
    /// The family exists but cannot run here (e.g. python3 missing).
    #[error("family {family} is unavailable: {reason}")]
    Unavailable { family: String, reason: String },
    /// An instance seed outside `0..instances()`.
    #[error("instance seed {seed} out of range for family {family} (0..{instances})")]
    InstanceSeedOutOfRange { family: String, seed: u64, instances: u64 },
    /// A task seed outside `0..tasks_per_instance()`.
    #[error("task seed {seed} out of range for family {family} (0..{tasks})")]
    TaskSeedOutOfRange { family: String, seed: u64, tasks: u64 },
    /// A task id naming a version this build does not generate.
    #[error("task {id}: family {family} is at version {current}, not {requested}")]
    VersionMismatch { id: String, family: String, requested: u32, current: u32 },
    /// A task id string that does not parse.
    #[error("invalid task id {id:?}: {reason}")]
    InvalidTaskId { id: String, reason: String },
    /// A tool-spec file that is not valid (file and JSON pointer of the problem).
    #[error("tool spec {file} at {pointer:?}: {reason}")]
    ToolSpec { file: String, pointer: String, reason: String },
    /// A family asked for a tool its spec folder does not define.
    #[error("family {family}: no tool spec named {tool:?}")]
    MissingTool { family: String, tool: String },
    /// A selection of families that contains nothing to run.
    #[error("no available family selected")]
    EmptySelection,
    /// The generator could not build an instance or task (a bug in the family).
    #[error("family {family}: generation failed: {reason}")]
    Generation { family: String, reason: String },
    /// SQLite failure while building or querying an instance database.
    #[error("family {family}: sqlite: {source}")]
    Sqlite {
        family: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Full-text index failure.
    #[error("family {family}: search index: {reason}")]
    Index { family: String, reason: String },
    /// I/O failure (only the code sandbox touches the host filesystem).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The code sandbox could not be set up.
    #[error("sandbox: {reason}")]
    Sandbox { reason: String },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// `Ok` when `seed` is one of the family's `instances` instance seeds.
    pub fn check_instance_seed(family: &str, seed: u64, instances: u64) -> Result<()> {
        if seed >= instances {
            return Err(Error::InstanceSeedOutOfRange {
                family: family.to_owned(),
                seed,
                instances,
            });
        }
        Ok(())
    }

    /// `Ok` when `seed` is one of the instance's `tasks` task seeds.
    pub fn check_task_seed(family: &str, seed: u64, tasks: u64) -> Result<()> {
        if seed >= tasks {
            return Err(Error::TaskSeedOutOfRange { family: family.to_owned(), seed, tasks });
        }
        Ok(())
    }
}
