//! Helpers shared by the GPU tests.
#![allow(dead_code)]

use std::sync::Arc;
use tinycnn_cuda::{CudaDevice, CudaError};

/// The GPU, or `None` after printing why the test is skipped. Only a missing driver or
/// GPU skips: a GPU whose PTX does not load fails the test.
pub fn device() -> Option<Arc<CudaDevice>> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e @ (CudaError::NoDriver | CudaError::NoDevice { .. })) => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("CUDA device 0 is present but unusable: {e}"),
    }
}

/// The emulated device (feature `emu`, enabled for this crate's tests).
pub fn emu_device() -> Arc<CudaDevice> {
    CudaDevice::emulated().expect("the emulated device is built with feature emu")
}

/// Seeded generator (SplitMix64) for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// Max-norm relative error `max|got - want| / max(max|want|, 1e-6)`.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length");
    let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(1e-6);
    let diff = got.iter().zip(want).fold(0.0f32, |a, (g, w)| {
        if g.is_nan() != w.is_nan() {
            f32::INFINITY
        } else if g.is_nan() {
            a
        } else {
            a.max((g - w).abs())
        }
    });
    diff / scale
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let e = rel_err(got, want);
    assert!(e < tol, "{what}: relative error {e:e} >= {tol:e}");
}
