//! `tinycnn train`: d2l's `train_ch6`, with checkpoints, resumption and a divergence check.

use super::model::{self, load_optimizer_state, optimizer_state, ModelSpec};
use super::{load_data, set_threads};
use crate::checkpoint::{
    default_checkpoint_path, load_checkpoint, save_checkpoint, save_weights_of, Checkpoint,
    EpochRecord, History, RunConfig,
};
use crate::error::{runtime, CliError, ExitKind, Result};
use crate::plot::{write_svg, CurvePoint};
use crate::recipe::{self, Recipe, RecipeDefaults, Schedule};
use crate::tensorfile::NamedTensor;
use crate::{ModelRef, TrainArgs};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tinycnn::data::{DataLoader, LoaderConfig, ResidentData};
use tinycnn::nn::Module;
use tinycnn::optim::Optimizer;
use tinycnn::train::{Callbacks, EpochReport, Trainer};
use tinycnn_models::Model;

/// Default seed when `--seed` is not given.
const DEFAULT_SEED: u64 = 0;

/// Runs `tinycnn train`.
pub fn run(args: TrainArgs) -> Result<()> {
    if args.epochs == 0 {
        return Err(crate::cli_err!("--epochs must be at least 1"));
    }
    // Under mpirun: one rank of a data-parallel job (before anything else, so that an
    // error from here on ends every rank).
    let dp = crate::distributed::start(args.distributed)?;
    let root = dp.as_ref().is_none_or(|d| d.is_root());
    set_threads(
        args.threads
            .or_else(|| dp.as_ref().and(crate::distributed::default_threads())),
    )?;

    // Settings: from the checkpoint when resuming (flags given explicitly must agree), else
    // from the flags and their defaults.
    let resumed = match &args.resume {
        Some(p) => Some(load_checkpoint(p)?),
        None => None,
    };
    if args.init && args.resume.is_some() {
        return Err(crate::cli_err!(
            "--init starts from fresh weights; a resumed run continues from the checkpoint's"
        ));
    }
    if args.init && !matches!(args.model, Some(ModelRef::File(_))) {
        return Err(crate::cli_err!(
            "--init goes with --model FILE (a zoo model always starts from a fresh initialization)"
        ));
    }
    // The weights a `--model FILE` run starts from (unless --init).
    let mut start = None;
    let config = match &resumed {
        Some(ck) => {
            check_same(&args, &ck.config)?;
            ck.config.clone()
        }
        None => {
            // A model file's data set, when it names one (as eval and predict follow it).
            let mut file_dataset = None;
            let model = match &args.model {
                None => ModelSpec::zoo(Model::LeNet)?,
                Some(ModelRef::Zoo(m)) => ModelSpec::zoo(*m)?,
                Some(ModelRef::File(path)) => {
                    let weights = crate::checkpoint::load_weights(path)?;
                    let spec = ModelSpec::of_weights(&weights)?;
                    file_dataset = weights.dataset;
                    if !args.init {
                        start = Some((path.clone(), weights.params));
                    }
                    spec
                }
            };
            let (optimizer, default_lr) = model::recipe(&model, args.optimizer);
            let batch_size = args.batch_size.unwrap_or(model::default_batch_size(&model));
            let defaults = RecipeDefaults::of(model.zoo, optimizer);
            let recipe = Recipe::from_args(&args, optimizer, &defaults)?;
            RunConfig {
                model,
                optimizer,
                lr: args.lr.unwrap_or(default_lr),
                batch_size,
                seed: args.seed.unwrap_or(DEFAULT_SEED),
                dataset: args.dataset.or(file_dataset).unwrap_or_default(),
                recipe,
            }
        }
    };
    let label = match (&args.model, &resumed) {
        (Some(ModelRef::File(path)), None) => config.model.label(Some(path)),
        _ => config.model.label(None),
    };
    config.model.check_fits_images(&label)?;
    let mut config = config;
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
        .unwrap_or_else(|| default_out(&args, &config.model));
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
    // Only rank 0 writes (the others may run on machines without its directories).
    if root {
        crate::output::check_outputs(&outputs)?;
    }

    // Before the data is read: a missing GPU is the first thing to report.
    let mut device = model::device(args.device)?;
    if dp.is_some() {
        device = crate::distributed::gpu_of_rank(device)?;
    }
    let data = load_data(config.dataset, args.data.as_deref())?;
    // Only the per-epoch shuffles are used: the same order on every device for a seed.
    let shuffles = DataLoader::from_split(
        &data.train,
        LoaderConfig {
            batch_size: config.batch_size,
            shuffle: true,
            seed: config.seed,
            drop_last: false,
            prefetch: 0,
        },
    )
    .map_err(|e| crate::cli_err!("{e}"))?;
    if data.train.is_empty() || data.test.is_empty() {
        return Err(crate::cli_err!(
            "{}: the training or test set is empty",
            data.dir.display()
        ));
    }

    // One-cycle spans the whole run, fixed when it starts: it cannot be stretched later.
    let batches = shuffles.len() as u64;
    if let Schedule::OneCycle {
        total_steps,
        epochs,
    } = &mut config.recipe.schedule
    {
        if *total_steps == 0 {
            *total_steps = *epochs * batches;
        }
        if args.epochs as u64 * batches > *total_steps {
            return Err(crate::cli_err!(
                "the one-cycle schedule spans {total_steps} batches ({epochs} epochs of {batches}); \
                 it cannot run to --epochs {} (a longer cycle needs a new run with --schedule-epochs)",
                args.epochs
            ));
        }
    }

    let net = model::init_net(&config.model, config.seed)?;
    let net: &dyn Module = net.as_ref();
    if let Some((path, params)) = &start {
        model::load_params(net, params)
            .map_err(|e| crate::cli_err!("{} does not fit {label}: {e}", path.display()))?;
    }
    let mut optimizer = recipe::optimizer(net.parameters(), &config)?;
    let mut schedule = recipe::scheduler(optimizer.as_mut(), &config)?;
    let (history, first_epoch) = match resumed {
        Some(ck) => {
            model::load_params(net, &ck.params)?;
            load_optimizer_state(optimizer.as_mut(), &ck.optimizer)?;
            if let (Some((s, _)), Some(state)) = (&mut schedule, &ck.schedule) {
                s.load_state(state, optimizer.as_mut())
                    .map_err(runtime("the checkpoint's schedule state does not fit"))?;
            }
            (ck.history, ck.epochs_done)
        }
        None => (History::default(), 0),
    };
    if let Some(dp) = &dp {
        // Every rank read its own flags and checkpoint: they must describe one run.
        let settings = format!(
            "{label} {:?} {} {} {} {} {} {} {first_epoch}",
            config.dataset,
            config.recipe.describe(config.lr),
            config.optimizer.as_str(),
            config.lr,
            config.batch_size,
            config.seed,
            args.epochs,
        );
        dp.check_same(
            "the run's settings (model, data set, recipe, optimizer, lr, batch size, seed, --epochs, epochs in the checkpoint)",
            settings.as_bytes(),
        )
        .map_err(runtime("cannot start data-parallel training"))?;
    }

    crate::outln!(
        "{label}, {} lr {}, batch size {}, {} epochs, seed {}, data {}",
        config.optimizer.as_str(),
        fmt_lr(config.lr),
        config.batch_size,
        args.epochs,
        config.seed,
        data.dir.display()
    )?;
    let recipe_line = config.recipe.describe(config.lr);
    if !recipe_line.is_empty() {
        crate::outln!("{recipe_line}")?;
    }
    if first_epoch > 0 {
        crate::outln!(
            "resuming after epoch {first_epoch} from {}",
            args.resume.as_ref().unwrap().display()
        )?;
    }
    if let Some((path, _)) = &start {
        crate::outln!("fine-tuning from the weights of {}", path.display())?;
    }
    let device_label = match &dp {
        Some(d) => format!("{} x {} MPI ranks", args.device.as_str(), d.world_size()),
        None => args.device.as_str().to_string(),
    };
    match &dp {
        Some(_) => crate::outln!(
            "training on {device_label}, each on its slice of every batch of {}",
            config.batch_size
        )?,
        None => crate::outln!("training on {device_label}")?,
    }

    let mut run = Run {
        net,
        config: &config,
        out: &out,
        ckpt_path: &ckpt_path,
        plot: args.plot.as_deref(),
        epochs: args.epochs,
        num_batches: shuffles.len(),
        history,
        // The newest checkpoint on disk and the epoch it holds, for the messages of a stop.
        saved: args
            .resume
            .clone()
            .filter(|_| first_epoch > 0)
            .map(|p| (p, first_epoch)),
        interrupt: None,
        bar: None,
        // mpirun hands rank 0 a terminal of its own whatever mpirun's output is: no bar.
        show_bar: dp.is_none() && std::io::stdout().is_terminal(),
        writes_files: root,
    };
    if first_epoch < args.epochs {
        let interrupt = Interrupt::install()?;
        let flag = Arc::clone(&interrupt.requested);
        run.interrupt = Some(interrupt);
        // Both sets stay on the device for the whole run.
        let upload = |split, what: &str| {
            ResidentData::from_split(split, &device)
                .map_err(runtime(format!("cannot put the {what} set on {device}")))
        };
        let (train, test) = (
            upload(&data.train, "training")?,
            upload(&data.test, "test")?,
        );
        // d2l adds a curve point every num_batches // 5 batches (and at the last one).
        let every = (run.num_batches / 5).max(1);
        let mut trainer = Trainer::new(net, optimizer, device, config.batch_size)
            .map_err(runtime(format!("cannot train on {device}")))?
            .marks_every(every)
            .stop_flag(flag)
            .augment(config.recipe.augment(config.seed));
        if let Some((s, every)) = schedule {
            trainer = trainer.lr_scheduler(s, every);
        }
        if let Some(max) = config.recipe.clip_grad_norm {
            trainer = trainer
                .clip_grad_norm(max)
                .map_err(runtime("--clip-grad-norm"))?;
        }
        if let Some(dp) = dp {
            let dp = crate::distributed::attach_nccl(dp, device)?;
            trainer = trainer
                .data_parallel(dp)
                .map_err(runtime("cannot start data-parallel training"))?;
        }
        let order = |epoch| shuffles.order(epoch);
        let result = trainer.fit(&train, &test, first_epoch..args.epochs, &order, &mut run);
        if let Some(bar) = run.bar.take() {
            bar.abandon();
        }
        result.map_err(|e| run.explain(e))?;
    } else {
        crate::outln!(
            "the checkpoint already holds {first_epoch} epochs; nothing to train (raise --epochs)"
        )?;
        if root {
            save_weights_of(&out, &config.model, config.dataset, &model::params(net)?)?;
            if let Some(plot) = &args.plot {
                write_svg(plot, &run.history.points, args.epochs.max(first_epoch))?;
            }
        }
    }
    let history = run.history;
    let last = history
        .epochs
        .last()
        .copied()
        .ok_or_else(|| crate::cli_err!("no epoch was trained"))?;
    for line in final_lines(&last, &history, &device_label) {
        crate::outln!("{line}")?;
    }
    crate::outln!("wrote {} and {}", out.display(), ckpt_path.display())?;
    if let Some(plot) = &args.plot {
        crate::outln!("wrote {}", plot.display())?;
    }
    Ok(())
}

/// What the epochs of one `train` write and print.
struct Run<'a> {
    net: &'a dyn Module,
    config: &'a RunConfig,
    out: &'a Path,
    ckpt_path: &'a Path,
    plot: Option<&'a Path>,
    epochs: usize,
    num_batches: usize,
    history: History,
    saved: Option<(PathBuf, usize)>,
    interrupt: Option<Interrupt>,
    bar: Option<ProgressBar>,
    show_bar: bool,
    /// False on the ranks other than 0 of a distributed run.
    writes_files: bool,
}

impl Run<'_> {
    /// The user's message for an error that ended training: a divergence suggests a lower
    /// learning rate, a stop names the checkpoint on disk; both name the file that still
    /// holds good weights.
    fn explain(&self, e: CliError) -> CliError {
        let CliError::Runtime { source, .. } = &e else {
            return e;
        };
        match **source {
            tinycnn::Error::Diverged { epoch, batch, loss } => {
                let at = match batch {
                    Some(b) => format!(
                        "loss is {loss} at epoch {}, batch {} of {}",
                        epoch + 1,
                        b + 1,
                        self.num_batches
                    ),
                    // On a GPU the loss is read once per epoch: the batch is not known.
                    None => format!("loss summed over epoch {} is {loss}", epoch + 1),
                };
                diverged(&at, self.config.lr, &self.saved)
            }
            tinycnn::Error::Stopped { .. } => Interrupt::message(&self.saved),
            _ => e,
        }
    }
}

impl Callbacks for Run<'_> {
    type Error = CliError;

    fn on_batch(&mut self, epoch: usize, batch: usize, batches: usize) {
        if batch == 0 {
            let bar = if self.show_bar {
                ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stdout())
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} ({eta})")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix((epoch + 1).to_string());
            self.bar = Some(bar);
        } else if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn on_epoch(&mut self, r: &EpochReport, optimizer: &dyn Optimizer) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let epoch = r.epoch;
        let h = &mut self.history;
        for m in &r.stats.marks {
            h.points.push(CurvePoint::Train {
                x: epoch as f64 + m.batches as f64 / self.num_batches as f64,
                loss: m.loss,
                acc: m.acc,
            });
        }
        h.points.push(CurvePoint::Test {
            x: (epoch + 1) as f64,
            acc: r.test_acc,
        });
        h.train_seconds += r.stats.seconds;
        h.examples += r.stats.examples;
        let record = EpochRecord {
            epoch: epoch + 1,
            loss: r.loss,
            train_acc: r.train_acc,
            test_acc: r.test_acc,
            examples_per_sec: r.examples_per_sec,
        };
        h.epochs.push(record);

        // A finite loss does not prove finite weights (ReLU and max pooling can hide a NaN):
        // never write a checkpoint that cannot be resumed.
        let params = model::params(self.net)?;
        if let Some((name, index, value)) = first_non_finite(&params) {
            return Err(diverged(
                &format!(
                    "after epoch {}, weight {name} holds {value} at index {index}",
                    epoch + 1
                ),
                self.config.lr,
                &self.saved,
            ));
        }
        // Saved before the epoch's line is printed, so a reader that goes away on that line
        // (`| head`) or a Ctrl-C does not lose the epoch.
        if self.writes_files {
            save_checkpoint(
                self.ckpt_path,
                &Checkpoint {
                    config: self.config.clone(),
                    epochs_done: epoch + 1,
                    params: params.clone(),
                    optimizer: optimizer_state(optimizer)?,
                    history: self.history.clone(),
                    schedule: r.schedule.clone(),
                },
            )?;
            save_weights_of(self.out, &self.config.model, self.config.dataset, &params)?;
            if let Some(plot) = self.plot {
                write_svg(plot, &self.history.points, self.epochs)?;
            }
        }
        self.saved = Some((self.ckpt_path.to_path_buf(), epoch + 1));
        crate::outln!("{}", epoch_line(&record))?;
        match &self.interrupt {
            Some(it) if it.requested() => Err(Interrupt::message(&self.saved)),
            _ => Ok(()),
        }
    }
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

    fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The error that ends the run after Ctrl-C, naming what is on disk.
    fn message(saved: &Option<(PathBuf, usize)>) -> CliError {
        let msg = match saved {
            Some((path, epoch)) => format!("interrupted: {} holds epoch {epoch}", path.display()),
            None => "interrupted during the first epoch: no checkpoint was written".to_string(),
        };
        CliError::Msg(msg, ExitKind::Interrupted)
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
    if let Some(m) = &args.model {
        let wanted = ModelSpec::of_ref(m)?;
        if wanted.arch != ck.model.arch {
            let given = match m {
                ModelRef::Zoo(m) => m.name().to_string(),
                ModelRef::File(p) => p.display().to_string(),
            };
            clashes.push(format!(
                "--model {given} (checkpoint: {})",
                ck.model.label(None)
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
    if let Some(d) = args.dataset {
        if d != ck.dataset {
            clashes.push(format!(
                "--dataset {} (checkpoint: {})",
                d.as_str(),
                ck.dataset.as_str()
            ));
        }
    }
    clashes.extend(ck.recipe.clashes(args, ck.optimizer));
    if clashes.is_empty() {
        Ok(())
    } else {
        Err(crate::cli_err!(
            "cannot resume with settings that differ from the checkpoint's: {}; leave them out to use the checkpoint's",
            clashes.join(", ")
        ))
    }
}

/// The weight file a run writes without `--out`: for `--model FILE`
/// `<its stem>-finetuned.safetensors` in the working directory (never the file itself, even
/// when it holds a zoo model), else `<zoo name>.safetensors`, else `model.safetensors`.
fn default_out(args: &TrainArgs, model: &ModelSpec) -> PathBuf {
    if let (Some(ModelRef::File(path)), None) = (&args.model, &args.resume) {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        return PathBuf::from(format!("{stem}-finetuned.safetensors"));
    }
    PathBuf::from(format!("{}.safetensors", model.name().unwrap_or("model")))
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
