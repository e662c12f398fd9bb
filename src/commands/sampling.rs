//! The sampling flags every rollout command shares (`generate`, `rollout`, `calibrate`): one
//! set of names, help texts, defaults (`agentgen_pipeline::DEFAULT_*`) and one range rule
//! (`SamplingParams::check`), applied when the flags are parsed and to `--config` values.

use agentgen_pipeline::{DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, SamplingParams};

/// `--temperature`, `--top-p`, `--max-tokens`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SamplingArgs {
    #[arg(
        long,
        value_name = "T",
        allow_hyphen_values = true,
        value_parser = temperature,
        help = format!("Sampling temperature, 0 (greedy) to 2 [default: {DEFAULT_TEMPERATURE}]")
    )]
    pub temperature: Option<f32>,
    #[arg(
        long,
        value_name = "P",
        allow_hyphen_values = true,
        value_parser = top_p,
        help = format!("Nucleus sampling mass, above 0 and at most 1 [default: {DEFAULT_TOP_P}]")
    )]
    pub top_p: Option<f32>,
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        value_parser = max_tokens,
        help = format!("Most tokens per assistant turn [default: {DEFAULT_MAX_TOKENS}]")
    )]
    pub max_tokens: Option<usize>,
}

/// Parse one flag's value and check it by the one rule, with the other values at their
/// defaults.
fn parsed<T: std::str::FromStr + Copy>(
    s: &str,
    what: &str,
    set: impl FnOnce(&mut SamplingParams, T),
) -> Result<T, String> {
    let v: T = s.trim().parse().map_err(|_| format!("{s:?} is not {what}"))?;
    let mut p = SamplingParams::default();
    set(&mut p, v);
    p.check().map(|()| v)
}

fn temperature(s: &str) -> Result<f32, String> {
    parsed(s, "a number", |p, v| p.temperature = v)
}

fn top_p(s: &str) -> Result<f32, String> {
    parsed(s, "a number", |p, v| p.top_p = v)
}

fn max_tokens(s: &str) -> Result<usize, String> {
    parsed(s, "a whole number", |p, v| p.max_tokens = v)
}

impl SamplingArgs {
    /// The flags over `file` (a `--config` file's values) over the defaults, with `seed`;
    /// the result is checked by the one rule (a config value out of range is an error naming it).
    pub fn params(&self, file: &SamplingArgs, seed: u64) -> anyhow::Result<SamplingParams> {
        let p = SamplingParams {
            temperature: self.temperature.or(file.temperature).unwrap_or(DEFAULT_TEMPERATURE),
            top_p: self.top_p.or(file.top_p).unwrap_or(DEFAULT_TOP_P),
            top_k: None,
            max_tokens: self.max_tokens.or(file.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS),
            seed,
        };
        p.check().map_err(|e| anyhow::anyhow!("sampling: {e}"))?;
        Ok(p)
    }
}
