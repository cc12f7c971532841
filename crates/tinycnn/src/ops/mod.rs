//! Every differentiable op, in files by family: elementwise, reduce, shape, matmul, conv,
//! pool, loss. Each file gives the forward (a `Tensor` method) and, beside it, the op's
//! backward rule (a struct implementing [`Backward`] that keeps what the rule needs).
//! Convolution, pooling, activations, softmax / cross-entropy, bias and matrix products run
//! on the kernels of `tinycnn-kernels`, forward and backward; `broadcast` holds the NumPy
//! broadcasting both directions share.

pub(crate) mod broadcast;
mod conv;
mod elementwise;
mod loss;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod shape;

pub(crate) use elementwise::broadcast_compare;
pub use loss::labels_from_tensor;

use crate::autograd::Backward;
use crate::error::Result;
use crate::parallel;
use crate::tensor::Tensor;
use rayon::prelude::*;
use tinycnn_kernels as k;

/// Runs a backward rule written on host buffers: `f(grad, out_shape, want)` returns one
/// optional gradient buffer per input (in [`Backward::inputs`] order), each made a tensor of
/// its input's shape.
pub(crate) fn cpu_backward(
    op: &dyn Backward,
    grad: &Tensor,
    needs: &[bool],
    f: impl FnOnce(&[f32], &[usize], &dyn Fn(usize) -> bool) -> Result<Vec<Option<Vec<f32>>>>,
) -> Result<Vec<Option<Tensor>>> {
    let g = grad.data();
    let want = |i: usize| needs.get(i).copied().unwrap_or(false);
    let grads = f(&g, grad.shape(), &want)?;
    // Each gradient goes to its input's device (host rules serve every device).
    grads
        .into_iter()
        .zip(op.inputs())
        .map(|(gv, x)| {
            gv.map(|v| Tensor::raw(v, x.shape().to_vec()).to(&x.device()))
                .transpose()
        })
        .collect()
}

/// Below this many elements an elementwise kernel runs on the calling thread: a rayon
/// hand-off costs a few microseconds, about what 16K elements of sigmoid take.
const PAR_ELEMENTWISE_MIN: usize = 1 << 15;

/// A new buffer of `x.len()` elements filled by an elementwise kernel `f(x, aux, y)`, split
/// into one chunk per thread when the input is long enough to pay for it.
pub(crate) fn par_elementwise(
    x: &[f32],
    aux: Option<&[f32]>,
    f: impl Fn(&[f32], Option<&[f32]>, &mut [f32]) -> k::Result<()> + Sync,
) -> k::Result<Vec<f32>> {
    let n = x.len();
    let threads = parallel::num_threads();
    // Mismatched lengths go straight to the kernel, which reports them.
    if threads <= 1 || n < 2 * PAR_ELEMENTWISE_MIN || aux.is_some_and(|a| a.len() != n) {
        let mut y = vec![0.0; n];
        f(x, aux, &mut y)?;
        return Ok(y);
    }
    // Chunks are multiples of 64 elements, so every chunk but the last is whole vectors.
    let chunk = n.div_ceil(threads).div_ceil(64) * 64;
    par_new_buffer(n, chunk, |i, yc| {
        let start = i * chunk;
        let end = start + yc.len();
        f(&x[start..end], aux.map(|a| &a[start..end]), yc)
    })
}

/// A new `len`-element buffer whose chunks of `chunk` elements (the last may be shorter) are
/// written by `f(chunk_index, chunk)` on the thread pool.
///
/// Each worker zeroes its own chunk just before `f` runs on it, instead of the caller
/// zeroing the whole buffer first: the clearing runs in parallel, and the chunk is in cache
/// when `f` writes it. (Zeroing up front on the calling thread was about a tenth of a LeNet
/// training step.)
pub(crate) fn par_new_buffer(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [f32]) -> k::Result<()> + Sync,
) -> k::Result<Vec<f32>> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    if len > 0 {
        parallel::install(|| {
            v.spare_capacity_mut()[..len]
                .par_chunks_mut(chunk.max(1))
                .enumerate()
                .try_for_each(|(i, c)| {
                    for e in c.iter_mut() {
                        e.write(0.0);
                    }
                    // SAFETY: every element of `c` was initialized just above, and
                    // `MaybeUninit<f32>` has the layout of `f32`.
                    let c = unsafe { &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                    f(i, c)
                })
        })?;
    }
    // SAFETY: `try_for_each` returned Ok, so every chunk of `0..len` was initialized.
    unsafe { v.set_len(len) };
    Ok(v)
}

// ===== convolution and pooling (batch-parallel) ==============================================

/// A new buffer of `batch * y_per` elements, written by `f(chunk_batch, x_chunk, y_chunk)`
/// on per-thread chunks of the batch.
pub(crate) fn par_batch(
    batch: usize,
    x: &[f32],
    x_per: usize,
    y_per: usize,
    f: impl Fn(usize, &[f32], &mut [f32]) -> k::Result<()> + Sync,
) -> k::Result<Vec<f32>> {
    let cl = parallel::chunk_len(batch);
    if cl >= batch || x_per == 0 || y_per == 0 {
        let mut y = vec![0.0; batch * y_per];
        f(batch, x, &mut y)?;
        return Ok(y);
    }
    par_new_buffer(batch * y_per, cl * y_per, |i, yc| {
        // A short `x` gives a short (or empty) chunk, which the kernel reports.
        let xc = x.chunks(cl * x_per).nth(i).unwrap_or_default();
        f(yc.len() / y_per, xc, yc)
    })
}

/// The CUDA storage behind a buffer, if it is on a CUDA device.
#[cfg(feature = "cuda")]
pub(crate) fn on_cuda(b: &crate::storage::Buffer) -> Option<&crate::cuda::CudaStorage> {
    match b {
        crate::storage::Buffer::Cuda(c) => Some(c),
        crate::storage::Buffer::Cpu(_) => None,
    }
}

/// A tensor made from a CUDA result buffer (no graph).
#[cfg(feature = "cuda")]
pub(crate) fn cuda_tensor(c: crate::cuda::CudaStorage, shape: &[usize]) -> Tensor {
    Tensor::from_buffer(crate::storage::Buffer::Cuda(c), shape.to_vec())
}
