//! Where a tensor's elements live: a buffer on one device, behind a copy-on-write slot.
//!
//! Storage access cannot deadlock: the slot's mutex is held only to clone or swap an `Arc`,
//! never while an op computes, calls user code or takes another lock. A reader gets an
//! immutable snapshot; a writer computes the new elements outside the lock and swaps them in.
//! Any number of threads may read and write one tensor, and a closure passed to
//! [`Tensor::update_`](crate::Tensor::update_) may read the same tensor (it sees the elements
//! from before the update). Concurrent writers to one tensor race as in PyTorch: the last
//! swap wins. The same holds for every device: a CUDA buffer is swapped like a host one.

use crate::device::Device;
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The elements on one device.
pub(crate) enum Buffer {
    Cpu(Vec<f32>),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaStorage),
}

impl Buffer {
    pub(crate) fn device(&self) -> Device {
        match self {
            Buffer::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Buffer::Cuda(c) => c.device(),
        }
    }
    /// A host copy of the elements (a download for a device buffer).
    pub(crate) fn to_host(&self) -> Result<Vec<f32>> {
        match self {
            Buffer::Cpu(v) => Ok(v.clone()),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(c) => c.download(),
        }
    }
    /// The same elements on `device`.
    pub(crate) fn to_device(&self, device: Device) -> Result<Buffer> {
        match (self, device) {
            (Buffer::Cpu(v), Device::Cpu) => Ok(Buffer::Cpu(v.clone())),
            #[cfg(feature = "cuda")]
            (_, Device::Cuda(ordinal)) => Ok(Buffer::Cuda(crate::cuda::CudaStorage::upload(
                ordinal,
                &self.to_host()?,
            )?)),
            #[cfg(feature = "cuda")]
            (Buffer::Cuda(c), Device::Cpu) => Ok(Buffer::Cpu(c.download()?)),
            #[cfg(not(feature = "cuda"))]
            (_, Device::Cuda(_)) => Err(crate::device::no_cuda("to")),
        }
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({})", self.device())
    }
}

/// A tensor's elements. Views made by `reshape`, `flatten`, `detach` share one storage;
/// `version` counts in-place writes so that backward can refuse data changed after use.
#[derive(Debug)]
pub(crate) struct Storage {
    data: Mutex<Arc<Buffer>>,
    version: AtomicU64,
}

impl Storage {
    pub(crate) fn new(data: Vec<f32>) -> Arc<Storage> {
        Storage::from_buffer(Buffer::Cpu(data))
    }
    pub(crate) fn from_buffer(buffer: Buffer) -> Arc<Storage> {
        Arc::new(Storage {
            data: Mutex::new(Arc::new(buffer)),
            version: AtomicU64::new(0),
        })
    }
    /// The buffer as it is now; later writes do not change it.
    pub(crate) fn buffer(&self) -> Arc<Buffer> {
        Arc::clone(&self.data.lock().unwrap_or_else(|e| e.into_inner()))
    }
    pub(crate) fn device(&self) -> Device {
        self.buffer().device()
    }
    /// The elements as they are now, on the host (downloaded from a device; a host buffer is
    /// shared, not copied).
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let b = self.buffer();
        match &*b {
            Buffer::Cpu(_) => Ok(Snapshot(SnapshotData::Shared(b))),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(c) => Ok(Snapshot(SnapshotData::Owned(c.download()?))),
        }
    }
    /// Installs `buffer` as the new elements (same length, checked by the callers), on
    /// whatever device it is.
    pub(crate) fn replace_buffer(&self, buffer: Buffer) {
        let new = Arc::new(buffer);
        let old = {
            let mut slot = self.data.lock().unwrap_or_else(|e| e.into_inner());
            self.version.fetch_add(1, Ordering::Relaxed);
            std::mem::replace(&mut *slot, new)
        };
        // The old buffer is freed (if no snapshot holds it) after the lock is released.
        drop(old);
    }
    /// Installs a buffer shared with another storage (copy-on-write keeps them apart).
    pub(crate) fn replace_shared(&self, buffer: Arc<Buffer>) {
        let old = {
            let mut slot = self.data.lock().unwrap_or_else(|e| e.into_inner());
            self.version.fetch_add(1, Ordering::Relaxed);
            std::mem::replace(&mut *slot, buffer)
        };
        drop(old);
    }
    /// Installs host elements, on the storage's current device.
    pub(crate) fn replace(&self, data: Vec<f32>) -> Result<()> {
        let buffer = match self.device() {
            Device::Cpu => Buffer::Cpu(data),
            d => Buffer::Cpu(data).to_device(d)?,
        };
        self.replace_buffer(buffer);
        Ok(())
    }
    /// Runs `f` on a private host copy of the elements, then installs the copy (uploaded
    /// again for a device buffer). `f` runs with no lock held, so it may read this storage
    /// (seeing the old elements) or use the thread pool.
    pub(crate) fn modify<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> Result<R> {
        let mut copy = self.buffer().to_host()?;
        let r = f(&mut copy);
        self.replace(copy)?;
        Ok(r)
    }
    /// A new storage holding the same buffer (shared until either side writes).
    pub(crate) fn fork(&self) -> Arc<Storage> {
        Arc::new(Storage {
            data: Mutex::new(self.buffer()),
            version: AtomicU64::new(0),
        })
    }
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }
}

/// An immutable host snapshot of a tensor's elements (row-major), from
/// [`Tensor::data`](crate::Tensor::data). It dereferences to `[f32]`; holding it blocks
/// nobody.
#[derive(Clone)]
pub struct Snapshot(SnapshotData);

#[derive(Clone)]
enum SnapshotData {
    /// A host buffer, shared with the storage until it is written.
    Shared(Arc<Buffer>),
    /// A copy downloaded from a device.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Owned(Vec<f32>),
}

impl std::ops::Deref for Snapshot {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match &self.0 {
            SnapshotData::Shared(b) => match &**b {
                Buffer::Cpu(v) => v,
                // `snapshot` shares host buffers only.
                #[cfg(feature = "cuda")]
                Buffer::Cuda(_) => &[],
            },
            SnapshotData::Owned(v) => v,
        }
    }
}
impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}
impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        **self == **other
    }
}
