//! NeMo Gym's resources-server contract, as its own code defines it (NVIDIA-NeMo/Gym, read
//! at commit 07d6b0d):
//!
//! - `nemo_gym/base_resources_server.py`: `SimpleResourcesServer.setup_webserver` registers
//!   `POST /seed_session`, `POST /close_session` and `POST /verify`; `BaseRunRequest`
//!   (`responses_create_params`), `BaseVerifyRequest` (+ `response`), `BaseVerifyResponse`
//!   (the request echoed + `reward`, optional `mask_sample`, `failure_kind`,
//!   `failure_reason`), `BaseMultiRewardVerifyResponse` (`reward_components`);
//! - `nemo_gym/server_utils.py`: the session is a cookie set on the first response and sent
//!   back on every later request (`SESSION_ID_KEY`, `setup_session_middleware`), `GET /`
//!   answers `{"status": "ok"}` (`setup_liveness`);
//! - `resources_servers/example_session_state_mgmt/app.py` and its `tests/test_app.py`: a
//!   tool is `POST /{tool_name}` with the arguments object as the body, keyed to the
//!   session by the cookie; `/verify` judges the session's state;
//! - `responses_api_agents/simple_agent/app.py`: the agent posts the dataset row to
//!   `/seed_session`, forwards the cookies it got to every tool call and to `/verify`, and
//!   gives the model the raw body of a tool response whatever its status ("Resource-server
//!   errors are valid model-visible tool outputs").
//!
//! Here: `/seed_session` reads the row's `task_id` and starts an episode bound to a fresh,
//! unguessable cookie (a seed with a live cookie frees that session first); `/{tool}` runs one
//! call and answers the observation text (200, tool errors included; a tool the task does
//! not offer is 404 `{"error": "unknown tool: X"}`, as FastAPI answers an unknown route);
//! `/verify` verifies the session's current user turn with the response's final message and
//! answers the request echoed plus `reward`, `reward_components` (check name → 0/1, no
//! details: they can name hidden data), `turn`, `turns_total`, `turn_reward` and `done`. A
//! passed turn that is not the task's last keeps the session (same cookie) and answers
//! `done: false` with `next_user_message` (a Responses-API input message: append it to
//! `responses_create_params.input` with the turn's output, call the tools, `/verify` again);
//! the last turn or a failed one ends the episode (`reward` = the episode's: the minimum of
//! the turns' rewards when every turn passed, else 0, as `generate` scores it) and frees the
//! session. `/close_session` frees it without verifying.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::catalog::row_task_id;
use crate::engine::{CallOutcome, Engine, release, release_now};
use crate::http::{ApiError, body_bytes, clear_cookie, json_object, session_token, set_cookie};

type St = State<Arc<Engine>>;

/// `GET /`: liveness (NeMo Gym's `setup_liveness`).
pub async fn liveness() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `POST /seed_session` with a dataset row.
pub async fn seed_session(
    State(engine): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let row = json_object(&body_bytes(body)?)?;
    let row = Value::Object(row);
    let Some(id) = row_task_id(&row) else {
        return Err(ApiError::unprocessable(
            "the row carries no task_id (a top-level `task_id` as `agentgen envs export \
             --format nemo-gym` writes it)",
        ));
    };
    // A seed on a live session replaces it (the old episode is freed, not leaked).
    if let Some(old) = session_token(&headers).and_then(|t| engine.remove(&t)) {
        release_now(old).await;
    }
    let episode = engine.start(id).await?;
    let token = engine.insert(episode);
    let mut r = Json(json!({})).into_response();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(&token));
    Ok(r)
}

/// `POST /close_session`: free the cookie's session without verifying (idempotent, as NeMo
/// Gym's contract asks).
pub async fn close_session(State(engine): St, headers: HeaderMap) -> Response {
    let closed = session_token(&headers).and_then(|t| engine.remove(&t));
    let was_open = closed.is_some();
    if let Some(slot) = closed {
        release_now(slot).await;
    }
    let mut r = Json(json!({"closed": was_open})).into_response();
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    r
}

/// `POST /{tool}` with the arguments object.
pub async fn call_tool(
    State(engine): St,
    Path(tool): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let token = session_token(&headers).ok_or_else(ApiError::no_session)?;
    let slot = engine.get(&token).ok_or_else(ApiError::unknown_session)?;
    let bytes = body_bytes(body)?;
    let arguments = if bytes.iter().all(u8::is_ascii_whitespace) {
        "{}".to_owned()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let name = tool.clone();
    let outcome = tokio::task::spawn_blocking(move || slot.with(|ep| ep.call(&name, arguments)))
        .await
        .map_err(|e| ApiError::internal(format!("tool call: {e}")))?
        .ok_or_else(|| ApiError::internal("the session's lock is poisoned"))?;
    Ok(match outcome {
        CallOutcome::Observation(r) => observation_response(StatusCode::OK, r.content),
        CallOutcome::UnknownTool => {
            (StatusCode::NOT_FOUND, Json(json!({"error": format!("unknown tool: {tool}")})))
                .into_response()
        }
        CallOutcome::Failed(f) => ApiError::env_failed(&f).into_response(),
    })
}

/// The observation text as the body: JSON when it is JSON, plain text otherwise.
fn observation_response(status: StatusCode, content: String) -> Response {
    let ct = if serde_json::from_str::<serde::de::IgnoredAny>(&content).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, ct)], content).into_response()
}

/// `POST /verify` with the row plus the Responses-API `response` of the current user turn.
pub async fn verify(
    State(engine): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let token = session_token(&headers).ok_or_else(ApiError::no_session)?;
    let mut req = json_object(&body_bytes(body)?)?;
    if !req.get("responses_create_params").is_some_and(Value::is_object) {
        return Err(ApiError::unprocessable("`responses_create_params` (an object) is required"));
    }
    let output: Vec<Value> = match req.get("response") {
        Some(Value::Object(r)) => match r.get("output") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(ApiError::unprocessable("`response.output` must be a list")),
        },
        _ => {
            return Err(ApiError::unprocessable(
                "`response` (a Responses-API response object) is required",
            ));
        }
    };
    let row_id = row_task_id(&Value::Object(req.clone())).map(str::to_owned);
    let slot = engine.get(&token).ok_or_else(ApiError::unknown_session)?;
    let judged = tokio::task::spawn_blocking(move || {
        slot.with(|ep| {
            // The row must be the session's task (a verify of another task's row is refused
            // and leaves the session as it was).
            if let Some(id) = &row_id
                && *id != ep.task().id
            {
                return Err(ApiError::bad_request(format!(
                    "the row is task {id} but this session plays task {}",
                    ep.task().id
                )));
            }
            Ok(ep.verify(&output))
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("verify: {e}")))?
    .ok_or_else(|| ApiError::internal("the session's lock is poisoned"))??;
    let done = judged.as_ref().is_ok_and(super::engine::TurnOutcome::done) || judged.is_err();
    if done && let Some(slot) = engine.remove(&token) {
        release(slot);
    }
    match judged {
        Ok(o) => {
            engine.count_verified(o.done());
            let components: Map<String, Value> = o
                .verdict
                .checks
                .iter()
                .map(|c| (c.name.clone(), json!(if c.passed { 1.0 } else { 0.0 })))
                .collect();
            req.insert("reward".into(), json!(f64::from(o.reward())));
            req.insert("reward_components".into(), Value::Object(components));
            req.insert("passed".into(), json!(o.passed()));
            req.insert("turn".into(), json!(o.turn));
            req.insert("turns_total".into(), json!(o.turns_total));
            req.insert("turn_reward".into(), json!(f64::from(o.verdict.reward)));
            req.insert("done".into(), json!(o.done()));
            if let Some(next) = &o.next_user {
                req.insert("next_user_message".into(), json!({"role": "user", "content": next}));
            } else {
                let rewards: Vec<f64> = o.turn_rewards.iter().map(|r| f64::from(*r)).collect();
                req.insert("turn_rewards".into(), json!(rewards));
            }
        }
        Err(f) => {
            engine.count_verified(true);
            // The environment failed, not the policy: reward 0, masked (NeMo Gym's
            // `mask_sample`), with the failure named.
            req.insert("reward".into(), json!(0.0));
            req.insert("done".into(), json!(true));
            req.insert("mask_sample".into(), json!(true));
            req.insert("failure_kind".into(), json!(format!("agentgen:{}", f.code)));
            // Not the detail: a verifier's failure can quote hidden data.
            req.insert(
                "failure_reason".into(),
                json!(format!("the environment failed while verifying ({})", f.code)),
            );
        }
    }
    let mut r = Json(Value::Object(req)).into_response();
    if done {
        r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    }
    Ok(r)
}
