//! The policy flags every rollout command shares (`generate`, `rollout`, `calibrate`; `synth`
//! takes the endpoint part): one set of names, value types, help texts and defaults, and one
//! way from the flags to a running policy. The device parser (`--device cpu|cuda|cuda:N`) of
//! every engine command lives here too.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use agentgen_codec::ThinkingMode;
use agentgen_inference::DeviceKind;
use agentgen_pipeline::{DEFAULT_ENDPOINT, Policy, ReferencePolicy, RunConfig};

/// `--policy`: who answers the prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyKind {
    /// The task's reference solution (no model).
    Reference,
    /// The candle engine on `--model DIR`.
    Local,
    /// Raw V3.2 prompts to an OpenAI-compatible `/v1/completions` (e.g. `agentgen serve`).
    Http,
    /// Messages and tools to any `/v1/chat/completions`.
    Chat,
}

/// `--thinking-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThinkingChoice {
    /// Reasoning before every answer.
    Thinking,
    /// No reasoning.
    Chat,
    /// Chat policy only: thinking when the endpoint returns reasoning, chat otherwise, per row.
    Auto,
}

/// `--device` of every engine command: `inference::DeviceKind::parse` is the one parser.
pub fn device(s: &str) -> Result<DeviceKind, String> {
    DeviceKind::parse(s).map_err(|e| e.to_string())
}

/// `--endpoint`, `--api-model`, `--api-key-env` and the endpoint policies' other flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EndpointArgs {
    /// Server URL for `--policy http|chat` (base URL, with or without `/v1`).
    #[arg(long, value_name = "URL", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// `model` field sent to the server (default: the server's only model).
    #[arg(long, value_name = "NAME")]
    pub api_model: Option<String>,
    /// Environment variable holding the server's API key.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    #[command(flatten)]
    pub flags: super::endpoint::EndpointFlags,
}

impl EndpointArgs {
    /// The transport settings (the key read from `--api-key-env`).
    pub fn http_config(&self, seed: u64) -> anyhow::Result<agentgen_pipeline::HttpConfig> {
        super::endpoint::http_config(
            self.endpoint.clone(),
            self.api_key_env.as_deref(),
            &self.flags,
            seed,
        )
    }
}

/// `--policy` and what each policy needs. A command sets its default policy with
/// `mut_arg("policy", ..)` (shown in `--help`), or makes it required.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Who answers the prompts.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub policy: Option<PolicyKind>,
    /// Checkpoint folder for `--policy local`.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Device of `--policy local`: cpu, cuda or cuda:N.
    #[arg(long, value_name = "DEVICE", value_parser = device, default_value = "cpu")]
    pub device: DeviceKind,
    /// thinking, chat, or auto (chat policy only: thinking when the endpoint returns reasoning,
    /// chat otherwise, per row) [default: auto with `--policy chat`, else thinking].
    #[arg(long, value_enum, value_name = "MODE")]
    pub thinking_mode: Option<ThinkingChoice>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

impl PolicyArgs {
    /// The chosen policy. Every command gives `--policy` a default or makes it required, so
    /// the fallback is never taken.
    pub fn kind(&self) -> PolicyKind {
        self.policy.unwrap_or(PolicyKind::Reference)
    }

    /// `--thinking-mode` as the run takes it: `auto` (the chat policy's default) is thinking
    /// with per-row detection.
    pub fn thinking_mode(&self) -> anyhow::Result<(ThinkingMode, bool)> {
        let chat = self.kind() == PolicyKind::Chat;
        match (self.thinking_mode, chat) {
            (None | Some(ThinkingChoice::Auto), true) => Ok((ThinkingMode::Thinking, true)),
            (Some(ThinkingChoice::Auto), false) => {
                anyhow::bail!("--thinking-mode auto needs --policy chat")
            }
            (None, false) | (Some(ThinkingChoice::Thinking), _) => {
                Ok((ThinkingMode::Thinking, false))
            }
            (Some(ThinkingChoice::Chat), _) => Ok((ThinkingMode::Chat, false)),
        }
    }

    /// The checkpoint folder of `--policy local`.
    pub fn model_dir(&self) -> anyhow::Result<&std::path::Path> {
        use anyhow::Context;
        self.model.as_deref().context("--policy local needs --model DIR")
    }
}

/// The future that stops a run: SIGINT/SIGTERM, and for the chat policy a spent
/// `--max-tokens-total` too.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a command does with the policy once it is built (run the pipeline, calibrate, ...):
/// generic over the policy type, as the pipeline is.
pub trait Drive {
    /// What the command's run returns.
    type Output;
    /// Run with `policy` until done or `shutdown`.
    fn drive<P: Policy>(
        self,
        rt: &tokio::runtime::Runtime,
        cfg: RunConfig,
        policy: P,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self::Output>;
}

/// `generate` and `rollout`: one pipeline run, each row also handed to `sink` as it is written.
pub struct PipelineRun {
    pub sink: Option<agentgen_pipeline::RowSink>,
}

impl Drive for PipelineRun {
    type Output = agentgen_pipeline::RunReport;

    fn drive<P: Policy>(
        self,
        rt: &tokio::runtime::Runtime,
        cfg: RunConfig,
        policy: P,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self::Output> {
        Ok(rt.block_on(agentgen_pipeline::run_with_sink(cfg, policy, shutdown, self.sink))?)
    }
}

/// A finished drive: the command's output, and whether the chat policy's
/// `--max-tokens-total` was spent (the run then stopped cleanly; exit 3).
pub struct Driven<T> {
    pub output: T,
    pub budget_spent: bool,
}

impl PolicyArgs {
    /// The one way from the flags to a running policy: build the chosen policy (the endpoint
    /// policies after their `/v1/models` preflight, the local one after loading the
    /// checkpoint, whose config hash goes into `cfg`) and hand it to `d`.
    pub fn drive<D: Drive>(
        &self,
        rt: &tokio::runtime::Runtime,
        mut cfg: RunConfig,
        d: D,
    ) -> anyhow::Result<Driven<D::Output>> {
        let signal: Shutdown = Box::pin(agentgen_pipeline::shutdown_signal());
        let done = |output| Ok(Driven { output, budget_spent: false });
        let endpoint = &self.endpoint;
        let api_model = endpoint.api_model.as_deref();
        match self.kind() {
            PolicyKind::Reference => done(d.drive(rt, cfg, ReferencePolicy::new(), signal)?),
            PolicyKind::Http => {
                let http = endpoint.http_config(cfg.seed)?;
                let p = super::endpoint::http_policy(rt, http, api_model, &endpoint.flags)?;
                done(d.drive(rt, cfg, p, signal)?)
            }
            PolicyKind::Chat => {
                let http = endpoint.http_config(cfg.seed)?;
                let p = super::endpoint::chat_policy(rt, http, api_model, &endpoint.flags)?;
                let spent = p.budget_spent_signal();
                let shutdown: Shutdown = Box::pin(async move {
                    tokio::select! {
                        () = signal => {}
                        _ = spent => {}
                    }
                });
                let output = d.drive(rt, cfg, Arc::clone(&p), shutdown)?;
                Ok(Driven { output, budget_spent: p.budget_spent() })
            }
            PolicyKind::Local => {
                let (p, sha) =
                    super::generate::load_local_policy(rt, self.model_dir()?, self.device)?;
                cfg.checkpoint_config_sha256 = sha;
                done(d.drive(rt, cfg, p, signal)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    #[test]
    fn device_values_go_through_the_one_parser() {
        let p = Probe::try_parse_from(["x", "--device", "cuda:3"]).expect("parses");
        assert_eq!(p.policy.device, DeviceKind::Cuda(3));
        let p = Probe::try_parse_from(["x"]).expect("parses");
        assert_eq!(p.policy.device, DeviceKind::Cpu);
        let e = Probe::try_parse_from(["x", "--device", "tpu"]).expect_err("refused");
        assert!(e.to_string().contains("unknown device"), "{e}");
    }

    #[test]
    fn thinking_mode_defaults_follow_the_policy() {
        let parse = |args: &[&str]| {
            let mut all = vec!["x"];
            all.extend_from_slice(args);
            Probe::try_parse_from(all).expect("parses").policy.thinking_mode()
        };
        assert_eq!(parse(&["--policy", "chat"]).expect("ok"), (ThinkingMode::Thinking, true));
        assert_eq!(parse(&["--policy", "http"]).expect("ok"), (ThinkingMode::Thinking, false));
        assert_eq!(
            parse(&["--policy", "chat", "--thinking-mode", "chat"]).expect("ok"),
            (ThinkingMode::Chat, false)
        );
        assert!(parse(&["--policy", "local", "--thinking-mode", "auto"]).is_err());
        assert!(Probe::try_parse_from(["x", "--thinking-mode", "deep"]).is_err());
    }
}
