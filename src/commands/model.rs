//! `agentgen model` subcommands: golden parity, random checkpoints, generation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use agentgen_inference::init::{self, DType, Preset, V32_VOCAB};
use agentgen_inference::{
    DeviceKind, Engine, EngineOptions, GenerateRequest, Model, SamplingParams, golden,
};
use anyhow::{Context, bail};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a checkpoint against a goldens file (format of
    /// shared/fixtures/model/goldens.safetensors): logits max-abs <= 1e-3, hidden rows within
    /// 1e-4 of the row norm, indexer scores within 1e-4 x max|I|, top-k sets, expert sets and
    /// greedy tokens exactly equal. Prints one line per check and `N passed, M failed`;
    /// exits 1 on any failure.
    Golden {
        /// Checkpoint folder (config.json + safetensors).
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// Goldens safetensors file.
        #[arg(long, value_name = "FILE")]
        goldens: PathBuf,
        /// cpu, cuda or cuda:N.
        #[arg(long, value_name = "DEVICE", value_parser = crate::commands::policy::device, default_value = "cpu")]
        device: DeviceKind,
    },
    /// Write a random-weight checkpoint in the HF layout (config.json + model.safetensors).
    Init {
        /// tiny (fixture shapes), small or medium (671B ratios, top-k 2048).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Weight seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Vocabulary size (default: the real V3.2 vocabulary, 129280).
        #[arg(long)]
        vocab: Option<usize>,
        /// Stored dtype: bf16 or f32.
        #[arg(long, default_value = "bf16")]
        dtype: String,
        /// Replace a checkpoint already in `--out`.
        #[arg(long)]
        force: bool,
    },
    /// Generate a completion. Prints the text (via the V3.2 tokenizer when the vocabulary
    /// matches, else a JSON array of ids) to stdout and tokens/s to stderr.
    Generate {
        /// Checkpoint folder.
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// Prompt text (tokenized with the V3.2 tokenizer, BOS prepended).
        #[arg(long, conflicts_with = "ids")]
        prompt: Option<String>,
        /// Prompt token ids as a JSON array.
        #[arg(long)]
        ids: Option<String>,
        /// Maximum new tokens.
        #[arg(long, value_name = "N", default_value_t = 64, allow_hyphen_values = true,
            value_parser = crate::commands::sampling::max_tokens)]
        max_tokens: usize,
        /// Temperature, 0 (greedy) to 2.
        #[arg(long, value_name = "T", default_value_t = 1.0, allow_hyphen_values = true,
            value_parser = crate::commands::sampling::temperature)]
        temperature: f32,
        /// Nucleus sampling mass, above 0 and at most 1.
        #[arg(long, value_name = "P", default_value_t = 0.95, allow_hyphen_values = true,
            value_parser = crate::commands::sampling::top_p)]
        top_p: f32,
        /// Keep only the k most likely tokens.
        #[arg(long)]
        top_k: Option<usize>,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Greedy decoding (same as --temperature 0).
        #[arg(long)]
        greedy: bool,
        /// Stop string (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// cpu, cuda or cuda:N.
        #[arg(long, value_name = "DEVICE", value_parser = crate::commands::policy::device, default_value = "cpu")]
        device: DeviceKind,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Golden { model, goldens, device } => {
            let dev = device.open()?;
            let m = Model::load(&model, &dev)
                .with_context(|| format!("loading {}", model.display()))?;
            let checks = golden::run_checks(&m, &goldens)?;
            let failed = checks.iter().filter(|c| !c.passed).count();
            for c in &checks {
                println!("{} {}: {}", if c.passed { "ok  " } else { "FAIL" }, c.name, c.detail);
            }
            println!("{} passed, {failed} failed", checks.len() - failed);
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Init { preset, seed, out, vocab, dtype, force } => {
            let existing = ["config.json", "model.safetensors"]
                .iter()
                .map(|f| out.join(f))
                .find(|p| p.symlink_metadata().is_ok());
            if let Some(p) = existing
                && !force
            {
                bail!("{} already exists; pass --force to replace the checkpoint", p.display());
            }
            let preset = Preset::parse(&preset)?;
            let dtype = match dtype.as_str() {
                "bf16" => DType::BF16,
                "f32" => DType::F32,
                other => bail!("unknown --dtype `{other}` (bf16|f32)"),
            };
            let vocab = vocab.unwrap_or(V32_VOCAB);
            if vocab < 2 {
                bail!("--vocab must be at least 2");
            }
            let cfg = preset.config(vocab);
            let weights = init::random_weights(&cfg, seed)?;
            init::write_checkpoint(&out, &cfg, &weights, dtype)?;
            eprintln!("wrote {} ({} tensors)", out.display(), weights.tensors.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            model,
            prompt,
            ids,
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            greedy,
            stop,
            device,
        } => {
            let tokenizer = agentgen_codec::Tokenizer::shared().ok();
            let opts = EngineOptions {
                device,
                detokenizer: tokenizer
                    .map(|t| Arc::new(t) as Arc<dyn agentgen_inference::Detokenize>),
                ..EngineOptions::default()
            };
            let engine = Engine::load(&model, opts)
                .with_context(|| format!("loading {}", model.display()))?;
            let text_ok = tokenizer.is_some_and(|t| t.vocab_size() <= engine.vocab_size())
                && engine.vocab_size() >= V32_VOCAB;
            let prompt_ids: Vec<u32> = match (prompt, ids) {
                (_, Some(json)) => {
                    serde_json::from_str(&json).context("--ids is not a JSON array of ids")?
                }
                (Some(text), None) => {
                    let Some(t) = tokenizer.filter(|_| text_ok) else {
                        bail!("--prompt needs a checkpoint with the V3.2 vocabulary; use --ids");
                    };
                    let bos = engine.config().bos_token_id.unwrap_or(0);
                    std::iter::once(bos).chain(t.encode(&text)?).collect()
                }
                (None, None) => bail!("give --prompt TEXT or --ids JSON"),
            };
            let params = SamplingParams {
                temperature: if greedy { 0.0 } else { temperature },
                top_p,
                top_k,
                seed,
                max_tokens,
            };
            if !text_ok && !stop.is_empty() {
                bail!("--stop needs a checkpoint with the V3.2 vocabulary");
            }
            let started = Instant::now();
            let c = engine.generate_blocking(GenerateRequest {
                prompt_ids,
                params,
                stop,
                ..GenerateRequest::default()
            })?;
            let secs = started.elapsed().as_secs_f64();
            match tokenizer.filter(|_| text_ok) {
                Some(t) => println!("{}", t.decode(&c.token_ids)?),
                None => println!("{}", serde_json::to_string(&c.token_ids)?),
            }
            eprintln!(
                "{} prompt + {} generated tokens in {secs:.3}s ({:.1} tokens/s), finish: {:?}",
                c.prompt_tokens,
                c.token_ids.len(),
                c.token_ids.len() as f64 / secs.max(1e-9),
                c.finish_reason
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
