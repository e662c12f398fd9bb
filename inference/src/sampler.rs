//! Token sampling: temperature, top-k, top-p (nucleus), greedy. One seeded RNG stream per
//! sequence, so the tokens of a sequence depend only on its logits and its seed, never on
//! which other sequences share the batch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Sampling parameters of one request. Defaults: temperature 1.0 and top-p 0.95 (DeepSeek's
/// recommendation), no top-k, seed 0, 256 new tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy.
    pub temperature: f32,
    /// Nucleus mass in `(0, 1]`.
    pub top_p: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Seed of this sequence's RNG stream.
    pub seed: u64,
    /// Maximum new tokens.
    pub max_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 1.0, top_p: 0.95, top_k: None, seed: 0, max_tokens: 256 }
    }
}

impl SamplingParams {
    /// Greedy decoding with `max_tokens`.
    pub fn greedy(max_tokens: usize) -> Self {
        Self { temperature: 0.0, top_p: 1.0, max_tokens, ..Self::default() }
    }

    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == Some(1)
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::InvalidRequest(format!("temperature {} < 0", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidRequest(format!("top_p {} not in (0, 1]", self.top_p)));
        }
        if self.top_k == Some(0) {
            return Err(Error::InvalidRequest("top_k must be at least 1".into()));
        }
        Ok(())
    }
}

/// A seeded sampler for one sequence.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    scratch: Vec<(u32, f32)>,
}

/// `log_softmax(logits)[token]` at temperature 1 (the model's own distribution).
pub fn logprob_of(logits: &[f32], token: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits.iter().map(|&l| f64::from(l - max).exp()).sum::<f64>().ln() as f32 + max;
    logits[token] - lse
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Self { params, rng, scratch: Vec::new() }
    }

    /// Picks the next token; returns it with its log-probability under the model's
    /// distribution (`log_softmax` of the raw logits, temperature 1).
    pub fn sample(&mut self, logits: &[f32]) -> (u32, f32) {
        let token = if self.params.is_greedy() { argmax(logits) } else { self.draw(logits) };
        (token as u32, logprob_of(logits, token))
    }

    fn draw(&mut self, logits: &[f32]) -> usize {
        let inv_t = 1.0 / self.params.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let c = &mut self.scratch;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp())));
        let by_prob = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if let Some(k) = self.params.top_k.filter(|&k| k < c.len()) {
            c.select_nth_unstable_by(k - 1, by_prob);
            c.truncate(k);
        }
        if self.params.top_p < 1.0 {
            // The nucleus: the fewest most-probable entries holding `top_p` of the mass. Found
            // by bisecting on its size with selections (expected O(V)), not by sorting all
            // 129K entries per token, which dominated a decode step. The kept entries are then
            // walked in the order the selections left them: deterministic for given logits.
            let total: f64 = c.iter().map(|x| f64::from(x.1)).sum();
            let target = f64::from(self.params.top_p) * total;
            // Invariant: c[..lo] are the `lo` most probable entries and hold less than the
            // target; the `hi` most probable hold at least the target (or hi is everything).
            let (mut lo, mut hi, mut below) = (0usize, c.len(), 0.0f64);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                c[lo..hi].select_nth_unstable_by(mid - lo, by_prob);
                let mass = below + c[lo..mid].iter().map(|x| f64::from(x.1)).sum::<f64>();
                if mass >= target {
                    hi = mid;
                } else {
                    (lo, below) = (mid, mass);
                }
            }
            c.truncate(hi);
        } else {
            // deterministic order regardless of how the selection above permuted the entries
            c.sort_unstable_by_key(|x| x.0);
        }
        let total: f64 = c.iter().map(|x| f64::from(x.1)).sum();
        let u: f64 = self.rng.random::<f64>() * total;
        let mut acc = 0.0;
        for x in c.iter() {
            acc += f64::from(x.1);
            if u < acc {
                return x.0 as usize;
            }
        }
        c.last().map_or(0, |x| x.0 as usize)
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).map_or(0, |x| x.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.0).collect()
    }

    #[test]
    fn greedy_picks_argmax_and_reports_logprob() {
        let mut s = Sampler::new(SamplingParams::greedy(4));
        let l = logits();
        let (t, lp) = s.sample(&l);
        assert_eq!(l[t as usize], l.iter().copied().fold(f32::MIN, f32::max));
        assert!(lp < 0.0 && lp > -10.0);
        let p: f64 = l.iter().enumerate().map(|(i, _)| f64::from(logprob_of(&l, i)).exp()).sum();
        assert!((p - 1.0).abs() < 1e-5);
    }

    #[test]
    fn same_seed_same_stream_different_seed_differs() {
        let params = SamplingParams { temperature: 1.5, top_p: 1.0, seed: 7, ..Default::default() };
        let l = logits();
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(p);
            (0..64).map(|_| s.sample(&l).0).collect::<Vec<_>>()
        };
        assert_eq!(run(params.clone()), run(params.clone()));
        assert_ne!(run(params.clone()), run(SamplingParams { seed: 8, ..params }));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let mut l = vec![0f32; 10];
        l[3] = 5.0;
        l[7] = 4.9;
        let mut s =
            Sampler::new(SamplingParams { top_k: Some(2), top_p: 1.0, ..Default::default() });
        for _ in 0..100 {
            let t = s.sample(&l).0;
            assert!(t == 3 || t == 7);
        }
        // The nucleus is the fewest most probable tokens holding top_p of the mass.
        let mut flat = vec![0f32; 1000];
        flat[10] = 3.0; // ~2.0% of the mass each for 10 and 20, the rest ~0.1% each
        flat[20] = 3.0;
        // Ties go to the lower id, so the 9-token nucleus is 10, 20 and ids 0..=6.
        let nine: Vec<u32> = vec![0, 1, 2, 3, 4, 5, 6, 10, 20];
        for (top_p, want) in [(0.015f32, vec![10u32]), (0.03, vec![10, 20]), (0.045, nine)] {
            let mut s = Sampler::new(SamplingParams { top_p, seed: 3, ..Default::default() });
            let seen: std::collections::BTreeSet<u32> =
                (0..4000).map(|_| s.sample(&flat).0).collect();
            assert_eq!(seen.into_iter().collect::<Vec<_>>(), want, "top_p {top_p}");
        }
        // top-p 0.5: token 3 alone holds > 50% of the mass
        let mut s = Sampler::new(SamplingParams { top_p: 0.5, ..Default::default() });
        for _ in 0..100 {
            assert_eq!(s.sample(&l).0, 3);
        }
        assert!(SamplingParams { top_p: 0.0, ..Default::default() }.validate().is_err());
        assert!(SamplingParams { temperature: -1.0, ..Default::default() }.validate().is_err());
    }
}
