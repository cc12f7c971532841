//! Datasets for image classification: the IDX file format, Fashion-MNIST and MNIST loaders
//! (local directories or a verified download), and a shuffling, prefetching [`DataLoader`].
//!
//! This module does not depend on the rest of the crate: it hands out plain `Vec<f32>` /
//! `Vec<u32>` buffers, so tensors are built from them by the caller.
//!
//! * [`parse_idx`] / [`read_idx`] decode IDX files (raw or gzip-compressed, unsigned-byte data,
//!   1 to 3 dimensions), checking every size claim before trusting it.
//! * [`FashionMnist::load`] reads the four Fashion-MNIST files from the directory it is
//!   given, or else from `$TINYCNN_DATA` if set; a named directory is used as given (an error
//!   naming the missing files, never another copy). Without either it searches
//!   `./data/fashion-mnist` and `/usr/share/datasets/fashion-mnist` or downloads the files,
//!   verifying each file's published MD5 sum before it is moved into place. Pixels become
//!   `f32` in `[0, 1]` (`pixel / 255`, like torchvision's `ToTensor`).
//! * [`Augment`] draws seeded random crops (zero padding) and horizontal flips per epoch,
//!   which [`ResidentData::batch_augmented`] applies to training batches.
//! * [`DataLoader`] yields [`Batch`]es of shape `[len, C, H, W]`, reshuffled each epoch from a
//!   seed, assembled ahead of time on a background thread.
//!
//! # Example
//!
//! An in-memory data set of three 2x2 "images", batched two at a time without shuffling:
//!
//! ```
//! use tinycnn::data::{encode_idx, parse_idx, DataLoader, LoaderConfig};
//!
//! // Build IDX bytes the way the Fashion-MNIST files are laid out.
//! let pixels: Vec<u8> = (0..12).map(|i| i * 20).collect();
//! let image_file = encode_idx(&[3, 2, 2], &pixels).unwrap();
//! let label_file = encode_idx(&[3], &[7, 0, 9]).unwrap();
//!
//! let images = parse_idx(&image_file).unwrap();
//! assert_eq!(images.dims(), &[3, 2, 2]);
//! let labels = parse_idx(&label_file).unwrap();
//!
//! let images_f32: Vec<f32> = images.data().iter().map(|&p| f32::from(p) / 255.0).collect();
//! let config = LoaderConfig { batch_size: 2, shuffle: false, ..LoaderConfig::default() };
//! let loader = DataLoader::new(images_f32, labels.into_data(), [1, 2, 2], config).unwrap();
//! assert_eq!(loader.len(), 2); // 2 + 1 samples
//!
//! let batches: Vec<_> = loader.epoch(0).collect();
//! assert_eq!(batches[0].shape, [2, 1, 2, 2]);
//! assert_eq!(batches[0].labels, vec![7, 0]);
//! assert_eq!(batches[1].len, 1);
//! assert_eq!(batches[1].images[0], 160.0 / 255.0);
//! ```

mod augment;
mod dataset;
mod download;
mod idx;
mod loader;
mod resident;

use std::path::PathBuf;

pub use augment::{Augment, SampleTransform};
pub use dataset::{
    load_dataset, text_labels, Dataset, DatasetSpec, FashionMnist, FileSpec, LoadOptions, Mnist,
    Split, FASHION_MNIST_CLASSES, FASHION_MNIST_URL, MNIST_CLASSES, MNIST_URL,
};
pub use download::{download_file, DownloadEvent, DownloadOptions};
pub use idx::{encode_idx, parse_idx, parse_idx_named, read_idx, IdxArray, MAX_IDX_BYTES};
pub use loader::{Batch, Batches, DataLoader, LoaderConfig};
pub use resident::{Order, ResidentData};

/// Everything that can go wrong while reading, downloading or batching data.
///
/// Every variant names the file, URL or argument at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// An operating-system error on a file or directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes that are not a well-formed IDX file of unsigned bytes.
    #[error("{name}: invalid IDX data: {reason}")]
    InvalidIdx {
        /// The file name (or `<memory>` for in-memory input).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Well-formed files that do not make a consistent data set (count or shape mismatch,
    /// label out of range).
    #[error("{name}: {reason}")]
    InvalidDataset {
        /// The file or data set at fault.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A download that failed before its content could be checked (HTTP status, network,
    /// timeout, truncated body).
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A downloaded file whose MD5 sum differs from the published one; it was discarded.
    #[error("download of {url}: MD5 mismatch (expected {expected}, got {actual}); file discarded")]
    ChecksumMismatch {
        /// The URL requested.
        url: String,
        /// The published sum.
        expected: String,
        /// The sum of the bytes received.
        actual: String,
    },
    /// No directory held the data set and downloading was not possible or not allowed.
    #[error("{dataset} not found (searched: {}); {hint}", display_paths(searched))]
    NotFound {
        /// The data set's name.
        dataset: String,
        /// Directories searched, in order.
        searched: Vec<PathBuf>,
        /// Why no download was attempted, or how to provide the files.
        hint: String,
    },
    /// A caller-supplied argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result alias for this module.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
