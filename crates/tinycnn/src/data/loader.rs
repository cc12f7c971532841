//! Mini-batches over an in-memory data set, reshuffled per epoch, assembled ahead of use.

use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dataset::Split;
use super::{DataError, Result};

/// How a [`DataLoader`] cuts and orders batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch (d2l uses 256); must be at least 1.
    pub batch_size: usize,
    /// Visit samples in a fresh random order each epoch (otherwise in stored order).
    pub shuffle: bool,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// Skip the last batch when it would be smaller than `batch_size`.
    pub drop_last: bool,
    /// Batches assembled ahead on a background thread; 0 assembles them on the caller's
    /// thread. The order is the same either way.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            shuffle: true,
            seed: 0,
            drop_last: false,
            prefetch: 2,
        }
    }
}

/// One mini-batch: `len` samples copied out in visiting order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `len * C * H * W` values, sample after sample.
    pub images: Vec<f32>,
    /// The samples' class indices.
    pub labels: Vec<u32>,
    /// Number of samples (`shape[0]`).
    pub len: usize,
    /// `[len, C, H, W]`.
    pub shape: [usize; 4],
}

/// Iterates mini-batches over images and labels held in memory.
///
/// The visiting order of epoch `e` depends only on `(seed, e)`: a Fisher-Yates shuffle driven
/// by ChaCha8 seeded with `seed` on stream `e`, so runs are reproducible and independent of
/// prefetching and thread timing.
#[derive(Debug, Clone)]
pub struct DataLoader {
    images: Arc<[f32]>,
    labels: Arc<[u8]>,
    sample_shape: [usize; 3],
    config: LoaderConfig,
}

impl DataLoader {
    /// Wraps `images` (`labels.len()` samples of `sample_shape = [C, H, W]` values each) and
    /// `labels`.
    ///
    /// Errors when `batch_size` is 0, a sample dimension is 0, or the image buffer does not hold
    /// exactly one sample per label.
    pub fn new(
        images: impl Into<Arc<[f32]>>,
        labels: impl Into<Arc<[u8]>>,
        sample_shape: [usize; 3],
        config: LoaderConfig,
    ) -> Result<Self> {
        let images = images.into();
        let labels = labels.into();
        if config.batch_size == 0 {
            return Err(DataError::InvalidArgument(
                "batch_size must be at least 1".to_string(),
            ));
        }
        if sample_shape.contains(&0) {
            return Err(DataError::InvalidArgument(format!(
                "sample shape {sample_shape:?} has a zero dimension"
            )));
        }
        let sample_len = sample_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let expected = sample_len.and_then(|s| s.checked_mul(labels.len()));
        if expected != Some(images.len()) {
            return Err(DataError::InvalidArgument(format!(
                "{} image values do not make {} samples of shape {sample_shape:?}",
                images.len(),
                labels.len()
            )));
        }
        Ok(Self {
            images,
            labels,
            sample_shape,
            config,
        })
    }

    /// A loader over a [`Split`] (shares its buffers).
    pub fn from_split(split: &Split, config: LoaderConfig) -> Result<Self> {
        Self::new(
            split.images.clone(),
            split.labels.clone(),
            split.sample_shape(),
            config,
        )
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.labels.len();
        let b = self.config.batch_size;
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Whether an epoch yields no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of samples.
    pub fn num_samples(&self) -> usize {
        self.labels.len()
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Sample indices in the order epoch `epoch` visits them (all of them, even those a
    /// `drop_last` epoch skips at the end).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        if self.config.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
            rng.set_stream(epoch);
            for i in (1..order.len()).rev() {
                let j = uniform_below(&mut rng, i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// The batches of epoch `epoch`. With `prefetch > 0` a producer thread assembles up to
    /// `prefetch` batches ahead; dropping the iterator early stops and joins it.
    pub fn epoch(&self, epoch: u64) -> Batches {
        let assembler = self.assembler(epoch);
        let remaining = assembler.batches;
        if self.config.prefetch == 0 || remaining == 0 {
            return Batches {
                source: Source::Inline { assembler, next: 0 },
                remaining,
            };
        }
        let (sender, receiver) = mpsc::sync_channel(self.config.prefetch);
        let producer = std::thread::Builder::new()
            .name("tinycnn-prefetch".to_string())
            .spawn(move || {
                for index in 0..assembler.batches {
                    if sender.send(assembler.batch(index)).is_err() {
                        break; // the consumer went away
                    }
                }
            });
        match producer {
            Ok(handle) => Batches {
                source: Source::Prefetch {
                    receiver: Some(receiver),
                    producer: Some(handle),
                },
                remaining,
            },
            // No thread available: the same batches, built on demand.
            Err(_) => Batches {
                source: Source::Inline {
                    assembler: self.assembler(epoch),
                    next: 0,
                },
                remaining,
            },
        }
    }

    fn assembler(&self, epoch: u64) -> Assembler {
        Assembler {
            images: self.images.clone(),
            labels: self.labels.clone(),
            sample_shape: self.sample_shape,
            order: self.order(epoch),
            batch_size: self.config.batch_size,
            batches: self.len(),
        }
    }
}

/// Unbiased integer in `0..bound` (Lemire's multiply-and-reject), fixed here so shuffles do not
/// change with the `rand` crate's sampling internals.
fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    debug_assert!(bound > 0);
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

struct Assembler {
    images: Arc<[f32]>,
    labels: Arc<[u8]>,
    sample_shape: [usize; 3],
    order: Vec<usize>,
    batch_size: usize,
    batches: usize,
}

impl Assembler {
    fn batch(&self, index: usize) -> Batch {
        let start = index * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        let picked = &self.order[start..end];
        let sample_len: usize = self.sample_shape.iter().product();
        let mut images = Vec::with_capacity(picked.len() * sample_len);
        let mut labels = Vec::with_capacity(picked.len());
        for &i in picked {
            images.extend_from_slice(&self.images[i * sample_len..(i + 1) * sample_len]);
            labels.push(u32::from(self.labels[i]));
        }
        let [c, h, w] = self.sample_shape;
        Batch {
            images,
            labels,
            len: picked.len(),
            shape: [picked.len(), c, h, w],
        }
    }
}

enum Source {
    Inline {
        assembler: Assembler,
        next: usize,
    },
    Prefetch {
        receiver: Option<Receiver<Batch>>,
        producer: Option<JoinHandle<()>>,
    },
}

/// The batches of one epoch, from [`DataLoader::epoch`].
pub struct Batches {
    source: Source,
    remaining: usize,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefetching = matches!(self.source, Source::Prefetch { .. });
        f.debug_struct("Batches")
            .field("remaining", &self.remaining)
            .field("prefetching", &prefetching)
            .finish()
    }
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        let batch = match &mut self.source {
            Source::Inline { assembler, next } => {
                let batch = assembler.batch(*next);
                *next += 1;
                batch
            }
            // The producer sends exactly `remaining` batches unless it panicked.
            Source::Prefetch { receiver, .. } => receiver.as_ref()?.recv().ok()?,
        };
        self.remaining -= 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Batches {}

impl Drop for Batches {
    fn drop(&mut self) {
        if let Source::Prefetch { receiver, producer } = &mut self.source {
            // Closing the channel first unblocks a producer waiting to send.
            drop(receiver.take());
            if let Some(handle) = producer.take() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_below_stays_in_range_and_covers_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            seen[uniform_below(&mut rng, 5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
