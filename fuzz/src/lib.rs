//! Decoding and comparison helpers shared by the fuzz targets.
//!
//! Every target turns libFuzzer's bytes into a [`Source`], draws a small *valid* problem from
//! it (or, for `kernels_never_panic`, arbitrary shapes), runs the fast kernel and its
//! `reference` twin, and panics on a mismatch beyond [`TOL`] (max-abs-normalized, as in
//! `crates/kernels/tests/proptest_vs_reference.rs`).

use arbitrary::Unstructured;
use tinycnn_kernels::*;

/// Relative tolerance, normalized by the largest magnitude of the reference output.
pub const TOL: f32 = 1e-4;

/// The fuzzer's bytes: shape choices come first, then tensor values. When the bytes run out,
/// values continue from a generator seeded by the input, so short inputs still give dense data.
pub struct Source<'a> {
    u: Unstructured<'a>,
    state: u64,
}

impl<'a> Source<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let mut u = Unstructured::new(data);
        let state = u.arbitrary::<u64>().unwrap_or(0);
        Source { u, state }
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An integer in `lo..=hi` (`lo` once the bytes are used up).
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        self.u.int_in_range(lo..=hi).unwrap_or(lo)
    }

    pub fn flag(&mut self) -> bool {
        self.u.arbitrary::<bool>().unwrap_or(false)
    }

    /// One of `choices` (the first once the bytes are used up).
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        *self.u.choose(choices).unwrap_or(&choices[0])
    }

    /// A raw byte, or generator output once the bytes are used up.
    pub fn byte(&mut self) -> u8 {
        if self.u.is_empty() {
            self.next_u64() as u8
        } else {
            self.u.arbitrary::<u8>().unwrap_or(0)
        }
    }

    /// A finite value in [-8, 8) on a 1/4096 grid.
    pub fn value(&mut self) -> f32 {
        if self.u.len() >= 2 {
            let v = self.u.arbitrary::<i16>().unwrap_or(0);
            v as f32 / 4096.0
        } else {
            ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 16.0 - 8.0
        }
    }

    pub fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.value()).collect()
    }

    pub fn values_scaled(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.value() * scale / 8.0).collect()
    }

    /// Mostly finite values, with NaN and infinities sprinkled in when `specials`.
    pub fn values_with_specials(&mut self, n: usize, specials: bool) -> Vec<f32> {
        (0..n)
            .map(|_| {
                if specials && self.byte() < 8 {
                    self.pick(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0])
                } else {
                    self.value()
                }
            })
            .collect()
    }

    /// Any f32 bit pattern (NaN, infinities, subnormals included).
    pub fn raw_values(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| f32::from_bits(self.next_u64() as u32))
            .collect()
    }

    /// Input size along one axis such that the (dilated) kernel fits the padded input.
    pub fn fitting_size(&mut self, k: usize, pad: usize, dil: usize, max_extra: usize) -> usize {
        let smallest = ((k - 1) * dil + 1).saturating_sub(2 * pad).max(1);
        // Bias toward the smallest size: the kernel exactly as large as the padded input.
        if self.int(0, 7) == 0 {
            smallest
        } else {
            smallest + self.int(0, max_extra)
        }
    }

    /// A valid convolution problem: dense, grouped or depthwise; any stride/padding/dilation.
    pub fn conv_shape(&mut self) -> Conv2dShape {
        let (ci, co, g) = match self.int(0, 3) {
            0 => {
                // depthwise with a channel multiplier
                let c = self.int(1, 8);
                (c, c * self.int(1, 3), c)
            }
            1 => {
                let g = self.int(2, 4);
                (g * self.int(1, 3), g * self.int(1, 3), g)
            }
            _ => (self.int(1, 6), self.int(1, 6), 1),
        };
        let (k, st, pad, dil) = if self.int(0, 4) == 0 {
            // pointwise: the path that goes straight to GEMM
            ((1, 1), (1, 1), (0, 0), (1, 1))
        } else {
            (
                (self.int(1, 7), self.int(1, 7)),
                (self.int(1, 4), self.int(1, 4)),
                (self.int(0, 3), self.int(0, 3)),
                (self.int(1, 3), self.int(1, 3)),
            )
        };
        let p = Conv2dParams::new(ci, co, k)
            .with_stride(st)
            .with_padding(pad)
            .with_dilation(dil)
            .with_groups(g);
        let batch = self.int(1, 3);
        let in_h = self.fitting_size(k.0, pad.0, dil.0, 20);
        let in_w = self.fitting_size(k.1, pad.1, dil.1, 28);
        Conv2dShape::new(p, batch, in_h, in_w)
    }

    /// A valid pooling problem (padding at most half the kernel).
    pub fn pool_shape(&mut self) -> Pool2dShape {
        let k = (self.int(1, 6), self.int(1, 6));
        let st = (self.int(1, 6), self.int(1, 6));
        let pad = (self.int(0, k.0 / 2), self.int(0, k.1 / 2));
        let p = Pool2dParams::with_kernel(k)
            .with_stride(st)
            .with_padding(pad)
            .with_count_include_pad(self.flag());
        let (batch, ch) = (self.int(1, 3), self.int(1, 4));
        let in_h = self.fitting_size(k.0, pad.0, 1, 20);
        let in_w = self.fitting_size(k.1, pad.1, 1, 28);
        Pool2dShape::new(p, batch, ch, in_h, in_w)
    }

    /// A valid GEMM with any transposes and leading dimensions; sizes up to `max_mn`/`max_k`.
    pub fn gemm_shape(&mut self, max_mn: usize, max_k: usize) -> GemmShape {
        let (m, n, k) = (self.int(0, max_mn), self.int(0, max_mn), self.int(0, max_k));
        let ta = self.pick(&[Transpose::No, Transpose::Yes]);
        let tb = self.pick(&[Transpose::No, Transpose::Yes]);
        let g = GemmShape::new(m, n, k).with_transpose(ta, tb);
        let (xa, xb, xc) = (self.int(0, 5), self.int(0, 5), self.int(0, 5));
        g.with_ld(g.lda.max(1) + xa, g.ldb.max(1) + xb, n.max(1) + xc)
    }
}

/// `max |a - e| / max(max |e|, 1e-6)`, NaN-aware: matching NaNs and matching infinities are
/// equal, anything else involving them is an infinite error.
pub fn normalized_error(actual: &[f32], expected: &[f32], floor: f32) -> f32 {
    assert_eq!(actual.len(), expected.len());
    let scale = expected
        .iter()
        .filter(|v| v.is_finite())
        .fold(floor.max(1e-6), |m, v| m.max(v.abs()));
    let mut worst = 0.0f32;
    for (&a, &e) in actual.iter().zip(expected) {
        if a.is_nan() && e.is_nan() {
            continue;
        }
        if !a.is_finite() || !e.is_finite() {
            if a != e {
                return f32::INFINITY;
            }
            continue;
        }
        worst = worst.max((a - e).abs());
    }
    worst / scale
}

/// Panics (a libFuzzer crash) when `actual` differs from `expected` beyond [`TOL`].
#[track_caller]
pub fn check_close(what: &str, actual: &[f32], expected: &[f32], context: &dyn core::fmt::Debug) {
    check_close_floor(what, actual, expected, 0.0, context);
}

/// [`check_close`] normalizing by at least `floor`: for kernels whose outputs can all be far
/// smaller than the terms they are computed from (cancellation), `floor` is the size of
/// those terms, so rounding at that scale is not mistaken for an error.
#[track_caller]
pub fn check_close_floor(
    what: &str,
    actual: &[f32],
    expected: &[f32],
    floor: f32,
    context: &dyn core::fmt::Debug,
) {
    let err = normalized_error(actual, expected, floor);
    if !(err <= TOL) {
        let i = actual
            .iter()
            .zip(expected)
            .enumerate()
            .map(|(i, (&a, &e))| {
                let d = if a.is_nan() != e.is_nan() {
                    f32::INFINITY
                } else {
                    (a - e).abs()
                };
                (i, if d.is_nan() { 0.0 } else { d })
            })
            .fold((0, -1.0f32), |b, c| if c.1 > b.1 { c } else { b })
            .0;
        panic!(
            "{what}: fast kernel differs from reference by {err:e} (> {TOL:e}); worst at [{i}]: \
             fast {} vs reference {}; problem: {context:?}",
            actual[i], expected[i]
        );
    }
}

/// Largest magnitude in `v` (0 for an empty slice).
pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Exact equality where NaN equals NaN (for kernels that only copy values).
#[track_caller]
pub fn check_same(what: &str, actual: &[f32], expected: &[f32], context: &dyn core::fmt::Debug) {
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        if !(a == e || (a.is_nan() && e.is_nan())) {
            panic!("{what}: [{i}] fast {a} vs reference {e}; problem: {context:?}");
        }
    }
}
