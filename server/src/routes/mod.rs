//! The axum application: routes, request bodies, the model list; the two generation endpoints
//! live in [`completions`] and [`chat`] over the shared [`choices`] helpers.

mod auth;
mod chat;
mod chat_prompt;
mod choices;
mod completions;
mod plan;
mod serve;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentgen_codec::Tokenizer;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

pub use auth::require_api_key;
pub use serve::{ServeLimits, serve, serve_with, shutdown_signal};

use crate::api::ApiError;
use crate::backend::Backend;
use crate::{Error, Result};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Names the model answers to; the first is listed by `/v1/models`. A request naming
    /// another model gets 404 `model_not_found`; a request naming none is served.
    pub model_names: Vec<String>,
    /// Bearer key required on `/v1/*` (none: open).
    pub api_key: Option<String>,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Seed of requests that carry none (mixed with a request counter).
    pub seed: u64,
    /// Largest `n` (choices per prompt) and prompts per request.
    pub max_choices: u32,
    /// `max_tokens` of a chat request that names none.
    pub default_max_tokens: usize,
    /// Most time a request body may take to arrive (408 beyond): a half-sent body does not
    /// hold a connection open.
    pub body_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_names: vec!["agentgen".into()],
            api_key: None,
            max_body_bytes: 4 << 20,
            seed: 0,
            max_choices: 16,
            default_max_tokens: 4096,
            body_timeout: Duration::from_secs(60),
        }
    }
}

struct AppState {
    backend: Arc<dyn Backend>,
    tok: &'static Tokenizer,
    cfg: ServerConfig,
    requests: AtomicU64,
    created: u64,
}

/// Build the application around a backend.
pub fn router(backend: Arc<dyn Backend>, cfg: ServerConfig) -> Result<Router> {
    if cfg.model_names.is_empty() {
        return Err(Error::Config { message: "at least one served model name is needed".into() });
    }
    let limit = cfg.max_body_bytes;
    let state = Arc::new(AppState {
        backend,
        tok: Tokenizer::shared()?,
        cfg,
        requests: AtomicU64::new(0),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    });
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), auth::guard));
    Ok(Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state))
}

type St = State<Arc<AppState>>;

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()), "not_found")
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::bad_request(format!(
            "method {} not allowed on {}",
            req.method(),
            req.uri().path()
        ))
    }
}

fn model_object(st: &AppState, id: &str) -> Value {
    json!({
        "id": id,
        "object": "model",
        "created": st.created,
        "owned_by": "agentgen",
        "max_model_len": st.backend.max_context(),
    })
}

async fn models(State(st): St) -> Json<Value> {
    let data: Vec<Value> = st.cfg.model_names.iter().map(|m| model_object(&st, m)).collect();
    Json(json!({"object": "list", "data": data}))
}

async fn model(State(st): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if st.cfg.model_names.contains(&id) {
        Ok(Json(model_object(&st, &id)))
    } else {
        Err(model_not_found(&id))
    }
}

fn model_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("the model `{id}` does not exist"), "model_not_found")
}

/// The body, or the OpenAI-style refusal (413 for an oversize body).
fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rej| {
        let status = rej.status();
        let mut e = ApiError::bad_request(rej.body_text());
        e.status = status;
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            e.code = Some("request_too_large");
        }
        e
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}
