//! The subcommands.

pub mod deploy;
pub mod model;
pub mod onnx_io;
pub mod train;

use crate::checkpoint::{load_weights, save_weights, save_weights_of};
use crate::error::{runtime, Result};
use crate::picture;
use crate::recipe::DatasetName;
use crate::report::{argmax, render_prediction, softmax, ConfusionMatrix};
use crate::{DeviceName, EvalArgs, ExportArgs, ModelRef, PredictArgs, SummaryArgs};
use model::{ModelSpec, CLASSES};
use std::path::Path;
use tinycnn::data::{load_dataset, DataLoader, Dataset, LoadOptions, LoaderConfig};

/// Loads the data set from `--data DIR` or the default places (see `train --help`).
pub fn load_data(dataset: DatasetName, dir: Option<&Path>) -> Result<Dataset> {
    let spec = dataset.spec();
    let options = LoadOptions {
        dir: dir.map(Path::to_path_buf),
        download: dir.is_none(),
        ..LoadOptions::default()
    };
    let data = load_dataset(&spec, options)
        .map_err(|e| crate::cli_err!("cannot load {}: {e}", spec.name))?;
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

/// Picks the model: `--model` if given, else what the file records, else LeNet. A `--model`
/// that contradicts the file is an error, since LeNet and its ReLU variant have the same
/// tensor shapes and the mistake would otherwise go unnoticed.
fn pick_model(
    flag: Option<&ModelRef>,
    weights: &crate::checkpoint::LoadedWeights,
    path: &Path,
) -> Result<ModelSpec> {
    let recorded = ModelSpec::recorded(weights.model, weights.arch.clone())?;
    let Some(flag) = flag else {
        return ModelSpec::of_weights(weights);
    };
    let wanted = ModelSpec::of_ref(flag)?;
    match recorded {
        Some(r) if r.arch != wanted.arch => {
            let what = match flag {
                ModelRef::Zoo(m) => m.name().to_string(),
                ModelRef::File(p) => p.display().to_string(),
            };
            Err(crate::cli_err!(
                "{} holds a {} model but --model {what} was given",
                path.display(),
                r.label(Some(path))
            ))
        }
        _ => Ok(wanted),
    }
}

/// Builds the model, loads a weight file, checkpoint or ONNX file into it and puts it on
/// `device`; also returns how messages name the model and the data set the file names.
/// With `check_input`, a model that cannot classify the data sets' images is refused before
/// it is built.
fn load_model(
    path: &Path,
    flag: Option<&ModelRef>,
    device: DeviceName,
    check_input: bool,
) -> Result<(ModelSpec, String, model::Predictor, Option<DatasetName>)> {
    // A missing GPU is reported before the file is read.
    let device = model::device(device)?;
    let weights = load_weights(path)?;
    let spec = pick_model(flag, &weights, path)?;
    let label = spec.label(Some(path));
    if check_input {
        spec.check_fits_images(&label)?;
    }
    let net = spec.build()?;
    model::load_params(net.as_ref(), &weights.params)
        .map_err(|e| crate::cli_err!("{} does not fit {label}: {e}", path.display()))?;
    Ok((
        spec,
        label,
        model::Predictor::new(net, device)?,
        weights.dataset,
    ))
}

/// `tinycnn eval`.
pub fn eval(args: EvalArgs) -> Result<()> {
    if args.batch_size == 0 {
        return Err(crate::cli_err!("--batch-size must be at least 1"));
    }
    set_threads(args.threads)?;
    let (_, label, mut net, trained_on) =
        load_model(&args.weights, args.model.as_ref(), args.device, true)?;
    let dataset = args.dataset.or(trained_on).unwrap_or_default();
    let data = load_data(dataset, args.data.as_deref())?;
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
        for (row, &class) in logits.chunks_exact(CLASSES).zip(&batch.labels) {
            matrix.add(class as usize, argmax(row));
        }
    }
    crate::outln!(
        "{label} on {} test images of {}: test acc {:.3} ({} of {})",
        matrix.total(),
        data.dir.display(),
        matrix.accuracy(),
        matrix.correct(),
        matrix.total()
    )?;
    crate::out!("{}", matrix.render(dataset.classes()))?;
    Ok(())
}

/// `tinycnn predict`.
pub fn predict(args: PredictArgs) -> Result<()> {
    let (_, label, mut net, trained_on) =
        load_model(&args.weights, args.model.as_ref(), args.device, true)?;
    let dataset = args.dataset.or(trained_on).unwrap_or_default();
    let classes = dataset.classes();
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
            let data = load_data(dataset, args.data.as_deref())?;
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
                classes[label]
            )?;
            image.to_vec()
        }
        _ => return Err(crate::cli_err!("give either IMAGE.png or --index N")),
    };
    let logits = net.logits(&pixels, [1, 1, 28, 28])?;
    let probs = softmax(&logits);
    crate::outln!("model {label}")?;
    crate::out!("predicted: {}", render_prediction(&probs, classes))?;
    Ok(())
}

/// `tinycnn summary`: per layer its name, type, output shape for one input (d2l's shape
/// walk) and parameter count, then the total.
pub fn summary(args: SummaryArgs) -> Result<()> {
    let spec = ModelSpec::of_ref(&args.model)?;
    let label = match &args.model {
        ModelRef::Zoo(m) => m.name().to_string(),
        ModelRef::File(p) => spec.label(Some(p)),
    };
    let layers = model::layer_walk(&spec)?;
    let names_width = layers.iter().map(|l| l.name.len()).max().unwrap_or(0);
    let heads: Vec<String> = layers
        .iter()
        .map(|l| {
            let mut head = format!(
                "{:<names_width$}  {} output shape: {:?}",
                l.name, l.kind, l.output_shape
            );
            if let Some(reads) = &l.reads {
                head += &format!(" (from {})", reads.join(", "));
            }
            head
        })
        .collect();
    let width = heads.iter().map(String::len).max().unwrap_or(0);
    let mut total = 0usize;
    let mut input = vec![1];
    input.extend_from_slice(&spec.arch.input);
    crate::outln!("{label} for input {input:?}")?;
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

/// `tinycnn export`: a weight file (the architecture in its metadata), or ONNX when `--out`
/// ends in `.onnx`.
pub fn export(args: ExportArgs) -> Result<()> {
    let (spec, label, net, dataset) =
        load_model(&args.weights, args.model.as_ref(), DeviceName::Cpu, false)?;
    let params = model::params(net.net())?;
    let format = if onnx_io::is_onnx(&args.out) {
        onnx_io::save(&args.out, &spec.arch, &params)?;
        "ONNX, "
    } else {
        match dataset {
            Some(d) => save_weights_of(&args.out, &spec, d, &params)?,
            None => save_weights(&args.out, &spec, &params)?,
        }
        ""
    };
    let count: usize = params.iter().map(|t| t.data.len()).sum();
    crate::outln!(
        "wrote {} ({format}{label}, {} tensors, {count} values)",
        args.out.display(),
        params.len()
    )?;
    Ok(())
}
