//! Checkpoint loading: single-file or sharded safetensors (memory-mapped, each file read once),
//! dtype dispatch on the header (F32, BF16, F16, F8_E4M3 + `weight_scale_inv` 128x128 blocks),
//! and an in-memory source for random presets.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors, tensor::TensorInfo};

use crate::{Error, Result};

/// FP8 block size of DeepSeek checkpoints (always 128x128, spec §2.1).
pub const FP8_BLOCK: usize = 128;

/// Something that hands out named f32 tensors with a checked shape.
pub trait WeightSource {
    /// The tensor `name` as f32 on `device`; an error names a missing or mis-shaped tensor.
    fn get(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor>;
    /// Whether `name` exists.
    fn contains(&self, name: &str) -> bool;
}

/// Decodes one e4m3fn byte (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities;
/// `0x7F`/`0xFF` are NaN).
pub fn decode_e4m3(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = i32::from((b >> 3) & 0x0F);
    let m = f32::from(b & 0x07);
    if e == 0x0F && b & 0x07 == 0x07 {
        return f32::NAN;
    }
    if e == 0 { sign * m / 8.0 * 2f32.powi(-6) } else { sign * (1.0 + m / 8.0) * 2f32.powi(e - 7) }
}

fn e4m3_table() -> [f32; 256] {
    let mut t = [0f32; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = decode_e4m3(i as u8);
    }
    t
}

/// Dequantizes a row-major `[rows, cols]` e4m3 matrix with a `[ceil(rows/128), ceil(cols/128)]`
/// grid of f32 scales (multiplied, despite the name `weight_scale_inv`). Partial edge blocks
/// use the scale of the block they fall in.
pub fn dequant_fp8_blocks(q: &[u8], rows: usize, cols: usize, scales: &[f32]) -> Vec<f32> {
    let table = e4m3_table();
    let scale_cols = cols.div_ceil(FP8_BLOCK);
    let mut out = vec![0f32; rows * cols];
    out.par_chunks_mut(cols.max(1)).enumerate().for_each(|(r, row)| {
        let srow = &scales[(r / FP8_BLOCK) * scale_cols..];
        for (c, v) in row.iter_mut().enumerate() {
            *v = table[q[r * cols + c] as usize] * srow[c / FP8_BLOCK];
        }
    });
    out
}

struct Entry {
    file: usize,
    info: TensorInfo,
}

/// Memory-mapped safetensors checkpoint (one file or shards via `model.safetensors.index.json`).
pub struct SafetensorsWeights {
    dir: PathBuf,
    files: Vec<(PathBuf, Mmap, usize)>,
    entries: HashMap<String, Entry>,
}

impl std::fmt::Debug for SafetensorsWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsWeights")
            .field("dir", &self.dir)
            .field("files", &self.files.len())
            .field("tensors", &self.entries.len())
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

impl SafetensorsWeights {
    /// Opens the checkpoint in `dir`: `model.safetensors.index.json` if present, else
    /// `model.safetensors`, else every `*.safetensors` file.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let names: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Safetensors { path: index.clone(), message: e.to_string() })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
                Error::Safetensors { path: index.clone(), message: "no `weight_map` object".into() }
            })?;
            let mut files: Vec<PathBuf> =
                map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
            files.sort();
            files.dedup();
            files
        } else if dir.join("model.safetensors").exists() {
            vec![dir.join("model.safetensors")]
        } else {
            let rd = std::fs::read_dir(dir).map_err(io_err(dir))?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            files.sort();
            files
        };
        if names.is_empty() {
            return Err(Error::Safetensors {
                path: dir.to_owned(),
                message: "no safetensors files in the checkpoint folder".into(),
            });
        }
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (i, path) in names.into_iter().enumerate() {
            let file = File::open(&path).map_err(io_err(&path))?;
            // SAFETY: the file is opened read-only and the map is only read; a checkpoint
            // modified while the engine loads it is outside what we defend against.
            let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;
            let (n, meta) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| Error::Safetensors { path: path.clone(), message: e.to_string() })?;
            for (name, info) in meta.tensors() {
                entries.insert(name, Entry { file: i, info: info.clone() });
            }
            files.push((path, mmap, 8 + n));
        }
        Ok(Self { dir: dir.to_owned(), files, entries })
    }

    /// Number of tensors in the checkpoint.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the checkpoint has no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn raw(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.to_owned(), dir: self.dir.clone() })?;
        let (path, mmap, start) = &self.files[entry.file];
        let (a, b) = entry.info.data_offsets;
        let bytes = mmap.get(start + a..start + b).ok_or_else(|| Error::Safetensors {
            path: path.clone(),
            message: format!("tensor `{name}` data out of bounds"),
        })?;
        Ok((&entry.info, bytes))
    }

    /// Reads a non-fp8 tensor as f32 values.
    fn plain_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (info, bytes) = self.raw(name)?;
        let values = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    name: name.to_owned(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok((info.shape.clone(), values))
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.info.shape.clone())
    }

    /// Reads an integer tensor (I32 or I64) as i64 values.
    pub fn read_i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let (info, bytes) = self.raw(name)?;
        let values = match info.dtype {
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            Dtype::I32 => bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    name: name.to_owned(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok((info.shape.clone(), values))
    }

    /// Opens one safetensors file (not a folder).
    pub fn open_file(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        // SAFETY: read-only map of a file we only read (see `open`).
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let (n, meta) = SafeTensors::read_metadata(&mmap)
            .map_err(|e| Error::Safetensors { path: path.to_owned(), message: e.to_string() })?;
        let entries = meta
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, Entry { file: 0, info: info.clone() }))
            .collect();
        Ok(Self { dir: path.to_owned(), files: vec![(path.to_owned(), mmap, 8 + n)], entries })
    }

    /// Reads any supported tensor as f32 values (fp8 dequantized with its block scales).
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (info, bytes) = self.raw(name)?;
        if info.dtype != Dtype::F8_E4M3 {
            return self.plain_f32(name);
        }
        let shape = info.shape.clone();
        let [rows, cols] = shape[..] else {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                expected: vec![0, 0],
                found: shape.clone(),
            });
        };
        let base = name.strip_suffix(".weight").unwrap_or(name);
        let scale_name = format!("{base}.weight_scale_inv");
        let (sshape, scales) = self.plain_f32(&scale_name)?;
        let expected = vec![rows.div_ceil(FP8_BLOCK), cols.div_ceil(FP8_BLOCK)];
        if sshape != expected {
            return Err(Error::ShapeMismatch { name: scale_name, expected, found: sshape });
        }
        Ok((shape, dequant_fp8_blocks(bytes, rows, cols, &scales)))
    }
}

impl WeightSource for SafetensorsWeights {
    fn get(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let found = self.raw(name)?.0.shape.clone();
        if found != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found,
            });
        }
        let (shape, values) = self.read_f32(name)?;
        Ok(Tensor::from_vec(values, shape, device)?)
    }

    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// Tensors held in memory (random presets, tests).
#[derive(Debug, Default)]
pub struct MapWeights {
    /// Name -> tensor (any float dtype; converted to f32 on `get`).
    pub tensors: HashMap<String, Tensor>,
}

impl WeightSource for MapWeights {
    fn get(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
            dir: PathBuf::from("<memory>"),
        })?;
        if t.dims() != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t.to_dtype(candle_core::DType::F32)?.to_device(device)?)
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_decoding_edge_cases() {
        assert_eq!(decode_e4m3(0x00), 0.0);
        assert_eq!(decode_e4m3(0x7E), 448.0);
        assert_eq!(decode_e4m3(0xFE), -448.0);
        assert!(decode_e4m3(0x7F).is_nan() && decode_e4m3(0xFF).is_nan());
        assert_eq!(decode_e4m3(0x01), 2f32.powi(-9)); // smallest subnormal: 1/8 * 2^-6
        assert_eq!(decode_e4m3(0x38), 1.0); // exponent 7, mantissa 0
        assert_eq!(decode_e4m3(0x08), 2f32.powi(-6)); // smallest normal
        // agrees with candle's own F8E4M3 conversion for every byte
        let bytes: Vec<u8> = (0..=255u8).collect();
        let t = Tensor::from_raw_buffer(&bytes, candle_core::DType::F8E4M3, &[256], &Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (b, theirs) in bytes.iter().zip(t) {
            let ours = decode_e4m3(*b);
            assert!(ours == theirs || (ours.is_nan() && theirs.is_nan()), "{b:#x}");
        }
    }

    #[test]
    fn fp8_partial_edge_blocks_use_their_own_scale() {
        // 130 x 129: scale grid 2 x 2, the last row / column are partial blocks.
        let (rows, cols) = (130, 129);
        let q = vec![0x38u8; rows * cols]; // every value 1.0
        let scales = [1.0, 2.0, 4.0, 8.0];
        let w = dequant_fp8_blocks(&q, rows, cols, &scales);
        assert_eq!(w[0], 1.0);
        assert_eq!(w[127], 1.0);
        assert_eq!(w[128], 2.0);
        assert_eq!(w[128 * cols], 4.0);
        assert_eq!(w[129 * cols + 128], 8.0);
    }
}
