//! `agentgen-pipeline`: turns environment tasks into validated training rows.
//!
//! Owns the [`Policy`] trait and the policies that need no engine ([`ReferencePolicy`],
//! [`HttpPolicy`], [`ChatPolicy`]) with their shared [`HttpClient`] and endpoint
//! [`preflight`], the thinking-with-tools [`rollout`] loop, the staged validators with stable
//! rejection codes ([`validate`]) and `agentgen validate` over whole files
//! ([`validate_files`]), and the tokio orchestration of a whole run ([`run()`]): bounded
//! channels, a semaphore on in-flight rollouts, deterministic ids, `--resume`, `--shard I/N`,
//! SIGINT-safe shutdown, progress and the run summary. It must not name a concrete model
//! engine: the CLI adapts the candle engine to [`Policy`].
//!
//! Data moves one way: environments → policy (prompt text in, completion out) → codec parse →
//! validators → the `datasets` writer. Model mistakes are data (a rejection code on a row in
//! split `rejected`), never an `Err`; nothing is silently dropped.

#![warn(missing_docs)]

pub mod calibrate;
pub mod chat;
pub mod error;
pub mod http;
pub mod ids;
pub mod policy;
pub mod preflight;
pub mod reference;
pub mod rollout;
pub mod run;
pub mod synth;
pub mod validate;
pub mod validate_files;

pub use chat::{ChatConfig, ChatPolicy, ChatTurn};
pub use error::{Error, Result};
pub use http::{
    DEFAULT_ENDPOINT, HttpClient, HttpConfig, HttpPolicy, HttpStats, HttpStatsSnapshot,
};
pub use policy::{
    Completion, CompletionFinish, DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P,
    PlannedTurn, Policy, PolicyFailure, PromptRequest, ReferencePlan, SamplingParams,
    TEMPERATURE_RANGE,
};
pub use preflight::preflight;
pub use reference::ReferencePolicy;
pub use rollout::{DEFAULT_MAX_TURNS, RolloutContext, RolloutLimits, RolloutOutput, rollout};
pub use run::{
    DEFAULT_CONCURRENCY, DEFAULT_FLUSH_SECS, DEFAULT_MAX_POLICY_ERROR_RATE, DEFAULT_SEED, RowSink,
    RunConfig, RunReport, SHARD_INDEX_VARS, ShardSpec, run, run_with_sink, shutdown_signal,
};
pub use validate::{
    Issue, Rejection, SchemaCache, ToolSchemas, ValidatorCache, check_completion,
    check_conversation, check_conversation_cached, codes,
};
