//! On-board check that the `SMLAD` int8 kernels agree exactly with their naive twins
//! (`tinycnn_kernels::int8::reference`), on pseudo-random shapes and values (the whole int8
//! range, requantization scales over every binade), run with the real instructions.
//!
//! It borrows the inference scratch buffers, so it costs no RAM of its own.

use tinycnn_kernels::int8::{dsp, reference, ActRange, QLinearShape, Requant};
use tinycnn_kernels::{Conv2dParams, Conv2dShape};

/// Convolutions and linear layers checked.
pub const CASES: u32 = 40;

/// xorshift32: deterministic, no dependencies.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u32) -> usize {
        (self.next() % n) as usize
    }
    fn fill(&mut self, v: &mut [i8]) {
        for e in v {
            *e = self.next() as i8;
        }
    }
    /// A requantizer with scale `(1 + m / 2^23) * 2^e`, `e` in `[-32, 29]`.
    fn requant(&mut self) -> Requant {
        let exp = self.below(62) as u32 + 127 - 32;
        let bits = (exp << 23) | (self.next() & 0x007f_ffff);
        Requant::from_scale(f32::from_bits(bits)).unwrap_or(Requant {
            multiplier: 1 << 30,
            shift: 31,
        })
    }
    /// [`Rng::requant`] with `e` in `[-32, -3]`: a shift of at least 33, as in every real
    /// layer (the form the conv's window path requantizes in).
    fn requant_usual(&mut self) -> Requant {
        let exp = self.below(30) as u32 + 127 - 32;
        let bits = (exp << 23) | (self.next() & 0x007f_ffff);
        Requant::from_scale(f32::from_bits(bits)).unwrap_or(Requant {
            multiplier: 1 << 30,
            shift: 33,
        })
    }
    fn range(&mut self) -> ActRange {
        match self.below(3) {
            0 => ActRange::FULL,
            1 => ActRange::RELU,
            _ => {
                let (a, b) = (self.next() as i8, self.next() as i8);
                ActRange {
                    min: a.min(b),
                    max: a.max(b),
                }
            }
        }
    }
}

const MAX_CH: usize = 16;

/// Checks [`CASES`] convolutions and [`CASES`] linear layers; `buf` needs 4096 bytes, `ws`
/// is the conv workspace (shapes that need more are skipped). Returns the name of the first kernel that disagreed.
pub fn kernels(buf: &mut [i8], ws: &mut [u32]) -> Result<(), &'static str> {
    let (x, rest) = buf.split_at_mut(1024);
    let (w, rest) = rest.split_at_mut(1024);
    let (y, rest) = rest.split_at_mut(1024);
    let want = &mut rest[..1024];
    let mut rng = Rng(0x1234_5678);
    let mut bias = [0i32; MAX_CH];
    let mut rq = [Requant {
        multiplier: 1 << 30,
        shift: 31,
    }; MAX_CH];
    let mut done = 0;
    while done < CASES {
        // A case in four has a shape of the conv's window path (stride 1, no dilation,
        // 5-tap rows, 1 or an even number of input channels per group), which it takes
        // where `ws` holds a band of at least one output row (`qconv2d_window_workspace_len`),
        // in bands of as many rows as `ws` holds: with a LeNet firmware's workspace, bands
        // of a few rows, the whole image for the smallest shapes. One in four is a shape of
        // the depthwise path (3x3, one input channel per group, 1 to 3 outputs per group),
        // one of the pointwise path (1x1), the rest anything.
        let kind = done % 4;
        let window = kind == 0;
        let g = 1 + rng.below(if kind == 1 { 4 } else { 2 });
        let (cin_g, kh, kw) = match kind {
            0 => ([1, 2, 4][rng.below(3)], 1 + rng.below(5), 5),
            1 => (1, 3, 3),
            2 => (1 + rng.below(8), 1, 1),
            _ => (1 + rng.below(4), 1 + rng.below(5), 1 + rng.below(5)),
        };
        let (stride, dil, pad) = match kind {
            0 => ((1, 1), (1, 1), (rng.below(3), rng.below(3))),
            1 => ((1 + rng.below(3), 1 + rng.below(2)), (1, 1), (rng.below(3), rng.below(3))),
            2 => ((1, 1), (1, 1), (0, 0)),
            _ => (
                (1 + rng.below(2), 1 + rng.below(2)),
                (1 + rng.below(2), 1 + rng.below(2)),
                (rng.below(3), rng.below(3)),
            ),
        };
        let out_g = match kind {
            1 => 1 + rng.below(3),
            2 => 1 + rng.below(8),
            _ => 1 + rng.below(5),
        };
        let p = Conv2dParams::new(g * cin_g, g * out_g, (kh, kw))
            .with_stride(stride)
            .with_padding(pad)
            .with_dilation(dil)
            .with_groups(if kind == 2 { 1 } else { g });
        let s = Conv2dShape::new(p, 1 + rng.below(2), 1 + rng.below(12), 1 + rng.below(12));
        let (Ok(xl), Ok(yl), Ok(wsl)) = (
            s.input_len(),
            s.output_len(),
            dsp::qconv2d_workspace_len(&s),
        ) else {
            continue;
        };
        let wl = s.weight_len();
        if s.validate().is_err() || xl > x.len() || wl > w.len() || yl > y.len() || wsl > ws.len() {
            continue;
        }
        let oc = p.out_channels;
        rng.fill(&mut x[..xl]);
        rng.fill(&mut w[..wl]);
        for (b, r) in bias[..oc].iter_mut().zip(&mut rq[..oc]) {
            *b = (rng.next() % 2_000_001) as i32 - 1_000_000;
            *r = if window {
                rng.requant_usual()
            } else {
                rng.requant()
            };
        }
        let range = rng.range();
        let (xs, wts, bs, rqs) = (&x[..xl], &w[..wl], Some(&bias[..oc]), &rq[..oc]);
        dsp::qconv2d_forward(&s, xs, wts, bs, rqs, range, &mut y[..yl], ws)
            .map_err(|_| "conv refused")?;
        reference::qconv2d(&s, xs, wts, bs, rqs, range, &mut want[..yl])
            .map_err(|_| "conv refused")?;
        if y[..yl] != want[..yl] {
            return Err("conv");
        }
        done += 1;
    }
    let (mut acc, mut acc_want) = ([0i32; 3 * MAX_CH], [0i32; 3 * MAX_CH]);
    for _ in 0..CASES {
        let s = QLinearShape::new(
            1 + rng.below(3),
            1 + rng.below(64),
            1 + rng.below(MAX_CH as u32),
        );
        let (xl, wl, yl) = (
            s.batch * s.in_features,
            s.in_features * s.out_features,
            s.batch * s.out_features,
        );
        rng.fill(&mut x[..xl]);
        rng.fill(&mut w[..wl]);
        for (b, r) in bias.iter_mut().zip(&mut rq) {
            *b = (rng.next() % 2_000_001) as i32 - 1_000_000;
            *r = rng.requant();
        }
        let range = rng.range();
        let of = s.out_features;
        let (xs, wts, bs, rqs) = (&x[..xl], &w[..wl], Some(&bias[..of]), &rq[..of]);
        dsp::qlinear_forward(&s, xs, wts, bs, rqs, range, &mut y[..yl])
            .map_err(|_| "linear refused")?;
        reference::qlinear(&s, xs, wts, bs, rqs, range, &mut want[..yl])
            .map_err(|_| "linear refused")?;
        dsp::qlinear_forward_i32(&s, xs, wts, bs, &mut acc[..yl]).map_err(|_| "linear refused")?;
        reference::qlinear_i32(&s, xs, wts, bs, &mut acc_want[..yl])
            .map_err(|_| "linear refused")?;
        if y[..yl] != want[..yl] || acc[..yl] != acc_want[..yl] {
            return Err("linear");
        }
    }
    Ok(())
}

/// The firmware's self-test of an int8 plan: [`kernels`] with the real instructions (in the
/// inference arena and workspace, so it costs no RAM of its own), then the whole plan on the
/// first embedded image with the DSP, plain and reference kernels: identical outputs.
pub fn run(
    out: &mut cortex_m_semihosting::hio::HostStream,
    plan: &tinycnn_kernels::deploy::Plan<'_>,
    arena: &mut [u32],
    ws: &mut [u32],
) -> Result<(), super::Failure> {
    use tinycnn_kernels::deploy::{self, words_as_bytes, words_as_bytes_mut, Input, Int8Kernels};
    let fail = |out: &mut _, what: &'static str| {
        super::put(out, "selftest FAILED: ");
        super::put(out, what);
        super::put(out, "\n");
        Err(what)
    };
    {
        let bytes = words_as_bytes_mut(arena);
        // SAFETY: i8 and u8 have the same size and alignment; every bit pattern is valid.
        let buf = unsafe { &mut *(bytes as *mut [u8] as *mut [i8]) };
        if buf.len() < 4096 {
            super::put(out, "selftest skipped: arena below 4096 bytes\n");
        } else if let Err(kernel) = kernels(buf, ws) {
            return fail(
                out,
                if kernel == "conv" {
                    "dsp conv differs from the reference"
                } else {
                    "dsp linear differs from the reference"
                },
            );
        }
    }
    // The first test image, after its file's 16-byte header (the selftest's stack may
    // hold it: the classification reads each image into the arena instead).
    let mut file = super::HostFile::open(super::deployment::IMAGES_PATH)?;
    let (mut head, mut image) = ([0u8; 16], [0u8; tinycnn_mcu::idx::IMAGE_PIXELS]);
    file.read_exact(&mut head)?;
    if tinycnn_mcu::idx::images_in_header(&head).is_none_or(|n| n == 0) {
        return Err(super::DATA_FAILED);
    }
    file.read_exact(&mut image)?;
    let input = Input::U8 {
        pixels: &image,
        divisor: 255.0,
    };
    let o = plan.output_value();
    let (a, b) = (o.offset as usize, o.offset as usize + o.bytes());
    let mut first = [0u8; 64];
    if b - a > first.len() {
        return fail(out, "output too large to compare");
    }
    for (i, k) in [Int8Kernels::Dsp, Int8Kernels::Plain, Int8Kernels::Reference]
        .into_iter()
        .enumerate()
    {
        if deploy::run(plan, input, arena, ws, k).is_err() {
            return fail(out, "the executor refused the plan");
        }
        let got = &words_as_bytes(arena)[a..b];
        if i == 0 {
            first[..b - a].copy_from_slice(got);
        } else if got != &first[..b - a] {
            return fail(
                out,
                "network outputs differ between dsp, plain and reference kernels",
            );
        }
    }
    super::put(out, "selftest dsp conv ");
    super::put_u32(out, CASES);
    super::put(out, " linear ");
    super::put_u32(out, CASES);
    super::put(out, " network 1 ok\n");
    Ok(())
}
