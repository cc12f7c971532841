//! The tensor type: an f32 array with a shape, contiguous row-major storage shared by
//! reference count, and (when it takes part in autograd) the op that produced it.

use crate::autograd::{grad_enabled, Backward, Node};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::rng::{with_global_rng, Rng};
pub use crate::storage::Snapshot;
use crate::storage::{Buffer, Storage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) struct Inner {
    pub(crate) shape: Vec<usize>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) requires_grad: AtomicBool,
    pub(crate) grad: Mutex<Option<Tensor>>,
    pub(crate) node: Option<Node>,
}

/// An n-dimensional f32 array (row-major, contiguous), cheap to clone (a reference count).
///
/// Cloning a `Tensor` gives another handle to the same tensor, as in Python: a layer's
/// `weight` cloned into an optimizer is the same parameter. Arithmetic with `&Tensor`
/// operands broadcasts like NumPy / PyTorch and returns `Result<Tensor>` (shapes can
/// mismatch); arithmetic with an `f32` returns a `Tensor`.
///
/// ```
/// use tinycnn::Tensor;
/// let x = Tensor::new([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]);
/// let y = (&x + &Tensor::new([10.0, 20.0, 30.0])).unwrap() * 2.0;
/// assert_eq!(y.to_vec(), [20.0, 42.0, 64.0, 26.0, 48.0, 70.0]);
/// assert_eq!(y.sum_all().item().unwrap(), 270.0);
/// ```
#[derive(Clone)]
pub struct Tensor {
    pub(crate) inner: Arc<Inner>,
}

/// Product of `shape` (1 for a scalar). Panics only if the product overflows `usize`,
/// which no allocatable tensor can reach.
pub(crate) fn numel_of(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .expect("tensor shape product overflows usize")
}

/// Array literals that become tensors: `Tensor::new([[1.0, 2.0], [3.0, 4.0]])`.
pub trait TensorData {
    /// The shape and the row-major elements.
    fn into_parts(self) -> (Vec<usize>, Vec<f32>);
}

impl TensorData for f32 {
    fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (vec![], vec![self])
    }
}
impl<const N: usize> TensorData for [f32; N] {
    fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (vec![N], self.to_vec())
    }
}
impl<const N: usize, const M: usize> TensorData for [[f32; N]; M] {
    fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (vec![M, N], self.iter().flatten().copied().collect())
    }
}
impl<const N: usize, const M: usize, const L: usize> TensorData for [[[f32; N]; M]; L] {
    fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (
            vec![L, M, N],
            self.iter().flatten().flatten().copied().collect(),
        )
    }
}
impl TensorData for Vec<f32> {
    fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (vec![self.len()], self)
    }
}
impl TensorData for &[f32] {
    fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (vec![self.len()], self.to_vec())
    }
}

/// A shape argument of `reshape` / `view`: unsigned sizes, or signed ones where one entry
/// may be `-1` (inferred from the element count).
pub trait Dims {
    /// The sizes, with `-1` for "infer".
    fn dims(&self) -> Vec<isize>;
}
macro_rules! impl_dims {
    ($($t:ty),*) => {$(
        impl Dims for &[$t] {
            fn dims(&self) -> Vec<isize> { self.iter().map(|&d| d as isize).collect() }
        }
        impl<const N: usize> Dims for [$t; N] {
            fn dims(&self) -> Vec<isize> { self.iter().map(|&d| d as isize).collect() }
        }
        impl<const N: usize> Dims for &[$t; N] {
            fn dims(&self) -> Vec<isize> { self.iter().map(|&d| d as isize).collect() }
        }
        impl Dims for Vec<$t> {
            fn dims(&self) -> Vec<isize> { self.iter().map(|&d| d as isize).collect() }
        }
        impl Dims for &Vec<$t> {
            fn dims(&self) -> Vec<isize> { self.iter().map(|&d| d as isize).collect() }
        }
    )*};
}
impl_dims!(usize, isize, i32, i64);

impl Tensor {
    // ----- construction -------------------------------------------------------------------

    pub(crate) fn from_parts(
        shape: Vec<usize>,
        storage: Arc<Storage>,
        node: Option<Node>,
    ) -> Tensor {
        let requires_grad = node.is_some();
        Tensor {
            inner: Arc::new(Inner {
                shape,
                storage,
                requires_grad: AtomicBool::new(requires_grad),
                grad: Mutex::new(None),
                node,
            }),
        }
    }

    /// A tensor that owns `data` (length already checked by the caller).
    pub(crate) fn raw(data: Vec<f32>, shape: Vec<usize>) -> Tensor {
        debug_assert_eq!(data.len(), numel_of(&shape));
        Tensor::from_parts(shape, Storage::new(data), None)
    }

    /// The result of a differentiable op: records `op` when grad mode is on and an input
    /// requires a gradient.
    ///
    /// `data` was computed on the host; the result lives on the device of the op's first
    /// input, so an op without a kernel for that device still returns a tensor there (its
    /// inputs were downloaded by [`Tensor::data`], its result is uploaded here).
    pub(crate) fn from_op(
        data: Vec<f32>,
        shape: Vec<usize>,
        op: impl Backward + 'static,
    ) -> Tensor {
        debug_assert_eq!(data.len(), numel_of(&shape));
        let device = op.inputs().first().map_or(Device::Cpu, |t| t.device());
        let buffer = match device {
            Device::Cpu => Buffer::Cpu(data),
            d => Buffer::Cpu(data)
                .to_device(d)
                .unwrap_or_else(|e| panic!("uploading an op's result to {d} failed: {e}")),
        };
        Tensor::from_buffer_op(buffer, shape, op)
    }

    /// The result of a differentiable op computed into `buffer` on its device.
    pub(crate) fn from_buffer_op(
        buffer: Buffer,
        shape: Vec<usize>,
        op: impl Backward + 'static,
    ) -> Tensor {
        let node = if grad_enabled() && op.inputs().iter().any(|t| t.requires_grad()) {
            Some(Node::new(op))
        } else {
            None
        };
        Tensor::from_parts(shape, Storage::from_buffer(buffer), node)
    }

    /// A tensor (no graph) holding `buffer`.
    #[cfg(feature = "cuda")]
    pub(crate) fn from_buffer(buffer: Buffer, shape: Vec<usize>) -> Tensor {
        Tensor::from_parts(shape, Storage::from_buffer(buffer), None)
    }

    /// A tensor from any array literal (`f32`, `[f32; N]`, `[[f32; N]; M]`, ..., `Vec<f32>`).
    ///
    /// ```
    /// let k = tinycnn::Tensor::new([[0.0, 1.0], [2.0, 3.0]]);
    /// assert_eq!(k.shape(), &[2, 2]);
    /// ```
    pub fn new(data: impl TensorData) -> Tensor {
        let (shape, data) = data.into_parts();
        Tensor::raw(data, shape)
    }

    /// A tensor of `shape` holding `data` (row-major); errors if the lengths differ.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let n = shape
            .iter()
            .try_fold(1usize, |p, &d| p.checked_mul(d))
            .ok_or_else(|| Error::bad_shape("from_vec", shape, "element count overflows"))?;
        if n != data.len() {
            return Err(Error::bad_shape(
                "from_vec",
                shape,
                format!("needs {n} elements, got {}", data.len()),
            ));
        }
        Ok(Tensor::raw(data, shape.to_vec()))
    }

    /// A 0-dimensional tensor.
    pub fn scalar(v: f32) -> Tensor {
        Tensor::raw(vec![v], vec![])
    }

    /// Every element `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor::raw(vec![value; numel_of(shape)], shape.to_vec())
    }
    /// All zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }
    /// All ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }
    /// Zeros of this tensor's shape.
    pub fn zeros_like(&self) -> Tensor {
        Tensor::zeros(self.shape())
    }
    /// Ones of this tensor's shape.
    pub fn ones_like(&self) -> Tensor {
        Tensor::ones(self.shape())
    }

    /// `[0, 1, ..., n - 1]` (`torch.arange(n)`, as f32).
    pub fn arange(n: usize) -> Tensor {
        Tensor::raw((0..n).map(|i| i as f32).collect(), vec![n])
    }

    /// `start, start + step, ...` below `end` (above it for a negative step).
    pub fn arange_step(start: f32, end: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid(
                "arange",
                "step must be finite and non-zero, bounds finite",
            ));
        }
        // In f64 and compared before the cast: `as usize` saturates, so a tiny step would
        // ask for usize::MAX elements.
        let count = ((end as f64 - start as f64) / step as f64).ceil().max(0.0);
        if count > crate::limits::MAX_NUMEL as f64 {
            return Err(Error::invalid(
                "arange",
                format!(
                    "({start}, {end}, step {step}) gives {count:e} elements, more than the limit of {} (tinycnn::limits::MAX_NUMEL)",
                    crate::limits::MAX_NUMEL
                ),
            ));
        }
        let n = count as usize;
        let mut v = crate::limits::try_with_capacity("arange", &[n], n)?;
        v.extend((0..n).map(|i| start + i as f32 * step));
        Ok(Tensor::raw(v, vec![n]))
    }

    /// Uniform in `[0, 1)` from the global generator (`torch.rand`).
    pub fn rand(shape: &[usize]) -> Tensor {
        with_global_rng(|r| Tensor::rand_with(shape, r))
    }
    /// Uniform in `[0, 1)` from `rng`.
    pub fn rand_with(shape: &[usize], rng: &mut Rng) -> Tensor {
        Tensor::raw(
            (0..numel_of(shape)).map(|_| rng.uniform()).collect(),
            shape.to_vec(),
        )
    }
    /// Standard normal from the global generator (`torch.randn`).
    pub fn randn(shape: &[usize]) -> Tensor {
        with_global_rng(|r| Tensor::randn_with(shape, r))
    }
    /// Standard normal from `rng`.
    pub fn randn_with(shape: &[usize], rng: &mut Rng) -> Tensor {
        Tensor::raw(
            (0..numel_of(shape)).map(|_| rng.normal()).collect(),
            shape.to_vec(),
        )
    }
    /// Normal with `mean` and `std >= 0` from the global generator (`torch.normal`).
    pub fn normal(mean: f32, std: f32, shape: &[usize]) -> Result<Tensor> {
        with_global_rng(|r| Tensor::normal_with(mean, std, shape, r))
    }
    /// Normal with `mean` and `std >= 0` from `rng`.
    pub fn normal_with(mean: f32, std: f32, shape: &[usize], rng: &mut Rng) -> Result<Tensor> {
        if !std.is_finite() || !mean.is_finite() || std < 0.0 {
            return Err(Error::invalid(
                "normal",
                format!("std must be finite and >= 0, got {std}"),
            ));
        }
        let n = crate::limits::checked_numel("normal", shape)?;
        Ok(Tensor::raw(
            (0..n).map(|_| mean + std * rng.normal()).collect(),
            shape.to_vec(),
        ))
    }
    /// Uniform in `[low, high)` from the global generator.
    pub fn uniform(low: f32, high: f32, shape: &[usize]) -> Result<Tensor> {
        with_global_rng(|r| Tensor::uniform_with(low, high, shape, r))
    }
    /// Uniform in `[low, high)` from `rng`.
    pub fn uniform_with(low: f32, high: f32, shape: &[usize], rng: &mut Rng) -> Result<Tensor> {
        if !low.is_finite() || !high.is_finite() || low > high {
            return Err(Error::invalid(
                "uniform",
                format!("need finite low <= high, got {low}, {high}"),
            ));
        }
        let n = crate::limits::checked_numel("uniform", shape)?;
        Ok(Tensor::raw(
            (0..n).map(|_| low + (high - low) * rng.uniform()).collect(),
            shape.to_vec(),
        ))
    }

    // ----- inspection ---------------------------------------------------------------------

    /// The sizes of the dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }
    /// Alias of [`Tensor::shape`] (PyTorch's `size()`).
    pub fn dims(&self) -> &[usize] {
        &self.inner.shape
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.inner.shape.len()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel_of(&self.inner.shape)
    }
    /// Size of dimension `dim` (negative counts from the end).
    pub fn size(&self, dim: isize) -> Result<usize> {
        let d = self.dim_index("size", dim)?;
        Ok(self.inner.shape[d])
    }

    pub(crate) fn storage(&self) -> &Arc<Storage> {
        &self.inner.storage
    }
    /// The elements (row-major), as a snapshot: it never blocks a writer, and an in-place
    /// write after this call does not change what the snapshot holds.
    ///
    /// ```
    /// let x = tinycnn::Tensor::new([1.0, 2.0]);
    /// let before = x.data();
    /// x.fill_(0.0).unwrap();
    /// assert_eq!(&before[..], &[1.0, 2.0]);
    /// assert_eq!(&x.data()[..], &[0.0, 0.0]);
    /// ```
    pub fn data(&self) -> Snapshot {
        // Only a device fault can fail here (a host buffer is shared, not copied).
        self.inner
            .storage
            .snapshot()
            .unwrap_or_else(|e| panic!("reading a tensor on {} failed: {e}", self.device()))
    }
    /// The elements on the host, or the device's error (for a CUDA tensor this downloads).
    pub fn to_host(&self) -> Result<Vec<f32>> {
        self.inner.storage.buffer().to_host()
    }
    /// The device the elements live on.
    pub fn device(&self) -> Device {
        self.inner.storage.device()
    }
    pub(crate) fn buffer(&self) -> Arc<Buffer> {
        self.inner.storage.buffer()
    }
    /// The same tensor on `device` (`x.to(device)` in PyTorch): `self` if it is there
    /// already, else a copy that gradients flow back through.
    ///
    /// ```
    /// use tinycnn::{Device, Tensor};
    /// let x = Tensor::new([1.0, 2.0]);
    /// assert!(x.to(&Device::Cpu).unwrap().same(&x));
    /// ```
    pub fn to(&self, device: &Device) -> Result<Tensor> {
        let from = self.device();
        if from == *device {
            return Ok(self.clone());
        }
        let buffer = self.buffer().to_device(*device)?;
        Ok(Tensor::from_buffer_op(
            buffer,
            self.shape().to_vec(),
            ToDeviceBackward {
                x: self.clone(),
                from,
            },
        ))
    }
    /// Installs new elements computed on the tensor's device (optimizers).
    #[cfg(feature = "cuda")]
    pub(crate) fn set_buffer(&self, buffer: Buffer) {
        self.inner.storage.replace_buffer(buffer);
    }
    /// Moves this tensor's storage to `device` in place, keeping the handle (what
    /// `module.to(device)` does to parameters); drops the gradient.
    pub(crate) fn move_to_(&self, device: Device) -> Result<()> {
        if self.device() != device {
            let buffer = self.buffer().to_device(device)?;
            self.inner.storage.replace_buffer(buffer);
        }
        self.zero_grad();
        Ok(())
    }
    /// A copy of the elements (row-major).
    pub fn to_vec(&self) -> Vec<f32> {
        self.data().to_vec()
    }
    /// The value of a one-element tensor (PyTorch's `item()`).
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::bad_shape(
                "item",
                self.shape(),
                "needs exactly one element",
            ));
        }
        Ok(self.data()[0])
    }
    /// The element at a full index.
    pub fn get(&self, index: &[usize]) -> Result<f32> {
        let off = self.offset_of("get", index)?;
        Ok(self.data()[off])
    }

    fn offset_of(&self, op: &'static str, index: &[usize]) -> Result<usize> {
        if index.len() != self.rank() {
            return Err(Error::bad_shape(
                op,
                self.shape(),
                format!("index {index:?} has the wrong rank"),
            ));
        }
        let mut off = 0;
        for (d, (&i, &n)) in index.iter().zip(self.shape()).enumerate() {
            if i >= n {
                return Err(Error::IndexOutOfRange {
                    op,
                    index: i,
                    dim: d,
                    size: n,
                });
            }
            off = off * n + i;
        }
        Ok(off)
    }

    /// Resolves a possibly negative dimension.
    pub(crate) fn dim_index(&self, op: &'static str, dim: isize) -> Result<usize> {
        resolve_dim(op, dim, self.rank())
    }

    // ----- autograd handles ---------------------------------------------------------------

    /// Whether gradients flow to (leaf) or through (result) this tensor.
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad.load(Ordering::Relaxed)
    }
    /// Marks a leaf tensor as a parameter that collects gradients (PyTorch's `requires_grad_`).
    /// Returns the same tensor, for chaining.
    pub fn requires_grad_(&self, on: bool) -> Result<Tensor> {
        if self.inner.node.is_some() {
            return Err(Error::Autograd(
                "requires_grad_ can only change leaf tensors; use detach() on a result".into(),
            ));
        }
        self.inner.requires_grad.store(on, Ordering::Relaxed);
        Ok(self.clone())
    }
    /// Whether this tensor was created by the user (no recorded op).
    pub fn is_leaf(&self) -> bool {
        self.inner.node.is_none()
    }
    /// The gradient accumulated by `backward` (leaf tensors that require grad only).
    pub fn grad(&self) -> Option<Tensor> {
        self.inner
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Replaces the gradient (used by optimizers and tests).
    pub fn set_grad(&self, grad: Option<Tensor>) -> Result<()> {
        if let Some(g) = &grad {
            if g.shape() != self.shape() {
                return Err(Error::mismatch("set_grad", self.shape(), g.shape()));
            }
        }
        *self.inner.grad.lock().unwrap_or_else(|e| e.into_inner()) = grad;
        Ok(())
    }
    /// Drops the gradient (PyTorch 2's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *self.inner.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
    /// Adds `g` to the stored gradient (in place, so handles to `.grad()` see the sum).
    pub(crate) fn accumulate_grad(&self, g: &Tensor) -> Result<()> {
        let mut slot = self.inner.grad.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(old) => {
                let sum = old.add(g)?;
                old.inner.storage.replace_shared(sum.buffer());
            }
            // A storage slot of its own: the gradient may share its buffer with another
            // tensor (copy-on-write keeps later writes apart).
            None => {
                *slot = Some(Tensor::from_parts(
                    self.shape().to_vec(),
                    g.inner.storage.fork(),
                    None,
                ))
            }
        }
        Ok(())
    }
    /// The same elements, cut off from the graph (shares storage; PyTorch's `detach` / `.data`).
    pub fn detach(&self) -> Tensor {
        Tensor::from_parts(self.shape().to_vec(), self.inner.storage.clone(), None)
    }
    /// A deep copy (new storage) with no graph.
    pub fn deep_clone(&self) -> Tensor {
        Tensor::raw(self.to_vec(), self.shape().to_vec())
    }
    /// The name PyTorch prints for the op that produced this tensor (`AddmmBackward0`, ...).
    pub fn grad_fn(&self) -> Option<&'static str> {
        self.inner.node.as_ref().map(|n| n.op.name())
    }
    pub(crate) fn node(&self) -> Option<&Node> {
        self.inner.node.as_ref()
    }
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }
    /// Whether two handles are the same tensor.
    pub fn same(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    // ----- in-place writes (not recorded by autograd) ---------------------------------------

    fn check_inplace(&self, op: &'static str) -> Result<()> {
        if grad_enabled() && self.requires_grad() {
            return Err(Error::Autograd(format!(
                "{op}: in-place write to a tensor that requires grad; use no_grad(..) or .detach()"
            )));
        }
        Ok(())
    }

    /// Runs `f` on the elements, mutably. Refused on a tensor that requires grad while grad
    /// mode is on (as PyTorch refuses in-place ops on leaf parameters).
    pub fn update_(&self, f: impl FnOnce(&mut [f32])) -> Result<()> {
        self.check_inplace("update_")?;
        self.inner.storage.modify(f)
    }
    /// Writes without the grad-mode check (initialisation and optimizers own their params).
    pub(crate) fn write_unchecked<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> Result<R> {
        self.inner.storage.modify(f)
    }
    /// Copies `src` (same number of elements) into this tensor.
    pub fn copy_(&self, src: &Tensor) -> Result<()> {
        self.check_inplace("copy_")?;
        if src.shape() != self.shape() {
            return Err(Error::mismatch("copy_", self.shape(), src.shape()));
        }
        if Arc::ptr_eq(self.storage(), src.storage()) {
            return Ok(());
        }
        if src.device() == self.device() {
            // Buffers are copy-on-write (every in-place write replaces the buffer), so the
            // source's can be shared: no copy, and on a GPU no trip through the host.
            self.inner.storage.replace_shared(src.buffer());
            return Ok(());
        }
        let buffer = src.buffer().to_device(self.device())?;
        self.inner.storage.replace_buffer(buffer);
        Ok(())
    }
    /// Sets every element to `v`.
    pub fn fill_(&self, v: f32) -> Result<()> {
        self.update_(|d| d.fill(v))
    }
    /// `self += other` (broadcast to this tensor's shape).
    pub fn add_(&self, other: &Tensor) -> Result<()> {
        self.zip_inplace("add_", other, |a, b| a + b)
    }
    /// `self -= other` (broadcast to this tensor's shape); d2l's `w.data[:] -= lr * w.grad`.
    pub fn sub_(&self, other: &Tensor) -> Result<()> {
        self.zip_inplace("sub_", other, |a, b| a - b)
    }
    /// `self *= v`.
    pub fn mul_scalar_(&self, v: f32) -> Result<()> {
        self.update_(|d| d.iter_mut().for_each(|x| *x *= v))
    }
    /// `self /= v`.
    pub fn div_scalar_(&self, v: f32) -> Result<()> {
        self.update_(|d| d.iter_mut().for_each(|x| *x /= v))
    }
    fn zip_inplace(
        &self,
        op: &'static str,
        other: &Tensor,
        f: impl Fn(f32, f32) -> f32,
    ) -> Result<()> {
        self.check_inplace(op)?;
        crate::device::same_device(op, &[self, other])?;
        let b = other
            .broadcast_to(self.shape())
            .map_err(|_| Error::mismatch(op, self.shape(), other.shape()))?;
        let b = b.data();
        self.inner.storage.modify(|d| {
            for (x, y) in d.iter_mut().zip(b.iter()) {
                *x = f(*x, *y);
            }
        })?;
        Ok(())
    }

    /// Assigns `value` (broadcast) to `self[.., range, ..]` along `dim`: the notebooks'
    /// `X[:, 2:6] = 0` is `x.slice_assign_(1, 2..6, &Tensor::scalar(0.0))`.
    pub fn slice_assign_(
        &self,
        dim: isize,
        range: std::ops::Range<usize>,
        value: &Tensor,
    ) -> Result<()> {
        self.check_inplace("slice_assign_")?;
        let d = self.dim_index("slice_assign_", dim)?;
        let n = self.shape()[d];
        if range.start > range.end || range.end > n {
            return Err(Error::IndexOutOfRange {
                op: "slice_assign_",
                index: range.end,
                dim: d,
                size: n,
            });
        }
        let mut sub_shape = self.shape().to_vec();
        sub_shape[d] = range.len();
        let v = value
            .broadcast_to(&sub_shape)
            .map_err(|_| Error::mismatch("slice_assign_", &sub_shape, value.shape()))?
            .to_vec();
        let outer: usize = self.shape()[..d].iter().product();
        let inner: usize = self.shape()[d + 1..].iter().product();
        let len = range.len();
        self.inner.storage.modify(|data| {
            for o in 0..outer {
                let dst = (o * n + range.start) * inner;
                let src = o * len * inner;
                data[dst..dst + len * inner].copy_from_slice(&v[src..src + len * inner]);
            }
        })?;
        Ok(())
    }
    /// Sets `self[.., range, ..] = value` along `dim`.
    pub fn slice_fill_(&self, dim: isize, range: std::ops::Range<usize>, value: f32) -> Result<()> {
        self.slice_assign_(dim, range, &Tensor::scalar(value))
    }

    // ----- comparisons ----------------------------------------------------------------------

    /// Same shape and every `|a - b| <= atol + rtol * |b|` (NaNs never close).
    pub fn allclose(&self, other: &Tensor, rtol: f32, atol: f32) -> bool {
        if self.shape() != other.shape() {
            return false;
        }
        let (a, b) = (self.data(), other.data());
        a.iter()
            .zip(b.iter())
            .all(|(&x, &y)| (x - y).abs() <= atol + rtol * y.abs())
    }
    /// Same shape and exactly equal elements (`torch.equal`).
    pub fn equal(&self, other: &Tensor) -> bool {
        self.shape() == other.shape() && *self.data() == *other.data()
    }
    /// Elementwise `==` as 1.0 / 0.0 (broadcasting).
    pub fn eq_elem(&self, other: &Tensor) -> Result<Tensor> {
        crate::ops::broadcast_compare("eq", self, other, |a, b| a == b)
    }
    /// Elementwise `>` as 1.0 / 0.0 (broadcasting).
    pub fn gt_elem(&self, other: &Tensor) -> Result<Tensor> {
        crate::ops::broadcast_compare("gt", self, other, |a, b| a > b)
    }
}

/// A possibly negative PyTorch dimension (`-1` is the last) as an index into `rank`
/// dimensions; `None` when out of range.
pub(crate) fn normalize_dim(dim: isize, rank: usize) -> Option<usize> {
    let r = rank as isize;
    let d = if dim < 0 { dim + r } else { dim };
    (0..r).contains(&d).then_some(d as usize)
}

/// Resolves a possibly negative dimension against `rank`.
pub(crate) fn resolve_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    normalize_dim(dim, rank).ok_or(Error::DimOutOfRange { op, dim, rank })
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// `to(device)`: the gradient goes back to the device the input was on.
struct ToDeviceBackward {
    x: Tensor,
    from: Device,
}

impl Backward for ToDeviceBackward {
    fn name(&self) -> &'static str {
        "ToCopyBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.to(&self.from)?)])
    }
}
