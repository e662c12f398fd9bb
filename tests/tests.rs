//! End-to-end tests: they drive the real `agentgen` binary. One module per topic.

mod codec;
mod envs;
mod generate;
mod inspect;
mod model;
mod report;
mod rollout;
mod serve;
mod util;
mod validate;
