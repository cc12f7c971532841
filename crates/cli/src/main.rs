//! `tinycnn`: train LeNet on Fashion-MNIST the way d2l's `train_ch6` does, then evaluate,
//! predict, summarize and export the result.
//!
//! Every failure is a one-line message on stderr and exit code 1. Two endings are not
//! failures: a closed stdout (`tinycnn train | head`) ends the run quietly with status 141,
//! and Ctrl-C during training stops at a safe point with status 130 (see `error::ExitKind`).

mod checkpoint;
mod commands;
mod distributed;
mod error;
mod output;
mod picture;
mod plot;
mod recipe;
mod report;
mod tensorfile;

use clap::{Args, Parser, Subcommand, ValueEnum};
use recipe::{AugmentName, DatasetName, ScheduleName};
use std::path::PathBuf;
use std::process::ExitCode;

/// Train, evaluate and inspect LeNet on Fashion-MNIST (d2l chapter 6, in Rust).
#[derive(Parser, Debug)]
#[command(name = "tinycnn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process: its size does not matter
enum Command {
    /// Train a model with d2l's train_ch6 recipe, checkpointing after every epoch.
    Train(TrainArgs),
    /// Test accuracy and the 10x10 confusion matrix of a weight file.
    Eval(EvalArgs),
    /// Classify one PNG picture or one test-set image.
    Predict(PredictArgs),
    /// Each layer's name, type, output shape for one input, and parameter counts.
    Summary(SummaryArgs),
    /// Re-save a weight file, a checkpoint or an ONNX model as a weight file or as ONNX.
    Export(ExportArgs),
    /// Compile a model into a static plan for a microcontroller (f32 or int8) and measure it.
    Deploy(DeployArgs),
}

/// What `--model` names: a model of the zoo (`tinycnn_models::Model`) or a file that
/// describes one (a tinycnn weight file recording its architecture, or an ONNX model).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// A built-in model, by name.
    Zoo(tinycnn_models::Model),
    /// A `.onnx` file or a tinycnn safetensors weight file or checkpoint.
    File(PathBuf),
}

impl std::str::FromStr for ModelRef {
    type Err = String;
    /// A zoo name first; anything that looks like a path (a separator or an extension) is a
    /// file, checked when it is read.
    fn from_str(s: &str) -> Result<ModelRef, String> {
        if let Ok(m) = tinycnn_models::by_name(s) {
            return Ok(ModelRef::Zoo(m));
        }
        let path = PathBuf::from(s);
        if s.contains(std::path::MAIN_SEPARATOR) || s.contains('/') || path.extension().is_some() {
            return Ok(ModelRef::File(path));
        }
        let known: Vec<&str> = tinycnn_models::Model::ALL
            .iter()
            .map(|m| m.name())
            .collect();
        Err(format!(
            "unknown model `{s}` (known: {}; or a .onnx or .safetensors file)",
            known.join(", ")
        ))
    }
}

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerName {
    /// SGD (d2l: `torch.optim.SGD(net.parameters(), lr=lr)`; --momentum, --nesterov,
    /// --weight-decay as in PyTorch).
    Sgd,
    /// Adam with PyTorch's defaults (betas 0.9, 0.999; eps 1e-8); --weight-decay is
    /// torch.optim.Adam's L2 penalty, not AdamW's decoupled decay.
    Adam,
}

impl OptimizerName {
    /// The name used on the command line and in checkpoints.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerName::Sgd => "sgd",
            OptimizerName::Adam => "adam",
        }
    }

    /// The models crate's name of the rule.
    pub fn kind(self) -> tinycnn_models::OptimizerKind {
        match self {
            OptimizerName::Sgd => tinycnn_models::OptimizerKind::Sgd,
            OptimizerName::Adam => tinycnn_models::OptimizerKind::Adam,
        }
    }

    /// The learning rate used when `--lr` is not given.
    pub fn default_lr(self) -> f32 {
        match self {
            OptimizerName::Sgd => 0.9,
            OptimizerName::Adam => 0.001,
        }
    }
}

/// Where the arithmetic runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceName {
    /// The CPU kernels (all cores unless `--threads`).
    Cpu,
    /// An NVIDIA GPU through tinycnn-cuda.
    Cuda,
}

impl DeviceName {
    /// Printed in d2l's `... examples/sec on cpu` line.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceName::Cpu => "cpu",
            DeviceName::Cuda => "cuda",
        }
    }
}

/// Arguments of `tinycnn train`. The options left unset take their value from the checkpoint
/// when resuming, else the defaults shown.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Network: a zoo name (lenet, lenet-relu, ...) or a model file (.onnx, or a weight file that
    /// records its architecture), fine-tuned from its weights unless --init [default: lenet]
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<ModelRef>,
    /// With --model FILE: start from a fresh PyTorch-default initialization of the file's
    /// architecture instead of its weights
    #[arg(long)]
    pub init: bool,
    /// Total number of epochs (when resuming: the total, including those already done)
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Learning rate [default: the model's: 0.9 for sgd (0.1 for dscnn), 0.001 for adam
    /// (0.005 for dscnn, the peak of its one-cycle schedule)]
    #[arg(long)]
    pub lr: Option<f32>,
    /// Examples per mini-batch [default: the model's: 256 (128 for dscnn)]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Update rule [default: the model's: sgd for lenet and lenet-relu, adam for dscnn]
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerName>,
    /// Seed of the weight initialization and of the per-epoch shuffles [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads of the CPU kernels [default: all cores]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Directory holding the data set's four IDX files, used as given (an error names any
    /// missing file). Without it: $TINYCNN_DATA (Fashion-MNIST) or $TINYCNN_MNIST_DATA
    /// (MNIST) if set (likewise used as given), else ./data/<fashion-mnist|mnist>,
    /// /usr/share/datasets/<fashion-mnist|mnist>, else a download checked against the
    /// published MD5 sums
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Trained weights (PyTorch state-dict names) [default: <model>.safetensors]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Checkpoint written after every epoch [default: <out without .safetensors>.ckpt.safetensors]
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Write d2l's training curves (train loss, train acc, test acc) as SVG
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Continue from a checkpoint written by an earlier run
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// Where to compute
    #[arg(long, value_enum, default_value_t = DeviceName::Cpu)]
    pub device: DeviceName,
    /// Data set [default: the one a --model FILE names, else fashion-mnist]
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,
    /// SGD momentum, as torch.optim.SGD's; replaces the model's momentum and Nesterov both
    /// [default: the model's: 0 (0.9 with Nesterov for dscnn)]
    #[arg(long)]
    pub momentum: Option<f32>,
    /// SGD Nesterov momentum (needs --momentum above 0)
    #[arg(long)]
    pub nesterov: bool,
    /// L2 penalty added to the gradient, as torch.optim.SGD and torch.optim.Adam do (for
    /// Adam this is not AdamW's decoupled weight decay) [default: the model's: 0 (5e-4 for
    /// dscnn with sgd)]
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule, as torch.optim.lr_scheduler's; step and cosine step after
    /// each epoch, onecycle after each batch [default: the model's: none (for dscnn:
    /// onecycle with adam, cosine with sgd)]
    #[arg(long, value_enum)]
    pub lr_schedule: Option<ScheduleName>,
    /// step: epochs between decays (StepLR's step_size)
    #[arg(long, value_name = "EPOCHS")]
    pub step_size: Option<u64>,
    /// step: factor of each decay [default: 0.1]
    #[arg(long)]
    pub gamma: Option<f64>,
    /// cosine: the final learning rate (CosineAnnealingLR's eta_min) [default: 0]
    #[arg(long)]
    pub min_lr: Option<f64>,
    /// cosine, onecycle: the epochs the schedule spans (T_max; total_steps = EPOCHS x
    /// batches), so a run can stop before its end and be resumed [default: --epochs]
    #[arg(long, value_name = "EPOCHS")]
    pub schedule_epochs: Option<usize>,
    /// Scale the gradients down to a total L2 norm of MAX before each update
    /// (torch.nn.utils.clip_grad_norm_)
    #[arg(long, value_name = "MAX")]
    pub clip_grad_norm: Option<f32>,
    /// Augment the training batches: crop, flip, crop,flip or none (seeded by --seed, new
    /// choices every epoch, the same on every device) [default: the model's: none (flip for
    /// dscnn)]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub augment: Vec<AugmentName>,
    /// crop: zeros added on each side before the random crop [default: 4]
    #[arg(long, value_name = "P")]
    pub crop_padding: Option<usize>,
    /// Data-parallel training when started as `mpirun -np N tinycnn train ...` (each rank
    /// takes its slice of every batch; rank 0 prints and writes the files)
    #[arg(long, value_enum, default_value_t = distributed::DistributedMode::Auto)]
    pub distributed: distributed::DistributedMode,
}

/// Arguments of `tinycnn eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Weight file, checkpoint or .onnx model
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Network: a zoo name or a model file whose architecture the weights must fit
    /// [default: the one the file records, else lenet]
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<ModelRef>,
    /// Data set directory (see `train --help`)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Data set [default: the one named in the file, else fashion-mnist]
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,
    /// Examples per forward pass
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Worker threads of the CPU kernels [default: all cores]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where to compute
    #[arg(long, value_enum, default_value_t = DeviceName::Cpu)]
    pub device: DeviceName,
}

/// Arguments of `tinycnn predict`.
#[derive(Args, Debug, Clone)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["image", "index"]))]
pub struct PredictArgs {
    /// Weight file, checkpoint or .onnx model
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// A PNG picture of any size and colour
    #[arg(value_name = "IMAGE.png")]
    pub image: Option<PathBuf>,
    /// Classify image N of the test set instead
    #[arg(long, value_name = "N")]
    pub index: Option<usize>,
    /// Network: a zoo name or a model file whose architecture the weights must fit
    /// [default: the one the file records, else lenet]
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<ModelRef>,
    /// Data set directory, for --index (see `train --help`)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Data set: the test set of --index and the class names [default: the one named in
    /// the file, else fashion-mnist]
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,
    /// Negate the gray values of the PNG (Fashion-MNIST is a light object on black);
    /// auto: when the picture's border is light
    #[arg(long, value_enum, default_value_t = picture::Invert::Auto)]
    pub invert: picture::Invert,
    /// Where to compute
    #[arg(long, value_enum, default_value_t = DeviceName::Cpu)]
    pub device: DeviceName,
}

/// Arguments of `tinycnn summary`.
#[derive(Args, Debug, Clone)]
pub struct SummaryArgs {
    /// Network: a zoo name or a model file (.onnx, or a weight file recording its architecture)
    #[arg(long, value_name = "NAME|FILE", default_value = "lenet")]
    pub model: ModelRef,
}

/// Arguments of `tinycnn export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Weight file, checkpoint or .onnx model to read
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// File to write: ONNX when it ends in .onnx, else a weight file (safetensors, f32,
    /// PyTorch state-dict names, the architecture in its metadata)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Network: a zoo name or a model file whose architecture the weights must fit
    /// [default: the one the file records, else lenet]
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<ModelRef>,
}

/// Arguments of `tinycnn deploy`.
#[derive(Args, Debug, Clone)]
#[command(group = clap::ArgGroup::new("precision").required(true).args(["int8", "f32"]))]
pub struct DeployArgs {
    /// Weight file, checkpoint or .onnx model
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Network: a zoo name or a model file whose architecture the weights must fit
    /// [default: the one the file records, else lenet]
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<ModelRef>,
    /// int8 weights (per output channel) and activations (per tensor), i32 accumulators
    #[arg(long)]
    pub int8: bool,
    /// f32 weights and activations
    #[arg(long)]
    pub f32: bool,
    /// Training images whose activation ranges set the int8 scales
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub calibration: usize,
    /// Directory to write: plan.bin (the plan with its weights) and summary.txt
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Data set directory (see `train --help`): calibration and test images
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Data set [default: the one named in the file, else fashion-mnist]
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetName>,
}

fn run(cli: Cli) -> error::Result<()> {
    match cli.command {
        Command::Train(a) => commands::train::run(a),
        Command::Eval(a) => commands::eval(a),
        Command::Predict(a) => commands::predict(a),
        Command::Summary(a) => commands::summary(a),
        Command::Export(a) => commands::export(a),
        Command::Deploy(a) => commands::deploy::run(a),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with success; usage errors exit 1 (clap's own
            // convention is 2) so that every failure of the tool has the same code.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A panic is a bug, but the user still gets one line and exit code 1, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error (please report): {msg}{at}");
    }));
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            match e.kind() {
                error::ExitKind::Failure => eprintln!("error: {e}"),
                error::ExitKind::Interrupted => eprintln!("{e}"),
                error::ExitKind::BrokenPipe => {}
            }
            // One rank of an MPI job: the others would wait for this one forever.
            distributed::abort_job();
            ExitCode::from(e.kind().code())
        }
        Err(_) => {
            distributed::abort_job();
            ExitCode::from(1)
        }
    }
}
