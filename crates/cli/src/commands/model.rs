//! The network of a run, built by `tinycnn-models` and run by the `tinycnn` runtime on the
//! chosen device: the bridge between the runtime's state dicts and the CLI's files.

use crate::checkpoint::{OptimizerState, RunConfig};
use crate::error::{runtime, Result};
use crate::tensorfile::NamedTensor;
use crate::{DeviceName, ModelName, OptimizerName};
use tinycnn::nn::{Module, Sequential, StateDict};
use tinycnn::optim::{Adam, Optimizer, Sgd};
use tinycnn::{Device, Inference, Tensor};

/// The runtime device of `--device`, opened now so that a missing GPU is reported before
/// any data is read.
pub fn device(name: DeviceName) -> Result<Device> {
    match name {
        DeviceName::Cpu => Ok(Device::Cpu),
        DeviceName::Cuda => {
            let dev = Device::Cuda(0);
            match Tensor::scalar(0.0).to(&dev) {
                Ok(_) => Ok(dev),
                Err(e) => Err(crate::cli_err!(
                    "--device cuda: no usable NVIDIA GPU ({e}); use --device cpu"
                )),
            }
        }
    }
}

/// The untrained network (PyTorch's default layer initialization from the global generator).
pub fn build_net(model: ModelName) -> Result<Sequential> {
    let name = model.as_str();
    tinycnn_models::build_by_name(name).map_err(runtime(format!("cannot build {name}")))
}

/// The zoo's entry for `model`.
fn zoo_model(model: ModelName) -> Result<tinycnn_models::Model> {
    let name = model.as_str();
    tinycnn_models::by_name(name).map_err(runtime(format!("unknown model {name}")))
}

/// A freshly initialized network: global generator seeded with `seed`, default layer init,
/// then the model's own (d2l's Xavier init for the LeNets, none for dscnn). The same seed
/// gives the same weights on every machine.
pub fn init_net(model: ModelName, seed: u64) -> Result<Sequential> {
    tinycnn::manual_seed(seed);
    let net = build_net(model)?;
    zoo_model(model)?
        .init(&net)
        .map_err(runtime("the model's weight init"))?;
    Ok(net)
}

/// Examples per mini-batch when `--batch-size` is not given (the model's default).
pub fn default_batch_size(model: ModelName) -> Result<usize> {
    Ok(zoo_model(model)?.default_batch_size())
}

/// The update rule (`--optimizer`, else the model's default) and the learning rate used
/// when `--lr` is not given (the model's default for that rule).
pub fn recipe(model: ModelName, optimizer: Option<OptimizerName>) -> Result<(OptimizerName, f32)> {
    use tinycnn_models::OptimizerKind;
    let zoo = zoo_model(model)?;
    let kind = match optimizer {
        Some(OptimizerName::Sgd) => OptimizerKind::Sgd,
        Some(OptimizerName::Adam) => OptimizerKind::Adam,
        None => zoo.default_optimizer(),
    };
    let name = match kind {
        OptimizerKind::Sgd => OptimizerName::Sgd,
        OptimizerKind::Adam => OptimizerName::Adam,
    };
    Ok((name, zoo.default_lr(kind)))
}

/// The configured optimizer over `net`'s parameters.
pub fn optimizer(net: &Sequential, config: &RunConfig) -> Result<Box<dyn Optimizer>> {
    let params = net.parameters();
    Ok(match config.optimizer {
        OptimizerName::Sgd => Box::new(Sgd::new(params, config.lr).map_err(runtime("sgd"))?),
        OptimizerName::Adam => Box::new(Adam::new(params, config.lr).map_err(runtime("adam"))?),
    })
}

/// A state dict as the CLI's named tensors (downloaded from the device it is on).
pub fn to_named(sd: &StateDict) -> Result<Vec<NamedTensor>> {
    sd.iter()
        .map(|(k, t)| {
            Ok(NamedTensor {
                name: k.to_string(),
                shape: t.shape().to_vec(),
                data: t.to_host().map_err(runtime(format!("reading {k}")))?,
            })
        })
        .collect()
}

fn to_state_dict(tensors: &[NamedTensor]) -> Result<StateDict> {
    let mut sd = StateDict::new();
    for t in tensors {
        let tensor = Tensor::from_vec(t.data.clone(), &t.shape).map_err(runtime(&t.name))?;
        sd.insert(t.name.clone(), tensor);
    }
    Ok(sd)
}

/// The parameters under PyTorch's state-dict names.
pub fn params(net: &Sequential) -> Result<Vec<NamedTensor>> {
    to_named(&net.state_dict())
}

/// Replaces every parameter of `net`; names and shapes must match exactly.
pub fn load_params(net: &Sequential, params: &[NamedTensor]) -> Result<()> {
    let expected: Vec<(String, Vec<usize>)> = net
        .state_dict()
        .iter()
        .map(|(k, t)| (k.to_string(), t.shape().to_vec()))
        .collect();
    check_params(&expected, params)?;
    net.load_state_dict(&to_state_dict(params)?)
        .map_err(runtime("loading the weights"))
}

/// Scalar a cuda Adam run of an older tinycnn wrote into its checkpoints instead of Adam's
/// moments; such a checkpoint cannot be resumed exactly.
const LEGACY_CUDA_ADAM_MARKER: &str = "cuda_adam_state_missing";

/// The optimizer's state, for a checkpoint (PyTorch's names: `state.{i}.{slot}`).
pub fn optimizer_state(opt: &dyn Optimizer) -> Result<OptimizerState> {
    Ok(OptimizerState {
        tensors: to_named(&opt.state_dict())?,
        scalars: Vec::new(),
    })
}

/// Restores [`optimizer_state`] output, from a run on either device.
pub fn load_optimizer_state(opt: &mut dyn Optimizer, state: &OptimizerState) -> Result<()> {
    if state
        .scalars
        .iter()
        .any(|(k, _)| k == LEGACY_CUDA_ADAM_MARKER)
    {
        return Err(crate::cli_err!(
            "the checkpoint was written by an Adam run on cuda by an older tinycnn, which did not save Adam's moments; \
             it cannot be resumed exactly (its weights still load: start a new run from them, or retrain)"
        ));
    }
    opt.load_state_dict(&to_state_dict(&state.tensors)?)
        .map_err(runtime("the checkpoint's optimizer state does not fit"))
}

/// Compares a file's tensors with the network's, naming the first key that is missing,
/// unexpected or of another shape.
pub fn check_params(expected: &[(String, Vec<usize>)], got: &[NamedTensor]) -> Result<()> {
    for (name, shape) in expected {
        match got.iter().find(|t| &t.name == name) {
            None => {
                let have: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
                return Err(crate::cli_err!(
                    "key {name} (shape {shape:?}) is missing; the file has {} keys: {}",
                    crate::error::group_thousands(have.len()),
                    crate::error::short_list(&have, 5)
                ));
            }
            Some(t) if &t.shape != shape => {
                return Err(crate::cli_err!(
                    "key {name} has shape {:?} in the file but {shape:?} in the model",
                    t.shape
                ))
            }
            Some(_) => {}
        }
    }
    let extra: Vec<&NamedTensor> = got
        .iter()
        .filter(|t| !expected.iter().any(|(n, _)| *n == t.name))
        .collect();
    if let Some(first) = extra.first() {
        let want: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let names: Vec<&str> = extra.iter().map(|t| t.name.as_str()).collect();
        return Err(crate::cli_err!(
            "key {} (shape {:?}) is not a parameter of the model, which has {}; unexpected keys: {}",
            first.name,
            first.shape,
            crate::error::short_list(&want, 12),
            crate::error::short_list(&names, 3)
        ));
    }
    Ok(())
}

/// One layer of `summary`.
pub struct LayerInfo {
    /// The layer's dotted path in the network (`"3"`, `"3.0"` inside a nested block).
    pub path: String,
    /// PyTorch class name (`Conv2d`, `Sigmoid`, ...).
    pub name: String,
    /// Output shape for a `[1, 1, 28, 28]` input.
    pub output_shape: Vec<usize>,
    /// Number of parameters the layer owns.
    pub params: usize,
}

/// d2l's shape walk: a `[1, 1, 28, 28]` input through each layer in turn. Nested
/// `Sequential`s are walked into, so every leaf layer is listed under its dotted path.
pub fn layer_walk(model: ModelName) -> Result<Vec<LayerInfo>> {
    let net = build_net(model)?;
    // Evaluation mode: batch norm cannot take batch statistics of one image.
    net.eval();
    let x = Tensor::rand(&[1, 1, 28, 28]);
    let mut layers = Vec::new();
    tinycnn::no_grad(|| walk(&net, "", &x, &mut layers)).map_err(runtime("summary"))?;
    Ok(layers)
}

/// Runs `x` through the leaves of `seq` in order, recording each; returns the output.
fn walk(
    seq: &Sequential,
    prefix: &str,
    x: &Tensor,
    out: &mut Vec<LayerInfo>,
) -> tinycnn::Result<Tensor> {
    let mut cur = x.clone();
    for (name, layer) in seq.iter() {
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        cur = match layer.downcast_ref::<Sequential>() {
            Some(inner) => walk(inner, &path, &cur, out)?,
            None => {
                let y = layer.forward(&cur)?;
                out.push(LayerInfo {
                    path,
                    name: layer.type_name(),
                    output_shape: y.shape().to_vec(),
                    params: layer.num_parameters(),
                });
                y
            }
        };
    }
    Ok(cur)
}

/// Images per forward pass of [`Predictor::logits`] on a GPU, so that any number of images
/// fits in its memory.
const DEVICE_BATCH: usize = 256;

/// A trained network for `eval` and `predict`: the lean [`Inference`] path on the CPU, the
/// forward without gradients on a GPU.
pub struct Predictor {
    net: Sequential,
    device: Device,
    /// Compiled on first use for one image shape (`None`: the network does not compile).
    lean: Option<(Vec<usize>, Option<Inference>)>,
}

impl Predictor {
    /// `net` (weights loaded) moved to `device`, in evaluation mode (batch norm uses its
    /// running statistics, dropout is off), as `model.eval()` before testing in PyTorch.
    pub fn new(net: Sequential, device: Device) -> Result<Predictor> {
        net.to(&device)
            .map_err(runtime(format!("moving the model to {device}")))?;
        net.eval();
        Ok(Predictor {
            net,
            device,
            lean: None,
        })
    }

    /// The network.
    pub fn net(&self) -> &Sequential {
        &self.net
    }

    /// Class scores `[N, classes]`, row-major, for images `[N, C, H, W]`.
    pub fn logits(&mut self, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        if self.device == Device::Cpu {
            let image = shape[1..].to_vec();
            if self.lean.as_ref().is_none_or(|(s, _)| *s != image) {
                // Every built-in model compiles; the autograd forward stays as the fallback.
                let lean = Inference::new(&self.net, &image).ok();
                self.lean = Some((image, lean));
            }
            if let Some((_, Some(lean))) = &mut self.lean {
                let x = Tensor::from_vec(images.to_vec(), &shape).map_err(runtime("input"))?;
                return lean.run(&x).map(|y| y.to_vec()).map_err(runtime("forward"));
            }
        }
        let per: usize = shape[1..].iter().product();
        let mut out = Vec::new();
        let _guard = tinycnn::no_grad_guard();
        for part in images.chunks((DEVICE_BATCH * per).max(1)) {
            let mut s = shape;
            s[0] = part.len() / per.max(1);
            let x = Tensor::from_vec(part.to_vec(), &s)
                .and_then(|x| x.to(&self.device))
                .map_err(runtime("input"))?;
            let y = self.net.forward(&x).and_then(|y| y.to_host());
            out.extend(y.map_err(runtime(format!("forward on {}", self.device)))?);
        }
        Ok(out)
    }
}
