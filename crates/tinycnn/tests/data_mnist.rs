//! MNIST from a directory of its four official (gzip) files, generated here: decoded like
//! Fashion-MNIST, with the digits as class names and labels above 9 refused.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};
use tinycnn::data::{encode_idx, DatasetSpec, Mnist};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinycnn-mnist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Two training and one test 28x28 images; pixel `p` of image `i` is `(i + p) % 256`.
fn write_files(dir: &Path, train_labels: [u8; 2]) {
    let spec = DatasetSpec::mnist();
    let image = |i: usize| (0..784).map(move |p| ((i + p) % 256) as u8);
    let train: Vec<u8> = image(0).chain(image(1)).collect();
    let contents = [
        encode_idx(&[2, 28, 28], &train).unwrap(),
        encode_idx(&[2], &train_labels).unwrap(),
        encode_idx(&[1, 28, 28], &image(2).collect::<Vec<_>>()).unwrap(),
        encode_idx(&[1], &[7]).unwrap(),
    ];
    let files = [
        &spec.train_images,
        &spec.train_labels,
        &spec.test_images,
        &spec.test_labels,
    ];
    for (f, bytes) in files.iter().zip(contents) {
        std::fs::write(dir.join(&f.name), gzip(&bytes)).unwrap();
    }
}

#[test]
fn mnist_loads_from_its_official_gzip_files() {
    let dir = temp_dir("ok");
    write_files(&dir, [3, 9]);
    let data = Mnist::load(Some(&dir)).unwrap();
    assert_eq!(data.name, "MNIST");
    assert_eq!(
        data.class_names,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    assert_eq!((data.train.len(), data.test.len()), (2, 1));
    assert_eq!(&*data.train.labels, [3, 9]);
    assert_eq!(&*data.test.labels, [7]);
    // Pixels are byte / 255, like torchvision's ToTensor.
    assert_eq!(data.train.image(1).unwrap()[0], 1.0 / 255.0);
    assert_eq!(
        data.test.image(0).unwrap()[783],
        ((2 + 783) % 256) as f32 / 255.0
    );
}

#[test]
fn mnist_refuses_a_label_that_is_no_digit_and_names_missing_files() {
    let dir = temp_dir("bad");
    write_files(&dir, [3, 10]);
    let e = Mnist::load(Some(&dir)).unwrap_err().to_string();
    assert!(
        e.contains("label 10") && e.contains("train-labels-idx1-ubyte.gz"),
        "{e}"
    );
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let e = Mnist::load(Some(&dir)).unwrap_err().to_string();
    assert!(
        e.contains("MNIST") && e.contains("t10k-labels-idx1-ubyte.gz"),
        "{e}"
    );
}
