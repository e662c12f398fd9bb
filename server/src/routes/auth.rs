//! The `/v1/*` guard (bearer key, JSON content type, body read within a deadline) and the
//! bearer-key check other routers reuse.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use super::St;
use crate::api::ApiError;

/// Every `/v1/*` request: the bearer key (when one is configured), a JSON content type on
/// requests with a body, and the body read within `body_timeout`.
pub(super) async fn guard(State(st): St, req: Request, next: Next) -> Response {
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
            let too_large = std::error::Error::source(&e).is_some_and(
                <dyn std::error::Error + 'static>::is::<http_body_util::LengthLimitError>,
            );
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
