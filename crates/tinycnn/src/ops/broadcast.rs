//! NumPy broadcasting on row-major buffers: result shapes, strides that read a smaller
//! tensor as if expanded, and the sums that undo an expansion in the backward pass.

use crate::error::{Error, Result};
use crate::tensor::{numel_of, Tensor};

/// NumPy's broadcast of two shapes (aligned at the last dimension).
pub(crate) fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::mismatch(op, a, b));
        };
    }
    // Every broadcasting op allocates the result: refuse absurd ones here, in one place.
    crate::limits::checked_numel(op, &out)?;
    Ok(out)
}

/// Strides of `shape` read as if broadcast to `out` (0 along broadcast or missing dims).
pub(crate) fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut strides = vec![0; r];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let o = i + r - shape.len();
        strides[o] = if shape[i] == 1 && out[o] != 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Calls `f(out_index, a_offset, b_offset)` for every element of `out` in row-major order.
pub(crate) fn walk2(
    out: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    if numel_of(out) == 0 {
        return;
    }
    let r = out.len();
    let (last, la, lb) = if r > 0 {
        (out[r - 1], sa[r - 1], sb[r - 1])
    } else {
        (1, 0, 0)
    };
    let mut idx = vec![0usize; r];
    let (mut oa, mut ob, mut o) = (0usize, 0usize, 0usize);
    loop {
        for j in 0..last {
            f(o, oa + j * la, ob + j * lb);
            o += 1;
        }
        let mut d = r as isize - 2;
        loop {
            if d < 0 {
                return;
            }
            let du = d as usize;
            idx[du] += 1;
            oa += sa[du];
            ob += sb[du];
            if idx[du] < out[du] {
                break;
            }
            oa -= sa[du] * out[du];
            ob -= sb[du] * out[du];
            idx[du] = 0;
            d -= 1;
        }
    }
}

/// Sums `g` (shaped `from`) down to `to`, which broadcasts to `from`.
pub(crate) fn sum_to(g: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    if from == to {
        return g.to_vec();
    }
    let mut out = vec![0.0; numel_of(to)];
    let st = bcast_strides(to, from);
    walk2(from, &st, &st, |o, i, _| out[i] += g[o]);
    out
}

/// Expands `x` (shaped `from`, broadcastable) to `to`.
pub(crate) fn expand_data(x: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    let mut out = vec![0.0; numel_of(to)];
    let st = bcast_strides(from, to);
    walk2(to, &st, &st, |o, i, _| out[o] = x[i]);
    out
}

pub(crate) fn scale(g: &[f32], s: f32) -> Vec<f32> {
    g.iter().map(|v| v * s).collect()
}

/// `g` times `other` broadcast to `out`, then summed down to `to`.
pub(crate) fn mul_bcast_sum(
    g: &[f32],
    out: &[usize],
    other: &Tensor,
    to: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    let od = other.data();
    let so = bcast_strides(other.shape(), out);
    let mut prod = vec![0.0; g.len()];
    walk2(out, &so, &so, |o, i, _| prod[o] = f(g[o], od[i]));
    sum_to(&prod, out, to)
}
