//! MLA with DeepSeek Sparse Attention (spec §6–§8): query/KV projections, the lightning
//! indexer, per-query top-k selection over the causal past, and attention in the absorbed
//! (latent, MQA-like) form for every phase. Decode gathers only the selected cache rows, so
//! its attention cost is O(top-k); the indexer scan is O(context) but narrow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::ops::{layer_norm, rms_norm, softmax_last_dim};
use candle_nn::rotary_emb::{rope_i, rope_thd};
use rayon::prelude::*;

use super::cache::SeqCache;
use super::kernels::{
    SparseShape, rope_halfsplit_prefix, select_topk_rows, sparse_attend, weighted_relu_rows,
    with_host,
};
use super::sparse;
use super::{Config, LayerTrace, Linear, cat_parts, par_rows};
use crate::Result;
use crate::loader::WeightSource;

/// One sequence's slice of a batched forward.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegInfo {
    /// Absolute position of the segment's first token (= tokens already cached).
    pub start: usize,
    /// Row offset of the segment in the stacked `[N, D]` activations.
    pub offset: usize,
    /// Tokens in this call.
    pub len: usize,
}

/// Per-call inputs shared by all layers.
pub(crate) struct Batch<'a> {
    pub segs: &'a [SegInfo],
    pub cos: Tensor,
    pub sin: Tensor,
    pub dense: bool,
    /// Whether the host kernels run (a CPU model not forced onto the tensor path); otherwise
    /// every step of attention stays on the device (`sparse.rs`).
    pub host: bool,
    /// Synchronise the device around the timed attention part, so `attn_time` measures work,
    /// not kernel launches (only when a probe asks for timings on a non-CPU device).
    pub sync_timing: bool,
    /// `0, 1, …` (u32) on the model's device, as long as the call's longest sequence: the
    /// tensor path slices every index range it needs from it instead of copying one from the
    /// host inside a layer (`None` on the host kernels).
    pub positions: Option<Tensor>,
    /// Whether to clock the indexer's scoring and top-k selection on their own, and the
    /// process CPU time of both parts (a probe on a CPU model, where a clock read needs no
    /// device sync); the nanoseconds add up in `clocks`.
    pub clock_index: bool,
    /// When `clock_index`: nanoseconds of indexer scoring + selection (wall), of the attention
    /// part (process CPU time) and of its indexer part (process CPU time), summed over layers
    /// and segments (concurrent segments each counting).
    pub clocks: [AtomicU64; 3],
}

/// Index of each clock in [`Batch::clocks`].
pub(crate) const INDEX_WALL: usize = 0;
pub(crate) const ATTN_CPU: usize = 1;
pub(crate) const INDEX_CPU: usize = 2;

impl Batch<'_> {
    /// Runs `f`, adding its wall and CPU time to the indexer's clocks when `clock_index`.
    fn clock_index<R>(&self, f: impl FnOnce() -> R) -> R {
        if !self.clock_index {
            return f();
        }
        let (started, cpu) = (Instant::now(), process_cpu_time());
        let r = f();
        self.add(INDEX_WALL, started.elapsed());
        self.add_cpu(INDEX_CPU, cpu);
        r
    }

    fn add(&self, clock: usize, d: std::time::Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.clocks[clock].fetch_add(ns, Ordering::Relaxed);
    }

    /// Adds the process CPU time since `since` (a [`process_cpu_time`] reading) to `clock`.
    fn add_cpu(&self, clock: usize, since: Option<std::time::Duration>) {
        if let (Some(a), Some(b)) = (since, process_cpu_time()) {
            self.add(clock, b.saturating_sub(a));
        }
    }
}

/// User + system CPU time of this process, all threads (`/proc/self/stat`, 10 ms ticks); `None`
/// where that file is unreadable. A bench on a shared machine reads it next to the wall clock:
/// CPU time does not count the time other processes hold the cores.
pub(crate) fn process_cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th, stime the 13th; both in USER_HZ ticks (100 a second on Linux).
    let mut f = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().skip(11);
    let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// The rows of a call whose outputs are wanted when only each segment's last position
/// matters (the last layer of a call that returns last-position logits): the keys of every
/// token are still computed and cached, but queries, attention and everything after it run
/// for these rows only.
pub(crate) struct LastRows {
    /// Row index of each segment's last token, `[segments]`.
    pub idx: Tensor,
    /// RoPE tables of those rows.
    pub cos: Tensor,
    pub sin: Tensor,
}

/// Indices (ascending) of the `k` largest scores among the first `visible` entries; all of them
/// when `visible <= k`. Ties are broken arbitrarily (spec §7.4).
pub fn select_topk(row: &[f32], visible: usize, k: usize) -> Vec<u32> {
    let mut idx = select_topk_unordered(row, visible, k);
    idx.sort_unstable();
    idx
}

/// The set [`select_topk`] chooses, in no particular order: the one selection rule (and tie
/// break) that the host kernels and the tensor path's CPU top-k (`sparse::topk`) share.
pub(crate) fn select_topk_unordered(row: &[f32], visible: usize, k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..visible as u32).collect();
    if visible > k && k > 0 {
        idx.select_nth_unstable_by(k - 1, |&a, &b| row[b as usize].total_cmp(&row[a as usize]));
        idx.truncate(k);
    }
    idx
}

/// Query-side projections of some rows.
struct QueryProj {
    /// `[H, N, C]`: `q_nope · W_UK`.
    q_abs: Tensor,
    /// `[H, N, dr]`, rotated.
    q_rope: Tensor,
    /// `[N, Hi, Di]`, rotated.
    qi: Tensor,
    /// `[N, Hi]`, scaled.
    wts: Tensor,
}

/// The projections of a whole call (query side and new keys), borrowed by each segment.
#[derive(Clone, Copy)]
struct CallProj<'a> {
    q_abs: &'a Tensor,
    q_rope: &'a Tensor,
    qi: &'a Tensor,
    wts: &'a Tensor,
    ckv: &'a Tensor,
    krope: &'a Tensor,
    ki: &'a Tensor,
}

/// Key-side projections of some rows (what the cache stores).
struct KeyProj {
    /// `[N, C]` after `kv_a_layernorm`.
    ckv: Tensor,
    /// `[N, dr]`, rotated.
    krope: Tensor,
    /// `[N, Di]` after LayerNorm and RoPE.
    ki: Tensor,
}

/// One layer's MLA attention with its lightning indexer. Shapes in comments use the spec's
/// letters: `D` = `hidden_size`, `H` = `num_heads`, `dn` / `dr` / `dv` = `qk_nope_head_dim` /
/// `qk_rope_head_dim` / `v_head_dim`, `C` = `kv_lora_rank`, `qr` = `q_lora_rank`, `Hi` / `Di` =
/// `index_n_heads` / `index_head_dim`, `N` = rows.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    /// `[qr + Hi, D]`: `q_a_proj` and the indexer's `weights_proj` (pre-scaled by `wscale`),
    /// the two query-side products of the layer input, in one matrix (one GEMM, one packing).
    q_a_wproj: Linear,
    q_a_ln: Tensor,
    /// `[H·(dn+dr) + Hi·Di, qr]`: `q_b_proj` and the indexer's `wq_b`, both applied to `c_q`.
    q_b_wq_b: Linear,
    /// `[C + dr + Di, D]`: `kv_a_proj_with_mqa` and the indexer's `wk`, the key side.
    kv_a_wk: Linear,
    kv_a_ln: Tensor,
    /// `[H, dn, C]`: query absorption (`q_nope · W_UK`).
    w_uk: Tensor,
    /// `[H, C, dv]`: value up-projection applied to the attended latent.
    w_uv_t: Tensor,
    o_proj: Linear,
    idx_norm_w: Tensor,
    idx_norm_b: Tensor,
    /// Attention heads (`num_attention_heads`, H).
    num_heads: usize,
    /// Per-head query/key width without RoPE (`qk_nope_head_dim`).
    qk_nope_head_dim: usize,
    /// Per-head query/key RoPE width, and the shared rope key's (`qk_rope_head_dim`).
    qk_rope_head_dim: usize,
    /// Per-head value width (`v_head_dim`).
    v_head_dim: usize,
    /// Width of the compressed KV latent `c_kv` (`kv_lora_rank`, C).
    kv_lora_rank: usize,
    /// Width of the compressed query `c_q` (`q_lora_rank`).
    q_lora_rank: usize,
    /// Lightning-indexer heads (`index_n_heads`, Hi).
    index_n_heads: usize,
    /// Lightning-indexer head width (`index_head_dim`, Di).
    index_head_dim: usize,
    eps: f32,
    scale: f64,
    topk: usize,
}

impl Attention {
    pub(crate) fn load(w: &dyn WeightSource, p: &str, cfg: &Config, dev: &Device) -> Result<Self> {
        let (d, num_heads, kv_lora_rank) =
            (cfg.hidden_size, cfg.num_attention_heads, cfg.kv_lora_rank);
        let (qk_nope_head_dim, qk_rope_head_dim, v_head_dim, q_lora_rank) =
            (cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.q_lora_rank);
        let (index_n_heads, index_head_dim) = (cfg.index_n_heads, cfg.index_head_dim);
        let g = |name: &str, shape: &[usize]| w.get(&format!("{p}.{name}"), shape, dev);
        let kv_b =
            g("kv_b_proj.weight", &[num_heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank])?
                .reshape((num_heads, qk_nope_head_dim + v_head_dim, kv_lora_rank))?;
        // `index_n_heads^-0.5 · index_head_dim^-0.5`, folded into the head weights (ReLU is
        // positively homogeneous, so the score scale can move outside it).
        let wscale = (index_n_heads as f64).powf(-0.5) * (index_head_dim as f64).powf(-0.5);
        let fuse = |parts: &[&Tensor]| Linear::new(Tensor::cat(parts, 0)?);
        let wproj = (g("indexer.weights_proj.weight", &[index_n_heads, d])? * wscale)?;
        Ok(Self {
            q_a_wproj: fuse(&[&g("q_a_proj.weight", &[q_lora_rank, d])?, &wproj])?,
            q_a_ln: g("q_a_layernorm.weight", &[q_lora_rank])?,
            q_b_wq_b: fuse(&[
                &g(
                    "q_b_proj.weight",
                    &[num_heads * (qk_nope_head_dim + qk_rope_head_dim), q_lora_rank],
                )?,
                &g("indexer.wq_b.weight", &[index_n_heads * index_head_dim, q_lora_rank])?,
            ])?,
            kv_a_wk: fuse(&[
                &g("kv_a_proj_with_mqa.weight", &[kv_lora_rank + qk_rope_head_dim, d])?,
                &g("indexer.wk.weight", &[index_head_dim, d])?,
            ])?,
            kv_a_ln: g("kv_a_layernorm.weight", &[kv_lora_rank])?,
            w_uk: kv_b.narrow(1, 0, qk_nope_head_dim)?.contiguous()?,
            w_uv_t: kv_b.narrow(1, qk_nope_head_dim, v_head_dim)?.transpose(1, 2)?.contiguous()?,
            o_proj: Linear::new(g("o_proj.weight", &[d, num_heads * v_head_dim])?)?,
            idx_norm_w: g("indexer.k_norm.weight", &[index_head_dim])?,
            idx_norm_b: g("indexer.k_norm.bias", &[index_head_dim])?,
            num_heads,
            qk_nope_head_dim,
            qk_rope_head_dim,
            v_head_dim,
            kv_lora_rank,
            q_lora_rank,
            index_n_heads,
            index_head_dim,
            eps: cfg.rms_norm_eps as f32,
            scale: cfg.softmax_scale(),
            topk: cfg.index_topk,
        })
    }

    /// Rotates the first `qk_rope_head_dim` dims of the last axis of `x` (`[N, heads, W]`) with the half-split
    /// (NeoX) layout, keeping the rest.
    fn rope_prefix_halfsplit(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        host: bool,
    ) -> Result<Tensor> {
        let (rows, heads, w) = x.dims3()?;
        let host = host.then(|| {
            with_host(x, |xs| {
                with_host(cos, |c| {
                    with_host(sin, |s| {
                        let mut out = xs.to_vec();
                        rope_halfsplit_prefix(&mut out, c, s, (heads, w, self.qk_rope_head_dim));
                        out
                    })
                })
            })
        });
        if let Some(out) = host.flatten().flatten().flatten() {
            return Ok(Tensor::from_vec(out, (rows, heads, w), x.device())?);
        }
        let r = x.narrow(2, 0, self.qk_rope_head_dim)?.contiguous()?.unsqueeze(0)?;
        let r = rope_thd(&r, cos, sin)?.squeeze(0)?;
        if w == self.qk_rope_head_dim {
            Ok(r)
        } else {
            Ok(Tensor::cat(
                &[&r, &x.narrow(2, self.qk_rope_head_dim, w - self.qk_rope_head_dim)?],
                2,
            )?
            .contiguous()?)
        }
    }

    /// Indexer scores `I(s, t)` of the segment's queries (`len` rows from `off`, the first at
    /// absolute position `s0`) against the cached keys `ki_all` (`[t, Di]`): one row of length
    /// `t` per query, −inf past its causal end. Queries go in blocks that each multiply only
    /// the keys their last query can see, so a prefill computes about half the products.
    fn index_scores(
        &self,
        qi: &Tensor,
        wts: &Tensor,
        ki_all: &Tensor,
        (s0, off, len): (usize, usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        const BLOCK: usize = 32;
        let &Self { index_n_heads, index_head_dim, .. } = self;
        let t = ki_all.dim(0)?;
        // A prefill multiplies every block by the keys transposed: copy them `[Di, t]` once
        // (one element per `index_n_heads · len` products) so gemm reads a row-major operand instead of
        // packing a transposed view per block. A decode step (few queries) keeps the view.
        let kt = if len >= BLOCK { Some(ki_all.t()?.contiguous()?) } else { None }; // (Di, t)
        // Blocks are independent: score them concurrently (later blocks see more keys; the
        // pool balances them).
        let block = |b0: usize| -> Result<Vec<Vec<f32>>> {
            let bl = BLOCK.min(len - b0);
            let end = s0 + b0 + bl; // keys visible to the block's last query
            let q = qi.narrow(0, off + b0, bl)?.reshape((bl * index_n_heads, index_head_dim))?;
            let keys = match &kt {
                Some(kt) => kt.narrow(1, 0, end)?,
                None => ki_all.narrow(0, 0, end)?.t()?,
            };
            let prods = q.matmul(&keys)?; // (bl·index_n_heads, end)
            let w = wts.narrow(0, off + b0, bl)?.contiguous()?; // (bl, index_n_heads)
            let host = with_host(&prods, |p| {
                with_host(&w, |w| {
                    weighted_relu_rows(p, w, index_n_heads, end, t, |i| s0 + b0 + i + 1)
                })
            });
            if let Some(rows) = host.flatten() {
                return Ok(rows);
            }
            // Any other device: the head-weighted sum as a batched product.
            let s = prods.relu()?.reshape((bl, index_n_heads, end))?;
            let mut rows = w.unsqueeze(1)?.matmul(&s)?.squeeze(1)?.to_vec2::<f32>()?;
            for (i, row) in rows.iter_mut().enumerate() {
                row.truncate(s0 + b0 + i + 1);
                row.resize(t, f32::NEG_INFINITY);
            }
            Ok(rows)
        };
        let starts: Vec<usize> = (0..len).step_by(BLOCK).collect();
        let blocks = starts.into_par_iter().map(block).collect::<Result<Vec<_>>>()?;
        Ok(blocks.into_iter().flatten().collect())
    }

    #[allow(clippy::too_many_arguments)] // reason: internal hot path; the probe pieces are optional
    pub(crate) fn forward(
        &self,
        a: &Tensor,
        batch: &Batch<'_>,
        caches: &[&SeqCache],
        layer: usize,
        last: Option<&LastRows>,
        trace: Option<&mut LayerTrace>,
        attn_time: &mut std::time::Duration,
    ) -> Result<Tensor> {
        let n = a.dim(0)?;
        let num_heads = self.num_heads;
        let (cos, sin) = (&batch.cos, &batch.sin);
        // Projections are per token: run row blocks concurrently. The query side covers every
        // row, or each segment's last row only.
        let parts = par_rows(batch.host, n, |s, l| {
            let (a, cs, sn) = (a.narrow(0, s, l)?, cos.narrow(0, s, l)?, sin.narrow(0, s, l)?);
            let keys = self.project_keys(&a, &cs, &sn, batch.host)?;
            let queries = match last {
                Some(_) => None,
                None => Some(self.project_queries(&a, &cs, &sn, batch.host)?),
            };
            Ok((keys, queries))
        })?;
        let ckv = cat_parts(parts.iter().map(|p| &p.0.ckv), 0)?;
        let krope = cat_parts(parts.iter().map(|p| &p.0.krope), 0)?;
        let ki = cat_parts(parts.iter().map(|p| &p.0.ki), 0)?;
        let QueryProj { q_abs, q_rope, qi, wts } = match last {
            Some(l) => {
                self.project_queries(&a.index_select(&l.idx, 0)?, &l.cos, &l.sin, batch.host)?
            }
            None => {
                let q: Vec<&QueryProj> = parts.iter().filter_map(|p| p.1.as_ref()).collect();
                QueryProj {
                    q_abs: cat_parts(q.iter().map(|p| &p.q_abs), 1)?,
                    q_rope: cat_parts(q.iter().map(|p| &p.q_rope), 1)?,
                    qi: cat_parts(q.iter().map(|p| &p.qi), 0)?,
                    wts: cat_parts(q.iter().map(|p| &p.wts), 0)?,
                }
            }
        };
        let nq = wts.dim(0)?;

        if batch.sync_timing {
            a.device().synchronize()?;
        }
        let started = Instant::now();
        let cpu = batch.clock_index.then(process_cpu_time).flatten();
        let side = CallProj {
            q_abs: &q_abs,
            q_rope: &q_rope,
            qi: &qi,
            wts: &wts,
            ckv: &ckv,
            krope: &krope,
            ki: &ki,
        };
        let mut outs = match trace {
            tr if !batch.host => {
                self.device_segments(&side, batch, caches, layer, last.is_some(), tr)?
            }
            // Sequences are independent: a batch of them (decode steps of many requests) runs
            // concurrently. A recorded call has one segment.
            None if batch.segs.len() > 1 => batch
                .segs
                .par_iter()
                .zip(caches.par_iter())
                .enumerate()
                .map(|(k, (seg, cache))| {
                    self.segment(&side, batch, seg, k, cache, layer, last.is_some(), None)
                })
                .collect::<Result<Vec<_>>>()?,
            tr => {
                let (seg, cache) = match (batch.segs.first(), caches.first()) {
                    (Some(s), Some(c)) if batch.segs.len() == 1 => (s, c),
                    _ => {
                        return Err(crate::Error::InvalidRequest(
                            "a recorded call has one segment".into(),
                        ));
                    }
                };
                vec![self.segment(&side, batch, seg, 0, cache, layer, last.is_some(), tr)?]
            }
        };
        if batch.sync_timing {
            a.device().synchronize()?;
        }
        *attn_time += started.elapsed();
        if batch.clock_index {
            batch.add_cpu(ATTN_CPU, cpu);
        }

        let o_lat = if outs.len() == 1 { outs.remove(0) } else { Tensor::cat(&outs, 1)? };
        let parts = par_rows(batch.host, nq, |s, l| {
            let o = o_lat.narrow(1, s, l)?.matmul(&self.w_uv_t)?; // [H, l, dv]
            let o = o.transpose(0, 1)?.contiguous()?.reshape((l, num_heads * self.v_head_dim))?;
            self.o_proj.forward(&o)
        })?;
        cat_parts(parts.iter(), 0)
    }

    /// Attention of one segment's queries (cache write, indexer scores, selection, attention);
    /// returns the attended latent `[H, queries, C]`.
    #[allow(clippy::too_many_arguments)] // reason: internal hot path; the pieces are borrowed
    fn segment(
        &self,
        side: &CallProj<'_>,
        batch: &Batch<'_>,
        seg: &SegInfo,
        k: usize,
        cache: &SeqCache,
        layer: usize,
        last_only: bool,
        trace: Option<&mut LayerTrace>,
    ) -> Result<Tensor> {
        let CallProj { q_abs, q_rope, qi, wts, .. } = *side;
        let (t, (qs, qo, ql)) = segment_queries_of(seg, k, last_only);
        let (ckv_all, kr_all, ki_all) = write_and_view(side, seg, cache, layer)?;
        let sparse = !batch.dense && t > self.topk;
        let (scores, sel) = batch.clock_index(|| -> Result<_> {
            let scores = if sparse || trace.is_some() {
                Some(self.index_scores(qi, wts, &ki_all, (qs, qo, ql))?)
            } else {
                None
            };
            let sel: Option<Vec<Vec<u32>>> = match (&scores, sparse) {
                (Some(rows), true) => Some(select_topk_rows(rows, |i| qs + i + 1, self.topk)),
                _ => None,
            };
            Ok((scores, sel))
        })?;
        if let (Some(tr), Some(rows)) = (trace, &scores) {
            for (i, row) in rows.iter().enumerate() {
                let visible = qs + i + 1;
                let chosen = match &sel {
                    Some(s) if !batch.dense => s[i].clone(),
                    _ => select_topk(row, visible, if batch.dense { t } else { self.topk }),
                };
                let mut padded: Vec<i64> = chosen.iter().map(|&x| i64::from(x)).collect();
                padded.resize(padded.len().max(self.topk), -1);
                tr.index_scores.push(row.clone());
                tr.topk.push(padded);
            }
        }
        let o = match (&sel, ql) {
            (Some(s), 1) => {
                let k = s[0].len();
                let idx = Tensor::from_slice(&s[0], k, q_abs.device())?;
                let kv_sel = ckv_all.index_select(&idx, 0)?;
                let kr_sel = kr_all.index_select(&idx, 0)?;
                let (qa, qr) = self.segment_queries(q_abs, q_rope, qo, 1)?;
                self.attend(&qa, &qr, &kv_sel, &kr_sel, None, 1)?
            }
            (Some(s), _) => {
                match self.sparse_prefill_host(q_abs, q_rope, &ckv_all, &kr_all, qo, s)? {
                    Some(o) => o,
                    None => {
                        self.masked_attend(q_abs, q_rope, &ckv_all, &kr_all, (qs, qo, ql), Some(s))?
                    }
                }
            }
            (None, 1) => {
                let (qa, qr) = self.segment_queries(q_abs, q_rope, qo, 1)?;
                self.attend(&qa, &qr, &ckv_all, &kr_all, None, 1)?
            }
            (None, _) => {
                self.masked_attend(q_abs, q_rope, &ckv_all, &kr_all, (qs, qo, ql), None)?
            }
        };
        Ok(o.reshape((self.num_heads, ql, self.kv_lora_rank))?)
    }

    /// The tensor path (every non-CPU device, or a CPU model forced onto it): each segment's
    /// cache write, indexer scores, top-k selection, gather and attention as tensor ops, with
    /// no host round trip. Segments with one query (decode steps, last-row calls) attend in one
    /// batched product over their selected keys, padded to the widest selection; the others
    /// (prefill chunks, the `--dense` baseline, a recorded call) go in query blocks.
    /// Returns each segment's attended latent `[H, queries, C]`.
    fn device_segments(
        &self,
        side: &CallProj<'_>,
        batch: &Batch<'_>,
        caches: &[&SeqCache],
        layer: usize,
        last_only: bool,
        mut trace: Option<&mut LayerTrace>,
    ) -> Result<Vec<Tensor>> {
        let CallProj { q_abs, q_rope, qi, wts, .. } = *side;
        let dev = q_abs.device();
        let positions = batch.positions.as_ref().ok_or_else(|| {
            crate::Error::InvalidRequest("the tensor path needs a position table".into())
        })?;
        let batched = |seg: &SegInfo| (last_only || seg.len == 1) && !batch.dense;
        let batching = trace.is_none();
        let kmax = batch
            .segs
            .iter()
            .filter(|s| batching && batched(s))
            .map(|s| (s.start + s.len).min(self.topk))
            .max()
            .unwrap_or(0);
        let mut outs: Vec<Option<Tensor>> = vec![None; batch.segs.len()];
        // (segment, query row, gathered c_kv [1, kmax, C], gathered k_rope [1, kmax, R], mask)
        let mut rows = Vec::new();
        for (k, (seg, cache)) in batch.segs.iter().zip(caches).enumerate() {
            let (t, (qs, qo, ql)) = segment_queries_of(seg, k, last_only);
            let (ckv_all, kr_all, ki_all) = write_and_view(side, seg, cache, layer)?;
            let sparse = !batch.dense && t > self.topk;
            if !(batching && batched(seg)) {
                let views = (&ckv_all, &kr_all, &ki_all);
                let o = self.device_segment(
                    side,
                    (qs, qo, ql),
                    views,
                    (sparse, batch),
                    trace.as_deref_mut(),
                )?;
                outs[k] = Some(o);
                continue;
            }
            let (idx, mask) = if sparse {
                let (q, w) = (qi.narrow(0, qo, 1)?, wts.narrow(0, qo, 1)?);
                let (idx, vals) = batch.clock_index(|| -> Result<_> {
                    let scores = sparse::index_scores(&q, &w, &ki_all, qs, positions)?;
                    sparse::topk(&scores, self.topk, qs, positions)
                })?;
                (idx, sparse::selection_mask(&vals)?)
            } else {
                let idx = sparse::iota(positions, 0, t)?.unsqueeze(0)?;
                (idx, Tensor::zeros((1, t), DType::F32, dev)?)
            };
            let pad = kmax.saturating_sub(idx.dim(1)?);
            let (idx, mask) = if pad > 0 {
                let ninf = Tensor::full(f32::NEG_INFINITY, (1, pad), dev)?;
                let zeros = Tensor::zeros((1, pad), DType::U32, dev)?;
                (Tensor::cat(&[&idx, &zeros], 1)?, Tensor::cat(&[&mask, &ninf], 1)?)
            } else {
                (idx, mask)
            };
            let (kv, kr) =
                (sparse::gather_rows(&ckv_all, &idx)?, sparse::gather_rows(&kr_all, &idx)?);
            rows.push((k, qo as u32, kv, kr, mask));
        }
        if !rows.is_empty() {
            let n = rows.len();
            let first = rows[0].1 as usize;
            // Query rows are usually consecutive (a pure decode step, a last-row call): a view
            // of the position table then, a copy from the host only for a mixed call.
            let q_idx = if rows.iter().enumerate().all(|(j, r)| r.1 as usize == first + j) {
                sparse::iota(positions, first, n)?
            } else {
                Tensor::from_vec(rows.iter().map(|r| r.1).collect::<Vec<_>>(), n, dev)?
            };
            let qa = q_abs.index_select(&q_idx, 1)?.transpose(0, 1)?.contiguous()?; // [n, H, C]
            let qr = q_rope.index_select(&q_idx, 1)?.transpose(0, 1)?.contiguous()?; // [n, H, R]
            let kv = Tensor::cat(&rows.iter().map(|r| &r.2).collect::<Vec<_>>(), 0)?;
            let kr = Tensor::cat(&rows.iter().map(|r| &r.3).collect::<Vec<_>>(), 0)?;
            let mask = Tensor::cat(&rows.iter().map(|r| &r.4).collect::<Vec<_>>(), 0)?;
            let o = sparse::attend_rows(&qa, &qr, &kv, &kr, &mask.unsqueeze(1)?, self.scale)?;
            let o = o.transpose(0, 1)?; // [H, n, C]
            for (j, r) in rows.iter().enumerate() {
                outs[r.0] = Some(o.narrow(1, j, 1)?);
            }
        }
        outs.into_iter()
            .map(|o| {
                o.ok_or_else(|| crate::Error::InvalidRequest("a segment was not attended".into()))
            })
            .collect()
    }

    /// One segment on the tensor path, in query blocks sized so that no intermediate exceeds
    /// `sparse::block_rows`' budget: indexer scores and top-k selection when `sparse` (or when
    /// recording), then attention over each query's selected rows, or causal attention over
    /// every key the block sees. Returns `[H, ql, C]`.
    fn device_segment(
        &self,
        side: &CallProj<'_>,
        (qs, qo, ql): (usize, usize, usize),
        (ckv_all, kr_all, ki_all): (&Tensor, &Tensor, &Tensor),
        (sparse, batch): (bool, &Batch<'_>),
        mut trace: Option<&mut LayerTrace>,
    ) -> Result<Tensor> {
        let CallProj { q_abs, q_rope, qi, wts, .. } = *side;
        let positions = batch.positions.as_ref().ok_or_else(|| {
            crate::Error::InvalidRequest("the tensor path needs a position table".into())
        })?;
        let t = ckv_all.dim(0)?;
        let (h, hi) = (self.num_heads, self.index_n_heads);
        let k = self.topk.min(t);
        let per_row = if sparse {
            (hi * t).max(k * (self.kv_lora_rank + self.qk_rope_head_dim)).max(h * k)
        } else {
            h.max(hi) * t
        };
        let block = sparse::block_rows(per_row, ckv_all.device());
        let mut outs = Vec::with_capacity(ql.div_ceil(block));
        for b0 in (0..ql).step_by(block) {
            let bl = block.min(ql - b0);
            let end = qs + b0 + bl; // keys the block's last query sees
            let qa = q_abs.narrow(1, qo + b0, bl)?.transpose(0, 1)?.contiguous()?; // [bl, H, C]
            let qr = q_rope.narrow(1, qo + b0, bl)?.transpose(0, 1)?.contiguous()?; // [bl, H, R]
            let (scores, picked) = batch.clock_index(|| -> Result<_> {
                let scores = if sparse || trace.is_some() {
                    let (q, w) = (qi.narrow(0, qo + b0, bl)?, wts.narrow(0, qo + b0, bl)?);
                    let keys = ki_all.narrow(0, 0, end)?;
                    Some(sparse::index_scores(&q, &w, &keys, qs + b0, positions)?)
                } else {
                    None
                };
                let picked = match (&scores, sparse) {
                    (Some(s), true) => Some(sparse::topk(s, self.topk, qs + b0, positions)?),
                    _ => None,
                };
                Ok((scores, picked))
            })?;
            if let (Some(tr), Some(s)) = (trace.as_deref_mut(), &scores) {
                record_selection(tr, s, picked.as_ref(), (qs + b0, t, self.topk))?;
            }
            let o = match &picked {
                Some((idx, vals)) => {
                    let kv = sparse::gather_rows(ckv_all, idx)?;
                    let kr = sparse::gather_rows(kr_all, idx)?;
                    let mask = sparse::selection_mask(vals)?.unsqueeze(1)?;
                    sparse::attend_rows(&qa, &qr, &kv, &kr, &mask, self.scale)?
                }
                None => {
                    let (kv, kr) = (ckv_all.narrow(0, 0, end)?, kr_all.narrow(0, 0, end)?);
                    self.attend_causal(&qa, &qr, &kv, &kr, qs + b0, positions)?
                }
            };
            outs.push(o);
        }
        Ok(cat_parts(outs.iter(), 0)?.transpose(0, 1)?.contiguous()?)
    }

    /// Causal softmax attention of a block of `B` queries (`qa` `[B, H, C]`, `qr` `[B, H, R]`,
    /// the first at absolute position `first`) over the keys `kv` `[T, C]`, `kr` `[T, R]`:
    /// `[B, H, C]`. The mask is built on the device.
    fn attend_causal(
        &self,
        qa: &Tensor,
        qr: &Tensor,
        kv: &Tensor,
        kr: &Tensor,
        first: usize,
        positions: &Tensor,
    ) -> Result<Tensor> {
        let (b, h, c) = qa.dims3()?;
        let t = kv.dim(0)?;
        let qa2 = qa.reshape((b * h, c))?;
        let qr2 = qr.reshape((b * h, self.qk_rope_head_dim))?;
        let s = (qa2.matmul(&kv.t()?)? + qr2.matmul(&kr.t()?)?)?;
        let s = (s * self.scale)?.reshape((b, h, t))?;
        let zeros = Tensor::zeros((b, t), DType::F32, qa.device())?;
        let mask = sparse::causal_fill(&zeros, first, positions)?.unsqueeze(1)?; // [B, 1, T]
        let p = softmax_last_dim(&s.broadcast_add(&mask)?)?.reshape((b * h, t))?;
        Ok(p.matmul(kv)?.reshape((b, h, c))?)
    }

    /// The query side of `a` (`[N, D]`, RoPE tables of its rows): absorbed and rope MLA queries,
    /// indexer queries and head weights.
    fn project_queries(
        &self,
        a: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        host: bool,
    ) -> Result<QueryProj> {
        let n = a.dim(0)?;
        let &Self {
            num_heads,
            qk_nope_head_dim,
            qk_rope_head_dim,
            q_lora_rank,
            index_n_heads,
            index_head_dim,
            ..
        } = self;
        let nq = num_heads * (qk_nope_head_dim + qk_rope_head_dim);
        let qa_w = self.q_a_wproj.forward(a)?; // [N, q_lora_rank + Hi]
        let cq = rms_norm(&qa_w.narrow(1, 0, q_lora_rank)?.contiguous()?, &self.q_a_ln, self.eps)?;
        let wts = qa_w.narrow(1, q_lora_rank, index_n_heads)?.contiguous()?; // [N, Hi], scaled
        let qb = self.q_b_wq_b.forward(&cq)?; // [N, H·(qk_nope_head_dim+qk_rope_head_dim) + Hi·Di]
        let q = qb.narrow(1, 0, nq)?.contiguous()?.reshape((
            n,
            num_heads,
            qk_nope_head_dim + qk_rope_head_dim,
        ))?;
        let q_nope = q.narrow(2, 0, qk_nope_head_dim)?.transpose(0, 1)?.contiguous()?;
        let q_rope = q
            .narrow(2, qk_nope_head_dim, qk_rope_head_dim)?
            .transpose(0, 1)?
            .contiguous()?
            .unsqueeze(0)?;
        let q_rope = rope_i(&q_rope, cos, sin)?.squeeze(0)?; // [H, N, qk_rope_head_dim]
        let q_abs = q_nope.matmul(&self.w_uk)?; // [H, N, C]
        // The Hadamard rotation is orthogonal and changes no `qI·kI` product in exact
        // arithmetic, so the exact (f32) form skips it (spec §7.1, §17; HF does the same): it
        // matters only before an fp8 quantization.
        let qi = qb.narrow(1, nq, index_n_heads * index_head_dim)?.contiguous()?.reshape((
            n,
            index_n_heads,
            index_head_dim,
        ))?;
        let qi = self.rope_prefix_halfsplit(&qi, cos, sin, host)?; // [N, Hi, Di]
        Ok(QueryProj { q_abs, q_rope, qi, wts })
    }

    /// The key side of `a`: the cached latent, rope key and indexer key of each row.
    fn project_keys(&self, a: &Tensor, cos: &Tensor, sin: &Tensor, host: bool) -> Result<KeyProj> {
        let n = a.dim(0)?;
        let &Self { kv_lora_rank, qk_rope_head_dim, index_head_dim, .. } = self;
        let kv = self.kv_a_wk.forward(a)?; // [N, C + qk_rope_head_dim + Di]
        let ckv = rms_norm(&kv.narrow(1, 0, kv_lora_rank)?.contiguous()?, &self.kv_a_ln, self.eps)?;
        let krope = kv.narrow(1, kv_lora_rank, qk_rope_head_dim)?.contiguous()?.reshape((
            1,
            1,
            n,
            qk_rope_head_dim,
        ))?;
        let krope = rope_i(&krope, cos, sin)?.reshape((n, qk_rope_head_dim))?;
        let ki = kv.narrow(1, kv_lora_rank + qk_rope_head_dim, index_head_dim)?.contiguous()?;
        let ki = layer_norm(&ki, &self.idx_norm_w, &self.idx_norm_b, 1e-6)?;
        let ki = self.rope_prefix_halfsplit(&ki.unsqueeze(1)?, cos, sin, host)?.squeeze(1)?; // [N, Di]
        Ok(KeyProj { ckv, krope, ki })
    }

    /// The segment's absorbed and rope queries as `[H·len, C]` and `[H·len, qk_rope_head_dim]`.
    fn segment_queries(
        &self,
        q_abs: &Tensor,
        q_rope: &Tensor,
        off: usize,
        len: usize,
    ) -> Result<(Tensor, Tensor)> {
        let qa = q_abs
            .narrow(1, off, len)?
            .contiguous()?
            .reshape((self.num_heads * len, self.kv_lora_rank))?;
        let qr = q_rope
            .narrow(1, off, len)?
            .contiguous()?
            .reshape((self.num_heads * len, self.qk_rope_head_dim))?;
        Ok((qa, qr))
    }

    /// Sparse attention of a multi-token segment over each query's selected keys with the host
    /// kernel (`[H, len, C]`); `None` when the tensors are not on the CPU.
    fn sparse_prefill_host(
        &self,
        q_abs: &Tensor,
        q_rope: &Tensor,
        ckv_all: &Tensor,
        kr_all: &Tensor,
        off: usize,
        sel: &[Vec<u32>],
    ) -> Result<Option<Tensor>> {
        let shape = SparseShape {
            heads: self.num_heads,
            rows: q_abs.dim(1)?,
            offset: off,
            latent: self.kv_lora_rank,
            rope: self.qk_rope_head_dim,
            scale: self.scale as f32,
        };
        let out = with_host(q_abs, |qa| {
            with_host(q_rope, |qr| {
                with_host(ckv_all, |ckv| {
                    with_host(kr_all, |kr| sparse_attend(qa, qr, ckv, kr, sel, shape))
                })
            })
        });
        match out.flatten().flatten().flatten() {
            Some(o) => {
                let o = Tensor::from_vec(
                    o,
                    (sel.len(), self.num_heads, self.kv_lora_rank),
                    q_abs.device(),
                )?;
                Ok(Some(o.transpose(0, 1)?.contiguous()?))
            }
            None => Ok(None),
        }
    }

    /// Attention of a multi-token segment over every cached key with a mask: causal, or the
    /// selected keys only when `sel` is given (the device-independent path).
    fn masked_attend(
        &self,
        q_abs: &Tensor,
        q_rope: &Tensor,
        ckv_all: &Tensor,
        kr_all: &Tensor,
        (s0, off, len): (usize, usize, usize),
        sel: Option<&[Vec<u32>]>,
    ) -> Result<Tensor> {
        let t = ckv_all.dim(0)?;
        let mut m = vec![f32::NEG_INFINITY; len * t];
        for i in 0..len {
            let row = &mut m[i * t..(i + 1) * t];
            match sel {
                Some(s) => s[i].iter().for_each(|&j| row[j as usize] = 0.0),
                None => row[..=s0 + i].iter_mut().for_each(|x| *x = 0.0),
            }
        }
        let mask = Tensor::from_vec(m, (len, t), q_abs.device())?;
        let (qa, qr) = self.segment_queries(q_abs, q_rope, off, len)?;
        self.attend(&qa, &qr, ckv_all, kr_all, Some(&mask), len)
    }

    /// Softmax attention of `[H·len, C]` latent queries (+ rope part) over `T` cached keys;
    /// `mask` is `[len, T]` (0 or −inf). Returns the attended latent `[H·len, C]`.
    fn attend(
        &self,
        qa: &Tensor,
        qr: &Tensor,
        kv: &Tensor,
        kr: &Tensor,
        mask: Option<&Tensor>,
        len: usize,
    ) -> Result<Tensor> {
        let s = ((qa.matmul(&kv.t()?)? + qr.matmul(&kr.t()?)?)? * self.scale)?;
        let s = match mask {
            Some(m) => {
                let t = m.dim(1)?;
                s.reshape((self.num_heads, len, t))?
                    .broadcast_add(m)?
                    .reshape((self.num_heads * len, t))?
            }
            None => s,
        };
        Ok(softmax_last_dim(&s)?.matmul(kv)?)
    }
}

/// A segment's keys visible after this call (`t`) and its queries: absolute position of the
/// first, row in the call's query side, count (`last_only`: the segment's last token only, at
/// row `k`, the segment's index).
fn segment_queries_of(seg: &SegInfo, k: usize, last_only: bool) -> (usize, (usize, usize, usize)) {
    let (s0, off, len) = (seg.start, seg.offset, seg.len);
    let queries = if last_only { (s0 + len - 1, k, 1) } else { (s0, off, len) };
    (s0 + len, queries)
}

/// Writes a segment's new keys into its cache (one layer) and returns the layer's first
/// `start + len` rows: `(c_kv, k_rope, k_index)`.
fn write_and_view(
    side: &CallProj<'_>,
    seg: &SegInfo,
    cache: &SeqCache,
    layer: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (s0, off, len) = (seg.start, seg.offset, seg.len);
    cache.write(
        layer,
        s0,
        &side.ckv.narrow(0, off, len)?,
        &side.krope.narrow(0, off, len)?,
        &side.ki.narrow(0, off, len)?,
    )?;
    cache.view(layer, s0 + len)
}

/// Records a block's indexer scores (`[rows, end]`, padded with −inf to `t`) and selections
/// (ascending, real keys only, padded with −1 to `topk`) into a layer trace, the way the host
/// path records them; without a selection (dense), every visible key is chosen.
fn record_selection(
    tr: &mut LayerTrace,
    scores: &Tensor,
    picked: Option<&(Tensor, Tensor)>,
    (first, t, topk): (usize, usize, usize),
) -> Result<()> {
    let rows = scores.to_vec2::<f32>()?;
    let picks = match picked {
        Some((i, v)) => Some((i.to_vec2::<u32>()?, v.to_vec2::<f32>()?)),
        None => None,
    };
    for (n, mut row) in rows.into_iter().enumerate() {
        let mut chosen: Vec<i64> = match &picks {
            Some((i, v)) => i[n]
                .iter()
                .zip(&v[n])
                .filter(|(_, s)| s.is_finite())
                .map(|(&j, _)| i64::from(j))
                .collect(),
            None => (0..(first + n + 1) as i64).collect(),
        };
        chosen.sort_unstable();
        chosen.resize(chosen.len().max(topk), -1);
        row.resize(t, f32::NEG_INFINITY);
        tr.index_scores.push(row);
        tr.topk.push(chosen);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_selection_is_causal_and_ascending() {
        let row = [0.5, 3.0, -1.0, 2.0, 9.0, 100.0];
        assert_eq!(select_topk(&row, 5, 2), vec![1, 4]); // position 5 is not visible
        assert_eq!(select_topk(&row, 3, 8), vec![0, 1, 2]);
        assert_eq!(select_topk(&row, 6, 3), vec![1, 4, 5]);
    }
}
