//! Helpers shared by the CLI's integration tests: running the binary away from real data and
//! the network, checking its exit, temporary directories, generated IDX data, and reading and
//! writing safetensors files as another program would.
//!
//! Each test crate takes it with `mod common;` and uses only a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The binary under test, kept away from the real data sets and from the network, in the
/// system's temporary directory (so that a relative path never lands in the source tree).
///
/// `TINYCNN_BIN` overrides the binary where the tests run away from the build
/// (scripts/gpu-check.sh stages the test binary and the CLI on a GPU machine). `--device cuda`
/// runs on the emulated device where the binary was built with tinycnn's `cuda-emu` (as `cargo
/// test` builds it); a release binary ignores the variable and uses a real GPU.
pub fn bin() -> Command {
    let exe = std::env::var_os("TINYCNN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tinycnn")));
    let mut c = Command::new(exe);
    c.current_dir(std::env::temp_dir())
        .env_remove("TINYCNN_DATA")
        .env_remove("TINYCNN_MNIST_DATA")
        .env("TINYCNN_DATA_URL", "http://127.0.0.1:9/")
        .env("TINYCNN_MNIST_URL", "http://127.0.0.1:9/")
        .env("TINYCNN_CUDA_EMULATE", "1");
    c
}

/// Runs the binary with `args` and waits for it.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

/// [`run`] in the working directory `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

/// [`run`] with some environment variables set to paths.
pub fn run_with(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = bin();
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().expect("the binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a successful exit, showing both streams if not.
#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Asserts exit code 1, a message containing every `needle` on stderr, and no panic.
#[track_caller]
pub fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

/// The path of [`temp_dir`]`(name)`, as it is (not emptied, perhaps not there).
pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "tinycnn-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ))
}

/// A fresh empty directory `name` of this test crate and process under the system's
/// temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = temp_path(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An IDX file of unsigned bytes with the given dimensions.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// Writes `dir/{prefix}-images-idx3-ubyte` (28x28 images) and `dir/{prefix}-labels-idx1-ubyte`
/// (raw, not gzip), the names of the MNIST-style data sets.
pub fn write_idx_split(dir: &Path, prefix: &str, images: &[u8], labels: &[u8]) {
    let n = labels.len() as u32;
    assert_eq!(images.len(), labels.len() * 784);
    std::fs::write(
        dir.join(format!("{prefix}-images-idx3-ubyte")),
        idx_bytes(&[n, 28, 28], images),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{prefix}-labels-idx1-ubyte")),
        idx_bytes(&[n], labels),
    )
    .unwrap();
}

/// `n` 28x28 images and their labels: class `c` is a bright horizontal bar on rows
/// `2c+4 ..= 2c+5` with speckle noise, so a small net can learn it in an epoch or two.
pub fn synthetic_split(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = (next() % 10) as usize;
        labels.push(c as u8);
        for r in 0..28 {
            for _ in 0..28 {
                let bar = r == 2 * c + 4 || r == 2 * c + 5;
                let noise = (next() % 60) as u8;
                images.push(if bar { 195 + noise } else { noise });
            }
        }
    }
    (images, labels)
}

/// The seed of [`data_dir`]'s test split.
pub const TEST_SEED: u64 = 2;
/// The number of images in [`data_dir`]'s test split.
pub const TEST_LEN: usize = 256;

/// A directory (made once per test crate) with 512 training and [`TEST_LEN`] test images of
/// [`synthetic_split`] in the four IDX files.
pub fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = temp_dir("data");
        for (prefix, n, seed) in [("train", 512, 1), ("t10k", TEST_LEN, TEST_SEED)] {
            let (images, labels) = synthetic_split(n, seed);
            write_idx_split(&d, prefix, &images, &labels);
        }
        d
    })
}

/// Tensors by name, with their shapes and f32 values.
pub type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Writes a safetensors file as any producer would: f32 tensors and metadata pairs (none
/// when empty).
pub fn write_safetensors(path: &Path, tensors: &Tensors, metadata: &[(&str, String)]) {
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    write_safetensors_map(path, tensors, &meta);
}

/// [`write_safetensors`] with the metadata as [`read_safetensors`] gives it.
pub fn write_safetensors_map(path: &Path, tensors: &Tensors, metadata: &HashMap<String, String>) {
    struct View<'a>(&'a [usize], Vec<u8>);
    impl safetensors::View for View<'_> {
        fn dtype(&self) -> safetensors::Dtype {
            safetensors::Dtype::F32
        }
        fn shape(&self) -> &[usize] {
            self.0
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            std::borrow::Cow::Borrowed(&self.1)
        }
        fn data_len(&self) -> usize {
            self.1.len()
        }
    }
    let views: Vec<(String, View)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                View(s, d.iter().flat_map(|v| v.to_le_bytes()).collect()),
            )
        })
        .collect();
    let meta = (!metadata.is_empty()).then(|| metadata.clone());
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

/// The tensors (all f32, sorted by name) and the metadata of a safetensors file.
pub fn read_safetensors(path: &Path) -> (Tensors, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{n}");
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, v.shape().to_vec(), data)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (tensors, meta)
}

/// The metadata of a safetensors file.
pub fn metadata(path: &Path) -> HashMap<String, String> {
    read_safetensors(path).1
}

/// The raw bytes of the model's tensors in a weight or checkpoint file (not the optimizer's
/// state), sorted by name: equal lists mean bit-identical weights, NaN included.
pub fn model_tensor_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("optimizer."))
        .map(|(k, v)| (k, v.data().to_vec()))
        .collect();
    out.sort();
    out
}
