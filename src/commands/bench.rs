//! `agentgen bench` subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_inference::init::{self, Preset, V32_VOCAB};
use agentgen_inference::{DeviceKind, Model, bench};
use anyhow::{Context, bail};

/// The model a bench runs: a checkpoint, or random weights of a preset.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// Checkpoint folder.
    #[arg(long, value_name = "DIR", conflicts_with = "preset")]
    model: Option<PathBuf>,
    /// Random-weight preset instead of a checkpoint (tiny|small|medium).
    #[arg(long)]
    preset: Option<String>,
    /// Vocabulary for --preset (default 129280).
    #[arg(long)]
    vocab: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, value_name = "DEVICE", value_parser = crate::commands::policy::device, default_value = "cpu")]
    device: DeviceKind,
    /// On the CPU, run attention on the tensor path a GPU takes (device-side indexer scores,
    /// top-k selection in rounds, gather, attention) instead of the host kernels.
    #[arg(long)]
    tensor_path: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Median decode-step time per context length, with sparse attention (DSA) and, with
    /// --dense, with the indexer selection disabled. The caches are filled synthetically, so
    /// a long context needs no long prefill. Columns: the whole step, and its attention +
    /// indexer part summed over layers. Use a release build for meaningful numbers.
    Decode {
        #[command(flatten)]
        source: Source,
        /// Context lengths, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2048,8192,32768")]
        contexts: Vec<usize>,
        /// Also measure the dense baseline (attend to every cached token).
        #[arg(long)]
        dense: bool,
        /// Measured steps per context (median reported; 2 warm-up steps extra).
        #[arg(long, default_value_t = 9)]
        steps: usize,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Prefill time of one prompt per length (one forward call, median of --reps after a
    /// warm-up), with sparse attention and, with --dense, the masked dense baseline. Columns:
    /// the whole call, and its attention + indexer part summed over layers.
    Prefill {
        #[command(flatten)]
        source: Source,
        /// Prompt lengths, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2048,8192")]
        contexts: Vec<usize>,
        /// Also measure the dense baseline.
        #[arg(long)]
        dense: bool,
        /// Measured repetitions (median reported; one warm-up extra).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Prefill and greedy-decode tokens/s of one sequence: the prompt in one forward call,
    /// then one token per step with the caches (best of --reps after a warm-up). The
    /// counterpart of `bench/transformers_compare.sh`'s transformers side.
    Tokens {
        #[command(flatten)]
        source: Source,
        /// Prompt lengths, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "128,512")]
        prompt_tokens: Vec<usize>,
        /// Tokens decoded after each prompt.
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// Measured repetitions (best reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn load(source: Source) -> anyhow::Result<Model> {
    let Source { model, preset, vocab, device, tensor_path } = source;
    let dev = device.open()?;
    let mut m = match (model, preset) {
        (Some(dir), _) => {
            Model::load(&dir, &dev).with_context(|| format!("loading {}", dir.display()))?
        }
        (None, Some(p)) => {
            let cfg = Preset::parse(&p)?.config(vocab.unwrap_or(V32_VOCAB));
            let w = init::random_weights(&cfg, 0)?;
            Model::from_weights(cfg, &w, &dev)?
        }
        (None, None) => bail!("give --model DIR or --preset tiny|small|medium"),
    };
    m.set_tensor_path(tensor_path);
    Ok(m)
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Decode { source, contexts, dense, steps, json } => {
            let m = load(source)?;
            decode(&m, &contexts, dense, steps, json)
        }
        Command::Prefill { source, contexts, dense, reps, json } => {
            let m = load(source)?;
            if contexts.is_empty() || contexts.contains(&0) {
                bail!("--contexts needs positive lengths");
            }
            let rows = bench::prefill(&m, &contexts, reps.max(1), dense)?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            print_table(m.config().index_topk, &rows);
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens { source, prompt_tokens, new_tokens, reps, json } => {
            let m = load(source)?;
            if prompt_tokens.is_empty() || prompt_tokens.contains(&0) {
                bail!("--prompt-tokens needs positive lengths");
            }
            let mut rows = Vec::new();
            for &p in &prompt_tokens {
                rows.push(bench::tokens(&m, p, new_tokens, reps)?);
            }
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:>13} {:>10} {:>16} {:>16}",
                    "prompt_tokens", "new_tokens", "prefill_tok_s", "decode_tok_s"
                );
                for r in &rows {
                    println!(
                        "{:>13} {:>10} {:>16.1} {:>16.1}",
                        r.prompt_tokens,
                        r.new_tokens,
                        r.prefill_tokens_per_s,
                        r.decode_tokens_per_s
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn decode(
    m: &Model,
    contexts: &[usize],
    dense: bool,
    steps: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if contexts.is_empty() || contexts.contains(&0) {
        bail!("--contexts needs positive lengths");
    }
    let rows = bench::decode(m, contexts, steps.max(1), dense, 7)?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_table(m.config().index_topk, &rows);
    Ok(ExitCode::SUCCESS)
}

/// The decode/prefill table, one line per context.
fn print_table(index_topk: usize, rows: &[bench::ContextRow]) {
    let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!("index_topk = {index_topk}");
    println!(
        "{:>9} {:>11} {:>11} {:>15} {:>15} {:>16}",
        "context", "sparse_ms", "dense_ms", "sparse_attn_ms", "dense_attn_ms", "sparse_index_ms"
    );
    for r in rows {
        println!(
            "{:>9} {:>11.3} {:>11} {:>15.3} {:>15} {:>16}",
            r.context,
            r.sparse_ms,
            fmt(r.dense_ms),
            r.sparse_attn_ms,
            fmt(r.dense_attn_ms),
            fmt(r.sparse_index_ms)
        );
    }
    // CPU time of the same parts (a CPU model): what a shared machine's load does not inflate.
    if rows.iter().any(|r| r.sparse_attn_cpu_ms.is_some()) {
        println!(
            "{:>9} {:>27} {:>27} {:>16}",
            "context", "sparse_attn_cpu_ms", "dense_attn_cpu_ms", "sparse_index_cpu_ms"
        );
        for r in rows {
            println!(
                "{:>9} {:>27} {:>27} {:>16}",
                r.context,
                fmt(r.sparse_attn_cpu_ms),
                fmt(r.dense_attn_cpu_ms),
                fmt(r.sparse_index_cpu_ms)
            );
        }
    }
}
