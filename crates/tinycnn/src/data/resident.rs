//! A data set held on one device, so a training loop on a GPU uploads it once and gathers
//! every batch there: no host copy per batch.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::labels::{LabelData, Labels};
use crate::tensor::Tensor;

use super::{SampleTransform, Split};

/// Images `[N, C, H, W]` and their labels on one device.
///
/// ```
/// use tinycnn::data::ResidentData;
/// use tinycnn::Device;
/// let images: Vec<f32> = (0..8).map(|v| v as f32).collect(); // 4 images of 1x1x2
/// let data = ResidentData::new(&images, &[4, 1, 1, 2], &[0, 1, 2, 3], &Device::Cpu).unwrap();
/// let order = data.order(&[3, 1, 0, 2]).unwrap();
/// let (x, y) = data.batch(&order, 1, 2).unwrap();
/// assert_eq!(x.to_vec(), [2.0, 3.0, 0.0, 1.0]);
/// assert_eq!(y.to_vec().unwrap(), [1, 0]);
/// ```
#[derive(Debug)]
pub struct ResidentData {
    images: Tensor,
    labels: Labels,
    sample_shape: Vec<usize>,
}

/// A visiting order of a [`ResidentData`], on its device (uploaded once per epoch).
pub struct Order {
    len: usize,
    data: OrderData,
}

enum OrderData {
    Cpu(Vec<u32>),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaBufferU32),
}

impl ResidentData {
    /// `images` (`shape[0]` samples of `shape[1..]`) and one label per sample, on `device`.
    pub fn new(images: &[f32], shape: &[usize], labels: &[u32], device: &Device) -> Result<Self> {
        let Some((&n, sample)) = shape.split_first() else {
            return Err(Error::invalid(
                "ResidentData",
                "shape needs a batch dimension",
            ));
        };
        if labels.len() != n {
            return Err(Error::mismatch(
                "ResidentData (images vs labels)",
                shape,
                &[labels.len()],
            ));
        }
        if n > u32::MAX as usize {
            return Err(Error::invalid(
                "ResidentData",
                format!("{n} samples do not fit u32 indices"),
            ));
        }
        let images = Tensor::from_vec(images.to_vec(), shape)?.to(device)?;
        Ok(ResidentData {
            images,
            labels: Labels::new(labels).to(device)?,
            sample_shape: sample.to_vec(),
        })
    }

    /// A split of an image data set (one channel), on `device`.
    pub fn from_split(split: &Split, device: &Device) -> Result<Self> {
        let labels: Vec<u32> = split.labels.iter().map(|&l| u32::from(l)).collect();
        let shape = [split.len(), 1, split.rows, split.cols];
        ResidentData::new(&split.images, &shape, &labels, device)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Where the data is.
    pub fn device(&self) -> Device {
        self.images.device()
    }

    /// A visiting order (sample indices) on the data's device.
    pub fn order(&self, order: &[usize]) -> Result<Order> {
        let n = self.len();
        if let Some(&bad) = order.iter().find(|&&i| i >= n) {
            return Err(Error::IndexOutOfRange {
                op: "ResidentData::order",
                index: bad,
                dim: 0,
                size: n,
            });
        }
        let idx: Vec<u32> = order.iter().map(|&i| i as u32).collect();
        let data = match self.device() {
            Device::Cpu => OrderData::Cpu(idx),
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => OrderData::Cuda(
                crate::cuda::device(ordinal)?
                    .upload_u32(&idx)
                    .map_err(crate::cuda::err("ResidentData::order"))?,
            ),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => return Err(crate::device::no_cuda("ResidentData::order")),
        };
        Ok(Order {
            len: order.len(),
            data,
        })
    }

    /// Samples `order[start..start + len]` and their labels, gathered on the device.
    pub fn batch(&self, order: &Order, start: usize, len: usize) -> Result<(Tensor, Labels)> {
        if start.checked_add(len).is_none_or(|end| end > order.len) {
            return Err(Error::IndexOutOfRange {
                op: "ResidentData::batch",
                index: start.saturating_add(len),
                dim: 0,
                size: order.len,
            });
        }
        let per: usize = self.sample_shape.iter().product();
        let mut shape = vec![len];
        shape.extend_from_slice(&self.sample_shape);
        match (&order.data, &self.labels.0) {
            (OrderData::Cpu(idx), LabelData::Cpu(labels)) => {
                let x = self.images.data();
                let mut images = Vec::with_capacity(len * per);
                let mut ys = Vec::with_capacity(len);
                for &i in &idx[start..start + len] {
                    let i = i as usize;
                    images.extend_from_slice(&x[i * per..(i + 1) * per]);
                    ys.push(labels[i]);
                }
                Ok((Tensor::from_vec(images, &shape)?, Labels::new(&ys)))
            }
            #[cfg(feature = "cuda")]
            (OrderData::Cuda(perm), LabelData::Cuda { ordinal, dev, buf }) => {
                let xb = self.images.buffer();
                let x = crate::ops::on_cuda(&xb).ok_or_else(|| {
                    Error::invalid("ResidentData::batch", "images left their device")
                })?;
                let op = "ResidentData::batch";
                let mut images = x.alloc_like(len * per)?;
                let mut ys = dev.alloc_u32(len).map_err(crate::cuda::err(op))?;
                if len > 0 {
                    dev.gather_batch(
                        len,
                        per,
                        perm,
                        start,
                        &x.buf,
                        &**buf,
                        &mut images.buf,
                        &mut ys,
                    )
                    .map_err(crate::cuda::err(op))?;
                }
                let labels = Labels(LabelData::Cuda {
                    ordinal: *ordinal,
                    dev: dev.clone(),
                    buf: std::sync::Arc::new(ys),
                });
                Ok((crate::ops::cuda_tensor(images, &shape), labels))
            }
            #[cfg(feature = "cuda")]
            _ => Err(Error::invalid(
                "ResidentData::batch",
                "the order was made for another device",
            )),
        }
    }
}

impl ResidentData {
    /// [`ResidentData::batch`] with one augmentation transform per sample (`transforms[k]`
    /// for sample `order[start + k]`, e.g. a slice of [`super::Augment::epoch_transforms`]);
    /// samples must be `[C, H, W]`.
    ///
    /// The batch is gathered on the device as usual; the crop and flip are then applied
    /// there too (on a GPU the kernel `augment_batch`, after an upload of the batch's
    /// transforms, three numbers per sample).
    pub fn batch_augmented(
        &self,
        order: &Order,
        start: usize,
        len: usize,
        transforms: &[SampleTransform],
    ) -> Result<(Tensor, Labels)> {
        let op = "ResidentData::batch_augmented";
        if transforms.len() != len {
            return Err(Error::invalid(
                op,
                format!("{} transforms for a batch of {len}", transforms.len()),
            ));
        }
        let &[c, h, w] = self.sample_shape.as_slice() else {
            return Err(Error::invalid(
                op,
                format!(
                    "samples of shape {:?} are not images [C, H, W]",
                    self.sample_shape
                ),
            ));
        };
        let (x, y) = self.batch(order, start, len)?;
        if transforms.iter().all(SampleTransform::is_identity) {
            return Ok((x, y));
        }
        #[cfg(feature = "cuda")]
        if let Some(xc) = crate::ops::on_cuda(&x.buffer()) {
            // (dy, dx, flip) per sample; the offsets as their two's complement bits.
            let packed: Vec<u32> = transforms
                .iter()
                .flat_map(|t| [t.dy as u32, t.dx as u32, u32::from(t.flip)])
                .collect();
            let dev = &xc.dev;
            let t = dev.upload_u32(&packed).map_err(crate::cuda::err(op))?;
            let mut out = xc.alloc_like(xc.buf.len())?;
            dev.augment_batch(len, [c, h, w], &t, &xc.buf, &mut out.buf)
                .map_err(crate::cuda::err(op))?;
            return Ok((crate::ops::cuda_tensor(out, x.shape()), y));
        }
        let per = c * h * w;
        let src = x.to_host()?;
        let mut out = vec![0.0; src.len()];
        for ((image, dst), t) in src
            .chunks_exact(per)
            .zip(out.chunks_exact_mut(per))
            .zip(transforms)
        {
            t.apply(image, [c, h, w], dst);
        }
        let x = Tensor::from_vec(out, x.shape())?.to(&self.device())?;
        Ok((x, y))
    }
}

impl Order {
    /// Number of indices.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
