//! Feed-forward blocks (spec §9): the SwiGLU MLP used by dense layers, experts and shared
//! experts, and the sigmoid-routed MoE with bias-corrected, group-limited selection.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::kernels::with_host;
use super::{Config, Linear};
use crate::Result;
use crate::loader::WeightSource;

/// `down(SiLU(x·gateᵀ) ⊙ (x·upᵀ))`, with gate and up fused into one `[2I, D]` matrix.
#[derive(Debug, Clone)]
pub struct Ffn {
    gate_up: Linear,
    down: Linear,
    inter: usize,
}

impl Ffn {
    /// Loads `{prefix}.{gate_proj,up_proj,down_proj}.weight`.
    pub fn load(
        w: &dyn WeightSource,
        prefix: &str,
        dim: usize,
        inter: usize,
        dev: &Device,
    ) -> Result<Self> {
        let gate = w.get(&format!("{prefix}.gate_proj.weight"), &[inter, dim], dev)?;
        let up = w.get(&format!("{prefix}.up_proj.weight"), &[inter, dim], dev)?;
        let down = w.get(&format!("{prefix}.down_proj.weight"), &[dim, inter], dev)?;
        Ok(Self {
            gate_up: Linear::new(Tensor::cat(&[&gate, &up], 0)?)?,
            down: Linear::new(down)?,
            inter,
        })
    }

    /// `[N, D] -> [N, D]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gu = self.gate_up.forward(x)?;
        let g = gu.narrow(1, 0, self.inter)?.silu()?;
        let u = gu.narrow(1, self.inter, self.inter)?;
        self.down.forward(&(g * u)?)
    }
}

/// The routing decision for one token: experts (ascending) and their combine weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Chosen experts, ascending.
    pub experts: Vec<usize>,
    /// Final weights (renormalised if configured, times `routed_scaling_factor`).
    pub weights: Vec<f32>,
}

/// Routing parameters taken from the config.
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig {
    /// Experts.
    pub n_experts: usize,
    /// Groups.
    pub n_group: usize,
    /// Groups kept.
    pub topk_group: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Renormalise.
    pub norm_topk_prob: bool,
    /// Multiplier.
    pub scaling: f32,
}

impl RouterConfig {
    /// From the model config.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            n_experts: cfg.n_routed_experts,
            n_group: cfg.n_group,
            topk_group: cfg.topk_group,
            top_k: cfg.num_experts_per_tok,
            norm_topk_prob: cfg.norm_topk_prob,
            scaling: cfg.routed_scaling_factor as f32,
        }
    }
}

/// Sigmoid scores; `score + bias` chooses (group score = sum of the top-2 biased scores in the
/// group; keep `topk_group` groups; top-k experts inside them); the plain sigmoid scores,
/// renormalised over the chosen k, times the scaling factor, weigh the outputs.
pub fn route(logits: &[f32], bias: &[f32], rc: &RouterConfig) -> Route {
    let s: Vec<f32> = logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
    let c: Vec<f32> = s.iter().zip(bias).map(|(a, b)| a + b).collect();
    let gsize = rc.n_experts / rc.n_group;
    let mut gscores: Vec<(usize, f32)> = (0..rc.n_group)
        .map(|g| {
            let mut v: Vec<f32> = c[g * gsize..(g + 1) * gsize].to_vec();
            v.sort_by(|a, b| b.total_cmp(a));
            (g, v.iter().take(2).sum())
        })
        .collect();
    gscores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut candidates: Vec<usize> =
        gscores.iter().take(rc.topk_group).flat_map(|&(g, _)| g * gsize..(g + 1) * gsize).collect();
    candidates.sort_by(|&a, &b| c[b].total_cmp(&c[a]).then(a.cmp(&b)));
    let mut experts: Vec<usize> = candidates.into_iter().take(rc.top_k).collect();
    experts.sort_unstable();
    let mut weights: Vec<f32> = experts.iter().map(|&e| s[e]).collect();
    if rc.norm_topk_prob {
        let sum: f32 = weights.iter().sum::<f32>() + 1e-20;
        for w in &mut weights {
            *w /= sum;
        }
    }
    for w in &mut weights {
        *w *= rc.scaling;
    }
    Route { experts, weights }
}

/// A MoE block: router, routed experts, shared experts.
#[derive(Debug, Clone)]
pub struct Moe {
    gate: Linear,
    bias: Vec<f32>,
    experts: Vec<Ffn>,
    shared: Option<Ffn>,
    rc: RouterConfig,
}

impl Moe {
    /// Loads `{prefix}.gate`, `{prefix}.experts.*`, `{prefix}.shared_experts`.
    pub fn load(w: &dyn WeightSource, prefix: &str, cfg: &Config, dev: &Device) -> Result<Self> {
        let (d, e) = (cfg.hidden_size, cfg.n_routed_experts);
        let gate = w.get(&format!("{prefix}.gate.weight"), &[e, d], dev)?;
        let bias_name = format!("{prefix}.gate.e_score_correction_bias");
        let bias = if w.contains(&bias_name) {
            w.get(&bias_name, &[e], dev)?.to_vec1::<f32>()?
        } else {
            vec![0.0; e]
        };
        let experts = (0..e)
            .map(|i| {
                let p = format!("{prefix}.experts.{i}");
                Ffn::load(w, &p, d, cfg.moe_intermediate_size, dev)
            })
            .collect::<Result<Vec<_>>>()?;
        let shared = if cfg.n_shared_experts > 0 {
            let inter = cfg.moe_intermediate_size * cfg.n_shared_experts;
            Some(Ffn::load(w, &format!("{prefix}.shared_experts"), d, inter, dev)?)
        } else {
            None
        };
        Ok(Self {
            gate: Linear::new(gate)?,
            bias,
            experts,
            shared,
            rc: RouterConfig::from_config(cfg),
        })
    }

    /// `[N, D] -> [N, D]`; `routes` receives each token's decision when given. `host`: the
    /// routed outputs may be added on the host (a CPU model not forced onto the tensor path).
    pub fn forward(
        &self,
        x: &Tensor,
        routes: Option<&mut Vec<Route>>,
        host: bool,
    ) -> Result<Tensor> {
        let logits = self.gate.forward(x)?.to_vec2::<f32>()?;
        let decided: Vec<Route> =
            logits.par_iter().map(|l| route(l, &self.bias, &self.rc)).collect();
        let mut per_expert: Vec<(Vec<u32>, Vec<f32>)> =
            vec![(Vec::new(), Vec::new()); self.experts.len()];
        for (t, r) in decided.iter().enumerate() {
            for (&e, &wt) in r.experts.iter().zip(&r.weights) {
                per_expert[e].0.push(t as u32);
                per_expert[e].1.push(wt);
            }
        }
        // Every expert's token list and weights in one copy to the device (a copy from pageable
        // host memory waits for the whole stream, so one per layer, not one per expert).
        let mut starts = Vec::with_capacity(per_expert.len());
        let (mut all_tokens, mut all_wts) = (Vec::new(), Vec::new());
        for (tokens, wts) in &per_expert {
            starts.push(all_tokens.len());
            all_tokens.extend_from_slice(tokens);
            all_wts.extend_from_slice(wts);
        }
        let total = all_tokens.len();
        let all_idx = Tensor::from_vec(all_tokens, total, x.device())?;
        let all_w = Tensor::from_vec(all_wts, (total, 1), x.device())?;
        // The experts (and the shared one) are independent: run them concurrently (their
        // products are small, so one at a time leaves cores idle), then add the routed outputs
        // to the shared one in expert order.
        let (shared, outputs) = rayon::join(
            || match &self.shared {
                Some(s) => s.forward(x),
                None => Ok(x.zeros_like()?),
            },
            || {
                per_expert
                    .into_par_iter()
                    .enumerate()
                    .filter(|(_, (tokens, _))| !tokens.is_empty())
                    .map(|(e, (tokens, wts))| {
                        let idx = all_idx.narrow(0, starts[e], tokens.len())?;
                        let ys = self.experts[e].forward(&x.index_select(&idx, 0)?)?;
                        Ok((e, tokens, idx, wts, ys))
                    })
                    .collect::<Result<Vec<_>>>()
            },
        );
        let (mut out, outputs) = (shared?, outputs?);
        let d = x.dim(1)?;
        let mut host = if host { with_host(&out, <[f32]>::to_vec) } else { None };
        for (e, tokens, idx, wts, ys) in outputs {
            let added = match host.as_mut() {
                Some(acc) => with_host(&ys, |ys| {
                    for ((&t, &w), y) in tokens.iter().zip(&wts).zip(ys.chunks_exact(d)) {
                        let row = &mut acc[t as usize * d..][..d];
                        row.iter_mut().zip(y).for_each(|(o, &v)| *o += w * v);
                    }
                })
                .is_some(),
                None => false,
            };
            if !added {
                // Another device (or a layout the host path does not read): add on the device.
                if let Some(acc) = host.take() {
                    out = Tensor::from_vec(acc, out.shape(), out.device())?;
                }
                let w = all_w.narrow(0, starts[e], tokens.len())?;
                out = out.index_add(&idx, &ys.broadcast_mul(&w)?, 0)?;
            }
        }
        if let Some(acc) = host {
            out = Tensor::from_vec(acc, out.shape(), out.device())?;
        }
        if let Some(r) = routes {
            *r = decided;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc() -> RouterConfig {
        RouterConfig {
            n_experts: 8,
            n_group: 4,
            topk_group: 2,
            top_k: 2,
            norm_topk_prob: true,
            scaling: 2.5,
        }
    }

    #[test]
    fn bias_selects_but_does_not_weigh() {
        let logits = [0.0f32; 8];
        let mut bias = [0.0f32; 8];
        bias[5] = 0.3;
        bias[6] = 0.2;
        let r = route(&logits, &bias, &rc());
        assert_eq!(r.experts, vec![5, 6]);
        // plain sigmoid scores are equal -> equal weights, renormalised, times 2.5
        assert!((r.weights[0] - 1.25).abs() < 1e-6 && (r.weights[1] - 1.25).abs() < 1e-6);
    }

    #[test]
    fn group_limit_uses_top2_sum() {
        // group 0 has one huge expert, group 1 two good ones, group 2 two decent ones.
        let logits = [5.0f32, -5.0, 1.0, 1.0, 0.5, 0.5, -5.0, -5.0];
        let r = route(&logits, &[0.0; 8], &RouterConfig { topk_group: 1, ..rc() });
        // group sums: g0 = s(5)+s(-5) ≈ 1.0 ; g1 = 2*s(1) ≈ 1.46 -> only group 1 is kept
        assert_eq!(r.experts, vec![2, 3]);
        let r = route(
            &logits,
            &[0.0; 8],
            &RouterConfig { topk_group: 4, norm_topk_prob: false, ..rc() },
        );
        assert_eq!(r.experts, vec![0, 2]);
        let s5 = 1.0 / (1.0 + (-5.0f32).exp());
        assert!((r.weights[0] - s5 * 2.5).abs() < 1e-6);
    }
}
