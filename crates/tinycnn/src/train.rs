//! One training loop for every device: mini-batch SGD/Adam on cross-entropy, d2l's
//! `train_ch6` without the plotting.
//!
//! The data sets are [`ResidentData`] on the training device, so on a GPU they are uploaded
//! once and every batch is gathered there. Loss and accuracy are added up on the device and
//! read once at the end of the epoch: a CUDA epoch never waits for the GPU between batches
//! (beyond what an op itself needs). On the CPU reading a value is free, so each batch's
//! loss is checked as soon as it is known; on CUDA a non-finite loss is only seen in the
//! epoch's sum, so [`Error::Diverged`] then names the epoch but not the batch.
//!
//! PyTorch's training recipes plug in with builder methods: a learning-rate schedule stepped
//! per epoch or per batch ([`Trainer::lr_scheduler`]), gradient-norm clipping before each
//! update ([`Trainer::clip_grad_norm`]) and seeded augmentation of the training batches
//! ([`Trainer::augment`]).
//!
//! ```
//! use tinycnn::data::ResidentData;
//! use tinycnn::nn::{Linear, Module};
//! use tinycnn::optim::{Optimizer, Sgd};
//! use tinycnn::train::{Callbacks, EpochReport, Trainer};
//! use tinycnn::{Device, Error};
//!
//! // Two points per class on a line; a linear layer separates them.
//! let x = [-2.0, -1.0, 1.0, 2.0];
//! let data = ResidentData::new(&x, &[4, 1], &[0, 0, 1, 1], &Device::Cpu)?;
//! tinycnn::manual_seed(0);
//! let net = Linear::new(1, 2);
//! let opt = Sgd::new(net.parameters(), 0.5)?;
//! let mut trainer = Trainer::new(&net, Box::new(opt), Device::Cpu, 2)?;
//!
//! struct Log(Vec<f64>);
//! impl Callbacks for Log {
//!     type Error = Error;
//!     fn on_epoch(&mut self, r: &EpochReport, _: &dyn Optimizer) -> Result<(), Error> {
//!         self.0.push(r.loss);
//!         Ok(())
//!     }
//! }
//! let mut log = Log(Vec::new());
//! trainer.fit(&data, &data, 0..20, &|_| vec![3, 0, 2, 1], &mut log)?;
//! assert!(log.0[19] < log.0[0]);
//! # Ok::<(), Error>(())
//! ```

use crate::data::{Augment, ResidentData};
use crate::device::Device;
use crate::distributed::DataParallel;
use crate::error::{Error, Result};
use crate::infer::Inference;
use crate::nn::{Module, Sequential};
use crate::optim::{clip_grad_norm_, LrScheduler, Optimizer, ScheduleState};
use crate::tensor::Tensor;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Running figures after the first `batches` batches of an epoch (a point of d2l's
/// training curves).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mark {
    /// Batches done, from 1.
    pub batches: usize,
    /// Mean loss over the examples so far.
    pub loss: f64,
    /// Training accuracy over the examples so far.
    pub acc: f64,
}

/// What one epoch of training measured.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// Mean cross-entropy over the epoch's examples (each batch's loss before its update).
    pub loss: f64,
    /// Examples whose arg-max was their label, before the update of their batch.
    pub correct: u64,
    /// Examples trained on.
    pub examples: u64,
    /// Wall-clock seconds of the epoch's training (gathering, steps, the final read).
    pub seconds: f64,
    /// The running figures every [`Trainer::marks_every`] batches and after the last.
    pub marks: Vec<Mark>,
}

impl EpochStats {
    /// `correct / examples`.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.examples.max(1) as f64
    }
    /// Training throughput.
    pub fn examples_per_sec(&self) -> f64 {
        self.examples as f64 / self.seconds.max(1e-9)
    }
}

/// What [`Trainer::fit`] hands to [`Callbacks::on_epoch`].
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// 0-based epoch number.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// Accuracy on the test set after the epoch.
    pub test_acc: f64,
    /// Training examples per second.
    pub examples_per_sec: f64,
    /// Everything the epoch measured.
    pub stats: EpochStats,
    /// The learning-rate schedule's state after the epoch (for a checkpoint), if there is one.
    pub schedule: Option<ScheduleState>,
}

/// When a [`Trainer`]'s learning-rate schedule steps (as PyTorch loops call
/// `scheduler.step()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleEvery {
    /// After each epoch's last update (StepLR, cosine annealing).
    Epoch,
    /// After every update (one-cycle).
    Batch,
}

/// Hooks of [`Trainer::fit`].
pub trait Callbacks {
    /// The error `on_epoch` may stop training with; runtime errors convert into it.
    type Error: From<Error>;
    /// Before batch `batch` (0-based) of `batches` in epoch `epoch`: for a progress bar.
    /// Nothing is read from the device for it.
    fn on_batch(&mut self, _epoch: usize, _batch: usize, _batches: usize) {}
    /// After each epoch and its test evaluation, with the optimizer (whose state a checkpoint
    /// needs); an error ends training.
    fn on_epoch(
        &mut self,
        _report: &EpochReport,
        _optimizer: &dyn Optimizer,
    ) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
}

/// A model, its optimizer and the device they train on.
pub struct Trainer<'m> {
    model: &'m dyn Module,
    optimizer: Box<dyn Optimizer>,
    device: Device,
    batch_size: usize,
    marks_every: usize,
    stop: Option<Arc<AtomicBool>>,
    /// The lean CPU forward for evaluation, compiled on first use for one sample shape; it
    /// reads the current weights at every call, so training in between needs no rebuild.
    inference: Option<(Vec<usize>, Option<Inference>)>,
    schedule: Option<(Box<dyn LrScheduler>, ScheduleEvery)>,
    clip_grad_norm: Option<f32>,
    augment: Augment,
    /// Data parallelism over several processes, with the parameters it all-reduces.
    data_parallel: Option<(DataParallel, Vec<Tensor>)>,
}

impl<'m> Trainer<'m> {
    /// Moves `model` to `device` (in place, so an optimizer made from its parameters
    /// before or after follows it) and trains it with `optimizer` on batches of
    /// `batch_size`.
    pub fn new(
        model: &'m dyn Module,
        optimizer: Box<dyn Optimizer>,
        device: Device,
        batch_size: usize,
    ) -> Result<Trainer<'m>> {
        if batch_size == 0 {
            return Err(Error::invalid("Trainer", "batch size must be at least 1"));
        }
        model.to(&device)?;
        Ok(Trainer {
            model,
            optimizer,
            device,
            batch_size,
            marks_every: 0,
            stop: None,
            inference: None,
            schedule: None,
            clip_grad_norm: None,
            augment: Augment::default(),
            data_parallel: None,
        })
    }

    /// Trains as one rank of `dp` ([`crate::distributed`]): copies rank 0's parameters and
    /// optimizer state to every rank now, then each step trains on this rank's shard of the
    /// global batch and all-reduces the gradients; epoch figures and evaluations are summed
    /// over the ranks. Every rank must call the same methods with the same data and orders.
    pub fn data_parallel(mut self, dp: DataParallel) -> Result<Self> {
        dp.broadcast_module(self.model)?;
        dp.broadcast_optimizer(self.optimizer.as_mut())?;
        self.data_parallel = Some((dp, self.model.parameters()));
        Ok(self)
    }

    /// The data parallelism attached by [`Trainer::data_parallel`].
    pub fn data_parallel_handle(&self) -> Option<&DataParallel> {
        self.data_parallel.as_ref().map(|(dp, _)| dp)
    }

    /// Records a [`Mark`] every `n` batches (and after the last); 0 records only the last.
    pub fn marks_every(mut self, n: usize) -> Self {
        self.marks_every = n;
        self
    }

    /// A flag (set by a Ctrl-C handler, say) checked before every batch: once set, the
    /// epoch ends with [`Error::Stopped`] and the weights are those after the last update.
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Steps `scheduler` on the optimizer after every epoch or every update. Build it on the
    /// optimizer before handing both over (and load a checkpoint's state into it then).
    pub fn lr_scheduler(mut self, scheduler: Box<dyn LrScheduler>, every: ScheduleEvery) -> Self {
        self.schedule = Some((scheduler, every));
        self
    }

    /// Clips the gradients' total L2 norm to `max_norm` before every update
    /// ([`clip_grad_norm_`]).
    pub fn clip_grad_norm(mut self, max_norm: f32) -> Result<Self> {
        if !(max_norm.is_finite() && max_norm >= 0.0) {
            return Err(Error::invalid(
                "Trainer::clip_grad_norm",
                format!("max_norm must be a finite number >= 0, got {max_norm}"),
            ));
        }
        self.clip_grad_norm = Some(max_norm);
        Ok(self)
    }

    /// Augments every training batch (random crop with zero padding, horizontal flip) with
    /// choices drawn from `augment.seed` and the epoch number; samples must be `[C, H, W]`.
    pub fn augment(mut self, augment: Augment) -> Self {
        self.augment = augment;
        self
    }

    /// The learning-rate schedule, if any.
    pub fn scheduler(&self) -> Option<&dyn LrScheduler> {
        self.schedule.as_ref().map(|(s, _)| s.as_ref())
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }
    /// The optimizer (its state, for a checkpoint).
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }
    /// The optimizer, to load a checkpoint's state or change the learning rate.
    pub fn optimizer_mut(&mut self) -> &mut dyn Optimizer {
        self.optimizer.as_mut()
    }

    /// Batches of one epoch over `data` in `order`.
    pub fn num_batches(&self, order_len: usize) -> usize {
        order_len.div_ceil(self.batch_size)
    }

    /// One epoch: mini-batches of `data` taken in `order` (sample indices; the last batch may
    /// be smaller), one update each. `epoch` only names the epoch in errors and callbacks.
    pub fn train_epoch(
        &mut self,
        data: &ResidentData,
        order: &[usize],
        epoch: usize,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochStats> {
        self.check_data(data, "Trainer::train_epoch")?;
        if order.is_empty() {
            return Err(Error::invalid("Trainer::train_epoch", "the order is empty"));
        }
        let started = Instant::now();
        let on_device = data.order(order)?;
        let transforms = self
            .augment
            .is_active()
            .then(|| self.augment.epoch_transforms(epoch as u64, order.len()));
        let params = match self.clip_grad_norm {
            Some(_) => self.model.parameters(),
            None => Vec::new(),
        };
        let batches = self.num_batches(order.len());
        let mut sums = Sums::new(self.device)?;
        let mut marks = Vec::new();
        self.model.train();
        for i in 0..batches {
            let stop = self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
            // With several ranks the stop is agreed in the step's all-reduce.
            if stop && self.data_parallel.is_none() {
                return Err(Error::Stopped { epoch, batch: i });
            }
            on_batch(i, batches);
            let start = i * self.batch_size;
            let len = self.batch_size.min(order.len() - start);
            let part = match &self.data_parallel {
                Some((dp, _)) => dp.shard(len),
                None => 0..len,
            };
            self.optimizer.zero_grad();
            let mut local_loss = None;
            if !part.is_empty() {
                let at = start + part.start;
                let (x, y) = match &transforms {
                    Some(t) => {
                        data.batch_augmented(&on_device, at, part.len(), &t[at..at + part.len()])?
                    }
                    None => data.batch(&on_device, at, part.len())?,
                };
                let logits = self.model.forward(&x)?;
                let loss = logits.cross_entropy_labels(&y)?;
                let single = self.data_parallel.is_none();
                sums.add_loss(&loss, part.len(), epoch, i, single)?;
                if !single && self.device == Device::Cpu {
                    local_loss = Some(loss.item()? as f64 * part.len() as f64);
                }
                loss.backward()?;
                sums.add_correct(&logits.detach().count_correct(&y)?)?;
            } else if self.device == Device::Cpu {
                local_loss = Some(0.0);
            }
            // From here the gradients are the global batch's: whatever reads them before the
            // step (clipping by norm) belongs after this all-reduce.
            if let Some((dp, params)) = &mut self.data_parallel {
                dp.all_reduce_gradients(params, part.len(), len, local_loss, stop)?
                    .check(epoch, i, len)?;
            }
            if let Some(max_norm) = self.clip_grad_norm {
                clip_grad_norm_(&params, max_norm)?;
            }
            self.optimizer.step()?;
            if let Some((s, ScheduleEvery::Batch)) = &mut self.schedule {
                s.step(self.optimizer.as_mut())?;
            }
            let every = self.marks_every;
            if i + 1 == batches || (every > 0 && (i + 1) % every == 0) {
                marks.push((i + 1, sums.snapshot()));
            }
        }
        if let Some((dp, _)) = &self.data_parallel {
            // One set of running statistics (rank 0's) for evaluation and checkpoints.
            dp.broadcast_buffers(self.model)?;
        }
        if let Some((s, ScheduleEvery::Epoch)) = &mut self.schedule {
            s.step(self.optimizer.as_mut())?;
        }
        let mut totals = marks
            .iter()
            .map(|(_, snap)| snap.read())
            .chain([sums.read()])
            .collect::<Result<Vec<_>>>()?;
        if let Some((dp, _)) = &self.data_parallel {
            reduce_totals(dp, &mut totals)?;
        }
        let (loss_sum, correct) = totals.pop().expect("the epoch's own totals");
        let examples = order.len() as u64;
        if !loss_sum.is_finite() {
            // A CUDA epoch: the sum is the first value read back.
            return Err(Error::Diverged {
                epoch,
                batch: None,
                loss: loss_sum as f32,
            });
        }
        let mut stats = EpochStats {
            loss: loss_sum / examples as f64,
            correct,
            examples,
            seconds: 0.0,
            marks: Vec::with_capacity(marks.len()),
        };
        for ((batches, _), (l, c)) in marks.into_iter().zip(totals) {
            let seen = (batches * self.batch_size).min(order.len()) as f64;
            stats.marks.push(Mark {
                batches,
                loss: l / seen,
                acc: c as f64 / seen,
            });
        }
        stats.seconds = started.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// d2l's `evaluate_accuracy_gpu`: (correct, total) over `data` in stored order, forward
    /// only and without recording gradients.
    pub fn evaluate(&mut self, data: &ResidentData) -> Result<(u64, u64)> {
        self.check_data(data, "Trainer::evaluate")?;
        // Each rank evaluates its shard of the set.
        let part = match &self.data_parallel {
            Some((dp, _)) => dp.shard(data.len()),
            None => 0..data.len(),
        };
        self.model.eval();
        let mut sums = Sums::new(self.device)?;
        if !part.is_empty() {
            let order: Vec<usize> = part.clone().collect();
            let on_device = data.order(&order)?;
            let _guard = crate::no_grad_guard();
            for start in (0..order.len()).step_by(self.batch_size) {
                let len = self.batch_size.min(order.len() - start);
                let (x, y) = data.batch(&on_device, start, len)?;
                let logits = self.forward_eval(&x)?;
                sums.add_correct(&logits.count_correct(&y)?)?;
            }
        }
        let mut totals = vec![sums.read()?];
        if let Some((dp, _)) = &self.data_parallel {
            reduce_totals(dp, &mut totals)?;
        }
        Ok((totals[0].1, data.len() as u64))
    }

    /// `epochs` epochs (numbers as given, so a resumed run continues its count), each
    /// visiting `train` in `order(epoch)` (e.g. [`DataLoader::order`], so every device sees
    /// the same batches for a seed), then evaluated on `test`.
    ///
    /// [`DataLoader::order`]: crate::data::DataLoader::order
    pub fn fit<C: Callbacks>(
        &mut self,
        train: &ResidentData,
        test: &ResidentData,
        epochs: Range<usize>,
        order: &dyn Fn(u64) -> Vec<usize>,
        callbacks: &mut C,
    ) -> std::result::Result<(), C::Error> {
        for epoch in epochs {
            let stats = self.train_epoch(train, &order(epoch as u64), epoch, &mut |i, n| {
                callbacks.on_batch(epoch, i, n)
            })?;
            let (correct, total) = self.evaluate(test)?;
            let report = EpochReport {
                epoch,
                loss: stats.loss,
                train_acc: stats.accuracy(),
                test_acc: correct as f64 / total.max(1) as f64,
                examples_per_sec: stats.examples_per_sec(),
                stats,
                schedule: self.scheduler().map(|s| s.state()),
            };
            callbacks.on_epoch(&report, self.optimizer.as_ref())?;
        }
        Ok(())
    }

    fn check_data(&self, data: &ResidentData, op: &'static str) -> Result<()> {
        if data.device() != self.device {
            return Err(Error::DeviceMismatch {
                op,
                lhs: self.device,
                rhs: data.device(),
            });
        }
        Ok(())
    }

    fn forward_eval(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.device == Device::Cpu {
            if let Some(seq) = self.model.downcast_ref::<Sequential>() {
                let sample = x.shape()[1..].to_vec();
                if self.inference.as_ref().is_none_or(|(s, _)| *s != sample) {
                    // A network Inference cannot compile keeps the autograd forward.
                    let lean = Inference::new(seq, &sample).ok();
                    self.inference = Some((sample, lean));
                }
                if let Some((_, Some(lean))) = &mut self.inference {
                    return lean.run(x);
                }
            }
        }
        self.model.forward(x)
    }
}

/// Sums (loss, hits) pairs over the ranks.
fn reduce_totals(dp: &DataParallel, totals: &mut [(f64, u64)]) -> Result<()> {
    let mut flat: Vec<f64> = totals.iter().flat_map(|&(l, c)| [l, c as f64]).collect();
    dp.all_reduce_sum(&mut flat)?;
    for (t, pair) in totals.iter_mut().zip(flat.chunks_exact(2)) {
        *t = (pair[0], pair[1] as u64);
    }
    Ok(())
}

/// Loss and hit counts of an epoch: plain numbers on the CPU, 0-d tensors on a device (added
/// there, read at the end).
enum Sums {
    Host { loss: f64, correct: u64 },
    Device { loss: Tensor, correct: Tensor },
}

impl Sums {
    fn new(device: Device) -> Result<Sums> {
        Ok(match device {
            Device::Cpu => Sums::Host {
                loss: 0.0,
                correct: 0,
            },
            d => Sums::Device {
                loss: Tensor::scalar(0.0).to(&d)?,
                correct: Tensor::scalar(0.0).to(&d)?,
            },
        })
    }

    /// Adds a batch's mean loss times its size; on the CPU, when `check`, a non-finite loss
    /// stops the epoch before the update it would cause (data-parallel ranks check the
    /// global loss instead, together).
    fn add_loss(
        &mut self,
        loss: &Tensor,
        len: usize,
        epoch: usize,
        batch: usize,
        check: bool,
    ) -> Result<()> {
        match self {
            Sums::Host { loss: sum, .. } => {
                let l = loss.item()?;
                if check && !l.is_finite() {
                    return Err(Error::Diverged {
                        epoch,
                        batch: Some(batch),
                        loss: l,
                    });
                }
                *sum += l as f64 * len as f64;
            }
            Sums::Device { loss: sum, .. } => {
                *sum = sum.add(&loss.detach().mul_scalar(len as f32))?;
            }
        }
        Ok(())
    }

    fn add_correct(&mut self, n: &Tensor) -> Result<()> {
        match self {
            Sums::Host { correct, .. } => *correct += n.item()? as u64,
            Sums::Device { correct, .. } => *correct = correct.add(n)?,
        }
        Ok(())
    }

    /// The running sums as they are now (on a device: handles, nothing is read).
    fn snapshot(&self) -> Sums {
        match self {
            Sums::Host { loss, correct } => Sums::Host {
                loss: *loss,
                correct: *correct,
            },
            Sums::Device { loss, correct } => Sums::Device {
                loss: loss.clone(),
                correct: correct.clone(),
            },
        }
    }

    fn read(&self) -> Result<(f64, u64)> {
        Ok(match self {
            Sums::Host { loss, correct } => (*loss, *correct),
            // f32 counts are exact up to 2^24 examples per epoch.
            Sums::Device { loss, correct } => (loss.item()? as f64, correct.item()? as u64),
        })
    }
}
