//! Saving and loading tensors as safetensors files (F32, little-endian, PyTorch's names and
//! layouts), so `safetensors.torch.save_file(net.state_dict(), path)` files load here and
//! ours load in PyTorch. Files are written atomically: a temporary file in the same
//! directory, flushed to disk, then renamed over the target.
//!
//! ```
//! use tinycnn::{io, Tensor};
//! let dir = std::env::temp_dir().join(format!("tinycnn-io-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("x-file");
//! io::save_tensor(&path, &Tensor::arange(4)).unwrap(); // torch.save(x, 'x-file')
//! assert_eq!(io::load_tensor(&path).unwrap().to_vec(), [0.0, 1.0, 2.0, 3.0]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use crate::error::{Error, Result};
use crate::nn::StateDict;
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The key a single tensor is stored under by [`save_tensor`].
pub const SINGLE_KEY: &str = "tensor";

/// The bytes of a safetensors file holding `state` (F32, with `{"format": "pt"}` metadata).
pub fn to_bytes(state: &StateDict) -> Result<Vec<u8>> {
    let datas: Vec<(String, Vec<usize>, Vec<u8>)> = state
        .iter()
        .map(|(k, t)| {
            let bytes = t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
            (k.to_string(), t.shape().to_vec(), bytes)
        })
        .collect();
    let views = datas
        .iter()
        .map(|(k, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::Msg(format!("safetensors: tensor `{k}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Msg(format!("safetensors: {e}")))
}

/// Parses safetensors bytes into a state dict (in file order). Every tensor must be F32.
pub fn from_bytes(bytes: &[u8]) -> Result<StateDict> {
    parse(bytes, Path::new("<memory>"))
}

fn parse(bytes: &[u8], path: &Path) -> Result<StateDict> {
    let fmt_err = |msg: String| Error::Format {
        path: path.to_path_buf(),
        msg,
    };
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| fmt_err(format!("not a valid safetensors file: {e}")))?;
    let mut items: Vec<(String, TensorView<'_>)> = st.tensors();
    // File order: by data offset (the order the writer used).
    items.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    let mut out = Vec::with_capacity(items.len());
    for (name, view) in items {
        if view.dtype() != Dtype::F32 {
            return Err(fmt_err(format!(
                "tensor `{name}` has dtype {:?}; only F32 is supported",
                view.dtype()
            )));
        }
        let shape = view.shape().to_vec();
        let n = shape
            .iter()
            .try_fold(1usize, |p, &d| p.checked_mul(d))
            .ok_or_else(|| fmt_err(format!("tensor `{name}`: shape {shape:?} overflows")))?;
        let data = view.data();
        if data.len() != n * 4 {
            return Err(fmt_err(format!(
                "tensor `{name}`: {} bytes for shape {shape:?}",
                data.len()
            )));
        }
        let vals = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push((name, Tensor::raw(vals, shape)));
    }
    Ok(StateDict::from_entries(out))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, `fsync`,
/// then a rename over `path` (readers see the old file or the new one, never a torn one).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    let name = path.file_name().ok_or_else(|| Error::Format {
        path: path.to_path_buf(),
        msg: "not a file path".into(),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable (best effort: not every platform can open a directory).
    #[cfg(unix)]
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Saves a state dict (`torch.save(net.state_dict(), path)`, as safetensors).
pub fn save(path: impl AsRef<Path>, state: &StateDict) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(state).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// Loads a state dict saved by [`save`] or by `safetensors.torch.save_file`.
pub fn load(path: impl AsRef<Path>) -> Result<StateDict> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes, path)
}

/// Saves one tensor (under the key [`SINGLE_KEY`]).
pub fn save_tensor(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    let mut sd = StateDict::new();
    sd.insert(SINGLE_KEY, t.clone());
    save(path, &sd)
}

/// Loads a file holding exactly one tensor (any key).
pub fn load_tensor(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let sd = load(path)?;
    if sd.len() != 1 {
        return Err(Error::Format {
            path: path.to_path_buf(),
            msg: format!("expected one tensor, found {}", sd.len()),
        });
    }
    Ok(sd.into_iter().next().expect("one entry").1)
}

/// Saves a list of tensors under the keys `"0"`, `"1"`, ... (`torch.save([x, y], path)`).
pub fn save_tensors(path: impl AsRef<Path>, ts: &[Tensor]) -> Result<()> {
    let sd = StateDict::from_entries(
        ts.iter()
            .enumerate()
            .map(|(i, t)| (i.to_string(), t.clone()))
            .collect(),
    );
    save(path, &sd)
}

/// Loads a list saved by [`save_tensors`]; the keys must be exactly `"0"..n`.
pub fn load_tensors(path: impl AsRef<Path>) -> Result<Vec<Tensor>> {
    let path = path.as_ref();
    let sd = load(path)?;
    (0..sd.len())
        .map(|i| {
            sd.get(&i.to_string())
                .cloned()
                .ok_or_else(|| Error::Format {
                    path: path.to_path_buf(),
                    msg: format!(
                        "a tensor list needs keys 0..{}, key `{i}` is missing",
                        sd.len()
                    ),
                })
        })
        .collect()
}
