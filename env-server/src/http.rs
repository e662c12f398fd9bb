//! HTTP helpers of the env server: the JSON error body, the session cookie, bounded body
//! reading.

use agentgen_environments::EnvFailure;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The session cookie's name (`Set-Cookie` on `/seed_session`; every later request of the
/// episode sends it back, as NeMo Gym's agents do with the cookies of the seed response).
pub const SESSION_COOKIE: &str = "agentgen_session";

/// A refused request: `{"error": message, "code": code, "detail": message}` with the status
/// (`detail` is where FastAPI, and so NeMo Gym's servers, put the message).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`session.missing`, `session.unknown`, `sessions.full`, ...).
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// Extra fields of the body.
    pub extra: Option<Value>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), extra: None }
    }
    /// 400 `request.invalid`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "request.invalid", message)
    }
    /// 422 `request.invalid` (a body of the wrong shape, as FastAPI answers).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "request.invalid", message)
    }
    /// 400 `task.invalid`: the row names no served task.
    pub fn bad_task(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "task.invalid", message)
    }
    /// 503 `sessions.full`.
    pub fn full(active: usize, max: usize) -> Self {
        ApiError {
            extra: Some(json!({"active_sessions": active, "max_sessions": max})),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sessions.full",
                format!(
                    "all {max} sessions are in use (--max-sessions); verify or close finished \
                     sessions, or retry later"
                ),
            )
        }
    }
    /// 503 `workers.busy`: every worker of the package stayed taken for the whole wait.
    pub fn workers_busy(package: &str, max: usize, waited: std::time::Duration) -> Self {
        ApiError {
            extra: Some(json!({"package": package, "workers": max})),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "workers.busy",
                format!(
                    "all {max} workers of package {package} stayed in use for {:.0} s \
                     (--workers, --worker-wait-secs); verify or close finished sessions, or \
                     retry later",
                    waited.as_secs_f64()
                ),
            )
        }
    }
    /// 502 with the environment failure's code (`env.timeout`, `env.crash`, ...).
    pub fn env_failed(f: &EnvFailure) -> Self {
        ApiError {
            extra: Some(json!({"env_code": f.code})),
            ..Self::new(StatusCode::BAD_GATEWAY, "env.failed", f.to_string())
        }
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// 400 `session.missing`.
    pub fn no_session() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "session.missing",
            format!("no session: POST /seed_session first and send its `{SESSION_COOKIE}` cookie"),
        )
    }
    /// 404 `session.unknown`.
    pub fn unknown_session() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "session.unknown",
            "unknown session: it was never seeded here, or it was verified, closed or freed \
             after the idle timeout",
        )
    }
    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut v = json!({"error": self.message, "code": self.code, "detail": self.message});
        if let (Some(Value::Object(extra)), Value::Object(m)) = (&self.extra, &mut v) {
            for (k, x) in extra {
                m.insert(k.clone(), x.clone());
            }
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// The body bytes, or the refusal (413 beyond the body limit).
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        let status = rej.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request.too_large"
        } else {
            "request.invalid"
        };
        ApiError::new(status, code, rej.body_text())
    })
}

/// The body as a JSON object, or 422.
pub fn json_object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::unprocessable("the body must be a JSON object")),
        Err(e) => Err(ApiError::unprocessable(format!("the body is not JSON: {e}"))),
    }
}

/// The session token of the request's cookie, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that clears the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("agentgen_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_missing_is_none() {
        let mut h = HeaderMap::new();
        assert_eq!(session_token(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; agentgen_session=abc ; b=2"));
        assert_eq!(session_token(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("agentgen_sessionx=1; =; ;;"));
        assert_eq!(session_token(&h), None);
    }

    #[test]
    fn error_bodies_carry_code_detail_and_extras() {
        let b = ApiError::full(3, 3).body();
        assert_eq!(b["code"], "sessions.full");
        assert_eq!(b["max_sessions"], 3);
        assert_eq!(b["error"], b["detail"]);
    }
}
