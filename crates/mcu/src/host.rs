//! Host-side helpers (feature `std`): a safetensors writer, aligned copies of files and
//! (Fashion-)MNIST loading for the tests and `mcu-host images`. Predictions are made by
//! `tinycnn_kernels::deploy`, the executor the firmware runs.

extern crate std;

use crate::idx::IMAGE_PIXELS;
use crate::safetensors::Dtype;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

/// One tensor to write: name, dtype, shape, little-endian bytes.
pub struct TensorOut {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl TensorOut {
    pub fn f32(name: &str, shape: &[usize], v: &[f32]) -> Self {
        TensorOut {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    pub fn i32(name: &str, shape: &[usize], v: &[i32]) -> Self {
        TensorOut {
            name: name.to_string(),
            dtype: Dtype::I32,
            shape: shape.to_vec(),
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    pub fn i8(name: &str, shape: &[usize], v: &[i8]) -> Self {
        TensorOut {
            name: name.to_string(),
            dtype: Dtype::I8,
            shape: shape.to_vec(),
            data: v.iter().map(|&x| x as u8).collect(),
        }
    }
}

fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Serializes a safetensors file. Tensors with 4-byte elements come first (their sizes are
/// multiples of 4, so each starts 4-aligned), then the others largest element first, and the
/// header is padded with spaces to a multiple of 8 bytes: a reader that maps the file at an
/// aligned address can view every tensor in place.
pub fn safetensors_bytes(tensors: &[TensorOut], metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut order: Vec<&TensorOut> = tensors.iter().collect();
    order.sort_by_key(|t| core::cmp::Reverse(t.dtype.size()));
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            header.push_str(&format!("{}:{}", json_string(k), json_string(v)));
        }
        header.push('}');
    }
    let mut offset = 0usize;
    for t in &order {
        if header.len() > 1 {
            header.push(',');
        }
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_string(&t.name),
            t.dtype.name(),
            shape.join(","),
            offset,
            offset + t.data.len()
        ));
        offset += t.data.len();
    }
    header.push('}');
    while (8 + header.len()) % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for t in &order {
        out.extend_from_slice(&t.data);
    }
    out
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| std::path::Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A copy of `bytes` whose length is a multiple of 16 and whose start is 16-aligned.
pub fn aligned_copy(bytes: &[u8]) -> AlignedBytes {
    let words = bytes.len().div_ceil(16);
    let mut buf = vec![0u128; words];
    bytemuck::cast_slice_mut::<u128, u8>(&mut buf)[..bytes.len()].copy_from_slice(bytes);
    AlignedBytes {
        buf,
        len: bytes.len(),
    }
}

/// Heap bytes at a 16-byte aligned address (so f32 tensors can be viewed in place).
pub struct AlignedBytes {
    buf: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.buf)[..self.len]
    }
}

/// Reads a file into 16-aligned memory.
pub fn read_aligned(path: &std::path::Path) -> Result<AlignedBytes, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(aligned_copy(&bytes))
}

/// A gzip-compressed or plain file's bytes.
pub fn read_maybe_gz(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let raw = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("decompressing {}: {e}", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Fashion-MNIST images and labels of one split (`train` or `t10k`) from `dir`, which
/// holds the `*-idx3-ubyte[.gz]` / `*-idx1-ubyte[.gz]` files.
pub struct Split {
    pub images: Vec<[u8; IMAGE_PIXELS]>,
    pub labels: Vec<u8>,
}

pub fn load_split(dir: &std::path::Path, split: &str) -> Result<Split, String> {
    let find = |stem: &str| {
        let plain = dir.join(stem);
        let gz = dir.join(format!("{stem}.gz"));
        if plain.exists() {
            Ok(plain)
        } else if gz.exists() {
            Ok(gz)
        } else {
            Err(format!(
                "{} not found (install with `apt-get install -y dataset-fashion-mnist`)",
                gz.display()
            ))
        }
    };
    let img = read_maybe_gz(&find(&format!("{split}-images-idx3-ubyte"))?)?;
    let lab = read_maybe_gz(&find(&format!("{split}-labels-idx1-ubyte"))?)?;
    let images = crate::idx::images(&img)
        .map_err(|e| format!("{split} images: {e}"))?
        .to_vec();
    let labels = crate::idx::labels(&lab)
        .map_err(|e| format!("{split} labels: {e}"))?
        .to_vec();
    if images.len() != labels.len() {
        return Err(format!(
            "{split}: {} images but {} labels",
            images.len(),
            labels.len()
        ));
    }
    Ok(Split { images, labels })
}

/// IDX bytes of the first `n` images (`idx3`) and labels (`idx1`) of a split.
pub fn idx_subset(split: &Split, n: usize) -> (Vec<u8>, Vec<u8>) {
    let n = n.min(split.images.len());
    let mut img = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        img.extend_from_slice(&d.to_be_bytes());
    }
    for im in &split.images[..n] {
        img.extend_from_slice(im);
    }
    let mut lab = vec![0, 0, 8, 1];
    lab.extend_from_slice(&(n as u32).to_be_bytes());
    lab.extend_from_slice(&split.labels[..n]);
    (img, lab)
}
