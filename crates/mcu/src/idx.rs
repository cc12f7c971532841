//! The IDX format of (Fashion-)MNIST, read in place without allocation.
//!
//! A file is a 4-byte magic `00 00 08 NN` (`08` = unsigned bytes, `NN` = number of
//! dimensions), `NN` big-endian `u32` sizes, then the bytes row-major.

use crate::error::{Error, Result};
/// Pixels of one 28x28 image.
pub const IMAGE_PIXELS: usize = 28 * 28;
/// Classes of (Fashion-)MNIST labels.
pub const CLASSES: usize = 10;

fn err(what: &'static str) -> Error {
    Error::Format { what, at: 0 }
}

/// The sizes in the header of an IDX file of unsigned bytes with `R` dimensions (its first
/// `4 + 4 R` bytes), and the bytes of data they make.
fn header<const R: usize>(bytes: &[u8]) -> Result<([usize; R], usize)> {
    let magic = bytes
        .get(..4)
        .ok_or(err("IDX file shorter than its magic"))?;
    if magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 {
        return Err(err("IDX magic is not 00 00 08 (unsigned bytes)"));
    }
    if magic[3] as usize != R {
        return Err(err("IDX file has the wrong number of dimensions"));
    }
    let mut dims = [0usize; R];
    let mut total: usize = 1;
    for (i, d) in dims.iter_mut().enumerate() {
        let b = bytes
            .get(4 + 4 * i..8 + 4 * i)
            .ok_or(err("IDX header cut short"))?;
        *d = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        total = total
            .checked_mul(*d)
            .ok_or(err("IDX size overflows usize"))?;
    }
    Ok((dims, total))
}

/// A view of an IDX file of unsigned bytes with `rank` dimensions: (sizes, data).
fn parse<const R: usize>(bytes: &[u8]) -> Result<([usize; R], &[u8])> {
    let (dims, total) = header::<R>(bytes)?;
    let data = &bytes[4 + 4 * R..];
    if data.len() != total {
        return Err(err("IDX data length differs from its dimensions"));
    }
    Ok((dims, data))
}

/// The number of 28x28 images an `idx3-ubyte` file holds, from its 16-byte header (`None`
/// if it is not such a header): for a reader that takes the images one at a time (the
/// firmware reads them over semihosting), with none of [`images`]' error messages (flash).
///
/// ```
/// use tinycnn_mcu::idx;
/// let mut h = [0u8; 16];
/// h[..4].copy_from_slice(&[0, 0, 8, 3]);
/// h[4..8].copy_from_slice(&3u32.to_be_bytes());
/// h[8..12].copy_from_slice(&28u32.to_be_bytes());
/// h[12..].copy_from_slice(&28u32.to_be_bytes());
/// assert_eq!(idx::images_in_header(&h), Some(3));
/// h[11] = 27; // 27 rows
/// assert_eq!(idx::images_in_header(&h), None);
/// ```
pub fn images_in_header(h: &[u8; 16]) -> Option<usize> {
    let be = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as usize;
    (h[..4] == [0, 0, 0x08, 3] && (be(8), be(12)) == (28, 28)).then(|| be(4))
}

/// The number of labels an `idx1-ubyte` file holds, from its 8-byte header (`None` if it is
/// not such a header); see [`images_in_header`]. Each label still needs checking (below
/// [`CLASSES`]).
///
/// ```
/// use tinycnn_mcu::idx;
/// assert_eq!(idx::labels_in_header(&[0, 0, 8, 1, 0, 0, 1, 2]), Some(258));
/// assert_eq!(idx::labels_in_header(&[0, 0, 8, 3, 0, 0, 1, 2]), None);
/// ```
pub fn labels_in_header(h: &[u8; 8]) -> Option<usize> {
    (h[..4] == [0, 0, 0x08, 1]).then(|| u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize)
}

/// 28x28 images of an `idx3-ubyte` file, borrowed.
pub fn images(bytes: &[u8]) -> Result<&[[u8; IMAGE_PIXELS]]> {
    let ([_, h, w], data) = parse::<3>(bytes)?;
    if (h, w) != (28, 28) {
        return Err(err("IDX images are not 28x28"));
    }
    let (chunks, rest) = data.as_chunks::<IMAGE_PIXELS>();
    debug_assert!(rest.is_empty());
    Ok(chunks)
}

/// Labels of an `idx1-ubyte` file (each checked to be below 10), borrowed.
pub fn labels(bytes: &[u8]) -> Result<&[u8]> {
    let (_, data) = parse::<1>(bytes)?;
    if data.iter().any(|&l| l as usize >= CLASSES) {
        return Err(err("IDX label outside 0..10"));
    }
    Ok(data)
}
