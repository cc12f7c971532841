//! `tinycnn`: train LeNet on Fashion-MNIST the way d2l's `train_ch6` does, then evaluate,
//! predict, summarize and export the result.
//!
//! Every failure is a one-line message on stderr and exit code 1. Two endings are not
//! failures: a closed stdout (`tinycnn train | head`) ends the run quietly with status 141,
//! and Ctrl-C during training stops at a safe point with status 130 (see `error::ExitKind`).

mod checkpoint;
mod commands;
mod error;
mod output;
mod picture;
mod plot;
mod report;
mod tensorfile;

use clap::{Args, Parser, Subcommand, ValueEnum};
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
enum Command {
    /// Train a model with d2l's train_ch6 recipe, checkpointing after every epoch.
    Train(TrainArgs),
    /// Test accuracy and the 10x10 confusion matrix of a weight file.
    Eval(EvalArgs),
    /// Classify one PNG picture or one test-set image.
    Predict(PredictArgs),
    /// Each layer's output shape for a [1, 1, 28, 28] input, and parameter counts.
    Summary(SummaryArgs),
    /// Re-save a weight file or a checkpoint as a plain weight file.
    Export(ExportArgs),
}

/// Which network to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelName {
    /// d2l's LeNet: sigmoid activations, average pooling.
    Lenet,
    /// LeNet with ReLU activations and max pooling.
    LenetRelu,
    /// Depthwise-separable CNN with batch norm (keyword-spotting style, ~32k parameters).
    Dscnn,
}

impl ModelName {
    /// The name used on the command line and in file metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Lenet => "lenet",
            ModelName::LenetRelu => "lenet-relu",
            ModelName::Dscnn => "dscnn",
        }
    }

    /// Parses the name stored in file metadata.
    pub fn parse(s: &str) -> Option<ModelName> {
        match s {
            "lenet" => Some(ModelName::Lenet),
            "lenet-relu" | "lenet_relu" => Some(ModelName::LenetRelu),
            "dscnn" => Some(ModelName::Dscnn),
            _ => None,
        }
    }
}

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerName {
    /// Plain SGD (d2l: `torch.optim.SGD(net.parameters(), lr=lr)`).
    Sgd,
    /// Adam with PyTorch's defaults (betas 0.9, 0.999; eps 1e-8).
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
    /// Network [default: lenet]
    #[arg(long, value_enum)]
    pub model: Option<ModelName>,
    /// Total number of epochs (when resuming: the total, including those already done)
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Learning rate [default: the model's: 0.9 for sgd (0.1 for dscnn), 0.001 for adam]
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
    /// Directory holding the four Fashion-MNIST files, used as given (an error names any
    /// missing file). Without it: $TINYCNN_DATA if set (likewise used as given), else
    /// ./data/fashion-mnist, /usr/share/datasets/fashion-mnist, else a download
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
}

/// Arguments of `tinycnn eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Weight file or checkpoint
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Network [default: the one named in the file, else lenet]
    #[arg(long, value_enum)]
    pub model: Option<ModelName>,
    /// Fashion-MNIST directory (see `train --help`)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
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
    /// Weight file or checkpoint
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// A PNG picture of any size and colour
    #[arg(value_name = "IMAGE.png")]
    pub image: Option<PathBuf>,
    /// Classify image N of the Fashion-MNIST test set instead
    #[arg(long, value_name = "N")]
    pub index: Option<usize>,
    /// Network [default: the one named in the file, else lenet]
    #[arg(long, value_enum)]
    pub model: Option<ModelName>,
    /// Fashion-MNIST directory, for --index (see `train --help`)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
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
    /// Network
    #[arg(long, value_enum, default_value_t = ModelName::Lenet)]
    pub model: ModelName,
}

/// Arguments of `tinycnn export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Weight file or checkpoint to read
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Weight file to write (safetensors, f32, PyTorch state-dict names)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Network [default: the one named in the file, else lenet]
    #[arg(long, value_enum)]
    pub model: Option<ModelName>,
}

fn run(cli: Cli) -> error::Result<()> {
    match cli.command {
        Command::Train(a) => commands::train::run(a),
        Command::Eval(a) => commands::eval(a),
        Command::Predict(a) => commands::predict(a),
        Command::Summary(a) => commands::summary(a),
        Command::Export(a) => commands::export(a),
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
            ExitCode::from(e.kind().code())
        }
        Err(_) => ExitCode::from(1),
    }
}
