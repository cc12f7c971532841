//! The runtime's side of the CUDA backend: which GPU a [`Device::Cuda`] ordinal opens, and
//! the buffer a tensor's storage holds there. The kernels and their launch checks are in
//! `tinycnn-cuda`; the ops call them from their own files (`ops/*.rs`), beside the CPU code.
//!
//! With the `cuda-emu` feature, [`emulate`] (or `TINYCNN_CUDA_EMULATE=1` in the environment,
//! read when the first CUDA device is opened) makes every `Device::Cuda` ordinal the emulated
//! device of `tinycnn-cuda`: the real kernels compiled for the host, behind the same
//! allocation, launch-planning and argument-passing code as a GPU. Tests use it to run the
//! CUDA code path where no GPU is present.

use crate::device::Device;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};
pub use tinycnn_cuda::{CudaBuffer, CudaBufferU32, CudaDevice};

static DEVICES: Mutex<Vec<(usize, Arc<CudaDevice>)>> = Mutex::new(Vec::new());
#[cfg(feature = "cuda-emu")]
static EMULATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, `Device::Cuda(n)` opens the emulated device (for tests without a GPU).
/// Devices already opened stay what they are.
#[cfg(feature = "cuda-emu")]
pub fn emulate(on: bool) {
    EMULATE.store(on, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(feature = "cuda-emu")]
fn emulating() -> bool {
    EMULATE.load(std::sync::atomic::Ordering::Relaxed)
        || std::env::var("TINYCNN_CUDA_EMULATE").is_ok_and(|v| v == "1")
}

/// The device behind `Device::Cuda(ordinal)`, opened once and shared.
pub fn device(ordinal: usize) -> Result<Arc<CudaDevice>> {
    let mut devices = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, d)) = devices.iter().find(|(o, _)| *o == ordinal) {
        return Ok(Arc::clone(d));
    }
    #[cfg(feature = "cuda-emu")]
    let opened = if emulating() {
        CudaDevice::emulated()
    } else {
        CudaDevice::new(ordinal)
    };
    #[cfg(not(feature = "cuda-emu"))]
    let opened = CudaDevice::new(ordinal);
    let dev = opened.map_err(|source| Error::Cuda {
        op: "open device",
        source,
    })?;
    devices.push((ordinal, Arc::clone(&dev)));
    Ok(dev)
}

/// Wraps a backend error with the runtime op that called it.
pub(crate) fn err(op: &'static str) -> impl FnOnce(tinycnn_cuda::CudaError) -> Error {
    move |source| Error::Cuda { op, source }
}

/// A tensor's elements in the memory of one CUDA device.
pub(crate) struct CudaStorage {
    pub(crate) ordinal: usize,
    pub(crate) dev: Arc<CudaDevice>,
    pub(crate) buf: CudaBuffer,
}

impl CudaStorage {
    pub(crate) fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }
    pub(crate) fn upload(ordinal: usize, data: &[f32]) -> Result<CudaStorage> {
        let dev = device(ordinal)?;
        let buf = dev.upload(data).map_err(err("upload"))?;
        Ok(CudaStorage { ordinal, dev, buf })
    }
    pub(crate) fn download(&self) -> Result<Vec<f32>> {
        self.dev.download(&self.buf).map_err(err("download"))
    }
    /// A new buffer on the same device.
    pub(crate) fn alloc_like(&self, len: usize) -> Result<CudaStorage> {
        let buf = self.dev.alloc(len).map_err(err("alloc"))?;
        Ok(CudaStorage {
            ordinal: self.ordinal,
            dev: Arc::clone(&self.dev),
            buf,
        })
    }
}
