//! End-to-end tests: they drive the real `agentgen` binary. One module per topic.


mod codec;
mod model;
mod envs;
mod generate;
mod validate;
mod inspect;
mod serve;
mod rollout;
mod util;
