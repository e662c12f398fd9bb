//! Wiring of the endpoint policies (`http`, `chat`) shared by the rollout commands: the
//! chat policy's flags, the `/v1/models` preflight before any rollout (a failure exits 3,
//! through `pipeline::Error::Preflight`), and the stop on a spent `--max-tokens-total` (exit 3).

use std::sync::Arc;
use std::time::Duration;

use agentgen_pipeline::{ChatConfig, ChatPolicy, HttpConfig, HttpPolicy, RunReport};
use anyhow::Context;

/// Flags of the endpoint policies beyond `--endpoint`, `--api-model` and `--api-key-env`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EndpointFlags {
    /// Chat policy: a JSON merge patch (RFC 7396) applied last to every request body, for
    /// server switches such as `{"thinking": {"type": "enabled"}}`; it cannot set `model`,
    /// `messages`, `tools` or `stream`, and `null` removes a field.
    #[arg(long, value_name = "JSON")]
    pub extra_body: Option<String>,
    /// Chat policy: one JSON body per turn instead of server-sent events.
    #[arg(long)]
    pub no_stream: bool,
    /// Chat policy: `tool_choice` sent with the tools (auto, required or none).
    #[arg(long, value_name = "auto|required|none", value_parser = ["auto", "required", "none"])]
    pub tool_choice: Option<String>,
    /// Chat policy: `parallel_tool_calls` sent with the tools.
    #[arg(long, value_name = "true|false")]
    pub parallel_tool_calls: Option<bool>,
    /// Chat policy: `reasoning_effort` (e.g. low, medium, high).
    #[arg(long, value_name = "LEVEL")]
    pub reasoning_effort: Option<String>,
    /// Extra request header `K: V` (repeatable).
    #[arg(long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Seconds one request may take (streams included) before it is retried [default: 600].
    #[arg(long, value_name = "SECS", allow_hyphen_values = true, value_parser = positive_secs)]
    pub request_timeout: Option<f64>,
    /// Most requests started per minute (all rollouts together) [default: unpaced].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = super::runargs::count::<u32>)]
    pub max_requests_per_minute: Option<u32>,
    /// Chat policy: stop cleanly (exit 3) once the endpoint's `usage` adds up to N prompt +
    /// completion tokens; rerun with `--resume` to continue.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = super::runargs::count::<u64>)]
    pub max_tokens_total: Option<u64>,
}

/// `--request-timeout`: a positive number of seconds.
fn positive_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
        Ok(t) => Err(format!("{t} is not a positive number of seconds")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// The transport settings of `--policy http|chat` (the key read from `--api-key-env`).
pub fn http_config(
    endpoint: String,
    api_key_env: Option<&str>,
    flags: &EndpointFlags,
    seed: u64,
) -> anyhow::Result<HttpConfig> {
    let api_key = super::read_api_key(api_key_env)?;
    let mut headers = Vec::new();
    for h in &flags.headers {
        let (k, v) = h.split_once(':').with_context(|| format!("--header {h:?}: want 'K: V'"))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut cfg = HttpConfig {
        endpoint,
        api_key,
        seed,
        headers,
        max_requests_per_minute: flags.max_requests_per_minute,
        ..HttpConfig::default()
    };
    if let Some(t) = flags.request_timeout {
        cfg.request_timeout = Duration::from_secs_f64(t);
        cfg.connect_timeout = cfg.connect_timeout.min(cfg.request_timeout);
    }
    Ok(cfg)
}

/// Check the endpoint and settle the model (`GET /v1/models`); a warning is printed, a
/// failure is `pipeline::Error::Preflight` (exit 3).
fn settle_model(
    rt: &tokio::runtime::Runtime,
    cfg: &mut HttpConfig,
    api_model: Option<&str>,
    fallback: Option<&str>,
) -> anyhow::Result<()> {
    let p = rt.block_on(agentgen_pipeline::preflight(cfg, api_model, fallback))?;
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    cfg.model = p.model;
    Ok(())
}

/// `--policy http`, after the preflight. Chat-only flags are refused.
pub fn http_policy(
    rt: &tokio::runtime::Runtime,
    mut cfg: HttpConfig,
    api_model: Option<&str>,
    flags: &EndpointFlags,
) -> anyhow::Result<Arc<HttpPolicy>> {
    let chat_only = [
        (flags.extra_body.is_some(), "--extra-body"),
        (flags.no_stream, "--no-stream"),
        (flags.tool_choice.is_some(), "--tool-choice"),
        (flags.parallel_tool_calls.is_some(), "--parallel-tool-calls"),
        (flags.reasoning_effort.is_some(), "--reasoning-effort"),
        (flags.max_tokens_total.is_some(), "--max-tokens-total"),
    ];
    if let Some((_, name)) = chat_only.iter().find(|(given, _)| *given) {
        anyhow::bail!("{name} needs --policy chat");
    }
    let fallback = HttpConfig::default().model;
    settle_model(rt, &mut cfg, api_model, Some(&fallback))?;
    Ok(Arc::new(HttpPolicy::try_new(cfg)?))
}

/// `--policy chat`, after the preflight.
pub fn chat_policy(
    rt: &tokio::runtime::Runtime,
    mut http: HttpConfig,
    api_model: Option<&str>,
    flags: &EndpointFlags,
) -> anyhow::Result<Arc<ChatPolicy>> {
    let extra_body = match &flags.extra_body {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .with_context(|| format!("--extra-body is not JSON: {text}"))?,
        ),
        None => None,
    };
    // The values' ranges were checked when the flags were parsed (`EndpointFlags`).
    settle_model(rt, &mut http, api_model, None)?;
    let cfg = ChatConfig {
        http,
        stream: !flags.no_stream,
        extra_body,
        tool_choice: flags.tool_choice.clone(),
        parallel_tool_calls: flags.parallel_tool_calls,
        reasoning_effort: flags.reasoning_effort.clone(),
        max_tokens_total: flags.max_tokens_total,
    };
    Ok(Arc::new(ChatPolicy::try_new(cfg)?))
}

/// The line a spent `--max-tokens-total` prints: the run stopped cleanly (exit 3).
pub fn budget_spent_line(report: &RunReport) -> String {
    let usage = report.usage.unwrap_or_default();
    let next = if report.manifest.is_some() {
        "finished rows are written, rerun with --resume and a larger budget to continue"
    } else {
        "the rows streamed so far are complete"
    };
    format!("stopped: --max-tokens-total is spent ({} tokens used); {next}", usage.total_tokens)
}
