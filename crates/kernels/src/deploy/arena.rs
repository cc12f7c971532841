//! Static memory planning: every activation gets a fixed offset in one arena, chosen from the
//! values' lifetimes so that two values share bytes only when they are never live together.

use super::DeployError;

/// When a value exists: written at step `def`, last read at step `last` (inclusive).
///
/// Steps number the plan's ops from 1 (op `k` is step `k + 1`); the input is written at
/// step 0, and the network's output stays live to the end (`last` = number of ops + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub def: usize,
    pub last: usize,
}

impl Lifetime {
    /// Whether the two values are live at a common step.
    pub fn overlaps(&self, other: &Lifetime) -> bool {
        self.def <= other.last && other.def <= self.last
    }
}

/// Alignment of every arena offset (f32 and i32 values need 4).
pub const ALIGN: usize = 4;

fn round_up(v: usize) -> Option<usize> {
    v.checked_add(ALIGN - 1).map(|v| v & !(ALIGN - 1))
}

/// The lower bound of any arena: the largest total size (rounded to [`ALIGN`]) of values
/// live at one step.
///
/// ```
/// use tinycnn_kernels::deploy::{peak_live_bytes, Lifetime};
/// // A chain: input (8 B) -> a (16 B) -> b (4 B).
/// let life = [Lifetime { def: 0, last: 1 }, Lifetime { def: 1, last: 2 }, Lifetime { def: 2, last: 3 }];
/// assert_eq!(peak_live_bytes(&[8, 16, 4], &life).unwrap(), 24);
/// ```
pub fn peak_live_bytes(sizes: &[usize], lives: &[Lifetime]) -> Result<usize, DeployError> {
    if sizes.len() != lives.len() {
        return Err(DeployError::plan("one lifetime per value is needed"));
    }
    let mut peak = 0usize;
    for t in lives.iter().map(|l| l.def) {
        let mut sum = 0usize;
        for (s, l) in sizes.iter().zip(lives) {
            if l.def <= t && t <= l.last {
                sum = round_up(*s)
                    .and_then(|s| sum.checked_add(s))
                    .ok_or(DeployError::plan("arena size overflows"))?;
            }
        }
        peak = peak.max(sum);
    }
    Ok(peak)
}

/// Places every value in one arena: `offsets[v]` (a multiple of [`ALIGN`]) so that values
/// with overlapping lifetimes never share a byte. Returns the arena's size.
///
/// Greedy best fit, largest value first: each value goes to the lowest offset where it
/// clashes with no already placed value live at the same time. For a chain of layers this
/// is ping-pong or better (each value reuses the space of those that died before it); the
/// result is at least [`peak_live_bytes`], and for chains it usually equals it. No
/// allocation: `offsets` doubles as the "placed" marker (`usize::MAX` while unplaced).
///
/// ```
/// use tinycnn_kernels::deploy::{plan_arena, Lifetime};
/// let life = [Lifetime { def: 0, last: 1 }, Lifetime { def: 1, last: 2 }, Lifetime { def: 2, last: 3 }];
/// let mut off = [0; 3];
/// assert_eq!(plan_arena(&[8, 16, 4], &life, &mut off).unwrap(), 24);
/// assert_eq!(off, [16, 0, 16]);
/// ```
pub fn plan_arena(
    sizes: &[usize],
    lives: &[Lifetime],
    offsets: &mut [usize],
) -> Result<usize, DeployError> {
    if sizes.len() != lives.len() || offsets.len() != sizes.len() {
        return Err(DeployError::plan(
            "one lifetime and one offset per value are needed",
        ));
    }
    if lives.iter().any(|l| l.def > l.last) {
        return Err(DeployError::plan("a value dies before it is written"));
    }
    const UNPLACED: usize = usize::MAX;
    offsets.fill(UNPLACED);
    let mut arena = 0usize;
    for _ in 0..sizes.len() {
        // The largest unplaced value (earliest on ties).
        let mut pick = None;
        for (v, &s) in sizes.iter().enumerate() {
            if offsets[v] == UNPLACED && pick.is_none_or(|p: usize| s > sizes[p]) {
                pick = Some(v);
            }
        }
        let Some(v) = pick else { break };
        let size = round_up(sizes[v]).ok_or(DeployError::plan("arena size overflows"))?;
        // Candidates: 0 and the end of every clashing placed value; the lowest that fits.
        let clashes = |u: usize| u != v && offsets[u] != UNPLACED && lives[u].overlaps(&lives[v]);
        let mut best = UNPLACED;
        let candidates = core::iter::once(0).chain(
            (0..sizes.len())
                .filter(|&u| clashes(u))
                .map(|u| offsets[u].saturating_add(round_up(sizes[u]).unwrap_or(usize::MAX))),
        );
        for start in candidates {
            if start >= best {
                continue;
            }
            let Some(end) = start.checked_add(size) else {
                continue;
            };
            let free = (0..sizes.len()).filter(|&u| clashes(u)).all(|u| {
                let (a, b) = (offsets[u], offsets[u].saturating_add(sizes[u]));
                end <= a || start >= b || sizes[u] == 0 || size == 0
            });
            if free {
                best = start;
            }
        }
        if best == UNPLACED {
            return Err(DeployError::plan("arena size overflows"));
        }
        offsets[v] = best;
        arena = arena.max(best + size);
    }
    Ok(arena)
}
