//! The im2col + GEMM algorithm: one `sgemm` per image and group.
//!
//! The column matrix of one image-group is `[k, oh*ow]` with `k = cin_g*kh*kw`; row
//! `(ic, ky, kx)` holds, for every output pixel, the input that tap reads (0 in the padding).
//! Then `Y_g = W_g x col`, `col_grad = W_g^T x grad_Y_g` (folded back by col2im) and
//! `grad_W_g += grad_Y_g x col^T`. Pointwise (1x1, stride 1, unpadded) convolutions use the
//! input planes as the column matrix directly.

use super::{rows, valid_range, Geom};
use crate::error::Result;
use crate::gemm::sgemm;
use crate::shape::{GemmShape, Transpose};
use crate::simd::{vectorize, Simd, WithSimd};

/// `y = conv(x, w) + bias`; `ws` holds the column matrix then the GEMM's scratch.
pub(super) fn forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ws: &mut [f32],
) -> Result<()> {
    let (col, gemm_ws) = ws.split_at_mut(g.col_len()?);
    let shape = GemmShape::new(g.cout_g, g.out_plane, g.k);
    let (group_in, group_out, group_w) = group_lens(g);
    for n in 0..g.batch {
        for grp in 0..g.groups {
            let xs = &x[(n * g.cin + grp * g.cin_g) * g.in_plane..][..group_in];
            let ys = &mut y[(n * g.cout + grp * g.cout_g) * g.out_plane..][..group_out];
            let wg = &w[grp * group_w..][..group_w];
            // With a bias, C starts as the bias rows and the GEMM accumulates onto them.
            let beta = match bias {
                Some(b) => {
                    let bg = &b[grp * g.cout_g..][..g.cout_g];
                    for (row, &bv) in ys.chunks_exact_mut(g.out_plane).zip(bg) {
                        row.fill(bv);
                    }
                    1.0
                }
                None => 0.0,
            };
            let cols: &[f32] = if g.pointwise() {
                xs
            } else {
                unfold(g, xs, col);
                col
            };
            sgemm(&shape, 1.0, wg, cols, beta, ys, gemm_ws)?;
        }
    }
    Ok(())
}

/// `grad_x` (overwritten) = col2im(`W_g^T x grad_y_g`) per image and group.
pub(super) fn backward_input(
    g: &Geom,
    grad_y: &[f32],
    w: &[f32],
    grad_x: &mut [f32],
    ws: &mut [f32],
) -> Result<()> {
    let (col, gemm_ws) = ws.split_at_mut(g.col_len()?);
    let shape =
        GemmShape::new(g.k, g.out_plane, g.cout_g).with_transpose(Transpose::Yes, Transpose::No);
    let (group_in, group_out, group_w) = group_lens(g);
    for n in 0..g.batch {
        for grp in 0..g.groups {
            let gys = &grad_y[(n * g.cout + grp * g.cout_g) * g.out_plane..][..group_out];
            let gxs = &mut grad_x[(n * g.cin + grp * g.cin_g) * g.in_plane..][..group_in];
            let wg = &w[grp * group_w..][..group_w];
            if g.pointwise() {
                sgemm(&shape, 1.0, wg, gys, 0.0, gxs, gemm_ws)?;
            } else {
                sgemm(&shape, 1.0, wg, gys, 0.0, col, gemm_ws)?;
                gxs.fill(0.0);
                vectorize(Col2im { g, col, gx: gxs });
            }
        }
    }
    Ok(())
}

/// `grad_w` (overwritten) = sum over the batch of `grad_y_g x col^T`.
pub(super) fn backward_weight(
    g: &Geom,
    x: &[f32],
    grad_y: &[f32],
    grad_w: &mut [f32],
    ws: &mut [f32],
) -> Result<()> {
    let (col, gemm_ws) = ws.split_at_mut(g.col_len()?);
    let shape =
        GemmShape::new(g.cout_g, g.k, g.out_plane).with_transpose(Transpose::No, Transpose::Yes);
    let (group_in, group_out, group_w) = group_lens(g);
    for n in 0..g.batch {
        let beta = if n == 0 { 0.0 } else { 1.0 };
        for grp in 0..g.groups {
            let xs = &x[(n * g.cin + grp * g.cin_g) * g.in_plane..][..group_in];
            let gys = &grad_y[(n * g.cout + grp * g.cout_g) * g.out_plane..][..group_out];
            let gwg = &mut grad_w[grp * group_w..][..group_w];
            let cols: &[f32] = if g.pointwise() {
                xs
            } else {
                unfold(g, xs, col);
                col
            };
            sgemm(&shape, 1.0, gys, cols, beta, gwg, gemm_ws)?;
        }
    }
    Ok(())
}

/// Elements of one group's input planes, output planes and weight.
fn group_lens(g: &Geom) -> (usize, usize, usize) {
    (g.cin_g * g.in_plane, g.cout_g * g.out_plane, g.cout_g * g.k)
}

/// Fills the `[k, oh*ow]` column matrix of one image-group `xs` (`cin_g` input planes).
fn unfold(g: &Geom, xs: &[f32], col: &mut [f32]) {
    for ic in 0..g.cin_g {
        let xp = &xs[ic * g.in_plane..][..g.in_plane];
        for ky in 0..g.kh {
            let (oy_lo, oy_hi) = valid_range(ky * g.dh, g.ph, g.sh, g.in_h, g.oh);
            for kx in 0..g.kw {
                let r = (ic * g.kh + ky) * g.kw + kx;
                let crow = &mut col[r * g.out_plane..][..g.out_plane];
                crow[..oy_lo * g.ow].fill(0.0);
                crow[oy_hi * g.ow..].fill(0.0);
                let (lo, hi) = valid_range(kx * g.dw, g.pw, g.sw, g.in_w, g.ow);
                for oy in oy_lo..oy_hi {
                    let cr = &mut crow[oy * g.ow..][..g.ow];
                    cr[..lo].fill(0.0);
                    cr[hi..].fill(0.0);
                    if lo == hi {
                        continue;
                    }
                    let iy = oy * g.sh + ky * g.dh - g.ph;
                    let xr = &xp[iy * g.in_w..][..g.in_w];
                    let ix0 = lo * g.sw + kx * g.dw - g.pw;
                    if g.sw == 1 {
                        cr[lo..hi].copy_from_slice(&xr[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (t, o) in cr[lo..hi].iter_mut().enumerate() {
                            *o = xr[ix0 + t * g.sw];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `col` back onto the image-group's input planes `gx` (the
/// transpose of [`unfold`]).
struct Col2im<'a> {
    g: &'a Geom,
    col: &'a [f32],
    gx: &'a mut [f32],
}

impl WithSimd for Col2im<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let g = self.g;
        for ic in 0..g.cin_g {
            let gp = &mut self.gx[ic * g.in_plane..][..g.in_plane];
            for ky in 0..g.kh {
                let (oy_lo, oy_hi) = valid_range(ky * g.dh, g.ph, g.sh, g.in_h, g.oh);
                for kx in 0..g.kw {
                    let (lo, hi) = valid_range(kx * g.dw, g.pw, g.sw, g.in_w, g.ow);
                    if lo == hi {
                        continue;
                    }
                    let r = (ic * g.kh + ky) * g.kw + kx;
                    let crow = &self.col[r * g.out_plane..][..g.out_plane];
                    let ix0 = lo * g.sw + kx * g.dw - g.pw;
                    for oy in oy_lo..oy_hi {
                        let iy = oy * g.sh + ky * g.dh - g.ph;
                        let cr = &crow[oy * g.ow..][lo..hi];
                        let gr = &mut gp[iy * g.in_w..][..g.in_w];
                        if g.sw == 1 {
                            rows::add_assign(s, cr, &mut gr[ix0..ix0 + (hi - lo)]);
                        } else {
                            for (t, &v) in cr.iter().enumerate() {
                                gr[ix0 + t * g.sw] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}
