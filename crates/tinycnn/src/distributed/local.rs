//! In-process ranks: [`LocalGroup`]'s threads with the same collectives as MPI.

use super::*;

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
