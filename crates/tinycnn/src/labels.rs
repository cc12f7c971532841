//! Class labels on a device: what cross-entropy and accuracy compare logits with. On a CUDA
//! device they stay in device memory, so a training step reads nothing back to the host.

use crate::device::Device;
use crate::error::{Error, Result};

/// Class indices (`u32`), on the CPU or a CUDA device.
///
/// ```
/// use tinycnn::{Labels, Tensor};
/// let logits = Tensor::new([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]);
/// let labels = Labels::new(&[0, 1, 1]);
/// assert_eq!(logits.count_correct(&labels).unwrap().item().unwrap(), 2.0);
/// ```
///
/// Cloning device labels shares their buffer (they are never written after they are made).
#[derive(Clone)]
pub struct Labels(pub(crate) LabelData);

#[derive(Clone)]
pub(crate) enum LabelData {
    Cpu(Vec<u32>),
    #[cfg(feature = "cuda")]
    Cuda {
        ordinal: usize,
        dev: std::sync::Arc<crate::cuda::CudaDevice>,
        buf: std::sync::Arc<crate::cuda::CudaBufferU32>,
    },
}

impl Labels {
    /// Labels on the CPU.
    pub fn new(labels: &[u32]) -> Labels {
        Labels(LabelData::Cpu(labels.to_vec()))
    }
    /// How many labels.
    pub fn len(&self) -> usize {
        match &self.0 {
            LabelData::Cpu(v) => v.len(),
            #[cfg(feature = "cuda")]
            LabelData::Cuda { buf, .. } => buf.len(),
        }
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Where they are.
    pub fn device(&self) -> Device {
        match &self.0 {
            LabelData::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            LabelData::Cuda { ordinal, .. } => Device::Cuda(*ordinal),
        }
    }
    /// The labels on the host (a download from a device).
    pub fn to_vec(&self) -> Result<Vec<u32>> {
        match &self.0 {
            LabelData::Cpu(v) => Ok(v.clone()),
            #[cfg(feature = "cuda")]
            LabelData::Cuda { dev, buf, .. } => {
                dev.download_u32(&**buf).map_err(crate::cuda::err("labels"))
            }
        }
    }
    /// The same labels on `device`.
    pub fn to(&self, device: &Device) -> Result<Labels> {
        match (device, &self.0) {
            (Device::Cpu, LabelData::Cpu(v)) => Ok(Labels(LabelData::Cpu(v.clone()))),
            #[cfg(feature = "cuda")]
            (Device::Cpu, _) => Ok(Labels::new(&self.to_vec()?)),
            #[cfg(feature = "cuda")]
            (Device::Cuda(ordinal), _) => {
                let dev = crate::cuda::device(*ordinal)?;
                let buf = dev
                    .upload_u32(&self.to_vec()?)
                    .map_err(crate::cuda::err("labels"))?;
                let buf = std::sync::Arc::new(buf);
                Ok(Labels(LabelData::Cuda {
                    ordinal: *ordinal,
                    dev,
                    buf,
                }))
            }
            #[cfg(not(feature = "cuda"))]
            (Device::Cuda(_), _) => Err(crate::device::no_cuda("Labels::to")),
        }
    }
    /// Checks every label is below `classes`, naming the first that is not.
    #[allow(irrefutable_let_patterns)] // without the cuda feature all labels are on the host
    pub(crate) fn check(&self, op: &'static str, classes: usize) -> Result<()> {
        if let LabelData::Cpu(v) = &self.0 {
            if let Some((i, l)) = v.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
                return Err(Error::invalid(
                    op,
                    format!("label {i} is {l}, but there are {classes} classes"),
                ));
            }
        }
        // Device labels were checked on the host when they were made (see `ResidentData`).
        Ok(())
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Labels({} on {})", self.len(), self.device())
    }
}
