//! Turning any PNG into a Fashion-MNIST input: 28x28, one channel, values in [0, 1], a light
//! object on a black background.
//!
//! Steps, following how Zalando made the data set (trim, fit the longest edge, pad, negate,
//! gray): composite transparency onto white, convert to gray, invert when asked (by default
//! when the picture's border is light, i.e. a photo of a dark-on-light object), pad to a
//! square with the background value, and shrink to 28x28 by area averaging (each output
//! pixel the mean of the square's pixels it covers; a picture smaller than 28x28 is enlarged
//! with a triangle filter).
//!
//! Size limits: a PNG states its size in its header, and a small file can claim 20000x20000
//! pixels (gigabytes once decoded). The size is read and checked before decoding
//! ([`MAX_SIDE`] per side, [`MAX_PIXELS`] in all), the decoder runs under the same limits
//! and a cap on its allocations ([`MAX_DECODE_BYTES`]), and the shrinking reads the decoded
//! picture a row at a time, so no full-size floating-point copy is made.

use crate::error::{Context, Result};
use image::{imageops, DynamicImage, ImageBuffer, ImageFormat, ImageReader, Limits, Luma};
use std::io::BufReader;
use std::path::Path;

/// Side of a Fashion-MNIST image.
pub const SIDE: u32 = 28;
/// The longest side `predict` accepts, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels `predict` accepts (width times height): 25 megapixels, e.g. 5000x5000.
pub const MAX_PIXELS: u64 = 25_000_000;
/// What the PNG decoder may allocate: a 25-megapixel picture with four 16-bit channels
/// (200 MB) fits.
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

/// When to negate the gray values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Invert {
    /// Invert when the mean of the border pixels is above 0.5 (light background).
    Auto,
    /// Always invert (dark object on light background).
    Always,
    /// Never invert (the picture is already light on dark, like Fashion-MNIST).
    Never,
}

/// A preprocessed picture and what was done to it.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// 784 values in [0, 1], row-major.
    pub pixels: Vec<f32>,
    /// Whether the gray values were negated.
    pub inverted: bool,
    /// Size of the original picture.
    pub original: (u32, u32),
}

/// Refuses a picture size above the limits, with the limits in the message.
pub fn check_size(path: &Path, w: u32, h: u32) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(crate::cli_err!(
            "{} is an empty {w}x{h} picture",
            path.display()
        ));
    }
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(crate::cli_err!(
            "{} is {w}x{h} pixels, larger than predict accepts (at most {MAX_SIDE} pixels a side and {} megapixels); \
             scale it down first",
            path.display(),
            MAX_PIXELS / 1_000_000
        ));
    }
    Ok(())
}

fn reader(path: &Path) -> Result<ImageReader<BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path).context(|| format!("cannot read {}", path.display()))?;
    Ok(ImageReader::with_format(
        BufReader::new(file),
        ImageFormat::Png,
    ))
}

/// Reads a PNG file and prepares it (see the module docs): its declared size is checked
/// before any pixel is decoded.
pub fn load_png(path: &Path, invert: Invert) -> Result<Prepared> {
    let not_png = |e: image::ImageError| {
        crate::cli_err!("{} is not a readable PNG image: {e}", path.display())
    };
    let (w, h) = reader(path)?.into_dimensions().map_err(not_png)?;
    check_size(path, w, h)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut decoder = reader(path)?;
    decoder.limits(limits);
    let img = decoder.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => crate::cli_err!(
            "{}: decoding the {w}x{h} picture needs more than the {} MiB predict allows: {l}",
            path.display(),
            MAX_DECODE_BYTES >> 20
        ),
        other => not_png(other),
    })?;
    Ok(prepare_image(&img, invert))
}

/// Prepares a decoded picture of any colour type, converting one row at a time.
pub fn prepare_image(img: &DynamicImage, invert: Invert) -> Prepared {
    let (w, h) = (img.width(), img.height());
    prepare_rows(w, h, invert, |y, x0, n| {
        img.crop_imm(x0, y, n, 1)
            .to_luma_alpha32f()
            .pixels()
            .map(|p| p.0)
            .collect()
    })
}

/// Prepares a gray+alpha picture whose values are in [0, 1].
#[cfg_attr(not(test), allow(dead_code))]
pub fn prepare(img: &ImageBuffer<image::LumaA<f32>, Vec<f32>>, invert: Invert) -> Prepared {
    let (w, h) = img.dimensions();
    prepare_rows(w, h, invert, |y, x0, n| {
        (x0..x0 + n).map(|x| img.get_pixel(x, y).0).collect()
    })
}

/// Transparent parts show the page behind them: white.
fn gray([l, a]: [f32; 2]) -> f32 {
    (l.clamp(0.0, 1.0) * a + (1.0 - a)).clamp(0.0, 1.0)
}

/// Area-averaging weights along one axis: for each of the `side` input positions, the output
/// cells (of [`SIDE`]) it overlaps and the fraction of that cell it covers. `side > SIDE`, so
/// an input pixel is narrower than a cell and overlaps at most two.
fn area_weights(side: u32) -> Vec<[(usize, f64); 2]> {
    let scale = f64::from(SIDE) / f64::from(side); // cell units per input pixel
    (0..side)
        .map(|i| {
            let (lo, hi) = (f64::from(i) * scale, f64::from(i + 1) * scale);
            let cell = (lo.floor() as usize).min(SIDE as usize - 1);
            let edge = (cell + 1) as f64;
            if hi <= edge || cell + 1 == SIDE as usize {
                [(cell, hi - lo), (cell, 0.0)]
            } else {
                [(cell, edge - lo), (cell + 1, hi - edge)]
            }
        })
        .collect()
}

/// The preparation on a picture read through `row(y, x0, n)`, which returns the gray+alpha
/// values of pixels `x0..x0 + n` of row `y`.
fn prepare_rows(
    w: u32,
    h: u32,
    invert: Invert,
    row: impl Fn(u32, u32, u32) -> Vec<[f32; 2]>,
) -> Prepared {
    // Pass 1: the mean of the border pixels decides the inversion and the padding value.
    let mut sum = 0.0f64;
    let mut n = 0u64;
    for y in 0..h {
        let pixels = if y == 0 || y + 1 == h {
            row(y, 0, w)
        } else if w > 1 {
            let mut ends = row(y, 0, 1);
            ends.extend(row(y, w - 1, 1));
            ends
        } else {
            row(y, 0, 1)
        };
        for p in pixels {
            sum += f64::from(gray(p));
            n += 1;
        }
    }
    let border_mean = sum / n.max(1) as f64;
    let inverted = match invert {
        Invert::Auto => border_mean > 0.5,
        Invert::Always => true,
        Invert::Never => false,
    };
    let value = |p: [f32; 2]| {
        let g = gray(p);
        if inverted {
            1.0 - g
        } else {
            g
        }
    };
    // Pad to a square with the picture's own background (the border mean, after any
    // inversion) so the longest edge fills 28 pixels, the aspect ratio is kept and no seam
    // appears.
    let background = if inverted {
        1.0 - border_mean as f32
    } else {
        border_mean as f32
    };
    let side = w.max(h);
    let (ox, oy) = ((side - w) / 2, (side - h) / 2);
    let cells = SIDE as usize;

    let pixels: Vec<f32> = if side > SIDE {
        // Pass 2: each output cell sums weight * value over the picture's pixels, and the
        // padding contributes the background times the weight the picture left uncovered.
        let xw = area_weights(side);
        let yw = area_weights(side);
        let mut acc = vec![0.0f64; cells * cells];
        let mut covered = vec![0.0f64; cells * cells];
        let (mut row_acc, mut row_cov) = (vec![0.0f64; cells], vec![0.0f64; cells]);
        for y in 0..h {
            row_acc.iter_mut().for_each(|v| *v = 0.0);
            row_cov.iter_mut().for_each(|v| *v = 0.0);
            for (x, p) in row(y, 0, w).into_iter().enumerate() {
                let v = f64::from(value(p));
                for &(c, wt) in &xw[x + ox as usize] {
                    row_acc[c] += wt * v;
                    row_cov[c] += wt;
                }
            }
            for &(r, wt) in &yw[(y + oy) as usize] {
                for c in 0..cells {
                    acc[r * cells + c] += wt * row_acc[c];
                    covered[r * cells + c] += wt * row_cov[c];
                }
            }
        }
        acc.iter()
            .zip(&covered)
            .map(|(&a, &c)| (a + f64::from(background) * (1.0 - c).max(0.0)) as f32)
            .map(|v| v.clamp(0.0, 1.0))
            .collect()
    } else {
        // At most 28x28: small enough to build the padded square and enlarge it directly.
        let mut square =
            ImageBuffer::<Luma<f32>, Vec<f32>>::from_pixel(side, side, Luma([background]));
        for y in 0..h {
            for (x, p) in row(y, 0, w).into_iter().enumerate() {
                square.put_pixel(x as u32 + ox, y + oy, Luma([value(p)]));
            }
        }
        let small = if side == SIDE {
            square
        } else {
            imageops::resize(&square, SIDE, SIDE, imageops::FilterType::Triangle)
        };
        small
            .into_raw()
            .into_iter()
            .map(|v| v.clamp(0.0, 1.0))
            .collect()
    };
    Prepared {
        pixels,
        inverted,
        original: (w, h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::LumaA;

    fn picture(
        w: u32,
        h: u32,
        f: impl Fn(u32, u32) -> (f32, f32),
    ) -> ImageBuffer<LumaA<f32>, Vec<f32>> {
        ImageBuffer::from_fn(w, h, |x, y| {
            let (l, a) = f(x, y);
            LumaA([l, a])
        })
    }

    #[test]
    fn a_28x28_light_on_black_picture_is_kept_as_is() {
        let img = picture(28, 28, |x, y| {
            (
                ((x + y) % 7) as f32 / 7.0 * (x > 0 && y > 0 && x < 27 && y < 27) as u8 as f32,
                1.0,
            )
        });
        let p = prepare(&img, Invert::Auto);
        assert!(!p.inverted);
        assert_eq!(p.pixels.len(), 784);
        assert_eq!(p.pixels[28 + 1], 2.0 / 7.0);
    }

    #[test]
    fn dark_object_on_white_is_inverted_and_scaled() {
        // 56x56 white page with a black 28x28 square in the middle.
        let img = picture(56, 56, |x, y| {
            let inside = (14..42).contains(&x) && (14..42).contains(&y);
            (if inside { 0.0 } else { 1.0 }, 1.0)
        });
        let p = prepare(&img, Invert::Auto);
        assert!(p.inverted);
        assert_eq!(p.pixels[0], 0.0);
        assert!((p.pixels[14 * 28 + 14] - 1.0).abs() < 1e-6);
        let sum: f32 = p.pixels.iter().sum();
        // The object covers a quarter of the picture.
        assert!((sum - 196.0).abs() < 2.0, "{sum}");
    }

    #[test]
    fn never_and_always_override_the_guess() {
        let img = picture(10, 10, |_, _| (1.0, 1.0));
        assert!(!prepare(&img, Invert::Never).inverted);
        assert!(prepare(&img, Invert::Always).inverted);
        assert!(prepare(&img, Invert::Always)
            .pixels
            .iter()
            .all(|&v| v == 0.0));
    }

    #[test]
    fn wide_picture_is_padded_to_a_square() {
        // 40x20 black picture with a light 10x10 square at its centre: the square stays
        // square (7x7 after scaling by 28/40) and the padding is black like the border.
        let img = picture(40, 20, |x, y| {
            let inside = (15..25).contains(&x) && (5..15).contains(&y);
            (if inside { 1.0 } else { 0.0 }, 1.0)
        });
        let p = prepare(&img, Invert::Auto);
        assert!(!p.inverted);
        assert_eq!(p.original, (40, 20));
        assert_eq!(p.pixels[0], 0.0);
        assert!(p.pixels[14 * 28 + 14] > 0.99);
        let sum: f32 = p.pixels.iter().sum();
        assert!((sum - 49.0).abs() < 1.5, "{sum}");
    }

    /// 2800x1400, left half white and right half black: the border mean is exactly 0.5 (no
    /// inversion), the square is padded with 0.5 above and below (700 rows = 7 cells each),
    /// and every cell covers exactly 100x100 pixels of one value.
    #[test]
    fn a_large_picture_is_area_averaged_into_exact_cells() {
        let img = picture(2800, 1400, |x, _| (if x < 1400 { 1.0 } else { 0.0 }, 1.0));
        let p = prepare(&img, Invert::Auto);
        assert!(!p.inverted);
        for r in 0..28 {
            for c in 0..28 {
                let want = match r {
                    7..=20 if c < 14 => 1.0,
                    7..=20 => 0.0,
                    _ => 0.5,
                };
                let got = p.pixels[r * 28 + c];
                assert!(
                    (got - want).abs() < 1e-6,
                    "cell ({r}, {c}): {got} vs {want}"
                );
            }
        }
    }

    /// 1000 pixels per side is 35.71... per cell: cells straddle pixels, yet a uniform picture
    /// stays uniform and a bright square keeps its area: 40x40 pixels cover
    /// 1600 * (28/1000)^2 = 1.2544 cells.
    #[test]
    fn unaligned_shrinking_keeps_values_and_mass() {
        let flat = picture(1000, 1000, |_, _| (0.3, 1.0));
        let p = prepare(&flat, Invert::Never);
        assert!(
            p.pixels.iter().all(|v| (v - 0.3).abs() < 1e-5),
            "{:?}",
            &p.pixels[..5]
        );
        let spot = picture(1000, 1000, |x, y| {
            let inside = (480..520).contains(&x) && (480..520).contains(&y);
            (if inside { 1.0 } else { 0.0 }, 1.0)
        });
        let p = prepare(&spot, Invert::Auto);
        let sum: f32 = p.pixels.iter().sum();
        assert!((sum - 1.2544).abs() < 1e-4, "{sum}");
    }

    /// Any colour type goes through the same steps as a gray+alpha picture.
    #[test]
    fn colour_pictures_are_read_row_by_row_like_gray_ones() {
        let rgba = image::RgbaImage::from_fn(300, 120, |x, y| {
            let v = ((x * 7 + y * 3) % 256) as u8;
            image::Rgba([v, v, v, if x < 10 { 0 } else { 255 }])
        });
        let gray = picture(300, 120, |x, y| {
            let v = ((x * 7 + y * 3) % 256) as f32 / 255.0;
            (v, if x < 10 { 0.0 } else { 1.0 })
        });
        let a = prepare_image(&DynamicImage::ImageRgba8(rgba), Invert::Auto);
        let b = prepare(&gray, Invert::Auto);
        assert_eq!(a.inverted, b.inverted);
        for (x, y) in a.pixels.iter().zip(&b.pixels) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn sizes_past_the_limits_are_refused_with_the_limits() {
        let p = Path::new("big.png");
        let e = check_size(p, 20_000, 20_000).unwrap_err().to_string();
        assert!(
            e.contains("20000x20000") && e.contains("16384") && e.contains("25 megapixels"),
            "{e}"
        );
        assert!(check_size(p, 16_385, 1).is_err());
        assert!(check_size(p, 5_001, 5_000).is_err());
        assert!(check_size(p, 0, 5).is_err());
        assert!(check_size(p, 5_000, 5_000).is_ok());
        assert!(check_size(p, 16_384, 1_000).is_ok());
    }

    #[test]
    fn transparent_background_counts_as_white() {
        let img = picture(28, 28, |x, _| if x < 14 { (0.0, 0.0) } else { (0.0, 1.0) });
        let p = prepare(&img, Invert::Auto);
        // Border: half white (transparent), half black: mean 0.5 is not > 0.5.
        assert!(!p.inverted);
        assert_eq!(p.pixels[5], 1.0);
        assert_eq!(p.pixels[20], 0.0);
    }
}
