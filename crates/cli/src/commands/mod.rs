//! The subcommands.

pub mod model;
pub mod train;

use crate::checkpoint::{load_weights, save_weights};
use crate::error::{runtime, Result};
use crate::picture;
use crate::report::{argmax, render_prediction, softmax, ConfusionMatrix, CLASS_NAMES};
use crate::{DeviceName, EvalArgs, ExportArgs, ModelName, PredictArgs, SummaryArgs};
use std::path::Path;
use tinycnn::data::{DataLoader, Dataset, FashionMnist, LoaderConfig};

/// Loads Fashion-MNIST from `--data DIR` or the default places (see `train --help`).
pub fn load_data(dir: Option<&Path>) -> Result<Dataset> {
    let data =
        FashionMnist::load(dir).map_err(|e| crate::cli_err!("cannot load Fashion-MNIST: {e}"))?;
    if data.num_classes() != 10 {
        return Err(crate::cli_err!(
            "{}: expected 10 classes, found {}",
            data.dir.display(),
            data.num_classes()
        ));
    }
    if data.train.rows != 28
        || data.train.cols != 28
        || data.test.rows != 28
        || data.test.cols != 28
    {
        return Err(crate::cli_err!(
            "{}: images are {}x{}, LeNet needs 28x28",
            data.dir.display(),
            data.train.rows,
            data.train.cols
        ));
    }
    Ok(data)
}

/// Applies `--threads` (1 to `tinycnn::parallel::MAX_THREADS`, 1024: each is an OS thread
/// started at once).
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        let max = tinycnn::parallel::MAX_THREADS;
        if !(1..=max).contains(&n) {
            return Err(crate::cli_err!(
                "--threads must be between 1 and {max}, got {n}"
            ));
        }
        tinycnn::set_num_threads(n).map_err(runtime("--threads"))?;
    }
    Ok(())
}

/// Picks the model: `--model` if given, else the file's metadata, else LeNet. A `--model`
/// that contradicts the metadata is an error, since LeNet and its ReLU variant have the same
/// tensor shapes and the mistake would otherwise go unnoticed.
fn pick_model(
    flag: Option<ModelName>,
    in_file: Option<ModelName>,
    path: &Path,
) -> Result<ModelName> {
    match (flag, in_file) {
        (Some(f), Some(m)) if f != m => Err(crate::cli_err!(
            "{} holds a {} model but --model {} was given",
            path.display(),
            m.as_str(),
            f.as_str()
        )),
        (Some(f), _) => Ok(f),
        (None, Some(m)) => Ok(m),
        (None, None) => Ok(ModelName::Lenet),
    }
}

/// Builds the model, loads a weight file (or checkpoint) into it and puts it on `device`.
fn load_model(
    path: &Path,
    flag: Option<ModelName>,
    device: DeviceName,
) -> Result<(ModelName, model::Predictor)> {
    // A missing GPU is reported before the file is read.
    let device = model::device(device)?;
    let weights = load_weights(path)?;
    let name = pick_model(flag, weights.model, path)?;
    let net = model::build_net(name)?;
    model::load_params(&net, &weights.params)
        .map_err(|e| crate::cli_err!("{} does not fit {}: {e}", path.display(), name.as_str()))?;
    Ok((name, model::Predictor::new(net, device)?))
}

/// `tinycnn eval`.
pub fn eval(args: EvalArgs) -> Result<()> {
    if args.batch_size == 0 {
        return Err(crate::cli_err!("--batch-size must be at least 1"));
    }
    set_threads(args.threads)?;
    let (model, mut net) = load_model(&args.weights, args.model, args.device)?;
    let data = load_data(args.data.as_deref())?;
    let loader = DataLoader::from_split(
        &data.test,
        LoaderConfig {
            batch_size: args.batch_size,
            shuffle: false,
            seed: 0,
            drop_last: false,
            prefetch: 2,
        },
    )
    .map_err(|e| crate::cli_err!("{e}"))?;
    let mut matrix = ConfusionMatrix::new();
    for batch in loader.epoch(0) {
        let logits = net.logits(&batch.images, batch.shape)?;
        for (row, &label) in logits.chunks_exact(10).zip(&batch.labels) {
            matrix.add(label as usize, argmax(row));
        }
    }
    crate::outln!(
        "{} on {} test images of {}: test acc {:.3} ({} of {})",
        model.as_str(),
        matrix.total(),
        data.dir.display(),
        matrix.accuracy(),
        matrix.correct(),
        matrix.total()
    )?;
    crate::out!("{}", matrix.render())?;
    Ok(())
}

/// `tinycnn predict`.
pub fn predict(args: PredictArgs) -> Result<()> {
    let (model, mut net) = load_model(&args.weights, args.model, args.device)?;
    let pixels = match (&args.image, args.index) {
        (Some(path), None) => {
            let p = picture::load_png(path, args.invert)?;
            crate::outln!(
                "{}: {}x{} -> 28x28 gray{}",
                path.display(),
                p.original.0,
                p.original.1,
                if p.inverted {
                    ", inverted (dark object on light background)"
                } else {
                    ", not inverted"
                }
            )?;
            p.pixels
        }
        (None, Some(index)) => {
            let data = load_data(args.data.as_deref())?;
            let image = data.test.image(index).ok_or_else(|| {
                crate::cli_err!(
                    "--index {index} is out of range: the test set has {} images",
                    data.test.len()
                )
            })?;
            let label = data.test.labels[index] as usize;
            crate::outln!(
                "test image {index} of {}: true class {}",
                data.dir.display(),
                CLASS_NAMES[label]
            )?;
            image.to_vec()
        }
        _ => return Err(crate::cli_err!("give either IMAGE.png or --index N")),
    };
    let logits = net.logits(&pixels, [1, 1, 28, 28])?;
    let probs = softmax(&logits);
    crate::outln!("model {}", model.as_str())?;
    crate::out!("predicted: {}", render_prediction(&probs))?;
    Ok(())
}

/// `tinycnn summary`.
pub fn summary(args: SummaryArgs) -> Result<()> {
    let layers = model::layer_walk(args.model)?;
    // A flat network prints d2l's lines; a nested one puts each leaf's dotted path first.
    let nested = layers.iter().any(|l| l.path.contains('.'));
    let path_width = layers.iter().map(|l| l.path.len()).max().unwrap_or(0);
    let heads: Vec<String> = layers
        .iter()
        .map(|l| {
            let head = format!("{} output shape: {:?}", l.name, l.output_shape);
            if nested {
                format!("{:<path_width$}  {head}", l.path)
            } else {
                head
            }
        })
        .collect();
    let width = heads.iter().map(String::len).max().unwrap_or(0);
    let mut total = 0usize;
    crate::outln!("{} for input [1, 1, 28, 28]", args.model.as_str())?;
    for (l, head) in layers.iter().zip(&heads) {
        if l.params > 0 {
            crate::outln!("{head:<width$}  {} params", l.params)?;
        } else {
            crate::outln!("{head}")?;
        }
        total += l.params;
    }
    crate::outln!("total params: {total}")?;
    Ok(())
}

/// `tinycnn export`.
pub fn export(args: ExportArgs) -> Result<()> {
    let (model, net) = load_model(&args.weights, args.model, DeviceName::Cpu)?;
    let params = model::params(net.net())?;
    save_weights(&args.out, model, &params)?;
    let count: usize = params.iter().map(|t| t.data.len()).sum();
    crate::outln!(
        "wrote {} ({}, {} tensors, {count} values)",
        args.out.display(),
        model.as_str(),
        params.len()
    )?;
    Ok(())
}
