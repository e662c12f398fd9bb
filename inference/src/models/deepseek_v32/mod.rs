//! DeepSeek-V3.2 (MLA + lightning indexer / DSA + DeepSeekMoE), written from
//! `shared/spec/model.md`. Everything is computed in f32 (the parity contract); weights are
//! dequantized once at load.

mod attention;
mod cache;
mod config;
mod kernels;
mod moe;
mod rope;
mod sparse;

use std::path::Path;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::ops::rms_norm;
use rayon::prelude::*;

pub use attention::select_topk;
use attention::{Attention, Batch, LastRows, SegInfo};
pub use cache::SeqCache;
pub use config::{Config, RopeScaling, TokenIds, yarn_mscale};
pub use moe::{Route, RouterConfig, route};

use crate::loader::{SafetensorsWeights, WeightSource};
use crate::{Error, Result};

/// A linear layer's weight, `y = x · wᵀ` for `x: [N, in]` and a checkpoint weight `w: [out, in]`.
///
/// A small weight is stored transposed once at load (`[in, out]`, contiguous): gemm then
/// multiplies it without the per-call packing a transposed view costs (10-40 % faster for
/// 32-128 rows, 2x for a batch of 4-8 decode rows). A weight past [`Linear::TRANSPOSE_MAX`]
/// elements keeps the checkpoint layout, where gemm's view path was as fast or up to 2x faster
/// (`[32, 1024] x [1024, 4096]`); either way only one copy is held.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// `[in, out]` when `transposed`, else `[out, in]`.
    w: Tensor,
    transposed: bool,
}

impl Linear {
    /// Largest weight (elements) stored transposed: 2^18 = 1 MiB of f32, an L2-sized operand.
    const TRANSPOSE_MAX: usize = 1 << 18;

    /// From a checkpoint weight `[out, in]`, in the layout its size calls for.
    pub(crate) fn new(w: Tensor) -> Result<Self> {
        if w.elem_count() <= Self::TRANSPOSE_MAX {
            Self::new_transposed(w)
        } else {
            Ok(Self { w, transposed: false })
        }
    }

    /// From a checkpoint weight `[out, in]`, stored transposed whatever its size.
    pub(crate) fn new_transposed(w: Tensor) -> Result<Self> {
        Ok(Self { w: w.t()?.contiguous()?, transposed: true })
    }

    /// `[N, in] -> [N, out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.transposed { Ok(x.matmul(&self.w)?) } else { Ok(x.matmul(&self.w.t()?)?) }
    }
}

/// Splits rows `0..n` into up to one block per pool thread (at least 32 rows each) and runs
/// `f(start, len)` on the blocks concurrently; the results come back in row order. Per-token
/// work (projections, MLPs) this way keeps every core busy with one large product each, which
/// beats letting each small product split itself. A row's result does not depend on the split.
/// With `parallel` false (a GPU: its kernels queue on one stream) one block covers every row.
pub(crate) fn par_rows<T: Send>(
    parallel: bool,
    n: usize,
    f: impl Fn(usize, usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    const MIN_ROWS: usize = 32;
    let parts = if parallel { rayon::current_num_threads().min(n / MIN_ROWS).max(1) } else { 1 };
    if parts == 1 {
        return Ok(vec![f(0, n)?]);
    }
    let (base, rem) = (n / parts, n % parts);
    (0..parts)
        .into_par_iter()
        .map(|i| f(i * base + i.min(rem), base + usize::from(i < rem)))
        .collect()
}

/// Concatenates row blocks along `dim` (no copy for a single block).
pub(crate) fn cat_parts<'a>(parts: impl Iterator<Item = &'a Tensor>, dim: usize) -> Result<Tensor> {
    let parts: Vec<&Tensor> = parts.collect();
    match parts.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Ok(Tensor::cat(&parts, dim)?),
    }
}

/// One sequence's input to a (batched) forward call: the new tokens and its cache.
#[derive(Debug)]
pub struct Segment<'a> {
    /// The sequence's cache; the new tokens go at positions `cache.len()..`.
    pub cache: &'a mut SeqCache,
    /// New tokens (at least one).
    pub tokens: &'a [u32],
}

/// Which logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogitsMode {
    /// Only each segment's last position: `[segments, V]`.
    #[default]
    Last,
    /// Every position: `[total tokens, V]`.
    All,
}

/// Options of a forward call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardOptions {
    /// Disable the sparse selection (attend to every causal key), as if `index_topk` were
    /// infinite. Indexer keys are still cached.
    pub dense: bool,
    /// Which logits to return.
    pub logits: LogitsMode,
}

/// Per-layer observations (one segment only).
#[derive(Debug, Clone, Default)]
pub struct LayerTrace {
    /// Indexer scores `I(s, t)` per query (−inf for `t > s`).
    pub index_scores: Vec<Vec<f32>>,
    /// Selected key positions per query, ascending, padded with −1 to `index_topk`.
    pub topk: Vec<Vec<i64>>,
    /// MoE decisions per token (empty for dense layers).
    pub routes: Vec<Route>,
}

/// Optional instrumentation of a forward call.
#[derive(Debug, Default)]
pub struct Probe {
    /// Record hidden states, indexer scores, selections and routes (single segment only).
    pub record: bool,
    /// Residual stream: `[0]` embeddings, `[l + 1]` after layer l (`[N, D]` each).
    pub hidden: Vec<Tensor>,
    /// One entry per layer.
    pub layers: Vec<LayerTrace>,
    /// Time spent in the context-dependent part of attention (cache writes, indexer scoring,
    /// selection, attention core), summed over layers and calls.
    pub attn_time: Duration,
    /// The indexer's part of `attn_time` (scoring and top-k selection), on a CPU model only
    /// (clocking it on a device would need a sync per query block); zero elsewhere.
    pub index_time: Duration,
    /// Process CPU time (all threads, 10 ms ticks) of the attention part, on a CPU model only;
    /// zero elsewhere. Unlike the wall times, it does not count the time other processes of a
    /// shared machine hold the cores.
    pub attn_cpu_time: Duration,
    /// Process CPU time of the indexer part, on a CPU model only; zero elsewhere.
    pub index_cpu_time: Duration,
}

#[derive(Debug, Clone)]
enum Mlp {
    Dense(moe::Ffn),
    Moe(moe::Moe),
}

#[derive(Debug, Clone)]
struct Layer {
    input_ln: Tensor,
    post_ln: Tensor,
    attn: Attention,
    mlp: Mlp,
}

/// The DeepSeek-V3.2 model.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `lm_head.weight`, stored transposed (`[hidden, vocab]`) whatever its size: a decode
    /// step's `[1, hidden] x [hidden, vocab]` product then streams the weight row-major instead
    /// of gathering a transposed view (5x slower at the real vocabulary).
    lm_head: Linear,
    inv_freq: Vec<f32>,
    /// Run attention on the tensor path even on the CPU (see [`Model::set_tensor_path`]).
    tensor_path: bool,
}

impl Model {
    /// Loads `config.json` and the safetensors weights of an HF checkpoint folder.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = Config::from_file(&dir.join("config.json"))?;
        let weights = SafetensorsWeights::open(dir)?;
        Self::from_weights(cfg, &weights, device)
    }

    /// Builds the model from any weight source. Layers `>= num_hidden_layers` (MTP) are never
    /// requested, so they are skipped.
    pub fn from_weights(cfg: Config, w: &dyn WeightSource, device: &Device) -> Result<Self> {
        let (v, d) = (cfg.vocab_size, cfg.hidden_size);
        let embed = w.get("model.embed_tokens.weight", &[v, d], device)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mlp = if cfg.is_moe_layer(i) {
                Mlp::Moe(moe::Moe::load(w, &format!("{p}.mlp"), &cfg, device)?)
            } else {
                let f = moe::Ffn::load(w, &format!("{p}.mlp"), d, cfg.intermediate_size, device)?;
                Mlp::Dense(f)
            };
            layers.push(Layer {
                input_ln: w.get(&format!("{p}.input_layernorm.weight"), &[d], device)?,
                post_ln: w.get(&format!("{p}.post_attention_layernorm.weight"), &[d], device)?,
                attn: Attention::load(w, &format!("{p}.self_attn"), &cfg, device)?,
                mlp,
            });
        }
        let norm = w.get("model.norm.weight", &[d], device)?;
        let lm_head = if cfg.tie_word_embeddings && !w.contains("lm_head.weight") {
            embed.clone()
        } else {
            w.get("lm_head.weight", &[v, d], device)?
        };
        let lm_head = Linear::new_transposed(lm_head)?; // (hidden, vocab)
        let inv_freq = cfg.inv_freq();
        Ok(Self {
            cfg,
            device: device.clone(),
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
            tensor_path: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Makes a CPU model run attention (indexer scores, causal mask, top-k selection, gather,
    /// attention) and the MoE combine on the tensor path every other device takes, instead of
    /// the host kernels: for tests and `bench` rows that check that path on a machine without
    /// a GPU. Off by default; no effect on other devices, which always take the tensor path.
    pub fn set_tensor_path(&mut self, on: bool) {
        self.tensor_path = on;
    }

    /// Whether attention runs on the host kernels (a CPU model not forced onto the tensor path).
    fn host_kernels(&self) -> bool {
        self.device.is_cpu() && !self.tensor_path
    }

    /// A fresh, empty cache for one sequence.
    pub fn new_cache(&self) -> SeqCache {
        SeqCache::new(&self.cfg, &self.device)
    }

    /// Runs the new tokens of every segment (prefill chunks and decode steps may be mixed),
    /// appends them to the segments' caches and returns f32 logits (see [`LogitsMode`]).
    pub fn forward(
        &self,
        segments: &mut [Segment<'_>],
        opts: ForwardOptions,
        probe: Option<&mut Probe>,
    ) -> Result<Tensor> {
        if rayon::current_thread_index().is_some() {
            return self.forward_on_pool(segments, opts, probe);
        }
        // Run the whole call on a pool thread: every parallel op inside it (candle's threaded
        // matmul, the host kernels, the experts) is then a cheap work-stealing join instead of
        // a cross-thread hand-off with a sleep and a wake-up per op.
        rayon::scope(|_| self.forward_on_pool(segments, opts, probe))
    }

    fn forward_on_pool(
        &self,
        segments: &mut [Segment<'_>],
        opts: ForwardOptions,
        mut probe: Option<&mut Probe>,
    ) -> Result<Tensor> {
        let mut infos = Vec::with_capacity(segments.len());
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        for seg in segments.iter_mut() {
            if seg.tokens.is_empty() {
                return Err(Error::InvalidRequest("a segment has no tokens".into()));
            }
            if let Some(&bad) = seg.tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
                return Err(Error::InvalidRequest(format!(
                    "token id {bad} outside the vocabulary ({})",
                    self.cfg.vocab_size
                )));
            }
            let start = seg.cache.len();
            infos.push(SegInfo { start, offset: ids.len(), len: seg.tokens.len() });
            ids.extend_from_slice(seg.tokens);
            positions.extend(start..start + seg.tokens.len());
            seg.cache.reserve(start + seg.tokens.len())?;
        }
        let record = probe.as_ref().is_some_and(|p| p.record);
        if record && segments.len() != 1 {
            return Err(Error::InvalidRequest("recording needs exactly one segment".into()));
        }
        let n = ids.len();
        let (cos, sin) =
            rope::cos_sin(&positions, &self.inv_freq, self.cfg.rope_multiplier(), &self.device)?;
        // Only the last positions' logits wanted (and nothing recorded): the last layer runs its
        // queries, attention and MLP for those rows only; every token's keys are still cached.
        let last_rows = if opts.logits == LogitsMode::Last && !record {
            let last: Vec<u32> = infos.iter().map(|s| (s.offset + s.len - 1) as u32).collect();
            let idx = Tensor::from_vec(last, infos.len(), &self.device)?;
            Some(LastRows { cos: cos.index_select(&idx, 0)?, sin: sin.index_select(&idx, 0)?, idx })
        } else {
            None
        };
        let host = self.host_kernels();
        let sync_timing = probe.is_some() && !self.device.is_cpu();
        // The tensor path's position table, one copy from the host per call: it covers every
        // key position (the longest sequence) and every row of the call (query rows are
        // sliced from it too).
        let positions = match host {
            true => None,
            false => {
                let longest = infos.iter().map(|s| s.start + s.len).max().unwrap_or(0);
                Some(Tensor::arange(0u32, longest.max(n) as u32, &self.device)?)
            }
        };
        let batch = Batch {
            segs: &infos,
            cos,
            sin,
            dense: opts.dense,
            host,
            sync_timing,
            positions,
            clock_index: probe.is_some() && self.device.is_cpu(),
            clocks: Default::default(),
        };
        let id_t = Tensor::from_vec(ids, n, &self.device)?;
        let mut x = self.embed.index_select(&id_t, 0)?;
        let caches: Vec<&SeqCache> = segments.iter().map(|s| &*s.cache).collect();
        let eps = self.cfg.rms_norm_eps as f32;
        let mut attn_time = Duration::ZERO;
        if let Some(p) = probe.as_deref_mut().filter(|p| p.record) {
            p.hidden = vec![x.clone()];
            p.layers.clear();
        }
        let n_layers = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut lt = record.then(LayerTrace::default);
            let last = last_rows.as_ref().filter(|_| i + 1 == n_layers);
            let a = rms_norm(&x, &layer.input_ln, eps)?;
            let att =
                layer.attn.forward(&a, &batch, &caches, i, last, lt.as_mut(), &mut attn_time)?;
            x = match last {
                Some(l) => (x.index_select(&l.idx, 0)? + att)?,
                None => (x + att)?,
            };
            x = match (&layer.mlp, lt.as_mut()) {
                // MoE over the whole call: each expert then sees all of its tokens in one
                // product, and the experts run concurrently.
                (Mlp::Moe(moe), t) => {
                    let f = rms_norm(&x, &layer.post_ln, eps)?;
                    (&x + moe.forward(&f, t.map(|t| &mut t.routes), host)?)?
                }
                (Mlp::Dense(ffn), Some(_)) => {
                    (&x + ffn.forward(&rms_norm(&x, &layer.post_ln, eps)?)?)?
                }
                (Mlp::Dense(ffn), None) => {
                    let parts = par_rows(host, x.dim(0)?, |s, l| {
                        let xs = x.narrow(0, s, l)?;
                        let f = rms_norm(&xs, &layer.post_ln, eps)?;
                        Ok((&xs + ffn.forward(&f)?)?)
                    })?;
                    cat_parts(parts.iter(), 0)?
                }
            };
            if let Some(p) = probe.as_deref_mut().filter(|p| p.record) {
                p.hidden.push(x.clone());
                p.layers.push(lt.unwrap_or_default());
            }
        }
        if let Some(p) = probe {
            p.attn_time += attn_time;
            let [index, attn_cpu, index_cpu] =
                batch.clocks.map(|c| Duration::from_nanos(c.into_inner()));
            p.index_time += index;
            p.attn_cpu_time += attn_cpu;
            p.index_cpu_time += index_cpu;
        }
        for (seg, info) in segments.iter_mut().zip(&infos) {
            seg.cache.set_len(info.start + info.len);
        }
        let x = match opts.logits {
            LogitsMode::All => x,
            LogitsMode::Last if last_rows.is_some() => x, // the last layer kept only these rows
            LogitsMode::Last => {
                let last: Vec<u32> = infos.iter().map(|s| (s.offset + s.len - 1) as u32).collect();
                let k = last.len();
                x.index_select(&Tensor::from_vec(last, k, &self.device)?, 0)?
            }
        };
        let h = rms_norm(&x, &self.norm, eps)?;
        Ok(self.lm_head.forward(&h)?.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prefill (all logits, with traces) then three decode steps; returns logits and top-k sets.
    fn run(model: &Model, prompt: &[u32]) -> (Vec<Vec<f32>>, Vec<Vec<Vec<i64>>>) {
        let mut cache = model.new_cache();
        let mut probe = Probe { record: true, ..Probe::default() };
        let opts = ForwardOptions { logits: LogitsMode::All, ..ForwardOptions::default() };
        let mut seg = [Segment { cache: &mut cache, tokens: prompt }];
        let mut logits =
            model.forward(&mut seg, opts, Some(&mut probe)).unwrap().to_vec2().unwrap();
        let topk = probe.layers.iter().map(|l| l.topk.clone()).collect();
        for step in 0..3u32 {
            let tok = [(step * 37 + 11) % 512];
            let mut seg = [Segment { cache: &mut cache, tokens: &tok }];
            let out = model.forward(&mut seg, ForwardOptions::default(), None).unwrap();
            logits.extend(out.to_vec2::<f32>().unwrap());
        }
        (logits, topk)
    }

    /// Largest element-wise difference of two row lists.
    fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
        a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
    }

    #[test]
    fn linear_gives_x_times_w_transposed_in_either_layout() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 21.0, &dev)?.reshape((3, 7))?.sin()?;
        // A weight small enough to be stored transposed, and one past the limit.
        for (out, inp) in [(5usize, 7usize), (Linear::TRANSPOSE_MAX / 7 + 1, 7)] {
            let n = out * inp;
            let w = Tensor::arange(0f32, n as f32, &dev)?.reshape((out, inp))?.cos()?;
            let lin = Linear::new(w.clone())?;
            assert_eq!(lin.transposed, n <= Linear::TRANSPOSE_MAX);
            let y = lin.forward(&x)?.to_vec2::<f32>()?;
            let (w, xs) = (w.to_vec2::<f32>()?, x.to_vec2::<f32>()?);
            for (yr, xr) in y.iter().zip(&xs) {
                for (yo, wr) in yr.iter().zip(&w) {
                    let want: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
                    assert!((yo - want).abs() < 1e-5, "{yo} vs {want}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn host_kernels_equal_the_tensor_path() {
        let mut model =
            Model::load(&agentgen_testdata::path("model/tiny-f32"), &Device::Cpu).unwrap();
        // 150 tokens: several query blocks, sparse selection from position 8 on.
        let prompt: Vec<u32> = (0..150u32).map(|i| (i * 131 + 7) % 510 + 2).collect();
        let (host, host_topk) = run(&model, &prompt);
        model.set_tensor_path(true);
        let (tensor, tensor_topk) = run(&model, &prompt);
        assert_eq!(host_topk, tensor_topk);
        assert_eq!(host.len(), 153);
        let diff = max_abs_diff(&host, &tensor);
        // Summation orders differ (measured 1.4e-4); the goldens' logit tolerance is 1e-3.
        assert!(diff < 1e-3, "host kernels and tensor path differ by {diff}");
    }

    /// Decode steps of several sequences of different lengths in one call (one of them dense,
    /// t <= top-k; the others sparse) on the tensor path, where they attend in one batched
    /// product, against the host kernels.
    #[test]
    fn batched_decode_on_the_tensor_path_equals_the_host_kernels() {
        let mut model =
            Model::load(&agentgen_testdata::path("model/tiny-f32"), &Device::Cpu).unwrap();
        let prompts: Vec<Vec<u32>> = [5usize, 40, 150]
            .iter()
            .map(|&n| (0..n as u32).map(|i| (i * 97 + n as u32) % 510 + 2).collect())
            .collect();
        let mut steps = |tensor: bool| -> Vec<Vec<f32>> {
            model.set_tensor_path(tensor);
            let mut caches: Vec<SeqCache> = prompts.iter().map(|_| model.new_cache()).collect();
            let mut segs: Vec<Segment<'_>> = caches
                .iter_mut()
                .zip(&prompts)
                .map(|(cache, p)| Segment { cache, tokens: p })
                .collect();
            let mut out: Vec<Vec<f32>> = model
                .forward(&mut segs, ForwardOptions::default(), None)
                .unwrap()
                .to_vec2()
                .unwrap();
            for step in 0..3u32 {
                let toks: Vec<[u32; 1]> =
                    (0..3u32).map(|s| [(step * 31 + s * 7) % 510 + 2]).collect();
                let mut segs: Vec<Segment<'_>> = caches
                    .iter_mut()
                    .zip(&toks)
                    .map(|(cache, t)| Segment { cache, tokens: t })
                    .collect();
                let logits = model.forward(&mut segs, ForwardOptions::default(), None).unwrap();
                out.extend(logits.to_vec2::<f32>().unwrap());
            }
            // A mixed call: a new sequence's 20-token prompt first, then a decode step of the
            // shortest sequence (8 tokens cached): its query row (20) lies past every key
            // position of the call.
            let chunk: Vec<u32> = (0..20u32).map(|i| (i * 13 + 5) % 510 + 2).collect();
            let mut fresh = model.new_cache();
            let mut segs = vec![
                Segment { cache: &mut fresh, tokens: &chunk },
                Segment { cache: &mut caches[0], tokens: &[7] },
            ];
            let logits = model.forward(&mut segs, ForwardOptions::default(), None).unwrap();
            out.extend(logits.to_vec2::<f32>().unwrap());
            out
        };
        let host = steps(false);
        let tensor = steps(true);
        assert_eq!(host.len(), 14);
        let diff = max_abs_diff(&host, &tensor);
        assert!(diff < 1e-3, "batched decode: host kernels and tensor path differ by {diff}");
    }
}
