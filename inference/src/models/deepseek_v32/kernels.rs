//! Host (CPU) kernels for the two context-dependent parts of attention that candle's dense ops
//! do wastefully on a CPU: the indexer's head-weighted ReLU sum (a reduction over the head
//! axis) and sparse attention over each query's own selected keys (a dense masked product
//! would touch every causal key). They read candle's CPU buffers in place and run on rayon;
//! tensors on any other device take the tensor path in `sparse.rs`, which computes the same
//! values. Every sum runs in a fixed order that does not depend on how many queries share a
//! call, so results are the same whatever the batch composition.

use candle_core::{Storage, Tensor};
use rayon::prelude::*;

/// Runs `f` on the f32 contents of `t` when it is a contiguous f32 tensor on the CPU (no
/// copy); `None` for any other device, dtype or layout.
pub(crate) fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return None };
    let (start, end) = layout.contiguous_offsets()?;
    let data = cpu.as_slice::<f32>().ok()?;
    Some(f(data.get(start..end)?))
}

/// Defines `$name`, which runs the `#[inline(always)]` function `$body` compiled for AVX2 + FMA
/// when the CPU has them, else as it is. Both give the same values: the kernels' lanes are
/// independent accumulators, so a wider vector changes no summation order.
macro_rules! dispatch_avx2 {
    ($(#[$doc:meta])* fn $name:ident => $body:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// `Σ a_i · b_i` with eight independent accumulators (the compiler vectorises the body).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Indexer scores of a block of queries from their raw head products.
///
/// `prods` is `[rows · heads, cols]` (row `i·heads + h` = query i, head h, against keys
/// `0..cols`), `weights` is `[rows, heads]`. Query `i` sees keys `0..visible(i)`; its score row
/// (length `t`, −inf past `visible(i)`) is `Σ_h w[i,h] · max(prods[i,h,·], 0)`.
pub(crate) fn weighted_relu_rows(
    prods: &[f32],
    weights: &[f32],
    heads: usize,
    cols: usize,
    t: usize,
    visible: impl Fn(usize) -> usize + Sync,
) -> Vec<Vec<f32>> {
    let rows = weights.len() / heads.max(1);
    (0..rows)
        .into_par_iter()
        .map(|i| {
            let vis = visible(i).min(cols);
            let mut out = vec![f32::NEG_INFINITY; t];
            let acc = &mut out[..vis];
            acc.fill(0.0);
            relu_accumulate(
                acc,
                &prods[i * heads * cols..][..heads * cols],
                &weights[i * heads..][..heads],
                cols,
            );
            out
        })
        .collect()
}

/// `acc[t] += Σ_h w[h] · max(prods[h·cols + t], 0)` over `t < acc.len()`.
#[inline(always)]
fn relu_accumulate_body(acc: &mut [f32], prods: &[f32], weights: &[f32], cols: usize) {
    let vis = acc.len();
    for (h, &w) in weights.iter().enumerate() {
        let row = &prods[h * cols..][..vis];
        for (o, &s) in acc.iter_mut().zip(row) {
            *o += w * s.max(0.0);
        }
    }
}

dispatch_avx2!(
    /// See [`relu_accumulate_body`].
    fn relu_accumulate => relu_accumulate_body(acc: &mut [f32], prods: &[f32], weights: &[f32], cols: usize)
);

/// Shapes and scale of one sparse-attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SparseShape {
    /// Attention heads.
    pub heads: usize,
    /// Rows of the whole batch in `qa` / `qr` (`[H, rows, ·]`).
    pub rows: usize,
    /// First row of this segment.
    pub offset: usize,
    /// Latent width `C`.
    pub latent: usize,
    /// Rope width `R`.
    pub rope: usize,
    /// Softmax scale.
    pub scale: f32,
}

/// Absorbed-form attention of each query over its own selected keys only.
///
/// `qa` is `[H, rows, C]` (queries absorbed into the latent space), `qr` `[H, rows, R]`,
/// `ckv` `[T, C]` and `kr` `[T, R]` the cached latent and rope keys, `sel[i]` the key positions
/// of query `offset + i`. Returns the attended latent `[sel.len(), H, C]`.
pub(crate) fn sparse_attend(
    qa: &[f32],
    qr: &[f32],
    ckv: &[f32],
    kr: &[f32],
    sel: &[Vec<u32>],
    sh: SparseShape,
) -> Vec<f32> {
    let (h, c) = (sh.heads, sh.latent);
    let mut out = vec![0f32; sel.len() * h * c];
    out.par_chunks_mut(h * c).zip(sel.par_iter()).enumerate().for_each(|(i, (o, keys))| {
        let mut p = vec![0f32; keys.len()];
        attend_query(o, &mut p, keys, sh.offset + i, (qa, qr, ckv, kr), sh);
    });
    out
}

/// One query of [`sparse_attend`]: every head over the keys `keys`, into `o` (`[H, C]`); `p`
/// is scratch of `keys.len()`; the operands are `(qa, qr, ckv, kr)`.
#[inline(always)]
fn attend_query_body(
    o: &mut [f32],
    p: &mut [f32],
    keys: &[u32],
    row: usize,
    (qa, qr, ckv, kr): (&[f32], &[f32], &[f32], &[f32]),
    sh: SparseShape,
) {
    let (c, r) = (sh.latent, sh.rope);
    for head in 0..sh.heads {
        let q = &qa[(head * sh.rows + row) * c..][..c];
        let qrope = &qr[(head * sh.rows + row) * r..][..r];
        let mut max = f32::NEG_INFINITY;
        for (pj, &j) in p.iter_mut().zip(keys) {
            let j = j as usize;
            let s = (dot(q, &ckv[j * c..][..c]) + dot(qrope, &kr[j * r..][..r])) * sh.scale;
            *pj = s;
            max = max.max(s);
        }
        let mut sum = 0f32;
        for pj in p.iter_mut() {
            *pj = (*pj - max).exp();
            sum += *pj;
        }
        let acc = &mut o[head * c..][..c];
        for (&pj, &j) in p.iter().zip(keys) {
            let w = pj / sum;
            for (a, &v) in acc.iter_mut().zip(&ckv[j as usize * c..][..c]) {
                *a += w * v;
            }
        }
    }
}

dispatch_avx2!(
    /// See [`attend_query_body`].
    fn attend_query => attend_query_body(
        o: &mut [f32],
        p: &mut [f32],
        keys: &[u32],
        row: usize,
        ops: (&[f32], &[f32], &[f32], &[f32]),
        sh: SparseShape,
    )
);

/// Half-split (NeoX) RoPE of the first `rope` dims of every head of `x` (`[rows, heads, width]`,
/// row-major), in place: `(a, b) -> (a·cos − b·sin, b·cos + a·sin)` for the pairs `(j, j + rope/2)`,
/// with `cos` / `sin` of `[rows, rope/2]`.
pub(crate) fn rope_halfsplit_prefix(
    x: &mut [f32],
    cos: &[f32],
    sin: &[f32],
    (heads, width, rope): (usize, usize, usize),
) {
    let half = rope / 2;
    x.par_chunks_mut(heads * width).enumerate().for_each(|(row, xs)| {
        let (c, s) = (&cos[row * half..][..half], &sin[row * half..][..half]);
        for head in xs.chunks_exact_mut(width) {
            let (a, b) = head[..rope].split_at_mut(half);
            for j in 0..half {
                let (x1, x2) = (a[j], b[j]);
                a[j] = x1 * c[j] - x2 * s[j];
                b[j] = x2 * c[j] + x1 * s[j];
            }
        }
    });
}

/// Indices (ascending) of the `k` largest entries among the first `visible` of each row, for
/// many rows in parallel (see [`super::select_topk`]).
pub(crate) fn select_topk_rows(
    rows: &[Vec<f32>],
    visible: impl Fn(usize) -> usize + Sync,
    k: usize,
) -> Vec<Vec<u32>> {
    rows.par_iter().enumerate().map(|(i, row)| super::select_topk(row, visible(i), k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum_for_every_remainder() {
        for n in 0..20 {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "n = {n}");
        }
    }

    #[test]
    fn avx2_dispatch_gives_the_same_bits_as_the_plain_build() {
        let v = |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| ((i as f32) * k).sin()).collect() };
        let (h, c, r, t, rows) = (3, 37, 11, 20, 4);
        let (qa, qr, ckv, kr) =
            (v(h * rows * c, 0.3), v(h * rows * r, 0.7), v(t * c, 1.1), v(t * r, 0.9));
        let sh = SparseShape { heads: h, rows, offset: 0, latent: c, rope: r, scale: 0.2 };
        let keys = [0u32, 3, 4, 9, 17, 19];
        let (mut o1, mut o2) = (vec![0f32; h * c], vec![0f32; h * c]);
        let (mut p1, mut p2) = (vec![0f32; keys.len()], vec![0f32; keys.len()]);
        attend_query(&mut o1, &mut p1, &keys, 2, (&qa, &qr, &ckv, &kr), sh);
        attend_query_body(&mut o2, &mut p2, &keys, 2, (&qa, &qr, &ckv, &kr), sh);
        assert_eq!(o1, o2);
        let (prods, w) = (v(4 * 53, 0.37), v(4, 2.1));
        let (mut a1, mut a2) = (vec![0.5f32; 41], vec![0.5f32; 41]);
        relu_accumulate(&mut a1, &prods, &w, 53);
        relu_accumulate_body(&mut a2, &prods, &w, 53);
        assert_eq!(a1, a2);
    }

    #[test]
    fn weighted_relu_rows_masks_the_future_and_ignores_negatives() {
        // 2 queries, 2 heads, 3 keys.
        let prods = [
            1.0, -2.0, 3.0, /* q0 h1 */ 4.0, 5.0, -6.0, /* q1 h0 */ -1.0, 2.0, 0.5,
            /* q1 h1 */ 1.0, 1.0, 1.0,
        ];
        let weights = [0.5, -1.0, 2.0, 3.0];
        let rows = weighted_relu_rows(&prods, &weights, 2, 3, 3, |i| i + 2);
        assert_eq!(rows[0], vec![0.5 - 4.0, -5.0, f32::NEG_INFINITY]);
        assert_eq!(rows[1], vec![3.0, 4.0 + 3.0, 1.0 + 3.0]);
    }

    #[test]
    fn halfsplit_rope_rotates_only_the_prefix_pairs() -> candle_core::Result<()> {
        // 3 rows, 2 heads, width 6, rope 4: compare with candle's `rope` on the prefix.
        let dev = candle_core::Device::Cpu;
        let x: Vec<f32> = (0..36).map(|i| (i as f32 * 0.37).sin()).collect();
        let cos: Vec<f32> = (0..6).map(|i| (i as f32 * 0.3).cos()).collect();
        let sin: Vec<f32> = (0..6).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut ours = x.clone();
        rope_halfsplit_prefix(&mut ours, &cos, &sin, (2, 6, 4));
        let t = Tensor::from_vec(x.clone(), (3, 2, 6), &dev)?;
        let prefix = t.narrow(2, 0, 4)?.transpose(0, 1)?.contiguous()?.unsqueeze(0)?; // (1, h, rows, 4)
        let (c, s) = (Tensor::from_vec(cos, (3, 2), &dev)?, Tensor::from_vec(sin, (3, 2), &dev)?);
        let want = candle_nn::rotary_emb::rope(&prefix, &c, &s)?.squeeze(0)?.transpose(0, 1)?;
        let want =
            Tensor::cat(&[&want, &t.narrow(2, 4, 2)?], 2)?.flatten_all()?.to_vec1::<f32>()?;
        for (a, b) in ours.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn with_host_reads_cpu_tensors_in_place() -> candle_core::Result<()> {
        let t = Tensor::arange(0f32, 12.0, &candle_core::Device::Cpu)?.reshape((3, 4))?;
        assert_eq!(
            with_host(&t.narrow(0, 1, 2)?, <[f32]>::to_vec),
            Some((4..12).map(|x| x as f32).collect())
        );
        assert_eq!(with_host(&t.t()?, <[f32]>::len), None); // not contiguous
        Ok(())
    }
}
