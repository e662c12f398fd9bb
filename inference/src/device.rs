//! Device choice, written once. This is the only module with `#[cfg(feature = "cuda")]`.

use candle_core::Device;

use crate::{Error, Result};

/// Where the engine runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceKind {
    /// The CPU (default; the reference implementation).
    #[default]
    Cpu,
    /// CUDA device with this ordinal (needs the `cuda` feature).
    Cuda(usize),
}

impl DeviceKind {
    /// Parses `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| Error::InvalidRequest(format!("unknown device `{s}`"))),
        }
    }

    /// Whether this binary can run on CUDA at all.
    pub fn cuda_compiled() -> bool {
        cfg!(feature = "cuda")
    }

    /// Opens the device.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => open_cuda(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Result<Device> {
    Err(Error::CudaNotCompiled)
}
