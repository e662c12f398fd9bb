//! Decode-step benchmark: caches filled synthetically to a given context, then one-token
//! decode steps with sparse attention (DSA) and with the indexer selection disabled (dense).

use std::time::{Duration, Instant};

use crate::Result;
use crate::models::deepseek_v32::{ForwardOptions, LogitsMode, Model, Probe, Segment};

/// One row of `bench decode` (milliseconds, medians over the measured steps).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeRow {
    /// Tokens in the cache before the step.
    pub context: usize,
    /// Whole decode step, sparse.
    pub sparse_ms: f64,
    /// Whole decode step, dense (`None` when not measured).
    pub dense_ms: Option<f64>,
    /// Attention + indexer part (summed over layers), sparse.
    pub sparse_attn_ms: f64,
    /// Attention + indexer part, dense.
    pub dense_attn_ms: Option<f64>,
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn measure(
    model: &Model,
    context: usize,
    steps: usize,
    dense: bool,
    seed: u64,
) -> Result<(f64, f64)> {
    let mut cache = model.new_cache();
    cache.fill_synthetic(context, seed)?;
    let token = [2u32.min(model.config().vocab_size as u32 - 1)];
    let mut total = Vec::with_capacity(steps);
    let mut attn = Vec::with_capacity(steps);
    for i in 0..steps + 2 {
        cache.truncate(context);
        let mut probe = Probe::default();
        let t0 = Instant::now();
        model.forward(
            &mut [Segment { cache: &mut cache, tokens: &token }],
            ForwardOptions { dense, logits: LogitsMode::Last },
            Some(&mut probe),
        )?;
        if i >= 2 {
            total.push(t0.elapsed());
            attn.push(probe.attn_time);
        }
    }
    Ok((median(total), median(attn)))
}

/// Measures each context; `with_dense` adds the dense baseline.
pub fn decode(
    model: &Model,
    contexts: &[usize],
    steps: usize,
    with_dense: bool,
    seed: u64,
) -> Result<Vec<DecodeRow>> {
    let mut rows = Vec::new();
    for &context in contexts {
        let (sparse_ms, sparse_attn_ms) = measure(model, context, steps, false, seed)?;
        let (dense_ms, dense_attn_ms) = if with_dense {
            let (a, b) = measure(model, context, steps, true, seed)?;
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        rows.push(DecodeRow { context, sparse_ms, dense_ms, sparse_attn_ms, dense_attn_ms });
    }
    Ok(rows)
}
