//! Per-sequence caches (spec §12): for every layer and token the normalised KV latent `c_kv`,
//! the rotated shared rope key, and the indexer key. No per-head K or V is kept.
//!
//! Storage grows by doubling so that a decode step writes in place (no per-token
//! reallocation); `truncate` lets a caller keep a shared prefix (multi-turn rollouts).

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use super::Config;
use crate::Result;

/// One layer's cache buffers (`capacity` rows each; rows `>= len` are garbage).
#[derive(Debug, Clone)]
struct LayerCache {
    ckv: Tensor,
    krope: Tensor,
    kidx: Tensor,
}

/// The cache of one sequence.
#[derive(Debug, Clone)]
pub struct SeqCache {
    /// Empty until the first `reserve`.
    layers: Vec<LayerCache>,
    n_layers: usize,
    len: usize,
    capacity: usize,
    widths: [usize; 3],
    device: Device,
}

impl SeqCache {
    /// An empty cache for `cfg` on `device` (nothing allocated yet).
    pub fn new(cfg: &Config, device: &Device) -> Self {
        let widths = [cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.index_head_dim];
        Self {
            layers: Vec::new(),
            n_layers: cfg.num_hidden_layers,
            len: 0,
            capacity: 0,
            widths,
            device: device.clone(),
        }
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every token at position `>= len` (no-op if already shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes of cache content per token (all layers, f32): `(C + R + Di) · 4 · L`.
    pub fn bytes_per_token(&self) -> usize {
        self.widths.iter().sum::<usize>() * 4 * self.n_layers
    }

    /// Ensures room for `total` tokens, doubling the capacity (copying the valid rows).
    pub(crate) fn reserve(&mut self, total: usize) -> Result<()> {
        if total <= self.capacity {
            return Ok(());
        }
        let cap = total.max(self.capacity * 2).max(16);
        if self.layers.is_empty() {
            for _ in 0..self.n_layers {
                let empty = |w: usize| Tensor::zeros((0, w), DType::F32, &self.device);
                self.layers.push(LayerCache {
                    ckv: empty(self.widths[0])?,
                    krope: empty(self.widths[1])?,
                    kidx: empty(self.widths[2])?,
                });
            }
        }
        for layer in &mut self.layers {
            for (buf, w) in
                [&mut layer.ckv, &mut layer.krope, &mut layer.kidx].into_iter().zip(self.widths)
            {
                let grown = Tensor::zeros((cap, w), DType::F32, &self.device)?;
                if self.len > 0 {
                    grown.slice_set(&buf.narrow(0, 0, self.len)?, 0, 0)?;
                }
                *buf = grown;
            }
        }
        self.capacity = cap;
        Ok(())
    }

    /// Writes rows `[start, start + n)` of one layer (after `reserve`).
    pub(crate) fn write(
        &self,
        layer: usize,
        start: usize,
        ckv: &Tensor,
        krope: &Tensor,
        kidx: &Tensor,
    ) -> Result<()> {
        let l = &self.layers[layer];
        l.ckv.slice_set(ckv, 0, start)?;
        l.krope.slice_set(krope, 0, start)?;
        l.kidx.slice_set(kidx, 0, start)?;
        Ok(())
    }

    /// The first `t` rows of one layer: `(c_kv [t, C], k_rope [t, R], k_index [t, Di])`.
    pub(crate) fn view(&self, layer: usize, t: usize) -> Result<(Tensor, Tensor, Tensor)> {
        let l = &self.layers[layer];
        Ok((l.ckv.narrow(0, 0, t)?, l.krope.narrow(0, 0, t)?, l.kidx.narrow(0, 0, t)?))
    }

    /// Marks `len` tokens valid (after every layer wrote them).
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Fills the cache with `len` synthetic tokens (random unit-scale rows), so a benchmark can
    /// measure decode at a long context without a long prefill.
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        self.len = 0;
        self.reserve(len)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for layer in 0..self.n_layers {
            let mut parts = Vec::with_capacity(3);
            for w in self.widths {
                let v: Vec<f32> = (0..len * w).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                parts.push(Tensor::from_vec(v, (len, w), &self.device)?);
            }
            self.write(layer, 0, &parts[0], &parts[1], &parts[2])?;
        }
        self.len = len;
        Ok(())
    }
}
