//! Device buffers, views of them, and the per-device caching allocator.
//!
//! Training allocates the same few shapes every step; asking the driver for each of them
//! would put a `cuMemAlloc`/`cuMemFree` pair (or their async twins) on every op. Freed
//! buffers therefore go back to size-class free lists of their device and the next request
//! of the same class takes one from there. Classes are the length rounded up to a quarter of
//! its power of two (so at most 25% waste), at least [`MIN_CLASS`] elements.

use std::collections::HashMap;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DeviceRepr, ValidAsZeroBits};

use crate::error::{CudaError, Result};

/// Smallest size class, in elements: tiny tensors (biases, scalars) share one class.
pub const MIN_CLASS: usize = 64;

/// The size class (capacity in elements) a buffer of `len` elements gets.
///
/// ```
/// use tinycnn_cuda::buffer::size_class;
/// assert_eq!(size_class(1), 64);
/// assert_eq!(size_class(1000), 1024);
/// assert_eq!(size_class(1025), 1280);
/// ```
pub fn size_class(len: usize) -> usize {
    if len <= MIN_CLASS {
        return MIN_CLASS;
    }
    let quarter = (len.next_power_of_two() / 8).max(1);
    len.div_ceil(quarter) * quarter
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u32 {}
}

/// Element types of device buffers: `f32` (tensors) and `u32` (labels, arg-max indices).
pub trait Elem:
    sealed::Sealed + DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + 'static
{
    /// What an emulated [`crate::CudaDevice::alloc`] fills new memory with, so reading memory
    /// no kernel wrote shows up in tests (NaN for f32).
    const POISON: Self;
    #[doc(hidden)]
    fn free_lists(pool: &Pool) -> &Mutex<FreeLists<Self>>;
}

impl Elem for f32 {
    const POISON: Self = f32::NAN;
    fn free_lists(pool: &Pool) -> &Mutex<FreeLists<Self>> {
        &pool.f32
    }
}

impl Elem for u32 {
    const POISON: Self = u32::MAX;
    fn free_lists(pool: &Pool) -> &Mutex<FreeLists<Self>> {
        &pool.u32
    }
}

/// The memory behind a buffer: device memory, or host memory on the emulated device.
#[doc(hidden)]
pub enum Raw<T> {
    Cuda(CudaSlice<T>),
    #[cfg(feature = "emu")]
    Host(Box<[T]>),
}

#[doc(hidden)]
pub type FreeLists<T> = HashMap<usize, Vec<Raw<T>>>;

/// Counters of a device's caching allocator, from [`crate::CudaDevice::memory_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Allocations that went to the driver (or, emulated, to the host allocator).
    pub driver_allocs: u64,
    /// Allocations served from a free list.
    pub cache_hits: u64,
    /// Bytes held by live buffers (their size classes).
    pub bytes_in_use: usize,
    /// Bytes held in the free lists.
    pub bytes_cached: usize,
}

/// The free lists of one device, shared by the device and every buffer it handed out.
#[doc(hidden)]
#[derive(Default)]
pub struct Pool {
    f32: Mutex<FreeLists<f32>>,
    u32: Mutex<FreeLists<u32>>,
    stats: Mutex<MemoryStats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves the lists consistent (every operation is a
    // single push or pop), so poisoning is not a reason to stop.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// A cached block of `class` elements, if any.
    pub(crate) fn take<T: Elem>(&self, class: usize) -> Option<Raw<T>> {
        let raw = lock(T::free_lists(self)).get_mut(&class)?.pop()?;
        let bytes = class * std::mem::size_of::<T>();
        let mut s = lock(&self.stats);
        s.cache_hits += 1;
        s.bytes_cached -= bytes;
        s.bytes_in_use += bytes;
        Some(raw)
    }

    pub(crate) fn note_alloc<T: Elem>(&self, class: usize) {
        let mut s = lock(&self.stats);
        s.driver_allocs += 1;
        s.bytes_in_use += class * std::mem::size_of::<T>();
    }

    fn give_back<T: Elem>(&self, class: usize, raw: Raw<T>) {
        lock(T::free_lists(self))
            .entry(class)
            .or_default()
            .push(raw);
        let bytes = class * std::mem::size_of::<T>();
        let mut s = lock(&self.stats);
        s.bytes_in_use -= bytes;
        s.bytes_cached += bytes;
    }

    /// Frees every cached block (to the driver); returns the bytes released.
    pub(crate) fn empty(&self) -> usize {
        let f = std::mem::take(&mut *lock(&self.f32));
        let u = std::mem::take(&mut *lock(&self.u32));
        drop((f, u));
        std::mem::take(&mut lock(&self.stats).bytes_cached)
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        *lock(&self.stats)
    }
}

/// Owned device memory of `len` elements of `T`, from one device's caching allocator.
/// Dropping it returns the memory to that allocator, not to the driver.
pub struct DeviceBuffer<T: Elem> {
    raw: Option<Raw<T>>,
    len: usize,
    class: usize,
    pool: Arc<Pool>,
    device: u64,
}

/// An f32 buffer: tensors, gradients, optimizer state.
pub type CudaBuffer = DeviceBuffer<f32>;
/// A u32 buffer: labels, arg-max indices, permutations.
pub type CudaBufferU32 = DeviceBuffer<u32>;

impl<T: Elem> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("elem", &std::any::type_name::<T>())
            .field("len", &self.len)
            .field("device", &self.device)
            .finish()
    }
}

impl<T: Elem> DeviceBuffer<T> {
    pub(crate) fn new(raw: Raw<T>, len: usize, class: usize, pool: Arc<Pool>, device: u64) -> Self {
        DeviceBuffer {
            raw: Some(raw),
            len,
            class,
            pool,
            device,
        }
    }

    /// Elements in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory, for the NCCL calls (which take cudarc's slices).
    #[cfg(feature = "nccl")]
    pub(crate) fn raw_mut(&mut self) -> &mut Raw<T> {
        self.raw.as_mut().expect("only Drop takes the memory")
    }

    fn raw(&self) -> &Raw<T> {
        self.raw.as_ref().expect("only Drop takes the memory")
    }

    /// A read-only view of the whole buffer.
    pub fn view(&self) -> CudaBufferView<'_, T> {
        self.slice(..)
    }

    /// A mutable view of the whole buffer.
    pub fn view_mut(&mut self) -> CudaBufferViewMut<'_, T> {
        self.slice_mut(..)
    }

    /// A read-only view of `range`; panics when it is out of bounds, as slice indexing does.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> CudaBufferView<'_, T> {
        let r = bounds(range, self.len);
        let inner = match self.raw() {
            Raw::Cuda(s) => ViewInner::Cuda(s.slice(r)),
            #[cfg(feature = "emu")]
            Raw::Host(h) => ViewInner::Host(&h[r]),
        };
        CudaBufferView {
            inner,
            device: self.device,
        }
    }

    /// A mutable view of `range`; panics when it is out of bounds.
    pub fn slice_mut(&mut self, range: impl RangeBounds<usize>) -> CudaBufferViewMut<'_, T> {
        let r = bounds(range, self.len);
        let device = self.device;
        let inner = match self.raw.as_mut().expect("only Drop takes the memory") {
            Raw::Cuda(s) => ViewMutInner::Cuda(s.slice_mut(r)),
            #[cfg(feature = "emu")]
            Raw::Host(h) => ViewMutInner::Host(&mut h[r]),
        };
        CudaBufferViewMut { inner, device }
    }
}

impl<T: Elem> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            self.pool.give_back(self.class, raw);
        }
    }
}

fn bounds(range: impl RangeBounds<usize>, len: usize) -> std::ops::Range<usize> {
    use std::ops::Bound::*;
    let start = match range.start_bound() {
        Included(&s) => s,
        Excluded(&s) => s + 1,
        Unbounded => 0,
    };
    let end = match range.end_bound() {
        Included(&e) => e + 1,
        Excluded(&e) => e,
        Unbounded => len,
    };
    assert!(
        start <= end && end <= len,
        "range {start}..{end} out of bounds of a device buffer of {len}"
    );
    start..end
}

pub(crate) enum ViewInner<'a, T> {
    Cuda(CudaView<'a, T>),
    #[cfg(feature = "emu")]
    Host(&'a [T]),
}

pub(crate) enum ViewMutInner<'a, T> {
    Cuda(CudaViewMut<'a, T>),
    #[cfg(feature = "emu")]
    Host(&'a mut [T]),
}

/// A read-only window of a [`DeviceBuffer`].
pub struct CudaBufferView<'a, T: Elem> {
    pub(crate) inner: ViewInner<'a, T>,
    pub(crate) device: u64,
}

/// A mutable window of a [`DeviceBuffer`].
pub struct CudaBufferViewMut<'a, T: Elem> {
    pub(crate) inner: ViewMutInner<'a, T>,
    pub(crate) device: u64,
}

impl<T: Elem> CudaBufferView<'_, T> {
    /// Elements in the view.
    pub fn len(&self) -> usize {
        match &self.inner {
            ViewInner::Cuda(v) => v.len(),
            #[cfg(feature = "emu")]
            ViewInner::Host(h) => h.len(),
        }
    }
    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A narrower read-only view; panics when `range` is out of bounds.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> CudaBufferView<'_, T> {
        let r = bounds(range, self.len());
        let inner = match &self.inner {
            ViewInner::Cuda(v) => ViewInner::Cuda(v.slice(r)),
            #[cfg(feature = "emu")]
            ViewInner::Host(h) => ViewInner::Host(&h[r]),
        };
        CudaBufferView {
            inner,
            device: self.device,
        }
    }
}

impl<T: Elem> CudaBufferViewMut<'_, T> {
    /// Elements in the view.
    pub fn len(&self) -> usize {
        match &self.inner {
            ViewMutInner::Cuda(v) => v.len(),
            #[cfg(feature = "emu")]
            ViewMutInner::Host(h) => h.len(),
        }
    }
    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A narrower mutable view; panics when `range` is out of bounds.
    pub fn slice_mut(&mut self, range: impl RangeBounds<usize>) -> CudaBufferViewMut<'_, T> {
        let r = bounds(range, self.len());
        let inner = match &mut self.inner {
            ViewMutInner::Cuda(v) => ViewMutInner::Cuda(v.slice_mut(r)),
            #[cfg(feature = "emu")]
            ViewMutInner::Host(h) => ViewMutInner::Host(&mut h[r]),
        };
        CudaBufferViewMut {
            inner,
            device: self.device,
        }
    }
}

/// What a kernel wrapper reads: a whole [`DeviceBuffer`] or a view of one.
pub trait DeviceSlice<T: Elem> {
    /// A read-only view of all of it.
    fn device_view(&self) -> CudaBufferView<'_, T>;
}

/// What a kernel wrapper writes: a whole [`DeviceBuffer`] or a mutable view of one.
pub trait DeviceSliceMut<T: Elem>: DeviceSlice<T> {
    /// A mutable view of all of it.
    fn device_view_mut(&mut self) -> CudaBufferViewMut<'_, T>;
}

impl<T: Elem> DeviceSlice<T> for DeviceBuffer<T> {
    fn device_view(&self) -> CudaBufferView<'_, T> {
        self.view()
    }
}
impl<T: Elem> DeviceSliceMut<T> for DeviceBuffer<T> {
    fn device_view_mut(&mut self) -> CudaBufferViewMut<'_, T> {
        self.view_mut()
    }
}
impl<T: Elem> DeviceSlice<T> for CudaBufferView<'_, T> {
    fn device_view(&self) -> CudaBufferView<'_, T> {
        self.slice(..)
    }
}
impl<T: Elem> DeviceSlice<T> for CudaBufferViewMut<'_, T> {
    fn device_view(&self) -> CudaBufferView<'_, T> {
        let inner = match &self.inner {
            ViewMutInner::Cuda(v) => ViewInner::Cuda(v.slice(..)),
            #[cfg(feature = "emu")]
            ViewMutInner::Host(h) => ViewInner::Host(&h[..]),
        };
        CudaBufferView {
            inner,
            device: self.device,
        }
    }
}
impl<T: Elem> DeviceSliceMut<T> for CudaBufferViewMut<'_, T> {
    fn device_view_mut(&mut self) -> CudaBufferViewMut<'_, T> {
        self.slice_mut(..)
    }
}

fn wrong_device(kernel: &'static str, arg: &'static str) -> CudaError {
    CudaError::Invalid(format!(
        "kernel `{kernel}`: buffer `{arg}` belongs to another device"
    ))
}

// Accessors the kernel table uses to turn views into launch arguments, checking on the way
// that the memory belongs to the launching device (a pointer of another context would fault
// asynchronously, far from its cause).
impl<'a, T: Elem> CudaBufferView<'a, T> {
    pub(crate) fn cuda(
        &self,
        device: u64,
        kernel: &'static str,
        arg: &'static str,
    ) -> Result<&CudaView<'a, T>> {
        match &self.inner {
            ViewInner::Cuda(v) if self.device == device => Ok(v),
            _ => Err(wrong_device(kernel, arg)),
        }
    }
    #[cfg(feature = "emu")]
    pub(crate) fn host_ptr(
        &self,
        device: u64,
        kernel: &'static str,
        arg: &'static str,
    ) -> Result<*const T> {
        match &self.inner {
            ViewInner::Host(h) if self.device == device => Ok(h.as_ptr()),
            _ => Err(wrong_device(kernel, arg)),
        }
    }
}

impl<'a, T: Elem> CudaBufferViewMut<'a, T> {
    pub(crate) fn cuda_mut(
        &mut self,
        device: u64,
        kernel: &'static str,
        arg: &'static str,
    ) -> Result<&mut CudaViewMut<'a, T>> {
        match &mut self.inner {
            ViewMutInner::Cuda(v) if self.device == device => Ok(v),
            _ => Err(wrong_device(kernel, arg)),
        }
    }
    #[cfg(feature = "emu")]
    pub(crate) fn host_ptr_mut(
        &mut self,
        device: u64,
        kernel: &'static str,
        arg: &'static str,
    ) -> Result<*mut T> {
        match &mut self.inner {
            ViewMutInner::Host(h) if self.device == device => Ok(h.as_mut_ptr()),
            _ => Err(wrong_device(kernel, arg)),
        }
    }
}
