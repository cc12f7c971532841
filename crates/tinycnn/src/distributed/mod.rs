//! Data-parallel training (PyTorch's `DistributedDataParallel`): N processes, each on its
//! slice of every global batch, gradients averaged so every rank takes the same step.
//!
//! A [`Communicator`] is the transport: `Mpi` (feature `mpi`) for processes started by
//! `mpirun` on one or many machines, [`LocalGroup`] for threads of one process (tests, and
//! a reference for what the collectives must do). [`DataParallel`] is what the training
//! loop needs on top of it; [`Trainer::data_parallel`](crate::train::Trainer::data_parallel)
//! attaches one, and from then on:
//!
//! - every global batch of `B` examples is split into contiguous shards
//!   ([`DataParallel::shard`]), so the union over the ranks is the batch a single process
//!   would take, in the same order;
//! - after backward, each rank scales its gradients by `local / B` (its shard's share of the
//!   batch) and one all-reduce sums them over a flat buffer: the result is the gradient of
//!   the global batch's mean loss, also for an uneven last batch or a rank with no example;
//! - the same all-reduce carries the batch's loss (so a divergence stops every rank at the
//!   same batch) and the stop flag (so Ctrl-C on one rank stops all before the same update);
//! - epoch statistics (loss, hits, the curve points) and the test evaluation, which is
//!   sharded too, are summed over the ranks, so every rank reports the global figures.
//!
//! Parameters (and the optimizer's state) are broadcast from rank 0 when the trainer is
//! attached, so ranks start from one model whether fresh or resumed. Only rank 0 should
//! write files ([`DataParallel::is_root`]).
//!
//! Gradients of CUDA ranks are summed on the GPUs by NCCL when a `Nccl` is attached
//! (`DataParallel::with_nccl`, feature `nccl`); otherwise they travel through host memory
//! (downloaded, reduced by the communicator, uploaded).
//!
//! ```
//! use tinycnn::distributed::{DataParallel, LocalGroup};
//! use tinycnn::data::ResidentData;
//! use tinycnn::nn::{Linear, Module};
//! use tinycnn::optim::Sgd;
//! use tinycnn::train::Trainer;
//! use tinycnn::Device;
//!
//! // Two ranks as two threads; each builds its own copy of the model.
//! let x = [-2.0, -1.0, 1.0, 2.0];
//! let ranks: Vec<Vec<f32>> = std::thread::scope(|s| {
//!     let handles: Vec<_> = LocalGroup::new(2)
//!         .into_iter()
//!         .map(|comm| {
//!             s.spawn(move || {
//!                 let data = ResidentData::new(&x, &[4, 1], &[0, 0, 1, 1], &Device::Cpu)?;
//!                 let net = Linear::new(1, 2); // different on each rank until the broadcast
//!                 let opt = Sgd::new(net.parameters(), 0.5)?;
//!                 let mut trainer = Trainer::new(&net, Box::new(opt), Device::Cpu, 4)?
//!                     .data_parallel(DataParallel::new(Box::new(comm)))?;
//!                 trainer.train_epoch(&data, &[3, 0, 2, 1], 0, &mut |_, _| {})?;
//!                 Ok::<_, tinycnn::Error>(net.weight.to_vec())
//!             })
//!         })
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
//! });
//! assert_eq!(ranks[0], ranks[1]);
//! ```

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The collectives data-parallel training needs. Every rank must call the same collectives
/// in the same order with buffers of the same length; a rank that does not arrive must not
/// make the others wait forever (a timeout, or the launcher ending the job).
pub trait Communicator {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Sums `values` element-wise over the ranks, in place, in f32.
    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()>;
    /// Sums `values` element-wise over the ranks, in place, in f64 (statistics).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Replaces `bytes` on every rank with those of rank `root` (the length may differ).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()>;
    /// Ends the job after an error on this rank, which would otherwise leave the other ranks
    /// waiting in their next collective. `Mpi` aborts every process (`MPI_Abort`) and does
    /// not return; [`LocalGroup`] makes the other ranks' collectives fail at once.
    fn abort(&self, code: i32);
}

/// The MPI launcher's world size, if this process was started by one (OpenMPI's `mpirun`
/// sets `OMPI_COMM_WORLD_SIZE`, MPICH's and Intel MPI's Hydra `PMI_SIZE`, MVAPICH
/// `MV2_COMM_WORLD_SIZE`). Read before MPI is initialized, so a binary can decide whether to
/// start it.
pub fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// What the ranks agreed on in one step (see [`DataParallel::all_reduce_gradients`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepAgreement {
    /// The sum over the global batch of each example's loss, when every rank gave its own.
    pub loss_sum: Option<f64>,
    /// Whether any rank asked to stop.
    pub stop: bool,
}

impl StepAgreement {
    /// What every rank does after the all-reduce of batch `batch` (of `len` examples) in
    /// `epoch`, before the update: [`Error::Stopped`] if a rank asked to stop,
    /// [`Error::Diverged`] if the global loss is not finite (all ranks see the same loss, so
    /// all stop at the same batch), else go on.
    pub fn check(&self, epoch: usize, batch: usize, len: usize) -> Result<()> {
        if self.stop {
            return Err(Error::Stopped { epoch, batch });
        }
        match self.loss_sum {
            Some(l) if !l.is_finite() => Err(Error::Diverged {
                epoch,
                batch: Some(batch),
                loss: (l / len.max(1) as f64) as f32,
            }),
            _ => Ok(()),
        }
    }
}

/// Data parallelism over a [`Communicator`]: shards, gradient all-reduce, broadcasts and
/// sums of statistics (see the [module docs](self)).
pub struct DataParallel {
    comm: Box<dyn Communicator>,
    /// The flat all-reduce buffer, kept between steps.
    flat: Vec<f32>,
    /// The gradient all-reduce on the GPUs.
    #[cfg(feature = "nccl")]
    nccl: Option<Nccl>,
}

/// Entries before the gradients in the flat buffer: loss sum, how many ranks gave a loss,
/// stop requests.
const HEADER: usize = 3;

impl DataParallel {
    /// Data parallelism over `comm`.
    pub fn new(comm: Box<dyn Communicator>) -> DataParallel {
        DataParallel {
            comm,
            flat: Vec::new(),
            #[cfg(feature = "nccl")]
            nccl: None,
        }
    }

    /// Sums the gradients of parameters on `nccl`'s GPU with NCCL (the loss, stop flag and
    /// which parameters have gradients still go through the communicator, a few numbers).
    #[cfg(feature = "nccl")]
    pub fn with_nccl(mut self, nccl: Nccl) -> Self {
        self.nccl = Some(nccl);
        self
    }
    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.comm.size()
    }
    /// Rank 0: the one that prints and writes files.
    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }
    /// The communicator.
    pub fn communicator(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }

    /// This rank's part of `0..len`: contiguous shards in rank order whose sizes differ by
    /// at most one (the first `len % size` ranks take one more), possibly empty.
    ///
    /// ```
    /// use tinycnn::distributed::{DataParallel, LocalGroup};
    /// let shards: Vec<_> = LocalGroup::new(3)
    ///     .into_iter()
    ///     .map(|c| DataParallel::new(Box::new(c)).shard(7))
    ///     .collect();
    /// assert_eq!(shards, [0..3, 3..5, 5..7]);
    /// ```
    pub fn shard(&self, len: usize) -> Range<usize> {
        shard_of(len, self.comm.rank(), self.comm.size())
    }

    /// Copies rank 0's parameters into every rank's `module` (a state dict, so whatever
    /// the module exports travels).
    pub fn broadcast_module(&self, module: &dyn Module) -> Result<()> {
        self.broadcast_state(
            "broadcast_module",
            || module.state_dict(),
            |state| module.load_state_dict(&state),
        )
    }

    /// Copies rank 0's buffers (batch norm's running statistics) into every rank's `module`,
    /// as PyTorch's DistributedDataParallel does (`broadcast_buffers=True`): each rank
    /// updates its statistics from its own shards, so without this the ranks would evaluate
    /// with different models. Training-mode batch norm normalizes with the batch's own
    /// statistics, so broadcasting once per epoch (the trainer does, before evaluating)
    /// gives every rank what DDP's per-step broadcast leaves on rank 0. A module without
    /// buffers costs nothing (the architecture is the same on every rank).
    pub fn broadcast_buffers(&self, module: &dyn Module) -> Result<()> {
        let buffers = module.named_buffers();
        if buffers.is_empty() {
            return Ok(());
        }
        self.broadcast_state(
            "broadcast_buffers",
            || crate::nn::StateDict::from_entries(buffers.clone()),
            |state| {
                let _no_grad = crate::no_grad_guard();
                buffers
                    .iter()
                    .try_for_each(|(name, t)| match state.get(name) {
                        Some(src) => t.copy_(src),
                        None => Err(Error::Msg(format!(
                            "broadcast_buffers: rank 0 has no buffer `{name}`"
                        ))),
                    })
            },
        )
    }

    /// Copies rank 0's optimizer state (momentum, Adam moments, step counts) into every
    /// rank's `optimizer`, so a resumed run continues from one state.
    pub fn broadcast_optimizer(&self, optimizer: &mut dyn Optimizer) -> Result<()> {
        // Read before the broadcast (the load borrows the optimizer), on rank 0 only.
        let state = match self.is_root() {
            true => optimizer.state_dict(),
            false => crate::nn::StateDict::from_entries(Vec::new()),
        };
        self.broadcast_state(
            "broadcast_optimizer",
            || state,
            |s| optimizer.load_state_dict(&s),
        )
    }

    /// Rank 0's `state()` (as safetensors bytes) handed to `load` on every other rank; a
    /// failure on any rank fails all of them (named `op`).
    fn broadcast_state(
        &self,
        op: &'static str,
        state: impl FnOnce() -> crate::nn::StateDict,
        load: impl FnOnce(crate::nn::StateDict) -> Result<()>,
    ) -> Result<()> {
        let mut bytes = if self.is_root() {
            crate::io::to_bytes(&state())?
        } else {
            Vec::new()
        };
        self.comm.broadcast_bytes(&mut bytes, 0)?;
        let loaded = if self.is_root() {
            Ok(())
        } else {
            crate::io::from_bytes(&bytes).and_then(load)
        };
        self.agree(op, loaded)
    }

    /// Fails on every rank if it failed on one (so no rank goes on to a collective the
    /// others never reach); `op` names the step in the error of the ranks that succeeded.
    pub fn agree(&self, op: &'static str, local: Result<()>) -> Result<()> {
        let mut failed = [if local.is_err() { 1.0 } else { 0.0 }];
        self.comm.all_reduce_sum_f64(&mut failed)?;
        match local {
            Err(e) => Err(e),
            Ok(()) if failed[0] > 0.0 => Err(Error::Distributed {
                op,
                msg: format!("failed on {} other rank(s)", failed[0]),
            }),
            Ok(()) => Ok(()),
        }
    }

    /// Checks that every rank holds the same `value` (settings such as the batch size or
    /// the epoch a run resumes after, in any encoding): an error on every rank names `what`
    /// otherwise.
    pub fn check_same(&self, what: &str, value: &[u8]) -> Result<()> {
        let mut bytes = value.to_vec();
        let own = bytes.clone();
        self.comm.broadcast_bytes(&mut bytes, 0)?;
        let differs = if bytes == own { 0.0 } else { 1.0 };
        let mut count = [differs];
        self.comm.all_reduce_sum_f64(&mut count)?;
        if count[0] > 0.0 {
            return Err(Error::Distributed {
                op: "check_same",
                msg: format!("{what}: {} rank(s) disagree with rank 0", count[0]),
            });
        }
        Ok(())
    }

    /// The gradient all-reduce of one step, between backward and the optimizer step: each
    /// parameter's gradient becomes `sum over ranks of (local / global) * grad`, the
    /// gradient of the mean loss over the global batch of `global` examples when each rank's
    /// gradient is that of the mean over its `local` examples. A parameter without a
    /// gradient on a rank counts as zero there, and keeps no gradient if none has one (the
    /// optimizer then skips it, as a single process would).
    ///
    /// `local_loss_sum` (the rank's mean loss times `local`) and `stop` ride along in the
    /// same buffer: the agreement says the global loss sum if every rank gave one, and
    /// whether any rank asked to stop.
    pub fn all_reduce_gradients(
        &mut self,
        params: &[Tensor],
        local: usize,
        global: usize,
        local_loss_sum: Option<f64>,
        stop: bool,
    ) -> Result<StepAgreement> {
        if local > global || global == 0 {
            return Err(Error::invalid(
                "all_reduce_gradients",
                format!("{local} local examples of a global batch of {global}"),
            ));
        }
        let weight = local as f32 / global as f32;
        #[cfg(feature = "nccl")]
        if let Some(nccl) = &self.nccl {
            if params.iter().all(|p| p.device() == nccl.device()) {
                return nccl_step(self, params, weight, local_loss_sum, stop);
            }
        }
        let total: usize = params.iter().map(|p| p.numel()).sum();
        let flat = &mut self.flat;
        flat.clear();
        flat.reserve(HEADER + params.len() + total);
        flat.push(local_loss_sum.unwrap_or(0.0) as f32);
        flat.push(if local_loss_sum.is_some() { 1.0 } else { 0.0 });
        flat.push(if stop { 1.0 } else { 0.0 });
        let grads: Vec<Option<Tensor>> = params.iter().map(|p| p.grad()).collect();
        flat.extend(grads.iter().map(|g| if g.is_some() { 1.0 } else { 0.0 }));
        for (p, g) in params.iter().zip(&grads) {
            match g {
                Some(g) => flat.extend(g.to_host()?.iter().map(|v| v * weight)),
                None => flat.extend(std::iter::repeat_n(0.0, p.numel())),
            }
        }
        self.comm.all_reduce_sum_f32(flat)?;
        let mut at = HEADER + params.len();
        for (i, p) in params.iter().enumerate() {
            let n = p.numel();
            let grad = if flat[HEADER + i] > 0.0 {
                let g = Tensor::from_vec(flat[at..at + n].to_vec(), p.shape())?;
                // A gradient is a plain tensor: no graph back to the host copy.
                Some(g.to(&p.device())?.detach())
            } else {
                None
            };
            p.set_grad(grad)?;
            at += n;
        }
        let size = self.comm.size() as f32;
        Ok(StepAgreement {
            loss_sum: (flat[1] == size).then_some(flat[0] as f64),
            stop: flat[2] > 0.0,
        })
    }

    /// Sums `values` over the ranks (epoch statistics).
    pub fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        self.comm.all_reduce_sum_f64(values)
    }

    /// Ends the job after an error on this rank (see [`Communicator::abort`]).
    pub fn abort(&self, code: i32) {
        self.comm.abort(code)
    }
}

/// [`DataParallel::all_reduce_gradients`] with the gradients summed by NCCL on the GPUs and
/// the header (loss, stop, which gradients exist) by the communicator.
#[cfg(feature = "nccl")]
fn nccl_step(
    dp: &DataParallel,
    params: &[Tensor],
    weight: f32,
    local_loss_sum: Option<f64>,
    stop: bool,
) -> Result<StepAgreement> {
    let grads: Vec<Option<Tensor>> = params.iter().map(|p| p.grad()).collect();
    let mut header = vec![
        local_loss_sum.unwrap_or(0.0) as f32,
        if local_loss_sum.is_some() { 1.0 } else { 0.0 },
        if stop { 1.0 } else { 0.0 },
    ];
    header.extend(grads.iter().map(|g| if g.is_some() { 1.0 } else { 0.0 }));
    dp.comm.all_reduce_sum_f32(&mut header)?;
    let nccl = dp.nccl.as_ref().expect("called with NCCL attached");
    let summed = nccl.all_reduce_scaled(params, &grads, weight)?;
    for (i, (p, g)) in params.iter().zip(summed).enumerate() {
        p.set_grad((header[HEADER + i] > 0.0).then_some(g))?;
    }
    let size = dp.comm.size() as f32;
    Ok(StepAgreement {
        loss_sum: (header[1] == size).then_some(header[0] as f64),
        stop: header[2] > 0.0,
    })
}

fn shard_of(len: usize, rank: usize, size: usize) -> Range<usize> {
    let (base, extra) = (len / size, len % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

mod local;
pub use self::local::{LocalCommunicator, LocalGroup};

#[cfg(feature = "nccl")]
mod nccl_backend;
#[cfg(feature = "nccl")]
pub use self::nccl_backend::Nccl;

#[cfg(feature = "mpi")]
mod mpi_backend;
#[cfg(feature = "mpi")]
pub use self::mpi_backend::Mpi;

#[cfg(test)]
mod tests;
