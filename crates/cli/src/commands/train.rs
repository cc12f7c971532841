//! `tinycnn train`: d2l's `train_ch6`, with checkpoints, resumption and a divergence check.

use super::engine::{self, Engine, Step};
use super::{load_data, set_threads};
use crate::checkpoint::{
    default_checkpoint_path, load_checkpoint, save_checkpoint, save_weights, Checkpoint,
    EpochRecord, History, RunConfig,
};
use crate::error::{CliError, ExitKind, Result};
use crate::plot::{write_svg, CurvePoint};
use crate::tensorfile::NamedTensor;
use crate::{ModelName, OptimizerName, TrainArgs};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tinycnn::data::{DataLoader, LoaderConfig};

/// Default seed when `--seed` is not given.
const DEFAULT_SEED: u64 = 0;

/// Runs `tinycnn train`.
pub fn run(args: TrainArgs) -> Result<()> {
    if args.epochs == 0 {
        return Err(crate::cli_err!("--epochs must be at least 1"));
    }
    set_threads(args.threads)?;

    // Settings: from the checkpoint when resuming (flags given explicitly must agree), else
    // from the flags and their defaults.
    let resumed = match &args.resume {
        Some(p) => Some(load_checkpoint(p)?),
        None => None,
    };
    let config = match &resumed {
        Some(ck) => {
            check_same(&args, &ck.config)?;
            ck.config.clone()
        }
        None => {
            let optimizer = args.optimizer.unwrap_or(OptimizerName::Sgd);
            RunConfig {
                model: args.model.unwrap_or(ModelName::Lenet),
                optimizer,
                lr: args.lr.unwrap_or(optimizer.default_lr()),
                batch_size: args.batch_size.unwrap_or(256),
                seed: args.seed.unwrap_or(DEFAULT_SEED),
            }
        }
    };
    // A checkpoint's own values were checked when it was read; these are the flags'.
    if config.batch_size == 0 {
        return Err(crate::cli_err!("--batch-size must be at least 1"));
    }
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(crate::cli_err!(
            "--lr must be a positive number, got {}",
            config.lr
        ));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.safetensors", config.model.as_str())));
    let ckpt_path = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint_path(&out));
    // Before the data is read and the first epoch runs: a path that cannot be written, or
    // two outputs that are one file (the plot would overwrite the weights), fail now.
    let mut outputs: Vec<(&str, &Path)> = vec![("--out", &out), ("--checkpoint", &ckpt_path)];
    if let Some(plot) = &args.plot {
        outputs.push(("--plot", plot));
    }
    crate::output::check_outputs(&outputs)?;

    let data = load_data(args.data.as_deref())?;
    let train_iter = DataLoader::from_split(
        &data.train,
        LoaderConfig {
            batch_size: config.batch_size,
            shuffle: true,
            seed: config.seed,
            drop_last: false,
            prefetch: 2,
        },
    )
    .map_err(|e| crate::cli_err!("{e}"))?;
    let test_iter = DataLoader::from_split(
        &data.test,
        LoaderConfig {
            batch_size: config.batch_size,
            shuffle: false,
            seed: 0,
            drop_last: false,
            prefetch: 2,
        },
    )
    .map_err(|e| crate::cli_err!("{e}"))?;
    if train_iter.is_empty() || test_iter.is_empty() {
        return Err(crate::cli_err!(
            "{}: the training or test set is empty",
            data.dir.display()
        ));
    }

    let mut engine = engine::create(args.device, &config)?;
    let (mut history, first_epoch) = match resumed {
        Some(ck) => {
            engine.load_params(&ck.params)?;
            engine.load_optimizer_state(&ck.optimizer)?;
            (ck.history, ck.epochs_done)
        }
        None => (History::default(), 0),
    };
    // The newest checkpoint on disk and the epoch it holds, for the messages of a stop.
    let mut saved: Option<(PathBuf, usize)> = args
        .resume
        .clone()
        .filter(|_| first_epoch > 0)
        .map(|p| (p, first_epoch));
    // A GPU engine keeps both sets in device memory for the whole run.
    let resident = first_epoch < args.epochs && engine.upload_data(&data.train, &data.test)?;

    crate::outln!(
        "{}, {} lr {}, batch size {}, {} epochs, seed {}, data {}",
        config.model.as_str(),
        config.optimizer.as_str(),
        fmt_lr(config.lr),
        config.batch_size,
        args.epochs,
        config.seed,
        data.dir.display()
    )?;
    if first_epoch > 0 {
        crate::outln!(
            "resuming after epoch {first_epoch} from {}",
            args.resume.as_ref().unwrap().display()
        )?;
    }
    crate::outln!("training on {}", engine.device_name())?;

    let num_batches = train_iter.len();
    // d2l adds a point every num_batches // 5 batches (and at the last one).
    let every = (num_batches / 5).max(1);
    let show_bar = std::io::stdout().is_terminal();
    let interrupt = if first_epoch < args.epochs {
        Some(Interrupt::install()?)
    } else {
        None
    };
    for epoch in first_epoch..args.epochs {
        let bar = if show_bar {
            ProgressBar::with_draw_target(Some(num_batches as u64), ProgressDrawTarget::stdout())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix((epoch + 1).to_string());

        // d2l's Accumulator(3): sum of losses, correct predictions, examples.
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0u64, 0u64);
        let mut on_step = |i: usize, step: &Step| -> Result<()> {
            // Between batches: the step's update is complete and nothing is being written.
            if let Some(stop) = interrupt.as_ref().and_then(|it| it.stop(&saved)) {
                bar.abandon();
                return Err(stop);
            }
            if !step.loss.is_finite() {
                bar.abandon();
                return Err(diverged(
                    &format!(
                        "loss is {} at epoch {}, batch {} of {num_batches}",
                        step.loss,
                        epoch + 1,
                        i + 1
                    ),
                    config.lr,
                    &saved,
                ));
            }
            loss_sum += step.loss as f64 * step.examples as f64;
            correct += step.correct as u64;
            seen += step.examples as u64;
            let (train_l, train_acc) = (loss_sum / seen as f64, correct as f64 / seen as f64);
            if (i + 1) % every == 0 || i + 1 == num_batches {
                history.points.push(CurvePoint::Train {
                    x: epoch as f64 + (i + 1) as f64 / num_batches as f64,
                    loss: train_l,
                    acc: train_acc,
                });
            }
            bar.set_message(format!("loss {train_l:.3}, train acc {train_acc:.3}"));
            bar.inc(1);
            Ok(())
        };
        let epoch_seconds = train_epoch(
            engine.as_mut(),
            &train_iter,
            resident,
            epoch as u64,
            every,
            &mut on_step,
        )?;
        bar.finish_and_clear();
        let test_acc = if resident {
            engine.evaluate_resident()?
        } else {
            evaluate(engine.as_mut(), &test_iter)?
        };
        history.points.push(CurvePoint::Test {
            x: (epoch + 1) as f64,
            acc: test_acc,
        });
        history.train_seconds += epoch_seconds;
        history.examples += seen;
        let record = EpochRecord {
            epoch: epoch + 1,
            loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            test_acc,
            examples_per_sec: seen as f64 / epoch_seconds.max(1e-9),
        };
        history.epochs.push(record);

        // A finite loss does not prove finite weights (ReLU and max pooling can hide a NaN):
        // never write a checkpoint that cannot be resumed.
        let params = engine.params()?;
        if let Some((name, index, value)) = first_non_finite(&params) {
            return Err(diverged(
                &format!(
                    "after epoch {}, weight {name} holds {value} at index {index}",
                    epoch + 1
                ),
                config.lr,
                &saved,
            ));
        }
        // Saved before the epoch's line is printed, so a reader that goes away on that line
        // (`| head`) or a Ctrl-C does not lose the epoch.
        save_checkpoint(
            &ckpt_path,
            &Checkpoint {
                config: config.clone(),
                epochs_done: epoch + 1,
                params: params.clone(),
                optimizer: engine.optimizer_state()?,
                history: history.clone(),
            },
        )?;
        save_weights(&out, config.model, &params)?;
        if let Some(plot) = &args.plot {
            write_svg(plot, &history.points, args.epochs)?;
        }
        saved = Some((ckpt_path.clone(), epoch + 1));
        crate::outln!("{}", epoch_line(&record))?;
        if let Some(stop) = interrupt.as_ref().and_then(|it| it.stop(&saved)) {
            return Err(stop);
        }
    }

    if first_epoch >= args.epochs {
        crate::outln!(
            "the checkpoint already holds {first_epoch} epochs; nothing to train (raise --epochs)"
        )?;
        save_weights(&out, config.model, &engine.params()?)?;
        if let Some(plot) = &args.plot {
            write_svg(plot, &history.points, args.epochs.max(first_epoch))?;
        }
    }
    let last = history
        .epochs
        .last()
        .copied()
        .ok_or_else(|| crate::cli_err!("no epoch was trained"))?;
    for line in final_lines(&last, &history, engine.device_name()) {
        crate::outln!("{line}")?;
    }
    crate::outln!("wrote {} and {}", out.display(), ckpt_path.display())?;
    if let Some(plot) = &args.plot {
        crate::outln!("wrote {}", plot.display())?;
    }
    Ok(())
}

/// Ctrl-C (SIGINT) during training: the first one asks the loop to stop at the next safe
/// point (after the current batch, or after the epoch's files are written); a second one
/// ends the process at once (exit status 130), which is still safe for the files because
/// every write is atomic.
struct Interrupt {
    requested: Arc<AtomicBool>,
}

impl Interrupt {
    fn install() -> Result<Interrupt> {
        let requested = Arc::new(AtomicBool::new(false));
        let sig = signal_hook::consts::SIGINT;
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&requested))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&requested)))
            .map_err(|e| crate::cli_err!("cannot install the Ctrl-C handler: {e}"))?;
        Ok(Interrupt { requested })
    }

    /// The error that ends the run when Ctrl-C was pressed, naming what is on disk.
    fn stop(&self, saved: &Option<(PathBuf, usize)>) -> Option<CliError> {
        if !self.requested.load(Ordering::SeqCst) {
            return None;
        }
        let msg = match saved {
            Some((path, epoch)) => format!("interrupted: {} holds epoch {epoch}", path.display()),
            None => "interrupted during the first epoch: no checkpoint was written".to_string(),
        };
        Some(CliError(msg, ExitKind::Interrupted))
    }
}

/// The error that stops a diverged run: what was seen, a lower learning rate to try, and the
/// checkpoint that still holds good weights (the file actually on disk: the one resumed from
/// until this run wrote its own).
fn diverged(what: &str, lr: f32, saved: &Option<(PathBuf, usize)>) -> CliError {
    let held = match saved {
        Some((path, epoch)) => format!(" {} holds epoch {epoch}.", path.display()),
        None => String::new(),
    };
    crate::cli_err!(
        "{what}: training diverged; try a lower learning rate (--lr {} now, e.g. --lr {}).{held}",
        fmt_lr(lr),
        fmt_lr(lr / 10.0),
    )
}

/// The first NaN or infinity among the tensors: name, flat index, value as printed.
fn first_non_finite(tensors: &[NamedTensor]) -> Option<(&str, usize, String)> {
    tensors.iter().find_map(|t| {
        let (i, v) = t.data.iter().enumerate().find(|(_, v)| !v.is_finite())?;
        let v = if v.is_nan() {
            "NaN".to_string()
        } else {
            v.to_string()
        };
        Some((t.name.as_str(), i, v))
    })
}

/// A learning rate as typed: `0.9`, `0.001`, `1e30`.
fn fmt_lr(lr: f32) -> String {
    if lr != 0.0 && !(1e-4..1e4).contains(&lr.abs()) {
        format!("{lr:e}")
    } else {
        lr.to_string()
    }
}

/// Flags given explicitly on a resumed run must match the checkpoint's settings.
fn check_same(args: &TrainArgs, ck: &RunConfig) -> Result<()> {
    let mut clashes = Vec::new();
    if let Some(m) = args.model {
        if m != ck.model {
            clashes.push(format!(
                "--model {} (checkpoint: {})",
                m.as_str(),
                ck.model.as_str()
            ));
        }
    }
    if let Some(o) = args.optimizer {
        if o != ck.optimizer {
            clashes.push(format!(
                "--optimizer {} (checkpoint: {})",
                o.as_str(),
                ck.optimizer.as_str()
            ));
        }
    }
    if let Some(lr) = args.lr {
        if lr != ck.lr {
            clashes.push(format!("--lr {lr} (checkpoint: {})", ck.lr));
        }
    }
    if let Some(b) = args.batch_size {
        if b != ck.batch_size {
            clashes.push(format!("--batch-size {b} (checkpoint: {})", ck.batch_size));
        }
    }
    if let Some(s) = args.seed {
        if s != ck.seed {
            clashes.push(format!("--seed {s} (checkpoint: {})", ck.seed));
        }
    }
    if clashes.is_empty() {
        Ok(())
    } else {
        Err(crate::cli_err!(
            "cannot resume with settings that differ from the checkpoint's: {}; leave them out to use the checkpoint's",
            clashes.join(", ")
        ))
    }
}

/// Consecutive ranges of `every` batch indices covering `0..num_batches` (the last may be
/// shorter): d2l records a curve point at the end of each.
pub fn chunk_ranges(num_batches: usize, every: usize) -> impl Iterator<Item = Range<usize>> {
    let every = every.max(1);
    (0..num_batches)
        .step_by(every)
        .map(move |start| start..(start + every).min(num_batches))
}

/// Runs the training steps of epoch `epoch` in `loader`'s batch order and hands each batch's
/// [`Step`] to `on_step` with its 0-based index, in order; an error from `on_step` ends the
/// epoch there. Returns the seconds spent in the engine's training calls (d2l's timer).
///
/// Without `resident`, every host batch of the loader is one [`Engine::train_step`]. With
/// it, the engine holds the data set and trains, per [`chunk_ranges`] of `every` batches, on
/// the slice of the epoch's sample order ([`DataLoader::order`]) those batches cover. The
/// slices start at multiples of the batch size, so the engine forms exactly the loader's
/// batches, in the same order.
pub fn train_epoch(
    engine: &mut dyn Engine,
    loader: &DataLoader,
    resident: bool,
    epoch: u64,
    every: usize,
    on_step: &mut dyn FnMut(usize, &Step) -> Result<()>,
) -> Result<f64> {
    let mut seconds = 0.0f64;
    if !resident {
        for (i, batch) in loader.epoch(epoch).enumerate() {
            let started = Instant::now();
            let step = engine.train_step(&batch.images, batch.shape, &batch.labels)?;
            seconds += started.elapsed().as_secs_f64();
            on_step(i, &step)?;
        }
        return Ok(seconds);
    }
    let order = loader
        .order(epoch)
        .into_iter()
        .map(u32::try_from)
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| crate::cli_err!("the training set has more than 2^32 examples"))?;
    let batch_size = loader.config().batch_size;
    for chunk in chunk_ranges(loader.len(), every) {
        let rows = chunk.start * batch_size..(chunk.end * batch_size).min(order.len());
        let started = Instant::now();
        let steps = engine.train_resident(&order[rows])?;
        seconds += started.elapsed().as_secs_f64();
        if steps.len() != chunk.len() {
            return Err(crate::cli_err!(
                "{}: {} batch results for batches {}..{}",
                engine.device_name(),
                steps.len(),
                chunk.start + 1,
                chunk.end
            ));
        }
        for (i, step) in chunk.zip(&steps) {
            on_step(i, step)?;
        }
    }
    Ok(seconds)
}

/// d2l's `evaluate_accuracy_gpu`: the fraction of the data set classified correctly.
pub fn evaluate(engine: &mut dyn Engine, iter: &DataLoader) -> Result<f64> {
    let (mut correct, mut total) = (0u64, 0u64);
    for batch in iter.epoch(0) {
        let logits = engine.logits(&batch.images, batch.shape)?;
        correct += engine::count_correct(&logits, &batch.labels) as u64;
        total += batch.len as u64;
    }
    Ok(correct as f64 / total.max(1) as f64)
}

/// `epoch N: loss L, train acc A, test acc T, E examples/sec`.
pub fn epoch_line(r: &EpochRecord) -> String {
    format!(
        "epoch {}: loss {:.3}, train acc {:.3}, test acc {:.3}, {:.1} examples/sec",
        r.epoch, r.loss, r.train_acc, r.test_acc, r.examples_per_sec
    )
}

/// d2l's two closing lines.
pub fn final_lines(last: &EpochRecord, h: &History, device: &str) -> [String; 2] {
    [
        format!(
            "loss {:.3}, train acc {:.3}, test acc {:.3}",
            last.loss, last.train_acc, last.test_acc
        ),
        format!(
            "{:.1} examples/sec on {device}",
            h.examples as f64 / h.train_seconds.max(1e-9)
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::OptimizerState;
    use crate::tensorfile::NamedTensor;
    use crate::DeviceName;
    use tinycnn::data::Split;

    #[test]
    fn chunks_cover_every_batch_once_and_end_where_d2l_records_points() {
        let got: Vec<_> = chunk_ranges(13, 2).collect();
        assert_eq!(got, [0..2, 2..4, 4..6, 6..8, 8..10, 10..12, 12..13]);
        assert_eq!(chunk_ranges(235, 47).count(), 5);
        assert_eq!(chunk_ranges(3, 1).collect::<Vec<_>>(), [0..1, 1..2, 2..3]);
        assert_eq!(chunk_ranges(0, 4).count(), 0);
        // A chunk ends at every batch index where the training loop records a curve point.
        for (n, every) in [(13usize, 2usize), (235, 47), (7, 1), (10, 3)] {
            let ends: Vec<usize> = chunk_ranges(n, every).map(|r| r.end).collect();
            let points: Vec<usize> = (0..n)
                .filter(|i| (i + 1) % every == 0 || i + 1 == n)
                .map(|i| i + 1)
                .collect();
            assert_eq!(ends, points, "{n} batches, every {every}");
        }
    }

    /// 100 synthetic 28x28 samples (class `c` brightens row `2c + 4`).
    fn split(n: usize) -> Split {
        let mut images = vec![0.0f32; n * 784];
        let labels: Vec<u8> = (0..n).map(|i| ((i * 7 + 3) % 10) as u8).collect();
        for (i, &c) in labels.iter().enumerate() {
            for (j, px) in images[i * 784..(i + 1) * 784].iter_mut().enumerate() {
                *px = ((i * 31 + j * 17) % 23) as f32 / 46.0;
            }
            for col in 0..28 {
                images[i * 784 + (2 * c as usize + 4) * 28 + col] = 1.0;
            }
        }
        Split {
            images: images.into(),
            labels: labels.into(),
            rows: 28,
            cols: 28,
        }
    }

    /// A CPU engine driven the way the GPU engine is: it holds the data set and forms its
    /// own batches from the sample order it is given.
    struct ResidentCpu {
        inner: Box<dyn Engine>,
        batch_size: usize,
        train: Option<Split>,
        calls: Vec<usize>,
    }

    impl Engine for ResidentCpu {
        fn device_name(&self) -> &'static str {
            "resident-cpu"
        }
        fn train_step(&mut self, x: &[f32], s: [usize; 4], y: &[u32]) -> Result<Step> {
            self.inner.train_step(x, s, y)
        }
        fn logits(&mut self, x: &[f32], s: [usize; 4]) -> Result<Vec<f32>> {
            self.inner.logits(x, s)
        }
        fn params(&self) -> Result<Vec<NamedTensor>> {
            self.inner.params()
        }
        fn load_params(&mut self, p: &[NamedTensor]) -> Result<()> {
            self.inner.load_params(p)
        }
        fn optimizer_state(&self) -> Result<OptimizerState> {
            self.inner.optimizer_state()
        }
        fn load_optimizer_state(&mut self, s: &OptimizerState) -> Result<()> {
            self.inner.load_optimizer_state(s)
        }
        fn upload_data(&mut self, train: &Split, _test: &Split) -> Result<bool> {
            self.train = Some(train.clone());
            Ok(true)
        }
        fn train_resident(&mut self, order: &[u32]) -> Result<Vec<Step>> {
            self.calls.push(order.len());
            let train = self.train.clone().unwrap();
            order
                .chunks(self.batch_size)
                .map(|rows| {
                    let x: Vec<f32> = rows
                        .iter()
                        .flat_map(|&r| train.image(r as usize).unwrap().to_vec())
                        .collect();
                    let y: Vec<u32> = rows
                        .iter()
                        .map(|&r| train.labels[r as usize] as u32)
                        .collect();
                    self.inner.train_step(&x, [rows.len(), 1, 28, 28], &y)
                })
                .collect()
        }
    }

    fn config(optimizer: OptimizerName, lr: f32) -> RunConfig {
        RunConfig {
            model: ModelName::LenetRelu,
            optimizer,
            lr,
            batch_size: 8,
            seed: 11,
        }
    }

    fn loader(train: &Split, c: &RunConfig) -> DataLoader {
        DataLoader::from_split(
            train,
            LoaderConfig {
                batch_size: c.batch_size,
                shuffle: true,
                seed: c.seed,
                drop_last: false,
                prefetch: 2,
            },
        )
        .unwrap()
    }

    /// The chunked, engine-side batching of a resident data set trains exactly as the host
    /// batches of the DataLoader: same batches in the same order, bit-identical weights.
    #[test]
    fn resident_chunks_train_exactly_like_host_batches() {
        let train = split(100); // 13 batches of 8, the last of 4
        let c = config(OptimizerName::Adam, 0.01);
        let iter = loader(&train, &c);
        let every = (iter.len() / 5).max(1);
        assert_eq!((iter.len(), every), (13, 2));

        let mut host = engine::create(DeviceName::Cpu, &c).unwrap();
        let mut resident = ResidentCpu {
            inner: engine::create(DeviceName::Cpu, &c).unwrap(),
            batch_size: c.batch_size,
            train: None,
            calls: Vec::new(),
        };
        assert!(!host.upload_data(&train, &train).unwrap());
        assert!(resident.upload_data(&train, &train).unwrap());
        for epoch in 0..2u64 {
            let mut host_steps = Vec::new();
            train_epoch(host.as_mut(), &iter, false, epoch, every, &mut |i, s| {
                host_steps.push((i, s.loss.to_bits(), s.correct, s.examples));
                Ok(())
            })
            .unwrap();
            let mut res_steps = Vec::new();
            train_epoch(&mut resident, &iter, true, epoch, every, &mut |i, s| {
                res_steps.push((i, s.loss.to_bits(), s.correct, s.examples));
                Ok(())
            })
            .unwrap();
            assert_eq!(host_steps.len(), 13);
            assert_eq!(host_steps, res_steps, "epoch {epoch}");
            assert_eq!(host_steps[12].3, 4);
        }
        // Seven chunks per epoch: six of 2 batches (16 samples), one of the last 4 samples.
        assert_eq!(resident.calls, [16, 16, 16, 16, 16, 16, 4].repeat(2));
        assert_eq!(host.params().unwrap(), resident.params().unwrap());
        assert_eq!(
            host.optimizer_state().unwrap(),
            resident.optimizer_state().unwrap()
        );
    }

    /// An error from the step callback (the divergence stop) ends the epoch: later chunks
    /// are not trained.
    #[test]
    fn a_stop_in_the_callback_ends_the_resident_epoch() {
        let train = split(100);
        let c = config(OptimizerName::Sgd, 0.1);
        let iter = loader(&train, &c);
        let mut resident = ResidentCpu {
            inner: engine::create(DeviceName::Cpu, &c).unwrap(),
            batch_size: c.batch_size,
            train: Some(train.clone()),
            calls: Vec::new(),
        };
        let mut seen = Vec::new();
        let e = train_epoch(&mut resident, &iter, true, 0, 2, &mut |i, _| {
            seen.push(i);
            if i == 2 {
                Err(crate::cli_err!("stop at {i}"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(e.0.contains("stop at 2"), "{e}");
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(resident.calls, [16, 16]);
    }

    #[test]
    fn lines_follow_d2l_format() {
        let r = EpochRecord {
            epoch: 10,
            loss: 0.4694,
            train_acc: 0.8228,
            test_acc: 0.7791,
            examples_per_sec: 44000.04,
        };
        assert_eq!(
            epoch_line(&r),
            "epoch 10: loss 0.469, train acc 0.823, test acc 0.779, 44000.0 examples/sec"
        );
        let h = History {
            examples: 600_000,
            train_seconds: 13.6363636,
            ..History::default()
        };
        let [a, b] = final_lines(&r, &h, "cpu");
        assert_eq!(a, "loss 0.469, train acc 0.823, test acc 0.779");
        assert_eq!(b, "44000.0 examples/sec on cpu");
    }
}
