//! Row-wise softmax, log-softmax and cross-entropy, forward and backward.
//!
//! The reductions (row maximum, sums, the dot product of the softmax gradient) run on the
//! [`Simd`] layer; `exp` and `log` are `libm` per element, as in the reference. Sums are
//! taken in a different order than the reference's left-to-right loop, so results agree to
//! rounding, not bit for bit.
//!
//! NaN propagates as in PyTorch: a row holding NaN comes out all NaN (softmax, log-softmax
//! and their gradients), and so does the cross-entropy loss and its gradient. The row
//! maximum is NaN-propagating ([`crate::simd::Simd::max_nan`]) so this does not hinge on
//! which operand the ISA's `max` returns.

use crate::conv::rows;
use crate::error::{check_len, mul, KernelError, Result};
use crate::simd::{vectorize, Simd, WithSimd};

pub(crate) fn check_rows(rows: usize, cols: usize, x_len: usize, y_len: usize) -> Result<()> {
    if rows == 0 {
        return Err(KernelError::Zero { what: "rows" });
    }
    if cols == 0 {
        return Err(KernelError::Zero { what: "cols" });
    }
    let n = mul("softmax matrix", rows, cols)?;
    check_len("input", x_len, n)?;
    check_len("output", y_len, n)
}

pub(crate) fn check_labels(rows: usize, cols: usize, labels: &[u32]) -> Result<()> {
    check_len("labels", labels.len(), rows)?;
    for (row, &l) in labels.iter().enumerate() {
        if l as usize >= cols {
            return Err(KernelError::LabelOutOfRange {
                row,
                label: l as usize,
                classes: cols,
            });
        }
    }
    Ok(())
}

/// `log(sum(exp(x)))` shifted by the row maximum; NaN for a row holding NaN, `-inf` for a
/// row of `-inf`.
#[inline(always)]
fn logsumexp<S: Simd>(s: S, x: &[f32]) -> f32 {
    let m = rows::max(s, x);
    if m.is_nan() || m == f32::NEG_INFINITY {
        return m;
    }
    let mut sum = 0.0f32;
    for &v in x {
        sum += libm::expf(v - m);
    }
    m + libm::logf(sum)
}

/// Which row-wise operation a [`RowOp`] runs.
#[derive(Clone, Copy)]
enum Op {
    Softmax,
    LogSoftmax,
    SoftmaxBackward,
    LogSoftmaxBackward,
    CrossEntropy,
    CrossEntropyBackward { grad_loss: f32 },
}

/// One pass over the rows of a `rows x cols` matrix; `a` is the input (or the forward
/// output for the backward ops), `b` the incoming gradient, `out` the result.
struct RowOp<'a> {
    op: Op,
    cols: usize,
    a: &'a [f32],
    b: &'a [f32],
    labels: &'a [u32],
    out: &'a mut [f32],
}

impl WithSimd for RowOp<'_> {
    /// The summed loss for [`Op::CrossEntropy`], 0 otherwise.
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> f32 {
        let cols = self.cols;
        let mut total = 0.0f32;
        for (r, a) in self.a.chunks_exact(cols).enumerate() {
            match self.op {
                Op::Softmax => {
                    let o = &mut self.out[r * cols..][..cols];
                    let m = rows::max(s, a);
                    for (o, &v) in o.iter_mut().zip(a) {
                        *o = libm::expf(v - m);
                    }
                    let sum = rows::sum(s, o);
                    for v in o.iter_mut() {
                        *v /= sum;
                    }
                }
                Op::LogSoftmax => {
                    let o = &mut self.out[r * cols..][..cols];
                    let lse = logsumexp(s, a);
                    for (o, &v) in o.iter_mut().zip(a) {
                        *o = v - lse;
                    }
                }
                Op::SoftmaxBackward => {
                    let o = &mut self.out[r * cols..][..cols];
                    let gy = &self.b[r * cols..][..cols];
                    let dot = rows::dot(s, a, gy);
                    for ((o, &y), &g) in o.iter_mut().zip(a).zip(gy) {
                        *o = y * (g - dot);
                    }
                }
                Op::LogSoftmaxBackward => {
                    let o = &mut self.out[r * cols..][..cols];
                    let gy = &self.b[r * cols..][..cols];
                    let sum = rows::sum(s, gy);
                    for ((o, &y), &g) in o.iter_mut().zip(a).zip(gy) {
                        *o = g - libm::expf(y) * sum;
                    }
                }
                Op::CrossEntropy => {
                    let label = self.labels[r] as usize;
                    total += logsumexp(s, a) - a[label];
                }
                Op::CrossEntropyBackward { grad_loss } => {
                    let o = &mut self.out[r * cols..][..cols];
                    let scale = grad_loss / (self.a.len() / cols) as f32;
                    let label = self.labels[r] as usize;
                    let lse = logsumexp(s, a);
                    for (c, (o, &v)) in o.iter_mut().zip(a).enumerate() {
                        let onehot = if c == label { 1.0 } else { 0.0 };
                        *o = (libm::expf(v - lse) - onehot) * scale;
                    }
                }
            }
        }
        total
    }
}

/// Row-wise softmax of a `rows x cols` matrix.
///
/// ```
/// use tinycnn_kernels::softmax_forward;
/// let mut y = [0.0; 2];
/// softmax_forward(1, 2, &[0.0, 0.0], &mut y).unwrap();
/// assert_eq!(y, [0.5, 0.5]);
/// ```
pub fn softmax_forward(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_rows(rows, cols, x.len(), y.len())?;
    run(Op::Softmax, cols, x, &[], &[], y);
    Ok(())
}

/// Gradient of [`softmax_forward`] from its output `y`.
pub fn softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    check_rows(rows, cols, y.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), y.len())?;
    run(Op::SoftmaxBackward, cols, y, grad_y, &[], grad_x);
    Ok(())
}

/// Row-wise log-softmax.
pub fn log_softmax_forward(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_rows(rows, cols, x.len(), y.len())?;
    run(Op::LogSoftmax, cols, x, &[], &[], y);
    Ok(())
}

/// Gradient of [`log_softmax_forward`] from its output `y`.
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    check_rows(rows, cols, y.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), y.len())?;
    run(Op::LogSoftmaxBackward, cols, y, grad_y, &[], grad_x);
    Ok(())
}

/// Mean cross-entropy of logits against labels (PyTorch's `F.cross_entropy`).
///
/// ```
/// use tinycnn_kernels::cross_entropy_forward;
/// // Uniform logits over 4 classes: the loss is ln 4.
/// let loss = cross_entropy_forward(1, 4, &[1.0; 4], &[2]).unwrap();
/// assert!((loss - 4f32.ln()).abs() < 1e-6);
/// ```
pub fn cross_entropy_forward(
    rows: usize,
    cols: usize,
    logits: &[f32],
    labels: &[u32],
) -> Result<f32> {
    check_rows(rows, cols, logits.len(), logits.len())?;
    check_labels(rows, cols, labels)?;
    let total = run(Op::CrossEntropy, cols, logits, &[], labels, &mut []);
    Ok(total / rows as f32)
}

/// `grad_logits = (softmax(logits) - onehot(labels)) * grad_loss / rows`.
pub fn cross_entropy_backward(
    rows: usize,
    cols: usize,
    logits: &[f32],
    labels: &[u32],
    grad_loss: f32,
    grad_logits: &mut [f32],
) -> Result<()> {
    check_rows(rows, cols, logits.len(), grad_logits.len())?;
    check_labels(rows, cols, labels)?;
    run(
        Op::CrossEntropyBackward { grad_loss },
        cols,
        logits,
        &[],
        labels,
        grad_logits,
    );
    Ok(())
}

fn run(op: Op, cols: usize, a: &[f32], b: &[f32], labels: &[u32], out: &mut [f32]) -> f32 {
    vectorize(RowOp {
        op,
        cols,
        a,
        b,
        labels,
        out,
    })
}

/// Per row of a `rows x cols` matrix, the index of its maximum (`torch.argmax(x, 1)`, see
/// [`crate::reference::argmax_rows`]): the first one on ties, and NaN counts as the maximum
/// (the first NaN wins). The row maximum is a vector reduction that propagates NaN; the index
/// is then the first element equal to it, a scan without data-dependent branches to
/// mispredict until it stops.
///
/// ```
/// use tinycnn_kernels::argmax_rows;
/// let x = [1.0, 3.0, 3.0, f32::NAN, 0.0, f32::NAN];
/// let mut idx = [0u32; 2];
/// argmax_rows(2, 3, &x, &mut idx).unwrap();
/// assert_eq!(idx, [1, 0]);
/// ```
pub fn argmax_rows(rows: usize, cols: usize, x: &[f32], out: &mut [u32]) -> Result<()> {
    check_rows(rows, cols, x.len(), mul("argmax matrix", rows, cols)?)?;
    check_len("argmax", out.len(), rows)?;
    vectorize(ArgmaxRows { cols, x, out });
    Ok(())
}

struct ArgmaxRows<'a> {
    cols: usize,
    x: &'a [f32],
    out: &'a mut [u32],
}

impl WithSimd for ArgmaxRows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        for (row, o) in self.x.chunks_exact(self.cols).zip(self.out.iter_mut()) {
            let m = rows::max(s, row);
            let at = if m.is_nan() {
                row.iter().position(|v| v.is_nan())
            } else {
                row.iter().position(|&v| v == m)
            };
            // The maximum is one of the row's elements, so `position` always finds it.
            *o = at.unwrap_or(0) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::reference;
    use std::vec;
    use std::vec::Vec;

    /// Every ISA this CPU has (through `vectorize_with`), against the reference: ties, NaNs
    /// (first NaN wins), infinities, rows shorter and longer than a vector.
    #[test]
    fn argmax_rows_matches_reference_on_every_isa() {
        use crate::simd::{vectorize_with, Isa};
        for isa in [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Avx512, Isa::Neon] {
            if !isa.is_available() {
                continue;
            }
            for cols in [1, 3, 10, 16, 17, 40] {
                let rows = 7;
                let mut x: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 7) % 5) as f32 - 2.0)
                    .collect();
                x[cols / 2] = f32::NAN;
                x[cols - 1] = f32::NAN;
                x[2 * cols] = f32::INFINITY;
                x[3 * cols..4 * cols].fill(f32::NEG_INFINITY);
                let (mut got, mut want) = (vec![9u32; rows], vec![0u32; rows]);
                vectorize_with(
                    isa,
                    ArgmaxRows {
                        cols,
                        x: &x,
                        out: &mut got,
                    },
                );
                reference::argmax_rows(rows, cols, &x, &mut want).unwrap();
                assert_eq!(got, want, "{} cols {cols}", isa.name());
            }
        }
        // Hand values: ties take the first, NaN beats everything.
        let mut idx = [0u32; 3];
        argmax_rows(
            3,
            3,
            &[1.0, 3.0, 3.0, f32::NAN, 9.0, f32::NAN, -1.0, -1.0, -2.0],
            &mut idx,
        )
        .unwrap();
        assert_eq!(idx, [1, 0, 0]);
        assert!(argmax_rows(2, 3, &[0.0; 6], &mut [0u32; 1]).is_err());
    }

    fn close(what: &str, a: &[f32], b: &[f32]) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{what} [{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn match_reference() {
        for (rows, cols) in [(1, 1), (3, 10), (4, 7), (2, 33), (5, 64)] {
            let n = rows * cols;
            let x: Vec<f32> = (0..n).map(|i| ((i * 29) % 23) as f32 / 3.0 - 3.5).collect();
            let gy: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 / 7.0 - 0.4).collect();
            let labels: Vec<u32> = (0..rows).map(|r| ((r * 3) % cols) as u32).collect();
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            softmax_forward(rows, cols, &x, &mut a).unwrap();
            reference::softmax(rows, cols, &x, &mut b).unwrap();
            close("softmax", &a, &b);
            let y = b.clone();
            softmax_backward(rows, cols, &y, &gy, &mut a).unwrap();
            reference::softmax_backward(rows, cols, &y, &gy, &mut b).unwrap();
            close("softmax_backward", &a, &b);
            log_softmax_forward(rows, cols, &x, &mut a).unwrap();
            reference::log_softmax(rows, cols, &x, &mut b).unwrap();
            close("log_softmax", &a, &b);
            let y = b.clone();
            log_softmax_backward(rows, cols, &y, &gy, &mut a).unwrap();
            reference::log_softmax_backward(rows, cols, &y, &gy, &mut b).unwrap();
            close("log_softmax_backward", &a, &b);
            let l1 = cross_entropy_forward(rows, cols, &x, &labels).unwrap();
            let l2 = reference::cross_entropy(rows, cols, &x, &labels).unwrap();
            close("cross_entropy", &[l1], &[l2]);
            cross_entropy_backward(rows, cols, &x, &labels, 0.7, &mut a).unwrap();
            reference::cross_entropy_backward(rows, cols, &x, &labels, 0.7, &mut b).unwrap();
            close("cross_entropy_backward", &a, &b);
        }
    }

    #[test]
    fn extreme_rows_and_errors() {
        // Large logits stay finite thanks to the max shift; a row of -inf gives NaN like the
        // reference (0/0).
        let mut y = [0.0; 3];
        softmax_forward(1, 3, &[1000.0, 1000.0, -1000.0], &mut y).unwrap();
        assert_eq!(y, [0.5, 0.5, 0.0]);
        let mut lse = [0.0; 2];
        log_softmax_forward(1, 2, &[f32::NEG_INFINITY; 2], &mut lse).unwrap();
        let mut want = [0.0; 2];
        reference::log_softmax(1, 2, &[f32::NEG_INFINITY; 2], &mut want).unwrap();
        assert_eq!(lse.map(f32::is_nan), want.map(f32::is_nan));
        assert!(matches!(
            cross_entropy_forward(1, 3, &[0.0; 3], &[3]),
            Err(KernelError::LabelOutOfRange {
                row: 0,
                label: 3,
                classes: 3
            })
        ));
        assert!(softmax_forward(0, 3, &[], &mut []).is_err());
        assert!(softmax_forward(1, 3, &[0.0; 3], &mut [0.0; 2]).is_err());
    }

    #[test]
    fn nan_anywhere_in_a_row_makes_that_row_nan() {
        // PyTorch: softmax / log_softmax of a row holding NaN is all NaN, and the mean
        // cross-entropy over a batch with such a row is NaN. Other rows are untouched.
        for cols in [1usize, 3, 4, 8, 9, 17, 33] {
            for nan_at in 0..cols {
                for special in [0.0f32, f32::NEG_INFINITY, f32::INFINITY] {
                    let rows = 3;
                    let mut x: Vec<f32> = (0..rows * cols).map(|i| (i % 5) as f32 - 2.0).collect();
                    // Row 1 holds the NaN; an infinity elsewhere in it must not hide it.
                    let r = cols;
                    if cols > 1 {
                        x[r + (nan_at + 1) % cols] = special;
                    }
                    x[r + nan_at] = f32::NAN;
                    let n = rows * cols;
                    let row_nan = |v: &[f32]| {
                        v.iter()
                            .enumerate()
                            .all(|(i, y)| y.is_nan() == (i / cols == 1))
                    };
                    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                    softmax_forward(rows, cols, &x, &mut a).unwrap();
                    reference::softmax(rows, cols, &x, &mut b).unwrap();
                    assert!(row_nan(&a) && row_nan(&b), "softmax {cols} {nan_at}: {a:?}");
                    log_softmax_forward(rows, cols, &x, &mut a).unwrap();
                    reference::log_softmax(rows, cols, &x, &mut b).unwrap();
                    assert!(
                        row_nan(&a) && row_nan(&b),
                        "log_softmax {cols} {nan_at}: {a:?}"
                    );
                    let labels = [0u32, (cols - 1) as u32, 0];
                    assert!(cross_entropy_forward(rows, cols, &x, &labels)
                        .unwrap()
                        .is_nan());
                    assert!(reference::cross_entropy(rows, cols, &x, &labels)
                        .unwrap()
                        .is_nan());
                    cross_entropy_backward(rows, cols, &x, &labels, 1.0, &mut a).unwrap();
                    reference::cross_entropy_backward(rows, cols, &x, &labels, 1.0, &mut b)
                        .unwrap();
                    assert!(
                        row_nan(&a) && row_nan(&b),
                        "ce backward {cols} {nan_at}: {a:?}"
                    );
                    assert!(reference::logsumexp(&x[r..r + cols]).is_nan());
                }
            }
        }
        // Backward from a forward output holding NaN: the row's gradient is NaN.
        let y = [0.5, f32::NAN, 0.5, 0.25, 0.25, 0.5];
        let mut g = [0.0; 6];
        softmax_backward(2, 3, &y, &[1.0; 6], &mut g).unwrap();
        assert!(g[..3].iter().all(|v| v.is_nan()) && g[3..].iter().all(|v| !v.is_nan()));
        log_softmax_backward(2, 3, &y, &[1.0; 6], &mut g).unwrap();
        assert!(g[1].is_nan());
    }
}
