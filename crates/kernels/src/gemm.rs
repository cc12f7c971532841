//! Single-precision GEMM: packed panels, one register-blocked micro-kernel, compiled per ISA.
//!
//! # Design (BLIS / matrixmultiply style)
//! `C = alpha op(A) op(B) + beta C` is cut into blocks that fit the caches:
//!
//! ```text
//! for jc in steps of NC over n          B block (KC x NC) lives in L3
//!   for pc in steps of KC over k        pack B block into NR-column panels
//!     for ic in steps of MC over m      pack A block (MC x KC) into MR-row panels (L2)
//!       for each NR panel of B          one B micro-panel (KC x NR) stays in L1
//!         for each MR panel of A
//!           micro-kernel: MR x NR accumulators in registers, KC rank-1 updates,
//!           then C tile = alpha * acc + beta * C (beta = 1 after the first KC block)
//! ```
//!
//! Packing copies each block once into the caller's workspace, in exactly the order the
//! micro-kernel reads it, with edge panels zero-padded to full MR / NR. So the micro-kernel
//! has no edge cases, no strides and no transposes: all four transpose combinations and any
//! leading dimensions are handled by the packing routine alone. Edge tiles of C (m or n not
//! multiples of MR / NR) are written through a small stack buffer.
//!
//! The micro-kernel is written once, generic over the [`Simd`] token, and compiled for each
//! ISA by [`vectorize_with`] (inside a `#[target_feature(enable = "avx2,fma")]` function for
//! AVX2, `"avx512f,avx512vl,avx2,fma"` for AVX-512). Its tile size per ISA is
//! [`micro_tile`]: 8 x 48 on AVX-512 (24 zmm accumulators, 3 for the B row, 1 broadcast: 28 of
//! 32 registers), 6 x 16 on AVX2+FMA (12 ymm accumulators, 2 for the B row, 1 broadcast),
//! 6 x 8 on SSE2, 8 x 8 on NEON (32 registers) and 4 x 4 on the scalar token, whose 16
//! accumulators fit the 32 single-precision registers of a Cortex-M4F.
//!
//! Why 8 x 48 for AVX-512: 14 x 32 (28 accumulators, 31 registers) and 12 x 32 ran square
//! products as fast (225-234 GFLOP/s at 512^3 on Zen 5, within noise), but the GEMMs of
//! convolutions have few rows (LeNet's second layer: 16 output channels), which 8 rows
//! tile exactly and 14 pad to 28. It also loads less per FMA (8 broadcasts and 3 vectors
//! for 24 FMAs, against 14 and 2 for 28).
//!
//! # Workspace
//! [`sgemm_workspace_len`] is the packed A block plus the packed B block, computed for the
//! largest tile of every ISA this target can pick at run time, so it never depends on which
//! one is picked. It is `min(k, KC) * (min(m, MC) + min(n, NC))` rounded up to whole panels:
//! small for small problems, and bounded for large ones: at most 90 112 elements (352 KiB) on
//! x86-64 and aarch64, where KC = 256, MC = 96, NC = 256 keep the packed A and B blocks
//! together in a 512 KiB L2 (tuned on Zen 3, see `benches/README.md`; AVX-512 packs with
//! KC = 128, MC = 192, NC = 480, 86 016 elements); at most 4 096 elements
//! (16 KiB) on microcontroller targets, whose blocks are smaller because they have no caches
//! to fill and little RAM.

use crate::error::{check_workspace, Result};
use crate::shape::{GemmShape, Transpose};
use crate::simd::{vectorize_with, Isa, Simd, WithSimd};

/// Depth (k extent) of one packed block.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const KC: usize = 256;
/// Rows of op(A) in one packed block (a multiple of every MR).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const MC: usize = 96;
/// Columns of op(B) in one packed block (a multiple of every NR).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const NC: usize = 256;

// Microcontrollers: SRAM without caches, so blocks only bound the workspace (16 KiB at most).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const KC: usize = 64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const MC: usize = 32;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NC: usize = 32;

/// AVX-512 blocks. At the default KC = 256 its B micro-panel (KC x 48) would be 48 KiB,
/// more than Zen 4's whole 32 KiB L1D: KC = 128 makes it 24 KiB, leaving room for the
/// streamed A micro-panels (8 x KC, 4 KiB). MC = 192 doubles the rows of a packed A block
/// (96 KiB of L2) so packing B is amortized over as many rows as before, and NC = 480 (10
/// panels of 48) keeps the packed B block at 240 KiB. Larger KC measured the same within
/// noise on Zen 5 (48 KiB L1D; `benches/README.md`, "AVX-512"), so the one that also suits
/// a 32 KiB L1D is kept.
#[cfg(target_arch = "x86_64")]
const AVX512_BLOCKS: Blocks = Blocks {
    kc: 128,
    mc: 192,
    nc: 480,
};

/// The ISAs [`vectorize_with`] can pick on this target (the workspace covers all of them).
#[cfg(target_arch = "x86_64")]
const TARGET_ISAS: &[Isa] = &[Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Avx512];
#[cfg(target_arch = "aarch64")]
const TARGET_ISAS: &[Isa] = &[Isa::Scalar, Isa::Neon];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const TARGET_ISAS: &[Isa] = &[Isa::Scalar];

/// Largest `MR * NR` over all (token, tile) pairs the dispatch instantiates: the size of the
/// stack buffer for edge tiles, so it stays small where only small tiles are built.
#[cfg(target_arch = "x86_64")]
const MAX_TILE: usize = 384;
#[cfg(not(target_arch = "x86_64"))]
const MAX_TILE: usize = 128;

/// Cache blocking of one ISA: depth, rows of op(A) and columns of op(B) of a packed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Blocks {
    kc: usize,
    mc: usize,
    nc: usize,
}

/// The blocks `isa` runs with (whole MR / NR panels each).
const fn blocks(isa: Isa) -> Blocks {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => AVX512_BLOCKS,
        _ => Blocks {
            kc: KC,
            mc: MC,
            nc: NC,
        },
    }
}

/// The micro-kernel tile of `isa`: (rows MR, vectors per row); NR = vectors x [`Isa::lanes`].
pub const fn micro_tile(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (8, 3),
        Isa::Avx2Fma => (6, 2),
        Isa::Sse2 => (6, 2),
        Isa::Neon => (8, 2),
        Isa::Scalar => (4, 1),
    }
}

/// Elements of the packed A and B blocks for `isa`'s tile.
const fn packed_len(isa: Isa, m: usize, n: usize, k: usize) -> usize {
    let (mr, nr_vecs) = micro_tile(isa);
    let nr = nr_vecs * isa.lanes();
    let b = blocks(isa);
    let mc = if m < b.mc { m } else { b.mc };
    let nc = if n < b.nc { n } else { b.nc };
    let kc = if k < b.kc { k } else { b.kc };
    kc * (mc.div_ceil(mr) * mr + nc.div_ceil(nr) * nr)
}

/// Scratch elements [`sgemm`] needs for an `m x n x k` product (independent of the ISA picked
/// at run time; 0 when `m`, `n` or `k` is 0).
///
/// ```
/// use tinycnn_kernels::sgemm_workspace_len;
/// assert_eq!(sgemm_workspace_len(0, 5, 5), 0);
/// assert!(sgemm_workspace_len(2, 3, 4) <= 4 * (8 + 48)); // small for small problems
/// assert_eq!(sgemm_workspace_len(10_000, 10_000, 10_000), sgemm_workspace_len(5_000, 5_000, 5_000));
/// ```
pub fn sgemm_workspace_len(m: usize, n: usize, k: usize) -> usize {
    if m == 0 || n == 0 || k == 0 {
        return 0;
    }
    let mut len = 0;
    for &isa in TARGET_ISAS {
        len = len.max(packed_len(isa, m, n, k));
    }
    len
}

/// `C = alpha op(A) op(B) + beta C` (row-major; see [`GemmShape`]). With `beta == 0` C is not read.
///
/// Runs with the best ISA of this CPU (or the one [`crate::simd::force_isa`] set); `workspace` needs [`sgemm_workspace_len`] elements.
/// The result equals [`crate::reference::sgemm`] up to rounding (the sum over k is
/// accumulated in a different order, with fused multiply-adds where the ISA has them).
///
/// ```
/// use tinycnn_kernels::{sgemm, sgemm_workspace_len, GemmShape};
/// let g = GemmShape::new(2, 2, 3);
/// let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3
/// let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]; // 3 x 2
/// let mut c = [1.0; 4];
/// let mut ws = vec![0.0; sgemm_workspace_len(2, 2, 3)];
/// sgemm(&g, 1.0, &a, &b, 0.5, &mut c, &mut ws).unwrap();
/// assert_eq!(c, [58.5, 64.5, 139.5, 154.5]);
/// ```
pub fn sgemm(
    g: &GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    sgemm_with_isa(
        crate::simd::active_isa(),
        g,
        alpha,
        a,
        b,
        beta,
        c,
        workspace,
    )
}

/// [`sgemm`] forced to run with `isa` (falls back to [`Isa::Scalar`] where this CPU lacks
/// it, as [`vectorize_with`] does). For tests and benchmarks that compare ISAs.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with_isa(
    isa: Isa,
    g: &GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    g.validate(a.len(), b.len(), c.len())?;
    check_workspace(workspace.len(), sgemm_workspace_len(g.m, g.n, g.k))?;
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    if g.k == 0 {
        // Empty sum: C = alpha * 0 + beta * C, exactly as the reference loop computes it.
        for row in c.chunks_mut(g.ldc).take(g.m) {
            for ci in &mut row[..g.n] {
                *ci = if beta == 0.0 {
                    alpha * 0.0
                } else {
                    alpha * 0.0 + beta * *ci
                };
            }
        }
        return Ok(());
    }
    // Element (i, j) of op(X) sits at i * rs + j * cs.
    let (a_rs, a_cs) = match g.trans_a {
        Transpose::No => (g.lda, 1),
        Transpose::Yes => (1, g.lda),
    };
    let (b_rs, b_cs) = match g.trans_b {
        Transpose::No => (g.ldb, 1),
        Transpose::Yes => (1, g.ldb),
    };
    vectorize_with(
        isa,
        Sgemm {
            m: g.m,
            n: g.n,
            k: g.k,
            alpha,
            beta,
            a: Strided {
                data: a,
                rs: a_rs,
                cs: a_cs,
            },
            b: Strided {
                data: b,
                rs: b_rs,
                cs: b_cs,
            },
            c,
            ldc: g.ldc,
            workspace,
        },
    );
    Ok(())
}

/// A read-only matrix whose element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// One validated, non-empty product (`m, n, k >= 1`).
struct Sgemm<'a> {
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    a: Strided<'a>,
    b: Strided<'a>,
    c: &'a mut [f32],
    ldc: usize,
    workspace: &'a mut [f32],
}

impl WithSimd for Sgemm<'_> {
    type Output = ();

    // The match is on a constant, so each token keeps exactly one arm.
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        const AVX512: (usize, usize) = micro_tile(Isa::Avx512);
        const AVX: (usize, usize) = micro_tile(Isa::Avx2Fma);
        const SSE: (usize, usize) = micro_tile(Isa::Sse2);
        const NEON: (usize, usize) = micro_tile(Isa::Neon);
        const SCALAR: (usize, usize) = micro_tile(Isa::Scalar);
        match S::ISA {
            Isa::Avx512 => drive::<S, { AVX512.0 }, { AVX512.1 }>(s, self),
            Isa::Avx2Fma => drive::<S, { AVX.0 }, { AVX.1 }>(s, self),
            Isa::Sse2 => drive::<S, { SSE.0 }, { SSE.1 }>(s, self),
            Isa::Neon => drive::<S, { NEON.0 }, { NEON.1 }>(s, self),
            Isa::Scalar => drive::<S, { SCALAR.0 }, { SCALAR.1 }>(s, self),
        }
    }
}

/// The blocking loops around the `MR x NRV*LANES` micro-kernel.
#[inline(always)]
fn drive<S: Simd, const MR: usize, const NRV: usize>(s: S, p: Sgemm<'_>) {
    const { assert!(MR * NRV * S::LANES <= MAX_TILE) };
    let Blocks {
        kc: kc_max,
        mc: mc_max,
        nc: nc_max,
    } = const { blocks(S::ISA) };
    let nr = NRV * S::LANES;
    let Sgemm {
        m,
        n,
        k,
        alpha,
        beta,
        a,
        b,
        c,
        ldc,
        workspace,
    } = p;
    let a_block = kc_max.min(k) * mc_max.min(m).div_ceil(MR) * MR;
    let (a_pack, b_pack) = workspace.split_at_mut(a_block);
    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            // Later depth blocks add onto what the first one wrote.
            let beta = if pc == 0 { beta } else { 1.0 };
            let b_pack = &mut b_pack[..nc.div_ceil(nr) * nr * kc];
            pack(b_pack, b.data, b.cs, b.rs, jc, nc, pc, kc, nr);
            for ic in (0..m).step_by(mc_max) {
                let mc = mc_max.min(m - ic);
                let a_pack = &mut a_pack[..mc.div_ceil(MR) * MR * kc];
                pack(a_pack, a.data, a.rs, a.cs, ic, mc, pc, kc, MR);
                for (jr, b_panel) in b_pack.chunks_exact(nr * kc).enumerate() {
                    let cols = (nc - jr * nr).min(nr);
                    for (ir, a_panel) in a_pack.chunks_exact(MR * kc).enumerate() {
                        let rows = (mc - ir * MR).min(MR);
                        let c0 = (ic + ir * MR) * ldc + jc + jr * nr;
                        // Pull the C tile towards L1 while the k loop runs.
                        for i in 0..rows {
                            s.prefetch(&c[c0 + i * ldc..]);
                            s.prefetch(&c[c0 + i * ldc + cols - 1..]);
                        }
                        let acc = micro_kernel::<S, MR, NRV>(s, kc, a_panel, b_panel);
                        let tile = Tile {
                            rows,
                            cols,
                            ldc,
                            alpha,
                            beta,
                        };
                        store_tile::<S, MR, NRV>(s, &acc, &mut c[c0..], tile);
                    }
                }
            }
        }
    }
}

/// Packs rows `w0..w0 + w` (stride `ws`) by depth `d0..d0 + d` (stride `ds`) of `src` into
/// panels of `width` rows: panel `q`, depth step `t` holds rows `q*width..(q+1)*width` at
/// `dst[q*width*d + t*width..]`, rows past `w` zero. A is packed with rows = rows of op(A),
/// B with rows = columns of op(B). `width` is a constant after inlining, so the full-panel
/// loops below unroll into straight-line copies.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pack(
    dst: &mut [f32],
    src: &[f32],
    ws: usize,
    ds: usize,
    w0: usize,
    w: usize,
    d0: usize,
    d: usize,
    width: usize,
) {
    for (q, panel) in dst.chunks_exact_mut(width * d).enumerate() {
        let r0 = w0 + q * width;
        let rows = (w - q * width).min(width);
        if rows == width && ws == 1 {
            // The panel's rows are adjacent in memory (B as stored, A transposed).
            for (t, out) in panel.chunks_exact_mut(width).enumerate() {
                let start = r0 + (d0 + t) * ds;
                out.copy_from_slice(&src[start..start + width]);
            }
        } else if rows == width {
            // Each row runs along the depth (A as stored, B transposed): gather one element
            // per row for each depth step, so the packed panel is written front to back.
            let first = r0 * ws + d0 * ds;
            let last = first + (width - 1) * ws + (d - 1) * ds;
            assert!(last < src.len());
            for (t, out) in panel.chunks_exact_mut(width).enumerate() {
                for (r, o) in out.iter_mut().enumerate() {
                    // SAFETY: the largest index read is `last`, checked above.
                    *o = unsafe { *src.get_unchecked(first + r * ws + t * ds) };
                }
            }
        } else {
            // Edge panel: copy the `rows` real rows, zero the rest.
            panel.fill(0.0);
            for r in 0..rows {
                let col = panel[r..].iter_mut().step_by(width);
                let row = src[(r0 + r) * ws + d0 * ds..].iter().step_by(ds);
                for (o, &x) in col.zip(row) {
                    *o = x;
                }
            }
        }
    }
}

/// `kc` rank-1 updates of an `MR x NRV*LANES` register tile from packed panels.
#[inline(always)]
fn micro_kernel<S: Simd, const MR: usize, const NRV: usize>(
    s: S,
    kc: usize,
    a: &[f32],
    b: &[f32],
) -> [[S::V; NRV]; MR] {
    let nr = NRV * S::LANES;
    assert!(a.len() >= kc * MR && b.len() >= kc * nr);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[s.zero(); NRV]; MR];
    // Two steps per iteration halve the loop overhead next to the 2 * MR * NRV FMAs.
    let mut p = 0;
    while p + 2 <= kc {
        // SAFETY: p + 1 < kc, and the panels hold kc * MR and kc * nr elements (checked above).
        unsafe {
            rank1(s, &mut acc, a.add(p * MR), b.add(p * nr));
            rank1(s, &mut acc, a.add((p + 1) * MR), b.add((p + 1) * nr));
        }
        p += 2;
    }
    if p < kc {
        // SAFETY: as above, p < kc.
        unsafe { rank1(s, &mut acc, a.add(p * MR), b.add(p * nr)) };
    }
    acc
}

/// `acc += a (x) b` for one column `a` (MR elements) and one row `b` (NRV vectors).
///
/// # Safety
/// `a` must be valid for `MR` reads and `b` for `NRV * S::LANES` reads.
#[inline(always)]
unsafe fn rank1<S: Simd, const MR: usize, const NRV: usize>(
    s: S,
    acc: &mut [[S::V; NRV]; MR],
    a: *const f32,
    b: *const f32,
) {
    let mut bv = [s.zero(); NRV];
    for (j, v) in bv.iter_mut().enumerate() {
        // SAFETY: j * LANES + LANES <= NRV * LANES elements of `b` (caller's contract).
        *v = unsafe { s.load_ptr(b.add(j * S::LANES)) };
    }
    for (i, row) in acc.iter_mut().enumerate() {
        // SAFETY: i < MR elements of `a` (caller's contract).
        let av = s.splat(unsafe { *a.add(i) });
        for (c, &bj) in row.iter_mut().zip(&bv) {
            *c = s.mul_add(av, bj, *c);
        }
    }
}

/// Where and how a finished register tile goes into C.
#[derive(Clone, Copy)]
struct Tile {
    rows: usize,
    cols: usize,
    ldc: usize,
    alpha: f32,
    beta: f32,
}

/// `C tile = alpha * acc + beta * C tile` (C not read when `beta == 0`); `c` starts at the
/// tile's top-left element, and only `rows x cols` of the tile are written.
#[inline(always)]
fn store_tile<S: Simd, const MR: usize, const NRV: usize>(
    s: S,
    acc: &[[S::V; NRV]; MR],
    c: &mut [f32],
    t: Tile,
) {
    let nr = NRV * S::LANES;
    let (alpha_v, beta_v) = (s.splat(t.alpha), s.splat(t.beta));
    if t.rows == MR && t.cols == nr {
        for (i, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let out = &mut c[i * t.ldc + j * S::LANES..];
                let v = s.mul(alpha_v, v);
                let v = if t.beta == 0.0 {
                    v
                } else {
                    s.mul_add(beta_v, s.load(out), v)
                };
                s.store(out, v);
            }
        }
        return;
    }
    let mut buf = [0.0f32; MAX_TILE];
    for (i, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            s.store(&mut buf[i * nr + j * S::LANES..], v);
        }
    }
    for i in 0..t.rows {
        let out = &mut c[i * t.ldc..i * t.ldc + t.cols];
        for (o, &v) in out.iter_mut().zip(&buf[i * nr..]) {
            *o = if t.beta == 0.0 {
                t.alpha * v
            } else {
                t.alpha * v + t.beta * *o
            };
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::reference;
    use std::vec;
    use std::vec::Vec;

    /// Every ISA this CPU can run (the scalar token always); says which of this target's
    /// are skipped and why.
    fn isas() -> Vec<Isa> {
        [Isa::Scalar, Isa::Sse2, Isa::Avx2Fma, Isa::Avx512, Isa::Neon]
            .into_iter()
            .filter(|&i| {
                let ok = i.is_available();
                if !ok && TARGET_ISAS.contains(&i) {
                    std::eprintln!(
                        "skipping {}: this CPU lacks {}",
                        i.name(),
                        i.required_features()
                    );
                }
                ok
            })
            .collect()
    }

    /// Deterministic values in [-1, 1) (xorshift), so failures reproduce.
    fn fill(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn stored_len(rows: usize, cols: usize, ld: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * ld + cols
        }
    }

    /// Runs `sgemm_with_isa` and the reference on the same inputs and compares every element
    /// of C (including the gaps between rows, which neither may touch).
    fn check(isa: Isa, g: &GemmShape, alpha: f32, beta: f32, seed: u64) {
        let (ar, ac) = g.a_stored();
        let (br, bc) = g.b_stored();
        let a = fill(stored_len(ar, ac, g.lda), seed);
        let b = fill(stored_len(br, bc, g.ldb), seed + 1);
        let c0 = fill(stored_len(g.m, g.n, g.ldc), seed + 2);
        let mut want = c0.clone();
        reference::sgemm(g, alpha, &a, &b, beta, &mut want).unwrap();
        let mut got = c0.clone();
        let mut ws = vec![f32::NAN; sgemm_workspace_len(g.m, g.n, g.k)];
        sgemm_with_isa(isa, g, alpha, &a, &b, beta, &mut got, &mut ws).unwrap();
        for i in 0..g.m {
            for j in 0..g.n {
                // Rounding bound: k-term sums in another order, plus the beta term.
                let mut mag = 0.0f64;
                for p in 0..g.k {
                    let av = match g.trans_a {
                        Transpose::No => a[i * g.lda + p],
                        Transpose::Yes => a[p * g.lda + i],
                    };
                    let bv = match g.trans_b {
                        Transpose::No => b[p * g.ldb + j],
                        Transpose::Yes => b[j * g.ldb + p],
                    };
                    mag += (av as f64 * bv as f64).abs();
                }
                mag = mag * alpha.abs() as f64 + (beta as f64 * c0[i * g.ldc + j] as f64).abs();
                let tol = 2.0 * (g.k as f64 + 2.0) * f32::EPSILON as f64 * mag + 1e-30;
                let (x, y) = (got[i * g.ldc + j], want[i * g.ldc + j]);
                assert!(
                    ((x - y) as f64).abs() <= tol,
                    "{isa:?} {g:?} alpha {alpha} beta {beta}: C[{i}][{j}] = {x}, reference {y}"
                );
            }
        }
        for (idx, (&x, &y)) in got.iter().zip(&c0).enumerate() {
            if idx % g.ldc >= g.n {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "{isa:?} {g:?}: wrote C gap at {idx}"
                );
            }
        }
    }

    #[test]
    fn hand_computed_2x2x3() {
        // [1 2 3; 4 5 6] [7 8; 9 10; 11 12] = [58 64; 139 154]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        for isa in isas() {
            let g = GemmShape::new(2, 2, 3);
            let mut c = [f32::NAN; 4];
            let mut ws = vec![0.0; sgemm_workspace_len(2, 2, 3)];
            sgemm_with_isa(isa, &g, 1.0, &a, &b, 0.0, &mut c, &mut ws).unwrap();
            assert_eq!(c, [58.0, 64.0, 139.0, 154.0], "{isa:?}");
            // alpha and beta: 2 * AB - 1 * C.
            sgemm_with_isa(isa, &g, 2.0, &a, &b, -1.0, &mut c, &mut ws).unwrap();
            assert_eq!(c, [58.0, 64.0, 139.0, 154.0], "{isa:?}");
            // A^T B^T with the same stored data: A^T is 3x2 read as [1 4; 2 5; 3 6] ...
            // here op(A) = stored(3x2)^T: stored A = [1 2; 3 4; 5 6] -> op(A) = [1 3 5; 2 4 6],
            // stored B = [7 8 9; 10 11 12] -> op(B) = [7 10; 8 11; 9 12].
            let g = GemmShape::new(2, 2, 3).with_transpose(Transpose::Yes, Transpose::Yes);
            let mut c = [0.0; 4];
            sgemm_with_isa(isa, &g, 1.0, &a, &b, 0.0, &mut c, &mut ws).unwrap();
            // [1*7+3*8+5*9, 1*10+3*11+5*12; 2*7+4*8+6*9, 2*10+4*11+6*12]
            assert_eq!(c, [76.0, 103.0, 100.0, 136.0], "{isa:?}");
        }
    }

    #[test]
    fn hand_computed_outer_product_and_identity() {
        for isa in isas() {
            // k = 1: outer product of [1 2 3] and [4 5], column vector times row vector.
            let g = GemmShape::new(3, 2, 1);
            let mut c = [0.0; 6];
            let mut ws = vec![0.0; sgemm_workspace_len(3, 2, 1)];
            sgemm_with_isa(
                isa,
                &g,
                1.0,
                &[1.0, 2.0, 3.0],
                &[4.0, 5.0],
                0.0,
                &mut c,
                &mut ws,
            )
            .unwrap();
            assert_eq!(c, [4.0, 5.0, 8.0, 10.0, 12.0, 15.0], "{isa:?}");
            // 17x17 identity times B is B (one full AVX tile plus edges in both directions).
            let n = 17;
            let mut eye = vec![0.0; n * n];
            for i in 0..n {
                eye[i * n + i] = 1.0;
            }
            let b: Vec<f32> = (0..n * n).map(|v| v as f32).collect();
            let mut c = vec![f32::NAN; n * n];
            let mut ws = vec![0.0; sgemm_workspace_len(n, n, n)];
            sgemm_with_isa(
                isa,
                &GemmShape::new(n, n, n),
                1.0,
                &eye,
                &b,
                0.0,
                &mut c,
                &mut ws,
            )
            .unwrap();
            assert_eq!(c, b, "{isa:?}");
        }
    }

    #[test]
    fn matches_reference_over_shapes_transposes_and_lds() {
        let sizes = [1usize, 2, 3, 5, 7, 8, 9, 13, 16, 17, 31, 33, 48, 50];
        let trans = [Transpose::No, Transpose::Yes];
        let mut seed = 1;
        for isa in isas() {
            for &m in &sizes {
                for &n in &sizes {
                    for &k in &[1usize, 4, 9, 17] {
                        for &ta in &trans {
                            for &tb in &trans {
                                let g = GemmShape::new(m, n, k).with_transpose(ta, tb);
                                let (ab, bb) = ((m + n + k) % 3, (m * n + k) % 4);
                                let g2 = g.with_ld(g.lda + ab, g.ldb + bb, g.ldc + k % 3);
                                seed += 3;
                                check(isa, &g, 1.0, 0.0, seed);
                                check(isa, &g2, -0.5, 1.5, seed);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matches_reference_across_block_edges() {
        // Sizes that cross KC, MC and NC of each ISA (and the small-target blocks), with all
        // transposes.
        let trans = [Transpose::No, Transpose::Yes];
        for isa in isas() {
            let Blocks { kc, mc, nc } = blocks(isa);
            let shapes = [
                (mc + 7, 40, kc + 3),
                (20, nc + 19, 20),
                (2 * mc + 1, 37, 2 * kc + 5),
                (9, 2 * nc + 3, 3),
                (100, 100, 300),
                (1, 300, 600),
                (300, 1, 600),
            ];
            for (idx, &(m, n, k)) in shapes.iter().enumerate() {
                for &ta in &trans {
                    for &tb in &trans {
                        let g = GemmShape::new(m, n, k).with_transpose(ta, tb);
                        check(isa, &g, 0.75, 0.0, idx as u64);
                        check(
                            isa,
                            &g.with_ld(g.lda + 5, g.ldb + 1, g.ldc + 2),
                            1.0,
                            -2.0,
                            9,
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_c() {
        for isa in isas() {
            for &(m, n, k) in &[(1, 1, 1), (6, 16, 8), (7, 19, 300), (13, 5, 2)] {
                let g = GemmShape::new(m, n, k);
                let a = fill(m * k, 5);
                let b = fill(k * n, 6);
                let mut want = vec![0.0; m * n];
                reference::sgemm(&g, 1.0, &a, &b, 0.0, &mut want).unwrap();
                let mut c = vec![f32::NAN; m * n];
                let mut ws = vec![0.0; sgemm_workspace_len(m, n, k)];
                sgemm_with_isa(isa, &g, 1.0, &a, &b, 0.0, &mut c, &mut ws).unwrap();
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        !x.is_nan() && (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{isa:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn k_zero_scales_c_by_beta() {
        for isa in isas() {
            let g = GemmShape::new(2, 3, 0).with_ld(1, 3, 4);
            let mut c = [1.0, 2.0, 3.0, 99.0, 4.0, 5.0, 6.0];
            sgemm_with_isa(isa, &g, 3.0, &[], &[], 0.5, &mut c, &mut []).unwrap();
            assert_eq!(c, [0.5, 1.0, 1.5, 99.0, 2.0, 2.5, 3.0]);
            let mut c = [f32::NAN; 7];
            c[3] = 99.0;
            sgemm_with_isa(isa, &g, 3.0, &[], &[], 0.0, &mut c, &mut []).unwrap();
            assert_eq!(c, [0.0, 0.0, 0.0, 99.0, 0.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn empty_m_or_n_is_a_no_op() {
        let mut c = [7.0; 4];
        let g = GemmShape::new(0, 4, 3);
        sgemm(&g, 1.0, &[], &[0.0; 12], 0.0, &mut c, &mut []).unwrap();
        let g = GemmShape::new(4, 0, 3).with_ld(3, 1, 1);
        sgemm(&g, 1.0, &[0.0; 12], &[], 0.0, &mut c, &mut []).unwrap();
        assert_eq!(c, [7.0; 4]);
        assert_eq!(sgemm_workspace_len(0, 4, 3), 0);
        assert_eq!(sgemm_workspace_len(4, 0, 3), 0);
        assert_eq!(sgemm_workspace_len(4, 3, 0), 0);
    }

    #[test]
    fn bad_arguments_are_errors() {
        use crate::KernelError;
        let g = GemmShape::new(4, 4, 4);
        let (a, b) = ([1.0; 16], [1.0; 16]);
        let mut c = [0.0; 16];
        let need = sgemm_workspace_len(4, 4, 4);
        let mut ws = vec![0.0; need];
        assert_eq!(
            sgemm(&g, 1.0, &a, &b, 0.0, &mut c, &mut ws[..need - 1]),
            Err(KernelError::BufferLength {
                buffer: "workspace",
                expected: need,
                actual: need - 1
            })
        );
        assert!(matches!(
            sgemm(&g, 1.0, &a[..15], &b, 0.0, &mut c, &mut ws),
            Err(KernelError::BufferLength { buffer: "a", .. })
        ));
        assert!(matches!(
            sgemm(&g.with_ld(4, 4, 3), 1.0, &a, &b, 0.0, &mut c, &mut ws),
            Err(KernelError::LeadingDimension { matrix: "C", .. })
        ));
    }

    #[test]
    fn workspace_is_small_and_bounded() {
        // Small problems need little more than their packed operands.
        // (The largest tile is AVX-512's 8 x 48.)
        assert!(sgemm_workspace_len(1, 1, 1) <= 8 + 48);
        assert!(sgemm_workspace_len(6, 784, 25) <= 25 * (8 + 784));
        // Large ones are capped by the largest blocks of this target, whatever the shape (MC
        // and NC are whole panels).
        let cap = TARGET_ISAS
            .iter()
            .map(|&i| {
                let Blocks { kc, mc, nc } = blocks(i);
                kc * (mc + nc)
            })
            .max()
            .unwrap();
        assert_eq!(sgemm_workspace_len(1 << 20, 1 << 20, 1 << 20), cap);
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        assert_eq!(cap, 90_112);
        for &s in &[1usize, 1000, 100_000, usize::MAX / 4] {
            assert!(sgemm_workspace_len(s, s, s) <= cap);
            assert!(sgemm_workspace_len(s, 3, usize::MAX) <= cap);
        }
        // The same for every ISA: it is the maximum over this target's tiles.
        for &isa in TARGET_ISAS {
            assert!(packed_len(isa, 37, 51, 300) <= sgemm_workspace_len(37, 51, 300));
        }
    }

    #[test]
    fn micro_tiles_fit_the_stack_buffer_and_blocks() {
        // Whole panels per block for the ISAs this target runs (no padding in big problems).
        for &isa in TARGET_ISAS {
            let (mr, nv) = micro_tile(isa);
            assert!(mr * nv * isa.lanes() <= MAX_TILE, "{isa:?}");
            let b = blocks(isa);
            assert_eq!(b.mc % mr, 0, "{isa:?}");
            assert_eq!(b.nc % (nv * isa.lanes()), 0, "{isa:?}");
        }
        // The register budget of the AVX-512 tile: accumulators, the B row and a broadcast.
        let (mr, nv) = micro_tile(Isa::Avx512);
        let zmm_used = mr * nv + nv + 1;
        assert!(zmm_used <= 32, "{zmm_used} registers");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn proptest_matches_reference(
            m in 1usize..40, n in 1usize..40, k in 0usize..40,
            ta in proptest::bool::ANY, tb in proptest::bool::ANY,
            pad in (0usize..3, 0usize..3, 0usize..3),
            alpha in -2.0f32..2.0, beta in proptest::sample::select(vec![0.0f32, 1.0, -0.5]),
            seed in 0u64..1000,
        ) {
            let t = |y| if y { Transpose::Yes } else { Transpose::No };
            let g = GemmShape::new(m, n, k).with_transpose(t(ta), t(tb));
            let g = g.with_ld(g.lda.max(1) + pad.0, g.ldb.max(1) + pad.1, g.ldc + pad.2);
            for isa in isas() {
                check(isa, &g, alpha, beta, seed);
            }
        }
    }
}
