//! A data directory named explicitly (the CLI's `--data DIR`, or `$TINYCNN_DATA`) is used
//! as given: when it is missing or incomplete the error names what is missing, and no other
//! copy of the data set is read, no directory is created and nothing is downloaded.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tinycnn::data::{
    encode_idx, load_dataset, DataError, DatasetSpec, DownloadOptions, FashionMnist, LoadOptions,
};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinycnn-paths-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The four files (uncompressed, so under the names without `.gz`) of a 3-image data set
/// whose first training label is `first_label`, skipping those in `skip`.
fn write_files(dir: &Path, first_label: u8, skip: &[usize]) {
    let spec = DatasetSpec::fashion_mnist();
    let files = [
        &spec.train_images,
        &spec.train_labels,
        &spec.test_images,
        &spec.test_labels,
    ];
    for (i, f) in files.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let bytes = if i % 2 == 0 {
            encode_idx(&[3, 28, 28], &vec![7u8; 3 * 784]).unwrap()
        } else {
            encode_idx(&[3], &[first_label, 1, 2]).unwrap()
        };
        std::fs::write(dir.join(f.name.strip_suffix(".gz").unwrap()), bytes).unwrap();
    }
}

/// A Fashion-MNIST spec whose directory variable is private to one test (tests run in
/// parallel, and the real `$TINYCNN_DATA` must not matter).
fn spec_with_env(var: &str) -> DatasetSpec {
    DatasetSpec {
        dir_env: Some(var.to_string()),
        default_url: "http://127.0.0.1:9/".to_string(),
        ..DatasetSpec::fashion_mnist()
    }
}

fn options(dir: Option<&Path>, download: bool) -> LoadOptions<'static> {
    LoadOptions {
        dir: dir.map(Path::to_path_buf),
        search_defaults: true,
        download,
        base_url: Some("http://127.0.0.1:9/".to_string()),
        download_options: DownloadOptions {
            timeout: Duration::from_secs(2),
            progress: None,
        },
    }
}

#[test]
fn an_incomplete_explicit_directory_names_the_missing_files_and_reads_no_other_copy() {
    let good = temp_dir("good");
    write_files(&good, 9, &[]);
    let partial = temp_dir("partial");
    write_files(&partial, 0, &[3]);
    let var = format!("TINYCNN_TEST_DATA_A_{}", std::process::id());
    std::env::set_var(&var, &good);
    let spec = spec_with_env(&var);

    // The environment's complete copy is not a fallback for the named directory.
    let e = load_dataset(&spec, options(Some(&partial), false)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(
            "lacks 1 of the 4 files: t10k-labels-idx1-ubyte.gz (or t10k-labels-idx1-ubyte)"
        ),
        "{msg}"
    );
    assert!(!msg.contains("train-images"), "{msg}");
    assert!(msg.contains(partial.to_str().unwrap()), "{msg}");
    // With every file present, the named directory is what is read (first label 0, not 9).
    write_files(&partial, 0, &[]);
    let data = load_dataset(&spec, options(Some(&partial), false)).unwrap();
    assert_eq!(data.dir, partial);
    assert_eq!(data.train.labels[0], 0);
    // Without a named directory, the environment's is used.
    let data = load_dataset(&spec, options(None, true)).unwrap();
    assert_eq!((data.dir.clone(), data.train.labels[0]), (good.clone(), 9));
    std::env::remove_var(&var);
    std::fs::remove_dir_all(&good).unwrap();
    std::fs::remove_dir_all(&partial).unwrap();
}

#[test]
fn a_missing_explicit_directory_is_named_and_not_created() {
    let base = temp_dir("missing");
    let typo = base.join("fashoin-mnist");
    // The CLI's call: an explicit directory, downloads otherwise allowed.
    let e = FashionMnist::load(Some(&typo)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{} does not exist", typo.display())),
        "{msg}"
    );
    assert!(matches!(e, DataError::NotFound { .. }), "{e:?}");
    assert!(!typo.exists());
    // An empty one: all four files are named.
    std::fs::create_dir(&typo).unwrap();
    let msg = FashionMnist::load(Some(&typo)).unwrap_err().to_string();
    assert!(msg.contains("lacks 4 of the 4 files"), "{msg}");
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        assert!(msg.contains(name), "{msg}");
    }
    assert_eq!(std::fs::read_dir(&typo).unwrap().count(), 0);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn the_environment_directory_is_used_as_given_and_never_downloaded_into() {
    let base = temp_dir("env");
    let typo = base.join("not-here");
    let var = format!("TINYCNN_TEST_DATA_B_{}", std::process::id());
    std::env::set_var(&var, &typo);
    let e = load_dataset(&spec_with_env(&var), options(None, true)).unwrap_err();
    std::env::remove_var(&var);
    let msg = e.to_string();
    assert!(matches!(e, DataError::NotFound { .. }), "{e:?}");
    assert!(
        msg.contains("does not exist") && msg.contains(&format!("${var}")),
        "{msg}"
    );
    assert!(!typo.exists());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_failed_download_says_how_to_get_the_data_without_network() {
    let dir = temp_dir("offline");
    // Port 9 (discard) on the loopback: nothing listens, the connection is refused.
    let e = load_dataset(
        &DatasetSpec::fashion_mnist(),
        LoadOptions {
            search_defaults: false,
            ..options(Some(&dir), true)
        },
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::Download { .. }), "{e:?}");
    assert!(
        msg.contains("apt-get install dataset-fashion-mnist"),
        "{msg}"
    );
    assert!(msg.contains("--data DIR"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}
