//! OpenEnv's server API on the same session engine, as OpenEnv's own code defines it
//! (meta-pytorch/OpenEnv, read at commit 685de41):
//!
//! - `src/openenv/core/env_server/http_server.py`: `GET /health` (`HealthResponse`),
//!   `GET /metadata` (`EnvironmentMetadata`), `GET /schema` (`SchemaResponse`: `action`,
//!   `observation`, `state` JSON schemas) and `/ws`, one environment per WebSocket
//!   connection: the client sends `{"type": "reset" | "step" | "state" | "close", "data": ...}`
//!   and gets `{"type": "observation", "data": {"observation": {...}, "reward", "done"}}`,
//!   `{"type": "state", "data": {...}}` or `{"type": "error", "data": {"message", "code"}}`
//!   (`WSErrorCode`: `INVALID_JSON`, `UNKNOWN_TYPE`, `VALIDATION_ERROR`, `EXECUTION_ERROR`,
//!   `CAPACITY_REACHED`, `SESSION_ERROR`);
//! - `src/openenv/core/env_server/types.py` (the messages, `State` with `episode_id` and
//!   `step_count`) and `serialization.py` (`serialize_observation`: `reward` and `done` lifted
//!   out of the observation);
//! - `src/openenv/core/env_server/mcp_types.py`: the actions `{"type": "list_tools"}` and
//!   `{"type": "call_tool", "tool_name", "arguments"}`, `ListToolsObservation.tools` as
//!   `{"name", "description", "input_schema"}`, `CallToolObservation` (`tool_name`,
//!   `result`, `error: {"error_type", "message"}`).
//!
//! - the same file's HTTP routes `POST /reset` (`ResetRequest`: `seed`, `episode_id` and
//!   extra fields), `POST /step` (`StepRequest`: `action`, optional `timeout_s`,
//!   `request_id`), both answering `{"observation", "reward", "done"}`, and `GET /state`;
//!   errors are FastAPI's `{"detail": ...}` with a 4xx/5xx status.
//!
//! agentgen's episodes end with the model's final message, which OpenEnv has no action for:
//! `{"type": "answer", "content": "..."}` runs the verifier on the current user turn (the
//! calls this episode ran in it, then the answer). A passed turn that is not the task's last
//! answers `done: false`, `reward: null` and the next user message (`next_user_message`, and
//! `messages` with it as the one new message); the last turn, or a failed one, answers
//! `done: true` with the episode's reward. `reset` takes `{"task_id":
//! "family@version/instance/task"}` or `{"seed": S, "index": I}` (task I of run seed S, as
//! `envs export --seed S` draws them).
//!
//! Over WebSocket a connection holds one place among `--max-sessions` and plays one episode
//! at a time; over HTTP an episode is a session of the engine's cookie table, the same as
//! NeMo Gym's (`POST /reset` sets the `agentgen_session` cookie, `/step` and `/state` send it
//! back; a `requests.Session` or any cookie jar does), freed when it ends, on another reset
//! with the cookie, or after the idle timeout.

use std::sync::Arc;

use agentgen_environments::TaskSpec;
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};

use crate::ServerConfig;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use crate::engine::{CallOutcome, Engine, Episode, TurnOutcome, release, release_now};
use crate::http::{ApiError, body_bytes, json_object, session_token, set_cookie};

/// `GET /health`.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "healthy"}))
}

/// `GET /metadata`.
pub async fn metadata(State((engine, _)): State<(Arc<Engine>, ServerConfig)>) -> Json<Value> {
    let names = engine.catalog().names().join(", ");
    Json(json!({
        "name": "agentgen",
        "description": format!(
            "agentgen environments (verifiable tool-use tasks): {names}. Reset with a task id \
             from `agentgen envs export`; step with list_tools, call_tool, then answer."
        ),
        "version": env!("CARGO_PKG_VERSION"),
        "author": "agentgen",
    }))
}

/// `GET /schema`.
pub async fn schema() -> Json<Value> {
    Json(json!({
        "action": {
            "oneOf": [
                {"type": "object", "properties": {"type": {"const": "list_tools"}}, "required": ["type"]},
                {"type": "object", "properties": {
                    "type": {"const": "call_tool"},
                    "tool_name": {"type": "string"},
                    "arguments": {"type": "object"}},
                 "required": ["type", "tool_name"]},
                {"type": "object", "properties": {
                    "type": {"const": "answer"},
                    "content": {"type": "string", "description": "the final assistant message of the current user turn; verifies it (the episode ends at the last turn or a failed one, else the next user message follows)"}},
                 "required": ["type", "content"]}
            ]
        },
        "observation": {
            "type": "object",
            "properties": {
                "task_id": {"type": "string"},
                "messages": {"type": "array", "description": "reset: the system and first user message"},
                "tools": {"type": "array"},
                "tool_name": {"type": "string"},
                "result": {"type": "string", "description": "the tool's observation text"},
                "error": {"type": ["object", "null"]},
                "passed": {"type": "boolean"},
                "reward_components": {"type": "object"},
                "turn": {"type": "integer", "minimum": 0},
                "turns_total": {"type": "integer", "minimum": 1},
                "turn_passed": {"type": "boolean"},
                "turn_reward": {"type": "number"},
                "turn_rewards": {"type": "array", "items": {"type": "number"}},
                "next_user_message": {"type": "object", "description": "the next user turn, when a verified turn continues the episode"}
            }
        },
        "state": {
            "type": "object",
            "properties": {
                "episode_id": {"type": ["string", "null"]},
                "step_count": {"type": "integer", "minimum": 0},
                "task_id": {"type": ["string", "null"]},
                "turn": {"type": "integer", "minimum": 0},
                "turns_total": {"type": "integer", "minimum": 0},
                "done": {"type": "boolean"}
            }
        }
    }))
}

/// `/ws`: one episode at a time per connection.
pub async fn ws(
    State((engine, cfg)): State<(Arc<Engine>, ServerConfig)>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(cfg.max_body_bytes)
        .max_frame_size(cfg.max_body_bytes)
        .on_upgrade(move |socket| connection(socket, engine))
}

fn error(message: impl Into<String>, code: &str) -> Value {
    json!({"type": "error", "data": {"message": message.into(), "code": code}})
}

fn observation(obs: Value, reward: Option<f64>, done: bool) -> Value {
    json!({"type": "observation", "data": {"observation": obs, "reward": reward, "done": done}})
}

/// OpenEnv's MCP tool shape.
fn mcp_tools(task: &TaskSpec) -> Vec<Value> {
    task.tools
        .iter()
        .map(|t| {
            let f = t.get("function").unwrap_or(t);
            json!({
                "name": f.get("name").cloned().unwrap_or(Value::Null),
                "description": f.get("description").cloned().unwrap_or_else(|| json!("")),
                "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
            })
        })
        .collect()
}

/// A refused action or reset: the message and OpenEnv's `WSErrorCode`.
struct Refusal {
    message: String,
    code: &'static str,
}

impl Refusal {
    fn new(message: impl Into<String>, code: &'static str) -> Self {
        Refusal { message: message.into(), code }
    }

    fn ws(self) -> Value {
        error(self.message, self.code)
    }

    /// The HTTP answer of the same refusal.
    fn http(self) -> ApiError {
        let (status, code) = match self.code {
            "VALIDATION_ERROR" => (StatusCode::UNPROCESSABLE_ENTITY, "request.invalid"),
            "SESSION_ERROR" => (StatusCode::CONFLICT, "episode.done"),
            _ => (StatusCode::BAD_GATEWAY, "env.failed"),
        };
        ApiError::new(status, code, self.message)
    }

    /// The WebSocket refusal of the engine's refusal to start an episode.
    fn of(e: ApiError) -> Self {
        let code = match e.code {
            "sessions.full" | "workers.busy" => "CAPACITY_REACHED",
            "task.invalid" => "VALIDATION_ERROR",
            _ => "EXECUTION_ERROR",
        };
        Refusal::new(e.message, code)
    }
}

/// What one step gave: OpenEnv's `{"observation", "reward", "done"}`.
struct Reply {
    observation: Value,
    reward: Option<f64>,
    done: bool,
    /// A user turn was verified.
    verified: bool,
}

impl Reply {
    fn data(&self) -> Value {
        json!({"observation": self.observation, "reward": self.reward, "done": self.done})
    }
}

/// The task id a reset names: `task_id`, or task `index` of run `seed`.
fn reset_task(engine: &Engine, data: &Value) -> Result<String, Refusal> {
    match (data.get("task_id").and_then(Value::as_str), data.get("seed")) {
        (Some(id), _) => Ok(id.to_owned()),
        (None, Some(seed)) => {
            let (Some(seed), Some(index)) =
                (seed.as_u64(), data.get("index").map_or(Some(0), Value::as_u64))
            else {
                return Err(Refusal::new(
                    "`seed` and `index` must be non-negative integers",
                    "VALIDATION_ERROR",
                ));
            };
            Ok(engine.catalog().task_ref(seed, index).to_string())
        }
        (None, None) => Err(Refusal::new(
            "reset needs `task_id` (family@version/instance/task) or `seed` (and `index`)",
            "VALIDATION_ERROR",
        )),
    }
}

/// The observation of a reset: the task id, the system and first user message, the tools.
fn reset_observation(ep: &Episode) -> Value {
    let task = ep.task();
    json!({
        "task_id": task.id,
        "episode_id": ep.episode_id,
        "turn": 0,
        "turns_total": task.user_turns(),
        "messages": [
            {"role": "system", "content": task.system_prompt},
            {"role": "user", "content": task.user_prompt},
        ],
        "tools": mcp_tools(task),
    })
}

/// OpenEnv's `State` of an episode (or of none).
fn state_of(ep: Option<&Episode>) -> Value {
    json!({
        "episode_id": ep.map(|e| e.episode_id.clone()),
        "step_count": ep.map_or(0, Episode::steps),
        "task_id": ep.map(|e| e.task().id.clone()),
        "turn": ep.map_or(0, Episode::turn),
        "turns_total": ep.map_or(0, |e| e.task().user_turns()),
        "done": ep.is_none_or(Episode::done),
    })
}

/// Start an episode of task `id` for a reset with `data` (`permit`: the episode's own place,
/// or none when its WebSocket connection holds one).
async fn start(
    engine: &Arc<Engine>,
    id: &str,
    data: &Value,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Episode, ApiError> {
    let mut ep = engine.start_with(permit, id).await?;
    if let Some(id) = data.get("episode_id").and_then(Value::as_str) {
        ep.episode_id = id.chars().take(256).collect();
    }
    Ok(ep)
}

/// The observation of a verified turn.
fn turn_reply(o: &TurnOutcome) -> Reply {
    let components: serde_json::Map<String, Value> = o
        .verdict
        .checks
        .iter()
        .map(|c| (c.name.clone(), json!(if c.passed { 1.0 } else { 0.0 })))
        .collect();
    let mut obs = json!({
        "passed": o.passed(),
        "turn": o.turn,
        "turns_total": o.turns_total,
        "turn_passed": o.verdict.passed,
        "turn_reward": f64::from(o.verdict.reward),
        "reward_components": components,
    });
    if let Some(next) = &o.next_user {
        obs["next_user_message"] = json!({"role": "user", "content": next});
        obs["messages"] = json!([{"role": "user", "content": next}]);
    }
    if o.done() {
        obs["turn_rewards"] =
            json!(o.turn_rewards.iter().map(|r| f64::from(*r)).collect::<Vec<_>>());
    }
    // OpenEnv reports the reward when the episode ends.
    Reply {
        observation: obs,
        reward: o.done().then(|| f64::from(o.reward())),
        done: o.done(),
        verified: true,
    }
}

/// Play one action on `ep` (blocking: a call or a verification runs here).
fn act(ep: &mut Episode, action: &Value) -> Result<Reply, Refusal> {
    if ep.done() {
        return Err(Refusal::new("the episode is done: send reset for a new one", "SESSION_ERROR"));
    }
    match action.get("type").and_then(Value::as_str).unwrap_or("") {
        "list_tools" => Ok(Reply {
            observation: json!({"tools": mcp_tools(ep.task())}),
            reward: None,
            done: false,
            verified: false,
        }),
        "call_tool" => {
            let Some(name) = action.get("tool_name").and_then(Value::as_str) else {
                return Err(Refusal::new("call_tool needs `tool_name`", "VALIDATION_ERROR"));
            };
            let args = match action.get("arguments") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(v) => v.to_string(),
            };
            match ep.call(name, args) {
                CallOutcome::Observation(r) => {
                    let err = r.is_error.then(
                        || json!({"error_type": "execution_error", "message": r.content.clone()}),
                    );
                    let obs = json!({"tool_name": name, "result": r.content, "error": err});
                    Ok(Reply { observation: obs, reward: None, done: false, verified: false })
                }
                CallOutcome::UnknownTool => {
                    let msg = format!("unknown tool: {name}");
                    let obs = json!({
                        "tool_name": name,
                        "result": json!({"error": msg}).to_string(),
                        "error": {"error_type": "tool_not_found", "message": msg},
                    });
                    Ok(Reply { observation: obs, reward: None, done: false, verified: false })
                }
                CallOutcome::Failed(f) => Err(Refusal::new(
                    format!("the environment failed: {}", f.code),
                    "EXECUTION_ERROR",
                )),
            }
        }
        "answer" => {
            let content = action.get("content").and_then(Value::as_str).unwrap_or("");
            match ep.answer(content) {
                Ok(o) => Ok(turn_reply(&o)),
                // Not the detail: a verifier's failure can quote hidden data.
                Err(f) => Err(Refusal::new(
                    format!("the environment failed while verifying: {}", f.code),
                    "EXECUTION_ERROR",
                )),
            }
        }
        other => Err(Refusal::new(
            format!("unknown action type {other:?} (list_tools, call_tool, answer)"),
            "VALIDATION_ERROR",
        )),
    }
}

// --- WebSocket ------------------------------------------------------------------------------

async fn connection(mut socket: WebSocket, engine: Arc<Engine>) {
    // A connection is a session (OpenEnv creates the environment on connect): it holds one of
    // the `--max-sessions` places for its whole life, so open sockets are bounded too.
    let _permit = match engine.permit() {
        Ok(p) => p,
        Err(e) => {
            let mut body = error(e.message, "CAPACITY_REACHED");
            body["data"]["max_sessions"] = json!(engine.config().max_sessions);
            let _ = socket.send(WsMessage::Text(body.to_string().into())).await;
            let _ = socket.send(WsMessage::Close(None)).await;
            return;
        }
    };
    let idle = engine.config().idle_timeout;
    let mut episode: Option<Episode> = None;
    loop {
        let msg = match tokio::time::timeout(idle, socket.recv()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(_)) | None) => break,
            Err(_) => {
                let _ = socket
                    .send(WsMessage::Text(
                        error("idle timeout: the episode was freed", "SESSION_ERROR")
                            .to_string()
                            .into(),
                    ))
                    .await;
                break;
            }
        };
        let text = match msg {
            WsMessage::Text(t) => t.to_string(),
            WsMessage::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            WsMessage::Close(_) => break,
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
        };
        let (reply, close) = handle(&engine, &mut episode, &text).await;
        if let Some(reply) = reply
            && socket.send(WsMessage::Text(reply.to_string().into())).await.is_err()
        {
            break;
        }
        if close {
            break;
        }
    }
    if let Some(ep) = episode.take() {
        release(ep);
    }
    let _ = socket.send(WsMessage::Close(None)).await;
}

/// One client message: the reply (none for `close`) and whether to close.
async fn handle(
    engine: &Arc<Engine>,
    episode: &mut Option<Episode>,
    text: &str,
) -> (Option<Value>, bool) {
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (Some(error(format!("Invalid JSON: {e}"), "INVALID_JSON")), false),
    };
    let data = msg.get("data").cloned().unwrap_or_else(|| json!({}));
    let reply = match msg.get("type").and_then(Value::as_str).unwrap_or("") {
        "reset" => match reset_task(engine, &data) {
            Err(r) => r.ws(),
            Ok(id) => {
                // The previous episode is freed before the new one takes a worker.
                if let Some(old) = episode.take() {
                    let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                }
                match start(engine, &id, &data, None).await {
                    Ok(ep) => {
                        let obs = reset_observation(&ep);
                        *episode = Some(ep);
                        observation(obs, None, false)
                    }
                    Err(e) => Refusal::of(e).ws(),
                }
            }
        },
        "step" => match episode.take() {
            None => error("no episode: send reset first", "SESSION_ERROR"),
            Some(mut ep) => {
                let joined = tokio::task::spawn_blocking(move || {
                    let r = act(&mut ep, &data);
                    (ep, r)
                })
                .await;
                match joined {
                    Ok((ep, r)) => {
                        let done = ep.done();
                        *episode = Some(ep);
                        match r {
                            Ok(reply) => {
                                if reply.verified {
                                    engine.count_verified(done);
                                }
                                json!({"type": "observation", "data": reply.data()})
                            }
                            Err(r) => r.ws(),
                        }
                    }
                    Err(_) => error("the step failed to run", "EXECUTION_ERROR"),
                }
            }
        },
        "state" => json!({"type": "state", "data": state_of(episode.as_ref())}),
        "close" => return (None, true),
        other => error(format!("Unknown message type: {other}"), "UNKNOWN_TYPE"),
    };
    (Some(reply), false)
}

// --- HTTP -----------------------------------------------------------------------------------

type St = State<(Arc<Engine>, ServerConfig)>;

/// The body as a JSON object (an empty body is `{}`).
fn body_object(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    Ok(Value::Object(json_object(&bytes)?))
}

/// `POST /reset`: a new episode bound to a fresh session cookie (a live session of the
/// request's cookie is freed first).
pub async fn http_reset(
    State((engine, _)): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let data = body_object(body)?;
    let id = reset_task(&engine, &data).map_err(Refusal::http)?;
    if let Some(old) = session_token(&headers).and_then(|t| engine.remove(&t)) {
        release_now(old).await;
    }
    let permit = engine.place().await?;
    let ep = start(&engine, &id, &data, Some(permit)).await?;
    let obs = reset_observation(&ep);
    let token = engine.insert(ep);
    let mut r = Json(json!({"observation": obs, "reward": null, "done": false})).into_response();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(&token));
    Ok(r)
}

/// `POST /step` with `{"action": {...}}` (OpenEnv's `StepRequest`); the session ends (its
/// place and worker freed, the cookie forgotten) when the episode does.
pub async fn http_step(
    State((engine, _)): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let token = session_token(&headers).ok_or_else(ApiError::no_session)?;
    let req = body_object(body)?;
    let Some(action) = req.get("action").filter(|a| a.is_object()).cloned() else {
        return Err(ApiError::unprocessable("`action` (an object) is required"));
    };
    let slot = engine.get(&token).ok_or_else(ApiError::unknown_session)?;
    let (result, done) = tokio::task::spawn_blocking(move || {
        slot.with(|ep| {
            let r = act(ep, &action);
            (r, ep.done())
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("step: {e}")))?
    .ok_or_else(|| ApiError::internal("the session's lock is poisoned"))?;
    if result.as_ref().is_ok_and(|r| r.verified) {
        engine.count_verified(done);
    }
    if done && let Some(slot) = engine.remove(&token) {
        release(slot);
    }
    let reply = result.map_err(Refusal::http)?;
    Ok(Json(reply.data()).into_response())
}

/// `GET /state`: the cookie's episode.
pub async fn http_state(
    State((engine, _)): St,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = session_token(&headers).ok_or_else(ApiError::no_session)?;
    let slot = engine.get(&token).ok_or_else(ApiError::unknown_session)?;
    let state = tokio::task::spawn_blocking(move || slot.with(|ep| state_of(Some(ep))))
        .await
        .map_err(|e| ApiError::internal(format!("state: {e}")))?
        .ok_or_else(|| ApiError::internal("the session's lock is poisoned"))?;
    Ok(Json(state))
}
