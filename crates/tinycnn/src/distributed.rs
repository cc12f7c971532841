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
        let mut bytes = if self.is_root() {
            crate::io::to_bytes(&module.state_dict())?
        } else {
            Vec::new()
        };
        self.comm.broadcast_bytes(&mut bytes, 0)?;
        if !self.is_root() {
            let state = crate::io::from_bytes(&bytes)?;
            self.agree("broadcast_module", module.load_state_dict(&state))?;
        } else {
            self.agree("broadcast_module", Ok(()))?;
        }
        Ok(())
    }

    /// Copies rank 0's optimizer state (momentum, Adam moments, step counts) into every
    /// rank's `optimizer`, so a resumed run continues from one state.
    pub fn broadcast_optimizer(&self, optimizer: &mut dyn Optimizer) -> Result<()> {
        let mut bytes = if self.is_root() {
            crate::io::to_bytes(&optimizer.state_dict())?
        } else {
            Vec::new()
        };
        self.comm.broadcast_bytes(&mut bytes, 0)?;
        let loaded = if self.is_root() {
            Ok(())
        } else {
            crate::io::from_bytes(&bytes).and_then(|s| optimizer.load_state_dict(&s))
        };
        self.agree("broadcast_optimizer", loaded)
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

// ----- in-process ranks ----------------------------------------------------------------------

/// Ranks as threads of one process, with the same collectives as MPI: for tests, and for
/// trying data parallelism without `mpirun`. Sums are taken in rank order, so every rank
/// gets bit-identical results.
pub struct LocalGroup;

impl LocalGroup {
    /// `size` connected communicators (rank `i` at index `i`); a collective fails after
    /// 60 s without every rank.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(size: usize) -> Vec<LocalCommunicator> {
        LocalGroup::with_timeout(size, Duration::from_secs(60))
    }

    /// As [`LocalGroup::new`], failing a collective after `timeout` without every rank.
    pub fn with_timeout(size: usize, timeout: Duration) -> Vec<LocalCommunicator> {
        let shared = Arc::new(Shared {
            state: Mutex::new(Round {
                slots: (0..size).map(|_| None).collect(),
                arrived: 0,
                generation: 0,
                result: Ok(Payload::F64(Vec::new())),
                aborted: None,
            }),
            done: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalCommunicator {
                rank,
                size,
                timeout,
                shared: Arc::clone(&shared),
            })
            .collect()
    }
}

/// One rank of a [`LocalGroup`].
pub struct LocalCommunicator {
    rank: usize,
    size: usize,
    timeout: Duration,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<Round>,
    done: Condvar,
}

#[derive(Clone)]
enum Payload {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Broadcast: the root's bytes, `None` from the others.
    Bytes(Option<Vec<u8>>, usize),
}

struct Round {
    slots: Vec<Option<Payload>>,
    arrived: usize,
    generation: u64,
    result: std::result::Result<Payload, String>,
    aborted: Option<usize>,
}

fn combine(slots: Vec<Option<Payload>>) -> std::result::Result<Payload, String> {
    let all: Vec<Payload> = slots.into_iter().flatten().collect();
    match &all[0] {
        Payload::F32(first) => {
            let mut sum = vec![0.0f32; first.len()];
            for (r, p) in all.iter().enumerate() {
                match p {
                    Payload::F32(v) if v.len() == sum.len() => {
                        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x)
                    }
                    _ => return Err(format!("rank {r} called another collective or length")),
                }
            }
            Ok(Payload::F32(sum))
        }
        Payload::F64(first) => {
            let mut sum = vec![0.0f64; first.len()];
            for (r, p) in all.iter().enumerate() {
                match p {
                    Payload::F64(v) if v.len() == sum.len() => {
                        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x)
                    }
                    _ => return Err(format!("rank {r} called another collective or length")),
                }
            }
            Ok(Payload::F64(sum))
        }
        Payload::Bytes(_, root) => {
            let root = *root;
            for (r, p) in all.iter().enumerate() {
                if !matches!(p, Payload::Bytes(_, x) if *x == root) {
                    return Err(format!("rank {r} called another collective or root"));
                }
            }
            match &all[root] {
                Payload::Bytes(Some(b), _) => Ok(Payload::Bytes(Some(b.clone()), root)),
                _ => Err("the root gave no bytes".into()),
            }
        }
    }
}

impl LocalCommunicator {
    fn collective(&self, op: &'static str, mine: Payload) -> Result<Payload> {
        let err = |msg: String| Error::Distributed { op, msg };
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = st.aborted {
            return Err(err(format!("rank {r} aborted the group")));
        }
        let generation = st.generation;
        st.slots[self.rank] = Some(mine);
        st.arrived += 1;
        if st.arrived == self.size {
            let slots = std::mem::replace(&mut st.slots, (0..self.size).map(|_| None).collect());
            st.result = combine(slots);
            st.arrived = 0;
            st.generation += 1;
            self.shared.done.notify_all();
        } else {
            let deadline = Instant::now() + self.timeout;
            while st.generation == generation {
                if let Some(r) = st.aborted {
                    return Err(err(format!("rank {r} aborted the group")));
                }
                let now = Instant::now();
                if now >= deadline {
                    // Withdraw, so a late rank does not complete a round without us.
                    st.slots[self.rank] = None;
                    st.arrived -= 1;
                    return Err(err(format!(
                        "rank {} waited {:?} for the other ranks; one has stopped or hangs",
                        self.rank, self.timeout
                    )));
                }
                st = self
                    .shared
                    .done
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        st.result.clone().map_err(err)
    }
}

impl Communicator for LocalCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        if let Payload::F32(v) = self.collective("all_reduce", Payload::F32(values.to_vec()))? {
            values.copy_from_slice(&v);
        }
        Ok(())
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        if let Payload::F64(v) = self.collective("all_reduce", Payload::F64(values.to_vec()))? {
            values.copy_from_slice(&v);
        }
        Ok(())
    }
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        if root >= self.size {
            return Err(Error::invalid(
                "broadcast",
                format!("root {root} of {}", self.size),
            ));
        }
        let mine = (self.rank == root).then(|| bytes.clone());
        if let Payload::Bytes(Some(b), _) =
            self.collective("broadcast", Payload::Bytes(mine, root))?
        {
            *bytes = b;
        }
        Ok(())
    }
    fn abort(&self, _code: i32) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.aborted = Some(self.rank);
        self.shared.done.notify_all();
    }
}

// ----- NCCL ----------------------------------------------------------------------------------

#[cfg(feature = "nccl")]
pub use self::nccl_backend::Nccl;

#[cfg(feature = "nccl")]
mod nccl_backend {
    use super::{Communicator, Error, Result};
    use crate::cuda::{err, CudaStorage};
    use crate::device::Device;
    use crate::storage::Buffer;
    use crate::tensor::Tensor;
    use std::sync::Arc;
    use tinycnn_cuda::nccl::{NcclComm, ID_BYTES};
    use tinycnn_cuda::CudaDevice;

    /// NCCL on this rank's GPU, for [`DataParallel::with_nccl`](super::DataParallel::with_nccl):
    /// the gradients of a step are packed into one device buffer (each scaled by the rank's
    /// share of the batch), summed in place by `ncclAllReduce` on the device's stream, and
    /// unpacked, without a trip through host memory. Needs a GPU and `libnccl.so.2`; the
    /// emulated device has no NCCL.
    pub struct Nccl {
        comm: NcclComm,
        dev: Arc<CudaDevice>,
        ordinal: usize,
    }

    impl Nccl {
        /// Joins every rank of `comm` on `device` (a CUDA device, one per rank): rank 0 makes
        /// the NCCL id and broadcasts it over `comm`. Collective: every rank calls it, and
        /// a failure on rank 0 (no NCCL) fails every rank.
        pub fn new(comm: &dyn Communicator, device: Device) -> Result<Nccl> {
            let Device::Cuda(ordinal) = device else {
                return Err(Error::invalid(
                    "Nccl::new",
                    format!("{device} is not a GPU"),
                ));
            };
            let made = if comm.rank() == 0 {
                tinycnn_cuda::nccl::unique_id().map_err(err("NCCL id"))
            } else {
                Ok([0; ID_BYTES])
            };
            let mut bytes = made.as_ref().map_or(Vec::new(), |id| id.to_vec());
            comm.broadcast_bytes(&mut bytes, 0)?;
            made?;
            let id: [u8; ID_BYTES] = bytes.try_into().map_err(|_| Error::Distributed {
                op: "Nccl::new",
                msg: "rank 0 could not make an NCCL id (see its error)".into(),
            })?;
            let dev = crate::cuda::device(ordinal)?;
            let nccl =
                NcclComm::new(&dev, comm.rank(), comm.size(), &id).map_err(err("NCCL init"))?;
            Ok(Nccl {
                comm: nccl,
                dev,
                ordinal,
            })
        }

        /// Whether `libnccl.so.2` can be loaded on this machine.
        pub fn is_available() -> bool {
            tinycnn_cuda::nccl::is_available()
        }

        /// The GPU.
        pub fn device(&self) -> Device {
            Device::Cuda(self.ordinal)
        }

        /// Sum over the ranks of `weight * grad` for every parameter (zeros where a rank
        /// has no gradient), as new device tensors.
        pub(super) fn all_reduce_scaled(
            &self,
            params: &[Tensor],
            grads: &[Option<Tensor>],
            weight: f32,
        ) -> Result<Vec<Tensor>> {
            let total: usize = params.iter().map(|p| p.numel()).sum();
            let mut flat = self.dev.zeros(total).map_err(err("NCCL pack"))?;
            let mut at = 0;
            for (p, g) in params.iter().zip(grads) {
                let n = p.numel();
                if let Some(g) = g {
                    let scaled = g.mul_scalar(weight);
                    let buffer = scaled.buffer();
                    let Buffer::Cuda(src) = &*buffer else {
                        return Err(Error::Distributed {
                            op: "Nccl",
                            msg: "a gradient is not on the GPU".into(),
                        });
                    };
                    self.dev
                        .copy_device(&src.buf.slice(..n), &mut flat.slice_mut(at..at + n))
                        .map_err(err("NCCL pack"))?;
                }
                at += n;
            }
            self.comm
                .all_reduce_sum(&mut flat)
                .map_err(err("NCCL all-reduce"))?;
            let mut out = Vec::with_capacity(params.len());
            at = 0;
            for p in params {
                let n = p.numel();
                let mut buf = self.dev.alloc(n).map_err(err("NCCL unpack"))?;
                self.dev
                    .copy_device(&flat.slice(at..at + n), &mut buf)
                    .map_err(err("NCCL unpack"))?;
                let storage = CudaStorage {
                    ordinal: self.ordinal,
                    dev: Arc::clone(&self.dev),
                    buf,
                };
                out.push(Tensor::from_buffer(
                    Buffer::Cuda(storage),
                    p.shape().to_vec(),
                ));
                at += n;
            }
            Ok(out)
        }
    }
}

// ----- MPI -----------------------------------------------------------------------------------

#[cfg(feature = "mpi")]
pub use self::mpi_backend::Mpi;

#[cfg(feature = "mpi")]
mod mpi_backend {
    use super::{Communicator, Error, Result};
    use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
    use mpi::environment::Universe;
    use mpi::topology::{Communicator as _, SimpleCommunicator};
    use mpi::Threading;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// The environment variable holding the collective timeout in seconds.
    pub const TIMEOUT_VAR: &str = "TINYCNN_COLLECTIVE_TIMEOUT";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// The MPI world (`MPI_COMM_WORLD`), initialized by [`Mpi::init`] and finalized when
    /// dropped. A rank that dies makes `mpirun` end the job; a rank that hangs is caught by
    /// a watchdog: a collective (or `MPI_Init`, which waits for every rank too) that waits
    /// longer than `TINYCNN_COLLECTIVE_TIMEOUT` seconds (default 300) prints which one and
    /// aborts every rank (`MPI_Abort`).
    pub struct Mpi {
        world: SimpleCommunicator,
        watchdog: Arc<Mutex<Option<(&'static str, Instant)>>>,
        // Last: finalizes MPI after everything else is dropped.
        _universe: Universe,
    }

    impl Mpi {
        /// Initializes MPI (once per process) and starts the watchdog.
        pub fn init() -> Result<Mpi> {
            let timeout = match std::env::var(TIMEOUT_VAR) {
                Ok(s) => match s.trim().parse::<f64>() {
                    Ok(t) if t.is_finite() && t > 0.0 => Duration::from_secs_f64(t),
                    _ => {
                        return Err(Error::invalid(
                            "Mpi::init",
                            format!("{TIMEOUT_VAR}={s}: expected a positive number of seconds"),
                        ))
                    }
                },
                Err(_) => DEFAULT_TIMEOUT,
            };
            // Armed from the start: MPI_Init itself waits for every rank, so a rank that
            // starts but never reaches it would hold the others there.
            let watchdog = Arc::new(Mutex::new(Some(("init", Instant::now()))));
            let armed = Arc::clone(&watchdog);
            // Set once MPI runs with MPI_THREAD_MULTIPLE: then the watchdog may call
            // MPI_Abort while the main thread is inside a collective.
            let can_abort = Arc::new(AtomicBool::new(false));
            let abort_ok = Arc::clone(&can_abort);
            let rank = ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK"]
                .iter()
                .find_map(|v| std::env::var(v).ok())
                .unwrap_or_else(|| "?".into());
            std::thread::Builder::new()
                .name("tinycnn-mpi-watchdog".into())
                .spawn(move || loop {
                    std::thread::sleep((timeout / 4).min(Duration::from_secs(1)));
                    let late = armed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .filter(|(_, since)| since.elapsed() > timeout);
                    if let Some((op, _)) = late {
                        eprintln!(
                            "tinycnn: rank {rank}: MPI {op} waited more than {:.0} s for the \
                             other ranks ({TIMEOUT_VAR}); a rank has died or hangs: aborting the job",
                            timeout.as_secs_f64()
                        );
                        if abort_ok.load(Ordering::SeqCst) {
                            SimpleCommunicator::world().abort(1);
                        }
                        // Before MPI runs, or without thread support: leaving the process
                        // makes mpirun end the job.
                        std::process::exit(1);
                    }
                })
                .map_err(|e| Error::Distributed {
                    op: "init",
                    msg: format!("cannot start the watchdog thread: {e}"),
                })?;
            let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
                .ok_or_else(|| Error::Distributed {
                    op: "init",
                    msg: "MPI is already initialized in this process".into(),
                })?;
            can_abort.store(threading == Threading::Multiple, Ordering::SeqCst);
            *watchdog.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let world = universe.world();
            Ok(Mpi {
                world,
                watchdog,
                _universe: universe,
            })
        }

        /// Aborts every rank of the MPI job (`MPI_Abort` on the world) if MPI is running in
        /// this process, for an error seen where no [`Mpi`] handle is at hand.
        pub fn abort_world(code: i32) {
            if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
                SimpleCommunicator::world().abort(code)
            }
        }

        fn guarded<R>(&self, op: &'static str, f: impl FnOnce() -> R) -> R {
            *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some((op, Instant::now()));
            let r = f();
            *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = None;
            r
        }
    }

    impl Communicator for Mpi {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
            let send = values.to_vec();
            self.guarded("all_reduce", || {
                self.world
                    .all_reduce_into(&send[..], values, SystemOperation::sum())
            });
            Ok(())
        }
        fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
            let send = values.to_vec();
            self.guarded("all_reduce", || {
                self.world
                    .all_reduce_into(&send[..], values, SystemOperation::sum())
            });
            Ok(())
        }
        fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
            if root >= self.size() {
                return Err(Error::invalid(
                    "broadcast",
                    format!("root {root} of {}", self.size()),
                ));
            }
            let process = self.world.process_at_rank(root as i32);
            self.guarded("broadcast", || {
                let mut len = bytes.len() as u64;
                process.broadcast_into(&mut len);
                bytes.resize(len as usize, 0);
                process.broadcast_into(&mut bytes[..]);
            });
            Ok(())
        }
        fn abort(&self, code: i32) {
            self.world.abort(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order() {
        for size in 1..5 {
            for len in 0..12 {
                let parts: Vec<_> = (0..size).map(|r| shard_of(len, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, len);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len() >= w[1].len() && w[0].len() - w[1].len() <= 1);
                }
            }
        }
        assert_eq!(shard_of(1, 1, 2), 1..1);
    }

    fn on_ranks<R: Send>(
        comms: Vec<LocalCommunicator>,
        f: impl Fn(LocalCommunicator) -> R + Sync,
    ) -> Vec<R> {
        std::thread::scope(|s| {
            let hs: Vec<_> = comms.into_iter().map(|c| s.spawn(|| f(c))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn local_group_sums_and_broadcasts() {
        let got = on_ranks(LocalGroup::new(3), |c| {
            let r = c.rank() as f32;
            let mut v = [r, 10.0 * r];
            c.all_reduce_sum_f32(&mut v).unwrap();
            let mut b = if c.rank() == 1 { vec![7, 8, 9] } else { vec![] };
            c.broadcast_bytes(&mut b, 1).unwrap();
            (v, b)
        });
        for (v, b) in got {
            assert_eq!(v, [3.0, 30.0]);
            assert_eq!(b, [7, 8, 9]);
        }
    }

    #[test]
    fn a_missing_rank_times_out() {
        let mut comms = LocalGroup::with_timeout(2, Duration::from_millis(50));
        let _silent = comms.pop();
        let err = comms[0].all_reduce_sum_f64(&mut [1.0]).unwrap_err();
        assert!(err.to_string().contains("waited"), "{err}");
    }

    #[test]
    fn abort_releases_the_others() {
        let got = on_ranks(LocalGroup::new(2), |c| {
            if c.rank() == 1 {
                c.abort(1);
                return None;
            }
            Some(c.all_reduce_sum_f64(&mut [1.0]).unwrap_err().to_string())
        });
        assert!(got[0].as_deref().unwrap().contains("rank 1 aborted"));
    }

    #[test]
    fn gradients_are_weighted_by_shard_size() {
        // Global batch of 3: rank 0 has 2 examples with mean gradient [1, 2], rank 1 has one
        // with gradient [4, 8]; the global mean is (2*[1,2] + [4,8]) / 3 = [2, 4].
        let got = on_ranks(LocalGroup::new(2), |c| {
            let rank = c.rank();
            let mut dp = DataParallel::new(Box::new(c));
            let w = Tensor::zeros(&[2]).requires_grad_(true).unwrap();
            let unused = Tensor::zeros(&[1]).requires_grad_(true).unwrap();
            let (g, n, loss) = if rank == 0 {
                ([1.0, 2.0], 2, 0.5)
            } else {
                ([4.0, 8.0], 1, 3.0)
            };
            w.set_grad(Some(Tensor::new(g))).unwrap();
            let agreed = dp
                .all_reduce_gradients(&[w.clone(), unused.clone()], n, 3, Some(loss), rank == 1)
                .unwrap();
            (w.grad().unwrap().to_vec(), unused.grad().is_none(), agreed)
        });
        for (g, none, agreed) in got {
            assert_eq!(g, [2.0, 4.0]);
            assert!(none);
            assert_eq!(agreed.loss_sum, Some(3.5));
            assert!(agreed.stop);
        }
    }

    #[test]
    fn check_same_names_the_difference() {
        let got = on_ranks(LocalGroup::new(2), |c| {
            let dp = DataParallel::new(Box::new(c));
            let v = format!("batch 256, epoch {}", dp.rank());
            dp.check_same("the epoch to resume after", v.as_bytes())
        });
        for r in got {
            assert!(r.unwrap_err().to_string().contains("epoch to resume after"));
        }
    }
}
