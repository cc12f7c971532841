//! Host-side launch planning: the kernels' argument structs and the grid/block shape of
//! every launch. Pure functions of the problem shape, so they are tested without a GPU.
//!
//! The kernels index with 32-bit `int`, so every tensor must have fewer than 2^31 elements;
//! the planners check this and return [`CudaError::TooLarge`] instead of launching.

use crate::error::{expect_len, shape, CudaError, Result};
use crate::ptx::names;
use tinycnn_kernels::{Conv2dShape, GemmShape, Pool2dShape, Transpose};

/// Threads per block of every kernel.
pub const BLOCK: u32 = 256;
/// Upper bound on the blocks of a grid-stride launch (more gives no speed, only tail).
pub const MAX_STRIDE_BLOCKS: u32 = 8192;
/// Largest element count the 32-bit kernel indexing supports.
pub const MAX_ELEMENTS: usize = i32::MAX as usize;
/// Limit of grid dimensions y and z.
pub const MAX_GRID_YZ: usize = 65_535;

/// Grid and block of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchShape {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
}

impl LaunchShape {
    /// The driver's launch configuration for this shape (no dynamic shared memory).
    pub(crate) fn config(&self) -> cudarc::driver::LaunchConfig {
        cudarc::driver::LaunchConfig {
            grid_dim: self.grid,
            block_dim: self.block,
            shared_mem_bytes: 0,
        }
    }
}

/// Convolution geometry as the kernels take it (`ConvGeom` in kernels-cuda/common.cuh).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub batch: i32,
    pub cin: i32,
    pub h: i32,
    pub w: i32,
    pub cout: i32,
    pub oh: i32,
    pub ow: i32,
    pub kh: i32,
    pub kw: i32,
    pub sh: i32,
    pub sw: i32,
    pub ph: i32,
    pub pw: i32,
    pub dh: i32,
    pub dw: i32,
    pub groups: i32,
    pub cin_g: i32,
    pub cout_g: i32,
}

// SAFETY: plain old data of i32 fields, laid out as the C struct the kernels declare.
unsafe impl cudarc::driver::DeviceRepr for ConvGeom {}

/// Pooling geometry as the kernels take it (`PoolGeom` in kernels-cuda/common.cuh).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub planes: i32,
    pub h: i32,
    pub w: i32,
    pub oh: i32,
    pub ow: i32,
    pub kh: i32,
    pub kw: i32,
    pub sh: i32,
    pub sw: i32,
    pub ph: i32,
    pub pw: i32,
    pub count_include_pad: i32,
}

// SAFETY: as for ConvGeom.
unsafe impl cudarc::driver::DeviceRepr for PoolGeom {}

fn fits(kernel: &'static str, what: &'static str, value: usize) -> Result<i32> {
    if value > MAX_ELEMENTS {
        return Err(CudaError::TooLarge {
            kernel,
            what,
            value,
            limit: MAX_ELEMENTS,
        });
    }
    Ok(value as i32)
}

fn grid_yz(kernel: &'static str, what: &'static str, value: usize) -> Result<u32> {
    if value > MAX_GRID_YZ {
        return Err(CudaError::TooLarge {
            kernel,
            what,
            value,
            limit: MAX_GRID_YZ,
        });
    }
    Ok(value as u32)
}

/// A grid-stride launch over `n` elements (`n >= 1`).
pub fn elementwise(kernel: &'static str, n: usize) -> Result<LaunchShape> {
    fits(kernel, "element count", n)?;
    let blocks = n
        .div_ceil(BLOCK as usize)
        .clamp(1, MAX_STRIDE_BLOCKS as usize) as u32;
    Ok(LaunchShape {
        grid: (blocks, 1, 1),
        block: (BLOCK, 1, 1),
    })
}

/// One warp per row, eight rows per block.
pub fn rows(kernel: &'static str, rows: usize, cols: usize) -> Result<LaunchShape> {
    fits(kernel, "rows x cols", rows.saturating_mul(cols))?;
    let blocks = rows.div_ceil((BLOCK / 32) as usize).max(1);
    Ok(LaunchShape {
        grid: (fits(kernel, "row blocks", blocks)? as u32, 1, 1),
        block: (BLOCK, 1, 1),
    })
}

/// The two passes of `reduce_sum` over `n` elements: partial sums, then one block.
pub fn reduce_sum(n: usize) -> Result<(LaunchShape, LaunchShape)> {
    fits(names::REDUCE_SUM, "element count", n)?;
    let partials = n.div_ceil(BLOCK as usize).clamp(1, BLOCK as usize) as u32;
    Ok((
        LaunchShape {
            grid: (partials, 1, 1),
            block: (BLOCK, 1, 1),
        },
        LaunchShape {
            grid: (1, 1, 1),
            block: (BLOCK, 1, 1),
        },
    ))
}

/// Output tile of the GEMM-shaped kernels: 64 x 64, or 16 x 64 when M is small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tile {
    T64,
    T16,
}

impl Tile {
    /// The tile for `m` output rows.
    pub fn for_rows(m: usize) -> Tile {
        if m <= 16 {
            Tile::T16
        } else {
            Tile::T64
        }
    }
    /// (rows, columns) of the tile.
    pub fn dims(self) -> (usize, usize) {
        match self {
            Tile::T64 => (64, 64),
            Tile::T16 => (16, 64),
        }
    }
}

fn gemm_grid(
    kernel: &'static str,
    tile: Tile,
    m: usize,
    n: usize,
    z: usize,
) -> Result<LaunchShape> {
    let (bm, bn) = tile.dims();
    let gx = n.div_ceil(bn);
    let gy = grid_yz(kernel, "row tiles (grid.y)", m.div_ceil(bm))?;
    let gz = grid_yz(kernel, "groups x splits (grid.z)", z)?;
    Ok(LaunchShape {
        grid: (fits(kernel, "column tiles", gx)? as u32, gy, gz),
        block: (BLOCK, 1, 1),
    })
}

/// Kernel and launch of `sgemm` for `g`, after checking `g` against the buffer lengths.
pub fn sgemm(
    g: &GemmShape,
    a_len: usize,
    b_len: usize,
    c_len: usize,
) -> Result<(&'static str, LaunchShape)> {
    let kernel = match (g.trans_a, g.trans_b) {
        (Transpose::No, Transpose::No) => names::SGEMM_NN,
        (Transpose::No, Transpose::Yes) => names::SGEMM_NT,
        (Transpose::Yes, Transpose::No) => names::SGEMM_TN,
        (Transpose::Yes, Transpose::Yes) => names::SGEMM_TT,
    };
    g.validate(a_len, b_len, c_len).map_err(shape(kernel))?;
    for (what, v) in [
        ("a length", a_len),
        ("b length", b_len),
        ("c length", c_len),
        ("k", g.k),
    ] {
        fits(kernel, what, v)?;
    }
    if g.m == 0 || g.n == 0 {
        return Err(shape(kernel)(tinycnn_kernels::KernelError::Zero {
            what: "GEMM m and n",
        }));
    }
    Ok((kernel, gemm_grid(kernel, Tile::T64, g.m, g.n, 1)?))
}

/// The kernels' geometry struct for a convolution, after validating it.
pub fn conv_geom(kernel: &'static str, s: &Conv2dShape) -> Result<ConvGeom> {
    s.validate().map_err(shape(kernel))?;
    let p = &s.params;
    let (oh, ow) = s.out_hw().map_err(shape(kernel))?;
    fits(
        kernel,
        "input elements",
        s.input_len().map_err(shape(kernel))?,
    )?;
    fits(
        kernel,
        "output elements",
        s.output_len().map_err(shape(kernel))?,
    )?;
    fits(kernel, "weight elements", s.weight_len())?;
    fits(
        kernel,
        "im2col columns",
        s.batch
            .saturating_mul(oh * ow)
            .max(s.batch.saturating_mul(s.in_h * s.in_w)),
    )?;
    let i = |v: usize| v as i32; // every value is bounded by the element counts checked above
    Ok(ConvGeom {
        batch: i(s.batch),
        cin: i(p.in_channels),
        h: i(s.in_h),
        w: i(s.in_w),
        cout: i(p.out_channels),
        oh: i(oh),
        ow: i(ow),
        kh: i(p.kernel.0),
        kw: i(p.kernel.1),
        sh: fits(kernel, "stride", p.stride.0)?,
        sw: fits(kernel, "stride", p.stride.1)?,
        ph: fits(kernel, "padding", p.padding.0)?,
        pw: fits(kernel, "padding", p.padding.1)?,
        dh: fits(kernel, "dilation", p.dilation.0)?,
        dw: fits(kernel, "dilation", p.dilation.1)?,
        groups: i(p.groups),
        cin_g: i(p.in_per_group()),
        cout_g: i(p.out_per_group()),
    })
}

/// Buffer lengths of a convolution: (input, weight, output).
pub fn conv_lens(kernel: &'static str, s: &Conv2dShape) -> Result<(usize, usize, usize)> {
    Ok((
        s.input_len().map_err(shape(kernel))?,
        s.weight_len(),
        s.output_len().map_err(shape(kernel))?,
    ))
}

/// Forward convolution: kernel and launch (z = groups).
pub fn conv2d_forward(s: &Conv2dShape) -> Result<(&'static str, ConvGeom, LaunchShape)> {
    let g = conv_geom(names::CONV_FORWARD_T64, s)?;
    let m = s.params.out_per_group();
    let tile = Tile::for_rows(m);
    let kernel = match tile {
        Tile::T64 => names::CONV_FORWARD_T64,
        Tile::T16 => names::CONV_FORWARD_T16,
    };
    let n = (g.batch as usize) * (g.oh as usize) * (g.ow as usize);
    Ok((kernel, g, gemm_grid(kernel, tile, m, n, s.params.groups)?))
}

/// Input gradient: kernel and launch (z = groups).
pub fn conv2d_backward_input(s: &Conv2dShape) -> Result<(&'static str, ConvGeom, LaunchShape)> {
    let g = conv_geom(names::CONV_BACKWARD_INPUT_T64, s)?;
    let m = s.params.in_per_group();
    let tile = Tile::for_rows(m);
    let kernel = match tile {
        Tile::T64 => names::CONV_BACKWARD_INPUT_T64,
        Tile::T16 => names::CONV_BACKWARD_INPUT_T16,
    };
    let n = s.batch * s.in_h * s.in_w;
    Ok((kernel, g, gemm_grid(kernel, tile, m, n, s.params.groups)?))
}

/// Split-K plan of the weight gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightGradPlan {
    pub kernel: &'static str,
    pub geom: ConvGeom,
    pub launch: LaunchShape,
    /// Number of K ranges; the workspace holds `splits * weight_len` partial sums.
    pub splits: usize,
    /// K elements per split, a multiple of 16.
    pub k_chunk: usize,
}

/// K elements a split should at least get, so partial sums stay few.
const MIN_K_PER_SPLIT: usize = 2048;
/// At most this many splits.
const MAX_SPLITS: usize = 64;

/// Weight gradient: the reduction runs over batch x output pixels (K), usually far more
/// than the weight has elements, so K is split over grid.z and the partial sums are added
/// by `sum_splits` (unless there is one split).
pub fn conv2d_backward_weight(s: &Conv2dShape) -> Result<WeightGradPlan> {
    let geom = conv_geom(names::CONV_BACKWARD_WEIGHT_T64, s)?;
    let m = s.params.out_per_group();
    let n = s
        .col_rows()
        .map_err(shape(names::CONV_BACKWARD_WEIGHT_T64))?;
    let k = (geom.batch as usize) * (geom.oh as usize) * (geom.ow as usize);
    let tile = Tile::for_rows(m);
    let kernel = match tile {
        Tile::T64 => names::CONV_BACKWARD_WEIGHT_T64,
        Tile::T16 => names::CONV_BACKWARD_WEIGHT_T16,
    };
    let wanted = (k / MIN_K_PER_SPLIT).clamp(1, MAX_SPLITS);
    let k_chunk = k.div_ceil(wanted).next_multiple_of(16);
    let splits = k.div_ceil(k_chunk);
    fits(
        kernel,
        "weight-gradient workspace",
        splits.saturating_mul(s.weight_len()),
    )?;
    let z = s.params.groups.saturating_mul(splits);
    Ok(WeightGradPlan {
        kernel,
        geom,
        launch: gemm_grid(kernel, tile, m, n, z)?,
        splits,
        k_chunk,
    })
}

/// Elements of the weight-gradient workspace for `s` (0 when one split writes directly).
pub fn conv2d_backward_weight_workspace_len(s: &Conv2dShape) -> Result<usize> {
    let plan = conv2d_backward_weight(s)?;
    Ok(if plan.splits > 1 {
        plan.splits * s.weight_len()
    } else {
        0
    })
}

/// The kernels' geometry struct for a pooling, after validating it.
pub fn pool_geom(kernel: &'static str, s: &Pool2dShape) -> Result<PoolGeom> {
    s.validate().map_err(shape(kernel))?;
    let p = &s.params;
    let (oh, ow) = s.out_hw().map_err(shape(kernel))?;
    fits(
        kernel,
        "input elements",
        s.input_len().map_err(shape(kernel))?,
    )?;
    fits(
        kernel,
        "output elements",
        s.output_len().map_err(shape(kernel))?,
    )?;
    let i = |v: usize| v as i32;
    Ok(PoolGeom {
        planes: i(s.batch * s.channels),
        h: i(s.in_h),
        w: i(s.in_w),
        oh: i(oh),
        ow: i(ow),
        kh: fits(kernel, "kernel", p.kernel.0)?,
        kw: fits(kernel, "kernel", p.kernel.1)?,
        sh: fits(kernel, "stride", p.stride.0)?,
        sw: fits(kernel, "stride", p.stride.1)?,
        ph: i(p.padding.0),
        pw: i(p.padding.1),
        count_include_pad: p.count_include_pad as i32,
    })
}

/// Checks the (input, output) lengths of a pooling.
pub fn pool_lens(kernel: &'static str, s: &Pool2dShape, x_len: usize, y_len: usize) -> Result<()> {
    expect_len(kernel, "x", x_len, s.input_len().map_err(shape(kernel))?)?;
    expect_len(kernel, "y", y_len, s.output_len().map_err(shape(kernel))?)
}
