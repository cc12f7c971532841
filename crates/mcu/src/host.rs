//! Host-side helpers (feature `std`): a safetensors writer, PyTorch-style random LeNet
//! weights, the post-training int8 quantizer and dataset loading.
//!
//! Everything that computes a prediction goes through the same `no_std` code the firmware
//! runs ([`LenetF32`], [`LenetI8`]); this module only prepares files and feeds data.

extern crate std;

use crate::error::Error;
use crate::lenet::{self, LenetF32, LenetI8, Variant, CLASSES, I8_FORMAT, IMAGE_PIXELS};
use crate::safetensors::{Dtype, Safetensors};
use crate::{F32Scratch, I8Scratch};
use std::boxed::Box;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;
use tinycnn_kernels::int8;

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

/// SplitMix64, for reproducible random weights.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, bound: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * bound
    }
}

/// The LeNet layers: (key, weight shape, fan-in).
pub const LAYERS: [(&str, &[usize], usize); 5] = [
    ("0", &[6, 1, 5, 5], 25),
    ("3", &[16, 6, 5, 5], 150),
    ("7", &[120, 400], 400),
    ("9", &[84, 120], 120),
    ("11", &[10, 84], 84),
];

/// An f32 LeNet file with PyTorch's default initialisation (weights and biases uniform in
/// `+-1/sqrt(fan_in)`, which is what `kaiming_uniform_(a=sqrt(5))` gives), seeded.
pub fn random_f32(variant: Variant, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed ^ 0x5EED);
    let mut tensors = Vec::new();
    for (key, shape, fan_in) in LAYERS {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let n: usize = shape.iter().product();
        let w: Vec<f32> = (0..n).map(|_| rng.uniform(bound)).collect();
        let b: Vec<f32> = (0..shape[0]).map(|_| rng.uniform(bound)).collect();
        tensors.push(TensorOut::f32(&format!("{key}.weight"), shape, &w));
        tensors.push(TensorOut::f32(&format!("{key}.bias"), &shape[..1], &b));
    }
    safetensors_bytes(&tensors, &[("variant", variant.name())])
}

/// Rewrites a (trained) f32 LeNet file with only its ten tensors, 4-byte aligned, and the
/// variant in the metadata, after checking it loads as `variant`.
pub fn normalize_f32(bytes: &[u8], variant: Variant) -> Result<Vec<u8>, Error> {
    let aligned = aligned_copy(bytes);
    let st = Safetensors::parse(aligned.bytes())?;
    let m = LenetF32::from_safetensors(&st, variant)?;
    let mut tensors = Vec::new();
    let parts = [m.conv1, m.conv2, m.fc1, m.fc2, m.fc3];
    for ((key, shape, _), (w, b)) in LAYERS.iter().zip(parts) {
        tensors.push(TensorOut::f32(&format!("{key}.weight"), shape, w));
        tensors.push(TensorOut::f32(&format!("{key}.bias"), &shape[..1], b));
    }
    Ok(safetensors_bytes(&tensors, &[("variant", variant.name())]))
}

/// Largest activation values seen by [`calibrate`]: per hidden layer, (max |pre-activation|,
/// max post-activation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Calibration {
    pub pre: [f32; 4],
    pub post: [f32; 4],
}

/// Runs the f32 model over `images` and records the largest activations of every layer.
///
/// Runs the kernels' portable (`Scalar`) path, for the rest of this process: the firmware
/// runs that path on the Cortex-M4, and the host's SIMD paths block the GEMM's reduction
/// differently per ISA (AVX2 and AVX-512 round a long sum differently), so calibrating
/// with them would make the quantized file depend on the machine that made it.
pub fn calibrate(
    model: &LenetF32<'_>,
    images: &[[u8; IMAGE_PIXELS]],
) -> Result<Calibration, Error> {
    tinycnn_kernels::simd::force_isa(Some(tinycnn_kernels::simd::Isa::Scalar));
    let mut scratch = Box::new(F32Scratch::new());
    let mut c = Calibration::default();
    for img in images {
        model.forward(img, &mut scratch, |layer, activated, v| {
            let m = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let slot = if activated {
                &mut c.post[layer]
            } else {
                &mut c.pre[layer]
            };
            *slot = slot.max(m);
        })?;
    }
    Ok(c)
}

/// Post-training quantization of `model` into an int8 file ([`LenetI8`]'s layout).
///
/// Weights: symmetric per output channel (`max |w| / 127`). Activations: symmetric per
/// tensor, `max / 127` over the calibration images; the input is `pixel / 255`, so its
/// scale is `1 / 127`. For ReLU a layer's output scale is its post-ReLU maximum (negative
/// values are clamped away anyway); for sigmoid the pre-activation gets its own scale and a
/// table maps it to the post-activation scale. Biases are rounded to i32 at
/// `weight_scale * in_scale`.
pub fn quantize(model: &LenetF32<'_>, cal: &Calibration) -> Result<Vec<u8>, Error> {
    let variant = model.variant;
    let input_scale = 1.0f32 / 127.0;
    let mut tensors = vec![TensorOut::f32("input.scale", &[1], &[input_scale])];
    let parts = [model.conv1, model.conv2, model.fc1, model.fc2, model.fc3];
    let mut in_scale = input_scale;
    for (i, ((key, shape, _), (w, b))) in LAYERS.iter().zip(parts).enumerate() {
        let out_ch = shape[0];
        let mut ws = vec![0.0f32; out_ch];
        let mut wq = vec![0i8; w.len()];
        int8::quantize_per_channel(w, out_ch, &mut ws, &mut wq)?;
        let mut bq = vec![0i32; out_ch];
        int8::quantize_bias(b, &ws, in_scale, &mut bq)?;
        tensors.push(TensorOut::i8(&format!("{key}.weight"), shape, &wq));
        tensors.push(TensorOut::f32(
            &format!("{key}.weight_scale"),
            &[out_ch],
            &ws,
        ));
        tensors.push(TensorOut::i32(&format!("{key}.bias"), &[out_ch], &bq));
        if i < 4 {
            let scale = |m: f32| if m > 0.0 { m / 127.0 } else { 1.0 };
            let (out_s, act_s) = match variant {
                Variant::Relu => (scale(cal.post[i]), scale(cal.post[i])),
                Variant::Sigmoid => (scale(cal.pre[i]), scale(cal.post[i])),
            };
            tensors.push(TensorOut::f32(&format!("{key}.out_scale"), &[1], &[out_s]));
            tensors.push(TensorOut::f32(&format!("{key}.act_scale"), &[1], &[act_s]));
            in_scale = act_s;
        }
    }
    let bytes = safetensors_bytes(
        &tensors,
        &[("format", I8_FORMAT), ("variant", variant.name())],
    );
    // The file must load with the very reader the firmware uses.
    let aligned = aligned_copy(&bytes);
    LenetI8::from_safetensors(&Safetensors::parse(aligned.bytes())?, variant)?;
    Ok(bytes)
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

/// Test accuracy of the f32 and int8 models on the same images, and how many predictions
/// differ between them.
#[derive(Debug, Clone, Copy)]
pub struct Accuracy {
    pub images: usize,
    pub f32_correct: usize,
    pub int8_correct: usize,
    pub disagreements: usize,
}

impl Accuracy {
    pub fn f32_percent(&self) -> f64 {
        100.0 * self.f32_correct as f64 / self.images as f64
    }
    pub fn int8_percent(&self) -> f64 {
        100.0 * self.int8_correct as f64 / self.images as f64
    }
}

/// Classifies every image with both models.
pub fn accuracy(f: &LenetF32<'_>, q: &LenetI8<'_>, split: &Split) -> Result<Accuracy, Error> {
    let mut fs = Box::new(F32Scratch::new());
    let mut qs = Box::new(I8Scratch::new());
    let mut a = Accuracy {
        images: split.images.len(),
        f32_correct: 0,
        int8_correct: 0,
        disagreements: 0,
    };
    for (img, &label) in split.images.iter().zip(&split.labels) {
        let pf = f.predict(img, &mut fs)?;
        let pq = q.predict(img, &mut qs)?;
        a.f32_correct += (pf == label as usize) as usize;
        a.int8_correct += (pq == label as usize) as usize;
        a.disagreements += (pf != pq) as usize;
    }
    Ok(a)
}

/// The lines the firmware prints for one image, computed on the host (see `src/main.rs`).
pub fn prediction_line(index: usize, label: u8, logits: &Logits) -> String {
    let (class, values) = match logits {
        Logits::F32(l) => (
            lenet::argmax(l),
            l.iter()
                .map(|v| format!("{:08x}", v.to_bits()))
                .collect::<Vec<_>>(),
        ),
        Logits::I8 { acc, f32 } => (
            lenet::argmax(f32),
            acc.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        ),
    };
    format!(
        "image {index} label {label} predicted {class} logits {}",
        values.join(",")
    )
}

/// Logits of one image as the firmware reports them.
pub enum Logits {
    F32([f32; CLASSES]),
    I8 {
        acc: [i32; CLASSES],
        f32: [f32; CLASSES],
    },
}
