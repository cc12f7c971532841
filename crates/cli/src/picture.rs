//! Turning any PNG into a Fashion-MNIST input: 28x28, one channel, values in [0, 1], a light
//! object on a black background.
//!
//! Steps, following how Zalando made the data set (trim, fit the longest edge, pad, negate,
//! gray): composite transparency onto white, convert to gray, invert when asked (by default
//! when the picture's border is light, i.e. a photo of a dark-on-light object), pad to a
//! square with the background value, and resize to 28x28 with a triangle (area-averaging)
//! filter.

use crate::error::{Context, Result};
use image::{imageops, ImageBuffer, Luma};
use std::path::Path;

/// Side of a Fashion-MNIST image.
pub const SIDE: u32 = 28;

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

/// Reads a PNG file and prepares it (see the module docs).
pub fn load_png(path: &Path, invert: Invert) -> Result<Prepared> {
    let bytes = std::fs::read(path).context(|| format!("cannot read {}", path.display()))?;
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .context(|| format!("{} is not a readable PNG image", path.display()))?;
    Ok(prepare(&img.to_luma_alpha32f(), invert))
}

/// Prepares a gray+alpha picture whose values are in [0, 1].
pub fn prepare(img: &ImageBuffer<image::LumaA<f32>, Vec<f32>>, invert: Invert) -> Prepared {
    let (w, h) = img.dimensions();
    // Transparent parts show the page behind them: white.
    let gray: Vec<f32> = img
        .pixels()
        .map(|p| {
            let [l, a] = p.0;
            (l.clamp(0.0, 1.0) * a + (1.0 - a)).clamp(0.0, 1.0)
        })
        .collect();
    let border_mean = {
        let mut sum = 0.0f64;
        let mut n = 0usize;
        for y in 0..h {
            for x in 0..w {
                if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
                    sum += gray[(y * w + x) as usize] as f64;
                    n += 1;
                }
            }
        }
        sum / n.max(1) as f64
    };
    let inverted = match invert {
        Invert::Auto => border_mean > 0.5,
        Invert::Always => true,
        Invert::Never => false,
    };
    let values: Vec<f32> = if inverted {
        gray.iter().map(|v| 1.0 - v).collect()
    } else {
        gray
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
    let mut square = ImageBuffer::<Luma<f32>, Vec<f32>>::from_pixel(side, side, Luma([background]));
    for y in 0..h {
        for x in 0..w {
            square.put_pixel(x + ox, y + oy, Luma([values[(y * w + x) as usize]]));
        }
    }
    let small = if side == SIDE {
        square
    } else {
        imageops::resize(&square, SIDE, SIDE, imageops::FilterType::Triangle)
    };
    let pixels = small
        .into_raw()
        .into_iter()
        .map(|v| v.clamp(0.0, 1.0))
        .collect();
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
