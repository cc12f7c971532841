//! ONNX files where weight files go: `--weights model.onnx`, `--model model.onnx`,
//! `export --out model.onnx`. The model is the file's architecture (`tinycnn::nn::arch`) and
//! its tensors under PyTorch's state-dict names, as for a weight file.

use crate::error::Result;
use crate::tensorfile::NamedTensor;
use std::path::Path;
use tinycnn::nn::arch::Architecture;

/// Whether `path` names an ONNX file (extension `.onnx`, any case).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// The architecture and tensors of the ONNX model at `path` (`tinycnn::onnx`: an
/// unsupported operator, attribute or opset is an error naming the node).
pub fn load(path: &Path) -> Result<(Architecture, Vec<NamedTensor>)> {
    let model = tinycnn::onnx::load(path).map_err(|e| match e {
        // The reader's errors already name the path.
        tinycnn::Error::Format { .. } | tinycnn::Error::Io { .. } => crate::cli_err!("{e}"),
        e => crate::cli_err!("{}: {e}", path.display()),
    })?;
    let tensors = model
        .tensors
        .into_iter()
        .map(|(name, shape, data)| NamedTensor { name, shape, data })
        .collect();
    Ok((model.architecture, tensors))
}

/// Writes `arch` with `tensors` as an ONNX model at `path` (atomically).
pub fn save(path: &Path, arch: &Architecture, tensors: &[NamedTensor]) -> Result<()> {
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.data.clone()))
        .collect();
    tinycnn::onnx::save(path, arch, &tensors)
        .map_err(|e| crate::cli_err!("cannot write {} as ONNX: {e}", path.display()))
}
