//! `agentgen serve`: the OpenAI-compatible server over the local engine. Wiring only: the
//! routes live in the `agentgen-server` crate.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentgen_inference::{DeviceKind, Engine, EngineOptions};
use agentgen_server::{EngineBackend, ServerConfig};
use anyhow::Context;

/// Serve a checkpoint over an OpenAI-compatible HTTP API.
///
/// Routes: `GET /health`, `GET /v1/models`, `POST /v1/completions` (prompt text or token ids;
/// max_tokens, temperature, top_p, top_k, seed, stop, n, logprobs, stream) and
/// `POST /v1/chat/completions` (messages + tools encoded in the DeepSeek-V3.2 format; thinking
/// via `{"thinking": {"type": "enabled"}}` or `{"chat_template_kwargs": {"thinking": true}}`;
/// replies carry reasoning_content, content and tool_calls). Requests of all clients are
/// batched by the engine. Stops gracefully on SIGINT/SIGTERM.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checkpoint folder (config.json + safetensors), e.g. from `agentgen model init`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Address to listen on (loopback by default; use 0.0.0.0 to expose it).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// TCP port (0 picks a free one; the chosen address is printed on stderr).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Name of an environment variable holding the API key; clients must then send
    /// `Authorization: Bearer <key>` on /v1/*.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Model name(s) served (repeatable); default: `deepseek-ai/DeepSeek-V3.2`, the name
    /// `rollout` and `generate --policy http` ask for by default.
    #[arg(long = "served-model-name", value_name = "NAME")]
    pub served_model_name: Vec<String>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, value_name = "DEVICE", value_parser = crate::commands::policy::device, default_value = "cpu")]
    pub device: DeviceKind,
    /// Most sequences the engine batches per step.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Default max_tokens of chat requests that set none.
    #[arg(long, default_value_t = 4096)]
    pub default_max_tokens: usize,
    /// Seed of requests that carry no `seed` (mixed with a request counter).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// On SIGINT/SIGTERM, how long requests in flight may finish before they are cancelled.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub shutdown_timeout: f64,
    /// Most time a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub header_timeout: f64,
    /// Most time a request body may take to arrive (408 beyond).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub body_timeout: f64,
    /// Most connections open at once (later clients wait in the listen backlog).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
}

fn secs(flag: &str, v: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{flag} wants a positive number of seconds, got {v}"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let api_key = super::read_api_key(args.api_key_env.as_deref())?;
    let limits = agentgen_server::ServeLimits {
        header_timeout: secs("header-timeout", args.header_timeout)?,
        max_connections: args.max_connections.max(1),
        shutdown_timeout: secs("shutdown-timeout", args.shutdown_timeout)?,
    };
    let body_timeout = secs("body-timeout", args.body_timeout)?;
    if !args.host.is_loopback() && api_key.is_none() {
        eprintln!(
            "warning: serving on {} without an API key: anyone who can reach it can use the \
             model (set --api-key-env VAR)",
            args.host
        );
    }
    let names = if args.served_model_name.is_empty() {
        vec![agentgen_codec::DEFAULT_MODEL_NAME.to_owned()]
    } else {
        args.served_model_name.clone()
    };
    let device = args.device;
    let opts =
        EngineOptions { device, max_batch: args.max_batch.max(1), ..EngineOptions::default() };
    let handle = Engine::load(&args.model, opts)
        .with_context(|| format!("while loading the model from {}", args.model.display()))?;
    let cfg = ServerConfig {
        model_names: names.clone(),
        api_key,
        max_body_bytes: args.max_body_bytes,
        seed: args.seed,
        default_max_tokens: args.default_max_tokens.max(1),
        body_timeout,
        ..ServerConfig::default()
    };
    let app = agentgen_server::router(Arc::new(EngineBackend::new(handle)), cfg)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr().context("no local address")?;
        eprintln!("agentgen serve: model {} listening on http://{local}", names[0]);
        agentgen_server::serve_with(listener, app, agentgen_server::shutdown_signal(), limits)
            .await?;
        eprintln!("agentgen serve: shut down");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
