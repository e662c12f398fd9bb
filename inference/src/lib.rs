//! `agentgen-inference`: the candle engine for DeepSeek-V3.2.
//!
//! Owns the model ([`models::deepseek_v32`]: MLA + lightning indexer / DeepSeek Sparse
//! Attention + DeepSeekMoE, computed in f32), checkpoint loading ([`loader`]: single or sharded
//! safetensors, F32/BF16/F8_E4M3 with block scales, memory-mapped), per-sequence caches
//! ([`SeqCache`], in the model module: the cache holds the model's latent, rope and indexer
//! keys), sampling ([`sampler`]), the continuous-batching engine thread behind an
//! async handle ([`engine`]), random checkpoints ([`init`]), golden parity checks
//! ([`golden`]) and the engine benchmarks ([`mod@bench`]: decode, prefill, tokens/s). CPU by
//! default; CUDA behind the `cuda`
//! feature, chosen in [`device`] only.
//!
//! It must not depend on the pipeline, environments or datasets crates: it takes token ids
//! and returns token ids.

#![warn(missing_docs)]

pub mod bench;
pub mod device;
pub mod engine;
mod error;
pub mod golden;
pub mod init;
pub mod loader;
pub mod models;
pub mod sampler;

pub use device::DeviceKind;
pub use engine::{
    Completion, Detokenize, Engine, EngineHandle, EngineOptions, FinishReason, GenerateRequest,
    TokenEvent,
};
pub use error::{Error, Result};
pub use models::deepseek_v32::{
    Config, ForwardOptions, LogitsMode, Model, Probe, Segment, SeqCache,
};
pub use sampler::SamplingParams;
