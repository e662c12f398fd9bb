//! `Config`: the HF `config.json` of a DeepSeek-V3.2 checkpoint (exact key names), plus the
//! derived constants of spec §1.2 and §5.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// YaRN parameters (`rope_scaling`, or `rope_parameters` in newer transformers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// `yarn` (anything else is treated as plain RoPE).
    #[serde(rename = "type", alias = "rope_type", default = "default_rope_type")]
    pub kind: String,
    /// Context extension factor.
    #[serde(default = "one")]
    pub factor: f64,
    /// Context length the base model was trained on.
    #[serde(default = "default_orig")]
    pub original_max_position_embeddings: f64,
    /// YaRN β_fast.
    #[serde(default = "default_beta_fast")]
    pub beta_fast: f64,
    /// YaRN β_slow.
    #[serde(default = "one")]
    pub beta_slow: f64,
    /// cos/sin multiplier numerator.
    #[serde(default = "one")]
    pub mscale: f64,
    /// softmax-scale mscale (0 means a factor of 1).
    #[serde(default)]
    pub mscale_all_dim: f64,
    /// `rope_theta` when given inside `rope_parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
}

fn default_rope_type() -> String {
    "default".into()
}
fn one() -> f64 {
    1.0
}
fn default_orig() -> f64 {
    4096.0
}
fn default_beta_fast() -> f64 {
    32.0
}

impl RopeScaling {
    /// Whether YaRN applies.
    pub fn is_yarn(&self) -> bool {
        self.kind == "yarn"
    }
}

/// `eos_token_id` is an int in DeepSeek configs, a list in some exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// All ids.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// The model configuration, read from HF `config.json`. Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `deepseek_v32`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width D.
    pub hidden_size: usize,
    /// Decoder layers of the main model (MTP layers come after these).
    pub num_hidden_layers: usize,
    /// Layers `0..k` use a dense MLP.
    #[serde(default)]
    pub first_k_dense_replace: usize,
    /// Every layer `i >= k` with `i % freq == 0` is MoE.
    #[serde(default = "one_usize")]
    pub moe_layer_freq: usize,
    /// Dense MLP width.
    pub intermediate_size: usize,
    /// Routed expert width.
    pub moe_intermediate_size: usize,
    /// MLA heads.
    pub num_attention_heads: usize,
    /// Query latent width.
    pub q_lora_rank: usize,
    /// KV latent width.
    pub kv_lora_rank: usize,
    /// Per-head q/k width without position.
    pub qk_nope_head_dim: usize,
    /// Per-head q/k rotary width (also the indexer's).
    pub qk_rope_head_dim: usize,
    /// Per-head value width.
    pub v_head_dim: usize,
    /// Routed experts per MoE layer.
    pub n_routed_experts: usize,
    /// Shared experts (fused into one MLP).
    #[serde(default)]
    pub n_shared_experts: usize,
    /// Routed experts per token.
    pub num_experts_per_tok: usize,
    /// Expert groups.
    #[serde(default = "one_usize")]
    pub n_group: usize,
    /// Groups kept per token.
    #[serde(default = "one_usize")]
    pub topk_group: usize,
    /// `sigmoid`.
    #[serde(default = "default_scoring")]
    pub scoring_func: String,
    /// `noaux_tc`.
    #[serde(default = "default_topk_method")]
    pub topk_method: String,
    /// Renormalise the chosen weights.
    #[serde(default = "yes")]
    pub norm_topk_prob: bool,
    /// Multiplier on routed weights.
    #[serde(default = "one")]
    pub routed_scaling_factor: f64,
    /// Indexer query heads.
    pub index_n_heads: usize,
    /// Indexer q/k width.
    pub index_head_dim: usize,
    /// Keys kept per query.
    pub index_topk: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// YaRN parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// Newer spelling of `rope_scaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeScaling>,
    /// Maximum positions.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// MTP layers stored after the main layers (skipped).
    #[serde(default)]
    pub num_nextn_predict_layers: usize,
    /// Whether `lm_head` is the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// BOS id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// EOS id(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Kept for round trips; the loader dispatches on header dtypes, not on this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization_config: Option<serde_json::Value>,
    /// `bfloat16` / `float32` (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    /// Architectures list (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
}

fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    163_840
}
fn default_scoring() -> String {
    "sigmoid".into()
}
fn default_topk_method() -> String {
    "noaux_tc".into()
}

/// YaRN `mscale(f, m)`.
pub fn yarn_mscale(factor: f64, m: f64) -> f64 {
    if factor <= 1.0 || m == 0.0 { 1.0 } else { 0.1 * m * factor.ln() + 1.0 }
}

impl Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates a config JSON text (`origin` names it in errors).
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        let cfg: Config = serde_json::from_str(text)
            .map_err(|e| Error::Config { path: origin.to_owned(), message: e.to_string() })?;
        cfg.validate().map_err(|message| Error::Config { path: origin.to_owned(), message })?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("q_lora_rank", self.q_lora_rank),
            ("kv_lora_rank", self.kv_lora_rank),
            ("qk_rope_head_dim", self.qk_rope_head_dim),
            ("v_head_dim", self.v_head_dim),
            ("index_n_heads", self.index_n_heads),
            ("index_head_dim", self.index_head_dim),
            ("index_topk", self.index_topk),
            ("moe_layer_freq", self.moe_layer_freq),
            ("n_group", self.n_group),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("`{name}` must be positive"));
            }
        }
        if !self.qk_rope_head_dim.is_multiple_of(2) {
            return Err("`qk_rope_head_dim` must be even".into());
        }
        if self.index_head_dim < self.qk_rope_head_dim {
            return Err("`index_head_dim` must be at least `qk_rope_head_dim`".into());
        }
        if self.has_moe() {
            if self.n_routed_experts == 0 || self.num_experts_per_tok == 0 {
                return Err("MoE layers need `n_routed_experts` and `num_experts_per_tok`".into());
            }
            if !self.n_routed_experts.is_multiple_of(self.n_group) {
                return Err("`n_routed_experts` must be a multiple of `n_group`".into());
            }
            if self.topk_group > self.n_group || self.topk_group == 0 {
                return Err("`topk_group` must be in 1..=n_group".into());
            }
            if self.num_experts_per_tok > self.topk_group * (self.n_routed_experts / self.n_group) {
                return Err("`num_experts_per_tok` exceeds the experts of the kept groups".into());
            }
            if self.scoring_func != "sigmoid" {
                return Err(format!("unsupported scoring_func `{}`", self.scoring_func));
            }
        }
        Ok(())
    }

    fn has_moe(&self) -> bool {
        (0..self.num_hidden_layers).any(|i| self.is_moe_layer(i))
    }

    /// Whether layer `i` uses MoE.
    pub fn is_moe_layer(&self, i: usize) -> bool {
        i >= self.first_k_dense_replace && i.is_multiple_of(self.moe_layer_freq)
    }

    /// `qk_nope_head_dim + qk_rope_head_dim`.
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    /// The effective YaRN parameters (either spelling).
    pub fn rope(&self) -> Option<&RopeScaling> {
        self.rope_scaling.as_ref().or(self.rope_parameters.as_ref())
    }

    /// RoPE base.
    pub fn theta(&self) -> f64 {
        self.rope_theta.or_else(|| self.rope().and_then(|r| r.rope_theta)).unwrap_or(10_000.0)
    }

    /// MLA softmax scale: `qk_head_dim^-0.5 · mscale(factor, mscale_all_dim)²`.
    pub fn softmax_scale(&self) -> f64 {
        let base = (self.qk_head_dim() as f64).powf(-0.5);
        match self.rope().filter(|r| r.is_yarn()) {
            Some(r) => {
                let m = yarn_mscale(r.factor, r.mscale_all_dim);
                base * m * m
            }
            None => base,
        }
    }

    /// cos/sin multiplier `mscale(f, mscale) / mscale(f, mscale_all_dim)`.
    pub fn rope_multiplier(&self) -> f64 {
        match self.rope().filter(|r| r.is_yarn()) {
            Some(r) => yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim),
            None => 1.0,
        }
    }

    /// Inverse frequencies `θ'_j` (f32, spec §17), `j = 0..rope_dim/2`.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.qk_rope_head_dim;
        let base = self.theta() as f32;
        let theta: Vec<f32> =
            (0..d / 2).map(|j| 1.0 / base.powf((2 * j) as f32 / d as f32)).collect();
        let Some(r) = self.rope().filter(|r| r.is_yarn()) else {
            return theta;
        };
        let corr = |n: f64| {
            d as f64 * (r.original_max_position_embeddings / (2.0 * std::f64::consts::PI * n)).ln()
                / (2.0 * self.theta().ln())
        };
        let lo = corr(r.beta_fast).floor().max(0.0);
        let mut hi = corr(r.beta_slow).ceil().min(d as f64 - 1.0);
        if lo == hi {
            hi += 0.001;
        }
        let factor = r.factor as f32;
        theta
            .iter()
            .enumerate()
            .map(|(j, &t)| {
                let ramp = (((j as f64 - lo) / (hi - lo)).clamp(0.0, 1.0)) as f32;
                t / factor * ramp + t * (1.0 - ramp)
            })
            .collect()
    }

    /// End-of-sequence ids (default `[1]`).
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id.as_ref().map_or_else(|| vec![1], TokenIds::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Config {
        Config::from_file(&agentgen_testdata::path("model/tiny-fp8/config.json")).unwrap()
    }

    #[test]
    fn derived_constants_match_goldens_json() {
        let cfg = fixture();
        assert!((cfg.softmax_scale() - 0.19124944415602058).abs() < 1e-12);
        assert_eq!(cfg.rope_multiplier(), 1.0);
        let expected = [
            1.0f32,
            0.562_341_33,
            0.316_227_76,
            0.177_827_94,
            0.1,
            0.056_234_13,
            0.027_218_176,
            0.012_829_017,
            0.005_821_428_3,
            0.002_490_368_7,
            0.000_959_977_16,
            0.000_292_145_9,
            2.500_000_1e-5,
            1.405_853_3e-5,
            7.905_694_5e-6,
            4.445_698_3e-6,
        ];
        let got = cfg.inv_freq();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() <= e * 1e-6, "{g} vs {e}");
        }
    }

    #[test]
    fn rope_parameters_spelling_and_unknown_keys() {
        let text = r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "intermediate_size": 16, "moe_intermediate_size": 4, "num_attention_heads": 2,
            "q_lora_rank": 4, "kv_lora_rank": 4, "qk_nope_head_dim": 2, "qk_rope_head_dim": 2,
            "v_head_dim": 2, "n_routed_experts": 0, "num_experts_per_tok": 0,
            "first_k_dense_replace": 1, "index_n_heads": 1, "index_head_dim": 4,
            "index_topk": 4, "some_future_key": [1, 2],
            "rope_parameters": {"rope_type": "yarn", "factor": 40, "rope_theta": 500.0,
              "mscale_all_dim": 1.0}}"#;
        let cfg = Config::from_json(text, Path::new("x")).unwrap();
        assert!(cfg.rope().unwrap().is_yarn());
        assert_eq!(cfg.theta(), 500.0);
        assert!(cfg.softmax_scale() > 0.5);
        let err = Config::from_json("{}", Path::new("cfg.json")).unwrap_err().to_string();
        assert!(err.contains("cfg.json") && err.contains("vocab_size"), "{err}");
    }
}
