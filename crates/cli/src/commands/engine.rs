//! The two places a network can run, behind one interface: the tinycnn runtime on the CPU
//! (autograd, `nn::Sequential`, `optim`) and the tinycnn-cuda executor on a GPU.

use crate::checkpoint::{OptimizerState, RunConfig};
use crate::error::Result;
use crate::tensorfile::NamedTensor;
use crate::{DeviceName, ModelName, OptimizerName};
use tinycnn::nn::{init, Conv2d, Linear, Module, Sequential, StateDict};
use tinycnn::optim::{Adam, Optimizer, Sgd};
use tinycnn::Tensor;

/// What one training step reports.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// Mean cross-entropy of the batch (before the update, as d2l's `l`).
    pub loss: f32,
    /// Rows whose arg-max is the label (d2l's `accuracy(y_hat, y)`).
    pub correct: usize,
}

/// A network with (for training) its optimizer.
pub trait Engine {
    /// `cpu` or `cuda`, for d2l's `training on ...` and `... examples/sec on ...` lines.
    fn device_name(&self) -> &'static str;
    /// Forward, cross-entropy, backward and one optimizer step on a batch `[N, 1, 28, 28]`.
    fn train_step(&mut self, images: &[f32], shape: [usize; 4], labels: &[u32]) -> Result<Step>;
    /// Class scores `[N, 10]`, row-major, without recording gradients.
    fn logits(&mut self, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>>;
    /// The parameters under PyTorch's state-dict names.
    fn params(&self) -> Result<Vec<NamedTensor>>;
    /// Replaces every parameter; names and shapes must match exactly.
    fn load_params(&mut self, params: &[NamedTensor]) -> Result<()>;
    /// The optimizer's state, for a checkpoint.
    fn optimizer_state(&self) -> Result<OptimizerState>;
    /// Restores [`Engine::optimizer_state`] output.
    fn load_optimizer_state(&mut self, state: &OptimizerState) -> Result<()>;
}

fn rt<T>(r: tinycnn::Result<T>) -> Result<T> {
    r.map_err(|e| crate::cli_err!("{e}"))
}

/// Sets the CPU kernels' thread count.
pub fn set_num_threads(n: usize) -> Result<()> {
    rt(tinycnn::set_num_threads(n))
}

/// The untrained network (PyTorch's default layer initialization from the global generator).
pub fn build_net(model: ModelName) -> Result<Sequential> {
    let name = model.as_str();
    rt(tinycnn_models::build_by_name(name)).map_err(|e| crate::cli_err!("cannot build {name}: {e}"))
}

/// d2l's `init_weights`: `xavier_uniform_` on the weight of every `Linear` and `Conv2d`;
/// biases keep the layer's default initialization.
fn xavier_init(net: &Sequential) -> Result<()> {
    rt(net.apply(&mut |m| {
        if let Some(l) = m.downcast_ref::<Linear>() {
            init::xavier_uniform_(&l.weight, 1.0)?;
        } else if let Some(c) = m.downcast_ref::<Conv2d>() {
            init::xavier_uniform_(&c.weight, 1.0)?;
        }
        Ok(())
    }))
}

/// A freshly initialized network: global generator seeded with `seed`, default layer init,
/// then d2l's Xavier init. The same seed gives the same weights on every machine.
pub fn init_net(model: ModelName, seed: u64) -> Result<Sequential> {
    tinycnn::manual_seed(seed);
    let net = build_net(model)?;
    xavier_init(&net)?;
    Ok(net)
}

fn to_named(sd: &StateDict) -> Vec<NamedTensor> {
    sd.iter()
        .map(|(k, t)| NamedTensor {
            name: k.to_string(),
            shape: t.shape().to_vec(),
            data: t.to_vec(),
        })
        .collect()
}

fn to_state_dict(tensors: &[NamedTensor]) -> Result<StateDict> {
    let mut sd = StateDict::new();
    for t in tensors {
        sd.insert(
            t.name.clone(),
            rt(Tensor::from_vec(t.data.clone(), &t.shape))?,
        );
    }
    Ok(sd)
}

/// Compares a file's tensors with the network's, naming the first key that is missing,
/// unexpected or of another shape.
pub fn check_params(expected: &[(String, Vec<usize>)], got: &[NamedTensor]) -> Result<()> {
    for (name, shape) in expected {
        match got.iter().find(|t| &t.name == name) {
            None => {
                let have: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
                return Err(crate::cli_err!(
                    "key {name} (shape {shape:?}) is missing; the file has {have:?}"
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
    if let Some(extra) = got
        .iter()
        .find(|t| !expected.iter().any(|(n, _)| *n == t.name))
    {
        let want: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        return Err(crate::cli_err!(
            "key {} (shape {:?}) is not a parameter of the model, which has {want:?}",
            extra.name,
            extra.shape
        ));
    }
    Ok(())
}

/// Counts rows of `logits` (`[N, 10]`) whose arg-max equals the label.
pub fn count_correct(logits: &[f32], labels: &[u32]) -> usize {
    logits
        .chunks_exact(10)
        .zip(labels)
        .filter(|(row, &l)| crate::report::argmax(row) == l as usize)
        .count()
}

/// One layer of `summary`.
pub struct LayerInfo {
    /// PyTorch class name (`Conv2d`, `Sigmoid`, ...).
    pub name: String,
    /// Output shape for a `[1, 1, 28, 28]` input.
    pub output_shape: Vec<usize>,
    /// Number of parameters the layer owns.
    pub params: usize,
}

/// d2l's shape walk: a `[1, 1, 28, 28]` input through each layer in turn.
pub fn layer_walk(model: ModelName) -> Result<Vec<LayerInfo>> {
    let net = build_net(model)?;
    let x = Tensor::rand(&[1, 1, 28, 28]);
    let outs = rt(tinycnn::no_grad(|| net.forward_trace(&x)))?;
    Ok(net
        .iter()
        .zip(outs)
        .map(|((_, layer), out)| LayerInfo {
            name: layer.type_name(),
            output_shape: out.shape().to_vec(),
            params: layer.num_parameters(),
        })
        .collect())
}

/// The CPU engine: the tinycnn runtime.
pub struct CpuEngine {
    net: Sequential,
    optimizer: Option<Box<dyn Optimizer>>,
}

impl CpuEngine {
    fn new(net: Sequential, config: Option<&RunConfig>) -> Result<CpuEngine> {
        let optimizer: Option<Box<dyn Optimizer>> = match config {
            None => None,
            Some(c) => Some(match c.optimizer {
                OptimizerName::Sgd => Box::new(rt(Sgd::new(net.parameters(), c.lr))?),
                OptimizerName::Adam => Box::new(rt(Adam::new(net.parameters(), c.lr))?),
            }),
        };
        Ok(CpuEngine { net, optimizer })
    }

    fn input(images: &[f32], shape: [usize; 4]) -> Result<Tensor> {
        rt(Tensor::from_vec(images.to_vec(), &shape))
    }
}

impl Engine for CpuEngine {
    fn device_name(&self) -> &'static str {
        "cpu"
    }

    fn train_step(&mut self, images: &[f32], shape: [usize; 4], labels: &[u32]) -> Result<Step> {
        let opt = self
            .optimizer
            .as_mut()
            .ok_or_else(|| crate::cli_err!("this network was loaded for inference only"))?;
        let x = Self::input(images, shape)?;
        opt.zero_grad();
        let y_hat = rt(self.net.forward(&x))?;
        let l = rt(y_hat.cross_entropy(labels))?;
        let loss = rt(l.item())?;
        if !loss.is_finite() {
            // Report before the update; the caller stops here.
            return Ok(Step { loss, correct: 0 });
        }
        rt(l.backward())?;
        rt(opt.step())?;
        let correct = rt(tinycnn::nn::accuracy(&y_hat, labels))?;
        Ok(Step { loss, correct })
    }

    fn logits(&mut self, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        let x = Self::input(images, shape)?;
        let y = rt(tinycnn::no_grad(|| self.net.forward(&x)))?;
        Ok(y.to_vec())
    }

    fn params(&self) -> Result<Vec<NamedTensor>> {
        Ok(to_named(&self.net.state_dict()))
    }

    fn load_params(&mut self, params: &[NamedTensor]) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> = self
            .net
            .state_dict()
            .iter()
            .map(|(k, t)| (k.to_string(), t.shape().to_vec()))
            .collect();
        check_params(&expected, params)?;
        rt(self.net.load_state_dict(&to_state_dict(params)?))
    }

    fn optimizer_state(&self) -> Result<OptimizerState> {
        let opt = self
            .optimizer
            .as_ref()
            .ok_or_else(|| crate::cli_err!("no optimizer"))?;
        Ok(OptimizerState {
            tensors: to_named(&opt.state_dict()),
            scalars: Vec::new(),
        })
    }

    fn load_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let opt = self
            .optimizer
            .as_mut()
            .ok_or_else(|| crate::cli_err!("no optimizer"))?;
        if state
            .scalars
            .iter()
            .any(|(k, _)| k == "cuda_adam_state_missing")
        {
            return Err(crate::cli_err!(
                "the checkpoint was written by an Adam run on cuda, which cannot export Adam's moments; it cannot be resumed exactly"
            ));
        }
        rt(opt.load_state_dict(&to_state_dict(&state.tensors)?))
            .map_err(|e| crate::cli_err!("the checkpoint's optimizer state does not fit: {e}"))
    }
}

/// A network for training: fresh weights from `config.seed` (replaced by the checkpoint's
/// when resuming) and the configured optimizer.
pub fn create(device: DeviceName, config: &RunConfig) -> Result<Box<dyn Engine>> {
    let net = init_net(config.model, config.seed)?;
    match device {
        DeviceName::Cpu => Ok(Box::new(CpuEngine::new(net, Some(config))?)),
        DeviceName::Cuda => cuda::create(config, &to_named(&net.state_dict())),
    }
}

/// A network for inference (weights loaded by the caller).
pub fn create_for_inference(device: DeviceName, model: ModelName) -> Result<Box<dyn Engine>> {
    match device {
        DeviceName::Cpu => Ok(Box::new(CpuEngine::new(build_net(model)?, None)?)),
        DeviceName::Cuda => Err(crate::cli_err!(
            "inference on cuda is not wired; use the cpu"
        )),
    }
}

mod cuda {
    //! The GPU engine: tinycnn-cuda's `CudaSequential`. The initial weights come from the CPU
    //! network (same seed, same weights on both devices).

    use super::*;
    use std::sync::Arc;
    use tinycnn_cuda::net::{CudaSequential, Layer, Optimizer as CudaOptimizer};
    use tinycnn_cuda::CudaDevice;
    use tinycnn_kernels::{AdamConfig, Conv2dParams, Pool2dParams, SgdConfig};

    fn layers(model: ModelName) -> Vec<Layer> {
        match model {
            ModelName::Lenet => tinycnn_cuda::net::lenet(),
            ModelName::LenetRelu => vec![
                Layer::Conv2d {
                    params: Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
                    bias: true,
                },
                Layer::ReLU,
                Layer::MaxPool2d(Pool2dParams::new(2)),
                Layer::Conv2d {
                    params: Conv2dParams::new(6, 16, (5, 5)),
                    bias: true,
                },
                Layer::ReLU,
                Layer::MaxPool2d(Pool2dParams::new(2)),
                Layer::Flatten,
                Layer::Linear {
                    in_features: 16 * 5 * 5,
                    out_features: 120,
                    bias: true,
                },
                Layer::ReLU,
                Layer::Linear {
                    in_features: 120,
                    out_features: 84,
                    bias: true,
                },
                Layer::ReLU,
                Layer::Linear {
                    in_features: 84,
                    out_features: 10,
                    bias: true,
                },
            ],
        }
    }

    fn cu<T>(r: tinycnn_cuda::Result<T>) -> Result<T> {
        r.map_err(|e| crate::cli_err!("cuda: {e}"))
    }

    pub struct CudaEngine {
        // Keeps the context alive as long as the network.
        _dev: Arc<CudaDevice>,
        net: CudaSequential,
        optimizer: CudaOptimizer,
        name: OptimizerName,
    }

    pub fn create(config: &RunConfig, init: &[NamedTensor]) -> Result<Box<dyn Engine>> {
        let dev = CudaDevice::new(0).map_err(|e| {
            crate::cli_err!("--device cuda: no usable NVIDIA GPU ({e}); use --device cpu")
        })?;
        let mut net = cu(CudaSequential::new(
            &dev,
            layers(config.model),
            [1, 28, 28],
            config.batch_size,
        ))?;
        let state: Vec<_> = init
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.data.clone()))
            .collect();
        cu(net.import_state_dict(&state))?;
        let optimizer = match config.optimizer {
            OptimizerName::Sgd => CudaOptimizer::Sgd(SgdConfig::new(config.lr)),
            OptimizerName::Adam => CudaOptimizer::Adam(AdamConfig::new(config.lr)),
        };
        Ok(Box::new(CudaEngine {
            _dev: dev,
            net,
            optimizer,
            name: config.optimizer,
        }))
    }

    impl Engine for CudaEngine {
        fn device_name(&self) -> &'static str {
            "cuda"
        }

        fn train_step(
            &mut self,
            images: &[f32],
            _shape: [usize; 4],
            labels: &[u32],
        ) -> Result<Step> {
            // The executor's step returns only the loss; the accuracy of the same
            // (pre-update) predictions needs the logits, hence one extra forward pass.
            let logits = cu(self.net.forward(images))?;
            let correct = count_correct(&logits, labels);
            let loss = cu(self.net.train_step(images, labels, &self.optimizer))?;
            Ok(Step { loss, correct })
        }

        fn logits(&mut self, images: &[f32], _shape: [usize; 4]) -> Result<Vec<f32>> {
            cu(self.net.forward(images))
        }

        fn params(&self) -> Result<Vec<NamedTensor>> {
            Ok(cu(self.net.export_state_dict())?
                .into_iter()
                .map(|(name, shape, data)| NamedTensor { name, shape, data })
                .collect())
        }

        fn load_params(&mut self, params: &[NamedTensor]) -> Result<()> {
            check_params(&self.net.param_specs(), params)?;
            let state: Vec<_> = params
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone(), t.data.clone()))
                .collect();
            cu(self.net.import_state_dict(&state))
        }

        fn optimizer_state(&self) -> Result<OptimizerState> {
            // Plain SGD keeps no state. The executor does not export Adam's moments, so a
            // cuda Adam checkpoint records that they are missing and refuses to resume.
            let mut s = OptimizerState::default();
            if self.name == OptimizerName::Adam {
                s.scalars.push(("cuda_adam_state_missing".to_string(), 1.0));
            }
            Ok(s)
        }

        fn load_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
            match self.name {
                OptimizerName::Sgd if state.tensors.is_empty() => Ok(()),
                OptimizerName::Sgd => Err(crate::cli_err!("the checkpoint holds optimizer buffers plain SGD does not use")),
                OptimizerName::Adam => Err(crate::cli_err!(
                    "resuming Adam on cuda is not supported: the GPU executor cannot import Adam's moments; resume with --device cpu"
                )),
            }
        }
    }
}
