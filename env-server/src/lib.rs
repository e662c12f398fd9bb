//! `agentgen-env-server`: agentgen's environments for Python RL stacks, behind `agentgen envs
//! serve`.
//!
//! Owns the HTTP routes of NeMo Gym's resources-server contract ([`nemo`]: `GET /`,
//! `POST /seed_session`, `POST /{tool}`, `POST /verify`, `POST /close_session`), OpenEnv's
//! API ([`openenv`]: `GET /health`, `GET /metadata`, `GET /schema`, the `/ws` WebSocket), the
//! session engine both share ([`engine`]: bounded episodes, cookie-keyed HTTP sessions, idle
//! reaping) and the NeMo Gym dataset rows of tasks ([`catalog`], for `envs export`).
//!
//! It must not touch what it serves: tasks, tool execution and verifiers are the
//! environments crate's ([`agentgen_environments::Session`]), and the rules of an episode
//! (calls per turn, observation cap) are the pipeline's, applied here the same way. Hidden
//! verifier data (`TaskSpec::hidden`, the reference) never leaves the process. Connection-level
//! limits, graceful shutdown and the API key are the HTTP server crate's (`agentgen-server`),
//! wired by the CLI; this crate does not depend on the inference engine.

#![deny(missing_docs)]

pub mod catalog;
pub mod engine;
mod error;
pub mod http;
pub mod nemo;
pub mod openenv;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use catalog::{Catalog, nemo_gym_row, responses_tool, row_task_id};
pub use engine::{Engine, EngineConfig};
pub use error::{Error, Result};

/// Settings of the routes.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body (and WebSocket message) accepted; 413 beyond.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { max_body_bytes: 1 << 20 }
    }
}

/// The application: NeMo Gym's routes and OpenEnv's on one engine. Starts the idle reaper
/// (call inside a tokio runtime).
pub fn router(engine: Arc<Engine>, cfg: ServerConfig) -> Router {
    engine.spawn_reaper();
    let limit = cfg.max_body_bytes;
    let openenv = Router::new()
        .route("/health", get(openenv::health))
        .route("/metadata", get(openenv::metadata))
        .route("/schema", get(openenv::schema))
        .route("/ws", get(openenv::ws))
        .with_state((Arc::clone(&engine), cfg));
    Router::new()
        .route("/", get(nemo::liveness))
        .route("/stats", get(stats))
        .route("/seed_session", post(nemo::seed_session))
        .route("/close_session", post(nemo::close_session))
        .route("/verify", post(nemo::verify))
        .route("/{tool}", post(nemo::call_tool))
        .with_state(engine)
        .merge(openenv)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
}

/// `GET /stats`: the engine's session counters.
async fn stats(State(engine): State<Arc<Engine>>) -> axum::Json<serde_json::Value> {
    axum::Json(engine.stats())
}

async fn not_found(req: Request) -> Response {
    http::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "route.unknown",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
    .into_response()
}
