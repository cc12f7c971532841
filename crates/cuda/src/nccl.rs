//! NCCL between processes, one GPU each (feature `nccl`): the gradient all-reduce of
//! data-parallel training on CUDA (`tinycnn::distributed::Nccl`). `libnccl.so.2` is loaded
//! at the first call, as the driver is, so this builds and links without NCCL or a GPU.
//!
//! NCCL does not find its peers: one rank makes a [`unique_id`] and the others receive it
//! through another channel (MPI in tinycnn) before each calls [`NcclComm::new`]. The
//! collectives run on the device's one stream, in order with its kernels.

use crate::buffer::{CudaBuffer, Raw};
use crate::device::{Backend, CudaDevice};
use crate::error::{CudaError, Result};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};
use std::sync::Arc;

/// Length of an NCCL unique id in bytes.
pub const ID_BYTES: usize = 128;

fn nccl(op: &'static str) -> impl FnOnce(cudarc::nccl::result::NcclError) -> CudaError {
    move |e| CudaError::Nccl {
        op,
        msg: format!("{:?} (result code {})", e, e.0 as i32),
    }
}

/// Whether `libnccl.so.2` can be loaded (cudarc would panic at the first call otherwise).
pub fn is_available() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { cudarc::nccl::sys::is_culib_present() }
}

/// A new NCCL unique id (`ncclGetUniqueId`), to be sent to every rank of the group. Fails
/// when `libnccl.so.2` cannot be loaded.
pub fn unique_id() -> Result<[u8; ID_BYTES]> {
    if !is_available() {
        return Err(CudaError::Nccl {
            op: "ncclGetUniqueId",
            msg: "libnccl.so.2 could not be loaded (install NCCL, e.g. libnccl2)".into(),
        });
    }
    let id = Id::new().map_err(nccl("ncclGetUniqueId"))?;
    Ok(id.internal().map(|c| c as u8))
}

/// One rank of an NCCL communicator, on one device.
pub struct NcclComm {
    comm: Comm,
    device: Arc<CudaDevice>,
}

impl NcclComm {
    /// Joins the group of `size` ranks named by `id` as `rank` (`ncclCommInitRank`; blocks
    /// until every rank has joined). The emulated device has no NCCL: an error.
    pub fn new(
        device: &Arc<CudaDevice>,
        rank: usize,
        size: usize,
        id: &[u8; ID_BYTES],
    ) -> Result<NcclComm> {
        let stream = match device.backend() {
            Backend::Cuda { stream, .. } => Arc::clone(stream),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(CudaError::Invalid(
                    "NCCL needs a GPU: the emulated CUDA device has none".into(),
                ))
            }
        };
        if !is_available() {
            return Err(CudaError::Nccl {
                op: "ncclCommInitRank",
                msg: "libnccl.so.2 could not be loaded (install NCCL, e.g. libnccl2)".into(),
            });
        }
        if rank >= size {
            return Err(CudaError::Invalid(format!("NCCL rank {rank} of {size}")));
        }
        let id = Id::uninit(id.map(|b| b as core::ffi::c_char));
        let comm = Comm::from_rank(stream, rank, size, id).map_err(nccl("ncclCommInitRank"))?;
        Ok(NcclComm {
            comm,
            device: Arc::clone(device),
        })
    }

    /// The device this rank's buffers live on.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// Sums `buf` element-wise over the ranks, in place (`ncclAllReduce` with `ncclSum`),
    /// queued on the device's stream. Every rank passes a buffer of the same length.
    pub fn all_reduce_sum(&self, buf: &mut CudaBuffer) -> Result<()> {
        let len = buf.len();
        if len == 0 {
            return Ok(());
        }
        match buf.raw_mut() {
            Raw::Cuda(slice) => {
                let mut view = slice.slice_mut(0..len);
                self.comm
                    .all_reduce_in_place(&mut view, &ReduceOp::Sum)
                    .map_err(nccl("ncclAllReduce"))?;
                Ok(())
            }
            #[cfg(feature = "emu")]
            Raw::Host(_) => Err(CudaError::Invalid(
                "NCCL all-reduce of a buffer of the emulated device".into(),
            )),
        }
    }
}
