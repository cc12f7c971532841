//! The network of a run, built by `tinycnn-models` and run by the `tinycnn` runtime on the
//! chosen device: the bridge between the runtime's state dicts and the CLI's files.

use crate::checkpoint::{LoadedWeights, OptimizerState};
use crate::error::{runtime, Result};
use crate::tensorfile::NamedTensor;
use crate::DeviceName;
use crate::OptimizerName;
use std::path::Path;
use tinycnn::nn::arch::Architecture;
use tinycnn::nn::{Graph, Module, Sequential, StateDict};
use tinycnn::optim::Optimizer;
use tinycnn::{Device, Inference, Tensor};
use tinycnn_models::Model;

/// Shape of one image of the data sets (Fashion-MNIST, MNIST), `[channels, height, width]`.
pub const IMAGE_SHAPE: [usize; 3] = [1, 28, 28];
/// Number of classes of the data sets.
pub const CLASSES: usize = 10;

/// The network of a run: its architecture, and the zoo model it is when it is one (then it is
/// built by `tinycnn-models`, as `Sequential`, and files keep its name).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The zoo model, if the network is one.
    pub zoo: Option<Model>,
    /// The layers, as weight files record them.
    pub arch: Architecture,
}

impl ModelSpec {
    /// A model of the zoo.
    pub fn zoo(model: Model) -> Result<ModelSpec> {
        let net = model.build();
        let arch = Architecture::from_module(&net, &model.input_shape())
            .map_err(runtime(format!("the architecture of {}", model.name())))?;
        Ok(ModelSpec {
            zoo: Some(model),
            arch,
        })
    }

    /// What a file records: a zoo name, an architecture, both or neither (`None`). A name
    /// whose architecture differs from the recorded one gives way to the recorded one, which
    /// is what the weights were trained as.
    pub fn recorded(model: Option<Model>, arch: Option<Architecture>) -> Result<Option<ModelSpec>> {
        Ok(match (model, arch) {
            (None, None) => None,
            (Some(m), None) => Some(ModelSpec::zoo(m)?),
            (None, Some(arch)) => Some(ModelSpec { zoo: None, arch }),
            (Some(m), Some(arch)) => {
                let zoo = ModelSpec::zoo(m)?;
                Some(if zoo.arch == arch {
                    zoo
                } else {
                    ModelSpec { zoo: None, arch }
                })
            }
        })
    }

    /// The model a weight file (or checkpoint, or ONNX file) describes; LeNet for an old file
    /// that records nothing.
    pub fn of_weights(weights: &LoadedWeights) -> Result<ModelSpec> {
        match ModelSpec::recorded(weights.model, weights.arch.clone())? {
            Some(spec) => Ok(spec),
            None => ModelSpec::zoo(Model::LeNet),
        }
    }

    /// What `--model` names: a zoo model, or the model a file describes.
    pub fn of_ref(r: &crate::ModelRef) -> Result<ModelSpec> {
        match r {
            crate::ModelRef::Zoo(m) => ModelSpec::zoo(*m),
            crate::ModelRef::File(p) => ModelSpec::of_weights(&crate::checkpoint::load_weights(p)?),
        }
    }

    /// The zoo name, if any (what the `model` metadata holds).
    pub fn name(&self) -> Option<&'static str> {
        self.zoo.map(Model::name)
    }

    /// How messages name the model: the zoo name, else the file it came from, else
    /// "custom model".
    pub fn label(&self, file: Option<&Path>) -> String {
        match (self.zoo, file.and_then(Path::file_name)) {
            (Some(m), _) => m.name().to_string(),
            (None, Some(f)) => f.to_string_lossy().into_owned(),
            (None, None) => "custom model".to_string(),
        }
    }

    /// An untrained network (PyTorch's default layer initialization from the global
    /// generator): the zoo's `Sequential`, or a [`Graph`] of the architecture.
    pub fn build(&self) -> Result<Box<dyn Module>> {
        Ok(match self.zoo {
            Some(m) => Box::new(m.build()),
            None => Box::new(Graph::new(&self.arch).map_err(runtime("cannot build the model"))?),
        })
    }

    /// Refuses a model that cannot classify the data sets' images: other input shapes (3 channels,
    /// 32x32, ...) are not resized, and the class scores must be 10.
    pub fn check_fits_images(&self, label: &str) -> Result<()> {
        if self.arch.input != IMAGE_SHAPE {
            return Err(crate::cli_err!(
                "{label} takes inputs of shape {:?}, but Fashion-MNIST and MNIST images are {IMAGE_SHAPE:?} \
                 (images are not resized or converted)",
                self.arch.input
            ));
        }
        let shapes = self
            .arch
            .node_shapes(1)
            .map_err(runtime(format!("the architecture of {label}")))?;
        let out = shapes.last().expect("an architecture has layers");
        if out != &[1, CLASSES] {
            return Err(crate::cli_err!(
                "{label} outputs shape {out:?} for one image, but the data sets need [1, {CLASSES}] \
                 (a score for each of their {CLASSES} classes)"
            ));
        }
        Ok(())
    }
}

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

/// A freshly initialized network: global generator seeded with `seed`, default layer init,
/// then for a zoo model its own init (d2l's Xavier init for the LeNets, none for dscnn); a
/// model from a file keeps PyTorch's default init. The same seed gives the same weights on
/// every machine.
pub fn init_net(model: &ModelSpec, seed: u64) -> Result<Box<dyn Module>> {
    tinycnn::manual_seed(seed);
    let net = model.build()?;
    if let (Some(zoo), Some(seq)) = (model.zoo, net.as_ref().downcast_ref::<Sequential>()) {
        zoo.init(seq).map_err(runtime("the model's weight init"))?;
    }
    Ok(net)
}

/// Examples per mini-batch when `--batch-size` is not given: the zoo model's default, else
/// d2l's 256.
pub fn default_batch_size(model: &ModelSpec) -> usize {
    model.zoo.map_or(256, |m| m.default_batch_size())
}

/// The update rule (`--optimizer`, else the zoo model's default, else SGD) and the learning
/// rate used when `--lr` is not given (the zoo model's default for that rule, else the
/// rule's own default).
pub fn recipe(model: &ModelSpec, optimizer: Option<OptimizerName>) -> (OptimizerName, f32) {
    use tinycnn_models::OptimizerKind;
    let Some(zoo) = model.zoo else {
        let name = optimizer.unwrap_or(OptimizerName::Sgd);
        return (name, name.default_lr());
    };
    let kind = optimizer.map_or(zoo.default_optimizer(), OptimizerName::kind);
    let name = match kind {
        OptimizerKind::Sgd => OptimizerName::Sgd,
        OptimizerKind::Adam => OptimizerName::Adam,
    };
    (name, zoo.default_lr(kind))
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
pub fn params(net: &dyn Module) -> Result<Vec<NamedTensor>> {
    to_named(&net.state_dict())
}

/// Replaces every parameter of `net`; names and shapes must match exactly.
pub fn load_params(net: &dyn Module, params: &[NamedTensor]) -> Result<()> {
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
    /// The node's name, the prefix of its state-dict keys (`0`, `features.3`).
    pub name: String,
    /// PyTorch class name (`Conv2d`, `Sigmoid`, ...).
    pub kind: &'static str,
    /// The values the layer reads, when not just the previous layer's output (`input`,
    /// a layer's name).
    pub reads: Option<Vec<String>>,
    /// Output shape for one input.
    pub output_shape: Vec<usize>,
    /// Number of parameters the layer owns.
    pub params: usize,
}

/// d2l's shape walk for any architecture: one input `[1, ...]` through each layer in turn
/// (shapes computed from the layers' options), with each layer's parameter count.
pub fn layer_walk(model: &ModelSpec) -> Result<Vec<LayerInfo>> {
    let arch = &model.arch;
    let shapes = arch.node_shapes(1).map_err(runtime("summary"))?;
    let net = model.build()?;
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for (key, p) in net.named_parameters() {
        // Layers are leaves: a key is `<node name>.<tensor name>`.
        let owner = key.rsplit_once('.').map_or(key.as_str(), |(o, _)| o);
        *counts.entry(owner.to_string()).or_default() += p.numel();
    }
    let value_name = |v: usize| match v {
        0 => "input".to_string(),
        v => arch.nodes[v - 1].name.clone(),
    };
    Ok(arch
        .nodes
        .iter()
        .zip(shapes)
        .enumerate()
        .map(|(i, (node, output_shape))| LayerInfo {
            name: node.name.clone(),
            kind: node.layer.type_name(),
            reads: (node.inputs != [i])
                .then(|| node.inputs.iter().map(|&v| value_name(v)).collect()),
            output_shape,
            params: counts.get(&node.name).copied().unwrap_or(0),
        })
        .collect())
}

/// Images per forward pass of [`Predictor::logits`] on a GPU, so that any number of images
/// fits in its memory.
const DEVICE_BATCH: usize = 256;

/// A trained network for `eval` and `predict`: the lean [`Inference`] path on the CPU, the
/// forward without gradients on a GPU.
pub struct Predictor {
    net: Box<dyn Module>,
    device: Device,
    /// Compiled on first use for one image shape (`None`: the network does not compile).
    lean: Option<(Vec<usize>, Option<Inference>)>,
}

impl Predictor {
    /// `net` (weights loaded) moved to `device`.
    pub fn new(net: Box<dyn Module>, device: Device) -> Result<Predictor> {
        // Evaluation mode, as PyTorch users call `net.eval()` before inference: BatchNorm
        // uses its running statistics and Dropout passes its input through.
        net.eval();
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
    pub fn net(&self) -> &dyn Module {
        self.net.as_ref()
    }

    /// Class scores `[N, classes]`, row-major, for images `[N, C, H, W]`.
    pub fn logits(&mut self, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        if self.device == Device::Cpu {
            let image = shape[1..].to_vec();
            if self.lean.as_ref().is_none_or(|(s, _)| *s != image) {
                // Every zoo model (a Sequential) compiles; a Graph, or a Sequential that does
                // not compile, runs the forward without gradients below.
                let lean = self
                    .net
                    .as_ref()
                    .downcast_ref::<Sequential>()
                    .and_then(|seq| Inference::new(seq, &image).ok());
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
