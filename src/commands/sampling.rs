//! The sampling flags every rollout command shares (`generate`, `rollout`, `calibrate`): one
//! set of names, help texts, defaults (`agentgen_pipeline::DEFAULT_*`) and one range rule
//! (`SamplingParams::check`), applied when the flags (and `--config` values, which become
//! flags) are parsed.

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

pub(crate) fn temperature(s: &str) -> Result<f32, String> {
    parsed(s, "a number", |p, v| p.temperature = v)
}

pub(crate) fn top_p(s: &str) -> Result<f32, String> {
    parsed(s, "a number", |p, v| p.top_p = v)
}

pub(crate) fn max_tokens(s: &str) -> Result<usize, String> {
    parsed(s, "a whole number", |p, v| p.max_tokens = v)
}

impl SamplingArgs {
    /// The flags over the defaults, with `seed`.
    pub fn params(&self, seed: u64) -> anyhow::Result<SamplingParams> {
        self.params_over(SamplingParams { seed, ..SamplingParams::default() })
    }

    /// The flags over `defaults` (a command whose defaults differ, e.g. `synth`), checked by
    /// the one rule.
    pub fn params_over(&self, defaults: SamplingParams) -> anyhow::Result<SamplingParams> {
        let p = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            max_tokens: self.max_tokens.unwrap_or(defaults.max_tokens),
            ..defaults
        };
        p.check().map_err(|e| anyhow::anyhow!("sampling: {e}"))?;
        Ok(p)
    }
}
