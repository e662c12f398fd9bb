//! Golden parity checks against a goldens file in the format of
//! `shared/fixtures/model/goldens.safetensors` (tolerances of its README and of
//! `shared/notes/interfaces.md`). Shapes and sizes come from the files.

use std::path::Path;

use crate::loader::SafetensorsWeights;
use crate::models::deepseek_v32::{ForwardOptions, LogitsMode, Model, Probe, Segment};
use crate::{Error, Result};

/// Logits max-abs tolerance (f32 engine).
pub const LOGITS_TOL: f32 = 1e-3;
/// Hidden-state tolerance relative to each row's L2 norm.
pub const HIDDEN_REL_TOL: f32 = 1e-4;
/// Indexer-score tolerance relative to max |I|.
pub const SCORE_REL_TOL: f32 = 1e-4;
/// MoE combine-weight max-abs tolerance.
pub const MOE_WEIGHT_TOL: f32 = 1e-4;

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Check {
    /// Check name (`prefill_logits`, `prefill_topk.1`, …).
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Measured error / mismatch description.
    pub detail: String,
}

fn check(name: impl Into<String>, passed: bool, detail: String) -> Check {
    Check { name: name.into(), passed, detail }
}

struct Goldens {
    file: SafetensorsWeights,
    path: std::path::PathBuf,
}

impl Goldens {
    fn has(&self, name: &str) -> bool {
        self.file.shape(name).is_some()
    }
    fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.file.read_f32(name)
    }
    fn ints(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        self.file.read_i64(name)
    }
    fn bad(&self, message: String) -> Error {
        Error::Goldens { path: self.path.clone(), message }
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn compare_logits(name: &str, ours: &[f32], want: &[f32]) -> Check {
    if ours.len() != want.len() {
        return check(name, false, format!("size {} vs {}", ours.len(), want.len()));
    }
    let e = max_abs(ours, want);
    check(name, e <= LOGITS_TOL, format!("max-abs {e:.2e} (tol {LOGITS_TOL:.0e})"))
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

fn sorted_valid(row: &[i64]) -> Vec<i64> {
    let mut v: Vec<i64> = row.iter().copied().filter(|&x| x >= 0).collect();
    v.sort_unstable();
    v
}

fn compare_sets(name: &str, ours: &[Vec<i64>], want: &[i64], width: usize) -> Check {
    let rows = want.len() / width.max(1);
    if ours.len() != rows {
        return check(name, false, format!("{} rows vs {rows}", ours.len()));
    }
    let mismatches: Vec<usize> = (0..rows)
        .filter(|&r| sorted_valid(&ours[r]) != sorted_valid(&want[r * width..(r + 1) * width]))
        .collect();
    let detail = match mismatches.first() {
        None => format!("{rows} rows identical"),
        Some(&r) => format!("{} of {rows} rows differ (first: row {r})", mismatches.len()),
    };
    check(name, mismatches.is_empty(), detail)
}

/// Runs every check the goldens file supports against `model`.
pub fn run_checks(model: &Model, goldens: &Path) -> Result<Vec<Check>> {
    let g = Goldens { file: SafetensorsWeights::open_file(goldens)?, path: goldens.to_owned() };
    let cfg = model.config();
    let (vocab, n_layers) = (cfg.vocab_size, cfg.num_hidden_layers);
    let mut out = Vec::new();
    let (_, prompt) = g.ints("prompt_ids")?;
    let prompt: Vec<u32> = prompt
        .iter()
        .map(|&x| u32::try_from(x).map_err(|_| g.bad(format!("bad prompt id {x}"))))
        .collect::<Result<_>>()?;
    let p = prompt.len();

    // One prefill, recorded.
    let mut cache = model.new_cache();
    let mut probe = Probe { record: true, ..Probe::default() };
    let logits = model.forward(
        &mut [Segment { cache: &mut cache, tokens: &prompt }],
        ForwardOptions { dense: false, logits: LogitsMode::All },
        Some(&mut probe),
    )?;
    let logits = logits.flatten_all()?.to_vec1::<f32>()?;
    if g.has("prefill_logits") {
        out.push(compare_logits("prefill_logits", &logits, &g.f32("prefill_logits")?.1));
    }
    if g.has("prefill_hidden") {
        let (shape, want) = g.f32("prefill_hidden")?;
        let d = *shape.last().unwrap_or(&0);
        let mut worst = 0f32;
        let mut ok = shape.len() == 3 && shape[0] == probe.hidden.len() && shape[1] == p;
        if ok {
            for (l, h) in probe.hidden.iter().enumerate() {
                let ours = h.flatten_all()?.to_vec1::<f32>()?;
                for r in 0..p {
                    let base = (l * p + r) * d;
                    let w = &want[base..base + d];
                    let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    worst = worst.max(max_abs(&ours[r * d..(r + 1) * d], w) / norm);
                }
            }
            ok = worst <= HIDDEN_REL_TOL;
        }
        out.push(check(
            "prefill_hidden",
            ok,
            format!("max row-relative error {worst:.2e} (tol {HIDDEN_REL_TOL:.0e})"),
        ));
    }
    for l in 0..n_layers {
        let tr = &probe.layers[l];
        let name = format!("prefill_index_scores.{l}");
        if g.has(&name) {
            let (_, want) = g.f32(&name)?;
            let ours: Vec<f32> = tr.index_scores.iter().flatten().copied().collect();
            let scale = want.iter().filter(|x| x.is_finite()).fold(0f32, |m, x| m.max(x.abs()));
            let same_inf = ours.len() == want.len()
                && ours.iter().zip(&want).all(|(a, b)| a.is_finite() == b.is_finite());
            let e = ours
                .iter()
                .zip(&want)
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let tol = SCORE_REL_TOL * scale;
            out.push(check(
                name,
                same_inf && e <= tol,
                format!("max-abs {e:.2e} (tol {tol:.2e}), -inf pattern identical: {same_inf}"),
            ));
        }
        let name = format!("prefill_topk.{l}");
        if g.has(&name) {
            let (shape, want) = g.ints(&name)?;
            out.push(compare_sets(&name, &tr.topk, &want, shape[1]));
        }
        let name = format!("prefill_moe_experts.{l}");
        if g.has(&name) {
            let (shape, want) = g.ints(&name)?;
            let ours: Vec<Vec<i64>> =
                tr.routes.iter().map(|r| r.experts.iter().map(|&e| e as i64).collect()).collect();
            out.push(compare_sets(&name, &ours, &want, shape[1]));
        }
        let name = format!("prefill_moe_weights.{l}");
        if g.has(&name) {
            let (_, want) = g.f32(&name)?;
            let ours: Vec<f32> = tr.routes.iter().flat_map(|r| r.weights.clone()).collect();
            let ok_len = ours.len() == want.len();
            let e = max_abs(&ours, &want);
            out.push(check(
                name,
                ok_len && e <= MOE_WEIGHT_TOL,
                format!("max-abs {e:.2e} (tol {MOE_WEIGHT_TOL:.0e})"),
            ));
        }
    }

    // Decode with the cache, teacher-forced on the golden tokens.
    if g.has("gen_tokens") {
        let (_, gen_ids) = g.ints("gen_tokens")?;
        let gen_ids: Vec<u32> = gen_ids
            .iter()
            .map(|&x| u32::try_from(x).map_err(|_| g.bad(format!("bad token {x}"))))
            .collect::<Result<_>>()?;
        let mut greedy = vec![argmax(&logits[(p - 1) * vocab..p * vocab]) as u32];
        let mut dec_logits = Vec::new();
        let mut dec_topk: Vec<Vec<Vec<i64>>> = vec![Vec::new(); n_layers];
        for (i, &tok) in gen_ids.iter().enumerate() {
            let mut probe = Probe { record: true, ..Probe::default() };
            let l = model.forward(
                &mut [Segment { cache: &mut cache, tokens: &[tok] }],
                ForwardOptions::default(),
                Some(&mut probe),
            )?;
            let row = l.flatten_all()?.to_vec1::<f32>()?;
            if i + 1 < gen_ids.len() {
                greedy.push(argmax(&row) as u32);
            }
            dec_logits.extend(row);
            for (layer, tr) in probe.layers.iter().enumerate() {
                dec_topk[layer].extend(tr.topk.iter().cloned());
            }
        }
        let same = greedy == gen_ids;
        let first = greedy.iter().zip(&gen_ids).position(|(a, b)| a != b);
        out.push(check(
            "gen_tokens",
            same,
            match first {
                None => format!("{} greedy tokens identical", gen_ids.len()),
                Some(i) => format!("first difference at step {i}: {} vs {}", greedy[i], gen_ids[i]),
            },
        ));
        if g.has("decode_logits") {
            out.push(compare_logits("decode_logits", &dec_logits, &g.f32("decode_logits")?.1));
        }
        for (l, ours) in dec_topk.iter().enumerate() {
            let name = format!("decode_topk.{l}");
            if g.has(&name) {
                let (shape, want) = g.ints(&name)?;
                out.push(compare_sets(&name, ours, &want, shape[1]));
            }
        }
        if g.has("full_logits") {
            let (_, want) = g.f32("full_logits")?;
            let all: Vec<u32> = prompt.iter().chain(&gen_ids).copied().collect();
            let mut cache = model.new_cache();
            let l = model.forward(
                &mut [Segment { cache: &mut cache, tokens: &all }],
                ForwardOptions { dense: false, logits: LogitsMode::All },
                None,
            )?;
            out.push(compare_logits("full_logits", &l.flatten_all()?.to_vec1::<f32>()?, &want));
            // Uneven chunks crossing the top-k boundary must reproduce the single prefill.
            let cuts = chunk_plan(all.len(), cfg.index_topk);
            let mut cache = model.new_cache();
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                let l = model.forward(
                    &mut [Segment { cache: &mut cache, tokens: &all[w[0]..w[1]] }],
                    ForwardOptions { dense: false, logits: LogitsMode::All },
                    None,
                )?;
                got.extend(l.flatten_all()?.to_vec1::<f32>()?);
            }
            out.push(compare_logits(&format!("full_logits (chunked {:?})", &cuts), &got, &want));
        }
    }
    if g.has("dense_prefill_logits") {
        let mut cache = model.new_cache();
        let l = model.forward(
            &mut [Segment { cache: &mut cache, tokens: &prompt }],
            ForwardOptions { dense: true, logits: LogitsMode::All },
            None,
        )?;
        let want = g.f32("dense_prefill_logits")?.1;
        out.push(compare_logits(
            "dense_prefill_logits",
            &l.flatten_all()?.to_vec1::<f32>()?,
            &want,
        ));
    }
    Ok(out)
}

/// Chunk boundaries `[0, …, n]`: a short first chunk below `topk`, one crossing it, single
/// tokens, and the rest.
pub fn chunk_plan(n: usize, topk: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    for c in [topk.saturating_sub(3).max(1), topk + 5, topk + 6, topk + 7, n / 2 + 3] {
        if c > *cuts.last().unwrap_or(&0) && c < n {
            cuts.push(c);
        }
    }
    cuts.push(n);
    cuts
}
