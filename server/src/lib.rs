//! `agentgen-server`: the OpenAI-compatible HTTP server behind `agentgen serve`.
//!
//! Owns the routes (`GET /health`, `GET /v1/models`, `POST /v1/completions`,
//! `POST /v1/chat/completions`, JSON and server-sent events), request validation into typed
//! values, OpenAI-style error bodies, bearer-key authentication, the body size limit and
//! graceful shutdown. Generation goes through the [`Backend`] trait: [`EngineBackend`] wraps
//! the candle engine (which batches the sequences of all clients), [`ScriptedBackend`] replays
//! fixed texts through the V3.2 tokenizer for tests that need real DSML tool calls.
//!
//! Chat requests are encoded with the codec (tools on the first system message, thinking on or
//! off per request, tool results ordered to their calls' positions by `tool_call_id`); replies
//! are parsed back with the codec's strict parser (lenient repairs as a fallback) into
//! `reasoning_content`, `content` and `tool_calls` with minted ids `call_<n>`.
//!
//! It must not be depended on by the engine or the codec, and holds no business logic of the
//! pipeline. Stop strings are matched here, on the decoded text, for every backend (with the
//! codec's `StopStrings`, as the engine does); the chat stream is sectioned by the codec's
//! `StreamParser`.

#![deny(missing_docs)]

pub mod api;
mod backend;
mod error;
mod generation;
mod routes;

pub use backend::{Backend, EngineBackend, Events, ScriptedBackend};
pub use error::{Error, Result};
pub use routes::{
    ServeLimits, ServerConfig, require_api_key, router, serve, serve_with, shutdown_signal,
};
