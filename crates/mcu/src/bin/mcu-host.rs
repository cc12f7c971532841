//! Host tool of the LeNet firmware: makes its weight and image files and measures accuracy
//! with the same `no_std` inference code the firmware runs.
//!
//! ```text
//! mcu-host random   --variant V --seed N --out F32.safetensors
//! mcu-host import   --variant V --in TRAINED.safetensors --out F32.safetensors
//! mcu-host quantize --variant V --in F32.safetensors --data DIR [--calib N] --out INT8.safetensors
//! mcu-host accuracy --variant V --f32 F32.safetensors --int8 INT8.safetensors --data DIR [--limit N]
//! mcu-host images   --data DIR --count N --out-dir DIR
//! mcu-host predict  --variant V (--f32 F | --int8 F) --images IDX3 --labels IDX1
//! ```
//! `V` is `lenet` (sigmoid + average pooling) or `lenet-relu`; `DIR` holds Fashion-MNIST's
//! IDX files (default `/usr/share/datasets/fashion-mnist`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tinycnn_mcu::host::{self, Logits};
use tinycnn_mcu::{idx, F32Scratch, I8Scratch, LenetF32, LenetI8, Safetensors, Variant};

const DEFAULT_DATA: &str = "/usr/share/datasets/fashion-mnist";

struct Args {
    cmd: String,
    opts: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let cmd = it
            .next()
            .ok_or("missing command (random, import, quantize, accuracy, images, predict)")?;
        let mut opts = HashMap::new();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got `{k}`"))?;
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            opts.insert(key.to_string(), v);
        }
        Ok(Args { cmd, opts })
    }
    fn get(&self, k: &str) -> Result<&str, String> {
        self.opts
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| format!("{}: missing --{k}", self.cmd))
    }
    fn path(&self, k: &str) -> Result<PathBuf, String> {
        self.get(k).map(PathBuf::from)
    }
    fn num(&self, k: &str, default: usize) -> Result<usize, String> {
        match self.opts.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{k}: `{v}` is not a number")),
        }
    }
    fn variant(&self) -> Result<Variant, String> {
        let v = self.get("variant")?;
        Variant::from_name(v)
            .ok_or_else(|| format!("--variant: `{v}` is neither lenet nor lenet-relu"))
    }
    fn data(&self) -> PathBuf {
        PathBuf::from(self.opts.get("data").map_or(DEFAULT_DATA, String::as_str))
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    host::write_atomic(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

fn run() -> Result<(), String> {
    let a = Args::parse()?;
    let ctx = |what: String| move |e: tinycnn_mcu::Error| format!("{what}: {e}");
    match a.cmd.as_str() {
        "random" => {
            let bytes = host::random_f32(a.variant()?, a.num("seed", 0)? as u64);
            write(&a.path("out")?, &bytes)
        }
        "import" => {
            let src = a.path("in")?;
            let raw = std::fs::read(&src).map_err(|e| format!("reading {}: {e}", src.display()))?;
            let bytes =
                host::normalize_f32(&raw, a.variant()?).map_err(ctx(src.display().to_string()))?;
            write(&a.path("out")?, &bytes)
        }
        "quantize" => {
            let variant = a.variant()?;
            let src = a.path("in")?;
            let blob = host::read_aligned(&src)?;
            let st = Safetensors::parse(blob.bytes()).map_err(ctx(src.display().to_string()))?;
            let model =
                LenetF32::from_safetensors(&st, variant).map_err(ctx(src.display().to_string()))?;
            let train = host::load_split(&a.data(), "train")?;
            let n = a.num("calib", 2000)?.min(train.images.len());
            let cal =
                host::calibrate(&model, &train.images[..n]).map_err(ctx("calibration".into()))?;
            eprintln!("calibrated on {n} training images: {cal:?}");
            let bytes = host::quantize(&model, &cal).map_err(ctx("quantization".into()))?;
            write(&a.path("out")?, &bytes)
        }
        "accuracy" => {
            let variant = a.variant()?;
            let (fp, qp) = (a.path("f32")?, a.path("int8")?);
            let (fb, qb) = (host::read_aligned(&fp)?, host::read_aligned(&qp)?);
            let fst = Safetensors::parse(fb.bytes()).map_err(ctx(fp.display().to_string()))?;
            let qst = Safetensors::parse(qb.bytes()).map_err(ctx(qp.display().to_string()))?;
            let f =
                LenetF32::from_safetensors(&fst, variant).map_err(ctx(fp.display().to_string()))?;
            let q =
                LenetI8::from_safetensors(&qst, variant).map_err(ctx(qp.display().to_string()))?;
            let mut test = host::load_split(&a.data(), "t10k")?;
            let limit = a.num("limit", test.images.len())?;
            test.images.truncate(limit);
            test.labels.truncate(limit);
            let r = host::accuracy(&f, &q, &test).map_err(ctx("inference".into()))?;
            println!(
                "{} test images: f32 {:.2}% ({}), int8 {:.2}% ({}), difference {:+.2} points, {} predictions differ",
                r.images,
                r.f32_percent(),
                r.f32_correct,
                r.int8_percent(),
                r.int8_correct,
                r.int8_percent() - r.f32_percent(),
                r.disagreements
            );
            Ok(())
        }
        "images" => {
            let test = host::load_split(&a.data(), "t10k")?;
            let (img, lab) = host::idx_subset(&test, a.num("count", 8)?);
            let dir = a.path("out-dir")?;
            write(&dir.join("test-images.idx3"), &img)?;
            write(&dir.join("test-labels.idx1"), &lab)
        }
        "predict" => {
            let variant = a.variant()?;
            let (ip, lp) = (a.path("images")?, a.path("labels")?);
            let ib = std::fs::read(&ip).map_err(|e| format!("reading {}: {e}", ip.display()))?;
            let lb = std::fs::read(&lp).map_err(|e| format!("reading {}: {e}", lp.display()))?;
            let images = idx::images(&ib).map_err(ctx(ip.display().to_string()))?;
            let labels = idx::labels(&lb).map_err(ctx(lp.display().to_string()))?;
            if let Ok(p) = a.path("f32") {
                let b = host::read_aligned(&p)?;
                let st = Safetensors::parse(b.bytes()).map_err(ctx(p.display().to_string()))?;
                let m = LenetF32::from_safetensors(&st, variant)
                    .map_err(ctx(p.display().to_string()))?;
                let mut s = Box::new(F32Scratch::new());
                for (i, (img, &l)) in images.iter().zip(labels).enumerate() {
                    let lg = m.logits(img, &mut s).map_err(ctx(format!("image {i}")))?;
                    println!("{}", host::prediction_line(i, l, &Logits::F32(lg)));
                }
            } else {
                let p = a.path("int8")?;
                let b = host::read_aligned(&p)?;
                let st = Safetensors::parse(b.bytes()).map_err(ctx(p.display().to_string()))?;
                let m = LenetI8::from_safetensors(&st, variant)
                    .map_err(ctx(p.display().to_string()))?;
                let mut s = Box::new(I8Scratch::new());
                for (i, (img, &l)) in images.iter().zip(labels).enumerate() {
                    let acc = m
                        .logits_i32(img, &mut s)
                        .map_err(ctx(format!("image {i}")))?;
                    let f32 = m.logits(img, &mut s).map_err(ctx(format!("image {i}")))?;
                    println!("{}", host::prediction_line(i, l, &Logits::I8 { acc, f32 }));
                }
            }
            Ok(())
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcu-host: error: {e}");
            ExitCode::FAILURE
        }
    }
}
