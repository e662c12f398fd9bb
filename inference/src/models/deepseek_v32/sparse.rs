//! The device-resident half of DeepSeek Sparse Attention (spec §7–§8), written with candle
//! tensor ops only, so that a CUDA device keeps every step of a layer's attention on the device:
//! the lightning indexer's scores, the causal mask, the top-k selection, the gather of the
//! selected latent rows and the attention over them. No value comes back to the host inside a
//! layer. The CPU takes the host kernels in `kernels.rs` instead (same values up to summation
//! order); `Model::set_tensor_path` forces this path on the CPU so tests and `bench prefill`
//! can compare the two.
//!
//! Top-k: candle's CUDA `arg_sort_last_dim` is a one-block bitonic sort whose padded row must
//! fit in shared memory, so it cannot sort rows wider than 8,192 columns. [`topk`] therefore
//! selects in rounds: each row is cut into chunks of at most [`SORT_WIDTH`] columns, each chunk
//! keeps its own `k` best (every member of the row's top-k is among its chunk's top-k), and the
//! survivors are selected again until one chunk remains. A 128K-token row with `k = 2048` takes
//! three rounds (16 chunks → 32,768 candidates → 4 chunks → 8,192 → 1 chunk → 2,048).
//! On the CPU (the forced tensor path) a sort of every row would cost O(t log t) a query, so
//! [`topk`] runs one custom op there instead ([`CausalTopk`]): a linear-time selection of each
//! row's visible keys, the host kernels' own rule, then a sort of the `k` survivors.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use candle_nn::ops::softmax_last_dim;
use rayon::prelude::*;

use super::attention::select_topk_unordered;
use crate::{Error, Result};

/// Widest row one sort handles (candle's CUDA bitonic arg-sort: `ncols_pad · 4` bytes of shared
/// memory, one block per row).
pub(crate) const SORT_WIDTH: usize = 8192;

/// Elements one query block may materialise per intermediate (scores, gathered rows): 2^28
/// f32 = 1 GiB on a GPU, where fewer, larger blocks mean fewer kernel launches (a 32K-token
/// prefill of the `medium` preset: ~450 query rows a block instead of ~110), and 2^26 (256 MiB)
/// on the CPU. Blocks bound memory at long contexts whatever the prompt length.
fn block_elems(dev: &Device) -> usize {
    if dev.is_cpu() { 1 << 26 } else { 1 << 28 }
}

/// Query rows per block on `dev` when each row materialises `per_row` elements (at least one).
pub(crate) fn block_rows(per_row: usize, dev: &Device) -> usize {
    (block_elems(dev) / per_row.max(1)).clamp(1, 4096)
}

/// `start, start + 1, …, start + n − 1` (u32), a view of `positions`, the call's position
/// table on the device (built once per forward call: a host-to-device copy from pageable
/// memory waits for the whole stream, so none happens inside a layer).
pub(crate) fn iota(positions: &Tensor, start: usize, n: usize) -> Result<Tensor> {
    let have = positions.dim(0)?;
    if start + n > have {
        return Err(Error::InvalidRequest(format!(
            "position table of {have} entries, {} needed",
            start + n
        )));
    }
    Ok(positions.narrow(0, start, n)?)
}

/// Replaces the entries of `s` (`[rows, t]`) past each row's causal end with −inf: row `i` is
/// the query at absolute position `first + i` and sees keys `0..=first + i`.
pub(crate) fn causal_fill(s: &Tensor, first: usize, positions: &Tensor) -> Result<Tensor> {
    let (rows, t) = s.dims2()?;
    let dev = s.device();
    let keys = iota(positions, 0, t)?.unsqueeze(0)?; // [1, t]
    let pos = iota(positions, first, rows)?.unsqueeze(1)?; // [rows, 1]
    let future = keys.broadcast_gt(&pos)?; // [rows, t]
    let ninf = Tensor::full(f32::NEG_INFINITY, (rows, t), dev)?;
    Ok(future.where_cond(&ninf, s)?)
}

/// Lightning-indexer scores `I(s, t) = Σ_h w[s,h] · ReLU(q_I[s,h] · k_I[t])` of `rows` queries
/// (`qi`: `[rows, Hi, Di]`, `wts`: `[rows, Hi]`, scale folded in) against keys `ki` (`[t, Di]`),
/// the first query at absolute position `first`: `[rows, t]`, −inf past each causal end.
pub(crate) fn index_scores(
    qi: &Tensor,
    wts: &Tensor,
    ki: &Tensor,
    first: usize,
    positions: &Tensor,
) -> Result<Tensor> {
    let (rows, heads, width) = qi.dims3()?;
    let t = ki.dim(0)?;
    let prods = qi.reshape((rows * heads, width))?.matmul(&ki.t()?)?; // [rows·Hi, t]
    let relu = prods.relu()?.reshape((rows, heads, t))?;
    let s = wts.unsqueeze(1)?.matmul(&relu)?.squeeze(1)?; // [rows, t]
    causal_fill(&s, first, positions)
}

/// The `k` largest entries of each row of `scores` (`[rows, n]`, f32): their column indices
/// (`[rows, min(k, n)]`, u32, in descending score order) and their scores. Rows wider than
/// `width` are selected in rounds (see the module doc); `k` must be at most `width / 2` then.
pub(crate) fn topk_with_width(
    scores: &Tensor,
    k: usize,
    width: usize,
    positions: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (rows, mut n) = scores.dims2()?;
    let k = k.min(n);
    let dev = scores.device();
    let mut vals = scores.contiguous()?;
    let mut idx = iota(positions, 0, n)?.unsqueeze(0)?.broadcast_as((rows, n))?.contiguous()?;
    while n > width {
        if 2 * k > width {
            return Err(Error::InvalidRequest(format!(
                "index_topk {k} is too large for the device selection (at most {})",
                width / 2
            )));
        }
        let chunks = n.div_ceil(width);
        let pad = chunks * width - n;
        if pad > 0 {
            let fill = Tensor::full(f32::NEG_INFINITY, (rows, pad), dev)?;
            vals = Tensor::cat(&[&vals, &fill], 1)?;
            idx = Tensor::cat(&[&idx, &Tensor::zeros((rows, pad), DType::U32, dev)?], 1)?;
        }
        let v = vals.reshape((rows * chunks, width))?;
        let order = v.arg_sort_last_dim(false)?.narrow(1, 0, k)?.contiguous()?;
        vals = v.gather(&order, 1)?.reshape((rows, chunks * k))?;
        idx =
            idx.reshape((rows * chunks, width))?.gather(&order, 1)?.reshape((rows, chunks * k))?;
        n = chunks * k;
    }
    let order = vals.arg_sort_last_dim(false)?.narrow(1, 0, k)?.contiguous()?;
    Ok((idx.gather(&order, 1)?, vals.gather(&order, 1)?))
}

/// The `k` largest entries of each row of `scores` (`[rows, n]`, f32, −inf past each causal
/// end as [`causal_fill`] leaves them, row `i` the query at absolute position `first + i`):
/// their column indices (`[rows, min(k, n)]`, u32, in descending score order, a row that sees
/// fewer than `k` keys padded with its first future columns) and their scores. The CPU takes
/// [`CausalTopk`]; every other device [`topk_with_width`] at the device sort's width. Both
/// give the same picks in the same order, up to how ties are broken.
pub(crate) fn topk(
    scores: &Tensor,
    k: usize,
    first: usize,
    positions: &Tensor,
) -> Result<(Tensor, Tensor)> {
    if scores.device().is_cpu() {
        let scores = scores.contiguous()?;
        let idx = scores.apply_op1_no_bwd(&CausalTopk { k, first })?;
        let vals = scores.gather(&idx, 1)?;
        return Ok((idx, vals));
    }
    topk_with_width(scores, k, SORT_WIDTH, positions)
}

/// Causal top-k of the rows of a CPU score matrix (`[rows, n]`, f32, contiguous): row `i` is
/// the query at absolute position `first + i` and sees columns `0..=first + i`. Each row keeps
/// the set the host kernels select (`select_topk`: a linear-time `select_nth_unstable`, the
/// same tie break), sorted by descending score, equal scores by ascending column (the order a
/// stable descending sort of the whole row gives); a row that sees fewer than `k` columns
/// takes all of them, then its first future columns in ascending order. Output `[rows,
/// min(k, n)]`, u32. Rows run in parallel. There is no device kernel: [`topk`] calls it only on
/// the CPU.
pub(crate) struct CausalTopk {
    /// Picks a row.
    pub k: usize,
    /// Absolute position of the first row's query.
    pub first: usize,
}

impl CustomOp1 for CausalTopk {
    fn name(&self) -> &'static str {
        "causal-topk"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, n) = layout.shape().dims2()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("causal-topk: the scores must be contiguous")
        };
        let Some(data) = storage.as_slice::<f32>()?.get(start..end) else {
            candle_core::bail!("causal-topk: the layout passes the end of the scores")
        };
        let k = self.k.min(n);
        let mut out = vec![0u32; rows * k];
        if k > 0 {
            out.par_chunks_exact_mut(k).zip(data.par_chunks_exact(n)).enumerate().for_each(
                |(i, (dst, row))| {
                    let visible = (self.first + i + 1).min(n);
                    let mut picks = select_topk_unordered(row, visible, k);
                    // −0 and +0 compare equal, as in a sort by `partial_cmp`.
                    let key = |j: u32| row[j as usize] + 0.0;
                    picks.sort_unstable_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
                    for (d, s) in dst.iter_mut().zip(picks.into_iter().chain(visible as u32..)) {
                        *d = s;
                    }
                },
            );
        }
        Ok((CpuStorage::U32(out), Shape::from((rows, k))))
    }
}

/// Additive attention mask of selected keys from their scores: 0 for a real key, −inf for a
/// pick that is not one (a −inf score: a future or padding position, chosen only when a query
/// sees fewer than `k` keys).
pub(crate) fn selection_mask(vals: &Tensor) -> Result<Tensor> {
    // Compared with a filled tensor, not a scalar (a scalar would be copied from the host).
    let lowest = Tensor::full(f32::MIN, vals.shape(), vals.device())?;
    // log(1) = 0, log(0) = −inf.
    Ok(vals.ge(&lowest)?.to_dtype(DType::F32)?.log()?)
}

/// Absorbed-form softmax attention of `B` query rows, each over its own `K` keys:
/// `qa` `[B, H, C]`, `qr` `[B, H, R]`, `kv` `[B, K, C]`, `kr` `[B, K, R]`, `mask` `[B, 1, K]`
/// (additive, 0 or −inf). Returns the attended latent `[B, H, C]`.
pub(crate) fn attend_rows(
    qa: &Tensor,
    qr: &Tensor,
    kv: &Tensor,
    kr: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let s = (qa.matmul(&kv.transpose(1, 2)?)? + qr.matmul(&kr.transpose(1, 2)?)?)?;
    let s = (s * scale)?.broadcast_add(mask)?;
    Ok(softmax_last_dim(&s)?.matmul(kv)?)
}

/// Gathers rows `idx` (`[B, K]`, u32) of a cache buffer `buf` (`[T, W]`): `[B, K, W]`.
pub(crate) fn gather_rows(buf: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let (b, k) = idx.dims2()?;
    let w = buf.dim(1)?;
    Ok(buf.index_select(&idx.flatten_all()?, 0)?.reshape((b, k, w))?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::models::deepseek_v32::select_topk;

    fn scores(rows: usize, n: usize) -> Vec<f32> {
        (0..rows * n).map(|i| ((i as f32) * 0.618_034).sin() * 100.0 + (i % 7) as f32).collect()
    }

    #[test]
    fn selection_in_rounds_equals_the_host_selection() -> Result<()> {
        let dev = Device::Cpu;
        // Widths that need 0, 1 and 2 extra rounds, with and without padding.
        for (rows, n, k, width) in
            [(3, 50, 5, 64), (3, 100, 4, 16), (2, 1000, 6, 16), (2, 7, 2, 4), (1, 5, 9, 64)]
        {
            let v = scores(rows, n);
            let t = Tensor::from_vec(v.clone(), (rows, n), &dev)?;
            let pos = Tensor::arange(0u32, n as u32, &dev)?;
            let (idx, vals) = topk_with_width(&t, k, width, &pos)?;
            let (idx, vals) = (idx.to_vec2::<u32>()?, vals.to_vec2::<f32>()?);
            for r in 0..rows {
                let row = &v[r * n..(r + 1) * n];
                let mut got = idx[r].clone();
                got.sort_unstable();
                assert_eq!(got, select_topk(row, n, k), "rows {rows} n {n} k {k} width {width}");
                for (&i, &s) in idx[r].iter().zip(&vals[r]) {
                    assert_eq!(row[i as usize], s);
                }
            }
        }
        Ok(())
    }

    /// The CPU top-k op against a naive full sort of each row's visible keys: the same
    /// multiset of scores, the host kernels' exact set, descending order with ties by
    /// ascending column, and rows that see fewer than `k` keys (or a matrix narrower than
    /// `k`) padded with their future columns in order.
    #[test]
    fn cpu_topk_op_equals_a_naive_sort() -> Result<()> {
        let dev = Device::Cpu;
        // Few distinct values: ties everywhere, at the cut too; ±0 among them.
        let tied = |rows: usize, n: usize| -> Vec<f32> {
            (0..rows * n)
                .map(|i| match (i * 7 + i / 3) % 5 {
                    0 => 0.0,
                    1 => -0.0,
                    m => m as f32,
                })
                .collect()
        };
        let cases: [(usize, usize, usize, usize, bool); 7] = [
            (4, 12, 3, 0, true),  // early rows see fewer than k keys
            (3, 40, 5, 30, true), // every row sees more than k
            (5, 9, 20, 0, false), // narrower than k
            (6, 64, 8, 2, false), // no ties: also equal to the rounds
            (2, 1000, 16, 900, false),
            (1, 5, 0, 4, false),   // k = 0
            (3, 17, 17, 10, true), // k = n
        ];
        for (rows, n, k, first, ties) in cases {
            let v = if ties { tied(rows, n) } else { scores(rows, n) };
            let raw = Tensor::from_vec(v, (rows, n), &dev)?;
            let pos = Tensor::arange(0u32, (first + rows).max(n) as u32, &dev)?;
            let filled = causal_fill(&raw, first, &pos)?;
            let f = filled.to_vec2::<f32>()?;
            let (idx, vals) = topk(&filled, k, first, &pos)?;
            let (idx, vals) = (idx.to_vec2::<u32>()?, vals.to_vec2::<f32>()?);
            let case = format!("rows {rows} n {n} k {k} first {first} ties {ties}");
            for (r, row) in f.iter().enumerate() {
                let visible = (first + r + 1).min(n);
                let width = k.min(n);
                assert_eq!(idx[r].len(), width, "{case}");
                // Naive: every visible column sorted by (score desc, column asc), then the
                // future columns in order.
                let mut naive: Vec<u32> = (0..visible as u32).collect();
                naive.sort_by(|&a, &b| {
                    row[b as usize].partial_cmp(&row[a as usize]).unwrap().then(a.cmp(&b))
                });
                naive.extend(visible as u32..n as u32);
                naive.truncate(width);
                let want: Vec<f32> = naive.iter().map(|&j| row[j as usize]).collect();
                assert_eq!(vals[r], want, "{case} row {r}: scores");
                for (&j, &s) in idx[r].iter().zip(&vals[r]) {
                    assert_eq!(row[j as usize], s, "{case} row {r}");
                }
                if !ties {
                    assert_eq!(idx[r], naive, "{case} row {r}: columns");
                }
                for w in idx[r].windows(2) {
                    let (a, b) = (row[w[0] as usize], row[w[1] as usize]);
                    assert!(a > b || (a == b && w[0] < w[1]), "{case} row {r}: order {w:?}");
                }
                let mut real: Vec<u32> =
                    idx[r].iter().copied().filter(|&j| (j as usize) < visible).collect();
                real.sort_unstable();
                if k > 0 {
                    assert_eq!(real, select_topk(row, visible, k), "{case} row {r}: host set");
                }
                let pads: Vec<u32> = idx[r][real.len()..].to_vec();
                let want_pads: Vec<u32> = (visible as u32..).take(width - real.len()).collect();
                assert_eq!(pads, want_pads, "{case} row {r}: padding");
            }
            if !ties && n > k && k > 0 {
                let (rounds, _) = topk_with_width(&filled, k, 16.max(2 * k), &pos)?;
                assert_eq!(rounds.to_vec2::<u32>()?, idx, "{case}: the rounds pick the same");
            }
        }
        Ok(())
    }

    #[test]
    fn selection_refuses_a_top_k_wider_than_half_a_sort() -> Result<()> {
        let t = Tensor::from_vec(scores(1, 40), (1, 40), &Device::Cpu)?;
        let pos = Tensor::arange(0u32, 40, &Device::Cpu)?;
        assert!(topk_with_width(&t, 9, 16, &pos).is_err());
        Ok(())
    }

    #[test]
    fn causal_fill_and_selection_mask_hide_future_keys() -> Result<()> {
        let dev = Device::Cpu;
        let s = Tensor::ones((3, 5), DType::F32, &dev)?;
        let pos = Tensor::arange(0u32, 8, &dev)?;
        let f = causal_fill(&s, 1, &pos)?.to_vec2::<f32>()?;
        let ninf = f32::NEG_INFINITY;
        assert_eq!(f[0], vec![1.0, 1.0, ninf, ninf, ninf]);
        assert_eq!(f[2], vec![1.0, 1.0, 1.0, 1.0, ninf]);
        let m = selection_mask(&Tensor::new(&[[3.0f32, ninf, -7.0]], &dev)?)?.to_vec2::<f32>()?;
        assert_eq!(m[0], vec![0.0, ninf, 0.0]);
        Ok(())
    }
}
