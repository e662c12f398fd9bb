//! The axum application: routes, authentication, request validation and the two generation
//! endpoints (plain JSON and server-sent events).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentgen_codec::tokens::CALLS_CLOSE;
use agentgen_codec::{
    EncodeOptions, Message, Role, StreamParser, ThinkingMode, Tokenizer, ToolCall, encode_messages,
    parse_best_effort,
};
use agentgen_inference::{GenerateRequest, SamplingParams};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::{ApiError, ChatRequest, CompletionRequest, Prompt, Usage};
use crate::backend::{Backend, Events};
use crate::generation::{ChoiceRun, Finish, Progress, completion_text};
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
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), guard));
    Ok(Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state))
}

/// Connection-level limits of [`serve_with`].
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Most time a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Most connections open at once; later clients wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight may take to finish before they are cancelled.
    pub shutdown_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// [`serve_with`] default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with(listener, app, shutdown, ServeLimits::default()).await
}

/// Serve `app` (HTTP/1.1) on `listener` within `limits` until `shutdown` resolves; then stop
/// accepting, let the requests in flight finish for at most `limits.shutdown_timeout`, and
/// cancel what is left.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> Result<()> {
    use tokio_util::sync::CancellationToken;
    let max = limits.max_connections.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let drain = CancellationToken::new();
    let cancel = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let (drain, cancel) = (drain.clone(), cancel.clone());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            // With upgrades: WebSocket routes (`agentgen envs serve`'s `/ws`) take over the
            // connection after the handshake.
            let conn =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {}
                _ = drain.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = cancel.cancelled() => {}
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    drain.cancel();
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(all)).await.is_err() {
        let open = max - slots.available_permits();
        tracing::warn!(
            "shutdown: {open} connection(s) still busy after {:?}; cancelling them",
            limits.shutdown_timeout
        );
        cancel.cancel();
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

type St = State<Arc<AppState>>;

/// Every `/v1/*` request: the bearer key (when one is configured), a JSON content type on
/// requests with a body, and the body read within `body_timeout`.
async fn guard(State(st): St, req: Request, next: Next) -> Response {
    if let Some(key) = &st.cfg.api_key
        && let Err(e) = check_api_key(req.headers(), key)
    {
        return e.into_response();
    }
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ..ApiError::bad_request("request bodies must be JSON (Content-Type: application/json)")
        }
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, st.cfg.max_body_bytes);
    match tokio::time::timeout(st.cfg.body_timeout, read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    ..ApiError::bad_request(format!(
                        "request body larger than {} bytes",
                        st.cfg.max_body_bytes
                    ))
                    .with_code("request_too_large")
                }
                .into_response()
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}")).into_response()
            }
        }
        Err(_) => ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            ..ApiError::bad_request(format!(
                "the request body did not arrive within {:?}",
                st.cfg.body_timeout
            ))
        }
        .into_response(),
    }
}

/// `Ok` when the request's `Authorization: Bearer <key>` matches `key`, else the 401.
fn check_api_key(headers: &axum::http::HeaderMap, key: &str) -> Result<(), ApiError> {
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match given {
        Some(g) if key_matches(g.as_bytes(), key.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("incorrect API key provided")),
        None => {
            Err(ApiError::unauthorized("missing API key: send it as `Authorization: Bearer <key>`"))
        }
    }
}

/// Require `Authorization: Bearer <key>` on every route of `app` except the `open` paths
/// (liveness probes): the same check and 401 body as `/v1/*`, for other routers served with
/// [`serve_with`] (`agentgen envs serve`).
pub fn require_api_key(app: Router, key: String, open: &'static [&'static str]) -> Router {
    let key = Arc::new(key);
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        let key = Arc::clone(&key);
        async move {
            if open.contains(&req.uri().path()) {
                return next.run(req).await;
            }
            match check_api_key(req.headers(), &key) {
                Ok(()) => next.run(req).await,
                Err(e) => e.into_response(),
            }
        }
    }))
}

/// The credentials of an `Authorization` value with the `Bearer` scheme, whose name is
/// case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Constant-time key comparison, length included: the SHA-256 digests (32 bytes whatever
/// the lengths) are compared with `subtle`.
fn key_matches(given: &[u8], key: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(given).ct_eq(&Sha256::digest(key)).into()
}

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

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What every generation request shares after validation.
struct Plan {
    id: String,
    model: String,
    prompts: Vec<Vec<u32>>,
    n: u32,
    params: SamplingParams,
    seed: u64,
    stops: Vec<String>,
    stop_token_ids: Vec<u32>,
}

struct Sampling {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    seed: Option<u64>,
    n: Option<u32>,
    stop: Option<crate::api::Stop>,
}

impl AppState {
    fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    fn model_name(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match requested {
            None | Some("") => Ok(self.cfg.model_names[0].clone()),
            Some(m) if self.cfg.model_names.iter().any(|n| n == m) => Ok(m.to_owned()),
            Some(m) => Err(model_not_found(m)),
        }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Err(ApiError::bad_param("prompt", "the prompt is empty"));
        }
        let v = self.backend.vocab_size();
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= v) {
            return Err(ApiError::bad_param(
                "prompt",
                format!("token id {bad} is outside the model's vocabulary of {v} ids"),
            ));
        }
        Ok(())
    }

    fn plan(
        &self,
        kind: &str,
        model: String,
        prompts: Vec<Vec<u32>>,
        max_tokens: usize,
        s: Sampling,
    ) -> Result<Plan, ApiError> {
        let counter = self.next_request();
        let n = s.n.unwrap_or(1);
        if n == 0 || n > self.cfg.max_choices {
            return Err(ApiError::bad_param(
                "n",
                format!("n must be between 1 and {}, got {n}", self.cfg.max_choices),
            ));
        }
        if prompts.len() * n as usize > self.cfg.max_choices as usize * 4 {
            return Err(ApiError::bad_param("prompt", "too many prompts times choices"));
        }
        let temperature = s.temperature.unwrap_or(1.0);
        if !temperature.is_finite() || !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_param("temperature", "temperature must be in [0, 2]"));
        }
        let top_p = s.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_param("top_p", "top_p must be in (0, 1]"));
        }
        let top_k = match s.top_k {
            None => None,
            Some(k) if k <= 0 => None,
            Some(k) => Some(usize::try_from(k).unwrap_or(usize::MAX)),
        };
        let stops = s.stop.map(crate::api::Stop::into_vec).unwrap_or_default();
        if stops.len() > 16 || stops.iter().any(|s| s.len() > 1024) {
            return Err(ApiError::bad_param("stop", "at most 16 stop strings of 1024 bytes"));
        }
        let ctx = self.backend.max_context();
        for p in &prompts {
            self.check_ids(p)?;
            // Overflow-safe: max_tokens may be anything up to 2^64 - 1.
            if p.len().checked_add(max_tokens).is_none_or(|total| total > ctx) {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!(
                        "this model's maximum context length is {ctx} tokens, but {} prompt \
                         tokens + {max_tokens} max_tokens were requested",
                        p.len()
                    ),
                )
                .with_code("context_length_exceeded"));
            }
        }
        let seed = s.seed.unwrap_or_else(|| splitmix(self.cfg.seed ^ splitmix(counter)));
        Ok(Plan {
            id: format!("{kind}-{counter}"),
            model,
            prompts,
            n,
            params: SamplingParams { temperature, top_p, top_k, seed, max_tokens },
            seed,
            stops,
            stop_token_ids: Vec::new(),
        })
    }

    /// Start every choice of the plan: `(choice index, prompt index, events)`.
    fn start(&self, plan: &Plan) -> Result<Vec<(usize, usize, Events)>, ApiError> {
        let mut out = Vec::new();
        for (p, ids) in plan.prompts.iter().enumerate() {
            for j in 0..plan.n as usize {
                let index = p * plan.n as usize + j;
                let seed = if index == 0 { plan.seed } else { splitmix(plan.seed ^ index as u64) };
                let req = GenerateRequest {
                    prompt_ids: ids.clone(),
                    params: SamplingParams { seed, ..plan.params.clone() },
                    stop: Vec::new(),
                    stop_token_ids: plan.stop_token_ids.clone(),
                    cache_key: None,
                };
                let rx =
                    self.backend.generate(req).map_err(|e| ApiError::internal(e.to_string()))?;
                out.push((index, p, rx));
            }
        }
        Ok(out)
    }

    fn run(&self, rx: Events, plan: &Plan, p: usize) -> ChoiceRun {
        ChoiceRun::new(rx, self.tok, plan.stops.clone(), plan.prompts[p].len())
    }

    fn token_text(&self, id: u32) -> String {
        self.tok.decode(&[id]).unwrap_or_default()
    }
}

fn sse_response(rx: mpsc::Receiver<Event>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok::<_, Infallible>(ev), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn json_event(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

fn stream_error(message: String) -> Event {
    json_event(&ApiError::internal(message).body())
}

// ---------------------------------------------------------------- /v1/completions

async fn completions(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    match completions_inner(st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

struct CompletionOpts {
    logprobs: bool,
    token_ids: bool,
    include_stop: bool,
    skip_special: bool,
}

async fn completions_inner(
    st: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse_body(body)?;
    let model = st.model_name(req.model.as_deref())?;
    if req.echo {
        return Err(ApiError::bad_param("echo", "echo is not supported"));
    }
    let encode =
        |t: &str| st.tok.encode(t).map_err(|e| ApiError::bad_param("prompt", e.to_string()));
    let prompts = match req.prompt {
        Prompt::Text(t) => vec![encode(&t)?],
        Prompt::Ids(ids) => vec![ids],
        Prompt::Texts(ts) => ts.iter().map(|t| encode(t)).collect::<Result<_, _>>()?,
        Prompt::IdBatch(b) => b,
    };
    if prompts.is_empty() {
        return Err(ApiError::bad_param("prompt", "the prompt list is empty"));
    }
    let max_tokens = usize::try_from(req.max_tokens.unwrap_or(16)).unwrap_or(usize::MAX);
    let sampling = Sampling {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        n: req.n,
        stop: req.stop,
    };
    let mut plan = st.plan("cmpl", model, prompts, max_tokens, sampling)?;
    plan.stop_token_ids = req.stop_token_ids.unwrap_or_default();
    let opts = CompletionOpts {
        logprobs: req.logprobs.is_some(),
        token_ids: req.logprobs.is_some() || req.return_token_ids,
        include_stop: req.include_stop_str_in_output,
        skip_special: req.skip_special_tokens.unwrap_or(true),
    };
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let started = st.start(&plan)?;
    if req.stream {
        return Ok(stream_completions(st, plan, started, opts, include_usage));
    }
    let runs = futures_util::future::join_all(started.into_iter().map(|(i, p, rx)| {
        let run = st.run(rx, &plan, p);
        async move { run.run().await.map(|r| (i, r)) }
    }))
    .await;
    let mut choices = Vec::new();
    let mut usage = Usage::default();
    for r in runs {
        let (index, run) = r.map_err(ApiError::internal)?;
        usage.completion_tokens += run.ids.len();
        let text = completion_text(&run, opts.include_stop, opts.skip_special);
        let kept = run.tokens_within(text.len());
        let mut choice = json!({
            "index": index,
            "text": text,
            "logprobs": Value::Null,
            "finish_reason": finish_str(run.finish, false),
        });
        if opts.logprobs {
            choice["logprobs"] = completion_logprobs(&st, &run, 0, kept);
        }
        if opts.token_ids {
            choice["token_ids"] = json!(run.ids[..kept]);
        }
        choices.push(choice);
    }
    choices.sort_by_key(|c| c["index"].as_u64());
    usage.prompt_tokens = plan.prompts.iter().map(Vec::len).sum();
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    Ok(Json(json!({
        "id": plan.id,
        "object": "text_completion",
        "created": st.created_now(),
        "model": plan.model,
        "choices": choices,
        "usage": usage,
    }))
    .into_response())
}

impl AppState {
    fn created_now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(self.created, |d| d.as_secs())
    }
}

fn finish_str(f: Option<Finish>, tool_calls: bool) -> &'static str {
    match f {
        Some(Finish::Length) => "length",
        _ if tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// The legacy `logprobs` object for tokens `from..to` (the sampled token only: the engine
/// reports no alternatives, so `top_logprobs` is null).
fn completion_logprobs(st: &AppState, run: &ChoiceRun, from: usize, to: usize) -> Value {
    let tokens: Vec<String> = run.ids[from..to].iter().map(|&id| st.token_text(id)).collect();
    json!({
        "tokens": tokens,
        "token_logprobs": run.logprobs[from..to],
        "top_logprobs": Value::Null,
        "text_offset": run.offsets[from..to],
    })
}

fn stream_completions(
    st: Arc<AppState>,
    plan: Plan,
    started: Vec<(usize, usize, Events)>,
    opts: CompletionOpts,
    include_usage: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(64);
    let plan = Arc::new(plan);
    let opts = Arc::new(opts);
    let created = st.created_now();
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, p, events) in started {
            let (st, plan, opts, tx) =
                (Arc::clone(&st), Arc::clone(&plan), Arc::clone(&opts), tx.clone());
            tasks.spawn(async move {
                let mut run = st.run(events, &plan, p);
                let mut sent_text = 0;
                let mut sent_tok = 0;
                loop {
                    let step = match run.next().await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(stream_error(e)).await;
                            return None;
                        }
                    };
                    let done = matches!(step, Progress::Done);
                    let text = completion_text(&run, opts.include_stop, opts.skip_special);
                    let mut safe = text.len() - run.stop_holdback(text);
                    while !text.is_char_boundary(safe) {
                        safe -= 1;
                    }
                    if safe > sent_text || done {
                        let upto = if done { text.len() } else { safe };
                        let toks = if done { run.tokens_within(text.len()) } else { run.tokens_within(upto) };
                        let toks = toks.max(sent_tok);
                        let mut choice = json!({
                            "index": index,
                            "text": &text[sent_text.min(upto)..upto],
                            "logprobs": Value::Null,
                            "finish_reason": if done { json!(finish_str(run.finish, false)) } else { Value::Null },
                        });
                        if opts.logprobs {
                            choice["logprobs"] = completion_logprobs(&st, &run, sent_tok, toks);
                        }
                        if opts.token_ids {
                            choice["token_ids"] = json!(run.ids[sent_tok..toks]);
                        }
                        sent_text = upto;
                        sent_tok = toks;
                        let chunk = json!({
                            "id": plan.id, "object": "text_completion", "created": created,
                            "model": plan.model, "choices": [choice],
                        });
                        if tx.send(json_event(&chunk)).await.is_err() {
                            return None; // client gone: dropping `run` cancels the sequence
                        }
                    }
                    if done {
                        return Some(run.ids.len());
                    }
                }
            });
        }
        let mut completion_tokens = 0;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Some(n)) => completion_tokens += n,
                _ => return,
            }
        }
        if include_usage {
            let usage = Usage::new(plan.prompts.iter().map(Vec::len).sum(), completion_tokens);
            let chunk = json!({
                "id": plan.id, "object": "text_completion", "created": created,
                "model": plan.model, "choices": [], "usage": usage,
            });
            let _ = tx.send(json_event(&chunk)).await;
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    sse_response(rx)
}

// ---------------------------------------------------------------- /v1/chat/completions

/// A chat request turned into a prompt.
struct ChatPrompt {
    ids: Vec<u32>,
    mode: ThinkingMode,
    /// Tool calls already in the conversation (new ids continue from here).
    prior_calls: usize,
}

fn thinking_mode(req: &ChatRequest) -> Result<ThinkingMode, ApiError> {
    let from_bool = |b: bool| if b { ThinkingMode::Thinking } else { ThinkingMode::Chat };
    if let Some(t) = &req.thinking {
        return match t {
            Value::Bool(b) => Ok(from_bool(*b)),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("enabled") => Ok(ThinkingMode::Thinking),
                Some("disabled") => Ok(ThinkingMode::Chat),
                _ => Err(ApiError::bad_param(
                    "thinking",
                    "thinking must be {\"type\": \"enabled\"} or {\"type\": \"disabled\"}",
                )),
            },
            Value::Null => Ok(ThinkingMode::Chat),
            _ => Err(ApiError::bad_param("thinking", "thinking must be an object")),
        };
    }
    if let Some(kw) = &req.chat_template_kwargs {
        for key in ["thinking", "enable_thinking"] {
            match kw.get(key) {
                Some(Value::Bool(b)) => return Ok(from_bool(*b)),
                Some(Value::Null) | None => {}
                Some(_) => {
                    return Err(ApiError::bad_param(
                        "chat_template_kwargs",
                        format!("chat_template_kwargs.{key} must be a boolean"),
                    ));
                }
            }
        }
    }
    Ok(ThinkingMode::Chat)
}

/// OpenAI messages → codec messages: content-part arrays joined, roles checked.
fn messages(raw: &[Value]) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let Some(obj) = v.as_object() else {
            return Err(ApiError::bad_param("messages", format!("messages[{i}] is not an object")));
        };
        let mut obj = obj.clone();
        if let Some(Value::Array(parts)) = obj.get("content") {
            let mut text = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str))
                {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(ApiError::bad_param(
                            "messages",
                            format!("messages[{i}]: only text content parts are supported"),
                        ));
                    }
                }
            }
            obj.insert("content".into(), Value::String(text));
        }
        // Fields this server does not read (e.g. `refusal`, `annotations`) are dropped.
        obj.retain(|k, _| {
            matches!(
                k.as_str(),
                "role" | "content" | "reasoning_content" | "tool_calls" | "tool_call_id" | "name"
            )
        });
        let m: Message = serde_json::from_value(Value::Object(obj))
            .map_err(|e| ApiError::bad_param("messages", format!("messages[{i}]: {e}")))?;
        out.push(m);
    }
    Ok(out)
}

/// Reorder each block of tool results to the positions of the calls they answer (by
/// `tool_call_id`), and check every call got exactly one result.
fn order_tool_results(msgs: &mut [Message]) -> Result<(), ApiError> {
    let mut i = 0;
    while i < msgs.len() {
        if msgs[i].role != Role::Assistant || msgs[i].tool_calls.is_empty() {
            if msgs[i].role == Role::Tool {
                return Err(ApiError::bad_param(
                    "messages",
                    format!("messages[{i}] is a tool result that follows no assistant tool call"),
                ));
            }
            i += 1;
            continue;
        }
        let calls: Vec<Option<String>> = msgs[i].tool_calls.iter().map(|c| c.id.clone()).collect();
        let start = i + 1;
        let mut end = start;
        while end < msgs.len() && msgs[end].role == Role::Tool {
            end += 1;
        }
        let block = &mut msgs[start..end];
        if block.len() != calls.len() {
            return Err(ApiError::bad_param(
                "messages",
                format!(
                    "messages[{i}] makes {} tool calls but {} tool results follow it",
                    calls.len(),
                    block.len()
                ),
            ));
        }
        if block.iter().all(|m| m.tool_call_id.is_some()) && calls.iter().all(Option::is_some) {
            let pos: HashMap<&str, usize> =
                calls.iter().enumerate().filter_map(|(k, c)| Some((c.as_deref()?, k))).collect();
            let mut keyed = Vec::with_capacity(block.len());
            for (k, m) in block.iter().enumerate() {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let Some(&p) = pos.get(id) else {
                    return Err(ApiError::bad_param(
                        "messages",
                        format!(
                            "messages[{}]: tool_call_id {id:?} matches no call of messages[{i}]",
                            start + k
                        ),
                    ));
                };
                keyed.push((p, m.clone()));
            }
            keyed.sort_by_key(|(p, _)| *p);
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(ApiError::bad_param(
                    "messages",
                    "two tool results answer the same call",
                ));
            }
            for (slot, (_, m)) in block.iter_mut().zip(keyed) {
                *slot = m;
            }
        }
        i = end;
    }
    Ok(())
}

fn chat_prompt(st: &AppState, req: &ChatRequest) -> Result<ChatPrompt, ApiError> {
    let mode = thinking_mode(req)?;
    let mut msgs = messages(&req.messages)?;
    let Some(last) = msgs.last() else {
        return Err(ApiError::bad_param("messages", "messages is empty"));
    };
    if !matches!(last.role, Role::User | Role::Developer | Role::Tool) {
        return Err(ApiError::bad_param(
            "messages",
            "the last message must be a user, developer or tool message",
        ));
    }
    order_tool_results(&mut msgs)?;
    let use_tools = match &req.tool_choice {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) if s == "auto" => true,
        Some(Value::String(s)) if s == "none" => false,
        Some(_) => {
            return Err(ApiError::bad_param(
                "tool_choice",
                "only \"auto\" and \"none\" are supported",
            ));
        }
    };
    let tools: Vec<Value> =
        if use_tools { req.tools.clone().unwrap_or_default() } else { Vec::new() };
    for (k, t) in tools.iter().enumerate() {
        if t.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).is_none() {
            return Err(ApiError::bad_param(
                "tools",
                format!(
                    "tools[{k}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
                ),
            ));
        }
    }
    let rf = req.response_format.clone().filter(|v| {
        // `{"type": "text"}` is OpenAI's default and means nothing to render.
        v.get("type").and_then(Value::as_str) != Some("text")
    });
    if !tools.is_empty() || rf.is_some() {
        let attach = matches!(msgs[0].role, Role::System | Role::Developer)
            && msgs[0].tools.is_none()
            && msgs[0].response_format.is_none();
        if !attach {
            let mut sys = Message::system("");
            sys.content = None;
            msgs.insert(0, sys);
        }
        if !tools.is_empty() {
            msgs[0].tools = Some(tools);
        }
        msgs[0].response_format = rf;
    }
    let prior_calls = msgs.iter().map(|m| m.tool_calls.len()).sum();
    let opts = EncodeOptions::with_mode(mode);
    let text = encode_messages(&msgs, &opts).map_err(|e| {
        ApiError::bad_param("messages", format!("cannot encode the conversation: {e}"))
    })?;
    let ids = st.tok.encode(&text).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ChatPrompt { ids, mode, prior_calls })
}

async fn chat_completions(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    match chat_inner(st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn tool_calls_json(calls: &[ToolCall], first_id: usize) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(k, c)| {
            json!({
                "id": format!("call_{}", first_id + k),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            })
        })
        .collect()
}

fn chat_logprobs(st: &AppState, run: &ChoiceRun, from: usize, to: usize) -> Value {
    let content: Vec<Value> = (from..to)
        .map(|k| {
            let t = st.token_text(run.ids[k]);
            json!({
                "token": t,
                "logprob": run.logprobs[k],
                "bytes": t.as_bytes(),
                "top_logprobs": [],
            })
        })
        .collect();
    json!({"content": content})
}

async fn chat_inner(
    st: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = parse_body(body)?;
    let model = st.model_name(req.model.as_deref())?;
    if req.top_logprobs.is_some_and(|k| k > 0) {
        return Err(ApiError::bad_param(
            "top_logprobs",
            "this server reports the sampled token's logprob only (top_logprobs must be 0)",
        ));
    }
    let prompt = chat_prompt(&st, &req)?;
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .map_or(st.cfg.default_max_tokens, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let max_tokens = if req.max_completion_tokens.is_none() && req.max_tokens.is_none() {
        max_tokens.min(st.backend.max_context().saturating_sub(prompt.ids.len()).max(1))
    } else {
        max_tokens
    };
    let sampling = Sampling {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        n: req.n,
        stop: req.stop.clone(),
    };
    let plan = st.plan("chatcmpl", model, vec![prompt.ids], max_tokens, sampling)?;
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let started = st.start(&plan)?;
    let ctx =
        ChatCtx { mode: prompt.mode, prior_calls: prompt.prior_calls, logprobs: req.logprobs };
    if req.stream {
        return Ok(stream_chat(st, plan, started, ctx, include_usage));
    }
    let runs = futures_util::future::join_all(started.into_iter().map(|(i, p, rx)| {
        let run = st.run(rx, &plan, p);
        async move { run.run().await.map(|r| (i, r)) }
    }))
    .await;
    let mut choices = Vec::new();
    let mut usage = Usage::default();
    for r in runs {
        let (index, run) = r.map_err(ApiError::internal)?;
        usage.completion_tokens += run.ids.len();
        let msg = parse_best_effort(chat_text(&run), ctx.mode);
        let calls = tool_calls_json(&msg.tool_calls, ctx.prior_calls);
        let mut message = json!({
            "role": "assistant",
            "content": msg.content,
            "reasoning_content": if ctx.mode == ThinkingMode::Thinking { json!(msg.reasoning_content) } else { Value::Null },
        });
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls);
        }
        let mut choice = json!({
            "index": index,
            "message": message,
            "logprobs": Value::Null,
            "finish_reason": finish_str(run.finish, !calls.is_empty()),
        });
        if ctx.logprobs {
            choice["logprobs"] = chat_logprobs(&st, &run, 0, run.ids.len());
            choice["token_ids"] = json!(run.ids);
        }
        choices.push(choice);
    }
    choices.sort_by_key(|c| c["index"].as_u64());
    usage.prompt_tokens = plan.prompts[0].len();
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    Ok(Json(json!({
        "id": plan.id,
        "object": "chat.completion",
        "created": st.created_now(),
        "model": plan.model,
        "choices": choices,
        "usage": usage,
    }))
    .into_response())
}

#[derive(Clone, Copy)]
struct ChatCtx {
    mode: ThinkingMode,
    prior_calls: usize,
    logprobs: bool,
}

/// The text a chat choice is parsed from: a matched stop string is cut off (a stop at the
/// tool-block close keeps the close, which the parser needs).
fn chat_text(run: &ChoiceRun) -> &str {
    match run.finish {
        Some(Finish::StopString { start, end }) if run.text[start..end] != *CALLS_CLOSE => {
            &run.text[..start]
        }
        _ => &run.text,
    }
}

fn stream_chat(
    st: Arc<AppState>,
    plan: Plan,
    started: Vec<(usize, usize, Events)>,
    ctx: ChatCtx,
    include_usage: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(64);
    let plan = Arc::new(plan);
    let created = st.created_now();
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, p, events) in started {
            let (st, plan, tx) = (Arc::clone(&st), Arc::clone(&plan), tx.clone());
            tasks.spawn(async move {
                let chunk = |delta: Value, finish: Option<&str>, logprobs: Value| {
                    json_event(&json!({
                        "id": plan.id, "object": "chat.completion.chunk", "created": created,
                        "model": plan.model,
                        "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                     "finish_reason": finish}],
                    }))
                };
                if tx
                    .send(chunk(json!({"role": "assistant", "content": ""}), None, Value::Null))
                    .await
                    .is_err()
                {
                    return None;
                }
                let mut run = st.run(events, &plan, p);
                let mut parser = StreamParser::new(ctx.mode);
                let (mut sent_r, mut sent_c, mut sent_tok) = (0usize, 0usize, 0usize);
                loop {
                    let step = match run.next().await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(stream_error(e)).await;
                            return None;
                        }
                    };
                    let done = matches!(step, Progress::Done);
                    // The parser gets the text no stop string can still cut: a match ends the
                    // text where it starts, and can start only in the held-back tail.
                    let text = chat_text(&run);
                    let settled = text.len() - run.stop_holdback(text);
                    if let Some(new) = text.get(parser.text().len()..settled) {
                        parser.push(new);
                    }
                    let sec = parser.sections();
                    let mut delta = serde_json::Map::new();
                    if sec.reasoning.len() > sent_r {
                        delta.insert("reasoning_content".into(), json!(&sec.reasoning[sent_r..]));
                        sent_r = sec.reasoning.len();
                    }
                    if sec.content.len() > sent_c {
                        delta.insert("content".into(), json!(&sec.content[sent_c..]));
                        sent_c = sec.content.len();
                    }
                    let lp = if ctx.logprobs
                        && run.ids.len() > sent_tok
                        && (!delta.is_empty() || done)
                    {
                        let v = chat_logprobs(&st, &run, sent_tok, run.ids.len());
                        sent_tok = run.ids.len();
                        v
                    } else {
                        Value::Null
                    };
                    if (!delta.is_empty() || !lp.is_null())
                        && tx.send(chunk(Value::Object(delta), None, lp)).await.is_err()
                    {
                        return None; // client gone: dropping `run` cancels the sequence
                    }
                    if done {
                        break;
                    }
                }
                let msg = parser.message();
                let mut delta = serde_json::Map::new();
                // Whatever the final parse adds beyond what was streamed (e.g. repairs).
                if let Some(rest) = msg.content.get(sent_c..).filter(|r| !r.is_empty())
                    && msg.content.is_char_boundary(sent_c)
                {
                    delta.insert("content".into(), json!(rest));
                }
                let calls = tool_calls_json(&msg.tool_calls, ctx.prior_calls);
                if !calls.is_empty() {
                    let indexed: Vec<Value> = calls
                        .into_iter()
                        .enumerate()
                        .map(|(k, mut c)| {
                            c["index"] = json!(k);
                            c
                        })
                        .collect();
                    delta.insert("tool_calls".into(), json!(indexed));
                }
                let finish = finish_str(run.finish, !msg.tool_calls.is_empty());
                if !delta.is_empty()
                    && tx.send(chunk(Value::Object(delta), None, Value::Null)).await.is_err()
                {
                    return None;
                }
                let mut last = chunk(json!({}), Some(finish), Value::Null);
                if ctx.logprobs {
                    // Non-standard: the sampled ids, on the final chunk of the choice.
                    last = json_event(&json!({
                        "id": plan.id, "object": "chat.completion.chunk", "created": created,
                        "model": plan.model,
                        "choices": [{"index": index, "delta": {}, "logprobs": Value::Null,
                                     "finish_reason": finish, "token_ids": run.ids}],
                    }));
                }
                if tx.send(last).await.is_err() {
                    return None;
                }
                Some(run.ids.len())
            });
        }
        let mut completion_tokens = 0;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Some(n)) => completion_tokens += n,
                _ => return,
            }
        }
        if include_usage {
            let usage = Usage::new(plan.prompts[0].len(), completion_tokens);
            let chunk = json!({
                "id": plan.id, "object": "chat.completion.chunk", "created": created,
                "model": plan.model, "choices": [], "usage": usage,
            });
            let _ = tx.send(json_event(&chunk)).await;
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    sse_response(rx)
}
