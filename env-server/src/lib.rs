//! `agentgen-env-server`: agentgen's environments for Python RL stacks, behind `agentgen envs
//! serve`.
//!
//! Owns the HTTP routes of NeMo Gym's resources-server contract ([`nemo`]: `GET /`,
//! `POST /seed_session`, `POST /{tool}`, `POST /verify`, `POST /close_session`), OpenEnv's
//! API ([`openenv`]: `GET /health`, `GET /metadata`, `GET /schema`, the `/ws` WebSocket and
//! the HTTP `POST /reset`, `POST /step`, `GET /state`), the session engine all share
//! ([`engine`]: bounded episodes, bounded package workers, multi-turn episodes, cookie-keyed
//! HTTP sessions, idle reaping) and the NeMo Gym dataset rows of tasks ([`catalog`], for
//! `envs export`).
//!
//! Tools are served at `POST /{tool}`, so a tool named like one of the server's own routes
//! ([`ROUTES`]) could not be called: a family or package offering one is refused at start
//! ([`Catalog::check_tool_names`], with [`shadowed_message`]), and a task offering one is
//! refused at seed.
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

/// The first path segment of every route of the server besides `POST /{tool}`: a tool of
/// one of these names would be shadowed by the route.
pub const ROUTES: &[&str] = &[
    "",
    "stats",
    "seed_session",
    "close_session",
    "verify",
    "health",
    "metadata",
    "schema",
    "ws",
    "reset",
    "step",
    "state",
];

/// Whether a tool called `name` would be shadowed by one of the server's routes.
pub fn is_route(name: &str) -> bool {
    ROUTES.contains(&name)
}

/// Why a family's tool `tool` cannot be served.
pub fn shadowed_message(family: &str, tool: &str) -> String {
    format!(
        "{family} offers a tool named {tool:?}, which is one of this server's own routes \
         (/{tool}): POST /{tool} could never reach the tool. Rename the tool (the server's \
         routes are {}), or serve {family} with `agentgen generate` instead",
        ROUTES
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| format!("/{r}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

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
        .route("/reset", post(openenv::http_reset))
        .route("/step", post(openenv::http_step))
        .route("/state", get(openenv::http_state))
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
