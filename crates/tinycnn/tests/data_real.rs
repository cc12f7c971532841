//! The real Fashion-MNIST files, when Debian's `dataset-fashion-mnist` package is installed
//! (`apt-get install dataset-fashion-mnist`); skipped with a message otherwise.

use std::path::Path;

use tinycnn::data::{text_labels, DataLoader, FashionMnist, LoadOptions, LoaderConfig};

const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn debian_fashion_mnist() {
    if !Path::new(DEBIAN_DIR).is_dir() {
        eprintln!("skipped: {DEBIAN_DIR} not present (apt-get install dataset-fashion-mnist)");
        return;
    }
    let options = LoadOptions {
        dir: Some(DEBIAN_DIR.into()),
        search_defaults: false,
        download: false,
        ..LoadOptions::default()
    };
    let data = FashionMnist::load_with(options).unwrap();
    assert_eq!(data.name, "Fashion-MNIST");
    assert_eq!(data.train.len(), 60_000);
    assert_eq!(data.test.len(), 10_000);
    assert_eq!((data.train.rows, data.train.cols), (28, 28));
    assert_eq!(data.train.images.len(), 60_000 * 784);
    assert_eq!(data.test.images.len(), 10_000 * 784);

    // The first training and test images are both ankle boots (class 9).
    assert_eq!(data.train.labels[0], 9);
    assert_eq!(data.test.labels[0], 9);
    assert_eq!(data.class_name(9), Some("ankle boot"));
    assert_eq!(
        text_labels(&data.train.labels_u32()[..1]).unwrap(),
        ["ankle boot"]
    );

    // Balanced classes: 6000 per class in training, 1000 per class in test (dataset README).
    let mut train_counts = [0usize; 10];
    data.train
        .labels
        .iter()
        .for_each(|&l| train_counts[l as usize] += 1);
    assert_eq!(train_counts, [6000; 10]);
    let mut test_counts = [0usize; 10];
    data.test
        .labels
        .iter()
        .for_each(|&l| test_counts[l as usize] += 1);
    assert_eq!(test_counts, [1000; 10]);

    // Pixels are bytes / 255: within [0, 1], both ends reached, every value a multiple of 1/255.
    let (min, max) = data
        .train
        .images
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    assert_eq!((min, max), (0.0, 1.0));
    assert!(data.test.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    assert!(data
        .train
        .image(0)
        .unwrap()
        .iter()
        .all(|&p| (p * 255.0 - (p * 255.0).round()).abs() < 1e-4));

    // d2l's batch size: 235 batches of 256 (the last holds 96).
    let loader = DataLoader::from_split(&data.train, LoaderConfig::default()).unwrap();
    assert_eq!(loader.len(), 235);
    let first = loader.epoch(0).next().unwrap();
    assert_eq!(first.shape, [256, 1, 28, 28]);
    assert_eq!(first.images.len(), 256 * 784);
}

/// Debian's files are the official ones with their gzip headers normalised by
/// strip-nondeterminism (file name dropped, mtime reset), so their own MD5 sums differ from
/// the published ones. Restoring the original header (FNAME flag, file name, the upstream
/// mtime) gives back the served bytes, which must match the built-in published sums.
#[test]
fn debian_files_match_published_md5_after_restoring_gzip_header() {
    use md5::{Digest, Md5};
    if !Path::new(DEBIAN_DIR).is_dir() {
        eprintln!("skipped: {DEBIAN_DIR} not present (apt-get install dataset-fashion-mnist)");
        return;
    }
    let spec = tinycnn::data::DatasetSpec::fashion_mnist();
    // Upstream mtimes: 2017-08-31 10:50:06 UTC (training files), 10:50:27 UTC (test files).
    let files = [
        (&spec.train_images, 1_504_176_606u32, 26_421_880usize),
        (&spec.train_labels, 1_504_176_606, 29_515),
        (&spec.test_images, 1_504_176_627, 4_422_102),
        (&spec.test_labels, 1_504_176_627, 5_148),
    ];
    for (file, mtime, official_size) in files {
        let debian = std::fs::read(Path::new(DEBIAN_DIR).join(&file.name)).unwrap();
        assert_eq!(
            debian[..4],
            [0x1f, 0x8b, 8, 0],
            "{}: unexpected gzip header",
            file.name
        );
        let original_name = file.name.strip_suffix(".gz").unwrap();
        let mut official = vec![0x1f, 0x8b, 8, 0x08];
        official.extend_from_slice(&mtime.to_le_bytes());
        official.extend_from_slice(&debian[8..10]);
        official.extend_from_slice(original_name.as_bytes());
        official.push(0);
        official.extend_from_slice(&debian[10..]);
        assert_eq!(official.len(), official_size, "{}", file.name);
        let sum: String = Md5::digest(&official)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sum, file.md5, "{}", file.name);
    }
}
