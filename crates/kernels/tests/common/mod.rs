//! Helpers shared by the integration tests: a tiny deterministic RNG, buffer allocation
//! through the public workspace queries, and tolerance checks.
//!
//! Each test file is its own crate and uses only part of this module.
#![allow(dead_code)]

/// SplitMix64: deterministic, dependency-free, good enough to fill test tensors.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 24 random bits (every value exactly representable in f32).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// `max |actual - expected| / max(max |expected|, floor)`; NaN anywhere counts as infinite
/// unless both sides are NaN at the same place.
pub fn normalized_error(actual: &[f32], expected: &[f32], floor: f32) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let mut scale = floor.max(1e-6);
    let mut worst = 0.0f32;
    for &e in expected {
        if e.is_finite() {
            scale = scale.max(e.abs());
        }
    }
    for (&a, &e) in actual.iter().zip(expected) {
        if a.is_nan() && e.is_nan() {
            continue;
        }
        if a.is_infinite() || e.is_infinite() {
            if a != e {
                return f32::INFINITY;
            }
            continue;
        }
        let d = (a - e).abs();
        if d.is_nan() {
            return f32::INFINITY;
        }
        worst = worst.max(d);
    }
    worst / scale
}

/// Index and values of the element that differs most, for failure messages.
pub fn worst_index(actual: &[f32], expected: &[f32]) -> (usize, f32, f32) {
    let mut best = (0, 0.0f32);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let d = if a.is_nan() != e.is_nan() {
            f32::INFINITY
        } else {
            (a - e).abs()
        };
        if d > best.1 || (d.is_nan() && !best.1.is_nan()) {
            best = (i, d);
        }
    }
    (best.0, actual[best.0], expected[best.0])
}

/// Panics with the worst element when the normalized error exceeds `tol`.
#[track_caller]
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tol: f32) {
    assert_close_floor(what, actual, expected, tol, 1e-6);
}

/// [`assert_close`] normalizing by at least `floor`: for kernels whose outputs can all be far
/// smaller than the terms they are computed from (cancellation), `floor` is the size of
/// those terms, so rounding at that scale is not mistaken for an error.
#[track_caller]
pub fn assert_close_floor(what: &str, actual: &[f32], expected: &[f32], tol: f32, floor: f32) {
    let err = normalized_error(actual, expected, floor);
    if !(err <= tol) {
        let (i, a, e) = worst_index(actual, expected);
        panic!(
            "{what}: normalized error {err:e} > {tol:e} (worst at [{i}]: got {a}, expected {e}; len {}, floor {floor:e})",
            actual.len()
        );
    }
}

/// Element-wise `|a - e| <= tol * max(1, |e|)`, for hand-computed values.
#[track_caller]
pub fn assert_all_close(what: &str, actual: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * e.abs().max(1.0),
            "{what}[{i}]: got {a}, expected {e} (all: {actual:?})"
        );
    }
}

/// Exact equality where NaN equals NaN (max pooling copies values, so no tolerance).
#[track_caller]
pub fn assert_same(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            a == e || (a.is_nan() && e.is_nan()),
            "{what}[{i}]: got {a}, expected {e}"
        );
    }
}

/// Largest magnitude in `v` (0 for an empty slice).
pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// 0, 1, 2, ... as f32.
pub fn arange(n: usize) -> Vec<f32> {
    (0..n).map(|v| v as f32).collect()
}
