//! One module per subcommand; each exposes its clap type and `run(..) -> anyhow::Result<ExitCode>`.

pub mod bench;
pub mod calibrate;
pub mod codec;
pub mod config;
pub mod endpoint;
pub mod envs;
pub mod envserve;
pub mod generate;
pub mod inspect;
pub mod model;
pub mod policy;
pub mod report;
pub mod rollout;
pub mod runargs;
pub mod sampling;
pub mod seal;
pub mod serve;
pub mod store;
pub mod synth;
pub mod validate;

/// The multi-threaded tokio runtime a command runs on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// The summary's last line: where the files went (None: the run had no folder).
pub(crate) fn written_to(report: &agentgen_pipeline::RunReport) -> Option<String> {
    let m = report.manifest.as_ref()?;
    if let Some(url) = m.config.get("store_url").and_then(|v| v.as_str()) {
        return Some(format!(
            "shard {}/{} in {url}: {} part file(s) under {url}/data ({} train, {} rejected rows in \
             this shard), {url}/_shards/{:05}/manifest.json; when every shard is done: agentgen \
             seal {url} --shards {}",
            m.shard_index,
            m.shard_count,
            m.files.len(),
            m.counts.accepted,
            m.counts.rejected,
            m.shard_index,
            m.shard_count
        ));
    }
    let dir = &m.config["out"];
    let dir = dir.as_str().map_or_else(|| dir.to_string(), str::to_owned);
    let (train, rejected) = (m.counts.accepted, m.counts.rejected);
    Some(format!(
        "dataset in {dir}: {} part file(s) under {dir}/data ({train} train, {rejected} rejected rows in all), {dir}/manifest.json, {dir}/README.md",
        m.files.len()
    ))
}

/// Log to stderr: warnings with `--quiet`, else info, but the search index library
/// (tantivy) only from warn on (its INFO lines drowned the progress bar); colours only on a
/// terminal. `RUST_LOG` wins.
pub(crate) fn init_tracing(quiet: bool) {
    use std::io::IsTerminal;
    let filter = if quiet { "warn" } else { "info,tantivy=warn" };
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// `--api-key-env VAR` (endpoint policies, `serve`): the key, read once from the named
/// variable; a variable that is unset or empty is an error naming it.
pub(crate) fn read_api_key(var: Option<&str>) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    let Some(var) = var else { return Ok(None) };
    let key = std::env::var(var)
        .with_context(|| format!("--api-key-env {var}: the variable is not set"))?;
    anyhow::ensure!(!key.trim().is_empty(), "--api-key-env {var}: the variable is empty");
    Ok(Some(key.trim().to_owned()))
}
