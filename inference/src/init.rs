//! Random-weight checkpoints in the HF layout (`config.json` + `model.safetensors`) for tests,
//! demos and benchmarks. Presets use the real V3.2 vocabulary (129,280) and special-token ids
//! so the codec's tokenizer applies; `small` and `medium` keep the 671B model's ratios
//! (attention vs indexer width, top-k 2048) at sizes a CPU runs with long contexts.

use std::collections::HashMap;
use std::path::Path;

pub use candle_core::DType;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::loader::MapWeights;
use crate::models::deepseek_v32::Config;
use crate::{Error, Result};

/// The real DeepSeek-V3.2 vocabulary size.
pub const V32_VOCAB: usize = 129_280;

/// A named size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The public fixture's shapes (3 layers, hidden 128, top-k 8).
    Tiny,
    /// 4 layers, hidden 256, top-k 2048.
    Small,
    /// 6 layers, hidden 512, top-k 2048.
    Medium,
}

impl Preset {
    /// Parses `tiny`, `small` or `medium`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "tiny" => Ok(Self::Tiny),
            "small" => Ok(Self::Small),
            "medium" => Ok(Self::Medium),
            _ => Err(Error::InvalidRequest(format!("unknown preset `{s}` (tiny|small|medium)"))),
        }
    }

    /// The preset's config with vocabulary `vocab`.
    pub fn config(self, vocab: usize) -> Config {
        // (D, L, dense, inter, moe_inter, H, q_lora, C, dn, dr, dv, E, per_tok, groups,
        //  topk_group, Hi, Di, topk)
        let p = match self {
            Self::Tiny => (128, 3, 1, 256, 64, 4, 96, 128, 64, 32, 64, 16, 4, 4, 2, 8, 128, 8),
            Self::Small => (256, 4, 1, 704, 64, 8, 192, 128, 32, 16, 32, 32, 4, 8, 4, 4, 32, 2048),
            Self::Medium => {
                (512, 6, 1, 1408, 128, 16, 384, 256, 64, 32, 64, 32, 4, 8, 4, 8, 64, 2048)
            }
        };
        let json = serde_json::json!({
            "architectures": ["DeepseekV32ForCausalLM"],
            "model_type": "deepseek_v32",
            "vocab_size": vocab,
            "hidden_size": p.0, "num_hidden_layers": p.1, "first_k_dense_replace": p.2,
            "moe_layer_freq": 1, "intermediate_size": p.3, "moe_intermediate_size": p.4,
            "num_attention_heads": p.5, "num_key_value_heads": p.5, "q_lora_rank": p.6,
            "kv_lora_rank": p.7, "qk_nope_head_dim": p.8, "qk_rope_head_dim": p.9,
            "v_head_dim": p.10, "n_routed_experts": p.11, "n_shared_experts": 1,
            "num_experts_per_tok": p.12, "n_group": p.13, "topk_group": p.14,
            "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": true,
            "routed_scaling_factor": 2.5, "index_n_heads": p.15, "index_head_dim": p.16,
            "index_topk": p.17, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "rope_scaling": {"type": "yarn", "factor": 40.0,
                "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0,
                "mscale": 1.0, "mscale_all_dim": 1.0},
            "max_position_embeddings": 163840, "num_nextn_predict_layers": 0,
            "tie_word_embeddings": false, "bos_token_id": 0, "eos_token_id": 1,
        });
        serde_json::from_value(json).unwrap_or_else(|e| unreachable!("preset config: {e}"))
    }
}

#[derive(Debug, Clone, Copy)]
enum Init {
    /// N(0, 1/in)
    Proj,
    /// 1 + 0.1 N(0, 1)
    Norm,
    /// 0.1 N(0, 1)
    Bias,
    /// N(0, 1)
    Embed,
    /// U(-0.15, 0.15)
    RouterBias,
}

/// Every tensor of the main model with its shape (HF names).
fn specs(cfg: &Config) -> Vec<(String, Vec<usize>, Init)> {
    let (v, d, h) = (cfg.vocab_size, cfg.hidden_size, cfg.num_attention_heads);
    let (c, qr, dn, dr, dv) = (
        cfg.kv_lora_rank,
        cfg.q_lora_rank,
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
    );
    let (hi, di) = (cfg.index_n_heads, cfg.index_head_dim);
    let mut s: Vec<(String, Vec<usize>, Init)> = vec![
        ("model.embed_tokens.weight".into(), vec![v, d], Init::Embed),
        ("model.norm.weight".into(), vec![d], Init::Norm),
        ("lm_head.weight".into(), vec![v, d], Init::Proj),
    ];
    let ffn = |s: &mut Vec<(String, Vec<usize>, Init)>, p: &str, inter: usize| {
        s.push((format!("{p}.gate_proj.weight"), vec![inter, d], Init::Proj));
        s.push((format!("{p}.up_proj.weight"), vec![inter, d], Init::Proj));
        s.push((format!("{p}.down_proj.weight"), vec![d, inter], Init::Proj));
    };
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let a = format!("{p}.self_attn");
        for (n, shape, init) in [
            (format!("{p}.input_layernorm.weight"), vec![d], Init::Norm),
            (format!("{p}.post_attention_layernorm.weight"), vec![d], Init::Norm),
            (format!("{a}.q_a_proj.weight"), vec![qr, d], Init::Proj),
            (format!("{a}.q_a_layernorm.weight"), vec![qr], Init::Norm),
            (format!("{a}.q_b_proj.weight"), vec![h * (dn + dr), qr], Init::Proj),
            (format!("{a}.kv_a_proj_with_mqa.weight"), vec![c + dr, d], Init::Proj),
            (format!("{a}.kv_a_layernorm.weight"), vec![c], Init::Norm),
            (format!("{a}.kv_b_proj.weight"), vec![h * (dn + dv), c], Init::Proj),
            (format!("{a}.o_proj.weight"), vec![d, h * dv], Init::Proj),
            (format!("{a}.indexer.wq_b.weight"), vec![hi * di, qr], Init::Proj),
            (format!("{a}.indexer.wk.weight"), vec![di, d], Init::Proj),
            (format!("{a}.indexer.k_norm.weight"), vec![di], Init::Norm),
            (format!("{a}.indexer.k_norm.bias"), vec![di], Init::Bias),
            (format!("{a}.indexer.weights_proj.weight"), vec![hi, d], Init::Proj),
        ] {
            s.push((n, shape, init));
        }
        if cfg.is_moe_layer(i) {
            let e = cfg.n_routed_experts;
            s.push((format!("{p}.mlp.gate.weight"), vec![e, d], Init::Proj));
            s.push((format!("{p}.mlp.gate.e_score_correction_bias"), vec![e], Init::RouterBias));
            for x in 0..e {
                ffn(&mut s, &format!("{p}.mlp.experts.{x}"), cfg.moe_intermediate_size);
            }
            if cfg.n_shared_experts > 0 {
                let inter = cfg.moe_intermediate_size * cfg.n_shared_experts;
                ffn(&mut s, &format!("{p}.mlp.shared_experts"), inter);
            }
        } else {
            ffn(&mut s, &format!("{p}.mlp"), cfg.intermediate_size);
        }
    }
    s
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// Random f32 weights for `cfg`; tensor `i` draws from its own stream seeded by `(seed, i)`.
pub fn random_weights(cfg: &Config, seed: u64) -> Result<MapWeights> {
    let tensors = specs(cfg)
        .into_par_iter()
        .enumerate()
        .map(|(i, (name, shape, init))| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let n: usize = shape.iter().product();
            let fan_in = *shape.last().unwrap_or(&1) as f32;
            let values: Vec<f32> = (0..n)
                .map(|_| match init {
                    Init::Proj => normal(&mut rng) / fan_in.sqrt(),
                    Init::Norm => 1.0 + 0.1 * normal(&mut rng),
                    Init::Bias => 0.1 * normal(&mut rng),
                    Init::Embed => normal(&mut rng),
                    Init::RouterBias => rng.random_range(-0.15f32..0.15),
                })
                .collect();
            Ok((name, Tensor::from_vec(values, shape, &Device::Cpu)?))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    Ok(MapWeights { tensors })
}

/// Writes `config.json` and `model.safetensors` (`dtype` BF16 or F32; the router bias stays
/// F32 as in the real checkpoint).
pub fn write_checkpoint(
    dir: &Path,
    cfg: &Config,
    weights: &MapWeights,
    dtype: DType,
) -> Result<()> {
    let io = |source| Error::Io { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut cfg = cfg.clone();
    cfg.torch_dtype = Some(if dtype == DType::BF16 { "bfloat16" } else { "float32" }.into());
    let text = serde_json::to_string_pretty(&cfg)
        .map_err(|e| Error::Config { path: dir.join("config.json"), message: e.to_string() })?;
    std::fs::write(dir.join("config.json"), text).map_err(io)?;
    let mut converted = Vec::with_capacity(weights.tensors.len());
    for (name, t) in &weights.tensors {
        let dt = if name.ends_with("e_score_correction_bias") { DType::F32 } else { dtype };
        converted.push((name.clone(), t.to_dtype(dt)?));
    }
    converted.sort_by(|a, b| a.0.cmp(&b.0));
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&converted.into_iter().collect::<HashMap<_, _>>(), &path)?;
    Ok(())
}
