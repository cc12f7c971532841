//! A network's architecture as data: what a weight file records so that it can be rebuilt
//! without the code that defined it, what the ONNX reader produces and the ONNX writer reads,
//! and what the deploy planner walks.
//!
//! An [`Architecture`] is a list of [`Node`]s in execution order; each node is one layer
//! ([`LayerSpec`]: its hyper-parameters, no tensors) applied to earlier values. Value 0 is the
//! network's input, value `i + 1` is node `i`'s output; the last node's output is the network's
//! output. A node's `name` is the prefix of its tensors' state-dict keys (`"features.0"` owns
//! `"features.0.weight"`), so a `Sequential` flattened into nodes keeps PyTorch's key names.
//!
//! ```
//! use tinycnn::nn::arch::{Architecture, LayerSpec, Node};
//! let arch = Architecture {
//!     input: vec![1, 28, 28],
//!     nodes: vec![
//!         Node::new("0", LayerSpec::Flatten { start_dim: 1, end_dim: -1 }, vec![0]),
//!         Node::new("1", LayerSpec::Linear { in_features: 784, out_features: 10, bias: true }, vec![1]),
//!     ],
//! };
//! let json = arch.to_json().unwrap();
//! assert_eq!(Architecture::from_json(&json).unwrap(), arch);
//! ```

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The hyper-parameters of one layer (PyTorch's constructor arguments), without its tensors.
///
/// Pairs are `(height, width)`. Tensors a layer owns, by local state-dict name:
/// `Conv2d`/`Linear`: `weight` (`[out, in / groups, kh, kw]` / `[out, in]`) and `bias` when
/// `bias`; `BatchNorm2d`: `weight`, `bias` (when `affine`), `running_mean`, `running_var`,
/// `num_batches_tracked` (when `track_running_stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum LayerSpec {
    /// `nn.Conv2d`.
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        bias: bool,
    },
    /// `nn.Linear` on the last dimension.
    Linear {
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    /// `nn.BatchNorm2d` over `[N, C, H, W]`.
    BatchNorm2d {
        num_features: usize,
        eps: f32,
        /// `None`: cumulative moving average (PyTorch's `momentum=None`).
        momentum: Option<f32>,
        affine: bool,
        track_running_stats: bool,
    },
    /// `nn.ReLU`.
    ReLU,
    /// `nn.ReLU6`: `min(max(x, 0), 6)`.
    ReLU6,
    /// `nn.Sigmoid`.
    Sigmoid,
    /// `nn.Tanh`.
    Tanh,
    /// `nn.MaxPool2d` (dilation 1, `ceil_mode=False`).
    MaxPool2d {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    },
    /// `nn.AvgPool2d` (`ceil_mode=False`).
    AvgPool2d {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        count_include_pad: bool,
    },
    /// `nn.AdaptiveAvgPool2d(output)`; `(1, 1)` is global average pooling.
    AdaptiveAvgPool2d { output: (usize, usize) },
    /// `nn.Flatten(start_dim, end_dim)`.
    Flatten { start_dim: isize, end_dim: isize },
    /// `torch.reshape` to a fixed shape; `-1` infers one dimension, `0` copies the input's.
    Reshape { shape: Vec<i64> },
    /// `nn.Dropout(p)`: identity in evaluation mode.
    Dropout { p: f32 },
    /// `nn.Softmax(dim)`.
    Softmax { dim: isize },
    /// `nn.Identity`.
    Identity,
    /// Elementwise sum of the node's two inputs (of equal shape): a residual connection.
    Add,
}

impl LayerSpec {
    /// Number of inputs the layer takes (2 for [`LayerSpec::Add`], else 1).
    pub fn arity(&self) -> usize {
        match self {
            LayerSpec::Add => 2,
            _ => 1,
        }
    }

    /// PyTorch's class name (`"Conv2d"`, ...; `"Add"` for a residual sum).
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "Conv2d",
            LayerSpec::Linear { .. } => "Linear",
            LayerSpec::BatchNorm2d { .. } => "BatchNorm2d",
            LayerSpec::ReLU => "ReLU",
            LayerSpec::ReLU6 => "ReLU6",
            LayerSpec::Sigmoid => "Sigmoid",
            LayerSpec::Tanh => "Tanh",
            LayerSpec::MaxPool2d { .. } => "MaxPool2d",
            LayerSpec::AvgPool2d { .. } => "AvgPool2d",
            LayerSpec::AdaptiveAvgPool2d { .. } => "AdaptiveAvgPool2d",
            LayerSpec::Flatten { .. } => "Flatten",
            LayerSpec::Reshape { .. } => "Reshape",
            LayerSpec::Dropout { .. } => "Dropout",
            LayerSpec::Softmax { .. } => "Softmax",
            LayerSpec::Identity => "Identity",
            LayerSpec::Add => "Add",
        }
    }
}

/// One layer applied to earlier values (see the module docs for the numbering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// State-dict prefix of the layer's tensors (`"3"`, `"features.0"`); unique, not empty.
    pub name: String,
    /// What the node computes.
    pub layer: LayerSpec,
    /// Value indices: 0 is the network input, `i + 1` the output of node `i` (only earlier
    /// nodes). As many as `layer.arity()`.
    pub inputs: Vec<usize>,
}

impl Node {
    /// A node named `name` computing `layer` from `inputs`.
    pub fn new(name: impl Into<String>, layer: LayerSpec, inputs: Vec<usize>) -> Node {
        Node {
            name: name.into(),
            layer,
            inputs,
        }
    }
}

/// A whole network: the shape of one input example and the nodes in execution order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// One example's shape without the batch dimension (`[1, 28, 28]`).
    pub input: Vec<usize>,
    /// Layers in execution order; the last one's output is the network's output.
    pub nodes: Vec<Node>,
}

/// Longest architecture description accepted from a file (a bound on what a reader allocates).
pub const MAX_ARCHITECTURE_JSON: usize = 4 << 20;
/// Most nodes an architecture may have.
pub const MAX_NODES: usize = 100_000;

impl Architecture {
    /// Checks what does not need tensor shapes: at least one node, names unique and not
    /// empty, each node's inputs earlier values and as many as its layer takes.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("architecture", msg));
        if self.nodes.is_empty() {
            return bad("it has no layers".into());
        }
        if self.nodes.len() > MAX_NODES {
            return bad(format!("{} layers (at most {MAX_NODES})", self.nodes.len()));
        }
        if self.input.is_empty() || self.input.contains(&0) {
            return bad(format!("input shape {:?} is empty", self.input));
        }
        let mut names = std::collections::HashSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty() || !names.insert(n.name.as_str()) {
                return bad(format!(
                    "layer {i} ({}) has an empty or repeated name `{}`",
                    n.layer.type_name(),
                    n.name
                ));
            }
            if n.inputs.len() != n.layer.arity() {
                return bad(format!(
                    "layer `{}` ({}) has {} inputs, it takes {}",
                    n.name,
                    n.layer.type_name(),
                    n.inputs.len(),
                    n.layer.arity()
                ));
            }
            if let Some(&v) = n.inputs.iter().find(|&&v| v > i) {
                return bad(format!(
                    "layer `{}` reads value {v}, which is not computed before it",
                    n.name
                ));
            }
        }
        Ok(())
    }

    /// Whether every node reads the previous node's output (a plain `Sequential`).
    pub fn is_chain(&self) -> bool {
        self.nodes.iter().enumerate().all(|(i, n)| n.inputs == [i])
    }

    /// The JSON text stored in weight files (key `tinycnn.architecture` of the metadata).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::invalid("architecture", format!("cannot encode: {e}")))
    }

    /// Parses and validates [`Architecture::to_json`]'s output.
    pub fn from_json(text: &str) -> Result<Architecture> {
        if text.len() > MAX_ARCHITECTURE_JSON {
            return Err(Error::invalid(
                "architecture",
                format!(
                    "description of {} bytes (at most {MAX_ARCHITECTURE_JSON})",
                    text.len()
                ),
            ));
        }
        let arch: Architecture = serde_json::from_str(text)
            .map_err(|e| Error::invalid("architecture", format!("not a valid description: {e}")))?;
        arch.validate()?;
        Ok(arch)
    }
}

/// Metadata key under which a weight file stores [`Architecture::to_json`].
pub const METADATA_KEY: &str = "tinycnn.architecture";
