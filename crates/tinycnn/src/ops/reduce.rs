//! Reductions: sums, means, maxima and argmax, with their backward rules.

use super::broadcast::{expand_data, scale, sum_to};
use super::cpu_backward;
use crate::autograd::Backward;
use crate::error::{Error, Result};
use crate::tensor::{numel_of, Tensor};

impl Tensor {
    fn keep_shape(&self, op: &'static str, dims: &[isize]) -> Result<(Vec<usize>, Vec<usize>)> {
        let mut keep = self.shape().to_vec();
        let mut reduced = vec![false; self.rank()];
        for &d in dims {
            let d = self.dim_index(op, d)?;
            keep[d] = 1;
            reduced[d] = true;
        }
        let squeezed = self
            .shape()
            .iter()
            .zip(&reduced)
            .filter(|(_, &r)| !r)
            .map(|(&n, _)| n)
            .collect();
        Ok((keep, squeezed))
    }

    /// Sum of all elements (a 0-d tensor).
    pub fn sum_all(&self) -> Tensor {
        #[cfg(feature = "cuda")]
        if let Some(t) = self.cuda_sum_all(1.0, false) {
            return t;
        }
        let s: f32 = self.data().iter().sum();
        let keep = vec![1; self.rank()];
        Tensor::from_op(
            vec![s],
            vec![],
            SumBackward {
                x: self.clone(),
                keep_shape: keep,
                all: true,
            },
        )
    }
    /// Sum over `dims` (negative counts from the end); `keepdim` keeps them as size 1.
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let (keep, squeezed) = self.keep_shape("sum", dims)?;
        let v = sum_to(&self.data(), self.shape(), &keep);
        let shape = if keepdim { keep.clone() } else { squeezed };
        Ok(Tensor::from_op(
            v,
            shape,
            SumBackward {
                x: self.clone(),
                keep_shape: keep,
                all: false,
            },
        ))
    }
    /// Mean of all elements (a 0-d tensor).
    pub fn mean_all(&self) -> Tensor {
        #[cfg(feature = "cuda")]
        if let Some(t) = self.cuda_sum_all(1.0 / self.numel().max(1) as f32, true) {
            return t;
        }
        let n = self.numel().max(1) as f32;
        let s: f32 = self.data().iter().sum::<f32>() / n;
        let keep = vec![1; self.rank()];
        Tensor::from_op(
            vec![s],
            vec![],
            MeanBackward {
                x: self.clone(),
                keep_shape: keep,
                all: true,
            },
        )
    }
    /// Mean over `dims`; `keepdim` keeps them as size 1.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let (keep, squeezed) = self.keep_shape("mean", dims)?;
        let count = (self.numel() / numel_of(&keep).max(1)).max(1) as f32;
        let mut v = sum_to(&self.data(), self.shape(), &keep);
        v.iter_mut().for_each(|x| *x /= count);
        let shape = if keepdim { keep.clone() } else { squeezed };
        Ok(Tensor::from_op(
            v,
            shape,
            MeanBackward {
                x: self.clone(),
                keep_shape: keep,
                all: false,
            },
        ))
    }
    /// Largest element (a 0-d tensor; NaN wins, as in PyTorch).
    pub fn max_all(&self) -> Result<Tensor> {
        let d = self.data();
        if d.is_empty() {
            return Err(Error::bad_shape("max", self.shape(), "empty tensor"));
        }
        let mut best = 0;
        for (i, &v) in d.iter().enumerate() {
            if v > d[best] || (v.is_nan() && !d[best].is_nan()) {
                best = i;
            }
        }
        let v = d[best];
        drop(d);
        Ok(Tensor::from_op(
            vec![v],
            vec![],
            MaxBackward {
                x: self.clone(),
                indices: vec![best],
                all: true,
            },
        ))
    }
    /// Smallest element (a 0-d tensor).
    pub fn min_all(&self) -> Result<Tensor> {
        Ok(self.neg().max_all()?.neg())
    }
    /// Maximum along `dim` and the index where it is (first on ties), like `torch.max(x, dim)`.
    pub fn max(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let d = self.dim_index("max", dim)?;
        let shape = self.shape();
        let (outer, n, inner): (usize, usize, usize) = (
            shape[..d].iter().product(),
            shape[d],
            shape[d + 1..].iter().product(),
        );
        if n == 0 {
            return Err(Error::bad_shape("max", shape, "reduced dimension is empty"));
        }
        let x = self.data();
        let mut vals = Vec::with_capacity(outer * inner);
        let mut flat = Vec::with_capacity(outer * inner);
        let mut pos = Vec::with_capacity(outer * inner);
        // Index of the maximum in each (outer, inner) lane along `dim`: first of ties, NaN
        // counts as the maximum. Along the last dimension the kernel's vectorized rows do it.
        let best: Vec<usize> = if inner == 1 && outer > 0 {
            let mut idx = vec![0u32; outer];
            tinycnn_kernels::argmax_rows(outer, n, &x, &mut idx).map_err(Error::kernel("max"))?;
            idx.into_iter().map(|j| j as usize).collect()
        } else {
            (0..outer * inner)
                .map(|lane| {
                    let base = (lane / inner) * n * inner + lane % inner;
                    (1..n).fold(0, |best, j| {
                        let (v, b) = (x[base + j * inner], x[base + best * inner]);
                        if v > b || (v.is_nan() && !b.is_nan()) {
                            j
                        } else {
                            best
                        }
                    })
                })
                .collect()
        };
        for (lane, &j) in best.iter().enumerate() {
            let at = (lane / inner) * n * inner + lane % inner + j * inner;
            vals.push(x[at]);
            flat.push(at);
            pos.push(j as f32);
        }
        drop(x);
        let mut out_shape = shape.to_vec();
        if keepdim {
            out_shape[d] = 1;
        } else {
            out_shape.remove(d);
        }
        let values = Tensor::from_op(
            vals,
            out_shape.clone(),
            MaxBackward {
                x: self.clone(),
                indices: flat,
                all: false,
            },
        );
        Ok((values, Tensor::raw(pos, out_shape)))
    }
    /// Index of the maximum along `dim`, as f32 values.
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self.max(dim, keepdim)?.1)
    }
}

pub(crate) struct SumBackward {
    x: Tensor,
    keep_shape: Vec<usize>,
    all: bool,
}

impl Backward for SumBackward {
    fn name(&self) -> &'static str {
        if self.all {
            "SumBackward0"
        } else {
            "SumBackward1"
        }
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let SumBackward { x, keep_shape, .. } = self;
            Ok(vec![Some(expand_data(g, keep_shape, x.shape()))])
        })
    }
}

pub(crate) struct MeanBackward {
    x: Tensor,
    keep_shape: Vec<usize>,
    all: bool,
}

impl Backward for MeanBackward {
    fn name(&self) -> &'static str {
        if self.all {
            "MeanBackward0"
        } else {
            "MeanBackward1"
        }
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let MeanBackward { x, keep_shape, .. } = self;
            Ok({
                let count = (x.numel() / numel_of(keep_shape).max(1)).max(1) as f32;
                vec![Some(scale(
                    &expand_data(g, keep_shape, x.shape()),
                    1.0 / count,
                ))]
            })
        })
    }
}

pub(crate) struct MaxBackward {
    x: Tensor,
    indices: Vec<usize>,
    all: bool,
}

impl Backward for MaxBackward {
    fn name(&self) -> &'static str {
        if self.all {
            "MaxBackward1"
        } else {
            "MaxBackward0"
        }
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let MaxBackward { x, indices, .. } = self;
            Ok({
                let mut gx = vec![0.0; x.numel()];
                for (o, &i) in indices.iter().enumerate() {
                    gx[i] += g[o];
                }
                vec![Some(gx)]
            })
        })
    }
}

#[cfg(feature = "cuda")]
impl Tensor {
    /// `scale * sum(self)` on the CUDA device, recorded as a sum or a mean; `None` off CUDA
    /// (or if the device fails, so the host path reports it).
    fn cuda_sum_all(&self, scale: f32, mean: bool) -> Option<Tensor> {
        let b = self.buffer();
        let x = super::on_cuda(&b)?;
        let mut partials = x.alloc_like(tinycnn_cuda::launch::BLOCK as usize).ok()?;
        let mut out = x.alloc_like(1).ok()?;
        x.dev
            .reduce_sum_into(&x.buf, scale, &mut partials.buf, &mut out.buf)
            .ok()?;
        let keep_shape = vec![1; self.rank()];
        let y = crate::storage::Buffer::Cuda(out);
        Some(if mean {
            Tensor::from_buffer_op(
                y,
                vec![],
                MeanBackward {
                    x: self.clone(),
                    keep_shape,
                    all: true,
                },
            )
        } else {
            Tensor::from_buffer_op(
                y,
                vec![],
                SumBackward {
                    x: self.clone(),
                    keep_shape,
                    all: true,
                },
            )
        })
    }
}
