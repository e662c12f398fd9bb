//! `agentgen envs serve` and `agentgen envs export --format nemo-gym`. Wiring only: the
//! routes, sessions and rows live in the `agentgen-env-server` crate; connection limits,
//! graceful shutdown and the API key check are `agentgen-server`'s; the registry of built-in
//! families plus `--envs` packages is the environments crate's (`registry_with_packages`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentgen_env_server::{Catalog, Engine, EngineConfig, ServerConfig, nemo_gym_row};
use agentgen_environments::Registry;
use anyhow::Context;

/// `envs serve` flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Only these built-in families (comma-separated); default all available (none when only
    /// `--envs` is given).
    #[arg(long, value_delimiter = ',')]
    pub families: Vec<String>,
    /// envpkg packages or folders of packages (comma-separated; `PATH@sha256:<hex>` pins).
    #[arg(long, value_delimiter = ',')]
    pub envs: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0: any free port; the address is printed on stderr).
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// Require `Authorization: Bearer <key>` with the key read from this variable (`GET /`
    /// and `GET /health` stay open).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Episodes alive at once (HTTP sessions and WebSocket episodes); a package episode
    /// holds one sandboxed Python worker. Beyond: 503 `sessions.full`.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_sessions: usize,
    /// An HTTP session (or WebSocket) with no request for this long is freed.
    #[arg(long, value_name = "S", default_value_t = 600.0)]
    pub idle_timeout_secs: f64,
    /// When all sessions are taken, how long `/seed_session` waits for one before answering
    /// 503 (0: at once). NeMo Gym's agents do not retry a 503: give them a wait.
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pub seed_wait_secs: f64,
    /// Sandboxed Python workers alive at once per package (each package episode holds one
    /// from seed to its end; idle ones are reused by the next episode). Default: two per core.
    /// Episodes beyond wait for a worker (`--worker-wait-secs`).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// How long a package episode waits for a free worker before 503 `workers.busy` (with
    /// `Retry-After`).
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub worker_wait_secs: f64,
    /// Largest request body / WebSocket message (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most connections open at once (later clients wait in the listen backlog).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Allow packages and families that run untrusted code without every sandbox layer.
    #[arg(long)]
    pub allow_weak_sandbox: bool,
}

/// `envs export` flags.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Row format (only `nemo-gym`).
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output JSONL file (`-`: stdout).
    #[arg(long)]
    pub out: PathBuf,
    /// Only these built-in families (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub families: Vec<String>,
    /// envpkg packages or folders of packages (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub envs: Vec<String>,
    /// Number of rows (tasks drawn as `generate` draws them).
    #[arg(long, default_value_t = 100)]
    pub tasks: u64,
    /// Run seed: which tasks are drawn.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Allow packages and families that run untrusted code without every sandbox layer.
    #[arg(long)]
    pub allow_weak_sandbox: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// NeMo Gym dataset rows (`responses_create_params` + `task_id`).
    NemoGym,
}

/// The registry of built-ins plus the admitted `--envs` packages (the environments crate's
/// `registry_with_packages`) and the selected names: `--families` plus every package (all
/// available built-ins when both are empty).
pub fn registry(
    families: &[String],
    envs: &[String],
    workers: usize,
) -> anyhow::Result<(Registry, Vec<String>)> {
    let (registry, packages) =
        agentgen_environments::envpkg::registry_with_packages(envs, workers.max(1))
            .map_err(|e| anyhow::anyhow!("--envs: {e}"))?;
    let mut names = families.to_vec();
    names.extend(packages);
    Ok((registry, names))
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::envs::allow_weak_sandbox(args.allow_weak_sandbox);
    let api_key = super::read_api_key(args.api_key_env.as_deref())?;
    let idle = Duration::try_from_secs_f64(args.idle_timeout_secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| {
            format!("--idle-timeout-secs wants a positive number, got {}", args.idle_timeout_secs)
        })?;
    anyhow::ensure!(args.max_sessions > 0, "--max-sessions must be at least 1");
    let seed_wait = Duration::try_from_secs_f64(args.seed_wait_secs).ok().with_context(|| {
        format!("--seed-wait-secs wants a number of seconds >= 0, got {}", args.seed_wait_secs)
    })?;
    if !args.host.is_loopback() && api_key.is_none() {
        eprintln!(
            "warning: serving on {} without an API key: anyone who can reach it can run the \
             environments (set --api-key-env VAR)",
            args.host
        );
    }
    let worker_wait =
        Duration::try_from_secs_f64(args.worker_wait_secs).ok().with_context(|| {
            format!(
                "--worker-wait-secs wants a number of seconds >= 0, got {}",
                args.worker_wait_secs
            )
        })?;
    anyhow::ensure!(args.workers != Some(0), "--workers must be at least 1");
    let workers = args.workers.unwrap_or_else(agentgen_env_server::engine::default_workers);
    // The pool keeps as many idle workers as may be alive, so every episode after the first
    // few reuses one (a fresh `Env` per episode).
    let (registry, names) = registry(&args.families, &args.envs, workers)?;
    let catalog = Catalog::new(registry, &names)?;
    catalog.check_tool_names(agentgen_env_server::is_route)?;
    let served = catalog.names().join(", ");
    let engine = Arc::new(Engine::new(
        catalog,
        EngineConfig {
            max_sessions: args.max_sessions,
            idle_timeout: idle,
            seed_wait,
            workers,
            worker_wait,
        },
    ));
    let limits = agentgen_server::ServeLimits {
        max_connections: args.max_connections.max(1),
        ..Default::default()
    };
    let rt = super::runtime()?;
    let cfg = ServerConfig { max_body_bytes: args.max_body_bytes.max(1024) };
    rt.block_on(async {
        let mut app = agentgen_env_server::router(Arc::clone(&engine), cfg);
        if let Some(key) = api_key {
            app = agentgen_server::require_api_key(app, key, &["/", "/health"]);
        }
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr().context("no local address")?;
        eprintln!("agentgen envs serve: {served} listening on http://{local}");
        agentgen_server::serve_with(listener, app, agentgen_server::shutdown_signal(), limits)
            .await?;
        let n = engine.clear();
        eprintln!("agentgen envs serve: shut down ({n} open session(s) freed)");
        anyhow::Ok(())
    })?;
    // WebSocket episodes end with their tasks when the runtime goes.
    drop(rt);
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    super::envs::allow_weak_sandbox(args.allow_weak_sandbox);
    let ExportFormat::NemoGym = args.format;
    let (registry, names) = registry(&args.families, &args.envs, 1)?;
    let catalog = Catalog::new(registry, &names)?;
    let mut text = String::new();
    for i in 0..args.tasks {
        let id = catalog.task_ref(args.seed, i).to_string();
        let (_, task) = catalog.task(&id)?;
        text.push_str(&serde_json::to_string(&nemo_gym_row(&task))?);
        text.push('\n');
    }
    if args.out.as_os_str() == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())?;
    } else {
        std::fs::write(&args.out, &text)
            .with_context(|| format!("writing {}", args.out.display()))?;
        eprintln!("{} task row(s) written to {}", args.tasks, args.out.display());
    }
    Ok(ExitCode::SUCCESS)
}
