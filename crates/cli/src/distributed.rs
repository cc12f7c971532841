//! `--distributed`: whether `tinycnn train` runs as one rank of an MPI job
//! (`mpirun -np N tinycnn train ...`), and the job-wide exit after an error.
//!
//! The training itself is the runtime's (`tinycnn::distributed`); the CLI only starts MPI,
//! gives each rank its share of the cores, and lets rank 0 alone print and write files.

use crate::error::Result;
use clap::ValueEnum;
use std::sync::atomic::{AtomicBool, Ordering};
use tinycnn::distributed::DataParallel;

/// How `train` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistributedMode {
    /// Data-parallel over MPI when started by mpirun with more than one process, else alone
    Auto,
    /// Data-parallel over MPI (an error if the binary was built without MPI)
    Mpi,
    /// One process, even under mpirun (every rank would train alone and write the same files)
    None,
}

/// Set once MPI is running, so that an error can end the whole job.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Starts data parallelism as `mode` asks: `None` for a single-process run.
pub fn start(mode: DistributedMode) -> Result<Option<DataParallel>> {
    let launched = tinycnn::distributed::launcher_world_size();
    match (mode, launched) {
        (DistributedMode::None, _) => Ok(None),
        (DistributedMode::Auto, None | Some(0..=1)) => Ok(None),
        _ => init(launched),
    }
}

#[cfg(feature = "mpi")]
fn init(_launched: Option<usize>) -> Result<Option<DataParallel>> {
    let mpi = tinycnn::distributed::Mpi::init()
        .map_err(crate::error::runtime("cannot start MPI".to_string()))?;
    ACTIVE.store(true, Ordering::SeqCst);
    let dp = DataParallel::new(Box::new(mpi));
    if !dp.is_root() {
        crate::output::set_quiet(true);
    }
    Ok(Some(dp))
}

#[cfg(not(feature = "mpi"))]
fn init(launched: Option<usize>) -> Result<Option<DataParallel>> {
    let why = match launched {
        Some(n) => format!("started by mpirun with {n} processes, but "),
        None => String::new(),
    };
    Err(crate::cli_err!(
        "{why}this tinycnn was built without MPI: rebuild with `cargo build --release -p tinycnn-cli --features mpi`, or pass --distributed none to train alone"
    ))
}

/// Worker threads per rank when `--threads` is not given: the cores shared among the
/// ranks on this machine (as torchrun sets OMP_NUM_THREADS), so that N ranks on one host do
/// not run N times as many threads as cores.
pub fn default_threads() -> Option<usize> {
    let local: usize = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((cores / local.max(1)).max(1))
}

/// The GPU of this rank under `--device cuda`: one per rank on a machine, by the rank's
/// index among the ranks there (`OMPI_COMM_WORLD_LOCAL_RANK`, Hydra's `MPI_LOCALRANKID`).
pub fn gpu_of_rank(device: tinycnn::Device) -> Result<tinycnn::Device> {
    let tinycnn::Device::Cuda(_) = device else {
        return Ok(device);
    };
    let local: usize = ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
        .unwrap_or(0);
    let gpu = tinycnn::Device::Cuda(local);
    tinycnn::Tensor::scalar(0.0).to(&gpu).map_err(|e| {
        crate::cli_err!(
            "--device cuda: rank {local} on this machine needs GPU {local}, which is not usable ({e}); start at most one rank per GPU"
        )
    })?;
    Ok(gpu)
}

/// Sums the gradients of CUDA ranks with NCCL when every rank can load it, else leaves them
/// on the host path (rank 0 says so).
#[cfg(feature = "mpi")]
pub fn attach_nccl(dp: DataParallel, device: tinycnn::Device) -> Result<DataParallel> {
    use tinycnn::distributed::Nccl;
    if !device.is_cuda() {
        return Ok(dp);
    }
    let mut missing = [if Nccl::is_available() { 0.0 } else { 1.0 }];
    dp.all_reduce_sum(&mut missing)
        .map_err(crate::error::runtime("NCCL"))?;
    if missing[0] > 0.0 {
        crate::outln!(
            "NCCL (libnccl.so.2) is missing on {} rank(s): gradients go through host memory and MPI",
            missing[0]
        )?;
        return Ok(dp);
    }
    let nccl =
        Nccl::new(dp.communicator(), device).map_err(crate::error::runtime("cannot start NCCL"))?;
    Ok(dp.with_nccl(nccl))
}

/// Without MPI there is no data parallelism to give NCCL to.
#[cfg(not(feature = "mpi"))]
pub fn attach_nccl(dp: DataParallel, _device: tinycnn::Device) -> Result<DataParallel> {
    Ok(dp)
}

/// After an error on this rank: ends every rank of the job (the others would wait for it
/// in their next all-reduce). Returns only when no MPI job is running.
pub fn abort_job() {
    if ACTIVE.load(Ordering::SeqCst) {
        #[cfg(feature = "mpi")]
        tinycnn::distributed::Mpi::abort_world(1);
    }
}
