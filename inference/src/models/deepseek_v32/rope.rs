//! RoPE tables (YaRN frequencies, spec §5); the indexer's Hadamard transform (§7.1) for tests.

use candle_core::{Device, Tensor};

use crate::Result;

/// `(cos, sin)` tables `[positions.len(), inv_freq.len()]` for the given absolute positions.
/// Angles are computed in f32 (`f32(p) · θ'_j`) as every reference does; cos/sin of that angle
/// are taken in f64 and scaled by the YaRN cos/sin multiplier.
pub fn cos_sin(
    positions: &[usize],
    inv_freq: &[f32],
    multiplier: f64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &p in positions {
        for &f in inv_freq {
            let angle = f64::from(p as f32 * f);
            cos.push((angle.cos() * multiplier) as f32);
            sin.push((angle.sin() * multiplier) as f32);
        }
    }
    let shape = (positions.len(), half);
    Ok((Tensor::from_vec(cos, shape, device)?, Tensor::from_vec(sin, shape, device)?))
}

/// The normalised Walsh–Hadamard matrix `H_n / sqrt(n)` in Sylvester order, `None` when `n`
/// is not a power of two. The engine computes the exact form, which skips the rotation: it is
/// orthogonal, so it changes no indexer score in exact arithmetic (spec §7.1, §17). It is kept
/// here, for tests only, to check exactly that property.
#[cfg(test)]
pub(crate) fn hadamard(n: usize, device: &Device) -> Result<Option<Tensor>> {
    if !n.is_power_of_two() {
        return Ok(None);
    }
    let scale = (n as f32).powf(-0.5);
    let mut m = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            // H[i][j] = (-1)^popcount(i & j) in Sylvester order.
            let sign = if (i & j).count_ones() % 2 == 0 { 1.0 } else { -1.0 };
            m[i * n + j] = sign * scale;
        }
    }
    Ok(Some(Tensor::from_vec(m, (n, n), device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hadamard_is_orthonormal_and_sylvester_ordered() {
        let h = hadamard(8, &Device::Cpu).unwrap().unwrap();
        let v = h.to_vec2::<f32>().unwrap();
        let s = 8f32.powf(-0.5);
        // H_2 = [[1, 1], [1, -1]] blocks: row 1 alternates sign.
        assert_eq!(v[1][..4], [s, -s, s, -s]);
        assert_eq!(v[4][..8], [s, s, s, s, -s, -s, -s, -s]);
        let hh = h.matmul(&h.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in hh.iter().enumerate() {
            for (j, x) in row.iter().enumerate() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((x - want).abs() < 1e-6);
            }
        }
        // a unit vector is spread over every coordinate (norm kept)
        let e0 =
            Tensor::from_vec(vec![1f32, 0., 0., 0., 0., 0., 0., 0.], (1, 8), &Device::Cpu).unwrap();
        let y = e0.matmul(&h).unwrap().to_vec2::<f32>().unwrap();
        assert!(y[0].iter().all(|x| (x - s).abs() < 1e-7));
        assert!(hadamard(96, &Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn cos_sin_uses_f32_angles() {
        let (c, s) = cos_sin(&[0, 3], &[1.0, 0.5], 1.0, &Device::Cpu).unwrap();
        let c = c.to_vec2::<f32>().unwrap();
        let s = s.to_vec2::<f32>().unwrap();
        assert_eq!(c[0], [1.0, 1.0]);
        assert!((c[1][0] - 3f32.cos()).abs() < 1e-6 && (s[1][1] - 1.5f32.sin()).abs() < 1e-6);
    }
}
