//! The direct algorithm: no column matrix, loops over output rows.
//!
//! Forward keeps up to four vectors of one output row in registers and runs them through
//! every tap of the kernel, so each output is written once. A padded convolution first
//! copies one image-group into a zero-bordered buffer (the only workspace), which turns
//! every window into a "valid" one with no bounds cases. When the row's width is not a
//! multiple of the lane count, the last vector is shifted left to end at the row's end and
//! recomputes a few outputs (same arithmetic, same values) instead of a scalar tail.

use super::{rows, valid_range, Geom};
use crate::simd::{vectorize, Simd, WithSimd};

/// `y = conv(x, w) + bias` over the whole batch; `ws` holds `Geom::padded_len` elements.
pub(super) fn forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ws: &mut [f32],
) {
    vectorize(Forward {
        g: *g,
        x,
        w,
        bias,
        y,
        ws,
    });
}

struct Forward<'a> {
    g: Geom,
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    y: &'a mut [f32],
    ws: &'a mut [f32],
}

impl WithSimd for Forward<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let g = self.g;
        let padded = g.ph != 0 || g.pw != 0;
        let (xh, xw) = (g.hp, g.wp);
        let pad_plane = xh * xw;
        let ws: &mut [f32] = if padded {
            let ws = &mut self.ws[..g.cin_g * pad_plane];
            // Only the interior is rewritten per image-group; the border stays zero.
            ws.fill(0.0);
            ws
        } else {
            &mut self.ws[..0]
        };
        let group_in = g.cin_g * g.in_plane;
        let group_out = g.cout_g * g.out_plane;
        let group_w = g.cout_g * g.k;
        for n in 0..g.batch {
            for grp in 0..g.groups {
                let xs = &self.x[(n * g.cin + grp * g.cin_g) * g.in_plane..][..group_in];
                let ys = &mut self.y[(n * g.cout + grp * g.cout_g) * g.out_plane..][..group_out];
                let wg = &self.w[grp * group_w..][..group_w];
                let bg = self.bias.map(|b| &b[grp * g.cout_g..][..g.cout_g]);
                if padded {
                    for ic in 0..g.cin_g {
                        for iy in 0..g.in_h {
                            let src = &xs[ic * g.in_plane + iy * g.in_w..][..g.in_w];
                            ws[ic * pad_plane + (iy + g.ph) * xw + g.pw..][..g.in_w]
                                .copy_from_slice(src);
                        }
                    }
                    valid(s, &g, ws, xh, xw, wg, bg, ys);
                } else {
                    valid(s, &g, xs, g.in_h, g.in_w, wg, bg, ys);
                }
            }
        }
    }
}

/// One image-group of an unpadded convolution: `x` is `cin_g` planes of `xh x xw`, `w` the
/// group's `[cout_g, k]` weight, `y` its `cout_g` output planes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn valid<S: Simd>(
    s: S,
    g: &Geom,
    x: &[f32],
    xh: usize,
    xw: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let l = S::LANES;
    let plane = xh * xw;
    // Rows shorter than a vector (common with 16 lanes: LeNet's 10- and 14-wide maps) take
    // one masked vector where masks are cheap, rather than the scalar loop below.
    if g.sw == 1 && (g.ow >= l || S::MASKED_TAILS) {
        let ctx = RowCtx { g, x, plane, xw };
        let mut oc = 0;
        while oc < g.cout_g {
            match g.cout_g - oc {
                1 => channels::<S, 1>(s, &ctx, w, bias, y, oc),
                2 | 3 => channels::<S, 2>(s, &ctx, w, bias, y, oc),
                _ => channels::<S, 4>(s, &ctx, w, bias, y, oc),
            }
            oc += match g.cout_g - oc {
                1 => 1,
                2 | 3 => 2,
                _ => 4,
            };
        }
        return;
    }
    for oc in 0..g.cout_g {
        let b = bias.map_or(0.0, |b| b[oc]);
        let wo = &w[oc * g.k..][..g.k];
        let yo = &mut y[oc * g.out_plane..][..g.out_plane];
        for oy in 0..g.oh {
            let yr = &mut yo[oy * g.ow..][..g.ow];
            let row0 = oy * g.sh;
            for (ox, out) in yr.iter_mut().enumerate() {
                let col0 = ox * g.sw;
                let mut acc = b;
                for ic in 0..g.cin_g {
                    for ky in 0..g.kh {
                        let xr = &x[ic * plane + (row0 + ky * g.dh) * xw + col0..];
                        let wr = &wo[(ic * g.kh + ky) * g.kw..][..g.kw];
                        for (kx, &wv) in wr.iter().enumerate() {
                            acc += xr[kx * g.dw] * wv;
                        }
                    }
                }
                *out = acc;
            }
        }
    }
}

struct RowCtx<'a> {
    g: &'a Geom,
    x: &'a [f32],
    plane: usize,
    xw: usize,
}

/// Output channels `oc0 .. oc0 + OC` of one image-group, every row: stride 1 along the
/// width and `ow >= L`.
#[inline(always)]
fn channels<S: Simd, const OC: usize>(
    s: S,
    c: &RowCtx<'_>,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    oc0: usize,
) {
    let l = S::LANES;
    let g = c.g;
    let wb: [&[f32]; OC] = core::array::from_fn(|b| &w[(oc0 + b) * g.k..][..g.k]);
    let bb: [f32; OC] = core::array::from_fn(|b| bias.map_or(0.0, |bias| bias[oc0 + b]));
    let nvec = g.ow.div_ceil(l);
    for oy in 0..g.oh {
        if g.ow < l {
            short_row::<S, OC>(s, c, &wb, &bb, y, oc0, oy);
            continue;
        }
        let mut v = 0;
        while v + 2 <= nvec {
            block::<S, OC, 2>(s, c, &wb, &bb, y, oc0, oy, v);
            v += 2;
        }
        if v < nvec {
            block::<S, OC, 1>(s, c, &wb, &bb, y, oc0, oy, v);
        }
    }
}

/// `OC` output channels times `NV` vectors of row `oy` (vectors `v0..v0 + NV`, the last one
/// of the row shifted left to end at `ow`), accumulated in registers over all taps. Each
/// input vector loaded feeds `OC` multiply-adds.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block<S: Simd, const OC: usize, const NV: usize>(
    s: S,
    c: &RowCtx<'_>,
    wb: &[&[f32]; OC],
    bb: &[f32; OC],
    y: &mut [f32],
    oc0: usize,
    oy: usize,
    v0: usize,
) {
    let l = S::LANES;
    let g = c.g;
    let last = g.ow - l;
    let starts: [usize; NV] = core::array::from_fn(|j| ((v0 + j) * l).min(last));
    let mut acc: [[S::V; NV]; OC] = core::array::from_fn(|b| [s.splat(bb[b]); NV]);
    // The taps of one kernel row read `span` inputs from the start of the window's row.
    let span = (g.kw - 1) * g.dw + g.ow;
    let row0 = oy * g.sh;
    for ic in 0..g.cin_g {
        for ky in 0..g.kh {
            let xr = &c.x[ic * c.plane + (row0 + ky * g.dh) * c.xw..][..span];
            let wrow = (ic * g.kh + ky) * g.kw;
            let wr: [&[f32]; OC] = core::array::from_fn(|b| &wb[b][wrow..][..g.kw]);
            let xp = xr.as_ptr();
            #[allow(clippy::needless_range_loop)] // kx indexes every channel's weight row
            for kx in 0..g.kw {
                let off = kx * g.dw;
                let xv: [S::V; NV] = core::array::from_fn(|j| {
                    // SAFETY: `starts[j] + L <= ow` and `off <= (kw - 1) * dw`, so the L
                    // elements read lie inside `xr` (length `span`).
                    unsafe { s.load_ptr(xp.add(off + starts[j])) }
                });
                for b in 0..OC {
                    let wv = s.splat(wr[b][kx]);
                    for j in 0..NV {
                        acc[b][j] = s.mul_add(wv, xv[j], acc[b][j]);
                    }
                }
            }
        }
    }
    for b in 0..OC {
        let yr = &mut y[(oc0 + b) * g.out_plane + oy * g.ow..][..g.ow];
        for j in 0..NV {
            s.store(&mut yr[starts[j]..], acc[b][j]);
        }
    }
}

/// [`block`] for a row narrower than one vector: `OC` output channels of row `oy` in one
/// partial vector each, every load and the store masked to the row's `ow` elements.
#[inline(always)]
fn short_row<S: Simd, const OC: usize>(
    s: S,
    c: &RowCtx<'_>,
    wb: &[&[f32]; OC],
    bb: &[f32; OC],
    y: &mut [f32],
    oc0: usize,
    oy: usize,
) {
    let g = c.g;
    let mut acc: [S::V; OC] = core::array::from_fn(|b| s.splat(bb[b]));
    let span = (g.kw - 1) * g.dw + g.ow;
    let row0 = oy * g.sh;
    for ic in 0..g.cin_g {
        for ky in 0..g.kh {
            let xr = &c.x[ic * c.plane + (row0 + ky * g.dh) * c.xw..][..span];
            let wrow = (ic * g.kh + ky) * g.kw;
            for kx in 0..g.kw {
                let off = kx * g.dw;
                let xv = s.load_partial(&xr[off..off + g.ow], 0.0);
                for b in 0..OC {
                    acc[b] = s.mul_add(s.splat(wb[b][wrow + kx]), xv, acc[b]);
                }
            }
        }
    }
    for (b, &v) in acc.iter().enumerate() {
        s.store_partial(&mut y[(oc0 + b) * g.out_plane + oy * g.ow..][..g.ow], v);
    }
}

/// `grad_x` (overwritten) from `grad_y`: every tap scatters a `grad_y` row segment into a
/// `grad_x` row segment.
pub(super) fn backward_input(g: &Geom, grad_y: &[f32], w: &[f32], grad_x: &mut [f32]) {
    vectorize(BackwardInput {
        g: *g,
        grad_y,
        w,
        grad_x,
    });
}

struct BackwardInput<'a> {
    g: Geom,
    grad_y: &'a [f32],
    w: &'a [f32],
    grad_x: &'a mut [f32],
}

impl WithSimd for BackwardInput<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let g = self.g;
        for n in 0..g.batch {
            for grp in 0..g.groups {
                for ic in 0..g.cin_g {
                    let c = grp * g.cin_g + ic;
                    let gx = &mut self.grad_x[(n * g.cin + c) * g.in_plane..][..g.in_plane];
                    gx.fill(0.0);
                    for ocl in 0..g.cout_g {
                        let oc = grp * g.cout_g + ocl;
                        let gy = &self.grad_y[(n * g.cout + oc) * g.out_plane..][..g.out_plane];
                        let wk = &self.w[(oc * g.cin_g + ic) * g.taps..][..g.taps];
                        for ky in 0..g.kh {
                            let (oy_lo, oy_hi) = valid_range(ky * g.dh, g.ph, g.sh, g.in_h, g.oh);
                            for kx in 0..g.kw {
                                let (lo, hi) = valid_range(kx * g.dw, g.pw, g.sw, g.in_w, g.ow);
                                if lo >= hi {
                                    continue;
                                }
                                let wv = wk[ky * g.kw + kx];
                                let ix0 = lo * g.sw + kx * g.dw - g.pw;
                                for oy in oy_lo..oy_hi {
                                    let iy = oy * g.sh + ky * g.dh - g.ph;
                                    let gyr = &gy[oy * g.ow..][lo..hi];
                                    let gxr = &mut gx[iy * g.in_w..][..g.in_w];
                                    if g.sw == 1 {
                                        rows::axpy(s, wv, gyr, &mut gxr[ix0..ix0 + (hi - lo)]);
                                    } else {
                                        for (t, &gv) in gyr.iter().enumerate() {
                                            gxr[ix0 + t * g.sw] += gv * wv;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Zero columns right of a padded row in the backward-weight copy, so the last (partial)
/// vector of a row reads zeros instead of the next row. The widest vector of any ISA.
pub(super) const ROW_MARGIN: usize = 16;

/// Whether backward weight takes the register-blocked path (unit width stride and a kernel
/// width with an instantiated block); it needs [`weight_copy_len`] of workspace.
pub(super) fn blocked_weight(g: &Geom) -> bool {
    g.sw == 1 && (1..=MAX_BLOCKED_KW).contains(&g.kw)
}

const MAX_BLOCKED_KW: usize = 7;

/// Rows and row length of the zero-padded, right-margined copy of one image-group.
fn weight_copy_dims(g: &Geom) -> (usize, usize) {
    // Both checked when the `Geom` was built.
    (g.hp, g.wp_margin)
}

/// Workspace of the register-blocked backward weight: one image-group's padded copy.
pub(super) fn weight_copy_len(g: &Geom) -> crate::error::Result<usize> {
    let (hp, wp) = weight_copy_dims(g);
    crate::error::product("backward weight input copy", &[g.cin_g, hp, wp])
}

/// `grad_w` (overwritten) from `x` and `grad_y`. With unit width stride, each image-group
/// is copied into a zero-padded buffer (`ws`) and every (input channel, kernel row) pair
/// accumulates a whole kernel row of taps for two output channels in registers; otherwise
/// every tap is a sum of row dot products.
pub(super) fn backward_weight(
    g: &Geom,
    x: &[f32],
    grad_y: &[f32],
    grad_w: &mut [f32],
    ws: &mut [f32],
) {
    if blocked_weight(g) {
        vectorize(BlockedWeight {
            g: *g,
            x,
            grad_y,
            grad_w,
            ws,
        });
        return;
    }
    vectorize(BackwardWeight {
        g: *g,
        x,
        grad_y,
        grad_w,
    });
}

struct BlockedWeight<'a> {
    g: Geom,
    x: &'a [f32],
    grad_y: &'a [f32],
    grad_w: &'a mut [f32],
    ws: &'a mut [f32],
}

impl WithSimd for BlockedWeight<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let g = self.g;
        let (hp, wp) = weight_copy_dims(&g);
        let pplane = hp * wp;
        let copy = &mut self.ws[..g.cin_g * pplane];
        // Only the interior is rewritten per image-group; padding and margin stay zero.
        copy.fill(0.0);
        self.grad_w.fill(0.0);
        let group_in = g.cin_g * g.in_plane;
        for n in 0..g.batch {
            for grp in 0..g.groups {
                let xs = &self.x[(n * g.cin + grp * g.cin_g) * g.in_plane..][..group_in];
                for ic in 0..g.cin_g {
                    for iy in 0..g.in_h {
                        let src = &xs[ic * g.in_plane + iy * g.in_w..][..g.in_w];
                        copy[ic * pplane + (iy + g.ph) * wp + g.pw..][..g.in_w]
                            .copy_from_slice(src);
                    }
                }
                let mut ocl = 0;
                while ocl < g.cout_g {
                    let two = g.cout_g - ocl >= 2 && g.kw <= 5;
                    let ctx = WeightCtx {
                        g: &g,
                        copy,
                        pplane,
                        wp,
                        grad_y: self.grad_y,
                        n,
                        oc0: grp * g.cout_g + ocl,
                    };
                    macro_rules! dispatch {
                        ($oc:literal) => {
                            match g.kw {
                                1 => weight_rows::<S, $oc, 1>(s, &ctx, self.grad_w),
                                2 => weight_rows::<S, $oc, 2>(s, &ctx, self.grad_w),
                                3 => weight_rows::<S, $oc, 3>(s, &ctx, self.grad_w),
                                4 => weight_rows::<S, $oc, 4>(s, &ctx, self.grad_w),
                                5 => weight_rows::<S, $oc, 5>(s, &ctx, self.grad_w),
                                6 => weight_rows::<S, $oc, 6>(s, &ctx, self.grad_w),
                                _ => weight_rows::<S, $oc, 7>(s, &ctx, self.grad_w),
                            }
                        };
                    }
                    if two {
                        dispatch!(2);
                        ocl += 2;
                    } else {
                        dispatch!(1);
                        ocl += 1;
                    }
                }
            }
        }
    }
}

struct WeightCtx<'a> {
    g: &'a Geom,
    /// `cin_g` padded planes of `pplane` elements, rows of `wp`.
    copy: &'a [f32],
    pplane: usize,
    wp: usize,
    grad_y: &'a [f32],
    n: usize,
    oc0: usize,
}

/// Adds image `n`'s contribution to the weight gradient of output channels
/// `oc0 .. oc0 + OC`, whose kernel width is `KW`: per (input channel, kernel row), `OC x KW`
/// vector accumulators run over every output row, one `grad_y` vector per channel and one
/// input vector per tap.
#[inline(always)]
fn weight_rows<S: Simd, const OC: usize, const KW: usize>(
    s: S,
    c: &WeightCtx<'_>,
    grad_w: &mut [f32],
) {
    let l = S::LANES;
    let g = c.g;
    let gy: [&[f32]; OC] = core::array::from_fn(|b| {
        &c.grad_y[(c.n * g.cout + c.oc0 + b) * g.out_plane..][..g.out_plane]
    });
    for ic in 0..g.cin_g {
        let xp = &c.copy[ic * c.pplane..][..c.pplane];
        for ky in 0..g.kh {
            let mut acc = [[s.zero(); KW]; OC];
            for oy in 0..g.oh {
                // A padded row: `wp` elements, the last ROW_MARGIN of them zero.
                let xr = &xp[(oy * g.sh + ky * g.dh) * c.wp..][..c.wp];
                let xptr = xr.as_ptr();
                let mut ox = 0;
                while ox < g.ow {
                    let gv: [S::V; OC] = core::array::from_fn(|b| {
                        let row = &gy[b][oy * g.ow..][..g.ow];
                        if ox + l <= g.ow {
                            s.load(&row[ox..])
                        } else {
                            s.load_partial(&row[ox..], 0.0)
                        }
                    });
                    #[allow(clippy::needless_range_loop)] // kx indexes every channel's row
                    for kx in 0..KW {
                        // SAFETY: ox < ow and, with unit stride, ow + (KW - 1) * dw equals
                        // the padded width, so `ox + kx * dw + L <= padded width - 1 + L`,
                        // which is inside `xr` (padded width + ROW_MARGIN, L <= ROW_MARGIN).
                        let xv = unsafe { s.load_ptr(xptr.add(ox + kx * g.dw)) };
                        for b in 0..OC {
                            acc[b][kx] = s.mul_add(gv[b], xv, acc[b][kx]);
                        }
                    }
                    ox += l;
                }
            }
            for b in 0..OC {
                let gw = &mut grad_w[((c.oc0 + b) * g.cin_g + ic) * g.taps + ky * KW..][..KW];
                for (kx, out) in gw.iter_mut().enumerate() {
                    *out += s.reduce_sum(acc[b][kx]);
                }
            }
        }
    }
}

/// Row dot products, any stride; no workspace.
struct BackwardWeight<'a> {
    g: Geom,
    x: &'a [f32],
    grad_y: &'a [f32],
    grad_w: &'a mut [f32],
}

impl WithSimd for BackwardWeight<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let g = self.g;
        self.grad_w.fill(0.0);
        for n in 0..g.batch {
            for oc in 0..g.cout {
                let grp = oc / g.cout_g;
                let gy = &self.grad_y[(n * g.cout + oc) * g.out_plane..][..g.out_plane];
                for ic in 0..g.cin_g {
                    let c = grp * g.cin_g + ic;
                    let xp = &self.x[(n * g.cin + c) * g.in_plane..][..g.in_plane];
                    let gw = &mut self.grad_w[(oc * g.cin_g + ic) * g.taps..][..g.taps];
                    for ky in 0..g.kh {
                        let (oy_lo, oy_hi) = valid_range(ky * g.dh, g.ph, g.sh, g.in_h, g.oh);
                        for kx in 0..g.kw {
                            let (lo, hi) = valid_range(kx * g.dw, g.pw, g.sw, g.in_w, g.ow);
                            if lo >= hi {
                                continue;
                            }
                            let ix0 = lo * g.sw + kx * g.dw - g.pw;
                            let mut acc = 0.0f32;
                            for oy in oy_lo..oy_hi {
                                let iy = oy * g.sh + ky * g.dh - g.ph;
                                let gyr = &gy[oy * g.ow..][lo..hi];
                                let xr = &xp[iy * g.in_w..][..g.in_w];
                                if g.sw == 1 {
                                    acc += rows::dot(s, gyr, &xr[ix0..ix0 + (hi - lo)]);
                                } else {
                                    for (t, &gv) in gyr.iter().enumerate() {
                                        acc += gv * xr[ix0 + t * g.sw];
                                    }
                                }
                            }
                            gw[ky * g.kw + kx] += acc;
                        }
                    }
                }
            }
        }
    }
}
