//! One module per subcommand; each exposes its clap type and `run(..) -> anyhow::Result<ExitCode>`.

pub mod bench;
pub mod codec;
pub mod envs;
pub mod generate;
pub mod inspect;
pub mod model;
pub mod report;
pub mod rollout;
pub mod serve;
pub mod validate;
