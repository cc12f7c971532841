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

/// The architecture and tensors of the ONNX model at `path`.
pub fn load(path: &Path) -> Result<(Architecture, Vec<NamedTensor>)> {
    Err(unavailable(path))
}

/// Writes `arch` with `tensors` as an ONNX model at `path` (atomically).
pub fn save(path: &Path, _arch: &Architecture, _tensors: &[NamedTensor]) -> Result<()> {
    Err(unavailable(path))
}

fn unavailable(path: &Path) -> crate::error::CliError {
    crate::cli_err!(
        "{}: ONNX files are not supported by this build of tinycnn yet",
        path.display()
    )
}
