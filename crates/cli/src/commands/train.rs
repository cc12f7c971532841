//! `tinycnn train`: d2l's `train_ch6`, with checkpoints, resumption and a divergence check.

use super::engine::{self, Engine};
use super::{load_data, set_threads};
use crate::checkpoint::{
    default_checkpoint_path, load_checkpoint, save_checkpoint, save_weights, Checkpoint,
    EpochRecord, History, RunConfig,
};
use crate::error::Result;
use crate::plot::{write_svg, CurvePoint};
use crate::{ModelName, OptimizerName, TrainArgs};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
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
    if ckpt_path == out {
        return Err(crate::cli_err!(
            "--checkpoint and --out must be different files ({})",
            out.display()
        ));
    }

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

    println!(
        "{}, {} lr {}, batch size {}, {} epochs, seed {}, data {}",
        config.model.as_str(),
        config.optimizer.as_str(),
        fmt_lr(config.lr),
        config.batch_size,
        args.epochs,
        config.seed,
        data.dir.display()
    );
    if first_epoch > 0 {
        println!(
            "resuming after epoch {first_epoch} from {}",
            args.resume.as_ref().unwrap().display()
        );
    }
    println!("training on {}", engine.device_name());

    let num_batches = train_iter.len();
    // d2l adds a point every num_batches // 5 batches (and at the last one).
    let every = (num_batches / 5).max(1);
    let show_bar = std::io::stdout().is_terminal();
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
        let mut epoch_seconds = 0.0f64;
        for (i, batch) in train_iter.epoch(epoch as u64).enumerate() {
            let started = Instant::now();
            let step = engine.train_step(&batch.images, batch.shape, &batch.labels)?;
            epoch_seconds += started.elapsed().as_secs_f64();
            if !step.loss.is_finite() {
                bar.abandon();
                let saved = if epoch > 0 {
                    format!(" {} holds epoch {epoch}.", ckpt_path.display())
                } else {
                    String::new()
                };
                return Err(crate::cli_err!(
                    "loss is {} at epoch {}, batch {} of {num_batches}: training diverged; try a lower learning rate \
                     (--lr {} now, e.g. --lr {}).{saved}",
                    step.loss,
                    epoch + 1,
                    i + 1,
                    fmt_lr(config.lr),
                    fmt_lr(config.lr / 10.0),
                ));
            }
            loss_sum += step.loss as f64 * batch.len as f64;
            correct += step.correct as u64;
            seen += batch.len as u64;
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
        }
        bar.finish_and_clear();
        let test_acc = evaluate(engine.as_mut(), &test_iter)?;
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
        println!("{}", epoch_line(&record));

        let params = engine.params()?;
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
    }

    if first_epoch >= args.epochs {
        println!(
            "the checkpoint already holds {first_epoch} epochs; nothing to train (raise --epochs)"
        );
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
        println!("{line}");
    }
    println!("wrote {} and {}", out.display(), ckpt_path.display());
    if let Some(plot) = &args.plot {
        println!("wrote {}", plot.display());
    }
    Ok(())
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
