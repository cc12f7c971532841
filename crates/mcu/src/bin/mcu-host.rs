//! Host tool of the firmware: writes the test images it embeds. (Models are deployed with
//! `tinycnn deploy`; their accuracy is what that command and `tests/deployments.rs` report.)
//!
//! ```text
//! mcu-host images   --data DIR --count N --out-dir DIR
//! ```
//! `DIR` holds Fashion-MNIST's IDX files (default `/usr/share/datasets/fashion-mnist`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tinycnn_mcu::host;

const DEFAULT_DATA: &str = "/usr/share/datasets/fashion-mnist";

struct Args {
    cmd: String,
    opts: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let cmd = it.next().ok_or("missing command (images)")?;
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
    match a.cmd.as_str() {
        "images" => {
            let test = host::load_split(&a.data(), "t10k")?;
            let (img, lab) = host::idx_subset(&test, a.num("count", 8)?);
            let dir = a.path("out-dir")?;
            write(&dir.join("test-images.idx3"), &img)?;
            write(&dir.join("test-labels.idx1"), &lab)
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
