//! Engine benchmarks: decode steps at a given context (caches filled synthetically), prefill
//! of a long prompt, and tokens/s of one sequence, each with sparse attention (DSA) and with the
//! indexer selection disabled (dense). Device work is synchronised before a clock is read.

use std::time::{Duration, Instant};

use crate::Result;
use crate::models::deepseek_v32::{ForwardOptions, LogitsMode, Model, Probe, Segment};

/// One row of `bench decode` or `bench prefill` (milliseconds, medians over the measured
/// repetitions).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContextRow {
    /// Tokens in the cache before the decode step, or prompt tokens of the prefill.
    pub context: usize,
    /// Whole step or call, sparse.
    pub sparse_ms: f64,
    /// Whole step or call, dense (`None` when not measured).
    pub dense_ms: Option<f64>,
    /// Attention + indexer part (summed over layers), sparse.
    pub sparse_attn_ms: f64,
    /// Attention + indexer part, dense.
    pub dense_attn_ms: Option<f64>,
    /// The indexer's part of `sparse_attn_ms` (scoring every visible key, top-k selection);
    /// measured on a CPU model only (`None` on a device, where it would need a sync per block).
    pub sparse_index_ms: Option<f64>,
    /// Process CPU time (all threads) of `sparse_attn_ms`: what a shared machine's load does
    /// not inflate; CPU model only.
    pub sparse_attn_cpu_ms: Option<f64>,
    /// Process CPU time of `dense_attn_ms`; CPU model only.
    pub dense_attn_cpu_ms: Option<f64>,
    /// Process CPU time of `sparse_index_ms`; CPU model only.
    pub sparse_index_cpu_ms: Option<f64>,
}

/// A row of `bench decode`.
pub type DecodeRow = ContextRow;
/// A row of `bench prefill`.
pub type PrefillRow = ContextRow;

/// One row per context: `measure(context, dense)` gives the timings; the dense baseline only
/// with `with_dense`.
fn sweep(
    contexts: &[usize],
    with_dense: bool,
    mut measure: impl FnMut(usize, bool) -> Result<Timing>,
) -> Result<Vec<ContextRow>> {
    let mut rows = Vec::with_capacity(contexts.len());
    for &context in contexts {
        let sparse = measure(context, false)?;
        let dense = match with_dense {
            true => Some(measure(context, true)?),
            false => None,
        };
        rows.push(ContextRow {
            context,
            sparse_ms: sparse.total_ms,
            dense_ms: dense.as_ref().map(|d| d.total_ms),
            sparse_attn_ms: sparse.attn_ms,
            dense_attn_ms: dense.as_ref().map(|d| d.attn_ms),
            sparse_index_ms: sparse.index_ms,
            sparse_attn_cpu_ms: sparse.cpu_ms.map(|c| c.0),
            dense_attn_cpu_ms: dense.as_ref().and_then(|d| d.cpu_ms.map(|c| c.0)),
            sparse_index_cpu_ms: sparse.cpu_ms.map(|c| c.1),
        });
    }
    Ok(rows)
}

/// Medians (ms) of timed forward calls.
struct Timing {
    /// The whole call.
    total_ms: f64,
    /// Its attention part (`Probe::attn_time`).
    attn_ms: f64,
    /// The indexer's part of that (`Probe::index_time`), on a CPU model only.
    index_ms: Option<f64>,
    /// Process CPU time of the attention part and of the indexer's part, on a CPU model only.
    cpu_ms: Option<(f64, f64)>,
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Times `reps` forward calls of one sequence after `warmup` untimed ones: `cache` prepares
/// each call's cache, `tokens` are fed with `dense` as given. Returns the medians (ms) of the
/// whole call, of its attention part and (on a CPU model) of the indexer's part of that; the
/// device is synchronised before the clock is read (GPU work is asynchronous).
fn time_calls(
    model: &Model,
    (warmup, reps): (usize, usize),
    tokens: &[u32],
    dense: bool,
    mut cache: impl FnMut() -> Result<crate::SeqCache>,
) -> Result<Timing> {
    let mut total = Vec::with_capacity(reps);
    let mut attn = Vec::with_capacity(reps);
    let mut index = Vec::with_capacity(reps);
    let mut cpu = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for i in 0..warmup + reps {
        let mut cache = cache()?;
        let mut probe = Probe::default();
        let t0 = Instant::now();
        model.forward(
            &mut [Segment { cache: &mut cache, tokens }],
            ForwardOptions { dense, logits: LogitsMode::Last },
            Some(&mut probe),
        )?;
        model.device().synchronize()?;
        if i >= warmup {
            total.push(t0.elapsed());
            attn.push(probe.attn_time);
            index.push(probe.index_time);
            cpu.0.push(probe.attn_cpu_time);
            cpu.1.push(probe.index_cpu_time);
        }
    }
    Ok(Timing {
        total_ms: median(total),
        attn_ms: median(attn),
        index_ms: model.device().is_cpu().then(|| median(index)),
        cpu_ms: model.device().is_cpu().then(|| (median(cpu.0), median(cpu.1))),
    })
}

fn measure(model: &Model, context: usize, steps: usize, dense: bool, seed: u64) -> Result<Timing> {
    let mut filled = model.new_cache();
    filled.fill_synthetic(context, seed)?;
    filled.reserve(context + 1)?; // room for the step's token: no step grows (copies) the cache
    let token = [2u32.min(model.config().vocab_size as u32 - 1)];
    // Each step starts from the same synthetic context (a clone shares the device buffers;
    // the step writes only past `context`).
    time_calls(model, (2, steps), &token, dense, || {
        let mut c = filled.clone();
        c.truncate(context);
        Ok(c)
    })
}

/// Measures each context; `with_dense` adds the dense baseline.
pub fn decode(
    model: &Model,
    contexts: &[usize],
    steps: usize,
    with_dense: bool,
    seed: u64,
) -> Result<Vec<DecodeRow>> {
    sweep(contexts, with_dense, |context, dense| measure(model, context, steps, dense, seed))
}

fn measure_prefill(model: &Model, context: usize, reps: usize, dense: bool) -> Result<Timing> {
    let prompt = prompt_ids(model, context);
    time_calls(model, (1, reps), &prompt, dense, || Ok(model.new_cache()))
}

/// Prefill of a `context`-token prompt in one forward call, per context (one warm-up, then
/// the median of `reps`); `with_dense` adds the dense baseline (causal attention over every
/// key, the indexer's selection disabled).
pub fn prefill(
    model: &Model,
    contexts: &[usize],
    reps: usize,
    with_dense: bool,
) -> Result<Vec<PrefillRow>> {
    sweep(contexts, with_dense, |context, dense| measure_prefill(model, context, reps, dense))
}

/// Deterministic prompt ids spread over the vocabulary.
fn prompt_ids(model: &Model, len: usize) -> Vec<u32> {
    let vocab = model.config().vocab_size as u32;
    (0..len as u32).map(|i| (i.wrapping_mul(7) + 3) % vocab).collect()
}

/// One row of `bench tokens`: prefill and greedy-decode throughput of a single sequence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokensRow {
    /// Prompt tokens prefilled in one forward call.
    pub prompt_tokens: usize,
    /// Tokens decoded one step at a time after the prompt.
    pub new_tokens: usize,
    /// Best of the repetitions: prompt tokens per second of the prefill call.
    pub prefill_tokens_per_s: f64,
    /// Best of the repetitions: decoded tokens per second (argmax of each step's logits).
    pub decode_tokens_per_s: f64,
}

/// Prefill `prompt_tokens` deterministic ids, then decode `new_tokens` greedily; the best of
/// `reps` repetitions (after one warm-up) is reported, the way the transformers side of
/// `bench/transformers_compare.sh` measures.
pub fn tokens(
    model: &Model,
    prompt_tokens: usize,
    new_tokens: usize,
    reps: usize,
) -> Result<TokensRow> {
    let prompt = prompt_ids(model, prompt_tokens);
    let mut best_prefill = f64::INFINITY;
    let mut best_decode = f64::INFINITY;
    for _ in 0..reps.max(1) + 1 {
        let mut cache = model.new_cache();
        let t0 = Instant::now();
        let logits = model.forward(
            &mut [Segment { cache: &mut cache, tokens: &prompt }],
            ForwardOptions::default(),
            None,
        )?;
        let mut next = argmax(&logits)?;
        let prefill = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for _ in 0..new_tokens {
            let logits = model.forward(
                &mut [Segment { cache: &mut cache, tokens: &[next] }],
                ForwardOptions::default(),
                None,
            )?;
            next = argmax(&logits)?;
        }
        let decode = t1.elapsed().as_secs_f64();
        best_prefill = best_prefill.min(prefill);
        best_decode = best_decode.min(decode);
    }
    Ok(TokensRow {
        prompt_tokens,
        new_tokens,
        prefill_tokens_per_s: prompt_tokens as f64 / best_prefill,
        decode_tokens_per_s: new_tokens as f64 / best_decode.max(1e-12),
    })
}

fn argmax(logits: &candle_core::Tensor) -> Result<u32> {
    let row: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    let (mut best, mut at) = (f32::NEG_INFINITY, 0usize);
    for (i, &v) in row.iter().enumerate() {
        if v > best {
            best = v;
            at = i;
        }
    }
    Ok(at as u32)
}
