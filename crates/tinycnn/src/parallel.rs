//! The rayon pool the runtime's batch-parallel ops (convolution, pooling) run on.

use crate::error::{Error, Result};
use std::sync::{Arc, RwLock};

static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);

fn build(n: usize) -> Result<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("tinycnn-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| {
            Error::Msg(format!(
                "set_num_threads({n}): cannot build thread pool: {e}"
            ))
        })
}

/// The most threads [`set_num_threads`] accepts. Each thread is an OS thread with its own
/// stack, spawned up front: an unchecked count such as 100,000,000 would stall the machine
/// before failing. 1024 is far above the core count of any machine this runs on, and the
/// batch-parallel ops split a batch into at most one chunk per image anyway.
pub const MAX_THREADS: usize = 1024;

/// Uses `n` threads (`1..=`[`MAX_THREADS`]) for batch-parallel ops from now on (PyTorch's
/// `torch.set_num_threads`).
///
/// ```
/// tinycnn::set_num_threads(1).unwrap();
/// assert_eq!(tinycnn::num_threads(), 1);
/// assert!(tinycnn::set_num_threads(0).is_err());
/// assert!(tinycnn::set_num_threads(tinycnn::parallel::MAX_THREADS + 1).is_err());
/// ```
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "set_num_threads",
            "needs at least one thread",
        ));
    }
    if n > MAX_THREADS {
        return Err(Error::invalid(
            "set_num_threads",
            format!("{n} threads is more than the limit of {MAX_THREADS}"),
        ));
    }
    let pool = build(n)?;
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
    Ok(())
}

/// Threads the batch-parallel ops use (default: the available cores).
pub fn num_threads() -> usize {
    pool().map(|p| p.current_num_threads()).unwrap_or(1)
}

pub(crate) fn pool() -> Option<Arc<rayon::ThreadPool>> {
    if let Some(p) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Some(p.clone());
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_THREADS);
        *slot = build(n).ok();
    }
    slot.clone()
}

/// Images per chunk when a batch is split over the pool (one chunk per thread).
pub(crate) fn chunk_len(batch: usize) -> usize {
    batch.div_ceil(num_threads().max(1)).max(1)
}

/// Runs `f` inside the runtime's pool (on the caller's thread if no pool could be built).
pub(crate) fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(p) => p.install(f),
        None => f(),
    }
}
