//! The endpoint preflight of the `http` and `chat` policies: before any rollout, one
//! `GET {endpoint}/v1/models` checks that the endpoint answers, that the key is accepted and
//! that the model is served. Every failure is [`Error::Preflight`] with one line (the CLI
//! exits 3); a 404 (servers without the route) is a warning and the model is taken on trust.

use std::time::Duration;

use serde_json::Value;

use crate::http::{HttpConfig, endpoint_url};
use crate::{Error, Result};

/// What the preflight settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    /// The model to request: `--api-model`, or the server's only model.
    pub model: String,
    /// Non-fatal findings (e.g. the server has no `/v1/models`).
    pub warnings: Vec<String>,
}

/// Check `cfg.endpoint` and the model (`model`: `--api-model`, `None` to use the server's only
/// one). `fallback` is the model used when the server has no `/v1/models` and none was named
/// (`None`: that is an error).
pub async fn preflight(
    cfg: &HttpConfig,
    model: Option<&str>,
    fallback: Option<&str>,
) -> Result<Preflight> {
    let url = endpoint_url(&cfg.endpoint, "models");
    let fail = |message: String| Err(Error::Preflight { message });
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return fail(format!("--endpoint must be an http(s) URL, got {:?}", cfg.endpoint));
    }
    let client = reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.request_timeout.min(Duration::from_secs(60)))
        .build()
        .map_err(|e| Error::Config { message: format!("cannot build the http client: {e}") })?;
    let mut req = client.get(&url);
    for (k, v) in &cfg.headers {
        req = req.header(k.trim(), v.trim());
    }
    if let Some(key) = &cfg.api_key {
        req = req.bearer_auth(key);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why = format!("{why}: {s}");
                src = s.source();
            }
            return fail(format!("endpoint preflight: cannot reach {url}: {why}"));
        }
    };
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let snippet: String = body.chars().take(160).collect();
    match status {
        200..=299 => {}
        404 => {
            let warning = format!("{url} answered 404; the model name is not checked");
            return match model.or(fallback) {
                Some(m) => Ok(Preflight { model: m.to_owned(), warnings: vec![warning] }),
                None => fail(format!("{warning}, and no --api-model was given")),
            };
        }
        401 | 403 => {
            return fail(format!(
                "endpoint preflight: {url} refused the credentials ({status}); check \
                 --api-key-env: {snippet}"
            ));
        }
        _ => return fail(format!("endpoint preflight: {url} answered {status}: {snippet}")),
    }
    let listed: Option<Vec<String>> = serde_json::from_str::<Value>(&body).ok().and_then(|v| {
        v.get("data")?
            .as_array()?
            .iter()
            .map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect()
    });
    let Some(listed) = listed else {
        return fail(format!("endpoint preflight: {url} did not return a model list: {snippet}"));
    };
    match model {
        Some(m) if listed.iter().any(|l| l == m) => {
            Ok(Preflight { model: m.to_owned(), warnings: Vec::new() })
        }
        Some(m) => fail(format!(
            "endpoint preflight: {url} does not serve the model {m:?}; it serves: {}",
            listed.join(", ")
        )),
        None => match listed.as_slice() {
            [only] => Ok(Preflight { model: only.clone(), warnings: Vec::new() }),
            [] => fail(format!("endpoint preflight: {url} lists no models")),
            several => fail(format!(
                "endpoint preflight: {url} serves several models, pick one with --api-model: {}",
                several.join(", ")
            )),
        },
    }
}
