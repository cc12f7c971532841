//! Matrix products on the kernel crate's `sgemm`: `matmul` (batched, broadcasting), `mm` and
//! `linear`, with their backward rules.

use super::broadcast::{bcast_strides, broadcast_shape, walk2};
use super::cpu_backward;
use crate::autograd::Backward;
use crate::device::same_device;
use crate::error::{Error, Result};
use crate::parallel;
use crate::tensor::Tensor;
use rayon::prelude::*;
use tinycnn_kernels as k;
use tinycnn_kernels::{GemmShape, Transpose};

fn gemm(
    op: &'static str,
    g: GemmShape,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    ws: &mut Vec<f32>,
) -> Result<()> {
    let threads = parallel::num_threads();
    let macs = g.m.saturating_mul(g.n).saturating_mul(g.k);
    if threads > 1 && macs >= PAR_GEMM_MIN_MACS && g.m >= 2 * PAR_GEMM_MIN_ROWS && g.n > 0 {
        // Row blocks of C are independent products with the same k order, so the split
        // gives the same bits as one call.
        g.validate(a.len(), b.len(), c.len())
            .map_err(Error::kernel(op))?;
        let rows = g.m.div_ceil(threads).max(PAR_GEMM_MIN_ROWS);
        let a_step = match g.trans_a {
            Transpose::No => rows * g.lda,
            Transpose::Yes => rows,
        };
        return parallel::install(|| {
            c.par_chunks_mut(rows * g.ldc)
                .enumerate()
                .try_for_each(|(i, cc)| {
                    let m = rows.min(g.m.saturating_sub(i * rows));
                    if m == 0 {
                        // Only a `c` longer than the product needs gets here; leave the rest.
                        return Ok(());
                    }
                    let sub = GemmShape { m, ..g };
                    let a_sub = a.get(i * a_step..).unwrap_or_default();
                    let mut ws = vec![0.0; k::sgemm_workspace_len(m, g.n, g.k)];
                    k::sgemm(&sub, 1.0, a_sub, b, beta, cc, &mut ws)
                })
        })
        .map_err(Error::kernel(op));
    }
    let need = k::sgemm_workspace_len(g.m, g.n, g.k);
    if ws.len() < need {
        ws.resize(need, 0.0);
    }
    k::sgemm(&g, 1.0, a, b, beta, c, ws).map_err(Error::kernel(op))
}

/// Products smaller than this many multiply-adds (about 50 microseconds) run on one thread.
const PAR_GEMM_MIN_MACS: usize = 1 << 21;
/// The least number of rows of C a thread gets.
const PAR_GEMM_MIN_ROWS: usize = 16;

impl Tensor {
    /// Matrix product (`torch.matmul`): 1-D and 2-D operands, and batched products whose
    /// leading (batch) dimensions broadcast. Runs on the kernel crate's `sgemm`.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        match (self.rank(), other.rank()) {
            (0, _) | (_, 0) => Err(Error::mismatch("matmul", self.shape(), other.shape())),
            (1, 1) => self
                .unsqueeze(0)?
                .matmul(&other.unsqueeze(1)?)?
                .reshape([0usize; 0]),
            (1, _) => {
                let y = self.unsqueeze(0)?.matmul(other)?;
                y.squeeze(-2)
            }
            (_, 1) => {
                let y = self.matmul(&other.unsqueeze(1)?)?;
                y.squeeze(-1)
            }
            _ => self.matmul_nd(other),
        }
    }

    /// 2-D matrix product (`torch.mm`).
    pub fn mm(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() != 2 || other.rank() != 2 {
            return Err(Error::mismatch("mm", self.shape(), other.shape()));
        }
        self.matmul_nd(other)
    }

    fn matmul_nd(&self, other: &Tensor) -> Result<Tensor> {
        let (ash, bsh) = (self.shape(), other.shape());
        let (ra, rb) = (ash.len(), bsh.len());
        let (m, ka, kb, n) = (ash[ra - 2], ash[ra - 1], bsh[rb - 2], bsh[rb - 1]);
        if ka != kb {
            return Err(Error::mismatch("matmul", ash, bsh));
        }
        same_device("matmul", &[self, other])?;
        let batch = broadcast_shape("matmul", &ash[..ra - 2], &bsh[..rb - 2])?;
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        let mut c = vec![0.0; crate::limits::checked_numel("matmul", &out_shape)?];
        let (a, b) = (self.data(), other.data());
        let (sa, sb) = (
            bcast_strides(&ash[..ra - 2], &batch),
            bcast_strides(&bsh[..rb - 2], &batch),
        );
        let mut ws = Vec::new();
        let mut res = Ok(());
        walk2(&batch, &sa, &sb, |o, ia, ib| {
            if res.is_ok() && m * n > 0 {
                res = gemm(
                    "matmul",
                    GemmShape::new(m, n, ka),
                    &a[ia * m * ka..(ia + 1) * m * ka],
                    &b[ib * ka * n..(ib + 1) * ka * n],
                    0.0,
                    &mut c[o * m * n..(o + 1) * m * n],
                    &mut ws,
                );
            }
        });
        res?;
        drop((a, b));
        Ok(Tensor::from_op(
            c,
            out_shape,
            MatMulBackward(self.clone(), other.clone()),
        ))
    }

    /// `self @ w^T + b` for `self` of shape `[.., in]`, `w` `[out, in]`, `b` `[out]`
    /// (`F.linear`); one `sgemm` and one `bias_add`.
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if self.rank() == 0 || w.rank() != 2 || *self.shape().last().unwrap_or(&0) != w.shape()[1] {
            return Err(Error::mismatch("linear", self.shape(), w.shape()));
        }
        let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
        if let Some(b) = b {
            if b.shape() != [out_f] {
                return Err(Error::mismatch("linear (bias)", &[out_f], b.shape()));
            }
        }
        let mut inputs = vec![self, w];
        inputs.extend(b);
        same_device("linear", &inputs)?;
        let rows = self.numel() / in_f.max(1);
        let mut shape = self.shape().to_vec();
        *shape.last_mut().expect("rank >= 1") = out_f;
        #[cfg(feature = "cuda")]
        if let Some(y) = cuda::forward(self, w, b, rows)? {
            let op = LinearBackward {
                x: self.clone(),
                w: w.clone(),
                b: b.cloned(),
            };
            return Ok(Tensor::from_buffer_op(y, shape, op));
        }
        let mut y = vec![0.0; crate::limits::checked_numel("linear", &[rows, out_f])?];
        if rows > 0 && out_f > 0 {
            let g = GemmShape::new(rows, out_f, in_f).with_transpose(Transpose::No, Transpose::Yes);
            gemm(
                "linear",
                g,
                &self.data(),
                &w.data(),
                0.0,
                &mut y,
                &mut Vec::new(),
            )?;
            if let Some(b) = b {
                k::bias_add(rows, out_f, 1, &b.data(), &mut y)
                    .map_err(Error::kernel("linear (bias)"))?;
            }
        }
        Ok(Tensor::from_op(
            y,
            shape,
            LinearBackward {
                x: self.clone(),
                w: w.clone(),
                b: b.cloned(),
            },
        ))
    }
}

pub(crate) struct MatMulBackward(Tensor, Tensor);

impl Backward for MatMulBackward {
    fn name(&self) -> &'static str {
        "MmBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0, &self.1]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, os, want| {
            let MatMulBackward(a, b) = self;
            Ok({
                let (ash, bsh) = (a.shape(), b.shape());
                let (ra, rb) = (ash.len(), bsh.len());
                let (m, kk, n) = (ash[ra - 2], ash[ra - 1], bsh[rb - 1]);
                let batch = &os[..os.len() - 2];
                let (sa, sb) = (
                    bcast_strides(&ash[..ra - 2], batch),
                    bcast_strides(&bsh[..rb - 2], batch),
                );
                let (ad, bd) = (a.data(), b.data());
                let mut ga = want(0).then(|| vec![0.0; a.numel()]);
                let mut gb = want(1).then(|| vec![0.0; b.numel()]);
                let mut ws = Vec::new();
                let mut res = Ok(());
                walk2(batch, &sa, &sb, |o, ia, ib| {
                    if res.is_err() || m * n * kk == 0 {
                        return;
                    }
                    let gc = &g[o * m * n..(o + 1) * m * n];
                    if let Some(ga) = ga.as_mut() {
                        // dA = dC B^T
                        let s =
                            GemmShape::new(m, kk, n).with_transpose(Transpose::No, Transpose::Yes);
                        res = gemm(
                            "matmul backward",
                            s,
                            gc,
                            &bd[ib * kk * n..(ib + 1) * kk * n],
                            1.0,
                            &mut ga[ia * m * kk..(ia + 1) * m * kk],
                            &mut ws,
                        );
                    }
                    if let (Some(gb), true) = (gb.as_mut(), res.is_ok()) {
                        // dB = A^T dC
                        let s =
                            GemmShape::new(kk, n, m).with_transpose(Transpose::Yes, Transpose::No);
                        res = gemm(
                            "matmul backward",
                            s,
                            &ad[ia * m * kk..(ia + 1) * m * kk],
                            gc,
                            1.0,
                            &mut gb[ib * kk * n..(ib + 1) * kk * n],
                            &mut ws,
                        );
                    }
                });
                res?;
                vec![ga, gb]
            })
        })
    }
}

pub(crate) struct LinearBackward {
    x: Tensor,
    w: Tensor,
    b: Option<Tensor>,
}

impl Backward for LinearBackward {
    fn name(&self) -> &'static str {
        "AddmmBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        {
            let mut v = vec![&self.x, &self.w];
            v.extend(self.b.iter());
            v
        }
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda::backward(self, grad, needs)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, want| {
            let LinearBackward { x, w, b } = self;
            Ok({
                let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
                let rows = x.numel() / in_f.max(1);
                let mut ws = Vec::new();
                let mut grads = vec![None, None];
                if want(0) {
                    let mut gx = vec![0.0; x.numel()];
                    if rows * in_f * out_f > 0 {
                        gemm(
                            "linear backward (input)",
                            GemmShape::new(rows, in_f, out_f),
                            g,
                            &w.data(),
                            0.0,
                            &mut gx,
                            &mut ws,
                        )?;
                    }
                    grads[0] = Some(gx);
                }
                if want(1) {
                    let mut gw = vec![0.0; w.numel()];
                    if rows * in_f * out_f > 0 {
                        let s = GemmShape::new(out_f, in_f, rows)
                            .with_transpose(Transpose::Yes, Transpose::No);
                        gemm(
                            "linear backward (weight)",
                            s,
                            g,
                            &x.data(),
                            0.0,
                            &mut gw,
                            &mut ws,
                        )?;
                    }
                    grads[1] = Some(gw);
                }
                if b.is_some() {
                    grads.push(if want(2) {
                        let mut gb = vec![0.0; out_f];
                        if rows > 0 {
                            k::bias_backward(rows, out_f, 1, g, &mut gb)
                                .map_err(Error::kernel("linear backward (bias)"))?;
                        }
                        Some(gb)
                    } else {
                        None
                    });
                }
                grads
            })
        })
    }
}

/// `linear` on a CUDA device: the GEMM kernels and the bias kernels of `tinycnn-cuda`.
#[cfg(feature = "cuda")]
mod cuda {
    use super::LinearBackward;
    use crate::cuda::err;
    use crate::error::Result;
    use crate::ops::{cuda_tensor, on_cuda};
    use crate::storage::Buffer;
    use crate::tensor::Tensor;
    use tinycnn_kernels::{GemmShape, Transpose};

    pub(super) fn forward(
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        rows: usize,
    ) -> Result<Option<Buffer>> {
        let (xb, wb) = (x.buffer(), w.buffer());
        let bb = b.map(|b| b.buffer());
        let (Some(xc), Some(wc)) = (on_cuda(&xb), on_cuda(&wb)) else {
            return Ok(None);
        };
        let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
        let mut y = xc.alloc_like(rows * out_f)?;
        if rows * out_f == 0 {
            return Ok(Some(Buffer::Cuda(y)));
        }
        let g = GemmShape::new(rows, out_f, in_f).with_transpose(Transpose::No, Transpose::Yes);
        xc.dev
            .sgemm(&g, 1.0, &xc.buf, &wc.buf, 0.0, &mut y.buf)
            .map_err(err("linear"))?;
        if let Some(bb) = &bb {
            let Some(bc) = on_cuda(bb) else {
                return Ok(None);
            };
            xc.dev
                .bias_add(rows, out_f, 1, &bc.buf, &mut y.buf)
                .map_err(err("linear (bias)"))?;
        }
        Ok(Some(Buffer::Cuda(y)))
    }

    pub(super) fn backward(
        op: &LinearBackward,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let (xb, wb, gb) = (op.x.buffer(), op.w.buffer(), grad.buffer());
        let (Some(x), Some(w), Some(g)) = (on_cuda(&xb), on_cuda(&wb), on_cuda(&gb)) else {
            return Ok(None);
        };
        let (out_f, in_f) = (op.w.shape()[0], op.w.shape()[1]);
        let rows = op.x.numel() / in_f.max(1);
        let empty = rows * in_f * out_f == 0;
        let mut grads = vec![None, None];
        if needs[0] {
            let mut gx = x.alloc_like(op.x.numel())?;
            if empty {
                x.dev
                    .fill(0.0, &mut gx.buf)
                    .map_err(err("linear backward (input)"))?;
            } else {
                // dX = dY W
                x.dev
                    .sgemm(
                        &GemmShape::new(rows, in_f, out_f),
                        1.0,
                        &g.buf,
                        &w.buf,
                        0.0,
                        &mut gx.buf,
                    )
                    .map_err(err("linear backward (input)"))?;
            }
            grads[0] = Some(cuda_tensor(gx, op.x.shape()));
        }
        if needs[1] {
            let mut gw = w.alloc_like(op.w.numel())?;
            if empty {
                x.dev
                    .fill(0.0, &mut gw.buf)
                    .map_err(err("linear backward (weight)"))?;
            } else {
                // dW = dY^T X
                let s =
                    GemmShape::new(out_f, in_f, rows).with_transpose(Transpose::Yes, Transpose::No);
                x.dev
                    .sgemm(&s, 1.0, &g.buf, &x.buf, 0.0, &mut gw.buf)
                    .map_err(err("linear backward (weight)"))?;
            }
            grads[1] = Some(cuda_tensor(gw, op.w.shape()));
        }
        if op.b.is_some() {
            let mut gbias = None;
            if needs.get(2).copied().unwrap_or(false) {
                let mut gbuf = x.alloc_like(out_f)?;
                if rows == 0 {
                    x.dev
                        .fill(0.0, &mut gbuf.buf)
                        .map_err(err("linear backward (bias)"))?;
                } else {
                    x.dev
                        .bias_backward(rows, out_f, 1, &g.buf, &mut gbuf.buf)
                        .map_err(err("linear backward (bias)"))?;
                }
                gbias = Some(cuda_tensor(gbuf, &[out_f]));
            }
            grads.push(gbias);
        }
        Ok(Some(grads))
    }
}
