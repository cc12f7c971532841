//! MPI processes (feature `mpi`).

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
