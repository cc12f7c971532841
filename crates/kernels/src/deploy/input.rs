//! An inference's input: real values or byte pixels (given, or already in the arena), and
//! the table that gives each pixel byte its int8 value.

use super::exec::{cast_mut, quantize_one, range_of, unlinked};
use super::format::Precision;
use super::{link, words_as_bytes_mut, DeployError, Plan};
use crate::int8;

/// One example's input.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Real values, `[c, h, w]`.
    F32(&'a [f32]),
    /// Pixels, each meaning `p as f32 / divisor` (`255.0`: torchvision's `ToTensor`).
    U8 { pixels: &'a [u8], divisor: f32 },
    /// Pixels as in [`Input::U8`], already in the arena: one byte per element at the start
    /// of the input value's range, written there through [`input_pixels_mut`] (a firmware
    /// reads them from the host straight into the arena, with no image buffer of its own).
    /// [`super::run`] converts them in place.
    U8InArena { divisor: f32 },
    /// Pixels in the arena as in [`Input::U8InArena`], converted by a [`PixelTable`] made
    /// for this plan once, before the first inference: one table read per pixel, where
    /// [`Input::U8InArena`] and [`Input::U8`] in an int8 plan fill a table of every byte's
    /// value per inference (256 float divisions and roundings). int8 plans only.
    U8InArenaTable(&'a PixelTable),
}

/// The int8 value of every pixel byte at a plan's input scale, `quantize_one(p as f32 /
/// divisor, scale)` (stored at `p ^ 0x80`, where the table op's loop finds it), computed once (256 values; about 40 k cycles on a Cortex-M4) so that
/// each inference converts its pixels by table ([`Input::U8InArenaTable`]). It remembers
/// the scale it was filled for: [`super::run`] refuses it for a plan whose input has another, and
/// refuses [`PixelTable::EMPTY`]. Filled in place (a firmware keeps it on its stack, and
/// moving 260 bytes would link a `memcpy`).
///
/// ```
/// # use tinycnn_kernels::deploy::{self, format::*, Plan};
/// # let values = [
/// #     ValueRecord { dtype: DType::I8, shape: [3, 1, 1], offset: 0, scale: 1.0 / 127.0 },
/// #     ValueRecord { dtype: DType::I8, shape: [3, 1, 1], offset: 4, scale: 1.0 / 127.0 },
/// # ];
/// # let mut op = OpRecord::new(OpKind::Act, 0, 1);
/// # op.act = Act::Relu;
/// # let header = Header {
/// #     precision: Precision::Int8, values: 2, ops: 1, arena_bytes: 8, workspace_words: 0,
/// #     data_offset: (HEADER_LEN + 2 * VALUE_LEN + OP_LEN) as u32, data_len: 0, macs: 0,
/// # };
/// # let mut bytes = [0u32; (HEADER_LEN + 2 * VALUE_LEN + OP_LEN) / 4];
/// # let b: &mut [u8] = deploy::words_as_bytes_mut(&mut bytes);
/// # b[..HEADER_LEN].copy_from_slice(&header.to_bytes());
/// # b[HEADER_LEN..][..VALUE_LEN].copy_from_slice(&values[0].to_bytes());
/// # b[HEADER_LEN + VALUE_LEN..][..VALUE_LEN].copy_from_slice(&values[1].to_bytes());
/// # b[HEADER_LEN + 2 * VALUE_LEN..].copy_from_slice(&op.to_bytes());
/// use tinycnn_kernels::deploy::PixelTable;
/// use tinycnn_kernels::int8::quantize_one;
/// // An int8 plan whose input has scale 1/127.
/// let plan = Plan::parse(deploy::words_as_bytes(&bytes)).unwrap();
/// let mut table = PixelTable::EMPTY;
/// table.fill(&plan, 255.0).unwrap();
/// assert_eq!(table.value(255), 127);
/// assert_eq!(table.value(7), quantize_one(7.0 / 255.0, 1.0 / 127.0));
/// ```
#[derive(Debug, Clone)]
pub struct PixelTable {
    values: [i8; 256],
    scale: f32,
}

impl PixelTable {
    /// A table filled for no plan: its scale, 0, is no int8 input's (those are positive).
    /// All zero bytes, so a firmware clears it rather than copies it.
    pub const EMPTY: PixelTable = PixelTable {
        values: [0; 256],
        scale: 0.0,
    };

    /// Fills the table for `plan`'s input, pixels meaning `p as f32 / divisor` (an error
    /// for an f32 plan, whose input has no scale).
    pub fn fill(&mut self, plan: &Plan<'_>, divisor: f32) -> Result<(), DeployError> {
        if plan.precision() != Precision::Int8 {
            return Err(DeployError::plan("a pixel table is for int8 plans only"));
        }
        self.fill_at_scale(divisor, plan.input().scale);
        Ok(())
    }

    /// Fills the table for an int8 input of scale `scale`, pixels meaning `p as f32 /
    /// divisor`: the one definition of a pixel's int8 value, which every byte input of an
    /// int8 plan goes through.
    ///
    /// ```
    /// use tinycnn_kernels::deploy::PixelTable;
    /// let mut table = PixelTable::EMPTY;
    /// table.fill_at_scale(255.0, 1.0 / 127.0);
    /// assert_eq!([table.value(0), table.value(128), table.value(255)], [0, 64, 127]);
    /// ```
    pub fn fill_at_scale(&mut self, divisor: f32, scale: f32) {
        // Pixel p's value at `128 + p as i8` (`p ^ 0x80`), where the table op's loop
        // ([`int8::dsp::qlut_in_place`]) looks up the int8 value `p as i8`.
        for p in 0..256 {
            self.values[p ^ 0x80] = quantize_one(p as f32 / divisor, scale);
        }
        self.scale = scale;
    }

    /// The int8 value of pixel byte `p`.
    pub fn value(&self, p: u8) -> i8 {
        self.values[(p ^ 0x80) as usize]
    }
}

impl Input<'_> {
    /// Elements given; `None` for [`Input::U8InArena`], which has the input's by
    /// construction.
    fn len(&self) -> Option<usize> {
        match self {
            Input::F32(v) => Some(v.len()),
            Input::U8 { pixels, .. } => Some(pixels.len()),
            Input::U8InArena { .. } | Input::U8InArenaTable(_) => None,
        }
    }
}

/// The arena bytes an [`Input::U8InArena`] input's pixels go in: the first
/// [`Plan::input`]`.elements()` bytes of the input value's range (an error if `arena` is
/// smaller than the plan's).
///
/// ```
/// # use tinycnn_kernels::deploy::{self, format::*, Plan, Input, Int8Kernels};
/// # let values = [
/// #     ValueRecord { dtype: DType::F32, shape: [3, 1, 1], offset: 0, scale: 0.0 },
/// #     ValueRecord { dtype: DType::F32, shape: [3, 1, 1], offset: 12, scale: 0.0 },
/// # ];
/// # let mut op = OpRecord::new(OpKind::Act, 0, 1);
/// # op.act = Act::Relu;
/// # let header = Header {
/// #     precision: Precision::F32, values: 2, ops: 1, arena_bytes: 24, workspace_words: 0,
/// #     data_offset: (HEADER_LEN + 2 * VALUE_LEN + OP_LEN) as u32, data_len: 0, macs: 0,
/// # };
/// # let mut bytes = [0u32; (HEADER_LEN + 2 * VALUE_LEN + OP_LEN) / 4];
/// # let b: &mut [u8] = deploy::words_as_bytes_mut(&mut bytes);
/// # b[..HEADER_LEN].copy_from_slice(&header.to_bytes());
/// # b[HEADER_LEN..][..VALUE_LEN].copy_from_slice(&values[0].to_bytes());
/// # b[HEADER_LEN + VALUE_LEN..][..VALUE_LEN].copy_from_slice(&values[1].to_bytes());
/// # b[HEADER_LEN + 2 * VALUE_LEN..].copy_from_slice(&op.to_bytes());
/// // y = relu(x) for x of 3 elements (the plan of the module example).
/// let plan = Plan::parse(deploy::words_as_bytes(&bytes)).unwrap();
/// let mut arena = [0u32; 6];
/// deploy::input_pixels_mut(&plan, &mut arena).unwrap().copy_from_slice(&[0, 51, 255]);
/// let input = Input::U8InArena { divisor: 255.0 };
/// deploy::run(&plan, input, &mut arena, &mut [], Int8Kernels::Plain).unwrap();
/// let mut y = [0.0; 3];
/// deploy::logits(&plan, &arena, &mut y).unwrap();
/// assert_eq!(y, [0.0, 0.2, 1.0]);
/// ```
pub fn input_pixels_mut<'a>(
    plan: &Plan<'_>,
    arena: &'a mut [u32],
) -> Result<&'a mut [u8], DeployError> {
    let x = plan.input();
    let start = x.offset as usize;
    let have = arena.len();
    words_as_bytes_mut(arena)
        .get_mut(start..start + x.elements())
        .ok_or(DeployError::Buffer {
            what: "arena",
            need: plan.arena_words(),
            have,
        })
}

/// Writes `input` into the input value's bytes of the arena `bytes` (quantized at the input's
/// scale in an int8 plan). Inlined: where the caller's input form is a constant (a
/// firmware's), only its arm is compiled.
#[inline(always)]
pub(super) fn write_input<const LINK: u32>(
    plan: &Plan<'_>,
    input: Input<'_>,
    bytes: &mut [u8],
) -> Result<(), DeployError> {
    let x = plan.input();
    if let Some(have) = input.len().filter(|&n| n != x.elements()) {
        return Err(DeployError::Buffer {
            what: "input",
            need: x.elements(),
            have,
        });
    }
    let (a, b) = range_of(&x);
    match plan.precision() {
        Precision::F32 if link::has(LINK, link::F32) => {
            let dst = cast_mut::<f32>(&mut bytes[a..b])?;
            match input {
                Input::F32(v) => dst.copy_from_slice(v),
                Input::U8 { pixels, divisor } => {
                    for (o, &p) in dst.iter_mut().zip(pixels) {
                        *o = p as f32 / divisor;
                    }
                }
                // Pixel i lies in byte i, which only elements 0..=i / 4 overlap: converted
                // from the last, each is read before an element overwrites it.
                Input::U8InArena { divisor } => {
                    let elements = dst.as_mut_ptr();
                    for i in (0..dst.len()).rev() {
                        // SAFETY: `i < dst.len()`: byte `i` of `dst` lies in element
                        // `i / 4 <= i`, not yet written (elements are written from the
                        // last); element `i` is in `dst`.
                        unsafe {
                            let p = *(elements as *const u8).add(i);
                            *elements.add(i) = p as f32 / divisor;
                        }
                    }
                }
                Input::U8InArenaTable(_) => {
                    return Err(DeployError::plan(
                        "input: a pixel table is for int8 plans only",
                    ))
                }
            }
        }
        Precision::Int8 if link::has(LINK, link::INT8) => {
            let dst = cast_mut::<i8>(&mut bytes[a..b])?;
            match input {
                Input::U8 { pixels, divisor } => {
                    quantize_pixels(Some(pixels), divisor, x.scale, dst)
                }
                // In place: each pixel's byte becomes its int8 value.
                Input::U8InArena { divisor } => quantize_pixels(None, divisor, x.scale, dst),
                Input::U8InArenaTable(table) => {
                    if table.scale != x.scale {
                        return Err(DeployError::plan(
                            "input: the pixel table was made for another input scale",
                        ));
                    }
                    // Pixel byte p, read as the int8 `p as i8`, finds its value at
                    // `128 + p as i8` (see `PixelTable::fill`): the table op's loop.
                    int8::dsp::qlut_in_place(&table.values, dst);
                }
                Input::F32(v) => {
                    for (o, &r) in dst.iter_mut().zip(v) {
                        *o = quantize_one(r, x.scale);
                    }
                }
            }
        }
        _ => return Err(unlinked()),
    }
    Ok(())
}

/// Byte pixels (`pixels`, or `dst`'s own bytes read as `p as i8` where `None`) quantized
/// into `dst` through a [`PixelTable`] filled here for `scale`. Not inlined: the table is
/// on the stack only while it runs, not under the kernels' frames.
#[inline(never)]
fn quantize_pixels(pixels: Option<&[u8]>, divisor: f32, scale: f32, dst: &mut [i8]) {
    let mut table = PixelTable::EMPTY;
    table.fill_at_scale(divisor, scale);
    match pixels {
        Some(pixels) => {
            for (o, &p) in dst.iter_mut().zip(pixels) {
                *o = table.value(p);
            }
        }
        None => int8::dsp::qlut_in_place(&table.values, dst),
    }
}
