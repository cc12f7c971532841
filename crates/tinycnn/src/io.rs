//! Saving and loading tensors as safetensors files (F32, little-endian, PyTorch's names and
//! layouts), so `safetensors.torch.save_file(net.state_dict(), path)` files load here and
//! ours load in PyTorch. Files are written with [`write_atomic`]: through symbolic links,
//! keeping the file's mode, via a synced temporary file renamed onto the target.
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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The key a single tensor is stored under by [`save_tensor`].
pub const SINGLE_KEY: &str = "tensor";

/// The bytes of a safetensors file holding `state` (F32, with `{"format": "pt"}` metadata).
pub fn to_bytes(state: &StateDict) -> Result<Vec<u8>> {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    to_bytes_with_metadata(state, &meta)
}

/// The bytes of a safetensors file holding `state` (F32) with `metadata` as its
/// `__metadata__` string map (none when the map is empty).
pub fn to_bytes_with_metadata(
    state: &StateDict,
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
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
    let meta = (!metadata.is_empty()).then(|| metadata.clone());
    safetensors::serialize(views, meta).map_err(|e| Error::Msg(format!("safetensors: {e}")))
}

/// Parses safetensors bytes into a state dict (in file order). Every tensor must be F32,
/// or I64 (PyTorch's `num_batches_tracked`), which is converted to f32.
pub fn from_bytes(bytes: &[u8]) -> Result<StateDict> {
    parse(bytes, Path::new("<memory>"))
}

/// [`from_bytes`], plus the file's `__metadata__` string map (empty when it has none).
pub fn from_bytes_with_metadata(bytes: &[u8]) -> Result<(StateDict, HashMap<String, String>)> {
    let path = Path::new("<memory>");
    let state = parse(bytes, path)?;
    // `parse` has validated the whole file, header included.
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        msg: format!("not a valid safetensors file: {e}"),
    })?;
    Ok((state, header.metadata().clone().unwrap_or_default()))
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
        // I64 is read too, for the one integer tensor of PyTorch state dicts: batch norm's
        // `num_batches_tracked` (a count, exact in f32 up to 2^24), kept here as f32.
        let width = match view.dtype() {
            Dtype::F32 => 4,
            Dtype::I64 => 8,
            other => {
                return Err(fmt_err(format!(
                    "tensor `{name}` has dtype {other:?}; only F32 (and I64 counters) are supported"
                )))
            }
        };
        let shape = view.shape().to_vec();
        let n = shape
            .iter()
            .try_fold(1usize, |p, &d| p.checked_mul(d))
            .ok_or_else(|| fmt_err(format!("tensor `{name}`: shape {shape:?} overflows")))?;
        let data = view.data();
        if n.checked_mul(width) != Some(data.len()) {
            return Err(fmt_err(format!(
                "tensor `{name}`: {} bytes for shape {shape:?}",
                data.len()
            )));
        }
        let vals = if width == 4 {
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            data.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect()
        };
        out.push((name, Tensor::raw(vals, shape)));
    }
    Ok(StateDict::from_entries(out))
}

/// Prefix of the temporary files [`write_atomic`] creates beside a target:
/// `.tinycnn-tmp-<pid>-<counter>`. It is short so that the temporary name fits the file-name
/// limit (255 bytes) whatever the target's name, and fixed so that leftovers of a killed run
/// can be recognised and removed.
pub const TEMP_PREFIX: &str = ".tinycnn-tmp-";

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn refuse(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// What a non-regular file is, for the error that refuses to replace it.
fn kind_name(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The file a write to `path` must replace: `path` with every symbolic link followed (also a
/// link whose target does not exist yet) and made absolute, so that two spellings of one
/// file (`./x` and `x`, a link and its target) resolve to the same path.
///
/// Errors when the directory does not exist, when the links loop, and when the target exists
/// but is not a regular file (directory, FIFO, device node, socket): renaming over those
/// would replace them rather than write into them.
pub fn resolve_output(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    // Linux gives up after 40 links (ELOOP); so do we.
    for _ in 0..40 {
        // Checked here, not at the final rename after hours of training.
        if let Some(name) = p.file_name() {
            let len = name.as_encoded_bytes().len();
            if len > 255 {
                return Err(refuse(
                    &p,
                    format!("the file name is {len} bytes, more than the 255 a file system allows"),
                ));
            }
        }
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&p)(e)),
        };
        match meta {
            Some(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&p).map_err(io_error(&p))?;
                p = match p.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Some(m) if !m.file_type().is_file() => {
                let what = if p == path {
                    String::new()
                } else {
                    format!(" (the target of {})", path.display())
                };
                return Err(refuse(
                    &p,
                    format!(
                        "is {}{what}, not a regular file; refusing to replace it",
                        kind_name(&m.file_type())
                    ),
                ));
            }
            Some(_) => return std::fs::canonicalize(&p).map_err(io_error(&p)),
            None => {
                let name = p
                    .file_name()
                    .ok_or_else(|| refuse(&p, "not a file path"))?
                    .to_os_string();

                let dir = match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let dir = std::fs::canonicalize(&dir).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        // Still an I/O error of kind NotFound for callers that match on it.
                        Error::Io {
                            path: dir.clone(),
                            source: std::io::Error::new(
                                std::io::ErrorKind::NotFound,
                                "directory does not exist",
                            ),
                        }
                    } else {
                        io_error(&dir)(e)
                    }
                })?;
                if !dir.is_dir() {
                    return Err(refuse(
                        &p,
                        format!("cannot write: {} is not a directory", dir.display()),
                    ));
                }
                return Ok(dir.join(name));
            }
        }
    }
    Err(refuse(path, "too many levels of symbolic links"))
}

/// Whether two output paths name the same file: equal after [`resolve_output`], or (both
/// existing) the same inode, as hard links are.
pub fn same_output(a: &Path, b: &Path) -> Result<bool> {
    let (ra, rb) = (resolve_output(a)?, resolve_output(b)?);
    if ra == rb {
        return Ok(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(&ra), std::fs::metadata(&rb)) {
            return Ok(ma.dev() == mb.dev() && ma.ino() == mb.ino());
        }
    }
    Ok(false)
}

/// Checks before long work that [`write_atomic`] to `path` can succeed: the target resolves
/// (see [`resolve_output`]) and a temporary file can be created and removed beside it.
/// Returns the resolved target.
pub fn check_writable(path: &Path) -> Result<PathBuf> {
    let target = resolve_output(path)?;
    let dir = target.parent().unwrap_or(Path::new("/"));
    let tmp = temp_path(dir);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| {
            refuse(
                path,
                format!("cannot write into directory {}: {e}", dir.display()),
            )
        })?;
    let _ = std::fs::remove_file(&tmp);
    Ok(target)
}

fn temp_path(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        "{TEMP_PREFIX}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Whether process `pid` is alive. Only Linux can tell cheaply (`/proc`); elsewhere every
/// process counts as alive so that no temporary file of a running writer is removed.
fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") && Path::new("/proc/self").exists() {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes our temporary files in `dir` left by runs that were killed mid-write (the pid in
/// the name is no longer running). Best effort: a failure leaves the file, never fails the
/// write.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let Some((pid, counter)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), true) = (
            pid.parse::<u32>(),
            !counter.is_empty() && counter.bytes().all(|b| b.is_ascii_digit()),
        ) else {
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && pid != std::process::id() && !pid_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to `path` atomically: readers (and a run killed at any point, even by
/// `kill -9`) see the old file or the new one, never a torn one.
///
/// * A symbolic link is written through: the file it points to is replaced and the link
///   stays, so every name of the file sees the new bytes.
/// * A target that exists but is not a regular file (directory, FIFO, device node, socket)
///   is refused rather than replaced.
/// * The replaced file's permission bits are kept.
/// * The bytes go to a temporary file `.tinycnn-tmp-<pid>-<n>` beside the target, which is
///   synced, renamed onto the target, and the directory synced. On error the temporary file
///   is removed; leftovers of killed runs are removed by the next write into the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = resolve_output(path)?;
    let dir = target.parent().unwrap_or(Path::new("/")).to_path_buf();
    remove_stale_temps(&dir);
    let permissions = match std::fs::metadata(&target) {
        Ok(m) => Some(m.permissions()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&target)(e)),
    };
    let tmp = temp_path(&dir);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| {
                refuse(
                    path,
                    format!("cannot write into directory {}: {e}", dir.display()),
                )
            })?;
        if let Some(perm) = permissions {
            // On the open file, so the umask of the creation does not apply.
            f.set_permissions(perm).map_err(io_error(&tmp))?;
        }
        f.write_all(bytes).map_err(io_error(&tmp))?;
        f.sync_all().map_err(io_error(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &target).map_err(io_error(&target))
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
