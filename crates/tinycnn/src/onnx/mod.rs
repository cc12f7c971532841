//! Reading and writing ONNX models: a PyTorch CNN exported with `torch.onnx.export` becomes
//! an [`Architecture`] with its tensors under PyTorch's state-dict names, and any
//! architecture with its tensors becomes an `.onnx` file that onnxruntime runs.
//!
//! ```
//! use tinycnn::nn::arch::{Architecture, LayerSpec, Node};
//! let arch = Architecture {
//!     input: vec![1, 2, 2],
//!     nodes: vec![
//!         Node::new("0", LayerSpec::Flatten { start_dim: 1, end_dim: -1 }, vec![0]),
//!         Node::new("1", LayerSpec::Linear { in_features: 4, out_features: 2, bias: true }, vec![1]),
//!     ],
//! };
//! let tensors = vec![
//!     ("1.weight".to_string(), vec![2, 4], vec![0.5; 8]),
//!     ("1.bias".to_string(), vec![2], vec![0.0, 1.0]),
//! ];
//! let bytes = tinycnn::onnx::write(&arch, &tensors)?;
//! let model = tinycnn::onnx::read(&bytes)?;
//! assert_eq!(model.architecture, arch);
//! assert_eq!(model.tensors, tensors);
//! # Ok::<(), tinycnn::Error>(())
//! ```
//!
//! # Import
//! The graph needs one input `[N, C, H, W]` (any batch dimension; the rest fixed, FLOAT),
//! one output, the default ONNX domain at opset [`MIN_OPSET`]..=[`MAX_OPSET`] and nothing
//! else. Every node becomes at most one layer:
//!
//! | ONNX | layer | accepted |
//! |------|-------|----------|
//! | `Conv` | `Conv2d` | constant 4-D weight, optional bias; `group`, `strides`, `dilations`, symmetric `pads`; `auto_pad` NOTSET or VALID |
//! | `Gemm` | `Linear` | constant weight, `alpha` = `beta` = 1, `transA` 0, `transB` 1 (0: the weight is transposed) |
//! | `MatMul` (+ `Add`) | `Linear` | constant 2-D right operand; a following `Add` of a constant that alone reads it is the bias |
//! | `Relu`, `Sigmoid`, `Tanh`, `Identity` | `ReLU`, `Sigmoid`, `Tanh`, `Identity` | |
//! | `Clip` | `ReLU6` | bounds exactly 0 and 6: attributes before opset 11, constant inputs from 11 |
//! | `MaxPool` | `MaxPool2d` | `ceil_mode` 0, `dilations` 1, `storage_order` 0, symmetric pads, the indices output unused |
//! | `AveragePool` | `AvgPool2d` | as MaxPool; `count_include_pad` (ONNX's default 0; PyTorch exports 1 for its default `True`) |
//! | `GlobalAveragePool` | `AdaptiveAvgPool2d((1, 1))` | |
//! | `BatchNormalization` | `BatchNorm2d` | constant scale, B, mean, var; `training_mode` 0; `momentum` m becomes PyTorch's 1 - m; `num_batches_tracked` is 0 |
//! | `Flatten` | `Flatten(1, -1)` | axis 1 (another axis folds the batch into a row: refused) |
//! | `Reshape` | `Flatten(1, -1)` or `Reshape` | constant shape keeping the batch dimension; `allowzero` 0 |
//! | `Dropout` | `Dropout(p)` | ratio (attribute before opset 12, constant input from 12); training mode absent or false |
//! | `Add` of two computed values | `Add` | equal shapes |
//! | `Softmax` | `Softmax(dim)` | before opset 13 only on the last axis (older Softmax flattens to 2-D) |
//! | `Constant` | (none) | feeds the constant inputs above |
//!
//! Anything else (an operator, an attribute, an attribute value, a computed operand where a
//! constant is needed) is an error naming the node (its name and `op_type`) and what is not
//! supported: never an approximation. Layers are named by their weight's initializer
//! (`features.0.weight` -> layer `features.0`, so the tensors keep PyTorch's state-dict
//! names), else by the node's name (PyTorch's `/features/features.3/Clip` -> `features.3`;
//! other names with characters outside `[A-Za-z0-9_.]` replaced), made unique with `_1`,
//! `_2`... Initializers nothing reads are ignored; nodes the output does not depend on are
//! dropped.
//!
//! Reading never panics and allocates in proportion to the file: a tensor's element count
//! is checked against the bytes it holds before anything is decoded, protobuf nesting is
//! limited (prost's recursion limit), and external data (weights in a side file) is an
//! error.
//!
//! # Export
//! [`write`] emits opset [`EXPORT_OPSET`], IR version [`EXPORT_IR_VERSION`]: graph input
//! `input` of shape `[N, C, H, W]` with a symbolic batch `N`, output `logits`, initializers
//! named by the tensors' names. `Linear` is `Gemm` (transB = 1) on `[N, features]` input,
//! else `MatMul` with a transposed copy `{layer}.weight_t` (+ `Add` of the bias);
//! `BatchNorm2d` is `BatchNormalization` (its `num_batches_tracked` is dropped; without
//! `affine` the scale and shift are written as ones and zeros; without running statistics
//! it is an error); `ReLU6` is `Clip` with initializers `{layer}.clip_min` = 0 and
//! `{layer}.clip_max` = 6; `AdaptiveAvgPool2d((1, 1))` is `GlobalAveragePool`, other output
//! sizes an `AveragePool` when they divide the input, else an error naming the layer;
//! `Flatten(1, -1)` is `Flatten` axis 1, other flattens a `Reshape`; `Dropout` is `Identity`
//! (an inference graph). So `read(write(a, t))` gives `a` back except for a `Dropout`
//! (read back as `Identity`), `BatchNorm2d`'s `momentum=None` (read back as 0.1) and
//! `affine=false` (read back as affine with the ones and zeros).
//!
//! # Protobuf: which crate
//! The `ModelProto` types in `proto.rs` are generated by prost-build from `onnx.proto` of
//! the onnx Python package and committed (`scripts/onnx-codegen` regenerates them with a
//! vendored protoc). The candidates compared:
//!
//! - **prost** (tokio-rs, chosen): the most used Rust protobuf crate, released regularly,
//!   Apache-2.0. Committed generated code means no protoc and no build script at build time;
//!   the runtime is `prost` + `prost-derive` (syn, already built for serde and thiserror)
//!   and `bytes`: a few seconds of build. Plain structs with `Option` fields (proto2),
//!   decode with a nesting limit of 100, which keeps a hostile file from overflowing the
//!   stack.
//! - **rust-protobuf v3** (stepancheg): pure-Rust codegen (no protoc needed even to
//!   regenerate) and still released (3.7), but the `protobuf` name on crates.io now belongs
//!   to Google's v4 (upb, a C library built by `build.rs`), so v3 is a line that ends; its
//!   runtime (reflection, text format, `once_cell`, thiserror 1) is larger than prost's and
//!   its generated code several times longer.
//! - **onnx-protobuf** (ready-made ONNX messages on rust-protobuf 3): one maintainer, an
//!   onnx.proto of IR version 10 (this one is 14), MPL-2.0. It saves only the generation
//!   step, which is one committed file here, and brings rust-protobuf's runtime.
//!
//! Size: `proto.rs` is about 1300 lines (mostly onnx.proto's own comments); the reader and
//! writer use only the message structs.

mod proto;
mod read;
mod shape;
mod write;

use crate::error::{Error, Result};
use crate::nn::arch::Architecture;
use std::path::Path;

/// Tensors as `(name, shape, values)`: PyTorch state-dict names `{layer}.{local}`, row-major.
pub type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Lowest default-domain opset [`read`] accepts (older ones differ in BatchNormalization,
/// Dropout and Clip in ways not handled).
pub const MIN_OPSET: i64 = 7;
/// Highest default-domain opset [`read`] accepts (what the operators above were checked
/// against).
pub const MAX_OPSET: i64 = 21;
/// Opset of the files [`write`] produces (PyTorch's default export opset).
pub const EXPORT_OPSET: i64 = 17;
/// IR version of the files [`write`] produces (the one that introduced opset 17).
pub const EXPORT_IR_VERSION: i64 = 8;

/// An imported ONNX model: the network and its tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxModel {
    /// The layers, in the graph's order.
    pub architecture: Architecture,
    /// Every layer's tensors (`{layer}.{local}`, locals as in [`crate::nn::arch::LayerSpec`]),
    /// in layer order.
    pub tensors: Tensors,
}

/// Parses an ONNX model from its bytes (see the module docs for what is accepted).
pub fn read(bytes: &[u8]) -> Result<OnnxModel> {
    read::read(bytes)
}

/// Reads the ONNX model at `path`; errors name the path.
pub fn load(path: impl AsRef<Path>) -> Result<OnnxModel> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read::read(&bytes).map_err(|e| match e {
        Error::Format { msg, .. } => Error::Format {
            path: path.to_path_buf(),
            msg,
        },
        e => Error::Format {
            path: path.to_path_buf(),
            msg: e.to_string(),
        },
    })
}

/// The bytes of an ONNX model computing `arch` with `tensors` (see the module docs).
pub fn write(arch: &Architecture, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>> {
    write::write(arch, tensors)
}

/// Writes [`write`]'s bytes to `path` atomically ([`crate::io::write_atomic`]).
pub fn save(
    path: impl AsRef<Path>,
    arch: &Architecture,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<()> {
    crate::io::write_atomic(path.as_ref(), &write(arch, tensors)?)
}
