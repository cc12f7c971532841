//! Seeded random numbers: explicit [`Rng`] values and a default generator, as in PyTorch.
//!
//! ChaCha8 gives the same stream on every platform, so a seed fixes every random tensor and
//! every initial weight, on any machine.

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::cell::RefCell;

/// PyTorch's default seed (`torch.initial_seed()` of a fresh process), so that a program that
/// never seeds is still reproducible.
pub const DEFAULT_SEED: u64 = 67_280_421_310_721;

/// A seeded random number generator (ChaCha8).
///
/// ```
/// use tinycnn::{Rng, Tensor};
/// let mut a = Rng::seed_from(7);
/// let mut b = Rng::seed_from(7);
/// assert_eq!(Tensor::rand_with(&[3], &mut a).to_vec(), Tensor::rand_with(&[3], &mut b).to_vec());
/// ```
#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn seed_from(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        self.0.random::<f32>()
    }
    /// Standard normal.
    pub fn normal(&mut self) -> f32 {
        StandardNormal.sample(&mut self.0)
    }
    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n.max(1))
    }
    /// A random `u64` (to seed other generators).
    pub fn next_u64(&mut self) -> u64 {
        self.0.random::<u64>()
    }
    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

thread_local! {
    // One default generator per thread, not one per process: a program (or a test) that seeds
    // and then draws on one thread gets the same numbers whatever other threads draw meanwhile.
    // PyTorch's default generator is process-wide; single-threaded programs see no difference.
    static DEFAULT_RNG: RefCell<Option<Rng>> = const { RefCell::new(None) };
}

/// Re-seeds the calling thread's default generator, which `Tensor::rand`, `randn`, `normal`
/// and the default layer initialisation draw from (PyTorch's `torch.manual_seed`).
pub fn manual_seed(seed: u64) {
    DEFAULT_RNG.with(|g| *g.borrow_mut() = Some(Rng::seed_from(seed)));
}

/// Runs `f` with the calling thread's default generator (seeded with [`DEFAULT_SEED`] until
/// [`manual_seed`]). `f` must not call `with_global_rng` itself.
pub fn with_global_rng<R>(f: impl FnOnce(&mut Rng) -> R) -> R {
    DEFAULT_RNG.with(|g| {
        let mut g = g.borrow_mut();
        f(g.get_or_insert_with(|| Rng::seed_from(DEFAULT_SEED)))
    })
}
