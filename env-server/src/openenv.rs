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
//! agentgen's episodes end with the model's final message, which OpenEnv has no action for:
//! `{"type": "answer", "content": "..."}` runs the verifier and answers `done: true` with the
//! reward. `reset` takes `{"task_id": "family@version/instance/task"}` or `{"seed": S,
//! "index": I}` (task I of run seed S, as `envs export --seed S` draws them).

use std::sync::Arc;

use agentgen_environments::TaskSpec;
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};

use crate::ServerConfig;
use crate::engine::{CallOutcome, Engine, Episode, release, transcript};

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
                    "content": {"type": "string", "description": "the final assistant message; ends the episode"}},
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
                "reward_components": {"type": "object"}
            }
        },
        "state": {
            "type": "object",
            "properties": {
                "episode_id": {"type": ["string", "null"]},
                "step_count": {"type": "integer", "minimum": 0},
                "task_id": {"type": ["string", "null"]},
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

struct Conn {
    episode: Option<Episode>,
    episode_id: Option<String>,
    resets: u64,
}

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
    let mut conn = Conn { episode: None, episode_id: None, resets: 0 };
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
        let (reply, close) = handle(&engine, &mut conn, &text).await;
        if let Some(reply) = reply
            && socket.send(WsMessage::Text(reply.to_string().into())).await.is_err()
        {
            break;
        }
        if close {
            break;
        }
    }
    if let Some(ep) = conn.episode.take() {
        release(ep);
    }
    let _ = socket.send(WsMessage::Close(None)).await;
}

/// One client message: the reply (none for `close`) and whether to close.
async fn handle(engine: &Arc<Engine>, conn: &mut Conn, text: &str) -> (Option<Value>, bool) {
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (Some(error(format!("Invalid JSON: {e}"), "INVALID_JSON")), false),
    };
    let data = msg.get("data").cloned().unwrap_or_else(|| json!({}));
    let reply = match msg.get("type").and_then(Value::as_str).unwrap_or("") {
        "reset" => reset(engine, conn, &data).await,
        "step" => step(conn, data).await,
        "state" => {
            let ep = conn.episode.as_ref();
            json!({"type": "state", "data": {
                "episode_id": conn.episode_id,
                "step_count": ep.map_or(0, Episode::steps),
                "task_id": ep.map(|e| e.task().id.clone()),
                "done": ep.is_none_or(|e| e.verdict().is_some()),
            }})
        }
        "close" => return (None, true),
        other => error(format!("Unknown message type: {other}"), "UNKNOWN_TYPE"),
    };
    (Some(reply), false)
}

async fn reset(engine: &Arc<Engine>, conn: &mut Conn, data: &Value) -> Value {
    let id = match (data.get("task_id").and_then(Value::as_str), data.get("seed")) {
        (Some(id), _) => id.to_owned(),
        (None, Some(seed)) => {
            let (Some(seed), Some(index)) =
                (seed.as_u64(), data.get("index").map_or(Some(0), Value::as_u64))
            else {
                return error(
                    "`seed` and `index` must be non-negative integers",
                    "VALIDATION_ERROR",
                );
            };
            engine.catalog().task_ref(seed, index).to_string()
        }
        (None, None) => {
            return error(
                "reset needs `task_id` (family@version/instance/task) or `seed` (and `index`)",
                "VALIDATION_ERROR",
            );
        }
    };
    // The previous episode is freed before the new one takes a permit.
    if let Some(old) = conn.episode.take() {
        release(old);
    }
    match engine.start_with(None, &id).await {
        Ok(ep) => {
            conn.resets += 1;
            conn.episode_id = Some(
                data.get("episode_id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{id}#{}", conn.resets), str::to_owned),
            );
            let task = Arc::clone(ep.task());
            conn.episode = Some(ep);
            observation(
                json!({
                    "task_id": task.id,
                    "messages": [
                        {"role": "system", "content": task.system_prompt},
                        {"role": "user", "content": task.user_prompt},
                    ],
                    "tools": mcp_tools(&task),
                }),
                None,
                false,
            )
        }
        Err(e) => {
            let code = match e.code {
                "sessions.full" => "CAPACITY_REACHED",
                "task.invalid" => "VALIDATION_ERROR",
                _ => "EXECUTION_ERROR",
            };
            error(e.message, code)
        }
    }
}

async fn step(conn: &mut Conn, action: Value) -> Value {
    let Some(mut ep) = conn.episode.take() else {
        return error("no episode: send reset first", "SESSION_ERROR");
    };
    if ep.verdict().is_some() {
        conn.episode = Some(ep);
        return error("the episode is done: send reset for a new one", "SESSION_ERROR");
    }
    let kind = action.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    let (reply, ep) = match kind.as_str() {
        "list_tools" => {
            let tools = mcp_tools(ep.task());
            (observation(json!({"tools": tools}), None, false), Some(ep))
        }
        "call_tool" => {
            let Some(name) = action.get("tool_name").and_then(Value::as_str).map(str::to_owned)
            else {
                conn.episode = Some(ep);
                return error("call_tool needs `tool_name`", "VALIDATION_ERROR");
            };
            let args = match action.get("arguments") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(v) => v.to_string(),
            };
            let joined = tokio::task::spawn_blocking(move || {
                let out = ep.call(&name, args);
                (ep, name, out)
            })
            .await;
            let Ok((ep, name, out)) = joined else {
                return error("the tool call failed to run", "EXECUTION_ERROR");
            };
            match out {
                CallOutcome::Observation(r) => {
                    let err = r.is_error.then(
                        || json!({"error_type": "execution_error", "message": r.content.clone()}),
                    );
                    let obs = json!({"tool_name": name, "result": r.content, "error": err});
                    (observation(obs, None, false), Some(ep))
                }
                CallOutcome::UnknownTool => {
                    let msg = format!("unknown tool: {name}");
                    let obs = json!({
                        "tool_name": name,
                        "result": json!({"error": msg}).to_string(),
                        "error": {"error_type": "tool_not_found", "message": msg},
                    });
                    (observation(obs, None, false), Some(ep))
                }
                CallOutcome::Failed(f) => {
                    release(ep);
                    (error(format!("the environment failed: {}", f.code), "EXECUTION_ERROR"), None)
                }
            }
        }
        "answer" => {
            let content = action.get("content").and_then(Value::as_str).unwrap_or("").to_owned();
            let joined = tokio::task::spawn_blocking(move || {
                let output = [json!({"type": "message", "role": "assistant", "content": content})];
                let (answer, messages) = transcript(ep.task(), &output);
                let v = ep.verify(&answer, &messages);
                (ep, v)
            })
            .await;
            let Ok((ep, v)) = joined else {
                return error("the verifier failed to run", "EXECUTION_ERROR");
            };
            match v {
                Ok(v) => {
                    let components: serde_json::Map<String, Value> = v
                        .checks
                        .iter()
                        .map(|c| (c.name.clone(), json!(if c.passed { 1.0 } else { 0.0 })))
                        .collect();
                    let obs = json!({"passed": v.passed, "reward_components": components});
                    // The verified episode keeps its verdict for `state`; its session (and
                    // worker) was released by `verify`.
                    (observation(obs, Some(f64::from(v.reward)), true), Some(ep))
                }
                Err(f) => {
                    release(ep);
                    (error(format!("the environment failed: {}", f.code), "EXECUTION_ERROR"), None)
                }
            }
        }
        other => {
            conn.episode = Some(ep);
            return error(
                format!("unknown action type {other:?} (list_tools, call_tool, answer)"),
                "VALIDATION_ERROR",
            );
        }
    };
    conn.episode = ep;
    reply
}
