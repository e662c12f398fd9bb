//! End-to-end tests: they drive the real `agentgen` binary. One module per topic.

mod calibrate;
mod chat;
mod codec;
mod envpkg;
mod envs;
mod envserve;
mod generate;
mod inspect;
mod model;
mod opsafety;
mod report;
mod rollout;
mod scaleout;
mod serve;
mod synth;
mod util;
mod validate;
mod vocabulary;
