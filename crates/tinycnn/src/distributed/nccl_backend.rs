//! NCCL on each rank's GPU (feature `nccl`).

use super::{Communicator, Error, Result};
use crate::cuda::{err, CudaStorage};
use crate::device::Device;
use crate::storage::Buffer;
use crate::tensor::Tensor;
use std::sync::Arc;
use tinycnn_cuda::nccl::{NcclComm, ID_BYTES};
use tinycnn_cuda::CudaDevice;

/// NCCL on this rank's GPU, for [`DataParallel::with_nccl`](super::DataParallel::with_nccl):
/// the gradients of a step are packed into one device buffer (each scaled by the rank's
/// share of the batch), summed in place by `ncclAllReduce` on the device's stream, and
/// unpacked, without a trip through host memory. Needs a GPU and `libnccl.so.2`; the
/// emulated device has no NCCL.
pub struct Nccl {
    comm: NcclComm,
    dev: Arc<CudaDevice>,
    ordinal: usize,
}

impl Nccl {
    /// Joins every rank of `comm` on `device` (a CUDA device, one per rank): rank 0 makes
    /// the NCCL id and broadcasts it over `comm`. Collective: every rank calls it, and
    /// a failure on rank 0 (no NCCL) fails every rank.
    pub fn new(comm: &dyn Communicator, device: Device) -> Result<Nccl> {
        let Device::Cuda(ordinal) = device else {
            return Err(Error::invalid(
                "Nccl::new",
                format!("{device} is not a GPU"),
            ));
        };
        let made = if comm.rank() == 0 {
            tinycnn_cuda::nccl::unique_id().map_err(err("NCCL id"))
        } else {
            Ok([0; ID_BYTES])
        };
        let mut bytes = made.as_ref().map_or(Vec::new(), |id| id.to_vec());
        comm.broadcast_bytes(&mut bytes, 0)?;
        made?;
        let id: [u8; ID_BYTES] = bytes.try_into().map_err(|_| Error::Distributed {
            op: "Nccl::new",
            msg: "rank 0 could not make an NCCL id (see its error)".into(),
        })?;
        let dev = crate::cuda::device(ordinal)?;
        let nccl = NcclComm::new(&dev, comm.rank(), comm.size(), &id).map_err(err("NCCL init"))?;
        Ok(Nccl {
            comm: nccl,
            dev,
            ordinal,
        })
    }

    /// Whether `libnccl.so.2` can be loaded on this machine.
    pub fn is_available() -> bool {
        tinycnn_cuda::nccl::is_available()
    }

    /// The GPU.
    pub fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    /// Sum over the ranks of `weight * grad` for every parameter (zeros where a rank
    /// has no gradient), as new device tensors.
    pub(super) fn all_reduce_scaled(
        &self,
        params: &[Tensor],
        grads: &[Option<Tensor>],
        weight: f32,
    ) -> Result<Vec<Tensor>> {
        let total: usize = params.iter().map(|p| p.numel()).sum();
        let mut flat = self.dev.zeros(total).map_err(err("NCCL pack"))?;
        let mut at = 0;
        for (p, g) in params.iter().zip(grads) {
            let n = p.numel();
            if let Some(g) = g {
                let scaled = g.mul_scalar(weight);
                let buffer = scaled.buffer();
                let Buffer::Cuda(src) = &*buffer else {
                    return Err(Error::Distributed {
                        op: "Nccl",
                        msg: "a gradient is not on the GPU".into(),
                    });
                };
                self.dev
                    .copy_device(&src.buf.slice(..n), &mut flat.slice_mut(at..at + n))
                    .map_err(err("NCCL pack"))?;
            }
            at += n;
        }
        self.comm
            .all_reduce_sum(&mut flat)
            .map_err(err("NCCL all-reduce"))?;
        let mut out = Vec::with_capacity(params.len());
        at = 0;
        for p in params {
            let n = p.numel();
            let mut buf = self.dev.alloc(n).map_err(err("NCCL unpack"))?;
            self.dev
                .copy_device(&flat.slice(at..at + n), &mut buf)
                .map_err(err("NCCL unpack"))?;
            let storage = CudaStorage {
                ordinal: self.ordinal,
                dev: Arc::clone(&self.dev),
                buf,
            };
            out.push(Tensor::from_buffer(
                Buffer::Cuda(storage),
                p.shape().to_vec(),
            ));
            at += n;
        }
        Ok(out)
    }
}
