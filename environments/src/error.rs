//! The crate's error type. Model mistakes (bad tool calls) are never errors: they become
//! [`crate::ToolResult`] error observations. `Err` is for bad seeds, ids and broken specs.

/// Everything that can go wrong outside a tool call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No family of that name is registered.
    #[error("unknown family {name:?} (known: {known})")]
    UnknownFamily {
        /// The name that was asked for.
        name: String,
        /// The registered family names, comma-separated.
        known: String,
    },
    /// The family exists but cannot run here (e.g. python3 missing).
    #[error("family {family} is unavailable: {reason}")]
    Unavailable {
        /// The family's name.
        family: String,
        /// Why it cannot run (from [`crate::Availability::Unavailable`]).
        reason: String,
    },
    /// An instance seed outside `0..instances()`.
    #[error("instance seed {seed} out of range for family {family} (0..{instances})")]
    InstanceSeedOutOfRange {
        /// The family's name.
        family: String,
        /// The instance seed that was asked for.
        seed: u64,
        /// The family's instance count (valid seeds are below it).
        instances: u64,
    },
    /// A task seed outside `0..tasks_per_instance()`.
    #[error("task seed {seed} out of range for family {family} (0..{tasks})")]
    TaskSeedOutOfRange {
        /// The family's name.
        family: String,
        /// The task seed that was asked for.
        seed: u64,
        /// The family's tasks per instance (valid seeds are below it).
        tasks: u64,
    },
    /// A task id naming a version this build does not generate.
    #[error("task {id}: family {family} is at version {current}, not {requested}")]
    VersionMismatch {
        /// The task id as written (`family@version/instance_seed/task_seed`).
        id: String,
        /// The family's name.
        family: String,
        /// The version the task id names.
        requested: u32,
        /// The version this build generates.
        current: u32,
    },
    /// A task id string that does not parse.
    #[error("invalid task id {id:?}: {reason}")]
    InvalidTaskId {
        /// The string that failed to parse.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tool-spec file that is not valid (file and JSON pointer of the problem).
    #[error("tool spec {file} at {pointer:?}: {reason}")]
    ToolSpec {
        /// The spec file (or family) the problem is in.
        file: String,
        /// JSON pointer to the offending value inside the file.
        pointer: String,
        /// What is wrong there.
        reason: String,
    },
    /// A family asked for a tool its spec folder does not define.
    #[error("family {family}: no tool spec named {tool:?}")]
    MissingTool {
        /// The family that asked for the tool.
        family: String,
        /// The tool name that has no spec.
        tool: String,
    },
    /// A selection of families that contains nothing to run.
    #[error("no available family selected")]
    EmptySelection,
    /// The generator could not build an instance or task (a bug in the family).
    #[error("family {family}: generation failed: {reason}")]
    Generation {
        /// The family whose generator failed.
        family: String,
        /// What went wrong.
        reason: String,
    },
    /// SQLite failure while building or querying an instance database.
    #[error("family {family}: sqlite: {source}")]
    Sqlite {
        /// The family whose database failed.
        family: String,
        /// The underlying SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// Full-text index failure.
    #[error("family {family}: search index: {reason}")]
    Index {
        /// The family whose index failed.
        family: String,
        /// The index library's error message.
        reason: String,
    },
    /// I/O failure (only the code sandbox touches the host filesystem).
    #[error("{context}: {source}")]
    Io {
        /// What was being done (e.g. `"creating sandbox dir"`).
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The code sandbox could not be set up.
    #[error("sandbox: {reason}")]
    Sandbox {
        /// Which layer or step failed, and why.
        reason: String,
    },
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
