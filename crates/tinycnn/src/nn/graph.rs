//! A network built from an [`Architecture`] at run time: the module behind a model read from
//! a file (a tinycnn weight file that records its architecture, or an ONNX model), and the
//! way back from a module written in Rust to an architecture that can be saved.

use super::arch::{Architecture, LayerSpec, Node};
use super::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity, Linear,
    MaxPool2d, Module, ReLU, ReLU6, Residual, Sequential, Sigmoid, Softmax, Tanh,
};
use crate::error::{Error, Result};
use crate::tensor::{normalize_dim, Tensor};
use tinycnn_kernels::{Conv2dParams, Pool2dParams};

// ----- shapes -------------------------------------------------------------------------------

/// The error of a layer that does not fit its input, naming the layer.
fn layer_error(node: &Node, msg: impl std::fmt::Display) -> Error {
    Error::invalid(
        "architecture",
        format!("layer `{}` ({}): {msg}", node.name, node.layer.type_name()),
    )
}

/// `dim` of a tensor of rank `rank` as an index: a 0-d value takes dims 0 and -1, as in
/// PyTorch.
fn dim_index(dim: isize, rank: usize) -> Option<usize> {
    normalize_dim(dim, rank.max(1))
}

/// The `(height, width)` of a `[N, C, H, W]` input of a 2-D layer whose channels must be
/// `channels` (when given).
fn spatial(
    node: &Node,
    shape: &[usize],
    channels: Option<usize>,
) -> std::result::Result<(usize, usize), String> {
    if shape.len() != 4 {
        return Err(format!(
            "needs a [N, C, H, W] input, got shape {shape:?} (rank {})",
            shape.len()
        ));
    }
    if let Some(c) = channels {
        if shape[1] != c {
            let what = match node.layer {
                LayerSpec::BatchNorm2d { .. } => "num_features",
                _ => "in_channels",
            };
            return Err(format!(
                "{what} is {c} but its input {shape:?} has {} channels",
                shape[1]
            ));
        }
    }
    Ok((shape[2], shape[3]))
}

/// The output shape of `node` for inputs of `inputs` shapes (batch dimension included), or
/// what does not fit.
fn output_shape(node: &Node, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
    let x = inputs[0];
    let pool = |kernel, stride, padding| {
        let p = Pool2dParams::with_kernel(kernel)
            .with_stride(stride)
            .with_padding(padding);
        p.validate().map_err(|e| e.to_string())?;
        let (h, w) = spatial(node, x, None)?;
        let (oh, ow) = p.out_hw(h, w).map_err(|e| e.to_string())?;
        Ok::<_, String>(vec![x[0], x[1], oh, ow])
    };
    Ok(match &node.layer {
        LayerSpec::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            ..
        } => {
            let p = Conv2dParams::new(*in_channels, *out_channels, *kernel)
                .with_stride(*stride)
                .with_padding(*padding)
                .with_dilation(*dilation)
                .with_groups(*groups);
            p.validate().map_err(|e| e.to_string())?;
            let (h, w) = spatial(node, x, Some(*in_channels))?;
            let (oh, ow) = p.out_hw(h, w).map_err(|e| e.to_string())?;
            vec![x[0], *out_channels, oh, ow]
        }
        LayerSpec::Linear {
            in_features,
            out_features,
            ..
        } => {
            match x.last() {
                Some(&f) if f == *in_features => {}
                _ => {
                    return Err(format!(
                        "in_features is {in_features} but its input {x:?} has {} features{}",
                        x.last().copied().unwrap_or(0),
                        if x.len() > 2 {
                            " in its last dimension (a Flatten missing before it?)"
                        } else {
                            ""
                        }
                    ))
                }
            }
            let mut y = x.to_vec();
            *y.last_mut().expect("checked above") = *out_features;
            y
        }
        LayerSpec::BatchNorm2d {
            num_features,
            eps,
            momentum,
            ..
        } => {
            // PyTorch takes any numbers here; a NaN, negative eps or a momentum outside
            // [0, 1] in a file would only show up as NaN or drifting statistics.
            if !(eps.is_finite() && *eps >= 0.0) {
                return Err(format!("eps is {eps}, it must be a number >= 0"));
            }
            if let Some(m) = momentum {
                if !(0.0..=1.0).contains(m) {
                    return Err(format!("momentum is {m}, it must be between 0 and 1"));
                }
            }
            spatial(node, x, Some(*num_features))?;
            x.to_vec()
        }
        LayerSpec::ReLU
        | LayerSpec::ReLU6
        | LayerSpec::Sigmoid
        | LayerSpec::Tanh
        | LayerSpec::Identity => x.to_vec(),
        LayerSpec::Dropout { p } => {
            if !(0.0..=1.0).contains(p) {
                return Err(format!("p is {p}, it must be between 0 and 1"));
            }
            x.to_vec()
        }
        LayerSpec::Softmax { dim } => {
            if dim_index(*dim, x.len()).is_none() {
                return Err(format!("dim {dim} is out of range for its input {x:?}"));
            }
            x.to_vec()
        }
        LayerSpec::MaxPool2d {
            kernel,
            stride,
            padding,
        }
        | LayerSpec::AvgPool2d {
            kernel,
            stride,
            padding,
            ..
        } => pool(*kernel, *stride, *padding)?,
        LayerSpec::AdaptiveAvgPool2d { output } => {
            spatial(node, x, None)?;
            if output.0 == 0 || output.1 == 0 {
                return Err(format!("output size {output:?} is empty"));
            }
            vec![x[0], x[1], output.0, output.1]
        }
        LayerSpec::Flatten { start_dim, end_dim } => {
            let rank = x.len().max(1);
            let (Some(s), Some(e)) = (dim_index(*start_dim, rank), dim_index(*end_dim, rank))
            else {
                return Err(format!(
                    "dims {start_dim}..{end_dim} are out of range for its input {x:?}"
                ));
            };
            if s > e {
                return Err(format!("start_dim {start_dim} is after end_dim {end_dim}"));
            }
            if x.is_empty() {
                return Ok(vec![1]);
            }
            let mut y = x[..s].to_vec();
            y.push(x[s..=e].iter().product());
            y.extend_from_slice(&x[e + 1..]);
            y
        }
        LayerSpec::Reshape { shape } => reshape_dims(shape, x)?,
        LayerSpec::Add => {
            if inputs[0] != inputs[1] {
                return Err(format!(
                    "adds values of different shapes {:?} and {:?}",
                    inputs[0], inputs[1]
                ));
            }
            x.to_vec()
        }
    })
}

/// ONNX's `Reshape` target for an input of shape `input`: `0` copies the input's dimension
/// at that position, one `-1` is inferred from the element count.
pub(crate) fn reshape_dims(
    shape: &[i64],
    input: &[usize],
) -> std::result::Result<Vec<usize>, String> {
    let numel: usize = input.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        out.push(match d {
            0 => *input.get(i).ok_or_else(|| {
                format!(
                    "target {shape:?} copies dimension {i} (0), which its input {input:?} lacks"
                )
            })?,
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            d if d > 0 => usize::try_from(d).map_err(|_| format!("target {shape:?} overflows"))?,
            _ => return Err(format!("target {shape:?} has an invalid size {d}")),
        });
    }
    let known = out
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("target {shape:?} overflows"))?;
    match infer {
        Some(i) if known > 0 && numel.is_multiple_of(known) => out[i] = numel / known,
        None if known == numel => {}
        _ => {
            return Err(format!(
                "cannot reshape its input {input:?} ({numel} elements) to {shape:?}"
            ))
        }
    }
    Ok(out)
}

impl Architecture {
    /// The output shape of every node for a batch of `batch` examples of shape `input`,
    /// after [`Architecture::validate`]; an error names the first layer that does not fit
    /// its input (a `Linear` whose `in_features` is not the flattened size, an `Add` of two
    /// shapes, a kernel larger than its padded input, ...).
    ///
    /// ```
    /// use tinycnn::nn::arch::{Architecture, LayerSpec, Node};
    /// let arch = Architecture {
    ///     input: vec![1, 28, 28],
    ///     nodes: vec![
    ///         Node::new("0", LayerSpec::Flatten { start_dim: 1, end_dim: -1 }, vec![0]),
    ///         Node::new("1", LayerSpec::Linear { in_features: 784, out_features: 10, bias: true }, vec![1]),
    ///     ],
    /// };
    /// assert_eq!(arch.node_shapes(2).unwrap(), [vec![2, 784], vec![2, 10]]);
    /// ```
    pub fn node_shapes(&self, batch: usize) -> Result<Vec<Vec<usize>>> {
        self.validate()?;
        let mut values: Vec<Vec<usize>> = Vec::with_capacity(self.nodes.len() + 1);
        let mut first = vec![batch];
        first.extend_from_slice(&self.input);
        values.push(first);
        for node in &self.nodes {
            let inputs: Vec<&[usize]> = node.inputs.iter().map(|&v| &values[v][..]).collect();
            let y = output_shape(node, &inputs).map_err(|msg| layer_error(node, msg))?;
            values.push(y);
        }
        values.remove(0);
        Ok(values)
    }

    /// Describes `module` as an architecture with one example's shape `input`: every
    /// [`Sequential`] (nested too) is flattened, each known layer becomes a node named by
    /// its dotted state-dict path (so a [`Graph`] built from the result has the module's
    /// state-dict keys), a [`Graph`] contributes its own nodes. Any other module type is an
    /// error naming its path and type; so is an input shape the layers do not fit.
    pub fn from_module(module: &dyn Module, input: &[usize]) -> Result<Architecture> {
        let mut arch = Architecture {
            input: input.to_vec(),
            nodes: Vec::new(),
        };
        flatten_into(module, "", 0, &mut arch.nodes)?;
        if arch.nodes.is_empty() {
            return Err(Error::invalid(
                "Architecture::from_module",
                format!("{} has no layers", module.type_name()),
            ));
        }
        arch.node_shapes(1)?;
        Ok(arch)
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Appends the nodes of `m` (at state-dict path `path`) reading value `input`, and returns
/// the value index of its output.
fn flatten_into(m: &dyn Module, path: &str, input: usize, nodes: &mut Vec<Node>) -> Result<usize> {
    if let Some(seq) = m.downcast_ref::<Sequential>() {
        let mut v = input;
        for (name, layer) in seq.iter() {
            v = flatten_into(layer, &join(path, name), v, nodes)?;
        }
        return Ok(v);
    }
    if let Some(g) = m.downcast_ref::<Graph>() {
        // Value 0 of the inner graph is `input`; its node i lands at `base + i`.
        let base = nodes.len();
        let remap = |v: usize| if v == 0 { input } else { base + v };
        for n in &g.arch.nodes {
            nodes.push(Node::new(
                join(path, &n.name),
                n.layer.clone(),
                n.inputs.iter().map(|&v| remap(v)).collect(),
            ));
        }
        return Ok(remap(g.arch.nodes.len()));
    }
    if let Some(r) = m.downcast_ref::<Residual>() {
        // body(x) + shortcut(x): the body's nodes, the shortcut's, then an Add named after
        // the block (it owns no tensors, so the name only has to be unique).
        let body = flatten_into(r.body.as_ref(), &join(path, "body"), input, nodes)?;
        let skip = match &r.shortcut {
            Some(s) => flatten_into(s.as_ref(), &join(path, "shortcut"), input, nodes)?,
            None => input,
        };
        let name = if path.is_empty() { "add" } else { path };
        nodes.push(Node::new(name, LayerSpec::Add, vec![body, skip]));
        return Ok(nodes.len());
    }
    let Some(layer) = layer_spec_of(m, path)? else {
        let at = if path.is_empty() {
            "the top-level module".to_string()
        } else {
            format!("module `{path}`")
        };
        return Err(Error::invalid(
            "Architecture::from_module",
            format!(
                "{at} is a {}, which an architecture cannot describe (known: Sequential, Residual, Graph and the layers of tinycnn::nn)",
                m.type_name()
            ),
        ));
    };
    if path.is_empty() {
        // A node needs a name, and a bare layer's state-dict keys have no prefix.
        return Err(Error::invalid(
            "Architecture::from_module",
            format!(
                "the module is a single {}: wrap it in a Sequential",
                m.type_name()
            ),
        ));
    }
    nodes.push(Node::new(path, layer, vec![input]));
    Ok(nodes.len())
}

/// The spec of a known single layer (`None`: not one), or why a known layer at `path` has
/// none.
fn layer_spec_of(m: &dyn Module, path: &str) -> Result<Option<LayerSpec>> {
    if let Some(bn) = m.downcast_ref::<BatchNorm2d>() {
        if bn.weight.is_some() != bn.bias.is_some() {
            return Err(Error::invalid(
                "Architecture::from_module",
                format!("module `{path}` is a BatchNorm2d with a weight but no bias, which an architecture cannot describe"),
            ));
        }
        return Ok(Some(LayerSpec::BatchNorm2d {
            num_features: bn.num_features,
            eps: bn.eps,
            momentum: bn.momentum,
            affine: bn.weight.is_some(),
            track_running_stats: bn.running_mean.is_some(),
        }));
    }
    Ok(simple_layer_spec_of(m))
}

/// The spec of a known layer whose options always fit a [`LayerSpec`].
fn simple_layer_spec_of(m: &dyn Module) -> Option<LayerSpec> {
    if let Some(d) = m.downcast_ref::<Dropout>() {
        return Some(LayerSpec::Dropout { p: d.p });
    }
    if let Some(a) = m.downcast_ref::<AdaptiveAvgPool2d>() {
        return Some(LayerSpec::AdaptiveAvgPool2d {
            output: a.output_size,
        });
    }
    if m.is::<ReLU6>() {
        return Some(LayerSpec::ReLU6);
    }
    if let Some(c) = m.downcast_ref::<Conv2d>() {
        let p = &c.params;
        return Some(LayerSpec::Conv2d {
            in_channels: p.in_channels,
            out_channels: p.out_channels,
            kernel: p.kernel,
            stride: p.stride,
            padding: p.padding,
            dilation: p.dilation,
            groups: p.groups,
            bias: c.bias.is_some(),
        });
    }
    if let Some(l) = m.downcast_ref::<Linear>() {
        return Some(LayerSpec::Linear {
            in_features: l.in_features,
            out_features: l.out_features,
            bias: l.bias.is_some(),
        });
    }
    if let Some(p) = m.downcast_ref::<MaxPool2d>() {
        let p = &p.params;
        return Some(LayerSpec::MaxPool2d {
            kernel: p.kernel,
            stride: p.stride,
            padding: p.padding,
        });
    }
    if let Some(p) = m.downcast_ref::<AvgPool2d>() {
        let p = &p.params;
        return Some(LayerSpec::AvgPool2d {
            kernel: p.kernel,
            stride: p.stride,
            padding: p.padding,
            count_include_pad: p.count_include_pad,
        });
    }
    if let Some(f) = m.downcast_ref::<Flatten>() {
        return Some(LayerSpec::Flatten {
            start_dim: f.start_dim,
            end_dim: f.end_dim,
        });
    }
    if let Some(s) = m.downcast_ref::<Softmax>() {
        return Some(LayerSpec::Softmax { dim: s.dim });
    }
    if let Some(r) = m.downcast_ref::<Reshape>() {
        return Some(LayerSpec::Reshape {
            shape: r.shape.clone(),
        });
    }
    if m.is::<ReLU>() {
        return Some(LayerSpec::ReLU);
    }
    if m.is::<Sigmoid>() {
        return Some(LayerSpec::Sigmoid);
    }
    if m.is::<Tanh>() {
        return Some(LayerSpec::Tanh);
    }
    if m.is::<Identity>() {
        return Some(LayerSpec::Identity);
    }
    None
}

// ----- modules ------------------------------------------------------------------------------

/// Reshapes to a fixed target (ONNX's `Reshape`): `0` copies the input's dimension at that
/// position, one `-1` is inferred. Shares storage with its input, as `torch.reshape` of a
/// contiguous tensor.
///
/// ```
/// use tinycnn::nn::{Module, Reshape};
/// use tinycnn::Tensor;
/// let r = Reshape { shape: vec![0, -1] };
/// assert_eq!(r.forward(&Tensor::zeros(&[2, 3, 4])).unwrap().shape(), &[2, 12]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshape {
    /// The target shape, batch dimension included.
    pub shape: Vec<i64>,
}

impl Module for Reshape {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = reshape_dims(&self.shape, x.shape())
            .map_err(|msg| Error::bad_shape("Reshape", x.shape(), msg))?;
        x.reshape(dims)
    }
    fn type_name(&self) -> String {
        "Reshape".into()
    }
    fn extra_repr(&self) -> String {
        format!("shape={:?}", self.shape)
    }
}

/// The module of an `Add` node: it takes two inputs, so only [`Graph::forward`] runs it.
struct AddNode;

impl Module for AddNode {
    fn forward(&self, _: &Tensor) -> Result<Tensor> {
        Err(Error::invalid(
            "Add",
            "an Add node sums two values; it runs only inside its Graph",
        ))
    }
    fn type_name(&self) -> String {
        "Add".into()
    }
}

/// A fresh module for `spec` with PyTorch's default initialisation (global generator).
fn build_layer(node: &Node) -> Result<Box<dyn Module>> {
    let err = |e: Error| layer_error(node, e);
    Ok(match &node.layer {
        LayerSpec::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias,
        } => {
            let p = Conv2dParams::new(*in_channels, *out_channels, *kernel)
                .with_stride(*stride)
                .with_padding(*padding)
                .with_dilation(*dilation)
                .with_groups(*groups);
            Box::new(Conv2d::with(p, *bias).map_err(err)?)
        }
        LayerSpec::Linear {
            in_features,
            out_features,
            bias,
        } => Box::new(Linear::with_bias(*in_features, *out_features, *bias)),
        LayerSpec::ReLU => Box::new(ReLU),
        LayerSpec::Sigmoid => Box::new(Sigmoid),
        LayerSpec::Tanh => Box::new(Tanh),
        LayerSpec::Identity => Box::new(Identity),
        LayerSpec::Softmax { dim } => Box::new(Softmax { dim: *dim }),
        LayerSpec::MaxPool2d {
            kernel,
            stride,
            padding,
        } => Box::new(MaxPool2d::new(*kernel).stride(*stride).padding(*padding)),
        LayerSpec::AvgPool2d {
            kernel,
            stride,
            padding,
            count_include_pad,
        } => Box::new(AvgPool2d {
            params: Pool2dParams::with_kernel(*kernel)
                .with_stride(*stride)
                .with_padding(*padding)
                .with_count_include_pad(*count_include_pad),
        }),
        LayerSpec::Flatten { start_dim, end_dim } => Box::new(Flatten {
            start_dim: *start_dim,
            end_dim: *end_dim,
        }),
        LayerSpec::Reshape { shape } => Box::new(Reshape {
            shape: shape.clone(),
        }),
        LayerSpec::Add => Box::new(AddNode),
        LayerSpec::BatchNorm2d {
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
        } => Box::new(
            BatchNorm2d::new(*num_features)
                .eps(*eps)
                .momentum(*momentum)
                .affine(*affine)
                .track_running_stats(*track_running_stats),
        ),
        LayerSpec::ReLU6 => Box::new(ReLU6),
        LayerSpec::AdaptiveAvgPool2d { output } => Box::new(AdaptiveAvgPool2d::new(*output)),
        LayerSpec::Dropout { p } => Box::new(Dropout::new(*p).map_err(err)?),
    })
}

// ----- Graph --------------------------------------------------------------------------------

/// A network built from an [`Architecture`]: one module per node (PyTorch's default
/// initialisation), run in node order. Its children are the nodes by name, so its
/// state-dict keys are `<node name>.<tensor>` (`features.0.weight`), the keys of the module
/// the architecture was taken from.
///
/// ```
/// use tinycnn::nn::arch::{Architecture, LayerSpec, Node};
/// use tinycnn::nn::{Graph, Module};
/// use tinycnn::Tensor;
/// let arch = Architecture {
///     input: vec![1, 4, 4],
///     nodes: vec![
///         Node::new("features.0", LayerSpec::Flatten { start_dim: 1, end_dim: -1 }, vec![0]),
///         Node::new("features.1", LayerSpec::Linear { in_features: 16, out_features: 16, bias: true }, vec![1]),
///         Node::new("features.2", LayerSpec::ReLU, vec![2]),
///         // A residual connection: the flattened input plus the activation.
///         Node::new("skip", LayerSpec::Add, vec![1, 3]),
///         Node::new("head", LayerSpec::Linear { in_features: 16, out_features: 3, bias: false }, vec![4]),
///     ],
/// };
/// let net = Graph::new(&arch).unwrap();
/// let keys: Vec<String> = net.state_dict().keys().map(String::from).collect();
/// assert_eq!(keys, ["features.1.weight", "features.1.bias", "head.weight"]);
/// assert_eq!(net.forward(&Tensor::rand(&[5, 1, 4, 4])).unwrap().shape(), &[5, 3]);
/// // The architecture of a module: what a weight file records.
/// assert_eq!(Architecture::from_module(&net, &[1, 4, 4]).unwrap(), arch);
/// ```
pub struct Graph {
    arch: Architecture,
    /// One module per node (an `Add` node's is a placeholder the forward does not call).
    layers: Vec<Box<dyn Module>>,
    /// For each value (0: the input, `i + 1`: node `i`'s output), the last node that reads
    /// it; the forward frees the value after that node.
    last_use: Vec<Option<usize>>,
}

impl Graph {
    /// Checks `arch` (names, inputs, and every layer's fit to the shapes that reach it from
    /// `arch.input`: the error names the layer) and builds its layers, drawing their initial
    /// weights from the global generator in node order (so `manual_seed(s)` then a `Graph`
    /// of a `Sequential`'s architecture gives that `Sequential`'s initial weights).
    pub fn new(arch: &Architecture) -> Result<Graph> {
        arch.node_shapes(1)?;
        let layers = arch
            .nodes
            .iter()
            .map(build_layer)
            .collect::<Result<Vec<_>>>()?;
        let mut last_use = vec![None; arch.nodes.len() + 1];
        for (i, n) in arch.nodes.iter().enumerate() {
            for &v in &n.inputs {
                last_use[v] = Some(i);
            }
        }
        Ok(Graph {
            arch: arch.clone(),
            layers,
            last_use,
        })
    }

    /// The architecture the graph was built from.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// The module of the node called `name` (`"features.0"`).
    pub fn layer(&self, name: &str) -> Option<&dyn Module> {
        let i = self.arch.nodes.iter().position(|n| n.name == name)?;
        Some(self.layers[i].as_ref())
    }
}

/// Errors of the backends pass unchanged; the others get the name of the layer they came
/// from.
fn in_layer(node: &Node, e: Error) -> Error {
    match e {
        #[cfg(feature = "cuda")]
        Error::Cuda { .. } => e,
        Error::DeviceMismatch { .. } | Error::Unsupported { .. } | Error::Stopped { .. } => e,
        e => Error::invalid(
            "Graph",
            format!("layer `{}` ({}): {e}", node.name, node.layer.type_name()),
        ),
    }
}

impl Module for Graph {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = self.arch.nodes.len();
        let mut values: Vec<Option<Tensor>> = vec![None; n + 1];
        values[0] = Some(x.clone());
        for (i, (node, layer)) in self.arch.nodes.iter().zip(&self.layers).enumerate() {
            let arg = |v: usize| {
                values[v]
                    .as_ref()
                    .expect("a value is kept until its last use")
            };
            let y = match node.layer {
                LayerSpec::Add => {
                    let (a, b) = (arg(node.inputs[0]), arg(node.inputs[1]));
                    if a.shape() != b.shape() {
                        // No broadcasting: a residual sum of two shapes is a wrong network.
                        return Err(in_layer(node, Error::mismatch("add", a.shape(), b.shape())));
                    }
                    a.add(b)
                }
                _ => layer.forward(arg(node.inputs[0])),
            }
            .map_err(|e| in_layer(node, e))?;
            for &v in &node.inputs {
                if self.last_use[v] == Some(i) {
                    values[v] = None;
                }
            }
            // An output nothing reads (and not the network's) is dropped at once.
            if self.last_use[i + 1].is_some() || i + 1 == n {
                values[i + 1] = Some(y);
            }
        }
        Ok(values[n].take().expect("the last node's output"))
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.arch
            .nodes
            .iter()
            .zip(&self.layers)
            .map(|(n, m)| (n.name.clone(), m.as_ref()))
            .collect()
    }
    fn type_name(&self) -> String {
        "Graph".into()
    }
}
