//! Seeded data augmentation for training batches: torchvision's `RandomCrop(size,
//! padding=P)` (zero padding) followed by `RandomHorizontalFlip(p=0.5)`.
//!
//! The random choices of an epoch are drawn on the host, one [`SampleTransform`] per position
//! in the epoch's visiting order, from a ChaCha8 stream fixed by the seed and the epoch
//! number: the same seed gives the same augmented batches on every run and every device, and
//! every epoch gets new ones. A transform is a pure index map (each output pixel reads one
//! input pixel or is zero), so applying it is exact on any device.
//!
//! ```
//! use tinycnn::data::{Augment, SampleTransform};
//! // A 3x3 image, padding 1, cropped one row down and one column left, then flipped.
//! let image = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
//! let t = SampleTransform { dy: 1, dx: -1, flip: true };
//! let mut out = [0.0; 9];
//! t.apply(&image, [1, 3, 3], &mut out);
//! assert_eq!(out, [5.0, 4.0, 0.0, 8.0, 7.0, 0.0, 0.0, 0.0, 0.0]);
//! # let _ = Augment::default();
//! ```

use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Which augmentations a training run applies, and the seed of their random choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Random crop of the original size from the image padded with this many zeros on each
    /// side (torchvision `RandomCrop(size, padding=P)`); `None`: no crop.
    pub crop_padding: Option<usize>,
    /// Horizontal flip with probability 0.5 (torchvision `RandomHorizontalFlip()`), after
    /// the crop.
    pub flip: bool,
    /// Seed of the random choices (the run's seed; the streams differ from the shuffle's).
    pub seed: u64,
}

/// The random choices for one sample: the crop's offset from the centred position and the
/// flip. The output pixel `(y, x)` of every channel reads input pixel
/// `(y + dy, x' + dx)`, where `x' = W - 1 - x` when flipped and `x` otherwise, or is 0
/// where that lies outside the image (the padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleTransform {
    /// Row offset: torchvision's crop top `i` minus the padding, in `-P..=P`.
    pub dy: i32,
    /// Column offset: the crop's left `j` minus the padding, in `-P..=P`.
    pub dx: i32,
    /// Mirror left-right after the crop.
    pub flip: bool,
}

/// The ChaCha8 stream of epoch `e`'s augmentation: the upper half of the stream space, so it
/// never meets the shuffle of [`super::DataLoader::order`] (streams `0, 1, ...`).
const STREAM_BASE: u64 = 1 << 63;

impl Augment {
    /// Whether anything is applied.
    pub fn is_active(&self) -> bool {
        self.crop_padding.is_some_and(|p| p > 0) || self.flip
    }

    /// The transforms of epoch `epoch`, one per position of its visiting order (`len`
    /// positions). Per sample, the crop's row, then its column (each uniform in `0..=2P`),
    /// then the flip (probability 0.5) are drawn, as torchvision draws them.
    pub fn epoch_transforms(&self, epoch: u64, len: usize) -> Vec<SampleTransform> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(STREAM_BASE | epoch);
        let pad = self.crop_padding.unwrap_or(0) as u64;
        (0..len)
            .map(|_| {
                let mut t = SampleTransform::default();
                if pad > 0 {
                    t.dy = (below(&mut rng, 2 * pad + 1) as i64 - pad as i64) as i32;
                    t.dx = (below(&mut rng, 2 * pad + 1) as i64 - pad as i64) as i32;
                }
                if self.flip {
                    t.flip = rng.next_u32() >> 31 == 1;
                }
                t
            })
            .collect()
    }
}

/// Uniform in `0..bound` without modulo bias (Lemire's method).
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

impl SampleTransform {
    /// Whether the output equals the input.
    pub fn is_identity(&self) -> bool {
        *self == SampleTransform::default()
    }

    /// The input offset (within one `[C, H, W]` sample) that output element `(c, y, x)` reads,
    /// or `None` for a padding zero.
    pub fn source(&self, [_, h, w]: [usize; 3], c: usize, y: usize, x: usize) -> Option<usize> {
        let x = if self.flip { w - 1 - x } else { x };
        let sy = y as i64 + i64::from(self.dy);
        let sx = x as i64 + i64::from(self.dx);
        if (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx) {
            Some((c * h + sy as usize) * w + sx as usize)
        } else {
            None
        }
    }

    /// Writes the transformed `image` (`[C, H, W]`, row-major) into `out` (same size).
    pub fn apply(&self, image: &[f32], shape: [usize; 3], out: &mut [f32]) {
        let [c, h, w] = shape;
        debug_assert_eq!(image.len(), c * h * w);
        debug_assert_eq!(out.len(), c * h * w);
        let mut i = 0;
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    out[i] = self.source(shape, ch, y, x).map_or(0.0, |s| image[s]);
                    i += 1;
                }
            }
        }
    }
}
