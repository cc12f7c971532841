//! Shape ops: views that share storage (reshape, flatten, squeeze), and copies (expand,
//! permute, narrow, cat), with their backward rules.

use super::broadcast::{broadcast_shape, expand_data, sum_to, walk2};
use super::cpu_backward;
use crate::autograd::Backward;
use crate::error::{Error, Result};
use crate::tensor::{numel_of, resolve_dim, Dims, Tensor};

impl Tensor {
    /// The same elements with another shape; one entry may be `-1` (inferred). Shares storage
    /// with `self`, like PyTorch's `view` / `reshape` of a contiguous tensor.
    pub fn reshape(&self, dims: impl Dims) -> Result<Tensor> {
        let dims = dims.dims();
        let n = self.numel();
        let mut infer = None;
        let mut known = 1usize;
        for (i, &d) in dims.iter().enumerate() {
            if d == -1 {
                if infer.replace(i).is_some() {
                    return Err(Error::bad_shape(
                        "reshape",
                        self.shape(),
                        format!("only one -1 allowed in {dims:?}"),
                    ));
                }
            } else if d < 0 {
                return Err(Error::bad_shape(
                    "reshape",
                    self.shape(),
                    format!("invalid size in {dims:?}"),
                ));
            } else {
                known = known.checked_mul(d as usize).ok_or_else(|| {
                    Error::bad_shape("reshape", self.shape(), format!("{dims:?} overflows"))
                })?;
            }
        }
        let mut shape: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
        if let Some(i) = infer {
            if known == 0 || !n.is_multiple_of(known) {
                return Err(Error::bad_shape(
                    "reshape",
                    self.shape(),
                    format!("cannot reshape {n} elements into {dims:?}"),
                ));
            }
            shape[i] = n / known;
        } else if known != n {
            return Err(Error::bad_shape(
                "reshape",
                self.shape(),
                format!("cannot reshape {n} elements into {dims:?}"),
            ));
        }
        Ok(self.view_as(shape))
    }

    /// A view with `shape` (same element count), recorded as a reshape.
    pub(crate) fn view_as(&self, shape: Vec<usize>) -> Tensor {
        let node = if crate::autograd::grad_enabled() && self.requires_grad() {
            Some(crate::autograd::Node::new(ReshapeBackward(self.clone())))
        } else {
            None
        };
        Tensor::from_parts(shape, self.storage().clone(), node)
    }

    /// Alias of [`Tensor::reshape`].
    pub fn view(&self, dims: impl Dims) -> Result<Tensor> {
        self.reshape(dims)
    }

    /// Merges dims `start..=end` into one (`torch.flatten(x, start, end)`).
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return Ok(self.view_as(vec![1]));
        }
        let s = self.dim_index("flatten", start)?;
        let e = self.dim_index("flatten", end)?;
        if s > e {
            return Err(Error::invalid(
                "flatten",
                format!("start dim {start} is after end dim {end}"),
            ));
        }
        let mut shape = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        Ok(self.view_as(shape))
    }

    /// Inserts a dimension of size 1 at `dim` (`-1` appends).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut shape = self.shape().to_vec();
        shape.insert(d, 1);
        Ok(self.view_as(shape))
    }

    /// Removes dimension `dim` if it has size 1 (otherwise returns the same shape, as PyTorch).
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = self.dim_index("squeeze", dim)?;
        let mut shape = self.shape().to_vec();
        if shape[d] == 1 {
            shape.remove(d);
        }
        Ok(self.view_as(shape))
    }

    /// Expands size-1 dimensions to `shape` (NumPy broadcasting rules), copying.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let out = broadcast_shape("broadcast_to", self.shape(), shape)?;
        if out != shape {
            return Err(Error::mismatch("broadcast_to", self.shape(), shape));
        }
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let v = expand_data(&self.data(), self.shape(), shape);
        Ok(Tensor::from_op(
            v,
            shape.to_vec(),
            ExpandBackward(self.clone()),
        ))
    }

    /// Reorders the dimensions (`x.permute(perm)`), copying into a contiguous tensor.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::bad_shape(
                "permute",
                self.shape(),
                format!("{perm:?} is not a permutation of 0..{r}"),
            ));
        }
        let out: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let v = permute_data(&self.data(), self.shape(), perm);
        Ok(Tensor::from_op(
            v,
            out,
            PermuteBackward {
                x: self.clone(),
                perm: perm.to_vec(),
            },
        ))
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = self.dim_index("transpose", d0)?;
        let b = self.dim_index("transpose", d1)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of a matrix (rank <= 2, as PyTorch's `t()`).
    pub fn t(&self) -> Result<Tensor> {
        match self.rank() {
            0 | 1 => Ok(self.clone()),
            2 => self.transpose(0, 1),
            _ => Err(Error::bad_shape(
                "t",
                self.shape(),
                "t() expects a tensor of rank <= 2",
            )),
        }
    }

    /// `len` entries of `dim` starting at `start` (copying).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = self.dim_index("narrow", dim)?;
        let n = self.shape()[d];
        if start.checked_add(len).is_none_or(|e| e > n) {
            return Err(Error::IndexOutOfRange {
                op: "narrow",
                index: start.saturating_add(len),
                dim: d,
                size: n,
            });
        }
        let outer: usize = self.shape()[..d].iter().product();
        let inner: usize = self.shape()[d + 1..].iter().product();
        let x = self.data();
        let mut v = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let s = (o * n + start) * inner;
            v.extend_from_slice(&x[s..s + len * inner]);
        }
        drop(x);
        let mut shape = self.shape().to_vec();
        shape[d] = len;
        Ok(Tensor::from_op(
            v,
            shape,
            NarrowBackward {
                x: self.clone(),
                dim: d,
                start,
            },
        ))
    }

    /// `self[.., range, ..]` along `dim` (Python's `x[:, 2:6]` is `x.slice(1, 2..6)`).
    pub fn slice(&self, dim: isize, range: std::ops::Range<usize>) -> Result<Tensor> {
        if range.start > range.end {
            return Err(Error::invalid("slice", format!("empty range {range:?}")));
        }
        self.narrow(dim, range.start, range.len())
    }

    /// Entry `index` of `dim`, with that dimension removed (`x[i]` is `x.select(0, i)`).
    pub fn select(&self, dim: isize, index: usize) -> Result<Tensor> {
        let d = self.dim_index("select", dim)?;
        let t = self.narrow(d as isize, index, 1)?;
        let mut shape = self.shape().to_vec();
        shape.remove(d);
        Ok(t.view_as(shape))
    }

    /// Joins tensors along an existing dimension (`torch.cat`).
    pub fn cat(xs: &[Tensor], dim: isize) -> Result<Tensor> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("cat", "needs at least one tensor"))?;
        let d = first.dim_index("cat", dim)?;
        let mut shape = first.shape().to_vec();
        shape[d] = 0;
        for x in xs {
            let ok = x.rank() == first.rank()
                && x.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == d || a == b);
            if !ok {
                return Err(Error::mismatch("cat", first.shape(), x.shape()));
            }
            shape[d] += x.shape()[d];
        }
        let outer: usize = shape[..d].iter().product();
        let inner: usize = shape[d + 1..].iter().product();
        let mut v = Vec::with_capacity(numel_of(&shape));
        let datas: Vec<_> = xs.iter().map(|x| x.data()).collect();
        for o in 0..outer {
            for (x, data) in xs.iter().zip(&datas) {
                let chunk = x.shape()[d] * inner;
                v.extend_from_slice(&data[o * chunk..(o + 1) * chunk]);
            }
        }
        drop(datas);
        Ok(Tensor::from_op(
            v,
            shape,
            CatBackward {
                xs: xs.to_vec(),
                dim: d,
            },
        ))
    }

    /// Joins same-shaped tensors along a new dimension (`torch.stack`).
    pub fn stack(xs: &[Tensor], dim: isize) -> Result<Tensor> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("stack", "needs at least one tensor"))?;
        for x in xs {
            if x.shape() != first.shape() {
                return Err(Error::mismatch("stack", first.shape(), x.shape()));
            }
        }
        let parts = xs
            .iter()
            .map(|x| x.unsqueeze(dim))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, dim)
    }
}

pub(crate) fn permute_data(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut in_strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let st: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut v = vec![0.0; x.len()];
    walk2(&out, &st, &st, |o, i, _| v[o] = x[i]);
    v
}

pub(crate) struct ReshapeBackward(Tensor);

impl Backward for ReshapeBackward {
    fn name(&self) -> &'static str {
        "ViewBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        // The same elements in the input's shape: a storage slot of its own over the
        // gradient's (copy-on-write) buffer, so no copy, and on a GPU no trip to the host.
        let ReshapeBackward(x) = self;
        let g = grad.to(&x.device())?;
        Ok(vec![Some(Tensor::from_parts(
            x.shape().to_vec(),
            g.storage().fork(),
            None,
        ))])
    }
}

pub(crate) struct ExpandBackward(Tensor);

impl Backward for ExpandBackward {
    fn name(&self) -> &'static str {
        "ExpandBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, os, _want| {
            let ExpandBackward(x) = self;
            Ok(vec![Some(sum_to(g, os, x.shape()))])
        })
    }
}

pub(crate) struct PermuteBackward {
    x: Tensor,
    perm: Vec<usize>,
}

impl Backward for PermuteBackward {
    fn name(&self) -> &'static str {
        "PermuteBackward0"
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
        cpu_backward(self, grad, needs, |g, os, _want| {
            let PermuteBackward { perm, .. } = self;
            Ok({
                let mut inv = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i;
                }
                vec![Some(permute_data(g, os, &inv))]
            })
        })
    }
}

pub(crate) struct NarrowBackward {
    x: Tensor,
    dim: usize,
    start: usize,
}

impl Backward for NarrowBackward {
    fn name(&self) -> &'static str {
        "SliceBackward0"
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
        cpu_backward(self, grad, needs, |g, os, _want| {
            let NarrowBackward { x, dim, start } = self;
            Ok({
                let xs = x.shape();
                let (n, len) = (xs[*dim], os[*dim]);
                let outer: usize = xs[..*dim].iter().product();
                let inner: usize = xs[*dim + 1..].iter().product();
                let mut gx = vec![0.0; x.numel()];
                for o in 0..outer {
                    let d = (o * n + start) * inner;
                    gx[d..d + len * inner]
                        .copy_from_slice(&g[o * len * inner..(o + 1) * len * inner]);
                }
                vec![Some(gx)]
            })
        })
    }
}

pub(crate) struct CatBackward {
    xs: Vec<Tensor>,
    dim: usize,
}

impl Backward for CatBackward {
    fn name(&self) -> &'static str {
        "CatBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        self.xs.iter().collect()
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, os, want| {
            let CatBackward { xs, dim } = self;
            Ok({
                let outer: usize = os[..*dim].iter().product();
                let inner: usize = os[*dim + 1..].iter().product();
                let mut grads: Vec<Vec<f32>> =
                    xs.iter().map(|x| Vec::with_capacity(x.numel())).collect();
                let mut pos = 0;
                for _ in 0..outer {
                    for (x, gx) in xs.iter().zip(grads.iter_mut()) {
                        let chunk = x.shape()[*dim] * inner;
                        gx.extend_from_slice(&g[pos..pos + chunk]);
                        pos += chunk;
                    }
                }
                grads
                    .into_iter()
                    .enumerate()
                    .map(|(i, gx)| want(i).then_some(gx))
                    .collect()
            })
        })
    }
}
